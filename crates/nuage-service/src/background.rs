//! The background workers of one process, on one pattern: a [`Worker`] does a unit of work
//! at a time and says what it is doing ([`WorkerState`]); a runner calls it again at once
//! (busy), after a pause (throttled), when it may have work again (idle), or never (done);
//! a failure is logged and counted, and the worker is called again after a back-off that
//! doubles with each failure in a row (1 s up to 10 min). [`Background::stop`] asks every
//! worker to stop at the end of its unit of work (a [`StopSignal`] it can also watch inside
//! one), waits for them up to a deadline, and only then drops those still running.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::ServiceResult;

/// What a worker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// It has more work: call it again at once.
    Busy,
    /// It has more work, after this pause (a pace, a retry).
    Throttled(Duration),
    /// Nothing to do until [`Worker::wait_for_work`] returns.
    Idle,
    /// It is finished.
    Done,
}

impl WorkerState {
    /// Its one name (`busy`, `throttled`, `idle`, `done`).
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Busy => "busy",
            WorkerState::Throttled(_) => "throttled",
            WorkerState::Idle => "idle",
            WorkerState::Done => "done",
        }
    }
}

/// One background worker.
pub trait Worker: Send + 'static {
    /// Its name, in logs and in [`Background::status`].
    fn name(&self) -> &'static str;

    /// Does one unit of work, if there is any (else answers [`WorkerState::Idle`] at once).
    /// A unit that can last long watches `stop` and ends early when it is set, leaving its
    /// work where the next start resumes it.
    fn work(&mut self, stop: &StopSignal) -> impl Future<Output = ServiceResult<WorkerState>> + Send;

    /// After [`WorkerState::Idle`]: returns when there may be work (the runner stops
    /// waiting when the stop signal comes).
    fn wait_for_work(&mut self) -> impl Future<Output = ()> + Send;
}

/// Tells workers to stop; cheap to clone.
#[derive(Debug, Clone)]
pub struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    /// A signal that never comes (a pass run by hand).
    pub fn never() -> StopSignal {
        static NEVER: std::sync::OnceLock<watch::Sender<bool>> = std::sync::OnceLock::new();
        StopSignal(NEVER.get_or_init(|| watch::channel(false).0).subscribe())
    }

    /// Whether the stop has been asked for.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once the stop has been asked for.
    pub async fn wait(&mut self) {
        while !*self.0.borrow_and_update() {
            if self.0.changed().await.is_err() {
                return; // the sender is gone: nobody will run the workers any more
            }
        }
    }
}

/// How a worker is doing ([`Background::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStatus {
    /// Its state after its last unit of work.
    pub state: &'static str,
    /// Failures since it started.
    pub errors: u64,
    /// Failures in a row now (0: its last unit of work went well).
    pub errors_in_a_row: u32,
    /// Its last failure.
    pub last_error: Option<String>,
}

/// Each worker's status by name, shared by a [`Background`] and whoever reports it (the
/// counters at `/metrics`).
pub type Statuses = Arc<Mutex<BTreeMap<&'static str, WorkerStatus>>>;

/// The most a failing worker waits before it is called again.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// The background workers of one process.
#[derive(Debug)]
pub struct Background {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    status: Statuses,
}

impl Default for Background {
    fn default() -> Self {
        Background::new()
    }
}

impl Background {
    /// No workers yet.
    pub fn new() -> Background {
        Background::reporting_to(Statuses::default())
    }

    /// No workers yet; their statuses will be kept in `status`.
    pub fn reporting_to(status: Statuses) -> Background {
        Background { stop: watch::channel(false).0, tasks: JoinSet::new(), status }
    }

