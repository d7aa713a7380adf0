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
/// bounds the memory many concurrent writes hold, with, besides it, the one chunk each
/// write's chunking thread holds (being read, or cut and waiting for the sealer; at most
/// `max_size`, plus a read buffer under 1 MiB) and small bodies
/// (at most 64 KiB each, read whole). Slow clients hold none of it; chunks cut, being sealed
/// or being stored do, for as long as their sealing and their providers take. One write
/// holds at most a quarter of it ([`WriteMemory::share`]; or one chunk, when a chunk is
/// larger), so a write to a slow provider leaves room to the others (four such writes do
/// not).
#[derive(Debug, Clone)]
pub(crate) struct WriteMemory {
    room: std::sync::Arc<tokio::sync::Semaphore>,
    total: usize,
}

/// One write's part of [`WriteMemory`]: at most a quarter of it.
#[derive(Debug, Clone)]
pub(crate) struct Share {
    all: WriteMemory,
    own: WriteMemory,
}

/// Room taken in [`WriteMemory`] for one chunk, given back when dropped.
#[derive(Debug)]
pub(crate) struct Room {
    _own: tokio::sync::OwnedSemaphorePermit,
    _all: tokio::sync::OwnedSemaphorePermit,
}

impl WriteMemory {
    pub(crate) fn new(bytes: usize) -> Self {
        let total = bytes.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        WriteMemory { room: std::sync::Arc::new(tokio::sync::Semaphore::new(total)), total }
    }

    /// Bytes of room free now.
    pub(crate) fn free(&self) -> usize {
        self.room.available_permits()
    }

    /// A new write's part.
    pub(crate) fn share(&self) -> Share {
        Share { all: self.clone(), own: WriteMemory::new(self.total / 4) }
    }

    /// Waits for `len` bytes: at most all of it, so that a chunk larger than the whole (a
    /// small setting) still passes, alone.
    async fn take(&self, len: usize) -> tokio::sync::OwnedSemaphorePermit {
        let want = u32::try_from(len.min(self.total)).unwrap_or(u32::MAX);
        self.room.clone().acquire_many_owned(want).await.expect("never closed")
    }
}

impl Share {
    /// Waits for room for a chunk of `len` bytes, in this write's part and then in the
    /// whole (always in that order: a write waiting on the whole holds only its own part).
    pub(crate) async fn take(&self, len: usize) -> Room {
        let own = self.own.take(len).await;
        Room { _own: own, _all: self.all.take(len).await }
    }
}

impl Nuage {
    /// Bytes free now in the write memory (`[chunking] write_memory_mib`): all of it when
    /// no write holds a chunk.
    pub fn write_memory_free(&self) -> usize {
        self.write_memory.free()
    }

    /// Whether some write holds chunks now (room is taken in the write memory).
    pub fn writing(&self) -> bool {
        self.write_memory.free() < self.write_memory.total
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
