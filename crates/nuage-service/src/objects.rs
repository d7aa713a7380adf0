//! Objects: a streaming write (content → chunks → providers → one metadata transaction), a
//! delete (a tombstone) and a copy of an old version's manifest (restore, undelete). Every
//! front calls these; none repeats a rule of them.
//!
//! Memory per write is bounded by a few chunks whatever the object size, and across writes
//! by the server's write memory: every chunk holds room in it from its cut to its store
//! (see `state::WriteMemory`), and the pipeline besides holds only the chunk it is reading
//! (see `nuage_core::pipeline`).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt, TryStreamExt};
use nuage_blob::{Placement, StoredChunk};
use nuage_core::pipeline::{Pipeline, PipelineError};
use nuage_core::{Address, ConvergenceSecret, Manifest, SealedChunk};
use nuage_meta::{Bucket, ChunkRef, Committed, Md5Tag, NewVersion, Opened, Precondition, Version};
use serde::{Deserialize, Serialize};
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::digests::{Algorithm, ContentChecks, Digesting, Digests};
use crate::leases::{self, Holder, Lease};
use crate::metrics::add;
use crate::names::{ReadKey, check_idempotency_key, check_key, stored_key};
use crate::state::Room;
use crate::{ErrorKind, Nuage, ServiceError, ServiceResult};

/// Chunks being stored at once by one write.
pub const PUTS_IN_FLIGHT: usize = 16;

/// The largest content sealed on the caller's task rather than on threads of its own (see
/// `Nuage::store_content`): a 64 KiB chunk seals in a fraction of a millisecond.
pub const SMALL_CONTENT: u64 = 64 << 10;

/// How a content is cut and sealed: done already, or on a blocking thread.
enum Cutting<T> {
    Done(T),
    Thread(tokio::task::JoinHandle<T>),
}

/// A body that is not as long as its Content-Length said.
fn not_its_length() -> ServiceError {
    ServiceError::invalid("body_incomplete", "the body does not have Content-Length bytes")
}

/// The placement of a bucket's chunks.
pub fn bucket_placement(bucket: &Bucket) -> Placement {
    Placement::replicas(bucket.policy.replicas as usize).with_quorum(bucket.policy.write_quorum as usize)
}

/// Refuses what would need the server to see plaintext of an end-to-end bucket
/// (`end_to_end_bucket`).
pub fn refuse_e2e(bucket: &Bucket) -> ServiceResult<()> {
    if bucket.policy.e2e_key_id.is_some() {
        return Err(ServiceError::new(
            ErrorKind::Conflict,
            "end_to_end_bucket",
            format!(
                "bucket {} is end-to-end encrypted: the server cannot read or write its content; \
                 use the nuage client (`nuage put`, `nuage get`) with the account's key",
                bucket.name
            ),
        ));
    }
    Ok(())
}

/// A version's attributes besides its content and `Content-Type`: the content headers of
/// HTTP that S3 keeps, user metadata (`x-amz-meta-*`), and the checksums the write computed.
/// Kept as JSON with the version (`attrs`); every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributes {
    /// `Content-Encoding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// `Content-Disposition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    /// `Content-Language`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    /// `Cache-Control`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// `Expires`, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// User metadata: names in lowercase, without their `x-amz-meta-` prefix.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// The checksums computed as the version was written (base64); set by the service.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<Algorithm, String>,
}

/// The most user metadata a version keeps, names and values together, in bytes (S3's 2 KB).
pub const METADATA_MAX: usize = 2048;

/// The longest content header a version keeps, in bytes.
pub const HEADER_MAX: usize = 1024;

impl Attributes {
    /// The attributes of `version` (none: the defaults).
    pub fn of(version: &Version) -> Attributes {
        Attributes::decode(version.attrs.as_deref())
    }

