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
    ChunkDecl, ChunkStored, CommitUpload, MoreChunks, MoreTargets, StartUpload, UploadSettings,
    UploadStarted, UploadTarget,
};
use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::State;

use crate::extract::{Json, Path};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures::StreamExt;
use nuage_blob::StoredChunk;
use nuage_core::chunk::{self, ChunkKey, Compression, MAX_CHUNK_LEN};
use nuage_core::grant::{GrantError, Operation};
use nuage_core::{Address, Manifest, e2e};
use nuage_meta::{Bucket, ChunkRef, DeclareLimits, DeclaredChunk, NewVersion, Opened, UploadSession, now_ms};
use nuage_proto::headers::{CHUNK_KEY as CHUNK_KEY_HEADER, GRANT as GRANT_HEADER};

use crate::Nuage;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::objects::{precondition, put_answer};
use nuage_service::metrics::add;
use nuage_service::names::check_key;
use nuage_service::objects::bucket_placement;

/// Most chunks one request may declare (a 4 TiB file at the 1 MiB average).
const MAX_CHUNKS: usize = 4 << 20;
/// Most distinct chunks one upload session may declare, over all its requests.
const MAX_SESSION_CHUNKS: u64 = 8 << 20;
/// Most stored bytes one upload session may declare: S3's largest object, 5 TiB (an
/// account's quota bounds it further).
const MAX_SESSION_BYTES: u64 = 5 << 40;
/// The largest stored chunk: the largest plaintext chunk, plus header and tag, plus zstd's
/// worst-case growth (a chunk that does not shrink is stored uncompressed anyway).
const MAX_STORED: u64 = MAX_CHUNK_LEN as u64 + 1024;

/// The chunking and sealing settings of smart uploads for this account.
#[utoipa::path(get, path = "/v1/uploads/settings", tag = "uploads", security(("token" = [])),
    responses((status = 200, body = UploadSettings), (status = 401, body = ErrorBody)))]
