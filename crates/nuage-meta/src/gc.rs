//! What garbage collection reads and writes: chunk leases, the chunks being deleted, and
//! the candidates for deletion.
//!
//! **The protocol.** A writer leases every chunk it is about to rely on, the ones it writes
//! and the ones it finds already stored, *before* it relies on them ([`Meta::lease_chunks`];
//! a smart upload's declared chunks are its leases, [`Meta::declare_upload_chunks`]), and the
//! commit that references them drops the lease in its own transaction. The collector starts
//! a deletion ([`Meta::start_deletions`]) only for a chunk that no version references since
//! before the grace period, that no live lease or live upload session holds, and records it
//! in `chunk_deletions` before it deletes anything. Leasing and starting deletions exclude
//! each other (SQLite has one writer; on PostgreSQL leases take a shared advisory lock and
//! the collector an exclusive one), so either the lease comes first and the chunk is not
//! deleted, or the deletion comes first and the writer is told: it must wait until the
//! deletion ends ([`Meta::deleting`]) and then write the chunk again rather than trust a copy
//! that is going away. The commit checks, under the same lock, that its leases still exist
//! (the collector drops expired ones before it looks): an upload slower than its lease is
//! refused rather than allowed to reference a chunk that may be gone. One collector works
//! at a time ([`Meta::claim_worker`] on `gc`).

use std::collections::HashMap;

use sqlx::Row;

use crate::exec::{Arg, Cols, Db, Lite, args, ready};
use crate::sql::{
    Backend, PER_STATEMENT, address, deleting_on, gc_lock, marks, now_ms, release_on, select_in,
};
use crate::workers::ChunkPlacements;
use crate::{Meta, PlacementState, Result};

/// How a deletion ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionDone {
    /// The chunk.
    pub address: [u8; 32],
    /// Deleted from every provider: the chunk leaves the index. Otherwise the deletion is
    /// given up for now (a provider did not answer) and only the placements in `deleted_from`
    /// are forgotten; a later pass tries again.
    pub everywhere: bool,
    /// Providers it was deleted from.
    pub deleted_from: Vec<String>,
}

impl Meta {
    /// Leases `addresses` to `holder` until `expires_at` (Unix ms), and returns those of them
    /// being deleted right now: the caller must not write or trust those before
    /// [`Meta::deleting`] stops naming them, and must then lease them again.
    ///
    /// With `hold` (account id, bytes), the same transaction first adds the bytes to the
    /// holder's quota hold (see `quota_holds`), and the whole call is refused with
    /// [`Error::QuotaExceeded`], changing nothing, when they do not fit: how an upload
    /// reserves its room before its bytes reach a provider.
    pub async fn lease_chunks(
        &self,
        holder: &str,
        addresses: &[[u8; 32]],
        expires_at: i64,
        hold: Option<(i64, u64)>,
    ) -> Result<Vec<[u8; 32]>> {
        Ok(self.lease(holder, addresses, expires_at, hold, false).await?.0)
    }

    /// [`Meta::lease_chunks`], which also reads, in the same transaction, the providers the
    /// index records a good copy of each chunk on (addresses it does not know are absent):
    /// a writer about to store chunks it may have already finds them where they are instead
    /// of copying them to the first providers of their ranking (which moves when providers
    /// are added). The lease and the lookup in one call, one round trip to SQLite's writer.
    pub async fn lease_chunks_finding_stored(
        &self,
        holder: &str,
        addresses: &[[u8; 32]],
        expires_at: i64,
        hold: Option<(i64, u64)>,
    ) -> Result<(Vec<[u8; 32]>, StoredOn)> {
        self.lease(holder, addresses, expires_at, hold, true).await
    }

