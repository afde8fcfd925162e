//! Issue 22 item 5: `Store::close` makes every live writer's committed data
//! durable, makes later calls on writers and handles that outlive it fail
//! with `Error::Closed`, and releases the directory, so that the same
//! process opens it again at once. Dropping the last `Store` does the same.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shapebuf::{Config, Error, LogOffset, Store};

/// No timer flushes during these tests: whatever is durable, a close made so.
fn cfg() -> Config {
    Config {
        flush_interval: Duration::from_secs(3600),
        ..Config::default()
    }
}

#[test]
fn close_with_a_writer_and_a_handle_on_other_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(dir.path(), cfg()).expect("open");
    let mut w = store.writer("s").expect("writer");
    w.append(LogOffset::new(1, 0), "first").expect("append");
    w.commit().expect("commit");
    let h = store.handle("s").expect("handle");
    let started = Arc::new(AtomicBool::new(false));

    // The writer's owner: commits until the store is closed under it.
    let writer = {
        let started = Arc::clone(&started);
        std::thread::spawn(move || {
            let mut last_ok = LogOffset::new(1, 0);
            for tx in 2.. {
                let r = w
                    .append(LogOffset::new(tx, 0), format!("tx {tx}"))
                    .and_then(|()| w.append(LogOffset::new(tx, 1), "more"))
                    .and_then(|()| w.commit());
                started.store(true, Ordering::Release);
                match r {
                    Ok(last) => last_ok = last,
                    Err(Error::Closed) => break,
                    Err(e) => panic!("writer: {e}"),
                }
            }
            // Every later call fails the same way.
            assert!(matches!(w.flush(), Err(Error::Closed)));
            assert!(matches!(w.terminate(), Err(Error::Closed)));
            last_ok
        })
    };
    // A reader: reads until the store is closed under it.
    let reader = std::thread::spawn(move || {
        let mut reads = 0u64;
        loop {
            match h.read(LogOffset::ZERO, LogOffset::MAX) {
                Ok(out) => {
                    assert!(!out.entries.is_empty());
                    reads += 1;
                }
                Err(Error::Closed) => break,
                Err(e) => panic!("reader: {e}"),
            }
        }
        assert!(matches!(
            h.visit(LogOffset::ZERO, LogOffset::MAX, |_| {}),
            Err(Error::Closed)
        ));
        reads
    });
    while !started.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    std::thread::sleep(Duration::from_millis(50));
    let other = store.clone();
    store.close().expect("close");
    // The lock is released at once, although a writer and a handle live.
    let again = Store::open_with(dir.path(), cfg()).expect("reopen in the same process");
    let last_ok = writer.join().expect("writer thread");
    let reads = reader.join().expect("reader thread");
    assert!(reads > 0);
    assert!(matches!(other.writer("t"), Err(Error::Closed)));
    assert!(matches!(other.handle("s"), Err(Error::Closed)));
    assert!(matches!(
        other.read("s", LogOffset::ZERO, LogOffset::MAX),
        Err(Error::Closed)
    ));
    drop(other);
    // Every commit that returned Ok before the close is durable, and
    // nothing after.
    let out = again
        .read("s", LogOffset::ZERO, LogOffset::MAX)
        .expect("read");
    assert_eq!(out.entries.last().expect("entries").offset, last_ok);
    assert!(
        last_ok > LogOffset::new(1, 0),
        "the writer committed meanwhile"
    );
    let expected = 1 + 2 * (last_ok.tx - 1);
    assert_eq!(out.entries.len() as u64, expected);
}

#[test]
fn dropping_the_last_store_closes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(dir.path(), cfg()).expect("open");
    let mut ws: Vec<_> = (0..10)
        .map(|i| {
            let mut w = store.writer(format!("s{i}")).expect("writer");
            w.append(LogOffset::new(1, 0), "a").expect("append");
            w.commit().expect("commit");
            w
        })
        .collect();
    let clone = store.clone();
    drop(store);
    // A clone still lives: the store is open.
    ws[0]
        .append(LogOffset::new(2, 0), "b")
        .expect("append while a clone lives");
    ws[0].commit().expect("commit");
    drop(clone);
    for w in &mut ws {
        assert!(matches!(
            w.append(LogOffset::new(3, 0), "c"),
            Err(Error::Closed)
        ));
    }
    let again = Store::open_with(dir.path(), cfg()).expect("reopen after the last drop");
    for i in 0..10 {
        let out = again
            .read(format!("s{i}"), LogOffset::ZERO, LogOffset::MAX)
            .expect("read");
        assert_eq!(out.entries.len(), if i == 0 { 2 } else { 1 }, "shape s{i}");
    }
    drop(ws);
}

#[test]
fn a_writer_opened_after_close_is_refused_and_closing_twice_is_harmless() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(dir.path(), cfg()).expect("open");
    let mut w = store.writer("s").expect("writer");
    w.append(LogOffset::new(1, 0), "a").expect("append");
    w.commit().expect("commit");
    let h = store.handle("s").expect("handle");
    let clone = store.clone();
    store.close().expect("close");
    clone.clone().close().expect("a second close does nothing");
    assert!(matches!(clone.writer("s"), Err(Error::Closed)));
    assert!(matches!(h.store().writer("s"), Err(Error::Closed)));
    assert!(matches!(w.remove(), Err(Error::Closed)));
    drop(clone);
    let again = Store::open(dir.path()).expect("reopen");
    assert_eq!(
        again
            .read("s", LogOffset::ZERO, LogOffset::MAX)
            .expect("read")
            .entries
            .len(),
        1
    );
}
