//! Buckets (`/v1/buckets`).

use serde::{Deserialize, Serialize};

/// A bucket as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BucketView {
    /// Bucket name.
    pub name: String,
    /// Copies kept of each chunk.
    pub replicas: u32,
    /// Copies stored before a write succeeds.
    pub write_quorum: u32,
    /// Versions kept per key (0: all).
    pub keep_versions: u32,
    /// Unix ms.
    pub created_at: i64,
    /// For an end-to-end bucket: the id (hex) of the content key its manifests are sealed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_key_id: Option<String>,
    /// Devices send chunks straight to a provider when one can presign.
    #[serde(default)]
    pub direct_upload: bool,
}

/// `GET /v1/buckets` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BucketList {
    /// By name.
    pub buckets: Vec<BucketView>,
}

/// `PUT /v1/buckets/{bucket}` body; every field defaults to the server's `[buckets]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BucketRequest {
    /// Copies kept of each chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Copies stored before a write succeeds (default: `replicas` when that is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_quorum: Option<u32>,
    /// Versions kept per key (0: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_versions: Option<u32>,
    /// Makes an end-to-end bucket whose manifests are sealed with the content key of this id
    /// (32 hex digits, `nuage_core::e2e`). The server then never reads its content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_key_id: Option<String>,
    /// Lets devices send chunks straight to a provider with presigned URLs (S3) instead of
    /// through this server; the server verifies them at commit and makes the other replicas
    /// after (default: false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_upload: Option<bool>,
}
