//! The reader-meets-terminate scenario: many readers read one shape in a
//! loop while its writer appends multi-entry transactions, commits, flushes,
//! terminates and restarts, thousands of times. Every read must equal the
//! model's answer; a read that runs entirely while the shape is terminated
//! must report the dead buffer and still be exact (served from disk).
//!
//! # The model
//!
//! The whole log is planned up front (offsets and payloads), so readers
//! share it without locks. The writer publishes two counters into it:
//! `maybe` (stored *before* `commit()` is called: a reader may see entries
//! up to here) and `sure` (stored *after* `commit()` returns: a reader that
//! starts later must see entries up to here). A read is correct iff its
//! answer equals the plan's entries in `(after, upto]` cut at a transaction
//! boundary `k` with `sure_before <= k <= maybe_after`.
//!
//! Transactions that are appended but never committed (the writer is
//! terminated or dropped with them open) carry "junk" payloads at offsets
//! the plan reuses later: a reader that ever sees one fails.

mod common;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use bytes::Bytes;
use shapebuf::{Config, Entry, LogOffset, ReadOutcome, Store};

const READERS: usize = 8;
/// Writer life cycles (each ends in a terminate or a drop, then a restart).
const CYCLES: usize = 3000;
/// Every this many cycles the writer, once terminated, waits until some
/// reader has read while the shape was dead before it restarts.
const DEAD_WINDOW_EVERY: usize = 8;
/// Every this many cycles the writer is dropped without terminate instead.
const DROP_EVERY: usize = 7;
const SHAPE: &str = "tailed shape";

/// SplitMix64: a small, seedable generator (no dependency on `rand`'s API).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// The planned log: every entry that will ever be committed, in order, and
/// the transactions as ranges of it.
struct Plan {
    entries: Vec<Entry>,
    offsets: Vec<LogOffset>,
    /// `txs[i]` = the index one past the last entry of transaction `i`.
    tx_ends: Vec<usize>,
}

impl Plan {
    fn new(txs: usize, rng: &mut Rng) -> Plan {
        let mut entries = Vec::new();
        let mut tx_ends = Vec::new();
        let mut tx = 0u64;
        for _ in 0..txs {
            // Gaps of at least one tx number: an open transaction that is
            // never committed uses the gap just below the next planned one.
            tx += 2 + rng.below(2);
            let mut op = rng.below(3);
            for _ in 0..1 + rng.below(4) {
                let pad = "x".repeat(rng.below(48) as usize);
                entries.push(Entry::new(
                    LogOffset::new(tx, op),
                    Bytes::from(format!("{tx}.{op}{pad}")),
                ));
                op += 1 + rng.below(2);
            }
            tx_ends.push(entries.len());
        }
        let offsets = entries.iter().map(|e| e.offset).collect();
        Plan {
            entries,
            offsets,
            tx_ends,
        }
    }

    /// Checks one read of `(after, upto]` against the plan; `sure` and
    /// `maybe` are the model counters loaded before and after the read.
    fn check(&self, after: LogOffset, upto: LogOffset, sure: usize, maybe: usize, got: &[Entry]) {
        let a = self.offsets[..maybe].partition_point(|o| *o <= after);
        let b = self.offsets[..maybe].partition_point(|o| *o <= upto).max(a);
        let full = &self.entries[a..b];
        let r = got.len();
        let ctx = || format!("read ({after}, {upto}] sure {sure} maybe {maybe}: got {r} entries");
        assert!(r <= full.len(), "{}: more than was ever committed", ctx());
        assert_eq!(got, &full[..r], "{}: not a prefix of the model", ctx());
        let must = sure.min(b).saturating_sub(a);
        assert!(
            r >= must,
            "{}: missing committed entries (need {must})",
            ctx()
        );
        if r > 0 && r < full.len() {
            let (last, next) = (&self.entries[a + r - 1], &self.entries[a + r]);
            assert_ne!(
                last.offset.tx,
                next.offset.tx,
                "{}: cut inside a transaction",
                ctx()
            );
        }
    }
}

/// Shared state between the writer and the readers.
struct Shared {
    plan: Plan,
    /// Entries a reader may see (stored before `commit()`).
    maybe: AtomicUsize,
    /// Entries a reader must see (stored after `commit()` returns).
    sure: AtomicUsize,
    /// Odd while the shape is terminated (after `terminate()` returned and
    /// before the next `writer()` call), even otherwise.
    phase: AtomicU64,
    /// Reads that ran entirely inside a dead phase.
    dead_window_reads: AtomicUsize,
    readers_alive: AtomicUsize,
    stop: AtomicBool,
}

/// Sets `stop` when the writer ends, even by panic, so readers never hang.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Counts live readers, so the writer never waits for a reader that died.
struct AliveGuard<'a>(&'a AtomicUsize);

