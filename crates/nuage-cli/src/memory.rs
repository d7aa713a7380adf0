//! How the process uses glibc's allocator: two arenas, and free memory given back to the
//! system now and then.
//!
//! By default glibc gives each thread that allocates an arena of its own, up to eight per
//! core; a chunk freed on one thread is reused only by the threads of its arena, so under
//! 32 concurrent uploads (64 pipeline threads, see `nuage_core::pipeline`) every arena grew
//! to its own high-water mark: a peak of 265–330 MiB where 190 MiB were live, and 200–300
//! MiB kept when idle. With two arenas the peak is 225–235 MiB and uploads are no slower
//! (bench/s3.sh; figures in docs/benchmarks.md). glibc also returns to the system only the
//! free top of each heap; `malloc_trim` returns every free page, every [`EVERY`] while no
//! upload holds chunks, on a blocking thread. jemalloc and mimalloc were tried instead: their peaks under the same
//! load were 310–320 and 850–910 MiB.

use std::time::Duration;

/// Between two trims.
pub const EVERY: Duration = Duration::from_secs(10);

/// Limits the allocator to two arenas, unless `MALLOC_ARENA_MAX` (or `GLIBC_TUNABLES`'
/// `glibc.malloc.arena_max`) says otherwise (a no-op where the allocator is not glibc's).
/// Called before any other thread is started.
#[allow(unsafe_code)] // the one call below, into glibc
pub fn two_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tuned = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"));
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() && !tuned {
            // SAFETY: mallopt has no precondition; no other thread allocates yet.
            unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
        }
    }
}

/// Starts the trimming task on the current runtime (a no-op where the allocator is not
/// glibc's): every [`EVERY`], unless `busy` says uploads hold chunks (trimming then would
/// stall their allocations while it walks the arenas, for pages they take again at once; a
/// server that never pauses its uploads is never trimmed, and keeps what they use).
#[allow(unsafe_code)] // the one call below, into glibc
pub fn give_back_now_and_then(busy: impl Fn() -> bool + Send + 'static) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if busy() {
                continue;
            }
            // SAFETY: malloc_trim takes the allocator's own locks; it has no precondition.
            let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
        }
    });
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = busy;
}
