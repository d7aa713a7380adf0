//! Multipart uploads (S3's) between their start and their completion: the upload, its parts
//! and their chunks. A part's chunks are leased to the upload (its id is the lease holder)
//! from before they are stored until the completion references them or the abort drops them;
//! the completion is a version write ([`Meta::put_version`] with the upload's id as the lease
//! holder), which deletes the upload in its own transaction (see `write.rs`), so that an
//! upload completes once, or is aborted, never both.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::model::{ChunkRef, Opened};
use crate::sql::{array32, now_ms};
use crate::{Backend, Error, Meta, Result};

pub use crate::sql::MULTIPART_PREFIX;

/// A multipart upload under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartUpload {
    /// `mp_` + 32 hex.
    pub id: String,
    /// Owner.
    pub account_id: i64,
    /// Target bucket.
    pub bucket_id: i64,
    /// Target key.
    pub key: String,
    /// The version's `Content-Type`.
    pub content_type: Option<String>,
    /// The version's other attributes (the object service's JSON).
    pub attrs: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// After this it takes no part and cannot complete, Unix ms.
    pub expires_at: i64,
}

/// One stored part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// 1 to 10,000.
    pub number: u32,
    /// Plaintext bytes.
    pub size: u64,
    /// MD5 of its content (its S3 entity tag).
    pub md5: [u8; 16],
    /// The checksums computed as it streamed (the object service's JSON).
    pub checksums: Option<String>,
    /// Its chunks, as an encoded manifest of version 1 (hash: the part's BLAKE3).
    pub manifest: Vec<u8>,
    /// Each distinct chunk with its placements, for the commit.
    pub chunks: Vec<ChunkRef>,
    /// Unix ms.
    pub created_at: i64,
}

const UPLOAD_COLUMNS: &str = "id, account_id, bucket_id, key, content_type, attrs, created_at, expires_at";

fn upload(row: &AnyRow) -> Result<MultipartUpload> {
    Ok(MultipartUpload {
        id: row.try_get(0)?,
        account_id: row.try_get(1)?,
        bucket_id: row.try_get(2)?,
        key: row.try_get(3)?,
        content_type: row.try_get(4)?,
        attrs: row.try_get(5)?,
        created_at: row.try_get(6)?,
        expires_at: row.try_get(7)?,
    })
}

/// The chunk references of a part, packed: per chunk its address (32), stored size (u32),
/// an opened flag (u8) with the plaintext length (u32) and key hash (32) when set, then its
/// providers: a count (u16) and each name's length (u16) and bytes. Integers little-endian.
fn encode_refs(refs: &[ChunkRef]) -> Vec<u8> {
    let mut out = Vec::with_capacity(refs.len() * 80);
    for r in refs {
        out.extend_from_slice(&r.address);
        out.extend_from_slice(&r.stored_size.to_le_bytes());
        match r.opened {
            Some(o) => {
                out.push(1);
                out.extend_from_slice(&o.plain_len.to_le_bytes());
                out.extend_from_slice(&o.key_hash);
            }
            None => out.push(0),
        }
        // Provider names are short; a count or a name past u16 cannot be configured.
        out.extend_from_slice(&(r.providers.len().min(u16::MAX as usize) as u16).to_le_bytes());
        for p in r.providers.iter().take(u16::MAX as usize) {
            let name = &p.as_bytes()[..p.len().min(u16::MAX as usize)];
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name);
        }
    }
    out
}

/// Reads a packed form from the front.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(Error::Corrupt("a part's chunk references do not decode".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
}

