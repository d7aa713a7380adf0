//! What the background workers (scrub, repair) read and write: their persisted state, the
//! chunk index page by page with each chunk's placements, and placement states.
//!
//! A placement's `state` is `stored` (written, or verified by the last scrub), `corrupt`
//! (the provider's bytes do not hash to the address) or `missing` (the provider does not
//! have it); `verified_at` is when a scrub last read it whole and found it good.

use sqlx::Row;

use crate::{Meta, PlacementState, ProviderState, Result, now_ms};

/// A worker's persisted state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerState {
    /// `scrub`, `repair`.
    pub name: String,
    /// The last chunk address done in the current pass; `None` between passes.
    pub cursor: Option<[u8; 32]>,
    /// Passes completed.
    pub passes: i64,
    /// When the current (or last) pass started, Unix ms.
    pub pass_started_at: Option<i64>,
    /// When the last complete pass ended, Unix ms.
    pub last_pass_at: Option<i64>,
    /// Chunks done in the current pass.
    pub chunks: i64,
    /// Stored bytes read in the current pass.
    pub bytes: i64,
    /// Problems found (scrub) or fixed (repair) in the current pass.
    pub found: i64,
    /// The same, for the last complete pass.
    pub last_pass_found: Option<i64>,
    /// Last save, Unix ms.
    pub updated_at: i64,
}

/// A chunk of the index with its placements: `(provider, state)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkPlacements {
    /// Address.
    pub address: [u8; 32],
    /// Stored size.
    pub stored_size: u32,
    /// Copies it should have.
    pub replicas: u32,
    /// Versions referencing it.
    pub refcount: i64,
    /// Where it is, and in what state.
    pub placements: Vec<(String, PlacementState)>,
}

fn address(bytes: Vec<u8>) -> Result<[u8; 32]> {
    bytes.try_into().map_err(|_| crate::Error::Corrupt("a chunk address that is not 32 bytes".into()))
}

impl Meta {
    /// The state of worker `name` (all zero if it never ran).
    pub async fn worker_state(&self, name: &str) -> Result<WorkerState> {
        Ok(self
            .worker_states()
            .await?
            .into_iter()
            .find(|w| w.name == name)
            .unwrap_or(WorkerState { name: name.to_owned(), ..WorkerState::default() }))
    }

