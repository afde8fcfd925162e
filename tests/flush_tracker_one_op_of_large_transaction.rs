//! Failure 3, sequence 3: a transaction of 47,521 operations of which one
//! hits the shape; the shape flushes that one entry. The global durable
//! offset must reach the transaction's end (in production it waited for the
//! shape to flush up to the end, which it never received).
use shapebuf::{FlushTracker, LogOffset, Store};

const OPS: u64 = 47_521;
const HIT: u64 = 23_760;
const TX: u64 = 9;

fn o(tx: u64, op: u64) -> LogOffset {
    LogOffset::new(tx, op)
}

#[test]
fn standalone_one_op_of_large_transaction_reaches_its_end() {
    let t = FlushTracker::new();
    let s = t.register("s");
    let _idle = t.register("idle");
    let mut tx = t.transaction();
    for op in 0..OPS {
        // Every other operation goes to shapes this host does not track.
        let id = if op == HIT {
            "s".to_string()
        } else {
            format!("untracked-{}", op % 97)
        };
        assert_eq!(tx.received(&id, o(TX, op)), op == HIT);
    }
    assert_eq!(tx.commit(o(TX, OPS - 1)).unwrap(), LogOffset::ZERO);
    s.flushed(o(TX, HIT));
    assert_eq!(t.global(), o(TX, OPS - 1));
}

#[test]
fn store_one_op_of_large_transaction_reaches_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t = store.flush_tracker();
    let mut s = store.writer("s").unwrap();
    let mut idle = store.writer("idle").unwrap();
    let mut tx = t.transaction();
    for op in 0..OPS {
        if op == HIT {
            s.append(o(TX, op), "the one").unwrap();
            tx.received("s", o(TX, op));
        }
    }
    s.commit().unwrap();
    tx.commit(o(TX, OPS - 1)).unwrap();
    assert_eq!(t.global(), LogOffset::ZERO);
    assert!(!idle.tick().unwrap(), "the idle shape has nothing to flush");
    s.flush().unwrap();
    assert_eq!(t.global(), o(TX, OPS - 1));
}
