//! Fails the Nth call of every file-system operation kind, for every N the
//! workload reaches: the error reaches the caller (or, for the write of a
//! batch's `synced` marker, which follows the batch's successful sync, no
//! acknowledgement is lost), nothing panics, and after a restart (same
//! files, no power loss) the acknowledged prefix is intact.

mod common;

use std::path::Path;
use std::sync::Arc;

use shapebuf::fs::{Op, SimFs};
use shapebuf::{Error, LogOffset, Store};

/// The framed size of a `synced` marker (docs/format.md).
const MARKER: usize = 17;

#[test]
fn every_failed_operation_is_reported_and_the_durable_prefix_survives() {
    let dir = Path::new("/db");
    let steps = 100;
    let clean = SimFs::new();
    let mut clean_model = common::Model::default();
    common::run(Arc::new(clean.clone()), dir, steps, &mut clean_model).expect("clean run");
    let mut injected = 0;
    let mut absorbed = 0;
    for op in Op::ALL {
        for n in 0..clean.ops_of(op) {
            let fs = SimFs::new();
            fs.fail_at(op, n);
            let mut model = common::Model::default();
            let res = common::run(Arc::new(fs.clone()), dir, steps, &mut model);
            if res.is_ok() {
                // The one failure the log absorbs: a batch's `synced` marker
                // (17 bytes, docs/format.md). The batch was synced, so it
                // stands; the log is poisoned until a writer heals it, which
                // a workload that flushes that shape no more does not see.
                let refused = fs.refused();
                assert!(
                    refused.is_some_and(|r| r.op == Op::Write && r.len == MARKER),
                    "{op:?} #{n} failed but no error reached the caller ({refused:?})"
                );
                assert_eq!(
                    model.acked, clean_model.acked,
                    "{op:?} #{n}: an absorbed failure must not cost an acknowledgement"
                );
                absorbed += 1;
            }
            if let Err(why) = common::verify(Arc::new(fs.clone()), dir, &model) {
                panic!("after failing {op:?} #{n}: {why}");
            }
            injected += 1;
        }
    }
    eprintln!("io_faults: {injected} injected failures ({absorbed} absorbed marker writes)");
    assert!(injected > 250, "sweep too small: {injected}");
}

/// A failed fsync poisons the writer: `persisted` does not move, later calls
/// fail, readers still see every committed entry (from memory), and the next
/// writer heals the log and makes them durable. Nothing pretends the failed
/// sync succeeded.
#[test]
fn failed_sync_poisons_the_writer_until_a_new_writer_recovers() {
    let dir = Path::new("/db");
    let fs = SimFs::new();
    let store = Store::open_with_fs(dir, common::config(), Arc::new(fs.clone())).expect("open");
    let mut w = store.writer("s").expect("writer");
    let mut want = Vec::new();
    for tx in 1..=3 {
        let o = LogOffset::new(tx, 0);
        w.append(o, common::payload("s", o)).expect("append");
        want.push(o);
    }
    w.commit().expect("commit");
    let before = w.flushed();
    fs.fail_at(Op::Sync, 0);
    assert!(w.flush().is_err(), "the failed sync must be reported");
    assert_eq!(
        w.flushed(),
        before,
        "persisted must not move on a failed sync"
    );
    let err = w
        .append(LogOffset::new(9, 0), "x")
        .expect_err("poisoned writer refuses appends");
    assert!(matches!(err, Error::WriterClosed { .. }), "{err}");
    assert!(w.flush().is_err(), "poisoned writer refuses flushes");
    let read = store
        .read("s", LogOffset::ZERO, LogOffset::MAX)
        .expect("read");
    assert_eq!(
        read.entries.iter().map(|e| e.offset).collect::<Vec<_>>(),
        want
    );
    drop(w);
    let w = store.writer("s").expect("a new writer heals the log");
    w.terminate()
        .expect("and flushes what its predecessor committed");
    drop(store);
    let store = Store::open_with_fs(dir, common::config(), Arc::new(fs.after_power_loss(0)))
        .expect("reopen after power loss");
    let read = store
        .read("s", LogOffset::ZERO, LogOffset::MAX)
        .expect("read");
    assert_eq!(
        read.entries.iter().map(|e| e.offset).collect::<Vec<_>>(),
        want
    );
}
