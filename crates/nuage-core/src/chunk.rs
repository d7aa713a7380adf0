//! Convergent encryption of one chunk into its stored form, and back.
//!
//! # Stored-chunk format, version 1
//!
//! What a provider holds for one chunk, byte by byte (integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `b"nuCH"` |
//! | 4 | 1 | format version, `1` |
//! | 5 | 1 | cipher id, `1` = AES-256-GCM |
//! | 6 | 1 | compression id, `0` = none, `1` = zstd frame |
//! | 7 | 1 | reserved, `0` |
//! | 8 | 12 | AES-GCM nonce |
//! | 20 | n | ciphertext of the payload (the plaintext, or its zstd frame) |
//! | 20 + n | 16 | GCM tag |
//!
//! The 20 header bytes are the AEAD's associated data, so a flipped compression id or
//! version fails authentication. The [`Address`] of a chunk is the BLAKE3 hash of all of
//! these bytes. The key is never stored: it lives in the manifest.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::{Address, Error, Result};

/// Magic bytes at the start of every stored chunk.
pub const MAGIC: [u8; 4] = *b"nuCH";
/// The stored-chunk format version this build writes.
pub const FORMAT_VERSION: u8 = 1;
/// Cipher id of AES-256-GCM.
pub const CIPHER_AES_256_GCM: u8 = 1;
/// Length of the stored-chunk header.
pub const HEADER_LEN: usize = 20;
/// Length of the GCM tag that ends every stored chunk.
pub const TAG_LEN: usize = 16;
/// Bytes a stored chunk adds to its payload.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// The largest plaintext a chunk may have (FastCDC's own maximum, 16 MiB). Decompression
/// never produces more than this, whatever a stored chunk claims.
pub const MAX_CHUNK_LEN: usize = 16 << 20;

const COMPRESSION_NONE: u8 = 0;
const COMPRESSION_ZSTD: u8 = 1;

/// The per-account (or per-deployment) secret that chunk keys are derived from.
///
/// Two files with the same content under the same secret give the same chunks, hence
/// deduplication; under different secrets, unrelated chunks. Sharing one secret across
/// accounts widens dedup but lets one account confirm that another holds a given file.
#[derive(Clone)]
pub struct ConvergenceSecret([u8; 32]);

impl ConvergenceSecret {
    /// Wraps 32 secret bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        ConvergenceSecret(bytes)
    }

    /// The secret bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key of a chunk: keyed BLAKE3 of its plaintext under this secret.
    pub fn chunk_key(&self, plaintext: &[u8]) -> ChunkKey {
        ChunkKey(*blake3::keyed_hash(&self.0, plaintext).as_bytes())
    }
}

impl std::fmt::Debug for ConvergenceSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConvergenceSecret(..)")
    }
}

/// The AES-256 key of one chunk, derived from its plaintext. Kept only in manifests.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkKey([u8; 32]);

impl ChunkKey {
    /// Wraps 32 key bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        ChunkKey(bytes)
    }

    /// The key bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A one-way fingerprint of the key, which the server keeps to check that a manifest
    /// gives a chunk the key it was opened with, without keeping the key itself.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("nuage 2026-12 chunk key fingerprint");
        h.update(&self.0);
        *h.finalize().as_bytes()
    }

    fn aead(&self) -> LessSafeKey {
        // AES_256_GCM takes any 32-byte key; this cannot fail.
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("32-byte AES-256 key"))
    }
}

impl std::fmt::Debug for ChunkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChunkKey(..)")
    }
}

/// Whether chunks are compressed before they are encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Store the plaintext as is.
    None,
    /// zstd at this level, kept only when it saves at least 1/32 of the chunk.
    Zstd(i32),
}

impl Default for Compression {
    /// zstd level 1: about 0.5 GB/s per core, and most of the gain on text and binaries.
    fn default() -> Self {
        Compression::Zstd(1)
    }
}

/// How [`seal`] encodes chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealOptions {
    /// Compression applied before encryption.
    pub compression: Compression,
}

/// One chunk in its stored form, with what the manifest needs to find and open it.
#[derive(Debug, Clone)]
pub struct SealedChunk {
    /// BLAKE3 of [`SealedChunk::bytes`].
    pub address: Address,
    /// The key that opens it.
    pub key: ChunkKey,
    /// Length of the plaintext.
    pub plain_len: u32,
    /// The stored bytes: header, ciphertext, tag.
    pub bytes: Vec<u8>,
}

