//! The handlers of accounts, tokens, buckets and the service endpoints (health, metrics,
//! grant keys, edges); the routes are in [`crate::routes`].

use nuage_proto::{
    AccessKeyList, AccessKeyRequest, AccessKeyView, AccountView, BucketList, BucketRequest, BucketView,
    EdgeList, GrantKeyView, Login, NewAccessKey, NewToken, TokenList, TokenRequest, TokenView,
};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use nuage_http::extract::{Json, Path};
use nuage_meta::Bucket;

use crate::Nuage;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use nuage_service::buckets::BucketSettings;

/// The public keys that verify grants (for edges); no authentication needed.
#[utoipa::path(get, path = "/v1/grant-keys", tag = "uploads",
    responses((status = 200, body = Vec<GrantKeyView>)))]
pub(crate) async fn grant_keys(State(nuage): State<Arc<Nuage>>) -> Json<Vec<GrantKeyView>> {
    use base64::Engine;
    Json(
        nuage
            .grants
            .public_keys()
            .into_iter()
            .map(|(id, key, retired_at)| GrantKeyView {
                id,
                public_key: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key),
                retired_at,
            })
            .collect(),
    )
}

/// The edge caches this server knows (`[[edges]]`); no authentication needed.
#[utoipa::path(get, path = "/v1/edges", tag = "service", responses((status = 200, body = EdgeList)))]
pub(crate) async fn edges(State(nuage): State<Arc<Nuage>>) -> Json<EdgeList> {
    Json(EdgeList { edges: nuage.config.edges.clone() })
}

/// Health: the database answers; which providers are up.
#[utoipa::path(get, path = "/healthz", tag = "service", responses(
    (status = 200, description = "`{\"status\": \"ok\", \"providers\": [{\"name\", \"up\"}]}`"),
    (status = 503, description = "The database does not answer"),
))]
pub(crate) async fn healthz(State(nuage): State<Arc<Nuage>>) -> Response {
    let health = nuage.health().await;
    let providers: Vec<_> =
        health.providers.iter().map(|(name, up)| serde_json::json!({"name": name, "up": up})).collect();
    let status = if health.database { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let text = if health.database { "ok" } else { "database unreachable" };
    (status, Json(serde_json::json!({"status": text, "providers": providers}))).into_response()
}

/// Prometheus counters.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(crate) async fn metrics(State(nuage): State<Arc<Nuage>>) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], nuage.metrics.render())
}

/// Exchanges an account's password for a token.
#[utoipa::path(post, path = "/v1/login", tag = "accounts", request_body = Login, responses(
    (status = 200, description = "A new token", body = NewToken),
    (status = 401, description = "`invalid_credentials`", body = ErrorBody),
    (status = 429, description = "`login_throttled`, with `Retry-After`", body = ErrorBody),
))]
pub(crate) async fn login(
    State(nuage): State<Arc<Nuage>>,
    body: Option<Json<Login>>,
) -> ApiResult<Json<NewToken>> {
    let Some(Json(login)) = body else {
        return Err(ApiError::bad_request("invalid_request", "send JSON {\"account\": …, \"password\": …}"));
    };
    let account = nuage.sign_in(&login.account, login.password).await?;
    let name = login.token_name.unwrap_or_else(|| "login".into());
    Ok(Json(issue_token(&nuage, account.id, &name).await?))
}

/// Makes a token for `account_id` with the configured lifetime.
pub async fn issue_token(nuage: &Nuage, account_id: i64, name: &str) -> ApiResult<NewToken> {
    let (token, made) = nuage.issue_token(account_id, name).await?;
    Ok(NewToken { token, id: made.id, expires_at: made.expires_at })
}

/// The caller's account.
#[utoipa::path(get, path = "/v1/account", tag = "accounts", security(("token" = [])), responses(
    (status = 200, body = AccountView), (status = 401, body = ErrorBody),
))]
pub(crate) async fn account(State(nuage): State<Arc<Nuage>>, caller: Caller) -> ApiResult<Json<AccountView>> {
    let a = nuage.account(*caller).await?;
    Ok(Json(AccountView {
        name: a.name,
        quota_bytes: a.quota_bytes,
        used_bytes: a.used_bytes,
        change_seq: a.change_seq,
    }))
}

/// Another token for the caller's account.
#[utoipa::path(post, path = "/v1/tokens", tag = "accounts", security(("token" = [])),
    request_body(content = Option<TokenRequest>), responses(
    (status = 201, body = NewToken), (status = 401, body = ErrorBody),
))]
pub(crate) async fn create_token(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    body: Option<Json<TokenRequest>>,
) -> ApiResult<(StatusCode, Json<NewToken>)> {
    let name = body.and_then(|b| b.0.name).unwrap_or_else(|| "api".into());
    Ok((StatusCode::CREATED, Json(issue_token(&nuage, caller.account_id, &name).await?)))
}

/// The caller's tokens, newest first.
#[utoipa::path(get, path = "/v1/tokens", tag = "accounts", security(("token" = [])), responses(
    (status = 200, body = TokenList), (status = 401, body = ErrorBody),
))]
pub(crate) async fn list_tokens(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
) -> ApiResult<Json<TokenList>> {
    let tokens = nuage
        .tokens(*caller)
        .await?
        .into_iter()
        .map(|t| TokenView {
            current: t.id == caller.token_id,
            id: t.id,
            name: t.name,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        })
        .collect();
    Ok(Json(TokenList { tokens }))
}

