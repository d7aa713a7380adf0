//! Records every request reads and that seldom change, kept briefly in memory: a bucket by
//! its name, an access key by its id, an account's convergence secret. Each is one query
//! less per request (issue 19: a 4 KiB PUT read five records before its commit, and each
//! query through sqlx's SQLite driver costs two thread hand-offs).
//!
//! What this process changes it forgets at once ([`Recent::forget`]), so a server never
//! serves its own stale record. Another server's change (or `nuage admin`'s) is seen within
//! [`FRESH_FOR`]: a bucket deleted or its versioning changed there, a key revoked there.
//! Writes read what matters again in their transaction (the bucket still exists, how many
//! versions it keeps, the quota), so a stale bucket can delay a refusal, never let a write
//! through nor prune a version the bucket now keeps.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a record read from the database is used before it is read again.
pub const FRESH_FOR: Duration = Duration::from_secs(2);

/// Records kept at most; past it the cache starts over (a bound on memory, not an LRU:
/// the records are small and a miss costs one query).
const MAX_RECORDS: usize = 10_000;

/// Records by key, each until `ttl` after it was read (or for good, for records that never
/// change).
#[derive(Debug)]
pub(crate) struct Recent<K, V> {
    ttl: Option<Duration>,
    inner: Mutex<Inner<K, V>>,
}

#[derive(Debug)]
struct Inner<K, V> {
    records: HashMap<K, (Instant, V)>,
    /// Bumped by every forget: a read that started before one does not keep its record.
    generation: u64,
}

impl<K: Hash + Eq, V: Clone> Recent<K, V> {
    pub(crate) fn new(ttl: Option<Duration>) -> Self {
        Recent { ttl, inner: Mutex::new(Inner { records: HashMap::new(), generation: 0 }) }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The record of `key`, if it is fresh, and else the generation to [`Recent::keep`] a
    /// new read under.
    pub(crate) fn get(&self, key: &K) -> Result<V, u64> {
        let inner = self.inner();
        match inner.records.get(key) {
            Some((at, v)) if self.ttl.is_none_or(|ttl| at.elapsed() < ttl) => Ok(v.clone()),
            _ => Err(inner.generation),
        }
    }

    /// Keeps `value`, read from the database after [`Recent::get`] answered `generation`,
    /// unless something was forgotten since (the read may predate that change).
    pub(crate) fn keep(&self, generation: u64, key: K, value: V) {
        let mut inner = self.inner();
        if inner.generation != generation {
            return;
        }
        if inner.records.len() >= MAX_RECORDS {
            inner.records.clear();
        }
        inner.records.insert(key, (Instant::now(), value));
    }

    /// Forgets the records `stale` picks (this process changed them).
    pub(crate) fn forget(&self, stale: impl Fn(&K) -> bool) {
        let mut inner = self.inner();
        inner.generation += 1;
        inner.records.retain(|k, _| !stale(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_kept_until_forgotten_and_a_read_older_than_a_forget_is_not_kept() {
        let r: Recent<u32, &str> = Recent::new(None);
        let g = r.get(&1).unwrap_err();
        r.keep(g, 1, "one");
        assert_eq!(r.get(&1), Ok("one"));
        let g = r.get(&2).unwrap_err();
        r.forget(|k| *k == 1);
        assert!(r.get(&1).is_err());
        r.keep(g, 2, "two"); // read before the forget: not kept
        assert!(r.get(&2).is_err());
    }

    #[test]
    fn a_record_goes_stale_after_its_time() {
        let r: Recent<u32, u32> = Recent::new(Some(Duration::ZERO));
        let g = r.get(&1).unwrap_err();
        r.keep(g, 1, 1);
        assert!(r.get(&1).is_err(), "a zero lifetime keeps nothing fresh");
    }
}
