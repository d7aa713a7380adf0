//! nuage-ingest: files and folders straight to the providers, without a link server.
//!
//! - [`ingest`]: the client-side chunk pipeline over files and folders (read, chunk, seal on
//!   two threads; store through a [`nuage_blob::ChunkStore`]), and back ([`restore`]).
//! - [`snapshot`]: the local record of what was ingested that way.
//!
//! Its own crate so that the SDK (`nuage-client`, which speaks HTTP only) does not link the
//! providers' clients; the CLI's `nuage local` uses it.
#![deny(missing_docs)]

pub mod ingest;
pub mod snapshot;

pub use ingest::{IngestError, IngestStats, Ingested, ingest, restore, walk};
pub use snapshot::{Snapshot, SnapshotFile};
