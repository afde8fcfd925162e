//! Automatic flushes sync off the writer's thread: while a flush batch is
//! stuck in `sync_data` (held there by a `SimFs::before_op` hook), the
//! writer keeps appending and committing, readers read every committed
//! entry exactly (from memory), and nothing is reported durable; once the
//! sync returns, the writer completes the flush at its next call (publishes
//! `persisted`, trims) and `flush` makes the rest durable. With the
//! synchronous flush this test fails: the append that crosses `flush_bytes`
//! would wait inside the held sync.
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use shapebuf::fs::{Op, SimFs};
use shapebuf::{Config, Flushed, LogOffset, Store};

const LONG: Duration = Duration::from_secs(60);

fn o(tx: u64) -> LogOffset {
    LogOffset::new(tx, 0)
}

/// Makes the next `sync_data` (the first batch's) block until released:
/// the first channel hears when a thread is inside it, the second
/// releases it.
fn hold_first_sync(fs: &SimFs) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    fs.before_op(Op::Sync, 0, move || {
        entered_tx.send(()).expect("test waits");
        release_rx
            .recv_timeout(LONG)
            .expect("test releases the sync");
    });
    (entered_rx, release_tx)
}

#[test]
fn appends_and_reads_go_on_while_a_flush_batch_syncs() {
    let fs = SimFs::new();
    let dir = Path::new("/db");
    let cfg = Config {
        flush_bytes: 100,
        retain_bytes: 0,
        ..Config::default()
    };
    let store = Store::open_with_fs(dir, cfg.clone(), Arc::new(fs.clone())).expect("open");
    let mut w = store.writer("s").expect("writer");
    let h = store.handle("s").expect("handle");

    let (entered_rx, release_tx) = hold_first_sync(&fs);

    // The writer runs on its own thread and says when each call returned;
    // if a call waited for the held sync, the test sees no answer.
    let (done_tx, done_rx) = mpsc::channel::<u64>();
    let (go_tx, go_rx) = mpsc::channel::<u64>();
    let writer = std::thread::spawn(move || {
        while let Ok(upto) = go_rx.recv() {
            let from = w.last_appended().tx + 1;
            for tx in from..=upto {
                w.append(o(tx), vec![b'x'; 40]).expect("append");
                w.commit().expect("commit");
            }
            done_tx.send(upto).expect("test listens");
        }
        w
    });

    // Crossing flush_bytes (3 x 65 bytes) hands a batch to a flusher.
    go_tx.send(3).expect("writer listens");
    assert_eq!(done_rx.recv_timeout(LONG), Ok(3));
    entered_rx
        .recv_timeout(LONG)
        .expect("a flusher thread is inside sync_data");
    // The sync is held: the writer goes on (up to two batches ahead: past
    // 2 x flush_bytes pending it would wait, by design), and readers see
    // every commit.
    go_tx.send(5).expect("writer listens");
    assert_eq!(
        done_rx.recv_timeout(LONG),
        Ok(5),
        "append and commit returned while the batch was syncing"
    );
    let out = h.read(LogOffset::ZERO, LogOffset::MAX).expect("read");
    let got: Vec<u64> = out.entries.iter().map(|e| e.offset.tx).collect();
    assert_eq!(got, (1..=5).collect::<Vec<_>>());
    assert_eq!(out.from_disk, 0, "nothing trimmed before the sync returned");

    release_tx.send(()).expect("hook waits");
    // More: the second batch starts once the first is completed.
    go_tx.send(10).expect("writer listens");
    assert_eq!(done_rx.recv_timeout(LONG), Ok(10));
    drop(go_tx);
    let mut w = writer.join().expect("writer thread");
    let f = w.flush().expect("flush");
    assert_eq!(
        f,
        Flushed {
            persisted: o(10),
            committed: o(10)
        }
    );
    let out = h.read(LogOffset::ZERO, LogOffset::MAX).expect("read");
    assert_eq!(out.entries.len(), 10);
    assert_eq!(out.from_disk, 10, "trimmed once durable");
    w.terminate().expect("terminate");
    drop((h, store));
    let store = Store::open_with_fs(dir, cfg, Arc::new(fs.clone())).expect("reopen");
    let all = store
        .read("s", LogOffset::ZERO, LogOffset::MAX)
        .expect("read");
    assert_eq!(all.entries.len(), 10);
}

/// Back-pressure: with the batch's sync held, the writer appends until
/// `max_pending_bytes` more are pending, and the append that reaches it
/// waits for the batch; once the sync returns it completes the batch and
/// hands over everything pending as the next one. Without back-pressure a
/// writer that outruns its disk would buffer without bound, and this test
/// fails at "waited for the held batch".
#[test]
fn an_append_past_max_pending_bytes_waits_for_the_batch_in_flight() {
    let fs = SimFs::new();
    let cfg = Config {
        flush_bytes: 100,
        max_pending_bytes: 200,
        retain_bytes: 0,
        ..Config::default()
    };
    let store = Store::open_with_fs("/db", cfg, Arc::new(fs.clone())).expect("open");
    let mut w = store.writer("s").expect("writer");
    let (entered_rx, release_tx) = hold_first_sync(&fs);
    let (done_tx, done_rx) = mpsc::channel::<u64>();
    let writer = std::thread::spawn(move || {
        // 65 bytes an entry: tx 2 hands the batch over (130 >= 100); tx 3-5
        // add 195 < 200; tx 6 reaches 260 >= 200 and waits.
        for tx in 1..=6 {
            w.append(o(tx), vec![b'x'; 40]).expect("append");
            w.commit().expect("commit");
            done_tx.send(tx).expect("test listens");
        }
        w
    });
    entered_rx
        .recv_timeout(LONG)
        .expect("a flusher thread is inside sync_data");
    for tx in 1..=5 {
        assert_eq!(done_rx.recv_timeout(LONG), Ok(tx), "under the limit");
    }
    assert!(
        done_rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "the append past max_pending_bytes waited for the held batch"
    );
    release_tx.send(()).expect("hook waits");
    assert_eq!(done_rx.recv_timeout(LONG), Ok(6), "it goes on once durable");
    let mut w = writer.join().expect("writer thread");
    let f = w.flush().expect("flush");
    assert_eq!(f.committed, o(6));
}
