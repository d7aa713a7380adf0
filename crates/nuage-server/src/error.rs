//! `ApiError`: every error the `/v1` API answers, an [`HttpError`] (a status, a stable code
//! from docs/api.md, a message; 5xx bodies say nothing internal). The service's errors
//! ([`ServiceError`]) become `ApiError`s here, in the one mapping from their kind to a
//! status; the ones built in this crate are the HTTP layer's own (a body that is no JSON, a
//! missing token, a route that does not exist).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
pub use nuage_http::HttpError;
use nuage_http::body_error;
pub use nuage_proto::{ErrorBody, ErrorDetail};
use nuage_service::{ErrorKind, ServiceError};

/// An error answer of the `/v1` API.
#[derive(Debug)]
pub struct ApiError(pub HttpError);

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError(HttpError::new(status, code, message))
    }

    /// `400` with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError(HttpError::bad_request(code, message))
    }

    /// `500`: the message goes to the log, the client sees a generic text.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        ApiError(HttpError::internal(context, error))
    }
}

impl From<HttpError> for ApiError {
    fn from(e: HttpError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.into_response()
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
            return ApiError(body_error(source.as_ref()));
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
        ApiError(HttpError {
            status,
            code: e.code,
            message: e.message,
            size: e.size,
            retry_after: e.retry_after,
        })
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
