//! Failure 3, sequence 2: a shape's writer crashes (is dropped) in the
//! middle of a transaction, and a replacement writer receives the rest of
//! the transaction with no beginning. The tracker must not wait for the
//! dead writer, and the replacement must not write the torn transaction.
use shapebuf::{Config, Error, FlushEvent, FlushTracker, LogOffset, Loss, Store};

fn o(tx: u64, op: u64) -> LogOffset {
    LogOffset::new(tx, op)
}

#[test]
fn standalone_dead_writers_fragment_is_not_charged_to_its_replacement() {
    let t = FlushTracker::new();
    let events = t.subscribe();
    let dead = t.register("s");
    let mut tx = t.transaction();
    assert!(tx.received("s", o(5, 1)));
    let loss = dead.crashed(LogOffset::ZERO).expect("loss reported");
    assert_eq!(loss.after, LogOffset::ZERO);
    assert_eq!(loss.received_through, None, "5 had not committed");
    // The replacement gets nothing more of 5: the commit must not wait.
    let _replacement = t.register("s");
    assert_eq!(tx.commit(o(5, 9)).unwrap(), o(5, 9));
    let got: Vec<_> = events.try_iter().collect();
    assert_eq!(
        got,
        vec![FlushEvent::Lost(loss), FlushEvent::Advanced(o(5, 9))]
    );
}

#[test]
fn standalone_replacement_is_held_only_for_what_it_received() {
    let t = FlushTracker::new();
    let dead = t.register("s");
    let mut tx = t.transaction();
    tx.received("s", o(5, 1));
    dead.crashed(LogOffset::ZERO).expect("loss reported");
    let replacement = t.register("s");
    tx.received("s", o(5, 3));
    assert_eq!(tx.commit(o(5, 9)).unwrap(), LogOffset::ZERO);
    replacement.flushed(o(5, 3));
    assert_eq!(t.global(), o(5, 9));
}

fn store_crash_mid_transaction(cfg: Config, flushed_before_crash: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), cfg.clone()).unwrap();
    let t = store.flush_tracker().clone();
    let events = t.subscribe();

    // Transaction 4 commits and is durable.
    let mut a = store.writer("s").unwrap();
    a.append(o(4, 0), "t4").unwrap();
    a.commit().unwrap();
    t.commit(o(4, 0), [("s", o(4, 0))]).unwrap();
    a.flush().unwrap();
    assert_eq!(t.global(), o(4, 0));
    assert_eq!(
        events.try_iter().last(),
        Some(FlushEvent::Advanced(o(4, 0)))
    );

    // Fragment 1 of transaction 5 reaches writer A, which then dies.
    let mut tx = t.transaction();
    a.append(o(5, 0), vec![b'a'; 40]).unwrap();
    a.append(o(5, 1), vec![b'a'; 40]).unwrap();
    tx.received("s", o(5, 1));
    if flushed_before_crash {
        // The append that crossed `flush_bytes` started a background
        // flush; `flush` waits for it (and finds nothing more to write).
        a.flush().unwrap();
    }
    assert_eq!(a.flushed().persisted == o(5, 1), flushed_before_crash);
    drop(a);
    let lost: Vec<_> = events.try_iter().collect();
    assert_eq!(
        lost,
        vec![FlushEvent::Lost(Loss {
            shape: "s".into(),
            after: o(4, 0),
            received_through: None,
        })]
    );

    // The replacement receives the rest of 5, without its beginning.
    // Each of its appends says it was not written (issue 22 item 9: never
    // `Ok` as if written), and the writer stays usable.
    let mut b = store.writer("s").unwrap();
    for op in [2, 3] {
        match b.append(o(5, op), "rest") {
            Err(Error::TornTransaction {
                shape,
                offset,
                torn_after,
            }) => {
                assert_eq!(
                    (shape.as_str(), offset, torn_after),
                    ("s", o(5, op), o(5, 1))
                );
            }
            other => panic!("append of the torn rest: {other:?}"),
        }
    }
    tx.received("s", o(5, 3));
    b.commit().unwrap();
    // Nothing of 5 is waited for: the dead writer's part is gone (reported),
    // the replacement's part was skipped (never written torn).
    assert_eq!(tx.commit(o(5, 9)).unwrap(), o(5, 9));
    b.flush().unwrap();
    let offsets = |store: &Store| -> Vec<LogOffset> {
        let r = store.read("s", LogOffset::ZERO, LogOffset::MAX).unwrap();
        r.entries.iter().map(|e| e.offset).collect()
    };
    assert_eq!(offsets(&store), vec![o(4, 0)], "no entry of torn 5");

    // The next transaction is written normally.
    b.append(o(6, 0), "t6").unwrap();
    b.commit().unwrap();
    t.commit(o(6, 0), [("s", o(6, 0))]).unwrap();
    assert_eq!(t.global(), o(5, 9));
    b.terminate().unwrap();
    assert_eq!(t.global(), o(6, 0));
    assert_eq!(offsets(&store), vec![o(4, 0), o(6, 0)]);
    drop(store);
    let reopened = Store::open_with(dir.path(), cfg).unwrap();
    assert_eq!(offsets(&reopened), vec![o(4, 0), o(6, 0)], "after reopen");
}

