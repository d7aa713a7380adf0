//! nuage-client: what runs on the device.
//!
//! - [`api`]: the typed SDK of the link server (`Client`), used by the CLI and the tests.
//! - [`smart`]: smart upload (chunk and seal here, send only what the server lacks).
//! - [`edges`]: which edge cache to read chunks through.
//! - [`retry`]: temporary failures retried for a window of time shared by all requests.
//! - [`share`]: reads through manifests (end-to-end buckets) and share links.
//! - [`stamps`]: what `nuage put` remembers of the files it uploaded, to skip unchanged ones.
//!
//! It speaks HTTP only: direct ingest to the providers is `nuage-ingest`.
#![deny(missing_docs)]

pub mod api;
pub mod edges;
mod error;
pub mod retry;
pub mod share;
pub mod smart;
pub mod stamps;

pub use api::Client;
pub use error::{ClientError, ClientResult};
pub use smart::SmartPutResult;
