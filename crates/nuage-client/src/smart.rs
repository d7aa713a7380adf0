//! Smart upload: chunk and seal on the device, send only the chunks the server lacks.
//!
//! 1. The file is chunked and sealed here with the server's settings
//!    ([`Client::upload_settings`]), so its chunks are exactly those the server would make:
//!    a chunk the account stored before, by either kind of upload, has the same address.
//! 2. `POST /v1/uploads` sends the list of (address, stored size); the answer names the
//!    chunks to send, each with a target (URL, headers, grant).
//! 3. Those chunks go out, [`CHUNKS_IN_FLIGHT`] at a time, each retried on temporary
//!    failures. A file up to [`KEEP_IN_MEMORY`] keeps its sealed chunks from step 1; a larger
//!    one is read and sealed a second time, sending only the missing chunks, so memory stays
//!    bounded whatever the size (the second pass must give the same manifest, or the file
//!    changed and the upload stops).
//! 4. `POST /v1/uploads/{id}/commit` with the manifest; retrying it is safe (the session is
//!    its idempotency key).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures::StreamExt;
use nuage_core::chunk::{Compression, ConvergenceSecret, SealOptions};
use nuage_core::pipeline::Pipeline;
use nuage_core::{Address, ChunkerConfig, Manifest};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::api::{
    Client, ClientError, ClientResult, Progress, PutResult, content_type_of, io_err, with_retries,
};

/// Sealed bytes kept from the first pass; larger files are sealed twice instead.
pub const KEEP_IN_MEMORY: u64 = 64 << 20;
/// Chunk uploads in flight per file.
pub const CHUNKS_IN_FLIGHT: usize = 8;

#[derive(Debug, Deserialize)]
struct Settings {
    convergence_secret: String,
    min_size: usize,
    avg_size: usize,
    max_size: usize,
    zstd_level: i32,
}

#[derive(Debug, Serialize)]
struct ChunkDecl {
    address: String,
    size: u64,
}

