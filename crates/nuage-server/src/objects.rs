//! Objects: the `/v1` front of the service's writes (`PUT` over `Nuage::put_stream`,
//! `DELETE`, restore), and streaming `GET`/`HEAD` with `Range` and conditions, listings and
//! versions.
//!
//! Memory per request is bounded by a few chunks whatever the object size: a write holds
//! what `nuage_service::objects` says; a download holds [`CHUNKS_AHEAD`] chunks.

use nuage_proto::{
    ListQuery, ListingView, PutAnswer, RestoreRequest, VersionList, VersionQuery, VersionView,
};
use std::io;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;

use crate::extract::{Json, Path, Query};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use nuage_core::{Manifest, ManifestEntry, chunk};
use nuage_meta::{Bucket, EtagCondition, ListEntry, Precondition, Version};

use crate::Nuage;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use nuage_proto::headers::VERSION as VERSION_HEADER;
use nuage_proto::range::{self, RangeRequest};
use nuage_service::metrics::add;
use nuage_service::names::{read_key, stored_key};
use nuage_service::objects::{WriteOptions, refuse_e2e};

/// Chunks fetched ahead of the one being sent by one download.
pub const CHUNKS_AHEAD: usize = 4;

/// A version as the API shows it.
pub(crate) fn version_view(v: Version) -> VersionView {
    VersionView {
        key: v.key,
        version: v.id,
        size: v.size,
        etag: v.etag.map(hex::encode),
        content_type: v.content_type,
        created_at: v.created_at,
        tombstone: v.tombstone,
    }
}

fn unix_secs(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn system_time(secs: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64)
}

fn quoted(etag: &[u8; 32]) -> String {
    format!("\"{}\"", hex::encode(etag))
}

/// Parses an `If-Match` / `If-None-Match` value: `*` or a list of entity tags. Tags that are
/// not nuage's (64 hex digits) can match nothing and are dropped. `If-Match` compares
/// strongly (RFC 9110 §13.1.1): a weak tag never matches it; `If-None-Match` weakly.
fn etag_condition(headers: &HeaderMap, name: header::HeaderName) -> Option<EtagCondition> {
    let strong = name == header::IF_MATCH;
    let value = headers.get(name)?.to_str().unwrap_or("");
    if value.trim() == "*" {
        return Some(EtagCondition::Any);
    }
    let tags = value
        .split(',')
        .filter(|t| !(strong && t.trim().starts_with("W/")))
        .filter_map(|t| {
            let t = t.trim().trim_start_matches("W/").trim_matches('"');
            let mut out = [0u8; 32];
            hex::decode_to_slice(t, &mut out).ok().map(|()| out)
        })
        .collect();
    Some(EtagCondition::OneOf(tags))
}

pub(crate) fn precondition(headers: &HeaderMap) -> Precondition {
    Precondition {
        if_match: etag_condition(headers, header::IF_MATCH),
        if_none_match: etag_condition(headers, header::IF_NONE_MATCH),
    }
}

/// The `Idempotency-Key` header as sent (bytes that are not ASCII become U+FFFD, which the
/// service's rule refuses: `nuage_service::names::check_idempotency_key`).
fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get(nuage_proto::headers::IDEMPOTENCY_KEY)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn precondition_failed() -> ApiError {
    nuage_meta::Error::PreconditionFailed.into()
}

