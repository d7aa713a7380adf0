//! `HttpError`: an error answer, with a status, a stable code (the contract: docs/api.md
//! lists them) and a message, as the JSON body `{"error": {"code", "message"}}`. 5xx bodies
//! say nothing internal; the log has the details.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nuage_proto::{ErrorBody, ErrorDetail};

/// An error answer.
#[derive(Debug)]
pub struct HttpError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// For `416`: the object size, sent back in `Content-Range: bytes */SIZE`.
    pub size: Option<u64>,
    /// For `429` (and some `503`s): seconds to wait, sent back in `Retry-After`.
    pub retry_after: Option<u64>,
}

impl HttpError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        HttpError { status, code, message: message.into(), size: None, retry_after: None }
    }

    /// `400` with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        HttpError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// `500`: the message goes to the log, the client sees a generic text.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!("{context}: {error}");
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has details",
        )
    }
}

/// The answer to a request body that could not be read to its end: `408 request_timeout`
/// when the client sent it too slowly ([`crate::listener::BodyTooSlow`]), `400
/// body_incomplete` otherwise.
pub fn body_error(e: &(dyn std::error::Error + 'static)) -> HttpError {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<crate::listener::BodyTooSlow>() {
            return HttpError::new(
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
    HttpError::bad_request("body_incomplete", "the request body ended early or could not be read")
}

impl IntoResponse for HttpError {
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