    /// Refuses attributes too big to keep (`metadata_too_large`, `header_too_large`) or
    /// that no HTTP header can carry back (`invalid_metadata`).
    pub(crate) fn check(&self) -> ServiceResult<()> {
        let printable = |v: &str| v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80);
        let size: usize = self.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > METADATA_MAX {
            return Err(ServiceError::invalid(
                "metadata_too_large",
                format!("user metadata is {size} bytes; at most {METADATA_MAX} are kept"),
            ));
        }
        for (name, value) in &self.metadata {
            let token = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token || !printable(value) {
                return Err(ServiceError::invalid(
                    "invalid_metadata",
                    format!("user metadata {name:?} cannot be sent back in a header"),
                ));
            }
        }
        let headers = [
            &self.content_encoding,
            &self.content_disposition,
            &self.content_language,
            &self.cache_control,
            &self.expires,
        ];
        for value in headers.into_iter().flatten() {
            if value.len() > HEADER_MAX || !printable(value) {
                return Err(ServiceError::invalid(
                    "header_too_large",
                    format!("a content header is kept up to {HEADER_MAX} bytes of text"),
                ));
            }
        }
        Ok(())
    }

    /// The attributes kept as `attrs` (none: the defaults).
    pub fn decode(attrs: Option<&str>) -> Attributes {
        attrs.and_then(|a| serde_json::from_str(a).ok()).unwrap_or_default()
    }

    /// As kept with a version: none when there is nothing.
    pub(crate) fn encode(&self) -> Option<String> {
        (*self != Attributes::default()).then(|| serde_json::to_string(self).expect("plain data"))
    }
}

/// How a write is made, besides its content.
#[derive(Debug, Default)]
pub struct WriteOptions {
    /// Conditions on the key's current version (If-Match / If-None-Match).
    pub precondition: Precondition,
    /// A retry with the same key never makes a second version; the same key with another
    /// request is `idempotency_key_reused`. As the client sent it: it is checked (after the
    /// key and the bucket) with [`check_idempotency_key`].
    pub idempotency_key: Option<String>,
    /// The length the content must have, when the client said it (a body that ends short
    /// of it makes no version).
    pub content_length: Option<u64>,
    /// The content type to keep with the version.
    pub content_type: Option<String>,
    /// The other attributes to keep with it (their checksums are the write's own).
    pub attributes: Attributes,
    /// Digests the content must have ([`ContentChecks`]).
    pub checks: ContentChecks,
}

pub(crate) fn precondition_failed() -> ServiceError {
    nuage_meta::Error::PreconditionFailed.into()
}

