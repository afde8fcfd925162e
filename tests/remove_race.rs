//! Removal racing readers: DESIGN seed 000 ("a reader follows a reference
//! into a file that a concurrent cleanup already deleted, and crashes").
//! The interleavings are forced through the file-system seam
//! (`SimFs::before_op`): the removal runs on the reader's own thread, at
//! the exact file operation where the reader has resolved the shape's file
//! and not yet read it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shapebuf::fs::{Fs, Op, SimFs};
use shapebuf::{Config, Error, LogOffset, ReadOutcome, Store, WaitOutcome};

const DIR: &str = "/db";

fn cfg(file_bytes: u64, max_open_files: usize) -> Config {
    Config {
        file_bytes,
        max_open_files,
        // Flushed entries leave memory: reads of them go to the files.
        retain_bytes: 0,
        flush_threads: 0,
        ..Config::default()
    }
}

/// Writes `txs` one-entry transactions to `id`, flushing each (so they are
/// on disk, and out of memory once trimmed).
fn fill(store: &Store, id: &str, txs: u64) -> (shapebuf::ShapeWriter, Vec<LogOffset>) {
    let mut w = store.writer(id).expect("writer");
    let mut all = Vec::new();
    for tx in 1..=txs {
        let o = LogOffset::new(tx, 0);
        w.append(o, format!("{id} {tx:04} {}", "z".repeat(30)))
            .expect("append");
        w.commit().expect("commit");
        w.flush().expect("flush");
        all.push(o);
    }
    (w, all)
}

fn offsets(r: &ReadOutcome) -> Vec<LogOffset> {
    r.entries.iter().map(|e| e.offset).collect()
}

/// The shape's log files (and tombstone) left in the directory.
fn files_of(fs: &SimFs) -> Vec<String> {
    fs.read_dir(&Path::new(DIR).join("shapes"))
        .expect("list")
        .into_iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".log") || n.ends_with(".removed"))
        .collect()
}

fn is_removed(r: shapebuf::Result<ReadOutcome>) -> bool {
    matches!(r, Err(Error::ShapeRemoved(_)))
}

