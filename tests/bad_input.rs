//! Bad input is an error with a clear message, never a panic, and never
//! changes what readers see: bad offsets, empty and huge payloads, unknown
//! shapes, a second writer, terminate/restart cycles, bad shape ids, and a
//! writer whose disk failed.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use shapebuf::fs::{Fs, FsFile, RealFs};
use shapebuf::{Config, Error, LogOffset, ReadOutcome, Store, MAX_ID, MAX_PAYLOAD};

fn o(tx: u64, op: u64) -> LogOffset {
    LogOffset::new(tx, op)
}

fn pairs(out: &ReadOutcome) -> Vec<(LogOffset, Bytes)> {
    out.entries
        .iter()
        .map(|e| (e.offset, e.payload.clone()))
        .collect()
}

fn all(store: &Store, id: &str) -> Vec<(LogOffset, Bytes)> {
    pairs(
        &store
            .read(id, LogOffset::ZERO, LogOffset::MAX)
            .expect("read"),
    )
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

#[test]
fn zero_and_non_increasing_offsets_are_rejected_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let mut w = store.writer("s").expect("writer");

    let e = w.append(LogOffset::ZERO, "zero").unwrap_err();
    assert!(matches!(e, Error::ZeroOffset), "{e:?}");
    assert!(e.to_string().contains("reserved"), "{e}");

    w.append(o(5, 3), "a").expect("append");
    for bad in [o(5, 3), o(5, 2), o(4, 9), o(0, 1), o(4, u64::MAX)] {
        match w.append(bad, "bad") {
            Err(Error::NonIncreasingOffset { last, got }) => {
                assert_eq!((last, got), (o(5, 3), bad));
            }
            other => panic!("append at {bad} after 5/3: {other:?}"),
        }
    }
    let msg = w.append(o(5, 3), "bad").unwrap_err().to_string();
    assert!(msg.contains("5/3") && msg.contains("greater"), "{msg}");
    assert_eq!(
        w.last_appended(),
        o(5, 3),
        "rejections do not move the writer"
    );

    // The writer is still usable, and readers never saw the rejects.
    w.append(o(5, 4), "b").expect("append");
    w.commit().expect("commit");
    let want = vec![(o(5, 3), b("a")), (o(5, 4), b("b"))];
    assert_eq!(all(&store, "s"), want);

    // Across terminate + restart and across reopen, the log continues after
    // its last committed entry: nothing at or below it is accepted.
    w.terminate().expect("terminate");
    let mut w = store.writer("s").expect("restart");
    assert!(matches!(
        w.append(o(5, 4), "dup"),
        Err(Error::NonIncreasingOffset { last, .. }) if last == o(5, 4)
    ));
    w.terminate().expect("terminate");
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    let mut w = store.writer("s").expect("writer after reopen");
    assert!(matches!(
        w.append(o(1, 0), "old"),
        Err(Error::NonIncreasingOffset { last, .. }) if last == o(5, 4)
    ));
    w.append(o(6, 0), "c").expect("append after reopen");
    w.commit().expect("commit");
    assert_eq!(all(&store, "s").len(), 3);
}

#[test]
fn empty_payloads_round_trip_through_memory_disk_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = Config {
        segment_capacity: 2,
        // A flush leaves nothing in memory: the second read is from disk.
        retain_bytes: 0,
        ..Config::default()
    };
    let store = Store::open_with(dir.path(), cfg.clone()).expect("open");
    let mut w = store.writer("empty").expect("writer");
    let want = vec![
        (o(1, 0), Bytes::new()),
        (o(1, 1), b("x")),
        (o(2, 0), Bytes::new()),
        (o(2, 1), Bytes::new()),
    ];
    for (off, p) in &want {
        w.append(*off, p.clone()).expect("append");
    }
    w.commit().expect("commit");
    let mem = store
        .read("empty", LogOffset::ZERO, LogOffset::MAX)
        .expect("read");
    assert_eq!((pairs(&mem), mem.from_disk), (want.clone(), 0));
    w.flush().expect("flush");
    let disk = store
        .read("empty", LogOffset::ZERO, LogOffset::MAX)
        .expect("read");
    assert_eq!((pairs(&disk), disk.from_disk), (want.clone(), 4));
    w.terminate().expect("terminate");
    drop(store);
    let store = Store::open_with(dir.path(), cfg).expect("reopen");
    assert_eq!(all(&store, "empty"), want);
    let tail = store.read("empty", o(1, 1), LogOffset::MAX).expect("read");
    assert_eq!(pairs(&tail), want[2..]);
}

