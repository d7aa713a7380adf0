//! End-to-end encryption: the account's content key, and manifests sealed with it.
//!
//! In an end-to-end bucket the server never sees a chunk key. The device holds a 32-byte
//! [`ContentKey`] (random and kept in a key file, or derived from a passphrase with
//! Argon2id); from it come
//!
//! - the convergence secret of the bucket's chunks ([`ContentKey::convergence_secret`]), so
//!   that the server cannot even confirm that a known file is stored;
//! - a key id ([`ContentKey::id`]), public, that lets the server refuse a manifest sealed
//!   with another key (a mistyped passphrase) before it is stored;
//! - the key that wraps each version's random [`FileKey`].
//!
//! The file key seals the version's plain manifest. A share link of an end-to-end object
//! carries that one file key in its URL fragment: whoever has the link can open that version
//! and nothing else.
//!
//! # Sealed-manifest encoding, version 1
//!
//! Integers little-endian. What the server stores in place of the manifest:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `b"nuSM"` |
//! | 4 | 1 | version, `1` |
//! | 5 | 3 | reserved, zero |
//! | 8 | 8 | total plaintext size (the server lists it) |
//! | 16 | 16 | key id of the content key |
//! | 32 | 12 | nonce of the wrapped file key |
//! | 44 | 48 | the file key, AES-256-GCM under the wrapping key, then its tag; AAD = bytes 0..32 |
//! | 92 | 4 | chunk count `n` |
//! | 96 | 32 × n | the chunks' addresses, in file order (the server counts references) |
//! | 96 + 32n | 12 | nonce of the body |
//! | 108 + 32n | m + 16 | the plain manifest (`nuMF`, [`crate::manifest`]), AES-256-GCM under the file key, then its tag; AAD = bytes 0..96 + 32n |
//!
//! Opening checks that the addresses and size in the clear are those of the manifest inside,
//! so a server that edits the public part makes the open fail, never a wrong file.
//!
//! Nonces are random: a file key is fresh for every version, but the wrapping key is the
//! account's, and seals many file keys.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::{Address, ConvergenceSecret, Error, Manifest, Result};

/// Magic bytes of a sealed manifest.
pub const MAGIC: [u8; 4] = *b"nuSM";
/// The sealed-manifest version this build writes.
pub const VERSION: u8 = 1;
const WRAP_AAD_LEN: usize = 32;
const COUNT_AT: usize = 92;
const ADDRESSES_AT: usize = 96;
const TAG_LEN: usize = 16;

/// Length of a content key's public id.
pub const KEY_ID_LEN: usize = 16;

fn aead(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte AES-256 key"))
}

fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).expect("the system's random source");
    out
}

/// The account's end-to-end key. It never leaves the device.
#[derive(Clone, PartialEq, Eq)]
pub struct ContentKey([u8; 32]);

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ContentKey(id {})", hex::encode(self.id()))
    }
}

impl ContentKey {
    /// Wraps 32 key bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        ContentKey(bytes)
    }

    /// A new random key.
    pub fn random() -> Self {
        ContentKey(random())
    }

    /// The key bytes (for the key file).
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key derived from a passphrase: Argon2id, 64 MiB, 3 passes, with a salt derived
    /// from `salt_context` (the account name), so that every device of the account derives
    /// the same key without asking the server for anything.
    pub fn from_passphrase(passphrase: &str, salt_context: &str) -> Result<Self> {
        let salt = blake3::derive_key("nuage e2e passphrase salt v1", salt_context.as_bytes());
        let params = argon2::Params::new(64 * 1024, 3, 1, Some(32)).expect("valid Argon2 parameters");
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = [0u8; 32];
        argon
            .hash_password_into(passphrase.as_bytes(), &salt[..16], &mut out)
            .map_err(|e| Error::Crypto(format!("argon2: {e}")))?;
        Ok(ContentKey(out))
    }

    /// The public id of this key: it names the key without revealing it.
    pub fn id(&self) -> [u8; KEY_ID_LEN] {
        let full = blake3::derive_key("nuage e2e key id v1", &self.0);
        full[..KEY_ID_LEN].try_into().expect("16 bytes")
    }

    /// The convergence secret of end-to-end chunks: only devices can derive it.
    pub fn convergence_secret(&self) -> ConvergenceSecret {
        ConvergenceSecret::from_bytes(blake3::derive_key("nuage e2e convergence v1", &self.0))
    }

    fn wrapping_key(&self) -> [u8; 32] {
        blake3::derive_key("nuage e2e file-key wrap v1", &self.0)
    }
}

