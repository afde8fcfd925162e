//! End-to-end smoke: append, commit, flush, read across memory and disk,
//! terminate, restart, reopen.
use shapebuf::{Config, LogOffset, Store};

#[test]
fn round_trip_across_flush_terminate_restart_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = Config {
        flush_bytes: 1 << 30,
        segment_capacity: 2,
        // A flush keeps a tail of about 20 entries: reads span disk, the
        // durable tail and the unflushed entries.
        retain_bytes: 1000,
        index_interval: 64,
        file_bytes: 512,
        ..Config::default()
    };
    let store = Store::open_with(dir.path(), cfg.clone()).expect("open");
    let mut w = store.writer("a/../b").expect("writer");
    let mut expect = Vec::new();
    for tx in 1..=50u64 {
        for op in 0..3u64 {
            let p = format!("{tx}:{op}");
            w.append(LogOffset::new(tx, op), p.clone()).expect("append");
            expect.push((LogOffset::new(tx, op), p));
        }
        w.commit().expect("commit");
        if tx % 7 == 0 {
            w.flush().expect("flush");
        }
        let got = store
            .read("a/../b", LogOffset::ZERO, LogOffset::MAX)
            .expect("read");
        let got: Vec<_> = got
            .entries
            .iter()
            .map(|e| (e.offset, String::from_utf8(e.payload.to_vec()).unwrap()))
            .collect();
        assert_eq!(got, expect, "after tx {tx}");
    }
    // Ranged read straddling disk and memory.
    let r = store
        .read("a/../b", LogOffset::new(10, 1), LogOffset::new(50, 1))
        .expect("read");
    let want: Vec<_> = expect
        .iter()
        .filter(|(o, _)| *o > LogOffset::new(10, 1) && *o <= LogOffset::new(50, 1))
        .map(|(o, _)| *o)
        .collect();
    assert_eq!(r.entries.iter().map(|e| e.offset).collect::<Vec<_>>(), want);
    assert!(r.from_disk > 0 && r.from_disk < r.entries.len());
    // Uncommitted entries are invisible, then discarded by terminate + restart.
    w.append(LogOffset::new(51, 0), "open").expect("append");
    w.flush().expect("flush mid-transaction");
    assert_eq!(
        store
            .read("a/../b", LogOffset::new(50, 2), LogOffset::MAX)
            .expect("read")
            .entries
            .len(),
        0
    );
    w.terminate().expect("terminate");
    let r = store
        .read("a/../b", LogOffset::ZERO, LogOffset::MAX)
        .expect("read");
    assert!(r.dead);
    assert_eq!(r.entries.len(), expect.len());
    let mut w = store.writer("a/../b").expect("restart");
    w.append(LogOffset::new(51, 0), "again")
        .expect("append after restart");
    w.commit().expect("commit");
    drop(w); // dropped without terminate: next writer recovers
    expect.push((LogOffset::new(51, 0), "again".into()));
    let w = store.writer("a/../b").expect("takeover");
    w.terminate().expect("terminate");
    drop(store);
    let store = Store::open_with(dir.path(), cfg).expect("reopen");
    let got = store
        .read("a/../b", LogOffset::ZERO, LogOffset::MAX)
        .expect("read");
    let got: Vec<_> = got
        .entries
        .iter()
        .map(|e| (e.offset, String::from_utf8(e.payload.to_vec()).unwrap()))
        .collect();
    assert_eq!(got, expect);
}
