//! Share links: made by an owner for one version, used by whoever holds the link, with no
//! account. A link is `sh_` + 32 random bytes, base64url; the database keeps only their
//! BLAKE3 hash.
//!
//! Each download is counted by one conditional `UPDATE` before anything is sent
//! ([`Nuage::admit_share`]), so a download limit holds under any race. Revocation, expiry and
//! the password are checked on every request, chunk reads included (a chunk grant names its
//! share, and the share is read again: [`Nuage::chunk_read_grant`]).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use nuage_core::grant::{Grant, GrantError, Operation};
use nuage_core::{Address, e2e};
use nuage_meta::{Bucket, NewShare, Share, ShareState, Version, now_ms};
use nuage_proto::CreateShare;
use nuage_proto::headers::GRANT;
use nuage_proto::range::ByteRange;

use crate::auth::{checked_attempt, hash_password, token_hash, unmatchable_hash};
use crate::metrics::add;
use crate::names::{read_key, stored_key};
use crate::objects::refuse_e2e;
use crate::read::{Read, ReadConditions};
use crate::uploads::{grant_missing, grant_refused};
use crate::{ErrorKind, Nuage, ServiceError, ServiceResult};

/// Prefix of share tokens, so that a leaked one is easy to recognize.
pub const SHARE_PREFIX: &str = "sh_";

/// A version's stored manifest with a grant per chunk: how a device reads a version
/// without the server opening it (an end-to-end bucket's, or any through edges).
#[derive(Debug, Clone)]
pub struct ManifestGrants {
    /// The manifest as stored (sealed, in an end-to-end bucket).
    pub manifest: Vec<u8>,
    /// A grant per distinct chunk, by hex address.
    pub grants: BTreeMap<String, String>,
    /// When the grants expire (Unix ms).
    pub expires_at: i64,
}

/// `share_revoked`, `share_expired` or `share_exhausted`: why a link cannot be used.
fn share_refused(state: ShareState) -> ServiceError {
    match state {
        ShareState::Revoked => {
            ServiceError::new(ErrorKind::Gone, "share_revoked", "this share link was revoked by its owner")
        }
        ShareState::Expired => {
            ServiceError::new(ErrorKind::Gone, "share_expired", "this share link has expired")
        }
        ShareState::Exhausted => ServiceError::new(
            ErrorKind::Gone,
            "share_exhausted",
            "this share link has been downloaded as many times as it allows",
        ),
        ShareState::Usable => ServiceError::internal("share", "refused a usable share"),
    }
}

/// Refuses a link that cannot be used now.
pub fn usable(share: &Share) -> ServiceResult<()> {
    match share.state(now_ms()) {
        ShareState::Usable => Ok(()),
        s => Err(share_refused(s)),
    }
}

/// What an unlock grant is for: a value no chunk address can take by accident.
fn unlock_address(share: &Share) -> Address {
    let mut h = blake3::Hasher::new_derive_key("nuage share unlock v1");
    h.update(&share.id.to_le_bytes());
    Address::from_bytes(*h.finalize().as_bytes())
}

impl Nuage {
    /// Makes a share link for a live version of the caller's: the share, its bucket, and
    /// the link's token (shown once; only its hash is kept).
    pub async fn create_share(
        &self,
        account_id: i64,
        req: CreateShare,
    ) -> ServiceResult<(Share, Bucket, String)> {
        let key = read_key(&req.key)?;
        let bucket = self.meta.bucket(account_id, &req.bucket).await?;
        let key = stored_key(&self.meta, &bucket, key).await?;
        let version = self.live_version(&bucket, &key, req.version).await?;
        if req.max_downloads == Some(0) {
            return Err(ServiceError::invalid("invalid_request", "max_downloads must be at least 1"));
        }
        if req.password.as_deref() == Some("") {
            return Err(ServiceError::invalid("invalid_request", "the password is empty"));
        }
        let expires_at = req
            .expires_in_secs
            .map(|s| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX).saturating_add(now_ms()));
        let password_hash = match req.password {
            Some(p) => Some(
                tokio::task::spawn_blocking(move || hash_password(&p))
                    .await
                    .map_err(|e| ServiceError::internal("hashing a password", e))?
                    .map_err(|e| ServiceError::internal("hashing a password", e))?,
            ),
            None => None,
        };
        let token = format!("{SHARE_PREFIX}{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()));
        let new = NewShare {
            token_hash: token_hash(&token),
            bucket_id: bucket.id,
            key,
            version_id: version.id,
            expires_at,
            max_downloads: req.max_downloads,
            password_hash,
        };
        let share = self.meta.create_share(account_id, &new).await?;
        Ok((share, bucket, token))
    }

