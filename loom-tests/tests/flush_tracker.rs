//! Model 5: the flush tracker. Transaction commits race a shape's flush
//! reports and another shape's removal:
//!
//! - the committer commits transaction 1 (ends at 1/9; shape s1 received
//!   1/1, s2 1/2), then transaction 2 (ends at 2/9; s1 2/1, s2 2/2);
//! - the flusher makes s1 durable through 1/1, then through 2/1 (possibly
//!   before transaction 2 commits: a first fragment flushed early), and
//!   reports each;
//! - the remover (the model's main thread) removes s2, whose writer
//!   terminated without flushing: a loss if s2 was charged a transaction.
//!
//! Safety, checked at every advance (in an `on_event` callback, which runs
//! under the tracker's event lock on the thread that advanced): the global
//! offset only increases, is a commit end, and never passes a transaction
//! that a live shape has not made durable, judged against the facts that
//! happened before the advance ([`Truth`]). Liveness, checked after every
//! thread joined: the global offset is the last commit and nothing is
//! pending. The subscriber channel must carry the same advances, with s2's
//! loss before any advance past it.
#![cfg(loom)]

use std::sync::{Arc, Mutex as StdMutex};

use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use loom_tests::{model_outcomes, Outcomes};
use shapebuf::loom_api::{self, TrackerFault};
use shapebuf::{FlushEvent, LogOffset};

/// A committed transaction of the script: its end and the last offset each
/// shape received of it.
struct Tx {
    end: LogOffset,
    s1: LogOffset,
    s2: LogOffset,
}

const TXS: [Tx; 2] = [
    Tx {
        end: LogOffset::new(1, 9),
        s1: LogOffset::new(1, 1),
        s2: LogOffset::new(1, 2),
    },
    Tx {
        end: LogOffset::new(2, 9),
        s1: LogOffset::new(2, 1),
        s2: LogOffset::new(2, 2),
    },
];

/// What the writers really did, recorded *before* they tell the tracker (a
/// writer reports a flush after its sync returned; the host removes a shape
/// after its writer is gone). Loom atomics read with Acquire: a check sees
/// a record for certain only if the record happened before the check, and
/// loom also tries the stale value otherwise. So the checker judges each
/// advance against exactly the facts the tracker may have known.
struct Truth {
    /// s1's durable offset (`tx << 32 | op`).
    s1_durable: AtomicU64,
    /// s2's writer is gone (s2 never flushes anything).
    s2_gone: AtomicBool,
}

fn encode(o: LogOffset) -> u64 {
    (o.tx << 32) | o.op
}

fn decode(v: u64) -> LogOffset {
    LogOffset::new(v >> 32, v & 0xffff_ffff)
}

impl Truth {
    /// The safety check of an advance to `g` from `prev`.
    fn check_advance(&self, prev: LogOffset, g: LogOffset) {
        assert!(g > prev, "global went backwards: {prev} then {g}");
        assert!(
            TXS.iter().any(|t| t.end == g),
            "global {g} is not a commit end"
        );
        let s1 = decode(self.s1_durable.load(Ordering::Acquire));
        let s2_gone = self.s2_gone.load(Ordering::Acquire);
        for t in TXS.iter().filter(|t| t.end <= g) {
            assert!(
                t.s1 <= s1,
                "global passed data that is not durable: {g} passes s1's {} (s1 durable through {s1})",
                t.s1
            );
            // A live s2 was bound to every commit, and never flushes.
            assert!(
                s2_gone,
                "global passed data that is not durable: {g} passes s2's {} (s2 live)",
                t.s2
            );
        }
    }
}

fn dotted(o: LogOffset) -> String {
    format!("{}.{}", o.tx, o.op)
}

/// Which end-of-execution checks run: all, or only the safety checks made
/// at each advance (so that a twin whose fault breaks both shows its safety
/// failure rather than the liveness one loom happens to reach first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Checks {
    All,
    SafetyOnly,
}

