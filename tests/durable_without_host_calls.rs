//! Issue 22 item 2: committed data becomes durable within
//! `Config::flush_interval` with no further call from the host. A child
//! process (this test binary, run again with an environment variable and an
//! `--exact` filter) appends and commits, says so, and sleeps
//! without calling anything; the parent waits twice the interval, SIGKILLs
//! it (`Child::kill`), reopens the store and finds the entries. The twin
//! runs the same child with an interval of an hour: after the kill the
//! entries are not there, so the check can fail.
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use shapebuf::{Config, LogOffset, Store};

const CHILD_DIR: &str = "SHAPEBUF_DURABLE_CHILD_DIR";
const CHILD_INTERVAL_MS: &str = "SHAPEBUF_DURABLE_CHILD_INTERVAL_MS";

/// The child's part: does nothing unless run as the child.
#[test]
fn child_commits_and_sleeps() {
    let (Ok(dir), Ok(ms)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_INTERVAL_MS)) else {
        return;
    };
    let cfg = Config {
        flush_interval: Duration::from_millis(ms.parse().expect("interval")),
        ..Config::default()
    };
    let store = Store::open_with(&dir, cfg).expect("open");
    let mut w = store.writer("orders").expect("writer");
    w.append(LogOffset::new(1, 0), "a").expect("append");
    w.append(LogOffset::new(1, 1), "b").expect("append");
    w.commit().expect("commit");
    w.append(LogOffset::new(2, 0), "c").expect("append");
    w.commit().expect("commit");
    // An open transaction: never committed, never to be seen.
    w.append(LogOffset::new(3, 0), "open").expect("append");
    println!("\nshapebuf-child: committed");
    // No flush, no tick, no append: only the store's own thread may act.
    std::thread::sleep(Duration::from_secs(60));
    drop(w);
}

/// Runs the child on `dir` with `interval`, kills it `wait` after it
/// committed, and returns the entries a reopened store reads.
fn commit_then_kill(dir: &Path, interval: Duration, wait: Duration) -> Vec<(LogOffset, Vec<u8>)> {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "child_commits_and_sleeps",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_INTERVAL_MS, interval.as_millis().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines
            .next()
            .expect("the child ended before committing")
            .expect("read child");
        if line.contains("shapebuf-child: committed") {
            break;
        }
    }
    std::thread::sleep(wait);
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    let store = Store::open(dir).expect("reopen after the kill");
    match store.read("orders", LogOffset::ZERO, LogOffset::MAX) {
        Ok(out) => out
            .entries
            .iter()
            .map(|e| (e.offset, e.payload.to_vec()))
            .collect(),
        // Never flushed: the shape has no file at all.
        Err(shapebuf::Error::UnknownShape(_)) => Vec::new(),
        Err(e) => panic!("read after the kill: {e}"),
    }
}

#[test]
fn committed_entries_survive_sigkill_after_twice_the_interval() {
    if std::env::var(CHILD_DIR).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let interval = Duration::from_millis(50);
    let got = commit_then_kill(dir.path(), interval, 2 * interval);
    assert_eq!(
        got,
        vec![
            (LogOffset::new(1, 0), b"a".to_vec()),
            (LogOffset::new(1, 1), b"b".to_vec()),
            (LogOffset::new(2, 0), b"c".to_vec()),
        ],
        "every committed entry is durable without a host call, the open transaction is not"
    );
}

/// The twin: with an interval of an hour, the same kill (after the same
/// 100 ms) loses them: the test above would fail without the store's timer.
#[test]
fn twin_without_the_timer_a_sigkill_loses_them() {
    if std::env::var(CHILD_DIR).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let got = commit_then_kill(
        dir.path(),
        Duration::from_secs(3600),
        Duration::from_millis(100),
    );
    assert!(got.is_empty(), "nothing was flushed: {got:?}");
}