/// Revokes one of the caller's tokens (`current`: the one of this request).
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "accounts", security(("token" = [])),
    params(("id" = String, Path, description = "Token id, or `current`")), responses(
    (status = 204, description = "Revoked"), (status = 404, description = "`token_not_found`", body = ErrorBody),
))]
pub(crate) async fn revoke_token(
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
    nuage.revoke_token(*caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn access_key_view(k: nuage_meta::AccessKey) -> AccessKeyView {
    AccessKeyView {
        id: k.id,
        name: k.name,
        bucket: k.bucket,
        read_only: k.read_only,
        created_at: k.created_at,
        revoked_at: k.revoked_at,
    }
}

/// An S3 access key for the caller's account (the secret is in this answer only).
#[utoipa::path(post, path = "/v1/access-keys", tag = "accounts", security(("token" = [])),
    request_body(content = Option<AccessKeyRequest>), responses(
    (status = 201, body = NewAccessKey),
    (status = 400, description = "`invalid_bucket_name`, `invalid_key_name`", body = ErrorBody),
))]
pub(crate) async fn create_access_key(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    body: Option<Json<AccessKeyRequest>>,
) -> ApiResult<(StatusCode, Json<NewAccessKey>)> {
    let request = body.map(|b| b.0).unwrap_or_default();
    let name = request.name.unwrap_or_else(|| "s3".into());
    let scope = nuage_service::access_keys::KeyScope { bucket: request.bucket, read_only: request.read_only };
    let (key, secret) = nuage.create_access_key(*caller, &name, &scope).await?;
    Ok((StatusCode::CREATED, Json(NewAccessKey { key: access_key_view(key), secret })))
}

/// The caller's S3 access keys, newest first (never their secrets).
#[utoipa::path(get, path = "/v1/access-keys", tag = "accounts", security(("token" = [])), responses(
    (status = 200, body = AccessKeyList),
))]
pub(crate) async fn list_access_keys(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
) -> ApiResult<Json<AccessKeyList>> {
    let access_keys = nuage.access_keys(*caller).await?.into_iter().map(access_key_view).collect();
    Ok(Json(AccessKeyList { access_keys }))
}

/// Revokes one of the caller's S3 access keys: refused from the next request on.
#[utoipa::path(delete, path = "/v1/access-keys/{id}", tag = "accounts", security(("token" = [])),
    params(("id" = String, Path, description = "Access key id")), responses(
    (status = 204, description = "Revoked"),
    (status = 404, description = "`access_key_not_found` (unknown, another account's, or revoked)", body = ErrorBody),
))]
pub(crate) async fn revoke_access_key(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    nuage.revoke_access_key(*caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A bucket as the API shows it.
pub(crate) fn bucket_view(b: Bucket) -> BucketView {
    BucketView {
        name: b.name,
        replicas: b.policy.replicas,
        write_quorum: b.policy.write_quorum,
        keep_versions: b.policy.keep_versions,
        created_at: b.created_at,
        e2e_key_id: b.policy.e2e_key_id.map(hex::encode),
        direct_upload: b.policy.direct_upload,
    }
}

/// The caller's buckets, by name.
#[utoipa::path(get, path = "/v1/buckets", tag = "buckets", security(("token" = [])), responses(
    (status = 200, body = BucketList), (status = 401, body = ErrorBody),
))]
pub(crate) async fn list_buckets(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
) -> ApiResult<Json<BucketList>> {
    let buckets = nuage.buckets(*caller).await?.into_iter().map(bucket_view).collect();
    Ok(Json(BucketList { buckets }))
}

/// Creates a bucket.
#[utoipa::path(put, path = "/v1/buckets/{bucket}", tag = "buckets", security(("token" = [])),
    params(("bucket" = String, Path)), request_body(content = Option<BucketRequest>), responses(
    (status = 201, body = BucketView),
    (status = 400, description = "`invalid_bucket_name`, `invalid_placement`, `invalid_key_id`", body = ErrorBody),
    (status = 409, description = "`bucket_exists`", body = ErrorBody),
))]
pub(crate) async fn create_bucket(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Option<Json<BucketRequest>>,
) -> ApiResult<(StatusCode, Json<BucketView>)> {
    let req = body.map(|b| b.0).unwrap_or_default();
    let e2e_key_id = req
        .e2e_key_id
        .as_deref()
        .map(|h| {
            hex::decode(h).ok().and_then(|k| <[u8; 16]>::try_from(k).ok()).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_key_id",
                    "e2e_key_id is the 32 hex digits of a content key's id",
                )
            })
        })
        .transpose()?;
    let settings = BucketSettings {
        replicas: req.replicas,
        write_quorum: req.write_quorum,
        keep_versions: req.keep_versions,
        e2e_key_id,
        direct_upload: req.direct_upload,
    };
    let bucket = nuage.create_bucket(*caller, &name, &settings).await?;
    Ok((StatusCode::CREATED, Json(bucket_view(bucket))))
}

/// One bucket.
#[utoipa::path(get, path = "/v1/buckets/{bucket}", tag = "buckets", security(("token" = [])),
    params(("bucket" = String, Path)), responses(
    (status = 200, body = BucketView), (status = 404, description = "`bucket_not_found`", body = ErrorBody),
))]
pub(crate) async fn bucket_info(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<BucketView>> {
    Ok(Json(bucket_view(nuage.bucket(*caller, &name).await?)))
}

/// Deletes a bucket with no live object.
#[utoipa::path(delete, path = "/v1/buckets/{bucket}", tag = "buckets", security(("token" = [])),
    params(("bucket" = String, Path)), responses(
    (status = 204, description = "Deleted"),
    (status = 404, description = "`bucket_not_found`", body = ErrorBody),
    (status = 409, description = "`bucket_not_empty`", body = ErrorBody),
))]
pub(crate) async fn delete_bucket(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    nuage.delete_bucket(*caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
