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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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

    /// Makes room for `size` bytes within `capacity`, then adds the entry (replacing any);
    /// returns the entries evicted. An entry larger than `capacity` is not added: it comes
    /// back as evicted. The new entry is never the one evicted to make its own room.
    fn insert(&mut self, address: Address, value: V, size: u64, capacity: u64) -> Vec<(Address, V)> {
        if size > capacity {
            return vec![(address, value)];
        }
        if let Some((_, old, _)) = self.map.remove(&address) {
            self.bytes -= old;
        }
        let mut evicted = Vec::new();
        // Ends: each turn drops a stale slot, clears a reference bit, or evicts; with the
        // map empty, bytes is 0 and the entry fits.
        while self.bytes + size > capacity {
            let Some(a) = self.ring.pop_front() else { break };
            match self.map.get_mut(&a) {
                None => {} // a slot whose entry was removed or re-added
                Some((_, _, referenced)) if *referenced => {
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
        self.map.insert(address, (value, size, false));
        self.ring.push_back(address);
        self.bytes += size;
        self.compact();
        evicted
    }

    fn remove(&mut self, address: &Address) -> Option<V> {
        let (v, s, _) = self.map.remove(address)?;
        self.bytes -= s;
        self.compact();
        Some(v)
    }

    /// Drops stale and repeated ring slots once they outnumber the entries, so the ring
    /// stays within twice the map whatever the churn.
    fn compact(&mut self) {
        if self.ring.len() > 2 * self.map.len() + 16 {
            let mut seen = std::collections::HashSet::with_capacity(self.map.len());
            let map = &self.map;
            self.ring.retain(|a| map.contains_key(a) && seen.insert(*a));
        }
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

/// The disk tier. Every change to it (rename into place, delete, index) happens under its
/// index lock, on a blocking thread, so the index and the folder never disagree for long.
#[derive(Debug)]
struct DiskTier {
    index: Mutex<Clock<()>>,
    capacity: u64,
    root: PathBuf,
}

impl DiskTier {
    fn path_of(&self, address: &Address) -> PathBuf {
        let hex = address.to_hex();
        self.root.join("chunks").join(&hex[..2]).join(hex)
    }

    /// Renames the written temp file into place and indexes it; evicts what no longer fits.
    /// Returns how many entries were evicted.
    fn commit(&self, address: Address, tmp: &Path, size: u64) -> std::io::Result<u64> {
        let path = self.path_of(&address);
        let mut index = self.index.lock().expect("disk index");
        std::fs::create_dir_all(path.parent().expect("two levels"))?;
        std::fs::rename(tmp, &path)?;
        let evicted = index.insert(address, (), size, self.capacity);
        for (gone, ()) in &evicted {
            let _ = std::fs::remove_file(self.path_of(gone));
        }
        Ok(evicted.len() as u64)
    }

    /// Forgets an entry and deletes its file.
    fn drop_entry(&self, address: &Address) {
        let mut index = self.index.lock().expect("disk index");
        index.remove(address);
        let _ = std::fs::remove_file(self.path_of(address));
    }
}

/// The two tiers.
#[derive(Debug)]
pub struct HybridCache {
    memory: Vec<Mutex<Clock<Bytes>>>,
    memory_capacity: u64,
    disk: Arc<DiskTier>,
    /// The counters.
    pub counters: Arc<CacheCounters>,
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
        let disk = DiskTier { index: Mutex::default(), capacity: disk_bytes, root: root.to_owned() };
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
        {
            let mut index = disk.index.lock().expect("disk index");
            for (a, size) in found {
                for (gone, ()) in index.insert(a, (), size, disk.capacity) {
                    let _ = std::fs::remove_file(disk.path_of(&gone));
                }
            }
        }
        Ok(HybridCache {
            memory: (0..SHARDS).map(|_| Mutex::default()).collect(),
            memory_capacity: memory_bytes / SHARDS as u64,
            disk: Arc::new(disk),
            counters: Arc::default(),
        })
    }

    /// A memory hit, if any (no I/O).
    pub fn get_memory(&self, address: &Address) -> Option<Bytes> {
        self.memory[shard_of(address)].lock().expect("memory shard").touch(address).cloned()
    }

    /// Whether the disk tier has an entry for `address` (no I/O).
    pub fn on_disk(&self, address: &Address) -> bool {
        self.disk.index.lock().expect("disk index").map.contains_key(address)
    }

    /// Looks in memory, then on disk (verifying what it reads).
    pub async fn get(&self, address: &Address) -> Option<Hit> {
        if let Some(b) = self.get_memory(address) {
            return Some(Hit::Memory(b));
        }
        self.disk.index.lock().expect("disk index").touch(address)?;
        let (disk, a) = (self.disk.clone(), *address);
        let read = tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(disk.path_of(&a))?;
            Ok::<_, std::io::Error>(a.verify(&bytes).is_ok().then_some(bytes))
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match read {
            Ok(Some(bytes)) => {
                let bytes = Bytes::from(bytes);
                self.put_memory(*address, bytes.clone());
                return Some(Hit::Disk(bytes));
            }
            Ok(None) => {
                self.counters.verification_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("edge cache: chunk {address} changed on disk; dropped");
            }
            Err(e) => tracing::warn!("edge cache: reading chunk {address}: {e}; dropped"),
        }
        let (disk, a) = (self.disk.clone(), *address);
        let _ = tokio::task::spawn_blocking(move || disk.drop_entry(&a)).await;
        None
    }

    /// Puts verified bytes in memory; returns whether the memory tier kept them.
    pub fn put_memory(&self, address: Address, bytes: Bytes) -> bool {
        let size = bytes.len() as u64;
        if size > self.memory_capacity {
            return false;
        }
        let evicted = self.memory[shard_of(&address)].lock().expect("memory shard").insert(
            address,
            bytes,
            size,
            self.memory_capacity,
        );
        self.counters.memory_evictions.fetch_add(evicted.len() as u64, Ordering::Relaxed);
        true
    }

    /// Writes verified bytes to disk (temp file, fsync, rename), then indexes them and
    /// evicts what no longer fits, on a blocking thread.
    pub async fn put_disk(&self, address: Address, bytes: Bytes) {
        let size = bytes.len() as u64;
        if size > self.disk.capacity || self.on_disk(&address) {
            return;
        }
        let (disk, counters) = (self.disk.clone(), self.counters.clone());
        let written = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let tmp =
                disk.root.join("tmp").join(format!("{}.{:016x}", address.to_hex(), rand::random::<u64>()));
            let result = (|| {
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&bytes)?;
                f.sync_data()?;
                disk.commit(address, &tmp, size)
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result.map(|evicted| counters.disk_evictions.fetch_add(evicted, Ordering::Relaxed))
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = written {
            self.counters.disk_write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("edge cache: writing chunk {address}: {e}");
        }
    }

    /// Bytes and entries held: `(memory bytes, disk bytes, disk entries)`.
    pub fn usage(&self) -> (u64, u64, u64) {
        let memory = self.memory.iter().map(|s| s.lock().expect("memory shard").bytes).sum();
        let disk = self.disk.index.lock().expect("disk index");
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
        // Everything used since the hand passed: the new entry still stays.
        c.touch(&a);
        c.touch(&d);
        let e = Address::of(b"e");
        let gone = c.insert(e, (), 40, 100);
        assert_eq!(gone.len(), 1);
        assert!(c.map.contains_key(&e), "the entry just added is never the one evicted");
        // Too large to ever fit: refused, handed back.
        assert_eq!(c.insert(Address::of(b"huge"), (), 101, 100).len(), 1);
        assert_eq!(c.bytes, 80);
    }

    #[test]
    fn the_ring_stays_bounded_under_churn() {
        let mut c: Clock<()> = Clock::default();
        let a = Address::of(b"a");
        for _ in 0..10_000 {
            c.insert(a, (), 10, 100);
            c.remove(&a);
        }
        assert!(c.ring.len() <= 16, "{}", c.ring.len());
        assert_eq!((c.map.len(), c.bytes), (0, 0));
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
        let path = cache.disk.path_of(&b);
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
