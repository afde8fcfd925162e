//! Retired memory stays bounded while a reader is slow, and the bound is
//! real: a reader that holds its epoch pin makes it grow past the bound
//! until it lets go.
//!
//! # The bound
//!
//! Writers churn many shapes: append up to `ENTRIES` entries of `PAYLOAD`
//! bytes, commit, flush (the trim retires the segment), and now and then
//! terminate (retires it too) and restart. A retired segment holds at most
//! one chunk of `common::CHUNK_SLOTS` slots (each flush starts the next
//! segment afresh: no durable tail is kept) and `ENTRIES` payloads, so its
//! footprint is at most `SEG_MAX` (generous constants for the fixed parts:
//! a `Segment` header and its directory are well under 256 bytes and an
//! `Entry` slot under 64).
//!
//! Freed memory goes through crossbeam-epoch: a retiring thread queues
//! deferred frees in a local bag of up to `BAG` (64, crossbeam-epoch's bag
//! size) and seals it into the collector's queue when it is full or when the
//! writer hands it over (after every 1 MiB it retires: `Epoch::retired`;
//! here a bag fills long before that);
//! a sealed bag is freed once the epoch has advanced twice — promptly, when
//! no thread holds a pin for long (every thread's pins run collections,
//! and each advances the epoch when nobody is pinned in an older one). So
//! with readers that only pin briefly, at most about two bags' worth per
//! writer thread await reclamation — one filling, one sealed
//! (`BAGS_IN_FLIGHT`). The margin also covers a reader descheduled while briefly pinned:
//! `BOUND = WRITERS * BAGS_IN_FLIGHT * BAG * SEG_MAX`. The workload retires
//! many times that in total (checked), so staying under it means memory is
//! returned as the writers go, not at the end.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use shapebuf::{Config, LogOffset, Store};

mod common;

const WRITERS: usize = 2;
const SHAPES_PER_WRITER: usize = 16;
const PAYLOAD: usize = 256;
const ENTRIES: u64 = 8;
const SEGMENT_CAPACITY: usize = 8;
/// Writer cycles (one shape each) per writer thread in the slow-reader phase.
const CYCLES: u64 = 3500;
/// Terminate and restart a shape every this many of its cycles.
const TERMINATE_EVERY: u64 = 5;

const SEG_MAX: u64 = 256 + common::CHUNK_SLOTS * 64 + ENTRIES * PAYLOAD as u64;
const BAG: u64 = 64;
const BAGS_IN_FLIGHT: u64 = 2;
const BOUND: u64 = WRITERS as u64 * BAGS_IN_FLIGHT * BAG * SEG_MAX;

fn shape(w: usize, s: usize) -> String {
    format!("w{w}-s{s}")
}

fn payload(id: &str, o: LogOffset) -> Vec<u8> {
    let mut p = format!("{id} {o}").into_bytes();
    p.resize(PAYLOAD, b'.');
    p
}

/// State shared by the writers, the reader and the test.
struct Shared {
    /// Highest committed tx per shape (writer-major order).
    tx: Vec<AtomicU64>,
    /// Largest `retired_bytes()` seen by anyone.
    peak: AtomicU64,
    /// Payload bytes retired by trims and terminates (a lower bound of
    /// the retired footprint).
    retired_payload: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn sample(&self, store: &Store) -> u64 {
        let r = store.retired_bytes();
        self.peak.fetch_max(r, Ordering::Relaxed);
        r
    }
}

/// One writer thread: churns its shapes for up to `cycles` cycles, or until
/// `enough()` says so. Returns the cycles run.
fn churn(
    store: &Store,
    sh: &Shared,
    w: usize,
    cycles: u64,
    enough: &dyn Fn(&Store) -> bool,
) -> u64 {
    let mut writers: Vec<_> = (0..SHAPES_PER_WRITER)
        .map(|s| Some(store.writer(shape(w, s)).expect("writer")))
        .collect();
    let mut done = 0;
    for c in 0..cycles {
        if enough(store) {
            break;
        }
        let s = (c as usize) % SHAPES_PER_WRITER;
        let id = shape(w, s);
        let slot = &sh.tx[w * SHAPES_PER_WRITER + s];
        let wr = writers[s].get_or_insert_with(|| store.writer(&id).expect("restart"));
        let tx = slot.load(Ordering::Relaxed) + 1;
        let n = 1 + c % ENTRIES;
        for op in 0..n {
            let o = LogOffset::new(tx, op);
            wr.append(o, payload(&id, o)).expect("append");
        }
        wr.commit().expect("commit");
        slot.store(tx, Ordering::Release);
        wr.flush().expect("flush");
        sh.retired_payload
            .fetch_add(n * PAYLOAD as u64, Ordering::Relaxed);
        if (c / SHAPES_PER_WRITER as u64) % TERMINATE_EVERY == TERMINATE_EVERY - 1 {
            let wr = writers[s].take().expect("writer");
            wr.terminate().expect("terminate");
        }
        sh.sample(store);
        done += 1;
    }
    for wr in writers.into_iter().flatten() {
        wr.terminate().expect("terminate");
    }
    done
}

