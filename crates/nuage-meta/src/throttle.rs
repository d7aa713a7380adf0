//! Password attempts per subject (a share link, an account's login), kept in the database so
//! that every server of a deployment counts the same attempts.
//!
//! An attempt is counted as a failure *before* its password is checked
//! ([`Meta::begin_attempt`]), and forgiven when the password was right
//! ([`Meta::end_attempt`]): guesses sent at once cannot all pass a gate read before the slow
//! check. At most [`MAX_IN_FLIGHT`] attempts of one subject are checked at once.

use sqlx::Row;

use crate::sql::{Backend, now_ms};
use crate::{Meta, Result};

/// Failures in a row before attempts are spaced out.
pub const FREE_ATTEMPTS: i64 = 5;
/// Attempts of one subject checked at once.
pub const MAX_IN_FLIGHT: i64 = 2;
/// An attempt not ended after this long (its server died) no longer counts as in flight.
const IN_FLIGHT_MS: i64 = 30_000;

/// Whether a password attempt may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Check the password, then call [`Meta::end_attempt`].
    Go,
    /// Refused: try again after this many seconds.
    Wait(u64),
}

/// The wait after `failures` failures in a row: none up to [`FREE_ATTEMPTS`], then 5 s,
/// doubling up to 5 min.
fn delay_ms(failures: i64) -> i64 {
    if failures < FREE_ATTEMPTS {
        return 0;
    }
    let doublings = (failures - FREE_ATTEMPTS).min(6);
    (5_000i64 << doublings).min(300_000)
}

impl Meta {
    /// Counts one password attempt on `subject` as a failure before the password is checked,
    /// or refuses it: while the subject waits out its failures, or while
    /// [`MAX_IN_FLIGHT`] of its attempts are being checked.
    pub async fn begin_attempt(&self, subject: &str) -> Result<Attempt> {
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO password_attempts (subject, failures, in_flight, blocked_until, updated_at) \
             VALUES ($1, 0, 0, 0, $2) ON CONFLICT (subject) DO NOTHING",
        )
        .bind(subject)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let lock = if self.backend() == Backend::Postgres { " FOR UPDATE" } else { "" };
        let row = sqlx::query(&format!(
            "SELECT failures, in_flight, blocked_until, updated_at FROM password_attempts WHERE subject = $1{lock}"
        ))
        .bind(subject)
        .fetch_one(&mut *tx)
        .await?;
        let (failures, mut in_flight, blocked_until, updated_at): (i64, i64, i64, i64) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
        if updated_at < now - IN_FLIGHT_MS {
            in_flight = 0;
        }
        if blocked_until > now {
            return Ok(Attempt::Wait(((blocked_until - now + 999) / 1000) as u64));
        }
        if in_flight >= MAX_IN_FLIGHT {
            return Ok(Attempt::Wait(1));
        }
        let failures = failures + 1;
        let blocked_until = match delay_ms(failures) {
            0 => 0,
            d => now + d,
        };
        sqlx::query(
            "UPDATE password_attempts SET failures = $1, in_flight = $2, blocked_until = $3, updated_at = $4 \
             WHERE subject = $5",
        )
        .bind(failures)
        .bind(in_flight + 1)
        .bind(blocked_until)
        .bind(now)
        .bind(subject)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Attempt::Go)
    }

    /// Ends an attempt [`Meta::begin_attempt`] let through; a right password forgives the
    /// subject's failures.
    pub async fn end_attempt(&self, subject: &str, succeeded: bool) -> Result<()> {
        let _w = self.write_guard().await;
        let sql = if succeeded {
            "UPDATE password_attempts SET in_flight = CASE WHEN in_flight > 0 THEN in_flight - 1 ELSE 0 END, \
             failures = 0, blocked_until = 0, updated_at = $2 WHERE subject = $1"
        } else {
            "UPDATE password_attempts SET in_flight = CASE WHEN in_flight > 0 THEN in_flight - 1 ELSE 0 END, \
             updated_at = $2 WHERE subject = $1"
        };
        sqlx::query(sql).bind(subject).bind(now_ms()).execute(&self.pool).await?;
        Ok(())
    }

    /// Forgets subjects untouched since `before` that wait for nothing (housekeeping).
    pub async fn drop_idle_attempts(&self, before: i64) -> Result<u64> {
        let _w = self.write_guard().await;
        let done = sqlx::query("DELETE FROM password_attempts WHERE updated_at < $1 AND blocked_until < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
