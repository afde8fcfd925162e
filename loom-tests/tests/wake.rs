//! Model 6 (live tail): a commit or a terminate races a reader going to
//! sleep in `wait_for`. The reader must return with the commit (or the
//! terminate) every time; a lost wake-up leaves it asleep with no deadline,
//! which loom reports as a deadlock. The failing twins remove, one at a
//! time, the pieces src/wait.rs's `# Orderings` says are needed: the SeqCst
//! fence on the notifying side, the one on the registering side, and the
//! sequence check under the mutex before sleeping.
#![cfg(loom)]

use std::sync::Arc;

use loom_tests::{model, Outcomes};
use shapebuf::wait_loom::{Fault, Shape, WaitOutcome};
use shapebuf::LogOffset;

/// The outcome and the path the wait took: the fast path (no
/// registration), registered without sleeping, or woken from sleep.
fn path(shape: &Shape, out: WaitOutcome) -> String {
    let how = match shape.trace() {
        (0, _) => "fast",
        (_, 0) => "registered",
        _ => "slept",
    };
    format!("{out:?} {how}")
}

/// One reader waits for a commit past transaction 0 while the writer
/// commits transaction 1.
fn commit_vs_wait(fault: Fault) -> Outcomes {
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model(&format!("6a commit vs wait ({fault:?})"), 3, move || {
        let shape = Arc::new(Shape::new(fault));
        let gen = shape.generation();
        let reader = {
            let shape = Arc::clone(&shape);
            loom::thread::spawn(move || shape.wait(0, gen))
        };
        shape.commit(1);
        let out = reader.join().expect("reader");
        assert_eq!(out, WaitOutcome::Committed(LogOffset::new(1, 0)));
        seen.record(path(&shape, out));
    });
    outcomes
}

/// One reader waits while the writer terminates (nothing committed).
fn terminate_vs_wait(fault: Fault) -> Outcomes {
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    model(&format!("6b terminate vs wait ({fault:?})"), 3, move || {
        let shape = Arc::new(Shape::new(fault));
        // The wait begins (snapshots the close generation) before the
        // terminate; it may find the shape dead already, register before
        // the terminate, or register after it.
        let gen = shape.generation();
        let reader = {
            let shape = Arc::clone(&shape);
            loom::thread::spawn(move || shape.wait(0, gen))
        };
        shape.terminate();
        let out = reader.join().expect("reader");
        assert_eq!(out, WaitOutcome::Terminated);
        seen.record(path(&shape, out));
    });
    outcomes
}

#[test]
fn commit_wakes_a_waiter() {
    let c = "Committed(LogOffset { tx: 1, op: 0 })";
    commit_vs_wait(Fault::None).assert_seen(
        "6a",
        &[
            &format!("{c} fast"),
            &format!("{c} registered"),
            &format!("{c} slept"),
        ],
    );
}

#[test]
#[should_panic(expected = "deadlock")]
fn commit_without_its_fence_loses_a_wakeup() {
    commit_vs_wait(Fault::NotifyWithoutFence);
}

#[test]
#[should_panic(expected = "deadlock")]
fn registration_without_its_fence_loses_a_wakeup() {
    commit_vs_wait(Fault::RegisterWithoutFence);
}

#[test]
#[should_panic(expected = "deadlock")]
fn sleeping_without_the_sequence_check_loses_a_wakeup() {
    commit_vs_wait(Fault::SleepWithoutSeqCheck);
}

#[test]
fn terminate_wakes_a_waiter() {
    terminate_vs_wait(Fault::None).assert_seen(
        "6b",
        &[
            "Terminated fast",
            "Terminated registered",
            "Terminated slept",
        ],
    );
}

#[test]
#[should_panic(expected = "deadlock")]
fn terminate_without_its_fence_loses_a_wakeup() {
    terminate_vs_wait(Fault::NotifyWithoutFence);
}
