//! Failure 3, sequence 1: a multi-fragment transaction whose first fragment
//! fills the shape's buffer and is flushed before the commit fragment is
//! processed; the commit fragment has no entries for the shape. The global
//! durable offset must still reach the commit (in production it stayed
//! below it forever, because the flush was compared with the transaction's
//! end, which the shape never reaches).
use std::time::Duration;

use shapebuf::{Config, FlushTracker, LogOffset, Store};

fn o(tx: u64, op: u64) -> LogOffset {
    LogOffset::new(tx, op)
}

#[test]
fn standalone_flush_before_commit_fragment_reaches_the_commit() {
    let t = FlushTracker::new();
    let s = t.register("s");
    let other = t.register("other");
    // Fragment 1: s receives 7/0..=7/2 and flushes them at once.
    let mut tx = t.transaction();
    assert!(tx.received("s", o(7, 2)));
    s.flushed(o(7, 2));
    // Commit fragment: entries for `other` only, then the commit.
    assert!(tx.received("other", o(7, 3)));
    assert_eq!(tx.commit(o(7, 4)).unwrap(), LogOffset::ZERO);
    assert!(!s.is_pending(), "s flushed everything it received of 7");
    other.flushed(o(7, 3));
    assert_eq!(t.global(), o(7, 4));
    assert_eq!(t.pending_shapes(), 0);
}

#[test]
fn store_flush_before_commit_fragment_reaches_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        flush_bytes: 150, // 3 entries of 40 bytes (+25 each)
        // The store's timer stays out of it: the test places the flushes.
        flush_interval: Duration::from_secs(3600),
        ..Config::default()
    };
    let store = Store::open_with(dir.path(), cfg).unwrap();
    let t = store.flush_tracker();
    let mut s = store.writer("s").unwrap();
    let mut other = store.writer("other").unwrap();

    // Fragment 1 fills s's buffer: the writer flushes in the middle of the
    // transaction, before any commit.
    let mut tx = t.transaction();
    for op in 0..3 {
        s.append(o(7, op), vec![b'x'; 40]).unwrap();
    }
    tx.received("s", o(7, 2));
    // The third append crossed `flush_bytes` and started a background
    // flush of the open transaction; `flush` waits for it.
    s.flush().unwrap();
    assert_eq!(s.flushed().persisted, o(7, 2), "fragment 1 reached disk");
    assert_eq!(s.flushed().committed, LogOffset::ZERO);

    // Commit fragment: nothing for s.
    other.append(o(7, 3), "y").unwrap();
    tx.received("other", o(7, 3));
    s.commit().unwrap();
    other.commit().unwrap();
    tx.commit(o(7, 4)).unwrap();
    other.flush().unwrap();
    // s's commit record is not durable yet: a crash now would drop 7 from
    // s's log, so the offset must not pass 7 (safety).
    assert_eq!(t.global(), LogOffset::ZERO);

    // s receives nothing more; its timer would flush the commit record
    // (here the flush it runs, at a point the test chooses).
    s.flush().unwrap();
    assert_eq!(t.global(), o(7, 4));
    assert_eq!(t.pending_shapes(), 0);
    assert_eq!(
        store
            .read("s", LogOffset::ZERO, LogOffset::MAX)
            .unwrap()
            .entries
            .len(),
        3
    );
}
