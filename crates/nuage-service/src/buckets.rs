//! Accounts, their tokens and their buckets as every front sees them: the defaults of a
//! new bucket's settings, the placement check, and health.

use nuage_blob::Placement;
use nuage_meta::{Account, Bucket, BucketPolicy, Token};

use crate::auth::Caller;
use crate::error::{ErrorKind, ServiceError, ServiceResult};
use crate::names::check_bucket;
use crate::state::Nuage;

/// What a request to make a bucket says; what it leaves out comes from `[buckets]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketSettings {
    /// Copies of each chunk.
    pub replicas: Option<u32>,
    /// Copies stored before a write succeeds; by default all of `replicas` when the
    /// request names them, else the configured quorum.
    pub write_quorum: Option<u32>,
    /// Versions kept per key (0: all).
    pub keep_versions: Option<u32>,
    /// The content key id of an end-to-end bucket.
    pub e2e_key_id: Option<[u8; 16]>,
    /// Devices may upload chunks straight to providers.
    pub direct_upload: Option<bool>,
}

/// The server's health: whether the database answers, and each provider with whether it
/// is up.
#[derive(Debug, Clone)]
pub struct Health {
    /// The database answered a query.
    pub database: bool,
    /// Every provider by name, and whether it is up.
    pub providers: Vec<(String, bool)>,
}

impl Nuage {
    /// The policy a new bucket gets from `settings` and the configured defaults, checked
    /// against the providers there are (`invalid_placement`).
    pub fn bucket_policy(&self, settings: &BucketSettings) -> ServiceResult<BucketPolicy> {
        let d = self.config.buckets;
        let replicas = settings.replicas.unwrap_or(d.replicas);
        let write_quorum = settings.write_quorum.unwrap_or(if settings.replicas.is_some() {
            replicas
        } else {
            d.write_quorum.unwrap_or(replicas)
        });
        self.store
            .check_placement(Placement::replicas(replicas as usize).with_quorum(write_quorum as usize))
            .map_err(|e| ServiceError::invalid("invalid_placement", e.to_string()))?;
        Ok(BucketPolicy {
            replicas,
            write_quorum,
            keep_versions: settings.keep_versions.unwrap_or(d.keep_versions),
            e2e_key_id: settings.e2e_key_id,
            direct_upload: settings.direct_upload.unwrap_or(false),
        })
    }

    /// Makes a bucket of the caller's: `invalid_bucket_name`, `invalid_placement`,
    /// `bucket_exists`.
    pub async fn create_bucket(
        &self,
        caller: Caller,
        name: &str,
        settings: &BucketSettings,
    ) -> ServiceResult<Bucket> {
        check_bucket(name)?;
        let policy = self.bucket_policy(settings)?;
        Ok(self.meta.create_bucket(caller.account_id, name, policy).await?)
    }

    /// Whether the caller's `bucket` keeps versions (S3's versioning status `Enabled`) or one
    /// (`Suspended`: a write replaces, a delete removes): enabled, a bucket that keeps one
    /// version keeps the server's default (`[buckets] keep_versions`; every version when that
    /// is one), and one that keeps more stays as it is; suspended, it keeps one. Versions
    /// beyond the count go when their key is next written.
    pub async fn set_versioning(&self, caller: Caller, bucket: &str, enabled: bool) -> ServiceResult<Bucket> {
        let b = self.meta.bucket(caller.account_id, bucket).await?;
        let default = self.config.buckets.keep_versions;
        let keep = match (enabled, b.policy.keep_versions, default) {
            (false, _, _) => 1,
            // Already keeping versions: as many as it keeps (a tool that says `Enabled`
            // again must not lower a bucket's retention).
            (true, kept, _) if kept != 1 => return Ok(b),
            (true, _, 1) => 0,
            (true, _, n) => n,
        };
        self.meta.set_keep_versions(&b, keep).await?;
        Ok(self.meta.bucket(caller.account_id, bucket).await?)
    }

    /// A configuration of the caller's `bucket` kept as a whole document (`kind`: its CORS
    /// rules, its lifecycle rules), none when it has none.
    pub(crate) async fn bucket_document<T: serde::de::DeserializeOwned>(
        &self,
        bucket_id: i64,
        kind: &str,
    ) -> ServiceResult<Option<T>> {
        match self.meta.bucket_config(bucket_id, kind).await? {
            None => Ok(None),
            Some(body) => Ok(Some(parse_document(&body, kind)?)),
        }
    }

    /// Sets (with none, removes) a configuration of the caller's `bucket` kept as a whole
    /// document; the caller has checked it.
    pub(crate) async fn set_bucket_document<T: serde::Serialize + ?Sized>(
        &self,
        caller: Caller,
        bucket: &str,
        kind: &str,
        value: Option<&T>,
    ) -> ServiceResult<()> {
        let b = self.meta.bucket(caller.account_id, bucket).await?;
        let body = value
            .map(|v| serde_json::to_string(v).map_err(|e| ServiceError::internal(kind, e)))
            .transpose()?;
        Ok(self.meta.set_bucket_config(&b, kind, body.as_deref()).await?)
    }

    /// One of the caller's buckets (`bucket_not_found`).
    pub async fn bucket(&self, caller: Caller, name: &str) -> ServiceResult<Bucket> {
        Ok(self.meta.bucket(caller.account_id, name).await?)
    }

    /// The caller's buckets, by name.
    pub async fn buckets(&self, caller: Caller) -> ServiceResult<Vec<Bucket>> {
        Ok(self.meta.buckets(caller.account_id).await?)
    }

    /// Deletes one of the caller's buckets that holds no live object (`bucket_not_found`,
    /// `bucket_not_empty`).
    pub async fn delete_bucket(&self, caller: Caller, name: &str) -> ServiceResult<()> {
        Ok(self.meta.delete_bucket(caller.account_id, name).await?)
    }

    /// The caller's account.
    pub async fn account(&self, caller: Caller) -> ServiceResult<Account> {
        Ok(self.meta.account(caller.account_id).await?)
    }

    /// The secret that makes the caller's chunk keys (smart uploads derive keys from it
    /// on the device).
    pub async fn convergence_secret(&self, caller: Caller) -> ServiceResult<[u8; 32]> {
        Ok(self.meta.convergence_secret(caller.account_id).await?)
    }

    /// The caller's tokens, newest first.
    pub async fn tokens(&self, caller: Caller) -> ServiceResult<Vec<Token>> {
        Ok(self.meta.tokens(caller.account_id).await?)
    }

    /// Revokes one of the caller's active tokens (`token_not_found`).
    pub async fn revoke_token(&self, caller: Caller, token_id: i64) -> ServiceResult<()> {
        if self.meta.revoke_token(caller.account_id, token_id).await? {
            Ok(())
        } else {
            Err(ServiceError::new(ErrorKind::NotFound, "token_not_found", "no such active token"))
        }
    }

    /// Whether the database answers, and which providers are up.
    pub async fn health(&self) -> Health {
        Health {
            database: self.meta.schema_version().await.is_ok(),
            providers: self.store.providers().iter().map(|p| (p.name().to_owned(), !p.is_down())).collect(),
        }
    }
}

/// A stored bucket document of `kind` read back.
pub(crate) fn parse_document<T: serde::de::DeserializeOwned>(body: &str, kind: &str) -> ServiceResult<T> {
    serde_json::from_str(body).map_err(|e| ServiceError::internal(&format!("the stored {kind} rules"), e))
}
