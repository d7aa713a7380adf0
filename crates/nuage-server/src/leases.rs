//! The writers' side of garbage collection (the protocol is in `nuage-meta`'s `gc.rs`): an
//! upload leases its chunks before it writes them or trusts a stored copy, and waits out a
//! deletion under way rather than race it.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use nuage_meta::now_ms;

use crate::error::{ApiError, ApiResult};
use crate::state::Nuage;

/// How long a writer waits for deletions of its chunks to end before it gives up (`503`).
/// A deletion is a few provider calls; only a collector stopped midway (its server
/// crashed) leaves one for longer, until a collector resumes it.
const DELETION_WAIT: Duration = Duration::from_secs(30);

/// Time a commit keeps in hand before its leases run out: it refuses beyond that.
pub(crate) const LEASE_MARGIN_MS: i64 = 60_000;

/// The holder name of a simple upload's leases: its idempotency key when it has one, so
/// that a retry after a crash commits, and drops, the leases of the attempt it replaces.
pub(crate) fn holder(account_id: i64, idempotency_key: Option<&str>) -> String {
    match idempotency_key {
        Some(k) => format!("put:{account_id}:{k}"),
        None => format!("put:{}", hex::encode(rand::random::<[u8; 16]>())),
    }
}

/// Until when a lease taken now lasts, Unix ms.
pub(crate) fn lease_until(nuage: &Nuage) -> i64 {
    now_ms().saturating_add(
        i64::try_from(nuage.config.workers.upload_lease_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
    )
}

/// Leases `addresses` to `holder` until `expires_at`, waiting out any deletion of them under
/// way: when this returns, no collector deletes them before the lease ends, and any copy
/// found on a provider is one to trust.
pub(crate) async fn lease(
    nuage: &Nuage,
    holder: &str,
    addresses: &[[u8; 32]],
    expires_at: i64,
) -> ApiResult<()> {
    let mut todo = addresses.to_vec();
    loop {
        let deleting = nuage.meta.lease_chunks(holder, &todo, expires_at).await?;
        if deleting.is_empty() {
            return Ok(());
        }
        wait_out_deletions(nuage, &deleting).await?;
        todo = deleting; // leased already, but taken while a deletion ran: take it again
    }
}

/// Waits until none of `addresses` is being deleted.
pub(crate) async fn wait_out_deletions(nuage: &Nuage, addresses: &[[u8; 32]]) -> ApiResult<()> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    let mut left = addresses.to_vec();
    loop {
        left = nuage.meta.deleting(&left).await?;
        if left.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= DELETION_WAIT {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "chunk_busy",
                format!(
                    "{} chunk(s) of this upload are being garbage-collected; try again shortly",
                    left.len()
                ),
            );
            e.retry_after = Some(5);
            return Err(e);
        }
        // A deletion is a handful of provider calls: poll briefly, backing off.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Refuses a commit whose leases have run out, or are about to: the collector may be free
/// to delete its chunks.
pub(crate) fn check_in_time(lease_expires_at: i64) -> ApiResult<()> {
    if now_ms().saturating_add(LEASE_MARGIN_MS) >= lease_expires_at {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "upload_lease_expired",
            "the upload took longer than [workers] upload_lease_secs; nothing was committed, send it again",
        ));
    }
    Ok(())
}
