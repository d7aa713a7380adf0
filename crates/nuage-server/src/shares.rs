//! Share links, and the reads that go around the plaintext path: a version's manifest with
//! grants for its chunks, and chunks fetched under a grant. The rules (tokens, counting,
//! revocation, passwords) are the service's (`nuage_service::shares`); these are the `/v1`
//! and `/s/` routes over them.
//!
//! A share link is `/s/{token}`. It points at one version. Whoever holds it, with no account:
//!
//! - opens `/s/{token}` in a browser: a small page ([`PAGE`], [`SCRIPT`]) that shows the name
//!   and size, displays an image inline and saves the file;
//! - `GET /s/{token}/content` (normal bucket): the plaintext, streamed, with `Range`;
//! - `GET /s/{token}/manifest`: the manifest and a grant per chunk, with the server's edges,
//!   so the chunks can come from an edge. For an end-to-end bucket the manifest is sealed and
//!   the file key travels in the URL fragment (`#k=`), which browsers never send; the page
//!   or `nuage get URL` opens it on the device. For a normal bucket it is the plain manifest:
//!   it holds the keys of this version's chunks only, which open nothing but the plaintext
//!   the link gives anyway (`nuage get URL` reads through edges this way; the page streams
//!   `content`, since a browser cannot inflate zstd chunks).
//!
//! Each `content` or `manifest` request is one download: it is counted by one conditional
//! `UPDATE` before anything is sent, so the limit holds under any race. Revocation, expiry
//! and the password are checked on every request, chunk fetches included (a chunk grant
//! names its share, and the share is read again).

use nuage_proto::{
    CreateShare, GrantQuery, LinkInfo, ManifestView, NewShareView, ShareList, ShareView, Unlock, Unlocked,
    VersionQuery,
};
use std::sync::Arc;

use axum::extract::State;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nuage_http::extract::{Json, Path, Query};
use nuage_meta::{Share, Version, now_ms};
use nuage_service::names::read_key;
use nuage_service::shares::ManifestGrants;
use nuage_service::uploads::parse_address;

use crate::Nuage;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::objects::{answer_read, conditions, range};
use nuage_proto::headers::GRANT as GRANT_HEADER;

/// The share page: static HTML; [`SCRIPT`] fills it in.
pub const PAGE: &str = include_str!("share/page.html");
/// The share page's script: fetches, decrypts (WebCrypto) and saves.
pub const SCRIPT: &str = include_str!("share/share.js");

fn view(share: &Share, bucket: &str) -> ShareView {
    ShareView {
        id: share.id,
        bucket: bucket.to_owned(),
        key: share.key.clone(),
        version: share.version_id,
        created_at: share.created_at,
        expires_at: share.expires_at,
        max_downloads: share.max_downloads,
        downloads: share.downloads,
        password: share.password_hash.is_some(),
        state: share.state(now_ms()).as_str().to_owned(),
    }
}

/// Makes a share link for a version.
#[utoipa::path(post, path = "/v1/shares", tag = "shares", security(("token" = [])),
    request_body = CreateShare,
    responses(
        (status = 201, body = NewShareView),
        (status = 400, description = "`invalid_key`, `invalid_request`", body = ErrorBody),
        (status = 404, description = "`bucket_not_found`, `object_not_found`", body = ErrorBody),
    ))]
pub async fn create(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    body: Option<Json<CreateShare>>,
) -> ApiResult<(StatusCode, Json<NewShareView>)> {
    let Some(Json(req)) = body else {
        return Err(ApiError::bad_request("invalid_request", "send JSON {bucket, key, ...}"));
    };
    let (share, bucket, token) = nuage.create_share(caller.account_id, req).await?;
    let answer = NewShareView { share: view(&share, &bucket.name), path: format!("/s/{token}") };
    Ok((StatusCode::CREATED, Json(answer)))
}

/// The caller's share links, newest first.
#[utoipa::path(get, path = "/v1/shares", tag = "shares", security(("token" = [])),
    responses((status = 200, body = ShareList)))]
pub async fn list(State(nuage): State<Arc<Nuage>>, caller: Caller) -> ApiResult<Json<ShareList>> {
    let shares =
        nuage.share_list(caller.account_id).await?.iter().map(|(s, bucket)| view(s, bucket)).collect();
    Ok(Json(ShareList { shares }))
}

/// Revokes a share link, at once: every later request through it fails.
#[utoipa::path(delete, path = "/v1/shares/{id}", tag = "shares", security(("token" = [])),
    params(("id" = i64, Path)),
    responses((status = 204, description = "Revoked"), (status = 404, description = "`share_not_found`", body = ErrorBody)))]