#[test]
fn store_replacement_skips_rest_of_transaction_torn_in_memory() {
    let cfg = Config {
        flush_bytes: 1 << 20,
        ..Config::default()
    };
    store_crash_mid_transaction(cfg, false);
}

#[test]
fn store_replacement_skips_rest_of_transaction_torn_on_disk() {
    // The dead writer's fragment filled its buffer and reached disk
    // uncommitted before it died.
    let cfg = Config {
        flush_bytes: 100,
        ..Config::default()
    };
    store_crash_mid_transaction(cfg, true);
}

#[test]
fn store_replacement_writes_a_replayed_transaction_whole() {
    // The host replays transaction 5 from its beginning to the replacement:
    // that is not a torn tail, and is written.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t = store.flush_tracker().clone();
    let mut a = store.writer("s").unwrap();
    a.append(o(5, 0), "a").unwrap();
    a.append(o(5, 1), "b").unwrap();
    drop(a);
    let mut b = store.writer("s").unwrap();
    let mut tx = t.transaction();
    for op in 0..3 {
        b.append(o(5, op), "replayed").unwrap();
    }
    tx.received("s", o(5, 2));
    b.commit().unwrap();
    tx.commit(o(5, 2)).unwrap();
    assert_eq!(t.global(), LogOffset::ZERO, "not durable yet");
    b.flush().unwrap();
    assert_eq!(t.global(), o(5, 2));
    let r = store.read("s", LogOffset::ZERO, LogOffset::MAX).unwrap();
    assert_eq!(r.entries.len(), 3);
}

#[test]
fn store_append_of_a_torn_rest_says_so_and_a_replay_after_it_is_written() {
    // Issue 22 item 9: the append the store drops is an error, not `Ok`;
    // the writer stays usable, and the host may still replay the
    // transaction from its beginning.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut a = store.writer("s").unwrap();
    a.append(o(5, 0), "a").unwrap();
    a.append(o(5, 1), "b").unwrap();
    drop(a);
    let mut b = store.writer("s").unwrap();
    let e = b.append(o(5, 2), "rest").unwrap_err();
    assert!(
        matches!(e, Error::TornTransaction { offset, torn_after, .. } if offset == o(5, 2) && torn_after == o(5, 1)),
        "{e:?}"
    );
    assert!(e.to_string().contains("not written"), "{e}");
    assert_eq!(b.last_appended(), LogOffset::ZERO, "nothing was appended");
    for op in 0..3 {
        b.append(o(5, op), "replayed").unwrap();
    }
    b.commit().unwrap();
    b.flush().unwrap();
    let r = store.read("s", LogOffset::ZERO, LogOffset::MAX).unwrap();
    let got: Vec<_> = r.entries.iter().map(|e| e.offset).collect();
    assert_eq!(got, vec![o(5, 0), o(5, 1), o(5, 2)]);
}
