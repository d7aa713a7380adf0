//! Errors of the metadata store: one variant per outcome a caller acts on.

/// What went wrong in the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An account with this name exists.
    #[error("account {0} already exists")]
    AccountExists(String),
    /// The provider registry has a provider of this name.
    #[error("a provider named {0} exists already")]
    ProviderExists(String),
    /// An access key of this id exists (or existed).
    #[error("an access key of this id exists")]
    AccessKeyExists,
    /// No such account.
    #[error("no such account")]
    AccountNotFound,
    /// The account owns a bucket of this name already.
    #[error("bucket {0} already exists")]
    BucketExists(String),
    /// No such bucket for this account (another account's bucket is also "not found").
    #[error("no such bucket")]
    BucketNotFound,
    /// The bucket still has live objects.
    #[error("bucket is not empty")]
    BucketNotEmpty,
    /// No live object (or no such version) under this key.
    #[error("no such object")]
    ObjectNotFound,
    /// No upload session with that id for this account.
    #[error("no such upload")]
    UploadNotFound,
    /// No multipart upload with that id for this bucket and key (or it expired, completed
    /// or was aborted).
    #[error("no such multipart upload")]
    MultipartNotFound,
    /// An upload declared more chunks, or more stored bytes, than one upload may.
    #[error("upload too large: {0}")]
    UploadTooLarge(String),
    /// Aborting an upload session that has committed.
    #[error("the upload was committed")]
    UploadCommitted,
    /// A chunk sent to an upload session that did not declare it (at that size).
    #[error("the upload did not declare this chunk")]
    ChunkNotDeclared,
    /// No share link with that token or id (for this account).
    #[error("no such share link")]
    ShareNotFound,
    /// The write would take the account past its quota.
    #[error("quota exceeded: {used} of {quota} bytes used, {needed} more needed")]
    QuotaExceeded {
        /// Bytes used now.
        used: u64,
        /// The quota.
        quota: u64,
        /// Bytes the write needs.
        needed: u64,
    },
    /// An `If-Match` / `If-None-Match` condition does not hold.
    #[error("precondition failed")]
    PreconditionFailed,
    /// The idempotency key was used before for another bucket or key.
    #[error("idempotency key already used for another request")]
    IdempotencyConflict,
    /// A stored manifest does not decode: the database is damaged.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    /// The schema in the database is newer than this program.
    #[error("database schema {found} is newer than this nuage (knows {known})")]
    SchemaTooNew {
        /// Version found.
        found: i64,
        /// Latest version this program knows.
        known: i64,
    },
    /// The upload's chunk leases ran out before its commit (it took longer than a lease
    /// lasts): the collector may have deleted its chunks, so nothing was committed.
    #[error("the upload's chunk leases expired before its commit")]
    LeaseLost,
    /// The transaction this write was committed with (SQLite's group commit) failed; the
    /// write was not made.
    #[error("the grouped commit failed: {0}")]
    Batch(String),
    /// The database failed or could not be reached.
    #[error("database: {0}")]
    Database(DbError),
}

/// A failure of the database itself, as its driver reported it: opaque, so that the
/// callers of nuage-meta neither name nor match the driver's errors ([`Error::is_temporary`]
/// says what they need to know).
#[derive(Debug)]
pub struct DbError(Driver);

/// Which driver reported it: sqlx, or the group commit's own SQLite connection.
#[derive(Debug)]
enum Driver {
    Sqlx(sqlx::Error),
    Lite(rusqlite::Error),
}

impl DbError {
    pub(crate) fn lite(e: rusqlite::Error) -> DbError {
        DbError(Driver::Lite(e))
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Driver::Sqlx(e) => e.fmt(f),
            Driver::Lite(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            Driver::Sqlx(e) => e.source(),
            Driver::Lite(e) => e.source(),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Error {
        Error::Database(DbError(Driver::Sqlx(e)))
    }
}

impl Error {
    /// Whether retrying the same call later may succeed (a lost connection, a busy
    /// database, a serialization conflict between transactions).
    pub fn is_temporary(&self) -> bool {
        let Error::Database(DbError(driver)) = self else { return false };
        match driver {
            Driver::Sqlx(sqlx::Error::Database(e)) => {
                // SQLITE_BUSY / SQLITE_LOCKED, PostgreSQL serialization failure and deadlock.
                matches!(e.code().as_deref(), Some("5" | "6" | "40001" | "40P01"))
            }
            Driver::Sqlx(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed) => true,
            Driver::Lite(rusqlite::Error::SqliteFailure(e, _)) => {
                matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            }
            _ => false,
        }
    }
}

/// Result of the metadata store.
pub type Result<T, E = Error> = std::result::Result<T, E>;
