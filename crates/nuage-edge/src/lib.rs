//! `nuage edge`: a cache of stored chunks near users, trusted with nothing.
//!
//! Chunks are ciphertext named by their BLAKE3 hash, so an edge needs no key, no
//! invalidation and no trust: it checks each request's grant with the link server's
//! *public* keys ([`keys`]), serves the chunk from its [`cache`] or fetches it (from the
//! providers when it has read-only settings for them, else from the origin's
//! `GET /v1/chunks/{address}` with the request's own grant), verifies it against the
//! address, keeps it and serves it. Concurrent misses for one address share one fetch.
//!
//! Routes: `GET`/`HEAD /chunks/{address}` (grant in `x-nuage-grant` or `?grant=`; `Range`),
//! `/healthz`, `/metrics`.

pub mod cache;
mod capped;
pub mod keys;

use nuage_proto::GrantQuery;
use std::collections::HashMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use nuage_blob::{ChunkStore, Placement, Provider, ProviderConfig};
use nuage_core::Address;
use nuage_core::grant::{Grant, Operation};
use nuage_http::extract::{Path as UrlPath, Query};
use serde::Deserialize;

use cache::{Hit, HybridCache};
use capped::read_capped;
use keys::EdgeKeys;
use nuage_http::HttpError;
use nuage_proto::headers::GRANT as GRANT_HEADER;
use nuage_proto::range::{self, RangeRequest};

/// Result of an edge handler.
type EdgeResult<T> = Result<T, HttpError>;

/// Now, in Unix milliseconds (what grants' expiries are in).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// An edge's configuration (`nuage edge` flags, or the same keys in TOML).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// The link server, e.g. `http://127.0.0.1:8420`.
    pub origin: String,
    /// Address to listen on (default `127.0.0.1:8421`).
    pub listen: SocketAddr,
    /// Disk tier folder (default `./nuage-edge-cache`).
    pub cache_dir: PathBuf,
    /// Disk tier size, e.g. `10GiB` (default 10 GiB).
    pub cache_size: Size,
    /// Memory tier size (default 256 MiB).
    pub memory: Size,
    /// Region name, shown at `/healthz` (the link server's `[[edges]]` list is what clients
    /// read).
    pub region: Option<String>,
    /// Seconds between two refreshes of the grant keys (default 60).
    pub keys_refresh_secs: u64,
    /// Read-only settings of the providers: misses are fetched from them directly, and from
    /// the origin only when none answers. Empty: every miss goes to the origin.
    pub providers: Vec<ProviderConfig>,
    /// Accept an `http://` origin that is not on loopback (default false): the grant keys
    /// would then travel unauthenticated, and whoever sits on the path could make the edge
    /// accept grants of their own.
    pub allow_http_origin: bool,
    /// Timeouts and the connection cap of the port (`[http]`, as the server's).
    pub http: nuage_http::HttpConfig,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            origin: String::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8421)),
            cache_dir: PathBuf::from("./nuage-edge-cache"),
            cache_size: Size(10 << 30),
            memory: Size(256 << 20),
            region: None,
            keys_refresh_secs: 60,
            providers: Vec::new(),
            allow_http_origin: false,
            http: nuage_http::HttpConfig::default(),
        }
    }
}

