//! The write path of the namespace: one version written (or deleted, or restored) in one
//! transaction with its quota check, preconditions, chunk references, change record and
//! pruning; SQLite's group commit of many such writes in one transaction.

use std::collections::BTreeMap;

use tokio::sync::oneshot;

use crate::exec::{Cols, Db, Lite, args, ready};

use crate::model::{
    Bucket, ChunkRef, Committed, NewVersion, Precondition, VERSION_COLUMNS, Version, references, version,
};
use crate::sql::{Backend, now_ms};
use crate::{ChangeKind, Error, PlacementState, ProviderState, Result};

/// Bumps the account's change sequence (taking its row lock on PostgreSQL) and returns the
/// new number.
pub(crate) async fn next_seq(conn: &mut impl Db, account_id: i64) -> Result<i64> {
    conn.fetch_optional(
        "UPDATE accounts SET change_seq = change_seq + 1 WHERE id = $1 RETURNING change_seq",
        args![account_id],
    )
    .await?
    .ok_or(Error::AccountNotFound)?
    .get(0)
}

/// The account's `used_bytes` and quota.
pub(crate) async fn account_usage(conn: &mut impl Db, account_id: i64) -> Result<(u64, Option<u64>)> {
    let row = conn
        .fetch_optional("SELECT used_bytes, quota_bytes FROM accounts WHERE id = $1", args![account_id])
        .await?
        .ok_or(Error::AccountNotFound)?;
    Ok((row.get::<i64>(0)?.max(0) as u64, row.get::<Option<i64>>(1)?.map(|q| q.max(0) as u64)))
}

/// The bytes the account's live quota holds keep, other than `except`'s.
pub(crate) async fn holds_on(conn: &mut impl Db, account_id: i64, except: Option<&str>) -> Result<u64> {
    let held: i64 = conn
        .fetch_one(
            "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM quota_holds \
             WHERE account_id = $1 AND expires_at > $2 AND holder <> $3",
            args![account_id, now_ms(), except.unwrap_or("")],
        )
        .await?
        .get(0)?;
    Ok(held.max(0) as u64)
}

/// Adds `bytes` to the quota hold of `holder` (made if absent, lasting until `expires_at`),
/// refused with [`Error::QuotaExceeded`] when the account's usage and live holds would then
/// pass its quota. Takes the account's row lock first on PostgreSQL, so two uploads of one
/// account cannot both take the last room. The caller's transaction rolls back on a refusal.
pub(crate) async fn hold_on(
    conn: &mut impl Db,
    backend: Backend,
    account_id: i64,
    holder: &str,
    bytes: u64,
    expires_at: i64,
) -> Result<()> {
    if backend == Backend::Postgres {
        conn.execute("SELECT id FROM accounts WHERE id = $1 FOR UPDATE", args![account_id]).await?;
    }
    let (used, quota) = account_usage(conn, account_id).await?;
    if let Some(quota) = quota {
        let held = holds_on(conn, account_id, None).await?;
        if used.saturating_add(held).saturating_add(bytes) > quota {
            return Err(Error::QuotaExceeded { used: used.saturating_add(held), quota, needed: bytes });
        }
    }
    conn.execute(
        "INSERT INTO quota_holds (holder, account_id, bytes, expires_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (holder) DO UPDATE SET \
         bytes = CASE WHEN quota_holds.expires_at > $5 THEN quota_holds.bytes + excluded.bytes \
         ELSE excluded.bytes END, \
         expires_at = CASE WHEN excluded.expires_at > quota_holds.expires_at \
         THEN excluded.expires_at ELSE quota_holds.expires_at END",
        args![holder, account_id, bytes as i64, expires_at, now_ms()],
    )
    .await?;
    Ok(())
}

/// ` FOR UPDATE OF table` on PostgreSQL; nothing on SQLite, whose writers are serialized.
pub(crate) fn for_update_of(backend: Backend, table: &str) -> String {
    match backend {
        Backend::Sqlite => String::new(),
        Backend::Postgres => format!(" FOR UPDATE OF {table}"),
    }
}

/// `LIMIT` with no bound before an `OFFSET`: `-1` on SQLite, `ALL` on PostgreSQL.
pub(crate) fn no_limit(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "LIMIT -1",
        Backend::Postgres => "LIMIT ALL",
    }
}

