//! What an operator can see of a store: a snapshot ([`Stats`]) taken by
//! [`Store::stats`](crate::Store::stats), and the flush counters it reads.
//!
//! # Invariants
//!
//! - Nothing here is written on the read path: the flush counters are
//!   written once per flush batch, on the thread that writes it; the rest
//!   of a snapshot is gathered when it is taken, by one pass over the
//!   registry under one pin.
//! - A snapshot is not atomic across fields: each field is exact for some
//!   instant during the call.
//!
//! # Orderings
//!
//! Every counter is Relaxed: each is a statistic read on its own, and no
//! other memory is published through it.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

// std's types even under loom: these are statistics, not part of a protocol
// a model checks.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How many recent flushes the latency percentiles are taken over.
const WINDOW: usize = 1024;

/// The flush counters of one store, written by whoever writes a batch (a
/// flusher thread, or a writer's own thread with `flush_threads: 0`).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    flushes: AtomicU64,
    flushed_bytes: AtomicU64,
    flush_errors: AtomicU64,
    /// Write + sync latency of the last [`WINDOW`] batches, in nanoseconds.
    latencies: Mutex<VecDeque<u64>>,
}

impl Counters {
    /// Records one batch: written and synced in `took` (or failed).
    pub(crate) fn record(&self, ok: bool, bytes: u64, took: Duration) {
        if !ok {
            self.flush_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.flushed_bytes.fetch_add(bytes, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let mut l = lock(&self.latencies);
        if l.len() == WINDOW {
            l.pop_front();
        }
        l.push_back(nanos);
    }

    /// Fills the flush fields of `stats`.
    pub(crate) fn fill(&self, stats: &mut Stats) {
        stats.flushes = self.flushes.load(Ordering::Relaxed);
        stats.flushed_bytes = self.flushed_bytes.load(Ordering::Relaxed);
        stats.flush_errors = self.flush_errors.load(Ordering::Relaxed);
        let mut l: Vec<u64> = lock(&self.latencies).iter().copied().collect();
        l.sort_unstable();
        let at = |q: usize| {
            l.get((l.len() * q / 100).min(l.len().saturating_sub(1)))
                .map_or(Duration::ZERO, |&n| Duration::from_nanos(n))
        };
        stats.sync_p50 = at(50);
        stats.sync_p99 = at(99);
    }
}

/// A snapshot of a store, for an operator: see
/// [`Store::stats`](crate::Store::stats).
///
/// Its `Display` is one line, for logs; [`Stats::to_prometheus`] renders
/// the Prometheus text format.
///
/// ```
/// # fn main() -> shapebuf::Result<()> {
/// use shapebuf::{LogOffset, Store};
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// let mut w = store.writer("s")?;
/// w.append(LogOffset::new(1, 0), "abc")?;
/// w.commit()?;
/// w.flush()?;
/// let stats = store.stats();
/// assert_eq!(stats.live_writers, 1);
/// assert_eq!(stats.flushes, 1);
/// assert!(stats.to_string().contains("flushes=1"));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Shapes the store knows (on disk or created in this process, not
    /// removed).
    pub shapes: usize,
    /// Shapes open in memory (a writer's, or opened by a read and kept
    /// open for a while).
    pub shapes_open: usize,
    /// Shapes with a published buffer: a live writer (or one dropped
    /// without terminate, whose buffer stays readable until the next
    /// writer takes over).
    pub live_writers: usize,
    /// Shapes quarantined: their logs failed verification.
    pub quarantined: usize,
    /// Committed entries not yet durable, summed over live writers (counts
    /// of entries, not bytes: a writer's batch size is its own).
    pub entries_not_durable: u64,
    /// Bytes of entries held in memory by published segments (payloads,
    /// slots and directories).
    pub memory_bytes: u64,
    /// Bytes of retired segments not yet freed (readers may still hold
    /// them): see [`Store::retired_bytes`](crate::Store::retired_bytes).
    pub retired_bytes: u64,
    /// Flush batches written and synced since the store opened.
    pub flushes: u64,
    /// Payload bytes those batches carried.
    pub flushed_bytes: u64,
    /// Flush batches that failed (the writer was poisoned: see
    /// [`Error::WriterClosed`](crate::Error::WriterClosed)).
    pub flush_errors: u64,
    /// Median write + sync time of the last 1,024 batches.
    pub sync_p50: Duration,
    /// 99th percentile of the same.
    pub sync_p99: Duration,
    /// Log files open now in the descriptor cache.
    pub open_files: usize,
    /// The most open at once.
    pub peak_open_files: usize,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shapes={} open={} live_writers={} quarantined={} not_durable_entries={} \
             memory={}B retired={}B flushes={} flushed={}B flush_errors={} \
             sync_p50={:?} sync_p99={:?} open_files={} peak_open_files={}",
            self.shapes,
            self.shapes_open,
            self.live_writers,
            self.quarantined,
            self.entries_not_durable,
            self.memory_bytes,
            self.retired_bytes,
            self.flushes,
            self.flushed_bytes,
            self.flush_errors,
            self.sync_p50,
            self.sync_p99,
            self.open_files,
            self.peak_open_files
        )
    }
}