    async fn lease(
        &self,
        holder: &str,
        addresses: &[[u8; 32]],
        expires_at: i64,
        hold: Option<(i64, u64)>,
        find: bool,
    ) -> Result<(Vec<[u8; 32]>, StoredOn)> {
        if addresses.is_empty() {
            return Ok(Default::default());
        }
        let guard = self.write_guard().await;
        // A lease need not survive a power cut: on SQLite its holder is in the same
        // machine and dies with it, and a later commit's fsync covers the lease's WAL frames
        // anyway. So this transaction does not wait for its own fsync (the upload path's
        // only extra write).
        if let Some(writer) = &self.writer {
            let (holder, addresses) = (holder.to_owned(), addresses.to_vec());
            return writer
                .run(move |conn| -> Result<(Vec<[u8; 32]>, StoredOn)> {
                    // The write lock goes with the work: dropped here, even if the caller
                    // stopped waiting, so no pool writer overlaps this transaction.
                    let _w = guard;
                    // (The group commit sets FULL again before each of its transactions.)
                    conn.execute_batch("PRAGMA synchronous = NORMAL")?;
                    let leased = (|| {
                        conn.execute_batch("BEGIN IMMEDIATE")?;
                        let leased = ready(lease_in(
                            &mut Lite(conn),
                            Backend::Sqlite,
                            &holder,
                            &addresses,
                            expires_at,
                            hold,
                            find,
                        ))?;
                        conn.execute_batch("COMMIT")?;
                        Ok(leased)
                    })();
                    if !conn.is_autocommit() {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    let _ = conn.execute_batch("PRAGMA synchronous = FULL");
                    leased
                })
                .await?;
        }
        // PostgreSQL.
        let mut tx = self.pool.begin().await?;
        let leased = lease_in(&mut *tx, self.backend(), holder, addresses, expires_at, hold, find).await?;
        tx.commit().await?;
        Ok(leased)
    }

    /// Of `addresses`, those being deleted now.
    pub async fn deleting(&self, addresses: &[[u8; 32]]) -> Result<Vec<[u8; 32]>> {
        let mut conn = self.pool.acquire().await?;
        deleting_on(&mut conn, addresses).await
    }

    /// Up to `limit` chunks after `after`, in address order, that no version has referenced
    /// since `cutoff` (Unix ms) or earlier, with their placements.
    pub async fn unreferenced_chunks(
        &self,
        after: Option<[u8; 32]>,
        cutoff: i64,
        limit: usize,
    ) -> Result<Vec<ChunkPlacements>> {
        self.chunk_page(
            "AND refcount = 0 AND COALESCE(unreferenced_since, created_at) <= $3",
            Some(cutoff),
            after,
            limit,
        )
        .await
    }

    /// Of `addresses` (found on a provider), those the chunk index does not know.
    pub async fn unindexed(&self, addresses: &[[u8; 32]]) -> Result<Vec<[u8; 32]>> {
        let mut conn = self.pool.acquire().await?;
        let known =
            select_in(&mut conn, "SELECT address FROM chunks WHERE address IN ({in})", None, addresses)
                .await?;
        Ok(addresses.iter().filter(|a| !known.contains(*a)).copied().collect())
    }

    /// Records that `strays` (chunk objects found on `provider`, unknown to the index) were
    /// seen now, and returns those first seen there `grace_ms` ago or earlier: the only strays
    /// old enough to delete.
    pub async fn sight_strays(
        &self,
        provider: &str,
        strays: &[[u8; 32]],
        grace_ms: i64,
    ) -> Result<Vec<[u8; 32]>> {
        if strays.is_empty() {
            return Ok(Vec::new());
        }
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        for batch in strays.chunks(PER_STATEMENT / 2) {
            let rows: Vec<String> = (0..batch.len()).map(|i| format!("($2, ${}, $1, $1)", i + 3)).collect();
            let sql = format!(
                "INSERT INTO stray_sightings (provider, address, first_seen, last_seen) VALUES {} \
                 ON CONFLICT (provider, address) DO UPDATE SET last_seen = excluded.last_seen",
                rows.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(now).bind(provider);
            for a in batch {
                q = q.bind(a.to_vec());
            }
            q.execute(&mut *tx).await?;
        }
        let mut aged = Vec::new();
        for batch in strays.chunks(PER_STATEMENT) {
            let text = format!(
                "SELECT address FROM stray_sightings WHERE first_seen <= $1 AND provider = $2 AND address IN ({})",
                marks(3, batch.len())
            );
            let mut q = sqlx::query(&text).bind(now.saturating_sub(grace_ms.max(0))).bind(provider);
            for a in batch {
                q = q.bind(a.to_vec());
            }
            for row in q.fetch_all(&mut *tx).await? {
                aged.push(address(row.try_get(0)?)?);
            }
        }
        tx.commit().await?;
        aged.sort_unstable();
        Ok(aged)
    }

    /// Forgets the strays of `provider` that no whole listing of it has seen since `before`
    /// (Unix ms): gone from it, or indexed since.
    pub async fn forget_strays_unseen_since(&self, provider: &str, before: i64) -> Result<u64> {
        let _w = self.write_guard().await;
        let done = sqlx::query("DELETE FROM stray_sightings WHERE provider = $1 AND last_seen < $2")
            .bind(provider)
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Starts deleting those of `addresses` that nobody may rely on: not referenced by any
    /// version (and unreferenced since `cutoff`, Unix ms, or earlier) or not in the index at all,
    /// under no live lease, declared by no live upload session, and not being deleted
    /// already. Returns them, in address order. Expired leases are dropped on the way.
    pub async fn start_deletions(&self, addresses: &[[u8; 32]], cutoff: i64) -> Result<Vec<[u8; 32]>> {
        let mut sorted = addresses.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        gc_lock(&mut tx, self.backend(), true).await?;
        let now = now_ms();
        // The writes first (see `lease_chunks`): expired leases and the declarations of
        // expired sessions go, so that any lease row left protects its chunk (the commit
        // relies on that, see `still_leased_on`).
        sqlx::query(crate::sql::DROP_EXPIRED_LEASES).bind(now).execute(&mut *tx).await?;
        sqlx::query(
            "DELETE FROM upload_session_chunks WHERE session_id IN \
             (SELECT id FROM upload_sessions WHERE expires_at <= $1)",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let leased =
            select_in(&mut tx, "SELECT address FROM chunk_leases WHERE address IN ({in})", None, &sorted)
                .await?;
        let declared = select_in(
            &mut tx,
            "SELECT address FROM upload_session_chunks WHERE address IN ({in})",
            None,
            &sorted,
        )
        .await?;
        let busy =
            select_in(&mut tx, "SELECT address FROM chunk_deletions WHERE address IN ({in})", None, &sorted)
                .await?;
        let mut indexed: HashMap<[u8; 32], bool> = HashMap::new();
        for batch in sorted.chunks(PER_STATEMENT) {
            let sql = format!(
                "SELECT address, refcount, COALESCE(unreferenced_since, created_at) FROM chunks \
                 WHERE address IN ({})",
                marks(1, batch.len())
            );
            let mut q = sqlx::query(&sql);
            for a in batch {
                q = q.bind(a.to_vec());
            }
            for row in q.fetch_all(&mut *tx).await? {
                let unused = row.try_get::<i64, _>(1)? == 0 && row.try_get::<i64, _>(2)? <= cutoff;
                indexed.insert(address(row.try_get(0)?)?, unused);
            }
        }
        let doomed: Vec<[u8; 32]> = sorted
            .into_iter()
            .filter(|a| {
                !leased.contains(a)
                    && !declared.contains(a)
                    && !busy.contains(a)
                    && indexed.get(a).copied().unwrap_or(true)
            })
            .collect();
        for a in &doomed {
            sqlx::query("INSERT INTO chunk_deletions (address, started_at) VALUES ($1, $2)")
                .bind(a.to_vec())
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(doomed)
    }

    /// Ends deletions started by [`Meta::start_deletions`], in one transaction.
    pub async fn finish_deletions(&self, done: &[DeletionDone]) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        for d in done {
            let a = d.address.to_vec();
            if d.everywhere {
                // Never referenced meanwhile (nobody may commit a chunk being deleted): the
                // refcount test only guards against a bug turning into a dangling reference.
                sqlx::query(
                    "DELETE FROM placements WHERE address = $1 \
                     AND EXISTS (SELECT 1 FROM chunks WHERE address = $1 AND refcount = 0)",
                )
                .bind(&a)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM chunks WHERE address = $1 AND refcount = 0")
                    .bind(&a)
                    .execute(&mut *tx)
                    .await?;
                // Gone from every provider: no account holds it any more, and one that
                // wants it again sends it again.
                sqlx::query(
                    "DELETE FROM chunk_owners WHERE address = $1 \
                     AND NOT EXISTS (SELECT 1 FROM chunks WHERE address = $1)",
                )
                .bind(&a)
                .execute(&mut *tx)
                .await?;
            } else {
                for p in &d.deleted_from {
                    sqlx::query("DELETE FROM placements WHERE address = $1 AND provider = $2")
                        .bind(&a)
                        .bind(p)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            sqlx::query("DELETE FROM chunk_deletions WHERE address = $1").bind(&a).execute(&mut *tx).await?;
            if d.everywhere {
                sqlx::query("DELETE FROM stray_sightings WHERE address = $1")
                    .bind(&a)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every deletion under way: after a crash, those it interrupted, to finish first.
    pub async fn deletions(&self) -> Result<Vec<[u8; 32]>> {
        sqlx::query("SELECT address FROM chunk_deletions ORDER BY address")
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| address(r.try_get(0)?))
            .collect()
    }

    /// Drops the leases of `holder` (an upload attempt that failed).
    pub async fn release_leases(&self, holder: &str) -> Result<()> {
        let _w = self.write_guard().await;
        let mut conn = self.pool.acquire().await?;
        release_on(&mut conn, holder).await
    }

    /// The chunks leased to `holder`.
    pub async fn leased_by(&self, holder: &str) -> Result<Vec<[u8; 32]>> {
        sqlx::query_scalar::<_, Vec<u8>>("SELECT address FROM chunk_leases WHERE holder = $1")
            .bind(holder)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(address)
            .collect()
    }

    /// Drops expired leases (housekeeping, for when the collector does not run); returns
    /// how many.
    pub async fn drop_expired_leases(&self) -> Result<u64> {
        let _w = self.write_guard().await;
        let now = now_ms();
        let done = sqlx::query(crate::sql::DROP_EXPIRED_LEASES).bind(now).execute(&self.pool).await?;
        sqlx::query("DELETE FROM quota_holds WHERE expires_at <= $1").bind(now).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    /// Smart-upload sessions open (not expired, aborted or committed), the distinct chunks
    /// they declared (which the collector leaves alone while they are open), and the stored
    /// bytes they have sent so far.
    pub async fn open_session_holds(&self) -> Result<(i64, i64, i64)> {
        let row = sqlx::query(
            "SELECT COUNT(DISTINCT s.id), COUNT(DISTINCT c.address), \
             CAST(COALESCE(SUM(CASE WHEN c.sent = 1 THEN c.stored_size ELSE 0 END), 0) AS BIGINT) \
             FROM upload_sessions s LEFT JOIN upload_session_chunks c ON c.session_id = s.id \
             WHERE s.expires_at > $1 AND NOT EXISTS (SELECT 1 FROM uploads u \
             WHERE u.account_id = s.account_id AND u.idempotency_key = 'upload:' || s.id)",
        )
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
    }

    /// Live leases and the chunks they hold (for `nuage admin status` and tests).
    pub async fn lease_count(&self) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT COUNT(DISTINCT holder), COUNT(DISTINCT address) FROM chunk_leases WHERE expires_at > $1",
        )
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }
}

/// Inside a transaction: the leases of [`Meta::lease_chunks`] (and the quota hold), and the
/// addresses among them being deleted.
async fn lease_in(
    conn: &mut impl Db,
    backend: Backend,
    holder: &str,
    addresses: &[[u8; 32]],
    expires_at: i64,
    hold: Option<(i64, u64)>,
    find: bool,
) -> Result<(Vec<[u8; 32]>, StoredOn)> {
    // The account's row before the collector's lock, in the order commits take them.
    if let Some((account_id, bytes)) = hold {
        crate::write::hold_on(conn, backend, account_id, holder, bytes, expires_at).await?;
    }
    gc_lock(conn, backend, false).await?;
    // The write first: on SQLite it takes the write lock, so the read below sees every
    // deletion committed before it.
    for batch in addresses.chunks(PER_STATEMENT / 2) {
        let rows: Vec<String> = (0..batch.len()).map(|i| format!("(${}, $1, $2, $3)", i + 4)).collect();
        let sql = format!(
            "INSERT INTO chunk_leases (address, holder, expires_at, leased_at) VALUES {} \
             ON CONFLICT (address, holder) DO UPDATE SET expires_at = excluded.expires_at",
            rows.join(", ")
        );
        let mut values = args![holder, expires_at, now_ms()];
        values.extend(batch.iter().map(|a| Arg::from(a.to_vec())));
        conn.execute(&sql, values).await?;
    }
    let deleting = deleting_on(conn, addresses).await?;
    let stored = if find { stored_on_in(conn, addresses).await? } else { StoredOn::new() };
    Ok((deleting, stored))
}

/// The providers each of `addresses` is stored on (placements in the `stored` state); a
/// chunk the index does not have is absent.
pub type StoredOn = HashMap<[u8; 32], Vec<String>>;

async fn stored_on_in(conn: &mut impl Db, addresses: &[[u8; 32]]) -> Result<StoredOn> {
    let mut found = StoredOn::new();
    for batch in addresses.chunks(PER_STATEMENT) {
        // By address only: with the state in the WHERE clause, SQLite walks the
        // (state, provider) index, every stored placement, for each upload batch.
        let text = format!(
            "SELECT address, provider, state FROM placements WHERE address IN ({})",
            marks(1, batch.len())
        );
        let values = batch.iter().map(|a| Arg::from(a.to_vec())).collect();
        for row in conn.fetch_all(&text, values).await? {
            if row.get::<String>(2)?.parse::<PlacementState>()? == PlacementState::Stored {
                found.entry(address(row.get(0)?)?).or_default().push(row.get(1)?);
            }
        }
    }
    Ok(found)
}
