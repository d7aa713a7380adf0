//! S3 access keys: an id, its account, an optional limit to one bucket and to reads, and the
//! secret sealed by the service (this store never sees it in the clear). A revoked key keeps
//! its row, so that its id is never handed out again.

use sqlx::Row;

pub use crate::model::AccessKey;
use crate::sql::{is_unique_violation, now_ms};
use crate::{Error, Meta, Result};

const COLUMNS: &str = "id, account_id, name, bucket, read_only, secret_sealed, created_at, revoked_at";

fn access_key(r: &sqlx::any::AnyRow) -> Result<AccessKey> {
    Ok(AccessKey {
        id: r.try_get(0)?,
        account_id: r.try_get(1)?,
        name: r.try_get(2)?,
        bucket: r.try_get(3)?,
        read_only: r.try_get::<i64, _>(4)? != 0,
        secret_sealed: r.try_get(5)?,
        created_at: r.try_get(6)?,
        revoked_at: r.try_get(7)?,
    })
}

impl Meta {
    /// Records a new access key ([`Error::AccessKeyExists`] if its id is taken, even by a
    /// revoked one; [`Error::AccountNotFound`] without its account).
    pub async fn create_access_key(&self, key: &AccessKey) -> Result<()> {
        let _w = self.write_guard().await;
        let done = sqlx::query(&format!(
            "INSERT INTO access_keys ({COLUMNS}) SELECT $1, $2, $3, $4, $5, $6, $7, NULL \
             WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $2)"
        ))
        .bind(&key.id)
        .bind(key.account_id)
        .bind(&key.name)
        .bind(key.bucket.clone())
        .bind(i64::from(key.read_only))
        .bind(key.secret_sealed.clone())
        .bind(key.created_at)
        .execute(&self.pool)
        .await;
        match done {
            Ok(d) if d.rows_affected() == 1 => Ok(()),
            Ok(_) => Err(Error::AccountNotFound),
            Err(e) if is_unique_violation(&e) => Err(Error::AccessKeyExists),
            Err(e) => Err(e.into()),
        }
    }

    /// The access key of this id, revoked or not.
    /// (Read again after [`crate::FRESH_FOR`], or at once when this process revokes it.)
    pub async fn access_key(&self, id: &str) -> Result<Option<AccessKey>> {
        let generation = match self.recent_keys.get(&id.to_owned()) {
            Ok(key) => return Ok(Some(key)),
            Err(generation) => generation,
        };
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM access_keys WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let found = row.as_ref().map(access_key).transpose()?;
        if let Some(key) = &found {
            self.recent_keys.keep(generation, key.id.clone(), key.clone());
        }
        Ok(found)
    }

    /// The access keys of an account, newest first.
    pub async fn access_keys(&self, account_id: i64) -> Result<Vec<AccessKey>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM access_keys WHERE account_id = $1 ORDER BY created_at DESC, id"
        ))
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(access_key).collect()
    }

    /// Revokes one of the account's active access keys; false if it has no such key.
    pub async fn revoke_access_key(&self, account_id: i64, id: &str) -> Result<bool> {
        let _w = self.write_guard().await;
        let done = sqlx::query(
            "UPDATE access_keys SET revoked_at = $1 WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .bind(account_id)
        .execute(&self.pool)
        .await?;
        self.recent_keys.forget(|k| k == id);
        Ok(done.rows_affected() == 1)
    }
}
