//! Counters exposed at `/metrics` in the Prometheus text format. A handful of atomics and
//! one small map: no metrics library is needed for this much.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Plaintext bytes received in object bodies.
    pub bytes_in: AtomicU64,
    /// Plaintext bytes sent in object bodies.
    pub bytes_out: AtomicU64,
    /// Versions committed by PUT.
    pub versions_committed: AtomicU64,
    /// Chunks newly written to at least one provider.
    pub chunks_written: AtomicU64,
    /// Chunks that were already stored (deduplicated).
    pub chunks_deduplicated: AtomicU64,
    /// Stored bytes written to providers, summed over replicas.
    pub stored_bytes_written: AtomicU64,
    /// Uploads that ended without a version (error, disconnect, quota).
    pub uploads_aborted: AtomicU64,
    /// Uploads that waited for the collector to finish deleting one of their chunks.
    pub deletion_waits: AtomicU64,
    /// Copies the index had as stored that a read found missing (recorded for repair).
    pub read_fallbacks_missing: AtomicU64,
    /// Copies the index had as stored that a read found corrupt (recorded for repair).
    pub read_fallbacks_corrupt: AtomicU64,
    /// The scrub worker's counters.
    pub scrub: WorkerCounters,
    /// The repair worker's counters.
    pub repair: WorkerCounters,
    /// The garbage collector's counters.
    pub gc: WorkerCounters,
    /// The drain's counters.
    pub migrate: WorkerCounters,
    /// How each background worker of this process is doing.
    pub background: crate::background::Statuses,
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    /// The counters of one worker.
    pub fn worker(&self, kind: Kind) -> &WorkerCounters {
        match kind {
            Kind::Scrub => &self.scrub,
            Kind::Repair => &self.repair,
            Kind::Gc => &self.gc,
            Kind::Migrate => &self.migrate,
        }
    }

    /// Counts one answered request.
    pub fn request(&self, method: &str, status: u16) {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((method.to_owned(), status)).or_insert(0) += 1;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# TYPE nuage_http_requests_total counter\n");
        for ((method, status), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "nuage_http_requests_total{{method=\"{method}\",status=\"{status}\"}} {n}");
        }
        for (name, help, c) in [
            (
                "nuage_object_bytes_received_total",
                "Plaintext bytes received in object bodies",
                &self.bytes_in,
            ),
            ("nuage_object_bytes_sent_total", "Plaintext bytes sent in object bodies", &self.bytes_out),
            ("nuage_versions_committed_total", "Versions committed by PUT", &self.versions_committed),
            ("nuage_chunks_written_total", "Chunks newly written to providers", &self.chunks_written),
            ("nuage_chunks_deduplicated_total", "Chunks already stored", &self.chunks_deduplicated),
            (
                "nuage_stored_bytes_written_total",
                "Stored bytes written, over replicas",
                &self.stored_bytes_written,
            ),
            ("nuage_uploads_aborted_total", "Uploads that made no version", &self.uploads_aborted),
            (
                "nuage_read_copies_missing_total",
                "Copies found missing when read (the read used another copy)",
                &self.read_fallbacks_missing,
            ),
            (
                "nuage_read_copies_corrupt_total",
                "Copies found corrupt when read (the read used another copy)",
                &self.read_fallbacks_corrupt,
            ),
            (
                "nuage_gc_deletion_waits_total",
                "Uploads that waited for a deletion of one of their chunks to end",
                &self.deletion_waits,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        for (name, help, field) in [
            ("nuage_worker_chunks_total", "Chunks the background workers went through", 0),
            ("nuage_worker_bytes_total", "Stored bytes the workers read (gc: deleted)", 1),
            (
                "nuage_worker_found_total",
                "Bad placements found (scrub), copies written (repair), chunks deleted (gc), copies moved (migrate)",
                2,
            ),
            ("nuage_worker_passes_total", "Complete passes", 3),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for kind in Kind::ALL {
                let w = self.worker(kind);
                let c = [&w.chunks, &w.bytes, &w.found, &w.passes][field];
                let _ = writeln!(out, "{name}{{worker=\"{}\"}} {}", kind.name(), c.load(Ordering::Relaxed));
            }
        }
        let _ = writeln!(
            out,
            "# HELP nuage_worker_pace The pace in effect, bytes per second (gc: deletions per second; 0: unpaced)\n\
             # TYPE nuage_worker_pace gauge"
        );
        for kind in Kind::ALL {
            let pace = self.worker(kind).pace.load(Ordering::Relaxed);
            let _ = writeln!(out, "nuage_worker_pace{{worker=\"{}\"}} {pace}", kind.name());
        }
        let background = self.background.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let _ = writeln!(
            out,
            "# HELP nuage_background_state The state of each background task of this process after its last unit of work\n\
             # TYPE nuage_background_state gauge"
        );
        for (name, s) in &background {
            for state in ["busy", "throttled", "idle", "done"] {
                let on = u8::from(s.state == state);
                let _ = writeln!(out, "nuage_background_state{{task=\"{name}\",state=\"{state}\"}} {on}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP nuage_background_errors_total Failed units of work of each background task\n\
             # TYPE nuage_background_errors_total counter"
        );
        for (name, s) in &background {
            let _ = writeln!(out, "nuage_background_errors_total{{task=\"{name}\"}} {}", s.errors);
        }
        let _ = writeln!(
            out,
            "# HELP nuage_background_errors_in_a_row Failures in a row now (0: the last unit of work went well)\n\
             # TYPE nuage_background_errors_in_a_row gauge"
        );
        for (name, s) in &background {
            let _ =
                writeln!(out, "nuage_background_errors_in_a_row{{task=\"{name}\"}} {}", s.errors_in_a_row);
        }
        out
    }
}

/// Which worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Verify every placement.
    Scrub,
    /// Restore every chunk to its policy.
    Repair,
    /// Delete chunks nothing references.
    Gc,
    /// Move every chunk off the providers being drained.
    Migrate,
}

impl Kind {
    /// Every worker.
    pub const ALL: [Kind; 4] = [Kind::Scrub, Kind::Repair, Kind::Gc, Kind::Migrate];

    /// The worker of this name ([`Kind::name`]).
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Its name, in the `workers` table and at `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Scrub => "scrub",
            Kind::Repair => "repair",
            Kind::Gc => "gc",
            Kind::Migrate => "migrate",
        }
    }
}

/// Counters of one worker, for `/metrics`.
#[derive(Debug, Default)]
pub struct WorkerCounters {
    /// Chunks done.
    pub chunks: AtomicU64,
    /// Stored bytes read.
    pub bytes: AtomicU64,
    /// Problems found (scrub) or fixed (repair).
    pub found: AtomicU64,
    /// Complete passes.
    pub passes: AtomicU64,
    /// The pace in effect, bytes per second (deletions per second for the collector; 0:
    /// unpaced): the configured one, or the one set at run time. Running passes read it.
    pub pace: std::sync::Arc<AtomicU64>,
}
