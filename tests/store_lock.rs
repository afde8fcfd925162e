//! One store per directory: while a store (or any writer or handle of it)
//! lives, opening the same directory again is refused with
//! `Error::Locked`, on the real file system and on `SimFs`; once every
//! owner is gone the directory opens again with its data. (Across
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

    // A handle keeps the store, and so its directory, in use.
    let h = store.handle("s").expect("handle");
    drop((w, store));
    let err = open().expect_err("refused while a handle lives");
    assert!(matches!(err, Error::Locked(_)), "{err}");
    assert!(err.to_string().contains("in use"), "{err}");
    drop(h);

    let again = open().expect("reopen once every owner is gone");
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