fn tracker_model(fault: TrackerFault, checks: Checks) -> Outcomes {
    let name = match checks {
        Checks::All => format!("5 flush tracker ({fault:?})"),
        Checks::SafetyOnly => format!("5 flush tracker ({fault:?}, safety only)"),
    };
    model_outcomes(&name, 3, move |seen| {
        let tracker = loom_api::flush_tracker(fault);
        let truth = Arc::new(Truth {
            s1_durable: AtomicU64::new(0),
            s2_gone: AtomicBool::new(false),
        });
        let s1 = tracker.register("s1");
        let s2 = tracker.register("s2");
        let events = tracker.subscribe();
        // The advances the callback saw, and which thread made the last.
        let advances = Arc::new(StdMutex::new((Vec::new(), String::new())));
        {
            let (truth, advances) = (Arc::clone(&truth), Arc::clone(&advances));
            tracker.on_event(move |ev| {
                if let FlushEvent::Advanced(g) = ev {
                    let mut a = advances.lock().expect("advances");
                    let prev = a.0.last().copied().unwrap_or(LogOffset::ZERO);
                    truth.check_advance(prev, *g);
                    a.0.push(*g);
                    let by = loom::thread::current();
                    a.1 = by.name().unwrap_or("remover").to_owned();
                }
            });
        }

        let committer = {
            let tracker = tracker.clone();
            loom::thread::Builder::new()
                .name("commit".into())
                .spawn(move || {
                    for t in &TXS {
                        tracker
                            .commit(t.end, [("s1", t.s1), ("s2", t.s2)])
                            .expect("commits in order");
                    }
                })
                .expect("spawn")
        };
        let flusher = {
            let truth = Arc::clone(&truth);
            loom::thread::Builder::new()
                .name("flush".into())
                .spawn(move || {
                    for t in &TXS {
                        truth.s1_durable.store(encode(t.s1), Ordering::Release);
                        s1.flushed(t.s1);
                    }
                })
                .expect("spawn")
        };

        truth.s2_gone.store(true, Ordering::Release);
        let loss = s2.remove();

        committer.join().expect("committer");
        flusher.join().expect("flusher");
        if checks == Checks::SafetyOnly {
            return;
        }

        let last = TXS[TXS.len() - 1].end;
        let g = tracker.global();
        assert!(
            g == last && tracker.pending_transactions() == 0,
            "global stuck at {g} after every shape flushed or was removed (last commit {last}, {} transactions pending)",
            tracker.pending_transactions()
        );
        assert_eq!(tracker.pending_shapes(), 0);

        // The channel: the same advances, the loss before any advance past it.
        let (advanced, by) = advances.lock().expect("advances").clone();
        let mut got = Vec::new();
        let mut lost = None;
        while let Ok(ev) = events.try_recv() {
            match ev {
                FlushEvent::Advanced(g) => got.push(g),
                FlushEvent::Lost(l) => {
                    // s2 lost everything after `after`: the first
                    // transaction it held.
                    let first = TXS.iter().find(|t| t.s2 > l.after).expect("s2 held one");
                    assert!(
                        got.iter().all(|&g| g < first.end),
                        "loss of s2's {} reported after an advance past it: {got:?}",
                        first.s2
                    );
                    assert_eq!(&l.shape[..], b"s2");
                    lost = Some(l);
                }
                other => panic!("unexpected event {other:?}"),
            }
        }
        assert_eq!(got, advanced, "the channel and the callback disagree");
        assert_eq!(lost, loss, "the loss remove() returned is the one sent");

        let advanced: Vec<String> = advanced.into_iter().map(dotted).collect();
        let lost = loss.and_then(|l| l.received_through).map(dotted);
        seen.record(format!(
            "advances {advanced:?} (last by {by}), s2 lost through {lost:?}"
        ));
    })
}