fn decode_refs(bytes: &[u8]) -> Result<Vec<ChunkRef>> {
    let mut at = Cursor(bytes);
    let mut refs = Vec::new();
    while !at.0.is_empty() {
        let address = array32(at.take(32)?.to_vec(), "chunk address")?;
        let stored_size = at.u32()?;
        let opened = match at.byte()? {
            0 => None,
            1 => Some(Opened {
                plain_len: at.u32()?,
                key_hash: array32(at.take(32)?.to_vec(), "chunk key hash")?,
            }),
            _ => return Err(Error::Corrupt("a part's chunk references do not decode".into())),
        };
        let count = at.u16()?;
        let mut providers = Vec::with_capacity(count.min(64) as usize);
        for _ in 0..count {
            let len = at.u16()? as usize;
            let name = String::from_utf8(at.take(len)?.to_vec())
                .map_err(|_| Error::Corrupt("a part's chunk references do not decode".into()))?;
            providers.push(name);
        }
        refs.push(ChunkRef { address, stored_size, providers, opened });
    }
    Ok(refs)
}

fn part(row: &AnyRow, with_content: bool) -> Result<Part> {
    let md5: Vec<u8> = row.try_get(2)?;
    Ok(Part {
        number: row.try_get::<i64, _>(0)? as u32,
        size: row.try_get::<i64, _>(1)?.max(0) as u64,
        md5: md5.try_into().map_err(|_| Error::Corrupt("a part's MD5 is not 16 bytes".into()))?,
        checksums: row.try_get(3)?,
        manifest: if with_content { row.try_get(4)? } else { Vec::new() },
        chunks: if with_content { decode_refs(&row.try_get::<Vec<u8>, _>(5)?)? } else { Vec::new() },
        created_at: row.try_get(6)?,
    })
}

