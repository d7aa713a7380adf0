//! Buckets, objects, versions and the chunk index, changed together in one transaction.
//!
//! Every write of an account starts by bumping the account's change sequence, which takes
//! the account row's lock on PostgreSQL (SQLite serializes writers anyway). Quota checks,
//! preconditions, idempotency and the bucket's existence are then decided under that lock,
//! so two concurrent writes of one account can never both pass a check only one should.
//! The price is one writer at a time per account; other accounts are not held up.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::{Acquire, AnyConnection, AnyPool, Row};
use tokio::sync::oneshot;

use crate::accounts::is_unique_violation;
use crate::db::now_ms;
use crate::uploads::array32;
use crate::{Backend, Error, Meta, Result};

/// How a bucket stores its objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketPolicy {
    /// Copies of each chunk, on distinct providers.
    pub replicas: u32,
    /// Copies that must be stored before a write succeeds.
    pub write_quorum: u32,
    /// Versions kept per key, the newest ones (tombstones count); 0 keeps them all.
    pub keep_versions: u32,
    /// For an end-to-end bucket, the id of the content key that seals its manifests
    /// (`nuage_core::e2e`); set at creation, never changed.
    pub e2e_key_id: Option<[u8; 16]>,
    /// Devices may upload chunks straight to a provider with presigned URLs; the server
    /// verifies them at commit and makes the other replicas after.
    pub direct_upload: bool,
}

/// A bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Id.
    pub id: i64,
    /// Owner.
    pub account_id: i64,
    /// Name, unique per account.
    pub name: String,
    /// Placement and versioning.
    pub policy: BucketPolicy,
    /// Creation time, Unix ms.
    pub created_at: i64,
}

/// One version of a key: content, or a tombstone left by a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Id, increasing with time across the whole store.
    pub id: i64,
    /// The key.
    pub key: String,
    /// A delete marker.
    pub tombstone: bool,
    /// Plaintext size (0 for a tombstone).
    pub size: u64,
    /// Whole-file BLAKE3 (none for a tombstone).
    pub etag: Option<[u8; 32]>,
    /// The `Content-Type` given at upload.
    pub content_type: Option<String>,
    /// Creation time, Unix ms.
    pub created_at: i64,
}

/// An entity-tag condition (`If-Match` / `If-None-Match`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtagCondition {
    /// `*`: any current version.
    Any,
    /// One of these whole-file hashes.
    OneOf(Vec<[u8; 32]>),
}

impl EtagCondition {
    /// Whether a current version with this etag (none: absent) matches.
    pub fn matches(&self, current: Option<&[u8; 32]>) -> bool {
        match (self, current) {
            (_, None) => false,
            (EtagCondition::Any, Some(_)) => true,
            (EtagCondition::OneOf(tags), Some(t)) => tags.contains(t),
        }
    }
}

/// Conditions on the current live version that a write requires.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Precondition {
    /// The write happens only if the current version matches.
    pub if_match: Option<EtagCondition>,
    /// The write happens only if the current version does not match (`*`: only if absent).
    pub if_none_match: Option<EtagCondition>,
}

impl Precondition {
    /// Whether the conditions hold for a current version with this etag (none: absent).
    pub fn holds(&self, current: Option<&[u8; 32]>) -> bool {
        self.if_match.as_ref().is_none_or(|c| c.matches(current))
            && self.if_none_match.as_ref().is_none_or(|c| !c.matches(current))
    }
}

/// A chunk of a new version: where it was placed and how big it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRef {
    /// Address (BLAKE3 of the stored bytes).
    pub address: [u8; 32],
    /// Stored size in bytes.
    pub stored_size: u32,
    /// Providers that acknowledged it.
    pub providers: Vec<String>,
    /// What opening it told the server (none for an end-to-end chunk). The commit records
    /// the chunk as the account's (`chunk_owners`) with it.
    pub opened: Option<Opened>,
}

