//! `ApiError`: one type for every error the HTTP API returns, with a status, a stable code
//! (the contract: docs/api.md lists them) and a message. 5xx bodies say nothing internal;
//! the log has the details.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
pub use nuage_proto::{ErrorBody, ErrorDetail};

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// For `416`: the object size, sent back in `Content-Range: bytes */SIZE`.
    pub size: Option<u64>,
    /// For `429`: seconds to wait, sent back in `Retry-After`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), size: None, retry_after: None }
    }

    /// `400` with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// `500`: the message goes to the log, the client sees a generic text.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!("{context}: {error}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has details",
        )
    }
}

/// The answer to a request body that could not be read to its end: `408 request_timeout`
/// when the client sent it too slowly ([`crate::listener::BodyTooSlow`]), `400
/// body_incomplete` otherwise.
pub(crate) fn body_error(e: &(dyn std::error::Error + 'static)) -> ApiError {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<crate::listener::BodyTooSlow>() {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!("{c}; nothing was stored from this request"),
            );
        }
        // io::Error's own source skips the error it wraps.
        cause = match c.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => c.source(),
        };
    }
    ApiError::bad_request("body_incomplete", "the request body ended early or could not be read")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code.to_owned(), message: self.message } };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(size) = self.size
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<nuage_meta::Error> for ApiError {
    fn from(e: nuage_meta::Error) -> Self {
        use nuage_meta::Error as E;
        match e {
            E::AccountExists(n) => {
                ApiError::new(StatusCode::CONFLICT, "account_exists", format!("account {n} exists"))
            }
            E::ProviderExists(n) => {
                ApiError::new(StatusCode::CONFLICT, "provider_exists", format!("a provider named {n} exists"))
            }
            E::AccountNotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "account_not_found", "no such account")
            }
            E::BucketExists(n) => {
                ApiError::new(StatusCode::CONFLICT, "bucket_exists", format!("bucket {n} already exists"))
            }
            E::BucketNotFound => ApiError::new(StatusCode::NOT_FOUND, "bucket_not_found", "no such bucket"),
            E::BucketNotEmpty => ApiError::new(
                StatusCode::CONFLICT,
                "bucket_not_empty",
                "the bucket still has objects; delete them first",
            ),
            E::ObjectNotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "object_not_found", "no such object or version")
            }
            E::UploadNotFound => ApiError::new(
                StatusCode::NOT_FOUND,
                "upload_not_found",
                "no such upload session (it may have expired); start the upload again",
            ),
            E::ShareNotFound => ApiError::new(StatusCode::NOT_FOUND, "share_not_found", "no such share link"),
            E::UploadCommitted => ApiError::new(
                StatusCode::CONFLICT,
                "upload_committed",
                "this upload was committed; delete the object or version instead",
            ),
            E::UploadTooLarge(m) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "upload_too_large", m),
            E::ChunkNotDeclared => ApiError::new(
                StatusCode::CONFLICT,
                "chunk_not_declared",
                "this upload did not declare this chunk at this size; declare it first",
            ),
            E::QuotaExceeded { used, quota, needed } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "quota_exceeded",
                format!(
                    "the account uses or holds {used} of its {quota} stored bytes; this write needs {needed} more"
                ),
            ),
            E::PreconditionFailed => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                "If-Match / If-None-Match does not hold for the current version",
            ),
            E::IdempotencyConflict => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used for another bucket, key or body",
            ),
            E::LeaseLost => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upload_lease_expired",
                "the upload took longer than its chunk leases last ([workers] upload_lease_secs); nothing was \
                 committed, send it again",
            ),
            e if e.is_temporary() => {
                tracing::warn!("database busy: {e}");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "the metadata store is busy; retry")
            }
            e => ApiError::internal("metadata store", e),
        }
    }
}

impl From<nuage_blob::Error> for ApiError {
    fn from(e: nuage_blob::Error) -> Self {
        use nuage_blob::Error as E;
        match e {
            E::QuorumNotMet { ref problems, .. }
                if !problems.is_empty()
                    && problems.iter().all(|p| p.kind == nuage_blob::ProblemKind::Full) =>
            {
                tracing::warn!("storage: {e}");
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "insufficient_storage",
                    "the storage providers this write needs are full; nothing was stored (an operator must add room or a provider)",
                )
            }
            E::QuorumNotMet { .. } | E::Unavailable { .. } | E::ProviderDown { .. } => {
                tracing::warn!("storage: {e}");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "not enough storage providers answer to complete this request; retry later",
                )
            }
            e => ApiError::internal("chunk store", e),
        }
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
