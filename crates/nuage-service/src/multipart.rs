//! Multipart uploads: a version sent in numbered parts, each streamed through the same
//! pipeline as a single write (cut, sealed, stored, made durable, its chunks leased to the
//! upload), then completed by joining the parts' chunk lists into one manifest without
//! reading a byte again (`nuage_core::manifest`, version 2). S3's semantics: parts of
//! 5 MiB to 5 GiB (the last may be smaller), numbers 1 to 10,000, a part sent again
//! replaces the earlier one, and the version's MD5 tag is the MD5 of the parts' MD5s with
//! their count (`…-N`). An upload left idle for `[workers] multipart_idle_secs` expires: its
//! chunks' leases run out with it and the collector takes them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use md5::{Digest, Md5};
use nuage_core::Manifest;
use nuage_meta::{
    Bucket, ChunkRef, Committed, Md5Tag, MultipartUpload, NewVersion, Part, Precondition, now_ms,
};

use crate::digests::{Algorithm, ContentChecks};
use crate::leases::{self, Holder};
use crate::metrics::add;
use crate::names::check_key;
use crate::objects::{Attributes, precondition_failed, refuse_e2e};
use crate::{Nuage, ServiceError, ServiceResult};

/// The smallest part but the last (S3's 5 MiB).
pub const PART_MIN: u64 = 5 << 20;
/// The largest part (S3's 5 GiB).
pub const PART_MAX: u64 = 5 << 30;
/// The highest part number (S3's 10,000).
pub const PART_NUMBER_MAX: u32 = nuage_core::manifest::MAX_PARTS as u32;

/// A part as stored: what UploadPart answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPart {
    /// Its number.
    pub number: u32,
    /// Its size.
    pub size: u64,
    /// The MD5 of its content, its S3 entity tag.
    pub md5: [u8; 16],
    /// The checksums computed as it streamed.
    pub checksums: BTreeMap<Algorithm, String>,
    /// When it was stored, Unix ms.
    pub created_at: i64,
}

impl StoredPart {
    fn of(p: &Part) -> StoredPart {
        StoredPart {
            number: p.number,
            size: p.size,
            md5: p.md5,
            checksums: p.checksums.as_deref().and_then(|c| serde_json::from_str(c).ok()).unwrap_or_default(),
            created_at: p.created_at,
        }
    }
}

/// One part a completion names: its number and, when given, the entity tag it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChosenPart {
    /// Its number.
    pub number: u32,
    /// Its entity tag as the client has it (quoted or not), when given.
    pub etag: Option<String>,
}

fn invalid_part(message: String) -> ServiceError {
    ServiceError::invalid("invalid_part", message)
}

/// Refuses a part number outside 1 to 10,000 (`invalid_part_number`).
fn check_part_number(number: i64) -> ServiceResult<u32> {
    u32::try_from(number).ok().filter(|n| (1..=PART_NUMBER_MAX).contains(n)).ok_or_else(|| {
        ServiceError::invalid(
            "invalid_part_number",
            format!("a part number is 1 to {PART_NUMBER_MAX}, not {number}"),
        )
    })
}