/// What the server learnt by opening a chunk with the key it was given: the chunk's
/// plaintext length and the BLAKE3 hash of that key. A manifest entry of the chunk must
/// say the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// Plaintext length.
    pub plain_len: u32,
    /// BLAKE3 of the chunk key.
    pub key_hash: [u8; 32],
}

/// A version to commit.
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// Plaintext size.
    pub size: u64,
    /// Whole-file BLAKE3.
    pub etag: [u8; 32],
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// The encoded manifest (nuMF).
    pub manifest: Vec<u8>,
    /// Every distinct chunk of the manifest, with its placements. The version is charged
    /// the sum of their stored sizes against the account's quota.
    pub chunks: Vec<ChunkRef>,
    /// The holder of the chunk leases the upload took ([`Meta::lease_chunks`]), or the id
    /// of the smart upload's session: the commit drops them, in its transaction.
    pub lease_holder: Option<String>,
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The version now at the head of the key.
    pub version: Version,
    /// True when an earlier request with the same idempotency key made this version, and
    /// this call changed nothing.
    pub replayed: bool,
    /// Versions removed by the bucket's `keep_versions` policy.
    pub pruned: Vec<i64>,
}

/// A chunk of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Stored size.
    pub stored_size: u32,
    /// Manifest entries of kept versions that point at it.
    pub refcount: i64,
    /// Copies it should have.
    pub replicas: u32,
    /// (provider, state) pairs.
    pub placements: Vec<(String, String)>,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListEntry {
    /// A live object, with its head version.
    Object(Version),
    /// Keys grouped under a common prefix ending with the delimiter.
    Prefix(String),
}

/// A page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Entries, in key order.
    pub entries: Vec<ListEntry>,
    /// Where the next page starts (inclusive), if there is one.
    pub next: Option<String>,
}

/// One change of an account's feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Sequence number, per account, increasing.
    pub seq: i64,
    /// `put`, `delete`, `bucket-create`, `bucket-delete`.
    pub kind: String,
    /// Bucket name.
    pub bucket: String,
    /// Key, for object changes.
    pub key: Option<String>,
    /// Version made, for object changes.
    pub version_id: Option<i64>,
    /// When, Unix ms.
    pub at: i64,
}

const BUCKET_COLUMNS: &str =
    "id, account_id, name, replicas, write_quorum, keep_versions, created_at, e2e_key_id, direct_upload";
const VERSION_COLUMNS: &str = "v.id, o.key, v.tombstone, v.size, v.etag, v.content_type, v.created_at";

fn bucket(row: &AnyRow) -> Result<Bucket> {
    Ok(Bucket {
        id: row.try_get(0)?,
        account_id: row.try_get(1)?,
        name: row.try_get(2)?,
        policy: BucketPolicy {
            replicas: row.try_get::<i64, _>(3)? as u32,
            write_quorum: row.try_get::<i64, _>(4)? as u32,
            keep_versions: row.try_get::<i64, _>(5)? as u32,
            e2e_key_id: row
                .try_get::<Option<Vec<u8>>, _>(7)?
                .map(|k| k.try_into().map_err(|_| Error::Corrupt("e2e key id is not 16 bytes".into())))
                .transpose()?,
            direct_upload: row.try_get::<i64, _>(8)? != 0,
        },
        created_at: row.try_get(6)?,
    })
}

fn version(row: &AnyRow) -> Result<Version> {
    let etag: Option<Vec<u8>> = row.try_get(4)?;
    Ok(Version {
        id: row.try_get(0)?,
        key: row.try_get(1)?,
        tombstone: row.try_get::<i64, _>(2)? != 0,
        size: row.try_get::<i64, _>(3)? as u64,
        etag: etag
            .map(|e| e.try_into().map_err(|_| Error::Corrupt("etag is not 32 bytes".into())))
            .transpose()?,
        content_type: row.try_get(5)?,
        created_at: row.try_get(6)?,
    })
}

