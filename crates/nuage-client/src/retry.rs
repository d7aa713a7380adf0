//! Retrying temporary failures for a window of time, shared by every request of a client.
//!
//! A request that failed in a way that may pass (the connection refused or cut, a timeout,
//! `502`/`503`/`504`) is tried again after a pause that doubles from 250 ms up to 5 s. The
//! clock is the client's, not the request's: an outage starts at the first temporary failure
//! and ends at the next answer, and once it has lasted the window (default
//! [`RETRY_WINDOW`]), every request that fails gives up at once with [`ClientError::GaveUp`],
//! so a folder of thousands of files stops with one message instead of waiting out the
//! window once per file. The outage is said once when it starts (what failed, and for how
//! long it will be retried) and once when it ends.
//!
//! Before the server has answered anything in this process, a refused connection is not
//! retried: the server is not running there, or the address is wrong, and waiting would
//! only hide it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{ClientError, ClientResult};

/// How long temporary failures are retried by default.
pub const RETRY_WINDOW: Duration = Duration::from_secs(120);
/// The first pause; each next one doubles, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// The retry clock of one client (shared by its clones).
#[derive(Debug)]
pub(crate) struct Retry {
    window: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The server answered once in this process.
    answered: bool,
    /// When the current outage began.
    outage: Option<Instant>,
}

impl Retry {
    pub(crate) fn new(window: Duration) -> Retry {
        Retry { window, state: Mutex::new(State::default()) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Something answered: an outage, if any, is over.
    pub(crate) fn answered(&self) {
        let mut s = self.state();
        s.answered = true;
        if let Some(since) = s.outage.take() {
            tracing::warn!("answering again after {}; going on", duration(since.elapsed()));
        }
    }

    /// After the `attempt`-th temporary failure `e` of `what`: how long to pause before the
    /// next attempt, or `None` to give up.
    fn pause(&self, attempt: u32, what: &str, e: &ClientError) -> Option<Duration> {
        let mut s = self.state();
        if !s.answered && e.is_refused() {
            return None;
        }
        let now = Instant::now();
        let since = match s.outage {
            Some(since) => since,
            None => {
                s.outage = Some(now);
                if !self.window.is_zero() {
                    tracing::warn!(
                        "{what}: {}; retrying for up to {} (--retry-window sets how long)",
                        describe(e),
                        duration(self.window)
                    );
                }
                now
            }
        };
        let left = self.window.checked_sub(now - since).filter(|left| !left.is_zero())?;
        let pause = FIRST_PAUSE.saturating_mul(1 << attempt.min(8)).min(MAX_PAUSE);
        Some(pause.min(left))
    }

    /// How long the current outage has lasted.
    fn outage(&self) -> Duration {
        self.state().outage.map(|since| since.elapsed()).unwrap_or_default()
    }
}

impl ClientError {
    /// A connection refused outright (nothing listens there).
    fn is_refused(&self) -> bool {
        let ClientError::Http(e) = self else { return false };
        e.is_connect()
            && crate::error::io_cause(e).is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    }
}

/// Runs `attempt` until it succeeds, fails for good, or the client's retry window is spent
/// on temporary failures. Only for requests that are safe to repeat (idempotent by
/// construction or by key).
pub(crate) async fn with_retries<T, F, Fut>(retry: &Retry, what: &str, mut attempt: F) -> ClientResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ClientResult<T>>,
{
    let mut n = 0;
    loop {
        match attempt().await {
            Err(e) if e.is_temporary() => match retry.pause(n, what, &e) {
                Some(pause) => tokio::time::sleep(pause).await,
                None => {
                    return Err(if retry.outage().is_zero() {
                        e
                    } else {
                        ClientError::GaveUp {
                            what: what.to_owned(),
                            waited: duration(retry.outage()),
                            cause: describe(&e),
                            source: Box::new(e),
                        }
                    });
                }
            },
            other => {
                // Only an answer of the server ends an outage: not a give-up of a nested
                // call, nor a failure of this device (a file, a hash).
                if matches!(&other, Ok(_) | Err(ClientError::Api { .. })) {
                    retry.answered();
                }
                return other;
            }
        }
        n += 1;
    }
}

/// A temporary failure in words: who failed, and the cause at the bottom of the chain.
pub(crate) fn describe(e: &ClientError) -> String {
    let ClientError::Http(h) = e else {
        return match e {
            ClientError::Api { status, code, message } => {
                format!("the server answered {status} {code} ({message})")
            }
            other => other.to_string(),
        };
    };
    let at = h.url().map(|u| u.origin().ascii_serialization()).unwrap_or_else(|| "the server".into());
    let mut root: &dyn std::error::Error = h;
    while let Some(next) = root.source() {
        root = next;
    }
    if h.is_timeout() {
        format!("{at} did not answer in time")
    } else if h.is_connect() {
        format!("{at} cannot be reached ({root})")
    } else {
        format!("the connection to {at} broke ({root})")
    }
}

/// A duration as people read it: `45 s`, `2 min`, `2 min 30 s`.
pub(crate) fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs / 60, secs % 60) {
        (0, _) if d < Duration::from_secs(10) => format!("{:.1} s", d.as_secs_f64()),
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> ClientError {
        ClientError::Api { status: 503, code: "unavailable".into(), message: "busy".into() }
    }

    #[test]
    fn pauses_grow_and_stop_at_the_window() {
        let retry = Retry::new(Duration::from_secs(60));
        let pauses: Vec<_> = (0..6).map(|n| retry.pause(n, "x", &unavailable()).unwrap()).collect();
        assert_eq!(pauses[0], Duration::from_millis(250));
        assert_eq!(pauses[1], Duration::from_millis(500));
        assert_eq!(pauses[5], MAX_PAUSE);
        let closed = Retry::new(Duration::ZERO);
        assert_eq!(closed.pause(0, "x", &unavailable()), None);
    }

    #[test]
    fn an_answer_ends_the_outage() {
        let retry = Retry::new(Duration::from_millis(1));
        assert!(retry.pause(0, "x", &unavailable()).is_some_and(|p| p <= Duration::from_millis(1)));
        while retry.outage() < Duration::from_millis(1) {
            std::thread::yield_now();
        }
        assert_eq!(retry.pause(1, "x", &unavailable()), None, "the window is spent");
        retry.answered();
        assert!(retry.pause(0, "x", &unavailable()).is_some(), "a new outage has a new window");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(duration(Duration::from_secs(45)), "45 s");
        assert_eq!(duration(Duration::from_secs(120)), "2 min");
        assert_eq!(duration(Duration::from_secs(150)), "2 min 30 s");
    }
}
