//! `Nuage`: the one struct that holds the server's stores and settings, shared by every
//! handler.

use nuage_blob::{ChunkStore, Placement};
use nuage_core::chunk::SealOptions;
use nuage_core::{Address, ChunkerConfig};
use nuage_meta::Meta;

use crate::config::ServiceConfig;
use crate::grants::Grants;
use crate::metrics::Metrics;

/// The link server's state.
#[derive(Debug)]
pub struct Nuage {
    /// Accounts, namespace, chunk index.
    pub meta: Meta,
    /// The providers under placement.
    pub store: ChunkStore,
    /// Chunk sizes.
    pub chunker: ChunkerConfig,
    /// Compression.
    pub seal: SealOptions,
    /// The configuration it was built from.
    pub config: ServiceConfig,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Grant signing and verification keys.
    pub grants: Grants,
    /// Chunks waiting for the rest of their replicas (direct uploads).
    pub replicas: Replicas,
    /// The key that seals S3 access keys' secrets (`access_key_file`), read once.
    pub access_key: crate::server_key::ServerKey,
    /// Simple uploads under way in this process, by lease holder (an upload and its retries
    /// share one): a failed attempt drops its leases when no other is running.
    pub(crate) attempts: Attempts,
    /// Providers added at run time that failed to open, and when: tried again after a
    /// while, not on every refresh of the registry.
    pub(crate) open_failures: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// Chunks waiting for their other replicas.
#[derive(Debug, Default)]
pub struct Replicas {
    pub(crate) queue: std::sync::Mutex<Vec<(Address, Placement)>>,
    /// Held while a batch is replicated: one batch at a time, and `Nuage::replicate_pending` returns
    /// only when every chunk queued before it has been handled.
    pub(crate) running: tokio::sync::Mutex<()>,
}

impl Replicas {
    /// Queues chunks for replication under `placement`.
    pub fn push(&self, chunks: impl IntoIterator<Item = Address>, placement: Placement) {
        self.queue.lock().expect("replica queue").extend(chunks.into_iter().map(|a| (a, placement)));
    }
}

/// Attempts of simple uploads under way in this process, by holder name.
#[derive(Debug, Default)]
pub(crate) struct Attempts(
    pub(crate) std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
);
