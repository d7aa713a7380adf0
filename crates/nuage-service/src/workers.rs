//! Background workers, one pattern for all: a worker walks the chunk index in address order,
//! a batch at a time, does its work on each chunk, and saves its cursor after every batch
//! (the `workers` table), so a restart resumes the pass where it stopped. Its state shows in
//! `nuage admin status` and its counters at `/metrics`.
//!
//! - **Scrub** reads every placement back at a set pace (`[workers] scrub_bytes_per_sec`),
//!   checks the bytes against the address, and records the placement as `stored` (with the
//!   time it was verified), `corrupt` or `missing`. A provider that does not answer is
//!   skipped, not blamed.
//! - **Repair** brings each chunk back to its policy, at its own pace: a placement recorded
//!   bad is read again, and if it is bad indeed, overwritten (one atomic write, never a
//!   delete) with a verified copy; a chunk with fewer good copies than its `replicas` gets
//!   new ones on the next providers of its ranking. Every copy it writes is synced, read
//!   back and verified before it is recorded.
//! - **Migrate** moves every chunk off the providers being drained (`nuage admin provider
//!   drain`), verifying each new copy before the old one is deleted, at
//!   `migrate_bytes_per_sec`; new writes avoid those providers, reads still use them.
//! - **GC** (the collector) deletes from every provider the chunks no version has referenced
//!   for `[workers] gc_grace_secs`, then the chunk objects the index does not know (uploads
//!   that never committed), at `gc_deletes_per_sec`. It never deletes a chunk an upload has
//!   leased (see `leases.rs` and `nuage-meta`'s `gc.rs`), and it records each deletion before
//!   it starts, so one a crash interrupts is finished first by the next pass.
//!
//! Placement states change only from the state the worker read (compare and set), so a
//! scrub and a repair running at once never undo each other. Each background pass, and every
//! pass of the collector, runs under its worker's claim (`nuage_meta::Claim`): several
//! servers on one database take turns over the one cursor, one process at a time.
//!
//! `nuage admin scrub` / `repair` run one whole pass now, without touching the background
//! worker's cursor.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use nuage_core::Address;
use nuage_meta::{ChunkPlacements, PlacementState, ProviderState, WorkerState, now_ms};
use serde::Serialize;

use crate::ServiceResult;
use crate::background::{Background, StopSignal, Worker, WorkerState as BgState};
pub use crate::metrics::{Kind, WorkerCounters};
use crate::paces::Pace;
pub use crate::paces::{configured_pace, follow_paces, paces, set_pace};
pub use crate::registry::refresh_provider_states;
use crate::state::Nuage;

/// Chunks per batch (and per cursor save).
const BATCH: usize = 256;
/// Chunks a scrub, repair or migrate pass works on at once.
const IN_FLIGHT: usize = 4;
/// A pass saves its cursor after every batch, and within a batch at this interval.
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// Addresses listed in a pass report at most.
const LISTED: usize = 1000;

/// What a pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassReport {
    /// `scrub` or `repair`.
    pub worker: &'static str,
    /// Chunks visited.
    pub chunks: u64,
    /// Stored bytes read.
    pub bytes: u64,
    /// Scrub: placements found corrupt or missing. Repair: copies written.
    pub found: u64,
    /// Placements a provider did not answer for (nothing concluded).
    pub skipped: u64,
    /// Scrub: `address@provider` of the bad placements; repair: of the copies written
    /// (the first 1000).
    pub listed: Vec<String>,
    /// Seconds the pass took.
    pub seconds: f64,
    /// Why the pass did less than a whole pass, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Another process holds (or took over) this worker's pass: this one did not do it.
    #[serde(skip)]
    pub claimed_elsewhere: bool,
    /// The pass was stopped (the process is going down) before its end.
    #[serde(skip)]
    pub stopped: bool,
}

#[derive(Debug, Default)]
struct Outcome {
    bytes: u64,
    found: u64,
    skipped: u64,
    listed: Vec<String>,
}

fn place(address: &Address, provider: &str) -> String {
    format!("{}@{provider}", address.to_hex())
}

/// Reads every placement of `c` back and records what it found (unless another worker
/// changed the placement meanwhile).
async fn scrub_chunk(nuage: &Nuage, c: &ChunkPlacements) -> nuage_meta::Result<Outcome> {
    let address = Address::from_bytes(c.address);
    let mut out = Outcome::default();
    for (name, seen) in &c.placements {
        let Some(p) = nuage.store.provider(name) else { continue }; // no longer configured
        let state = match p.get_raw(&address).await {
            Ok(Some(bytes)) => {
                out.bytes += bytes.len() as u64;
                if address.verify(&bytes).is_ok() { PlacementState::Stored } else { PlacementState::Corrupt }
            }
            Ok(None) => PlacementState::Missing,
            Err(e) => {
                tracing::warn!("scrub: chunk {address} on {name}: {e}");
                out.skipped += 1;
                continue;
            }
        };
        nuage.meta.change_placement(&c.address, name, *seen, state, state == PlacementState::Stored).await?;
        if state != PlacementState::Stored {
            tracing::warn!("scrub: chunk {address} is {state} on {name}");
            out.found += 1;
            out.listed.push(place(&address, name));
        }
    }
    Ok(out)
}

/// Writes a copy of a chunk to `p` in one atomic write (replacing whatever object is there,
/// so a damaged one never passes for the chunk), syncs it, reads it back and verifies it.
async fn write_verified_copy(
    p: &nuage_blob::Provider,
    address: &Address,
    bytes: &bytes::Bytes,
) -> nuage_blob::Result<()> {
    p.put_replace(address, bytes.clone()).await?;
    p.sync().await?;
    match p.get_raw(address).await? {
        Some(b) if address.verify(&b).is_ok() => Ok(()),
        _ => Err(nuage_blob::Error::Corrupt { provider: p.name().to_owned(), address: *address }),
    }
}

