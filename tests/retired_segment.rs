//! The reader-holds-a-retired-segment scenario, forced deterministically.
//!
//! [`ShapeHandle::visit`] runs its callback under the epoch pin while it
//! walks the segment it loaded. Inside the callback, after the first entry,
//! the reader asks a writer thread to replace that segment — by a trim
//! (flush), a growth (append past capacity) or a terminate — and waits until
//! the writer is done. The writer never waits for readers, so this cannot
//! deadlock. The visit then finishes over the retired segment: the answer
//! must be exactly the snapshot it started from, the outcome must report
//! the race, the retired memory must stay accounted for while the reader is
//! pinned, and it must be returned once the reader unpins.

use std::sync::mpsc;
use std::thread;

use shapebuf::{Config, Entry, LogOffset, ShapeWriter, Store};

mod common;

/// What the writer does while the reader is inside its visit.
#[derive(Clone, Copy, Debug)]
enum Swap {
    /// Flush: persist everything, then trim (swap in a new segment).
    Trim,
    /// Append past the segment's capacity and commit: swap in a segment with
    /// a directory twice the size (holding the same chunks).
    Grow,
    /// Terminate: flush, then retire the segment (the shape goes dead).
    Terminate,
}

const CAPACITY: usize = 4;
/// Entries appended to make a segment grow: more than `CAPACITY` (which
/// rounds up to whole chunks, 1 + 2 + 4 slots) and than a whole chunk.
const SLOTS: u64 = common::CHUNK_SLOTS;

fn entry(tx: u64, op: u64) -> Entry {
    Entry::new(LogOffset::new(tx, op), format!("payload {tx}/{op}"))
}

fn run(swap: Swap) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = Config {
        segment_capacity: CAPACITY,
        flush_bytes: 1 << 30,
        // A trim keeps nothing: reads after it come from disk.
        retain_bytes: 0,
        ..Config::default()
    };
    let store = Store::open_with(dir.path(), cfg).expect("open");
    let mut w = store.writer("shape").expect("writer");
    // Three committed entries in one fresh segment (base ZERO, so a visit
    // from ZERO is served entirely from memory, under the pin), plus one
    // appended but uncommitted entry that no reader may see.
    let committed = vec![entry(1, 0), entry(1, 1), entry(2, 0)];
    for e in &committed {
        w.append(e.offset, e.payload.clone()).expect("append");
    }
    w.commit().expect("commit");
    w.append(LogOffset::new(3, 0), "uncommitted")
        .expect("append");
    assert_eq!(store.retired_bytes(), 0, "nothing retired yet");

    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<u64>();
    let writer_store = store.clone();
    let writer = thread::spawn(move || -> Option<ShapeWriter> {
        go_rx.recv().expect("reader signals");
        let mut w = w;
        let kept = match swap {
            Swap::Trim => {
                w.flush().expect("flush");
                Some(w)
            }
            Swap::Grow => {
                // Slot 4 is taken by the uncommitted (3, 0): filling the
                // rest, and one more, overflows the segment.
                for op in 1..=SLOTS - 3 {
                    w.append(LogOffset::new(3, op), format!("grow {op}"))
                        .expect("append");
                }
                w.commit().expect("commit");
                Some(w)
            }
            Swap::Terminate => {
                w.terminate().expect("terminate");
                None
            }
        };
        // Hand this thread's deferred frees to the collector now; they still
        // cannot run, because the reader is pinned.
        writer_store.collect();
        done_tx
            .send(writer_store.retired_bytes())
            .expect("reader waits");
        kept
    });

    let handle = store.handle("shape").expect("handle");
    let mut seen = Vec::new();
    let mut retired_while_pinned = None;
    let outcome = handle
        .visit(LogOffset::ZERO, LogOffset::MAX, |e| {
            seen.push(e.clone());
            if seen.len() == 1 {
                go_tx.send(()).expect("writer waits");
                let reported = done_rx.recv().expect("writer reports");
                // Still pinned: the retired segment we are reading from
                // cannot have been freed, even after the writer's collect.
                retired_while_pinned = Some((reported, store.retired_bytes()));
            }
        })
        .expect("visit");
    let kept_writer = writer.join().expect("writer thread");

    assert_eq!(seen, committed, "{swap:?}: exactly the snapshot, in order");
    assert_eq!(outcome.visited, committed.len());
    assert_eq!(outcome.from_disk, 0, "served from the loaded segment");
    assert!(!outcome.dead);
    assert!(outcome.raced, "{swap:?}: the segment was swapped mid-visit");
    let (reported, after) = retired_while_pinned.expect("callback ran");
    assert!(reported > 0, "{swap:?}: the swap retired a segment");
    assert!(
        after >= reported,
        "{swap:?}: retired memory freed while a reader was pinned ({after} < {reported})"
    );

    // Unpinned now: a few collections return the memory.
    let mut left = store.retired_bytes();
    for _ in 0..64 {
        if left == 0 {
            break;
        }
        store.collect();
        left = store.retired_bytes();
    }
    assert_eq!(left, 0, "{swap:?}: retired memory returned after unpin");

    // A fresh read sees the post-swap state exactly.
    let mut want = committed.clone();
    if let Swap::Grow = swap {
        want.push(Entry::new(LogOffset::new(3, 0), "uncommitted"));
        want.extend(
            (1..=SLOTS - 3).map(|op| Entry::new(LogOffset::new(3, op), format!("grow {op}"))),
        );
    }
    let again = store
        .read("shape", LogOffset::ZERO, LogOffset::MAX)
        .expect("read");
    assert_eq!(again.entries, want, "{swap:?}: read after the swap");
    assert_eq!(again.dead, matches!(swap, Swap::Terminate));
    match swap {
        Swap::Trim | Swap::Terminate => assert_eq!(again.from_disk, want.len()),
        Swap::Grow => assert_eq!(again.from_disk, 0),
    }
    drop(kept_writer);
}

#[test]
fn visit_survives_trim_of_its_segment() {
    run(Swap::Trim);
}

#[test]
fn visit_survives_growth_of_its_segment() {
    run(Swap::Grow);
}

#[test]
fn visit_survives_terminate_of_its_shape() {
    run(Swap::Terminate);
}
