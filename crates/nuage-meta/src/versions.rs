//! The versions of a bucket as versions: listed all together (S3's ListObjectVersions),
//! removed one at a time for good (a DeleteObject that names a version), and how many a
//! bucket keeps (S3's versioning status).

use sqlx::Row;

use crate::model::{VERSION_COLUMNS, after_all_with_prefix, version};
use crate::write::{
    Job, drop_versions, for_update_of, give_back_seq, next_seq, record_change, version_on, write_on,
};
use crate::{Bucket, ChangeKind, Committed, Error, Meta, Precondition, Result, Version};

/// Where a listing of versions starts: the versions of `key` older than `below` (newest
/// first), then every version of the keys after `key`. `below: i64::MAX` starts at `key`'s
/// newest version; `below: 0` after the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionCursor {
    /// The key the listing is in.
    pub key: String,
    /// The versions of `key` below this id are still to come.
    pub below: i64,
}

/// One entry of a listing of versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionEntry {
    /// A version (a delete marker too).
    Version {
        /// The version.
        version: Version,
        /// It is its key's current version.
        latest: bool,
    },
    /// Keys grouped under a common prefix ending with the delimiter.
    Prefix(String),
}

/// A page of a listing of versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionListing {
    /// Entries: keys in order, each key's versions newest first.
    pub entries: Vec<VersionEntry>,
    /// When more follow: the last entry of the page, as its key and (for a version, not a
    /// prefix) its id: the marker of the next page.
    pub next: Option<(String, Option<i64>)>,
}