impl EdgeConfig {
    /// Reads a TOML file.
    pub fn load(path: &Path) -> Result<EdgeConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// A size in bytes, written as a number or with a unit: `512MiB`, `10GiB`, `1G` (powers of
/// 1024 either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl std::str::FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Size, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (n, unit) = t.split_at(split);
        let n: u64 = n.parse().map_err(|_| format!("{s:?} is not a size (e.g. 512MiB, 10GiB)"))?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            "t" | "tb" | "tib" => 40,
            _ => return Err(format!("{s:?}: unknown unit (use KiB, MiB, GiB or TiB)")),
        };
        n.checked_mul(1 << shift).map(Size).ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Size(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Why a fetch failed, shared by every request that waited on it.
#[derive(Debug, Clone)]
struct FetchError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl From<FetchError> for HttpError {
    fn from(e: FetchError) -> HttpError {
        HttpError::new(e.status, e.code, e.message)
    }
}

type SharedFetch = Shared<BoxFuture<'static, Result<Bytes, FetchError>>>;

/// The statuses counted one by one; the others are counted together as `other`.
const STATUSES: [u16; 11] = [200, 204, 206, 400, 403, 404, 410, 416, 500, 502, 503];

/// The edge's counters: atomics only, so the hit path takes no lock for them.
#[derive(Debug, Default)]
pub struct EdgeMetrics {
    /// Chunk requests by status.
    requests: [AtomicU64; STATUSES.len() + 1],
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
    fetches_providers: AtomicU64,
    fetches_origin: AtomicU64,
    fetch_errors: AtomicU64,
    fetched_bytes: AtomicU64,
    sent_bytes: AtomicU64,
    fetch_verification_failures: AtomicU64,
    grants_refused: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// A running edge.
#[derive(Debug)]
pub struct Edge {
    config: EdgeConfig,
    origin: String,
    http: reqwest::Client,
    keys: EdgeKeys,
    cache: HybridCache,
    store: Option<ChunkStore>,
    inflight: Mutex<HashMap<Address, SharedFetch>>,
    disk_writes: tokio_util::task::TaskTracker,
    metrics: EdgeMetrics,
}

impl Edge {
    /// Opens the cache (indexing what is on disk) and the providers, and fetches the grant
    /// keys (an origin that does not answer yet is retried when a grant needs it).
    pub async fn open(config: EdgeConfig) -> Result<Arc<Edge>> {
        config.http.validate()?;
        anyhow::ensure!(
            config.origin.starts_with("http://") || config.origin.starts_with("https://"),
            "the edge needs its link server: --origin https://HOST[:PORT]"
        );
        anyhow::ensure!(
            !config.origin.starts_with("http://") || loopback(&config.origin) || config.allow_http_origin,
            "the origin {} is plain http off this machine: the edge fetches the keys that decide which \
             grants it accepts from there; use https, or set allow_http_origin = true",
            config.origin
        );
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("making the HTTP client")?;
        let (dir, memory, disk) = (config.cache_dir.clone(), config.memory.0, config.cache_size.0);
        let cache = tokio::task::spawn_blocking(move || HybridCache::open(&dir, memory, disk))
            .await?
            .with_context(|| format!("opening the cache in {}", config.cache_dir.display()))?;
        let store = if config.providers.is_empty() {
            None
        } else {
            let mut providers = Vec::new();
            for c in &config.providers {
                providers.push(
                    Provider::open(c.clone())
                        .await
                        .with_context(|| format!("opening provider {}", c.name))?,
                );
            }
            Some(ChunkStore::new(providers, Placement::replicas(1))?)
        };
        let origin = config.origin.trim_end_matches('/').to_owned();
        let keys = EdgeKeys::new(&origin, http.clone());
        match keys.reload().await {
            Ok(n) => tracing::info!("edge: {n} grant keys from {origin}"),
            Err(e) => tracing::warn!("edge: no grant keys from {origin} yet ({e:#}); retrying when needed"),
        }
        let (used_memory, used_disk, entries) = cache.usage();
        tracing::info!(
            "edge: cache {} holds {entries} chunks ({used_disk} bytes on disk, {used_memory} in memory)",
            config.cache_dir.display()
        );
        Ok(Arc::new(Edge {
            config,
            origin,
            http,
            keys,
            cache,
            store,
            inflight: Mutex::default(),
            disk_writes: tokio_util::task::TaskTracker::new(),
            metrics: EdgeMetrics::default(),
        }))
    }

    /// Refreshes the grant keys every `keys_refresh_secs`, until the process ends.
    pub fn spawn_key_refresh(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let edge = self.clone();
        tokio::spawn(async move {
            let every = Duration::from_secs(edge.config.keys_refresh_secs.max(1));
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                if let Err(e) = edge.keys.reload().await {
                    tracing::warn!("edge: refreshing grant keys: {e:#}");
                }
            }
        })
    }

    /// The chunk: from the cache, from a fetch already in flight, or from a new fetch.
    async fn chunk(
        self: &Arc<Self>,
        address: Address,
        grant: &Grant,
        text: &str,
    ) -> Result<Bytes, FetchError> {
        loop {
            match self.cache.get(&address).await {
                Some(Hit::Memory(b)) => {
                    add(&self.metrics.memory_hits, 1);
                    return Ok(b);
                }
                Some(Hit::Disk(b)) => {
                    add(&self.metrics.disk_hits, 1);
                    return Ok(b);
                }
                None => {}
            }
            let (fetch, leader) = {
                let mut inflight = self.inflight.lock().expect("inflight lock");
                // A fetch leaves this map only once its bytes are in memory or on disk: look
                // again under the lock, so no miss is fetched twice.
                if let Some(b) = self.cache.get_memory(&address) {
                    add(&self.metrics.memory_hits, 1);
                    return Ok(b);
                }
                if self.cache.on_disk(&address) {
                    continue; // read it from there
                }
                add(&self.metrics.misses, 1);
                match inflight.get(&address) {
                    Some(f) => {
                        add(&self.metrics.coalesced, 1);
                        (f.clone(), false)
                    }
                    None => {
                        let f = self.spawn_fetch(address, *grant, text.to_owned());
                        inflight.insert(address, f.clone());
                        (f, true)
                    }
                }
            };
            return match fetch.await {
                // The fetch was made with another request's grant, which the origin
                // refused: this request's own grant gets its own answer.
                Err(e) if !leader && matches!(e.status.as_u16(), 403 | 410) => {
                    self.fetch(&address, grant, text).await
                }
                other => other,
            };
        }
    }

    /// Starts the fetch of a miss on its own task (a requester that goes away does not
    /// cancel it for the others); it leaves the in-flight map when it ends, even by a panic.
    fn spawn_fetch(self: &Arc<Self>, address: Address, grant: Grant, text: String) -> SharedFetch {
        struct Leave(Arc<Edge>, Address);
        impl Drop for Leave {
            fn drop(&mut self) {
                self.0.inflight.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.1);
            }
        }
        let edge = self.clone();
        let task = tokio::spawn(async move {
            let _leave = Leave(edge.clone(), address);
            let result = edge.fetch(&address, &grant, &text).await;
            match &result {
                Ok(bytes) if edge.cache.put_memory(address, bytes.clone()) => {
                    let (e, b) = (edge.clone(), bytes.clone());
                    edge.disk_writes.spawn(async move { e.cache.put_disk(address, b).await });
                }
                // Not kept in memory: stay in flight until it is on disk.
                Ok(bytes) => edge.cache.put_disk(address, bytes.clone()).await,
                Err(_) => add(&edge.metrics.fetch_errors, 1),
            }
            result
        });
        async move {
            task.await.unwrap_or_else(|e| {
                Err(FetchError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    code: "internal",
                    message: format!("fetch task: {e}"),
                })
            })
        }
        .boxed()
        .shared()
    }

    /// Fetches a chunk, verified: from the providers (unless the grant is a share link's,
    /// whose revocation only the origin can check), else from the origin.
    async fn fetch(&self, address: &Address, grant: &Grant, text: &str) -> Result<Bytes, FetchError> {
        if let Some(store) = self.store.as_ref().filter(|_| grant.op != Operation::GetShare) {
            add(&self.metrics.fetches_providers, 1);
            match store.get(address, &[]).await {
                Ok(read) => {
                    add(&self.metrics.fetched_bytes, read.bytes.len() as u64);
                    return Ok(read.bytes);
                }
                Err(e) => tracing::warn!("edge: chunk {address} from the providers: {e}; asking the origin"),
            }
        }
        add(&self.metrics.fetches_origin, 1);
        let url = format!("{}/v1/chunks/{}", self.origin, address.to_hex());
        let unavailable = |message: String| FetchError {
            status: StatusCode::BAD_GATEWAY,
            code: "origin_unavailable",
            message,
        };
        let response = self
            .http
            .get(&url)
            .header(GRANT_HEADER, text)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| unavailable(format!("the origin did not answer: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            let body = read_capped(response, 64 << 10).await.unwrap_or_default();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let code = body["error"]["code"].as_str().unwrap_or("");
            let message = body["error"]["message"].as_str().unwrap_or("").to_owned();
            return Err(match (status.as_u16(), known_code(code)) {
                (403 | 404 | 410, Some(code)) => FetchError { status, code, message },
                _ => unavailable(format!("the origin answered {status}: {code} {message}")),
            });
        }
        let bytes = read_capped(response, MAX_STORED_CHUNK)
            .await
            .map_err(|e| unavailable(format!("reading from the origin: {e}")))?;
        if address.verify(&bytes).is_err() {
            add(&self.metrics.fetch_verification_failures, 1);
            return Err(unavailable(format!("the origin sent bytes that are not chunk {address}")));
        }
        add(&self.metrics.fetched_bytes, bytes.len() as u64);
        Ok(bytes)
    }

    /// Waits for the disk writes under way (at shutdown, so a restart finds them).
    pub async fn flush(&self) {
        self.disk_writes.close();
        self.disk_writes.wait().await;
    }

    fn render_metrics(&self) -> String {
        let m = &self.metrics;
        let c = &self.cache.counters;
        let mut out = String::from(
            "# HELP nuage_edge_requests_total Chunk requests by status\n# TYPE nuage_edge_requests_total counter\n",
        );
        let statuses = STATUSES.iter().map(|s| s.to_string()).chain(["other".to_owned()]);
        for (status, n) in statuses.zip(&m.requests) {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(out, "nuage_edge_requests_total{{status=\"{status}\"}} {n}");
            }
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (memory, disk, entries) = self.cache.usage();
        for (name, kind, help, labels, v) in [
            (
                "nuage_edge_hits_total",
                "counter",
                "Chunks served from the cache",
                "tier=\"memory\"",
                load(&m.memory_hits),
            ),
            ("nuage_edge_hits_total", "counter", "", "tier=\"disk\"", load(&m.disk_hits)),
            (
                "nuage_edge_misses_total",
                "counter",
                "Requests the cache could not answer",
                "",
                load(&m.misses),
            ),
            (
                "nuage_edge_coalesced_waits_total",
                "counter",
                "Misses that waited on a fetch already in flight",
                "",
                load(&m.coalesced),
            ),
            (
                "nuage_edge_fetches_total",
                "counter",
                "Chunk fetches",
                "source=\"providers\"",
                load(&m.fetches_providers),
            ),
            ("nuage_edge_fetches_total", "counter", "", "source=\"origin\"", load(&m.fetches_origin)),
            ("nuage_edge_fetch_errors_total", "counter", "Fetches that failed", "", load(&m.fetch_errors)),
            ("nuage_edge_fetched_bytes_total", "counter", "Bytes fetched", "", load(&m.fetched_bytes)),
            ("nuage_edge_sent_bytes_total", "counter", "Chunk bytes sent", "", load(&m.sent_bytes)),
            (
                "nuage_edge_evictions_total",
                "counter",
                "Entries evicted",
                "tier=\"memory\"",
                load(&c.memory_evictions),
            ),
            ("nuage_edge_evictions_total", "counter", "", "tier=\"disk\"", load(&c.disk_evictions)),
            (
                "nuage_edge_verification_failures_total",
                "counter",
                "Bytes that did not match their address (never served)",
                "source=\"disk\"",
                load(&c.verification_failures),
            ),
            (
                "nuage_edge_verification_failures_total",
                "counter",
                "",
                "source=\"fetch\"",
                load(&m.fetch_verification_failures),
            ),
            (
                "nuage_edge_disk_write_errors_total",
                "counter",
                "Disk tier writes that failed",
                "",
                load(&c.disk_write_errors),
            ),
            (
                "nuage_edge_grants_refused_total",
                "counter",
                "Requests refused for their grant",
                "",
                load(&m.grants_refused),
            ),
            ("nuage_edge_cache_bytes", "gauge", "Bytes held", "tier=\"memory\"", memory),
            ("nuage_edge_cache_bytes", "gauge", "", "tier=\"disk\"", disk),
            ("nuage_edge_cache_entries", "gauge", "Chunks held on disk", "tier=\"disk\"", entries),
        ] {
            if !help.is_empty() {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            }
            let labels = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
            let _ = writeln!(out, "{name}{labels} {v}");
        }
        out
    }
}

