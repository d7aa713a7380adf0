//! The wire of nuage's HTTP API that both ends must spell alike: the server (`nuage-server`),
//! the client (`nuage-client`) and the edge. It holds names, JSON bodies and parsers, no I/O
//! and no HTTP library: a front end maps these onto its own types.
//!
//! Each JSON body has one type, named once for both ends; the server builds it, the client
//! reads it (or the other way round for requests). With the `openapi` feature every type
//! also derives its OpenAPI schema (utoipa), for the server's `/v1/openapi.json`.
//!
//! - [`headers`]: the names of nuage's own headers.
//! - [`range`]: the `Range` and `If-Range` request headers (RFC 9110 §14, §13.1.5).
//! - [`error`]: the body of every error answer.
//! - [`accounts`], [`buckets`], [`objects`], [`uploads`], [`shares`], [`service`]: the
//!   bodies and query strings of `/v1`, `/s/` and the service endpoints, by area.
#![deny(missing_docs)]

pub mod accounts;
pub mod buckets;
pub mod error;
pub mod headers;
pub mod objects;
pub mod range;
pub mod service;
pub mod shares;
pub mod uploads;

pub use accounts::{
    AccessKeyList, AccessKeyRequest, AccessKeyView, AccountView, Login, NewAccessKey, NewToken, TokenList,
    TokenRequest, TokenView,
};
pub use buckets::{BucketList, BucketRequest, BucketView};
pub use error::{ErrorBody, ErrorDetail};
pub use objects::{
    ListQuery, ListingView, PutAnswer, RestoreRequest, VersionList, VersionQuery, VersionView,
};
pub use service::{EdgeLink, EdgeList, GrantKeyView};
pub use shares::{
    CreateShare, GrantQuery, LinkInfo, ManifestView, NewShareView, ShareList, ShareView, Unlock, Unlocked,
};
pub use uploads::{
    ChunkDecl, ChunkStored, CommitUpload, MoreChunks, MoreTargets, StartUpload, UploadSettings,
    UploadStarted, UploadTarget,
};
