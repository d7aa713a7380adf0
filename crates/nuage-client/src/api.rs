//! The typed SDK of the link server's `/v1` API: what the CLI and the tests use.
//!
//! Uploads stream from the file with its length and an `Idempotency-Key`, and are retried
//! on temporary failures with the same key, so a retry never makes a second version.
//! Downloads stream into `DEST.nuage-part` beside a small state file, and resume from where
//! they stopped (pinned to the version they started on); the whole-file hash is checked
//! before the file takes its name.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use nuage_core::ContentHasher;
use reqwest::{Method, RequestBuilder, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use nuage_proto::{
    AccessKeyList, BucketList, EdgeLink, EdgeList, ErrorBody, Login, RestoreRequest, VersionList,
};
pub use nuage_proto::{
    AccessKeyRequest, AccessKeyView, AccountView, BucketRequest, BucketView, ListingView, NewAccessKey,
    NewToken, PutAnswer, VersionView,
};

use crate::error::io_err;
pub use crate::error::{ClientError, ClientResult};
use crate::retry::{Retry, with_retries};

/// How long a request waits for the server's next byte by default: twice the server's own
/// send timeout (`[http] send_timeout_secs`, 60 s), so that only a server that stopped
/// answering trips it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(120);

fn http_client(read_timeout: Duration) -> ClientResult<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(read_timeout)
        .build()?)
}

/// What a download did.
#[derive(Debug, Clone, Serialize)]
pub struct GetResult {
    /// Bytes of the file.
    pub size: u64,
    /// Bytes that were already on disk from an interrupted attempt.
    pub resumed_from: u64,
    /// The version downloaded.
    pub version: i64,
    /// Whole-file BLAKE3, hex.
    pub etag: String,
}

/// A progress callback: called with the bytes moved so far; returning `false` stops the
/// transfer (a download then resumes on the next call).
pub type Progress = Arc<dyn Fn(u64) -> bool + Send + Sync>;

/// No progress reporting.
pub fn no_progress() -> Progress {
    Arc::new(|_| true)
}

/// Percent-encodes a key for a URL path, keeping `/` between segments.
pub fn encode_path(key: &str) -> String {
    nuage_core::url::percent_encode(key, true)
}

fn encode_query(value: &str) -> String {
    nuage_core::url::percent_encode(value, false)
}

/// A guess of the content type from a file name's extension.
pub fn content_type_of(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "txt" | "md" | "rs" | "toml" | "csv" => "text/plain; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        _ => "application/octet-stream",
    }
}

/// Resume state of an interrupted download, kept beside the partial file.
#[derive(Debug, Serialize, Deserialize)]
struct PartState {
    version: i64,
    etag: String,
    /// The parts layout the server sent (`x-nuage-parts`), for a version assembled from parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    layout: Option<String>,
}

impl PartState {
    /// What the content hash of this version is computed with.
    fn hasher(&self) -> ClientResult<ContentHasher> {
        let layout = match &self.layout {
            None => Vec::new(),
            Some(text) => nuage_core::manifest::layout_from_text(text)
                .ok_or_else(|| ClientError::Protocol(format!("a malformed x-nuage-parts: {text:?}")))?,
        };
        Ok(ContentHasher::new(layout))
    }
}

/// A client of one server, with one token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    region: Option<String>,
    edge_read_timeout: Duration,
    /// The retry window, shared by the clones of this client.
    retry: Arc<Retry>,
    /// The server's edges, ranked the first time a transfer needs them.
    edges: std::sync::Arc<tokio::sync::OnceCell<Option<std::sync::Arc<crate::edges::Edges>>>>,
}

