//! Failure 3, sequence 4: a shape is removed while it has data that is not
//! durable. The global durable offset must advance past it, and the host
//! must be told which shape lost data and from which offset (in production
//! the dead shape held the offset forever).
use shapebuf::{Config, FlushEvent, FlushTracker, LogOffset, Loss, Store};

fn o(tx: u64, op: u64) -> LogOffset {
    LogOffset::new(tx, op)
}

#[test]
fn standalone_removed_with_pending_data_reports_loss_and_advances() {
    let t = FlushTracker::new();
    let events = t.subscribe();
    let s = t.register("s");
    let ok = t.register("ok");
    t.commit(o(2, 3), [("s", o(2, 1)), ("ok", o(2, 3))])
        .unwrap();
    s.flushed(o(2, 0)); // part of 2 is durable, 2/1 is not
    t.commit(o(3, 3), [("s", o(3, 2))]).unwrap();
    ok.flushed(o(2, 3));
    assert_eq!(t.global(), LogOffset::ZERO);
    let loss = s.remove().expect("pending data is a loss");
    assert_eq!(
        loss,
        Loss {
            shape: "s".into(),
            after: o(2, 0),
            received_through: Some(o(3, 2)),
        }
    );
    assert_eq!(t.global(), o(3, 3));
    let got: Vec<_> = events.try_iter().collect();
    assert_eq!(
        got,
        vec![FlushEvent::Lost(loss), FlushEvent::Advanced(o(3, 3))]
    );
    assert_eq!(t.shapes(), 1);
    assert!(s.remove().is_none(), "removal is idempotent");
}

#[test]
fn store_writer_dropped_with_unflushed_commit_reports_loss_and_advances() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        flush_bytes: 1 << 20,
        ..Config::default()
    };
    let store = Store::open_with(dir.path(), cfg).unwrap();
    let t = store.flush_tracker();
    let events = t.subscribe();
    let mut s = store.writer("s").unwrap();
    let mut other = store.writer("other").unwrap();
    s.append(o(3, 0), "a").unwrap();
    s.append(o(3, 1), "b").unwrap();
    other.append(o(3, 2), "c").unwrap();
    s.commit().unwrap();
    other.commit().unwrap();
    t.commit(o(3, 5), [("s", o(3, 1)), ("other", o(3, 2))])
        .unwrap();
    other.terminate().unwrap();
    assert_eq!(t.global(), LogOffset::ZERO, "s holds 3");
    drop(s); // its owner panicked: never flushed
    let got: Vec<_> = events.try_iter().collect();
    assert_eq!(
        got,
        vec![
            FlushEvent::Lost(Loss {
                shape: "s".into(),
                after: LogOffset::ZERO,
                received_through: Some(o(3, 1)),
            }),
            FlushEvent::Advanced(o(3, 5)),
        ]
    );
    assert_eq!(t.shapes(), 0);
}

#[test]
fn store_terminate_after_flush_is_not_a_loss() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t = store.flush_tracker();
    let events = t.subscribe();
    let mut s = store.writer("s").unwrap();
    s.append(o(1, 0), "a").unwrap();
    s.commit().unwrap();
    t.commit(o(1, 2), [("s", o(1, 0))]).unwrap();
    s.terminate().unwrap();
    let got: Vec<_> = events.try_iter().collect();
    assert_eq!(got, vec![FlushEvent::Advanced(o(1, 2))]);
    assert_eq!(t.shapes(), 0);
}
