//! The link server's public grant keys, as an edge holds them: fetched from
//! `GET {origin}/v1/grant-keys` at start, refreshed on a timer, and reloaded (at most every
//! few seconds) when a grant names a key the edge does not know, which is how a rotation
//! reaches it before the timer.
//!
//! Verifying an Ed25519 signature costs tens of microseconds, more than serving a cached
//! chunk from memory; a device sends the same grant for every range of a chunk and every
//! retry. So grants that verified are remembered (by their whole text) until they expire:
//! a remembered grant is only ever accepted for what it says.

use nuage_proto::GrantKeyView;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nuage_core::Address;
use nuage_core::grant::{Grant, GrantError, GrantVerifier, Operation};

/// How often an unknown key may trigger a reload.
const RELOAD_EVERY: Duration = Duration::from_secs(5);
/// Verified grants remembered at most (the memory is cleared when full).
const MEMO_MAX: usize = 100_000;

/// The keys and the memory of verified grants.
#[derive(Debug)]
pub struct EdgeKeys {
    url: String,
    http: reqwest::Client,
    verifier: RwLock<(GrantVerifier, usize)>,
    last_reload: Mutex<Option<Instant>>,
    memo: RwLock<HashMap<Box<str>, Grant>>,
    /// Bumped by every reload: a grant verified with keys older than the memory's is not
    /// remembered.
    generation: AtomicU64,
}

impl EdgeKeys {
    /// Keys of the link server at `origin`; none loaded yet.
    pub fn new(origin: &str, http: reqwest::Client) -> EdgeKeys {
        EdgeKeys {
            url: format!("{}/v1/grant-keys", origin.trim_end_matches('/')),
            http,
            verifier: RwLock::new((GrantVerifier::default(), 0)),
            last_reload: Mutex::new(None),
            memo: RwLock::default(),
            generation: AtomicU64::new(0),
        }
    }

    /// Fetches the keys now; returns how many verify grants.
    pub async fn reload(&self) -> anyhow::Result<usize> {
        *self.last_reload.lock().expect("reload lock") = Some(Instant::now());
        let response = self.http.get(&self.url).timeout(Duration::from_secs(10)).send().await?;
        let body = super::capped::read_capped(response.error_for_status()?, 1 << 20)
            .await
            .map_err(anyhow::Error::msg)?;
        let views: Vec<GrantKeyView> = serde_json::from_slice(&body)?;
        let mut keys = Vec::new();
        for v in views {
            let raw = URL_SAFE_NO_PAD
                .decode(&v.public_key)
                .ok()
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .ok_or_else(|| anyhow::anyhow!("grant key {} from the origin is not 32 bytes", v.id))?;
            keys.push((v.id, raw));
        }
        let n = keys.len();
        *self.verifier.write().expect("keys lock") = (GrantVerifier::new(keys), n);
        // A key may have been withdrawn: forget what it verified, and (under the same lock)
        // make grants verified before now unfit to be remembered.
        let mut memo = self.memo.write().expect("memo lock");
        memo.clear();
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(n)
    }

    /// How many keys are loaded.
    pub fn count(&self) -> usize {
        self.verifier.read().expect("keys lock").1
    }

    /// Checks a grant to read the chunk `address`: a chunk grant, or a share's chunk grant.
    pub async fn check(&self, text: &str, address: &Address, now_ms: i64) -> Result<Grant, GrantError> {
        if let Some(g) = self.memo.read().expect("memo lock").get(text).copied() {
            return allows(g, address, now_ms);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let result = self.verify(text, address, now_ms);
        if result == Err(GrantError::Forged) {
            let due =
                self.last_reload.lock().expect("reload lock").is_none_or(|t| t.elapsed() >= RELOAD_EVERY);
            if due {
                if let Err(e) = self.reload().await {
                    tracing::warn!("edge: reloading grant keys: {e:#}");
                }
                return self.verify(text, address, now_ms);
            }
        }
        if let Ok(g) = result {
            let mut memo = self.memo.write().expect("memo lock");
            if self.generation.load(Ordering::SeqCst) != generation {
                return result; // keys changed meanwhile: answer, do not remember
            }
            if memo.len() >= MEMO_MAX {
                memo.clear();
            }
            memo.insert(text.into(), g);
        }
        result
    }

    fn verify(&self, text: &str, address: &Address, now_ms: i64) -> Result<Grant, GrantError> {
        let keys = self.verifier.read().expect("keys lock");
        match keys.0.verify(text, Operation::GetChunk, address, now_ms) {
            Err(GrantError::WrongOperation) => keys.0.verify(text, Operation::GetShare, address, now_ms),
            other => other,
        }
    }
}

/// Whether a grant that verified earlier allows reading `address` now.
fn allows(g: Grant, address: &Address, now_ms: i64) -> Result<Grant, GrantError> {
    if !matches!(g.op, Operation::GetChunk | Operation::GetShare) {
        Err(GrantError::WrongOperation)
    } else if g.address != *address {
        Err(GrantError::WrongAddress)
    } else if now_ms >= g.expires_at {
        Err(GrantError::Expired)
    } else {
        Ok(g)
    }
}
