//! Several providers under one placement policy: parallel writes with a quorum, verified
//! reads that fall back across placements and report what they found wrong.

use std::sync::{Arc, RwLock};

use bytes::Bytes;
use futures::future::join_all;
use nuage_core::{Address, SealedChunk};
use tokio::sync::broadcast;

use crate::{Error, PlacementProblem, ProblemKind, Provider, PutOutcome, Result};

/// How many copies of each chunk to keep, and how many must be written before a put
/// succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Copies, on that many distinct providers.
    pub replicas: usize,
    /// Copies that must be stored for a put to succeed (1 ≤ quorum ≤ replicas). The missing
    /// ones are for repair to restore.
    pub write_quorum: usize,
}

impl Placement {
    /// `replicas = n` with a write quorum of all `n` (the safe default).
    pub fn replicas(n: usize) -> Self {
        Placement { replicas: n, write_quorum: n }
    }

    /// The same policy with another write quorum.
    pub fn with_quorum(self, write_quorum: usize) -> Self {
        Placement { write_quorum, ..self }
    }
}

/// Chunk bytes together with their address, known to match.
#[derive(Debug, Clone)]
pub struct StoredChunk {
    address: Address,
    bytes: Bytes,
}

impl StoredChunk {
    /// Checks that `bytes` hash to `address` (bytes from outside: a client, a provider).
    pub fn verify(address: Address, bytes: Bytes) -> Result<Self> {
        address.verify(&bytes).map_err(|_| Error::AddressMismatch { address })?;
        Ok(StoredChunk { address, bytes })
    }

