//! Grant signing keys and smart-upload sessions.
//!
//! Neither belongs to an account's namespace, so their writes do not take the account's
//! change sequence: a session only becomes a version through [`Meta::put_version`].

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::now_ms;
use crate::{Error, Meta, Result};

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

/// A smart upload between its start and its commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSession {
    /// Opaque id (`up_` + hex).
    pub id: String,
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

fn array32(v: Vec<u8>, what: &str) -> Result<[u8; 32]> {
    v.try_into().map_err(|_| Error::Corrupt(format!("{what} is not 32 bytes")))
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
            "INSERT INTO upload_sessions (id, account_id, bucket_id, key, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&s.id)
        .bind(s.account_id)
        .bind(s.bucket_id)
        .bind(&s.key)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Adds chunks to what a session declared (a chunk declared twice is kept once). A
    /// declared chunk is leased to the session until it expires (see `gc.rs`); returns those
    /// of `chunks` being deleted right now, which the caller must wait out before it counts
    /// them as held.
    pub async fn declare_upload_chunks(
        &self,
        session_id: &str,
        chunks: &[DeclaredChunk],
    ) -> Result<Vec<[u8; 32]>> {
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        crate::gc::gc_lock(&mut tx, self.backend(), false).await?;
        for batch in chunks.chunks(300) {
            let rows: Vec<String> =
                (0..batch.len()).map(|i| format!("($1, ${}, ${})", 2 * i + 2, 2 * i + 3)).collect();
            let sql = format!(
                "INSERT INTO upload_session_chunks (session_id, address, stored_size) VALUES {} \
                 ON CONFLICT (session_id, address) DO NOTHING",
                rows.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(session_id);
            for c in batch {
                query = query.bind(c.address.to_vec()).bind(i64::from(c.stored_size));
            }
            query.execute(&mut *tx).await?;
        }
        let addresses: Vec<[u8; 32]> = chunks.iter().map(|c| c.address).collect();
        let deleting = crate::gc::deleting_on(&mut tx, &addresses).await?;
        tx.commit().await?;
        Ok(deleting)
    }

    /// The session with this id, if the account owns it.
    pub async fn upload_session(&self, account_id: i64, id: &str) -> Result<UploadSession> {
        let row = sqlx::query(
            "SELECT id, account_id, bucket_id, key, created_at, expires_at \
             FROM upload_sessions WHERE id = $1 AND account_id = $2",
        )
        .bind(id)
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(Error::UploadNotFound)?;
        Ok(UploadSession {
            id: row.try_get(0)?,
            account_id: row.try_get(1)?,
            bucket_id: row.try_get(2)?,
            key: row.try_get(3)?,
            created_at: row.try_get(4)?,
            expires_at: row.try_get(5)?,
        })
    }

    /// Every chunk the session declared.
    pub async fn upload_session_chunks(&self, session_id: &str) -> Result<Vec<DeclaredChunk>> {
        sqlx::query("SELECT address, stored_size FROM upload_session_chunks WHERE session_id = $1")
            .bind(session_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(DeclaredChunk {
                    address: array32(row.try_get(0)?, "chunk address")?,
                    stored_size: row.try_get::<i64, _>(1)? as u32,
                })
            })
            .collect()
    }

    /// Forgets sessions that expired before `before`; returns how many.
    pub async fn drop_upload_sessions_expired_before(&self, before: i64) -> Result<u64> {
        let _w = self.write_guard().await;
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
                 JOIN placements p ON p.address = c.address AND p.state = 'stored' \
                 WHERE c.address IN ({})",
                marks.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for a in batch {
                query = query.bind(a.to_vec());
            }
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