impl Nuage {
    /// Until when an upload taking a part now lives, Unix ms.
    fn multipart_until(&self) -> i64 {
        let secs = self.config.workers.multipart_idle_secs;
        now_ms().saturating_add(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX))
    }

    /// The caller's bucket for a multipart operation on `key`: the key checked, the bucket's
    /// kind checked (an end-to-end bucket's content is never seen by the server).
    async fn multipart_bucket(
        &self,
        account_id: i64,
        bucket: &str,
        key: &str,
    ) -> ServiceResult<(Bucket, String)> {
        let key = check_key(key)?;
        let bucket = self.meta.bucket(account_id, bucket).await?;
        refuse_e2e(&bucket)?;
        Ok((bucket, key))
    }

    /// Starts a multipart upload of `key`; the version it completes into will have this
    /// content type and these attributes (checked now).
    pub async fn start_multipart(
        &self,
        account_id: i64,
        bucket: &str,
        key: &str,
        content_type: Option<String>,
        attributes: Attributes,
    ) -> ServiceResult<MultipartUpload> {
        let (bucket, key) = self.multipart_bucket(account_id, bucket, key).await?;
        attributes.check()?;
        let upload = MultipartUpload {
            id: format!("{}{}", nuage_meta::MULTIPART_PREFIX, hex::encode(rand::random::<[u8; 16]>())),
            account_id,
            bucket_id: bucket.id,
            key,
            content_type,
            attrs: attributes.encode(),
            created_at: now_ms(),
            expires_at: self.multipart_until(),
        };
        self.meta.create_multipart(&upload).await?;
        Ok(upload)
    }

    /// The live upload `id` of the caller's `key`, with its bucket.
    pub async fn multipart(
        &self,
        account_id: i64,
        bucket: &str,
        key: &str,
        id: &str,
    ) -> ServiceResult<(Bucket, MultipartUpload)> {
        let (bucket, key) = self.multipart_bucket(account_id, bucket, key).await?;
        let upload = self.meta.multipart(bucket.id, &key, id).await?;
        Ok((bucket, upload))
    }

    /// Stores part `number` of upload `id`, streaming: checked as a single write's content
    /// is (`content_length`, `checks`), made durable, then recorded (replacing a part of the
    /// same number). Its chunks stay leased to the upload, and their room held, until it
    /// completes, is aborted or expires; a refused part leaves them to that end too.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_part<S, E>(
        self: &Arc<Self>,
        account_id: i64,
        bucket: &str,
        key: &str,
        id: &str,
        number: i64,
        content: S,
        content_length: Option<u64>,
        checks: ContentChecks,
    ) -> ServiceResult<StoredPart>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let number = check_part_number(number)?;
        let (bucket, upload) = self.multipart(account_id, bucket, key, id).await?;
        if content_length.is_some_and(|n| n > PART_MAX) {
            return Err(ServiceError::new(
                crate::ErrorKind::TooLarge,
                "part_too_large",
                format!("a part is at most {PART_MAX} bytes"),
            ));
        }
        let algorithms = checks.prepare()?;
        let expires_at = self.multipart_until();
        let (manifest, chunks, digests) = self
            .store_checked(
                &bucket,
                Box::pin(content),
                &algorithms,
                checks,
                content_length,
                &upload.id,
                expires_at,
            )
            .await?;
        if manifest.size > PART_MAX {
            return Err(ServiceError::new(
                crate::ErrorKind::TooLarge,
                "part_too_large",
                format!("a part is at most {PART_MAX} bytes"),
            ));
        }
        let part = Part {
            number,
            size: manifest.size,
            md5: digests.md5,
            checksums: (!digests.checksums.is_empty())
                .then(|| serde_json::to_string(&digests.checksums).expect("plain data")),
            manifest: manifest.encode(),
            chunks,
            created_at: now_ms(),
        };
        if let Err(e) = self.meta.put_part(&upload, &part, expires_at).await {
            if matches!(e, nuage_meta::Error::MultipartNotFound) {
                // Completed or aborted while this part streamed: what it leased and held
                // goes now rather than when its leases expire.
                leases::release(self, &Holder::multipart(&upload.id)).await;
            }
            return Err(e.into());
        }
        Ok(StoredPart::of(&part))
    }

    /// Stores part `number` of upload `id` from a version of `from`'s key (its current one,
    /// or `version`, under the source's `conditions`), all of it or `range` of it. A whole
    /// version written in one piece becomes the part as it is: its chunk list, its MD5, no
    /// byte read or moved (its chunks leased to the upload, then the source checked still
    /// there, so none can be collected before the completion). Anything else (a range, a
    /// version assembled from parts, whose MD5 of the whole is not known) is read and
    /// written as a part is, its chunks deduplicated against the source's.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_part_copy(
        self: &Arc<Self>,
        account_id: i64,
        bucket: &str,
        key: &str,
        id: &str,
        number: i64,
        from: &str,
        from_key: crate::names::ReadKey,
        version: Option<i64>,
        conditions: crate::read::ReadConditions,
        range: Option<nuage_proto::range::ByteRange>,
    ) -> ServiceResult<(nuage_meta::Version, StoredPart)> {
        let number = check_part_number(number)?;
        let (_, upload) = self.multipart(account_id, bucket, key, id).await?;
        let options = crate::read::ReadOptions { version, conditions, range };
        let read = self.read(account_id, from, from_key, options).await?;
        if read.answer == crate::read::Answer::NotModified {
            return Err(precondition_failed());
        }
        let source = read.version.clone();
        let whole = read.answer == crate::read::Answer::Full;
        let single = source.md5.filter(|m| m.parts.is_none());
        let manifest = match (whole, single) {
            (true, Some(_)) => Some(
                Manifest::decode(&self.meta.manifest(source.id).await?)
                    .map_err(|e| ServiceError::internal("stored manifest", e))?,
            ),
            _ => None,
        };
        let (Some(manifest), Some(md5)) = (manifest.filter(|m| m.parts.is_empty()), single) else {
            let (start, end) = read.span();
            let part = self
                .upload_part(
                    account_id,
                    bucket,
                    key,
                    id,
                    i64::from(number),
                    read.content(),
                    Some(end - start),
                    ContentChecks::default(),
                )
                .await?;
            return Ok((source, part));
        };
        if manifest.size > PART_MAX {
            return Err(ServiceError::new(
                crate::ErrorKind::TooLarge,
                "part_too_large",
                format!("a part is at most {PART_MAX} bytes"),
            ));
        }
        let mut addresses: Vec<[u8; 32]> = manifest.entries.iter().map(|e| *e.address.as_bytes()).collect();
        addresses.sort_unstable();
        addresses.dedup();
        let held = self.meta.held_chunks(&addresses).await?;
        // Placements stay as the index has them: the completion records none again.
        let chunks: Vec<ChunkRef> = addresses
            .iter()
            .map(|a| {
                let (stored_size, _) = held.get(a).cloned().ok_or_else(|| {
                    ServiceError::internal(
                        "chunk index",
                        format!("version {} names a chunk it lacks", source.id),
                    )
                })?;
                Ok(ChunkRef { address: *a, stored_size, providers: Vec::new(), opened: None })
            })
            .collect::<ServiceResult<_>>()?;
        let account = self.meta.account(account_id).await?;
        let expires_at = self.multipart_until();
        let lease = leases::Lease {
            holder: &upload.id,
            expires_at,
            hold_for: account.quota_bytes.map(|_| account_id),
        };
        let bytes = chunks.iter().map(|c| u64::from(c.stored_size)).sum();
        leases::lease(self, &lease, &addresses, bytes).await?;
        // Leased now: while the source is still there its chunks are referenced, so none was
        // being collected, and none will be before the completion.
        let origin = self.meta.bucket(account_id, from).await?;
        let still = self.meta.version(&origin, &source.key, source.id).await?;
        if still.tombstone {
            return Err(nuage_meta::Error::ObjectNotFound.into());
        }
        let part = Part {
            number,
            size: manifest.size,
            md5: md5.digest,
            checksums: None,
            manifest: manifest.encode(),
            chunks,
            created_at: now_ms(),
        };
        if let Err(e) = self.meta.put_part(&upload, &part, expires_at).await {
            if matches!(e, nuage_meta::Error::MultipartNotFound) {
                // Completed or aborted meanwhile: nothing else holds these leases now.
                leases::release(self, &Holder::multipart(&upload.id)).await;
            }
            return Err(e.into());
        }
        Ok((source, StoredPart::of(&part)))
    }

    /// Up to `limit` parts of upload `id` numbered after `after`, in order.
    pub async fn parts(
        &self,
        account_id: i64,
        bucket: &str,
        key: &str,
        id: &str,
        after: u32,
        limit: usize,
    ) -> ServiceResult<(MultipartUpload, Vec<StoredPart>)> {
        let (_, upload) = self.multipart(account_id, bucket, key, id).await?;
        let parts = self.meta.parts(&upload.id, after, limit, false).await?;
        Ok((upload, parts.iter().map(StoredPart::of).collect()))
    }

    /// Up to `limit` uploads under way in the caller's `bucket` whose keys start with
    /// `prefix`, in key then id order, after (`key`, `id`) when given.
    pub async fn multiparts(
        &self,
        account_id: i64,
        bucket: &str,
        prefix: &str,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> ServiceResult<Vec<MultipartUpload>> {
        let bucket = self.meta.bucket(account_id, bucket).await?;
        Ok(self.meta.multiparts(bucket.id, prefix, after, limit).await?)
    }

    /// Aborts upload `id`: it takes no more parts and cannot complete; its leases and quota
    /// hold go now, and the chunks it stored that nothing else relies on are deleted.
    pub async fn abort_multipart(
        self: &Arc<Self>,
        account_id: i64,
        bucket: &str,
        key: &str,
        id: &str,
    ) -> ServiceResult<()> {
        let (_, upload) = self.multipart(account_id, bucket, key, id).await?;
        self.meta.abort_multipart(&upload).await?;
        leases::release(self, &Holder::multipart(&upload.id)).await;
        add(&self.metrics.uploads_aborted, 1);
        Ok(())
    }

    /// Completes upload `id` with the parts `chosen` (ascending numbers, each stored, its
    /// entity tag matching when given, each but the last at least [`PART_MIN`]): one
    /// version whose manifest joins the parts' chunk lists, committed in one transaction
    /// that also ends the upload. A retry of a completion that committed answers as the
    /// first time did.
    pub async fn complete_multipart(
        self: &Arc<Self>,
        account_id: i64,
        bucket: &str,
        key: &str,
        id: &str,
        chosen: &[ChosenPart],
        precondition: &Precondition,
    ) -> ServiceResult<(Bucket, Committed)> {
        let (bucket, key) = self.multipart_bucket(account_id, bucket, key).await?;
        let idempotency_key = format!("multipart:{id}");
        if let Some((bucket_id, prior_key, version_id)) =
            self.meta.idempotent_write(account_id, &idempotency_key).await?
            && bucket_id == bucket.id
            && prior_key == key
        {
            let version = self.meta.version(&bucket, &key, version_id).await?;
            return Ok((bucket, Committed { version, replayed: true, pruned: Vec::new() }));
        }
        let upload = self.meta.multipart(bucket.id, &key, id).await?;
        if chosen.is_empty() {
            return Err(invalid_part("a completion names at least one part".into()));
        }
        if chosen.windows(2).any(|w| w[0].number >= w[1].number) {
            return Err(ServiceError::invalid(
                "invalid_part_order",
                "the parts are not in ascending order of their numbers",
            ));
        }
        if precondition != &Precondition::default() {
            // Fail before joining anything; the commit checks again under the account's lock.
            let current = match self.meta.head(&bucket, &key).await {
                Ok(v) => v.tags(),
                Err(nuage_meta::Error::ObjectNotFound) => None,
                Err(e) => return Err(e.into()),
            };
            if !precondition.holds(current.as_ref()) {
                return Err(precondition_failed());
            }
        }
        let stored = self.meta.parts(&upload.id, 0, PART_NUMBER_MAX as usize, true).await?;
        let mut by_number: HashMap<u32, Part> = stored.into_iter().map(|p| (p.number, p)).collect();
        let mut manifests = Vec::with_capacity(chosen.len());
        let mut chunks: HashMap<[u8; 32], ChunkRef> = HashMap::new();
        let mut md5s = Md5::new();
        let last = chosen.len() - 1;
        for (i, c) in chosen.iter().enumerate() {
            let number = check_part_number(i64::from(c.number))?;
            let part = by_number.remove(&number).ok_or_else(|| {
                invalid_part(format!("part {number} was not uploaded (or not to this upload)"))
            })?;
            if let Some(tag) = &c.etag
                && tag.trim().trim_matches('"') != hex::encode(part.md5)
            {
                return Err(invalid_part(format!("part {number} has another entity tag than {tag}")));
            }
            if i < last && part.size < PART_MIN {
                return Err(ServiceError::invalid(
                    "part_too_small",
                    format!(
                        "part {number} is {} bytes; every part but the last is at least {PART_MIN}",
                        part.size
                    ),
                ));
            }
            md5s.update(part.md5);
            manifests.push(
                Manifest::decode(&part.manifest)
                    .map_err(|e| ServiceError::internal("a stored part", format!("part {number}: {e}")))?,
            );
            for r in part.chunks {
                chunks.entry(r.address).or_insert(r);
            }
        }
        let manifest = Manifest::assemble(&manifests);
        let attributes = Attributes::decode(upload.attrs.as_deref());
        let new = NewVersion {
            size: manifest.size,
            etag: manifest.hash,
            content_type: upload.content_type.clone(),
            md5: Some(Md5Tag { digest: md5s.finalize().into(), parts: Some(chosen.len() as u32) }),
            attrs: attributes.encode(),
            manifest: manifest.encode(),
            chunks: chunks.into_values().collect(),
            lease_holder: Some(upload.id.clone()),
        };
        // What the upload stored beyond the chosen parts (parts left out, parts sent again)
        // is deleted once the version commits, as an abort would: the commit drops the
        // upload's leases and its quota hold, so those chunks are no longer charged.
        let leased = self.meta.leased_by(&upload.id).await?;
        let committed =
            self.meta.put_version(&bucket, &key, &new, precondition, Some(&idempotency_key)).await?;
        if !committed.replayed {
            add(&self.metrics.versions_committed, 1);
            let kept: std::collections::HashSet<[u8; 32]> = new.chunks.iter().map(|c| c.address).collect();
            leases::discard(self, leased.into_iter().filter(|a| !kept.contains(a)).collect()).await;
        }
        Ok((bucket, committed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_numbers() {
        assert_eq!(check_part_number(1).unwrap(), 1);
        assert_eq!(check_part_number(10_000).unwrap(), 10_000);
        for bad in [0, -1, 10_001, i64::MAX] {
            assert_eq!(check_part_number(bad).unwrap_err().code, "invalid_part_number");
        }
    }
}