impl Stats {
    /// The snapshot in the Prometheus text exposition format (metric names
    /// prefixed `shapebuf_`), as served at `/metrics`.
    ///
    /// ```
    /// let text = shapebuf::Stats::default().to_prometheus();
    /// assert!(text.contains("# TYPE shapebuf_flushes_total counter\nshapebuf_flushes_total 0\n"));
    /// ```
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            out.push_str(&format!(
                "# HELP shapebuf_{name} {help}\n# TYPE shapebuf_{name} {kind}\nshapebuf_{name} {value}\n"
            ));
        };
        let g = "gauge";
        let c = "counter";
        metric(
            "shapes",
            g,
            "Shapes the store knows.",
            self.shapes.to_string(),
        );
        metric(
            "shapes_open",
            g,
            "Shapes open in memory.",
            self.shapes_open.to_string(),
        );
        metric(
            "live_writers",
            g,
            "Shapes with a live writer.",
            self.live_writers.to_string(),
        );
        metric(
            "quarantined_shapes",
            g,
            "Shapes whose logs failed verification.",
            self.quarantined.to_string(),
        );
        metric(
            "entries_not_durable",
            g,
            "Committed entries not yet durable.",
            self.entries_not_durable.to_string(),
        );
        metric(
            "memory_bytes",
            g,
            "Bytes held by published segments.",
            self.memory_bytes.to_string(),
        );
        metric(
            "retired_bytes",
            g,
            "Bytes of retired segments not yet freed.",
            self.retired_bytes.to_string(),
        );
        metric(
            "flushes_total",
            c,
            "Flush batches written and synced.",
            self.flushes.to_string(),
        );
        metric(
            "flushed_bytes_total",
            c,
            "Payload bytes flushed.",
            self.flushed_bytes.to_string(),
        );
        metric(
            "flush_errors_total",
            c,
            "Flush batches that failed.",
            self.flush_errors.to_string(),
        );
        metric(
            "sync_seconds_p50",
            g,
            "Median write+sync time of recent batches.",
            self.sync_p50.as_secs_f64().to_string(),
        );
        metric(
            "sync_seconds_p99",
            g,
            "99th percentile write+sync time of recent batches.",
            self.sync_p99.as_secs_f64().to_string(),
        );
        metric(
            "open_files",
            g,
            "Log files open now.",
            self.open_files.to_string(),
        );
        metric(
            "peak_open_files",
            g,
            "Most log files open at once.",
            self.peak_open_files.to_string(),
        );
        out
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_taken_over_the_recent_window() {
        let c = Counters::default();
        for ms in 1..=100 {
            c.record(true, 10, Duration::from_millis(ms));
        }
        c.record(false, 10, Duration::from_secs(9));
        let mut s = Stats::default();
        c.fill(&mut s);
        assert_eq!((s.flushes, s.flushed_bytes, s.flush_errors), (100, 1000, 1));
        assert_eq!(s.sync_p50, Duration::from_millis(51));
        assert_eq!(s.sync_p99, Duration::from_millis(100));
        // The window forgets old batches.
        for _ in 0..WINDOW {
            c.record(true, 0, Duration::from_micros(5));
        }
        c.fill(&mut s);
        assert_eq!(s.sync_p99, Duration::from_micros(5));
    }
}
