//! The edge's hybrid cache: a memory tier in front of a disk tier, both bounded in bytes,
//! both evicting with CLOCK (second chance).
//!
//! - **Memory**: 16 shards, each a map of address → bytes with a reference bit, and a ring
//!   of addresses in insertion order. A hit sets the bit; eviction walks the ring, giving a
//!   second chance to entries hit since the hand last passed. Entries came from a verified
//!   fetch or a verified disk read, so a memory hit is served as is.
//! - **Disk**: one file per chunk, `chunks/ab/<address>`, written to `tmp/` then renamed
//!   (a crash leaves at most a stray temp file, removed at start). The index (address →
//!   size, plus the same CLOCK ring) is rebuilt at start by listing the folder, so the tier
//!   survives a restart. Every disk read is verified against the address: a file changed on
//!   disk is deleted and reported as a miss, never served.
//!
//! Chunks are immutable and named by their hash, so nothing is ever invalidated: an entry
//! only leaves by eviction or by failing verification.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use nuage_core::Address;

const SHARDS: usize = 16;

/// One CLOCK-managed set of entries, bounded in bytes.
#[derive(Debug, Default)]
struct Clock<V> {
    map: HashMap<Address, (V, u64, bool)>,
    ring: VecDeque<Address>,
    bytes: u64,
}

impl<V> Clock<V> {
    /// Looks an entry up and marks it referenced.
    fn touch(&mut self, address: &Address) -> Option<&V> {
        let (v, _, referenced) = self.map.get_mut(address)?;
        *referenced = true;
        Some(v)
    }

    /// Adds an entry (replacing any), then evicts until the set holds at most `capacity`
    /// bytes; returns the evicted entries.
    fn insert(&mut self, address: Address, value: V, size: u64, capacity: u64) -> Vec<(Address, V)> {
        if let Some((_, old, _)) = self.map.insert(address, (value, size, false)) {
            self.bytes -= old;
        } else {
            self.ring.push_back(address);
        }
        self.bytes += size;
        let mut evicted = Vec::new();
        while self.bytes > capacity {
            let Some(a) = self.ring.pop_front() else { break };
            match self.map.get_mut(&a) {
                None => {} // removed earlier
                Some((_, _, referenced)) if *referenced && a != address => {
                    *referenced = false;
                    self.ring.push_back(a);
                }
                Some(_) => {
                    let (v, s, _) = self.map.remove(&a).expect("present");
                    self.bytes -= s;
                    evicted.push((a, v));
                }
            }
        }
        evicted
    }

