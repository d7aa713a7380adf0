//! The writers' side of garbage collection (the protocol is in `nuage-meta`'s `gc.rs`): an
//! upload leases its chunks before it writes them or trusts a stored copy, and waits out a
//! deletion under way rather than race it.

use std::time::{Duration, Instant};

use nuage_meta::now_ms;

use crate::state::Nuage;
use crate::{ErrorKind, ServiceError, ServiceResult};

/// How long a writer waits for deletions of its chunks to end before it gives up (`503`).
/// The collector ends its deletions 16 chunks at a time, each a few provider calls; only a
/// collector stopped midway leaves some for longer, until another claims the collector and
/// finishes them (at once on the same machine, else when its claim runs out).
const DELETION_WAIT: Duration = Duration::from_secs(30);

/// The holder name of a simple upload's leases: its idempotency key when it has one, so
/// that the retry of an attempt cut short by a crash drops the leases that attempt took
/// when it commits (or finds the first attempt's commit); a random name otherwise. The
/// holder counts as an attempt under way in this process until it is dropped.
pub fn holder(nuage: &Nuage, account_id: i64, idempotency_key: Option<&str>) -> Holder {
    let (name, shared) = match idempotency_key {
        Some(k) => (format!("put:{account_id}:{k}"), true),
        None => (format!("put:{}", hex::encode(rand::random::<[u8; 16]>())), false),
    };
    if shared {
        *nuage.attempts.0.lock().unwrap_or_else(|e| e.into_inner()).entry(name.clone()).or_insert(0) += 1;
    }
    Holder { name, attempts: shared.then(|| nuage.attempts.0.clone()) }
}

/// Who holds an upload's leases.
#[derive(Debug)]
pub struct Holder {
    /// The name in `chunk_leases`.
    pub name: String,
    /// Where this attempt is counted: only for a holder named by an idempotency key, which
    /// another attempt of the same upload (a retry sent while this one still runs) may share.
    attempts: Option<std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>>,
}

impl Holder {
    /// The holder of a multipart upload's leases (its id), which no attempt counts: its
    /// parts come and go on their own.
    pub fn multipart(id: &str) -> Holder {
        Holder { name: id.to_owned(), attempts: None }
    }

    /// Whether another attempt with this holder name runs in this process.
    fn others_running(&self) -> bool {
        self.attempts.as_ref().is_some_and(|a| {
            a.lock().unwrap_or_else(|e| e.into_inner()).get(&self.name).is_some_and(|&n| n > 1)
        })
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if let Some(attempts) = &self.attempts {
            let mut map = attempts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = map.get_mut(&self.name) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.name);
                }
            }
        }
    }
}

/// Until when a lease taken now lasts, Unix ms.
pub fn lease_until(nuage: &Nuage) -> i64 {
    now_ms().saturating_add(
        i64::try_from(nuage.config.workers.upload_lease_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
    )
}

/// The leases an upload takes: whose, until when, and the account whose quota its chunks'
/// room is held on (none: the account has no quota, nothing to hold).
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    /// The lease holder's name ([`Holder::name`]).
    pub holder: &'a str,
    /// Until when, Unix ms ([`lease_until`]).
    pub expires_at: i64,
    /// The account whose quota room is held, if it has a quota.
    pub hold_for: Option<i64>,
}

/// Leases `addresses` to the holder and holds `bytes` of quota room for them, waiting out
/// any deletion of them under way: when this returns, no collector deletes them before the
/// lease ends, any copy found on a provider is one to trust, and the bytes fit in the
/// account's quota (else `413 quota_exceeded`, and nothing was taken).
pub async fn lease(
    nuage: &Nuage,
    lease: &Lease<'_>,
    addresses: &[[u8; 32]],
    bytes: u64,
) -> ServiceResult<nuage_meta::StoredOn> {
    let mut todo = addresses.to_vec();
    let mut hold = lease.hold_for.map(|account| (account, bytes));
    // Where the chunks are stored already, read with each lease (a chunk being deleted
    // is not stored anywhere to rely on: it is written again).
    let mut stored_on = None;
    loop {
        let meta = &nuage.meta;
        let (deleting, stored) =
            meta.lease_chunks_finding_stored(lease.holder, &todo, lease.expires_at, hold.take()).await?;
        // Those of a later round were being deleted: what is left of them is known now.
        let stored_on = stored_on.get_or_insert_with(nuage_meta::StoredOn::new);
        stored_on.extend(stored);
        for a in &deleting {
            stored_on.remove(a);
        }
        if deleting.is_empty() {
            return Ok(std::mem::take(stored_on));
        }
        wait_out_deletions(nuage, &deleting).await?;
        todo = deleting; // leased already, but taken while a deletion ran: take it again
    }
}

/// Waits until none of `addresses` is being deleted.
pub async fn wait_out_deletions(nuage: &Nuage, addresses: &[[u8; 32]]) -> ServiceResult<()> {
    if addresses.is_empty() {
        return Ok(());
    }
    crate::metrics::add(&nuage.metrics.deletion_waits, 1);
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    let mut left = addresses.to_vec();
    loop {
        left = nuage.meta.deleting(&left).await?;
        if left.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= DELETION_WAIT {
            return Err(ServiceError::new(
                ErrorKind::Unavailable,
                "chunk_busy",
                format!(
                    "{} chunk(s) of this upload are being garbage-collected; try again shortly",
                    left.len()
                ),
            )
            .retry_after(5));
        }
        // A deletion is a handful of provider calls: poll briefly, backing off.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Drops the leases and the quota hold of an upload attempt that failed, and deletes the
/// chunks it stored that nothing else relies on (best effort: leases run out anyway, and the
/// collector takes what is left), so that a failed upload (a full provider, a client gone)
/// gives its room back now, not when its leases run out.
/// Leases named by an idempotency key are left to a retry of the same upload running
/// beside this attempt in this process. A retry running on another server at the same
/// instant loses them: its commit is refused (`upload_lease_expired`, temporary) and the
/// client's next retry takes them again.
pub async fn release(nuage: &std::sync::Arc<Nuage>, holder: &Holder) {
    if holder.others_running() {
        return;
    }
    let leased = nuage.meta.leased_by(&holder.name).await;
    if let Err(e) = nuage.meta.release_leases(&holder.name).await {
        tracing::warn!("dropping the leases of a failed upload: {e}");
        return;
    }
    // The chunks it stored go with the room they held.
    match leased {
        Ok(addresses) => discard(nuage, addresses).await,
        Err(e) => tracing::warn!("listing the leases of a failed upload: {e}"),
    }
}

/// Deletes at once, from every provider, those of `addresses` that an upload which will not
/// commit wrote (its leases or declarations dropped first) and that nothing else may rely
/// on (`workers::discard_now`), so that a refused or aborted upload leaves nothing stored
/// that its account's quota no longer counts. In a task of its own, awaited: a client that
/// goes away does not cut it short. Best effort: what is left (a provider down, a collector
/// at work) is a stray for the collector.
pub async fn discard(nuage: &std::sync::Arc<Nuage>, addresses: Vec<[u8; 32]>) {
    if addresses.is_empty() {
        return;
    }
    let n = nuage.clone();
    let task = tokio::spawn(async move { crate::workers::discard_now(&n, &addresses).await });
    match task.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!("deleting the chunks of an upload that failed: {e}; left to the collector")
        }
        Err(e) => tracing::warn!("deleting the chunks of an upload that failed: {e}"),
    }
}