    /// Starts `worker`.
    pub fn spawn(&mut self, mut worker: impl Worker) {
        let mut stop = StopSignal(self.stop.subscribe());
        let status = self.status.clone();
        let name = worker.name();
        let set = move |f: &dyn Fn(&mut WorkerStatus)| {
            let mut all = status.lock().expect("worker status");
            let s = all.entry(name).or_insert_with(|| WorkerStatus {
                state: "busy",
                errors: 0,
                errors_in_a_row: 0,
                last_error: None,
            });
            f(s);
        };
        self.tasks.spawn(async move {
            let mut in_a_row = 0u32;
            while !stop.is_set() {
                let next = match worker.work(&stop).await {
                    Ok(next) => {
                        in_a_row = 0;
                        set(&|s| s.errors_in_a_row = 0);
                        next
                    }
                    Err(e) => {
                        in_a_row = in_a_row.saturating_add(1);
                        // 1 s, 2 s, 4 s, … 512 s, then 10 min.
                        let wait = Duration::from_secs(1u64 << (in_a_row - 1).min(10)).min(MAX_BACKOFF);
                        tracing::warn!("{name}: {e}; trying again in {} s", wait.as_secs());
                        let message = e.to_string();
                        set(&|s| {
                            s.errors += 1;
                            s.errors_in_a_row = in_a_row;
                            s.last_error = Some(message.clone());
                        });
                        WorkerState::Throttled(wait)
                    }
                };
                set(&|s| s.state = next.as_str());
                match next {
                    WorkerState::Busy => {}
                    WorkerState::Throttled(pause) => {
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = stop.wait() => {}
                        }
                    }
                    WorkerState::Idle => {
                        tokio::select! {
                            _ = worker.wait_for_work() => {}
                            _ = stop.wait() => {}
                        }
                    }
                    WorkerState::Done => break,
                }
            }
            set(&|s| s.state = "done");
        });
    }

    /// Each worker's status, by name.
    pub fn status(&self) -> BTreeMap<&'static str, WorkerStatus> {
        self.status.lock().expect("worker status").clone()
    }

    /// Asks every worker to stop, waits until they have, or until `deadline`, and then
    /// drops those still running. Returns how many had to be dropped.
    pub async fn stop(mut self, deadline: Duration) -> usize {
        self.stop.send_replace(true);
        let all_done = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(deadline, all_done).await.is_ok() {
            return 0;
        }
        let left = self.tasks.len();
        tracing::warn!("{left} background worker(s) did not stop within {} s; dropped", deadline.as_secs());
        self.tasks.abort_all();
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServiceError;

    /// Counts its units of work; fails the first `fails` of them; then is busy until
    /// stopped, watching the signal inside its unit.
    struct Counting {
        units: Arc<std::sync::atomic::AtomicU32>,
        fails: u32,
    }

    impl Worker for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }

        async fn work(&mut self, stop: &StopSignal) -> ServiceResult<WorkerState> {
            let n = self.units.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n < self.fails {
                return Err(ServiceError::internal("test", "failing on purpose"));
            }
            let mut stop = stop.clone();
            stop.wait().await; // a long unit of work that ends when asked
            Ok(WorkerState::Busy)
        }

        async fn wait_for_work(&mut self) {}
    }

    /// A worker that never looks at the signal; says when its unit of work has started.
    struct Deaf(Arc<tokio::sync::Notify>);

    impl Worker for Deaf {
        fn name(&self) -> &'static str {
            "deaf"
        }

        async fn work(&mut self, _: &StopSignal) -> ServiceResult<WorkerState> {
            self.0.notify_one();
            std::future::pending::<()>().await;
            Ok(WorkerState::Done)
        }

        async fn wait_for_work(&mut self) {}
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_and_stop_waits_for_the_unit_of_work() {
        let units = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut bg = Background::new();
        bg.spawn(Counting { units: units.clone(), fails: 3 });
        // Three failures: called again after 1, 2, then 4 s (time is paused: it advances only
        // when every task waits on a timer).
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(units.load(std::sync::atomic::Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(units.load(std::sync::atomic::Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(units.load(std::sync::atomic::Ordering::SeqCst), 3);
        let s = bg.status()["counting"].clone();
        assert_eq!((s.errors, s.errors_in_a_row, s.state), (3, 3, "throttled"));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(units.load(std::sync::atomic::Ordering::SeqCst), 4, "called after 4 s");
        // Now in its long unit of work: the stop ends it, nothing is dropped.
        assert_eq!(bg.stop(Duration::from_secs(10)).await, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_that_does_not_stop_is_dropped_at_the_deadline() {
        let mut bg = Background::new();
        let working = Arc::new(tokio::sync::Notify::new());
        bg.spawn(Deaf(working.clone()));
        working.notified().await;
        let started = tokio::time::Instant::now();
        assert_eq!(bg.stop(Duration::from_secs(8)).await, 1);
        assert_eq!(started.elapsed(), Duration::from_secs(8));
    }
}