/// Encrypts one chunk of plaintext into its stored form.
///
/// # Panics
///
/// If `plaintext` is longer than [`MAX_CHUNK_LEN`]; the chunker never produces such a chunk.
pub fn seal(secret: &ConvergenceSecret, plaintext: &[u8], options: &SealOptions) -> SealedChunk {
    assert!(plaintext.len() <= MAX_CHUNK_LEN, "chunk larger than MAX_CHUNK_LEN");
    let key = secret.chunk_key(plaintext);
    let compressed = match options.compression {
        Compression::Zstd(level) if !plaintext.is_empty() && worth_compressing(plaintext, level) => {
            compress(plaintext, level).filter(|c| c.len() + plaintext.len() / 32 < plaintext.len())
        }
        _ => None,
    };
    let (payload, compression_id, nonce) = match &compressed {
        // The key is a hash of the plaintext, so one key only ever encrypts one message
        // when that message is the plaintext itself: a fixed all-zero nonce is safe here
        // (convergent encryption, as in Tahoe-LAFS and iCloud), and it makes the stored
        // bytes, hence the address, a pure function of (secret, plaintext).
        None => (plaintext, COMPRESSION_NONE, [0u8; NONCE_LEN]),
        // A compressed payload is *not* a function of the key alone: another zstd level or
        // library version gives other bytes for the same plaintext, and two messages under
        // one (key, nonce) would break GCM. So the nonce is synthetic: derived from the key
        // and the payload (as in SIV), distinct for every distinct payload, and stored in
        // the header so that a browser's WebCrypto can open it.
        Some(c) => (c.as_slice(), COMPRESSION_ZSTD, synthetic_nonce(&key, c)),
    };

    let mut bytes = Vec::with_capacity(OVERHEAD + payload.len());
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&[FORMAT_VERSION, CIPHER_AES_256_GCM, compression_id, 0]);
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(payload);
    let (header, body) = bytes.split_at_mut(HEADER_LEN);
    let tag = key
        .aead()
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&*header), body)
        .expect("AES-GCM seal of a chunk under 64 GiB");
    bytes.extend_from_slice(tag.as_ref());

    SealedChunk { address: Address::of(&bytes), key, plain_len: plaintext.len() as u32, bytes }
}

thread_local! {
    /// One zstd context per thread and level: creating one per chunk cost about 3% of an
    /// ingest of many small files.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Chunks at least this long are probed before they are compressed whole.
const PROBE_FROM: usize = 128 << 10;

/// The probe: this many bytes at each of four places of the chunk.
const PROBE_SLICE: usize = 8 << 10;

/// Whether compressing `plaintext` may save its 1/32: for a chunk of [`PROBE_FROM`] bytes or
/// more, whether four slices of it, spread over it, save a 1/64 between them. Random and
/// already compressed content (photos, video, archives: most of what people store) then
/// costs zstd 4 × 8 KiB per chunk instead of the whole chunk. A chunk whose probe misses
/// the compressible part of it is stored raw, a little larger; its address is then that of
/// the raw form, as for any chunk stored raw.
fn worth_compressing(plaintext: &[u8], level: i32) -> bool {
    let len = plaintext.len();
    if len < PROBE_FROM {
        return true;
    }
    let (mut probed, mut compressed) = (0, 0);
    for n in 0..4 {
        let at = (len - PROBE_SLICE) * n / 3;
        let slice = &plaintext[at..at + PROBE_SLICE];
        probed += slice.len();
        compressed += compress(slice, level).map_or(slice.len(), |c| c.len());
    }
    compressed + probed / 64 < probed
}

fn compress(plaintext: &[u8], level: i32) -> Option<Vec<u8>> {
    COMPRESSOR.with_borrow_mut(|slot| {
        let compressor = match slot {
            Some((l, c)) if *l == level => c,
            _ => &mut slot.insert((level, zstd::bulk::Compressor::new(level).ok()?)).1,
        };
        compressor.compress(plaintext).ok()
    })
}

fn decompress(frame: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with_borrow_mut(|slot| {
        let decompressor = match slot {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        decompressor.decompress(frame, capacity)
    })
}

fn synthetic_nonce(key: &ChunkKey, payload: &[u8]) -> [u8; NONCE_LEN] {
    let nonce_key = blake3::derive_key("nuage 2026-11 stored chunk v1 synthetic nonce", &key.0);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&blake3::keyed_hash(&nonce_key, payload).as_bytes()[..NONCE_LEN]);
    nonce
}

/// The parsed header of a stored chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Format version.
    pub version: u8,
    /// Cipher id.
    pub cipher: u8,
    /// Compression id.
    pub compression: u8,
    /// The AES-GCM nonce.
    pub nonce: [u8; NONCE_LEN],
}