    fn remove(&mut self, address: &Address) -> Option<V> {
        let (v, s, _) = self.map.remove(address)?;
        self.bytes -= s;
        // The ring slot is skipped when the hand reaches it.
        Some(v)
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Hit {
    /// In memory.
    Memory(Bytes),
    /// On disk, read and verified (now also in memory).
    Disk(Bytes),
}

/// Counters of the cache, read by `/metrics`.
#[derive(Debug, Default)]
pub struct CacheCounters {
    /// Entries dropped from memory to make room.
    pub memory_evictions: AtomicU64,
    /// Files deleted from disk to make room.
    pub disk_evictions: AtomicU64,
    /// Disk entries whose bytes did not match their address (deleted, never served).
    pub verification_failures: AtomicU64,
    /// Disk writes that failed (the chunk is still served from memory).
    pub disk_write_errors: AtomicU64,
}

/// The two tiers.
#[derive(Debug)]
pub struct HybridCache {
    memory: Vec<Mutex<Clock<Bytes>>>,
    memory_capacity: u64,
    disk: Mutex<Clock<()>>,
    disk_capacity: u64,
    root: PathBuf,
    /// The counters.
    pub counters: CacheCounters,
}

fn shard_of(address: &Address) -> usize {
    address.as_bytes()[0] as usize % SHARDS
}

impl HybridCache {
    /// Opens the cache under `root` (made if missing), indexing the chunks already on disk.
    /// Blocking: call it from a blocking thread or before serving.
    pub fn open(root: &Path, memory_bytes: u64, disk_bytes: u64) -> std::io::Result<HybridCache> {
        let chunks = root.join("chunks");
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&chunks)?;
        // Temp files are writes a crash interrupted.
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        let cache = HybridCache {
            memory: (0..SHARDS).map(|_| Mutex::default()).collect(),
            memory_capacity: memory_bytes / SHARDS as u64,
            disk: Mutex::default(),
            disk_capacity: disk_bytes,
            root: root.to_owned(),
            counters: CacheCounters::default(),
        };
        let mut found = Vec::new();
        for dir in std::fs::read_dir(&chunks)? {
            let dir = dir?;
            if !dir.file_type()?.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(dir.path())? {
                let file = file?;
                let name = file.file_name();
                match name.to_str().and_then(|n| n.parse::<Address>().ok()) {
                    Some(a) => found.push((a, file.metadata()?.len())),
                    // Not ours: leave it, it is not counted.
                    None => continue,
                }
            }
        }
        let mut disk = cache.disk.lock().expect("disk index");
        for (a, size) in found {
            for (gone, ()) in disk.insert(a, (), size, cache.disk_capacity) {
                let _ = std::fs::remove_file(cache.path_of(&gone));
            }
        }
        drop(disk);
        Ok(cache)
    }

    fn path_of(&self, address: &Address) -> PathBuf {
        let hex = address.to_hex();
        self.root.join("chunks").join(&hex[..2]).join(hex)
    }

    /// A memory hit, if any (no I/O).
    pub fn get_memory(&self, address: &Address) -> Option<Bytes> {
        self.memory[shard_of(address)].lock().expect("memory shard").touch(address).cloned()
    }

    /// Looks in memory, then on disk (verifying what it reads).
    pub async fn get(&self, address: &Address) -> Option<Hit> {
        if let Some(b) = self.get_memory(address) {
            return Some(Hit::Memory(b));
        }
        self.disk.lock().expect("disk index").touch(address)?;
        let path = self.path_of(address);
        let a = *address;
        let read = tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(&path)?;
            Ok::<_, std::io::Error>(a.verify(&bytes).is_ok().then_some(bytes))
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match read {
            Ok(Some(bytes)) => {
                let bytes = Bytes::from(bytes);
                self.put_memory(*address, bytes.clone());
                Some(Hit::Disk(bytes))
            }
            Ok(None) => {
                self.counters.verification_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("edge cache: chunk {address} changed on disk; dropped");
                self.drop_disk(address).await;
                None
            }
            Err(e) => {
                tracing::warn!("edge cache: reading chunk {address}: {e}; dropped");
                self.drop_disk(address).await;
                None
            }
        }
    }

    async fn drop_disk(&self, address: &Address) {
        self.disk.lock().expect("disk index").remove(address);
        let _ = tokio::fs::remove_file(self.path_of(address)).await;
    }

    /// Puts verified bytes in memory.
    pub fn put_memory(&self, address: Address, bytes: Bytes) {
        let size = bytes.len() as u64;
        if size > self.memory_capacity {
            return;
        }
        let evicted = self.memory[shard_of(&address)].lock().expect("memory shard").insert(
            address,
            bytes,
            size,
            self.memory_capacity,
        );
        self.counters.memory_evictions.fetch_add(evicted.len() as u64, Ordering::Relaxed);
    }

    /// Writes verified bytes to disk (temp file, fsync, rename), then indexes them and
    /// evicts what no longer fits. Blocking I/O runs on a blocking thread.
    pub async fn put_disk(&self, address: Address, bytes: Bytes) {
        let size = bytes.len() as u64;
        if size > self.disk_capacity || self.disk.lock().expect("disk index").map.contains_key(&address) {
            return;
        }
        let tmp = self.root.join("tmp").join(format!("{}.{:016x}", address.to_hex(), rand::random::<u64>()));
        let path = self.path_of(&address);
        let written = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_data()?;
            std::fs::create_dir_all(path.parent().expect("two levels"))?;
            std::fs::rename(&tmp, &path).inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = written {
            self.counters.disk_write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("edge cache: writing chunk {address}: {e}");
            return;
        }
        let evicted = self.disk.lock().expect("disk index").insert(address, (), size, self.disk_capacity);
        self.counters.disk_evictions.fetch_add(evicted.len() as u64, Ordering::Relaxed);
        for (gone, ()) in evicted {
            let _ = tokio::fs::remove_file(self.path_of(&gone)).await;
        }
    }

    /// Bytes and entries held: `(memory bytes, disk bytes, disk entries)`.
    pub fn usage(&self) -> (u64, u64, u64) {
        let memory = self.memory.iter().map(|s| s.lock().expect("memory shard").bytes).sum();
        let disk = self.disk.lock().expect("disk index");
        (memory, disk.bytes, disk.map.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(i: u32, len: usize) -> (Address, Bytes) {
        let mut b = vec![0u8; len];
        b[..4].copy_from_slice(&i.to_le_bytes());
        (Address::of(&b), Bytes::from(b))
    }

    #[test]
    fn clock_keeps_what_is_used_and_stays_within_capacity() {
        let mut c: Clock<()> = Clock::default();
        let a = Address::of(b"a");
        let b = Address::of(b"b");
        let d = Address::of(b"d");
        assert!(c.insert(a, (), 40, 100).is_empty());
        assert!(c.insert(b, (), 40, 100).is_empty());
        c.touch(&a);
        // Room for d means one must go: b, since a was used since it came in.
        let gone = c.insert(d, (), 40, 100);
        assert_eq!(gone.iter().map(|(x, _)| *x).collect::<Vec<_>>(), vec![b]);
        assert_eq!(c.bytes, 80);
        assert!(c.map.contains_key(&a) && c.map.contains_key(&d));
    }

    #[tokio::test]
    async fn disk_entries_survive_a_reopen_and_a_changed_file_is_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let (a, bytes) = chunk(1, 5000);
        let (b, other) = chunk(2, 5000);
        {
            let cache = HybridCache::open(dir.path(), 1 << 20, 1 << 20).unwrap();
            cache.put_disk(a, bytes.clone()).await;
            cache.put_disk(b, other.clone()).await;
            assert_eq!(cache.usage().2, 2);
        }
        // A new process: nothing in memory, both on disk.
        let cache = HybridCache::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert_eq!(cache.usage(), (0, 10_000, 2));
        assert!(matches!(cache.get(&a).await, Some(Hit::Disk(x)) if x == bytes));
        assert!(matches!(cache.get(&a).await, Some(Hit::Memory(x)) if x == bytes));
        // Flip one byte of b's file.
        let path = cache.path_of(&b);
        let mut raw = std::fs::read(&path).unwrap();
        raw[100] ^= 1;
        std::fs::write(&path, raw).unwrap();
        assert!(cache.get(&b).await.is_none());
        assert_eq!(cache.counters.verification_failures.load(Ordering::Relaxed), 1);
        assert!(!path.exists());
        assert_eq!(cache.usage().2, 1);
    }

    #[tokio::test]
    async fn both_tiers_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        // 16 shards of 8 KiB in memory, 20 KiB on disk.
        let cache = HybridCache::open(dir.path(), 16 * 8192, 20_000).unwrap();
        for i in 0..40 {
            let (a, bytes) = chunk(i, 4000);
            cache.put_memory(a, bytes.clone());
            cache.put_disk(a, bytes).await;
        }
        let (memory, disk, entries) = cache.usage();
        assert!(memory <= 16 * 8192, "{memory}");
        assert!(disk <= 20_000 && entries == 5, "{disk} {entries}");
        let files = std::fs::read_dir(dir.path().join("chunks"))
            .unwrap()
            .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
            .sum::<usize>();
        assert_eq!(files, 5);
        assert_eq!(cache.counters.disk_evictions.load(Ordering::Relaxed), 35);
    }
}
