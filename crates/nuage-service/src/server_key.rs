//! The server's key for S3 access keys ([`ServerKey`]): a file outside the database
//! (`access_key_file`) of 32 bytes, made once (written whole under another name, linked
//! into place, mode 0600) and read once by `Nuage::open`. It seals each secret with
//! AES-256-GCM under a key derived from the file, binding a header, the key's id and its
//! account as associated data; the header names the file by a fingerprint, so that a server
//! with another file says so.

use std::io::{Read, Write};
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::error::{ServiceError, ServiceResult};

/// The first byte of a sealed secret: its format.
const SEALED_V1: u8 = 1;
/// Bytes of the server key's fingerprint in a sealed secret.
const FINGERPRINT_LEN: usize = 8;

/// The server's key for access keys, read from its file.
pub struct ServerKey {
    key: LessSafeKey,
    fingerprint: [u8; FINGERPRINT_LEN],
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKey").field("fingerprint", &hex::encode(self.fingerprint)).finish()
    }
}

/// The associated data of a sealed secret: a label, the header, the account and the id.
fn associated(header: &[u8], id: &str, account_id: i64) -> Vec<u8> {
    let mut aad = b"nuage access key v1\0".to_vec();
    aad.extend_from_slice(header);
    aad.extend_from_slice(&account_id.to_le_bytes());
    aad.extend_from_slice(id.as_bytes());
    aad
}

impl ServerKey {
    /// Reads the key file at `path`, or makes it when there is none and `create` says so;
    /// otherwise a missing file is an error that says where it comes from.
    pub fn load(path: &Path, create: bool) -> anyhow::Result<ServerKey> {
        use anyhow::Context;
        let bytes = match read_key_file(path) {
            Err(e) if create && e.kind() == std::io::ErrorKind::NotFound => {
                make_key_file(path).with_context(|| format!("making the access-key file {}", path.display()))?
            }
            read => read.with_context(|| {
                format!(
                    "reading the access-key file {} (`access_key_file`; `nuage serve` makes it when it first starts)",
                    path.display()
                )
            })?,
        };
        Ok(ServerKey::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8; 32]) -> ServerKey {
        let fingerprint = blake3::derive_key("nuage access-key file fingerprint", bytes)[..FINGERPRINT_LEN]
            .try_into()
            .expect("8 bytes");
        // The file's bytes are not the AES key itself: a key derived from them is.
        let aes = blake3::derive_key("nuage access-key sealing key v1", bytes);
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &aes).expect("a 32-byte key"));
        ServerKey { key, fingerprint }
    }

    pub(crate) fn seal(&self, id: &str, account_id: i64, secret: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("a random source");
        let mut out = vec![SEALED_V1];
        out.extend_from_slice(&self.fingerprint);
        let aad = associated(&out, id, account_id);
        let mut body = secret.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_slice()),
                &mut body,
            )
            .expect("sealing a short secret");
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        out
    }

    pub(crate) fn open(&self, id: &str, account_id: i64, sealed: &[u8]) -> ServiceResult<String> {
        let corrupt =
            || ServiceError::internal("access key", format!("the sealed secret of {id} does not open"));
        if sealed.len() < 1 + FINGERPRINT_LEN + NONCE_LEN || sealed[0] != SEALED_V1 {
            return Err(corrupt());
        }
        let (header, rest) = sealed.split_at(1 + FINGERPRINT_LEN);
        if header[1..] != self.fingerprint {
            return Err(ServiceError::internal(
                "access key",
                format!(
                    "the secret of {id} was sealed with another access-key file than this server's: every \
                     server of one database must read the same `access_key_file`"
                ),
            ));
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| corrupt())?;
        let aad = associated(header, id, account_id);
        let mut body = body.to_vec();
        let plain =
            self.key.open_in_place(nonce, Aad::from(aad.as_slice()), &mut body).map_err(|_| corrupt())?;
        String::from_utf8(plain.to_vec()).map_err(|_| corrupt())
    }
}

/// Reads a key file: a regular file (a link to one is followed: secret volumes are links)
/// of exactly 32 bytes, read no further; one that others than its owner may read is warned
/// about.
fn read_key_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    if !meta.is_file() {
        return Err(invalid("not a regular file"));
    }
    #[cfg(unix)]
    if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077 != 0 {
        tracing::warn!(
            "the access-key file {} can be read by others than its owner: chmod 600 it",
            path.display()
        );
    }
    let mut bytes = Vec::with_capacity(33);
    file.take(33).read_to_end(&mut bytes)?;
    bytes.try_into().map_err(|_| invalid("an access-key file holds exactly 32 bytes"))
}

/// Makes a new key file at `path`: written whole and synced under another name, then linked
/// into place (which fails if the name exists: another process made one meanwhile, and its
/// key is the one), then the folder synced, so that a crash leaves the whole file or none.
fn make_key_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key).expect("a random source");
    let temp = dir.join(format!(".access-keys.{:016x}.tmp", rand::random::<u64>()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temp).and_then(|mut f| f.write_all(&key).and_then(|()| f.sync_all()));
    let linked = written.and_then(|()| std::fs::hard_link(&temp, path));
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            std::fs::File::open(dir)?.sync_all()?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key_file(path),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_with_its_id_account_and_key_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        assert!(ServerKey::load(&path, false).is_err(), "a lookup never makes the file");
        assert!(!path.exists());
        let server = ServerKey::load(&path, true).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "readable by its owner only");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
        let sealed = server.seal("NUAAAA", 7, "the secret");
        assert!(!sealed.windows(10).any(|w| w == b"the secret"), "not in the clear");
        assert_eq!(ServerKey::load(&path, false).unwrap().open("NUAAAA", 7, &sealed).unwrap(), "the secret");
        assert!(server.open("NUBBBB", 7, &sealed).is_err(), "bound to its id");
        assert!(server.open("NUAAAA", 8, &sealed).is_err(), "bound to its account");
        for at in [0, 1, sealed.len() - 1] {
            let mut damaged = sealed.clone();
            damaged[at] ^= 1;
            assert!(server.open("NUAAAA", 7, &damaged).is_err(), "byte {at} damaged");
        }
        let other = ServerKey::load(&dir.path().join("other"), true).unwrap();
        let e = other.open("NUAAAA", 7, &sealed).unwrap_err();
        assert_eq!(e.code, "internal", "{e}");
        assert!(server.open("NUAAAA", 7, &[]).is_err() && server.open("NUAAAA", 7, &[1, 2]).is_err());
        // A file that is not 32 bytes, or not a file, is refused.
        std::fs::write(dir.path().join("short"), [1u8; 31]).unwrap();
        assert!(ServerKey::load(&dir.path().join("short"), true).is_err());
        assert!(ServerKey::load(dir.path(), true).is_err(), "a folder");
    }
}
