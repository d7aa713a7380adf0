//! nuage-client: what runs on the device.
//!
//! For now, [`ingest`]: the client-side chunk pipeline over files and folders (read, chunk,
//! seal on two threads; store through a [`nuage_blob::ChunkStore`]), and [`snapshot`], the
//! local record of what was ingested, until the link server holds manifests.
#![deny(missing_docs)]

pub mod ingest;
pub mod snapshot;

pub use ingest::{IngestError, IngestStats, Ingested, ingest, restore};
pub use snapshot::{Snapshot, SnapshotFile};
