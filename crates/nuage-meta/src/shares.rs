//! Share links: a hashed token that lets anyone holding it read one version.
//!
//! A download is counted by one conditional `UPDATE` that also checks revocation, expiry
//! and the limit, so when many downloads race for the last places exactly the limit succeed
//! (the row's write lock orders them on PostgreSQL; SQLite has one writer).

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::sql::now_ms;
use crate::{Error, Meta, Result};

/// A share link, as stored (the token itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// Id, for listing and revoking.
    pub id: i64,
    /// Owner.
    pub account_id: i64,
    /// The shared object's bucket.
    pub bucket_id: i64,
    /// The shared object's key.
    pub key: String,
    /// The version shared: later writes to the key do not change what the link gives.
    pub version_id: i64,
    /// Unix ms.
    pub created_at: i64,
    /// After this the link no longer works, Unix ms.
    pub expires_at: Option<i64>,
    /// How many downloads the link allows.
    pub max_downloads: Option<u64>,
    /// Downloads so far.
    pub downloads: u64,
    /// Argon2 PHC string of the link's password.
    pub password_hash: Option<String>,
    /// When it was revoked, Unix ms.
    pub revoked_at: Option<i64>,
}

/// What a new share link holds.
#[derive(Debug, Clone)]
pub struct NewShare {
    /// BLAKE3 of the token.
    pub token_hash: [u8; 32],
    /// The shared object's bucket.
    pub bucket_id: i64,
    /// The shared object's key.
    pub key: String,
    /// The version shared.
    pub version_id: i64,
    /// Unix ms.
    pub expires_at: Option<i64>,
    /// Download limit.
    pub max_downloads: Option<u64>,
    /// Argon2 PHC string.
    pub password_hash: Option<String>,
}

/// Why a share link cannot be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareState {
    /// It can be used.
    Usable,
    /// Revoked by its owner.
    Revoked,
    /// Past its expiry.
    Expired,
    /// Every allowed download was made.
    Exhausted,
}

impl ShareState {
    /// The state's one name on every wire: `usable`, `revoked`, `expired`, `exhausted`.
    pub fn as_str(self) -> &'static str {
        match self {
            ShareState::Usable => "usable",
            ShareState::Revoked => "revoked",
            ShareState::Expired => "expired",
            ShareState::Exhausted => "exhausted",
        }
    }
}

impl Share {
    /// Whether the link can be used at `now` (Unix ms).
    pub fn state(&self, now: i64) -> ShareState {
        if self.revoked_at.is_some() {
            ShareState::Revoked
        } else if self.expires_at.is_some_and(|e| now >= e) {
            ShareState::Expired
        } else if self.max_downloads.is_some_and(|m| self.downloads >= m) {
            ShareState::Exhausted
        } else {
            ShareState::Usable
        }
    }
}

const COLUMNS: &str = "id, account_id, bucket_id, key, version_id, created_at, expires_at, \
                       max_downloads, downloads, password_hash, revoked_at";

fn share(row: &AnyRow) -> Result<Share> {
    Ok(Share {
        id: row.try_get(0)?,
        account_id: row.try_get(1)?,
        bucket_id: row.try_get(2)?,
        key: row.try_get(3)?,
        version_id: row.try_get(4)?,
        created_at: row.try_get(5)?,
        expires_at: row.try_get(6)?,
        max_downloads: row.try_get::<Option<i64>, _>(7)?.map(|m| m as u64),
        downloads: row.try_get::<i64, _>(8)? as u64,
        password_hash: row.try_get(9)?,
        revoked_at: row.try_get(10)?,
    })
}

impl Meta {
    /// Records a new share link.
    pub async fn create_share(&self, account_id: i64, new: &NewShare) -> Result<Share> {
        let _w = self.write_guard().await;
        let row = sqlx::query(&format!(
            "INSERT INTO shares (account_id, token_hash, bucket_id, key, version_id, created_at, \
             expires_at, max_downloads, password_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             RETURNING {COLUMNS}"
        ))
        .bind(account_id)
        .bind(new.token_hash.to_vec())
        .bind(new.bucket_id)
        .bind(&new.key)
        .bind(new.version_id)
        .bind(now_ms())
        .bind(new.expires_at)
        .bind(new.max_downloads.map(|m| m.min(i64::MAX as u64) as i64))
        .bind(new.password_hash.as_deref())
        .fetch_one(&self.pool)
        .await?;
        share(&row)
    }

    /// The account's share links, newest first.
    pub async fn shares(&self, account_id: i64) -> Result<Vec<Share>> {
        let rows =
            sqlx::query(&format!("SELECT {COLUMNS} FROM shares WHERE account_id = $1 ORDER BY id DESC"))
                .bind(account_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(share).collect()
    }

    /// The share link whose token hashes to `token_hash`.
    pub async fn share_by_token(&self, token_hash: &[u8; 32]) -> Result<Share> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM shares WHERE token_hash = $1"))
            .bind(token_hash.to_vec())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::ShareNotFound)?;
        share(&row)
    }

    /// The share link with this id.
    pub async fn share(&self, id: i64) -> Result<Share> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM shares WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::ShareNotFound)?;
        share(&row)
    }

    /// Revokes one of the account's share links; revoking twice is not an error.
    pub async fn revoke_share(&self, account_id: i64, id: i64) -> Result<()> {
        let _w = self.write_guard().await;
        let done = sqlx::query(
            "UPDATE shares SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 AND account_id = $3",
        )
        .bind(now_ms())
        .bind(id)
        .bind(account_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 { Err(Error::ShareNotFound) } else { Ok(()) }
    }

    /// Counts one download if the link is usable at `now`: not revoked, not expired, under
    /// its limit. Returns whether it was counted; when many race for the last place, exactly
    /// as many as the limit allows win.
    pub async fn count_share_download(&self, id: i64, now: i64) -> Result<bool> {
        let _w = self.write_guard().await;
        let done = sqlx::query(
            "UPDATE shares SET downloads = downloads + 1 WHERE id = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2) \
             AND (max_downloads IS NULL OR downloads < max_downloads)",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