/// Brings `c` back to its policy: a placement recorded bad is read again and, if it is bad
/// indeed, overwritten with a verified copy; copies are added up to its `replicas`. Nothing
/// is ever deleted: a bad object is replaced in one atomic write, and an object found good
/// is only recorded so.
async fn repair_chunk(nuage: &Nuage, c: &ChunkPlacements) -> nuage_meta::Result<Outcome> {
    let address = Address::from_bytes(c.address);
    let mut out = Outcome::default();
    let configured = |name: &str| nuage.store.provider(name).is_some();
    let good: Vec<&str> = c
        .placements
        .iter()
        .filter(|(n, s)| *s == PlacementState::Stored && configured(n))
        .map(|(n, _)| n.as_str())
        .collect();
    let wanted = (c.replicas as usize).min(nuage.store.providers().len());
    let mut bad = Vec::new();
    let mut healthy = good.len();
    for (name, seen) in c.placements.iter().filter(|(n, s)| *s != PlacementState::Stored && configured(n)) {
        let Some(p) = nuage.store.provider(name) else { continue }; // removed meanwhile
        match p.get_raw(&address).await {
            // Recorded bad, found good (a provider that was away, a copy made since): record it.
            Ok(Some(bytes)) if address.verify(&bytes).is_ok() => {
                out.bytes += bytes.len() as u64;
                nuage.meta.change_placement(&c.address, name, *seen, PlacementState::Stored, true).await?;
                healthy += 1;
            }
            Ok(_) => bad.push(name.as_str()),
            Err(e) => {
                tracing::warn!("repair: chunk {address} on {name}: {e}; left for later");
                out.skipped += 1;
            }
        }
    }
    let short = wanted.saturating_sub(healthy + bad.len());
    if bad.is_empty() && short == 0 {
        return Ok(out);
    }
    let read = match nuage.store.get(&address, &good).await {
        Ok(read) => read,
        Err(e) => {
            tracing::warn!("repair: no good copy of chunk {address} to repair from: {e}");
            out.skipped += 1;
            return Ok(out);
        }
    };
    out.bytes += read.bytes.len() as u64;
    let known: Vec<&str> = c.placements.iter().map(|(n, _)| n.as_str()).collect();
    let mut targets: Vec<&str> = bad.iter().copied().filter(|n| *n != read.provider).collect();
    let ranking = nuage.store.ranking(&address);
    for p in &ranking {
        if targets.len() >= bad.len() + short {
            break;
        }
        if p.takes_writes() && !known.contains(&p.name()) && p.name() != read.provider {
            targets.push(p.name());
        }
    }
    for name in targets {
        let Some(p) = nuage.store.provider(name) else { continue }; // removed meanwhile
        match write_verified_copy(&p, &address, &read.bytes).await {
            Ok(()) => {
                nuage.meta.record_verified_copy(&c.address, name).await?;
                out.bytes += read.bytes.len() as u64;
                out.found += 1;
                out.listed.push(place(&address, name));
            }
            Err(e) => {
                tracing::warn!("repair: writing chunk {address} to {name}: {e}");
                out.skipped += 1;
            }
        }
    }
    Ok(out)
}

/// Moves `c` off the providers being drained: while it has fewer good copies elsewhere than
/// its `replicas`, a verified copy is written to the next provider of its ranking that takes
/// writes, synced, read back and verified, and recorded; only then is the copy on the
/// draining provider deleted and its placement forgotten. A crash at any point leaves the
/// chunk with its old copy, or with both: the next pass finishes the move.
async fn migrate_chunk(nuage: &Nuage, c: &ChunkPlacements) -> nuage_meta::Result<Outcome> {
    let address = Address::from_bytes(c.address);
    let mut out = Outcome::default();
    let draining = |n: &str| nuage.store.provider(n).is_some_and(|p| p.is_draining());
    let sources: Vec<&str> = c.placements.iter().map(|(n, _)| n.as_str()).filter(|n| draining(n)).collect();
    if sources.is_empty() {
        return Ok(out); // the drain was called off
    }
    // The copies elsewhere that count: recorded good and found there at their size (a
    // provider that came back empty still has its placements recorded good until a scrub).
    let mut elsewhere: Vec<&str> = Vec::new();
    for (n, s) in &c.placements {
        let Some(p) = nuage.store.provider(n).filter(|p| *s == PlacementState::Stored && !p.is_draining())
        else {
            continue;
        };
        if matches!(p.stored_size(&address).await, Ok(Some(size)) if size == u64::from(c.stored_size)) {
            elsewhere.push(n);
        }
    }
    let wanted = c.replicas as usize;
    if elsewhere.len() < wanted {
        let hint: Vec<&str> = sources.iter().chain(elsewhere.iter()).copied().collect();
        let read = match nuage.store.get(&address, &hint).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("migrate: no good copy of chunk {address} to move: {e}");
                out.skipped += 1;
                return Ok(out);
            }
        };
        out.bytes += read.bytes.len() as u64;
        let ranking = nuage.store.ranking(&address);
        for p in &ranking {
            if elsewhere.len() >= wanted {
                break;
            }
            if !p.takes_writes() || elsewhere.contains(&p.name()) {
                continue;
            }
            match write_verified_copy(p, &address, &read.bytes).await {
                Ok(()) => {
                    nuage.meta.record_verified_copy(&c.address, p.name()).await?;
                    out.bytes += read.bytes.len() as u64;
                    elsewhere.push(p.name());
                }
                Err(e) => tracing::warn!("migrate: copying chunk {address} to {}: {e}", p.name()),
            }
        }
        if elsewhere.len() < wanted {
            // Never fewer copies than the buckets want: the old copy stays, and so does the
            // drain, until providers are added or come back.
            tracing::warn!(
                "migrate: chunk {address} has {} of {wanted} copies off the drained providers; kept where it is",
                elsewhere.len()
            );
            out.skipped += 1;
            return Ok(out);
        }
    }
    for name in sources {
        let Some(p) = nuage.store.provider(name) else { continue }; // removed meanwhile
        match p.delete(&address).await {
            Ok(()) => {
                nuage.meta.drop_placement(&c.address, name).await?;
                out.found += 1;
                if out.listed.len() < LISTED {
                    out.listed.push(place(&address, name));
                }
            }
            Err(e) => {
                tracing::warn!("migrate: deleting chunk {address} from {name}: {e}");
                out.skipped += 1;
            }
        }
    }
    Ok(out)
}

/// Ends the drains that a pass found nothing left of: the chunk objects still on a drained
/// provider that the index knows (copies a write left there unrecorded) are moved like the
/// rest, then the provider becomes `drained` if no placement is left on it (in one
/// statement, so a commit meanwhile keeps it draining). Objects the index does not know are
/// the collector's (an upload may still be about to commit them). A listing that fails
/// leaves the drain as it is, for the next pass.
async fn finish_drains(nuage: &Nuage, draining: &[String]) -> nuage_meta::Result<()> {
    for name in draining {
        let Some(p) = nuage.store.provider(name) else { continue };
        let listing = match p.list().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("migrate: listing {name}: {e}");
                continue;
            }
        };
        let listed: Result<Vec<Address>, _> = listing.try_collect().await;
        let listed: Vec<[u8; 32]> = match listed {
            Ok(l) => l.iter().map(|a| *a.as_bytes()).collect(),
            Err(e) => {
                tracing::warn!("migrate: listing {name}: {e}");
                continue;
            }
        };
        let unknown: std::collections::HashSet<[u8; 32]> =
            nuage.meta.unindexed(&listed).await?.into_iter().collect();
        let mut left = 0;
        for a in listed.iter().filter(|a| !unknown.contains(*a)) {
            let Some(info) = nuage.meta.chunk(a).await? else { continue }; // collected meanwhile
            let mut placements = info.placements;
            placements.retain(|(n, _)| n != name);
            placements.push((name.clone(), PlacementState::Stored));
            let c = ChunkPlacements {
                address: *a,
                stored_size: info.stored_size,
                replicas: info.replicas,
                refcount: info.refcount,
                placements,
            };
            left += migrate_chunk(nuage, &c).await?.skipped;
        }
        if left == 0 && nuage.meta.mark_drained(name).await? {
            tracing::info!("migrate: {name} is drained");
        }
    }
    Ok(())
}

