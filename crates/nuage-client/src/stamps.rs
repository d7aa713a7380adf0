//! What `nuage put` remembers of the files it uploaded, so that the next put of the same
//! folder need not read unchanged files again (as `nuage ingest` does with its parent
//! snapshot, and restic with its parent).
//!
//! One file per (server, bucket, local root, key prefix), in the cache folder: for each key,
//! the size and [`FileStamp`] of the local file when it was uploaded, and the `ETag` of the
//! version that upload made. A file is unchanged when its size and stamp are those recorded
//! and the key's current version still has the recorded `ETag` (nobody else wrote it since).
//! Losing the file costs one full read, nothing else.
//!
//! Format: a first line `nuage-put-stamps 1`, then one line per key, `size mtime_ns
//! ctime_ns inode etag key` (a key has no control character, so it ends the line).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use nuage_core::stamp::FileStamp;

const HEADER: &str = "nuage-put-stamps 1";

/// How close to the start of a put a file's times may be before they are not trusted (the
/// racy case: a file written in the instant it was read may change again without its times
/// moving).
pub const RACY_NS: i64 = 2_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    size: u64,
    stamp: FileStamp,
    etag: String,
}

/// The stamps of one put target.
#[derive(Debug)]
pub struct PutStamps {
    path: PathBuf,
    entries: HashMap<String, Entry>,
    started_ns: i64,
}

/// Now, in ns since the epoch.
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl PutStamps {
    /// The stamps of a put of `root` to `server`'s `bucket` under `prefix`, kept in `dir`;
    /// empty when there are none yet (or they cannot be read).
    pub fn load(dir: &Path, server: &str, bucket: &str, root: &Path, prefix: &str) -> PutStamps {
        let mut id = blake3::Hasher::new_derive_key("nuage put stamps v1");
        for part in
            [server.as_bytes(), bucket.as_bytes(), root.as_os_str().as_encoded_bytes(), prefix.as_bytes()]
        {
            id.update(&(part.len() as u64).to_le_bytes());
            id.update(part);
        }
        let path = dir.join(format!("{}.stamps", &id.finalize().to_hex()[..32]));
        let entries = std::fs::read_to_string(&path).ok().map(|t| parse(&t)).unwrap_or_default();
        PutStamps { path, entries, started_ns: now_ns() }
    }

    /// Where they are kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keys recorded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the local file (its metadata `meta`) is the one recorded for `key`, and the
    /// key's current version (`current_etag`, from a listing) the one that upload made.
    pub fn unchanged(&self, key: &str, meta: &std::fs::Metadata, current_etag: Option<&str>) -> bool {
        let (Some(e), Some(stamp), Some(current)) =
            (self.entries.get(key), FileStamp::of(meta), current_etag)
        else {
            return false;
        };
        e.stamp.is_known() && e.size == meta.len() && e.stamp == stamp && e.etag == current
    }

    /// Records that the file whose metadata was `meta` before it was read is now the version
    /// with `etag`. A file changed within [`RACY_NS`] of the start of the put is forgotten
    /// instead, so that the next put reads it again.
    pub fn record(&mut self, key: &str, meta: &std::fs::Metadata, etag: &str) {
        let trusted = FileStamp::of(meta)
            .filter(|s| s.mtime_ns < self.started_ns - RACY_NS && s.ctime_ns < self.started_ns - RACY_NS);
        match trusted {
            Some(stamp) => {
                self.entries.insert(key.to_owned(), Entry { size: meta.len(), stamp, etag: etag.to_owned() });
            }
            None => {
                self.entries.remove(key);
            }
        }
    }

    /// Writes them (a temporary file renamed into place).
    pub fn save(&self) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("stamps.tmp");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        writeln!(out, "{HEADER}")?;
        let mut keys: Vec<&String> = self.entries.keys().collect();
        keys.sort();
        for k in keys {
            let e = &self.entries[k];
            writeln!(
                out,
                "{} {} {} {} {} {k}",
                e.size, e.stamp.mtime_ns, e.stamp.ctime_ns, e.stamp.inode, e.etag
            )?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}

fn parse(text: &str) -> HashMap<String, Entry> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return HashMap::new();
    }
    let mut out = HashMap::new();
    for line in lines {
        let mut f = line.splitn(6, ' ');
        let parsed = (|| {
            let size = f.next()?.parse().ok()?;
            let mtime_ns = f.next()?.parse().ok()?;
            let ctime_ns = f.next()?.parse().ok()?;
            let inode = f.next()?.parse().ok()?;
            let etag = f.next()?.to_owned();
            let key = f.next()?.to_owned();
            Some((key, Entry { size, stamp: FileStamp { mtime_ns, ctime_ns, inode }, etag }))
        })();
        if let Some((k, e)) = parsed {
            out.insert(k, e);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_detect_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a b.txt");
        std::fs::write(&file, b"hello").unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        let mut s = PutStamps::load(dir.path(), "http://x", "b", dir.path(), "p");
        // Pretend the put started later than the racy window after the file's last change.
        s.started_ns = now_ns() + 2 * RACY_NS;
        s.record("p/a b.txt", &meta, "e1");
        s.save().unwrap();
        let again = PutStamps::load(dir.path(), "http://x", "b", dir.path(), "p");
        assert_eq!(again.len(), 1);
        assert!(again.unchanged("p/a b.txt", &meta, Some("e1")));
        assert!(!again.unchanged("p/a b.txt", &meta, Some("e2")), "someone else wrote the key");
        assert!(!again.unchanged("p/a b.txt", &meta, None), "the key is gone");
        assert!(!again.unchanged("p/other", &meta, Some("e1")));
        // Another target has its own stamps.
        assert!(PutStamps::load(dir.path(), "http://x", "c", dir.path(), "p").is_empty());
        // A rewrite changes the stamp even at the same size.
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, b"world").unwrap();
        assert!(!again.unchanged("p/a b.txt", &std::fs::metadata(&file).unwrap(), Some("e1")));
        // A file changed within the racy window is not recorded.
        let mut racy = PutStamps::load(dir.path(), "http://x", "b", dir.path(), "p");
        racy.record("p/a b.txt", &std::fs::metadata(&file).unwrap(), "e3");
        assert!(racy.is_empty(), "the recorded entry was dropped, not trusted");
        // Damaged files read as empty.
        std::fs::write(again.path(), "garbage").unwrap();
        assert!(PutStamps::load(dir.path(), "http://x", "b", dir.path(), "p").is_empty());
    }
}