/// Uploads the body as a new version of the key, streaming.
#[utoipa::path(put, path = "/v1/buckets/{bucket}/objects/{key}", tag = "objects", security(("token" = [])),
    params(
        ("bucket" = String, Path), ("key" = String, Path, description = "Object key, percent-encoded"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key never makes a second version"),
        ("If-Match" = Option<String>, Header), ("If-None-Match" = Option<String>, Header, description = "`*`: create only"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Version made", body = PutAnswer, headers(("ETag" = String, description = "Quoted BLAKE3 of the content"), ("x-nuage-version" = i64, description = "The version id"))),
        (status = 200, description = "Idempotent replay of an earlier request", body = PutAnswer, headers(("ETag" = String, description = "Quoted BLAKE3 of the content"), ("x-nuage-version" = i64, description = "The version id"))),
        (status = 400, description = "`invalid_key`, `body_incomplete`, `invalid_idempotency_key`", body = ErrorBody),
        (status = 404, description = "`bucket_not_found`", body = ErrorBody),
        (status = 412, description = "`precondition_failed`", body = ErrorBody),
        (status = 413, description = "`quota_exceeded`", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`", body = ErrorBody),
    ))]
pub async fn put(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    Path((bucket, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let options = WriteOptions {
        precondition: precondition(&headers),
        idempotency_key: idempotency_key(&headers),
        content_length: headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
        content_type: headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned),
    };
    let (bucket, committed) =
        nuage.put_stream(caller.account_id, &bucket, &key, body.into_data_stream(), options).await?;
    Ok(put_answer(&bucket, committed.version, committed.replayed))
}

/// The answer to a `PUT`: `201` for a new version, `200` for a replay.
pub(crate) fn put_answer(bucket: &Bucket, v: Version, replayed: bool) -> Response {
    let status = if replayed { StatusCode::OK } else { StatusCode::CREATED };
    let etag = v.etag.map(|e| quoted(&e)).unwrap_or_default();
    let version = v.id.to_string();
    let answer = PutAnswer {
        bucket: bucket.name.clone(),
        key: v.key,
        version: v.id,
        size: v.size,
        etag: v.etag.map(hex::encode).unwrap_or_default(),
        replayed,
    };
    let mut response = (status, Json(answer)).into_response();
    set(&mut response, header::ETAG, &etag);
    set(&mut response, VERSION_HEADER, &version);
    response
}

fn set(response: &mut Response, name: impl header::IntoHeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, v);
    }
}

/// Streams the content of the key's current version (or `?version=ID`); `HEAD` gives the
/// headers only.
#[utoipa::path(get, path = "/v1/buckets/{bucket}/objects/{key}", tag = "objects", security(("token" = [])),
    params(
        ("bucket" = String, Path), ("key" = String, Path), VersionQuery,
        ("Range" = Option<String>, Header, description = "One range: `bytes=a-b`, `bytes=a-`, `bytes=-n`"),
        ("If-Match" = Option<String>, Header), ("If-None-Match" = Option<String>, Header),
    ),
    responses(
        (status = 200, description = "The content", content_type = "application/octet-stream", headers(
            ("ETag" = String, description = "Quoted BLAKE3 of the content"), ("x-nuage-version" = i64, description = "The version id"),
            ("Last-Modified" = String, description = "When the version was made (HTTP date)"),
            ("Accept-Ranges" = String, description = "`bytes`"), ("Content-Length" = u64))),
        (status = 206, description = "The range", content_type = "application/octet-stream", headers(
            ("Content-Range" = String, description = "`bytes a-b/SIZE`"), ("ETag" = String), ("x-nuage-version" = i64))),
        (status = 304, description = "`If-None-Match` matched, or not modified since `If-Modified-Since`"),
        (status = 404, description = "`bucket_not_found`, `object_not_found`", body = ErrorBody),
        (status = 412, description = "`precondition_failed`", body = ErrorBody),
        (status = 416, description = "`range_not_satisfiable`, with `Content-Range: bytes */SIZE`", body = ErrorBody),
    ))]
pub async fn get(
    state: State<Arc<Nuage>>,
    caller: Caller,
    method: Method,
    path: Path<(String, String)>,
    query: Query<VersionQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    read(state, caller, method, path, query, headers).await
}

/// The headers a `GET` of the key would answer, without the content.
#[utoipa::path(head, path = "/v1/buckets/{bucket}/objects/{key}", tag = "objects", security(("token" = [])),
    params(
        ("bucket" = String, Path), ("key" = String, Path), VersionQuery,
        ("If-Match" = Option<String>, Header), ("If-None-Match" = Option<String>, Header),
    ),
    responses(
        (status = 200, description = "The headers of the content", headers(
            ("ETag" = String, description = "Quoted BLAKE3 of the content"), ("x-nuage-version" = i64, description = "The version id"),
            ("Last-Modified" = String, description = "When the version was made (HTTP date)"),
            ("Accept-Ranges" = String, description = "`bytes`"), ("Content-Length" = u64))),
        (status = 304, description = "`If-None-Match` matched, or not modified since `If-Modified-Since`"),
        (status = 404, description = "No such bucket, object or version (no body)"),
        (status = 412, description = "`If-Match` does not hold (no body)"),
    ))]
pub async fn head(
    state: State<Arc<Nuage>>,
    caller: Caller,
    method: Method,
    path: Path<(String, String)>,
    query: Query<VersionQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    read(state, caller, method, path, query, headers).await
}

async fn read(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    method: Method,
    Path((bucket, key)): Path<(String, String)>,
    Query(query): Query<VersionQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let key = read_key(&key)?;
    let bucket = nuage.meta.bucket(caller.account_id, &bucket).await?;
    let key = stored_key(&nuage.meta, &bucket, key).await?;
    refuse_e2e(&bucket)?;
    let version = version_or_head(&nuage, &bucket, &key, query.version).await?;
    serve_version(&nuage, &version, query.version.is_some(), &method, &headers).await
}

/// The version `id` of the key, or (`None`) its current version.
pub(crate) async fn version_or_head(
    nuage: &Nuage,
    bucket: &Bucket,
    key: &str,
    id: Option<i64>,
) -> ApiResult<Version> {
    Ok(match id {
        Some(id) => nuage.meta.version(bucket, key, id).await?,
        None => nuage.meta.head(bucket, key).await?,
    })
}

/// Streams the plaintext of a version of a normal bucket, with `Range`, `ETag` and
/// conditions: the body of an object `GET` and of a share link's download.
pub async fn serve_version(
    nuage: &Arc<Nuage>,
    version: &Version,
    pinned: bool,
    method: &Method,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let Some(etag) = version.etag.filter(|_| !version.tombstone) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "object_not_found",
            "this version is a delete marker",
        ));
    };
    // RFC 9110 §13.2.2: If-Match, else If-Unmodified-Since; then If-None-Match, else
    // If-Modified-Since; then If-Range. Dates are compared at one-second precision.
    let conditions = precondition(headers);
    let modified = version.created_at.max(0) / 1000; // whole seconds, as Last-Modified says
    let date = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .map(unix_secs)
    };
    match &conditions.if_match {
        Some(c) if !c.matches(Some(&etag)) => return Err(precondition_failed()),
        Some(_) => {}
        None if date(header::IF_UNMODIFIED_SINCE).is_some_and(|since| modified > since) => {
            return Err(precondition_failed());
        }
        None => {}
    }
    let mut response = Response::new(Body::empty());
    let last_modified = httpdate::fmt_http_date(system_time(modified));
    set(&mut response, header::ETAG, &quoted(&etag));
    set(&mut response, header::LAST_MODIFIED, &last_modified);
    set(&mut response, VERSION_HEADER, &version.id.to_string());
    set(&mut response, header::ACCEPT_RANGES, "bytes");
    let not_modified = match &conditions.if_none_match {
        Some(c) => c.matches(Some(&etag)),
        None => date(header::IF_MODIFIED_SINCE).is_some_and(|since| modified <= since),
    };
    if not_modified {
        // No body; its Content-Length, if any, must be the 200's (RFC 9110 §8.6), never the
        // `0` a layer would write for an empty body.
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        set(&mut response, header::CONTENT_LENGTH, &version.size.to_string());
        return Ok(response);
    }
    let size = version.size;
    // A Range is honoured only if If-Range (when sent) names this version: its strong ETag,
    // or, for a request pinned to one version (`pinned`: its id, a share link), exactly its
    // Last-Modified date; two versions of a key made within one second share that date, so
    // it is no strong validator of "the current one". Otherwise the whole object is sent, so
    // a resumed download never splices two versions.
    let if_range = headers.get(header::IF_RANGE).map(|v| v.to_str().unwrap_or("\u{0}"));
    let same_version = range::if_range_allows(if_range, &quoted(&etag), &last_modified, pinned);
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).filter(|_| same_version);
    let (start, end) = match range::parse(range_header, size) {
        RangeRequest::Full => (0, size),
        RangeRequest::Partial { start, end } => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            set(&mut response, header::CONTENT_RANGE, &format!("bytes {start}-{}/{size}", end - 1));
            (start, end)
        }
        RangeRequest::Unsatisfiable => {
            let mut e = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the range lies outside the object ({size} bytes)"),
            );
            e.size = Some(size);
            return Err(e);
        }
    };
    set(&mut response, header::CONTENT_LENGTH, &(end - start).to_string());
    let content_type = version.content_type.as_deref().unwrap_or("application/octet-stream");
    set(&mut response, header::CONTENT_TYPE, content_type);
    if *method == Method::HEAD || start == end {
        return Ok(response);
    }
    let manifest = Manifest::decode(&nuage.meta.manifest(version.id).await?)
        .map_err(|e| ApiError::internal("stored manifest", e))?;
    let mut plan: Vec<(ManifestEntry, usize, usize)> = Vec::new();
    let mut offset = 0u64;
    for e in manifest.entries {
        let len = u64::from(e.plain_len);
        let (from, to) = (start.max(offset), end.min(offset + len));
        if from < to {
            plan.push((e, (from - offset) as usize, (to - offset) as usize));
        }
        offset += len;
        if offset >= end {
            break;
        }
    }
    let fetcher = nuage.clone();
    let mut chunks = futures::stream::iter(plan)
        .map(move |(entry, from, to)| {
            let nuage = fetcher.clone();
            async move {
                let read = nuage.store.get(&entry.address, &[]).await?;
                let plain = tokio::task::spawn_blocking(move || {
                    chunk::open(&read.bytes, &entry.key, entry.plain_len)
                })
                .await
                .map_err(|e| ApiError::internal("decrypting", e))?
                .map_err(|e| ApiError::internal(&format!("chunk {}", entry.address), e))?;
                add(&nuage.metrics.bytes_out, (to - from) as u64);
                Ok::<_, ApiError>(Bytes::from(plain).slice(from..to))
            }
        })
        .buffered(CHUNKS_AHEAD);
    // The first chunk is awaited before the status is sent, so that a provider outage is
    // a clean 503 rather than a cut connection.
    let first = match chunks.next().await {
        Some(r) => r?,
        None => Bytes::new(),
    };
    let rest = chunks.map_err(|e| io::Error::other(format!("{}: {}", e.code, e.message)));
    *response.body_mut() = Body::from_stream(futures::stream::once(async move { Ok(first) }).chain(rest));
    Ok(response)
}

/// Deletes the key: adds a tombstone version (old versions stay readable).
#[utoipa::path(delete, path = "/v1/buckets/{bucket}/objects/{key}", tag = "objects", security(("token" = [])),
    params(("bucket" = String, Path), ("key" = String, Path), ("If-Match" = Option<String>, Header)),
    responses(
        (status = 204, description = "Tombstone made; header `x-nuage-version`"),
        (status = 404, description = "`bucket_not_found`, `object_not_found`", body = ErrorBody),
        (status = 412, description = "`precondition_failed`", body = ErrorBody),
    ))]
pub async fn delete(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    Path((bucket, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let key = read_key(&key)?;
    let committed = nuage
        .delete(
            caller.account_id,
            &bucket,
            key,
            &precondition(&headers),
            idempotency_key(&headers).as_deref(),
        )
        .await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    set(&mut response, VERSION_HEADER, &committed.version.id.to_string());
    Ok(response)
}

/// Makes an old version of a key (or the last one before it was deleted) its current
/// version again, as a new version with the same content: a copy of the manifest, no byte
/// moved. Charged against the quota as an upload of the same content would be.
#[utoipa::path(post, path = "/v1/buckets/{bucket}/versions/{key}", tag = "objects", security(("token" = [])),
    params(
        ("bucket" = String, Path), ("key" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key never makes a second version"),
        ("If-Match" = Option<String>, Header, description = "Restore only over this current version"),
    ),
    request_body = RestoreRequest,
    responses(
        (status = 201, description = "Version made", body = PutAnswer, headers(("ETag" = String, description = "Quoted BLAKE3 of the content"), ("x-nuage-version" = i64, description = "The version id"))),
        (status = 200, description = "Idempotent replay of an earlier request, or the version asked for is the current one already (nothing made)", body = PutAnswer),
        (status = 400, description = "`invalid_request`, `invalid_key`, `invalid_idempotency_key`", body = ErrorBody),
        (status = 404, description = "`bucket_not_found`, `object_not_found` (no such version of the key, or a tombstone)", body = ErrorBody),
        (status = 412, description = "`precondition_failed`", body = ErrorBody),
        (status = 413, description = "`quota_exceeded`", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`", body = ErrorBody),
    ))]
pub async fn restore(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    Path((bucket, key)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<RestoreRequest>,
) -> ApiResult<Response> {
    let idem = idempotency_key(&headers);
    let (bucket, committed) = nuage
        .copy_version(
            caller.account_id,
            &bucket,
            &key,
            body.version,
            &precondition(&headers),
            idem.as_deref(),
        )
        .await?;
    Ok(put_answer(&bucket, committed.version, committed.replayed))
}

/// Lists the live objects of a bucket, in key order.
#[utoipa::path(get, path = "/v1/buckets/{bucket}/objects", tag = "objects", security(("token" = [])),
    params(("bucket" = String, Path), ListQuery),
    responses(
        (status = 200, body = ListingView),
        (status = 400, description = "`invalid_page_token`", body = ErrorBody),
        (status = 404, description = "`bucket_not_found`", body = ErrorBody),
    ))]
