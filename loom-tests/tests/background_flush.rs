//! Model 7: the automatic flush's hand-off between threads. The writer
//! hands its batch to a flusher thread (`Writer::hand_over`: step 1 of the
//! flush protocol and the store flusher's `Job`), keeps appending and
//! committing, polls the batch's `Done` before its next append and waits for
//! it at the end (`Writer::settle`: steps 3 and 4 on the writer's thread),
//! while the flusher thread writes the batch to the log and reports it
//! (`Job::run`, `Done::set`). A reader reads concurrently. Every read is a
//! committed prefix of the log, in order; the reader never asks the log for
//! an entry the flusher has not written.
#![cfg(loom)]

use std::sync::Arc;

use loom_tests::{assert_committed_read, e, model_outcomes, shape_with_writer, Outcomes};
use shapebuf::loom_api::Fault;
use shapebuf::{Entry, LogOffset};

fn log() -> Vec<Entry> {
    vec![e(1, 0), e(1, 1), e(2, 0)]
}

const COMMITS: &[u64] = &[2, 3];
const FROM_1_0: (LogOffset, LogOffset) = (LogOffset { tx: 1, op: 0 }, LogOffset::MAX);

/// Transaction 1 (two entries) is committed before the threads start; the
/// writer hands it over, then appends and commits transaction 2 (polling
/// the batch first, as `ShapeWriter::append` does) and waits for the batch
/// if the poll did not complete it.
fn run(name: &'static str, bound: usize, fault: Fault) -> Outcomes {
    model_outcomes(name, bound, move |seen| {
        let (shape, disk, mut w) = shape_with_writer(fault, [e(1, 0), e(1, 1)]);
        let writer = {
            let disk = Arc::clone(&disk);
            loom::thread::spawn(move || {
                let (job, in_flight) = w.hand_over(&disk, 2, Some((2, LogOffset::new(1, 1))));
                let flusher = loom::thread::spawn(move || job.run());
                let polled = w.settle(&in_flight, false);
                w.append(e(2, 0));
                w.commit(3);
                if !polled {
                    assert!(w.settle(&in_flight, true), "a wait completes the batch");
                }
                flusher.join().expect("flusher");
            })
        };
        let at_least = shape.committed();
        let out = shape.read(&disk, FROM_1_0.0, FROM_1_0.1);
        assert_committed_read(&out.entries, &log(), FROM_1_0, COMMITS, at_least);
        seen.read(&out);
        writer.join().expect("writer");
        assert_eq!(shape.persisted(), 2, "the batch was completed");
        let all = shape.read(&disk, LogOffset::ZERO, LogOffset::MAX);
        assert_eq!(all.entries, log(), "quiescent read");
        assert_eq!(
            disk.entries(),
            log()[..2].to_vec(),
            "the log holds the batch"
        );
    })
}

/// Bound 4 (10,660 executions, about a second); bound 2 never lets the
/// reader see the trimmed segment, bound 3 (2,586) already reaches every
/// outcome.
#[test]
fn read_vs_background_flush() {
    let seen = run("7 read vs background flush", 4, Fault::None);
    seen.assert_seen(
        "7",
        &[
            "1 entries, 0 from disk",
            "1 entries, 0 from disk, raced",
            "1 entries, 1 from disk",
            "2 entries, 0 from disk",
            "2 entries, 0 from disk, raced",
            "2 entries, 1 from disk",
        ],
    );
}

/// Twin: the writer publishes `persisted` and trims when it hands the batch
/// over, before the flusher thread has written it: a reader that loads the
/// trimmed segment (start 2, base 1.1) finds the log short.
#[test]
#[should_panic(expected = "disk short")]
fn twin_trim_at_hand_over() {
    run("7 twin: trim at hand-over", 3, Fault::TrimBeforeWrite);
}
