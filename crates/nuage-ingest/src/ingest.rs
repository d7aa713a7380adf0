//! Files and folders → chunks on providers, and back.
//!
//! Three stages, each bounded so memory stays flat whatever the input: the chunk pipeline of
//! nuage-core ([`Pipeline::run_many`]) over every file of the folder, one thread walking,
//! chunking and hashing each whole file while another compresses, encrypts and addresses
//! the chunks; then the async side, which stores them with up to [`PUTS_IN_FLIGHT`]
//! concurrent puts. A chunk already stored during this run is not sent again.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use nuage_blob::{ChunkStore, StoredChunk};
use nuage_core::pipeline::{Input, Piece, Pipeline, PipelineError};
use nuage_core::{Address, Manifest, chunk};
use tokio::sync::mpsc as async_mpsc;

use crate::{Snapshot, SnapshotFile};
use nuage_core::stamp::FileStamp;

/// Concurrent puts to the store.
pub const PUTS_IN_FLIGHT: usize = 32;
/// Chunks queued between stages.
const QUEUE: usize = 8;

/// Why an ingest or a restore stopped.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The store refused a chunk or could not return one.
    #[error(transparent)]
    Store(#[from] nuage_blob::Error),
    /// A chunk came back but does not open with its manifest's key.
    #[error("chunk {address} of {path}: {source}")]
    Chunk {
        /// The file.
        path: String,
        /// The chunk.
        address: Address,
        /// What failed.
        #[source]
        source: nuage_core::Error,
    },
    /// The restored file does not hash to its manifest's whole-file hash.
    #[error("{path}: restored content does not match its manifest hash")]
    HashMismatch {
        /// The file.
        path: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> IngestError + '_ {
    move |source| IngestError::Io { path: path.to_owned(), source }
}

/// Counters of an ingest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Files read.
    pub files: u64,
    /// Plaintext bytes read.
    pub bytes_read: u64,
    /// Files taken from the parent snapshot without being read (counted in `files` too).
    pub files_unchanged: u64,
    /// Their bytes (not counted in `bytes_read`).
    pub bytes_unchanged: u64,
    /// Chunks cut.
    pub chunks: u64,
    /// Chunks written to at least one provider by this run (the rest were already stored).
    pub chunks_new: u64,
    /// Stored bytes written by this run, summed over replicas.
    pub bytes_written: u64,
}

/// The outcome of [`ingest`].
#[derive(Debug)]
pub struct Ingested {
    /// What was ingested.
    pub snapshot: Snapshot,
    /// Counters.
    pub stats: IngestStats,
    /// Wall time.
    pub elapsed: Duration,
}

