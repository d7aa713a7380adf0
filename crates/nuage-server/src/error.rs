//! `ApiError`: one type for every error the HTTP API returns, with a status, a stable code
//! (the contract: docs/api.md lists them) and a message. 5xx bodies say nothing internal;
//! the log has the details. The service's errors ([`ServiceError`]) become `ApiError`s
//! here, in one mapping from their kind to a status; the ones built in this crate are the
//! HTTP layer's own (a body that is no JSON, a missing token, a route that does not exist).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
pub use nuage_proto::{ErrorBody, ErrorDetail};
use nuage_service::{ErrorKind, ServiceError};

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

impl From<ServiceError> for ApiError {
    /// The `/v1` answer to a service error: its code and message, under the status of its
    /// kind.
    fn from(e: ServiceError) -> Self {
        use ErrorKind as K;
        if e.kind == K::Incomplete
            && let Some(source) = &e.source
        {
            return body_error(source.as_ref());
        }
        let status = match e.kind {
            K::Invalid => StatusCode::BAD_REQUEST,
            K::Unauthorized => StatusCode::UNAUTHORIZED,
            K::Forbidden => StatusCode::FORBIDDEN,
            K::NotFound => StatusCode::NOT_FOUND,
            K::Conflict => StatusCode::CONFLICT,
            K::Gone => StatusCode::GONE,
            K::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            K::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            K::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            K::IdempotencyConflict | K::ContentMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            K::Throttled => StatusCode::TOO_MANY_REQUESTS,
            K::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            K::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            K::Incomplete => StatusCode::BAD_REQUEST,
            // A kind added later is a failure until it is mapped here.
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError { status, code: e.code, message: e.message, size: e.size, retry_after: e.retry_after }
    }
}

impl From<nuage_meta::Error> for ApiError {
    fn from(e: nuage_meta::Error) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<nuage_blob::Error> for ApiError {
    fn from(e: nuage_blob::Error) -> Self {
        ServiceError::from(e).into()
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