/// How long a claim lasts unrenewed (a worker renews it before every batch, and before
/// every group of deletions). On SQLite a holder's claim that ran out is free to take (a
/// stalled process); provider requests have time-outs, far less than this, so a collector
/// whose claim ran out has no delete in flight when another takes over and finishes its
/// deletions. On PostgreSQL a claim is held by its session (`nuage_meta::Claim`).
const CLAIM_MS: i64 = 300_000;

/// A worker's claim on its pass ([`nuage_meta::Meta::claim_worker`]): one process at a time
/// does each worker's work, whichever server it runs on.
struct Claimed {
    claim: nuage_meta::Claim,
    kind: Kind,
    /// The process is going down: stop at the end of the group of deletions.
    stop: StopSignal,
    /// The collector's pace (deletions per second).
    pace: Pace,
    /// The claim was lost (another process took over): stop.
    lost: bool,
}

/// The [`ISSUE_WINDOW`] after a check of a claim, by both clocks.
#[derive(Debug, Clone, Copy)]
struct SendWindow {
    checked: tokio::time::Instant,
    checked_ms: i64,
}

impl SendWindow {
    /// Whether provider requests may still go out.
    fn may_send(self) -> bool {
        tokio::time::Instant::now() <= self.checked + ISSUE_WINDOW
            && now_ms() <= self.checked_ms.saturating_add(ISSUE_WINDOW.as_millis() as i64)
    }
}

/// How long after a renewal of its claim began the collector may still send provider
/// deletes: a process that stalls between the two (and may have lost its claim meanwhile)
/// sends nothing once it wakes.
const ISSUE_WINDOW: Duration = Duration::from_secs(2);

/// This machine's name, to tell whether a claim on SQLite is a dead process's here.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()
}