/// The regular files under `root` (or `root` itself, when it is a file), sorted by their
/// `/`-joined paths relative to `root` (for a file: its name). Symbolic links and special
/// files are skipped. Shared by `ingest` and the CLI's `put` of a folder.
pub fn walk(root: &Path) -> Result<Vec<(PathBuf, String)>, IngestError> {
    let meta = std::fs::symlink_metadata(root).map_err(io_err(root))?;
    if meta.is_file() {
        let name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return Ok(vec![(root.to_owned(), name)]);
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let kind = entry.file_type().map_err(io_err(&entry.path()))?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                let path = entry.path();
                let rel = path.strip_prefix(root).expect("under root");
                let rel: Vec<_> =
                    rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
                out.push((path, rel.join("/")));
            }
            // Symbolic links and special files are skipped: nuage stores file contents.
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// What comes back from the pipeline with each file: its stamp, and for a file known
/// unchanged (not read) the manifest of the parent snapshot.
struct FileTag {
    stamp: FileStamp,
    unchanged: Option<Manifest>,
}

/// How close to the start of an ingest a file's times may be before they are not trusted:
/// a file written in the same instant it was read could change again without its times
/// moving (the "racy clean" case git describes), so its stamp is recorded as unknown and the
/// next ingest reads it again.
const RACY_NS: i64 = 2_000_000_000;

/// Ingests `root` (a file or a folder) into `store`, calling `progress` now and then.
///
/// With a `parent` snapshot of the same root, a file whose size and [`FileStamp`] are the
/// ones the parent recorded is not read again: its manifest is taken from the parent (whose
/// chunks are in the store already). Without one, every file is read.
pub async fn ingest(
    root: &Path,
    parent: Option<Snapshot>,
    pipeline: &Pipeline,
    store: &ChunkStore,
    progress: impl FnMut(&IngestStats),
) -> Result<Ingested, IngestError> {
    ingest_trusting(root, parent, RACY_NS, pipeline, store, progress).await
}

/// [`ingest`], trusting the times of files last changed more than `racy_ns` before it starts.
async fn ingest_trusting(
    root: &Path,
    parent: Option<Snapshot>,
    racy_ns: i64,
    pipeline: &Pipeline,
    store: &ChunkStore,
    mut progress: impl FnMut(&IngestStats),
) -> Result<Ingested, IngestError> {
    let started = Instant::now();
    let started_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    let files = walk(root)?;
    let names: Vec<String> = files.iter().map(|(_, n)| n.clone()).collect();
    let mut known: HashMap<String, (Manifest, FileStamp)> = parent
        .map(|p| p.files.into_iter().map(|f| (f.path, (f.manifest, f.stamp))).collect())
        .unwrap_or_default();
    let (sealed_tx, mut sealed_rx) = async_mpsc::channel::<Piece<FileTag>>(QUEUE);
    // Runs on the pipeline's chunking thread: opens each file, and passes those whose stamp
    // and size the parent recorded without reading them.
    let inputs = files.into_iter().map(move |(path, name)| -> io::Result<Input<File, FileTag>> {
        let file = File::open(&path)?;
        let meta = file.metadata()?;
        let stamp = FileStamp::of(&meta)
            .filter(|s| s.mtime_ns < started_ns - racy_ns && s.ctime_ns < started_ns - racy_ns)
            .unwrap_or_default();
        if let Some((manifest, before)) = known.remove(&name)
            && stamp.is_known()
            && stamp == before
            && manifest.size == meta.len()
        {
            return Ok(Input::Pass(FileTag { stamp, unchanged: Some(manifest) }));
        }
        Ok(Input::Read { reader: file, tag: FileTag { stamp, unchanged: None } })
    });
    let pipeline = pipeline.clone();
    let cutting = std::thread::spawn(move || {
        // A refused piece means the async side stopped on an error of its own.
        pipeline.run_many(inputs, |piece| sealed_tx.blocking_send(piece).map_err(|_| ()))
    });

    let mut stats = IngestStats::default();
    let mut seen: HashSet<Address> = HashSet::new();
    let mut snapshot = Snapshot {
        root: std::path::absolute(root).unwrap_or_default().to_string_lossy().into_owned(),
        files: Vec::new(),
    };
    let mut puts = FuturesUnordered::new();
    let mut last_progress = Instant::now();
    let result: Result<(), IngestError> = async {
        while let Some(msg) = sealed_rx.recv().await {
            match msg {
                Piece::Chunk(sealed) => {
                    stats.chunks += 1;
                    stats.bytes_read += u64::from(sealed.plain_len);
                    if seen.insert(sealed.address) {
                        let chunk = StoredChunk::from(sealed);
                        puts.push(async move { store.put(&chunk).await });
                        while puts.len() >= PUTS_IN_FLIGHT {
                            let report = puts.next().await.expect("non-empty")?;
                            count(&mut stats, &report);
                        }
                    }
                }
                Piece::End { manifest, tag } => {
                    let path = names[snapshot.files.len()].clone();
                    snapshot.files.push(SnapshotFile { path, manifest, stamp: tag.stamp });
                    stats.files += 1;
                }
                Piece::Passed(FileTag { stamp, unchanged }) => {
                    let manifest = unchanged.expect("only files known unchanged are passed");
                    let path = names[snapshot.files.len()].clone();
                    stats.files += 1;
                    stats.files_unchanged += 1;
                    stats.bytes_unchanged += manifest.size;
                    snapshot.files.push(SnapshotFile { path, manifest, stamp });
                }
            }
            if last_progress.elapsed() > Duration::from_millis(100) {
                progress(&stats);
                last_progress = Instant::now();
            }
        }
        while let Some(report) = puts.next().await {
            count(&mut stats, &report?);
        }
        // The snapshot the caller will save references these chunks: make them durable
        // first (one batched sync on a local folder).
        store.sync().await?;
        Ok(())
    }
    .await;
    drop(sealed_rx); // unblocks the pipeline's threads, if we stopped early
    let cut = cutting.join().expect("pipeline thread panicked");
    result?;
    match cut {
        Ok(()) | Err(PipelineError::Sink(_)) => {}
        Err(PipelineError::Read { input, source }) => {
            // A file's own name is relative to its parent; a folder's files are under it.
            let path = if root.is_dir() { root.join(&names[input]) } else { root.to_path_buf() };
            return Err(io_err(&path)(source));
        }
        Err(PipelineError::Config(e)) => return Err(io_err(root)(io::Error::other(e))),
    }
    progress(&stats);
    Ok(Ingested { snapshot, stats, elapsed: started.elapsed() })
}

fn count(stats: &mut IngestStats, report: &nuage_blob::PutReport) {
    if report.written > 0 {
        stats.chunks_new += 1;
    }
    stats.bytes_written += report.bytes_written;
}

/// Writes every file of `snapshot` under `dest`, fetching and verifying each chunk and each
/// whole file. Returns the bytes written.
pub async fn restore(snapshot: &Snapshot, store: &ChunkStore, dest: &Path) -> Result<u64, IngestError> {
    use std::io::Write;
    let mut total = 0;
    for f in &snapshot.files {
        let path = dest.join(&f.path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let mut out = io::BufWriter::new(File::create(&path).map_err(io_err(&path))?);
        let mut hasher = blake3::Hasher::new();
        // Fetch a few chunks ahead while writing in order.
        let mut fetches = futures::stream::iter(&f.manifest.entries)
            .map(|e| async move { store.get(&e.address, &[]).await.map(|r| (e, r)) })
            .buffered(8);
        while let Some(fetched) = fetches.next().await {
            let (e, read) = fetched?;
            let plain = chunk::open(&read.bytes, &e.key, e.plain_len)
                .map_err(|source| IngestError::Chunk { path: f.path.clone(), address: e.address, source })?;
            hasher.update(&plain);
            out.write_all(&plain).map_err(io_err(&path))?;
        }
        out.flush().map_err(io_err(&path))?;
        if *hasher.finalize().as_bytes() != f.manifest.hash {
            return Err(IngestError::HashMismatch { path: f.path.clone() });
        }
        total += f.manifest.size;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nuage_blob::{Placement, Provider, ProviderConfig, ProviderKind};
    use nuage_core::ConvergenceSecret;

    /// A store over one local folder (kept alive by the returned guard).
    async fn folder_store() -> (tempfile::TempDir, ChunkStore) {
        let data = tempfile::tempdir().unwrap();
        let config = ProviderConfig::new("local", ProviderKind::Fs { root: data.path().into() });
        let provider = Provider::open(config).await.unwrap();
        (data, ChunkStore::new(vec![provider], Placement::replicas(1)).unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_folder_round_trips_and_a_second_ingest_stores_nothing_new() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("a/b")).unwrap();
        std::fs::write(
            src.path().join("a/b/big.bin"),
            (0..3_000_000u32).map(|i| (i * 7 / 13) as u8).collect::<Vec<_>>(),
        )
        .unwrap();
        std::fs::write(src.path().join("a/empty"), b"").unwrap();
        std::fs::write(src.path().join("top.txt"), b"hello").unwrap();
        std::fs::write(src.path().join("copy.txt"), b"hello").unwrap();
        let (_data, store) = folder_store().await;
        let pipeline = Pipeline::new(ConvergenceSecret::from_bytes([3; 32]));

        let first = ingest(src.path(), None, &pipeline, &store, |_| {}).await.unwrap();
        let paths: Vec<_> = first.snapshot.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a/b/big.bin", "a/empty", "copy.txt", "top.txt"]);
        assert_eq!(first.stats.files, 4);
        assert_eq!(first.stats.bytes_read, 3_000_010);
        assert_eq!(first.stats.chunks_new + 1, first.stats.chunks, "the second hello is deduplicated");

        let again = ingest(src.path(), None, &pipeline, &store, |_| {}).await.unwrap();
        assert_eq!((again.stats.chunks_new, again.stats.bytes_written), (0, 0));

        let out = tempfile::tempdir().unwrap();
        let snap = Snapshot::decode(&first.snapshot.encode()).unwrap();
        assert_eq!(restore(&snap, &store, out.path()).await.unwrap(), 3_000_010);
        for p in ["a/b/big.bin", "a/empty", "top.txt", "copy.txt"] {
            assert_eq!(
                std::fs::read(src.path().join(p)).unwrap(),
                std::fs::read(out.path().join(p)).unwrap(),
                "{p}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_a_parent_only_changed_files_are_read() {
        let src = tempfile::tempdir().unwrap();
        for i in 0..20 {
            std::fs::write(src.path().join(format!("f{i:02}")), format!("file number {i}").repeat(500))
                .unwrap();
        }
        let (_data, store) = folder_store().await;
        let pipeline = Pipeline::new(ConvergenceSecret::from_bytes([4; 32]));
        let run = |parent| ingest_trusting(src.path(), parent, 0, &pipeline, &store, |_| {});

        let first = run(None).await.unwrap();
        assert_eq!(first.stats.files_unchanged, 0);
        assert!(first.snapshot.files.iter().all(|f| f.stamp.is_known()));
        // Same size, other bytes: only the stamp can tell.
        let changed = src.path().join("f07");
        let new_content = "FILE NUMBER 7".repeat(500);
        std::fs::write(&changed, &new_content).unwrap();
        let second = run(Some(first.snapshot.clone())).await.unwrap();
        assert_eq!((second.stats.files, second.stats.files_unchanged), (20, 19));
        assert_eq!(second.stats.bytes_read, new_content.len() as u64);
        assert_ne!(second.snapshot.files[7].manifest, first.snapshot.files[7].manifest);
        for i in (0..20).filter(|&i| i != 7) {
            assert_eq!(second.snapshot.files[i], first.snapshot.files[i]);
        }
        let out = tempfile::tempdir().unwrap();
        restore(&second.snapshot, &store, out.path()).await.unwrap();
        assert_eq!(std::fs::read_to_string(out.path().join("f07")).unwrap(), new_content);

        // With the default window, files changed a moment ago are always read again.
        let third = ingest(src.path(), Some(second.snapshot), &pipeline, &store, |_| {}).await.unwrap();
        assert_eq!(third.stats.files_unchanged, 0);
        assert!(third.snapshot.files.iter().all(|f| !f.stamp.is_known()));
    }
}
