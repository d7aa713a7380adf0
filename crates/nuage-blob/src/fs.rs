//! Chunk writes to a local folder, made durable in batches, and chunk reads.
//!
//! OpenDAL's fs service `fsync`s every file it writes. For chunk storage that is one disk
//! flush per chunk: on this project's machines it cost a third of a large upload and most of
//! an ingest of many small files (see docs/benchmarks.md). Writes to an fs provider
//! therefore go through this module instead (listing and deletes stay on OpenDAL). So do
//! whole-chunk reads: OpenDAL's fs reader zeroes a buffer before each read, 9 % of the
//! server's time under 4 KiB GETs (issue 19), where `std::fs::read` sizes its buffer by the
//! file and fills it once.
//!
//! 1. the chunk is written to a fresh file named `.<address>.<pid>.<n>.tmp` in the folder
//!    that will hold it. Temporary files live beside their chunk rather than in one shared
//!    folder: 100k creations and renames through one directory serialized on its lock and
//!    made ext4 search an ever larger directory;
//! 2. the file is renamed to the chunk's object key, so a name never shows a partial write
//!    while the system runs;
//! 3. nothing is durable yet: [`FsWriter::sync`] makes every write completed before it
//!    durable with one `syncfs` of the provider's filesystem (data, inodes and directory
//!    entries). Concurrent callers share one `syncfs`. So that a long upload does not leave
//!    all its bytes to the final sync, the put that brings the unsynced bytes past
//!    [`WRITEBACK_BATCH`] syncs on its own. (Starting writeback file by file with
//!    `sync_file_range` was tried: in a VM each call is an I/O submission with its own
//!    doorbell, and an ingest of 100k chunks spent more time in the kernel than in nuage.)
//!
//! The rule that keeps this safe: **no metadata may reference a chunk until a sync that
//! started after the chunk's put returned has completed.** The server and the ingest call
//! [`crate::ChunkStore::sync`] right before they commit a version or a snapshot.
//!
//! After a power loss, a chunk written but never synced may be missing or shorter than it
//! should be (ext4 and XFS never expose a file size beyond the data they wrote back). Nothing
//! references such a file, but a later put of the same address must not take it for the
//! chunk: an existing file counts as present only when its size is the chunk's size, else it
//! is rewritten. Reads verify every chunk against its address in any case.
//!
//! A temporary file whose process stopped before its rename stays behind; its name is not an
//! address, so listings skip it, and garbage collection removes it.
//!
//! On systems other than Linux, each write is `fsync`ed before its rename and `sync` has
//! nothing left to do.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use nuage_core::Address;

use crate::PutOutcome;

/// Unsynced bytes after which a put syncs: large enough for the disk to see long writes,
/// small enough that the sync before a commit waits for little.
pub(crate) const WRITEBACK_BATCH: u64 = 64 << 20;

/// The write side of one fs provider.
#[derive(Debug)]
pub(crate) struct FsWriter {
    root: PathBuf,
    /// Puts completed (written or found present), in order.
    completed: AtomicU64,
    /// The value of `completed` when the last successful sync started: every put counted
    /// up to it is durable.
    durable: AtomicU64,
    /// Bytes written since the last sync started.
    unsynced_bytes: AtomicU64,
    /// `syncfs` calls made (for metrics and tests).
    syncs: AtomicU64,
    /// Numbers temporary files (with the process id, unique among the processes that share
    /// the folder).
    temp_names: AtomicU64,
    /// One sync at a time; callers that queue behind it usually find their puts covered.
    sync_lock: tokio::sync::Mutex<()>,
}

