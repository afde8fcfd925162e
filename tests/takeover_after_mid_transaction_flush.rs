//! Regression: a writer is dropped (not terminated) after it flushed a whole
//! transaction *before* committing it, then committed it. On disk the
//! entries are there but their commit record is not; in memory they are
//! committed, and the segment was trimmed past them (its `start` equals the
//! committed count, its `base` is their last offset).
//!
//! Found by `reader_meets_terminate`. Two bugs showed:
//!
//! - The next writer wrote the missing commit record with the *previous*
//!   transaction's last offset and installed its segment with that stale
//!   `base`: reads after the stale offset skipped the transaction, and the
//!   writer accepted offsets at or below ones already in the log.
//! - [`ShapeHandle::committed`] answered the last commit on disk instead of
//!   the last committed entry when the committed count equals the segment's
//!   start.

use shapebuf::{Error, LogOffset, Store};

fn offsets(out: &shapebuf::ReadOutcome) -> Vec<LogOffset> {
    out.entries.iter().map(|e| e.offset).collect()
}

#[test]
fn takeover_after_a_transaction_was_flushed_before_its_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let h = {
        let mut w = store.writer("s").expect("writer");
        w.append(LogOffset::new(1, 0), "a").expect("append");
        w.commit().expect("commit");
        w.flush().expect("flush");
        w.append(LogOffset::new(2, 0), "b").expect("append");
        w.append(LogOffset::new(2, 1), "c").expect("append");
        w.flush().expect("flush mid-transaction");
        assert_eq!(w.commit().expect("commit"), LogOffset::new(2, 1));
        let h = store.handle("s").expect("handle");
        assert_eq!(
            h.committed(),
            LogOffset::new(2, 1),
            "committed() of a live shape"
        );
        drop(w); // the owner "panicked"
        assert_eq!(
            h.committed(),
            LogOffset::new(2, 1),
            "committed() after the drop"
        );
        h
    };
    let want = vec![
        LogOffset::new(1, 0),
        LogOffset::new(2, 0),
        LogOffset::new(2, 1),
    ];
    let mut w = store.writer("s").expect("takeover");
    assert_eq!(
        offsets(
            &store
                .read("s", LogOffset::ZERO, LogOffset::MAX)
                .expect("read")
        ),
        want
    );
    assert_eq!(
        offsets(&h.read(LogOffset::new(1, 0), LogOffset::MAX).expect("read")),
        want[1..],
        "read after the previous transaction"
    );
    assert_eq!(
        h.committed(),
        LogOffset::new(2, 1),
        "committed() after takeover"
    );
    assert!(
        matches!(
            w.append(LogOffset::new(2, 0), "dup"),
            Err(Error::NonIncreasingOffset { .. })
        ),
        "the new writer must continue after 2/1"
    );
    w.append(LogOffset::new(3, 0), "d").expect("append");
    w.commit().expect("commit");
    w.terminate().expect("terminate");
    drop((h, store));
    let store = Store::open(dir.path()).expect("reopen");
    let all = store
        .read("s", LogOffset::ZERO, LogOffset::MAX)
        .expect("read");
    let mut want = want;
    want.push(LogOffset::new(3, 0));
    assert_eq!(offsets(&all), want, "after reopen");
    assert_eq!(
        offsets(
            &store
                .read("s", LogOffset::new(1, 0), LogOffset::MAX)
                .expect("read")
        ),
        want[1..],
        "after reopen, read after the previous transaction"
    );
}