pub async fn list(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    Path(bucket): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<ListingView>> {
    let bucket = nuage.meta.bucket(caller.account_id, &bucket).await?;
    let start = match &q.page_token {
        Some(t) => Some(hex::decode(t).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(|| {
            ApiError::bad_request("invalid_page_token", "page_token was not made by this server")
        })?),
        None => None,
    };
    let listing = nuage
        .meta
        .list_objects(
            &bucket,
            &nuage_core::key::normalize_prefix(&q.prefix),
            q.delimiter.as_deref(),
            start.as_deref(),
            q.limit.unwrap_or(1000),
        )
        .await?;
    let mut objects = Vec::new();
    let mut prefixes = Vec::new();
    for e in listing.entries {
        match e {
            ListEntry::Object(v) => objects.push(version_view(v)),
            ListEntry::Prefix(p) => prefixes.push(p),
        }
    }
    Ok(Json(ListingView { objects, prefixes, next_page_token: listing.next.map(hex::encode) }))
}

/// Every kept version of a key, newest first, tombstones included.
#[utoipa::path(get, path = "/v1/buckets/{bucket}/versions/{key}", tag = "objects", security(("token" = [])),
    params(("bucket" = String, Path), ("key" = String, Path)),
    responses(
        (status = 200, body = VersionList),
        (status = 404, description = "`bucket_not_found`, `object_not_found`", body = ErrorBody),
    ))]
pub async fn versions(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    Path((bucket, key)): Path<(String, String)>,
) -> ApiResult<Json<VersionList>> {
    let key = read_key(&key)?;
    let bucket = nuage.meta.bucket(caller.account_id, &bucket).await?;
    let key = stored_key(&nuage.meta, &bucket, key).await?;
    let versions: Vec<VersionView> =
        nuage.meta.versions(&bucket, &key).await?.into_iter().map(version_view).collect();
    if versions.is_empty() {
        return Err(nuage_meta::Error::ObjectNotFound.into());
    }
    Ok(Json(VersionList { versions }))
}
