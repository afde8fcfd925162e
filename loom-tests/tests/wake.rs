//! Model 6 (live tail): a commit or a terminate races a reader going to
//! sleep in `wait_for`, and the wake goes through the waker thread (the
//! shipping loop, `src/wake.rs`, run on a loom thread that drains its queue
//! and exits when told). The reader must return with the commit (or the
//! terminate) every time; a lost wake-up leaves it asleep with no deadline,
//! which loom reports as a deadlock. The failing twins remove, one at a
//! time, the pieces src/wait.rs's `# Orderings` says are needed: the SeqCst
//! fence on the notifying side, the one on the registering side, the
//! sequence check under the mutex before sleeping, and (6c, two commits)
//! the waker thread's Acquire swap clearing the shape's `queued` flag
//! before it wakes.
#![cfg(loom)]

use std::sync::Arc;

use loom_tests::{model_outcomes, Outcomes};
use shapebuf::wait_loom::{Fault, Shape, WaitOutcome};
use shapebuf::LogOffset;

/// The outcome and the path the wait took: the fast path (no
/// registration), registered without sleeping, or woken from sleep; and
/// whether a commit found the shape queued already and skipped its push.
fn path(shape: &Shape, out: WaitOutcome) -> String {
    let (registered, slept, skipped) = shape.trace();
    let how = match (registered, slept) {
        (0, _) => "fast",
        (_, 0) => "registered",
        _ => "slept",
    };
    let skip = if skipped > 0 { ", push skipped" } else { "" };
    format!("{out:?} {how}{skip}")
}

/// Runs `script` on a fresh shape with the waker thread running on a loom
/// thread of its own; afterwards stops it (it drains its queue first) and
/// joins it.
fn with_waker(fault: Fault, script: impl FnOnce(&Arc<Shape>)) {
    let shape = Arc::new(Shape::new(fault));
    let waker = {
        let shape = Arc::clone(&shape);
        loom::thread::spawn(move || shape.run_waker())
    };
    script(&shape);
    shape.stop_waker();
    waker.join().expect("waker thread");
}

/// One reader takes the close generation, then (on a thread of its own)
/// waits for a commit past transaction `after`, while the writer (the
/// model's main thread) runs `writer`; the wait must return `expected`.
fn one_waiter(
    name: &str,
    fault: Fault,
    after: u64,
    writer: fn(&Shape),
    expected: WaitOutcome,
) -> Outcomes {
    model_outcomes(&format!("{name} ({fault:?})"), BOUND, move |seen| {
        with_waker(fault, |shape| {
            let gen = shape.generation();
            let reader = {
                let shape = Arc::clone(shape);
                loom::thread::spawn(move || shape.wait(after, gen))
            };
            writer(shape);
            let out = reader.join().expect("reader");
            assert_eq!(out, expected);
            seen.record(path(shape, out));
        });
    })
}

/// One reader waits for a commit past transaction 0 while the writer
/// commits transaction 1.
fn commit_vs_wait(fault: Fault) -> Outcomes {
    let committed = WaitOutcome::Committed(LogOffset::new(1, 0));
    one_waiter("6a commit vs wait", fault, 0, |s| s.commit(1), committed)
}

/// One reader waits while the writer terminates (nothing committed). The
/// wait begins (snapshots the close generation) before the terminate; it
/// may find the shape dead already, register before the terminate, or
/// register after it.
fn terminate_vs_wait(fault: Fault) -> Outcomes {
    let terminated = WaitOutcome::Terminated;
    one_waiter(
        "6b terminate vs wait",
        fault,
        0,
        Shape::terminate,
        terminated,
    )
}

/// One reader waits for a commit past transaction 1 while the writer
/// commits transactions 1 and 2: the second commit may find the shape
/// still queued by the first (the waker thread has not cleared the flag)
/// and skip its push; the waker thread's wake must then carry it.
fn two_commits_vs_wait(fault: Fault) -> Outcomes {
    let committed = WaitOutcome::Committed(LogOffset::new(2, 0));
    let writer = |s: &Shape| {
        s.commit(1);
        s.commit(2);
    };
    one_waiter("6c two commits vs wait", fault, 1, writer, committed)
}

/// The preemption bound of every model here (three threads: writer,
/// reader, waker thread).
const BOUND: usize = 3;

/// Two shapes of one store, one reader waiting on each, one commit to
/// each: both shapes go through the one queue (a stack of two, or two
/// pushes), and each reader is woken by its own shape's commit.
fn two_shapes_one_queue(fault: Fault) -> Outcomes {
    let name = format!("6d two shapes, one waker thread ({fault:?})");
    model_outcomes(&name, BOUND_6D, move |seen| {
        with_waker(fault, |a| {
            let b = Arc::new(a.sibling(fault));
            let readers: Vec<_> = [a, &b]
                .into_iter()
                .map(|shape| {
                    let shape = Arc::clone(shape);
                    let gen = shape.generation();
                    loom::thread::spawn(move || shape.wait(0, gen))
                })
                .collect();
            a.commit(1);
            b.commit(1);
            let mut paths = Vec::new();
            for (reader, shape) in readers.into_iter().zip([a, &b]) {
                let out = reader.join().expect("reader");
                assert_eq!(out, WaitOutcome::Committed(LogOffset::new(1, 0)));
                paths.push(path(shape, out));
            }
            if a.max_batch() == 2 {
                paths.push("one batch".into());
            }
            seen.record(paths.join(" / "));
        });
    })
}

/// The preemption bound of model 6d (four threads).
const BOUND_6D: usize = 2;

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

#[test]
fn a_second_commit_while_queued_is_carried_by_the_queued_wake() {
    let c = "Committed(LogOffset { tx: 2, op: 0 })";
    two_commits_vs_wait(Fault::None).assert_seen(
        "6c",
        &[
            &format!("{c} fast"),
            &format!("{c} registered"),
            &format!("{c} slept"),
            &format!("{c} slept, push skipped"),
        ],
    );
}

#[test]
#[should_panic(expected = "deadlock")]
fn clearing_queued_with_a_relaxed_store_loses_a_wakeup() {
    two_commits_vs_wait(Fault::ClearRelaxed);
}

#[test]
#[should_panic(expected = "deadlock")]
fn clearing_queued_after_the_wake_loses_a_wakeup() {
    two_commits_vs_wait(Fault::ClearAfterWake);
}

#[test]
fn two_shapes_share_the_waker_thread() {
    let c = "Committed(LogOffset { tx: 1, op: 0 })";
    two_shapes_one_queue(Fault::None).assert_seen(
        "6d",
        &[
            &format!("{c} slept / {c} slept"),
            &format!("{c} slept / {c} slept / one batch"),
            &format!("{c} fast / {c} fast"),
        ],
    );
}

/// The waker thread then reaches a shape whose creation (by its first
/// waiter) it has not seen.
#[test]
#[should_panic(expected = "Causality violation")]
fn pushing_with_a_relaxed_compare_and_swap_hides_the_shape() {
    two_shapes_one_queue(Fault::PushRelaxed);
}