impl FsWriter {
    /// The writer for the provider rooted at `root` (an absolute path that exists).
    pub(crate) fn new(root: &Path) -> Self {
        FsWriter {
            root: root.to_owned(),
            completed: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            unsynced_bytes: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            temp_names: AtomicU64::new(0),
            sync_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Stores `bytes` under `address` unless a file of the same size is there already.
    /// Durable only after a later [`FsWriter::sync`].
    pub(crate) async fn put(&self, address: &Address, bytes: Bytes) -> io::Result<PutOutcome> {
        self.write(address, bytes, false).await
    }

    /// Like [`FsWriter::put`], but writes even over a file of the right size (repair of a
    /// damaged copy): the new file takes the old one's name in one rename, so a crash
    /// leaves one or the other, never neither.
    pub(crate) async fn replace(&self, address: &Address, bytes: Bytes) -> io::Result<PutOutcome> {
        self.write(address, bytes, true).await
    }

    async fn write(&self, address: &Address, bytes: Bytes, replace: bool) -> io::Result<PutOutcome> {
        let path = self.root.join(address.object_key());
        let n = self.temp_names.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_file_name(format!(".{address}.{}.{n}.tmp", std::process::id()));
        let len = bytes.len() as u64;
        let outcome = tokio::task::spawn_blocking(move || write_chunk(&path, &tmp, &bytes, replace))
            .await
            .map_err(io::Error::other)??;
        // Counted after the file is in place, found present included: a sync that starts
        // after this line covers the bytes, whoever wrote them.
        self.completed.fetch_add(1, Ordering::AcqRel);
        if outcome == PutOutcome::Written {
            let unsynced = self.unsynced_bytes.fetch_add(len, Ordering::AcqRel) + len;
            if unsynced >= WRITEBACK_BATCH && unsynced - len < WRITEBACK_BATCH {
                // This put crossed the mark: it pays for one sync, the others go on.
                self.sync().await?;
            }
        }
        Ok(outcome)
    }

    /// Makes every put that returned before this call durable.
    pub(crate) async fn sync(&self) -> io::Result<()> {
        let target = self.completed.load(Ordering::Acquire);
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let _turn = self.sync_lock.lock().await;
        // The sync that held the lock may have started after our puts returned.
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let covers = self.completed.load(Ordering::Acquire);
        self.unsynced_bytes.store(0, Ordering::Release);
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || sync_filesystem(&root)).await.map_err(io::Error::other)??;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.durable.fetch_max(covers, Ordering::AcqRel);
        Ok(())
    }

    /// The bytes of the chunk file of `address`, `None` when there is none.
    pub(crate) async fn read(&self, address: &Address) -> io::Result<Option<Bytes>> {
        let path = self.root.join(address.object_key());
        tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Filesystem syncs made so far.
    /// Removes temporary files older than `age`: those of writes a crash cut short (a write
    /// renames its file within moments, and OpenDAL's own writes keep theirs in `.tmp/`).
    /// Returns how many it removed.
    pub(crate) async fn sweep_temporary(&self, age: std::time::Duration) -> io::Result<u64> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut removed = 0;
            let mut folders = vec![root.join(".tmp")];
            match std::fs::read_dir(root.join(Address::OBJECT_PREFIX)) {
                Ok(fans) => folders.extend(fans.filter_map(|f| f.ok()).map(|f| f.path())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            for folder in folders {
                let entries = match std::fs::read_dir(&folder) {
                    Ok(e) => e,
                    Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                for e in entries.filter_map(|e| e.ok()) {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let temporary =
                        folder.ends_with(".tmp") || (name.starts_with('.') && name.ends_with(".tmp"));
                    let old = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
                    if temporary && old.is_some_and(|o| o >= age) && e.file_type().is_ok_and(|t| t.is_file())
                    {
                        std::fs::remove_file(e.path())?;
                        removed += 1;
                    }
                }
            }
            Ok(removed)
        })
        .await
        .map_err(io::Error::other)?
    }

    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

fn write_chunk(path: &Path, tmp: &Path, bytes: &[u8], replace: bool) -> io::Result<PutOutcome> {
    match std::fs::metadata(path) {
        Ok(_) if replace => {}
        Ok(m) if m.len() == bytes.len() as u64 => return Ok(PutOutcome::AlreadyPresent),
        Ok(m) => tracing::warn!(
            path = %path.display(),
            found = m.len(),
            expected = bytes.len(),
            "a chunk file has the wrong size (left by a crash before its sync?); rewriting it"
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let result = (|| {
        let mut file = match File::create_new(tmp) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // The chunk's folder does not exist yet.
                std::fs::create_dir_all(tmp.parent().expect("a chunk key has a folder"))?;
                File::create_new(tmp)?
            }
            r => r?,
        };
        file.write_all(bytes)?;
        durable_on_its_own(&file)?;
        drop(file);
        std::fs::rename(tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(tmp);
        return Err(e);
    }
    Ok(PutOutcome::Written)
}

#[cfg(target_os = "linux")]
fn durable_on_its_own(_file: &File) -> io::Result<()> {
    Ok(()) // the batched syncfs covers it
}

#[cfg(target_os = "linux")]
fn sync_filesystem(root: &Path) -> io::Result<()> {
    Ok(rustix::fs::syncfs(File::open(root)?)?)
}

#[cfg(not(target_os = "linux"))]
fn durable_on_its_own(file: &File) -> io::Result<()> {
    // No batched sync here: each chunk is made durable before its rename.
    file.sync_all()
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem(_root: &Path) -> io::Result<()> {
    // Chunks were fsynced one by one. Their directory entries are not flushed here: nuage's
    // durability guarantees are stated for Linux (docs/durability.md).
    Ok(())
}
