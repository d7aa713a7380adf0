//! The extractors of the handlers: axum's `Json`, `Query` and `Path`, whose refusals are
//! [`HttpError`]s (a JSON body with a documented code) instead of axum's plain text; and
//! [`json_errors`], the last layer of a router, which gives any error answer that is still
//! not JSON (a `405` of the router, a `413` of a body limit) the same body.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::HttpError;

/// A JSON body (`400 invalid_request` when it is not the expected JSON); also a JSON answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

fn json_refused(e: JsonRejection) -> HttpError {
    match e {
        e if e.status() == StatusCode::PAYLOAD_TOO_LARGE => HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "a JSON request body has at most 2 MB",
        ),
        JsonRejection::BytesRejection(e) => crate::error::body_error(&e),
        JsonRejection::MissingJsonContentType(_) => HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body with Content-Type: application/json",
        ),
        e => HttpError::bad_request("invalid_request", e.body_text()),
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, HttpError> {
        <axum::Json<T> as FromRequest<S>>::from_request(req, state)
            .await
            .map(|j| Json(j.0))
            .map_err(json_refused)
    }
}

/// No body (or not a JSON one) is `None`: the handler says what it expected.
impl<T: DeserializeOwned, S: Send + Sync> OptionalFromRequest<S> for Json<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, HttpError> {
        <axum::Json<T> as OptionalFromRequest<S>>::from_request(req, state)
            .await
            .map(|j| j.map(|j| Json(j.0)))
            .map_err(json_refused)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// The query string (`400 invalid_query` when a known parameter has a bad value; unknown
/// parameters are ignored).
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e: QueryRejection| HttpError::bad_request("invalid_query", e.body_text()))
    }
}

/// The path parameters (`400 invalid_path` when one is not UTF-8 once percent-decoded, or not
/// of the expected type).
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        axum::extract::Path::<T>::from_request_parts(parts, state).await.map(|p| Path(p.0)).map_err(
            |e: PathRejection| match e {
                PathRejection::FailedToDeserializePathParams(e) => {
                    HttpError::bad_request("invalid_path", e.body_text())
                }
                e => HttpError::internal("path parameters", e.body_text()),
            },
        )
    }
}

/// Gives an error answer made below the handlers (the router's `405`, a body limit's `413`)
/// the JSON body every other error has, keeping its status and headers (`Allow`). Answers
/// that are JSON already, or HTML (the share page's), pass as they are.
pub async fn json_errors(request: Request, next: axum::middleware::Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let typed = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if typed.starts_with("application/json") || typed.starts_with("text/html") {
        return response;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this endpoint does not take this method"),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("body_too_large", "the request body is larger than this endpoint takes")
        }
        StatusCode::NOT_FOUND => ("no_route", "no such endpoint; see docs/api.md"),
        s if s.is_server_error() => ("internal", "internal error; the server log has details"),
        _ => ("invalid_request", "the request was refused"),
    };
    let mut answer = HttpError::new(status, code, message).into_response();
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().append(name, value.clone());
        }
    }
    answer
}
