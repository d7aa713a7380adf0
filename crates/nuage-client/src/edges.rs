//! Edge selection: which edge cache a transfer reads chunks from.
//!
//! The link server lists its edges with their regions (`/v1/edges`, and in every manifest
//! answer). The first time a client needs them it ranks them once: edges of the client's
//! own region first (`--region`, `NUAGE_REGION`), then by the round-trip time of a
//! `GET /healthz` probe; an edge that does not answer the probe healthy is left out.
//!
//! A chunk is asked of the best edge still in favour, then the next, then the origin. An
//! edge that fails (no connection within [`EDGE_TIMEOUT`], no progress within the read
//! timeout, [`EDGE_READ_TIMEOUT`] by default, a 5xx, bytes that are not the chunk) is
//! avoided for [`AVOID_FOR`]: a dead edge costs one timeout per transfer, not one per
//! chunk. The read timeout is long enough for an edge to fetch a cold chunk before it
//! answers. An edge that refuses (403, 404, 410) is not blamed: the origin gives the answer
//! that counts.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nuage_core::Address;

use nuage_proto::EdgeLink;

use crate::error::{ClientError, ClientResult};

/// How long an edge may take to accept a connection, and to answer its health probe.
pub const EDGE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a chunk request may go without progress (an edge answers a miss once it has
/// fetched and verified the chunk).
pub const EDGE_READ_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a failed edge is avoided.
pub const AVOID_FOR: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Ranked {
    url: String,
    avoid_until: Mutex<Option<Instant>>,
}

/// The edges of one server, ranked for this client.
#[derive(Debug)]
pub struct Edges {
    http: reqwest::Client,
    ranked: Vec<Ranked>,
}

impl Edges {
    /// Probes `edges` and ranks the healthy ones; chunk requests time out after
    /// `read_timeout` without progress.
    pub async fn rank(
        edges: &[EdgeLink],
        region: Option<&str>,
        read_timeout: Duration,
    ) -> ClientResult<Edges> {
        let http =
            reqwest::Client::builder().connect_timeout(EDGE_TIMEOUT).read_timeout(read_timeout).build()?;
        let probes = edges.iter().map(|e| {
            let http = &http;
            async move {
                let start = Instant::now();
                let url = format!("{}/healthz", e.url.trim_end_matches('/'));
                let ok = matches!(http.get(&url).timeout(EDGE_TIMEOUT).send().await,
                    Ok(r) if r.status().is_success());
                (e, ok.then(|| start.elapsed()))
            }
        });
        let mut healthy: Vec<(&EdgeLink, Duration)> = futures::future::join_all(probes)
            .await
            .into_iter()
            .filter_map(|(e, rtt)| match rtt {
                Some(rtt) => Some((e, rtt)),
                None => {
                    tracing::warn!("edge {} does not answer healthy; not used", e.url);
                    None
                }
            })
            .collect();
        healthy.sort_by_key(|(e, rtt)| (region.is_none() || e.region.as_deref() != region, *rtt));
        let ranked = healthy
            .into_iter()
            .map(|(e, _)| Ranked {
                url: e.url.trim_end_matches('/').to_owned(),
                avoid_until: Mutex::new(None),
            })
            .collect();
        Ok(Edges { http, ranked })
    }

    /// The edges in the order they are tried (those in favour now).
    pub fn order(&self) -> Vec<&str> {
        let now = Instant::now();
        self.ranked
            .iter()
            .filter(|e| e.avoid_until.lock().expect("edge lock").is_none_or(|t| t <= now))
            .map(|e| e.url.as_str())
            .collect()
    }

    fn avoid(&self, url: &str) {
        if let Some(e) = self.ranked.iter().find(|e| e.url == url) {
            *e.avoid_until.lock().expect("edge lock") = Some(Instant::now() + AVOID_FOR);
        }
    }

    /// The chunk from the first edge that gives it, checked against its address; `None`
    /// when no edge did (the caller asks the origin).
    pub async fn fetch(&self, address: &Address, grant: &str) -> Option<Bytes> {
        for url in self.order() {
            match self.fetch_from(url, address, grant).await {
                Ok(bytes) => return Some(bytes),
                Err((blame, e)) => {
                    tracing::warn!("edge {url}: chunk {address}: {e}");
                    if blame {
                        self.avoid(url);
                    }
                }
            }
        }
        None
    }

    /// One attempt; the error says whether the edge is to blame.
    async fn fetch_from(
        &self,
        url: &str,
        address: &Address,
        grant: &str,
    ) -> Result<Bytes, (bool, ClientError)> {
        let response = self
            .http
            .get(format!("{url}/chunks/{}", address.to_hex()))
            .header(nuage_proto::headers::GRANT, grant)
            .send()
            .await
            .map_err(|e| (true, e.into()))?;
        let status = response.status();
        if !status.is_success() {
            let e = ClientError::Protocol(format!("the edge answered {status}"));
            return Err((status.is_server_error(), e));
        }
        let bytes = response.bytes().await.map_err(|e| (true, e.into()))?;
        address
            .verify(&bytes)
            .map_err(|e| (true, ClientError::Protocol(format!("bad bytes from the edge: {e}"))))?;
        Ok(bytes)
    }
}
