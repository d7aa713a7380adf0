//! The router and the handlers of accounts, tokens and buckets; objects are in
//! [`crate::objects`].

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use nuage_blob::Placement;
use nuage_meta::{Bucket, BucketPolicy};
use serde::{Deserialize, Serialize};

use crate::auth::{self, Caller};
use crate::error::{ApiError, ApiResult};
use crate::names::check_bucket;
use crate::{Nuage, objects};

/// The whole HTTP API.
pub fn router(nuage: Arc<Nuage>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/login", post(login))
        .route("/v1/account", get(account))
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{id}", delete(revoke_token))
        .route("/v1/buckets", get(list_buckets))
        .route("/v1/buckets/{bucket}", put(create_bucket).delete(delete_bucket).get(bucket_info))
        .route("/v1/buckets/{bucket}/objects", get(objects::list))
        .route(
            "/v1/buckets/{bucket}/objects/{*key}",
            put(objects::put).get(objects::get).delete(objects::delete),
        )
        .route("/v1/buckets/{bucket}/versions/{*key}", get(objects::versions))
        .fallback(not_found)
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

async fn healthz(State(nuage): State<Arc<Nuage>>) -> Response {
    let db = nuage.meta.schema_version().await.is_ok();
    let providers: Vec<_> = nuage
        .store
        .providers()
        .iter()
        .map(|p| serde_json::json!({"name": p.name(), "up": !p.is_down()}))
        .collect();
    let status = if db { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(
            serde_json::json!({"status": if db {"ok"} else {"database unreachable"}, "providers": providers}),
        ),
    )
        .into_response()
}

async fn metrics(State(nuage): State<Arc<Nuage>>) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], nuage.metrics.render())
}

/// `POST /v1/login` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    account: String,
    password: String,
    /// A label for the token (default "login").
    #[serde(default)]
    token_name: Option<String>,
}

/// A token as returned once, at creation.
#[derive(Debug, Serialize)]
pub struct NewToken {
    /// The secret text: shown only now.
    pub token: String,
    /// Its id, to revoke it.
    pub id: i64,
    /// Expiry, Unix ms.
    pub expires_at: Option<i64>,
}

async fn login(State(nuage): State<Arc<Nuage>>, body: Option<Json<Login>>) -> ApiResult<Json<NewToken>> {
    let Some(Json(login)) = body else {
        return Err(ApiError::bad_request("invalid_request", "send JSON {\"account\": …, \"password\": …}"));
    };
    let refused =
        || ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "wrong account or password");
    let account = match nuage.meta.account_by_name(&login.account).await {
        Ok(a) => a,
        Err(nuage_meta::Error::AccountNotFound) => return Err(refused()),
        Err(e) => return Err(e.into()),
    };
    let secrets = nuage.meta.account_secrets(account.id).await?;
    let Some(phc) = secrets.password_hash else { return Err(refused()) };
    let password = login.password;
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, &phc))
        .await
        .map_err(|e| ApiError::internal("password check", e))?;
    if !ok {
        return Err(refused());
    }
    let name = login.token_name.unwrap_or_else(|| "login".into());
    Ok(Json(issue_token(&nuage, account.id, &name).await?))
}

/// Makes a token for `account_id` with the configured lifetime.
pub async fn issue_token(nuage: &Nuage, account_id: i64, name: &str) -> ApiResult<NewToken> {
    let (text, hash) = auth::new_token();
    let ttl = i64::from(nuage.config.token_ttl_days) * 86_400_000;
    let t = nuage.meta.create_token(account_id, hash, name, Some(nuage_meta::now_ms() + ttl)).await?;
    Ok(NewToken { token: text, id: t.id, expires_at: t.expires_at })
}

async fn account(State(nuage): State<Arc<Nuage>>, caller: Caller) -> ApiResult<Json<serde_json::Value>> {
    let a = nuage.meta.account(caller.account_id).await?;
    Ok(Json(serde_json::json!({
        "name": a.name, "quota_bytes": a.quota_bytes, "used_bytes": a.used_bytes, "change_seq": a.change_seq,
    })))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    #[serde(default)]
    name: Option<String>,
}

async fn create_token(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    body: Option<Json<TokenRequest>>,
) -> ApiResult<(StatusCode, Json<NewToken>)> {
    let name = body.and_then(|b| b.0.name).unwrap_or_else(|| "api".into());
    Ok((StatusCode::CREATED, Json(issue_token(&nuage, caller.account_id, &name).await?)))
}

async fn list_tokens(State(nuage): State<Arc<Nuage>>, caller: Caller) -> ApiResult<Json<serde_json::Value>> {
    let tokens: Vec<_> = nuage
        .meta
        .tokens(caller.account_id)
        .await?
        .into_iter()
        .map(|t| {
            serde_json::json!({
                "id": t.id, "name": t.name, "created_at": t.created_at, "expires_at": t.expires_at,
                "revoked_at": t.revoked_at, "current": t.id == caller.token_id,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "tokens": tokens })))
}

async fn revoke_token(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: i64 = if id == "current" {
        caller.token_id
    } else {
        id.parse()
            .map_err(|_| ApiError::bad_request("invalid_request", "a token id is a number or `current`"))?
    };
    if nuage.meta.revoke_token(caller.account_id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "token_not_found", "no such active token"))
    }
}

/// A bucket as the API shows it.
#[derive(Debug, Serialize)]
struct BucketView {
    name: String,
    replicas: u32,
    write_quorum: u32,
    keep_versions: u32,
    created_at: i64,
}

impl From<Bucket> for BucketView {
    fn from(b: Bucket) -> Self {
        BucketView {
            name: b.name,
            replicas: b.policy.replicas,
            write_quorum: b.policy.write_quorum,
            keep_versions: b.policy.keep_versions,
            created_at: b.created_at,
        }
    }
}

async fn list_buckets(State(nuage): State<Arc<Nuage>>, caller: Caller) -> ApiResult<Json<serde_json::Value>> {
    let buckets: Vec<BucketView> =
        nuage.meta.buckets(caller.account_id).await?.into_iter().map(BucketView::from).collect();
    Ok(Json(serde_json::json!({ "buckets": buckets })))
}

/// `PUT /v1/buckets/{bucket}` body; every field defaults to the server's `[buckets]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BucketRequest {
    replicas: Option<u32>,
    write_quorum: Option<u32>,
    keep_versions: Option<u32>,
}

async fn create_bucket(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Option<Json<BucketRequest>>,
) -> ApiResult<(StatusCode, Json<BucketView>)> {
    check_bucket(&name)?;
    let req = body.map(|b| b.0).unwrap_or_default();
    let d = nuage.config.buckets;
    let replicas = req.replicas.unwrap_or(d.replicas);
    let write_quorum = req.write_quorum.unwrap_or(if req.replicas.is_some() {
        replicas
    } else {
        d.write_quorum.unwrap_or(replicas)
    });
    let policy =
        BucketPolicy { replicas, write_quorum, keep_versions: req.keep_versions.unwrap_or(d.keep_versions) };
    nuage
        .store
        .check_placement(Placement::replicas(replicas as usize).with_quorum(write_quorum as usize))
        .map_err(|e| ApiError::bad_request("invalid_placement", e.to_string()))?;
    let bucket = nuage.meta.create_bucket(caller.account_id, &name, policy).await?;
    Ok((StatusCode::CREATED, Json(bucket.into())))
}

async fn bucket_info(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<BucketView>> {
    Ok(Json(nuage.meta.bucket(caller.account_id, &name).await?.into()))
}

async fn delete_bucket(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    nuage.meta.delete_bucket(caller.account_id, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