/// The random key of one sealed version; a share link carries it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FileKey([u8; 32]);

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileKey(..)")
    }
}

impl FileKey {
    /// Wraps 32 key bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        FileKey(bytes)
    }

    /// The key bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// What the server may read of a sealed manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedHeader {
    /// Total plaintext size.
    pub size: u64,
    /// Id of the content key that sealed it.
    pub key_id: [u8; KEY_ID_LEN],
    /// The chunks' addresses, in file order.
    pub addresses: Vec<Address>,
}

/// Whether these bytes are a sealed manifest (rather than a plain one).
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// Seals `manifest` under a fresh file key wrapped with `key`.
pub fn seal_manifest(key: &ContentKey, manifest: &Manifest) -> (Vec<u8>, FileKey) {
    let file_key = FileKey(random());
    let inner = manifest.encode();
    let n = manifest.entries.len();
    let mut out = Vec::with_capacity(ADDRESSES_AT + 32 * n + NONCE_LEN + inner.len() + TAG_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, 0, 0, 0]);
    out.extend_from_slice(&manifest.size.to_le_bytes());
    out.extend_from_slice(&key.id());
    let wrap_nonce: [u8; NONCE_LEN] = random();
    let mut wrapped = file_key.0.to_vec();
    aead(&key.wrapping_key())
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(wrap_nonce),
            Aad::from(&out[..WRAP_AAD_LEN]),
            &mut wrapped,
        )
        .expect("AES-GCM seal of 32 bytes");
    out.extend_from_slice(&wrap_nonce);
    out.extend_from_slice(&wrapped);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    for e in &manifest.entries {
        out.extend_from_slice(e.address.as_bytes());
    }
    let body_nonce: [u8; NONCE_LEN] = random();
    let aad_end = out.len();
    out.extend_from_slice(&body_nonce);
    let mut body = inner;
    aead(&file_key.0)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(body_nonce),
            Aad::from(&out[..aad_end]),
            &mut body,
        )
        .expect("AES-GCM seal of a manifest");
    out.extend_from_slice(&body);
    (out, file_key)
}

/// Reads the public part of a sealed manifest, checking its layout.
pub fn read_header(bytes: &[u8]) -> Result<SealedHeader> {
    let bad = |m: &str| Error::MalformedManifest(format!("sealed manifest: {m}"));
    if bytes.len() < ADDRESSES_AT {
        return Err(bad("truncated header"));
    }
    if bytes[..4] != MAGIC {
        return Err(bad("bad magic"));
    }
    if bytes[4] != VERSION {
        return Err(bad(&format!("unsupported version {}", bytes[4])));
    }
    if bytes[5..8] != [0, 0, 0] {
        return Err(bad("reserved bytes are not zero"));
    }
    let size = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let key_id = bytes[16..32].try_into().expect("16 bytes");
    let n = u32::from_le_bytes(bytes[COUNT_AT..ADDRESSES_AT].try_into().expect("4 bytes")) as usize;
    if n > crate::manifest::MAX_ENTRIES {
        return Err(bad("too many entries"));
    }
    let body_at = ADDRESSES_AT + 32 * n;
    // The body holds at least a plain manifest header (52 bytes), a nonce and a tag.
    if bytes.len() < body_at + NONCE_LEN + 52 + TAG_LEN {
        return Err(bad("truncated"));
    }
    let addresses = bytes[ADDRESSES_AT..body_at]
        .chunks_exact(32)
        .map(|a| Address::from_bytes(a.try_into().expect("32 bytes")))
        .collect();
    Ok(SealedHeader { size, key_id, addresses })
}

/// Unwraps the file key of a sealed manifest with the account's content key.
pub fn unwrap_file_key(key: &ContentKey, bytes: &[u8]) -> Result<FileKey> {
    let header = read_header(bytes)?;
    if header.key_id != key.id() {
        return Err(Error::Crypto(format!(
            "sealed with key {}, not with this key ({})",
            hex::encode(header.key_id),
            hex::encode(key.id())
        )));
    }
    let nonce: [u8; NONCE_LEN] = bytes[32..44].try_into().expect("12 bytes");
    let mut wrapped = bytes[44..COUNT_AT].to_vec();
    let plain = aead(&key.wrapping_key())
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(&bytes[..WRAP_AAD_LEN]), &mut wrapped)
        .map_err(|_| Error::Crypto("the file key does not unwrap with this content key".into()))?;
    Ok(FileKey(plain.try_into().expect("32-byte file key")))
}

