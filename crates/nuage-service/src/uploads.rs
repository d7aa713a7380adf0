//! Smart uploads: the device chunks and encrypts, the service tells it which chunks it
//! lacks, the device sends only those (each under a grant, or straight to a provider), then
//! commits the manifest. See `nuage-server`'s `uploads` module for the `/v1` routes.
//!
//! - [`Nuage::start_upload`] records a session and its declared chunks and answers a
//!   [`Target`] for each chunk the account must send; [`Nuage::declare_more`] does the same
//!   for the next batch of a large file.
//! - [`Nuage::store_chunk`] stores one chunk sent under a grant: its bytes are checked
//!   against its address, opened with its key (normal buckets), held in the quota, placed by
//!   the bucket's policy, made durable.
//! - [`Nuage::commit_upload`] checks the manifest against the declared and stored chunks and
//!   commits one version, idempotently (the session id is the idempotency key).
//! - [`Nuage::abort_upload`] gives the session's room back at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use nuage_blob::{Presigned, StoredChunk};
use nuage_core::chunk::{self, ChunkKey, MAX_CHUNK_LEN};
use nuage_core::grant::{Grant, GrantError, Operation};
use nuage_core::{Address, Manifest, e2e};
use nuage_meta::{
    Bucket, ChunkRef, Committed, DeclareLimits, DeclaredChunk, NewVersion, Opened, Precondition,
    UploadSession, now_ms,
};
use nuage_proto::ChunkDecl;
use nuage_proto::headers::{CHUNK_KEY, GRANT};

use crate::metrics::add;
use crate::names::check_key;
use crate::objects::bucket_placement;
use crate::{ErrorKind, Nuage, ServiceError, ServiceResult};

/// Most chunks one request may declare (a 4 TiB file at the 1 MiB average).
pub const MAX_CHUNKS: usize = 4 << 20;
/// Most distinct chunks one upload session may declare, over all its requests.
pub const MAX_SESSION_CHUNKS: u64 = 8 << 20;
/// Most stored bytes one upload session may declare: S3's largest object, 5 TiB (an
/// account's quota bounds it further).
pub const MAX_SESSION_BYTES: u64 = 5 << 40;
/// The largest stored chunk: the largest plaintext chunk, plus header and tag, plus zstd's
/// worst-case growth (a chunk that does not shrink is stored uncompressed anyway).
pub const MAX_STORED: u64 = MAX_CHUNK_LEN as u64 + 1024;

/// Where the device sends one chunk it must send.
#[derive(Debug, Clone)]
pub enum Target {
    /// Straight to a provider, with this request signed in advance.
    Presigned {
        /// The chunk.
        address: Address,
        /// The request.
        request: Presigned,
        /// When the request stops working (Unix ms).
        expires_at: i64,
    },
    /// Through the front ([`Nuage::store_chunk`]), under this grant.
    Grant {
        /// The chunk.
        address: Address,
        /// The grant, as text.
        grant: String,
        /// When the grant expires (Unix ms).
        expires_at: i64,
    },
}

/// A chunk stored by [`Nuage::store_chunk`].
#[derive(Debug, Clone)]
pub struct ChunkStored {
    /// The chunk.
    pub address: Address,
    /// The providers that hold it.
    pub stored_on: Vec<String>,
}

/// A chunk address as text (64 hex digits), or `invalid_address`.
pub fn parse_address(text: &str) -> ServiceResult<Address> {
    text.parse().map_err(|e: nuage_core::Error| ServiceError::invalid("invalid_address", e.to_string()))
}

/// A grant the verifier refused, as the service's error (`grant_*`, forbidden).
pub fn grant_refused(e: GrantError) -> ServiceError {
    ServiceError::new(ErrorKind::Forbidden, e.code(), e.to_string())
}

/// A request that needs a grant and carries none (`grant_missing`); `what` says what
/// the request is and where a grant goes.
pub fn grant_missing(what: String) -> ServiceError {
    ServiceError::new(ErrorKind::Forbidden, "grant_missing", what)
}

fn expired() -> ServiceError {
    ServiceError::new(ErrorKind::Gone, "upload_expired", "this upload session has expired; start again")
}