/// The slow reader: tails random shapes, checking what it reads, and sleeps
/// between reads (never while pinned: `Store::read` unpins before it
/// returns).
fn slow_reader(store: &Store, sh: &Shared) -> u64 {
    let mut reads = 0u64;
    let mut i = 0usize;
    while !sh.stop.load(Ordering::Acquire) {
        i = (i + 7) % sh.tx.len();
        let (w, s) = (i / SHAPES_PER_WRITER, i % SHAPES_PER_WRITER);
        let id = shape(w, s);
        let tx = sh.tx[i].load(Ordering::Acquire);
        if tx > 0 {
            let after = LogOffset::new(tx.saturating_sub(3), 0);
            let out = store.read(&id, after, LogOffset::MAX).expect("read");
            let mut prev = after;
            for e in &out.entries {
                assert!(e.offset > prev, "in order, in range");
                assert_eq!(&e.payload[..], &payload(&id, e.offset)[..]);
                prev = e.offset;
            }
            assert!(prev.tx >= tx, "sees what was committed before the read");
            reads += 1;
        }
        sh.sample(store);
        thread::sleep(Duration::from_micros(300));
    }
    reads
}

/// Runs `store.collect()` until retired bytes are at most `target`, or
/// gives up after a bounded number of tries. Returns what is left.
fn collect_down_to(store: &Store, target: u64) -> u64 {
    for _ in 0..1000 {
        if store.retired_bytes() <= target {
            break;
        }
        store.collect();
    }
    store.retired_bytes()
}

fn well_over_bound(store: &Store) -> bool {
    store.retired_bytes() > 2 * BOUND
}

fn open() -> (tempfile::TempDir, Store, Arc<Shared>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = Config {
        segment_capacity: SEGMENT_CAPACITY,
        flush_bytes: 1 << 30,
        // A trim keeps no durable tail, so no segment outgrows `SEG_MAX`.
        retain_bytes: 0,
        ..Config::default()
    };
    let store = Store::open_with(dir.path(), cfg).expect("open");
    let sh = Arc::new(Shared {
        tx: (0..WRITERS * SHAPES_PER_WRITER)
            .map(|_| AtomicU64::new(0))
            .collect(),
        peak: AtomicU64::new(0),
        retired_payload: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    (dir, store, sh)
}

#[test]
fn retired_memory_stays_bounded_while_a_reader_is_slow() {
    let (_dir, store, sh) = open();
    let reads = thread::scope(|s| {
        let reader = s.spawn(|| slow_reader(&store, &sh));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (store, sh) = (&store, &*sh);
                s.spawn(move || churn(store, sh, w, CYCLES, &|_| false))
            })
            .collect();
        for w in writers {
            assert_eq!(w.join().expect("writer panicked"), CYCLES);
        }
        sh.stop.store(true, Ordering::Release);
        reader.join().expect("reader panicked")
    });
    let peak = sh.peak.load(Ordering::Relaxed);
    let total = sh.retired_payload.load(Ordering::Relaxed);
    eprintln!(
        "slow reader: {reads} reads; retired payload {total} B in total, \
         peak awaiting reclamation {peak} B, bound {BOUND} B (SEG_MAX {SEG_MAX})"
    );
    assert!(reads > 0, "the reader read");
    assert!(
        total >= 4 * BOUND,
        "the workload must retire well over the bound for the test to mean anything"
    );
    assert!(peak > 0, "segments were retired and sampled");
    assert!(
        peak <= BOUND,
        "retired memory awaiting reclamation peaked at {peak} B > bound {BOUND} B"
    );
    // Writers are gone (their threads' queued frees were handed over on
    // exit): everything can be reclaimed.
    assert_eq!(collect_down_to(&store, 0), 0, "all retired memory returned");
}

