//! The manifest: the ordered list of chunks that makes one file version.
//!
//! # Encoding
//!
//! Integers little-endian. Version 1, a version written whole:
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
//! Version 2, a version assembled from separately uploaded parts (an S3 multipart upload)
//! without reading them again: the whole-file BLAKE3 cannot be derived from the parts'
//! hashes (BLAKE3's tree binds each chunk to its offset, unknown while a part uploads), so
//! the content hash is the [`parts_hash`] of the parts' lengths and BLAKE3s, and the
//! manifest keeps the parts to check it by ([`ContentHasher`]):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0..48 | | as version 1, with version `2` and the [`parts_hash`] at 16 |
//! | 48 | 4 | chunk count `n` |
//! | 52 | 4 | part count `p`, 2 to [`MAX_PARTS`] |
//! | 56 | 68 × n | entries, as version 1 |
//! | 56 + 68n | 36 × p | parts: chunk count (u32), BLAKE3 of the part's plaintext (32) |
//!
//! A version of one part is written as version 1: that part's BLAKE3 is the whole file's.
//!
//! Decoding checks every field and the sums: a manifest that is truncated, longer than its
//! count says, longer than [`MAX_ENTRIES`], whose lengths do not add up to the total, or
//! (version 2) whose parts do not cover its entries or do not hash to its content hash is an
//! error, never a panic.

use crate::chunk::MAX_CHUNK_LEN;
use crate::{Address, ChunkKey, Error, Result};

/// Magic bytes of an encoded manifest.
pub const MAGIC: [u8; 4] = *b"nuMF";
/// The manifest version of a version written whole.
pub const VERSION: u8 = 1;
/// The manifest version of a version assembled from parts.
pub const VERSION_PARTS: u8 = 2;
const HEADER_LEN: usize = 52;
const HEADER_LEN_PARTS: usize = 56;
const ENTRY_LEN: usize = 68;
const PART_LEN: usize = 36;
/// The most parts a version may be assembled from (S3's limit).
pub const MAX_PARTS: usize = 10_000;
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

/// One part of a version assembled from parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestPart {
    /// How many of the manifest's entries, after the previous parts' ones, are this part's.
    pub chunks: u32,
    /// BLAKE3 of the part's plaintext.
    pub hash: [u8; 32],
}

/// One file version: its chunks in order, its size and its content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The chunks, in file order.
    pub entries: Vec<ManifestEntry>,
    /// Total plaintext size: the sum of the entries' lengths.
    pub size: u64,
    /// The content hash (the object's BLAKE3 ETag): BLAKE3 of the whole plaintext, or for
    /// a version assembled from parts the [`parts_hash`] of [`Manifest::parts`].
    pub hash: [u8; 32],
    /// The parts the version was assembled from, two or more; none for a version written
    /// whole.
    pub parts: Vec<ManifestPart>,
}

/// The content hash of a version assembled from parts of these lengths and BLAKE3s: a
/// BLAKE3 in its own derive-key context over the part count and each part's length and
/// hash, so that it never equals the whole-file hash of any content.
pub fn parts_hash(parts: impl ExactSizeIterator<Item = (u64, [u8; 32])>) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("nuage 2026-12 content hash of parts");
    h.update(&(parts.len() as u64).to_le_bytes());
    for (len, hash) in parts {
        h.update(&len.to_le_bytes());
        h.update(&hash);
    }
    *h.finalize().as_bytes()
}

/// Computes a content hash as the bytes stream by, for a version written whole (no
/// layout) or assembled from parts of the given lengths; [`ContentHasher::finalize`] equals
/// the manifest's `hash` when the bytes are its content.
#[derive(Debug, Clone)]
pub struct ContentHasher {
    layout: Vec<u64>,
    done: Vec<(u64, [u8; 32])>,
    part: blake3::Hasher,
    /// Bytes of the current part taken so far.
    at: u64,
    /// Bytes past the layout's end (the content is then not the one described).
    over: u64,
}