fn parse_declared(chunks: &[ChunkDecl]) -> ServiceResult<Vec<DeclaredChunk>> {
    if chunks.len() > MAX_CHUNKS {
        return Err(ServiceError::invalid(
            "too_many_chunks",
            format!("at most {MAX_CHUNKS} chunks per request"),
        ));
    }
    let mut declared = Vec::with_capacity(chunks.len());
    let mut seen = HashSet::new();
    for c in chunks {
        let address = parse_address(&c.address)?;
        if c.size == 0 || c.size > MAX_STORED {
            return Err(ServiceError::invalid(
                "invalid_chunk_size",
                format!(
                    "chunk {} declares {} bytes; stored chunks have 1 to {MAX_STORED}",
                    c.address, c.size
                ),
            ));
        }
        if seen.insert(address) {
            declared.push(DeclaredChunk { address: *address.as_bytes(), stored_size: c.size as u32 });
        }
    }
    Ok(declared)
}

impl Nuage {
    /// Starts a smart upload of `key` in the caller's `bucket` with a first batch of
    /// chunks: the session, and a target for each chunk to send.
    pub async fn start_upload(
        &self,
        account_id: i64,
        bucket: &str,
        key: &str,
        chunks: &[ChunkDecl],
    ) -> ServiceResult<(UploadSession, Vec<Target>)> {
        let key = check_key(key)?;
        let bucket = self.meta.bucket(account_id, bucket).await?;
        let declared = parse_declared(chunks)?;
        let now = now_ms();
        let ttl = i64::try_from(self.config.grants.upload_ttl_secs * 1000).unwrap_or(i64::MAX);
        let session = UploadSession {
            id: format!("up_{}", hex::encode(rand::random::<[u8; 16]>())),
            scope: (rand::random::<u64>() >> 1) as i64,
            account_id,
            bucket_id: bucket.id,
            key,
            created_at: now,
            expires_at: now.saturating_add(ttl),
        };
        self.meta.create_upload_session(&session).await?;
        let targets = self.declare(&session, &bucket, &declared).await?;
        Ok((session, targets))
    }

    /// Declares more chunks of the caller's upload `id`: how a large file streams in
    /// batches.
    pub async fn declare_more(
        &self,
        account_id: i64,
        id: &str,
        chunks: &[ChunkDecl],
    ) -> ServiceResult<Vec<Target>> {
        let declared = parse_declared(chunks)?;
        let session = self.meta.upload_session(account_id, id).await?;
        if now_ms() >= session.expires_at {
            return Err(expired());
        }
        let bucket = self.meta.bucket_by_id(session.bucket_id).await?;
        self.declare(&session, &bucket, &declared).await
    }

    /// Aborts the caller's upload `id`, which will not commit: the room its chunks held in
    /// the quota is given back at once, and it can no longer commit.
    pub async fn abort_upload(self: &Arc<Self>, account_id: i64, id: &str) -> ServiceResult<()> {
        let session = self.meta.upload_session(account_id, id).await?;
        let declared = self.meta.abort_upload_session(&session).await?;
        // What it stored goes now, with the room it held (sent through this server or
        // straight to a provider: only what nothing else relies on).
        crate::leases::discard(self, declared).await;
        add(&self.metrics.uploads_aborted, 1);
        Ok(())
    }

