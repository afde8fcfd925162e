//! Model 4: watermark publication. The segment's `len`, the buffer's
//! `committed` and `persisted` are never observed ahead of the data they
//! describe. (A segment's `start` and `base` are immutable and published
//! with the segment pointer; model 1b and 3a check that a segment is never
//! published with a `start` above what is on disk.)
#![cfg(loom)]

use std::sync::Arc;

use loom_tests::{assert_committed_prefix, e, model_outcomes, shape_with_writer, Outcomes};
use shapebuf::loom_api::{self, Fault};
use shapebuf::LogOffset;

/// 4a. A bare segment: one thread pushes two entries, another reads every
/// slot below the published length. Each slot the reader touches must have
/// been written before (loom checks every slot access against the write).
///
/// The reader is the spawned thread: with the pusher spawned instead, its
/// first operation (a load of `len`) hits tokio-rs/loom#392 and loom
/// explores one execution only.
fn segment_len(fault: Fault) -> Outcomes {
    model_outcomes(&format!("4a segment len ({fault:?})"), 3, move |seen| {
        let (mut w, r) = loom_api::segment(2, fault);
        let reader = {
            let (r, seen) = (r.clone(), seen.clone());
            loom::thread::spawn(move || {
                let got = r.read();
                assert_eq!(got, [e(1, 0), e(1, 1)][..got.len()]);
                seen.record(format!("{} entries", got.len()));
            })
        };
        assert!(w.push(e(1, 0)));
        assert!(w.push(e(1, 1)));
        reader.join().expect("reader");
        assert_eq!(r.read(), [e(1, 0), e(1, 1)]);
    })
}

#[test]
fn segment_len_publishes_slots() {
    segment_len(Fault::None).assert_seen("4a", &["0 entries", "1 entries", "2 entries"]);
}

/// Twin: `len` stored Relaxed: a reader that sees the new length reads a
/// slot whose write is not ordered before its read.
#[test]
#[should_panic(expected = "Causality violation")]
fn twin_len_relaxed() {
    segment_len(Fault::LenRelaxed);
}

/// 4b. The committed watermark: a transaction of two entries whose second
/// append grows the segment. A reader that sees `committed = 2` must then
/// load the grown segment (the watermark's Release/Acquire orders the swap
/// before the reader's pointer load).
fn committed(fault: Fault) -> Outcomes {
    model_outcomes(
        &format!("4b committed watermark ({fault:?})"),
        3,
        move |seen| {
            let log = vec![e(1, 0), e(1, 1)];
            let (shape, disk, mut w) = shape_with_writer(fault, []);
            let writer = loom::thread::spawn(move || {
                w.append(e(1, 0));
                w.append(e(1, 1));
                w.commit(2);
            });
            let out = shape.read(&disk, LogOffset::ZERO, LogOffset::MAX);
            assert_committed_prefix(&out.entries, &log, &[0, 2], 0);
            seen.read(&out);
            writer.join().expect("writer");
        },
    )
}

#[test]
fn committed_is_not_ahead_of_the_segment() {
    committed(Fault::None).assert_seen(
        "4b",
        &[
            "0 entries, 0 from disk",
            "0 entries, 0 from disk, raced",
            "2 entries, 0 from disk",
        ],
    );
}

/// Twin: `committed` stored Relaxed: a reader sees `committed = 2` and
/// still loads the one-slot segment of before the growth: half a
/// transaction.
#[test]
#[should_panic(expected = "read ends inside a transaction")]
fn twin_commit_relaxed() {
    committed(Fault::CommitRelaxed);
}

/// 4c. The persisted watermark: an observer (what the flush tracker will
/// be) that sees `persisted = p` finds at least `p` entries on disk.
fn persisted(fault: Fault) -> Outcomes {
    model_outcomes(
        &format!("4c persisted watermark ({fault:?})"),
        3,
        move |seen| {
            let (shape, disk, mut w) = shape_with_writer(fault, [e(1, 0)]);
            let writer = {
                let disk = Arc::clone(&disk);
                loom::thread::spawn(move || {
                    w.flush(&disk, 1, Some((1, LogOffset::new(1, 0))));
                })
            };
            let p = shape.persisted();
            let on_disk = disk.entries().len() as u64;
            assert!(
                p <= on_disk,
                "persisted ahead of disk: persisted {p}, {on_disk} entries on disk"
            );
            seen.record(format!("persisted {p}, {on_disk} on disk"));
            writer.join().expect("writer");
            assert_eq!(shape.persisted(), 1);
        },
    )
}

#[test]
fn persisted_is_not_ahead_of_disk() {
    persisted(Fault::None).assert_seen(
        "4c",
        &[
            "persisted 0, 0 on disk",
            "persisted 0, 1 on disk",
            "persisted 1, 1 on disk",
        ],
    );
}

/// Twin: persisted published (and the segment trimmed) before the write.
#[test]
#[should_panic(expected = "persisted ahead of disk")]
fn twin_persisted_before_write() {
    persisted(Fault::TrimBeforeWrite);
}
