//! A snapshot: the files of one ingest and their manifests, kept in a local file.
//!
//! # Encoding, version 2
//!
//! `b"nuSN"`, version byte `2`, root length (u32 LE), root (UTF-8: the ingested path, made
//! absolute; empty when unknown), then per file: path length (u32 LE), path (UTF-8,
//! relative, `/`-separated), manifest length (u32 LE), manifest
//! ([`nuage_core::Manifest::encode`]), then the file's identity when it was read: mtime and
//! ctime in nanoseconds since the epoch (i64 LE each) and inode number (u64 LE), all zero when
//! unknown. Version 1 (no root, no identity) still decodes.
//!
//! Written to a temporary file, fsynced, then renamed into place, so a crash never leaves a
//! half-written snapshot.

use std::io::{self, Write};
use std::path::Path;

use nuage_core::Manifest;
use nuage_core::stamp::FileStamp;

const MAGIC: &[u8; 4] = b"nuSN";
const VERSION: u8 = 2;

/// One file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// Path relative to the ingested root, `/`-separated.
    pub path: String,
    /// Its chunks.
    pub manifest: Manifest,
    /// Its identity on disk when it was read (unknown: all zero).
    pub stamp: FileStamp,
}

/// The files of one ingest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The ingested path, absolute (empty when unknown).
    pub root: String,
    /// In ingest order.
    pub files: Vec<SnapshotFile>,
}

impl Snapshot {
    /// The encoded snapshot.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&(self.root.len() as u32).to_le_bytes());
        out.extend_from_slice(self.root.as_bytes());
        for f in &self.files {
            let m = f.manifest.encode();
            out.extend_from_slice(&(f.path.len() as u32).to_le_bytes());
            out.extend_from_slice(f.path.as_bytes());
            out.extend_from_slice(&(m.len() as u32).to_le_bytes());
            out.extend_from_slice(&m);
            out.extend_from_slice(&f.stamp.mtime_ns.to_le_bytes());
            out.extend_from_slice(&f.stamp.ctime_ns.to_le_bytes());
            out.extend_from_slice(&f.stamp.inode.to_le_bytes());
        }
        out
    }

    /// Parses an encoded snapshot; bad input is an error, never a panic.
    pub fn decode(mut bytes: &[u8]) -> io::Result<Snapshot> {
        let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, format!("malformed snapshot: {m}"));
        if bytes.len() < 5 || &bytes[..4] != MAGIC || !(1..=VERSION).contains(&bytes[4]) {
            return Err(bad("bad header"));
        }
        let version = bytes[4];
        bytes = &bytes[5..];
        let take = |bytes: &mut &[u8]| -> io::Result<Vec<u8>> {
            if bytes.len() < 4 {
                return Err(bad("truncated"));
            }
            let n = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
            if bytes.len() - 4 < n {
                return Err(bad("truncated"));
            }
            let v = bytes[4..4 + n].to_vec();
            *bytes = &bytes[4 + n..];
            Ok(v)
        };
        let text = |v: Vec<u8>| String::from_utf8(v).map_err(|_| bad("path is not UTF-8"));
        let root = if version >= 2 { text(take(&mut bytes)?)? } else { String::new() };
        let mut files = Vec::new();
        while !bytes.is_empty() {
            let path = text(take(&mut bytes)?)?;
            let manifest = Manifest::decode(&take(&mut bytes)?).map_err(|e| bad(&e.to_string()))?;
            let stamp = if version >= 2 {
                let Some((stamp, rest)) = bytes.split_first_chunk::<24>() else {
                    return Err(bad("truncated"));
                };
                bytes = rest;
                let word = |i: usize| <[u8; 8]>::try_from(&stamp[i..i + 8]).expect("8 bytes");
                FileStamp {
                    mtime_ns: i64::from_le_bytes(word(0)),
                    ctime_ns: i64::from_le_bytes(word(8)),
                    inode: u64::from_le_bytes(word(16)),
                }
            } else {
                FileStamp::default()
            };
            files.push(SnapshotFile { path, manifest, stamp });
        }
        Ok(Snapshot { root, files })
    }

    /// Writes the snapshot durably: temporary file, fsync, rename, directory fsync.
    pub fn write_to(&self, path: &Path) -> io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&self.encode())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    }

    /// Reads a snapshot file.
    pub fn read_from(path: &Path) -> io::Result<Snapshot> {
        Snapshot::decode(&std::fs::read(path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nuage_core::{Address, ManifestEntry};

    fn sample() -> Snapshot {
        let manifest = Manifest {
            entries: vec![ManifestEntry {
                address: Address::of(b"x"),
                key: nuage_core::ChunkKey::from_bytes([1; 32]),
                plain_len: 1,
            }],
            size: 1,
            hash: [9; 32],
            parts: vec![],
        };
        Snapshot {
            root: "/data/photos".into(),
            files: vec![SnapshotFile {
                path: "a/b.jpg".into(),
                manifest,
                stamp: FileStamp { mtime_ns: 1, ctime_ns: -2, inode: 3 },
            }],
        }
    }

    #[test]
    fn round_trips_and_rejects_every_truncation() {
        let s = sample();
        let bytes = s.encode();
        assert_eq!(Snapshot::decode(&bytes).unwrap(), s);
        for cut in 0..bytes.len() {
            assert!(Snapshot::decode(&bytes[..cut]).is_err() || cut == 5 + 4 + s.root.len(), "cut at {cut}");
        }
    }

    #[test]
    fn version_1_still_decodes_without_root_or_stamps() {
        let s = sample();
        let mut v1 = b"nuSN\x01".to_vec();
        let m = s.files[0].manifest.encode();
        v1.extend_from_slice(&(s.files[0].path.len() as u32).to_le_bytes());
        v1.extend_from_slice(s.files[0].path.as_bytes());
        v1.extend_from_slice(&(m.len() as u32).to_le_bytes());
        v1.extend_from_slice(&m);
        let back = Snapshot::decode(&v1).unwrap();
        assert_eq!(back.root, "");
        assert_eq!(back.files[0].manifest, s.files[0].manifest);
        assert!(!back.files[0].stamp.is_known());
    }
}