impl ContentHasher {
    /// For content in parts of these lengths (empty or one part: a whole-file BLAKE3).
    pub fn new(layout: Vec<u64>) -> ContentHasher {
        let layout = if layout.len() < 2 { Vec::new() } else { layout };
        ContentHasher { layout, done: Vec::new(), part: blake3::Hasher::new(), at: 0, over: 0 }
    }

    /// For the content of `manifest`.
    pub fn of(manifest: &Manifest) -> ContentHasher {
        ContentHasher::new(manifest.part_lengths())
    }

    /// Takes the next bytes of the content.
    pub fn update(&mut self, mut bytes: &[u8]) -> &mut Self {
        if self.layout.is_empty() {
            self.part.update(bytes);
            return self;
        }
        while !bytes.is_empty() {
            let Some(&len) = self.layout.get(self.done.len()) else {
                self.over += bytes.len() as u64;
                return self;
            };
            let take = (len - self.at).min(bytes.len() as u64) as usize;
            self.part.update(&bytes[..take]);
            self.at += take as u64;
            bytes = &bytes[take..];
            self.close_full_parts();
        }
        self
    }

    fn close_full_parts(&mut self) {
        while let Some(&len) = self.layout.get(self.done.len())
            && self.at == len
        {
            let hash = *std::mem::take(&mut self.part).finalize().as_bytes();
            self.done.push((len, hash));
            self.at = 0;
        }
    }

    /// The content hash of what was taken (content longer or shorter than the layout
    /// gets a hash no manifest has).
    pub fn finalize(&self) -> [u8; 32] {
        if self.layout.is_empty() {
            return *self.part.finalize().as_bytes();
        }
        let mut me = self.clone();
        me.close_full_parts();
        if me.done.len() < me.layout.len() || me.over > 0 {
            // Short or long: hash what there is with the layout it does not match.
            let mut h = blake3::Hasher::new_derive_key("nuage 2026-12 content not in its layout");
            h.update(&me.over.to_le_bytes());
            h.update(&(me.done.len() as u64).to_le_bytes());
            return *h.finalize().as_bytes();
        }
        parts_hash(me.done.into_iter())
    }
}

/// A parts layout in text, for a header: `LEN` or `LENxCOUNT` runs, comma separated
/// (`8388608x12,1048576`): uploaders send equal parts, so the text is short.
pub fn layout_to_text(layout: &[u64]) -> String {
    let mut runs: Vec<(u64, usize)> = Vec::new();
    for &len in layout {
        match runs.last_mut() {
            Some((l, n)) if *l == len => *n += 1,
            _ => runs.push((len, 1)),
        }
    }
    let text: Vec<String> =
        runs.iter().map(|&(l, n)| if n == 1 { l.to_string() } else { format!("{l}x{n}") }).collect();
    text.join(",")
}

/// Parses [`layout_to_text`]'s form; none when it is malformed or longer than [`MAX_PARTS`].
pub fn layout_from_text(text: &str) -> Option<Vec<u64>> {
    let mut layout = Vec::new();
    for run in text.split(',') {
        let (len, count) = match run.trim().split_once('x') {
            Some((l, n)) => (l.parse::<u64>().ok()?, n.parse::<usize>().ok()?),
            None => (run.trim().parse::<u64>().ok()?, 1),
        };
        if count == 0 || count > MAX_PARTS - layout.len() {
            return None;
        }
        layout.extend(std::iter::repeat_n(len, count));
    }
    Some(layout)
}