#[test]
fn flush_vs_commit_vs_removal() {
    // s2 removed before transaction 1 was charged to it, holding 1, holding
    // 1 and 2; each of the three threads makes the last advance in some
    // execution; the offset moves in one step or two.
    tracker_model(TrackerFault::None, Checks::All).assert_seen(
        "5",
        &[
            "advances [\"1.9\", \"2.9\"] (last by commit), s2 lost through None",
            "advances [\"1.9\", \"2.9\"] (last by flush), s2 lost through Some(\"1.2\")",
            "advances [\"2.9\"] (last by remover), s2 lost through Some(\"2.2\")",
        ],
    );
}

/// Twin: a report's decrement is Relaxed. The thread that then takes the
/// transaction's count to zero (the remover, or the committer releasing
/// its own count) does not acquire s1's report, and advances past data
/// that s1's flush is not known to have made durable (loom's first
/// failure: 2/9 with s1 durable through 1/1 as far as the advancing thread
/// can know).
#[test]
#[should_panic(expected = "global passed data that is not durable")]
fn twin_release_relaxed() {
    tracker_model(TrackerFault::ReleaseRelaxed, Checks::All);
}

/// Twin: a report releases before it records the durable offset: the
/// commit of transaction 2 binds s1 in between (its 2/1 looks not durable
/// yet), and nothing ever reports 2/1 again.
#[test]
#[should_panic(expected = "global stuck")]
fn twin_release_before_durable() {
    tracker_model(TrackerFault::ReleaseBeforeDurable, Checks::All);
}

/// Twin: a release takes the key out before its decrement (and puts it
/// back when others still wait). Loom's first failure: the put-back lands
/// after the last release removed the (absent) key, and the key stays
/// forever; `twin_key_removed_early_safety` shows the other one.
#[test]
#[should_panic(expected = "global stuck")]
fn twin_key_removed_early() {
    tracker_model(TrackerFault::KeyRemovedEarly, Checks::All);
}

/// Twin: a removal forgets to release its holds: the offset stays below
/// the removed shape's transaction forever.
#[test]
#[should_panic(expected = "global stuck")]
fn twin_remove_keeps_holds() {
    tracker_model(TrackerFault::RemoveKeepsHolds, Checks::All);
}

/// Twin: a commit binds s2 although s2 was removed after the commit looked
/// it up: nobody will ever release that hold.
#[test]
#[should_panic(expected = "global stuck")]
fn twin_bind_ignores_removed() {
    tracker_model(TrackerFault::BindIgnoresRemoved, Checks::All);
}

/// Twin: an advance reads the pending set before the head lock. Loom's
/// first failure: the commit's advance still sees transaction 2's key that
/// the flusher has removed meanwhile, and the flusher's advance ran before
/// the commit published 2/9: nobody advances to 2/9.
/// `twin_stale_snapshot_safety` shows the other one.
#[test]
#[should_panic(expected = "global stuck")]
fn twin_stale_snapshot() {
    tracker_model(TrackerFault::StaleSnapshot, Checks::All);
}

/// Twin: a removal releases its holds (under the shape's lock) before it
/// emits the loss: the flusher's advance past s2's data reaches subscribers
/// first. (This was the shipping order until this model found it.)
#[test]
#[should_panic(expected = "reported after an advance past it")]
fn twin_loss_after_release() {
    tracker_model(TrackerFault::LossAfterRelease, Checks::All);
}

/// Twin, safety only: while s1's release has transaction 1's key out, the
/// commit of transaction 2 advances to 1/9, which s2 (live) still holds.
#[test]
#[should_panic(expected = "global passed data that is not durable")]
fn twin_key_removed_early_safety() {
    tracker_model(TrackerFault::KeyRemovedEarly, Checks::SafetyOnly);
}

/// Twin, safety only: an advance sees the pending set empty, then the
/// commit of transaction 2 inserts its key (s1 bound) and publishes 2/9,
/// and the stale advance takes 2/9 while s1 has only 1/1 durable.
#[test]
#[should_panic(expected = "global passed data that is not durable")]
fn twin_stale_snapshot_safety() {
    tracker_model(TrackerFault::StaleSnapshot, Checks::SafetyOnly);
}