/// The smallest string greater than every string that starts with `prefix`, when there is
/// one: `prefix` with its last character incremented.
fn after_all_with_prefix(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 + 1 {
            0xD800 => Some('\u{E000}'),
            n => char::from_u32(n),
        };
        if let Some(c) = next {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Counts manifest entries per address, for plain and sealed (end-to-end) manifests alike.
fn references(manifest: &[u8]) -> Result<BTreeMap<[u8; 32], i64>> {
    let addresses = nuage_core::e2e::manifest_addresses(manifest)
        .map_err(|e| Error::Corrupt(format!("stored manifest: {e}")))?;
    let mut refs = BTreeMap::new();
    for a in &addresses {
        *refs.entry(*a.as_bytes()).or_insert(0) += 1;
    }
    Ok(refs)
}

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
        record_change(&mut tx, account_id, seq, "bucket-create", name, None, None).await?;
        tx.commit().await?;
        Ok(b)
    }

    /// The account's bucket of this name.
    pub async fn bucket(&self, account_id: i64, name: &str) -> Result<Bucket> {
        let row =
            sqlx::query(&format!("SELECT {BUCKET_COLUMNS} FROM buckets WHERE account_id = $1 AND name = $2"))
                .bind(account_id)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?
                .ok_or(Error::BucketNotFound)?;
        bucket(&row)
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
        sqlx::query("DELETE FROM buckets WHERE id = $1").bind(id).execute(&mut *tx).await?;
        record_change(&mut tx, account_id, seq, "bucket-delete", name, None, None).await?;
        tx.commit().await?;
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
        for address in refs.keys() {
            if !new.chunks.iter().any(|c| &c.address == address) {
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
        let old = self.version(bucket, key, source).await?;
        let Some(etag) = old.etag.filter(|_| !old.tombstone) else { return Err(Error::ObjectNotFound) };
        // The current version already: nothing to make (a second copy would only push the
        // oldest kept version out).
        if let Ok(head) = self.head(bucket, key).await
            && head.id == source
            && precondition.holds(head.etag.as_ref())
        {
            return Ok(Committed { version: head, replayed: true, pruned: vec![] });
        }
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
        let new = NewVersion {
            size: old.size,
            etag,
            content_type: old.content_type,
            manifest,
            chunks,
            lease_holder: None,
        };
        self.write_job(Job {
            bucket: bucket.clone(),
            key: key.to_owned(),
            content: Some((new, refs)),
            precondition: precondition.clone(),
            idempotency_key: idempotency_key.map(str::to_owned),
            source: Some(source),
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
            let committed = write_on(&mut tx, Backend::Postgres, &job).await?;
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
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let _guard = lock.lock_owned().await;
            let batch = std::mem::take(&mut *pending.lock().unwrap_or_else(|e| e.into_inner()));
            if !batch.is_empty() {
                commit_batch(&pool, batch).await;
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
                    kind: r.try_get(1)?,
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
                "INSERT INTO placements (address, provider, state) SELECT $1, $2, 'stored' \
                 WHERE EXISTS (SELECT 1 FROM chunks WHERE address = $1) \
                 ON CONFLICT (address, provider) DO NOTHING",
            )
            .bind(address.to_vec())
            .bind(p)
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
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
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

/// Bumps the account's change sequence (taking its row lock on PostgreSQL) and returns the
/// new number.
async fn next_seq(conn: &mut AnyConnection, account_id: i64) -> Result<i64> {
    sqlx::query_scalar("UPDATE accounts SET change_seq = change_seq + 1 WHERE id = $1 RETURNING change_seq")
        .bind(account_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(Error::AccountNotFound)
}

/// The account's `used_bytes` and quota.
pub(crate) async fn account_usage(conn: &mut AnyConnection, account_id: i64) -> Result<(u64, Option<u64>)> {
    let row = sqlx::query("SELECT used_bytes, quota_bytes FROM accounts WHERE id = $1")
        .bind(account_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(Error::AccountNotFound)?;
    Ok((row.try_get::<i64, _>(0)?.max(0) as u64, row.try_get::<Option<i64>, _>(1)?.map(|q| q.max(0) as u64)))
}

/// The bytes the account's live quota holds keep, other than `except`'s.
pub(crate) async fn holds_on(conn: &mut AnyConnection, account_id: i64, except: Option<&str>) -> Result<u64> {
    let held: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM quota_holds \
         WHERE account_id = $1 AND expires_at > $2 AND holder <> $3",
    )
    .bind(account_id)
    .bind(now_ms())
    .bind(except.unwrap_or(""))
    .fetch_one(&mut *conn)
    .await?;
    Ok(held.max(0) as u64)
}

/// Adds `bytes` to the quota hold of `holder` (made if absent, lasting until `expires_at`),
/// refused with [`Error::QuotaExceeded`] when the account's usage and live holds would then
/// pass its quota. Takes the account's row lock first on PostgreSQL, so two uploads of one
/// account cannot both take the last room. The caller's transaction rolls back on a refusal.
pub(crate) async fn hold_on(
    conn: &mut AnyConnection,
    backend: Backend,
    account_id: i64,
    holder: &str,
    bytes: u64,
    expires_at: i64,
) -> Result<()> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT id FROM accounts WHERE id = $1 FOR UPDATE")
            .bind(account_id)
            .execute(&mut *conn)
            .await?;
    }
    let (used, quota) = account_usage(conn, account_id).await?;
    if let Some(quota) = quota {
        let held = holds_on(conn, account_id, None).await?;
        if used.saturating_add(held).saturating_add(bytes) > quota {
            return Err(Error::QuotaExceeded { used: used.saturating_add(held), quota, needed: bytes });
        }
    }
    sqlx::query(
        "INSERT INTO quota_holds (holder, account_id, bytes, expires_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (holder) DO UPDATE SET \
         bytes = CASE WHEN quota_holds.expires_at > $5 THEN quota_holds.bytes + excluded.bytes \
         ELSE excluded.bytes END, \
         expires_at = CASE WHEN excluded.expires_at > quota_holds.expires_at \
         THEN excluded.expires_at ELSE quota_holds.expires_at END",
    )
    .bind(holder)
    .bind(account_id)
    .bind(bytes as i64)
    .bind(expires_at)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// ` FOR UPDATE OF table` on PostgreSQL; nothing on SQLite, whose writers are serialized.
fn for_update_of(backend: Backend, table: &str) -> String {
    match backend {
        Backend::Sqlite => String::new(),
        Backend::Postgres => format!(" FOR UPDATE OF {table}"),
    }
}

/// `LIMIT` with no bound before an `OFFSET`: `-1` on SQLite, `ALL` on PostgreSQL.
fn no_limit(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "LIMIT -1",
        Backend::Postgres => "LIMIT ALL",
    }
}

async fn record_change(
    conn: &mut AnyConnection,
    account_id: i64,
    seq: i64,
    kind: &str,
    bucket: &str,
    key: Option<&str>,
    version_id: Option<i64>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO changes (account_id, seq, kind, bucket, key, version_id, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(account_id)
    .bind(seq)
    .bind(kind)
    .bind(bucket)
    .bind(key.map(str::to_owned))
    .bind(version_id)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Removes versions: their chunk references, their bytes from the account's usage, their
/// rows.
async fn drop_versions(conn: &mut AnyConnection, account_id: i64, ids: &[i64]) -> Result<()> {
    let now = now_ms();
    for &id in ids {
        let row = sqlx::query("SELECT charged, manifest FROM versions WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
        let charged: i64 = row.try_get(0)?;
        let manifest: Option<Vec<u8>> = row.try_get(1)?;
        if let Some(m) = manifest {
            for (address, count) in references(&m)? {
                sqlx::query(
                    "UPDATE chunks SET refcount = refcount - $1, unreferenced_since = \
                     CASE WHEN refcount - $1 = 0 THEN $2 ELSE unreferenced_since END WHERE address = $3",
                )
                .bind(count)
                .bind(now)
                .bind(address.to_vec())
                .execute(&mut *conn)
                .await?;
            }
        }
        sqlx::query("UPDATE accounts SET used_bytes = used_bytes - $1 WHERE id = $2")
            .bind(charged)
            .bind(account_id)
            .execute(&mut *conn)
            .await?;
        sqlx::query("DELETE FROM uploads WHERE version_id = $1").bind(id).execute(&mut *conn).await?;
        sqlx::query("DELETE FROM versions WHERE id = $1").bind(id).execute(&mut *conn).await?;
    }
    Ok(())
}

/// A version write, owned, so that it can wait in a batch.
#[derive(Debug)]
pub(crate) struct Job {
    bucket: Bucket,
    key: String,
    content: Option<(NewVersion, BTreeMap<[u8; 32], i64>)>,
    precondition: Precondition,
    idempotency_key: Option<String>,
    /// The version whose manifest this one copies: it must still exist at the commit.
    source: Option<i64>,
}

/// A write waiting for the next group commit, with where to send its outcome.
#[derive(Debug)]
pub(crate) struct Pending {
    job: Job,
    reply: oneshot::Sender<Result<Committed>>,
}

/// Commits `batch` in one transaction, each write in a savepoint: a write refused for its
/// own reason (quota, precondition) is rolled back alone; a failure of the commit itself
/// fails them all.
async fn commit_batch(pool: &AnyPool, batch: Vec<Pending>) {
    let mut outcomes: Vec<Result<Committed>> = Vec::with_capacity(batch.len());
    let result: Result<()> = async {
        let mut tx = pool.begin().await?;
        for p in &batch {
            let mut savepoint = Acquire::begin(&mut tx).await?;
            let outcome = write_on(&mut savepoint, Backend::Sqlite, &p.job).await;
            if outcome.is_ok() {
                savepoint.commit().await?;
            } else {
                savepoint.rollback().await?;
            }
            outcomes.push(outcome);
        }
        tx.commit().await?;
        Ok(())
    }
    .await;
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
async fn write_on(conn: &mut AnyConnection, backend: Backend, job: &Job) -> Result<Committed> {
    let Job { bucket, key, content, precondition, idempotency_key, source } = job;
    let key = key.as_str();
    let idempotency_key = idempotency_key.as_deref();
    let content = content.as_ref().map(|(n, r)| (n, r));
    let account_id = bucket.account_id;
    let seq = next_seq(conn, account_id).await?;
    let holder = content.as_ref().and_then(|(n, _)| n.lease_holder.as_deref());
    if let Some(idem) = idempotency_key {
        let prior = sqlx::query(
            "SELECT bucket_id, key, version_id FROM uploads WHERE account_id = $1 AND idempotency_key = $2",
        )
        .bind(account_id)
        .bind(idem)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = prior {
            let (b, k, v): (i64, String, i64) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            if b != bucket.id || k != key {
                return Err(Error::IdempotencyConflict);
            }
            // Nothing changes: give back the sequence number taken above (the row is ours).
            sqlx::query("UPDATE accounts SET change_seq = change_seq - 1 WHERE id = $1")
                .bind(account_id)
                .execute(&mut *conn)
                .await?;
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
                crate::gc::release_on(conn, holder).await?; // nothing more to commit
            }
            return Ok(Committed { version, replayed: true, pruned: vec![] });
        }
    }
    if let (Some(holder), Some((new, _))) = (holder, &content) {
        // A smart upload's session row first (its id starts `up_`; a simple upload's holder
        // never does): its abort locks it too, so the two never both succeed.
        if holder.starts_with("up_") {
            crate::uploads::lock_session(conn, backend, holder).await?;
        }
        // The chunks are referenced once this commits, and their leases go with it; but
        // only if the leases still hold: else a collector may have deleted them.
        let addresses: Vec<[u8; 32]> = new.chunks.iter().map(|c| c.address).collect();
        if !crate::gc::still_leased_on(conn, backend, holder, &addresses).await? {
            return Err(Error::LeaseLost);
        }
        crate::gc::release_on(conn, holder).await?;
    }
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM buckets WHERE id = $1")
        .bind(bucket.id)
        .fetch_optional(&mut *conn)
        .await?;
    if exists.is_none() {
        return Err(Error::BucketNotFound);
    }
    let head = sqlx::query(&format!(
        "SELECT o.id, o.live, v.etag FROM objects o LEFT JOIN versions v ON v.id = o.head_version \
         WHERE o.bucket_id = $1 AND o.key = $2{}",
        for_update_of(backend, "o")
    ))
    .bind(bucket.id)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    let (object_id, current) = match &head {
        Some(row) => {
            let live = row.try_get::<i64, _>(1)? != 0;
            let etag: Option<Vec<u8>> = row.try_get(2)?;
            let etag = etag.and_then(|e| <[u8; 32]>::try_from(e).ok()).filter(|_| live);
            (Some(row.try_get::<i64, _>(0)?), etag)
        }
        None => (None, None),
    };
    if !precondition.holds(current.as_ref()) {
        return Err(Error::PreconditionFailed);
    }
    if content.is_none() && current.is_none() {
        return Err(Error::ObjectNotFound);
    }
    if let Some(source) = source {
        // Under the account's lock (which every prune takes): while the source is here, its
        // chunks are referenced, and no collector is deleting them.
        let here: Option<i64> =
            sqlx::query_scalar("SELECT id FROM versions WHERE id = $1 AND object_id = $2 AND tombstone = 0")
                .bind(source)
                .bind(object_id)
                .fetch_optional(&mut *conn)
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
        sqlx::query("UPDATE accounts SET used_bytes = used_bytes + $1 WHERE id = $2")
            .bind(charged as i64)
            .bind(account_id)
            .execute(&mut *conn)
            .await?;
    }
    let object_id = match object_id {
        Some(id) => id,
        None => {
            sqlx::query_scalar("INSERT INTO objects (bucket_id, key) VALUES ($1, $2) RETURNING id")
                .bind(bucket.id)
                .bind(key)
                .fetch_one(&mut *conn)
                .await?
        }
    };
    let now = now_ms();
    let row = match &content {
        Some((new, _)) => sqlx::query(
            "INSERT INTO versions (object_id, tombstone, size, etag, content_type, manifest, created_at, charged) \
             VALUES ($1, 0, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(object_id)
        .bind(new.size as i64)
        .bind(new.etag.to_vec())
        .bind(new.content_type.clone())
        .bind(new.manifest.clone())
        .bind(now)
        .bind(charged as i64),
        None => sqlx::query(
            "INSERT INTO versions (object_id, tombstone, size, created_at) VALUES ($1, 1, 0, $2) RETURNING id",
        )
        .bind(object_id)
        .bind(now),
    }
    .fetch_one(&mut *conn)
    .await?;
    let version_id: i64 = row.try_get(0)?;
    sqlx::query("UPDATE objects SET head_version = $1, live = $2 WHERE id = $3")
        .bind(version_id)
        .bind(i64::from(content.is_some()))
        .bind(object_id)
        .execute(&mut *conn)
        .await?;
    if let Some((new, refs)) = &content {
        // In address order, so that two transactions never lock chunk rows in opposite orders.
        let mut chunks: Vec<&ChunkRef> = new.chunks.iter().collect();
        chunks.sort_by_key(|c| c.address);
        for c in chunks {
            let count = refs.get(&c.address).copied().unwrap_or(0);
            // `replicas`: the most copies any bucket referencing the chunk asks for.
            sqlx::query(
                "INSERT INTO chunks (address, stored_size, refcount, created_at, replicas) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (address) DO UPDATE SET refcount = chunks.refcount + excluded.refcount, \
                 unreferenced_since = NULL, replicas = CASE WHEN excluded.replicas > chunks.replicas \
                 THEN excluded.replicas ELSE chunks.replicas END",
            )
            .bind(c.address.to_vec())
            .bind(i64::from(c.stored_size))
            .bind(count)
            .bind(now)
            .bind(i64::from(bucket.policy.replicas))
            .execute(&mut *conn)
            .await?;
            for p in &c.providers {
                // A placement already recorded keeps its state (see `add_placements`).
                sqlx::query(
                    "INSERT INTO placements (address, provider, state) VALUES ($1, $2, 'stored') \
                     ON CONFLICT (address, provider) DO NOTHING",
                )
                .bind(c.address.to_vec())
                .bind(p)
                .execute(&mut *conn)
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
            let mut q = sqlx::query(&sql).bind(account_id);
            for c in batch {
                q = q
                    .bind(c.address.to_vec())
                    .bind(c.opened.map(|o| i64::from(o.plain_len)))
                    .bind(c.opened.map(|o| o.key_hash.to_vec()));
            }
            q.execute(&mut *conn).await?;
        }
        // A copy that landed on a drained provider (a write begun before the drain, committed
        // after it) takes the drain up again, so that it moves too.
        let mut providers: Vec<&String> = new.chunks.iter().flat_map(|c| &c.providers).collect();
        providers.sort();
        providers.dedup();
        for p in providers {
            sqlx::query("UPDATE providers SET state = 'draining' WHERE name = $1 AND state = 'drained'")
                .bind(p)
                .execute(&mut *conn)
                .await?;
        }
    }
    let kind = if content.is_some() { "put" } else { "delete" };
    record_change(conn, account_id, seq, kind, &bucket.name, Some(key), Some(version_id)).await?;
    if let Some(idem) = idempotency_key {
        sqlx::query(
            "INSERT INTO uploads (account_id, idempotency_key, bucket_id, key, version_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(account_id)
        .bind(idem)
        .bind(bucket.id)
        .bind(key)
        .bind(version_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    let mut pruned = Vec::new();
    if bucket.policy.keep_versions > 0 {
        pruned = sqlx::query_scalar(
            "SELECT id FROM versions WHERE object_id = $1 ORDER BY id DESC LIMIT -1 OFFSET $2"
                .replace("LIMIT -1", no_limit(backend))
                .as_str(),
        )
        .bind(object_id)
        .bind(i64::from(bucket.policy.keep_versions))
        .fetch_all(&mut *conn)
        .await?;
        drop_versions(conn, account_id, &pruned).await?;
    }
    let version = Version {
        id: version_id,
        key: key.to_owned(),
        tombstone: content.is_none(),
        size,
        etag: content.as_ref().map(|(n, _)| n.etag),
        content_type: content.as_ref().and_then(|(n, _)| n.content_type.clone()),
        created_at: now,
    };
    Ok(Committed { version, replayed: false, pruned })
}

/// One version of a key, tombstones included.
async fn version_on(conn: &mut AnyConnection, bucket_id: i64, key: &str, id: i64) -> Result<Version> {
    let row = sqlx::query(&format!(
        "SELECT {VERSION_COLUMNS} FROM objects o JOIN versions v ON v.object_id = o.id \
         WHERE o.bucket_id = $1 AND o.key = $2 AND v.id = $3"
    ))
    .bind(bucket_id)
    .bind(key)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(Error::ObjectNotFound)?;
    version(&row)
}