    /// Every worker's state, by name.
    pub async fn worker_states(&self) -> Result<Vec<WorkerState>> {
        let rows = sqlx::query(
            "SELECT name, cursor, passes, pass_started_at, last_pass_at, chunks, bytes, found, \
             last_pass_found, updated_at FROM workers ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(WorkerState {
                    name: r.try_get(0)?,
                    cursor: r.try_get::<Option<Vec<u8>>, _>(1)?.map(address).transpose()?,
                    passes: r.try_get(2)?,
                    pass_started_at: r.try_get(3)?,
                    last_pass_at: r.try_get(4)?,
                    chunks: r.try_get(5)?,
                    bytes: r.try_get(6)?,
                    found: r.try_get(7)?,
                    last_pass_found: r.try_get(8)?,
                    updated_at: r.try_get(9)?,
                })
            })
            .collect()
    }

    /// The paces set at run time, by worker name: `(name, rate)`. A worker not listed runs
    /// at its configured pace.
    pub async fn worker_paces(&self) -> Result<Vec<(String, u64)>> {
        let rows =
            sqlx::query("SELECT name, rate FROM worker_paces ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let rate: i64 = r.try_get(1)?;
                let rate =
                    u64::try_from(rate).map_err(|_| crate::Error::Corrupt("a negative pace".into()))?;
                Ok((r.try_get(0)?, rate))
            })
            .collect()
    }

    /// Sets worker `name`'s pace for every server of the deployment (`None`: back to the
    /// configured one).
    pub async fn set_worker_pace(&self, name: &str, rate: Option<u64>) -> Result<()> {
        let _w = self.write_guard().await;
        match rate {
            Some(rate) => {
                // Beyond 2^63 per second is unpaced in all but name.
                let rate = i64::try_from(rate).unwrap_or(i64::MAX);
                sqlx::query(
                    "INSERT INTO worker_paces (name, rate, set_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET rate = excluded.rate, set_at = excluded.set_at",
                )
                .bind(name)
                .bind(rate)
                .bind(now_ms())
                .execute(&self.pool)
                .await?
            }
            None => {
                sqlx::query("DELETE FROM worker_paces WHERE name = $1").bind(name).execute(&self.pool).await?
            }
        };
        Ok(())
    }

    /// Saves a worker's state (its `updated_at` becomes now).
    pub async fn save_worker_state(&self, w: &WorkerState) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query(
            "INSERT INTO workers (name, cursor, passes, pass_started_at, last_pass_at, chunks, bytes, found, \
             last_pass_found, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor, passes = excluded.passes, \
             pass_started_at = excluded.pass_started_at, last_pass_at = excluded.last_pass_at, \
             chunks = excluded.chunks, bytes = excluded.bytes, found = excluded.found, \
             last_pass_found = excluded.last_pass_found, updated_at = excluded.updated_at",
        )
        .bind(&w.name)
        .bind(w.cursor.map(|c| c.to_vec()))
        .bind(w.passes)
        .bind(w.pass_started_at)
        .bind(w.last_pass_at)
        .bind(w.chunks)
        .bind(w.bytes)
        .bind(w.found)
        .bind(w.last_pass_found)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Up to `limit` chunks of the index after `after`, in address order, with their
    /// placements. Chunks being deleted are left out: their copies are going away on purpose
    /// (or are gone, if the collector that deletes them stopped midway), which is nothing
    /// for a scrub to report or a repair to undo.
    pub async fn chunks_after(&self, after: Option<[u8; 32]>, limit: usize) -> Result<Vec<ChunkPlacements>> {
        self.chunk_page("AND address NOT IN (SELECT address FROM chunk_deletions)", None, after, limit).await
    }

    /// Up to `limit` chunks after `after`, in address order, that also meet `condition` (SQL,
    /// whose `$3` is `value`), with their placements.
    pub(crate) async fn chunk_page(
        &self,
        condition: &str,
        value: Option<i64>,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<ChunkPlacements>> {
        let after = after.map(|a| a.to_vec()).unwrap_or_default();
        let sql = format!(
            "SELECT address, stored_size, replicas, refcount FROM chunks WHERE address > $1 {condition} \
             ORDER BY address LIMIT $2"
        );
        let mut q = sqlx::query(&sql).bind(&after).bind(limit as i64);
        if let Some(v) = value {
            q = q.bind(v);
        }
        let mut chunks = Vec::new();
        for r in &q.fetch_all(&self.pool).await? {
            chunks.push(ChunkPlacements {
                address: address(r.try_get(0)?)?,
                stored_size: r.try_get::<i64, _>(1)? as u32,
                replicas: r.try_get::<i64, _>(2)?.max(1) as u32,
                refcount: r.try_get(3)?,
                placements: Vec::new(),
            });
        }
        // The placements of exactly those chunks (a page of a sparse selection may span
        // most of the index), a few hundred addresses per query.
        let at: std::collections::HashMap<[u8; 32], usize> =
            chunks.iter().enumerate().map(|(i, c)| (c.address, i)).collect();
        for batch in chunks.iter().map(|c| c.address).collect::<Vec<_>>().chunks(256) {
            let marks: Vec<String> = (1..=batch.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT address, provider, state FROM placements WHERE address IN ({}) ORDER BY address, provider",
                marks.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for a in batch {
                q = q.bind(a.to_vec());
            }
            for r in &q.fetch_all(&self.pool).await? {
                if let Some(&i) = at.get(&address(r.try_get(0)?)?) {
                    chunks[i].placements.push((r.try_get(1)?, r.try_get::<String, _>(2)?.parse()?));
                }
            }
        }
        Ok(chunks)
    }

    /// Moves a placement from state `from` to `to` (`verified`: its bytes were just read
    /// and found good) and says whether it did: a placement whose state changed since the
    /// caller read it is left alone, so two workers never undo each other's findings.
    pub async fn change_placement(
        &self,
        address: &[u8; 32],
        provider: &str,
        from: PlacementState,
        to: PlacementState,
        verified: bool,
    ) -> Result<bool> {
        let _w = self.write_guard().await;
        let changed = sqlx::query(
            "UPDATE placements SET state = $1, verified_at = COALESCE($2, verified_at) \
             WHERE address = $3 AND provider = $4 AND state = $5",
        )
        .bind(to.as_str())
        .bind(verified.then(now_ms))
        .bind(address.to_vec())
        .bind(provider)
        .bind(from.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(changed > 0)
    }

    /// Records a copy just written and verified (repair): a new placement, or one whose
    /// state becomes `stored`.
    pub async fn record_verified_copy(&self, address: &[u8; 32], provider: &str) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query(
            "INSERT INTO placements (address, provider, state, verified_at) SELECT $1, $2, $4, $3 \
             WHERE EXISTS (SELECT 1 FROM chunks WHERE address = $1) \
             ON CONFLICT (address, provider) DO UPDATE SET state = excluded.state, verified_at = excluded.verified_at",
        )
        .bind(address.to_vec())
        .bind(provider)
        .bind(now_ms())
        .bind(PlacementState::Stored.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Up to `limit` chunks after `after`, in address order, with a placement on a provider
    /// being drained (or drained: a late commit may have put one there), with their
    /// placements (the drain's walk). Chunks being deleted are left out.
    pub async fn chunks_on_draining(
        &self,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<ChunkPlacements>> {
        let condition = format!(
            "AND address IN (SELECT p.address FROM placements p JOIN providers v ON v.name = p.provider \
             WHERE v.state IN ('{}', '{}')) AND address NOT IN (SELECT address FROM chunk_deletions)",
            ProviderState::Draining,
            ProviderState::Drained
        );
        self.chunk_page(&condition, None, after, limit).await
    }

    /// Forgets a placement (its copy was deleted after a move).
    pub async fn drop_placement(&self, address: &[u8; 32], provider: &str) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query("DELETE FROM placements WHERE address = $1 AND provider = $2")
            .bind(address.to_vec())
            .bind(provider)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Placements by provider and state: `(provider, state, count)`.
    pub async fn placement_counts(&self) -> Result<Vec<(String, PlacementState, i64)>> {
        let rows = sqlx::query(
            "SELECT provider, state, COUNT(*) FROM placements GROUP BY provider, state ORDER BY provider, state",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get::<String, _>(1)?.parse()?, r.try_get(2)?))).collect()
    }
}