    /// The caller's share links, newest first, each with its bucket's name.
    pub async fn share_list(&self, account_id: i64) -> ServiceResult<Vec<(Share, String)>> {
        let names: BTreeMap<i64, String> =
            self.meta.buckets(account_id).await?.into_iter().map(|b| (b.id, b.name)).collect();
        Ok(self
            .meta
            .shares(account_id)
            .await?
            .into_iter()
            .filter_map(|s| {
                let name = names.get(&s.bucket_id)?.clone();
                Some((s, name))
            })
            .collect())
    }

    /// Revokes the caller's link `id`, at once: every later request through it fails.
    pub async fn revoke_share(&self, account_id: i64, id: i64) -> ServiceResult<()> {
        Ok(self.meta.revoke_share(account_id, id).await?)
    }

    /// The share a link's token names, with its bucket and version (`share_not_found`,
    /// `share_version_gone`). Nothing is counted and the link's state is not checked.
    pub async fn resolve_share(&self, token: &str) -> ServiceResult<(Share, Bucket, Version)> {
        let not_found = || ServiceError::new(ErrorKind::NotFound, "share_not_found", "no such share link");
        if !token.starts_with(SHARE_PREFIX) {
            return Err(not_found());
        }
        let share = self.meta.share_by_token(&token_hash(token)).await.map_err(|e| match e {
            nuage_meta::Error::ShareNotFound => not_found(),
            e => e.into(),
        })?;
        let bucket = self.meta.bucket_by_id(share.bucket_id).await?;
        let version =
            self.meta.version(&bucket, &share.key, share.version_id).await.map_err(|e| match e {
                nuage_meta::Error::ObjectNotFound => ServiceError::new(
                    ErrorKind::Gone,
                    "share_version_gone",
                    "the shared version no longer exists",
                ),
                e => e.into(),
            })?;
        Ok((share, bucket, version))
    }

    /// What a usable link shows before any download: the share, its bucket and version
    /// (`share_not_found`, `share_version_gone`, or why the link cannot be used). Nothing is
    /// counted.
    pub async fn look_at_share(&self, token: &str) -> ServiceResult<(Share, Bucket, Version)> {
        let found = self.resolve_share(token).await?;
        usable(&found.0)?;
        Ok(found)
    }

    /// Reads the shared version of a normal bucket through a link (the server opens it;
    /// an end-to-end bucket's is `end_to_end_bucket`). A `download` is admitted and counted
    /// ([`Nuage::admit_share`]); a look at the headers only needs a usable link. A link
    /// names one version, so a date in If-Range may name it.
    pub async fn read_share(
        self: &std::sync::Arc<Self>,
        token: &str,
        grant: Option<&str>,
        download: bool,
        conditions: &ReadConditions,
        range: Option<ByteRange>,
    ) -> ServiceResult<(Share, Read)> {
        let (share, bucket, version) = self.resolve_share(token).await?;
        refuse_e2e(&bucket)?;
        if download {
            self.admit_share(&share, grant).await?;
        } else {
            usable(&share)?;
        }
        let read = self.read_version(version, true, conditions, range)?;
        Ok((share, read))
    }

    /// The manifest of a link's version (sealed, for an end-to-end bucket) with a grant per
    /// chunk for the link; one download, admitted and counted ([`Nuage::admit_share`]).
    pub async fn share_manifest(
        &self,
        token: &str,
        grant: Option<&str>,
    ) -> ServiceResult<(Version, ManifestGrants)> {
        let (share, _, version) = self.resolve_share(token).await?;
        self.admit_share(&share, grant).await?;
        let grants =
            self.manifest_grants(&version, Operation::GetShare, share.id as u64, share.expires_at).await?;
        Ok((version, grants))
    }

    /// Lets one download through a link: it must be usable, its password given (through
    /// the `grant` that [`Nuage::unlock_share`] made), and one download is counted.
    pub async fn admit_share(&self, share: &Share, grant: Option<&str>) -> ServiceResult<()> {
        usable(share)?;
        if share.password_hash.is_some() {
            let Some(text) = grant else {
                return Err(ServiceError::new(
                    ErrorKind::Unauthorized,
                    "share_password_required",
                    "this share link asks for a password: POST it to /s/{token}/unlock",
                ));
            };
            let grant = self
                .grants
                .verify(&self.meta, text, Operation::GetShare, &unlock_address(share))
                .await
                .map_err(grant_refused)?;
            if grant.scope != share.id as u64 {
                return Err(grant_refused(GrantError::WrongAddress));
            }
        }
        if !self.meta.count_share_download(share.id, now_ms()).await? {
            // Lost a race for the last download, or revoked / expired meanwhile.
            let now = self.meta.share(share.id).await?;
            return Err(share_refused(match now.state(now_ms()) {
                ShareState::Usable => ShareState::Exhausted,
                s => s,
            }));
        }
        Ok(())
    }

