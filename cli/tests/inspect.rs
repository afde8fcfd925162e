//! `shapebuf ls`, `verify`, `cat` and `stats` run as a binary on a store
//! built with the library, then damaged: one bit of an acknowledged entry
//! flipped in one shape's log (the batch after it proves it was synced, so
//! the shape is quarantined, not repaired), and in another store a first
//! file's header made unreadable (the shape's id cannot be read). Each
//! command's output and exit status are checked exactly, as are the
//! damaged files' bytes afterwards (inspection never rewrites them), the
//! lock error while a process holds the store, and the refusals of a
//! directory that is not a store and of an unknown shape.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, PoisonError};

use shapebuf::{LogOffset, Store};

/// One test at a time. A child process spawned by one test holds a copy of
/// every descriptor of this process from its fork to its exec, another
/// test's store `LOCK` included: that test's drop and reopen of its store
/// could then find the lock still held (`flock` locks belong to the open
/// file, not to the descriptor) and fail with `Error::Locked`.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn shapebuf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shapebuf"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("run shapebuf")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("UTF-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The payload that `damage` flips a bit of: in `gamma`'s first batch.
const TARGET: &[u8] = b"gamma-first-batch-payload";

/// Builds the store: `alpha` (3 text entries over 2 transactions, one file
/// of 2 batches), `beta` (one binary entry), `gamma` (2 batches: the
/// target payload, then one more transaction), every writer terminated,
/// the store dropped.
fn build(dir: &Path) {
    let store = Store::open(dir).expect("open");
    let mut w = store.writer("alpha").expect("writer");
    w.append(LogOffset::new(1, 0), "created").expect("append");
    w.append(LogOffset::new(1, 1), "say \"hi\"\n")
        .expect("append");
    w.commit().expect("commit");
    w.flush().expect("flush");
    w.append(LogOffset::new(2, 0), "paid").expect("append");
    w.commit().expect("commit");
    w.terminate().expect("terminate");

    let mut w = store.writer("beta").expect("writer");
    w.append(LogOffset::new(5, 0), vec![0xff, 0x00, 0xfe])
        .expect("append");
    w.commit().expect("commit");
    w.terminate().expect("terminate");

    let mut w = store.writer("gamma").expect("writer");
    w.append(LogOffset::new(1, 0), TARGET).expect("append");
    w.commit().expect("commit");
    w.flush().expect("flush");
    w.append(LogOffset::new(2, 0), "later").expect("append");
    w.commit().expect("commit");
    w.terminate().expect("terminate");
    drop(store);
}

/// The log files of `dir`'s store whose bytes contain `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("shapes"))
        .expect("list shapes/")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let b = std::fs::read(p).expect("read");
            b.windows(needle.len()).any(|w| w == needle)
        })
        .collect();
    v.sort();
    v
}

/// Flips one bit in the middle of `gamma`'s first payload; returns the
/// damaged file.
fn damage(dir: &Path) -> PathBuf {
    let files = files_holding(dir, TARGET);
    assert_eq!(files.len(), 1, "gamma's one log file: {files:?}");
    let path = files[0].clone();
    let mut b = std::fs::read(&path).expect("read");
    let at = b
        .windows(TARGET.len())
        .position(|w| w == TARGET)
        .expect("target payload");
    b[at + TARGET.len() / 2] ^= 0x10;
    std::fs::write(&path, &b).expect("write");
    path
}

