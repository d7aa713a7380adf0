//! Smart upload: the device chunks and encrypts, the server tells it which chunks it lacks,
//! the device sends only those (each with a grant), then commits the manifest.
//!
//! 1. `GET /v1/uploads/settings`: the chunking, compression and convergence secret the
//!    device must use so that its chunks are the ones the server would have made.
//! 2. `POST /v1/uploads`: the list of (address, stored size). The server records a session
//!    and answers, for each address its chunk index does not hold, an upload target with a
//!    grant. `POST /v1/uploads/{id}/chunks` declares more chunks the same way, so a device
//!    can stream a large file in batches instead of listing it whole first.
//! 3. `PUT /v1/chunks/{address}` with the grant in `x-nuage-grant`: the server checks the
//!    bytes against the address and places them by the bucket's policy.
//! 4. `POST /v1/uploads/{id}/commit` with the manifest: every chunk must be declared, and
//!    held by the index or found on the providers with its declared size; then one
//!    transaction commits the version, idempotently (the session id is the idempotency key).

use nuage_proto::{
    ChunkStored, CommitUpload, MoreChunks, MoreTargets, StartUpload, UploadSettings, UploadStarted,
    UploadTarget,
};
use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nuage_core::chunk::{ChunkKey, Compression};
use nuage_http::extract::{Json, Path};
use nuage_proto::headers::{CHUNK_KEY as CHUNK_KEY_HEADER, GRANT as GRANT_HEADER};
use nuage_service::uploads::{Target, parse_address};

use crate::Nuage;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::objects::{precondition, put_answer};

/// The chunking and sealing settings of smart uploads for this account.
#[utoipa::path(get, path = "/v1/uploads/settings", tag = "uploads", security(("token" = [])),
    responses((status = 200, body = UploadSettings), (status = 401, body = ErrorBody)))]
pub async fn settings(State(nuage): State<Arc<Nuage>>, caller: Caller) -> ApiResult<Json<UploadSettings>> {
    let secret = nuage.convergence_secret(*caller).await?;
    let zstd_level = match nuage.seal.compression {
        Compression::None => 0,
        Compression::Zstd(level) => level,
    };
    Ok(Json(UploadSettings {
        convergence_secret: URL_SAFE_NO_PAD.encode(secret),
        min_size: nuage.chunker.min_size,
        avg_size: nuage.chunker.avg_size,
        max_size: nuage.chunker.max_size,
        zstd_level,
    }))
}

/// A target as the API shows it: a presigned request, or this server's chunk route.
fn target_view(target: Target) -> UploadTarget {
    match target {
        Target::Presigned { address, request, expires_at } => UploadTarget {
            address: address.to_hex(),
            method: request.method,
            url: request.url,
            headers: request.headers.into_iter().collect(),
            expires_at,
        },
        Target::Grant { address, grant, expires_at } => UploadTarget {
            address: address.to_hex(),
            method: "PUT".into(),
            url: format!("/v1/chunks/{}", address.to_hex()),
            headers: HashMap::from([(GRANT_HEADER.to_owned(), grant)]),
            expires_at,
        },
    }
}

/// Starts a smart upload: records the chunk list, answers what to send.
#[utoipa::path(post, path = "/v1/uploads", tag = "uploads", security(("token" = [])),
    request_body = StartUpload,
    responses(
        (status = 201, body = UploadStarted),
        (status = 400, description = "`invalid_key`, `invalid_address`, `invalid_chunk_size`, `too_many_chunks`", body = ErrorBody),
        (status = 404, description = "`bucket_not_found`", body = ErrorBody),
        (status = 413, description = "`quota_exceeded`, `upload_too_large`", body = ErrorBody),
    ))]
pub async fn start(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    body: Option<Json<StartUpload>>,
) -> ApiResult<Response> {
    let Some(Json(req)) = body else {
        return Err(ApiError::bad_request(
            "invalid_request",
            "send JSON {bucket, key, chunks: [{address, size}]}",
        ));
    };
    let (session, targets) =
        nuage.start_upload(caller.account_id, &req.bucket, &req.key, &req.chunks).await?;
    let missing = targets.into_iter().map(target_view).collect();
    let answer = UploadStarted { upload_id: session.id, expires_at: session.expires_at, missing };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// Declares more chunks of a smart upload: how a large file streams in batches.
#[utoipa::path(post, path = "/v1/uploads/{id}/chunks", tag = "uploads", security(("token" = [])),
    params(("id" = String, Path)),
    request_body = MoreChunks,
    responses(
        (status = 200, body = MoreTargets),
        (status = 400, description = "`invalid_address`, `invalid_chunk_size`, `too_many_chunks`", body = ErrorBody),
        (status = 404, description = "`upload_not_found`", body = ErrorBody),
        (status = 410, description = "`upload_expired`", body = ErrorBody),
    ))]
