//! Loom models of shapebuf's concurrency protocols (the models are in
//! `tests/`, one protocol per file; docs/protocol.md lists them).
//!
//! Run with
//!
//! ```text
//! RUSTFLAGS="--cfg loom --cfg crossbeam_loom -C debug-assertions" \
//!     CARGO_TARGET_DIR=target/loom cargo test -p loom-tests --release
//! ```
//!
//! Outside `cfg(loom)` this crate is empty. Every model states its
//! preemption bound in code ([`model`]); `LOOM_MAX_PREEMPTIONS` overrides it.
//! Each model has a failing twin: the same model with a
//! [`Fault`](shapebuf::loom_api::Fault) injected into the shipping code,
//! which must make loom fail with a stated message.

#![cfg(loom)]

// Like tokio: loom models rely on debug assertions (the shipping code's
// `debug_assert!`s are part of what they check).
#[cfg(not(debug_assertions))]
compile_error!("build the loom models with `-C debug-assertions` (see the crate docs)");

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use shapebuf::loom_api::{Fault, MemDisk, Shape, Writer};
use shapebuf::{Entry, LogOffset, ReadOutcome};

/// Runs `f` under loom with at most `bound` preemptions (or
/// `LOOM_MAX_PREEMPTIONS`), and prints how many executions loom explored
/// and how long it took; a failing twin prints the execution that failed.
pub fn model<F>(name: &str, bound: usize, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(bound);
    }
    let bound = builder.preemption_bound;
    let executions = Arc::new(AtomicUsize::new(0));
    let report = Report {
        name: name.to_owned(),
        bound,
        executions: Arc::clone(&executions),
        start: Instant::now(),
    };
    builder.check(move || {
        executions.fetch_add(1, Ordering::Relaxed);
        f();
    });
    drop(report);
}

/// [`model`], handing `f` the [`Outcomes`] that every execution records
/// into; returns them for the test to check.
pub fn model_outcomes<F>(name: &str, bound: usize, f: F) -> Outcomes
where
    F: Fn(&Outcomes) + Sync + Send + 'static,
{
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model(name, bound, move || f(&seen));
    outcomes
}

/// Prints the model's statistics when it ends, normally or by a panic (a
/// failing twin).
struct Report {
    name: String,
    bound: Option<usize>,
    executions: Arc<AtomicUsize>,
    start: Instant,
}

impl Drop for Report {
    fn drop(&mut self) {
        let outcome = if std::thread::panicking() {
            "FAILED at execution"
        } else {
            "passed,"
        };
        eprintln!(
            "loom model {}: {} {} executions (preemption bound {:?}) in {:.2?}",
            self.name,
            outcome,
            self.executions.load(Ordering::Relaxed),
            self.bound,
            self.start.elapsed()
        );
    }
}

/// The distinct outcomes a model's reads had over all its executions.
///
/// Loom's exploration is not complete even within its preemption bound
/// (its DPOR compares an access with the last access to the object only;
/// see tokio-rs/loom#166 and #392), so each model also asserts that its
/// reads saw every outcome the protocol allows: a model whose reader only
/// ever ran before (or after) the writer would pass vacuously.
#[derive(Clone, Default)]
pub struct Outcomes(Arc<Mutex<BTreeSet<String>>>);

impl Outcomes {
    /// Records one read: how many entries, how many from disk, and whether
    /// it found the shape dead or raced a segment swap.
    pub fn read(&self, out: &ReadOutcome) {
        let mut o = format!("{} entries, {} from disk", out.entries.len(), out.from_disk);
        if out.dead {
            o.push_str(", dead");
        }
        if out.raced {
            o.push_str(", raced");
        }
        self.record(o);
    }

    /// Records an outcome.
    pub fn record(&self, outcome: String) {
        self.0.lock().expect("outcomes").insert(outcome);
    }

    /// Prints the outcomes and asserts that each of `expected` was seen.
    pub fn assert_seen(&self, name: &str, expected: &[&str]) {
        let seen = self.0.lock().expect("outcomes");
        eprintln!("loom model {name}: outcomes {seen:?}");
        for e in expected {
            assert!(
                seen.contains(*e),
                "{name}: outcome {e:?} never explored; saw {seen:?}"
            );
        }
    }
}

/// A fresh shape, an empty disk, and the shape's first writer: it has
/// installed a one-slot segment at the start of the log, appended the
/// `committed` entries and committed them as one transaction (nothing if
/// there are none). Done on the model's main thread, before any other
/// thread starts.
pub fn shape_with_writer(
    fault: Fault,
    committed: impl IntoIterator<Item = Entry>,
) -> (Arc<Shape>, Arc<MemDisk>, Writer) {
    let shape = Arc::new(Shape::new(fault));
    let disk = Arc::new(MemDisk::new());
    let mut w = shape.claim().expect("first claim");
    w.install(0, LogOffset::ZERO, 1);
    let mut n = 0;
    for entry in committed {
        w.append(entry);
        n += 1;
    }
    if n > 0 {
        w.commit(n);
    }
    (shape, disk, w)
}

/// Entry `(tx, op)` with a payload naming it.
pub fn e(tx: u64, op: u64) -> Entry {
    Entry::new(LogOffset::new(tx, op), format!("{tx}.{op}"))
}

/// Checks that `got` is exactly the entries of `log` with offsets in
/// `(after, upto]` among its first `k` entries, where `k` is one of the
/// commit points (entry counts at which a transaction ended) and at least
/// `at_least` (what was committed before the read began): no gap, no
/// duplicate, no reordering, nothing uncommitted, no partial transaction,
/// nothing older than the read.
pub fn assert_committed_read(
    got: &[Entry],
    log: &[Entry],
    (after, upto): (LogOffset, LogOffset),
    commit_points: &[u64],
    at_least: u64,
) {
    let in_range = |k: u64| -> Vec<Entry> {
        log[..k as usize]
            .iter()
            .filter(|e| e.offset > after && e.offset <= upto)
            .cloned()
            .collect()
    };
    let ok = commit_points
        .iter()
        .filter(|&&k| k >= at_least)
        .any(|&k| in_range(k) == got);
    if !ok {
        let prefix = (0..=log.len() as u64).find(|&k| in_range(k) == got);
        match prefix {
            Some(k) if !commit_points.contains(&k) => panic!(
                "read ends inside a transaction: {:?} is the range of the first {k} entries, commit points {:?}",
                offsets(got),
                commit_points
            ),
            Some(k) => panic!(
                "read missed committed entries: {:?} is the range of the first {k} entries, but {at_least} were committed before it began",
                offsets(got)
            ),
            None => panic!(
                "read is not the range of a prefix of the log: got {:?}",
                offsets(got)
            ),
        }
    }
}

/// [`assert_committed_read`] of the whole log.
pub fn assert_committed_prefix(got: &[Entry], log: &[Entry], commit_points: &[u64], at_least: u64) {
    assert_committed_read(
        got,
        log,
        (LogOffset::ZERO, LogOffset::MAX),
        commit_points,
        at_least,
    );
}

fn offsets(es: &[Entry]) -> Vec<(u64, u64)> {
    es.iter().map(|e| (e.offset.tx, e.offset.op)).collect()
}
