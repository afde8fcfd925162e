//! The real file system, a real crash: a child process writes, flushes and
//! reports each acknowledged flush on stdout; the parent SIGKILLs it
//! mid-workload, reopens the directory, and checks that every acknowledged
//! entry is there, intact and in order, and nothing else is. Three rounds,
//! each child continuing the log the previous one left.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use shapebuf::{Config, LogOffset, Store};

const CHILD_ENV: &str = "SHAPEBUF_SIGKILL_CHILD_DIR";
const SHAPES: [&str; 4] = ["s0", "s1", "s2", "s3"];

fn payload(shape: &str, o: LogOffset) -> Vec<u8> {
    format!("{shape}@{o}:{}", "k".repeat((o.tx % 50) as usize)).into_bytes()
}

fn config() -> Config {
    Config {
        flush_bytes: 2048,
        file_bytes: 16 << 10,
        index_interval: 1024,
        ..Config::default()
    }
}

/// The child: appends transactions to every shape forever, flushing often;
/// prints `ack <shape> <tx> <op>` after each flush returns Ok.
fn child(dir: &str) -> ! {
    let store = Store::open_with(dir, config()).expect("child open");
    let mut writers: Vec<_> = SHAPES
        .iter()
        .map(|s| store.writer(s).expect("writer"))
        .collect();
    let mut tx = SHAPES
        .iter()
        .map(|s| store.handle(s).map(|h| h.committed().tx).unwrap_or(0))
        .max()
        .unwrap_or(0);
    let mut out = std::io::stdout().lock();
    loop {
        tx += 1;
        for (i, w) in writers.iter_mut().enumerate() {
            let s = SHAPES[i];
            for op in 0..=(tx % 3) {
                let o = LogOffset::new(tx, op);
                w.append(o, payload(s, o)).expect("append");
            }
            let last = w.commit().expect("commit");
            if tx % 2 == 0 {
                w.flush().expect("flush");
                writeln!(out, "ack {s} {} {}", last.tx, last.op).expect("stdout");
                out.flush().expect("stdout");
            }
        }
    }
}

#[test]
fn sigkilled_writer_process_recovers_every_acknowledged_entry() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut acked: std::collections::BTreeMap<String, LogOffset> = Default::default();
    for (round, kill_after) in [40usize, 150, 400].into_iter().enumerate() {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "sigkilled_writer_process_recovers_every_acknowledged_entry",
                "--nocapture",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("child output");
            let mut f = line.split_whitespace();
            if f.next() != Some("ack") {
                continue;
            }
            let (s, tx, op) = (
                f.next().expect("shape"),
                f.next().expect("tx"),
                f.next().expect("op"),
            );
            let o = LogOffset::new(tx.parse().expect("tx"), op.parse().expect("op"));
            acked.insert(s.to_string(), o);
            seen += 1;
            if seen == kill_after {
                break;
            }
        }
        assert_eq!(
            seen, kill_after,
            "round {round}: the child died before it was killed"
        );
        // The live child holds the directory: a second store is refused
        // rather than writing the same logs (the recovery below then shows
        // that a killed holder's lock dies with it).
        let second = Store::open_with(dir.path(), config());
        assert!(
            matches!(second, Err(shapebuf::Error::Locked(_))),
            "round {round}: a second store opened a directory in use: {second:?}"
        );
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");

        let store = Store::open_with(dir.path(), config()).expect("recovery after SIGKILL");
        for s in SHAPES {
            let got = store
                .read(s, LogOffset::ZERO, LogOffset::MAX)
                .expect("read")
                .entries;
            for pair in got.windows(2) {
                assert!(pair[0].offset < pair[1].offset, "round {round} {s}: order");
            }
            for e in &got {
                assert_eq!(
                    &e.payload[..],
                    &payload(s, e.offset)[..],
                    "round {round} {s}: payload at {}",
                    e.offset
                );
            }
            if let Some(a) = acked.get(s) {
                assert!(
                    got.iter().any(|e| e.offset == *a),
                    "round {round} {s}: acknowledged {a} lost"
                );
            }
        }
    }
}