#[test]
fn payloads_over_the_limit_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = Config {
        max_payload: 1024,
        ..Config::default()
    };
    let store = Store::open_with(dir.path(), cfg).expect("open");
    let mut w = store.writer("s").expect("writer");
    w.append(o(1, 0), vec![7u8; 1024])
        .expect("exactly the limit");
    let e = w.append(o(1, 1), vec![7u8; 1025]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::PayloadTooLarge {
                len: 1025,
                max: 1024
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("1025"), "{e}");
    w.append(o(1, 1), "fits").expect("the offset is still free");
    w.commit().expect("commit");
    assert_eq!(all(&store, "s").len(), 2);

    // A configured limit above the format's own is refused at open (it
    // could not be honoured), not silently lowered.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = Config {
        max_payload: MAX_PAYLOAD + 1,
        ..Config::default()
    };
    let e = Store::open_with(dir.path(), cfg).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidConfig {
                field: "max_payload",
                ..
            }
        ),
        "{e:?}"
    );
    // At the format's bound, a payload one byte over it is refused by
    // append, naming the field.
    let cfg = Config {
        max_payload: MAX_PAYLOAD,
        ..Config::default()
    };
    let store = Store::open_with(dir.path(), cfg).expect("open");
    let mut w = store.writer("s").expect("writer");
    let huge = Bytes::from(vec![0u8; MAX_PAYLOAD + 1]);
    let e = w.append(o(1, 0), huge).unwrap_err();
    assert!(
        matches!(e, Error::PayloadTooLarge { len, max } if len == MAX_PAYLOAD + 1 && max == MAX_PAYLOAD),
        "{e:?}"
    );
    assert!(e.to_string().contains("Config::max_payload"), "{e}");
}

#[test]
fn a_one_mebibyte_payload_round_trips_through_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = Config {
        retain_bytes: 0,
        ..Config::default()
    };
    let store = Store::open_with(dir.path(), cfg).expect("open");
    let big: Bytes = (0..1usize << 20)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let mut w = store.writer("big").expect("writer");
    w.append(o(1, 0), "before").expect("append");
    w.append(o(1, 1), big.clone()).expect("append 1 MiB");
    w.append(o(1, 2), "after").expect("append");
    w.commit().expect("commit");
    w.flush().expect("flush");
    let want = vec![
        (o(1, 0), b("before")),
        (o(1, 1), big),
        (o(1, 2), b("after")),
    ];
    let out = store
        .read("big", LogOffset::ZERO, LogOffset::MAX)
        .expect("read");
    assert_eq!((pairs(&out), out.from_disk), (want.clone(), 3));
    w.terminate().expect("terminate");
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(all(&store, "big"), want);
    let one = store.read("big", o(1, 0), o(1, 1)).expect("read");
    assert_eq!(pairs(&one), want[1..2]);
}

