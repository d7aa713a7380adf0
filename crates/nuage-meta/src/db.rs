//! Opening the database (SQLite or PostgreSQL, one code path through sqlx's `Any` driver)
//! and applying the schema migrations.

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::exec::Writer;
use crate::model::{AccessKey, Bucket};
use crate::recent::{FRESH_FOR, Recent};
use crate::sql::{Backend, now_ms};
use crate::write::Pending;
use crate::{Error, Result};

/// Schema migrations, in order. Each backend has its own SQL text for the same schema;
/// version `n` is the `n`-th entry.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        include_str!("../migrations/sqlite/0001_init.sql"),
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        include_str!("../migrations/sqlite/0002_grants_and_upload_sessions.sql"),
        include_str!("../migrations/postgres/0002_grants_and_upload_sessions.sql"),
    ),
    (
        include_str!("../migrations/sqlite/0003_shares_and_e2e.sql"),
        include_str!("../migrations/postgres/0003_shares_and_e2e.sql"),
    ),
    (
        include_str!("../migrations/sqlite/0004_workers.sql"),
        include_str!("../migrations/postgres/0004_workers.sql"),
    ),
    (include_str!("../migrations/sqlite/0005_gc.sql"), include_str!("../migrations/postgres/0005_gc.sql")),
    (
        include_str!("../migrations/sqlite/0006_provider_settings.sql"),
        include_str!("../migrations/postgres/0006_provider_settings.sql"),
    ),
    (
        include_str!("../migrations/sqlite/0007_quota_and_chunk_owners.sql"),
        include_str!("../migrations/postgres/0007_quota_and_chunk_owners.sql"),
    ),
    (
        include_str!("../migrations/sqlite/0008_worker_paces.sql"),
        include_str!("../migrations/postgres/0008_worker_paces.sql"),
    ),
    (
        include_str!("../migrations/sqlite/0009_access_keys.sql"),
        include_str!("../migrations/postgres/0009_access_keys.sql"),
    ),
    (
        include_str!("../migrations/sqlite/0010_object_attributes.sql"),
        include_str!("../migrations/postgres/0010_object_attributes.sql"),
    ),
    (
        include_str!("../migrations/sqlite/0011_multipart_uploads.sql"),
        include_str!("../migrations/postgres/0011_multipart_uploads.sql"),
    ),
    (
        include_str!("../migrations/sqlite/0012_bucket_configs.sql"),
        include_str!("../migrations/postgres/0012_bucket_configs.sql"),
    ),
];

/// The metadata store: a connection pool and what differs between the two backends.
#[derive(Debug)]
pub struct Meta {
    pub(crate) pool: AnyPool,
    backend: Backend,
    /// SQLite has one writer at a time; taking this lock before a write transaction
    /// turns what would be `SQLITE_BUSY` on a read-to-write upgrade into a short wait.
    /// PostgreSQL writers rely on row locks instead.
    pub(crate) write_lock: Option<Arc<Mutex<()>>>,
    /// Version writes waiting to be committed together (SQLite's group commit; see
    /// `write::commit_batch_lite`).
    pub(crate) pending: Arc<std::sync::Mutex<Vec<Pending>>>,
    /// SQLite's group commit and leases run on a connection of their own, on its own thread
    /// (see `exec`); none on PostgreSQL.
    pub(crate) writer: Option<Writer>,
    /// Buckets by account and name, read in the last [`crate::FRESH_FOR`] (see `recent`).
    pub(crate) recent_buckets: Recent<(i64, String), Bucket>,
    /// Access keys by id, likewise.
    pub(crate) recent_keys: Recent<String, AccessKey>,
    /// Convergence secrets by account, which never change.
    pub(crate) secrets: Recent<i64, [u8; 32]>,
    /// Quotas by account, read in the last [`crate::FRESH_FOR`].
    pub(crate) recent_quotas: Recent<i64, Option<u64>>,
}

impl Meta {
    /// Opens `url` (`sqlite:PATH` or `postgres://…`), creating a SQLite file if needed,
    /// and brings the schema up to date.
    pub async fn open(url: &str) -> Result<Meta> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(Error::from(sqlx::Error::Configuration(
                format!("unsupported database URL {url:?}: use sqlite:PATH or postgres://…").into(),
            )));
        };
        let pool = match backend {
            Backend::Sqlite => {
                let url = if url.contains('?') { url.to_owned() } else { format!("{url}?mode=rwc") };
                AnyPoolOptions::new()
                    .max_connections(8)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // FULL: a commit is on disk (WAL fsynced) before it is acknowledged.
                            // The busy timeout first: switching to WAL takes a lock too, and
                            // another process (the server, under `nuage admin`) may hold it.
                            conn.execute(
                                "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                                 PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Backend::Postgres => AnyPoolOptions::new().max_connections(16).connect(url).await?,
        };
        let mut meta = Meta {
            pool,
            backend,
            write_lock: (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(()))),
            pending: Arc::default(),
            writer: None,
            recent_buckets: Recent::new(Some(FRESH_FOR)),
            recent_keys: Recent::new(Some(FRESH_FOR)),
            secrets: Recent::new(None),
            recent_quotas: Recent::new(Some(FRESH_FOR)),
        };
        meta.migrate().await?;
        // After the migration: the writer's connection then finds the file in WAL mode.
        if backend == Backend::Sqlite {
            let path = crate::exec::sqlite_file(url).ok_or_else(|| {
                Error::from(sqlx::Error::Configuration(
                    format!("{url:?}: an in-memory SQLite database cannot be shared by the group commit's connection; give a file").into(),
                ))
            })?;
            meta.writer = Some(Writer::open(path)?);
        }
        Ok(meta)
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The schema version in the database.
    pub async fn schema_version(&self) -> Result<i64> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM nuage_schema").fetch_one(&self.pool).await?;
        Ok(v.unwrap_or(0))
    }

    async fn migrate(&self) -> Result<()> {
        self.pool
            .execute("CREATE TABLE IF NOT EXISTS nuage_schema (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
            .await?;
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            // Two servers starting at once against one database: one migrates, one waits.
            sqlx::query("LOCK TABLE nuage_schema IN EXCLUSIVE MODE").execute(&mut *tx).await?;
        }
        let current: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM nuage_schema").fetch_one(&mut *tx).await?;
        let current = current.unwrap_or(0);
        let known = MIGRATIONS.len() as i64;
        if current > known {
            return Err(Error::SchemaTooNew { found: current, known });
        }
        for (i, (sqlite, postgres)) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let sql = match self.backend {
                Backend::Sqlite => sqlite,
                Backend::Postgres => postgres,
            };
            tx.execute(*sql).await?;
            sqlx::query("INSERT INTO nuage_schema (version, applied_at) VALUES ($1, $2)")
                .bind(i as i64 + 1)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            tracing::info!(version = i + 1, "applied schema migration");
        }
        tx.commit().await?;
        Ok(())
    }

    /// Held for the length of a write transaction (SQLite only; `None` on PostgreSQL).
    pub(crate) async fn write_guard(&self) -> Option<OwnedMutexGuard<()>> {
        match &self.write_lock {
            Some(m) => Some(m.clone().lock_owned().await),
            None => None,
        }
    }
}