/// Gives back the sequence number a write took under the account's lock and then had no
/// change to record under.
pub(crate) async fn give_back_seq(conn: &mut impl Db, account_id: i64) -> Result<()> {
    conn.execute("UPDATE accounts SET change_seq = change_seq - 1 WHERE id = $1", args![account_id]).await?;
    Ok(())
}

pub(crate) async fn record_change(
    conn: &mut impl Db,
    account_id: i64,
    seq: i64,
    kind: ChangeKind,
    bucket: &str,
    key: Option<&str>,
    version_id: Option<i64>,
) -> Result<()> {
    conn.execute(
        "INSERT INTO changes (account_id, seq, kind, bucket, key, version_id, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        args![account_id, seq, kind.as_str(), bucket, key, version_id, now_ms()],
    )
    .await?;
    Ok(())
}

/// Removes versions: their chunk references, their bytes from the account's usage, their
/// rows.
pub(crate) async fn drop_versions(conn: &mut impl Db, account_id: i64, ids: &[i64]) -> Result<()> {
    let now = now_ms();
    for &id in ids {
        let row = conn.fetch_one("SELECT charged, manifest FROM versions WHERE id = $1", args![id]).await?;
        let charged: i64 = row.get(0)?;
        let manifest: Option<Vec<u8>> = row.get(1)?;
        if let Some(m) = manifest {
            for (address, count) in references(&m)? {
                conn.execute(
                    "UPDATE chunks SET refcount = refcount - $1, unreferenced_since = \
                     CASE WHEN refcount - $1 = 0 THEN $2 ELSE unreferenced_since END WHERE address = $3",
                    args![count, now, address.to_vec()],
                )
                .await?;
            }
        }
        conn.execute(
            "UPDATE accounts SET used_bytes = used_bytes - $1 WHERE id = $2",
            args![charged, account_id],
        )
        .await?;
        conn.execute("DELETE FROM uploads WHERE version_id = $1", args![id]).await?;
        conn.execute("DELETE FROM versions WHERE id = $1", args![id]).await?;
    }
    Ok(())
}

/// A version write, owned, so that it can wait in a batch.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) bucket: Bucket,
    pub(crate) key: String,
    pub(crate) content: Option<(NewVersion, BTreeMap<[u8; 32], i64>)>,
    pub(crate) precondition: Precondition,
    pub(crate) idempotency_key: Option<String>,
    /// The version whose manifest this one copies (its bucket id, key and id): it must
    /// still exist at the commit.
    pub(crate) source: Option<(i64, String, i64)>,
}

/// A write waiting for the next group commit, with where to send its outcome.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) job: Job,
    pub(crate) reply: oneshot::Sender<Result<Committed>>,
}

/// Commits `batch` in one transaction on the group commit's own connection, on its thread,
/// each write in a savepoint: a write refused for its own reason (quota, precondition) is
/// rolled back alone; a failure of the commit itself fails them all.
pub(crate) fn commit_batch_lite(conn: &mut rusqlite::Connection, batch: Vec<Pending>) {
    let mut outcomes: Vec<Result<Committed>> = Vec::with_capacity(batch.len());
    let result: Result<()> = (|| {
        // FULL: a commit is on disk before it is acknowledged (a lease, on this connection
        // too, runs at NORMAL and sets FULL back, but this does not count on it).
        conn.execute_batch("PRAGMA synchronous = FULL; BEGIN IMMEDIATE")?;
        for p in &batch {
            conn.execute_batch("SAVEPOINT write")?;
            let outcome = ready(write_on(&mut Lite(conn), Backend::Sqlite, &p.job));
            if outcome.is_ok() {
                conn.execute_batch("RELEASE write")?;
            } else {
                conn.execute_batch("ROLLBACK TO write; RELEASE write")?;
            }
            outcomes.push(outcome);
        }
        conn.execute_batch("COMMIT")?;
        Ok(())
    })();
    if result.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    reply(batch, outcomes, result);
}