impl Meta {
    /// Records a new multipart upload.
    pub async fn create_multipart(&self, u: &MultipartUpload) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query(&format!(
            "INSERT INTO multipart_uploads ({UPLOAD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&u.id)
        .bind(u.account_id)
        .bind(u.bucket_id)
        .bind(&u.key)
        .bind(&u.content_type)
        .bind(&u.attrs)
        .bind(u.created_at)
        .bind(u.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The live upload `id` of this bucket and key ([`Error::MultipartNotFound`] for one
    /// that is not, or not any more).
    pub async fn multipart(&self, bucket_id: i64, key: &str, id: &str) -> Result<MultipartUpload> {
        let row = sqlx::query(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM multipart_uploads \
             WHERE id = $1 AND bucket_id = $2 AND key = $3 AND expires_at > $4"
        ))
        .bind(id)
        .bind(bucket_id)
        .bind(key)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(Error::MultipartNotFound)?;
        upload(&row)
    }

    /// Records a stored part (replacing one of the same number) and keeps the upload (and so
    /// its chunks' leases) and its quota hold alive until `expires_at`; refused with
    /// [`Error::MultipartNotFound`] when the upload is gone (completed, aborted, expired).
    pub async fn put_part(&self, upload: &MultipartUpload, p: &Part, expires_at: i64) -> Result<()> {
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let lock = if self.backend() == Backend::Postgres { " FOR UPDATE" } else { "" };
        let live: Option<String> = sqlx::query_scalar(&format!(
            "SELECT id FROM multipart_uploads WHERE id = $1 AND expires_at > $2{lock}"
        ))
        .bind(&upload.id)
        .bind(now_ms())
        .fetch_optional(&mut *tx)
        .await?;
        if live.is_none() {
            return Err(Error::MultipartNotFound);
        }
        sqlx::query("DELETE FROM multipart_parts WHERE upload_id = $1 AND number = $2")
            .bind(&upload.id)
            .bind(i64::from(p.number))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO multipart_parts (upload_id, number, size, md5, checksums, manifest, chunk_refs, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&upload.id)
        .bind(i64::from(p.number))
        .bind(p.size as i64)
        .bind(p.md5.to_vec())
        .bind(&p.checksums)
        .bind(&p.manifest)
        .bind(encode_refs(&p.chunks))
        .bind(p.created_at)
        .execute(&mut *tx)
        .await?;
        // Its chunks' leases last as long as the upload (see `DROP_EXPIRED_LEASES`).
        for sql in [
            "UPDATE multipart_uploads SET expires_at = $1 WHERE id = $2 AND expires_at < $1",
            "UPDATE quota_holds SET expires_at = $1 WHERE holder = $2 AND expires_at < $1",
        ] {
            sqlx::query(sql).bind(expires_at).bind(&upload.id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Up to `limit` parts of the upload numbered after `after`, in order; with their
    /// manifests and chunks when `with_content` (for the completion).
    pub async fn parts(
        &self,
        upload_id: &str,
        after: u32,
        limit: usize,
        with_content: bool,
    ) -> Result<Vec<Part>> {
        let content = if with_content { "manifest, chunk_refs" } else { "NULL, NULL" };
        sqlx::query(&format!(
            "SELECT number, size, md5, checksums, {content}, created_at FROM multipart_parts \
             WHERE upload_id = $1 AND number > $2 ORDER BY number LIMIT $3"
        ))
        .bind(upload_id)
        .bind(i64::from(after))
        .bind(limit.min(i64::MAX as usize) as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| part(row, with_content))
        .collect()
    }

    /// Up to `limit` live uploads of the bucket whose keys start with `prefix`, in key order
    /// then id order, after (`key`, `id`) when given (after every upload of `key` when the id
    /// is empty).
    pub async fn multiparts(
        &self,
        bucket_id: i64,
        prefix: &str,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<MultipartUpload>> {
        let (after_key, after_id) = after.unwrap_or(("", ""));
        // Keys sort as bytes (`COLLATE "C"` on PostgreSQL): those under the prefix are
        // together, from the prefix itself on.
        let rows = sqlx::query(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM multipart_uploads WHERE bucket_id = $1 AND expires_at > $2 \
             AND key >= $5 AND (key > $3 OR (key = $3 AND $4 <> '' AND id > $4)) ORDER BY key, id LIMIT $6"
        ))
        .bind(bucket_id)
        .bind(now_ms())
        .bind(after_key)
        .bind(after_id)
        .bind(prefix)
        .bind(limit.min(10_000) as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for row in &rows {
            let u = upload(row)?;
            if !u.key.starts_with(prefix) {
                break; // past the keys under the prefix
            }
            out.push(u);
        }
        Ok(out)
    }

    /// Ends an upload that will not complete: its row and its parts go, so that it can no
    /// longer take parts or complete. Refused with [`Error::MultipartNotFound`] when it is
    /// gone already. The caller then drops its leases and deletes the chunks nothing else
    /// relies on.
    pub async fn abort_multipart(&self, upload: &MultipartUpload) -> Result<()> {
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query("DELETE FROM multipart_uploads WHERE id = $1")
            .bind(&upload.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone == 0 {
            return Err(Error::MultipartNotFound);
        }
        sqlx::query("DELETE FROM multipart_parts WHERE upload_id = $1")
            .bind(&upload.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets the uploads that expired before `before`, with their parts and quota holds
    /// (their leases expired with them: the collector takes their chunks); returns how many.
    pub async fn drop_multiparts_expired_before(&self, before: i64) -> Result<u64> {
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM quota_holds WHERE holder IN (SELECT id FROM multipart_uploads WHERE expires_at < $1)",
            "DELETE FROM multipart_parts WHERE upload_id IN (SELECT id FROM multipart_uploads WHERE expires_at < $1)",
        ] {
            sqlx::query(sql).bind(before).execute(&mut *tx).await?;
        }
        let done = sqlx::query("DELETE FROM multipart_uploads WHERE expires_at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_round_trip() {
        let refs = vec![
            ChunkRef {
                address: [1; 32],
                stored_size: 7,
                providers: vec!["fs".into(), "s3-b".into()],
                opened: None,
            },
            ChunkRef {
                address: [2; 32],
                stored_size: u32::MAX,
                providers: vec![],
                opened: Some(Opened { plain_len: 9, key_hash: [3; 32] }),
            },
        ];
        let bytes = encode_refs(&refs);
        assert_eq!(decode_refs(&bytes).unwrap(), refs);
        assert_eq!(decode_refs(&[]).unwrap(), vec![]);
        for cut in [1, 32, 36, 37, 38, bytes.len() - 1] {
            assert!(decode_refs(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
