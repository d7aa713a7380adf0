//! S3 access keys: an id and a secret per key, for SigV4, which needs the secret itself on
//! the server (a token, by contrast, is kept as a hash). The secret is kept in the database
//! sealed with AES-256-GCM under the server's key for access keys, a file outside the
//! database (`access_key_file`, made on first use with mode 0600): a copy of the database
//! alone gives no secret. The sealed form binds the key's id (as associated data) and names
//! the server key by a fingerprint, so that a server reading with another key file says so
//! instead of failing every signature.
//!
//! Ids are `NU` and 18 characters of base32 (20 in all, as AWS's); secrets are 40 characters
//! of base64url (240 bits).

use std::io::Write;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use nuage_meta::AccessKey;

use crate::auth::Caller;
use crate::error::{ErrorKind, ServiceError, ServiceResult};
use crate::names::check_bucket;
use crate::state::Nuage;

/// The first byte of a sealed secret: its format.
const SEALED_V1: u8 = 1;
/// Bytes of the server key's fingerprint in a sealed secret.
const FINGERPRINT_LEN: usize = 8;

/// The server's key for access keys.
struct ServerKey {
    key: LessSafeKey,
    fingerprint: [u8; FINGERPRINT_LEN],
}

impl ServerKey {
    /// Reads the key file, or makes it (32 random bytes, readable by its owner only) when
    /// there is none.
    fn load(path: &Path) -> ServiceResult<ServerKey> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => make_key_file(path)?,
            Err(e) => return Err(ServiceError::internal(&format!("reading {}", path.display()), e)),
        };
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
            ServiceError::internal(&format!("{}", path.display()), "an access-key file holds 32 bytes")
        })?;
        let fingerprint = blake3::derive_key("nuage access-key file fingerprint", &bytes)[..FINGERPRINT_LEN]
            .try_into()
            .expect("8 bytes");
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &bytes).expect("a 32-byte key"));
        Ok(ServerKey { key, fingerprint })
    }

    fn seal(&self, id: &str, secret: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("a random source");
        let mut body = secret.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(id.as_bytes()),
                &mut body,
            )
            .expect("sealing a short secret");
        let mut out = vec![SEALED_V1];
        out.extend_from_slice(&self.fingerprint);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        out
    }

    fn open(&self, id: &str, sealed: &[u8]) -> ServiceResult<String> {
        let corrupt =
            || ServiceError::internal("access key", format!("the sealed secret of {id} does not open"));
        let (&version, rest) = sealed.split_first().ok_or_else(corrupt)?;
        if version != SEALED_V1 || rest.len() < FINGERPRINT_LEN + NONCE_LEN {
            return Err(corrupt());
        }
        let (fingerprint, rest) = rest.split_at(FINGERPRINT_LEN);
        if fingerprint != self.fingerprint {
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
        let mut body = body.to_vec();
        let plain =
            self.key.open_in_place(nonce, Aad::from(id.as_bytes()), &mut body).map_err(|_| corrupt())?;
        String::from_utf8(plain.to_vec()).map_err(|_| corrupt())
    }
}

/// Makes a new key file at `path`, unless another process made one meanwhile (then its key
/// is the one).
fn make_key_file(path: &Path) -> ServiceResult<Vec<u8>> {
    let failed = |e: std::io::Error| ServiceError::internal(&format!("making {}", path.display()), e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key).expect("a random source");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut f) => {
            f.write_all(&key).and_then(|()| f.sync_all()).map_err(failed)?;
            Ok(key.to_vec())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(path).map_err(failed),
        Err(e) => Err(failed(e)),
    }
}

/// A new access key's id.
fn new_id() -> String {
    const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut random = [0u8; 18];
    aws_lc_rs::rand::fill(&mut random).expect("a random source");
    let tail: String = random.iter().map(|b| BASE32[usize::from(b % 32)] as char).collect();
    format!("NU{tail}")
}

/// A new secret: 30 random bytes as 40 characters of base64url.
fn new_secret() -> String {
    let mut random = [0u8; 30];
    aws_lc_rs::rand::fill(&mut random).expect("a random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
}

/// What a new access key is for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyScope {
    /// The only bucket it may reach (by name); none: every bucket of the account.
    pub bucket: Option<String>,
    /// It may only read.
    pub read_only: bool,
}