/// Sends each write of a batch its outcome: its own, unless the batch's transaction failed,
/// which fails every write that had not failed for its own reason.
fn reply(batch: Vec<Pending>, outcomes: Vec<Result<Committed>>, result: Result<()>) {
    let failure = result.err().map(|e| e.to_string());
    let mut outcomes = outcomes.into_iter();
    for p in batch {
        let outcome = match (&failure, outcomes.next()) {
            (None, Some(o)) => o,
            (Some(_), Some(Err(e))) if !matches!(e, Error::Database(_)) => Err(e),
            (Some(f), _) => Err(Error::Batch(f.clone())),
            (None, None) => Err(Error::Batch("no outcome".into())),
        };
        let _ = p.reply.send(outcome);
    }
}

/// One version write inside an open transaction: replays an earlier request with the same
/// idempotency key, checks the bucket, the precondition and the quota, then records the
/// version, its chunk references and placements, the change, and prunes old versions.
pub(crate) async fn write_on(conn: &mut impl Db, backend: Backend, job: &Job) -> Result<Committed> {
    let Job { bucket, key, content, precondition, idempotency_key, source } = job;
    let key = key.as_str();
    let idempotency_key = idempotency_key.as_deref();
    let content = content.as_ref().map(|(n, r)| (n, r));
    let account_id = bucket.account_id;
    let seq = next_seq(conn, account_id).await?;
    let holder = content.as_ref().and_then(|(n, _)| n.lease_holder.as_deref());
    if let Some(idem) = idempotency_key {
        let prior = conn
            .fetch_optional(
                "SELECT bucket_id, key, version_id FROM uploads WHERE account_id = $1 AND idempotency_key = $2",
                args![account_id, idem],
            )
            .await?;
        if let Some(row) = prior {
            let (b, k, v): (i64, String, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
            if b != bucket.id || k != key {
                return Err(Error::IdempotencyConflict);
            }
            // Nothing changes: give back the sequence number taken above (the row is ours).
            give_back_seq(conn, account_id).await?;
            let version = version_on(conn, bucket.id, key, v).await?;
            if version.tombstone != content.is_none() {
                return Err(Error::IdempotencyConflict); // a PUT's key reused by a DELETE, or back
            }
            if let Some((new, _)) = &content
                && version.etag != Some(new.etag)
            {
                return Err(Error::IdempotencyConflict); // the same key for another body
            }
            if let Some(holder) = holder {
                crate::sql::release_on(conn, holder).await?; // nothing more to commit
            }
            return Ok(Committed { version, replayed: true, pruned: vec![] });
        }
    }
    if let (Some(holder), Some((new, _))) = (holder, &content) {
        // A smart upload's session row first (its id starts `up_`; a simple upload's holder
        // never does): its abort locks it too, so the two never both succeed.
        if holder.starts_with("up_") {
            crate::sql::lock_session(conn, backend, holder).await?;
        }
        // A multipart upload's completion consumes the upload (its abort deletes it too).
        if holder.starts_with(crate::sql::MULTIPART_PREFIX) {
            crate::sql::consume_multipart_on(conn, holder).await?;
        }
        // The chunks are referenced once this commits, and their leases go with it; but
        // only if the leases still hold: else a collector may have deleted them.
        let addresses: Vec<[u8; 32]> = new.chunks.iter().map(|c| c.address).collect();
        if !crate::sql::still_leased_on(conn, backend, holder, &addresses).await? {
            return Err(Error::LeaseLost);
        }
        crate::sql::release_on(conn, holder).await?;
    }
    // The bucket as it is now (the caller's record may be a few seconds old, see `recent`):
    // whether it still exists, and how many versions it keeps.
    let keep_versions: i64 = conn
        .fetch_optional("SELECT keep_versions FROM buckets WHERE id = $1", args![bucket.id])
        .await?
        .ok_or(Error::BucketNotFound)?
        .get(0)?;
    let head = conn
        .fetch_optional(
            &format!(
                "SELECT o.id, o.live, v.etag, v.md5, v.md5_parts FROM objects o \
                 LEFT JOIN versions v ON v.id = o.head_version WHERE o.bucket_id = $1 AND o.key = $2{}",
                for_update_of(backend, "o")
            ),
            args![bucket.id, key],
        )
        .await?;
    let (object_id, current) = match &head {
        Some(row) => {
            let live = row.get::<i64>(1)? != 0;
            let etag: Option<Vec<u8>> = row.get(2)?;
            let md5 = crate::model::md5_tag(row.get(3)?, row.get(4)?)?;
            let tags = etag
                .and_then(|e| <[u8; 32]>::try_from(e).ok())
                .filter(|_| live)
                .map(|hash| crate::Tags { hash, md5 });
            (Some(row.get::<i64>(0)?), tags)
        }
        None => (None, None),
    };
    if !precondition.holds(current.as_ref()) {
        return Err(Error::PreconditionFailed);
    }
    if content.is_none() && current.is_none() {
        return Err(Error::ObjectNotFound);
    }
    if let Some((source_bucket, source_key, source)) = source {
        // Under the account's lock (which every prune takes; the source is the account's
        // too): while the source is here, its chunks are referenced, and no collector is
        // deleting them.
        let here = conn
            .fetch_optional(
                "SELECT v.id FROM versions v JOIN objects o ON o.id = v.object_id \
                 WHERE v.id = $1 AND o.bucket_id = $2 AND o.key = $3 AND v.tombstone = 0",
                args![*source, *source_bucket, source_key],
            )
            .await?;
        if here.is_none() {
            return Err(Error::ObjectNotFound);
        }
    }
    let size = content.as_ref().map_or(0, |(n, _)| n.size);
    // The version is charged what it stores: the stored size of its distinct chunks.
    let charged: u64 =
        content.as_ref().map_or(0, |(n, _)| n.chunks.iter().map(|c| u64::from(c.stored_size)).sum());
    if charged > 0 {
        // The upload's own hold (dropped above with its leases) becomes this charge; the
        // holds of other uploads under way keep their room.
        let (used, quota) = account_usage(conn, account_id).await?;
        if let Some(quota) = quota {
            let others = holds_on(conn, account_id, holder).await?;
            if used.saturating_add(others).saturating_add(charged) > quota {
                return Err(Error::QuotaExceeded {
                    used: used.saturating_add(others),
                    quota,
                    needed: charged,
                });
            }
        }
        conn.execute(
            "UPDATE accounts SET used_bytes = used_bytes + $1 WHERE id = $2",
            args![charged as i64, account_id],
        )
        .await?;
    }
    let object_id = match object_id {
        Some(id) => id,
        None => conn
            .fetch_one(
                "INSERT INTO objects (bucket_id, key) VALUES ($1, $2) RETURNING id",
                args![bucket.id, key],
            )
            .await?
            .get(0)?,
    };
    let now = now_ms();
    let row = match &content {
        Some((new, _)) => {
            conn.fetch_one(
                "INSERT INTO versions (object_id, tombstone, size, etag, content_type, manifest, created_at, \
                 charged, md5, md5_parts, attrs) VALUES ($1, 0, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                args![
                    object_id,
                    new.size as i64,
                    new.etag.to_vec(),
                    new.content_type.clone(),
                    new.manifest.clone(),
                    now,
                    charged as i64,
                    new.md5.map(|m| m.digest.to_vec()),
                    new.md5.and_then(|m| m.parts).map(i64::from),
                    new.attrs.clone(),
                ],
            )
            .await?
        }
        None => {
            conn.fetch_one(
                "INSERT INTO versions (object_id, tombstone, size, created_at) VALUES ($1, 1, 0, $2) RETURNING id",
                args![object_id, now],
            )
            .await?
        }
    };
    let version_id: i64 = row.get(0)?;
    conn.execute(
        "UPDATE objects SET head_version = $1, live = $2 WHERE id = $3",
        args![version_id, i64::from(content.is_some()), object_id],
    )
    .await?;
    if let Some((new, refs)) = &content {
        // In address order, so that two transactions never lock chunk rows in opposite orders.
        let mut chunks: Vec<&ChunkRef> = new.chunks.iter().collect();
        chunks.sort_by_key(|c| c.address);
        for c in chunks {
            let count = refs.get(&c.address).copied().unwrap_or(0);
            // `replicas`: the most copies any bucket referencing the chunk asks for.
            conn.execute(
                "INSERT INTO chunks (address, stored_size, refcount, created_at, replicas) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (address) DO UPDATE SET refcount = chunks.refcount + excluded.refcount, \
                 unreferenced_since = NULL, replicas = CASE WHEN excluded.replicas > chunks.replicas \
                 THEN excluded.replicas ELSE chunks.replicas END",
                args![
                    c.address.to_vec(),
                    i64::from(c.stored_size),
                    count,
                    now,
                    i64::from(bucket.policy.replicas)
                ],
            )
            .await?;
            for p in &c.providers {
                // A placement already recorded keeps its state (see `add_placements`).
                conn.execute(
                    "INSERT INTO placements (address, provider, state) VALUES ($1, $2, $3) \
                     ON CONFLICT (address, provider) DO NOTHING",
                    args![c.address.to_vec(), p, PlacementState::Stored.as_str()],
                )
                .await?;
            }
        }
    }
    if let Some((new, _)) = &content
        && source.is_none()
    {
        // The account holds these chunks now: it may skip sending them next time (a restore
        // adds nothing: it learnt nothing of them, and the upload that stored them recorded
        // what it did). One
        // statement per hundred chunks (a small object's commit is a dozen round trips on
        // PostgreSQL; one more per chunk would show).
        for batch in new.chunks.chunks(100) {
            let rows: Vec<String> = (0..batch.len())
                .map(|i| format!("($1, ${}, ${}, ${})", 3 * i + 2, 3 * i + 3, 3 * i + 4))
                .collect();
            let sql = format!(
                "INSERT INTO chunk_owners (account_id, address, plain_len, key_hash) VALUES {} \
                 ON CONFLICT (account_id, address) DO NOTHING",
                rows.join(", ")
            );
            let mut values = args![account_id];
            for c in batch {
                values.extend(args![
                    c.address.to_vec(),
                    c.opened.map(|o| i64::from(o.plain_len)),
                    c.opened.map(|o| o.key_hash.to_vec()),
                ]);
            }
            conn.execute(&sql, values).await?;
        }
        // A copy that landed on a drained provider (a write begun before the drain, committed
        // after it) takes the drain up again, so that it moves too.
        let mut providers: Vec<&String> = new.chunks.iter().flat_map(|c| &c.providers).collect();
        providers.sort();
        providers.dedup();
        for p in providers {
            conn.execute(
                "UPDATE providers SET state = $2 WHERE name = $1 AND state = $3",
                args![p, ProviderState::Draining.as_str(), ProviderState::Drained.as_str()],
            )
            .await?;
        }
    }
    let kind = if content.is_some() { ChangeKind::Put } else { ChangeKind::Delete };
    record_change(conn, account_id, seq, kind, &bucket.name, Some(key), Some(version_id)).await?;
    if let Some(idem) = idempotency_key {
        conn.execute(
            "INSERT INTO uploads (account_id, idempotency_key, bucket_id, key, version_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            args![account_id, idem, bucket.id, key, version_id, now],
        )
        .await?;
    }
    let mut pruned = Vec::new();
    if keep_versions > 0 {
        pruned = conn
            .fetch_all(
                "SELECT id FROM versions WHERE object_id = $1 ORDER BY id DESC LIMIT -1 OFFSET $2"
                    .replace("LIMIT -1", no_limit(backend))
                    .as_str(),
                args![object_id, keep_versions],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect::<Result<_>>()?;
        drop_versions(conn, account_id, &pruned).await?;
    }
    let version = Version {
        id: version_id,
        key: key.to_owned(),
        tombstone: content.is_none(),
        size,
        etag: content.as_ref().map(|(n, _)| n.etag),
        content_type: content.as_ref().and_then(|(n, _)| n.content_type.clone()),
        md5: content.as_ref().and_then(|(n, _)| n.md5),
        attrs: content.as_ref().and_then(|(n, _)| n.attrs.clone()),
        created_at: now,
    };
    Ok(Committed { version, replayed: false, pruned })
}

/// One version of a key, tombstones included.
pub(crate) async fn version_on(conn: &mut impl Db, bucket_id: i64, key: &str, id: i64) -> Result<Version> {
    let row = conn
        .fetch_optional(
            &format!(
                "SELECT {VERSION_COLUMNS} FROM objects o JOIN versions v ON v.object_id = o.id \
                 WHERE o.bucket_id = $1 AND o.key = $2 AND v.id = $3"
            ),
            args![bucket_id, key, id],
        )
        .await?
        .ok_or(Error::ObjectNotFound)?;
    version(&row)
}
