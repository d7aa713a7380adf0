//! Tokens, passwords and the callers they make. A token is `nu_` + 64 hex digits of
//! randomness; the database keeps only its BLAKE3 hash (a fast hash suffices: the token has
//! 256 bits of entropy, unlike a password, which gets argon2). Every password check, of an
//! account or of a share link, is one throttled attempt ([`checked_attempt`]).

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::{ErrorKind, Nuage, ServiceError, ServiceResult};

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

/// Makes a token for `account_id` named `name` that lives `ttl_days` (0: forever): its text
/// (shown once) and the stored token. (`nuage admin` makes tokens this way with no server
/// running.)
pub async fn issue_token(
    meta: &nuage_meta::Meta,
    ttl_days: u32,
    account_id: i64,
    name: &str,
) -> nuage_meta::Result<(String, nuage_meta::Token)> {
    let (text, hash) = new_token();
    let made = meta.create_token(account_id, hash, name, token_expiry(ttl_days)).await?;
    Ok((text, made))
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
/// `throttle.rs`): counted before the check, refused as [`ErrorKind::Throttled`] with
/// `code` and the seconds to wait while the subject waits out its failures or has its most
/// attempts in flight.
pub async fn checked_attempt(
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

/// Who makes a request: the account, and the token it showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The account.
    pub account_id: i64,
    /// The token used.
    pub token_id: i64,
}

fn unauthorized(code: &'static str, message: &str) -> ServiceError {
    ServiceError::new(ErrorKind::Unauthorized, code, message)
}

impl Nuage {
    /// Checks an account's password: the account, or `invalid_credentials` (one answer
    /// for an unknown account, one without a password and a wrong password).
    pub async fn sign_in(
        self: &Arc<Self>,
        account: &str,
        password: String,
    ) -> ServiceResult<nuage_meta::Account> {
        let refused = || unauthorized("invalid_credentials", "wrong account or password");
        let found = match self.meta.account_by_name(account).await {
            Ok(a) => Some(a),
            Err(nuage_meta::Error::AccountNotFound) => None,
            Err(e) => return Err(e.into()),
        };
        let phc = match &found {
            Some(a) => self.meta.account_secrets(a.id).await?.password_hash,
            None => None,
        };
        // An unknown account, or one without a password, still costs one argon2
        // verification (against a hash no password matches), so that answer times do not
        // tell which account names exist.
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| unmatchable_hash().to_owned());
        // Throttled per name, known or not, so that the throttle does not tell which exist.
        let subject = format!("login:{}", &blake3::hash(account.as_bytes()).to_hex()[..32]);
        let ok = checked_attempt(self, &subject, "login_throttled", password, phc).await?;
        found.filter(|_| ok && known).ok_or_else(refused)
    }

    /// Makes a token for `account_id` named `name`, with the configured lifetime: its text
    /// (shown once) and the stored token.
    pub async fn issue_token(
        &self,
        account_id: i64,
        name: &str,
    ) -> ServiceResult<(String, nuage_meta::Token)> {
        let (text, hash) = new_token();
        let made =
            self.meta.create_token(account_id, hash, name, token_expiry(self.config.token_ttl_days)).await?;
        Ok((text, made))
    }

    /// The caller a token (its text, as shown) makes: `token_invalid` for one that is not
    /// a token or not known, `token_revoked`, `token_expired`.
    pub async fn authenticate(&self, token: &str) -> ServiceResult<Caller> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Err(unauthorized(
                "token_invalid",
                "the Authorization header does not hold a nuage token",
            ));
        }
        let token = self
            .meta
            .token_by_hash(token_hash(token))
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
