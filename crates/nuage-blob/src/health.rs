//! Per-provider health: consecutive failures, and a back-off during which the provider is
//! skipped.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures in a row before a provider is marked down.
const FAILURES_BEFORE_DOWN: u32 = 3;
/// First back-off; doubles on each failed probe up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The health record of one provider.
///
/// A provider that failed [`FAILURES_BEFORE_DOWN`] times in a row is *down*: callers skip it
/// (or try it last) until its back-off ends; then the next operation is a probe, and one
/// success makes it healthy again. This keeps a dead provider from costing a timeout on every
/// request, while still noticing quickly when it returns.
#[derive(Debug, Default)]
pub(crate) struct Health {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    down_until: Option<Instant>,
    backoff: Duration,
}

impl Health {
    pub(crate) fn is_down(&self) -> bool {
        let state = self.state.lock().expect("health lock");
        state.down_until.is_some_and(|t| Instant::now() < t)
    }

    pub(crate) fn record_success(&self) {
        let mut state = self.state.lock().expect("health lock");
        *state = State::default();
    }

    pub(crate) fn record_failure(&self) {
        let mut state = self.state.lock().expect("health lock");
        state.consecutive_failures += 1;
        if state.consecutive_failures >= FAILURES_BEFORE_DOWN {
            state.backoff =
                if state.backoff.is_zero() { FIRST_BACKOFF } else { (state.backoff * 2).min(MAX_BACKOFF) };
            state.down_until = Some(Instant::now() + state.backoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_after_three_failures_and_up_after_one_success() {
        let h = Health::default();
        h.record_failure();
        h.record_failure();
        assert!(!h.is_down());
        h.record_failure();
        assert!(h.is_down());
        h.record_success();
        assert!(!h.is_down());
        h.record_failure();
        assert!(!h.is_down(), "one failure after a success is not enough");
    }
}