pub async fn revoke(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    nuage.revoke_share(caller.account_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A manifest with its grants as the API shows it, with the edges a device may read through.
fn manifest_view(nuage: &Nuage, version: &Version, m: ManifestGrants) -> ManifestView {
    ManifestView {
        key: version.key.clone(),
        version: version.id,
        size: version.size,
        content_type: version.content_type.clone(),
        manifest: URL_SAFE_NO_PAD.encode(&m.manifest),
        grants: m.grants,
        grants_expire_at: m.expires_at,
        edges: nuage.config.edges.clone(),
    }
}

/// A version's stored manifest, with grants for its chunks: how the client reads an object
/// of an end-to-end bucket (and may read any object) without the server decrypting it.
#[utoipa::path(get, path = "/v1/buckets/{bucket}/manifests/{key}", tag = "objects", security(("token" = [])),
    params(("bucket" = String, Path), ("key" = String, Path), VersionQuery),
    responses((status = 200, body = ManifestView), (status = 404, description = "`bucket_not_found`, `object_not_found`", body = ErrorBody)))]
pub async fn manifest(
    State(nuage): State<Arc<Nuage>>,
    caller: Caller,
    Path((bucket, key)): Path<(String, String)>,
    Query(query): Query<VersionQuery>,
) -> ApiResult<Json<ManifestView>> {
    let (version, grants) =
        nuage.owner_manifest(caller.account_id, &bucket, read_key(&key)?, query.version).await?;
    Ok(Json(manifest_view(&nuage, &version, grants)))
}

fn grant_text<'a>(headers: &'a HeaderMap, query: &'a GrantQuery) -> Option<&'a str> {
    headers.get(GRANT_HEADER).and_then(|v| v.to_str().ok()).or(query.grant.as_deref())
}

