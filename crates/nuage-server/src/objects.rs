//! Objects: the `/v1` front of the service's writes (`PUT` over `Nuage::put_stream`,
//! `DELETE`, restore), and streaming `GET`/`HEAD` with `Range` and conditions, listings and
//! versions.
//!
//! The rules are the service's (`nuage_service::objects`, `nuage_service::read`); this
//! module reads headers and writes answers.

use nuage_proto::{
    ListQuery, ListingView, PutAnswer, RestoreRequest, VersionList, VersionQuery, VersionView,
};
use std::io;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use nuage_http::extract::{Json, Path, Query};
use nuage_meta::{Bucket, Precondition, Version};

use crate::Nuage;
use crate::caller::Caller;
use crate::error::{ApiResult, ErrorBody};
use nuage_proto::headers::VERSION as VERSION_HEADER;
use nuage_proto::range::ByteRange;
use nuage_service::digests::ContentChecks;
use nuage_service::names::read_key;
use nuage_service::objects::WriteOptions;
use nuage_service::read::{Answer, ListOptions, Read, ReadConditions, ReadOptions};

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

fn system_time(secs: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64)
}

fn quoted(etag: &[u8; 32]) -> String {
    format!("\"{}\"", hex::encode(etag))
}

/// A header's value as text (none for one that is not visible ASCII).
fn text<'a>(headers: &'a HeaderMap) -> impl Fn(&str) -> Option<&'a str> + 'a {
    move |name| headers.get(name).map(|v| v.to_str().unwrap_or(""))
}

pub(crate) fn precondition(headers: &HeaderMap) -> Precondition {
    nuage_service::conditions::precondition(text(headers))
}

/// The `Idempotency-Key` header as sent (bytes that are not ASCII become U+FFFD, which the
/// service's rule refuses: `nuage_service::names::check_idempotency_key`).
fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get(nuage_proto::headers::IDEMPOTENCY_KEY)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
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
        checks: ContentChecks {
            content_md5: headers
                .get("content-md5")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            ..ContentChecks::default()
        },
        ..WriteOptions::default()
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
            ("ETag" = String, description = "Quoted BLAKE3 of the content (the content hash of its parts when x-nuage-parts is sent)"), ("x-nuage-version" = i64, description = "The version id"),
            ("x-nuage-parts" = String, description = "For a version assembled from parts (S3 multipart): their lengths, `LEN` or `LENxCOUNT` runs, comma separated"),
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
            ("ETag" = String, description = "Quoted BLAKE3 of the content (the content hash of its parts when x-nuage-parts is sent)"), ("x-nuage-version" = i64, description = "The version id"),
            ("x-nuage-parts" = String, description = "For a version assembled from parts (S3 multipart): their lengths, `LEN` or `LENxCOUNT` runs, comma separated"),
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
    let options =
        ReadOptions { version: query.version, conditions: conditions(&headers), range: range(&headers) };
    let read = nuage.read(caller.account_id, &bucket, key, options).await?;
    answer_read(read, &method).await
}

/// The conditions of a read, from its headers.
pub(crate) fn conditions(headers: &HeaderMap) -> ReadConditions {
    nuage_service::conditions::read_conditions(text(headers))
}

/// The `Range` header, if it asks for one range.
pub(crate) fn range(headers: &HeaderMap) -> Option<ByteRange> {
    nuage_service::conditions::range(text(headers))
}

/// The answer to a read: `304`, `200` or `206` with the version's headers, and its content
/// streamed (not for `HEAD`). The first chunk is awaited before the status is sent, so that
/// a provider outage is a clean 503 rather than a cut connection.
pub(crate) async fn answer_read(read: Read, method: &Method) -> ApiResult<Response> {
    let mut response = Response::new(Body::empty());
    set(&mut response, header::ETAG, &quoted(&read.etag));
    set(&mut response, header::LAST_MODIFIED, &httpdate::fmt_http_date(system_time(read.modified)));
    set(&mut response, VERSION_HEADER, &read.version.id.to_string());
    set(&mut response, header::ACCEPT_RANGES, "bytes");
    if let Some(layout) = read.layout().await? {
        set(&mut response, nuage_proto::headers::PARTS, &layout);
    }
    let size = read.version.size;
    let (start, end) = read.span();
    match read.answer {
        Answer::NotModified => {
            // No body; its Content-Length, if any, must be the 200's (RFC 9110 §8.6), never
            // the `0` a layer would write for an empty body.
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            set(&mut response, header::CONTENT_LENGTH, &size.to_string());
            return Ok(response);
        }
        Answer::Full => {}
        Answer::Partial { start, end } => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            set(&mut response, header::CONTENT_RANGE, &format!("bytes {start}-{}/{size}", end - 1));
        }
    }
    set(&mut response, header::CONTENT_LENGTH, &(end - start).to_string());
    let content_type = read.version.content_type.as_deref().unwrap_or("application/octet-stream");
    set(&mut response, header::CONTENT_TYPE, content_type);
    if *method == Method::HEAD || start == end {
        return Ok(response);
    }
    let mut chunks = Box::pin(read.content());
    let first = chunks.next().await.transpose()?.unwrap_or_default();
    let rest = chunks.map_err(|e| io::Error::other(e.to_string()));
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
    let options = ListOptions {
        prefix: q.prefix,
        delimiter: q.delimiter,
        page_token: q.page_token,
        limit: q.limit,
        start_after: None,
    };
    let page = nuage.list(caller.account_id, &bucket, &options).await?;
    Ok(Json(ListingView {
        objects: page.objects.into_iter().map(version_view).collect(),
        prefixes: page.prefixes,
        next_page_token: page.next_page_token,
    }))
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
    let versions = nuage.versions(caller.account_id, &bucket, read_key(&key)?).await?;
    Ok(Json(VersionList { versions: versions.into_iter().map(version_view).collect() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nuage_meta::EntityTag;
    use nuage_service::read::IfRange;

    fn if_range(value: &str) -> Option<IfRange> {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_RANGE, HeaderValue::from_str(value).unwrap());
        conditions(&headers).if_range
    }

    /// An If-Range value is a nuage tag only as sent by this server: strong, quoted,
    /// lowercase; a weak tag, another spelling or a value that is no date can match
    /// nothing.
    #[test]
    fn if_range_values() {
        let tag = [0xab; 32];
        let quoted_tag = quoted(&tag);
        assert_eq!(if_range(&quoted_tag), Some(IfRange::Etag(Some(EntityTag::Hash(tag)))));
        assert_eq!(if_range(&format!("W/{quoted_tag}")), Some(IfRange::Etag(None)));
        assert_eq!(if_range(&quoted_tag.to_uppercase()), Some(IfRange::Etag(None)));
        assert_eq!(if_range("\"abc\""), Some(IfRange::Etag(None)));
        let date = httpdate::fmt_http_date(system_time(1_700_000_000));
        assert_eq!(if_range(&date), Some(IfRange::Date(Some(1_700_000_000))));
        assert_eq!(if_range("yesterday"), Some(IfRange::Date(None)));
        // The same second in the obsolete RFC 850 form is no exact match.
        assert_eq!(if_range("Tuesday, 14-Nov-23 22:13:20 GMT"), Some(IfRange::Date(None)));
        assert_eq!(conditions(&HeaderMap::new()).if_range, None);
    }
}
