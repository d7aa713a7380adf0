//! Share links, and the reads that go around the plaintext path: a version's manifest with
//! grants for its chunks, and chunks fetched under a grant.
//!
//! A share link is `/s/{token}`: 32 random bytes, base64url; the database keeps only their
//! BLAKE3 hash. It points at one version. Whoever holds it, with no account:
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
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;

use crate::extract::{Json, Path, Query};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nuage_core::grant::{GrantError, Operation};
use nuage_core::{Address, e2e};
use nuage_meta::{Bucket, NewShare, Share, ShareState, Version, now_ms};

use crate::Nuage;
use crate::auth::{self, Caller};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::objects::{serve_version, version_or_head};
use crate::uploads::{grant_refused, parse_address};
use nuage_proto::headers::GRANT as GRANT_HEADER;
use nuage_service::metrics::add;
use nuage_service::names::{read_key, stored_key};

/// The share page: static HTML; [`SCRIPT`] fills it in.
pub const PAGE: &str = include_str!("share/page.html");
/// The share page's script: fetches, decrypts (WebCrypto) and saves.
pub const SCRIPT: &str = include_str!("share/share.js");

/// Prefix of share tokens, so that a leaked one is easy to recognize.
const SHARE_PREFIX: &str = "sh_";

fn state_name(s: ShareState) -> &'static str {
    match s {
        ShareState::Usable => "usable",
        ShareState::Revoked => "revoked",
        ShareState::Expired => "expired",
        ShareState::Exhausted => "exhausted",
    }
}

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
        state: state_name(share.state(now_ms())).to_owned(),
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
    let Some(Json(mut req)) = body else {
        return Err(ApiError::bad_request("invalid_request", "send JSON {bucket, key, ...}"));
    };
    let key = read_key(&req.key)?;
    let bucket = nuage.meta.bucket(caller.account_id, &req.bucket).await?;
    req.key = stored_key(&nuage.meta, &bucket, key).await?;
    let version = live(version_or_head(&nuage, &bucket, &req.key, req.version).await?)?;
    if req.max_downloads == Some(0) {
        return Err(ApiError::bad_request("invalid_request", "max_downloads must be at least 1"));
    }
    if req.password.as_deref() == Some("") {
        return Err(ApiError::bad_request("invalid_request", "the password is empty"));
    }
    let expires_at = req
        .expires_in_secs
        .map(|s| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX).saturating_add(now_ms()));
    let password_hash = match req.password {
        Some(p) => Some(
            tokio::task::spawn_blocking(move || auth::hash_password(&p))
                .await
                .map_err(|e| ApiError::internal("hashing a password", e))?
                .map_err(|e| ApiError::internal("hashing a password", e))?,
        ),
        None => None,
    };
    let token = format!("{SHARE_PREFIX}{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()));
    let new = NewShare {
        token_hash: auth::token_hash(&token),
        bucket_id: bucket.id,
        key: req.key,
        version_id: version.id,
        expires_at,
        max_downloads: req.max_downloads,
        password_hash,
    };
    let share = nuage.meta.create_share(caller.account_id, &new).await?;
    let answer = NewShareView { share: view(&share, &bucket.name), path: format!("/s/{token}") };
    Ok((StatusCode::CREATED, Json(answer)))
}

/// The caller's share links, newest first.
#[utoipa::path(get, path = "/v1/shares", tag = "shares", security(("token" = [])),
    responses((status = 200, body = ShareList)))]