    /// Records `declared` in the session and answers a target for each chunk the account
    /// must send: a presigned PUT straight to a provider when the bucket allows it and a
    /// provider can presign, else a grant for [`Nuage::store_chunk`].
    ///
    /// An account skips only the chunks it holds itself (`chunk_owners`: it sent them, or
    /// the server sealed them for it) and that are still stored. A chunk the index holds for
    /// another account is asked for like one nobody has, so that an address alone neither
    /// lets an account reference someone else's chunk nor tells it that the chunk exists.
    async fn declare(
        &self,
        session: &UploadSession,
        bucket: &Bucket,
        declared: &[DeclaredChunk],
    ) -> ServiceResult<Vec<Target>> {
        let limits = DeclareLimits { max_chunks: MAX_SESSION_CHUNKS, max_bytes: MAX_SESSION_BYTES };
        // Declared chunks are the session's leases; one the collector is deleting now is
        // waited out, then counts as not held (and is sent again).
        let deleting = self.meta.declare_upload_chunks(session, declared, limits).await?;
        crate::leases::wait_out_deletions(self, &deleting).await?;
        let addresses: Vec<[u8; 32]> = declared.iter().map(|c| c.address).collect();
        let owned = self.meta.owned_chunks(session.account_id, &addresses).await?;
        let held = self.meta.held_chunks(&addresses).await?;
        // Chunks the account sent before that no commit took up yet (an upload cut short,
        // run again): still on a provider at their size, they need not be sent twice.
        let unindexed: Vec<DeclaredChunk> = declared
            .iter()
            .filter(|c| owned.contains_key(&c.address) && !held.contains_key(&c.address))
            .copied()
            .collect();
        let mut found = HashSet::new();
        let mut lookups = futures::stream::iter(unindexed)
            .map(|c| {
                let store = self.store.clone();
                async move {
                    let located =
                        store.locate_sized(&Address::from_bytes(c.address), u64::from(c.stored_size)).await;
                    (c.address, !located.is_empty())
                }
            })
            .buffer_unordered(16);
        while let Some((address, on_a_provider)) = lookups.next().await {
            if on_a_provider {
                found.insert(address);
            }
        }
        drop(lookups);
        // A presigned URL writes the provider's object with no check until the commit: only
        // for a chunk the index does not know, never over a copy someone relies on. (So in a
        // direct bucket the kind of target tells whether the server knows an address;
        // addresses are unguessable without the plaintext and the account's convergence
        // secret.)
        let unknown: HashSet<[u8; 32]> = if bucket.policy.direct_upload {
            self.meta.unindexed(&addresses).await?.into_iter().collect()
        } else {
            Default::default()
        };
        let mut targets = Vec::new();
        for c in declared {
            if owned.contains_key(&c.address) && (held.contains_key(&c.address) || found.contains(&c.address))
            {
                continue;
            }
            let address = Address::from_bytes(c.address);
            if unknown.contains(&c.address) {
                let ttl = std::time::Duration::from_millis(self.grants.ttl().max(0) as u64);
                if let Some((_, request)) = self.store.presign_put(&address, ttl).await? {
                    // Its bytes never pass through this server: its room is held now.
                    self.meta.hold_for_session(session, &c.address).await?;
                    let expires_at = now_ms().saturating_add(self.grants.ttl());
                    targets.push(Target::Presigned { address, request, expires_at });
                    continue;
                }
            }
            let (grant, expires_at) = self.grants.sign(
                Operation::PutChunk,
                address,
                session.scope as u64,
                u64::from(c.stored_size),
            );
            targets.push(Target::Grant { address, grant, expires_at });
        }
        Ok(targets)
    }

    /// Checks a grant to store the chunk at `address` (`grant` as sent; none:
    /// `grant_missing`).
    pub async fn chunk_grant(&self, grant: Option<&str>, address: &Address) -> ServiceResult<Grant> {
        let Some(text) = grant else {
            return Err(grant_missing(format!(
                "a chunk upload needs the grant of its upload target in {GRANT}"
            )));
        };
        self.grants.verify(&self.meta, text, Operation::PutChunk, address).await.map_err(grant_refused)
    }

