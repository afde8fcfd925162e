//! Model 3: a read races a shape's restart: a new writer claims the buffer,
//! takes over from its predecessor (writes what the predecessor committed
//! but did not flush, drops its uncommitted tail, installs a fresh
//! segment) and commits; or the predecessor terminates first and the shape
//! goes dead, then live again. A reader never reads a retired or restarted
//! buffer wrongly: it never misses committed data and never sees the dead
//! writer's uncommitted tail. And the claim hands the predecessor's
//! memory over to the new writer.
//!
//! The registry itself is not in these models: a shape's slot is inserted
//! once and never removed (terminate only empties the buffer), so a lookup
//! returns the same `Arc<Slot>` before, during and after a restart; what
//! changes is the buffer, which is what the models drive.
#![cfg(loom)]

use std::sync::Arc;

use loom_tests::{assert_committed_prefix, e, model_outcomes, shape_with_writer, Outcomes};
use shapebuf::loom_api::Fault;
use shapebuf::LogOffset;

/// 3a. A new writer takes over from a dropped one while a reader reads.
fn take_over(fault: Fault) -> Outcomes {
    let name = format!("3a read vs take-over ({fault:?})");
    model_outcomes(&name, 3, move |seen| {
        // Entry 2.0 was never committed: the take-over drops it.
        let log = vec![e(1, 0), e(1, 1), e(3, 0)];
        // The dead writer, before the model's threads start: transaction 1
        // (two entries) committed but not flushed, transaction 2 open with
        // one entry (the segment grew twice on the way).
        let (shape, disk, mut dead) = shape_with_writer(fault, [e(1, 0), e(1, 1)]);
        dead.append(e(2, 0));
        drop(dead);

        let writer = {
            let (shape, disk) = (Arc::clone(&shape), Arc::clone(&disk));
            loom::thread::spawn(move || {
                let mut w = shape.claim().expect("the dead writer released its claim");
                w.take_over(&disk);
                w.append(e(3, 0));
                w.commit(3);
            })
        };

        let out = shape.read(&disk, LogOffset::ZERO, LogOffset::MAX);
        assert_committed_prefix(&out.entries, &log, &[2, 3], 2);
        seen.read(&out);
        writer.join().expect("writer");
        assert_eq!(
            disk.entries(),
            log[..2],
            "the take-over wrote transaction 1"
        );
    })
}

#[test]
fn read_vs_take_over() {
    // The dead writer's segment (replaced or not during the read), the
    // fresh one (transaction 1 from disk), and transaction 3 on top.
    take_over(Fault::None).assert_seen(
        "3a",
        &[
            "2 entries, 0 from disk",
            "2 entries, 0 from disk, raced",
            "2 entries, 2 from disk",
            "3 entries, 2 from disk",
        ],
    );
}

/// Twin: the take-over installs the fresh segment (start 2) before it has
/// written the entries below it: a reader that loads it finds the disk
/// short.
#[test]
#[should_panic(expected = "disk short")]
fn twin_install_before_write() {
    take_over(Fault::InstallBeforeWrite);
}

/// 3b. The writer terminates (flush, retire) and a new writer starts the
/// shape again, while a reader reads: it may see the old segment, the
/// trimmed one, none (dead), or the fresh one.
fn terminate_restart(fault: Fault) -> Outcomes {
    model_outcomes(
        &format!("3b read vs terminate+restart ({fault:?})"),
        3,
        move |seen| {
            let log = vec![e(1, 0), e(2, 0)];
            let (shape, disk, mut w) = shape_with_writer(fault, [e(1, 0)]);

            let writer = {
                let (shape, disk) = (Arc::clone(&shape), Arc::clone(&disk));
                loom::thread::spawn(move || {
                    w.flush(&disk, 1, Some((1, LogOffset::new(1, 0))));
                    w.retire();
                    drop(w);
                    let mut w = shape.claim().expect("terminated writer released its claim");
                    w.take_over(&disk);
                    w.append(e(2, 0));
                    w.commit(2);
                })
            };

            let out = shape.read(&disk, LogOffset::ZERO, LogOffset::MAX);
            assert_committed_prefix(&out.entries, &log, &[1, 2], 1);
            seen.read(&out);
            writer.join().expect("writer");
        },
    )
}

#[test]
fn read_vs_terminate_restart() {
    // Old, trimmed, none (dead), fresh.
    terminate_restart(Fault::None).assert_seen(
        "3b",
        &[
            "1 entries, 0 from disk",
            "1 entries, 1 from disk",
            "1 entries, 1 from disk, dead",
            "2 entries, 1 from disk",
        ],
    );
}

/// Twin: terminate unpublishes before it writes: a reader that finds the
/// shape dead in between finds the disk short.
#[test]
#[should_panic(expected = "disk short")]
fn twin_restart_retire_before_write() {
    terminate_restart(Fault::RetireBeforeWrite);
}

/// 3c. The claim hand-off: the old writer, on its own thread, commits,
/// appends past the commit (growing the segment) and is dropped; the new
/// writer spins on the claim and takes over. The take-over reads the old
/// writer's segment (and retires it, measuring every slot): the claim's
/// Acquire must order all of the old writer's writes before those reads.
fn claim_hand_off(fault: Fault) -> Outcomes {
    model_outcomes(&format!("3c claim hand-off ({fault:?})"), 3, move |seen| {
        let (shape, disk, mut old) = shape_with_writer(fault, []);

        let old_writer = loom::thread::spawn(move || {
            old.append(e(1, 0));
            old.commit(1);
            old.append(e(2, 0));
            drop(old);
        });

        let mut spins = 0;
        let mut w = loop {
            if let Some(w) = shape.claim() {
                break w;
            }
            spins += 1;
            loom::thread::yield_now();
        };
        seen.record(format!("claimed after {} failed tries", spins.min(1)));
        w.take_over(&disk);
        old_writer.join().expect("old writer");
        assert_eq!(
            disk.entries(),
            [e(1, 0)],
            "the new writer lost its predecessor's commit"
        );
        let out = shape.read(&disk, LogOffset::ZERO, LogOffset::MAX);
        assert_eq!(out.entries, [e(1, 0)]);
    })
}

#[test]
fn claim_hands_over_memory() {
    claim_hand_off(Fault::None).assert_seen(
        "3c",
        &[
            "claimed after 0 failed tries",
            "claimed after 1 failed tries",
        ],
    );
}

/// Twin: the claim is taken Relaxed: nothing orders the old writer's
/// writes before the new writer's reads. Loom reports it in the first
/// execution, as a data race: the take-over lends the old writer's entries
/// out of its segment with no pin (only the claim holder retires segments),
/// and nothing orders the old writer's slot writes before those reads.
/// (When `take_pending` still pinned, the pin's SeqCst fence gave loom an
/// edge that hid the race, and the failure came at execution 94 as the
/// lost commit this model asserts: the new writer read a stale committed
/// watermark, wrote nothing and installed over the committed entry.)
#[test]
#[should_panic(expected = "Causality violation")]
fn twin_claim_relaxed() {
    claim_hand_off(Fault::ClaimRelaxed);
}