pub async fn list(State(nuage): State<Arc<Nuage>>, caller: Caller) -> ApiResult<Json<ShareList>> {
    let names: BTreeMap<i64, String> =
        nuage.meta.buckets(caller.account_id).await?.into_iter().map(|b| (b.id, b.name)).collect();
    let shares = nuage
        .meta
        .shares(caller.account_id)
        .await?
        .iter()
        .filter_map(|s| Some(view(s, names.get(&s.bucket_id)?)))
        .collect();
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
    nuage.meta.revoke_share(caller.account_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn manifest_view(
    nuage: &Nuage,
    version: &Version,
    op: Operation,
    scope: u64,
    until: Option<i64>,
) -> ApiResult<ManifestView> {
    let raw = nuage.meta.manifest(version.id).await?;
    let addresses = e2e::manifest_addresses(&raw).map_err(|e| ApiError::internal("stored manifest", e))?;
    let expires_at = until.unwrap_or(i64::MAX).min(now_ms().saturating_add(nuage.grants.ttl()));
    let mut grants = BTreeMap::new();
    for a in addresses {
        grants.entry(a.to_hex()).or_insert_with(|| {
            nuage.grants.sign_until(op, a, scope, nuage_core::chunk::MAX_CHUNK_LEN as u64, expires_at)
        });
    }
    Ok(ManifestView {
        key: version.key.clone(),
        version: version.id,
        size: version.size,
        content_type: version.content_type.clone(),
        manifest: URL_SAFE_NO_PAD.encode(&raw),
        grants,
        grants_expire_at: expires_at,
        edges: nuage.config.edges.clone(),
    })
}

fn live(version: Version) -> ApiResult<Version> {
    if version.tombstone {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "object_not_found",
            "this version is a delete marker",
        ));
    }
    Ok(version)
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
    let key = read_key(&key)?;
    let bucket = nuage.meta.bucket(caller.account_id, &bucket).await?;
    let key = stored_key(&nuage.meta, &bucket, key).await?;
    let version = live(version_or_head(&nuage, &bucket, &key, query.version).await?)?;
    Ok(Json(manifest_view(&nuage, &version, Operation::GetChunk, bucket.id as u64, None).await?))
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
    let Some(text) = grant_text(&headers, &query) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "grant_missing",
            format!("a chunk read needs a grant in {GRANT_HEADER} or ?grant="),
        ));
    };
    match nuage.grants.verify(&nuage.meta, text, Operation::GetChunk, &address).await {
        Ok(_) => {}
        Err(GrantError::WrongOperation) => {
            let grant = nuage
                .grants
                .verify(&nuage.meta, text, Operation::GetShare, &address)
                .await
                .map_err(grant_refused)?;
            // Revocation and expiry hold at once, even for grants handed out before.
            let share = nuage.meta.share(grant.scope as i64).await?;
            match share.state(now_ms()) {
                ShareState::Revoked | ShareState::Expired => {
                    return Err(share_refused(share.state(now_ms())));
                }
                // The download was counted when its manifest was fetched.
                ShareState::Usable | ShareState::Exhausted => {}
            }
        }
        Err(e) => return Err(grant_refused(e)),
    }
    let read = nuage.store.get(&address, &[]).await.map_err(|e| match e {
        nuage_blob::Error::NotFound { .. } => {
            ApiError::new(StatusCode::NOT_FOUND, "chunk_not_found", "no provider holds this chunk")
        }
        e => e.into(),
    })?;
    add(&nuage.metrics.bytes_out, read.bytes.len() as u64);
    let mut response = read.bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    // A chunk never changes under its address.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=31536000, immutable"));
    Ok(response)
}

/// `410` with the reason, unless the link can be used now.
fn usable(share: &Share) -> ApiResult<()> {
    match share.state(now_ms()) {
        ShareState::Usable => Ok(()),
        s => Err(share_refused(s)),
    }
}

fn share_refused(state: ShareState) -> ApiError {
    match state {
        ShareState::Revoked => {
            ApiError::new(StatusCode::GONE, "share_revoked", "this share link was revoked by its owner")
        }
        ShareState::Expired => {
            ApiError::new(StatusCode::GONE, "share_expired", "this share link has expired")
        }
        ShareState::Exhausted => ApiError::new(
            StatusCode::GONE,
            "share_exhausted",
            "this share link has been downloaded as many times as it allows",
        ),
        ShareState::Usable => ApiError::internal("share", "refused a usable share"),
    }
}