    /// Trades a link's password for a short-lived grant (and when it expires). Each try is
    /// one throttled attempt on the link, counted before the password is checked (every
    /// server of the deployment sees the count), so guesses sent at once cannot all pass,
    /// and those refused cost no Argon2.
    pub async fn unlock_share(
        self: &std::sync::Arc<Self>,
        token: &str,
        password: String,
    ) -> ServiceResult<(String, i64)> {
        let (share, _, _) = self.resolve_share(token).await?;
        usable(&share)?;
        let subject = format!("share:{}", share.id);
        let phc = share.password_hash.clone().unwrap_or_else(|| unmatchable_hash().to_owned());
        let matches = checked_attempt(self, &subject, "share_unlock_throttled", password, phc).await?
            && share.password_hash.is_some();
        if !matches {
            return Err(ServiceError::new(
                ErrorKind::Forbidden,
                "share_password_wrong",
                "wrong password for this link",
            ));
        }
        let until = share.expires_at.unwrap_or(i64::MAX).min(now_ms().saturating_add(self.grants.ttl()));
        let grant =
            self.grants.sign_until(Operation::GetShare, unlock_address(&share), share.id as u64, 0, until);
        Ok((grant, until))
    }

    /// `version`'s stored manifest with a grant for `op` per chunk, for `scope` (the bucket
    /// of an owner's read, the share of a link's), expiring at the grants' lifetime or
    /// `until`, whichever comes first.
    pub async fn manifest_grants(
        &self,
        version: &Version,
        op: Operation,
        scope: u64,
        until: Option<i64>,
    ) -> ServiceResult<ManifestGrants> {
        let manifest = self.meta.manifest(version.id).await?;
        let addresses =
            e2e::manifest_addresses(&manifest).map_err(|e| ServiceError::internal("stored manifest", e))?;
        let expires_at = until.unwrap_or(i64::MAX).min(now_ms().saturating_add(self.grants.ttl()));
        let mut grants = BTreeMap::new();
        for a in addresses {
            grants.entry(a.to_hex()).or_insert_with(|| {
                self.grants.sign_until(op, a, scope, nuage_core::chunk::MAX_CHUNK_LEN as u64, expires_at)
            });
        }
        Ok(ManifestGrants { manifest, grants, expires_at })
    }

    /// The manifest of the caller's `key` (or `version` of it), with grants to read its
    /// chunks: how the client reads an object of an end-to-end bucket (and may read any
    /// object) without the server opening it.
    pub async fn owner_manifest(
        &self,
        account_id: i64,
        bucket: &str,
        key: crate::names::ReadKey,
        version: Option<i64>,
    ) -> ServiceResult<(Version, ManifestGrants)> {
        let bucket = self.meta.bucket(account_id, bucket).await?;
        let key = stored_key(&self.meta, &bucket, key).await?;
        let version = self.live_version(&bucket, &key, version).await?;
        let grants = self.manifest_grants(&version, Operation::GetChunk, bucket.id as u64, None).await?;
        Ok((version, grants))
    }

    /// Checks a grant to read the chunk at `address`: an owner's (`GetChunk`), or a share
    /// link's (`GetShare`), whose link must not be revoked or expired (its download was
    /// counted when its manifest was fetched).
    pub async fn chunk_read_grant(&self, grant: Option<&str>, address: &Address) -> ServiceResult<Grant> {
        let Some(text) = grant else {
            return Err(grant_missing(format!("a chunk read needs a grant in {GRANT} or ?grant=")));
        };
        match self.grants.verify(&self.meta, text, Operation::GetChunk, address).await {
            Ok(g) => Ok(g),
            Err(GrantError::WrongOperation) => {
                let grant = self
                    .grants
                    .verify(&self.meta, text, Operation::GetShare, address)
                    .await
                    .map_err(grant_refused)?;
                // Revocation and expiry hold at once, even for grants handed out before.
                let share = self.meta.share(grant.scope as i64).await?;
                match share.state(now_ms()) {
                    s @ (ShareState::Revoked | ShareState::Expired) => Err(share_refused(s)),
                    ShareState::Usable | ShareState::Exhausted => Ok(grant),
                }
            }
            Err(e) => Err(grant_refused(e)),
        }
    }

    /// The stored bytes (ciphertext) of the chunk a checked grant names
    /// (`chunk_not_found`).
    pub async fn read_chunk(&self, grant: &Grant) -> ServiceResult<Bytes> {
        let read = self.store.get(&grant.address, &[]).await.map_err(|e| match e {
            nuage_blob::Error::NotFound { .. } => {
                ServiceError::new(ErrorKind::NotFound, "chunk_not_found", "no provider holds this chunk")
            }
            e => e.into(),
        })?;
        add(&self.metrics.bytes_out, read.bytes.len() as u64);
        Ok(read.bytes)
    }
}
