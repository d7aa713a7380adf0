//! nuage-client: what runs on the device.
//!
//! - [`api`]: the typed SDK of the link server (`Client`), used by the CLI and the tests.
//! - [`smart`]: smart upload (chunk and seal here, send only what the server lacks).
//! - [`edges`]: which edge cache to read chunks through.
//! - [`retry`]: temporary failures retried for a window of time shared by all requests.
//! - [`share`]: reads through manifests (end-to-end buckets) and share links.
//! - [`ingest`]: the client-side chunk pipeline over files and folders (read, chunk, seal on
//!   two threads; store through a [`nuage_blob::ChunkStore`]), and [`snapshot`], the local
//!   record of what was ingested that way.
#![deny(missing_docs)]

pub mod api;
pub mod edges;
mod error;
pub mod ingest;
pub mod retry;
pub mod share;
pub mod smart;
pub mod snapshot;
pub mod stamps;

pub use api::Client;
pub use error::{ClientError, ClientResult};
pub use ingest::{IngestError, IngestStats, Ingested, ingest, restore, walk};
pub use smart::SmartPutResult;
pub use snapshot::{Snapshot, SnapshotFile};
