//! Claims on the workers' passes: one process at a time does each worker's work (scrub,
//! repair, migrate, the collector) over the one cursor all servers share.
//!
//! A claim is the worker's row in `workers` (`owner`, `owner_until`), renewed by its holder
//! before every batch. What tells a holder dead differs by backend:
//!
//! - **PostgreSQL**: a session advisory lock (`pg_try_advisory_lock` on the worker's key),
//!   taken on a connection detached from the pool and kept for the claim's life. The lock
//!   belongs to that session: a process killed (or cut from the database) loses it when
//!   the server ends the session, and another server claims at once; a process that only
//!   stalls keeps it. No host name or pid is trusted, so containers that share a host name
//!   cannot see a live holder as dead.
//! - **SQLite** (one machine, the server and `nuage admin` on one file): the row alone, taken
//!   by compare and set; a holder is dead when its claim ran out or `is_gone` says so (the
//!   caller checks the pid of a holder on this machine).

use sqlx::{AnyConnection, Row};

use crate::sql::{Backend, now_ms};
use crate::{Meta, Result};

/// The first key of nuage's worker locks (`pg_try_advisory_lock(int, int)`; a key space of
/// its own, apart from the one-key locks of `sql.rs`): "nuag".
const LOCK_SPACE: i32 = 0x6e75_6167;

/// The second key: a worker's name, hashed.
fn lock_key(worker: &str) -> i32 {
    let h = blake3::hash(worker.as_bytes());
    i32::from_le_bytes(h.as_bytes()[..4].try_into().expect("4 bytes"))
}

/// One process's claim on a worker's pass (see the module doc). Give it back with
/// [`Meta::release_claim`]; dropped, it ends with its session (PostgreSQL) or runs out
/// (SQLite).
pub struct Claim {
    worker: String,
    owner: String,
    /// PostgreSQL: the session that holds the worker's advisory lock.
    session: Option<AnyConnection>,
    /// The process that held it before, when it did not give it back and is not known to
    /// be dead, until the holder says it waited out what that one may have in flight
    /// ([`Claim::settle`]).
    taken_from: Option<String>,
    /// When the last check that found it held began (the claim, or a renewal), by the
    /// monotonic clock and by the wall clock (Unix ms).
    checked_at: std::time::Instant,
    checked_ms: i64,
}

/// How long a renewal's check may take on PostgreSQL before the session counts as lost.
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claim").field("worker", &self.worker).field("owner", &self.owner).finish()
    }
}

impl Claim {
    /// Who holds it.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The holder before, when it did not give the claim back and is not known to be dead:
    /// on PostgreSQL, one whose session ended (it died, or was cut off from the database
    /// while it lived); on SQLite, one whose claim ran out (it may only have stalled). It
    /// may still have requests of its own in flight.
    pub fn taken_from(&self) -> Option<&str> {
        self.taken_from.as_deref()
    }

    /// Says that what the holder before may have had in flight is over: from now on (and
    /// once given back) the claim no longer names it. Until then, giving the claim back
    /// keeps the one before recorded, so that the next claimant waits for it too.
    pub fn settle(&mut self) {
        self.taken_from = None;
    }

    /// When the last check that found the claim held began (when it was taken, or the last
    /// renewal that held): the holder was the only one from then on, until the claim runs
    /// out (SQLite) or its session is seen gone (PostgreSQL).
    pub fn checked_at(&self) -> std::time::Instant {
        self.checked_at
    }

    /// [`Claim::checked_at`] by the wall clock (Unix ms): a machine that was suspended sees
    /// little time gone on the monotonic clock, so a holder that must act only shortly after
    /// a check reads both.
    pub fn checked_ms(&self) -> i64 {
        self.checked_ms
    }
}

/// The instant a check begins, by both clocks.
fn check_begins() -> (std::time::Instant, i64) {
    (std::time::Instant::now(), now_ms())
}