impl Nuage {
    /// Writes `content` as a new version of `key` in the caller's `bucket`, streaming: the
    /// key is checked, the bucket found and its kind checked, an idempotent retry answered
    /// as the first time (its content must be the same), the conditions checked before any
    /// byte is read and again in the commit; then the content is cut, sealed and stored,
    /// each batch of chunks leased and its quota room held before it is stored, made
    /// durable, and committed in one transaction. A write that fails gives back its leases.
    pub async fn put_stream<S, E>(
        self: &Arc<Self>,
        account_id: i64,
        bucket: &str,
        key: &str,
        content: S,
        options: WriteOptions,
    ) -> ServiceResult<(Bucket, Committed)>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let key = check_key(key)?;
        let bucket = self.meta.bucket(account_id, bucket).await?;
        refuse_e2e(&bucket)?;
        let mut content = Box::pin(content);
        let WriteOptions {
            precondition,
            idempotency_key,
            content_length,
            content_type,
            mut attributes,
            checks,
        } = options;
        let idempotency_key = check_idempotency_key(idempotency_key.as_deref())?;
        attributes.check()?;
        let algorithms = checks.prepare()?;
        if let Some(idem) = &idempotency_key
            && let Some((bucket_id, prior_key, version_id)) =
                self.meta.idempotent_write(account_id, idem).await?
        {
            // A retry of a request that already committed: answer as the first time, before
            // any check that the first request's own success would now fail (quota,
            // If-None-Match).
            if bucket_id != bucket.id || prior_key != key {
                return Err(nuage_meta::Error::IdempotencyConflict.into());
            }
            let version = self.meta.version(&bucket, &key, version_id).await?;
            if version.tombstone {
                return Err(nuage_meta::Error::IdempotencyConflict.into()); // the key of a DELETE
            }
            // The same key with another content is another request (the IETF
            // Idempotency-Key draft: 422): the content is read to its end and hashed, never
            // stored.
            let mut hasher = blake3::Hasher::new();
            let mut read = 0u64;
            let mut differs = content_length.is_some_and(|n| n != version.size);
            while !differs && let Some(part) = content.next().await {
                let part = part.map_err(ServiceError::incomplete)?;
                read += part.len() as u64;
                differs = read > version.size; // no need to read on: it is not the same content
                hasher.update(&part);
            }
            if differs || read != version.size || Some(*hasher.finalize().as_bytes()) != version.etag {
                return Err(ServiceError::new(
                    ErrorKind::IdempotencyConflict,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a request with another body",
                ));
            }
            return Ok((bucket, Committed { version, replayed: true, pruned: Vec::new() }));
        }
        if precondition != Precondition::default() {
            // Fail before reading the content; the commit checks again under the account's lock.
            let current = match self.meta.head(&bucket, &key).await {
                Ok(v) => v.tags(),
                Err(nuage_meta::Error::ObjectNotFound) => None,
                Err(e) => return Err(e.into()),
            };
            if !precondition.holds(current.as_ref()) {
                return Err(precondition_failed());
            }
        }
        let holder = leases::holder(self, account_id, idempotency_key.as_deref());
        let stored = self
            .store_checked(
                &bucket,
                content,
                &algorithms,
                checks,
                content_length,
                &holder.name,
                leases::lease_until(self),
            )
            .await;
        let (manifest, chunks, digests) = match stored {
            Ok(s) => s,
            Err(e) => {
                self.abandon(&holder).await;
                return Err(e);
            }
        };
        attributes.checksums = digests.checksums;
        let new = NewVersion {
            size: manifest.size,
            etag: manifest.hash,
            content_type,
            md5: Some(Md5Tag { digest: digests.md5, parts: None }),
            attrs: attributes.encode(),
            manifest: manifest.encode(),
            chunks,
            lease_holder: Some(holder.name.clone()),
        };
        let committed =
            match self.meta.put_version(&bucket, &key, &new, &precondition, idempotency_key.as_deref()).await
            {
                Ok(c) => c,
                Err(e) => {
                    self.abandon(&holder).await;
                    return Err(e.into());
                }
            };
        if !committed.replayed {
            add(&self.metrics.versions_committed, 1);
        }
        Ok((bucket, committed))
    }

    /// Deletes `key` of the caller's `bucket`: a tombstone becomes its current version (the
    /// versions before it stay, as the bucket keeps them). A key stored before the key rules
    /// is found by its spelling ([`ReadKey`]).
    pub async fn delete(
        &self,
        account_id: i64,
        bucket: &str,
        key: ReadKey,
        precondition: &Precondition,
        idempotency_key: Option<&str>,
    ) -> ServiceResult<Committed> {
        let bucket = self.meta.bucket(account_id, bucket).await?;
        let key = stored_key(&self.meta, &bucket, key).await?;
        let idempotency_key = check_idempotency_key(idempotency_key)?;
        Ok(self.meta.delete_object(&bucket, &key, precondition, idempotency_key.as_deref()).await?)
    }

    /// Removes `version` of `key` of the caller's `bucket` for good, a delete marker or not
    /// (see [`nuage_meta::Meta::delete_version`]): `object_not_found` when it is not there,
    /// `precondition_failed` when `precondition` does not hold for it. Returns the version
    /// removed and whether the key's current version changed.
    pub async fn delete_version(
        &self,
        account_id: i64,
        bucket: &str,
        key: ReadKey,
        version: i64,
        precondition: &Precondition,
    ) -> ServiceResult<(Version, bool)> {
        let bucket = self.meta.bucket(account_id, bucket).await?;
        let key = stored_key(&self.meta, &bucket, key).await?;
        Ok(self.meta.delete_version(&bucket, &key, version, precondition, false).await?)
    }

    /// Makes `version` of `key` (an old one, or the last before a delete) the key's current
    /// version again, as a new version with the same content: a copy of the manifest in the
    /// commit's own transaction, no byte moved, charged as a write of the same content
    /// would be. A write: the key rules hold (a key stored before them is read, not copied
    /// to).
    pub async fn copy_version(
        &self,
        account_id: i64,
        bucket: &str,
        key: &str,
        version: i64,
        precondition: &Precondition,
        idempotency_key: Option<&str>,
    ) -> ServiceResult<(Bucket, Committed)> {
        let key = check_key(key)?;
        let bucket = self.meta.bucket(account_id, bucket).await?;
        let idempotency_key = check_idempotency_key(idempotency_key)?;
        let committed = self
            .meta
            .restore_version(&bucket, &key, version, precondition, idempotency_key.as_deref())
            .await?;
        if !committed.replayed {
            add(&self.metrics.versions_committed, 1);
        }
        Ok((bucket, committed))
    }

    /// Stores `content` for the caller's `bucket` and checks it: cut, sealed and stored
    /// under leases of `holder` until `expires_at` (each batch's quota room held first),
    /// then its length and digests checked, then made durable. Returns the manifest, the
    /// chunk references and the digests; on a refusal the leases stay, for the caller to
    /// release or keep.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn store_checked<S, E>(
        self: &Arc<Self>,
        bucket: &Bucket,
        content: std::pin::Pin<Box<S>>,
        algorithms: &[Algorithm],
        checks: ContentChecks,
        content_length: Option<u64>,
        holder: &str,
        expires_at: i64,
    ) -> ServiceResult<(Manifest, Vec<ChunkRef>, Digests)>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let quota = self.meta.quota_of(bucket.account_id).await?;
        let secret = self.meta.convergence_secret(bucket.account_id).await?;
        let pipeline = Pipeline {
            chunker: self.chunker,
            seal: self.seal,
            secret: ConvergenceSecret::from_bytes(secret),
        };
        let lease = Lease {
            holder,
            expires_at,
            // The quota is charged on stored bytes, which only sealing tells: each batch of
            // chunks holds its room before it is stored (an account without a quota holds none).
            // (A quota set in the last 2 s may be missed here, never at the commit.)
            hold_for: quota.map(|_| bucket.account_id),
        };
        let (manifest, chunks, digests) = self
            .store_content(pipeline, bucket_placement(bucket), content, content_length, algorithms, lease)
            .await?;
        if content_length.is_some_and(|len| len != manifest.size) {
            return Err(not_its_length());
        }
        checks.verify(&digests)?;
        // Nothing may reference the chunks before they are durable (docs/durability.md).
        self.store.sync().await?;
        Ok((manifest, chunks, digests))
    }

    /// Ends a write that makes no version: its leases go (see [`leases::release`]), and it
    /// is counted.
    async fn abandon(self: &Arc<Self>, holder: &Holder) {
        leases::release(self, holder).await;
        add(&self.metrics.uploads_aborted, 1);
    }

    /// Streams `content` through the pipeline on a blocking thread (two, with
    /// `run_parallel`) and stores each new chunk on the async side, [`PUTS_IN_FLIGHT`] at a
    /// time, each leased (and its room held, see [`Lease`]) before it is stored: the chunks
    /// sealed meanwhile share one lease transaction. Returns the manifest, the chunk
    /// references for the commit, and the content's MD5 and its checksums by `algorithms`,
    /// computed on the reading thread. A content announced as at most [`SMALL_CONTENT`]
    /// bytes is read whole first and sealed where it is: for one chunk, the two threads cost
    /// more than the work (issue 19).
    async fn store_content<S, E>(
        self: &Arc<Self>,
        pipeline: Pipeline,
        placement: Placement,
        mut content: std::pin::Pin<Box<S>>,
        content_length: Option<u64>,
        algorithms: &[Algorithm],
        lease: Lease<'_>,
    ) -> ServiceResult<(Manifest, Vec<ChunkRef>, Digests)>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(SealedChunk, Option<Room>)>(1);
        let small = content_length.filter(|&n| n <= SMALL_CONTENT.min(pipeline.chunker.min_size as u64));
        let cutting = match small {
            Some(len) => {
                // One chunk at most (nothing is cut below the minimum size), so the channel
                // has room for it.
                let mut body = Vec::with_capacity(len as usize);
                while body.len() as u64 <= len
                    && let Some(part) = content.next().await
                {
                    body.extend_from_slice(&part.map_err(ServiceError::incomplete)?);
                }
                // Not the bytes announced: refused before anything is sealed or stored.
                if body.len() as u64 != len {
                    return Err(not_its_length());
                }
                let mut reader = Digesting::new(io::Cursor::new(body), algorithms);
                let cut =
                    pipeline.run_inline(&mut reader, |sealed| tx.try_send((sealed, None)).map_err(|_| ()));
                drop(tx);
                Cutting::Done(cut.map(|manifest| (manifest, reader.finish())))
            }
            None => {
                let reader = SyncIoBridge::new(StreamReader::new(content.map_err(io::Error::other)));
                let mut reader = Digesting::new(reader, algorithms);
                // Room in the server's write memory for each chunk cut, waited for on the
                // chunking thread and held until the chunk is stored; none once the write
                // has stopped (its chunks are dropped, and so is the pipeline).
                let (runtime, share, gone) =
                    (tokio::runtime::Handle::current(), self.write_memory.share(), tx.clone());
                let room = move |len| {
                    runtime.block_on(async {
                        tokio::select! {
                            room = share.take(len) => Some(room),
                            () = gone.closed() => None,
                        }
                    })
                };
                Cutting::Thread(tokio::task::spawn_blocking(move || {
                    let cut = pipeline.run_parallel_holding(&mut reader, room, |sealed, room| {
                        tx.blocking_send((sealed, room)).map_err(|_| ())
                    });
                    cut.map(|manifest| (manifest, reader.finish()))
                }))
            }
        };
        let mut refs: HashMap<Address, ChunkRef> = HashMap::new();
        let mut puts = FuturesUnordered::new();
        let mut bytes_in = 0u64;
        let store = |chunk: StoredChunk, opened: Opened, prefer: Vec<String>, room| async move {
            let report = self.store.put_preferring(&chunk, placement, &prefer).await;
            drop(room);
            (chunk.address(), chunk.bytes().len(), opened, report)
        };
        let mut record = |(address, len, opened, report): (
            Address,
            usize,
            Opened,
            nuage_blob::Result<nuage_blob::PutReport>,
        )|
         -> ServiceResult<()> {
            let report = report?;
            if report.written > 0 {
                add(&self.metrics.chunks_written, 1);
            } else {
                add(&self.metrics.chunks_deduplicated, 1);
            }
            add(&self.metrics.stored_bytes_written, report.bytes_written);
            refs.insert(
                address,
                ChunkRef {
                    address: *address.as_bytes(),
                    stored_size: len as u32,
                    providers: report.stored_on,
                    opened: Some(opened),
                },
            );
            Ok(())
        };
        let mut seen = std::collections::HashSet::new();
        let mut batch = Vec::with_capacity(PUTS_IN_FLIGHT);
        loop {
            // The puts under way go on while the next chunk is awaited: they hold room in
            // the write memory that this chunk (or another write's) may be waiting for.
            let first = loop {
                tokio::select! {
                    first = rx.recv() => break first,
                    Some(done) = puts.next(), if !puts.is_empty() => record(done)?,
                }
            };
            let Some(first) = first else { break };
            let mut next = Some(first);
            while let Some((sealed, room)) = next.take() {
                bytes_in += u64::from(sealed.plain_len);
                if seen.insert(sealed.address) {
                    batch.push((sealed, room)); // else the same chunk twice in one content
                }
                if batch.len() < PUTS_IN_FLIGHT {
                    next = rx.try_recv().ok();
                }
            }
            if batch.is_empty() {
                continue;
            }
            // Lease the batch before storing it, while the puts already under way go on.
            let addresses: Vec<[u8; 32]> = batch.iter().map(|(s, _)| *s.address.as_bytes()).collect();
            let bytes: u64 = batch.iter().map(|(s, _)| s.bytes.len() as u64).sum();
            let leasing = leases::lease(self, &lease, &addresses, bytes);
            tokio::pin!(leasing);
            // Chunks stored already are looked for where the index has them (read with
            // the lease).
            let mut stored_on = loop {
                tokio::select! {
                    leased = &mut leasing => break leased?,
                    Some(done) = puts.next(), if !puts.is_empty() => record(done)?,
                }
            };
            for (sealed, room) in batch.drain(..) {
                let prefer = stored_on.remove(sealed.address.as_bytes()).unwrap_or_default();
                let opened = Opened { plain_len: sealed.plain_len, key_hash: sealed.key.fingerprint() };
                puts.push(store(StoredChunk::from(sealed), opened, prefer, room));
                while puts.len() >= PUTS_IN_FLIGHT {
                    record(puts.next().await.expect("non-empty"))?;
                }
            }
        }
        while let Some(done) = puts.next().await {
            record(done)?;
        }
        add(&self.metrics.bytes_in, bytes_in);
        let cut = match cutting {
            Cutting::Done(cut) => Ok(cut),
            Cutting::Thread(thread) => thread.await,
        };
        match cut {
            Ok(Ok((m, digests))) => Ok((m, refs.into_values().collect(), digests)),
            Ok(Err(PipelineError::Read { source: e, .. })) => {
                tracing::debug!("upload body: {e}");
                Err(ServiceError::incomplete(e))
            }
            Ok(Err(PipelineError::Config(e))) => Err(ServiceError::internal("[chunking]", e)),
            Ok(Err(PipelineError::Sink(()))) => {
                Err(ServiceError::internal("upload", "the store side stopped early"))
            }
            Err(e) => Err(ServiceError::internal("upload pipeline", e)),
        }
    }
}
