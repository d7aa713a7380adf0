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
    /// Room for chunks between their cutting and their storing, shared by every write of
    /// this process (`[chunking] write_memory_mib`).
    pub(crate) write_memory: WriteMemory,
    /// Providers added at run time that failed to open, and when: tried again after a
    /// while, not on every refresh of the registry.
    pub(crate) open_failures: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// Bytes of chunks held between their cutting and their storing, across all writes: what
/// bounds a server's memory under many concurrent writes, whatever their number. Each
/// write holds besides only the chunk it is still reading (at most `max_size`), so slow
/// clients hold none of it; chunks cut, being sealed or being stored do, for as long as
/// their sealing and their providers take.
#[derive(Debug, Clone)]
pub(crate) struct WriteMemory {
    room: std::sync::Arc<tokio::sync::Semaphore>,
    total: usize,
}

/// Room taken in [`WriteMemory`], given back when dropped.
pub(crate) type Room = tokio::sync::OwnedSemaphorePermit;

impl WriteMemory {
    pub(crate) fn new(bytes: usize) -> Self {
        let total = bytes.clamp(1, u32::MAX as usize >> 1);
        WriteMemory { room: std::sync::Arc::new(tokio::sync::Semaphore::new(total)), total }
    }

    /// Bytes of room free now.
    pub(crate) fn free(&self) -> usize {
        self.room.available_permits()
    }

    /// Waits for room for a chunk of `len` bytes: at most all of it, so that a chunk larger
    /// than the whole (a small setting) still passes, alone.
    pub(crate) async fn take(&self, len: usize) -> Room {
        let room = self.room.clone();
        let want = len.min(self.total) as u32;
        room.acquire_many_owned(want).await.expect("never closed")
    }
}

impl Nuage {
    /// Bytes free now in the write memory (`[chunking] write_memory_mib`): all of it when
    /// no write holds a chunk.
    pub fn write_memory_free(&self) -> usize {
        self.write_memory.free()
    }
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
