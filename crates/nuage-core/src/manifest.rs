//! The manifest: the ordered list of chunks that makes one file version.
//!
//! # Encoding, version 1
//!
//! Integers little-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `b"nuMF"` |
//! | 4 | 1 | version, `1` |
//! | 5 | 3 | reserved, zero |
//! | 8 | 8 | total plaintext size |
//! | 16 | 32 | BLAKE3 of the whole plaintext |
//! | 48 | 4 | chunk count `n` |
//! | 52 | 68 × n | entries: address (32), chunk key (32), plaintext length (u32) |
//!
//! Decoding checks every field and the sums: a manifest that is truncated, longer than its
//! count says, longer than [`MAX_ENTRIES`], or whose lengths do not add up to the total is an
//! error, never a panic.

use crate::chunk::MAX_CHUNK_LEN;
use crate::{Address, ChunkKey, Error, Result};

/// Magic bytes of an encoded manifest.
pub const MAGIC: [u8; 4] = *b"nuMF";
/// The manifest version this build writes.
pub const VERSION: u8 = 1;
const HEADER_LEN: usize = 52;
const ENTRY_LEN: usize = 68;
/// The most entries a manifest may have: 2^24 chunks, 4 TiB at the default 256 KiB minimum.
pub const MAX_ENTRIES: usize = 1 << 24;

/// One chunk of a file version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Where the stored chunk is.
    pub address: Address,
    /// The key that opens it.
    pub key: ChunkKey,
    /// Its plaintext length.
    pub plain_len: u32,
}

/// One file version: its chunks in order, its size and its whole-file hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The chunks, in file order.
    pub entries: Vec<ManifestEntry>,
    /// Total plaintext size: the sum of the entries' lengths.
    pub size: u64,
    /// BLAKE3 of the whole plaintext (the object's ETag).
    pub hash: [u8; 32],
}

impl Manifest {
    /// The versioned binary encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + ENTRY_LEN * self.entries.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[VERSION, 0, 0, 0]);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(e.address.as_bytes());
            out.extend_from_slice(e.key.as_bytes());
            out.extend_from_slice(&e.plain_len.to_le_bytes());
        }
        out
    }

    /// Parses and checks an encoded manifest.
    pub fn decode(bytes: &[u8]) -> Result<Manifest> {
        let bad = |m: &str| Error::MalformedManifest(m.to_owned());
        if bytes.len() < HEADER_LEN {
            return Err(bad("truncated header"));
        }
        if bytes[..4] != MAGIC {
            return Err(bad("bad magic"));
        }
        if bytes[4] != VERSION {
            return Err(Error::MalformedManifest(format!("unsupported version {}", bytes[4])));
        }
        if bytes[5..8] != [0, 0, 0] {
            return Err(bad("reserved bytes are not zero"));
        }
        let size = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        let hash: [u8; 32] = bytes[16..48].try_into().expect("32 bytes");
        let count = u32::from_le_bytes(bytes[48..52].try_into().expect("4 bytes")) as usize;
        if count > MAX_ENTRIES {
            return Err(Error::MalformedManifest(format!("{count} entries, more than {MAX_ENTRIES}")));
        }
        let body = &bytes[HEADER_LEN..];
        if body.len() != count * ENTRY_LEN {
            return Err(Error::MalformedManifest(format!(
                "{count} entries need {} bytes, found {}",
                count * ENTRY_LEN,
                body.len()
            )));
        }
        let mut entries = Vec::with_capacity(count);
        let mut sum = 0u64;
        for raw in body.chunks_exact(ENTRY_LEN) {
            let plain_len = u32::from_le_bytes(raw[64..68].try_into().expect("4 bytes"));
            if plain_len == 0 || plain_len as usize > MAX_CHUNK_LEN {
                return Err(Error::MalformedManifest(format!("chunk length {plain_len} out of range")));
            }
            sum += u64::from(plain_len);
            entries.push(ManifestEntry {
                address: Address::from_bytes(raw[..32].try_into().expect("32 bytes")),
                key: ChunkKey::from_bytes(raw[32..64].try_into().expect("32 bytes")),
                plain_len,
            });
        }
        if sum != size {
            return Err(Error::MalformedManifest(format!(
                "chunk lengths add up to {sum}, header says {size}"
            )));
        }
        Ok(Manifest { entries, size, hash })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(i: u8, len: u32) -> ManifestEntry {
        ManifestEntry {
            address: Address::from_bytes([i; 32]),
            key: ChunkKey::from_bytes([i ^ 0xff; 32]),
            plain_len: len,
        }
    }

    fn manifest(lens: &[u32]) -> Manifest {
        let entries: Vec<_> = lens.iter().enumerate().map(|(i, &l)| entry(i as u8, l)).collect();
        Manifest { size: lens.iter().map(|&l| u64::from(l)).sum(), hash: [9; 32], entries }
    }

    #[test]
    fn decode_rejects_bad_input() {
        let good = manifest(&[10, 20, 30]).encode();
        let check = |bytes: &[u8], ok: bool| assert_eq!(Manifest::decode(bytes).is_ok(), ok);
        check(&good, true);
        check(&manifest(&[]).encode(), true);
        for cut in [0, 3, 51, 52, good.len() - 1] {
            check(&good[..cut], false);
        }
        let mut longer = good.clone();
        longer.push(0);
        check(&longer, false);
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        check(&bad_magic, false);
        let mut bad_version = good.clone();
        bad_version[4] = 2;
        check(&bad_version, false);
        let mut bad_size = good.clone();
        bad_size[8] ^= 1;
        check(&bad_size, false);
        let mut huge_count = good.clone();
        huge_count[48..52].copy_from_slice(&u32::MAX.to_le_bytes());
        check(&huge_count, false);
        check(&manifest(&[10, 0]).encode(), false);
        check(&manifest(&[(MAX_CHUNK_LEN + 1) as u32]).encode(), false);
    }

    proptest! {
        #[test]
        fn round_trip(lens in proptest::collection::vec(1u32..=MAX_CHUNK_LEN as u32, 0..50), hash in any::<[u8; 32]>()) {
            let mut m = manifest(&lens);
            m.hash = hash;
            prop_assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Manifest::decode(&bytes);
        }
    }
}