#[test]
fn unknown_shapes_are_errors_and_stay_unknown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let check = |store: &Store| {
        let e = store
            .read("nobody", LogOffset::ZERO, LogOffset::MAX)
            .unwrap_err();
        assert!(matches!(e, Error::UnknownShape(_)), "{e:?}");
        assert!(e.to_string().contains("nobody"), "{e}");
        let e = store.handle("nobody").unwrap_err();
        assert!(matches!(e, Error::UnknownShape(_)), "{e:?}");
        assert!(!store.contains("nobody"));
    };
    check(&store);
    let mut w = store.writer("somebody").expect("writer");
    w.append(o(1, 0), "x").expect("append");
    w.commit().expect("commit");
    w.terminate().expect("terminate");
    check(&store);
    assert_eq!(store.shape_count(), 1, "reads never create shapes");
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    check(&store);
    assert_eq!(store.shape_count(), 1);
}

#[test]
fn a_second_writer_while_one_lives_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let mut w = store.writer("s").expect("writer");
    w.append(o(1, 0), "a").expect("append");
    w.commit().expect("commit");
    let e = store.writer("s").unwrap_err();
    assert!(matches!(e, Error::WriterActive(_)), "{e:?}");
    assert!(e.to_string().contains("live writer"), "{e}");
    // The refusal disturbed nothing.
    w.append(o(2, 0), "b").expect("append");
    w.commit().expect("commit");
    assert_eq!(all(&store, "s").len(), 2);
    // Another shape is independent.
    store
        .writer("other")
        .expect("other shape")
        .terminate()
        .expect("terminate");
    // Dropped: the claim is released.
    drop(w);
    let w = store.writer("s").expect("after drop");
    assert!(matches!(store.writer("s"), Err(Error::WriterActive(_))));
    // Terminated: the claim is released too.
    w.terminate().expect("terminate");
    let w = store.writer("s").expect("after terminate");
    w.terminate().expect("terminate");
    assert_eq!(all(&store, "s").len(), 2);
}

#[test]
fn terminate_restart_terminate_repeatedly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let h = {
        let mut w = store.writer("s").expect("writer");
        w.append(o(1, 0), "a").expect("append");
        w.commit().expect("commit");
        let h = store.handle("s").expect("handle");
        let f = w.terminate().expect("terminate");
        assert_eq!(f.committed, o(1, 0));
        h
    };
    for round in 0..3 {
        // `terminate` consumes the writer, so a second terminate of the same
        // writer cannot be written; the next writer's terminate is fine,
        // with or without anything appended.
        let mut w = store.writer("s").expect("restart");
        assert!(h.is_live());
        if round == 1 {
            w.append(o(2, 0), "b").expect("append");
            w.commit().expect("commit");
        }
        if round == 2 {
            w.append(o(3, 0), "open, never committed").expect("append");
        }
        let f = w.terminate().expect("terminate again");
        assert_eq!(f.committed, h.committed(), "round {round}");
        assert!(!h.is_live());
        let out = h.read(LogOffset::ZERO, LogOffset::MAX).expect("read");
        assert!(out.dead, "round {round}");
        let want = if round == 0 { 1 } else { 2 };
        assert_eq!(out.entries.len(), want, "round {round}");
    }
    drop(h);
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(all(&store, "s"), vec![(o(1, 0), b("a")), (o(2, 0), b("b"))]);
}

#[test]
fn empty_and_over_long_shape_ids_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let e = store.writer("").unwrap_err();
    assert!(
        matches!(e, Error::BadShapeId { len: 0, max } if max == MAX_ID),
        "{e:?}"
    );
    let long = vec![b'x'; MAX_ID + 1];
    let e = store.writer(&long).unwrap_err();
    assert!(
        matches!(e, Error::BadShapeId { len, max } if len == MAX_ID + 1 && max == MAX_ID),
        "{e:?}"
    );
    assert!(e.to_string().contains(&(MAX_ID + 1).to_string()), "{e}");
    // Reading them is an error too (no such shape can exist).
    assert!(store.read("", LogOffset::ZERO, LogOffset::MAX).is_err());
    assert!(store.handle(&long).is_err());
    assert_eq!(store.shape_count(), 0, "nothing was created");

    // The longest allowed id works and survives a reopen.
    let longest = vec![b'y'; MAX_ID];
    let mut w = store.writer(&longest).expect("MAX_ID bytes");
    w.append(o(1, 0), "ok").expect("append");
    w.commit().expect("commit");
    w.terminate().expect("terminate");
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(
        store.shapes().expect("shapes"),
        vec![Bytes::from(longest.clone())]
    );
    let out = store
        .read(&longest, LogOffset::ZERO, LogOffset::MAX)
        .expect("read");
    assert_eq!(pairs(&out), vec![(o(1, 0), b("ok"))]);
}

