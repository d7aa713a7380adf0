//! Smart uploads: the device cuts and seals, the server stores what it lacks
//! (`/v1/uploads`, `/v1/chunks`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// What a device needs to cut and seal chunks exactly as the server would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadSettings {
    /// The account's convergence secret, base64url: chunk keys derive from it.
    pub convergence_secret: String,
    /// Smallest chunk, bytes.
    pub min_size: usize,
    /// Target average chunk, bytes.
    pub avg_size: usize,
    /// Largest chunk, bytes.
    pub max_size: usize,
    /// zstd level, 0 for none.
    pub zstd_level: i32,
}

/// One chunk of the file to upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChunkDecl {
    /// Address, 64 hex digits.
    pub address: String,
    /// Stored size in bytes.
    pub size: u64,
}

/// The start of a smart upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StartUpload {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Plaintext size of the file, for information only: the quota is checked on the
    /// stored sizes of the declared chunks.
    pub size: Option<u64>,
    /// Distinct chunks of the file: all of them, or a first batch (more with
    /// `POST /v1/uploads/{id}/chunks`).
    pub chunks: Vec<ChunkDecl>,
}

/// Where and how to send one chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadTarget {
    /// Address, hex.
    pub address: String,
    /// HTTP method.
    pub method: String,
    /// URL; a path alone is relative to the server's address.
    pub url: String,
    /// Headers to send with it.
    pub headers: HashMap<String, String>,
    /// When the target stops working, Unix ms.
    #[serde(default)]
    pub expires_at: i64,
}

/// The server's answer to the start of a smart upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadStarted {
    /// Session id, for the commit.
    pub upload_id: String,
    /// The session must commit before this, Unix ms.
    #[serde(default)]
    pub expires_at: i64,
    /// One target per chunk the server does not hold; send those, nothing else.
    pub missing: Vec<UploadTarget>,
}

/// More chunks for a smart upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MoreChunks {
    /// Distinct chunks not declared yet (declaring one again is harmless).
    pub chunks: Vec<ChunkDecl>,
}

/// Targets for chunks declared after the start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MoreTargets {
    /// One target per chunk the server does not hold.
    pub missing: Vec<UploadTarget>,
}

/// The answer to a chunk upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChunkStored {
    /// Address, hex.
    pub address: String,
    /// Providers that hold it now.
    pub stored_on: Vec<String>,
}

/// The end of a smart upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommitUpload {
    /// The manifest, base64url: plain (`nuMF`) for a normal bucket, sealed (`nuSM`) for an
    /// end-to-end one (docs/formats.md).
    pub manifest: String,
    /// `Content-Type` to keep with the version.
    pub content_type: Option<String>,
}
