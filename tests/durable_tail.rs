//! After a flush the buffer keeps the newest durable entries in memory, up
//! to `Config::retain_bytes` (payload plus a 48-byte slot each): a reader
//! tailing the shape reads them without touching disk, a reader from
//! further back stitches disk and memory exactly, and the tail stays
//! bounded however many flushes pass, even for empty payloads.
use bytes::Bytes;
use shapebuf::{Config, LogOffset, Store};

/// What one retained entry of `payload` bytes costs against the budget.
const SLOT: usize = 48;

fn o(tx: u64) -> LogOffset {
    LogOffset::new(tx, 0)
}

#[test]
fn the_newest_durable_entries_stay_in_memory_within_the_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Room for exactly 10 entries of 52 bytes.
    let per_entry = 52 + SLOT;
    let cfg = Config {
        retain_bytes: 10 * per_entry,
        segment_capacity: 4,
        ..Config::default()
    };
    let store = Store::open_with(dir.path(), cfg).expect("open");
    let mut w = store.writer("s").expect("writer");
    let payload = |tx: u64| Bytes::from(format!("{tx:052}"));
    for tx in 1..=100 {
        w.append(o(tx), payload(tx)).expect("append");
        w.commit().expect("commit");
    }
    w.flush().expect("flush");
    let h = store.handle("s").expect("handle");

    // The last 10 come from memory.
    let tail = h.read(o(90), LogOffset::MAX).expect("read tail");
    assert_eq!(tail.entries.len(), 10);
    assert_eq!(tail.from_disk, 0, "the durable tail is in memory");

    // One more reaches disk, and the stitch is exact.
    let wider = h.read(o(89), LogOffset::MAX).expect("read wider");
    let got: Vec<_> = wider.entries.iter().map(|e| e.offset.tx).collect();
    assert_eq!(got, (90..=100).collect::<Vec<_>>());
    assert_eq!(wider.from_disk, 1, "entry 90 is below the tail");

    // Entries appended after the flush sit on top of the durable tail.
    for tx in 101..=105 {
        w.append(o(tx), payload(tx)).expect("append");
        w.commit().expect("commit");
    }
    let all = h.read(LogOffset::ZERO, LogOffset::MAX).expect("read all");
    let got: Vec<_> = all.entries.iter().map(|e| e.offset.tx).collect();
    assert_eq!(got, (1..=105).collect::<Vec<_>>());
    assert_eq!(all.from_disk, 90);
    assert!(all
        .entries
        .iter()
        .all(|e| e.payload == payload(e.offset.tx)));
}

#[test]
fn empty_payloads_cannot_grow_the_tail_past_the_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = Config {
        retain_bytes: 20 * SLOT,
        segment_capacity: 2,
        ..Config::default()
    };
    let store = Store::open_with(dir.path(), cfg).expect("open");
    let mut w = store.writer("s").expect("writer");
    for tx in 1..=500 {
        w.append(o(tx), Bytes::new()).expect("append");
        w.commit().expect("commit");
        if tx % 7 == 0 {
            w.flush().expect("flush");
        }
    }
    w.flush().expect("flush");
    let all = store
        .read("s", LogOffset::ZERO, LogOffset::MAX)
        .expect("read");
    assert_eq!(all.entries.len(), 500);
    assert_eq!(all.from_disk, 480, "exactly 20 empty entries retained");
}

#[test]
fn a_zero_budget_keeps_nothing_after_a_flush() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = Config {
        retain_bytes: 0,
        ..Config::default()
    };
    let store = Store::open_with(dir.path(), cfg).expect("open");
    let mut w = store.writer("s").expect("writer");
    for tx in 1..=3 {
        w.append(o(tx), "x").expect("append");
        w.commit().expect("commit");
    }
    w.flush().expect("flush");
    let all = store
        .read("s", LogOffset::ZERO, LogOffset::MAX)
        .expect("read");
    assert_eq!((all.entries.len(), all.from_disk), (3, 3));
}