    /// Stores one chunk sent under `grant` (from [`Nuage::chunk_grant`]): at most the
    /// grant's size is read (`grant_size_exceeded`), the bytes must hash to the address, a
    /// chunk of a normal bucket must open with `key` (the device's; what it holds is then
    /// known, and the commit checks the manifest against it instead of taking the device's
    /// word), and its room is held before it is stored.
    pub async fn store_chunk<S, E>(
        &self,
        grant: &Grant,
        key: Option<ChunkKey>,
        content: S,
    ) -> ServiceResult<ChunkStored>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let address = grant.address;
        let limit = grant.max_size.min(MAX_STORED);
        let mut content = std::pin::pin!(content);
        // The grant names the chunk's declared size: room for it at once, never more.
        let mut bytes = BytesMut::with_capacity(usize::try_from(limit).unwrap_or(usize::MAX));
        while let Some(part) = content.next().await {
            let part = part.map_err(ServiceError::incomplete)?;
            if (bytes.len() + part.len()) as u64 > limit {
                return Err(ServiceError::new(
                    ErrorKind::TooLarge,
                    "grant_size_exceeded",
                    format!("the grant allows {} bytes", grant.max_size),
                ));
            }
            bytes.extend_from_slice(&part);
        }
        let chunk = StoredChunk::verify(address, bytes.freeze()).map_err(|_| {
            ServiceError::new(
                ErrorKind::ContentMismatch,
                "chunk_address_mismatch",
                "the bytes do not hash to the address; nothing was stored",
            )
        })?;
        // The grant names the session that asked for this chunk.
        let session = match self.meta.upload_session_by_scope(grant.scope as i64).await {
            Ok(s) if now_ms() < s.expires_at => s,
            Ok(_) | Err(nuage_meta::Error::UploadNotFound) => return Err(expired()),
            Err(e) => return Err(e.into()),
        };
        let bucket = self.meta.bucket_by_id(session.bucket_id).await?;
        let opened = match bucket.policy.e2e_key_id {
            // The server cannot open an end-to-end chunk: it is held at its stored size.
            Some(_) => None,
            None => Some(self.open_sent(key, &chunk).await?),
        };
        // The room first, then the bytes: a chunk that does not fit is never stored.
        self.meta.record_sent_chunk(&session, address.as_bytes(), chunk.bytes().len() as u32, opened).await?;
        let report = self.store.put_with(&chunk, bucket_placement(&bucket)).await?;
        // The commit that will reference it only checks that it exists: make it durable now.
        self.store.sync().await?;
        if report.written > 0 {
            add(&self.metrics.chunks_written, 1);
            add(&self.metrics.stored_bytes_written, report.bytes_written);
        } else {
            add(&self.metrics.chunks_deduplicated, 1);
        }
        Ok(ChunkStored { address, stored_on: report.stored_on })
    }

    /// Opens a chunk sent for a normal bucket with the key the device sent with it.
    async fn open_sent(&self, key: Option<ChunkKey>, chunk: &StoredChunk) -> ServiceResult<Opened> {
        let key = key.ok_or_else(|| {
            ServiceError::invalid(
                "chunk_key_missing",
                format!("a chunk of a normal bucket is sent with its key, base64url, in {CHUNK_KEY}"),
            )
        })?;
        let bytes = chunk.bytes().clone();
        let max = self.chunker.max_size;
        let plain =
            tokio::task::spawn_blocking(move || chunk::open_within(&bytes, &key, max).map(|p| p.len()))
                .await
                .map_err(|e| ServiceError::internal("opening a chunk", e))?;
        match plain {
            Ok(len) if len > 0 => Ok(Opened { plain_len: len as u32, key_hash: key.fingerprint() }),
            _ => Err(ServiceError::new(
                ErrorKind::ContentMismatch,
                "chunk_key_mismatch",
                "the chunk does not open with the key sent with it; nothing was stored",
            )),
        }
    }

    /// Commits the caller's upload `id` as a new version of its key, with `manifest`
    /// (base64url, as the device sent it: a plain manifest, or a sealed one for an
    /// end-to-end bucket). Committing twice gives the same version, replayed, even after
    /// the session expired.
    ///
    /// Every chunk of the manifest must be declared, and stored: sent in this session, held
    /// by the account already, or (direct buckets) found on a provider, read back and
    /// checked; a plain manifest must say what its chunks hold. Chunks held with fewer
    /// copies than the bucket asks for get the missing ones before the commit.
    pub async fn commit_upload(
        self: &Arc<Self>,
        account_id: i64,
        id: &str,
        manifest: &str,
        content_type: Option<String>,
        precondition: &Precondition,
    ) -> ServiceResult<(Bucket, Committed)> {
        let session = self.meta.upload_session(account_id, id).await?;
        let bucket = self.meta.bucket_by_id(session.bucket_id).await?;
        let idempotency_key = format!("upload:{}", session.id);
        // A commit that already went through answers the same, even after expiry.
        if let Some((_, _, version_id)) = self.meta.idempotent_write(account_id, &idempotency_key).await? {
            let version = self.meta.version(&bucket, &session.key, version_id).await?;
            return Ok((bucket, Committed { version, replayed: true, pruned: Vec::new() }));
        }
        // (The session's chunks are leased until it expires; the commit checks again, in
        // its transaction, that the leases still hold.)
        if now_ms() >= session.expires_at {
            return Err(expired());
        }
        let invalid = |m: String| ServiceError::invalid("manifest_invalid", m);
        let raw = URL_SAFE_NO_PAD
            .decode(manifest.trim_end_matches('='))
            .map_err(|e| invalid(format!("base64: {e}")))?;
        let mut entries = Vec::new(); // of a plain manifest, checked against the chunks below
        let (size, etag, addresses) = match bucket.policy.e2e_key_id {
            None if e2e::is_sealed(&raw) => {
                return Err(invalid("a sealed manifest belongs in an end-to-end bucket".into()));
            }
            None => {
                let m = Manifest::decode(&raw).map_err(|e| invalid(e.to_string()))?;
                let addresses = m.entries.iter().map(|e| *e.address.as_bytes()).collect::<Vec<_>>();
                entries = m.entries;
                (m.size, m.hash, addresses)
            }
            Some(key_id) => {
                if !e2e::is_sealed(&raw) {
                    return Err(invalid(format!(
                        "bucket {} is end-to-end encrypted: its manifests are sealed on the device",
                        bucket.name
                    )));
                }
                let h = e2e::read_header(&raw).map_err(|e| invalid(e.to_string()))?;
                if h.key_id != key_id {
                    return Err(ServiceError::new(
                        ErrorKind::Conflict,
                        "e2e_key_mismatch",
                        format!(
                            "this manifest is sealed with content key {}, the bucket's is {}: \
                             check the passphrase or key file",
                            hex::encode(h.key_id),
                            hex::encode(key_id)
                        ),
                    ));
                }
                // The server cannot see the whole-file hash: the ETag of a sealed version is
                // the hash of what it stores.
                (h.size, *blake3::hash(&raw).as_bytes(), h.addresses.iter().map(|a| *a.as_bytes()).collect())
            }
        };
        let declared = self.meta.upload_session_chunks(&session.id).await?;
        let mut distinct = addresses.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if let Some(a) = distinct.iter().find(|a| !declared.contains_key(*a)) {
            return Err(ServiceError::invalid(
                "manifest_undeclared_chunk",
                format!("chunk {} was not declared when the upload started", hex::encode(a)),
            ));
        }
        // Each chunk must be one this session sent, or one the account holds already (see
        // `declare`); in a direct bucket, one found on a provider where the device put it.
        let owned = self.meta.owned_chunks(account_id, &distinct).await?;
        let held = self.meta.held_chunks(&distinct).await?;
        let direct = bucket.policy.direct_upload;
        let keys: HashMap<[u8; 32], ChunkKey> =
            entries.iter().map(|e| (*e.address.as_bytes(), e.key)).collect();
        let mut lookups = futures::stream::iter(distinct.iter().copied())
            .map(|address| {
                let (store, c) = (self.store.clone(), declared[&address]);
                let proof = if c.sent { Some(c.opened) } else { owned.get(&address).copied() };
                let held = held.get(&address).cloned();
                let (key, max) = (keys.get(&address).copied(), self.chunker.max_size);
                async move {
                    let a = Address::from_bytes(address);
                    let size = u64::from(c.stored_size);
                    let found = match (proof, held) {
                        (Some(opened), Some((stored_size, providers))) => {
                            Some((stored_size, providers, opened))
                        }
                        // Sent (or held) but not in the index: its size on the providers is
                        // enough, its bytes were checked on arrival.
                        (Some(opened), None) => {
                            let providers = store.locate_sized(&a, size).await;
                            (!providers.is_empty()).then_some((c.stored_size, providers, opened))
                        }
                        // Straight to a provider, nobody has checked it: read it back, verify
                        // it against its address, and open it with the manifest's key.
                        (None, _) if direct => match store.verify_uploaded(&a, size).await {
                            Ok(Some((provider, bytes))) => {
                                let opened = match key {
                                    None => None, // end to end: the server cannot open it
                                    Some(key) => chunk::open_within(&bytes, &key, max).ok().map(|p| Opened {
                                        plain_len: p.len() as u32,
                                        key_hash: key.fingerprint(),
                                    }),
                                };
                                Some((c.stored_size, vec![provider], opened))
                            }
                            Ok(None) => None,
                            Err(e) => {
                                tracing::warn!("checking chunk {a}: {e}");
                                None
                            }
                        },
                        (None, _) => None,
                    };
                    (address, found)
                }
            })
            .buffer_unordered(16);
        let mut chunks = Vec::with_capacity(distinct.len());
        let mut opened_by: HashMap<[u8; 32], Option<Opened>> = HashMap::with_capacity(distinct.len());
        let mut missing = 0usize;
        let mut under_replicated = Vec::new();
        let mut short = Vec::new();
        while let Some((address, found)) = lookups.next().await {
            let Some((stored_size, providers, opened)) = found else {
                missing += 1;
                continue;
            };
            opened_by.insert(address, opened);
            let chunk = ChunkRef { address, stored_size, providers, opened };
            if chunk.providers.len() >= bucket.policy.replicas as usize {
                chunks.push(chunk);
            } else if direct && !declared[&address].sent && !owned.contains_key(&address) {
                // Sent straight to one provider: the other copies follow in the background.
                under_replicated.push(Address::from_bytes(address));
                chunks.push(chunk);
            } else {
                short.push(chunk);
            }
        }
        drop(lookups);
        if missing > 0 {
            return Err(ServiceError::new(
                ErrorKind::Conflict,
                "chunks_missing",
                format!(
                    "{missing} chunk(s) of the manifest are not stored yet; send them, then commit again"
                ),
            ));
        }
        // A plain manifest must say what its chunks hold: each entry the length the chunk
        // opened to, with the key it opened with. (The version's size, the sum of the
        // entries, is then what a download will stream.)
        for (i, e) in entries.iter().enumerate() {
            match opened_by.get(e.address.as_bytes()).copied().flatten() {
                Some(o) if o.plain_len == e.plain_len && o.key_hash == e.key.fingerprint() => {}
                Some(o) if o.plain_len != e.plain_len => {
                    return Err(invalid(format!(
                        "entry {i} says chunk {} holds {} bytes; it holds {}",
                        e.address, e.plain_len, o.plain_len
                    )));
                }
                _ => {
                    return Err(invalid(format!(
                        "entry {i}: chunk {} does not open with the key it gives",
                        e.address
                    )));
                }
            }
        }
        // Held with fewer copies than this bucket asks for: the missing ones are made now.
        let placement = bucket_placement(&bucket);
        let mut completing = futures::stream::iter(short)
            .map(|mut c| async move {
                c.providers =
                    self.complete_copies(&Address::from_bytes(c.address), &c.providers, placement).await?;
                ServiceResult::Ok(c)
            })
            .buffer_unordered(8);
        let mut completed = false;
        while let Some(c) = completing.next().await {
            chunks.push(c?);
            completed = true;
        }
        drop(completing);
        if completed {
            self.store.sync().await?; // durable before the commit references them
        }
        if bucket.policy.e2e_key_id.is_some() {
            // The size of a sealed manifest is the device's word, and downloads stream it: it
            // must be what the chunks hold. End-to-end chunks are stored uncompressed, so
            // each holds its stored size less the format's overhead.
            let stored: HashMap<[u8; 32], u32> = chunks.iter().map(|c| (c.address, c.stored_size)).collect();
            let held_plain: u64 =
                addresses.iter().map(|a| u64::from(stored[a]).saturating_sub(chunk::OVERHEAD as u64)).sum();
            if held_plain != size {
                return Err(invalid(format!(
                    "the sealed manifest says {size} bytes; its chunks hold {held_plain} (end-to-end chunks are stored uncompressed)"
                )));
            }
        }
        let new = NewVersion {
            size,
            etag,
            content_type,
            manifest: raw,
            chunks,
            lease_holder: Some(session.id.clone()),
            ..NewVersion::default() // the server never saw the content whole: no MD5
        };
        let committed =
            self.meta.put_version(&bucket, &session.key, &new, precondition, Some(&idempotency_key)).await?;
        if !committed.replayed {
            add(&self.metrics.versions_committed, 1);
        }
        if !under_replicated.is_empty() {
            self.replicas.push(under_replicated, bucket_placement(&bucket));
            let n = self.clone();
            tokio::spawn(async move { n.replicate_pending().await });
        }
        Ok((bucket, committed))
    }
}