/// Whether the process that made claim `owner` is known to be gone: it ran on this machine
/// (same host name) and its pid no longer exists. Used on SQLite only, whose database file
/// lives on one machine; on PostgreSQL the claim's session says it.
fn claim_is_gone(owner: &str) -> bool {
    let mut parts = owner.split(':');
    let (Some(h), Some(pid)) = (parts.next(), parts.next()) else { return false };
    let here = host();
    !here.is_empty() && h == here && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl Claimed {
    /// Claims `kind`'s pass for this process, if no other holds it.
    async fn take(
        nuage: &Nuage,
        kind: Kind,
        pace: Pace,
        stop: &StopSignal,
    ) -> nuage_meta::Result<Option<Claimed>> {
        let owner = format!("{}:{}:{:08x}", host(), std::process::id(), rand::random::<u32>());
        let until = now_ms().saturating_add(CLAIM_MS);
        let Some(mut claim) = nuage.meta.claim_worker(kind.name(), &owner, until, claim_is_gone).await?
        else {
            return Ok(None);
        };
        tracing::debug!("{}: pass claimed by {owner}", kind.name());
        if kind != Kind::Gc {
            // Only the collector's provider requests (deletes) can harm once late.
            claim.settle();
        }
        Ok(Some(Claimed { claim, kind, stop: stop.clone(), pace, lost: false }))
    }

    /// When provider requests may go out under the last check of the claim: within
    /// [`ISSUE_WINDOW`] of it, by both clocks.
    fn window(&self) -> SendWindow {
        SendWindow {
            checked: tokio::time::Instant::from_std(self.claim.checked_at()),
            checked_ms: self.claim.checked_ms(),
        }
    }

    /// Renews the claim; `false` (and `lost`) once another process holds it.
    async fn renew(&mut self, nuage: &Nuage) -> nuage_meta::Result<bool> {
        if self.lost {
            return Ok(false);
        }
        let until = now_ms().saturating_add(CLAIM_MS);
        let held = nuage.meta.renew_claim(&mut self.claim, until).await?;
        self.lost |= !held;
        Ok(held)
    }

    async fn release(self, nuage: &Nuage) -> nuage_meta::Result<()> {
        // Said before it is done: a log line of the next holder's claim always comes after.
        tracing::debug!("{}: pass released by {}", self.kind.name(), self.claim.owner());
        nuage.meta.release_claim(self.claim).await
    }
}

/// Deletes chunks whose deletion has started ([`nuage_meta::Meta::start_deletions`]) from
/// every provider, 16 at a time at the collector's pace, and ends each group's deletions
/// as soon as it is done (writers may be waiting for them): a chunk deleted everywhere
/// leaves the index; one that a provider did not delete (down, or an error) has the
/// placements it was tried on forgotten (a delete that failed may still have happened) and
/// waits for a later pass. Stops early if the collector lost its claim.
async fn delete_everywhere(
    nuage: &Nuage,
    collector: &mut Claimed,
    doomed: &[[u8; 32]],
    sizes: &std::collections::HashMap<[u8; 32], u32>,
) -> nuage_meta::Result<Outcome> {
    let mut out = Outcome::default();
    for group in doomed.chunks(16) {
        if collector.stop.is_set() {
            break; // what is left stays recorded: the next pass finishes it first
        }
        if !collector.renew(nuage).await? {
            tracing::warn!("gc: another collector took over; stopping");
            break;
        }
        // A renewal slow to come back (a busy database) leaves little of its window: renew
        // again rather than send deletes that would be cut off.
        let mut tries = 1;
        while !collector.window().may_send() && tries < 3 {
            if !collector.renew(nuage).await? {
                break;
            }
            tries += 1;
        }
        if collector.lost {
            tracing::warn!("gc: another collector took over; stopping");
            break;
        }
        let results = delete_from_providers(nuage, group, collector.window()).await;
        // Still the collector? One that lost its claim meanwhile (its database session
        // broke) leaves the group recorded as started, for the one that took over.
        if !collector.renew(nuage).await? {
            tracing::warn!("gc: another collector took over during a group of deletions; stopping");
            break;
        }
        for d in &results {
            if d.everywhere {
                out.found += 1;
                out.bytes += u64::from(sizes.get(&d.address).copied().unwrap_or(0));
                if out.listed.len() < LISTED {
                    out.listed.push(Address::from_bytes(d.address).to_hex());
                }
            } else {
                out.skipped += 1;
            }
        }
        nuage.meta.finish_deletions(&results).await?;
        let mut stopping = collector.stop.clone();
        tokio::select! {
            _ = collector.pace.account(group.len() as u64) => {}
            _ = stopping.wait() => {}
        }
    }
    Ok(out)
}

/// Deletes `addresses` (whose deletion [`nuage_meta::Meta::start_deletions`] started) from
/// every provider that answers, and says how each ended, for `finish_deletions`. Each
/// attempt (up to three, the retries made here rather than by the provider's layer) goes
/// out only while `window` [lets it](SendWindow::may_send); one it does not is not sent
/// (the process stalled since its claim's check) and counts as failed.
async fn delete_from_providers(
    nuage: &Nuage,
    addresses: &[[u8; 32]],
    window: SendWindow,
) -> Vec<nuage_meta::DeletionDone> {
    futures::future::join_all(addresses.iter().map(|a| async move {
        let address = Address::from_bytes(*a);
        let providers = nuage.store.providers();
        let live: Vec<_> = providers.iter().filter(|p| !p.is_down()).collect();
        let mut everywhere = live.len() == providers.len();
        let deletes = futures::future::join_all(live.iter().map(|p| async move {
            let (mut attempt, mut last) = (0, None);
            loop {
                if !window.may_send() {
                    return last; // none: never sent
                }
                attempt += 1;
                match p.delete_once(&address).await {
                    Err(e) if e.is_temporary() && attempt < 3 => {
                        last = Some(Err(e));
                        tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                    }
                    done => return Some(done),
                }
            }
        }))
        .await;
        let mut deleted_from = Vec::new();
        for (p, r) in live.iter().zip(deletes) {
            match r {
                Some(Ok(())) => deleted_from.push(p.name().to_owned()),
                Some(Err(e)) => {
                    tracing::warn!("gc: deleting chunk {address} from {}: {e}", p.name());
                    everywhere = false;
                    deleted_from.push(p.name().to_owned()); // it may have happened
                }
                None => {
                    tracing::warn!("gc: chunk {address}: the delete from {} was not sent in time after the claim's renewal", p.name());
                    everywhere = false;
                }
            }
        }
        nuage_meta::DeletionDone { address: *a, everywhere, deleted_from }
    }))
    .await
}

/// Deletes, as the collector would and under its claim, those of `addresses` that an upload
/// which will not commit stored and that nothing else relies on (unknown to the index, under
/// no lease, declared by no live session), 16 at a time. Under the claim, so that no pass
/// of the collector runs meanwhile (a pass finishes the deletions it finds started, and must
/// never race one in flight); when a collector is at work, nothing is done here, and the
/// chunks are strays it will find. Returns how many were deleted everywhere.
pub async fn discard_now(nuage: &Nuage, addresses: &[[u8; 32]]) -> nuage_meta::Result<u64> {
    let Some(mut c) = Claimed::take(nuage, Kind::Gc, Pace::unpaced(), &StopSignal::never()).await? else {
        return Ok(0);
    };
    if c.claim.taken_from().is_some() {
        // Taken over from a holder that may still have deletes in flight: the next pass
        // waits them out first (the claim, given back unsettled, still names that holder).
        c.release(nuage).await?;
        return Ok(0);
    }
    let result = async {
        let unindexed = nuage.meta.unindexed(addresses).await?;
        let mut found = 0;
        for group in unindexed.chunks(16) {
            // Cutoff 0: a chunk the index learned of meanwhile is never taken here.
            let doomed = nuage.meta.start_deletions(group, 0).await?;
            found +=
                delete_everywhere(nuage, &mut c, &doomed, &std::collections::HashMap::new()).await?.found;
            if c.lost {
                break;
            }
        }
        Ok(found)
    }
    .await;
    c.release(nuage).await?;
    result
}

/// The collector's work after its walk of the index: every provider is listed and each
/// chunk object the index does not know, and that no upload leases, is deleted; then
/// temporary files older than an hour (writes a crash cut short) are removed from local
/// folders.
async fn collect_strays(nuage: &Nuage, collector: &mut Claimed, cutoff: i64) -> nuage_meta::Result<Outcome> {
    let mut out = Outcome::default();
    let none = std::collections::HashMap::new();
    for p in nuage.store.providers().iter() {
        if p.is_down() {
            out.skipped += 1;
            continue;
        }
        let listing = match p.list().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("gc: listing {}: {e}", p.name());
                out.skipped += 1;
                continue;
            }
        };
        let listed_from = now_ms();
        let mut listed_whole = true;
        let mut listing = std::pin::pin!(listing.chunks(BATCH));
        while let Some(batch) = listing.next().await {
            if collector.lost || collector.stop.is_set() {
                return Ok(out);
            }
            let mut addresses = Vec::with_capacity(batch.len());
            for a in batch {
                match a {
                    Ok(a) => addresses.push(*a.as_bytes()),
                    Err(e) => {
                        tracing::warn!("gc: listing {}: {e}", p.name());
                        out.skipped += 1;
                        listed_whole = false;
                    }
                }
            }
            let strays = nuage.meta.unindexed(&addresses).await?;
            if strays.is_empty() {
                continue;
            }
            // Whatever the index says, an object is deleted only once it has been seen for
            // the grace period (a provider's listing does not tell its age). A stray the
            // index has learned of since (a commit meanwhile) is judged by the same grace
            // period as the rest of the index.
            let grace_ms =
                i64::try_from(nuage.config.workers.gc_grace_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
            let aged = nuage.meta.sight_strays(p.name(), &strays, grace_ms).await?;
            let doomed = nuage.meta.start_deletions(&aged, cutoff).await?;
            let o = delete_everywhere(nuage, collector, &doomed, &none).await?;
            out.add(o);
        }
        if listed_whole {
            // Not seen on this provider in a whole listing: gone, or indexed since.
            nuage.meta.forget_strays_unseen_since(p.name(), listed_from).await?;
        }
        match p.sweep_temporary(Duration::from_secs(3600)).await {
            Ok(n) if n > 0 => tracing::info!("gc: removed {n} stale temporary files from {}", p.name()),
            Ok(_) => {}
            Err(e) => tracing::warn!("gc: temporary files of {}: {e}", p.name()),
        }
    }
    Ok(out)
}