#[test]
fn a_reader_holding_its_pin_makes_retired_memory_grow_until_it_lets_go() {
    let (_dir, store, sh) = open();
    // A shape whose segment a `visit` reads under the pin (nothing flushed,
    // so the whole range is in memory).
    let mut held = store.writer("held").expect("writer");
    held.append(LogOffset::new(1, 0), "x").expect("append");
    held.commit().expect("commit");
    let (pinned_tx, pinned_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();

    let (grown, after_release) = thread::scope(|s| {
        // This breaks the `visit` contract on purpose: the callback blocks.
        let store_ref = &store;
        let reader = s.spawn(move || {
            let h = store_ref.handle("held").expect("handle");
            h.visit(LogOffset::ZERO, LogOffset::MAX, |_| {
                pinned_tx.send(()).expect("test waits");
                release_rx.recv().expect("test releases");
            })
            .expect("visit")
        });
        pinned_rx.recv().expect("reader pinned");
        // Churn until retired memory is well past the bound (bounded by
        // iterations: a healthy collector would never get there).
        let max_cycles = 20 * CYCLES;
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (store, sh) = (&store, &*sh);
                s.spawn(move || churn(store, sh, w, max_cycles, &well_over_bound))
            })
            .collect();
        let ran: Vec<u64> = writers
            .into_iter()
            .map(|w| w.join().expect("writer panicked"))
            .collect();
        let grown = sh.sample(&store);
        eprintln!("pinned reader: writers ran {ran:?} cycles; retired {grown} B");
        release_tx.send(()).expect("reader waits");
        let outcome = reader.join().expect("reader panicked");
        assert_eq!(outcome.visited, 1);
        (grown, collect_down_to(&store, 0))
    });
    assert!(
        grown > 2 * BOUND,
        "while a reader held its pin, retired memory reached only {grown} B (bound {BOUND} B)"
    );
    assert_eq!(
        after_release, 0,
        "after the reader let go, retired memory went back to 0 (was {grown} B)"
    );
    held.terminate().expect("terminate");
}

/// A writer thread that flushes and then idles must not keep the segment
/// its trim retired: a retirement past 64 KiB seals the thread's bag of
/// deferred frees into the collector's queue (`Epoch::retired`), and once
/// no reader is pinned any thread's collection returns it (here the test
/// thread's, while the writer's thread lives on).
#[test]
fn memory_a_trim_retired_returns_while_the_writer_thread_idles() {
    retired_by_an_idle_writer_thread_returns(1 << 20, false);
}

/// A retirement too small to seal the bag (under 64 KiB) is handed over by
/// the writer's next `tick` (hosts tick writers from a timer), so an idle
/// writer thread does not keep it either.
#[test]
fn a_small_retirement_is_handed_over_by_the_next_tick() {
    retired_by_an_idle_writer_thread_returns(1 << 10, true);
}

/// A writer thread flushes one entry of `payload` bytes (the trim retires
/// the segment holding it), ticks if `tick`, and then idles while the test
/// thread collects: everything retired must come back.
fn retired_by_an_idle_writer_thread_returns(payload: usize, tick: bool) {
    let (_dir, store, _sh) = open();
    let (flushed_tx, flushed_rx) = mpsc::channel::<u64>();
    let (exit_tx, exit_rx) = mpsc::channel::<()>();
    let left = thread::scope(|s| {
        // Owned by this closure: if an assertion below fails, unwinding
        // drops it, the writer thread's `recv` fails, and the scope ends
        // (held outside, the scope would wait for the writer forever).
        let exit_tx = exit_tx;
        let store_ref = &store;
        s.spawn(move || {
            let mut w = store_ref.writer("idle").expect("writer");
            w.append(LogOffset::new(1, 0), vec![1u8; payload])
                .expect("append");
            w.commit().expect("commit");
            w.flush().expect("flush"); // the trim retires the segment
                                       // Read before the hand-over: until then the retirement sits in
                                       // this thread's bag, which no other thread's collection frees
                                       // (after it, the other tests' threads may free it at once).
            let retired = store_ref.retired_bytes();
            if tick {
                w.tick().expect("tick"); // nothing to flush; hands it over
            }
            flushed_tx.send(retired).expect("test waits");
            exit_rx.recv().expect("test lets the thread end");
            drop(w);
        });
        let retired = flushed_rx.recv().expect("writer flushed");
        assert!(
            retired >= payload as u64,
            "the trim retired the segment ({retired} B retired)"
        );
        let left = collect_down_to(&store, 0);
        exit_tx.send(()).expect("writer waits");
        left
    });
    assert_eq!(
        left, 0,
        "retired memory stayed queued on an idle writer thread"
    );
}