impl Manifest {
    /// The versioned binary encoding.
    pub fn encode(&self) -> Vec<u8> {
        let parted = !self.parts.is_empty();
        let mut out = Vec::with_capacity(
            HEADER_LEN_PARTS + ENTRY_LEN * self.entries.len() + PART_LEN * self.parts.len(),
        );
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[if parted { VERSION_PARTS } else { VERSION }, 0, 0, 0]);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        if parted {
            out.extend_from_slice(&(self.parts.len() as u32).to_le_bytes());
        }
        for e in &self.entries {
            out.extend_from_slice(e.address.as_bytes());
            out.extend_from_slice(e.key.as_bytes());
            out.extend_from_slice(&e.plain_len.to_le_bytes());
        }
        for p in &self.parts {
            out.extend_from_slice(&p.chunks.to_le_bytes());
            out.extend_from_slice(&p.hash);
        }
        out
    }

    /// The version written from `parts` in order (each the manifest of one part, written
    /// whole): their entries joined, no byte read again. One part is the version itself.
    pub fn assemble(parts: &[Manifest]) -> Manifest {
        if let [one] = parts {
            return one.clone();
        }
        let entries: Vec<ManifestEntry> = parts.iter().flat_map(|p| p.entries.iter().copied()).collect();
        let size = parts.iter().map(|p| p.size).sum();
        let hash = parts_hash(parts.iter().map(|p| (p.size, p.hash)));
        let parts =
            parts.iter().map(|p| ManifestPart { chunks: p.entries.len() as u32, hash: p.hash }).collect();
        Manifest { entries, size, hash, parts }
    }

    /// The plaintext lengths of the parts, in order; empty for a version written whole.
    pub fn part_lengths(&self) -> Vec<u64> {
        let mut at = 0usize;
        self.parts
            .iter()
            .map(|p| {
                let end = at + p.chunks as usize;
                let len = self.entries[at.min(end)..end.min(self.entries.len())]
                    .iter()
                    .map(|e| u64::from(e.plain_len))
                    .sum();
                at = end;
                len
            })
            .collect()
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
        let parted = match bytes[4] {
            VERSION => false,
            VERSION_PARTS => true,
            v => return Err(Error::MalformedManifest(format!("unsupported version {v}"))),
        };
        if bytes[5..8] != [0, 0, 0] {
            return Err(bad("reserved bytes are not zero"));
        }
        let size = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        let hash: [u8; 32] = bytes[16..48].try_into().expect("32 bytes");
        let count = u32::from_le_bytes(bytes[48..52].try_into().expect("4 bytes")) as usize;
        if count > MAX_ENTRIES {
            return Err(Error::MalformedManifest(format!("{count} entries, more than {MAX_ENTRIES}")));
        }
        let (part_count, body) = if parted {
            if bytes.len() < HEADER_LEN_PARTS {
                return Err(bad("truncated header"));
            }
            let p = u32::from_le_bytes(bytes[52..56].try_into().expect("4 bytes")) as usize;
            if !(2..=MAX_PARTS).contains(&p) {
                return Err(Error::MalformedManifest(format!("{p} parts, not 2 to {MAX_PARTS}")));
            }
            (p, &bytes[HEADER_LEN_PARTS..])
        } else {
            (0, &bytes[HEADER_LEN..])
        };
        if body.len() != count * ENTRY_LEN + part_count * PART_LEN {
            return Err(Error::MalformedManifest(format!(
                "{count} entries and {part_count} parts need {} bytes, found {}",
                count * ENTRY_LEN + part_count * PART_LEN,
                body.len()
            )));
        }
        let (body, part_bytes) = body.split_at(count * ENTRY_LEN);
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
        let parts: Vec<ManifestPart> = part_bytes
            .chunks_exact(PART_LEN)
            .map(|raw| ManifestPart {
                chunks: u32::from_le_bytes(raw[..4].try_into().expect("4 bytes")),
                hash: raw[4..].try_into().expect("32 bytes"),
            })
            .collect();
        let covered: u64 = parts.iter().map(|p| u64::from(p.chunks)).sum();
        if parted && covered != count as u64 {
            return Err(Error::MalformedManifest(format!("parts cover {covered} entries of {count}")));
        }
        let manifest = Manifest { entries, size, hash, parts };
        if parted {
            let lens = manifest.part_lengths();
            if parts_hash(lens.into_iter().zip(manifest.parts.iter().map(|p| p.hash))) != manifest.hash {
                return Err(bad("the parts do not hash to the content hash"));
            }
        }
        Ok(manifest)
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
        Manifest { size: lens.iter().map(|&l| u64::from(l)).sum(), hash: [9; 32], entries, parts: vec![] }
    }

    /// A manifest of `parts` (chunk lengths each), with real content behind it.
    fn parted(parts: &[&[u32]]) -> (Manifest, Vec<u8>) {
        let mut content = Vec::new();
        let mut manifests = Vec::new();
        let mut i = 0u8;
        for lens in parts {
            let start = content.len();
            for &l in *lens {
                content.extend(std::iter::repeat_n(i, l as usize));
                i = i.wrapping_add(1);
            }
            let mut m = manifest(lens);
            m.hash = *blake3::hash(&content[start..]).as_bytes();
            manifests.push(m);
        }
        (Manifest::assemble(&manifests), content)
    }

    #[test]
    fn parts_round_trip_and_hash_as_content() {
        let (m, content) = parted(&[&[10, 20], &[5], &[], &[7, 7, 7]]);
        assert_eq!(m.parts.len(), 4);
        assert_eq!(m.size, content.len() as u64);
        assert_eq!(m.part_lengths(), vec![30, 5, 0, 21]);
        let bytes = m.encode();
        assert_eq!(bytes[4], VERSION_PARTS);
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        // The content hashes to it however it is cut as it streams.
        for step in [1, 3, 64] {
            let mut h = ContentHasher::of(&m);
            for piece in content.chunks(step) {
                h.update(piece);
            }
            assert_eq!(h.finalize(), m.hash, "step {step}");
        }
        // Not the whole-file BLAKE3, and not the hash of other content or another layout.
        assert_ne!(m.hash, *blake3::hash(&content).as_bytes());
        let mut other = content.clone();
        other[3] ^= 1;
        assert_ne!(ContentHasher::of(&m).update(&other).finalize(), m.hash);
        assert_ne!(ContentHasher::of(&m).update(&content[1..]).finalize(), m.hash);
        assert_ne!(ContentHasher::of(&m).update(&content).update(b"x").finalize(), m.hash);
        assert_ne!(ContentHasher::new(vec![29, 6, 0, 21]).update(&content).finalize(), m.hash);
        // One part is a version written whole.
        let (one, content) = parted(&[&[10, 20]]);
        assert!(one.parts.is_empty());
        assert_eq!(one.hash, *blake3::hash(&content).as_bytes());
        assert_eq!(ContentHasher::of(&one).update(&content).finalize(), one.hash);
    }

    #[test]
    fn parts_decode_rejects_bad_input() {
        let (m, _) = parted(&[&[10, 20], &[5]]);
        let good = m.encode();
        let check = |bytes: &[u8]| assert!(Manifest::decode(bytes).is_err());
        for cut in [53, 55, 56, good.len() - 1] {
            check(&good[..cut]);
        }
        let mut wrong_hash = good.clone();
        wrong_hash[20] ^= 1;
        check(&wrong_hash);
        let mut wrong_part_hash = good.clone();
        let at = good.len() - 1;
        wrong_part_hash[at] ^= 1;
        check(&wrong_part_hash);
        let mut one_part = good.clone();
        one_part[52..56].copy_from_slice(&1u32.to_le_bytes());
        check(&one_part);
        let mut uncovered = m.clone();
        uncovered.parts[1].chunks = 2;
        check(&uncovered.encode());
    }

    #[test]
    fn layout_text_round_trip() {
        for layout in [vec![5u64], vec![8, 8, 8, 3], vec![1, 2, 2, 1], vec![0, 7]] {
            let text = layout_to_text(&layout);
            assert_eq!(layout_from_text(&text), Some(layout));
        }
        assert_eq!(layout_to_text(&[8, 8, 8, 3]), "8x3,3");
        for bad in
            ["", "x", "8x", "8x0", "-1", "8,,8", "8x10001", "1x5000,1x5001", "1,1x18446744073709551615"]
        {
            assert_eq!(layout_from_text(bad), None, "{bad:?}");
        }
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
        bad_version[4] = 3;
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
