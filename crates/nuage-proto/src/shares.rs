//! Share links (`/v1/shares`, `/s/{token}`) and the manifests with grants that downloads
//! start from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::service::EdgeLink;

/// `POST /v1/shares` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateShare {
    /// Bucket of the object.
    pub bucket: String,
    /// Key of the object.
    pub key: String,
    /// Version to share (default: the current one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Lifetime in seconds (default: no expiry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
    /// Downloads allowed (default: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_downloads: Option<u64>,
    /// A password the recipient must give.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// A share link as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShareView {
    /// Id, for `DELETE /v1/shares/{id}`.
    pub id: i64,
    /// Bucket of the object.
    pub bucket: String,
    /// Key of the object.
    pub key: String,
    /// Version shared.
    pub version: i64,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub expires_at: Option<i64>,
    /// Download limit.
    pub max_downloads: Option<u64>,
    /// Downloads so far.
    pub downloads: u64,
    /// Whether the link asks for a password.
    pub password: bool,
    /// `usable`, `revoked`, `expired` or `exhausted`.
    pub state: String,
}

/// `POST /v1/shares` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewShareView {
    /// The link.
    #[serde(flatten)]
    pub share: ShareView,
    /// Path of the link on this server (`/s/` + token); shown once, never stored.
    pub path: String,
}

/// `GET /v1/shares` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShareList {
    /// The caller's links, newest first.
    pub shares: Vec<ShareView>,
}

/// A version's manifest and the grants that fetch its chunks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ManifestView {
    /// Key of the object.
    pub key: String,
    /// Version id.
    pub version: i64,
    /// Plaintext size.
    pub size: u64,
    /// `Content-Type` given at upload.
    pub content_type: Option<String>,
    /// The stored manifest, base64url: plain (`nuMF`) or sealed (`nuSM`).
    pub manifest: String,
    /// For each distinct chunk address (hex), a grant for `GET /v1/chunks/{address}`.
    pub grants: BTreeMap<String, String>,
    /// When the grants expire, Unix ms.
    #[serde(default)]
    pub grants_expire_at: i64,
    /// Edge caches that serve the chunks under the same grants (`GET {url}/chunks/{address}`).
    #[serde(default)]
    pub edges: Vec<EdgeLink>,
}

/// Where a grant may come from when the `x-nuage-grant` header cannot be set: the `grant`
/// query parameter (a plain link).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct GrantQuery {
    /// A grant, when the header cannot be set (a plain link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
}

/// What the page (and `nuage get URL`) learns of a share link before downloading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkInfo {
    /// File name: the last segment of the key.
    pub name: String,
    /// Plaintext size.
    pub size: u64,
    /// `Content-Type` given at upload.
    pub content_type: Option<String>,
    /// End-to-end: fetch `manifest` and decrypt with the key of the URL fragment.
    pub e2e: bool,
    /// A password is needed (`POST unlock`).
    pub password: bool,
    /// For a normal bucket: the whole-file BLAKE3 (hex), to verify the download.
    pub etag: Option<String>,
    /// Unix ms.
    pub expires_at: Option<i64>,
    /// Downloads left, when limited.
    pub downloads_left: Option<u64>,
}

/// `POST /s/{token}/unlock` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Unlock {
    /// The link's password.
    pub password: String,
}

/// `POST /s/{token}/unlock` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Unlocked {
    /// Send it as `x-nuage-grant` (or `?grant=`) with `content` or `manifest`.
    pub grant: String,
    /// Unix ms.
    pub expires_at: i64,
}