pub async fn more_chunks(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<MoreChunks>>,
) -> ApiResult<Json<MoreTargets>> {
    let Some(Json(req)) = body else {
        return Err(ApiError::bad_request("invalid_request", "send JSON {chunks: [{address, size}]}"));
    };
    let targets = nuage.declare_more(caller.account_id, &id, &req.chunks).await?;
    Ok(Json(MoreTargets { missing: targets.into_iter().map(target_view).collect() }))
}

/// Aborts a smart upload that will not commit: the room its chunks held in the quota is
/// given back at once, and it can no longer commit.
#[utoipa::path(delete, path = "/v1/uploads/{id}", tag = "uploads", security(("token" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 204, description = "Aborted (or expired already)"),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`upload_not_found`", body = ErrorBody),
        (status = 409, description = "`upload_committed`", body = ErrorBody),
    ))]
pub async fn abort(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    nuage.abort_upload(caller.account_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stores one chunk, under a grant from `POST /v1/uploads`.
#[utoipa::path(put, path = "/v1/chunks/{address}", tag = "uploads",
    params(("address" = String, Path), ("x-nuage-grant" = String, Header, description = "The grant from the upload target"),
        ("x-nuage-chunk-key" = Option<String>, Header, description = "The chunk's key, base64url: required for a normal bucket, never sent for an end-to-end one")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 201, body = ChunkStored),
        (status = 400, description = "`chunk_key_missing`", body = ErrorBody),
        (status = 403, description = "`grant_missing`, `grant_forged`, `grant_expired`, `grant_wrong_operation`, `grant_wrong_address`", body = ErrorBody),
        (status = 409, description = "`chunk_not_declared`", body = ErrorBody),
        (status = 410, description = "`upload_expired`", body = ErrorBody),
        (status = 413, description = "`grant_size_exceeded`, `quota_exceeded`", body = ErrorBody),
        (status = 422, description = "`chunk_address_mismatch`, `chunk_key_mismatch`", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`", body = ErrorBody),
    ))]
pub async fn put_chunk(
    State(nuage): State<Arc<Nuage>>,
    Path(address): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let address = parse_address(&address)?;
    let grant = headers.get(GRANT_HEADER).and_then(|v| v.to_str().ok());
    let grant = nuage.chunk_grant(grant, &address).await?;
    // A key that cannot be read is as good as none: the service says which it needs.
    let key = headers
        .get(CHUNK_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| URL_SAFE_NO_PAD.decode(v.trim_end_matches('=')).ok())
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .map(ChunkKey::from_bytes);
    let stored = nuage.store_chunk(&grant, key, body.into_data_stream()).await?;
    let answer = ChunkStored { address: stored.address.to_hex(), stored_on: stored.stored_on };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// Commits a smart upload as a new version of its key. Committing twice gives the same
/// version (`200` the second time).
#[utoipa::path(post, path = "/v1/uploads/{id}/commit", tag = "uploads", security(("token" = [])),
    params(("id" = String, Path), ("If-Match" = Option<String>, Header), ("If-None-Match" = Option<String>, Header)),
    request_body = CommitUpload,
    responses(
        (status = 201, description = "Version made", body = nuage_proto::PutAnswer),
        (status = 200, description = "The same commit, replayed", body = nuage_proto::PutAnswer),
        (status = 400, description = "`manifest_invalid`, `manifest_undeclared_chunk`", body = ErrorBody),
        (status = 404, description = "`upload_not_found`", body = ErrorBody),
        (status = 409, description = "`chunks_missing`, `e2e_key_mismatch`", body = ErrorBody),
        (status = 410, description = "`upload_expired`", body = ErrorBody),
        (status = 412, description = "`precondition_failed`", body = ErrorBody),
        (status = 413, description = "`quota_exceeded`", body = ErrorBody),
    ))]
pub async fn commit(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Option<Json<CommitUpload>>,
) -> ApiResult<Response> {
    let Some(Json(req)) = body else {
        return Err(ApiError::bad_request("invalid_request", "send JSON {manifest, content_type}"));
    };
    let (bucket, committed) = nuage
        .commit_upload(caller.account_id, &id, &req.manifest, req.content_type, &precondition(&headers))
        .await?;
    Ok(put_answer(&bucket, committed.version, committed.replayed))
}