/// A file system whose `sync_data` fails while `fail` is set.
#[derive(Debug)]
struct FailingFs {
    fail: Arc<AtomicBool>,
}

#[derive(Debug)]
struct FailingFile {
    inner: Arc<dyn FsFile>,
    fail: Arc<AtomicBool>,
}

impl FsFile for FailingFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, pos)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected fsync failure"));
        }
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
}

impl FailingFs {
    fn wrap(&self, f: Arc<dyn FsFile>) -> Arc<dyn FsFile> {
        Arc::new(FailingFile {
            inner: f,
            fail: Arc::clone(&self.fail),
        })
    }
}

impl Fs for FailingFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        RealFs.create_dir_all(dir)
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        RealFs.create(path).map(|f| self.wrap(f))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        RealFs.open(path).map(|f| self.wrap(f))
    }
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        RealFs.read_dir(dir)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealFs.sync_dir(dir)
    }
}

#[test]
fn a_writer_whose_flush_failed_refuses_every_later_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fail = Arc::new(AtomicBool::new(false));
    let fs = Arc::new(FailingFs {
        fail: Arc::clone(&fail),
    });
    let store = Store::open_with_fs(dir.path(), Config::default(), fs).expect("open");
    let mut w = store.writer("s").expect("writer");
    w.append(o(1, 0), "durable").expect("append");
    w.commit().expect("commit");
    w.flush().expect("flush");
    w.append(o(2, 0), "committed, not durable").expect("append");
    w.commit().expect("commit");

    fail.store(true, Ordering::SeqCst);
    let e = w.flush().unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert!(
        std::error::Error::source(&e).is_some(),
        "the io::Error is kept"
    );
    // The OS error is the source, not repeated in the message (std's
    // guideline: a chain printer prints each cause once).
    let source = std::error::Error::source(&e).expect("source").to_string();
    assert!(source.contains("injected fsync failure"), "{source}");
    assert!(!e.to_string().contains("injected fsync failure"), "{e}");
    fail.store(false, Ordering::SeqCst);

    // Every later call fails, even with the disk healthy again.
    let closed = |r: shapebuf::Result<()>, what: &str| match r {
        Err(Error::WriterClosed { .. }) => {}
        other => panic!("{what} after a failed flush: {other:?}"),
    };
    closed(w.append(o(3, 0), "x"), "append");
    closed(w.commit().map(drop), "commit");
    closed(w.flush().map(drop), "flush");
    closed(w.tick().map(drop), "tick");
    // Readers still see every committed entry (from memory).
    let want = vec![
        (o(1, 0), b("durable")),
        (o(2, 0), b("committed, not durable")),
    ];
    assert_eq!(all(&store, "s"), want);
    closed(w.terminate().map(drop), "terminate");
    assert_eq!(
        all(&store, "s"),
        want,
        "a failed terminate leaves the shape readable"
    );

    // A reopen recovers the shape: what was durable is there, the entry
    // whose sync failed may or may not be (here its write did reach the
    // file), and a writer continues after whichever is last.
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    let got = all(&store, "s");
    assert!(got == want || got == want[..1], "{got:?}");
    let mut w = store.writer("s").expect("writer after reopen");
    let next = o(got.last().expect("durable entry").0.tx + 1, 0);
    w.append(next, "after").expect("append");
    w.commit().expect("commit");
    w.terminate().expect("terminate");
    assert_eq!(all(&store, "s").len(), got.len() + 1);
}
