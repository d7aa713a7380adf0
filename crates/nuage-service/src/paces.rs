//! The workers' paces: how fast each one moves bytes (the collector: deletions), from the
//! configuration or set while servers run (`nuage admin pace`, kept in the database for
//! every server of the deployment), and the token bucket that spaces a pass's work.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::metrics::Kind;
use crate::state::Nuage;

/// Spaces the work so that it moves about `rate` bytes (or deletions) per second: a token
/// bucket holding at most one second's worth, so a slow stretch is not made up by a burst.
/// The rate is read again at every step and within a wait of more than a second, so that a
/// new rate counts within a second of reaching this process ([`follow_paces`], every two
/// seconds).
#[derive(Debug)]
pub(crate) struct Pace {
    /// The rate in effect (the worker's [`crate::metrics::WorkerCounters::pace`]); `None`: unpaced.
    rate: Option<Arc<AtomicU64>>,
    tokens: f64,
    at: tokio::time::Instant,
}

impl Pace {
    /// The pace of `kind`, following its rate as it changes.
    pub(crate) fn of(nuage: &Nuage, kind: Kind) -> Pace {
        Pace::following(nuage.metrics.worker(kind).pace.clone())
    }

    fn following(rate: Arc<AtomicU64>) -> Pace {
        let tokens = rate.load(Ordering::Relaxed) as f64;
        Pace { rate: Some(rate), tokens, at: tokio::time::Instant::now() }
    }

    /// No pace at all.
    pub(crate) fn unpaced() -> Pace {
        Pace { rate: None, tokens: 0.0, at: tokio::time::Instant::now() }
    }

    fn rate(&self) -> u64 {
        self.rate.as_ref().map_or(0, |r| r.load(Ordering::Relaxed))
    }

    /// Adds the time since the last look at the current rate, up to one second's worth.
    fn refill(&mut self) {
        let rate = self.rate() as f64;
        self.tokens = (self.tokens + self.at.elapsed().as_secs_f64() * rate).min(rate);
        self.at = tokio::time::Instant::now();
    }

    pub(crate) async fn account(&mut self, amount: u64) {
        if self.rate() == 0 {
            return;
        }
        self.refill();
        self.tokens -= amount as f64;
        loop {
            let rate = self.rate();
            if rate == 0 {
                self.tokens = 0.0; // unpaced now: the debt is forgiven
                return;
            }
            if self.tokens >= 0.0 {
                return;
            }
            // At most a second at a time, so that a new rate counts from then on.
            tokio::time::sleep(Duration::from_secs_f64((-self.tokens / rate as f64).min(1.0))).await;
            self.refill();
        }
    }
}

/// The pace of `kind` its settings give (`[workers] *_per_sec`).
pub fn configured_pace(w: &crate::config::WorkersConfig, kind: Kind) -> u64 {
    match kind {
        Kind::Scrub => w.scrub_bytes_per_sec,
        Kind::Repair => w.repair_bytes_per_sec,
        Kind::Gc => w.gc_deletes_per_sec,
        Kind::Migrate => w.migrate_bytes_per_sec,
    }
}

/// Each worker's pace in effect: the one set at run time (`nuage admin pace`, kept in the
/// database for every server) or else the configured one, with whether it was set.
pub async fn paces(
    meta: &nuage_meta::Meta,
    w: &crate::config::WorkersConfig,
) -> nuage_meta::Result<Vec<(Kind, u64, bool)>> {
    let set = meta.worker_paces().await?;
    Ok(Kind::ALL
        .into_iter()
        .map(|kind| match set.iter().find(|(name, _)| name == kind.name()) {
            Some((_, rate)) => (kind, *rate, true),
            None => (kind, configured_pace(w, kind), false),
        })
        .collect())
}

/// Sets `kind`'s pace for every server of the deployment (`None`: back to each server's
/// configured pace); running passes follow within about three seconds.
pub async fn set_pace(meta: &nuage_meta::Meta, kind: Kind, rate: Option<u64>) -> nuage_meta::Result<()> {
    meta.set_worker_pace(kind.name(), rate).await
}

/// Reads the paces in effect into the workers' counters, where running passes read them.
pub async fn follow_paces(nuage: &Nuage) -> nuage_meta::Result<()> {
    for (kind, rate, _) in paces(&nuage.meta, &nuage.config.workers).await? {
        nuage.metrics.worker(kind).pace.store(rate, Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The time `amount` takes to account for.
    async fn took(pace: &mut Pace, amount: u64) -> Duration {
        let started = tokio::time::Instant::now();
        pace.account(amount).await;
        started.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_pace_follows_its_rate_as_it_changes() {
        let rate = Arc::new(AtomicU64::new(1_000));
        let mut pace = Pace::following(rate.clone());
        // One second's worth is there at once; then 1,000 per second.
        assert_eq!(took(&mut pace, 1_000).await, Duration::ZERO);
        assert_eq!(took(&mut pace, 3_000).await, Duration::from_secs(3));
        // 100,000 at 1,000/s would be 100 s; raised to 100,000/s after the first second,
        // the rest (99,000) takes a second more.
        let raise = {
            let rate = rate.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                rate.store(100_000, Ordering::Relaxed);
            })
        };
        let t = took(&mut pace, 100_000).await;
        raise.await.unwrap();
        assert!(t >= Duration::from_secs(1) && t <= Duration::from_secs(2), "took {t:?}");
        // Unpaced (0) ends a wait at its next look.
        rate.store(1, Ordering::Relaxed);
        let unpace = {
            let rate = rate.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                rate.store(0, Ordering::Relaxed);
            })
        };
        let t = took(&mut pace, 1_000_000).await;
        unpace.await.unwrap();
        assert_eq!(t, Duration::from_secs(2), "looks once a second");
        assert_eq!(took(&mut pace, u64::MAX).await, Duration::ZERO);
        assert_eq!(took(&mut Pace::unpaced(), u64::MAX).await, Duration::ZERO);
    }
}
