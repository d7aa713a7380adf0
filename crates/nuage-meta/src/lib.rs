//! nuage's metadata store: accounts, tokens, buckets, objects → versions → manifests, the
//! chunk index with placements, share links, idempotency records and the per-account change feed, over
//! sqlx with one code path for SQLite (embedded) and PostgreSQL (shared).
//!
//! It holds links, never chunk bytes, and does no HTTP and no provider I/O.

#![deny(missing_docs)]

mod access_keys;
mod accounts;
mod claims;
mod configs;
mod db;
mod error;
mod exec;
mod gc;
mod model;
mod multipart;
mod namespace;
mod recent;
mod shares;
mod sql;
mod states;
mod throttle;
mod uploads;
mod versions;
mod workers;
mod write;

pub use access_keys::AccessKey;
pub use accounts::{Account, AccountSecrets, CLOCK_MARGIN_MS, ProviderRecord, Removal, Token};
pub use claims::Claim;
pub use db::Meta;
pub use error::{DbError, Error, Result};
pub use gc::{DeletionDone, StoredOn};
pub use model::{
    Bucket, BucketPolicy, Change, ChunkInfo, ChunkRef, Committed, EntityTag, EtagCondition, ListEntry,
    Listing, Md5Tag, NewVersion, Opened, Precondition, Tags, Version,
};
pub use multipart::{MULTIPART_PREFIX, MultipartUpload, Part};
pub use recent::FRESH_FOR;
pub use shares::{NewShare, Share, ShareState};
pub use sql::{Backend, now_ms};
pub use states::{ChangeKind, PlacementState, ProviderState};
pub use throttle::{Attempt, FREE_ATTEMPTS, MAX_IN_FLIGHT};
pub use uploads::{DeclareLimits, DeclaredChunk, GrantKey, SessionChunk, UploadSession};
pub use versions::{VersionCursor, VersionEntry, VersionListing};
pub use workers::{ChunkPlacements, WorkerState};
