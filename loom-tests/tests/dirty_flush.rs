//! Model 10: durable without host calls. The store's timer thread flushes a
//! shape its writer's commit queued (`store/dirty.rs`: phase 1 under the
//! writer's lock takes the pending batch or the batch already in flight,
//! the wait without the lock, phase 3 completes it and queues the shape
//! again if a commit is still not durable), racing the writer's own
//! append, automatic flush (its batch run by a flusher thread), commit,
//! flush and terminate. After the joins the model drains the queue as the
//! timer's later wake-ups would: then every committed entry is on disk,
//! once and in order.
#![cfg(loom)]

use std::sync::Arc;

use loom_tests::{e, model_outcomes, Outcomes};
use shapebuf::loom_api::{
    background_flush, close_flush, BgQueued, BgWriter, DirtyFault, Fault, MemDisk, Shape,
};
use shapebuf::Entry;
use std::sync::Mutex;

/// How the writer's thread ends.
#[derive(Clone, Copy, Debug)]
enum End {
    /// Returns: only the timer may make transaction 2 durable.
    Idle,
    /// Its own explicit flush.
    Flush,
    /// Its own terminate (the core leaves the shared state).
    Terminate,
}

fn all() -> Vec<Entry> {
    vec![e(1, 0), e(1, 1), e(2, 0)]
}

/// Transaction 1 (two entries) is committed and queued before the threads
/// start. The writer appends 2.0, hands a batch to a flusher thread of its
/// own (its automatic flush: 1.0-2.0 with commit point 2), commits
/// transaction 2 (queuing the shape if it is not queued), then `end`s. The
/// timer takes what is queued when it wakes and visits it once.
fn run(name: &'static str, bound: usize, fault: DirtyFault, end: End) -> Outcomes {
    model_outcomes(name, bound, move |seen| {
        let shape = Shape::new(Fault::None);
        let disk = Arc::new(MemDisk::new());
        let w = Arc::new(BgWriter::new(&shape, &disk, fault));
        w.append(e(1, 0));
        w.append(e(1, 1));
        // The queue is a std mutex: its critical sections hold no loom
        // operation, so they never interleave, and loom spends no branches
        // on them (the store's own queue is not modelled: what matters is
        // the `queued` flag, under the writer's loom lock).
        let queue: Arc<Mutex<Vec<BgQueued>>> = Arc::new(Mutex::new(Vec::new()));
        assert!(w.commit(), "the first commit queues the shape");
        queue.lock().unwrap().push(w.queued());

        let writer = {
            let (w, queue) = (Arc::clone(&w), Arc::clone(&queue));
            loom::thread::spawn(move || {
                w.append(e(2, 0));
                // (Nothing, if the timer's batch is in flight.)
                let flusher = w
                    .auto_flush()
                    .map(|job| loom::thread::spawn(move || job.run()));
                if w.commit() {
                    queue.lock().unwrap().push(w.queued());
                }
                match end {
                    End::Idle => {}
                    End::Flush => w.flush(),
                    End::Terminate => w.terminate(),
                }
                if let Some(f) = flusher {
                    f.join().expect("flusher");
                }
            })
        };
        let timer = {
            let queue = Arc::clone(&queue);
            loom::thread::spawn(move || {
                let due: Vec<BgQueued> = std::mem::take(&mut *queue.lock().unwrap());
                let n = due.len();
                let again = background_flush(due);
                let requeued = again.len();
                queue.lock().unwrap().extend(again);
                (n, requeued)
            })
        };
        writer.join().expect("writer");
        let (visited, requeued) = timer.join().expect("timer");
        // The timer's later wake-ups (bounded: each visit completes a batch).
        for _ in 0..4 {
            let due: Vec<BgQueued> = std::mem::take(&mut *queue.lock().unwrap());
            if due.is_empty() {
                break;
            }
            let again = background_flush(due);
            queue.lock().unwrap().extend(again);
        }
        assert!(
            queue.lock().unwrap().is_empty(),
            "the queue drains: a flush completes what it takes"
        );
        let on_disk = disk.entries();
        // Each entry once, in order (the twin that hands a range over twice
        // writes one twice).
        assert!(
            on_disk == all(),
            "the log holds each entry once, in order: {on_disk:?}"
        );
        assert_eq!(
            disk.committed(),
            3,
            "a committed transaction is not durable"
        );
        seen.record(format!(
            "visited {visited}, requeued {requeued}, {} on disk",
            on_disk.len()
        ));
    })
}

