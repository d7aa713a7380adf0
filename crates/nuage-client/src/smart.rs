//! Smart upload: chunk and seal on the device, send only the chunks the server lacks.
//!
//! The file is read once. Its chunks are cut and sealed here with the server's settings
//! ([`Client::upload_settings`]), so they are exactly the chunks the server would make: a
//! chunk the account stored before, by either kind of upload, has the same address. They are
//! declared in batches of up to [`BATCH_CHUNKS`] chunks or [`BATCH_BYTES`] bytes
//! (`POST /v1/uploads` for the first, `POST /v1/uploads/{id}/chunks` for the next); each
//! answer names the chunks of the batch the server lacks, each with a target (URL, headers,
//! grant), and those are sent, [`CHUNKS_IN_FLIGHT`] at a time, retried on temporary failures,
//! while the next batch is being sealed. Memory is bounded by one batch and a short queue,
//! whatever the file's size. At the end, `POST /v1/uploads/{id}/commit` sends the manifest;
//! retrying it is safe (the session is its idempotency key).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures::StreamExt;
use nuage_core::chunk::{Compression, ConvergenceSecret, SealOptions, SealedChunk};
use nuage_core::e2e::{self, ContentKey};
use nuage_core::pipeline::{Pipeline, PipelineError};
use nuage_core::{Address, ChunkerConfig, Manifest};
use reqwest::Method;
use serde::Serialize;

use nuage_proto::{
    ChunkDecl, CommitUpload, MoreChunks, MoreTargets, PutAnswer, StartUpload, UploadSettings, UploadStarted,
    UploadTarget,
};

use crate::api::{Client, Progress, content_type_of};
use crate::error::{ClientError, ClientResult, io_err};
use crate::retry::with_retries;

/// Most chunks declared at once.
pub const BATCH_CHUNKS: usize = 256;
/// Most sealed bytes held in one batch.
pub const BATCH_BYTES: u64 = 32 << 20;
/// Chunk uploads in flight per file.
pub const CHUNKS_IN_FLIGHT: usize = 8;
/// Sealed chunks queued between the sealing thread and the sender.
const QUEUE: usize = 8;
/// The header that carries a chunk's key to the server (normal buckets only).
use nuage_proto::headers::CHUNK_KEY as CHUNK_KEY_HEADER;

/// What a smart upload did.
#[derive(Debug, Clone, Serialize)]
pub struct SmartPutResult {
    /// The version made.
    #[serde(flatten)]
    pub put: PutAnswer,
    /// Stored bytes of the file's distinct chunks.
    pub stored_bytes: u64,
    /// Stored bytes actually sent (the chunks the server lacked).
    pub bytes_sent: u64,
    /// Distinct chunks of the file.
    pub chunks: usize,
    /// Chunks sent.
    pub chunks_sent: usize,
    /// The key already had this content: nothing was uploaded and no version was made.
    #[serde(default)]
    pub unchanged: bool,
}

/// One upload in progress: its session, once started, and its counters.
struct Upload<'a> {
    client: &'a Client,
    bucket: &'a str,
    key: &'a str,
    size: u64,
    session: Option<String>,
    batch: Vec<SealedChunk>,
    batch_bytes: u64,
    seen: HashSet<Address>,
    stored_bytes: u64,
    bytes_sent: u64,
    chunks_sent: usize,
    plain_done: u64,
    progress: Progress,
    /// A normal bucket's chunks go to the server with their keys, which it opens them with
    /// to check the manifest; an end-to-end bucket's keys never leave the device.
    send_keys: bool,
}