pub async fn settings(State(nuage): State<Arc<Nuage>>, caller: Caller) -> ApiResult<Json<UploadSettings>> {
    let secret = nuage.meta.account_secrets(caller.account_id).await?.convergence_secret;
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

pub(crate) fn parse_address(text: &str) -> ApiResult<Address> {
    text.parse().map_err(|_| {
        ApiError::bad_request("invalid_address", format!("{text:?} is not a chunk address (64 hex digits)"))
    })
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
    let Some(Json(mut req)) = body else {
        return Err(ApiError::bad_request(
            "invalid_request",
            "send JSON {bucket, key, chunks: [{address, size}]}",
        ));
    };
    req.key = check_key(&req.key)?;
    let bucket = nuage.meta.bucket(caller.account_id, &req.bucket).await?;
    let declared = parse_declared(&req.chunks)?;
    let now = now_ms();
    let session = UploadSession {
        id: format!("up_{}", hex::encode(rand::random::<[u8; 16]>())),
        scope: (rand::random::<u64>() >> 1) as i64,
        account_id: caller.account_id,
        bucket_id: bucket.id,
        key: req.key,
        created_at: now,
        expires_at: now
            .saturating_add(i64::try_from(nuage.config.grants.upload_ttl_secs * 1000).unwrap_or(i64::MAX)),
    };
    nuage.meta.create_upload_session(&session).await?;
    let missing = declare(&nuage, &session, &bucket, &declared).await?;
    let answer = UploadStarted { upload_id: session.id, expires_at: session.expires_at, missing };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

fn parse_declared(chunks: &[ChunkDecl]) -> ApiResult<Vec<DeclaredChunk>> {
    if chunks.len() > MAX_CHUNKS {
        return Err(ApiError::bad_request(
            "too_many_chunks",
            format!("at most {MAX_CHUNKS} chunks per request"),
        ));
    }
    let mut declared = Vec::with_capacity(chunks.len());
    let mut seen = std::collections::HashSet::new();
    for c in chunks {
        let address = parse_address(&c.address)?;
        if c.size == 0 || c.size > MAX_STORED {
            return Err(ApiError::bad_request(
                "invalid_chunk_size",
                format!(
                    "chunk {} declares {} bytes; stored chunks have 1 to {MAX_STORED}",
                    c.address, c.size
                ),
            ));
        }
        if seen.insert(address) {
            declared.push(DeclaredChunk { address: *address.as_bytes(), stored_size: c.size as u32 });
        }
    }
    Ok(declared)
}

/// Records `declared` in the session and answers a target for each chunk the account must
/// send: a presigned PUT straight to a provider when the bucket allows it and a provider
/// can presign, else this server's `PUT /v1/chunks/{address}` under a grant.
///
/// An account skips only the chunks it holds itself (`chunk_owners`: it sent them, or the
/// server sealed them for it) and that are still stored. A chunk the index holds for
/// another account is asked for like one nobody has, so that an address alone neither
/// lets an account reference someone else's chunk nor tells it that the chunk exists.
async fn declare(
    nuage: &Nuage,
    session: &UploadSession,
    bucket: &Bucket,
    declared: &[DeclaredChunk],
) -> ApiResult<Vec<UploadTarget>> {
    let limits = DeclareLimits { max_chunks: MAX_SESSION_CHUNKS, max_bytes: MAX_SESSION_BYTES };
    // Declared chunks are the session's leases; one the collector is deleting now is
    // waited out, then counts as not held (and is sent again).
    let deleting = nuage.meta.declare_upload_chunks(session, declared, limits).await?;
    nuage_service::leases::wait_out_deletions(nuage, &deleting).await?;
    let addresses: Vec<[u8; 32]> = declared.iter().map(|c| c.address).collect();
    let owned = nuage.meta.owned_chunks(session.account_id, &addresses).await?;
    let held = nuage.meta.held_chunks(&addresses).await?;
    // Chunks the account sent before that no commit took up yet (an upload cut short, run
    // again): still on a provider at their size, they need not be sent twice.
    let unindexed: Vec<DeclaredChunk> = declared
        .iter()
        .filter(|c| owned.contains_key(&c.address) && !held.contains_key(&c.address))
        .copied()
        .collect();
    let mut found = std::collections::HashSet::new();
    let mut lookups = futures::stream::iter(unindexed)
        .map(|c| {
            let store = nuage.store.clone();
            async move {
                let located =
                    store.locate_sized(&Address::from_bytes(c.address), u64::from(c.stored_size)).await;
                (c.address, !located.is_empty())
            }
        })
        .buffer_unordered(16);
    while let Some((address, on_a_provider)) = lookups.next().await {
        if on_a_provider {
            found.insert(address);
        }
    }
    drop(lookups);
    // A presigned URL writes the provider's object with no check until the commit: only for
    // a chunk the index does not know, never over a copy someone relies on. (So in a direct
    // bucket the kind of target tells whether the server knows an address; addresses are
    // unguessable without the plaintext and the account's convergence secret.)
    let unknown: std::collections::HashSet<[u8; 32]> = if bucket.policy.direct_upload {
        nuage.meta.unindexed(&addresses).await?.into_iter().collect()
    } else {
        Default::default()
    };
    let mut targets = Vec::new();
    for c in declared {
        if owned.contains_key(&c.address) && (held.contains_key(&c.address) || found.contains(&c.address)) {
            continue;
        }
        let address = Address::from_bytes(c.address);
        if unknown.contains(&c.address) {
            let ttl = std::time::Duration::from_millis(nuage.grants.ttl().max(0) as u64);
            if let Some((_, request)) = nuage.store.presign_put(&address, ttl).await? {
                // Its bytes never pass through this server: its room is held now.
                nuage.meta.hold_for_session(session, &c.address).await?;
                targets.push(UploadTarget {
                    address: address.to_hex(),
                    method: request.method,
                    url: request.url,
                    headers: request.headers.into_iter().collect(),
                    expires_at: now_ms().saturating_add(nuage.grants.ttl()),
                });
                continue;
            }
        }
        let (grant, expires_at) =
            nuage.grants.sign(Operation::PutChunk, address, session.scope as u64, u64::from(c.stored_size));
        targets.push(UploadTarget {
            address: address.to_hex(),
            method: "PUT".into(),
            url: format!("/v1/chunks/{}", address.to_hex()),
            headers: HashMap::from([(GRANT_HEADER.to_owned(), grant)]),
            expires_at,
        });
    }
    Ok(targets)
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
    let declared = parse_declared(&req.chunks)?;
    let session = nuage.meta.upload_session(caller.account_id, &id).await?;
    if now_ms() >= session.expires_at {
        return Err(expired());
    }
    let bucket = nuage.meta.bucket_by_id(session.bucket_id).await?;
    Ok(Json(MoreTargets { missing: declare(&nuage, &session, &bucket, &declared).await? }))
}

fn expired() -> ApiError {
    ApiError::new(StatusCode::GONE, "upload_expired", "this upload session has expired; start again")
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
    let session = nuage.meta.upload_session(caller.account_id, &id).await?;
    let declared = nuage.meta.abort_upload_session(&session).await?;
    // What it stored goes now, with the room it held (sent through this server or straight
    // to a provider: only what nothing else relies on).
    nuage_service::leases::discard(&nuage, declared).await;
    add(&nuage.metrics.uploads_aborted, 1);
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) fn grant_refused(e: GrantError) -> ApiError {
    let code = match e {
        GrantError::Forged => "grant_forged",
        GrantError::Expired => "grant_expired",
        GrantError::WrongOperation => "grant_wrong_operation",
        GrantError::WrongAddress => "grant_wrong_address",
    };
    ApiError::new(StatusCode::FORBIDDEN, code, e.to_string())
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
    let Some(text) = headers.get(GRANT_HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "grant_missing",
            format!("a chunk upload needs the grant of its upload target in {GRANT_HEADER}"),
        ));
    };
    let grant =
        nuage.grants.verify(&nuage.meta, text, Operation::PutChunk, &address).await.map_err(grant_refused)?;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "grant_size_exceeded",
            format!("the grant allows {} bytes", grant.max_size),
        )
    };
    let limit = usize::try_from(grant.max_size.min(MAX_STORED)).unwrap_or(usize::MAX);
    let bytes: Bytes = to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) {
            too_large()
        } else {
            crate::error::body_error(&e)
        }
    })?;
    let chunk = StoredChunk::verify(address, bytes).map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "chunk_address_mismatch",
            "the bytes do not hash to the address; nothing was stored",
        )
    })?;
    // The grant names the session that asked for this chunk.
    let session = match nuage.meta.upload_session_by_scope(grant.scope as i64).await {
        Ok(s) if now_ms() < s.expires_at => s,
        Ok(_) | Err(nuage_meta::Error::UploadNotFound) => return Err(expired()),
        Err(e) => return Err(e.into()),
    };
    let bucket = nuage.meta.bucket_by_id(session.bucket_id).await?;
    let opened = match bucket.policy.e2e_key_id {
        // The server cannot open an end-to-end chunk: it is held at its stored size.
        Some(_) => None,
        None => Some(open_sent(&nuage, &headers, &chunk).await?),
    };
    // The room first, then the bytes: a chunk that does not fit is never stored.
    nuage.meta.record_sent_chunk(&session, address.as_bytes(), chunk.bytes().len() as u32, opened).await?;
    let report = nuage.store.put_with(&chunk, bucket_placement(&bucket)).await?;
    // The commit that will reference it only checks that it exists: make it durable now.
    nuage.store.sync().await?;
    if report.written > 0 {
        add(&nuage.metrics.chunks_written, 1);
        add(&nuage.metrics.stored_bytes_written, report.bytes_written);
    } else {
        add(&nuage.metrics.chunks_deduplicated, 1);
    }
    let answer = ChunkStored { address: address.to_hex(), stored_on: report.stored_on };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// Opens a chunk sent for a normal bucket with the key the device gave in
