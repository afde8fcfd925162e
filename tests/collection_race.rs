//! Log-file collection racing readers (DESIGN failure 4: "compaction
//! deletes a file a reader still refers to"). The race is forced through the
//! file-system seam: the collector runs between the reader resolving a file
//! and reading it.

use std::path::Path;
use std::sync::Arc;

use shapebuf::fs::{Fs, Op, SimFs};
use shapebuf::{Config, Error, LogOffset, Store};

fn cfg() -> Config {
    Config {
        file_bytes: 200,
        ..Config::default()
    }
}

fn fill(store: &Store, txs: u64) -> Vec<LogOffset> {
    let mut w = store.writer("s").expect("writer");
    let mut all = Vec::new();
    for tx in 1..=txs {
        let o = LogOffset::new(tx, 0);
        w.append(o, format!("payload {tx:04} {}", "z".repeat(30)))
            .expect("append");
        w.commit().expect("commit");
        w.flush().expect("flush");
        all.push(o);
    }
    w.terminate().expect("terminate");
    all
}

fn offsets(r: &shapebuf::ReadOutcome) -> Vec<LogOffset> {
    r.entries.iter().map(|e| e.offset).collect()
}

#[test]
fn reader_resolves_file_then_collector_deletes_it_then_reader_reads_it() {
    let fs = SimFs::new();
    let dir = Path::new("/db");
    let store = Store::open_with_fs(dir, cfg(), Arc::new(fs.clone())).expect("open");
    let all = fill(&store, 30);
    let h = store.handle("s").expect("handle");
    let files_before = fs.read_dir(&dir.join("shapes")).expect("list").len();
    assert!(files_before > 3, "the workload must roll files");

    // The reader's first positional read happens after it resolved the
    // files to read; collect everything but the newest file right then.
    let collector = h.clone();
    let removed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r2 = Arc::clone(&removed);
    fs.before_op(Op::Read, 0, move || {
        let n = collector
            .collect_files_before(LogOffset::MAX)
            .expect("collect");
        r2.store(n, std::sync::atomic::Ordering::SeqCst);
    });
    let read = h.read(LogOffset::ZERO, LogOffset::MAX).expect("read");
    let removed = removed.load(std::sync::atomic::Ordering::SeqCst);
    assert!(removed > 0, "the collector must have run mid-read");
    assert_eq!(
        fs.read_dir(&dir.join("shapes")).expect("list").len(),
        files_before - removed,
        "the files are gone from the directory"
    );
    assert_eq!(offsets(&read), all, "the in-flight read is exact");

    // A read that starts later below the earliest offset is refused with
    // the earliest available offset; reading from there is exact.
    let err = h
        .read(LogOffset::ZERO, LogOffset::MAX)
        .expect_err("collected");
    let Error::OffsetCollected { earliest, .. } = err else {
        panic!("unexpected error {err}");
    };
    let rest = h.read(earliest, LogOffset::MAX).expect("read rest");
    let want: Vec<_> = all.iter().copied().filter(|o| *o > earliest).collect();
    assert!(!want.is_empty());
    assert_eq!(offsets(&rest), want);

    // And so after a restart (handles keep the store, and its lock, alive).
    drop((h, store));
    let store = Store::open_with_fs(dir, cfg(), Arc::new(fs.clone())).expect("reopen");
    assert!(matches!(
        store.read("s", LogOffset::ZERO, LogOffset::MAX),
        Err(Error::OffsetCollected { earliest: e, .. }) if e == earliest
    ));
    assert_eq!(
        offsets(&store.read("s", earliest, LogOffset::MAX).expect("read")),
        want
    );
    // The writer continues after the collected prefix.
    let mut w = store.writer("s").expect("writer");
    w.append(LogOffset::new(100, 0), "next").expect("append");
    w.commit().expect("commit");
    assert_eq!(
        store
            .read("s", earliest, LogOffset::MAX)
            .expect("read")
            .entries
            .len(),
        want.len() + 1
    );
}

#[test]
fn concurrent_readers_never_see_a_gap_while_files_are_collected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(dir.path(), cfg()).expect("open");
    let all = fill(&store, 200);
    let h = store.handle("s").expect("handle");
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let h = h.clone();
            let all = &all;
            s.spawn(move || {
                let mut collected = 0;
                for i in 0..400u64 {
                    let start = all[((i * 7 + t * 13) % 150) as usize];
                    match h.read(start, LogOffset::MAX) {
                        Ok(r) => {
                            let want: Vec<_> = all.iter().copied().filter(|o| *o > start).collect();
                            assert_eq!(offsets(&r), want, "read after {start}");
                        }
                        Err(Error::OffsetCollected { after, earliest }) => {
                            assert!(after < earliest);
                            collected += 1;
                        }
                        Err(e) => panic!("unexpected error {e}"),
                    }
                }
                collected
            });
        }
        for tx in (10..=190).step_by(10) {
            h.collect_files_before(LogOffset::new(tx, 0))
                .expect("collect");
        }
    });
    let err = h
        .read(LogOffset::ZERO, LogOffset::MAX)
        .expect_err("prefix gone");
    assert!(matches!(err, Error::OffsetCollected { .. }));
}
