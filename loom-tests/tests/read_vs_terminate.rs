//! Model 2: a read races terminate (flush, then unpublish + retire) and the
//! host's collection of retired segments. The reader either reads the
//! segment it loaded (which stays intact until it unpins) or finds the
//! shape dead and reads everything from disk; its answer is always
//! complete. A retired segment is freed only after the reader has
//! unpinned (a free poisons it under loom, so loom reports any read it
//! races), and the frees do happen during the model (the retired-bytes
//! count drops).
#![cfg(loom)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use loom_tests::{assert_committed_prefix, e, model, shape_with_writer, Outcomes};
use shapebuf::loom_api::Fault;
use shapebuf::LogOffset;

/// How often, over all executions, the collector freed retired segments
/// while the reader was still running, and by the end of the execution.
#[derive(Default)]
struct Frees {
    during_read: AtomicUsize,
    by_the_end: AtomicUsize,
    reads: Outcomes,
}

fn run(name: &'static str, bound: usize, fault: Fault) -> Arc<Frees> {
    let frees = Arc::new(Frees::default());
    let counts = Arc::clone(&frees);
    model(name, bound, move || {
        let log = vec![e(1, 0), e(1, 1)];
        let (shape, disk, mut w) = shape_with_writer(fault, [e(1, 0), e(1, 1)]);
        // Instrumentation only (a std atomic, invisible to loom): whether
        // the reader has returned.
        let read_done = Arc::new(AtomicBool::new(false));

        let writer = {
            let (shape, disk, read_done) = (
                Arc::clone(&shape),
                Arc::clone(&disk),
                Arc::clone(&read_done),
            );
            let counts = Arc::clone(&counts);
            loom::thread::spawn(move || {
                // `ShapeWriter::terminate`: flush (write, publish persisted,
                // trim), then retire; then the host collects.
                w.flush(&disk, 2, Some((2, LogOffset::new(1, 1))));
                w.retire();
                drop(w);
                let retired = shape.retired_bytes();
                shape.collect(2);
                if shape.retired_bytes() < retired && !read_done.load(Ordering::Relaxed) {
                    counts.during_read.fetch_add(1, Ordering::Relaxed);
                }
            })
        };

        let out = shape.read(&disk, LogOffset::ZERO, LogOffset::MAX);
        read_done.store(true, Ordering::Relaxed);
        assert_committed_prefix(&out.entries, &log, &[2], 2);
        counts.reads.read(&out);
        if out.dead {
            assert_eq!(out.from_disk, out.entries.len(), "a dead read is all disk");
        }
        writer.join().expect("writer");

        assert!(!shape.is_live(), "terminated");
        let dead = shape.read(&disk, LogOffset::ZERO, LogOffset::MAX);
        assert!(dead.dead);
        assert_eq!(dead.entries, log, "everything committed is on disk");
        // The collector only promises to free eventually, and loom lets its
        // relaxed loads of the participants' epochs stay stale for a whole
        // execution: count the executions where the segments were freed
        // rather than asserting it in each.
        shape.collect(4);
        if shape.retired_bytes() == 0 {
            counts.by_the_end.fetch_add(1, Ordering::Relaxed);
        }
    });
    eprintln!(
        "{name}: retired segments freed while the reader ran in {} executions, by the end in {}",
        frees.during_read.load(Ordering::Relaxed),
        frees.by_the_end.load(Ordering::Relaxed)
    );
    frees
}

/// The model is not vacuous: reclamation runs concurrently with the read
/// in some executions (and loom found no read of a freed segment in any).
fn assert_frees_race_the_read(name: &str, n: usize, frees: &Frees) {
    // The segment loaded before the trim (replaced or not during the read),
    // the trimmed one (all from disk, replaced or not), and none (dead).
    let outcomes = [
        format!("{n} entries, 0 from disk"),
        format!("{n} entries, 0 from disk, raced"),
        format!("{n} entries, {n} from disk"),
        format!("{n} entries, {n} from disk, raced"),
        format!("{n} entries, {n} from disk, dead"),
    ];
    let outcomes: Vec<&str> = outcomes.iter().map(String::as_str).collect();
    frees.reads.assert_seen(name, &outcomes);
    assert!(
        frees.during_read.load(Ordering::Relaxed) > 0,
        "the collector never freed during the read"
    );
    assert!(
        frees.by_the_end.load(Ordering::Relaxed) > 0,
        "the collector never freed"
    );
}

#[test]
fn read_vs_terminate() {
    let frees = run("2a read vs terminate", 3, Fault::None);
    assert_frees_race_the_read("2a", 2, &frees);
}

/// Twin: terminate unpublishes and retires the segment before the flush
/// has written the entries: a reader that finds the shape dead reads a
/// disk that does not hold them yet.
#[test]
#[should_panic(expected = "disk short")]
fn twin_retire_before_write() {
    run("2a twin: retire before write", 3, Fault::RetireBeforeWrite);
}

/// Twin: a retired segment is freed at once instead of after every reader
/// that may hold it has unpinned: loom sees the free (the poisoning writes
/// to every slot) race the reader's read of a slot.
#[test]
#[should_panic(expected = "Causality violation")]
fn twin_free_without_defer() {
    run("2a twin: free without defer", 3, Fault::FreeWithoutDefer);
}
