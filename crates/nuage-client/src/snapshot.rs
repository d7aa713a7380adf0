//! A snapshot: the files of one ingest and their manifests, kept in a local file.
//!
//! # Encoding, version 1
//!
//! `b"nuSN"`, version byte `1`, then per file: path length (u32 LE), path (UTF-8, relative,
//! `/`-separated), manifest length (u32 LE), manifest ([`nuage_core::Manifest::encode`]).
//! Written to a temporary file, fsynced, then renamed into place, so a crash never leaves a
//! half-written snapshot.

use std::io::{self, Write};
use std::path::Path;

use nuage_core::Manifest;

const MAGIC: &[u8; 4] = b"nuSN";
const VERSION: u8 = 1;

/// One file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// Path relative to the ingested root, `/`-separated.
    pub path: String,
    /// Its chunks.
    pub manifest: Manifest,
}

/// The files of one ingest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// In ingest order.
    pub files: Vec<SnapshotFile>,
}

impl Snapshot {
    /// The encoded snapshot.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        for f in &self.files {
            let m = f.manifest.encode();
            out.extend_from_slice(&(f.path.len() as u32).to_le_bytes());
            out.extend_from_slice(f.path.as_bytes());
            out.extend_from_slice(&(m.len() as u32).to_le_bytes());
            out.extend_from_slice(&m);
        }
        out
    }

    /// Parses an encoded snapshot; bad input is an error, never a panic.
    pub fn decode(mut bytes: &[u8]) -> io::Result<Snapshot> {
        let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, format!("malformed snapshot: {m}"));
        if bytes.len() < 5 || &bytes[..4] != MAGIC || bytes[4] != VERSION {
            return Err(bad("bad header"));
        }
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
        let mut files = Vec::new();
        while !bytes.is_empty() {
            let path = String::from_utf8(take(&mut bytes)?).map_err(|_| bad("path is not UTF-8"))?;
            let manifest = Manifest::decode(&take(&mut bytes)?).map_err(|e| bad(&e.to_string()))?;
            files.push(SnapshotFile { path, manifest });
        }
        Ok(Snapshot { files })
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