impl Meta {
    /// Lists every kept version of the keys of `bucket` that start with `prefix`, from
    /// `start`, grouping keys that contain `delimiter` after the prefix: at most `limit`
    /// entries (1 to 1,000).
    pub async fn list_versions(
        &self,
        bucket: &Bucket,
        prefix: &str,
        delimiter: Option<&str>,
        start: Option<VersionCursor>,
        limit: usize,
    ) -> Result<VersionListing> {
        let limit = limit.clamp(1, 1000);
        let mut entries: Vec<VersionEntry> = Vec::new();
        let mut cursor = match start {
            Some(c) if c.key.as_str() >= prefix => c,
            _ => VersionCursor { key: prefix.to_owned(), below: i64::MAX },
        };
        let delimiter = delimiter.filter(|d| !d.is_empty());
        'pages: loop {
            let rows = sqlx::query(&format!(
                "SELECT {VERSION_COLUMNS}, o.head_version FROM objects o \
                 JOIN versions v ON v.object_id = o.id WHERE o.bucket_id = $1 AND o.key >= $2 \
                 AND (o.key > $2 OR v.id < $3) ORDER BY o.key, v.id DESC LIMIT $4"
            ))
            .bind(bucket.id)
            .bind(&cursor.key)
            .bind(cursor.below)
            .bind((limit + 1) as i64)
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                return Ok(VersionListing { entries, next: None });
            }
            for row in &rows {
                let v = version(row)?;
                if !v.key.starts_with(prefix) {
                    return Ok(VersionListing { entries, next: None });
                }
                let group = delimiter.and_then(|d| {
                    v.key[prefix.len()..].find(d).map(|at| v.key[..prefix.len() + at + d.len()].to_owned())
                });
                if entries.len() == limit {
                    let next = match entries.last() {
                        Some(VersionEntry::Version { version, .. }) => {
                            (version.key.clone(), Some(version.id))
                        }
                        Some(VersionEntry::Prefix(p)) => (p.clone(), None),
                        None => unreachable!("a full page has entries"),
                    };
                    return Ok(VersionListing { entries, next: Some(next) });
                }
                match group {
                    Some(p) => {
                        cursor = match after_all_with_prefix(&p) {
                            Some(after) => VersionCursor { key: after, below: i64::MAX },
                            None => VersionCursor { key: v.key.clone(), below: 0 },
                        };
                        entries.push(VersionEntry::Prefix(p));
                        continue 'pages;
                    }
                    None => {
                        let head: Option<i64> = row.try_get(10)?;
                        cursor = VersionCursor { key: v.key.clone(), below: v.id };
                        entries.push(VersionEntry::Version { latest: head == Some(v.id), version: v });
                    }
                }
            }
        }
    }

    /// Removes version `id` of `key` for good, a delete marker or not: its chunk references,
    /// its bytes from the account's usage, its row (S3's DeleteObject with a version id). If
    /// it was the key's current version, the newest one left becomes current (the key reads
    /// as deleted if that is a delete marker), and the change feed says so; a key left with
    /// no version goes. `precondition` holds against the version removed; with
    /// `only_noncurrent`, the current version is refused too ([`Error::PreconditionFailed`]:
    /// a lifecycle pass removes only what is still noncurrent when it commits). Returns the
    /// version removed, and whether the key's current version changed.
    pub async fn delete_version(
        &self,
        bucket: &Bucket,
        key: &str,
        id: i64,
        precondition: &Precondition,
        only_noncurrent: bool,
    ) -> Result<(Version, bool)> {
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let account_id = bucket.account_id;
        // The account's lock first, as every write takes it (a prune, a copy re-checking its
        // source, and this removal never interleave).
        let seq = next_seq(&mut tx, account_id).await?;
        let object = sqlx::query(&format!(
            "SELECT id, head_version FROM objects WHERE bucket_id = $1 AND key = $2{}",
            for_update_of(self.backend(), "objects")
        ))
        .bind(bucket.id)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(Error::ObjectNotFound)?;
        let (object_id, head): (i64, Option<i64>) = (object.try_get(0)?, object.try_get(1)?);
        let removed = version_on(&mut tx, bucket.id, key, id).await?;
        if !precondition.holds(removed.tags().as_ref()) || (only_noncurrent && head == Some(id)) {
            return Err(Error::PreconditionFailed);
        }
        drop_versions(&mut tx, account_id, &[id]).await?;
        let head_changed = head == Some(id);
        if head_changed {
            let newest = sqlx::query(
                "SELECT id, tombstone FROM versions WHERE object_id = $1 ORDER BY id DESC LIMIT 1",
            )
            .bind(object_id)
            .fetch_optional(&mut *tx)
            .await?;
            match newest {
                Some(row) => {
                    let (now_head, tombstone): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
                    sqlx::query("UPDATE objects SET head_version = $1, live = $2 WHERE id = $3")
                        .bind(now_head)
                        .bind(i64::from(tombstone == 0))
                        .bind(object_id)
                        .execute(&mut *tx)
                        .await?;
                    let kind = if tombstone == 0 { ChangeKind::Put } else { ChangeKind::Delete };
                    record_change(&mut tx, account_id, seq, kind, &bucket.name, Some(key), Some(now_head))
                        .await?;
                }
                None => {
                    sqlx::query("DELETE FROM objects WHERE id = $1")
                        .bind(object_id)
                        .execute(&mut *tx)
                        .await?;
                    // A key that read as live reads as gone: the feed says it was deleted.
                    if !removed.tombstone {
                        record_change(
                            &mut tx,
                            account_id,
                            seq,
                            ChangeKind::Delete,
                            &bucket.name,
                            Some(key),
                            None,
                        )
                        .await?;
                    } else {
                        give_back_seq(&mut tx, account_id).await?;
                    }
                }
            }
        } else {
            // An older version: what the key reads as is unchanged, and the feed has nothing
            // to say.
            give_back_seq(&mut tx, account_id).await?;
        }
        tx.commit().await?;
        Ok((removed, head_changed))
    }

    /// Deletes `key` with a delete marker only if version `id` is still its current, live
    /// version when the delete commits ([`Error::PreconditionFailed`] else): a lifecycle
    /// pass expires the version it looked at, never a newer one, even of the same content.
    pub async fn expire_version(&self, bucket: &Bucket, key: &str, id: i64) -> Result<Committed> {
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let backend = self.backend();
        // The account's lock first, as every write takes it; the write below takes it again.
        sqlx::query(&format!("SELECT id FROM accounts WHERE id = $1{}", for_update_of(backend, "accounts")))
            .bind(bucket.account_id)
            .fetch_optional(&mut *tx)
            .await?;
        let head: Option<(Option<i64>, i64)> =
            sqlx::query("SELECT head_version, live FROM objects WHERE bucket_id = $1 AND key = $2")
                .bind(bucket.id)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?)))
                .transpose()?;
        if head != Some((Some(id), 1)) {
            return Err(Error::PreconditionFailed);
        }
        let job = Job {
            bucket: bucket.clone(),
            key: key.to_owned(),
            content: None,
            precondition: Precondition::default(),
            idempotency_key: None,
            source: None,
        };
        let committed = write_on(&mut tx, backend, &job).await?;
        tx.commit().await?;
        Ok(committed)
    }

    /// Sets how many versions of each key `bucket` keeps (0: all): S3's versioning status
    /// (Enabled: the server's default; Suspended: one). Versions beyond the new count go
    /// when their key is next written.
    pub async fn set_keep_versions(&self, bucket: &Bucket, keep: u32) -> Result<()> {
        let _w = self.write_guard().await;
        let done = sqlx::query("UPDATE buckets SET keep_versions = $1 WHERE id = $2 AND account_id = $3")
            .bind(i64::from(keep))
            .bind(bucket.id)
            .bind(bucket.account_id)
            .execute(&self.pool)
            .await?;
        self.recent_buckets.forget(|(account, name)| *account == bucket.account_id && *name == bucket.name);
        if done.rows_affected() == 0 {
            return Err(Error::BucketNotFound);
        }
        Ok(())
    }
}
