//! The caller of a `/v1` request, from its `Authorization: Bearer` header; the rules of
//! tokens and passwords are the service's (`nuage_service::auth`).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};

use crate::{ApiError, Nuage};

/// The authenticated caller of a request (the service's [`nuage_service::auth::Caller`]):
/// extracting it answers `401` with `token_missing`, `token_invalid`, `token_expired` or
/// `token_revoked` when it cannot.
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub nuage_service::auth::Caller);

impl std::ops::Deref for Caller {
    type Target = nuage_service::auth::Caller;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl FromRequestParts<Arc<Nuage>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, nuage: &Arc<Nuage>) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "token_missing",
                "send Authorization: Bearer <token>; see `nuage login`",
            ));
        };
        let text = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim).unwrap_or("");
        Ok(Caller(nuage.authenticate(text).await?))
    }
}
