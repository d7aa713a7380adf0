//! `ServiceError`: every failure the service reports to a front, as a kind (what the front
//! needs to choose its answer), a stable code (nuage's contract: docs/api.md lists every one)
//! and a message for people. Internal failures are logged here, once, and reported with a
//! message that says nothing internal.

use std::fmt;
use std::sync::Arc;

/// What kind of failure an error is: each front maps a kind to its own answer (`/v1`: an
/// HTTP status). The code says which failure of that kind it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request breaks a rule (a key, a bucket name, a manifest): sending it again
    /// changes nothing.
    Invalid,
    /// A credential (a password) is wrong.
    Unauthorized,
    /// The caller may not do this (a grant for something else, a sealed bucket).
    Forbidden,
    /// The bucket, object, version, upload or link does not exist (for this caller).
    NotFound,
    /// The state of what is named refuses it (exists already, not empty, committed).
    Conflict,
    /// It existed, and is gone for good (a revoked or used-up link).
    Gone,
    /// A condition of the request (If-Match, If-None-Match…) does not hold.
    PreconditionFailed,
    /// It does not fit: the quota, or the largest upload.
    TooLarge,
    /// The range asked for is outside the object; `size` says the object's size.
    RangeNotSatisfiable,
    /// An idempotency key used before with another request.
    IdempotencyConflict,
    /// The content does not match what the request says of it (a chunk's bytes and its
    /// address, or its key): nothing was stored.
    ContentMismatch,
    /// Too many attempts: `retry_after` says when to try again.
    Throttled,
    /// Busy or unreachable for now (the database, the providers): retry.
    Unavailable,
    /// The storage providers are full: retrying will not help until an operator acts.
    InsufficientStorage,
    /// The request's content ended early or could not be read (the client went away, or
    /// sent it too slowly for the front): nothing was stored. `source` is the read's error,
    /// which the front may look into (an HTTP front tells a slow client by it).
    Incomplete,
    /// A failure inside the service; the log has its details.
    Internal,
}

/// A failure the service reports.
#[derive(Debug, Clone)]
pub struct ServiceError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// Stable machine-readable code (docs/api.md).
    pub code: &'static str,
    /// Explanation for people.
    pub message: String,
    /// For [`ErrorKind::RangeNotSatisfiable`]: the object's size.
    pub size: Option<u64>,
    /// For [`ErrorKind::Throttled`] and some [`ErrorKind::Unavailable`]: seconds to wait.
    pub retry_after: Option<u64>,
    /// For [`ErrorKind::Incomplete`]: the error the read of the content gave.
    pub source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// Result of a service call.
pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    /// An error of this kind, code and message.
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> ServiceError {
        ServiceError { kind, code, message: message.into(), size: None, retry_after: None, source: None }
    }

    /// An [`ErrorKind::Incomplete`] error: reading the request's content failed with
    /// `source`.
    pub fn incomplete(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ServiceError {
        let mut e = ServiceError::new(
            ErrorKind::Incomplete,
            "body_incomplete",
            "the request body ended early or could not be read",
        );
        e.source = Some(Arc::from(source.into()));
        e
    }

    /// An [`ErrorKind::Invalid`] error.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> ServiceError {
        ServiceError::new(ErrorKind::Invalid, code, message)
    }

    /// An [`ErrorKind::Internal`] error: `context` and `error` go to the log, the caller
    /// sees a generic text.
    pub fn internal(context: &str, error: impl fmt::Display) -> ServiceError {
        tracing::error!("{context}: {error}");
        ServiceError::new(ErrorKind::Internal, "internal", "internal error; the server log has details")
    }

    /// The same error, with seconds to wait before trying again.
    pub fn retry_after(mut self, secs: u64) -> ServiceError {
        self.retry_after = Some(secs);
        self
    }

    /// The same error, with the object's size (for a range outside it).
    pub fn with_size(mut self, size: u64) -> ServiceError {
        self.size = Some(size);
        self
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ServiceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<nuage_meta::Error> for ServiceError {
    fn from(e: nuage_meta::Error) -> Self {
        use ErrorKind as K;
        use nuage_meta::Error as E;
        match e {
            E::AccountExists(n) => {
                ServiceError::new(K::Conflict, "account_exists", format!("account {n} exists"))
            }
            E::ProviderExists(n) => {
                ServiceError::new(K::Conflict, "provider_exists", format!("a provider named {n} exists"))
            }
            E::AccountNotFound => ServiceError::new(K::NotFound, "account_not_found", "no such account"),
            E::AccessKeyExists => {
                ServiceError::new(K::Conflict, "access_key_exists", "an access key of this id exists")
            }
            E::BucketExists(n) => {
                ServiceError::new(K::Conflict, "bucket_exists", format!("bucket {n} already exists"))
            }
            E::BucketNotFound => ServiceError::new(K::NotFound, "bucket_not_found", "no such bucket"),
            E::BucketNotEmpty => ServiceError::new(
                K::Conflict,
                "bucket_not_empty",
                "the bucket still has objects; delete them first",
            ),
            E::ObjectNotFound => {
                ServiceError::new(K::NotFound, "object_not_found", "no such object or version")
            }
            E::UploadNotFound => ServiceError::new(
                K::NotFound,
                "upload_not_found",
                "no such upload session (it may have expired); start the upload again",
            ),
            E::MultipartNotFound => ServiceError::new(
                K::NotFound,
                "multipart_not_found",
                "no such multipart upload (it may have completed, been aborted or expired)",
            ),
            E::ShareNotFound => ServiceError::new(K::NotFound, "share_not_found", "no such share link"),
            E::UploadCommitted => ServiceError::new(
                K::Conflict,
                "upload_committed",
                "this upload was committed; delete the object or version instead",
            ),
            E::UploadTooLarge(m) => ServiceError::new(K::TooLarge, "upload_too_large", m),
            E::ChunkNotDeclared => ServiceError::new(
                K::Conflict,
                "chunk_not_declared",
                "this upload did not declare this chunk at this size; declare it first",
            ),
            E::QuotaExceeded { used, quota, needed } => ServiceError::new(
                K::TooLarge,
                "quota_exceeded",
                format!(
                    "the account uses or holds {used} of its {quota} stored bytes; this write needs {needed} more"
                ),
            ),
            E::PreconditionFailed => ServiceError::new(
                K::PreconditionFailed,
                "precondition_failed",
                "If-Match / If-None-Match does not hold for the current version",
            ),
            E::IdempotencyConflict => ServiceError::new(
                K::IdempotencyConflict,
                "idempotency_key_reused",
                "this Idempotency-Key was used for another bucket, key or body",
            ),
            E::LeaseLost => ServiceError::new(
                K::Unavailable,
                "upload_lease_expired",
                "the upload took longer than its chunk leases last ([workers] upload_lease_secs); nothing was \
                 committed, send it again",
            ),
            e if e.is_temporary() => {
                tracing::warn!("database busy: {e}");
                ServiceError::new(K::Unavailable, "busy", "the metadata store is busy; retry")
            }
            e => ServiceError::internal("metadata store", e),
        }
    }
}

impl From<nuage_blob::Error> for ServiceError {
    fn from(e: nuage_blob::Error) -> Self {
        use nuage_blob::Error as E;
        match e {
            E::QuorumNotMet { ref problems, .. }
                if !problems.is_empty()
                    && problems.iter().all(|p| p.kind == nuage_blob::ProblemKind::Full) =>
            {
                tracing::warn!("storage: {e}");
                ServiceError::new(
                    ErrorKind::InsufficientStorage,
                    "insufficient_storage",
                    "the storage providers this write needs are full; nothing was stored (an operator must add room or a provider)",
                )
            }
            E::QuorumNotMet { .. } | E::Unavailable { .. } | E::ProviderDown { .. } => {
                tracing::warn!("storage: {e}");
                ServiceError::new(
                    ErrorKind::Unavailable,
                    "storage_unavailable",
                    "not enough storage providers answer to complete this request; retry later",
                )
            }
            e => ServiceError::internal("chunk store", e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_keep_their_codes_and_say_nothing_internal() {
        let e = ServiceError::from(nuage_meta::Error::BucketNotFound);
        assert_eq!((e.kind, e.code), (ErrorKind::NotFound, "bucket_not_found"));
        let e = ServiceError::from(nuage_meta::Error::QuotaExceeded { used: 5, quota: 8, needed: 4 });
        assert_eq!((e.kind, e.code), (ErrorKind::TooLarge, "quota_exceeded"));
        assert!(e.message.contains("5 of its 8"), "{}", e.message);
        let e = ServiceError::from(nuage_meta::Error::Corrupt("row 7: a secret detail".into()));
        assert_eq!((e.kind, e.code), (ErrorKind::Internal, "internal"));
        assert!(!e.message.contains("secret"), "{}", e.message);
    }
}