impl Outcome {
    fn add(&mut self, o: Outcome) {
        self.bytes += o.bytes;
        self.found += o.found;
        self.skipped += o.skipped;
        keep_listed(&mut self.listed, o.listed);
    }
}

/// Appends `more` to a list of addresses kept for a report, up to [`LISTED`].
fn keep_listed(list: &mut Vec<String>, more: Vec<String>) {
    let room = LISTED.saturating_sub(list.len());
    list.extend(more.into_iter().take(room));
}

/// One chunk's step of a scrub, repair or migrate pass.
async fn one_chunk(nuage: &Nuage, kind: Kind, c: &ChunkPlacements) -> nuage_meta::Result<Outcome> {
    match kind {
        Kind::Scrub => scrub_chunk(nuage, c).await,
        Kind::Repair => repair_chunk(nuage, c).await,
        // The page was read when its batch began, minutes ago at a slow pace: the copies
        // writes have placed since count.
        Kind::Migrate => match nuage.meta.chunk(&c.address).await? {
            Some(now) => {
                migrate_chunk(nuage, &ChunkPlacements { placements: now.placements, ..c.clone() }).await
            }
            None => Ok(Outcome::default()), // collected meanwhile
        },
        Kind::Gc => unreachable!("the collector works by batch"),
    }
}

/// Adds what was done on `chunks` chunks to the pass's state, its report and the counters.
fn tally(
    state: &mut WorkerState,
    report: &mut PassReport,
    counters: &WorkerCounters,
    chunks: u64,
    o: Outcome,
) {
    state.chunks += chunks as i64;
    state.bytes += o.bytes as i64;
    state.found += o.found as i64;
    report.chunks += chunks;
    report.bytes += o.bytes;
    report.found += o.found;
    report.skipped += o.skipped;
    keep_listed(&mut report.listed, o.listed);
    counters.chunks.fetch_add(chunks, Ordering::Relaxed);
    counters.bytes.fetch_add(o.bytes, Ordering::Relaxed);
    counters.found.fetch_add(o.found, Ordering::Relaxed);
}

/// Runs one pass of `kind` to its end. With `persist`, it resumes the worker's saved pass (or
/// starts a new one) and saves its cursor after every batch; without, it walks the whole
/// index on its own. `progress` sees the state after every batch.
pub async fn run_pass(
    nuage: &Arc<Nuage>,
    kind: Kind,
    persist: bool,
    progress: impl Fn(&WorkerState),
) -> nuage_meta::Result<PassReport> {
    run_pass_until(nuage, kind, persist, progress, &StopSignal::never()).await
}

