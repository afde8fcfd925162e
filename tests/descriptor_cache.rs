//! The descriptor cache never closes a file under a flush or a read, and
//! never holds more than `Config::max_open_files` open, whatever the
//! interleaving. Forced deterministically through `SimFs::before_op`, with
//! a cache of one descriptor (SimFs counts live handles, as a kernel counts
//! descriptors):
//!
//! - a flush holds its shape's file (between its write and its sync): a
//!   read of the same shape shares the descriptor, and a read of another
//!   shape waits for it instead of opening a second one; both then finish
//!   exactly;
//! - a read holds its shape's file (between resolving it and reading): a
//!   flush of another shape waits for it; both then finish exactly.

use std::sync::Arc;
use std::time::Duration;

use shapebuf::fs::{Op, SimFs};
use shapebuf::{Config, LogOffset, Store};

fn config() -> Config {
    Config {
        max_open_files: 1,
        // Flushes run on the calling thread: the hooks below fire on it.
        flush_threads: 0,
        ..Config::default()
    }
}

fn payloads(store: &Store, id: &str) -> Vec<String> {
    store
        .read(id, LogOffset::ZERO, LogOffset::MAX)
        .expect("read")
        .entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.payload).into_owned())
        .collect()
}

/// A store with shapes `a` and `b`, one flushed entry each, closed again.
fn setup() -> (SimFs, Store) {
    let fs = SimFs::new();
    let store = Store::open_with_fs("/db", config(), Arc::new(fs.clone())).expect("open");
    for id in ["a", "b"] {
        let mut w = store.writer(id).expect("writer");
        w.append(LogOffset::new(1, 0), format!("{id}1"))
            .expect("append");
        w.commit().expect("commit");
        w.terminate().expect("terminate");
    }
    (fs, store)
}

/// Whether `t` is still running after a while (a thread waiting for a
/// descriptor). A correct cache keeps it waiting however slow the machine.
fn still_waiting<T>(t: &std::thread::JoinHandle<T>) -> bool {
    std::thread::sleep(Duration::from_millis(100));
    !t.is_finished()
}

type Slot<T> = Arc<std::sync::Mutex<Option<T>>>;

fn slot<T>() -> Slot<T> {
    Arc::new(std::sync::Mutex::new(None))
}

fn take<T>(s: &Slot<T>) -> T {
    s.lock().expect("slot").take().expect("the hook ran")
}

#[test]
fn a_flush_in_progress_keeps_its_file_and_the_bound() {
    let (fs, store) = setup();
    let mut w = store.writer("a").expect("writer");
    w.append(LogOffset::new(2, 0), "a2").expect("append");
    w.commit().expect("commit");
    let seen = slot();
    {
        let (store, fs2, seen) = (store.clone(), fs.clone(), Arc::clone(&seen));
        // The flush's sync: its write is done, its lease on a's file held.
        fs.before_op(Op::Sync, 0, move || {
            let opens = fs2.ops_of(Op::Open) + fs2.ops_of(Op::Create);
            // A read of the same shape shares the flush's descriptor.
            let a = payloads(&store, "a");
            let shared = fs2.ops_of(Op::Open) + fs2.ops_of(Op::Create) == opens;
            // A read of another shape needs a second descriptor: it waits.
            let reader = std::thread::spawn(move || payloads(&store, "b"));
            let waited = still_waiting(&reader);
            *seen.lock().expect("seen") = Some((a, shared, waited, fs2.open_handles(), reader));
        });
    }
    w.flush().expect("flush");
    let (a, shared, waited, handles, reader) = take(&seen);
    assert_eq!(a, ["a1", "a2"], "the read during the flush is exact");
    assert!(
        shared,
        "a read of the flushing shape opened a second descriptor"
    );
    assert!(waited, "a read of another shape opened past the bound");
    assert!(handles <= 1, "{handles} files open with a bound of 1");
    // Once the flush let go, the other read gets its descriptor.
    assert_eq!(reader.join().expect("reader"), ["b1"]);
    assert!(store.peak_open_files() <= 1);
    assert!(
        fs.peak_open_handles() <= 1,
        "{} handles at once",
        fs.peak_open_handles()
    );
    w.terminate().expect("terminate");
    // And the flush that held the file through all this is durable.
    drop(store);
    let rebooted = fs.after_power_loss(0);
    let store = Store::open_with_fs("/db", config(), Arc::new(rebooted)).expect("reopen");
    assert_eq!(payloads(&store, "a"), ["a1", "a2"]);
}

#[test]
fn a_read_in_progress_keeps_its_file_and_the_bound() {
    let (fs, store) = setup();
    let mut w = store.writer("b").expect("writer");
    w.append(LogOffset::new(2, 0), "b2").expect("append");
    w.commit().expect("commit");
    let writer = Arc::new(std::sync::Mutex::new(Some(w)));
    let seen = slot();
    {
        let (fs2, writer, seen) = (fs.clone(), Arc::clone(&writer), Arc::clone(&seen));
        // The next positional read: the read of `a` below (recovering the
        // closed shape) holds its lease on a's file.
        fs.before_op(Op::Read, 0, move || {
            let mut w = writer.lock().expect("writer").take().expect("once");
            // A flush of another shape needs a second descriptor: it waits.
            let flush = std::thread::spawn(move || {
                let f = w.flush();
                (w, f)
            });
            let waited = still_waiting(&flush);
            *seen.lock().expect("seen") = Some((waited, fs2.open_handles(), flush));
        });
    }
    assert_eq!(payloads(&store, "a"), ["a1"], "the read is exact");
    let (waited, handles, flush) = take(&seen);
    assert!(waited, "a flush of another shape opened past the bound");
    assert!(handles <= 1, "{handles} files open with a bound of 1");
    let (w, flushed) = flush.join().expect("flush");
    flushed.expect("the flush went on once the read let go");
    w.terminate().expect("terminate");
    assert_eq!(payloads(&store, "b"), ["b1", "b2"]);
    assert!(
        fs.peak_open_handles() <= 1,
        "{} handles at once",
        fs.peak_open_handles()
    );
}
