//! Buckets, objects, versions and the chunk index, changed together in one transaction.
//!
//! Every write of an account starts by bumping the account's change sequence, which takes
//! the account row's lock on PostgreSQL (SQLite serializes writers anyway). Quota checks,
//! preconditions, idempotency and the bucket's existence are then decided under that lock,
//! so two concurrent writes of one account can never both pass a check only one should.
//! The price is one writer at a time per account; other accounts are not held up.

use std::collections::BTreeMap;

use sqlx::Row;
use tokio::sync::oneshot;

use crate::model::{
    BUCKET_COLUMNS, Bucket, BucketPolicy, Change, ChunkInfo, ChunkRef, Committed, ListEntry, Listing,
    NewVersion, Precondition, VERSION_COLUMNS, Version, after_all_with_prefix, bucket, references, version,
};
use crate::sql::{Backend, array32, is_unique_violation, now_ms};
use crate::write::{
    Job, Pending, commit_batch_lite, drop_versions, next_seq, record_change, version_on, write_on,
};
use crate::{ChangeKind, Error, Meta, PlacementState, Result};

impl Meta {
    /// Creates a bucket.
    pub async fn create_bucket(&self, account_id: i64, name: &str, policy: BucketPolicy) -> Result<Bucket> {
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let seq = next_seq(&mut tx, account_id).await?;
        let row = sqlx::query(&format!(
            "INSERT INTO buckets (account_id, name, replicas, write_quorum, keep_versions, created_at, e2e_key_id, direct_upload) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {BUCKET_COLUMNS}"
        ))
        .bind(account_id)
        .bind(name)
        .bind(i64::from(policy.replicas))
        .bind(i64::from(policy.write_quorum))
        .bind(i64::from(policy.keep_versions))
        .bind(now_ms())
        .bind(policy.e2e_key_id.map(|k| k.to_vec()))
        .bind(i64::from(policy.direct_upload))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| if is_unique_violation(&e) { Error::BucketExists(name.to_owned()) } else { e.into() })?;
        let b = bucket(&row)?;
        record_change(&mut tx, account_id, seq, ChangeKind::BucketCreate, name, None, None).await?;
        tx.commit().await?;
        Ok(b)
    }

    /// The account's bucket of this name.
    pub async fn bucket(&self, account_id: i64, name: &str) -> Result<Bucket> {
        let key = (account_id, name.to_owned());
        let generation = match self.recent_buckets.get(&key) {
            Ok(bucket) => return Ok(bucket),
            Err(generation) => generation,
        };
        let row =
            sqlx::query(&format!("SELECT {BUCKET_COLUMNS} FROM buckets WHERE account_id = $1 AND name = $2"))
                .bind(account_id)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?
                .ok_or(Error::BucketNotFound)?;
        let found = bucket(&row)?;
        self.recent_buckets.keep(generation, key, found.clone());
        Ok(found)
    }

    /// The bucket with this id.
    pub async fn bucket_by_id(&self, id: i64) -> Result<Bucket> {
        let row = sqlx::query(&format!("SELECT {BUCKET_COLUMNS} FROM buckets WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::BucketNotFound)?;
        bucket(&row)
    }

    /// The account's buckets, by name.
    pub async fn buckets(&self, account_id: i64) -> Result<Vec<Bucket>> {
        let rows =
            sqlx::query(&format!("SELECT {BUCKET_COLUMNS} FROM buckets WHERE account_id = $1 ORDER BY name"))
                .bind(account_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(bucket).collect()
    }

    /// Deletes a bucket that has no live object. Old versions and tombstones left in it
    /// go with it (their chunks lose those references, their bytes leave the quota).
    pub async fn delete_bucket(&self, account_id: i64, name: &str) -> Result<()> {
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let seq = next_seq(&mut tx, account_id).await?;
        let id: i64 = sqlx::query_scalar("SELECT id FROM buckets WHERE account_id = $1 AND name = $2")
            .bind(account_id)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(Error::BucketNotFound)?;
        let live: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM objects WHERE bucket_id = $1 AND live = 1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        if live > 0 {
            return Err(Error::BucketNotEmpty);
        }
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT v.id FROM versions v JOIN objects o ON o.id = v.object_id WHERE o.bucket_id = $1",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        drop_versions(&mut tx, account_id, &ids).await?;
        sqlx::query("DELETE FROM objects WHERE bucket_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM uploads WHERE bucket_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM shares WHERE bucket_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM bucket_configs WHERE bucket_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM buckets WHERE id = $1").bind(id).execute(&mut *tx).await?;
        record_change(&mut tx, account_id, seq, ChangeKind::BucketDelete, name, None, None).await?;
        tx.commit().await?;
        self.recent_buckets.forget(|(a, n)| *a == account_id && n == name);
        Ok(())
    }

    /// The live head version of a key.
    pub async fn head(&self, bucket: &Bucket, key: &str) -> Result<Version> {
        let row = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM objects o JOIN versions v ON v.id = o.head_version \
             WHERE o.bucket_id = $1 AND o.key = $2 AND o.live = 1"
        ))
        .bind(bucket.id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(Error::ObjectNotFound)?;
        version(&row)
    }

    /// One version of a key, tombstones included.
    pub async fn version(&self, bucket: &Bucket, key: &str, id: i64) -> Result<Version> {
        version_on(&mut *self.pool.acquire().await?, bucket.id, key, id).await
    }

    /// Every kept version of a key, newest first.
    pub async fn versions(&self, bucket: &Bucket, key: &str) -> Result<Vec<Version>> {
        let rows = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM objects o JOIN versions v ON v.object_id = o.id \
             WHERE o.bucket_id = $1 AND o.key = $2 ORDER BY v.id DESC"
        ))
        .bind(bucket.id)
        .bind(key)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version).collect()
    }

    /// The encoded manifest of a (non-tombstone) version.
    pub async fn manifest(&self, version_id: i64) -> Result<Vec<u8>> {
        let m: Option<Vec<u8>> = sqlx::query_scalar("SELECT manifest FROM versions WHERE id = $1")
            .bind(version_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::ObjectNotFound)?;
        m.ok_or(Error::ObjectNotFound)
    }

    /// What an earlier write with this idempotency key made: (bucket id, key, version id).
    pub async fn idempotent_write(
        &self,
        account_id: i64,
        idempotency_key: &str,
    ) -> Result<Option<(i64, String, i64)>> {
        let row = sqlx::query(
            "SELECT bucket_id, key, version_id FROM uploads WHERE account_id = $1 AND idempotency_key = $2",
        )
        .bind(account_id)
        .bind(idempotency_key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).transpose()
    }

    /// Commits a new version of `key`: under the account's lock, replays an earlier request
    /// with the same idempotency key, checks the precondition and the quota, then records
    /// the version, its chunk references and placements, the change, and prunes old
    /// versions, all in one transaction.
    pub async fn put_version(
        &self,
        bucket: &Bucket,
        key: &str,
        new: &NewVersion,
        precondition: &Precondition,
        idempotency_key: Option<&str>,
    ) -> Result<Committed> {
        let refs = references(&new.manifest)?;
        let placed: std::collections::HashSet<&[u8; 32]> = new.chunks.iter().map(|c| &c.address).collect();
        for address in refs.keys() {
            if !placed.contains(address) {
                return Err(Error::Corrupt("manifest names a chunk with no placement".into()));
            }
        }
        self.write(bucket, key, Some((new, refs)), precondition, idempotency_key).await
    }

    /// Makes the version `source` of `key` (a live version, or an old one behind a tombstone)
    /// its current version again: a new version with the same manifest, charged as a new
    /// upload of the same chunks would be, with no byte read or moved. The source must still
    /// exist when the write commits (checked in its transaction, so a prune or a collector
    /// racing the restore cannot leave the new version without its chunks).
    pub async fn restore_version(
        &self,
        bucket: &Bucket,
        key: &str,
        source: i64,
        precondition: &Precondition,
        idempotency_key: Option<&str>,
    ) -> Result<Committed> {
        // The current version already: nothing to make (a second copy would only push the
        // oldest kept version out).
        if let Ok(head) = self.head(bucket, key).await
            && head.id == source
            && precondition.holds(head.tags().as_ref())
        {
            return Ok(Committed { version: head, replayed: true, pruned: vec![] });
        }
        self.copy_version(bucket, key, source, bucket, key, None, precondition, idempotency_key).await
    }

    /// Writes version `source` of `from`'s `from_key` as a new version of `to`'s `to_key`
    /// (the same account's buckets): the same manifest, no byte read or moved, charged as a
    /// new upload of the same chunks would be; its content type and attributes are the
    /// source's, or `replace`'s. The source must still exist when the write commits
    /// (checked in its transaction, as for a restore).
    #[allow(clippy::too_many_arguments)]
    pub async fn copy_version(
        &self,
        from: &Bucket,
        from_key: &str,
        source: i64,
        to: &Bucket,
        to_key: &str,
        replace: Option<(Option<String>, Option<String>)>,
        precondition: &Precondition,
        idempotency_key: Option<&str>,
    ) -> Result<Committed> {
        if from.account_id != to.account_id {
            return Err(Error::BucketNotFound);
        }
        let old = self.version(from, from_key, source).await?;
        let Some(etag) = old.etag.filter(|_| !old.tombstone) else { return Err(Error::ObjectNotFound) };
        let manifest = self.manifest(old.id).await?;
        let refs = references(&manifest)?;
        let addresses: Vec<[u8; 32]> = refs.keys().copied().collect();
        // The chunks as the index has them (their placements stay as they are: none is
        // recorded again, so a copy a drain removed meanwhile never comes back).
        let mut chunks = Vec::with_capacity(addresses.len());
        for batch in addresses.chunks(500) {
            let marks: Vec<String> = (1..=batch.len()).map(|i| format!("${i}")).collect();
            let sql =
                format!("SELECT address, stored_size FROM chunks WHERE address IN ({})", marks.join(", "));
            let mut query = sqlx::query(&sql);
            for a in batch {
                query = query.bind(a.to_vec());
            }
            let rows = query.fetch_all(&self.pool).await?;
            if rows.len() != batch.len() {
                return Err(Error::Corrupt(format!("version {source} names a chunk the index lacks")));
            }
            for row in rows {
                chunks.push(ChunkRef {
                    address: array32(row.try_get(0)?, "chunk address")?,
                    stored_size: row.try_get::<i64, _>(1)? as u32,
                    providers: Vec::new(),
                    opened: None,
                });
            }
        }
        let (content_type, attrs) = replace.unwrap_or((old.content_type, old.attrs));
        let new = NewVersion {
            size: old.size,
            etag,
            content_type,
            md5: old.md5,
            attrs,
            manifest,
            chunks,
            lease_holder: None,
        };
        self.write_job(Job {
            bucket: to.clone(),
            key: to_key.to_owned(),
            content: Some((new, refs)),
            precondition: precondition.clone(),
            idempotency_key: idempotency_key.map(str::to_owned),
            source: Some((from.id, from_key.to_owned(), source)),
        })
        .await
    }

    /// Deletes `key` by adding a tombstone version; the key must have a live version.
    pub async fn delete_object(
        &self,
        bucket: &Bucket,
        key: &str,
        precondition: &Precondition,
        idempotency_key: Option<&str>,
    ) -> Result<Committed> {
        self.write(bucket, key, None, precondition, idempotency_key).await
    }

    async fn write(
        &self,
        bucket: &Bucket,
        key: &str,
        content: Option<(&NewVersion, BTreeMap<[u8; 32], i64>)>,
        precondition: &Precondition,
        idempotency_key: Option<&str>,
    ) -> Result<Committed> {
        self.write_job(Job {
            bucket: bucket.clone(),
            key: key.to_owned(),
            content: content.map(|(n, r)| (n.clone(), r)),
            precondition: precondition.clone(),
            idempotency_key: idempotency_key.map(str::to_owned),
            source: None,
        })
        .await
    }

    async fn write_job(&self, job: Job) -> Result<Committed> {
        if self.backend() == Backend::Postgres {
            // Concurrent transactions, serialized per account by the account row's lock.
            let mut tx = self.pool.begin().await?;
            let committed = write_on(&mut *tx, Backend::Postgres, &job).await?;
            tx.commit().await?;
            return Ok(committed);
        }
        // SQLite has one writer and one fsync per commit: a write joins the queue, and a
        // task of its own takes the write lock and commits whatever is queued by then in one
        // transaction, each write in a savepoint of its own (group commit). Every queued
        // write has such a task started after it joined, so none waits for a later caller,
        // and a caller that goes away cannot leave its write (or others') behind.
        let (reply, done) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(Pending { job, reply });
        let pending = self.pending.clone();
        let lock = self.write_lock.clone().expect("SQLite has a write lock");
        let writer = self.writer.clone().expect("SQLite has a writer");
        tokio::spawn(async move {
            let _guard = lock.lock_owned().await;
            let batch = std::mem::take(&mut *pending.lock().unwrap_or_else(|e| e.into_inner()));
            if !batch.is_empty() {
                // The lock is held until the batch is committed: the pool's writers wait.
                let _ = writer.run(move |conn| commit_batch_lite(conn, batch)).await;
            }
        });
        done.await.unwrap_or_else(|_| Err(Error::Batch("the commit task stopped".into())))
    }

    /// Lists the live objects of a bucket whose keys start with `prefix`, from `start`
    /// (inclusive), grouping keys that contain `delimiter` after the prefix.
    pub async fn list_objects(
        &self,
        bucket: &Bucket,
        prefix: &str,
        delimiter: Option<&str>,
        start: Option<&str>,
        limit: usize,
    ) -> Result<Listing> {
        let limit = limit.clamp(1, 1000);
        let mut entries = Vec::new();
        let mut cursor: String = match start {
            Some(s) if s > prefix => s.to_owned(),
            _ => prefix.to_owned(),
        };
        let mut inclusive = true;
        'pages: loop {
            let op = if inclusive { ">=" } else { ">" };
            let rows = sqlx::query(&format!(
                "SELECT {VERSION_COLUMNS} FROM objects o JOIN versions v ON v.id = o.head_version \
                 WHERE o.bucket_id = $1 AND o.live = 1 AND o.key {op} $2 ORDER BY o.key LIMIT $3"
            ))
            .bind(bucket.id)
            .bind(&cursor)
            .bind((limit + 1) as i64)
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                return Ok(Listing { entries, next: None });
            }
            for row in &rows {
                let v = version(row)?;
                if !v.key.starts_with(prefix) {
                    return Ok(Listing { entries, next: None });
                }
                let group = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
                    v.key[prefix.len()..].find(d).map(|at| v.key[..prefix.len() + at + d.len()].to_owned())
                });
                if entries.len() == limit {
                    let next = group.unwrap_or(v.key);
                    return Ok(Listing { entries, next: Some(next) });
                }
                match group {
                    Some(p) => {
                        match after_all_with_prefix(&p) {
                            Some(after) => {
                                cursor = after;
                                inclusive = true;
                            }
                            None => {
                                cursor = v.key.clone();
                                inclusive = false;
                            }
                        }
                        if entries.last() != Some(&ListEntry::Prefix(p.clone())) {
                            entries.push(ListEntry::Prefix(p));
                        }
                        continue 'pages;
                    }
                    None => {
                        cursor = v.key.clone();
                        inclusive = false;
                        entries.push(ListEntry::Object(v));
                    }
                }
            }
        }
    }

    /// The account's changes after sequence number `after`, oldest first.
    pub async fn changes(&self, account_id: i64, after: i64, limit: usize) -> Result<Vec<Change>> {
        let rows = sqlx::query(
            "SELECT seq, kind, bucket, key, version_id, at FROM changes \
             WHERE account_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(account_id)
        .bind(after)
        .bind(limit.clamp(1, 10_000) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Change {
                    seq: r.try_get(0)?,
                    kind: r.try_get::<String, _>(1)?.parse()?,
                    bucket: r.try_get(2)?,
                    key: r.try_get(3)?,
                    version_id: r.try_get(4)?,
                    at: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Records that `providers` now hold a chunk of the index (a replica made after the
    /// commit that referenced it). A chunk no longer in the index is left alone, and so is a
    /// placement already recorded: a write that found an object there may not have replaced
    /// a damaged one, so only scrub and repair change a placement's state.
    pub async fn add_placements(&self, address: &[u8; 32], providers: &[String]) -> Result<()> {
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        for p in providers {
            sqlx::query(
                "INSERT INTO placements (address, provider, state) SELECT $1, $2, $3 \
                 WHERE EXISTS (SELECT 1 FROM chunks WHERE address = $1) \
                 ON CONFLICT (address, provider) DO NOTHING",
            )
            .bind(address.to_vec())
            .bind(p)
            .bind(PlacementState::Stored.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A chunk of the index, with its placements.
    pub async fn chunk(&self, address: &[u8; 32]) -> Result<Option<ChunkInfo>> {
        let Some(row) = sqlx::query("SELECT stored_size, refcount, replicas FROM chunks WHERE address = $1")
            .bind(address.to_vec())
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let placements =
            sqlx::query("SELECT provider, state FROM placements WHERE address = $1 ORDER BY provider")
                .bind(address.to_vec())
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get::<String, _>(1)?.parse()?)))
                .collect::<Result<_>>()?;
        Ok(Some(ChunkInfo {
            stored_size: row.try_get::<i64, _>(0)? as u32,
            refcount: row.try_get(1)?,
            replicas: row.try_get::<i64, _>(2)?.max(1) as u32,
            placements,
        }))
    }

    /// Sum of the reference counts of every chunk, and how many chunks have none: what
    /// the tests compare with the manifests of the kept versions.
    pub async fn chunk_totals(&self) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(refcount), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN refcount = 0 THEN 1 ELSE 0 END), 0) AS BIGINT) FROM chunks",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }
}
