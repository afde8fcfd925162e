//! Teardown under readers: the latency of [`ShapeWriter::terminate`] with 0,
//! 8 and 64 reader threads reading the shape in a tight loop.
//!
//! One iteration (untimed part): open the shape's writer (take-over of the
//! terminated shape, fresh segment), append one 10-entry transaction of
//! 100-byte payloads, commit, flush. Timed: `terminate()` alone (nothing
//! left to flush: it unpublishes the segment, defers its free and hands the
//! garbage to the collector). Readers read the latest 10 committed entries
//! through a [`ShapeHandle`](shapebuf::ShapeHandle) (`visit`), from the
//! segment while the shape is live and from disk while it is dead. The store
//! is on tmpfs with a 4 KiB index interval, so a dead read scans little.
//!
//! On 2 cores, 8 and 64 spinning readers oversubscribe the machine: the
//! terminating thread competes with them for a core, which is what the tail
//! shows. The control row says how much: right after each terminate, the
//! same thread times a fixed piece of work of about the same length that
//! touches nothing shared ([`control`]); whatever its tail grows by under
//! the readers is the scheduler's, not the library's. A second control
//! ([`Chase`]) walks 64 cache lines of a private buffer: it also pays for
//! the caches the other threads refilled while it was switched out. Percentiles over every terminate timed (warm-up included) are in
//! `target/criterion/shapebuf/teardown/<readers>.json`.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use shapebuf::{Config, LogOffset, Store};

mod common;
use common::Json;

const SHAPE: &str = "teardown";

fn teardown(c: &mut Criterion) {
    let mut g = c.benchmark_group("teardown");
    for readers in [0usize, 8, 64] {
        // Each untimed flush waits for the flusher thread to get a core
        // among the spinning readers, so 64 readers fit ~500 terminates a
        // second: a longer run gives their p99 ~10,000 samples, not ~1,500.
        g.measurement_time(Duration::from_secs(if readers == 64 { 20 } else { 3 }));
        let dir = common::tmpfs_dir();
        let cfg = Config {
            index_interval: 4 << 10,
            ..Config::default()
        };
        let store = Store::open_with(dir.path(), cfg).expect("open");
        let mut tx = 1u64;
        {
            let mut w = store.writer(SHAPE).expect("writer");
            w.append(LogOffset::new(tx, 0), common::payload(100, tx))
                .expect("append");
            w.commit().expect("commit");
            w.terminate().expect("terminate");
            tx += 1;
        }
        let handle = store.handle(SHAPE).expect("handle");
        let head = AtomicU64::new(1);
        let stop = AtomicBool::new(false);
        let mut lat: Vec<u64> = Vec::new();
        let mut ctl: Vec<u64> = Vec::new();
        let mut ctl_mem: Vec<u64> = Vec::new();
        let chase = Chase::new();
        let mut dead_reads = 0u64;
        std::thread::scope(|s| {
            let threads: Vec<_> = (0..readers)
                .map(|_| {
                    let handle = handle.clone();
                    let (head, stop) = (&head, &stop);
                    s.spawn(move || {
                        let mut dead = 0u64;
                        // Relaxed: `stop` carries no data.
                        while !stop.load(Ordering::Relaxed) {
                            // Relaxed: any committed transaction is a valid
                            // range start; the read itself synchronises.
                            let c = head.load(Ordering::Relaxed);
                            let out = handle
                                .visit(LogOffset::new(c - 1, u64::MAX), LogOffset::MAX, |e| {
                                    std::hint::black_box(e.payload.len());
                                })
                                .expect("read");
                            dead += u64::from(out.dead);
                        }
                        dead
                    })
                })
                .collect();
            g.bench_function(BenchmarkId::new("terminate", readers), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let mut w = store.writer(SHAPE).expect("writer");
                        for op in 0..10 {
                            w.append(LogOffset::new(tx, op), common::payload(100, op))
                                .expect("append");
                        }
                        w.commit().expect("commit");
                        w.flush().expect("flush");
                        head.store(tx, Ordering::Relaxed);
                        tx += 1;
                        let t = Instant::now();
                        w.terminate().expect("terminate");
                        let d = t.elapsed();
                        lat.push(d.as_nanos() as u64);
                        total += d;
                        let t = Instant::now();
                        std::hint::black_box(control());
                        ctl.push(t.elapsed().as_nanos() as u64);
                        let t = Instant::now();
                        std::hint::black_box(chase.walk());
                        ctl_mem.push(t.elapsed().as_nanos() as u64);
                    }
                    total
                })
            });
            stop.store(true, Ordering::Relaxed);
            for t in threads {
                dead_reads += t.join().expect("reader");
            }
        });
        let p = common::pcts(&mut lat);
        let c = common::pcts(&mut ctl);
        let cm = common::pcts(&mut ctl_mem);
        Json::default()
            .pcts("control", &c)
            .pcts("control_mem", &cm)
            .num("readers", readers as f64)
            .num("dead_reads", dead_reads as f64)
            .num("retired_bytes_after", store.retired_bytes() as f64)
            .pcts("terminate", &p)
            .write(&format!("teardown/{readers}"));
    }
    g.finish();
}

/// Fixed work of roughly one uncontended terminate (about 0.5 µs here),
/// touching no shared memory: the control for the scheduler's share of the
/// tail.
fn control() -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..600u64 {
        x = std::hint::black_box(x.rotate_left(7) ^ i).wrapping_mul(0x2545_f491_4f6c_dd1d);
    }
    x
}

/// The memory control: a dependent walk over [`Chase::LINES`] cache lines
/// of a private buffer, in a fixed shuffled order. Terminate chases about
/// as many pointers; where [`control`] touches no memory at all, this one
/// also pays for whatever the other threads evicted from the caches
/// between two of its runs.
struct Chase {
    next: Vec<usize>,
}

impl Chase {
    const LINES: usize = 64;
    /// `usize`s per 64-byte line.
    const STRIDE: usize = 8;

    fn new() -> Self {
        let mut order: Vec<usize> = (1..Self::LINES).collect();
        // A fixed permutation (no hardware prefetcher pattern).
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in (1..order.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut next = vec![0; Self::LINES * Self::STRIDE];
        let mut at = 0;
        for &line in &order {
            next[at * Self::STRIDE] = line;
            at = line;
        }
        next[at * Self::STRIDE] = 0;
        Chase { next }
    }

    fn walk(&self) -> usize {
        let mut at = 0;
        for _ in 0..Self::LINES {
            at = std::hint::black_box(self.next[at * Self::STRIDE]);
        }
        at
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = teardown
}
criterion_main!(benches);