/// [`run_pass`], ending early (its cursor saved, its claim given back, the pass not counted
/// as done) when `stop` comes: at the end of a batch, or of a second's work within one.
pub async fn run_pass_until(
    nuage: &Arc<Nuage>,
    kind: Kind,
    persist: bool,
    progress: impl Fn(&WorkerState),
    stop: &StopSignal,
) -> nuage_meta::Result<PassReport> {
    let started = Instant::now();
    let pace = Pace::of(nuage, kind);
    // The collector paces its deletions (under its claim); the others their bytes.
    let (claim_pace, walk_pace) =
        if kind == Kind::Gc { (pace, Pace::unpaced()) } else { (Pace::unpaced(), pace) };
    let mut report = PassReport { worker: kind.name(), ..PassReport::default() };
    // A background pass (over the cursor every server shares) and every pass of the
    // collector is claimed first: one process at a time does it, and reads the cursor only
    // once it holds the claim. A pass of the others run by hand walks the index on its own
    // and needs none.
    let mut claimed = None;
    if persist || kind == Kind::Gc {
        let Some(c) = Claimed::take(nuage, kind, claim_pace, stop).await? else {
            report.note = Some(format!("another process is running the {} pass; nothing done", kind.name()));
            report.claimed_elsewhere = true;
            return Ok(report);
        };
        claimed = Some(c);
    }
    let result = walk(nuage, kind, persist, &progress, &mut report, walk_pace, claimed.as_mut(), stop).await;
    // The end of the pass is saved under the claim (renewed first), and only then is the
    // claim given back, whatever the walk met: the next holder reads a finished pass.
    let outcome = match result {
        Ok((mut state, finished)) => {
            let held = match claimed.as_mut() {
                Some(c) if !c.lost => c.renew(nuage).await,
                Some(_) => Ok(false),
                None => Ok(true),
            };
            match held {
                Ok(true) if finished => {
                    finish_pass(nuage, kind, persist, &mut state).await.map(|()| Ended::Done)
                }
                Ok(true) => Ok(Ended::Stopped),
                Ok(false) => Ok(Ended::Lost),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    if let Some(c) = claimed {
        c.release(nuage).await?;
    }
    match outcome? {
        Ended::Done => {}
        Ended::Stopped => {
            report.note = Some(format!("{} pass stopped; the next start resumes it", kind.name()));
            report.stopped = true;
            return Ok(report);
        }
        Ended::Lost => {
            // The pass is not complete: the process that took it over resumes from the cursor.
            report.note = Some(format!("another process took the {} pass over; stopped", kind.name()));
            report.claimed_elsewhere = true;
            return Ok(report);
        }
    }
    nuage.metrics.worker(kind).passes.fetch_add(1, Ordering::Relaxed);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// How a pass under way ended.
enum Ended {
    /// Walked to its end, and recorded as done.
    Done,
    /// Stopped (the process goes down); its cursor is saved.
    Stopped,
    /// Its claim went to another process.
    Lost,
}

/// Records a pass walked to its end: its cursor cleared, one more pass, when it ended.
async fn finish_pass(
    nuage: &Nuage,
    kind: Kind,
    persist: bool,
    state: &mut WorkerState,
) -> nuage_meta::Result<()> {
    state.cursor = None;
    state.passes += 1;
    state.last_pass_at = Some(now_ms());
    state.last_pass_found = Some(state.found);
    if persist {
        nuage.meta.save_worker_state(state).await?;
    } else {
        // A pass run by hand (`nuage admin scrub`) is recorded under a name of its own, so
        // that `admin status` shows it and the background worker's next save keeps it.
        let mut by_hand = nuage.meta.worker_state(&format!("{} (by hand)", kind.name())).await?;
        by_hand.passes += 1;
        by_hand.pass_started_at = state.pass_started_at;
        by_hand.last_pass_at = state.last_pass_at;
        by_hand.last_pass_found = state.last_pass_found;
        (by_hand.chunks, by_hand.bytes, by_hand.found) = (state.chunks, state.bytes, state.found);
        nuage.meta.save_worker_state(&by_hand).await?;
    }
    Ok(())
}

/// The walk of one pass, under `claimed` when it has a claim (which it renews before every
/// save of the cursor, and stops at once when it is lost, saving nothing more), until the
/// end of the index or `stop`: returns the state (cursor not yet cleared) and whether it
/// reached the end.
#[allow(clippy::too_many_arguments)] // the pass's settings, its report, and its claim
async fn walk(
    nuage: &Arc<Nuage>,
    kind: Kind,
    persist: bool,
    progress: &impl Fn(&WorkerState),
    report: &mut PassReport,
    mut pace: Pace,
    mut claimed: Option<&mut Claimed>,
    stop: &StopSignal,
) -> nuage_meta::Result<(WorkerState, bool)> {
    let mut state = if persist {
        nuage.meta.worker_state(kind.name()).await?
    } else {
        WorkerState { name: kind.name().to_owned(), ..WorkerState::default() }
    };
    if state.cursor.is_none() {
        state.pass_started_at = Some(now_ms());
        (state.chunks, state.bytes, state.found) = (0, 0, 0);
    }
    let counters = nuage.metrics.worker(kind);
    let w = &nuage.config.workers;
    let mut saved = Instant::now();
    // The collector deletes what nothing has referenced since before the grace period.
    let cutoff =
        now_ms().saturating_sub(i64::try_from(w.gc_grace_secs.saturating_mul(1000)).unwrap_or(i64::MAX));
    if kind == Kind::Gc {
        let c = claimed.as_deref_mut().expect("the collector works under its claim");
        // Deletions left by a collector that stopped (this claim means none is at work):
        // nobody may rely on those chunks, finish them first.
        let interrupted = nuage.meta.deletions().await?;
        if let Some(before) = c.claim.taken_from()
            && !interrupted.is_empty()
        {
            // A holder that did not give its claim back may have been cut off while it lived,
            // a group of provider deletes still in flight: were its deletions finished now, a
            // writer could store one of those chunks again and a late delete remove the new
            // copy. Its requests went out within ISSUE_WINDOW of its last renewal, which began
            // before this claim was taken, and end within the longest request.
            let settle = ISSUE_WINDOW + nuage.store.longest_request() + Duration::from_secs(1);
            let taken = tokio::time::Instant::from_std(c.claim.checked_at());
            tracing::warn!(
                "gc: took over from {before}, which did not give its claim back: finishing its {} deletions once \
                 its provider requests can no longer be in flight ({} s)",
                interrupted.len(),
                settle.as_secs()
            );
            let mut stopping = c.stop.clone();
            tokio::select! {
                _ = tokio::time::sleep_until(taken + settle) => c.claim.settle(),
                _ = stopping.wait() => {} // not settled: the next holder waits too
            }
        } else {
            c.claim.settle(); // nothing recorded: nothing of the holder before can be in flight
        }
        let n = interrupted.len() as u64;
        let o = delete_everywhere(nuage, c, &interrupted, &std::collections::HashMap::new()).await?;
        tally(&mut state, report, counters, n, o);
    }
    // Whether the cursor may be saved: with a claim, only while it holds.
    async fn may_save(nuage: &Nuage, claimed: &mut Option<&mut Claimed>) -> nuage_meta::Result<bool> {
        match claimed.as_deref_mut() {
            Some(c) => c.renew(nuage).await,
            None => Ok(true),
        }
    }
    loop {
        if stop.is_set() {
            return Ok((state, false)); // the cursor was saved after the last batch
        }
        let page = match kind {
            Kind::Gc => nuage.meta.unreferenced_chunks(state.cursor, cutoff, BATCH).await?,
            Kind::Migrate => nuage.meta.chunks_on_draining(state.cursor, BATCH).await?,
            _ => nuage.meta.chunks_after(state.cursor, BATCH).await?,
        };
        let Some(last) = page.last().map(|c| c.address) else { break };
        if kind == Kind::Gc {
            let c = claimed.as_deref_mut().expect("the collector works under its claim");
            if c.lost {
                break;
            }
            let addresses: Vec<[u8; 32]> = page.iter().map(|c| c.address).collect();
            let sizes = page.iter().map(|c| (c.address, c.stored_size)).collect();
            let doomed = nuage.meta.start_deletions(&addresses, cutoff).await?;
            let o = delete_everywhere(nuage, c, &doomed, &sizes).await?;
            tally(&mut state, report, counters, page.len() as u64, o);
        } else {
            // IN_FLIGHT chunks at a time, each in a task of its own (a task waiting for the
            // database or a provider never holds up the others, nor the pace's sleep them);
            // outcomes are tallied, and the cursor moved, in address order, so that a saved
            // cursor never passes a chunk not done.
            let mut results: Vec<Option<Outcome>> = page.iter().map(|_| None).collect();
            let (mut spawned, mut tallied) = (0, 0);
            let mut tasks = tokio::task::JoinSet::new();
            loop {
                while tasks.len() < IN_FLIGHT && spawned < page.len() {
                    let (nuage, c, i) = (nuage.clone(), page[spawned].clone(), spawned);
                    tasks.spawn(async move { (i, one_chunk(&nuage, kind, &c).await) });
                    spawned += 1;
                }
                let Some(joined) = tasks.join_next().await else { break };
                let (i, outcome) = joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
                let o = outcome?;
                let bytes = o.bytes;
                results[i] = Some(o);
                while let Some(o) = results.get_mut(tallied).and_then(Option::take) {
                    tally(&mut state, report, counters, 1, o);
                    state.cursor = Some(page[tallied].address);
                    tallied += 1;
                }
                // A batch of large chunks at a slow pace lasts minutes: the cursor is saved
                // at least every second within one, so `nuage admin status` moves and a
                // restart resumes after the chunks done.
                if saved.elapsed() >= SAVE_EVERY || (stop.is_set() && tasks.is_empty()) {
                    if persist {
                        if !may_save(nuage, &mut claimed).await? {
                            return Ok((state, false));
                        }
                        nuage.meta.save_worker_state(&state).await?;
                    }
                    saved = Instant::now();
                    progress(&state);
                }
                if stop.is_set() {
                    // No new chunk: those under way finish, the cursor stops after them.
                    spawned = page.len().max(spawned);
                    if tasks.is_empty() {
                        return Ok((state, false));
                    }
                }
                // The pace's pause ends early when the stop comes.
                let mut stopping = stop.clone();
                tokio::select! {
                    _ = pace.account(bytes) => {}
                    _ = stopping.wait() => {}
                }
            }
        }
        state.cursor = Some(last);
        if persist {
            if !may_save(nuage, &mut claimed).await? {
                return Ok((state, false));
            }
            nuage.meta.save_worker_state(&state).await?;
            saved = Instant::now();
        }
        progress(&state);
    }
    if kind == Kind::Gc {
        let c = claimed.expect("the collector works under its claim");
        // Not resumable: a listing is cheap next to deleting, and a restart lists again.
        if !c.lost {
            let o = collect_strays(nuage, c, cutoff).await?;
            tally(&mut state, report, counters, 0, o);
        }
    }
    Ok((state, true))
}

/// Starts the background workers of a server ([`Background`]): the passes whose period is
/// not 0 (a pass interrupted by a restart resumes at once; otherwise a pass starts one period
/// after the last one started), the drain of providers being drained, the registry's
/// follower, the recorder of read problems, the housekeeping and the lifecycle rules.
pub fn spawn(nuage: &Arc<Nuage>) -> Background {
    let mut background = Background::reporting_to(nuage.metrics.background.clone());
    let w = nuage.config.workers;
    for (kind, every) in
        [(Kind::Scrub, w.scrub_every_secs), (Kind::Repair, w.repair_every_secs), (Kind::Gc, w.gc_every_secs)]
    {
        if every > 0 {
            let every_ms = i64::try_from(every.saturating_mul(1000)).unwrap_or(i64::MAX);
            background.spawn(Periodic { nuage: nuage.clone(), kind, every_ms, due_in_ms: 0 });
        }
    }
    let (inactive, seen) = tokio::sync::watch::channel(Vec::new());
    background.spawn(ProviderStates { nuage: nuage.clone(), inactive });
    background.spawn(Drains { nuage: nuage.clone(), seen, closed: false });
    background.spawn(ReadProblems { nuage: nuage.clone(), events: nuage.store.subscribe() });
    background.spawn(Housekeeping { nuage: nuage.clone() });
    if w.lifecycle_every_secs > 0 {
        background
            .spawn(Lifecycle { nuage: nuage.clone(), every: Duration::from_secs(w.lifecycle_every_secs) });
    }
    background
}

/// What the chunk store met on reads and writes: a copy missing or corrupt (the read fell
/// back to another copy, or failed) is logged, counted at `/metrics`, and its placement is
/// recorded so (from `stored`, compare and set), so that the next repair pass (hourly by
/// default) rewrites it rather than the weekly scrub finding it first.
struct ReadProblems {
    nuage: Arc<Nuage>,
    events: tokio::sync::broadcast::Receiver<nuage_blob::PlacementProblem>,
}

impl Worker for ReadProblems {
    fn name(&self) -> &'static str {
        "read problems"
    }

    async fn work(&mut self, stop: &StopSignal) -> ServiceResult<BgState> {
        let mut stop = stop.clone();
        let problem = tokio::select! {
            p = self.events.recv() => p,
            _ = stop.wait() => return Ok(BgState::Done),
        };
        let problem = match problem {
            Ok(p) => p,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    "{n} placement problems were not looked at (too many at once); the scrub finds them"
                );
                return Ok(BgState::Busy);
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(BgState::Done),
        };
        record_problem(&self.nuage, problem).await;
        Ok(BgState::Busy)
    }

    async fn wait_for_work(&mut self) {}
}

async fn record_problem(nuage: &Nuage, problem: nuage_blob::PlacementProblem) {
    use nuage_blob::ProblemKind;
    let state = match problem.kind {
        ProblemKind::Missing => PlacementState::Missing,
        ProblemKind::Corrupt => PlacementState::Corrupt,
        _ => return,
    };
    let counter = if state == PlacementState::Missing {
        &nuage.metrics.read_fallbacks_missing
    } else {
        &nuage.metrics.read_fallbacks_corrupt
    };
    let address = problem.address;
    // A read tries providers in ranking order, and one that never held the chunk (added
    // since, or weighted up) answers "missing" too: only a placement of the index that
    // says `stored` is a copy lost. (A read first: no write for the others.)
    match nuage.meta.held_chunks(&[*address.as_bytes()]).await {
        Ok(held) if held.get(address.as_bytes()).is_some_and(|(_, on)| on.contains(&problem.provider)) => {}
        Ok(_) => return,
        Err(e) => {
            tracing::warn!("chunk {address} is {state} on {}; looking it up: {e}", problem.provider);
            return;
        }
    }
    match nuage
        .meta
        .change_placement(address.as_bytes(), &problem.provider, PlacementState::Stored, state, false)
        .await
    {
        Ok(true) => {
            crate::metrics::add(counter, 1);
            tracing::warn!(
                "chunk {address} is {state} on {}: recorded, the next repair pass rewrites it",
                problem.provider
            )
        }
        Ok(false) => {} // recorded already, or not a placement the index knows
        Err(e) => tracing::warn!("chunk {address} is {state} on {}; recording it: {e}", problem.provider),
    }
}

/// Every two seconds, on its own: the providers' states from the database, so that a drain
/// started by another process turns new writes away within that time, even while a long
/// migrate pass runs; the providers that are not active go to the drain. And the workers'
/// paces ([`follow_paces`]).
struct ProviderStates {
    nuage: Arc<Nuage>,
    inactive: tokio::sync::watch::Sender<Vec<(String, ProviderState)>>,
}

impl Worker for ProviderStates {
    fn name(&self) -> &'static str {
        "provider states"
    }

    async fn work(&mut self, _: &StopSignal) -> ServiceResult<BgState> {
        match refresh_provider_states(&self.nuage).await {
            Ok(now) => {
                self.inactive.send_replace(now);
            }
            Err(e) => tracing::warn!("reading the providers' states: {e}"),
        }
        if let Err(e) = follow_paces(&self.nuage).await {
            tracing::warn!("reading the workers' paces: {e}");
        }
        Ok(BgState::Throttled(Duration::from_secs(2)))
    }

    async fn wait_for_work(&mut self) {}
}

/// While a provider is draining: migrate passes one after another (every two seconds at
/// most), and after one that found nothing to move, the end of the drains. While one is
/// drained: a look every two seconds for a placement a late commit left there.
struct Drains {
    nuage: Arc<Nuage>,
    seen: tokio::sync::watch::Receiver<Vec<(String, ProviderState)>>,
    /// The reader of the states stopped: the server is going down.
    closed: bool,
}

impl Worker for Drains {
    fn name(&self) -> &'static str {
        "migrate"
    }

    async fn work(&mut self, stop: &StopSignal) -> ServiceResult<BgState> {
        if self.closed {
            return Ok(BgState::Done);
        }
        let inactive = self.seen.borrow_and_update().clone();
        match inactive {
            inactive if inactive.is_empty() => {}
            inactive if inactive.iter().all(|(_, s)| *s != ProviderState::Draining) => {
                // Drained: a commit that raced the end of the drain may have left a placement
                // there (PostgreSQL commits overlap); if so, take the drain up again.
                match self.nuage.meta.placement_counts().await {
                    Ok(counts) => {
                        for (name, _) in &inactive {
                            if counts.iter().any(|(p, _, n)| p == name && *n > 0)
                                && let Err(e) =
                                    self.nuage.meta.set_provider_state(name, ProviderState::Draining).await
                            {
                                tracing::warn!("migrate: {e}");
                            }
                        }
                    }
                    Err(e) => tracing::warn!("migrate: {e}"),
                }
            }
            inactive => match run_pass_until(&self.nuage, Kind::Migrate, true, |_| {}, stop).await {
                // Another server drains: it also ends the drains. A stopped pass proves nothing.
                Ok(r) if r.claimed_elsewhere || r.stopped => {}
                Ok(r) => {
                    if r.chunks > 0 {
                        tracing::info!(
                            "migrate: pass done: {} chunks, {} bytes, {} moved, {} skipped, {:.1} s",
                            r.chunks,
                            r.bytes,
                            r.found,
                            r.skipped,
                            r.seconds
                        );
                    }
                    let draining: Vec<String> = inactive
                        .into_iter()
                        .filter(|(_, s)| *s == ProviderState::Draining)
                        .map(|(n, _)| n)
                        .collect();
                    if r.found == 0 && r.skipped == 0 && !draining.is_empty() {
                        // Under the worker's claim again: one server at a time ends the drains
                        // (one that holds it now ends them itself).
                        let ended =
                            match Claimed::take(&self.nuage, Kind::Migrate, Pace::unpaced(), stop).await {
                                Ok(Some(c)) => {
                                    let ended = finish_drains(&self.nuage, &draining).await;
                                    let released = c.release(&self.nuage).await;
                                    ended.and(released)
                                }
                                Ok(None) => Ok(()),
                                Err(e) => Err(e),
                            };
                        if let Err(e) = ended {
                            tracing::warn!("migrate: {e}");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!("migrate: {e}; trying again in ten seconds");
                    return Ok(BgState::Throttled(Duration::from_secs(10)));
                }
            },
        }
        Ok(BgState::Idle)
    }

    /// The states as last read, and at least one refresh between two rounds.
    async fn wait_for_work(&mut self) {
        if self.seen.changed().await.is_err() {
            self.closed = true;
        }
    }
}

/// A worker that runs a pass every period (scrub, repair, gc).
struct Periodic {
    nuage: Arc<Nuage>,
    kind: Kind,
    every_ms: i64,
    /// How long until the next pass is due, as the last look found.
    due_in_ms: i64,
}

impl Worker for Periodic {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    async fn work(&mut self, stop: &StopSignal) -> ServiceResult<BgState> {
        let kind = self.kind;
        let s = self.nuage.meta.worker_state(kind.name()).await?;
        self.due_in_ms = match s.pass_started_at {
            _ if s.cursor.is_some() => 0,
            Some(t) => (t.saturating_add(self.every_ms) - now_ms()).max(0),
            None => 0,
        };
        if self.due_in_ms > 0 {
            return Ok(BgState::Idle);
        }
        let r = run_pass_until(&self.nuage, kind, true, |_| {}, stop).await?;
        if r.claimed_elsewhere {
            // Another server runs this pass; look again later (its cursor says when it is
            // done, and then the next pass is due one period on).
            return Ok(BgState::Throttled(Duration::from_millis(self.every_ms.clamp(1_000, 10_000) as u64)));
        }
        if !r.stopped {
            tracing::info!(
                "{}: pass done: {} chunks, {} bytes, {} found, {} skipped, {:.1} s",
                kind.name(),
                r.chunks,
                r.bytes,
                r.found,
                r.skipped,
                r.seconds
            );
        }
        Ok(BgState::Busy) // the next look says when the next pass is due
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(Duration::from_millis(self.due_in_ms.clamp(0, 60_000) as u64)).await;
    }
}

/// Every ten minutes: rotates the grant key when it is due and forgets expired upload
/// sessions, chunk leases and idle password attempts.
struct Housekeeping {
    nuage: Arc<Nuage>,
}

impl Worker for Housekeeping {
    fn name(&self) -> &'static str {
        "housekeeping"
    }

    async fn work(&mut self, _: &StopSignal) -> ServiceResult<BgState> {
        let nuage = &self.nuage;
        if let Err(e) = nuage.grants.rotate_if_due(&nuage.meta).await {
            tracing::warn!("grant key rotation: {e}");
        }
        if let Err(e) = nuage.meta.drop_upload_sessions_expired_before(now_ms()).await {
            tracing::warn!("dropping expired upload sessions: {e}");
        }
        if let Err(e) = nuage.meta.drop_multiparts_expired_before(now_ms()).await {
            tracing::warn!("dropping expired multipart uploads: {e}");
        }
        if let Err(e) = nuage.meta.drop_expired_leases().await {
            tracing::warn!("dropping expired chunk leases: {e}");
        }
        if let Err(e) = nuage.meta.drop_idle_attempts(now_ms() - 3_600_000).await {
            tracing::warn!("dropping idle password attempts: {e}");
        }
        Ok(BgState::Throttled(Duration::from_secs(600)))
    }

    async fn wait_for_work(&mut self) {}
}

/// Every `[workers] lifecycle_every_secs`: applies the buckets' lifecycle rules
/// ([`Nuage::apply_lifecycle`]).
struct Lifecycle {
    nuage: Arc<Nuage>,
    every: Duration,
}

impl Worker for Lifecycle {
    fn name(&self) -> &'static str {
        "lifecycle"
    }

    async fn work(&mut self, stop: &StopSignal) -> ServiceResult<BgState> {
        let r = self.nuage.apply_lifecycle(now_ms(), stop).await?;
        if r.failed > 0 {
            tracing::warn!("lifecycle: the rules of {} buckets failed (logged above)", r.failed);
        }
        if r.expired + r.markers_removed + r.noncurrent_removed + r.uploads_aborted > 0 {
            tracing::info!(
                "lifecycle: {} buckets: {} expired, {} delete markers and {} noncurrent versions removed, \
                 {} uploads aborted",
                r.buckets,
                r.expired,
                r.markers_removed,
                r.noncurrent_removed,
                r.uploads_aborted
            );
        }
        Ok(BgState::Throttled(self.every))
    }

    async fn wait_for_work(&mut self) {}
}