impl Meta {
    /// Claims `worker`'s pass for `owner` until `until` (Unix ms), if no live process holds
    /// it; `None` if one does. `is_gone(other)` (SQLite only) says whether the process that
    /// holds it is known to be dead.
    pub async fn claim_worker(
        &self,
        worker: &str,
        owner: &str,
        until: i64,
        is_gone: impl Fn(&str) -> bool,
    ) -> Result<Option<Claim>> {
        let session = match self.backend() {
            Backend::Postgres => {
                let mut session = self.pool.acquire().await?.detach();
                // The lock lives as long as the database sees the session alive: have it probe
                // a silent client after 30 s, every 10 s, 3 times (the kernel's default waits
                // two hours before the first probe), so that the claim of a machine gone dark
                // is free within about a minute. A renewal may not hang either.
                sqlx::query(
                    "SELECT set_config('tcp_keepalives_idle', '30', false), \
                     set_config('tcp_keepalives_interval', '10', false), \
                     set_config('tcp_keepalives_count', '3', false), \
                     set_config('statement_timeout', '30s', false)",
                )
                .execute(&mut session)
                .await?;
                // Probes are not sent while data waits unacknowledged: a time-out on that too
                // (PostgreSQL 12 and later; an older one keeps the kernel's).
                let _ = sqlx::query("SELECT set_config('tcp_user_timeout', '60000', false)")
                    .execute(&mut session)
                    .await;
                let checked = check_begins();
                let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                    .bind(LOCK_SPACE)
                    .bind(lock_key(worker))
                    .fetch_one(&mut session)
                    .await?;
                if !held {
                    return Ok(None); // a live session holds it (the session closes here)
                }
                Some((session, checked))
            }
            Backend::Sqlite => None,
        };
        let _w = self.write_guard().await;
        let now = now_ms();
        sqlx::query("INSERT INTO workers (name, updated_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(worker)
            .bind(now)
            .execute(&self.pool)
            .await?;
        if let Some((session, (checked_at, checked_ms))) = session {
            // The lock says no live process holds it: the row is only a record of who does,
            // and of who did without giving it back.
            let before: Option<String> = sqlx::query_scalar("SELECT owner FROM workers WHERE name = $1")
                .bind(worker)
                .fetch_one(&self.pool)
                .await?;
            let taken_from = before.filter(|o| o != owner);
            sqlx::query("UPDATE workers SET owner = $1, owner_until = $2 WHERE name = $3")
                .bind(owner)
                .bind(until)
                .bind(worker)
                .execute(&self.pool)
                .await?;
            return Ok(Some(Claim {
                worker: worker.to_owned(),
                owner: owner.to_owned(),
                session: Some(session),
                taken_from,
                checked_at,
                checked_ms,
            }));
        }
        let row = sqlx::query("SELECT owner, owner_until FROM workers WHERE name = $1")
            .bind(worker)
            .fetch_one(&self.pool)
            .await?;
        let (current, current_until): (Option<String>, Option<i64>) = (row.try_get(0)?, row.try_get(1)?);
        let free = match &current {
            None => true,
            Some(o) if o == owner => true,
            Some(o) => current_until.is_none_or(|u| u < now) || is_gone(o),
        };
        if !free {
            return Ok(None);
        }
        // Compare and set: another claimant that read the same row loses.
        let (checked_at, checked_ms) = check_begins();
        let changed = sqlx::query(
            "UPDATE workers SET owner = $1, owner_until = $2 WHERE name = $3 \
             AND COALESCE(owner, '') = $4 AND COALESCE(owner_until, 0) = $5",
        )
        .bind(owner)
        .bind(until)
        .bind(worker)
        .bind(current.clone().unwrap_or_default())
        .bind(current_until.unwrap_or(0))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok((changed == 1).then(|| Claim {
            worker: worker.to_owned(),
            owner: owner.to_owned(),
            session: None,
            // A holder of this machine whose process is gone has nothing in flight.
            taken_from: current.filter(|o| o != owner && !is_gone(o)),
            checked_at,
            checked_ms,
        }))
    }

    /// Renews `claim` until `until`: whether it still holds. A holder that lost its claim
    /// (its session ended, or on SQLite another process took over after it ran out) stops.
    pub async fn renew_claim(&self, claim: &mut Claim, until: i64) -> Result<bool> {
        if let Some(session) = claim.session.as_mut() {
            let checked = check_begins();
            let alive =
                tokio::time::timeout(CHECK_TIMEOUT, sqlx::query("SELECT 1").execute(&mut *session)).await;
            if !matches!(alive, Ok(Ok(_))) {
                claim.session = None; // the lock went with the session (or will, unanswered)
                return Ok(false);
            }
            (claim.checked_at, claim.checked_ms) = checked;
            let _w = self.write_guard().await;
            sqlx::query("UPDATE workers SET owner = $1, owner_until = $2 WHERE name = $3")
                .bind(&claim.owner)
                .bind(until)
                .bind(&claim.worker)
                .execute(&self.pool)
                .await?;
            return Ok(true);
        }
        if self.backend() == Backend::Postgres {
            return Ok(false); // lost before
        }
        let _w = self.write_guard().await;
        let checked = check_begins();
        let changed = sqlx::query("UPDATE workers SET owner_until = $1 WHERE name = $2 AND owner = $3")
            .bind(until)
            .bind(&claim.worker)
            .bind(&claim.owner)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if changed == 1 {
            (claim.checked_at, claim.checked_ms) = checked;
        }
        Ok(changed == 1)
    }

    /// Gives `claim` back: another process may claim the worker at once. A claim not
    /// [settled](Claim::settle) names the holder before it again (run out), so that the
    /// next claimant waits for that one as this one had to.
    pub async fn release_claim(&self, mut claim: Claim) -> Result<()> {
        let _w = self.write_guard().await;
        let (owner, until) = match claim.taken_from.take() {
            Some(before) => (Some(before), Some(0i64)),
            None => (None, None),
        };
        sqlx::query("UPDATE workers SET owner = $3, owner_until = $4 WHERE name = $1 AND owner = $2")
            .bind(&claim.worker)
            .bind(&claim.owner)
            .bind(owner)
            .bind(until)
            .execute(&self.pool)
            .await?;
        if let Some(mut session) = claim.session.take() {
            // Closing the session would free the lock too; unlocking first says so at once.
            let _ = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                .bind(LOCK_SPACE)
                .bind(lock_key(&claim.worker))
                .execute(&mut session)
                .await;
        }
        Ok(())
    }

    /// Who holds `worker`'s claim, and until when (none: nobody).
    pub async fn claim_holder(&self, worker: &str) -> Result<Option<(String, i64)>> {
        let row = sqlx::query("SELECT owner, owner_until FROM workers WHERE name = $1")
            .bind(worker)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let (owner, until): (Option<String>, Option<i64>) = (row.try_get(0)?, row.try_get(1)?);
        // An owner until 0 is the record of a holder before, left for the next claimant
        // (`release_claim` of a claim not settled): nobody holds it.
        Ok(owner.filter(|_| until != Some(0)).map(|o| (o, until.unwrap_or(0))))
    }
}
