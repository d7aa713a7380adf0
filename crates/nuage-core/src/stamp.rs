//! [`FileStamp`]: what tells, without reading a file, that it has not changed since it was
//! last read (the change detection of `nuage put` and of direct ingest).

/// What identifies one state of a file on disk without reading it: if the size (in the
/// manifest) and all of these are unchanged, the content is taken as unchanged, as restic
/// and git do. Any write changes mtime and ctime; a tool that puts an old mtime back still
/// changes ctime; a copy has another inode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileStamp {
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Status change time, ns since the epoch.
    pub ctime_ns: i64,
    /// Inode number.
    pub inode: u64,
}

impl FileStamp {
    /// The stamp of an open file, or `None` where the platform has no ctime or inode.
    pub fn of(meta: &std::fs::Metadata) -> Option<FileStamp> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
            Some(FileStamp {
                mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
                ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
                inode: meta.ino(),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            None
        }
    }

    /// Whether the stamp says anything (an unknown stamp never matches).
    pub fn is_known(&self) -> bool {
        *self != FileStamp::default()
    }
}
