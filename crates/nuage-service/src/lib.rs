//! nuage's object service: the rules every front end shares. The `/v1` API
//! (`nuage-server`) is the first front; S3, the web app and sync stand on the same service, so
//! a rule is written once, here, and a front only turns requests into calls and answers
//! into its own wire.
//!
//! - [`error`]: [`ServiceError`], whose [`ErrorKind`] each front maps to its own answer
//!   (an HTTP status and nuage's stable code for `/v1`; an S3 error code for S3). The
//!   errors of the metadata store and the chunk store become service errors here, once.
//! - [`access_keys`]: S3 access keys, their secrets sealed under a key file of the server.
//! - [`buckets`]: accounts, tokens and buckets (a new bucket's settings and its
//!   placement check), and health.
//! - [`names`]: the rules of bucket names and object keys; [`auth`]: tokens, passwords,
//!   the throttle of password checks, and who a token makes the caller.
//! - [`providers`]: the rules of the provider registry (drain, add, remove), and the
//!   registry every running server follows (`Nuage::open`, [`refresh_provider_states`]).
//! - [`Nuage`]: the one struct that holds the metadata store, the chunk store, the grant
//!   keys, the counters and the settings ([`config`]), shared by every front.
//! - [`leases`]: how an upload keeps its chunks from the collector; the replica queue of
//!   direct uploads ([`Replicas`]); [`grants`]: signing keys and their rotation;
//!   [`metrics`]: the counters.
//! - [`workers`]: scrub, repair, the collector and the drains, over the chunk index, each
//!   a [`background::Worker`] that a [`background::Background`] runs and stops, at the
//!   paces of `paces` (configured, or set while servers run).
//!
//! - [`objects`]: writes (`Nuage::put_stream`), deletes and copies of versions, and a
//!   version's [`objects::Attributes`]; [`digests`]: the MD5 and checksums a write computes
//!   and checks.
//! - [`copies`]: a version copied onto another key (no byte moved).
//! - [`multipart`]: multipart uploads (start, store a part, list, abort, complete into
//!   one manifest without reading a byte again).
//! - [`read`]: reads with conditions and a range (`Nuage::read`, `Nuage::read_version`),
//!   listings, versions.
//! - [`uploads`]: smart uploads (start, declare, store a chunk, commit, abort).
//! - [`shares`]: share links (make, list, revoke, resolve, admit a download, unlock with
//!   the password), manifests with chunk grants, and chunk reads under a grant.
//!
//! Nothing here names an HTTP type: no status, no header map, no body type (some messages
//! for people say where `/v1` carries a grant).
#![deny(missing_docs)]

pub mod access_keys;
pub mod auth;
pub mod background;
pub mod buckets;
pub mod conditions;
pub mod config;
pub mod copies;
pub mod cors;
pub mod digests;
pub mod error;
pub mod grants;
pub mod leases;
pub mod lifecycle;
pub mod metrics;
pub mod multipart;
pub mod names;
pub mod objects;
mod paces;
pub mod providers;
pub mod read;
mod registry;
mod replicas;
mod server_key;
pub mod shares;
mod state;
pub mod uploads;
pub mod workers;

pub use config::ServiceConfig;
pub use error::{ErrorKind, ServiceError, ServiceResult};
pub use metrics::Metrics;
pub use registry::refresh_provider_states;
pub use state::{Nuage, Replicas};
