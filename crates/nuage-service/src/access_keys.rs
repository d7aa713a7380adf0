//! S3 access keys: an id and a secret per key, for SigV4, which needs the secret itself on
//! the server (a token, by contrast, is kept as a hash). The secret is kept in the database
//! sealed with AES-256-GCM under the server's key for access keys, a file outside the
//! database (`access_key_file`): a copy of the database alone gives no secret. The file is
//! made when a server first opens (`Nuage::open`, as the server's user, mode 0600, written
//! whole under another name and linked into place) and read once; a lookup never makes one.
//! The sealed form binds its header, the key's id and its account (as associated data) and
//! names the server key by a fingerprint, so that a server reading with another key file
//! says so instead of failing every signature.
//!
//! Ids are `NU` and 18 characters of base32 (20 in all, as AWS's); secrets are 40 characters
//! of base64url (240 bits).

use base64::Engine;
use nuage_meta::AccessKey;

use crate::auth::Caller;
use crate::error::{ErrorKind, ServiceError, ServiceResult};
use crate::names::check_bucket;
pub use crate::server_key::ServerKey;
use crate::state::Nuage;

/// The longest name of an access key, in characters.
const MAX_NAME_CHARS: usize = 64;

/// A new access key's id.
fn new_id() -> String {
    const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut random = [0u8; 18];
    aws_lc_rs::rand::fill(&mut random).expect("a random source");
    // 256 is a multiple of 32: every character is equally likely.
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

/// Makes an access key for `account_id`, named `name`, its secret sealed under `server`: the
/// stored key and its secret (shown once). `invalid_bucket_name` for a scope that names no
/// possible bucket, `invalid_key_name`, `account_not_found`. A free function, so that `nuage
/// admin` makes keys with the database and the key file alone.
pub async fn create(
    meta: &nuage_meta::Meta,
    server: &ServerKey,
    account_id: i64,
    name: &str,
    scope: &KeyScope,
) -> ServiceResult<(AccessKey, String)> {
    if let Some(b) = &scope.bucket {
        check_bucket(b)?;
    }
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "invalid_key_name",
            format!(
                "an access key's name has 1 to {MAX_NAME_CHARS} characters, none of them a control character"
            ),
        ));
    }
    // A clash of 90 random bits is not expected; one more draw covers it all the same.
    for _ in 0..3 {
        let (id, secret) = (new_id(), new_secret());
        let key = AccessKey {
            secret_sealed: server.seal(&id, account_id, &secret),
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
        create(&self.meta, &self.access_key, caller.account_id, name, scope).await
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
        let secret = self.access_key.open(&key.id, key.account_id, &key.secret_sealed)?;
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
}