/// The writer does nothing after its commit: only the background flush can
/// make transaction 2 durable. Bound 1 (6,953 executions, under a second)
/// reaches both outcomes; bound 2 (144,075 executions, about 20 s) passes
/// too.
#[test]
fn background_flush_vs_writer() {
    let seen = run(
        "10 background flush vs writer",
        1,
        DirtyFault::None,
        End::Idle,
    );
    seen.assert_seen(
        "10",
        &[
            // The timer flushed what it found, or waited for the writer's
            // batch, which carried every commit.
            "visited 1, requeued 0, 3 on disk",
            // It waited for the writer's own batch (without commit 2's
            // point, made before it woke) and queued the shape again; the
            // next wake-up wrote 2's point.
            "visited 1, requeued 1, 3 on disk",
        ],
    );
}

/// The same race with the writer's own flush at the end (bound 2: 23,832
/// executions, about 3 s; bound 1 does not reach the requeue).
#[test]
fn background_flush_vs_writer_flush() {
    let seen = run("10 vs flush", 2, DirtyFault::None, End::Flush);
    seen.assert_seen(
        "10",
        &[
            "visited 1, requeued 0, 3 on disk",
            "visited 1, requeued 1, 3 on disk",
        ],
    );
}

/// The same race with the writer's terminate at the end (the core leaves
/// the shared state; a later visit finds nothing). Bound 2: 24,372
/// executions, about 3 s.
#[test]
fn background_flush_vs_writer_terminate() {
    let seen = run("10 vs terminate", 2, DirtyFault::None, End::Terminate);
    seen.assert_seen(
        "10",
        &[
            "visited 1, requeued 0, 3 on disk",
            "visited 1, requeued 1, 3 on disk",
        ],
    );
}

/// Twin: phase 1 ignores the writer's batch in flight and takes the
/// pending range again: the log gets an entry twice.
#[test]
#[should_panic(expected = "once, in order")]
fn twin_ignore_in_flight() {
    run(
        "10 twin: ignore the batch in flight",
        2,
        DirtyFault::IgnoreInFlight,
        End::Idle,
    );
}

/// Twin: phase 3 never queues the shape again: commit 2, made while the
/// shape was still queued and missing from the writer's batch the timer
/// waited for, never becomes durable.
#[test]
#[should_panic(expected = "not durable")]
fn twin_skip_requeue() {
    run("10 twin: no requeue", 2, DirtyFault::SkipRequeue, End::Idle);
}

/// `Store::close`'s round over a writer whose batch is in flight: it waits
/// for the batch under the lock, hands the rest over, and closes the writer.
#[test]
fn close_vs_writer() {
    loom_tests::model("10 close vs writer", 3, || {
        let shape = Shape::new(Fault::None);
        let disk = Arc::new(MemDisk::new());
        let w = Arc::new(BgWriter::new(&shape, &disk, DirtyFault::None));
        w.append(e(1, 0));
        w.append(e(1, 1));
        w.commit();
        let job = w.auto_flush().expect("nothing in flight");
        let flusher = loom::thread::spawn(move || job.run());
        w.append(e(2, 0));
        w.commit();
        let again = close_flush(vec![w.queued()]);
        assert!(again.is_empty(), "one round of a close suffices");
        flusher.join().expect("flusher");
        assert_eq!(disk.entries(), all(), "the log holds each entry once");
        assert_eq!(
            disk.committed(),
            3,
            "a committed transaction is not durable"
        );
    });
}
