//! Grant signing keys and smart-upload sessions.
//!
//! Neither belongs to an account's namespace, so their writes do not take the account's
//! change sequence: a session only becomes a version through [`Meta::put_version`].

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::model::Opened;
use crate::sql::{array32, lock_session, now_ms};
use crate::write::{account_usage, hold_on, holds_on};
use crate::{Backend, Error, Meta, PlacementState, Result};

/// An Ed25519 key that signs grants.
#[derive(Clone, PartialEq, Eq)]
pub struct GrantKey {
    /// Id, carried in every grant it signs.
    pub id: i64,
    /// The private seed.
    pub seed: [u8; 32],
    /// The public key.
    pub public_key: [u8; 32],
    /// When it was made, Unix ms.
    pub created_at: i64,
    /// When it stopped signing, Unix ms; it still verifies for a grant lifetime after.
    pub retired_at: Option<i64>,
}

impl std::fmt::Debug for GrantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantKey")
            .field("id", &self.id)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// One chunk declared at the start of a smart upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeclaredChunk {
    /// Address.
    pub address: [u8; 32],
    /// Stored size in bytes.
    pub stored_size: u32,
}

/// A declared chunk as the session knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionChunk {
    /// Stored size in bytes, as declared.
    pub stored_size: u32,
    /// Its bytes reached the server in this session ([`Meta::record_sent_chunk`]).
    pub sent: bool,
    /// What opening them told (none for an end-to-end chunk, or one not sent).
    pub opened: Option<Opened>,
}

/// How much one smart upload may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeclareLimits {
    /// Distinct chunks, over the whole session.
    pub max_chunks: u64,
    /// Stored bytes of those chunks, over the whole session (the account's quota room is
    /// checked besides).
    pub max_bytes: u64,
}

/// A smart upload between its start and its commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSession {
    /// Opaque id (`up_` + hex).
    pub id: String,
    /// The number its chunk grants carry (random, 63 bits), to find the session again.
    pub scope: i64,
    /// Owner.
    pub account_id: i64,
    /// Target bucket.
    pub bucket_id: i64,
    /// Target key.
    pub key: String,
    /// Unix ms.
    pub created_at: i64,
    /// After this the session can no longer commit, Unix ms.
    pub expires_at: i64,
}

const SESSION_COLUMNS: &str = "id, account_id, bucket_id, key, created_at, expires_at, scope";

fn session(row: &AnyRow) -> Result<UploadSession> {
    Ok(UploadSession {
        id: row.try_get(0)?,
        account_id: row.try_get(1)?,
        bucket_id: row.try_get(2)?,
        key: row.try_get(3)?,
        created_at: row.try_get(4)?,
        expires_at: row.try_get(5)?,
        // Sessions of before schema 7 have none; their grants name the bucket.
        scope: row.try_get::<Option<i64>, _>(6)?.unwrap_or(-1),
    })
}

/// The (plain_len, key_hash) pair at column `at`, when the chunk was opened.
fn opened(row: &AnyRow, at: usize) -> Result<Option<Opened>> {
    let len: Option<i64> = row.try_get(at)?;
    let hash: Option<Vec<u8>> = row.try_get(at + 1)?;
    Ok(match (len, hash) {
        (Some(len), Some(hash)) => {
            Some(Opened { plain_len: len as u32, key_hash: array32(hash, "chunk key hash")? })
        }
        _ => None,
    })
}

fn grant_key(row: &AnyRow) -> Result<GrantKey> {
    Ok(GrantKey {
        id: row.try_get(0)?,
        seed: array32(row.try_get(1)?, "grant key seed")?,
        public_key: array32(row.try_get(2)?, "grant public key")?,
        created_at: row.try_get(3)?,
        retired_at: row.try_get(4)?,
    })
}