/// Stored bytes of one chunk, under a grant (`GetChunk`, or `GetShare` from a share link's
/// manifest). The bytes are ciphertext; the client checks them against the address.
#[utoipa::path(get, path = "/v1/chunks/{address}", tag = "shares",
    params(("address" = String, Path), ("x-nuage-grant" = Option<String>, Header), GrantQuery),
    responses(
        (status = 200, description = "The stored chunk", content_type = "application/octet-stream"),
        (status = 403, description = "`grant_missing`, `grant_forged`, `grant_expired`, `grant_wrong_operation`, `grant_wrong_address`", body = ErrorBody),
        (status = 404, description = "`chunk_not_found`", body = ErrorBody),
        (status = 410, description = "`share_revoked`, `share_expired`", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`", body = ErrorBody),
    ))]
pub async fn get_chunk(
    State(nuage): State<Arc<Nuage>>,
    Path(address): Path<String>,
    Query(query): Query<GrantQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let address = parse_address(&address)?;
    let grant = nuage.chunk_read_grant(grant_text(&headers, &query), &address).await?;
    let mut response = nuage.read_chunk(&grant).await?.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    // A chunk never changes under its address.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=31536000, immutable"));
    Ok(response)
}

/// What a share link points at; no download is counted.
#[utoipa::path(get, path = "/s/{token}/info", tag = "shares", params(("token" = String, Path)),
    responses((status = 200, body = LinkInfo),
        (status = 404, description = "`share_not_found`", body = ErrorBody),
        (status = 410, description = "`share_revoked`, `share_expired`, `share_exhausted`, `share_version_gone`", body = ErrorBody)))]
pub async fn info(State(nuage): State<Arc<Nuage>>, Path(token): Path<String>) -> ApiResult<Response> {
    let (share, bucket, version) = nuage.look_at_share(&token).await?;
    let e2e = bucket.policy.e2e_key_id.is_some();
    let info = LinkInfo {
        name: share.key.rsplit('/').next().unwrap_or(&share.key).to_owned(),
        size: version.size,
        content_type: version.content_type.clone(),
        e2e,
        password: share.password_hash.is_some(),
        etag: if e2e { None } else { version.etag.map(hex::encode) },
        expires_at: share.expires_at,
        downloads_left: share.max_downloads.map(|m| m.saturating_sub(share.downloads)),
    };
    let mut response = Json(info).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Trades a share link's password for a short-lived grant.
#[utoipa::path(post, path = "/s/{token}/unlock", tag = "shares", params(("token" = String, Path)),
    request_body = Unlock,
    responses((status = 200, body = Unlocked),
        (status = 403, description = "`share_password_wrong`", body = ErrorBody),
        (status = 404, description = "`share_not_found`", body = ErrorBody),
        (status = 410, description = "`share_revoked`, `share_expired`, `share_exhausted`", body = ErrorBody),
        (status = 429, description = "`share_unlock_throttled`, with `Retry-After`", body = ErrorBody)))]
pub async fn unlock(
    State(nuage): State<Arc<Nuage>>,
    Path(token): Path<String>,
    body: Option<Json<Unlock>>,
) -> ApiResult<Json<Unlocked>> {
    let given = body.map(|b| b.0.password).unwrap_or_default();
    let (grant, expires_at) = nuage.unlock_share(&token, given).await?;
    Ok(Json(Unlocked { grant, expires_at }))
}

/// The plaintext of a shared version of a normal bucket; counts one download.
#[utoipa::path(get, path = "/s/{token}/content", tag = "shares", params(("token" = String, Path), GrantQuery),
    responses((status = 200, description = "The file"), (status = 206, description = "A range of it"),
        (status = 401, description = "`share_password_required`", body = ErrorBody),
        (status = 404, description = "`share_not_found`", body = ErrorBody),
        (status = 409, description = "`end_to_end_bucket`", body = ErrorBody),
        (status = 410, description = "`share_revoked`, `share_expired`, `share_exhausted`", body = ErrorBody)))]
pub async fn content(
    State(nuage): State<Arc<Nuage>>,
    method: Method,
    Path(token): Path<String>,
    Query(query): Query<GrantQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let download = method != Method::HEAD;
    let grant = grant_text(&headers, &query);
    let (share, read) =
        nuage.read_share(&token, grant, download, &conditions(&headers), range(&headers)).await?;
    let mut response = answer_read(read, &method).await?;
    let name = share.key.rsplit('/').next().unwrap_or(&share.key);
    if let Ok(v) = HeaderValue::from_str(&content_disposition(name)) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `attachment` with the name, ASCII-safe and as RFC 5987 UTF-8.
fn content_disposition(name: &str) -> String {
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' { c } else { '_' }).collect();
    let encoded = nuage_core::url::percent_encode(name, false);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// The manifest of a shared version (sealed, for an end-to-end bucket), with a grant per chunk
/// and the edges; counts one download.
#[utoipa::path(get, path = "/s/{token}/manifest", tag = "shares", params(("token" = String, Path), GrantQuery),
    responses((status = 200, body = ManifestView),
        (status = 401, description = "`share_password_required`", body = ErrorBody),
        (status = 404, description = "`share_not_found`", body = ErrorBody),
        (status = 410, description = "`share_revoked`, `share_expired`, `share_exhausted`", body = ErrorBody)))]
pub async fn share_manifest(
    State(nuage): State<Arc<Nuage>>,
    Path(token): Path<String>,
    Query(query): Query<GrantQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (version, grants) = nuage.share_manifest(&token, grant_text(&headers, &query)).await?;
    let view = manifest_view(&nuage, &version, grants);
    let mut response = Json(view).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The page a browser gets for a share link.
#[utoipa::path(get, path = "/s/{token}", tag = "shares", params(("token" = String, Path)),
    responses((status = 200, description = "The share page; its script reads `/s/{token}/info` and the content", content_type = "text/html")))]
pub async fn page(State(nuage): State<Arc<Nuage>>) -> Response {
    let mut response = PAGE.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    // The page runs only its own script, talks only to this server and its edges, and shows
    // images only from blobs it made; the key in the fragment never leaves it.
    let mut connect = String::from("'self'");
    for e in &nuage.config.edges {
        connect.push(' ');
        connect.push_str(&edge_origin(&e.url));
    }
    let csp = format!(
        "default-src 'none'; script-src 'self'; connect-src {connect}; img-src blob:; \
         style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&csp).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'")),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `scheme://host[:port]` of an edge URL (a CSP source), without path or quotes.
fn edge_origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host: String = host.chars().filter(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(*c)).collect();
    format!("{scheme}://{host}")
}

/// The page's script.
pub async fn script() -> Response {
    let mut response = SCRIPT.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_origins_are_plain_csp_sources() {
        assert_eq!(edge_origin("https://edge.example.net/base/"), "https://edge.example.net");
        assert_eq!(edge_origin("http://127.0.0.1:8421"), "http://127.0.0.1:8421");
        assert_eq!(
            edge_origin("http://x.net;script-src 'unsafe-inline'"),
            "http://x.netscript-srcunsafe-inline"
        );
    }

    #[test]
    fn dispositions_are_safe() {
        assert_eq!(content_disposition("a.png"), "attachment; filename=\"a.png\"; filename*=UTF-8''a.png");
        let d = content_disposition("été \"x\".txt");
        assert!(d.is_ascii());
        assert!(d.contains("filename*=UTF-8''%C3%A9t%C3%A9%20%22x%22.txt"));
    }
}