    /// The address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The stored bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

impl From<SealedChunk> for StoredChunk {
    /// A chunk sealed in this process: its address was computed from its bytes.
    fn from(sealed: SealedChunk) -> Self {
        StoredChunk { address: sealed.address, bytes: Bytes::from(sealed.bytes) }
    }
}

/// What [`ChunkStore::put`] did.
#[derive(Debug, Clone, Default)]
pub struct PutReport {
    /// Providers that hold the chunk now.
    pub stored_on: Vec<String>,
    /// How many of them were written by this call (the others already had it).
    pub written: usize,
    /// Stored bytes written by this call, summed over providers.
    pub bytes_written: u64,
    /// Target providers that failed; the write still met its quorum.
    pub problems: Vec<PlacementProblem>,
}

/// A verified read.
#[derive(Debug, Clone)]
pub struct Read {
    /// The stored bytes, checked against the address.
    pub bytes: Bytes,
    /// The provider they came from.
    pub provider: String,
    /// Placements tried before it that failed.
    pub problems: Vec<PlacementProblem>,
}

/// Providers under a placement policy. The set may change while the store serves
/// ([`ChunkStore::add_provider`], [`ChunkStore::remove_provider`]): each operation works on
/// the set as it was when the operation began. Clones share the set.
#[derive(Debug, Clone)]
pub struct ChunkStore {
    providers: Arc<RwLock<Arc<Vec<Provider>>>>,
    placement: Placement,
    events: broadcast::Sender<PlacementProblem>,
}

impl ChunkStore {
    /// A store over `providers` (distinct names) with the given policy.
    pub fn new(providers: Vec<Provider>, placement: Placement) -> Result<Self> {
        if providers.is_empty() {
            return Err(Error::Config("no provider configured".into()));
        }
        let mut names: Vec<_> = providers.iter().map(Provider::name).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::Config(format!("provider name {:?} used twice", w[0])));
        }
        let store = ChunkStore {
            providers: Arc::new(RwLock::new(Arc::new(providers))),
            placement,
            events: broadcast::channel(1024).0,
        };
        store.check_placement(placement)?;
        Ok(store)
    }

    /// The providers now, in the order they were configured or added.
    pub fn providers(&self) -> Arc<Vec<Provider>> {
        self.providers.read().expect("provider set lock").clone()
    }

    /// The longest one request to any provider can last ([`Provider::longest_request`]).
    pub fn longest_request(&self) -> std::time::Duration {
        self.providers().iter().map(Provider::longest_request).max().unwrap_or_default()
    }

    /// The provider with that name.
    pub fn provider(&self, name: &str) -> Option<Provider> {
        self.providers().iter().find(|p| p.name() == name).cloned()
    }

    /// Adds a provider to the set; an error if one of that name is in it already.
    pub fn add_provider(&self, provider: Provider) -> Result<()> {
        let mut set = self.providers.write().expect("provider set lock");
        if set.iter().any(|p| p.name() == provider.name()) {
            return Err(Error::Config(format!("provider name {:?} used twice", provider.name())));
        }
        let mut next = Vec::clone(&set);
        next.push(provider);
        *set = Arc::new(next);
        Ok(())
    }

    /// Takes the provider out of the set (operations already under way finish with it);
    /// returns it, or `None` if the set has none of that name.
    pub fn remove_provider(&self, name: &str) -> Option<Provider> {
        let mut set = self.providers.write().expect("provider set lock");
        let i = set.iter().position(|p| p.name() == name)?;
        let mut next = Vec::clone(&set);
        let removed = next.remove(i);
        *set = Arc::new(next);
        Some(removed)
    }

    /// The placement policy.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// Every placement problem that reads and writes run into, as it happens. A receiver
    /// that falls more than 1024 events behind loses the oldest ones.
    pub fn subscribe(&self) -> broadcast::Receiver<PlacementProblem> {
        self.events.subscribe()
    }

    /// The providers in this chunk's preference order: weighted rendezvous hashing of the
    /// address, so each chunk has a stable ranking, load spreads by weight, and adding or
    /// removing a provider moves only the chunks it gains or loses.
    pub fn ranking(&self, address: &Address) -> Vec<Provider> {
        let providers = self.providers();
        let mut scored: Vec<(f64, &Provider)> = providers
            .iter()
            .map(|p| {
                let mut h = blake3::Hasher::new();
                h.update(address.as_bytes());
                h.update(p.name().as_bytes());
                let x = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
                // Uniform in (0, 1]; score = -w / ln(u) is weighted rendezvous hashing.
                let u = (x >> 11) as f64 / (1u64 << 53) as f64 + f64::EPSILON;
                (-(f64::from(p.config().weight.max(1))) / u.ln(), p)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.into_iter().map(|(_, p)| p.clone()).collect()
    }

    fn report(&self, problem: PlacementProblem) -> PlacementProblem {
        let _ = self.events.send(problem.clone());
        problem
    }

    /// Stores the chunk under the store's policy: see [`ChunkStore::put_with`].
    pub async fn put(&self, chunk: &StoredChunk) -> Result<PutReport> {
        self.put_with(chunk, self.placement).await
    }

    /// Checks that `placement` can be met by this store's providers (a bucket's policy,
    /// before the bucket is created).
    pub fn check_placement(&self, placement: Placement) -> Result<()> {
        let Placement { replicas, write_quorum } = placement;
        let configured = self.providers().len();
        if replicas == 0 || replicas > configured {
            return Err(Error::Config(format!(
                "replicas = {replicas} needs as many distinct providers, {configured} configured"
            )));
        }
        if write_quorum == 0 || write_quorum > replicas {
            return Err(Error::Config(format!("write quorum {write_quorum} must be within 1..={replicas}")));
        }
        Ok(())
    }

    /// Stores the chunk on `placement.replicas` distinct providers, in parallel, skipping
    /// providers that are marked down or being drained; a provider that fails the write is replaced by the
    /// next one of the chunk's ranking, so a provider that dies costs a retry, not a copy.
    /// Succeeds when at least `write_quorum` of them hold it.
    pub async fn put_with(&self, chunk: &StoredChunk, placement: Placement) -> Result<PutReport> {
        self.put_preferring(chunk, placement, &[]).await
    }

    /// [`ChunkStore::put_with`], trying the providers named in `prefer` (where the chunk
    /// index says the chunk is) before the others of the ranking: a chunk stored already is
    /// found where it is, not copied again to the providers its ranking now puts first.
    pub async fn put_preferring(
        &self,
        chunk: &StoredChunk,
        placement: Placement,
        prefer: &[String],
    ) -> Result<PutReport> {
        self.check_placement(placement)?;
        let address = chunk.address;
        let mut ranking = self.ranking(&address);
        ranking.sort_by_key(|p| !prefer.iter().any(|n| n == p.name())); // stable
        let healthy: Vec<&Provider> = ranking.iter().filter(|p| p.takes_writes()).collect();
        let mut report = PutReport::default();
        if healthy.len() < placement.write_quorum {
            // Not enough healthy providers: fail now rather than write copies that cannot
            // make a quorum.
            let problems = ranking
                .iter()
                .filter(|p| p.is_down())
                .map(|p| self.report(problem(address, p, ProblemKind::Skipped)))
                .collect();
            return Err(Error::QuorumNotMet { address, needed: placement.write_quorum, stored: 0, problems });
        }
        let mut next = 0;
        while report.stored_on.len() < placement.replicas && next < healthy.len() {
            let wanted = placement.replicas - report.stored_on.len();
            let targets = &healthy[next..(next + wanted).min(healthy.len())];
            next += targets.len();
            let results = join_all(targets.iter().map(|p| p.put(&address, chunk.bytes.clone()))).await;
            for (p, result) in targets.iter().zip(results) {
                match result {
                    Ok(outcome) => {
                        report.stored_on.push(p.name().to_owned());
                        if outcome == PutOutcome::Written {
                            report.written += 1;
                            report.bytes_written += chunk.bytes.len() as u64;
                        }
                    }
                    Err(e) => {
                        let kind = if e.is_full() {
                            ProblemKind::Full
                        } else {
                            ProblemKind::Unavailable(e.to_string())
                        };
                        report.problems.push(self.report(problem(address, p, kind)))
                    }
                }
            }
        }
        if report.stored_on.len() < placement.write_quorum {
            return Err(Error::QuorumNotMet {
                address,
                needed: placement.write_quorum,
                stored: report.stored_on.len(),
                problems: report.problems,
            });
        }
        Ok(report)
    }

    /// A presigned PUT of the chunk straight to the first healthy provider of its ranking
    /// that can presign, with that provider's name; `None` when none can.
    pub async fn presign_put(
        &self,
        address: &Address,
        expire: std::time::Duration,
    ) -> Result<Option<(String, crate::Presigned)>> {
        for p in self.ranking(address).into_iter().filter(|p| p.takes_writes()) {
            if let Some(request) = p.presign_put(address, expire).await? {
                return Ok(Some((p.name().to_owned(), request)));
            }
        }
        Ok(None)
    }

    /// Checks a chunk a device sent straight to a provider (a presigned PUT): the first
    /// provider of the ranking whose object has `size` bytes that hash to the address. An
    /// object whose bytes do not hash to the address is deleted, so that the device can send
    /// it again and no later put mistakes it for the chunk; it does not count against the
    /// provider's health (a device, not the provider, put it there). An object that is the
    /// chunk but not of the declared size is left alone: the declaration is wrong, not the
    /// object, which another upload may be relying on. Returns the provider and the bytes.
    pub async fn verify_uploaded(&self, address: &Address, size: u64) -> Result<Option<(String, Bytes)>> {
        for p in self.ranking(address) {
            match p.get_raw(address).await {
                Ok(Some(bytes)) if address.verify(&bytes).is_ok() => {
                    if bytes.len() as u64 == size {
                        return Ok(Some((p.name().to_owned(), bytes)));
                    }
                }
                Ok(Some(_)) => p.delete(address).await?,
                Ok(None) => {}
                Err(e) => tracing::warn!("checking chunk {address} on {}: {e}", p.name()),
            }
        }
        Ok(None)
    }

    /// Fetches and verifies the chunk, trying `hint` providers first (where the chunk index
    /// says it is), then the rest in ranking order, healthy ones before those marked down.
    /// Every placement that fails along the way is reported.
    pub async fn get(&self, address: &Address, hint: &[&str]) -> Result<Read> {
        let mut order: Vec<Provider> = hint.iter().filter_map(|n| self.provider(n)).collect();
        for p in self.ranking(address) {
            if !order.iter().any(|q| q.name() == p.name()) {
                order.push(p);
            }
        }
        order.sort_by_key(|p| p.is_down()); // stable: keeps the hint and ranking order
        let mut problems = Vec::new();
        for p in order {
            let kind = match p.get_raw(address).await {
                Ok(Some(bytes)) if address.verify(&bytes).is_ok() => {
                    return Ok(Read { bytes, provider: p.name().to_owned(), problems });
                }
                Ok(Some(_)) => {
                    p.record_corruption();
                    ProblemKind::Corrupt
                }
                Ok(None) => ProblemKind::Missing,
                Err(e) => ProblemKind::Unavailable(e.to_string()),
            };
            problems.push(self.report(problem(*address, &p, kind)));
        }
        if problems.iter().all(|p| p.kind == ProblemKind::Missing) {
            Err(Error::NotFound { address: *address })
        } else {
            Err(Error::Unavailable { address: *address, problems })
        }
    }

    /// Makes every put that returned before this call durable on every provider (see
    /// [`Provider::sync`]). Commit nothing that references chunks before it succeeds.
    pub async fn sync(&self) -> Result<()> {
        for r in join_all(self.providers().iter().map(Provider::sync)).await {
            r?;
        }
        Ok(())
    }

    /// The providers that hold the chunk (asking all of them).
    pub async fn locate(&self, address: &Address) -> Result<Vec<String>> {
        let providers = self.providers();
        let results = join_all(providers.iter().map(|p| p.exists(address))).await;
        let mut found = Vec::new();
        for (p, r) in providers.iter().zip(results) {
            if r? {
                found.push(p.name().to_owned());
            }
        }
        Ok(found)
    }

    /// The providers that hold an object of exactly `size` bytes under the address (asking
    /// all of them; those that fail to answer are left out). For a chunk a device uploaded
    /// itself: the address was verified when it was written, the size says the write is
    /// whole.
    pub async fn locate_sized(&self, address: &Address, size: u64) -> Vec<String> {
        let providers = self.providers();
        let results = join_all(providers.iter().map(|p| p.stored_size(address))).await;
        providers
            .iter()
            .zip(results)
            .filter(|(_, r)| matches!(r, Ok(Some(s)) if *s == size))
            .map(|(p, _)| p.name().to_owned())
            .collect()
    }

    /// Deletes the chunk from every provider.
    pub async fn delete(&self, address: &Address) -> Result<()> {
        for r in join_all(self.providers().iter().map(|p| p.delete(address))).await {
            r?;
        }
        Ok(())
    }
}

fn problem(address: Address, p: &Provider, kind: ProblemKind) -> PlacementProblem {
    PlacementProblem { address, provider: p.name().to_owned(), kind }
}