#[derive(Debug, Deserialize)]
struct Target {
    address: String,
    method: String,
    url: String,
    headers: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct Started {
    upload_id: String,
    missing: Vec<Target>,
}

/// What a smart upload did.
#[derive(Debug, Clone, Serialize)]
pub struct SmartPutResult {
    /// The version made.
    #[serde(flatten)]
    pub put: PutResult,
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

/// The first pass over a file: its manifest, each distinct chunk's stored size in order of
/// first appearance, and the sealed bytes when the file was small enough to keep them.
struct FirstPass {
    manifest: Manifest,
    sizes: Vec<(Address, u64)>,
    kept: Option<HashMap<Address, Bytes>>,
}

fn first_pass(pipeline: &Pipeline, path: &Path, progress: &Progress) -> ClientResult<FirstPass> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut sizes = Vec::new();
    let mut seen = HashSet::new();
    let mut kept = Some(HashMap::new());
    let mut kept_bytes = 0u64;
    let mut read = 0u64;
    let manifest = pipeline
        .run_parallel(file, |c| -> Result<(), std::convert::Infallible> {
            read += u64::from(c.plain_len);
            progress(read / 2);
            if seen.insert(c.address) {
                sizes.push((c.address, c.bytes.len() as u64));
                kept_bytes += c.bytes.len() as u64;
                if kept_bytes > KEEP_IN_MEMORY {
                    kept = None;
                }
                if let Some(k) = &mut kept {
                    k.insert(c.address, Bytes::from(c.bytes));
                }
            }
            Ok(())
        })
        .map_err(|e| match e {
            nuage_core::pipeline::PipelineError::Read(e) => io_err(path)(e),
            nuage_core::pipeline::PipelineError::Sink(never) => match never {},
        })?;
    Ok(FirstPass { manifest, sizes, kept })
}

impl Client {
    /// The chunking and sealing a device must use for smart uploads to this account.
    pub async fn upload_settings(&self) -> ClientResult<Pipeline> {
        let s: Settings = Self::json(self.request(Method::GET, "/v1/uploads/settings")).await?;
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

    /// Uploads a file by sending only the chunks the server does not hold (see the module
    /// documentation). `pipeline` comes from [`Client::upload_settings`].
    pub async fn smart_put_file(
        &self,
        pipeline: &Pipeline,
        bucket: &str,
        key: &str,
        path: &Path,
        progress: Progress,
    ) -> ClientResult<SmartPutResult> {
        let (p, file, prog) = (pipeline.clone(), path.to_owned(), progress.clone());
        let first = tokio::task::spawn_blocking(move || first_pass(&p, &file, &prog))
            .await
            .map_err(|e| ClientError::Protocol(format!("chunking thread: {e}")))??;
        let size = first.manifest.size;

        let chunks: Vec<ChunkDecl> =
            first.sizes.iter().map(|(a, s)| ChunkDecl { address: a.to_hex(), size: *s }).collect();
        let body = serde_json::json!({"bucket": bucket, "key": key, "size": size, "chunks": chunks});
        let started: Started = with_retries("starting an upload", || {
            Self::json(self.request(Method::POST, "/v1/uploads").json(&body))
        })
        .await?;

        let stored: HashMap<Address, u64> = first.sizes.iter().copied().collect();
        let mut targets = HashMap::new();
        for t in started.missing {
            let address: Address = t
                .address
                .parse()
                .map_err(|_| ClientError::Protocol(format!("target address {:?}", t.address)))?;
            if !stored.contains_key(&address) {
                return Err(ClientError::Protocol(format!(
                    "the server asked for chunk {address}, not in the file"
                )));
            }
            targets.insert(address, t);
        }
        let to_send: u64 = targets.keys().map(|a| stored[a]).sum();
        let sent = Arc::new(AtomicU64::new(0));
        let report = {
            let (sent, progress) = (sent.clone(), progress.clone());
            move |n: u64| {
                let done = sent.fetch_add(n, Ordering::Relaxed) + n;
                progress(size / 2 + (size - size / 2) * done / to_send.max(1));
            }
        };
        let chunks_sent = targets.len();

        match first.kept {
            Some(kept) => {
                let jobs = targets.iter().map(|(a, t)| (t, kept[a].clone()));
                futures::stream::iter(jobs)
                    .map(|(t, bytes)| self.send_chunk(t, bytes, &report))
                    .buffer_unordered(CHUNKS_IN_FLIGHT)
                    .collect::<Vec<_>>()
                    .await
                    .into_iter()
                    .collect::<ClientResult<()>>()?;
            }
            None => self.second_pass(pipeline, path, &first.manifest, &targets, &report).await?,
        }
        progress(size);

        let manifest = URL_SAFE_NO_PAD.encode(first.manifest.encode());
        let body = serde_json::json!({"manifest": manifest, "content_type": content_type_of(path)});
        let commit = format!("/v1/uploads/{}/commit", started.upload_id);
        let put: PutResult = with_retries("committing an upload", || {
            Self::json(self.request(Method::POST, &commit).json(&body))
        })
        .await?;
        Ok(SmartPutResult {
            put,
            stored_bytes: stored.values().sum(),
            bytes_sent: sent.load(Ordering::Relaxed),
            chunks: stored.len(),
            chunks_sent,
            unchanged: false,
        })
    }

    /// Reads and seals the file again, sending the chunks in `targets` as they come.
    async fn second_pass(
        &self,
        pipeline: &Pipeline,
        path: &Path,
        expected: &Manifest,
        targets: &HashMap<Address, Target>,
        report: &(impl Fn(u64) + Sync),
    ) -> ClientResult<()> {
        let (tx, rx) = tokio::sync::mpsc::channel::<(Address, Bytes)>(CHUNKS_IN_FLIGHT);
        let wanted: HashSet<Address> = targets.keys().copied().collect();
        let (p, file) = (pipeline.clone(), path.to_owned());
        let reader = tokio::task::spawn_blocking(move || -> ClientResult<Manifest> {
            let f = std::fs::File::open(&file).map_err(io_err(&file))?;
            let mut sent = HashSet::new();
            p.run_parallel(f, |c| {
                if wanted.contains(&c.address) && sent.insert(c.address) {
                    tx.blocking_send((c.address, Bytes::from(c.bytes)))?;
                }
                Ok(())
            })
            .map_err(|e| match e {
                nuage_core::pipeline::PipelineError::Read(e) => io_err(&file)(e),
                nuage_core::pipeline::PipelineError::Sink(tokio::sync::mpsc::error::SendError(_)) => {
                    ClientError::Interrupted
                }
            })
        });
        let sends = tokio_stream_of(rx)
            .map(|(address, bytes)| self.send_chunk(&targets[&address], bytes, report))
            .buffer_unordered(CHUNKS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        let again = reader.await.map_err(|e| ClientError::Protocol(format!("chunking thread: {e}")))?;
        // A send error first: it is why the reader may have stopped.
        sends.into_iter().collect::<ClientResult<()>>()?;
        if again? != *expected {
            return Err(ClientError::Io {
                path: path.to_owned(),
                source: std::io::Error::other("the file changed while it was being uploaded"),
            });
        }
        Ok(())
    }

    async fn send_chunk(&self, target: &Target, bytes: Bytes, report: &impl Fn(u64)) -> ClientResult<()> {
        let url = if target.url.starts_with('/') {
            format!("{}{}", self.base(), target.url)
        } else {
            target.url.clone()
        };
        let method = Method::from_bytes(target.method.as_bytes())
            .map_err(|_| ClientError::Protocol(format!("target method {:?}", target.method)))?;
        let len = bytes.len() as u64;
        with_retries("sending a chunk", || {
            let mut r = self.raw_request(method.clone(), &url).body(bytes.clone());
            for (k, v) in &target.headers {
                r = r.header(k, v);
            }
            async move { Self::check(r.send().await?).await.map(|_| ()) }
        })
        .await?;
        report(len);
        Ok(())
    }
}

/// A stream over a Tokio receiver.
fn tokio_stream_of<T: Send + 'static>(rx: tokio::sync::mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}