impl Drop for AliveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Default, Debug)]
struct ReaderStats {
    reads: u64,
    by_method: [u64; 3],
    entries: u64,
    from_disk: u64,
    dead: u64,
    raced: u64,
}

fn writer_loop(store: &Store, sh: &Shared, seed: u64) -> (u64, u64, u64) {
    let _stop = StopOnDrop(&sh.stop);
    let mut rng = Rng(seed);
    let plan = &sh.plan;
    let mut next_tx = 0usize;
    let (mut terminates, mut drops, mut windows) = (0u64, 0u64, 0u64);
    let mut dead = false;
    for cycle in 0..CYCLES {
        if dead {
            // Even phase: the shape is being revived.
            sh.phase.fetch_add(1, Ordering::AcqRel);
            dead = false;
        }
        let mut w = store.writer(SHAPE).expect("writer");
        for _ in 0..1 + rng.below(3) {
            if next_tx == plan.tx_ends.len() {
                break;
            }
            let from = next_tx.checked_sub(1).map_or(0, |i| plan.tx_ends[i]);
            let to = plan.tx_ends[next_tx];
            for e in &plan.entries[from..to] {
                w.append(e.offset, e.payload.clone()).expect("append");
            }
            // Release: a reader that loads `maybe` after seeing this commit
            // (its read synchronises with the commit) sees at least `to`.
            sh.maybe.store(to, Ordering::Release);
            w.commit().expect("commit");
            sh.sure.store(to, Ordering::Release);
            next_tx += 1;
            if rng.chance(4) {
                w.flush().expect("flush");
            }
        }
        // Sometimes leave a transaction open (junk payloads in the tx gap
        // below the next planned one): it must never become visible. Its
        // offsets are not reused: whether a later writer may reuse the
        // offsets of a torn transaction is not this test's concern.
        if rng.chance(3) && next_tx < plan.tx_ends.len() {
            let tx = plan.entries[plan.tx_ends[next_tx - 1]].offset.tx - 1;
            for op in 0..1 + rng.below(4) {
                w.append(LogOffset::new(tx, op), "junk")
                    .expect("append junk");
            }
            if rng.chance(2) {
                w.flush().expect("flush mid-transaction");
            }
        }
        if cycle % DROP_EVERY == DROP_EVERY - 1 {
            drop(w); // owner "panicked": the next writer takes over
            drops += 1;
            continue;
        }
        w.terminate().expect("terminate");
        terminates += 1;
        // Odd phase: dead until the next restart.
        sh.phase.fetch_add(1, Ordering::AcqRel);
        dead = true;
        if cycle % DEAD_WINDOW_EVERY == 0 {
            windows += 1;
            let before = sh.dead_window_reads.load(Ordering::Acquire);
            while sh.dead_window_reads.load(Ordering::Acquire) == before {
                assert!(
                    sh.readers_alive.load(Ordering::Acquire) > 0,
                    "every reader died"
                );
                thread::yield_now();
            }
        }
    }
    (terminates, drops, windows)
}

fn reader_loop(store: &Store, sh: &Shared, seed: u64) -> ReaderStats {
    let _alive = AliveGuard(&sh.readers_alive);
    let mut rng = Rng(seed);
    let handle = loop {
        match store.handle(SHAPE) {
            Ok(h) => break h,
            Err(_) => thread::yield_now(), // the writer has not created it yet
        }
    };
    let plan = &sh.plan;
    let mut stats = ReaderStats::default();
    let mut tail = LogOffset::ZERO;
    while !sh.stop.load(Ordering::Acquire) {
        let phase0 = sh.phase.load(Ordering::Acquire);
        let sure = sh.sure.load(Ordering::Acquire);
        let (after, upto) = match rng.below(256) {
            // Whole-log reads are costly once the log is long: keep them rare.
            0 => (LogOffset::ZERO, LogOffset::MAX),
            1..=80 => (tail, LogOffset::MAX),
            _ => {
                // A window around the committed tail: it straddles disk and
                // memory, and the segment's base.
                let i = sure.saturating_sub(rng.below(96) as usize);
                let after = match i.checked_sub(1) {
                    Some(j) if rng.chance(4) => {
                        let o = plan.offsets[j];
                        LogOffset::new(o.tx, o.op + 1) // between two entries
                    }
                    Some(j) => plan.offsets[j],
                    None => LogOffset::ZERO,
                };
                let upto = match plan.offsets.get(i + rng.below(64) as usize) {
                    Some(o) if !rng.chance(4) => *o,
                    _ => LogOffset::MAX,
                };
                (after, upto)
            }
        };
        let method = rng.below(3) as usize;
        let out: ReadOutcome = match method {
            0 => store.read(SHAPE, after, upto).expect("Store::read"),
            1 => handle.read(after, upto).expect("ShapeHandle::read"),
            _ => common::visit_outcome(&handle, after, upto),
        };
        let maybe = sh.maybe.load(Ordering::Acquire);
        let phase1 = sh.phase.load(Ordering::Acquire);
        plan.check(after, upto, sure, maybe, &out.entries);
        assert!(out.from_disk <= out.entries.len());
        if phase0 == phase1 && phase0 % 2 == 1 && after < upto {
            // The whole read ran between terminate and restart. (An empty
            // range is answered without looking at the buffer.)
            assert!(
                out.dead,
                "read ({after}, {upto}] while terminated did not report dead"
            );
            assert_eq!(
                out.from_disk,
                out.entries.len(),
                "dead reads come from disk"
            );
            sh.dead_window_reads.fetch_add(1, Ordering::AcqRel);
        }
        if upto == LogOffset::MAX {
            if let Some(last) = out.entries.last() {
                tail = last.offset;
            }
        }
        stats.reads += 1;
        stats.by_method[method] += 1;
        stats.entries += out.entries.len() as u64;
        stats.from_disk += out.from_disk as u64;
        stats.dead += u64::from(out.dead);
        stats.raced += u64::from(out.raced);
        // Leave the cores to the writer now and then (2 shared cores, 8
        // readers): the scenario is sized by the writer's cycles.
        thread::yield_now();
    }
    stats
}

