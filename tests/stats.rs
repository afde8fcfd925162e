//! `Store::stats`: what an operator sees follows what the store does —
//! committed data not yet durable, flushes and their bytes, a failed sync
//! (injected through the file-system seam), live writers, shapes open, and
//! the Prometheus rendering of the same.

use std::path::Path;
use std::sync::Arc;

use shapebuf::fs::{Op, SimFs};
use shapebuf::{Config, LogOffset, Store};

fn o(tx: u64) -> LogOffset {
    LogOffset::new(tx, 0)
}

#[test]
fn stats_follow_commits_flushes_failures_and_terminates() {
    let fs = SimFs::new();
    let store = Store::open_with_fs(Path::new("/db"), Config::default(), Arc::new(fs.clone()))
        .expect("open");
    let empty = store.stats();
    assert_eq!(
        (empty.shapes, empty.shapes_open, empty.live_writers),
        (0, 0, 0)
    );
    assert_eq!(
        (empty.flushes, empty.flush_errors, empty.memory_bytes),
        (0, 0, 0)
    );

    let mut a = store.writer("a").expect("writer a");
    let mut b = store.writer("b").expect("writer b");
    for tx in 1..=3 {
        a.append(o(tx), vec![b'a'; 100]).expect("append");
        a.commit().expect("commit");
    }
    b.append(o(1), vec![b'b'; 10]).expect("append");
    b.commit().expect("commit");
    b.append(o(2), vec![b'b'; 10]).expect("append"); // not committed: not counted

    let s = store.stats();
    assert_eq!((s.shapes, s.shapes_open, s.live_writers), (2, 2, 2), "{s}");
    assert_eq!(s.entries_not_durable, 4, "{s}");
    assert!(s.memory_bytes >= 310, "payloads are held in memory: {s}");

    a.flush().expect("flush a");
    let s = store.stats();
    assert_eq!(
        (s.flushes, s.flushed_bytes, s.flush_errors),
        (1, 300, 0),
        "{s}"
    );
    assert_eq!(s.entries_not_durable, 1, "{s}");
    assert!(
        s.sync_p50 > std::time::Duration::ZERO && s.sync_p50 <= s.sync_p99,
        "{s}"
    );

    // A sync that fails is counted, not hidden.
    fs.fail_at(Op::Sync, 0);
    assert!(b.flush().is_err());
    let s = store.stats();
    assert_eq!((s.flushes, s.flush_errors), (1, 1), "{s}");

    a.terminate().expect("terminate a");
    let s = store.stats();
    assert_eq!(s.live_writers, 1, "a's buffer is retired: {s}");
    assert_eq!(s.shapes, 2, "{s}");

    let text = s.to_prometheus();
    assert!(text.contains("\nshapebuf_flush_errors_total 1\n"), "{text}");
    assert!(text.contains("\nshapebuf_flushes_total 1\n"), "{text}");
    assert!(
        text.contains("# TYPE shapebuf_live_writers gauge\nshapebuf_live_writers 1\n"),
        "{text}"
    );
}
