//! Model 8: a cold shape's first users race to open it. A store recovers a
//! shape lazily (`slot.rs`): its state is closed until someone reads or
//! writes it, and opening runs recovery under the state's gate, then
//! publishes the recovered buffer. Here a writer (open, claim, check that
//! its state is the published one, take over, append, commit) and a reader
//! (open, read) are both first users of a shape whose log holds one
//! committed entry. Whatever the interleaving, recovery runs once, both use
//! the one published state, the reader's answer is a committed prefix, and
//! the writer's commit is in the state readers find afterwards.
#![cfg(loom)]

use std::sync::Arc;

use loom_tests::{assert_committed_prefix, e, model_outcomes, Outcomes};
use shapebuf::loom_api::{Cold, Fault, LazyFault, MemDisk};
use shapebuf::LogOffset;

fn first_users(lazy: LazyFault) -> Outcomes {
    let name = format!("8 first users of a cold shape ({lazy:?})");
    model_outcomes(&name, 2, move |seen| {
        let log = vec![e(1, 0), e(2, 0)];
        // On disk before the model starts: transaction 1, committed.
        let disk = Arc::new(MemDisk::new());
        let (shape, mut w) = {
            let s = Arc::new(shapebuf::loom_api::Shape::new(Fault::None));
            let w = s.claim().expect("claim");
            (s, w)
        };
        w.install(0, LogOffset::ZERO, 1);
        w.append(e(1, 0));
        w.commit(1);
        w.flush(&disk, 1, Some((1, LogOffset::new(1, 0))));
        drop((w, shape));
        let cold = Arc::new(Cold::new(disk, Fault::None, lazy));

        let writer = {
            let cold = Arc::clone(&cold);
            loom::thread::spawn(move || loop {
                // `Store::writer`: open, claim the published state, check
                // it is still the published one.
                cold.open();
                let Some(shape) = cold.get() else { continue };
                let mut w = shape.claim().expect("the only writer");
                if !cold.is_current(&shape) {
                    continue;
                }
                w.take_over(cold.disk());
                w.append(e(2, 0));
                w.commit(2);
                break;
            })
        };

        cold.open();
        let shape = cold.get().expect("opened");
        let out = shape.read(cold.disk(), LogOffset::ZERO, LogOffset::MAX);
        assert_committed_prefix(&out.entries, &log, &[1, 2], 1);
        seen.read(&out);
        writer.join().expect("writer");

        assert_eq!(cold.recoveries(), 1, "a cold shape is recovered once");
        let now = cold.get().expect("open");
        let all = now.read(cold.disk(), LogOffset::ZERO, LogOffset::MAX);
        assert_eq!(
            all.entries, log,
            "the writer's commit is in the state readers find"
        );
    })
}

#[test]
fn first_users_share_one_recovery() {
    // The reader read before the writer installed its segment (the
    // recovered buffer is dead: all from disk), or after (from memory on
    // top of disk), before or after the writer's commit.
    first_users(LazyFault::None).assert_seen(
        "8",
        &[
            "1 entries, 1 from disk, dead",
            "1 entries, 1 from disk",
            "2 entries, 1 from disk",
        ],
    );
}

/// Twin: opening does not check again under the gate whether a racing
/// user opened first (a lock-free "check, recover, publish"): both
/// recover, the second publication replaces the first, and the writer's
/// commit went into a state nobody can find.
#[test]
#[should_panic(expected = "recovered once")]
fn twin_open_without_recheck() {
    first_users(LazyFault::OpenWithoutRecheck);
}