#[test]
fn readers_meet_terminate_and_restart_thousands_of_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = Config {
        // Auto-flushes land mid-transaction; segments grow and are trimmed.
        flush_bytes: 512,
        segment_capacity: 4,
        index_interval: 1 << 10,
        file_bytes: 64 << 10,
        ..Config::default()
    };
    let store = Store::open_with(dir.path(), cfg).expect("open");
    let mut rng = Rng(0x5eed_0001);
    let sh = Arc::new(Shared {
        plan: Plan::new(CYCLES * 2, &mut rng),
        maybe: AtomicUsize::new(0),
        sure: AtomicUsize::new(0),
        phase: AtomicU64::new(0),
        dead_window_reads: AtomicUsize::new(0),
        readers_alive: AtomicUsize::new(READERS),
        stop: AtomicBool::new(false),
    });

    let (writer_counts, stats) = thread::scope(|s| {
        let readers: Vec<_> = (0..READERS)
            .map(|i| {
                let (store, sh) = (&store, &*sh);
                s.spawn(move || reader_loop(store, sh, 1000 + i as u64))
            })
            .collect();
        let writer = s.spawn(|| writer_loop(&store, &sh, 7));
        let writer_counts = writer.join().expect("writer panicked");
        let stats: Vec<ReaderStats> = readers
            .into_iter()
            .map(|r| r.join().expect("reader panicked"))
            .collect();
        (writer_counts, stats)
    });

    let (terminates, drops, windows) = writer_counts;
    let sum = |f: fn(&ReaderStats) -> u64| stats.iter().map(f).sum::<u64>();
    let (reads, dead, raced) = (sum(|s| s.reads), sum(|s| s.dead), sum(|s| s.raced));
    eprintln!(
        "cycles {CYCLES}: terminates {terminates}, drops {drops}; reads {reads} \
         (store/handle/visit {}/{}/{}), entries {}, from disk {}, dead {dead}, raced {raced}, \
         dead windows {windows}, dead-window reads {}",
        sum(|s| s.by_method[0]),
        sum(|s| s.by_method[1]),
        sum(|s| s.by_method[2]),
        sum(|s| s.entries),
        sum(|s| s.from_disk),
        sh.dead_window_reads.load(Ordering::Relaxed),
    );
    assert_eq!(terminates + drops, CYCLES as u64);
    assert!(windows > 0);
    assert!(
        dead >= windows,
        "each forced dead window yields a dead read: {dead} < {windows}"
    );
    for (i, s) in stats.iter().enumerate() {
        assert!(
            s.by_method.iter().all(|&n| n > 0),
            "reader {i} used every method: {s:?}"
        );
    }

    // After the storm: the shape holds exactly the planned log (the last
    // cycle may have left junk open; a final restart discards it).
    let w = store.writer(SHAPE).expect("writer");
    w.terminate().expect("terminate");
    let n = sh.sure.load(Ordering::Relaxed);
    let all = store
        .read(SHAPE, LogOffset::ZERO, LogOffset::MAX)
        .expect("read");
    assert_eq!(all.entries, sh.plan.entries[..n]);
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    let all = store
        .read(SHAPE, LogOffset::ZERO, LogOffset::MAX)
        .expect("read");
    assert_eq!(all.entries, sh.plan.entries[..n], "after reopen");
}