/// Checks what follows any removal of "s": later reads fail with a typed
/// error, handles never see the new shape with the same id, the new shape
/// starts empty, and the files are gone once the reads are.
/// `others` is how many files other shapes have.
fn after_removal(store: &Store, fs: &SimFs, old: &shapebuf::ShapeHandle, others: usize) {
    // The removed state goes with the epoch (two advances).
    // (Other tests' threads pinned meanwhile may hold the epoch back.)
    for _ in 0..10_000 {
        store.collect();
        if files_of(fs).len() == others {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(files_of(fs).len(), others, "files left: {:?}", files_of(fs));
    assert!(is_removed(old.read(LogOffset::ZERO, LogOffset::MAX)));
    assert_eq!(
        old.wait_for(LogOffset::ZERO, Duration::from_millis(1)),
        WaitOutcome::Removed
    );
    assert!(matches!(
        store.read("s", LogOffset::ZERO, LogOffset::MAX),
        Err(Error::UnknownShape(_))
    ));
    let mut w = store.writer("s").expect("recreate");
    assert_eq!(
        store
            .read("s", LogOffset::ZERO, LogOffset::MAX)
            .map(|r| r.entries.len())
            .ok(),
        Some(0)
    );
    w.append(LogOffset::new(500, 0), "new").expect("append");
    w.commit().expect("commit");
    w.terminate().expect("terminate");
    let r = store
        .read("s", LogOffset::ZERO, LogOffset::MAX)
        .expect("new shape");
    assert_eq!(offsets(&r), [LogOffset::new(500, 0)]);
    assert!(is_removed(old.read(LogOffset::ZERO, LogOffset::MAX)));
    // And after a restart, only the new shape is there.
    drop(old.clone());
}

#[test]
fn reader_resolved_the_file_then_the_removal_deletes_it_then_the_reader_reads_it() {
    let fs = SimFs::new();
    let store =
        Store::open_with_fs(Path::new(DIR), cfg(200, 64), Arc::new(fs.clone())).expect("open");
    let (w, all) = fill(&store, "s", 30);
    w.terminate().expect("terminate");
    let h = store.handle("s").expect("handle");
    // Open it for reading (recovery reads the files), then force the race
    // on the next read's first positional read.
    assert_eq!(
        offsets(&h.read(LogOffset::ZERO, LogOffset::MAX).expect("read")),
        all
    );
    assert!(files_of(&fs).len() > 3, "the workload must roll files");

    let ran = Arc::new(AtomicBool::new(false));
    let (s2, fs2, ran2) = (store.clone(), fs.clone(), Arc::clone(&ran));
    fs.before_op(Op::Read, 0, move || {
        let removed = s2.remove("s").expect("remove");
        assert!(removed.had_files);
        // The removal is durable (a tombstone) but the files stay while
        // this read holds them.
        assert!(files_of(&fs2).iter().any(|n| n.ends_with(".removed")));
        ran2.store(true, SeqCst);
    });
    let read = h
        .read(LogOffset::ZERO, LogOffset::MAX)
        .expect("the read in flight");
    assert!(ran.load(SeqCst), "the removal must run mid-read");
    assert_eq!(offsets(&read), all, "the read in flight is exact");
    store.collect();
    after_removal(&store, &fs, &h, 0);

    drop((h, store));
    let store =
        Store::open_with_fs(Path::new(DIR), cfg(200, 64), Arc::new(fs.clone())).expect("reopen");
    let r = store
        .read("s", LogOffset::ZERO, LogOffset::MAX)
        .expect("read");
    assert_eq!(offsets(&r), [LogOffset::new(500, 0)]);
}

/// The shape is open when a read resolves its file, then closes (its
/// writer terminates a small log) and is removed before the read opens
/// the file: the read holds the log of the shape's former state, and the
/// removal of the now-closed shape must not delete the file under it.
#[test]
fn a_closed_shape_removed_under_a_read_that_holds_its_former_state() {
    let fs = SimFs::new();
    // Two descriptors: the read's and the tombstone's; other shapes' reads
    // evict the writer's cached descriptor so that the read opens the file.
    let store =
        Store::open_with_fs(Path::new(DIR), cfg(1 << 20, 2), Arc::new(fs.clone())).expect("open");
    for t in 0..4 {
        let (w, _) = fill(&store, &format!("t{t}"), 2);
        w.terminate().expect("terminate");
    }
    let (w, all) = fill(&store, "s", 5);
    let h = store.handle("s").expect("handle");
    for _ in 0..3 {
        for t in 0..4 {
            store
                .read(format!("t{t}"), LogOffset::ZERO, LogOffset::MAX)
                .expect("read t");
        }
    }
    let ran = Arc::new(AtomicBool::new(false));
    let (s2, ran2) = (store.clone(), Arc::clone(&ran));
    let w = Mutex::new(Some(w));
    fs.before_op(Op::Open, 0, move || {
        let w = w.lock().unwrap().take().expect("once");
        w.terminate().expect("terminate closes the small shape");
        s2.remove("s").expect("remove the closed shape");
        ran2.store(true, SeqCst);
    });
    let read = h.read(LogOffset::ZERO, LogOffset::MAX);
    assert!(
        ran.load(SeqCst),
        "the removal must run between resolve and open"
    );
    assert_eq!(
        offsets(&read.expect("the read in flight finishes from the file")),
        all
    );
    store.collect();
    after_removal(&store, &fs, &h, 4);
}

/// The removal wins: it completes before the reader resolves anything.
/// The reader gets the typed error, never an I/O error about a missing
/// file, for an open and for a closed shape.
#[test]
fn the_removal_wins_before_the_reader_resolves() {
    for open in [false, true] {
        let fs = SimFs::new();
        let store =
            Store::open_with_fs(Path::new(DIR), cfg(200, 64), Arc::new(fs.clone())).expect("open");
        let (w, _) = fill(&store, "s", 12);
        w.terminate().expect("terminate");
        let h = store.handle("s").expect("handle");
        if open {
            h.read(LogOffset::ZERO, LogOffset::MAX).expect("open it");
        }
        store.remove("s").expect("remove");
        store.collect();
        assert!(
            is_removed(h.read(LogOffset::ZERO, LogOffset::MAX)),
            "open: {open}"
        );
        after_removal(&store, &fs, &h, 0);
    }
}

/// A removal racing real readers on real files, many rounds: every read
/// is exact or `ShapeRemoved`, never an I/O error or partial data.
#[test]
fn removals_racing_readers_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(dir.path(), cfg(300, 8)).expect("open");
    for round in 0..40u64 {
        let id = format!("s{}", round % 3);
        let (w, all) = fill(&store, &id, 10);
        if round % 2 == 0 {
            w.terminate().expect("terminate");
        } else {
            drop(w);
        }
        let h = store.handle(&id).expect("handle");
        std::thread::scope(|s| {
            for _ in 0..2 {
                let (h, all) = (h.clone(), &all);
                s.spawn(move || loop {
                    match h.read(LogOffset::ZERO, LogOffset::MAX) {
                        Ok(r) => assert_eq!(&offsets(&r), all, "round {round}"),
                        Err(Error::ShapeRemoved(_)) => return,
                        Err(e) => panic!("round {round}: {e}"),
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(2));
            store.remove(&id).expect("remove");
        });
    }
    for _ in 0..3 {
        store.collect();
    }
    let left: Vec<_> = std::fs::read_dir(dir.path().join("shapes"))
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| !n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(left.is_empty(), "files left: {left:?}");
}
