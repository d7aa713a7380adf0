//! Tokens and passwords. A token is `nu_` + 64 hex digits of randomness; the database keeps
//! only its BLAKE3 hash (a fast hash suffices: the token has 256 bits of entropy, unlike a
//! password, which gets argon2).

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};

use nuage_service::{ErrorKind, ServiceError, ServiceResult};

use crate::{ApiError, Nuage};

/// Prefix of every token, so that a leaked one is easy to recognize in a scan.
pub const TOKEN_PREFIX: &str = "nu_";

/// A fresh token text and the hash the database keeps.
pub fn new_token() -> (String, [u8; 32]) {
    let bytes: [u8; 32] = rand::random();
    let text = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    let hash = token_hash(&text);
    (text, hash)
}

/// When a token made now expires, for a lifetime of `days` (0: never).
pub fn token_expiry(days: u32) -> Option<i64> {
    (days > 0).then(|| nuage_meta::now_ms() + i64::from(days) * 86_400_000)
}

/// The hash under which a token is stored.
pub fn token_hash(text: &str) -> [u8; 32] {
    *blake3::hash(text.as_bytes()).as_bytes()
}

/// The argon2id PHC string of a password (random salt).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_string())
}

/// An argon2id hash, with the same parameters as real ones, of a random password that is
/// then forgotten: logins for unknown accounts verify against it to take the same time.
pub fn unmatchable_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        hash_password(&hex::encode(rand::random::<[u8; 32]>())).expect("argon2 with default parameters")
    })
}

/// Checks `password` against `phc` as one attempt on `subject` (see `nuage_meta`'s
/// `throttle.rs`): counted before the check, refused with `429 {code}` and `Retry-After`
/// while the subject waits out its failures or has its most attempts in flight.
pub(crate) async fn checked_attempt(
    nuage: &Arc<Nuage>,
    subject: &str,
    code: &'static str,
    password: String,
    phc: String,
) -> ServiceResult<bool> {
    if let nuage_meta::Attempt::Wait(secs) = nuage.meta.begin_attempt(subject).await? {
        return Err(ServiceError::new(
            ErrorKind::Throttled,
            code,
            format!("too many wrong passwords; try again in {secs} s"),
        )
        .retry_after(secs));
    }
    // The check and the end of the attempt in a task of their own, awaited: a client that
    // goes away cannot leave the attempt in flight.
    let (n, subject) = (nuage.clone(), subject.to_owned());
    let task = tokio::spawn(async move {
        let checked = tokio::task::spawn_blocking(move || verify_password(&password, &phc)).await;
        let ok = matches!(checked, Ok(true));
        n.meta.end_attempt(&subject, ok).await?;
        checked.map_err(|e| ServiceError::internal("checking a password", e))?;
        Ok::<_, ServiceError>(ok)
    });
    task.await.map_err(|e| ServiceError::internal("checking a password", e))?
}

/// Whether `password` matches the PHC string.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// The authenticated caller of a request: extracting it answers `401` with
/// `token_missing`, `token_invalid`, `token_expired` or `token_revoked` when it cannot.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// The account.
    pub account_id: i64,
    /// The token used.
    pub token_id: i64,
}

fn unauthorized(code: &'static str, message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

impl FromRequestParts<Arc<Nuage>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, nuage: &Arc<Nuage>) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(
                "token_missing",
                "send Authorization: Bearer <token>; see `nuage login`",
            ));
        };
        let text = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| t.starts_with(TOKEN_PREFIX))
            .ok_or_else(|| {
                unauthorized("token_invalid", "the Authorization header does not hold a nuage token")
            })?;
        let token = nuage
            .meta
            .token_by_hash(token_hash(text))
            .await?
            .ok_or_else(|| unauthorized("token_invalid", "unknown token"))?;
        if token.revoked_at.is_some() {
            return Err(unauthorized("token_revoked", "this token was revoked; log in again"));
        }
        if token.expires_at.is_some_and(|at| at <= nuage_meta::now_ms()) {
            return Err(unauthorized("token_expired", "this token has expired; log in again"));
        }
        Ok(Caller { account_id: token.account_id, token_id: token.id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_tokens() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("wrong", &phc));
        assert!(!verify_password("x", "not a phc string"));
        let (a, ha) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + 64);
        assert_eq!(token_hash(&a), ha);
    }
}