impl Meta {
    /// Every grant key, oldest first.
    pub async fn grant_keys(&self) -> Result<Vec<GrantKey>> {
        sqlx::query("SELECT id, seed, public_key, created_at, retired_at FROM grant_keys ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(grant_key)
            .collect()
    }

    /// Adds a signing key and retires the ones that signed until now, in one transaction.
    pub async fn rotate_grant_key(&self, seed: [u8; 32], public_key: [u8; 32]) -> Result<GrantKey> {
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        sqlx::query("UPDATE grant_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(
            "INSERT INTO grant_keys (seed, public_key, created_at) VALUES ($1, $2, $3) \
             RETURNING id, seed, public_key, created_at, retired_at",
        )
        .bind(seed.to_vec())
        .bind(public_key.to_vec())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        grant_key(&row)
    }

    /// Forgets keys retired before `before` (their grants have all expired).
    pub async fn drop_grant_keys_retired_before(&self, before: i64) -> Result<u64> {
        let _w = self.write_guard().await;
        let done = sqlx::query("DELETE FROM grant_keys WHERE retired_at IS NOT NULL AND retired_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Records a new upload session.
    pub async fn create_upload_session(&self, s: &UploadSession) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query(
            "INSERT INTO upload_sessions (id, account_id, bucket_id, key, created_at, expires_at, scope) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&s.id)
        .bind(s.account_id)
        .bind(s.bucket_id)
        .bind(&s.key)
        .bind(s.created_at)
        .bind(s.expires_at)
        .bind(s.scope)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Adds chunks to what a session declared (a chunk declared twice is kept once). A
    /// declared chunk is leased to the session until it expires (see `gc.rs`); returns those
    /// of `chunks` being deleted right now, which the caller must wait out before it counts
    /// them as held.
    ///
    /// Refused, changing nothing, when the session's distinct chunks would pass `limits`
    /// ([`Error::UploadTooLarge`]), or their stored bytes the account's room
    /// ([`Error::QuotaExceeded`]: its quota less its usage and the holds of its other
    /// uploads under way), since the commit will be charged that much.
    pub async fn declare_upload_chunks(
        &self,
        session: &UploadSession,
        chunks: &[DeclaredChunk],
        limits: DeclareLimits,
    ) -> Result<Vec<[u8; 32]>> {
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        // The account's row before the collector's lock, in the order commits take them.
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT id FROM accounts WHERE id = $1 FOR UPDATE")
                .bind(session.account_id)
                .execute(&mut *tx)
                .await?;
        }
        crate::sql::gc_lock(&mut tx, self.backend(), false).await?;
        let addresses: Vec<[u8; 32]> = chunks.iter().map(|c| c.address).collect();
        let known = crate::sql::select_in(
            &mut tx,
            "SELECT address FROM upload_session_chunks WHERE session_id = $1 AND address IN ({in})",
            Some(&session.id),
            &addresses,
        )
        .await?;
        let mut seen = std::collections::HashSet::new();
        let fresh: Vec<&DeclaredChunk> =
            chunks.iter().filter(|c| !known.contains(&c.address) && seen.insert(c.address)).collect();
        let (count, bytes): (i64, i64) = {
            let row = sqlx::query("SELECT declared_count, declared_bytes FROM upload_sessions WHERE id = $1")
                .bind(&session.id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(Error::UploadNotFound)?;
            (row.try_get(0)?, row.try_get(1)?)
        };
        let count = count.max(0) as u64 + fresh.len() as u64;
        let bytes = bytes.max(0) as u64 + fresh.iter().map(|c| u64::from(c.stored_size)).sum::<u64>();
        if count > limits.max_chunks || bytes > limits.max_bytes {
            return Err(Error::UploadTooLarge(format!(
                "an upload may declare at most {} chunks and {} stored bytes; this one would declare {count} and {bytes}",
                limits.max_chunks, limits.max_bytes
            )));
        }
        let (used, quota) = account_usage(&mut tx, session.account_id).await?;
        if let Some(quota) = quota {
            let others = holds_on(&mut tx, session.account_id, Some(&session.id)).await?;
            if used.saturating_add(others).saturating_add(bytes) > quota {
                return Err(Error::QuotaExceeded { used: used.saturating_add(others), quota, needed: bytes });
            }
        }
        for batch in fresh.chunks(300) {
            let rows: Vec<String> =
                (0..batch.len()).map(|i| format!("($1, ${}, ${})", 2 * i + 2, 2 * i + 3)).collect();
            let sql = format!(
                "INSERT INTO upload_session_chunks (session_id, address, stored_size) VALUES {} \
                 ON CONFLICT (session_id, address) DO NOTHING",
                rows.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(&session.id);
            for c in batch {
                query = query.bind(c.address.to_vec()).bind(i64::from(c.stored_size));
            }
            query.execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE upload_sessions SET declared_count = $1, declared_bytes = $2 WHERE id = $3")
            .bind(count as i64)
            .bind(bytes as i64)
            .bind(&session.id)
            .execute(&mut *tx)
            .await?;
        let deleting = crate::sql::deleting_on(&mut tx, &addresses).await?;
        tx.commit().await?;
        Ok(deleting)
    }

    /// Ends a session that will not commit: its declarations (its chunk leases) and its
    /// quota hold go at once, and it can no longer commit. Returns the chunks it declared,
    /// for the caller to delete those nothing else relies on. Refused with
    /// [`Error::UploadCommitted`] once the session has committed; the session's row is
    /// locked first, so an abort and a commit of one session never both succeed.
    pub async fn abort_upload_session(&self, session: &UploadSession) -> Result<Vec<[u8; 32]>> {
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        lock_session(&mut tx, self.backend(), &session.id).await?;
        let committed: Option<i64> = sqlx::query_scalar(
            "SELECT version_id FROM uploads WHERE account_id = $1 AND idempotency_key = $2",
        )
        .bind(session.account_id)
        .bind(format!("upload:{}", session.id))
        .fetch_optional(&mut *tx)
        .await?;
        if committed.is_some() {
            return Err(Error::UploadCommitted);
        }
        let declared: Vec<[u8; 32]> = sqlx::query_scalar::<_, Vec<u8>>(
            "SELECT address FROM upload_session_chunks WHERE session_id = $1",
        )
        .bind(&session.id)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|a| array32(a, "chunk address"))
        .collect::<Result<_>>()?;
        crate::sql::release_on(&mut tx, &session.id).await?;
        sqlx::query("UPDATE upload_sessions SET expires_at = $1 WHERE id = $2 AND expires_at > $1")
            .bind(now_ms())
            .bind(&session.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(declared)
    }

    /// Records that a declared chunk's bytes reached the server in `session`, before they
    /// are stored: its stored size joins the session's quota hold, and the account holds
    /// the chunk from now on (`chunk_owners`, with what opening it told). Refused, changing
    /// nothing, when the chunk was not declared ([`Error::ChunkNotDeclared`]) or its bytes
    /// do not fit in the account's room ([`Error::QuotaExceeded`]). Sending a chunk twice
    /// holds its bytes once.
    pub async fn record_sent_chunk(
        &self,
        session: &UploadSession,
        address: &[u8; 32],
        stored_size: u32,
        opened: Option<Opened>,
    ) -> Result<()> {
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT stored_size, sent FROM upload_session_chunks WHERE session_id = $1 AND address = $2",
        )
        .bind(&session.id)
        .bind(address.to_vec())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(Error::ChunkNotDeclared)?;
        let sent: i64 = row.try_get(1)?;
        if sent == 1 {
            return Ok(());
        }
        if row.try_get::<i64, _>(0)? != i64::from(stored_size) {
            return Err(Error::ChunkNotDeclared);
        }
        if sent == 0 {
            // (2: held already, for a presigned URL)
            hold_on(
                &mut tx,
                self.backend(),
                session.account_id,
                &session.id,
                u64::from(stored_size),
                session.expires_at,
            )
            .await?;
        }
        sqlx::query(
            "UPDATE upload_session_chunks SET sent = 1, plain_len = $1, key_hash = $2 \
             WHERE session_id = $3 AND address = $4",
        )
        .bind(opened.map(|o| i64::from(o.plain_len)))
        .bind(opened.map(|o| o.key_hash.to_vec()))
        .bind(&session.id)
        .bind(address.to_vec())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO chunk_owners (account_id, address, plain_len, key_hash) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (account_id, address) DO NOTHING",
        )
        .bind(session.account_id)
        .bind(address.to_vec())
        .bind(opened.map(|o| i64::from(o.plain_len)))
        .bind(opened.map(|o| o.key_hash.to_vec()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Holds the room of a declared chunk that the device will send straight to a provider
    /// (a presigned URL), once however often it is declared; refused with
    /// [`Error::QuotaExceeded`], changing nothing, when it does not fit.
    pub async fn hold_for_session(&self, session: &UploadSession, address: &[u8; 32]) -> Result<()> {
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let size: Option<i64> = sqlx::query_scalar(
            "UPDATE upload_session_chunks SET sent = 2 WHERE session_id = $1 AND address = $2 AND sent = 0 \
             RETURNING stored_size",
        )
        .bind(&session.id)
        .bind(address.to_vec())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(size) = size {
            hold_on(
                &mut tx,
                self.backend(),
                session.account_id,
                &session.id,
                size.max(0) as u64,
                session.expires_at,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Of `addresses`, those the account holds (it sent them, or the server sealed them for
    /// it), with what opening them told the server.
    pub async fn owned_chunks(
        &self,
        account_id: i64,
        addresses: &[[u8; 32]],
    ) -> Result<std::collections::HashMap<[u8; 32], Option<Opened>>> {
        let mut owned = std::collections::HashMap::new();
        for batch in addresses.chunks(300) {
            let marks: Vec<String> = (2..batch.len() + 2).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT address, plain_len, key_hash FROM chunk_owners WHERE account_id = $1 AND address IN ({})",
                marks.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(account_id);
            for a in batch {
                query = query.bind(a.to_vec());
            }
            for row in query.fetch_all(&self.pool).await? {
                owned.insert(array32(row.try_get(0)?, "chunk address")?, opened(&row, 1)?);
            }
        }
        Ok(owned)
    }

    /// The session with this id, if the account owns it.
    pub async fn upload_session(&self, account_id: i64, id: &str) -> Result<UploadSession> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM upload_sessions WHERE id = $1 AND account_id = $2"
        ))
        .bind(id)
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(Error::UploadNotFound)?;
        session(&row)
    }

    /// The session whose chunk grants carry `scope`.
    pub async fn upload_session_by_scope(&self, scope: i64) -> Result<UploadSession> {
        let row = sqlx::query(&format!("SELECT {SESSION_COLUMNS} FROM upload_sessions WHERE scope = $1"))
            .bind(scope)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::UploadNotFound)?;
        session(&row)
    }

    /// Every chunk the session declared.
    pub async fn upload_session_chunks(
        &self,
        session_id: &str,
    ) -> Result<std::collections::HashMap<[u8; 32], SessionChunk>> {
        sqlx::query(
            "SELECT address, stored_size, sent, plain_len, key_hash FROM upload_session_chunks WHERE session_id = $1",
        )
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok((
                array32(row.try_get(0)?, "chunk address")?,
                SessionChunk {
                    stored_size: row.try_get::<i64, _>(1)? as u32,
                    sent: row.try_get::<i64, _>(2)? == 1,
                    opened: opened(row, 3)?,
                },
            ))
        })
        .collect()
    }

    /// Forgets sessions that expired before `before`; returns how many.
    pub async fn drop_upload_sessions_expired_before(&self, before: i64) -> Result<u64> {
        let _w = self.write_guard().await;
        sqlx::query(
            "DELETE FROM quota_holds WHERE holder IN (SELECT id FROM upload_sessions WHERE expires_at < $1)",
        )
        .bind(before)
        .execute(&self.pool)
        .await?;
        let done = sqlx::query("DELETE FROM upload_sessions WHERE expires_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Of `addresses`, those the chunk index holds with at least one stored placement, with
    /// their stored size and providers.
    pub async fn held_chunks(
        &self,
        addresses: &[[u8; 32]],
    ) -> Result<std::collections::HashMap<[u8; 32], (u32, Vec<String>)>> {
        let mut held = std::collections::HashMap::new();
        // A few hundred per query keeps every statement far below both backends' limits on
        // bound parameters.
        for batch in addresses.chunks(500) {
            let marks: Vec<String> = (1..=batch.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT c.address, c.stored_size, p.provider FROM chunks c \
                 JOIN placements p ON p.address = c.address AND p.state = ${} \
                 WHERE c.address IN ({})",
                batch.len() + 1,
                marks.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for a in batch {
                query = query.bind(a.to_vec());
            }
            query = query.bind(PlacementState::Stored.as_str());
            for row in query.fetch_all(&self.pool).await? {
                let address = array32(row.try_get(0)?, "chunk address")?;
                let size = row.try_get::<i64, _>(1)? as u32;
                let provider: String = row.try_get(2)?;
                held.entry(address).or_insert_with(|| (size, Vec::new())).1.push(provider);
            }
        }
        Ok(held)
    }
}