/// Whether an `http://` URL names this machine.
fn loopback(url: &str) -> bool {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    host == "localhost"
        || host == "[::1]"
        || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// The largest stored chunk: the largest plaintext chunk and its header and tag.
const MAX_STORED_CHUNK: usize =
    nuage_core::chunk::MAX_CHUNK_LEN + nuage_core::chunk::HEADER_LEN + nuage_core::chunk::TAG_LEN + 64;

/// The error codes of the origin's chunk endpoint an edge passes on as they are.
fn known_code(code: &str) -> Option<&'static str> {
    [
        "chunk_not_found",
        "grant_forged",
        "grant_expired",
        "grant_wrong_operation",
        "grant_wrong_address",
        "share_revoked",
        "share_expired",
        "share_exhausted",
    ]
    .into_iter()
    .find(|c| *c == code)
}

/// The edge's routes.
pub fn router(edge: Arc<Edge>) -> Router {
    Router::new()
        .route("/chunks/{address}", get(get_chunk).head(get_chunk).options(preflight))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            HttpError::new(StatusCode::NOT_FOUND, "no_route", "an edge serves /chunks/{address}")
        })
        .layer(axum::middleware::from_fn(nuage_http::extract::json_errors))
        .with_state(edge)
}

/// Browsers (a share page on the link server's origin) read chunks from edges.
fn cors(h: &mut HeaderMap) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("content-range, content-length"),
    );
}

async fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    cors(h);
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("x-nuage-grant, range"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    response
}

/// `GET`/`HEAD /chunks/{address}`, counted by status.
async fn get_chunk(
    State(edge): State<Arc<Edge>>,
    method: Method,
    UrlPath(address): UrlPath<String>,
    Query(query): Query<GrantQuery>,
    headers: HeaderMap,
) -> Response {
    let response = serve_chunk(&edge, method, &address, &query, &headers).await.into_response();
    let status = response.status().as_u16();
    let i = STATUSES.iter().position(|s| *s == status).unwrap_or(STATUSES.len());
    add(&edge.metrics.requests[i], 1);
    response
}

async fn serve_chunk(
    edge: &Arc<Edge>,
    method: Method,
    address: &str,
    query: &GrantQuery,
    headers: &HeaderMap,
) -> EdgeResult<Response> {
    let address: Address = address
        .parse()
        .map_err(|e: nuage_core::Error| HttpError::bad_request("invalid_address", e.to_string()))?;
    let Some(grant) = headers.get(GRANT_HEADER).and_then(|v| v.to_str().ok()).or(query.grant.as_deref())
    else {
        add(&edge.metrics.grants_refused, 1);
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "grant_missing",
            format!("a chunk read needs a grant in {GRANT_HEADER} or ?grant="),
        ));
    };
    let checked = match edge.keys.check(grant, &address, now_ms()).await {
        Ok(g) => g,
        Err(e) => {
            add(&edge.metrics.grants_refused, 1);
            return Err(HttpError::new(StatusCode::FORBIDDEN, e.code(), e.to_string()));
        }
    };
    let bytes = edge.chunk(address, &checked, grant).await?;
    let size = bytes.len() as u64;
    let (status, body, content_range) =
        match range::parse(headers.get(header::RANGE).and_then(|v| v.to_str().ok()), size) {
            RangeRequest::Full => (StatusCode::OK, bytes, None),
            RangeRequest::Partial { start, end } => (
                StatusCode::PARTIAL_CONTENT,
                bytes.slice(start as usize..end as usize),
                Some(format!("bytes {start}-{}/{size}", end - 1)),
            ),
            RangeRequest::Unsatisfiable => {
                let mut e = HttpError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range_not_satisfiable",
                    format!("the chunk has {size} bytes"),
                );
                e.size = Some(size);
                return Err(e);
            }
        };
    let len = body.len();
    let mut response = if method == Method::HEAD {
        let mut r = status.into_response();
        r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        r
    } else {
        add(&edge.metrics.sent_bytes, len as u64);
        (status, body).into_response()
    };
    let h = response.headers_mut();
    if let Some(value) = content_range {
        h.insert(header::CONTENT_RANGE, HeaderValue::from_str(&value).expect("ascii"));
    }
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // Never changes under its address; `private` since each read needs a grant.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=31536000, immutable"));
    h.insert(header::ETAG, HeaderValue::from_str(&format!("\"{}\"", address.to_hex())).expect("hex"));
    cors(h);
    Ok(response)
}

