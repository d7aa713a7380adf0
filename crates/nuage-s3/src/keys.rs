//! Access keys at the S3 endpoint: the secret a signature is checked with, and what the
//! key may do once it is.
//!
//! s3s asks for the secret of the key a request names ([`S3Auth`]), checks the signature
//! with it (in constant time), and then asks whether the operation is allowed
//! ([`S3Access`]): only for a request it verified does it hand the key over. The key's record
//! is looked up once per request, with its secret, and kept by id for the access check of
//! the same request (a revoked key is refused at the lookup, and a record does not change
//! but for its revocation, so the record a check reads is never older than its request).
//!
//! A key limited to a bucket reaches that bucket only (and lists only it); a read-only key
//! may do only the operations of [`READS`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nuage_meta::AccessKey;
use nuage_service::Nuage;
use nuage_service::auth::Caller;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::path::S3Path;
use s3s::{S3Result, s3_error};

use crate::errors::s3_error_of;

/// The operations a read-only key may do.
pub const READS: &[&str] = &[
    "GetObject",
    "HeadObject",
    "GetObjectAttributes",
    "ListObjects",
    "ListObjectsV2",
    "ListObjectVersions",
    "ListBuckets",
    "HeadBucket",
    "GetBucketLocation",
    "GetBucketVersioning",
    "ListParts",
    "ListMultipartUploads",
    "GetBucketCors",
    "GetBucketLifecycleConfiguration",
    "GetObjectTagging",
];

/// Who an S3 request acts for, once its signature and its scope are checked: in the
/// request's extensions.
#[derive(Debug, Clone)]
pub(crate) struct Tenant {
    /// The key that signed it.
    pub key: Arc<AccessKey>,
}

impl Tenant {
    /// The account, as the service names a caller (an S3 request has no token: its id is
    /// 0, which no token has).
    pub fn caller(&self) -> Caller {
        Caller { account_id: self.key.account_id, token_id: 0 }
    }
}

/// The access keys of the server, as s3s asks for them.
#[derive(Clone)]
pub struct Keys {
    nuage: Arc<Nuage>,
    /// The record of each key as its last signature check looked it up, for the access
    /// check that follows (one entry per active key in use; a refused lookup removes it).
    looked_up: Arc<Mutex<HashMap<String, Arc<AccessKey>>>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").finish_non_exhaustive()
    }
}

impl Keys {
    /// The keys of `nuage`'s database.
    pub fn new(nuage: Arc<Nuage>) -> Keys {
        Keys { nuage, looked_up: Arc::default() }
    }

    fn looked_up(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<AccessKey>>> {
        self.looked_up.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.nuage.access_key_secret(access_key).await {
            Ok((key, secret)) => {
                self.looked_up().insert(key.id.clone(), Arc::new(key));
                Ok(SecretKey::from(secret))
            }
            Err(e) if e.code == "access_key_invalid" => {
                self.looked_up().remove(access_key);
                Err(s3_error!(InvalidAccessKeyId, "the access key does not exist or was revoked"))
            }
            Err(e) => Err(s3_error_of(e)),
        }
    }
}

#[async_trait::async_trait]
impl S3Access for Keys {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let Some(credentials) = cx.credentials() else {
            return Err(s3_error!(AccessDenied, "the request must be signed with an access key"));
        };
        let key =
            self.looked_up().get(&credentials.access_key).cloned().ok_or_else(|| {
                s3_error!(InvalidAccessKeyId, "the access key does not exist or was revoked")
            })?;
        let op = cx.s3_op().name();
        if key.read_only && !READS.contains(&op) {
            return Err(s3_error!(AccessDenied, "this access key may only read"));
        }
        if let Some(only) = &key.bucket {
            let allowed = match cx.s3_path() {
                S3Path::Root => op == "ListBuckets",
                S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => **bucket == **only,
            };
            // A copy names its source in a header: it must be in the key's bucket too.
            let source_allowed = cx
                .headers()
                .get("x-amz-copy-source")
                .is_none_or(|s| copy_source_bucket(s.as_bytes()).is_some_and(|b| b == only.as_str()));
            if !allowed || !source_allowed {
                return Err(s3_error!(AccessDenied, "this access key is limited to bucket {only}"));
            }
        }
        cx.extensions_mut().insert(Tenant { key });
        Ok(())
    }
}

/// The bucket an `x-amz-copy-source` value names (`bucket/key`, `/bucket/key`, either
/// percent-encoded, with an optional `?versionId=`).
fn copy_source_bucket(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let value = value.strip_prefix('/').unwrap_or(value);
    let bucket = value.split(['/', '?']).next()?;
    // Bucket names have no character that percent-encoding changes.
    (!bucket.is_empty() && !bucket.contains('%')).then_some(bucket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_source_names_its_bucket() {
        assert_eq!(copy_source_bucket(b"box/a/b.txt"), Some("box"));
        assert_eq!(copy_source_bucket(b"/box/a%20b?versionId=3"), Some("box"));
        assert_eq!(copy_source_bucket(b"b%6Fx/a"), None);
        assert_eq!(copy_source_bucket(b"/"), None);
    }
}