/// Makes an access key for `account_id`, named `name`, its secret sealed under the key file
/// at `key_file`: the stored key and its secret (shown once). `invalid_bucket_name` for a
/// scope that names no possible bucket, `account_not_found`. A free function, so that `nuage
/// admin` makes keys with the database and the key file alone.
pub async fn create(
    meta: &nuage_meta::Meta,
    key_file: &Path,
    account_id: i64,
    name: &str,
    scope: &KeyScope,
) -> ServiceResult<(AccessKey, String)> {
    if let Some(b) = &scope.bucket {
        check_bucket(b)?;
    }
    let server = ServerKey::load(key_file)?;
    // A clash of 90 random bits is not expected; one more draw covers it all the same.
    for _ in 0..3 {
        let (id, secret) = (new_id(), new_secret());
        let key = AccessKey {
            secret_sealed: server.seal(&id, &secret),
            id,
            account_id,
            name: name.to_owned(),
            bucket: scope.bucket.clone(),
            read_only: scope.read_only,
            created_at: nuage_meta::now_ms(),
            revoked_at: None,
        };
        match meta.create_access_key(&key).await {
            Ok(()) => return Ok((key, secret)),
            Err(nuage_meta::Error::AccessKeyExists) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ServiceError::internal("access key", "three new ids in a row were taken"))
}

impl Nuage {
    /// Makes an access key for the caller ([`create`]).
    pub async fn create_access_key(
        &self,
        caller: Caller,
        name: &str,
        scope: &KeyScope,
    ) -> ServiceResult<(AccessKey, String)> {
        create(&self.meta, &self.config.access_key_file(), caller.account_id, name, scope).await
    }

    /// The caller's access keys, newest first.
    pub async fn access_keys(&self, caller: Caller) -> ServiceResult<Vec<AccessKey>> {
        Ok(self.meta.access_keys(caller.account_id).await?)
    }

    /// Revokes one of the caller's active access keys (`access_key_not_found`).
    pub async fn revoke_access_key(&self, caller: Caller, id: &str) -> ServiceResult<()> {
        if self.meta.revoke_access_key(caller.account_id, id).await? {
            Ok(())
        } else {
            Err(ServiceError::new(ErrorKind::NotFound, "access_key_not_found", "no such active access key"))
        }
    }

    /// The active access key of this id and its secret, to check a request's signature:
    /// `access_key_invalid` for one that is unknown or revoked (one answer for both).
    pub async fn access_key_secret(&self, id: &str) -> ServiceResult<(AccessKey, String)> {
        let refused = || {
            ServiceError::new(ErrorKind::Unauthorized, "access_key_invalid", "unknown or revoked access key")
        };
        let key = self.meta.access_key(id).await?.filter(|k| k.revoked_at.is_none()).ok_or_else(refused)?;
        let secret = ServerKey::load(&self.config.access_key_file())?.open(&key.id, &key.secret_sealed)?;
        Ok((key, secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_secrets_have_their_shapes() {
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 20);
        assert!(
            a.starts_with("NU") && a.bytes().all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c))
        );
        let s = new_secret();
        assert_eq!(s.len(), 40);
        assert_ne!(s, new_secret());
    }

    #[test]
    fn a_sealed_secret_opens_with_its_id_and_its_key_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let server = ServerKey::load(&path).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "readable by its owner only");
        let sealed = server.seal("NUAAAA", "the secret");
        assert!(!sealed.windows(10).any(|w| w == b"the secret"), "not in the clear");
        assert_eq!(ServerKey::load(&path).unwrap().open("NUAAAA", &sealed).unwrap(), "the secret");
        assert!(server.open("NUBBBB", &sealed).is_err(), "bound to its id");
        let mut damaged = sealed.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(server.open("NUAAAA", &damaged).is_err());
        let other = ServerKey::load(&dir.path().join("other")).unwrap();
        let e = other.open("NUAAAA", &sealed).unwrap_err();
        assert_eq!(e.code, "internal", "{e}");
        assert!(server.open("NUAAAA", &[]).is_err() && server.open("NUAAAA", &[1, 2]).is_err());
    }
}