#[test]
fn inspecting_a_damaged_store() {
    let _serial = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    build(dir);
    let d = dir.to_str().expect("UTF-8 path");

    // Before the damage: everything clean, status 0.
    let o = shapebuf(&["verify", d]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "verified 3 shapes: 0 damaged\n");

    let damaged = damage(dir);
    let damaged_bytes = std::fs::read(&damaged).expect("read");

    let o = shapebuf(&["ls", d]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "ls finds the damage: {}",
        stderr(&o)
    );
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(lines[0], "id\tentries\tbytes\tlast");
    assert_eq!(lines[1], "alpha\t3\t20\t2/0");
    assert_eq!(lines[2], "beta\t1\t3\t5/0");
    let gamma = format!("gamma\t-\t-\t-\tcorrupt log file {}: ", damaged.display());
    assert!(lines[3].starts_with(&gamma), "{}", lines[3]);

    let o = shapebuf(&["verify", d]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let quarantined = format!(
        "quarantined\tgamma\tcorrupt log file {}: ",
        damaged.display()
    );
    assert!(lines[0].starts_with(&quarantined), "{}", lines[0]);
    assert!(lines[0].len() > quarantined.len(), "a reason: {}", lines[0]);
    assert_eq!(lines[1], "verified 3 shapes: 1 damaged");

    let o = shapebuf(&["cat", d, "alpha"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        concat!(
            r#"{"offset":"1/0","payload":"created"}"#,
            "\n",
            r#"{"offset":"1/1","payload":"say \"hi\"\n"}"#,
            "\n",
            r#"{"offset":"2/0","payload":"paid"}"#,
            "\n"
        )
    );
    let o = shapebuf(&["cat", d, "alpha", "--after", "1/0"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 2);
    assert!(
        stdout(&o).starts_with(r#"{"offset":"1/1""#),
        "{}",
        stdout(&o)
    );
    let o = shapebuf(&["cat", d, "alpha", "--after", "2/0"]);
    assert_eq!((o.status.code(), stdout(&o)), (Some(0), String::new()));
    let o = shapebuf(&["cat", d, "beta"]);
    assert_eq!(
        stdout(&o),
        "{\"offset\":\"5/0\",\"payload\":{\"base64\":\"/wD+\"}}\n"
    );
    let o = shapebuf(&["cat", d, "--hex", "hex:616c706861", "--after", "1/1"]);
    assert_eq!(
        (o.status.code(), stdout(&o)),
        (
            Some(0),
            "{\"offset\":\"2/0\",\"payload\":\"paid\"}\n".to_string()
        )
    );

    // The damaged shape: status 1, the error on stderr, nothing on stdout.
    let o = shapebuf(&["cat", d, "gamma"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).contains("corrupt log file"), "{}", stderr(&o));

    // Bad input: status 2 and a message saying what is wrong.
    let o = shapebuf(&["cat", d, "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown shape nope"), "{}", stderr(&o));
    let o = shapebuf(&["cat", d, "alpha", "--after", "1-0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("TX/OP"), "{}", stderr(&o));
    let o = shapebuf(&["cat", d, "--hex", "abc"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("hexadecimal"), "{}", stderr(&o));

    let o = shapebuf(&["stats", d]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..4],
        ["shapes=3", "entries=4", "bytes=23", "corrupt=1"],
        "{out}"
    );
    // Then the store's own snapshot (Store::stats), key=value.
    let value = |key: &str| -> u64 {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {out}"));
        line[key.len() + 1..]
            .trim_end_matches('B')
            .parse()
            .expect("a number")
    };
    assert_eq!(value("quarantined"), 1, "{out}");
    assert_eq!(value("live_writers"), 0, "{out}");
    let peak = value("peak_open_files");
    assert!(peak >= 1, "the scan opened log files: {out}");

    // Inspection never rewrote the quarantined shape's file.
    assert_eq!(std::fs::read(&damaged).expect("read"), damaged_bytes);
}

#[test]
fn a_shape_whose_id_cannot_be_read_is_listed_by_path() {
    let _serial = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    build(dir);
    // `gamma`'s file header: its id length (bytes 32..36, docs/format.md)
    // made huge, so the id cannot be read; intact batches follow it.
    let files = files_holding(dir, TARGET);
    let path = files[0].clone();
    let mut b = std::fs::read(&path).expect("read");
    b[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&path, &b).expect("write");
    let d = dir.to_str().expect("UTF-8 path");

    let o = shapebuf(&["verify", d]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let head = format!("unreadable-id\t{}\t", path.display());
    assert!(lines[0].starts_with(&head), "{out}");
    assert!(lines[0].len() > head.len(), "a reason: {out}");
    assert_eq!(lines[1], "verified 3 shapes: 1 damaged");
    assert_eq!(std::fs::read(&path).expect("read"), b);
}

#[test]
fn a_store_held_by_a_running_process_is_refused() {
    let _serial = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    build(dir);
    let d = dir.to_str().expect("UTF-8 path");
    // This process holds the store, with a live writer.
    let store = Store::open(dir).expect("open");
    let mut w = store.writer("alpha").expect("writer");
    w.append(LogOffset::new(3, 0), "mine").expect("append");
    w.commit().expect("commit");
    for args in [
        vec!["ls", d],
        vec!["verify", d],
        vec!["cat", d, "alpha"],
        vec!["stats", d],
    ] {
        let o = shapebuf(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), "", "{args:?}");
        let err = stderr(&o);
        assert!(
            err.contains(&format!("store directory {d} is in use by another store")),
            "{args:?}: {err}"
        );
        assert!(err.contains("running process"), "{args:?}: {err}");
    }
    // The writer is still the only one, and works.
    w.flush().expect("flush");
    w.terminate().expect("terminate");
    drop(store);
    let o = shapebuf(&["cat", d, "alpha", "--after", "2/0"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "{\"offset\":\"3/0\",\"payload\":\"mine\"}\n");
}

#[test]
fn a_directory_that_is_not_a_store_is_refused_and_left_alone() {
    let _serial = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("missing");
    let m = missing.to_str().expect("UTF-8 path");
    for args in [vec!["ls", m], vec!["verify", m], vec!["stats", m]] {
        let o = shapebuf(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&o).contains("is not a shapebuf store"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    assert!(!missing.exists(), "not created");
    let d = tmp.path().to_str().expect("UTF-8 path");
    let o = shapebuf(&["ls", d]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        std::fs::read_dir(tmp.path()).expect("list").count(),
        0,
        "nothing written"
    );
}