async fn healthz(State(edge): State<Arc<Edge>>) -> Response {
    let (memory, disk, entries) = edge.cache.usage();
    let keys = edge.keys.count();
    let body = serde_json::json!({
        "status": if keys > 0 { "ok" } else { "no_keys" },
        "region": edge.config.region,
        "origin": edge.origin,
        "grant_keys": keys,
        "cache": { "memory_bytes": memory, "disk_bytes": disk, "disk_entries": entries },
    });
    let status = if keys > 0 { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut response = (status, axum::Json(body)).into_response();
    cors(response.headers_mut());
    response
}

async fn metrics(State(edge): State<Arc<Edge>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], edge.render_metrics())
}

/// Serves the edge on `listener` until SIGINT or SIGTERM, then lets the disk writes under
/// way finish.
pub async fn serve_on(edge: Arc<Edge>, listener: tokio::net::TcpListener) -> Result<()> {
    let refresh = edge.spawn_key_refresh();
    let served =
        nuage_http::serve(listener, router(edge.clone()), edge.config.http, nuage_http::shutdown_signal())
            .await
            .context("serving");
    refresh.abort();
    edge.flush().await;
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!("4096".parse(), Ok(Size(4096)));
        assert_eq!("512MiB".parse(), Ok(Size(512 << 20)));
        assert_eq!("10 GiB".parse(), Ok(Size(10 << 30)));
        assert_eq!("1g".parse(), Ok(Size(1 << 30)));
        for bad in ["", "MiB", "1.5GiB", "10 parsecs", "99999999999999999999TiB"] {
            assert!(bad.parse::<Size>().is_err(), "{bad}");
        }
        let c: EdgeConfig =
            toml::from_str("origin = 'http://o'\ncache_size = '2GiB'\nmemory = 1024").unwrap();
        assert_eq!((c.cache_size, c.memory), (Size(2 << 30), Size(1024)));
        assert!(toml::from_str::<EdgeConfig>("orign = 'x'").is_err());
        for (url, local) in [
            ("http://127.0.0.1:8420", true),
            ("http://localhost:1/x", true),
            ("http://[::1]:8420", true),
            ("http://127.0.0.1.evil.net:80", false),
            ("http://10.0.0.1:8420", false),
            ("http://origin.example.net", false),
        ] {
            assert_eq!(loopback(url), local, "{url}");
        }
    }
}
