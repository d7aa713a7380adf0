//! A bucket's configurations that S3 sets as whole documents (its CORS rules, its lifecycle
//! rules), kept as the object service's text of them: this store neither reads nor checks
//! them.

use sqlx::Row;

use crate::model::{BUCKET_COLUMNS, bucket};
use crate::{Bucket, Error, Meta, Result, now_ms};

impl Meta {
    /// The configuration of this kind of the bucket, if it has one.
    pub async fn bucket_config(&self, bucket_id: i64, kind: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT body FROM bucket_configs WHERE bucket_id = $1 AND kind = $2")
            .bind(bucket_id)
            .bind(kind)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Sets (or, with none, removes) the configuration of this kind of the bucket.
    pub async fn set_bucket_config(&self, bucket: &Bucket, kind: &str, body: Option<&str>) -> Result<()> {
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let here: Option<i64> =
            sqlx::query_scalar("SELECT id FROM buckets WHERE id = $1 AND account_id = $2")
                .bind(bucket.id)
                .bind(bucket.account_id)
                .fetch_optional(&mut *tx)
                .await?;
        if here.is_none() {
            return Err(Error::BucketNotFound);
        }
        match body {
            // One statement: two racing writers of one bucket's rules both succeed, the
            // last one's rules stay.
            Some(body) => {
                sqlx::query(
                    "INSERT INTO bucket_configs (bucket_id, kind, body, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (bucket_id, kind) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                )
                .bind(bucket.id)
                .bind(kind)
                .bind(body)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM bucket_configs WHERE bucket_id = $1 AND kind = $2")
                    .bind(bucket.id)
                    .bind(kind)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The oldest bucket of this name, of any account (names are an account's own).
    pub async fn oldest_bucket_named(&self, name: &str) -> Result<Option<Bucket>> {
        let row =
            sqlx::query(&format!("SELECT {BUCKET_COLUMNS} FROM buckets WHERE name = $1 ORDER BY id LIMIT 1"))
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(bucket).transpose()
    }

    /// Every bucket with a configuration of this kind, and it, in bucket id order.
    pub async fn buckets_configured(&self, kind: &str) -> Result<Vec<(Bucket, String)>> {
        let columns: Vec<String> = BUCKET_COLUMNS.split(", ").map(|c| format!("b.{c}")).collect();
        let rows = sqlx::query(&format!(
            "SELECT {}, c.body FROM buckets b JOIN bucket_configs c ON c.bucket_id = b.id \
             WHERE c.kind = $1 ORDER BY b.id",
            columns.join(", ")
        ))
        .bind(kind)
        .fetch_all(&self.pool)
        .await?;
        let n = columns.len();
        rows.iter().map(|r| Ok((bucket(r)?, r.try_get(n)?))).collect()
    }
}
