//! The routes of the whole HTTP API: which handler answers which method and path, and the
//! layers every request goes through (JSON errors, request counts).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post, put};

use crate::error::ApiError;
use crate::{Nuage, api, objects, openapi, shares, uploads};

/// The whole HTTP API.
pub fn router(nuage: Arc<Nuage>) -> Router {
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route("/v1/openapi.json", get(openapi::openapi))
        .route("/v1/login", post(api::login))
        .route("/v1/account", get(api::account))
        .route("/v1/tokens", get(api::list_tokens).post(api::create_token))
        .route("/v1/tokens/{id}", delete(api::revoke_token))
        .route("/v1/access-keys", get(api::list_access_keys).post(api::create_access_key))
        .route("/v1/access-keys/{id}", delete(api::revoke_access_key))
        .route("/v1/buckets", get(api::list_buckets))
        .route(
            "/v1/buckets/{bucket}",
            put(api::create_bucket).delete(api::delete_bucket).get(api::bucket_info),
        )
        .route("/v1/buckets/{bucket}/objects", get(objects::list))
        .route(
            "/v1/buckets/{bucket}/objects/{*key}",
            put(objects::put).get(objects::get).head(objects::head).delete(objects::delete),
        )
        .route("/v1/buckets/{bucket}/versions/{*key}", get(objects::versions).post(objects::restore))
        .route("/v1/uploads/settings", get(uploads::settings))
        .route("/v1/uploads", post(uploads::start))
        .route("/v1/uploads/{id}", delete(uploads::abort))
        .route("/v1/uploads/{id}/chunks", post(uploads::more_chunks))
        .route("/v1/uploads/{id}/commit", post(uploads::commit))
        .route("/v1/chunks/{address}", put(uploads::put_chunk).get(shares::get_chunk))
        .route("/v1/buckets/{bucket}/manifests/{*key}", get(shares::manifest))
        .route("/v1/shares", get(shares::list).post(shares::create))
        .route("/v1/shares/{id}", delete(shares::revoke))
        .route("/s/{token}", get(shares::page))
        .route("/s/{token}/info", get(shares::info))
        .route("/s/{token}/unlock", post(shares::unlock))
        .route("/s/{token}/content", get(shares::content))
        .route("/s/{token}/manifest", get(shares::share_manifest))
        .route("/assets/share.js", get(shares::script))
        .route("/v1/grant-keys", get(api::grant_keys))
        .route("/v1/edges", get(api::edges))
        .fallback(not_found)
        .layer(middleware::from_fn(nuage_http::extract::json_errors))
        .layer(middleware::from_fn_with_state(nuage.clone(), count_requests))
        .with_state(nuage)
}

async fn count_requests(State(nuage): State<Arc<Nuage>>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    nuage.metrics.request(&method, response.status().as_u16());
    response
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such endpoint; see docs/api.md")
}