impl ChunkHeader {
    /// Parses and checks the header at the start of `stored`.
    pub fn parse(stored: &[u8]) -> Result<ChunkHeader> {
        if stored.len() < OVERHEAD {
            return Err(Error::MalformedChunk("shorter than header and tag"));
        }
        if stored[..4] != MAGIC {
            return Err(Error::MalformedChunk("bad magic"));
        }
        let (version, cipher, compression, reserved) = (stored[4], stored[5], stored[6], stored[7]);
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedChunk(format!("format version {version}")));
        }
        if cipher != CIPHER_AES_256_GCM {
            return Err(Error::UnsupportedChunk(format!("cipher id {cipher}")));
        }
        if compression > COMPRESSION_ZSTD {
            return Err(Error::UnsupportedChunk(format!("compression id {compression}")));
        }
        if reserved != 0 {
            return Err(Error::MalformedChunk("reserved byte is not zero"));
        }
        if stored.len() - OVERHEAD > MAX_CHUNK_LEN {
            return Err(Error::MalformedChunk("payload larger than the maximum chunk"));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&stored[8..HEADER_LEN]);
        if compression == COMPRESSION_NONE && nonce != [0u8; NONCE_LEN] {
            return Err(Error::MalformedChunk("uncompressed chunk with a non-zero nonce"));
        }
        Ok(ChunkHeader { version, cipher, compression, nonce })
    }
}

/// Decrypts a stored chunk whose plaintext must be `plain_len` bytes long.
///
/// The caller checks the address of `stored` first ([`Address::verify`]) when it fetched the
/// bytes from somewhere untrusted; this function checks the tag and the length.
pub fn open(stored: &[u8], key: &ChunkKey, plain_len: u32) -> Result<Vec<u8>> {
    let plain_len = plain_len as usize;
    if plain_len > MAX_CHUNK_LEN {
        return Err(Error::LengthMismatch { expected: plain_len as u64, actual: 0 });
    }
    let plaintext = open_within(stored, key, plain_len)?;
    if plaintext.len() != plain_len {
        return Err(Error::LengthMismatch { expected: plain_len as u64, actual: plaintext.len() as u64 });
    }
    Ok(plaintext)
}