/// Opens a sealed manifest with its file key, and checks that its public part tells the truth.
pub fn open_manifest(file_key: &FileKey, bytes: &[u8]) -> Result<Manifest> {
    let header = read_header(bytes)?;
    let aad_end = ADDRESSES_AT + 32 * header.addresses.len();
    let nonce: [u8; NONCE_LEN] = bytes[aad_end..aad_end + NONCE_LEN].try_into().expect("12 bytes");
    let mut body = bytes[aad_end + NONCE_LEN..].to_vec();
    let plain = aead(&file_key.0)
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(&bytes[..aad_end]), &mut body)
        .map_err(|_| Error::Crypto("the manifest does not open with this file key".into()))?;
    let manifest = Manifest::decode(plain)?;
    let inner: Vec<Address> = manifest.entries.iter().map(|e| e.address).collect();
    if manifest.size != header.size || inner != header.addresses {
        return Err(Error::MalformedManifest(
            "sealed manifest: public part differs from the sealed one".into(),
        ));
    }
    Ok(manifest)
}

/// The chunk addresses of a stored manifest, plain or sealed, in file order.
pub fn manifest_addresses(bytes: &[u8]) -> Result<Vec<Address>> {
    if is_sealed(bytes) {
        Ok(read_header(bytes)?.addresses)
    } else {
        Ok(Manifest::decode(bytes)?.entries.iter().map(|e| e.address).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChunkKey, ManifestEntry};

    fn manifest() -> Manifest {
        let entries = (0..3u8)
            .map(|i| ManifestEntry {
                address: Address::from_bytes([i; 32]),
                key: ChunkKey::from_bytes([i + 100; 32]),
                plain_len: 10 + u32::from(i),
            })
            .collect();
        Manifest { entries, size: 33, hash: [7; 32], parts: vec![] }
    }

    #[test]
    fn seal_and_open() {
        let key = ContentKey::from_bytes([1; 32]);
        let (sealed, file_key) = seal_manifest(&key, &manifest());
        assert!(is_sealed(&sealed));
        let header = read_header(&sealed).unwrap();
        assert_eq!(header.size, 33);
        assert_eq!(header.key_id, key.id());
        assert_eq!(
            manifest_addresses(&sealed).unwrap(),
            manifest().entries.iter().map(|e| e.address).collect::<Vec<_>>()
        );
        assert_eq!(unwrap_file_key(&key, &sealed).unwrap(), file_key);
        assert_eq!(open_manifest(&file_key, &sealed).unwrap(), manifest());
        // The chunk keys are not in the clear.
        assert!(!sealed.windows(32).any(|w| w == [100; 32]));
    }

    #[test]
    fn wrong_keys_and_edits_fail() {
        let key = ContentKey::from_bytes([1; 32]);
        let (sealed, file_key) = seal_manifest(&key, &manifest());
        assert!(unwrap_file_key(&ContentKey::from_bytes([2; 32]), &sealed).is_err());
        assert!(open_manifest(&FileKey::from_bytes([0; 32]), &sealed).is_err());
        // Any edited byte of the public part or the body fails to open, never opens wrong.
        for i in 0..sealed.len() {
            let mut edited = sealed.clone();
            edited[i] ^= 1;
            if let Ok(m) = open_manifest(&file_key, &edited) {
                panic!("byte {i} edited and still opened: {m:?}");
            }
        }
        for cut in [0, 10, 95, sealed.len() - 1] {
            assert!(open_manifest(&file_key, &sealed[..cut]).is_err());
        }
    }

    #[test]
    fn passphrase_keys_are_stable_and_salted() {
        let a = ContentKey::from_passphrase("correct horse", "alice").unwrap();
        assert_eq!(a, ContentKey::from_passphrase("correct horse", "alice").unwrap());
        assert_ne!(a, ContentKey::from_passphrase("correct horse", "bob").unwrap());
        assert_ne!(a, ContentKey::from_passphrase("correct horsf", "alice").unwrap());
        assert_ne!(a.convergence_secret().as_bytes(), a.as_bytes());
    }
}