impl Upload<'_> {
    async fn add(&mut self, chunk: SealedChunk) -> ClientResult<()> {
        if !self.seen.insert(chunk.address) {
            self.plain_done += u64::from(chunk.plain_len);
            return Ok(()); // a repeat inside the file: declared already
        }
        self.stored_bytes += chunk.bytes.len() as u64;
        self.batch_bytes += chunk.bytes.len() as u64;
        self.batch.push(chunk);
        if self.batch.len() >= BATCH_CHUNKS || self.batch_bytes >= BATCH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Declares the batch, then sends what the server lacks of it.
    async fn flush(&mut self) -> ClientResult<()> {
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let chunks: Vec<ChunkDecl> = batch
            .iter()
            .map(|c| ChunkDecl { address: c.address.to_hex(), size: c.bytes.len() as u64 })
            .collect();
        let missing = match &self.session {
            None => {
                let body = StartUpload {
                    bucket: self.bucket.to_owned(),
                    key: self.key.to_owned(),
                    size: Some(self.size),
                    chunks,
                };
                let started: UploadStarted = with_retries(self.client.retry(), "starting an upload", || {
                    self.client.json(self.client.request(Method::POST, "/v1/uploads").json(&body))
                })
                .await?;
                self.session = Some(started.upload_id);
                started.missing
            }
            Some(id) => {
                let path = format!("/v1/uploads/{id}/chunks");
                let body = MoreChunks { chunks };
                let more: MoreTargets = with_retries(self.client.retry(), "declaring chunks", || {
                    self.client.json(self.client.request(Method::POST, &path).json(&body))
                })
                .await?;
                more.missing
            }
        };
        let mut by_address: HashMap<Address, SealedChunk> = HashMap::new();
        for c in batch {
            self.plain_done += u64::from(c.plain_len);
            by_address.insert(c.address, c);
        }
        let mut sends = Vec::with_capacity(missing.len());
        for t in missing {
            let address: Address = t
                .address
                .parse()
                .map_err(|_| ClientError::Protocol(format!("target address {:?}", t.address)))?;
            let chunk = by_address.remove(&address).ok_or_else(|| {
                ClientError::Protocol(format!("the server asked for chunk {address}, not in this batch"))
            })?;
            // Only to this server (a relative URL), never to a provider's presigned URL.
            let key = (self.send_keys && t.url.starts_with('/'))
                .then(|| URL_SAFE_NO_PAD.encode(chunk.key.as_bytes()));
            sends.push((t, key, Bytes::from(chunk.bytes)));
        }
        self.chunks_sent += sends.len();
        self.bytes_sent += sends.iter().map(|(_, _, b)| b.len() as u64).sum::<u64>();
        let client = self.client;
        futures::stream::iter(sends)
            .map(|(t, key, bytes)| async move { client.send_chunk(&t, key.as_deref(), bytes).await })
            .buffer_unordered(CHUNKS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<ClientResult<()>>()?;
        (self.progress)(self.plain_done);
        Ok(())
    }
}

impl Client {
    /// The chunking and sealing a device must use for smart uploads to this account.
    pub async fn upload_settings(&self) -> ClientResult<Pipeline> {
        let s: UploadSettings = self.json(self.request(Method::GET, "/v1/uploads/settings")).await?;
        let bad = |m: &str| ClientError::Protocol(format!("upload settings: {m}"));
        let secret: [u8; 32] = URL_SAFE_NO_PAD
            .decode(&s.convergence_secret)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("convergence secret"))?;
        let chunker = ChunkerConfig { min_size: s.min_size, avg_size: s.avg_size, max_size: s.max_size };
        chunker.validate().map_err(|e| bad(&e.to_string()))?;
        let compression = if s.zstd_level == 0 { Compression::None } else { Compression::Zstd(s.zstd_level) };
        Ok(Pipeline {
            chunker,
            seal: SealOptions { compression },
            secret: ConvergenceSecret::from_bytes(secret),
        })
    }

    /// The pipeline of an end-to-end bucket: chunk keys from a convergence secret only the
    /// device can derive, and no compression (compressed sizes would tell the server about
    /// the content, and a browser opens uncompressed chunks with WebCrypto alone).
    pub fn e2e_pipeline(pipeline: &Pipeline, key: &ContentKey) -> Pipeline {
        Pipeline {
            chunker: pipeline.chunker,
            seal: SealOptions { compression: Compression::None },
            secret: key.convergence_secret(),
        }
    }

    /// Uploads a file by sending only the chunks the server does not hold (see the module
    /// documentation). `pipeline` comes from [`Client::upload_settings`] (through
    /// [`Client::e2e_pipeline`] for an end-to-end bucket, whose manifest is then sealed with
    /// `content_key` before it leaves the device).
    pub async fn smart_put_file(
        &self,
        pipeline: &Pipeline,
        content_key: Option<&ContentKey>,
        bucket: &str,
        key: &str,
        path: &Path,
        progress: Progress,
    ) -> ClientResult<SmartPutResult> {
        let file = std::fs::File::open(path).map_err(io_err(path))?;
        let size = file.metadata().map_err(io_err(path))?.len();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<SealedChunk>(QUEUE);
        let (p, owned) = (pipeline.clone(), path.to_owned());
        let sealer = tokio::task::spawn_blocking(move || -> ClientResult<Manifest> {
            p.run_parallel(file, |c| tx.blocking_send(c)).map_err(|e| match e {
                PipelineError::Read { source, .. } => io_err(&owned)(source),
                PipelineError::Config(e) => ClientError::Protocol(format!("the server's chunk sizes: {e}")),
                // The sender stopped on an error of its own, reported instead of this one.
                PipelineError::Sink(_) => ClientError::Interrupted,
            })
        });
        let mut upload = Upload {
            client: self,
            bucket,
            key,
            size,
            session: None,
            batch: Vec::new(),
            batch_bytes: 0,
            seen: HashSet::new(),
            stored_bytes: 0,
            bytes_sent: 0,
            chunks_sent: 0,
            plain_done: 0,
            progress,
            send_keys: content_key.is_none(),
        };
        let sent: ClientResult<()> = async {
            while let Some(chunk) = rx.recv().await {
                upload.add(chunk).await?;
            }
            Ok(())
        }
        .await;
        drop(rx); // unblocks the sealing thread if the sender stopped early
        let outcome = self.finish_upload(&mut upload, sealer, sent, content_key, path, size).await;
        if outcome.is_err()
            && let Some(id) = &upload.session
        {
            // A session that will not commit gives back the quota its chunks hold, now
            // rather than when it expires. Best effort: it expires anyway.
            if let Ok(answer) = self.request(Method::DELETE, &format!("/v1/uploads/{id}")).send().await {
                let _ = Self::check(answer).await;
            }
        }
        outcome
    }

    async fn finish_upload(
        &self,
        upload: &mut Upload<'_>,
        sealer: tokio::task::JoinHandle<ClientResult<Manifest>>,
        sent: ClientResult<()>,
        content_key: Option<&ContentKey>,
        path: &Path,
        size: u64,
    ) -> ClientResult<SmartPutResult> {
        let manifest = sealer.await.map_err(|e| ClientError::Protocol(format!("sealing thread: {e}")))?;
        sent?;
        let manifest = manifest?;
        if manifest.size != size {
            return Err(ClientError::Io {
                path: path.to_owned(),
                source: std::io::Error::other("the file changed size while it was being uploaded"),
            });
        }
        if upload.session.is_none() || !upload.batch.is_empty() {
            upload.flush().await?; // the last batch, or the start of an empty file's upload
        }
        let session = upload.session.clone().expect("flushed at least once");

        let body = CommitUpload {
            manifest: URL_SAFE_NO_PAD.encode(match content_key {
                Some(k) => e2e::seal_manifest(k, &manifest).0,
                None => manifest.encode(),
            }),
            content_type: Some(content_type_of(path).to_owned()),
        };
        let commit = format!("/v1/uploads/{session}/commit");
        let put: PutAnswer = with_retries(self.retry(), "committing an upload", || {
            self.json(self.request(Method::POST, &commit).json(&body))
        })
        .await?;
        Ok(SmartPutResult {
            put,
            stored_bytes: upload.stored_bytes,
            bytes_sent: upload.bytes_sent,
            chunks: upload.seen.len(),
            chunks_sent: upload.chunks_sent,
            unchanged: false,
        })
    }

    async fn send_chunk(
        &self,
        target: &UploadTarget,
        chunk_key: Option<&str>,
        bytes: Bytes,
    ) -> ClientResult<()> {
        let url = if target.url.starts_with('/') {
            format!("{}{}", self.base(), target.url)
        } else {
            target.url.clone()
        };
        let method = Method::from_bytes(target.method.as_bytes())
            .map_err(|_| ClientError::Protocol(format!("target method {:?}", target.method)))?;
        with_retries(self.retry(), "sending a chunk", || {
            let mut r = self.raw_request(method.clone(), &url).body(bytes.clone());
            for (k, v) in &target.headers {
                r = r.header(k, v);
            }
            if let Some(key) = chunk_key {
                r = r.header(CHUNK_KEY_HEADER, key);
            }
            async move { Self::check(r.send().await?).await.map(|_| ()) }
        })
        .await
    }
}
