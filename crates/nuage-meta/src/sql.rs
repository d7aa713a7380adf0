//! SQL pieces that every part of the store shares: which database it is, the clock, parameter
//! lists, error tests, and the locks and chunk leases that several transactions take.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::exec::{Arg, Cols, Db, args};

use crate::{Error, Result};

/// Which database is behind a [`Meta`](crate::Meta).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default, a file in the data dir (WAL).
    Sqlite,
    /// A shared PostgreSQL server.
    Postgres,
}

/// Now, in Unix milliseconds (the time unit of every column).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Whether an error is a unique-constraint violation (SQLite 2067/1555, PostgreSQL 23505).
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("2067" | "1555" | "23505")))
}

pub(crate) fn array32(v: Vec<u8>, what: &str) -> Result<[u8; 32]> {
    v.try_into().map_err(|_| Error::Corrupt(format!("{what} is not 32 bytes")))
}

/// Locks the row of session `id` (PostgreSQL; SQLite's writers are serialized), if it is one.
pub(crate) async fn lock_session(conn: &mut impl Db, backend: Backend, id: &str) -> Result<()> {
    if backend == Backend::Postgres {
        conn.execute("SELECT id FROM upload_sessions WHERE id = $1 FOR UPDATE", args![id]).await?;
    }
    Ok(())
}
/// The advisory lock (PostgreSQL) that leases take shared and the collector exclusive.
pub(crate) const GC_LOCK: i64 = 0x6e75_6167_655f_6763; // "nuage_gc"

/// Bound parameters per statement, far below both backends' limits.
pub(crate) const PER_STATEMENT: usize = 300;

pub(crate) fn address(bytes: Vec<u8>) -> Result<[u8; 32]> {
    bytes.try_into().map_err(|_| Error::Corrupt("a chunk address that is not 32 bytes".into()))
}

/// `$first, $first+1, …` for `n` parameters.
pub(crate) fn marks(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// Of `addresses`, those `sql` (with `{in}` for the list, and `$1` bound to `first` when
/// given) selects.
pub(crate) async fn select_in(
    conn: &mut impl Db,
    sql: &str,
    first: Option<&str>,
    addresses: &[[u8; 32]],
) -> Result<HashSet<[u8; 32]>> {
    let mut found = HashSet::new();
    let offset = usize::from(first.is_some()) + 1;
    for batch in addresses.chunks(PER_STATEMENT) {
        let text = sql.replace("{in}", &marks(offset, batch.len()));
        let mut values = Vec::with_capacity(batch.len() + 1);
        if let Some(v) = first {
            values.push(Arg::from(v));
        }
        values.extend(batch.iter().map(|a| Arg::from(a.to_vec())));
        for row in conn.fetch_all(&text, values).await? {
            found.insert(address(row.get(0)?)?);
        }
    }
    Ok(found)
}

/// Takes the collector's lock: shared for writers, exclusive for the collector. A no-op on
/// SQLite, whose writers are serialized.
pub(crate) async fn gc_lock(conn: &mut impl Db, backend: Backend, exclusive: bool) -> Result<()> {
    if backend == Backend::Postgres {
        let f = if exclusive { "pg_advisory_xact_lock" } else { "pg_advisory_xact_lock_shared" };
        conn.execute(&format!("SELECT 1 FROM (SELECT {f}($1)) AS l"), args![GC_LOCK]).await?;
    }
    Ok(())
}

/// Of `addresses`, those being deleted now, read inside a transaction that holds the lock.
pub(crate) async fn deleting_on(conn: &mut impl Db, addresses: &[[u8; 32]]) -> Result<Vec<[u8; 32]>> {
    let found =
        select_in(conn, "SELECT address FROM chunk_deletions WHERE address IN ({in})", None, addresses)
            .await?;
    Ok(addresses.iter().filter(|a| found.contains(*a)).copied().collect())
}

/// Whether every one of `addresses` is still leased to `holder` (a row of its own in
/// `chunk_leases`, or a declaration of the session `holder`), read under the collector's
/// lock inside the commit that will reference them. The collector drops expired leases
/// before it starts any deletion, so a lease that still exists means no deletion of that
/// chunk has started, whatever the clocks of the machines say.
pub(crate) async fn still_leased_on(
    conn: &mut impl Db,
    backend: Backend,
    holder: &str,
    addresses: &[[u8; 32]],
) -> Result<bool> {
    gc_lock(conn, backend, false).await?;
    let holder_id = Some(holder);
    let leased = select_in(
        conn,
        "SELECT address FROM chunk_leases WHERE holder = $1 AND address IN ({in})",
        holder_id,
        addresses,
    )
    .await?;
    let declared = select_in(
        conn,
        "SELECT address FROM upload_session_chunks WHERE session_id = $1 AND address IN ({in})",
        holder_id,
        addresses,
    )
    .await?;
    Ok(addresses.iter().all(|a| leased.contains(a) || declared.contains(a)))
}

/// Drops the leases of `holder` (inside the commit that references its chunks): its rows
/// in `chunk_leases`, or, for a smart upload's session id, the chunks the session declared
/// (a replayed commit does not need them: it answers from the idempotency record).
pub(crate) async fn release_on(conn: &mut impl Db, holder: &str) -> Result<()> {
    conn.execute("DELETE FROM chunk_leases WHERE holder = $1", args![holder]).await?;
    conn.execute("DELETE FROM quota_holds WHERE holder = $1", args![holder]).await?;
    conn.execute("DELETE FROM upload_session_chunks WHERE session_id = $1", args![holder]).await?;
    Ok(())
}

/// The prefix of a multipart upload's id, which is also its lease holder's name.
pub const MULTIPART_PREFIX: &str = "mp_";

/// Drops the leases past their expiry (`$1`, now), but those of a multipart upload that is
/// still live: they last as long as it does (its parts keep it alive), so that a part
/// stored need not touch the leases of every part before it.
pub(crate) const DROP_EXPIRED_LEASES: &str = "DELETE FROM chunk_leases WHERE expires_at <= $1 \
     AND holder NOT IN (SELECT id FROM multipart_uploads WHERE expires_at > $1)";

/// Inside a completion's transaction: deletes the upload `holder` and its parts, refused
/// with [`Error::MultipartNotFound`] when it is gone (completed or aborted meanwhile, or
/// expired): the one statement that makes completion and abort exclusive.
pub(crate) async fn consume_multipart_on(conn: &mut impl Db, holder: &str) -> Result<()> {
    let gone = conn
        .execute("DELETE FROM multipart_uploads WHERE id = $1 AND expires_at > $2", args![holder, now_ms()])
        .await?;
    if gone == 0 {
        return Err(Error::MultipartNotFound);
    }
    conn.execute("DELETE FROM multipart_parts WHERE upload_id = $1", args![holder]).await?;
    Ok(())
}