/// [`CHUNK_KEY_HEADER`]: what the chunk holds is then known, and the commit checks the
/// manifest against it (lengths, keys) instead of taking the device's word.
async fn open_sent(nuage: &Nuage, headers: &HeaderMap, chunk: &StoredChunk) -> ApiResult<Opened> {
    let key = headers
        .get(CHUNK_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| URL_SAFE_NO_PAD.decode(v.trim_end_matches('=')).ok())
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .map(ChunkKey::from_bytes)
        .ok_or_else(|| {
            ApiError::bad_request(
                "chunk_key_missing",
                format!("a chunk of a normal bucket is sent with its key, base64url, in {CHUNK_KEY_HEADER}"),
            )
        })?;
    let bytes = chunk.bytes().clone();
    let max = nuage.chunker.max_size;
    let plain = tokio::task::spawn_blocking(move || chunk::open_within(&bytes, &key, max).map(|p| p.len()))
        .await
        .map_err(|e| ApiError::internal("opening a chunk", e))?;
    match plain {
        Ok(len) if len > 0 => Ok(Opened { plain_len: len as u32, key_hash: key.fingerprint() }),
        _ => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "chunk_key_mismatch",
            "the chunk does not open with the key sent with it; nothing was stored",
        )),
    }
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
    let session = nuage.meta.upload_session(caller.account_id, &id).await?;
    let bucket = nuage.meta.bucket_by_id(session.bucket_id).await?;
    let idempotency_key = format!("upload:{}", session.id);
    // A commit that already went through answers the same, even after expiry.
    if let Some((_, _, version_id)) = nuage.meta.idempotent_write(caller.account_id, &idempotency_key).await?
    {
        let v = nuage.meta.version(&bucket, &session.key, version_id).await?;
        return Ok(put_answer(&bucket, v, true));
    }
    // (The session's chunks are leased until it expires; the commit checks again, in its
    // transaction, that the leases still hold.)
    if now_ms() >= session.expires_at {
        return Err(expired());
    }
    let invalid = |m: String| ApiError::bad_request("manifest_invalid", m);
    let raw = URL_SAFE_NO_PAD
        .decode(req.manifest.trim_end_matches('='))
        .map_err(|e| invalid(format!("base64: {e}")))?;
    let mut entries = Vec::new(); // of a plain manifest, checked against the chunks below
    let (size, etag, addresses) = match bucket.policy.e2e_key_id {
        None if e2e::is_sealed(&raw) => {
            return Err(invalid("a sealed manifest belongs in an end-to-end bucket".into()));
        }
        None => {
            let m = Manifest::decode(&raw).map_err(|e| invalid(e.to_string()))?;
            let addresses = m.entries.iter().map(|e| *e.address.as_bytes()).collect::<Vec<_>>();
            entries = m.entries;
            (m.size, m.hash, addresses)
        }
        Some(key_id) => {
            if !e2e::is_sealed(&raw) {
                return Err(invalid(format!(
                    "bucket {} is end-to-end encrypted: its manifests are sealed on the device",
                    bucket.name
                )));
            }
            let h = e2e::read_header(&raw).map_err(|e| invalid(e.to_string()))?;
            if h.key_id != key_id {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "e2e_key_mismatch",
                    format!(
                        "this manifest is sealed with content key {}, the bucket's is {}: \
                         check the passphrase or key file",
                        hex::encode(h.key_id),
                        hex::encode(key_id)
                    ),
                ));
            }
            // The server cannot see the whole-file hash: the ETag of a sealed version is the
            // hash of what it stores.
            (h.size, *blake3::hash(&raw).as_bytes(), h.addresses.iter().map(|a| *a.as_bytes()).collect())
        }
    };
    let declared = nuage.meta.upload_session_chunks(&session.id).await?;
    let mut distinct = addresses.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if let Some(a) = distinct.iter().find(|a| !declared.contains_key(*a)) {
        return Err(ApiError::bad_request(
            "manifest_undeclared_chunk",
            format!("chunk {} was not declared when the upload started", hex::encode(a)),
        ));
    }
    // Each chunk must be one this session sent, or one the account holds already (see
    // `declare`); in a direct bucket, one found on a provider where the device put it.
    let owned = nuage.meta.owned_chunks(caller.account_id, &distinct).await?;
    let held = nuage.meta.held_chunks(&distinct).await?;
    let direct = bucket.policy.direct_upload;
    let keys: HashMap<[u8; 32], ChunkKey> = entries.iter().map(|e| (*e.address.as_bytes(), e.key)).collect();
    let mut lookups = futures::stream::iter(distinct.iter().copied())
        .map(|address| {
            let (store, c) = (nuage.store.clone(), declared[&address]);
            let proof = if c.sent { Some(c.opened) } else { owned.get(&address).copied() };
            let held = held.get(&address).cloned();
            let (key, max) = (keys.get(&address).copied(), nuage.chunker.max_size);
            async move {
                let a = Address::from_bytes(address);
                let size = u64::from(c.stored_size);
                let found = match (proof, held) {
                    (Some(opened), Some((stored_size, providers))) => Some((stored_size, providers, opened)),
                    // Sent (or held) but not in the index: its size on the providers is
                    // enough, its bytes were checked on arrival.
                    (Some(opened), None) => {
                        let providers = store.locate_sized(&a, size).await;
                        (!providers.is_empty()).then_some((c.stored_size, providers, opened))
                    }
                    // Straight to a provider, nobody has checked it: read it back, verify it
                    // against its address, and open it with the manifest's key.
                    (None, _) if direct => match store.verify_uploaded(&a, size).await {
                        Ok(Some((provider, bytes))) => {
                            let opened = match key {
                                None => None, // end to end: the server cannot open it
                                Some(key) => chunk::open_within(&bytes, &key, max).ok().map(|p| Opened {
                                    plain_len: p.len() as u32,
                                    key_hash: key.fingerprint(),
                                }),
                            };
                            Some((c.stored_size, vec![provider], opened))
                        }
                        Ok(None) => None,
                        Err(e) => {
                            tracing::warn!("checking chunk {a}: {e}");
                            None
                        }
                    },
                    (None, _) => None,
                };
                (address, found)
            }
        })
        .buffer_unordered(16);
    let mut chunks = Vec::with_capacity(distinct.len());
    let mut opened_by: HashMap<[u8; 32], Option<Opened>> = HashMap::with_capacity(distinct.len());
    let mut missing = 0usize;
    let mut under_replicated = Vec::new();
    let mut short = Vec::new();
    while let Some((address, found)) = lookups.next().await {
        let Some((stored_size, providers, opened)) = found else {
            missing += 1;
            continue;
        };
        opened_by.insert(address, opened);
        let chunk = ChunkRef { address, stored_size, providers, opened };
        if chunk.providers.len() >= bucket.policy.replicas as usize {
            chunks.push(chunk);
        } else if direct && !declared[&address].sent && !owned.contains_key(&address) {
            // Sent straight to one provider: the other copies follow in the background.
            under_replicated.push(Address::from_bytes(address));
            chunks.push(chunk);
        } else {
            short.push(chunk);
        }
    }
    drop(lookups);
    if missing > 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "chunks_missing",
            format!("{missing} chunk(s) of the manifest are not stored yet; send them, then commit again"),
        ));
    }
    // A plain manifest must say what its chunks hold: each entry the length the chunk
    // opened to, with the key it opened with. (The version's size, the sum of the entries,
    // is then what a download will stream.)
    for (i, e) in entries.iter().enumerate() {
        match opened_by.get(e.address.as_bytes()).copied().flatten() {
            Some(o) if o.plain_len == e.plain_len && o.key_hash == e.key.fingerprint() => {}
            Some(o) if o.plain_len != e.plain_len => {
                return Err(invalid(format!(
                    "entry {i} says chunk {} holds {} bytes; it holds {}",
                    e.address, e.plain_len, o.plain_len
                )));
            }
            _ => {
                return Err(invalid(format!(
                    "entry {i}: chunk {} does not open with the key it gives",
                    e.address
                )));
            }
        }
    }
    // Held with fewer copies than this bucket asks for: the missing ones are made now.
    let placement = bucket_placement(&bucket);
    let mut completing = futures::stream::iter(short)
        .map(|mut c| {
            let nuage = nuage.clone();
            async move {
                c.providers =
                    nuage.complete_copies(&Address::from_bytes(c.address), &c.providers, placement).await?;
                ApiResult::Ok(c)
            }
        })
        .buffer_unordered(8);
    let mut completed = false;
    while let Some(c) = completing.next().await {
        chunks.push(c?);
        completed = true;
    }
    drop(completing);
    if completed {
        nuage.store.sync().await?; // durable before the commit references them
    }
    if bucket.policy.e2e_key_id.is_some() {
        // The size of a sealed manifest is the device's word, and downloads stream it: it
        // must be what the chunks hold. End-to-end chunks are stored uncompressed, so
        // each holds its stored size less the format's overhead.
        let stored: HashMap<[u8; 32], u32> = chunks.iter().map(|c| (c.address, c.stored_size)).collect();
        let held_plain: u64 = addresses
            .iter()
            .map(|a| u64::from(stored[a]).saturating_sub(nuage_core::chunk::OVERHEAD as u64))
            .sum();
        if held_plain != size {
            return Err(invalid(format!(
                "the sealed manifest says {size} bytes; its chunks hold {held_plain} (end-to-end chunks are stored uncompressed)"
            )));
        }
    }
    let new = NewVersion {
        size,
        etag,
        content_type: req.content_type,
        manifest: raw,
        chunks,
        lease_holder: Some(session.id.clone()),
    };
    let committed = nuage
        .meta
        .put_version(&bucket, &session.key, &new, &precondition(&headers), Some(&idempotency_key))
        .await?;
    if !committed.replayed {
        add(&nuage.metrics.versions_committed, 1);
    }
    if !under_replicated.is_empty() {
        nuage.replicas.push(under_replicated, bucket_placement(&bucket));
        let n = nuage.clone();
        tokio::spawn(async move { n.replicate_pending().await });
    }
    Ok(put_answer(&bucket, committed.version, committed.replayed))
}