/// Decrypts a stored chunk whose plaintext length is not known, refusing one longer than
/// `max_len` (capped at [`MAX_CHUNK_LEN`]): how the server learns what a chunk a device sent
/// holds, with the key the device gave.
pub fn open_within(stored: &[u8], key: &ChunkKey, max_len: usize) -> Result<Vec<u8>> {
    let header = ChunkHeader::parse(stored)?;
    let plain_len = max_len.min(MAX_CHUNK_LEN);
    let mut body = stored[HEADER_LEN..].to_vec();
    let payload_len = key
        .aead()
        .open_in_place(
            Nonce::assume_unique_for_key(header.nonce),
            Aad::from(&stored[..HEADER_LEN]),
            &mut body,
        )
        .map_err(|_| Error::Authentication)?
        .len();
    body.truncate(payload_len);
    let plaintext = if header.compression == COMPRESSION_ZSTD {
        // Bounded: zstd refuses to produce more than `plain_len` bytes, so a hostile frame
        // cannot make us allocate past the declared (and capped) length.
        decompress(&body, plain_len)
            .map_err(|_| Error::MalformedChunk("zstd frame does not decode within the declared length"))?
    } else {
        body
    };
    if plaintext.len() > plain_len {
        return Err(Error::LengthMismatch { expected: plain_len as u64, actual: plaintext.len() as u64 });
    }
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secret(b: u8) -> ConvergenceSecret {
        ConvergenceSecret::from_bytes([b; 32])
    }

    const RAW: SealOptions = SealOptions { compression: Compression::None };
    const ZSTD: SealOptions = SealOptions { compression: Compression::Zstd(3) };

    #[test]
    fn empty_chunk_round_trips() {
        for opts in [RAW, ZSTD] {
            let s = seal(&secret(1), b"", &opts);
            assert_eq!(s.bytes.len(), OVERHEAD);
            assert_eq!(open(&s.bytes, &s.key, 0).unwrap(), b"");
        }
    }

    #[test]
    fn compressible_chunk_is_compressed_and_random_one_is_not() {
        let text = b"the same line again and again\n".repeat(1000);
        let s = seal(&secret(1), &text, &ZSTD);
        assert!(s.bytes.len() < text.len() / 4);
        assert_eq!(s.bytes[6], COMPRESSION_ZSTD);
        let mut random = vec![0u8; 10_000];
        rand::RngCore::fill_bytes(
            &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1),
            &mut random,
        );
        let s = seal(&secret(1), &random, &ZSTD);
        assert_eq!(s.bytes.len(), random.len() + OVERHEAD);
        assert_eq!(s.bytes[6], COMPRESSION_NONE);
        // Chunks long enough to be probed first: the same answers, and what is sealed opens.
        let long_text = b"the same line again and again\n".repeat(40_000);
        let s = seal(&secret(1), &long_text, &ZSTD);
        assert_eq!((s.bytes[6], s.bytes.len() < long_text.len() / 4), (COMPRESSION_ZSTD, true));
        assert_eq!(open(&s.bytes, &s.key, long_text.len() as u32).unwrap(), long_text);
        let mut long_random = vec![0u8; 1 << 20];
        rand::RngCore::fill_bytes(
            &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(2),
            &mut long_random,
        );
        let s = seal(&secret(1), &long_random, &ZSTD);
        assert_eq!((s.bytes[6], s.bytes.len()), (COMPRESSION_NONE, long_random.len() + OVERHEAD));
        assert_eq!(open(&s.bytes, &s.key, long_random.len() as u32).unwrap(), long_random);
    }

    #[test]
    fn tampering_with_any_region_is_detected() {
        let text = b"hello convergent world".repeat(100);
        for opts in [RAW, ZSTD] {
            let s = seal(&secret(7), &text, &opts);
            for i in [0, 4, 5, 6, 7, 8, 19, 20, s.bytes.len() / 2, s.bytes.len() - 1] {
                let mut bad = s.bytes.clone();
                bad[i] ^= 0x40;
                assert!(open(&bad, &s.key, text.len() as u32).is_err(), "flip at {i} accepted");
            }
        }
    }

    #[test]
    fn wrong_key_or_length_is_an_error() {
        let s = seal(&secret(1), b"abc", &RAW);
        assert_eq!(open(&s.bytes, &secret(2).chunk_key(b"abc"), 3), Err(Error::Authentication));
        assert!(matches!(open(&s.bytes, &s.key, 4), Err(Error::LengthMismatch { .. })));
        assert!(matches!(open(&s.bytes[..10], &s.key, 3), Err(Error::MalformedChunk(_))));
    }

    #[test]
    fn raw_and_compressed_forms_of_one_plaintext_use_distinct_nonces() {
        let text = b"abcabcabc".repeat(500);
        let raw = seal(&secret(1), &text, &RAW);
        let z1 = seal(&secret(1), &text, &SealOptions { compression: Compression::Zstd(1) });
        let z19 = seal(&secret(1), &text, &SealOptions { compression: Compression::Zstd(19) });
        assert_eq!(raw.key, z1.key);
        assert_ne!(raw.bytes[8..20], z1.bytes[8..20]);
        if z1.bytes != z19.bytes {
            assert_ne!(z1.bytes[8..20], z19.bytes[8..20]);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn seal_open_round_trip(data in proptest::collection::vec(any::<u8>(), 0..20_000), zstd in any::<bool>(), s in any::<u8>()) {
            let opts = if zstd { ZSTD } else { RAW };
            let sealed = seal(&secret(s), &data, &opts);
            prop_assert!(sealed.address.verify(&sealed.bytes).is_ok());
            prop_assert_eq!(open(&sealed.bytes, &sealed.key, data.len() as u32).unwrap(), data);
        }

        #[test]
        fn convergence(data in proptest::collection::vec(any::<u8>(), 1..5_000), a in any::<u8>(), b in any::<u8>()) {
            let one = seal(&secret(a), &data, &ZSTD);
            let again = seal(&secret(a), &data, &ZSTD);
            prop_assert_eq!(one.address, again.address);
            prop_assert_eq!(one.key, again.key);
            if a != b {
                let other = seal(&secret(b), &data, &ZSTD);
                prop_assert_ne!(one.address, other.address);
                prop_assert_ne!(one.key, other.key);
            }
        }
    }
}
