//! One store per directory: while a store lives, opening the same
//! directory again is refused with `Error::Locked`, on the real file system
//! and on `SimFs`; once the last `Store` is dropped (closed) the directory
//! opens again with its data, even while a handle of it lives. (Across
//! processes, and a killed holder releasing it: tests/sigkill.rs.)
use std::path::Path;
use std::sync::Arc;

use shapebuf::fs::{Fs, SimFs};
use shapebuf::{Config, Error, LogOffset, Store};

fn check(open: &dyn Fn() -> shapebuf::Result<Store>) {
    let store = open().expect("first open");
    let mut w = store.writer("s").expect("writer");
    w.append(LogOffset::new(1, 0), "x").expect("append");
    w.commit().expect("commit");
    w.flush().expect("flush");
    assert!(
        matches!(open(), Err(Error::Locked(_))),
        "second open while the first lives"
    );

    // Dropping the last `Store` closes it (issue 22 item 5): the directory
    // opens again at once, although a handle still lives; the handle
    // answers `Closed`.
    let h = store.handle("s").expect("handle");
    drop((w, store));
    let again = open().expect("reopen once the last store is dropped");
    assert!(matches!(
        h.read(LogOffset::ZERO, LogOffset::MAX),
        Err(Error::Closed)
    ));
    drop(h);

    let out = again
        .read("s", LogOffset::ZERO, LogOffset::MAX)
        .expect("read");
    assert_eq!(out.entries.len(), 1);
}

#[test]
fn a_directory_opens_in_one_store_at_a_time_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    check(&|| Store::open(dir.path()));
}

#[test]
fn a_directory_opens_in_one_store_at_a_time_on_simfs() {
    let fs = SimFs::new();
    check(&|| Store::open_with_fs("/db", Config::default(), Arc::new(fs.clone())));
    // Different directories do not share a lock.
    let a = Store::open_with_fs("/a", Config::default(), Arc::new(fs.clone())).expect("a");
    let b = Store::open_with_fs("/b", Config::default(), Arc::new(fs.clone())).expect("b");
    drop((a, b));
    // A power loss ends every holder.
    let held = fs.lock(Path::new("/c/LOCK")).expect("lock");
    let rebooted = fs.after_power_loss(0);
    rebooted
        .lock(Path::new("/c/LOCK"))
        .expect("free after a power loss");
    drop(held);
}