impl Client {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:8420`).
    pub fn new(base: &str, token: Option<String>) -> ClientResult<Client> {
        let url = reqwest::Url::parse(base).map_err(|_| ClientError::ServerUrl(base.to_owned()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(ClientError::ServerUrl(base.to_owned()));
        }
        Ok(Client {
            http: http_client(READ_TIMEOUT)?,
            base: base.trim_end_matches('/').to_owned(),
            token,
            region: None,
            edge_read_timeout: crate::edges::EDGE_READ_TIMEOUT,
            retry: Arc::new(Retry::new(crate::retry::RETRY_WINDOW)),
            edges: Default::default(),
        })
    }

    /// Sets how long temporary failures (the server down or restarting, a connection cut,
    /// `502`/`503`/`504`) are retried before a call gives up (default
    /// [`crate::retry::RETRY_WINDOW`]; zero: never retried).
    pub fn with_retry_window(mut self, window: Duration) -> Client {
        self.retry = Arc::new(Retry::new(window));
        self
    }

    /// Sets how long a request may wait for the server's next byte before it fails as a
    /// timeout, a temporary failure (default [`READ_TIMEOUT`]): a server that stops
    /// answering without closing the connection then enters the retry window.
    pub fn with_read_timeout(mut self, timeout: Duration) -> ClientResult<Client> {
        self.http = http_client(timeout)?;
        Ok(self)
    }

    pub(crate) fn retry(&self) -> &Retry {
        &self.retry
    }

    /// Sets how long a chunk request to an edge may go without progress before the edge is
    /// given up for a while (default [`crate::edges::EDGE_READ_TIMEOUT`]).
    pub fn with_edge_read_timeout(mut self, timeout: Duration) -> Client {
        self.edge_read_timeout = timeout;
        self
    }

    /// Sets the client's region: edges of that region are tried first.
    pub fn with_region(mut self, region: Option<String>) -> Client {
        self.region = region;
        self
    }

    /// The edge caches the server lists.
    pub async fn edge_list(&self) -> ClientResult<Vec<EdgeLink>> {
        Ok(self.json::<EdgeList>(self.request(Method::GET, "/v1/edges")).await?.edges)
    }

    /// The edges of `list`, ranked once per client (`None` when there are none).
    pub(crate) async fn ranked_edges(
        &self,
        list: &[EdgeLink],
    ) -> Option<std::sync::Arc<crate::edges::Edges>> {
        if list.is_empty() {
            return None;
        }
        self.edges
            .get_or_init(|| async {
                match crate::edges::Edges::rank(list, self.region.as_deref(), self.edge_read_timeout).await {
                    Ok(e) => Some(std::sync::Arc::new(e)),
                    Err(e) => {
                        tracing::warn!("edges: {e}; reading from the server");
                        None
                    }
                }
            })
            .await
            .clone()
    }

    /// The server's address.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request to an absolute URL, without the token: upload targets carry their own
    /// authorization (a grant, a presigned URL), and a provider must never see the token.
    pub(crate) fn raw_request(&self, method: Method, url: &str) -> RequestBuilder {
        self.http.request(method, url)
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    fn object_path(bucket: &str, key: &str) -> String {
        format!("/v1/buckets/{}/objects/{}", encode_path(bucket), encode_path(key))
    }

    /// Turns an error answer into [`ClientError::Api`].
    pub(crate) async fn check(response: Response) -> ClientResult<Response> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        // An answer that is not nuage's error body (a proxy's page) still says its status.
        let (code, message) = match response.json::<ErrorBody>().await {
            Ok(body) if body.error.message.is_empty() => (body.error.code, format!("HTTP {status}")),
            Ok(body) => (body.error.code, body.error.message),
            Err(_) => ("http_error".to_owned(), format!("HTTP {status}")),
        };
        Err(ClientError::Api { status, code, message })
    }

    /// Sends a request and turns an error answer into [`ClientError::Api`]; a `GET` or `HEAD`
    /// is retried on temporary failures (see [`crate::retry`]).
    pub(crate) async fn send(&self, r: RequestBuilder) -> ClientResult<Response> {
        let request = r.build()?;
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return Self::check(self.http.execute(request).await?).await;
        }
        let what = format!("reading {}", request.url().path());
        with_retries(&self.retry, &what, || {
            let request = request.try_clone();
            async move {
                let request = request
                    .ok_or_else(|| ClientError::Protocol("a request that cannot be repeated".into()))?;
                Self::check(self.http.execute(request).await?).await
            }
        })
        .await
    }

    /// [`Client::send`], then the answer's JSON body.
    pub(crate) async fn json<T: serde::de::DeserializeOwned>(&self, r: RequestBuilder) -> ClientResult<T> {
        Ok(self.send(r).await?.json().await?)
    }

    /// Logs in with a password; returns a new token.
    pub async fn login(&self, account: &str, password: &str, token_name: &str) -> ClientResult<NewToken> {
        let body = Login {
            account: account.to_owned(),
            password: password.to_owned(),
            token_name: Some(token_name.to_owned()),
        };
        self.json(self.request(Method::POST, "/v1/login").json(&body)).await
    }

    /// Revokes the token this client uses.
    pub async fn logout(&self) -> ClientResult<()> {
        Self::check(self.request(Method::DELETE, "/v1/tokens/current").send().await?).await?;
        Ok(())
    }

    /// The account of the token.
    pub async fn account(&self) -> ClientResult<AccountView> {
        self.json(self.request(Method::GET, "/v1/account")).await
    }

    /// Makes an S3 access key of the account (its secret is in this answer only).
    pub async fn create_access_key(&self, request: &AccessKeyRequest) -> ClientResult<NewAccessKey> {
        self.json(self.request(Method::POST, "/v1/access-keys").json(request)).await
    }

    /// The account's S3 access keys, newest first.
    pub async fn access_keys(&self) -> ClientResult<Vec<AccessKeyView>> {
        Ok(self.json::<AccessKeyList>(self.request(Method::GET, "/v1/access-keys")).await?.access_keys)
    }

    /// Revokes one of the account's S3 access keys.
    pub async fn revoke_access_key(&self, id: &str) -> ClientResult<()> {
        let path = format!("/v1/access-keys/{}", encode_path(id));
        Self::check(self.request(Method::DELETE, &path).send().await?).await?;
        Ok(())
    }

    /// Creates a bucket.
    pub async fn create_bucket(&self, name: &str, spec: &BucketRequest) -> ClientResult<BucketView> {
        self.json(self.request(Method::PUT, &format!("/v1/buckets/{}", encode_path(name))).json(spec)).await
    }

    /// One bucket.
    pub async fn bucket(&self, name: &str) -> ClientResult<BucketView> {
        self.json(self.request(Method::GET, &format!("/v1/buckets/{}", encode_path(name)))).await
    }

    /// The account's buckets.
    pub async fn buckets(&self) -> ClientResult<Vec<BucketView>> {
        Ok(self.json::<BucketList>(self.request(Method::GET, "/v1/buckets")).await?.buckets)
    }

    /// Deletes an empty bucket.
    pub async fn delete_bucket(&self, name: &str) -> ClientResult<()> {
        Self::check(
            self.request(Method::DELETE, &format!("/v1/buckets/{}", encode_path(name))).send().await?,
        )
        .await?;
        Ok(())
    }

    /// Uploads bytes held in memory.
    pub async fn put_bytes(
        &self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> ClientResult<PutAnswer> {
        let r = self
            .request(Method::PUT, &Self::object_path(bucket, key))
            .header(header::CONTENT_TYPE, content_type)
            .header(nuage_proto::headers::IDEMPOTENCY_KEY, new_idempotency_key())
            .body(bytes);
        self.json(r).await
    }

    /// Uploads a file, streaming it, retrying temporary failures with one idempotency key.
    pub async fn put_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        progress: Progress,
    ) -> ClientResult<PutAnswer> {
        let idempotency_key = new_idempotency_key();
        let what = format!("upload of {}", path.display());
        with_retries(&self.retry, &what, || {
            self.put_file_once(bucket, key, path, &idempotency_key, progress.clone())
        })
        .await
    }

    async fn put_file_once(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        idempotency_key: &str,
        progress: Progress,
    ) -> ClientResult<PutAnswer> {
        let file = tokio::fs::File::open(path).await.map_err(io_err(path))?;
        let len = file.metadata().await.map_err(io_err(path))?.len();
        let mut sent = 0u64;
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(move |chunk| {
            if let Ok(c) = &chunk {
                sent += c.len() as u64;
                progress(sent);
            }
            chunk
        });
        let r = self
            .request(Method::PUT, &Self::object_path(bucket, key))
            .header(header::CONTENT_TYPE, content_type_of(path))
            .header(header::CONTENT_LENGTH, len)
            .header(nuage_proto::headers::IDEMPOTENCY_KEY, idempotency_key)
            .body(reqwest::Body::wrap_stream(stream));
        self.json(r).await
    }

    /// Downloads an object (or one version) into `dest`, resuming an interrupted download
    /// of the same version, and checks the whole-file hash before renaming into place. A
    /// download cut by a temporary failure resumes by itself within the retry window; past
    /// it, what arrived stays for the next call ([`ClientError::Cut`]).
    pub async fn get_to_file(
        &self,
        bucket: &str,
        key: &str,
        version: Option<i64>,
        dest: &Path,
        progress: Progress,
    ) -> ClientResult<GetResult> {
        let what = format!("the download of {bucket}/{key}");
        let got: ClientResult<GetResult> = with_retries(&self.retry, &what, || {
            self.get_to_file_once(bucket, key, version, dest, progress.clone())
        })
        .await;
        match got {
            Err(ClientError::GaveUp { what, waited, cause, source })
                if with_suffix(dest, ".nuage-part").exists() =>
            {
                Err(ClientError::Cut { what, waited, cause, source })
            }
            other => other,
        }
    }

    async fn get_to_file_once(
        &self,
        bucket: &str,
        key: &str,
        version: Option<i64>,
        dest: &Path,
        progress: Progress,
    ) -> ClientResult<GetResult> {
        let part = with_suffix(dest, ".nuage-part");
        let state_path = with_suffix(dest, ".nuage-part.json");
        let resume: Option<(PartState, u64)> = match (std::fs::read(&state_path), std::fs::metadata(&part)) {
            (Ok(s), Ok(m)) => serde_json::from_slice::<PartState>(&s)
                .ok()
                .filter(|s| version.is_none_or(|v| v == s.version))
                .map(|s| (s, m.len())),
            _ => None,
        };
        let path = Self::object_path(bucket, key);
        let mut resumed_from = 0;
        let mut response = None;
        if let Some((state, have)) = resume {
            // A download of "the current version" resumes only if the object has not changed
            // since (If-Match on the current one); an explicit version is pinned.
            let q = if version.is_some() { format!("?version={}", state.version) } else { String::new() };
            let r = self
                .request(Method::GET, &format!("{path}{q}"))
                .header(header::RANGE, format!("bytes={have}-"))
                .header(header::IF_MATCH, format!("\"{}\"", state.etag))
                .send()
                .await?;
            match r.status() {
                StatusCode::PARTIAL_CONTENT => {
                    resumed_from = have;
                    response = Some((r, state));
                }
                StatusCode::RANGE_NOT_SATISFIABLE => {
                    // Everything is on disk already (or the part is longer than the object:
                    // the hash check decides).
                    let hasher = hash_file(&part, state.hasher()?).await?;
                    return finish(dest, &part, &state_path, state, hasher, have, have).await;
                }
                // Changed, gone, or the range ignored: start over.
                StatusCode::PRECONDITION_FAILED | StatusCode::NOT_FOUND | StatusCode::OK => {}
                // Anything else (a 503 while the server restarts) keeps the part: the error
                // goes up, temporary or not, and the next attempt resumes.
                _ => {
                    Self::check(r).await?;
                }
            }
        }
        let (response, state) = match response {
            Some(r) => r,
            None => {
                let q = version.map(|v| format!("?version={v}")).unwrap_or_default();
                // Not retried here: the caller's loop retries the whole attempt.
                let r = Self::check(self.request(Method::GET, &format!("{path}{q}")).send().await?).await?;
                let etag = r
                    .headers()
                    .get(header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.trim_matches('"').to_owned())
                    .ok_or_else(|| ClientError::Protocol("no ETag".into()))?;
                let version = r
                    .headers()
                    .get(nuage_proto::headers::VERSION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| ClientError::Protocol("no x-nuage-version".into()))?;
                let layout = r
                    .headers()
                    .get(nuage_proto::headers::PARTS)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let state = PartState { version, etag, layout };
                if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
                    tokio::fs::create_dir_all(dir).await.map_err(io_err(dir))?;
                }
                tokio::fs::write(&state_path, serde_json::to_vec(&state).expect("serializable"))
                    .await
                    .map_err(io_err(&state_path))?;
                (r, state)
            }
        };
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(resumed_from > 0)
            .write(true)
            .truncate(resumed_from == 0)
            .open(&part)
            .await
            .map_err(io_err(&part))?;
        // Network frames are small; writing them in 1 MiB batches saves most system calls.
        let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
        // The hash runs as the bytes arrive (over the part already on disk first, when
        // resuming), so the file is not read again at the end.
        let mut hasher =
            if resumed_from > 0 { hash_file(&part, state.hasher()?).await? } else { state.hasher()? };
        let mut done = resumed_from;
        let mut body = response.bytes_stream();
        while let Some(bytes) = body.next().await {
            let bytes = match bytes {
                Ok(bytes) => bytes,
                Err(e) => {
                    // What arrived is kept for the next attempt.
                    file.flush().await.map_err(io_err(&part))?;
                    return Err(e.into());
                }
            };
            hasher.update(&bytes);
            file.write_all(&bytes).await.map_err(io_err(&part))?;
            done += bytes.len() as u64;
            if !progress(done) {
                file.flush().await.map_err(io_err(&part))?;
                return Err(ClientError::Interrupted);
            }
        }
        file.flush().await.map_err(io_err(&part))?;
        file.into_inner().sync_all().await.map_err(io_err(&part))?;
        finish(dest, &part, &state_path, state, hasher, resumed_from, done).await
    }

    /// Downloads an object into memory.
    pub async fn get_bytes(&self, bucket: &str, key: &str) -> ClientResult<Vec<u8>> {
        let r = self.send(self.request(Method::GET, &Self::object_path(bucket, key))).await?;
        Ok(r.bytes().await?.to_vec())
    }

    /// One page of a listing.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        page_token: Option<&str>,
    ) -> ClientResult<ListingView> {
        let mut q = format!("?prefix={}", encode_query(prefix));
        if let Some(d) = delimiter {
            q.push_str(&format!("&delimiter={}", encode_query(d)));
        }
        if let Some(t) = page_token {
            q.push_str(&format!("&page_token={}", encode_query(t)));
        }
        self.json(self.request(Method::GET, &format!("/v1/buckets/{}/objects{q}", encode_path(bucket)))).await
    }

    /// Every object under `prefix` (all pages).
    pub async fn list_all(&self, bucket: &str, prefix: &str) -> ClientResult<Vec<VersionView>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.list(bucket, prefix, None, token.as_deref()).await?;
            out.extend(page.objects);
            match page.next_page_token {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// Deletes a key (adds a tombstone); returns the tombstone's version.
    pub async fn delete(&self, bucket: &str, key: &str) -> ClientResult<i64> {
        let r =
            Self::check(self.request(Method::DELETE, &Self::object_path(bucket, key)).send().await?).await?;
        r.headers()
            .get(nuage_proto::headers::VERSION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ClientError::Protocol("no x-nuage-version".into()))
    }

    /// Makes `version` of a key (an old one, or the last one before a delete) its current
    /// version again, on the server (a copy of the manifest: nothing is downloaded or sent
    /// again); retried on temporary failures with one idempotency key.
    pub async fn restore(&self, bucket: &str, key: &str, version: i64) -> ClientResult<PutAnswer> {
        let path = format!("/v1/buckets/{}/versions/{}", encode_path(bucket), encode_path(key));
        let idempotency_key = new_idempotency_key();
        let body = RestoreRequest { version };
        with_retries(&self.retry, "restoring a version", || {
            self.json(
                self.request(Method::POST, &path)
                    .header(nuage_proto::headers::IDEMPOTENCY_KEY, &idempotency_key)
                    .json(&body),
            )
        })
        .await
    }

    /// Every kept version of a key, newest first.
    pub async fn versions(&self, bucket: &str, key: &str) -> ClientResult<Vec<VersionView>> {
        let path = format!("/v1/buckets/{}/versions/{}", encode_path(bucket), encode_path(key));
        Ok(self.json::<VersionList>(self.request(Method::GET, &path)).await?.versions)
    }
}

/// The whole-file BLAKE3 of a local file: what the server's `ETag` is for the same content.
/// Read and hashed on a blocking thread in one go (a file at a time costs one hop, not one
/// per buffer).
pub async fn file_hash(path: &Path) -> ClientResult<[u8; 32]> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&owned).map_err(io_err(&owned))?;
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(file).map_err(io_err(&owned))?;
        Ok(*hasher.finalize().as_bytes())
    })
    .await
    .map_err(|e| ClientError::Protocol(format!("hashing thread: {e}")))?
}

async fn hash_file(path: &Path, mut hasher: ContentHasher) -> ClientResult<ContentHasher> {
    let mut f = tokio::fs::File::open(path).await.map_err(io_err(path))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).await.map_err(io_err(path))?;
        if n == 0 {
            return Ok(hasher);
        }
        hasher.update(&buf[..n]);
    }
}

/// Checks the whole-file hash of a finished download, then gives the file its name (or
/// removes it, when it does not match, so that the next attempt starts over).
async fn finish(
    dest: &Path,
    part: &Path,
    state_path: &Path,
    state: PartState,
    hasher: ContentHasher,
    resumed_from: u64,
    size: u64,
) -> ClientResult<GetResult> {
    if hex::encode(hasher.finalize()) != state.etag {
        let _ = tokio::fs::remove_file(part).await;
        let _ = tokio::fs::remove_file(state_path).await;
        return Err(ClientError::Integrity(dest.to_owned()));
    }
    tokio::fs::rename(part, dest).await.map_err(io_err(dest))?;
    let _ = tokio::fs::remove_file(state_path).await;
    Ok(GetResult { size, resumed_from, version: state.version, etag: state.etag })
}

pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn new_idempotency_key() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_per_segment() {
        assert_eq!(encode_path("a/b c/é%"), "a/b%20c/%C3%A9%25");
        assert_eq!(encode_query("a/b&c"), "a%2Fb%26c");
    }
}