/// A share link's token from the path; the share, and its bucket and version.
async fn resolve(nuage: &Nuage, token: &str) -> ApiResult<(Share, Bucket, Version)> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "share_not_found", "no such share link");
    if !token.starts_with(SHARE_PREFIX) {
        return Err(not_found());
    }
    let share = nuage.meta.share_by_token(&auth::token_hash(token)).await.map_err(|e| match e {
        nuage_meta::Error::ShareNotFound => not_found(),
        e => e.into(),
    })?;
    let bucket = nuage.meta.bucket_by_id(share.bucket_id).await?;
    let version = nuage.meta.version(&bucket, &share.key, share.version_id).await.map_err(|e| match e {
        nuage_meta::Error::ObjectNotFound => {
            ApiError::new(StatusCode::GONE, "share_version_gone", "the shared version no longer exists")
        }
        e => e.into(),
    })?;
    Ok((share, bucket, version))
}

/// Checks the link's password (through the grant `unlock` gave), then counts one download.
async fn admit(nuage: &Nuage, share: &Share, headers: &HeaderMap, query: &GrantQuery) -> ApiResult<()> {
    usable(share)?;
    if share.password_hash.is_some() {
        let Some(text) = grant_text(headers, query) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "share_password_required",
                "this share link asks for a password: POST it to /s/{token}/unlock",
            ));
        };
        let grant = nuage
            .grants
            .verify(&nuage.meta, text, Operation::GetShare, &unlock_address(share))
            .await
            .map_err(grant_refused)?;
        if grant.scope != share.id as u64 {
            return Err(grant_refused(GrantError::WrongAddress));
        }
    }
    if !nuage.meta.count_share_download(share.id, now_ms()).await? {
        // Lost a race for the last download, or revoked / expired meanwhile.
        let now = nuage.meta.share(share.id).await?;
        return Err(share_refused(match now.state(now_ms()) {
            ShareState::Usable => ShareState::Exhausted,
            s => s,
        }));
    }
    Ok(())
}

/// What an unlock grant is for: a value no chunk address can take by accident.
fn unlock_address(share: &Share) -> Address {
    let mut h = blake3::Hasher::new_derive_key("nuage share unlock v1");
    h.update(&share.id.to_le_bytes());
    Address::from_bytes(*h.finalize().as_bytes())
}

/// What a share link points at; no download is counted.
#[utoipa::path(get, path = "/s/{token}/info", tag = "shares", params(("token" = String, Path)),
    responses((status = 200, body = LinkInfo),
        (status = 404, description = "`share_not_found`", body = ErrorBody),
        (status = 410, description = "`share_revoked`, `share_expired`, `share_exhausted`, `share_version_gone`", body = ErrorBody)))]
pub async fn info(State(nuage): State<Arc<Nuage>>, Path(token): Path<String>) -> ApiResult<Response> {
    let (share, bucket, version) = resolve(&nuage, &token).await?;
    usable(&share)?;
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
    let (share, _, _) = resolve(&nuage, &token).await?;
    usable(&share)?;
    // Counted before the password is checked (every server of the deployment sees the
    // count), so guesses sent at once cannot all pass, and those refused cost no Argon2.
    let subject = format!("share:{}", share.id);
    let given = body.map(|b| b.0.password).unwrap_or_default();
    let phc = share.password_hash.clone().unwrap_or_else(|| auth::unmatchable_hash().to_owned());
    let matches = crate::auth::checked_attempt(&nuage, &subject, "share_unlock_throttled", given, phc)
        .await?
        && share.password_hash.is_some();
    if !matches {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "share_password_wrong",
            "wrong password for this link",
        ));
    }
    let until = share.expires_at.unwrap_or(i64::MAX).min(now_ms().saturating_add(nuage.grants.ttl()));
    let grant =
        nuage.grants.sign_until(Operation::GetShare, unlock_address(&share), share.id as u64, 0, until);
    Ok(Json(Unlocked { grant, expires_at: until }))
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
    let (share, bucket, version) = resolve(&nuage, &token).await?;
    nuage_service::objects::refuse_e2e(&bucket)?;
    if method == Method::HEAD {
        usable(&share)?;
    } else {
        admit(&nuage, &share, &headers, &query).await?;
    }
    // A link names one version: its Last-Modified is a strong validator.
    let mut response = serve_version(&nuage, &version, true, &method, &headers).await?;
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
    let (share, _bucket, version) = resolve(&nuage, &token).await?;
    admit(&nuage, &share, &headers, &query).await?;
    let view =
        manifest_view(&nuage, &version, Operation::GetShare, share.id as u64, share.expires_at).await?;
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
