//! Flush tracker: the cost of one flush notification with 300,000 tracked
//! shapes.
//!
//! Fixture (untimed): 300,000 registered shapes; 250,000 committed
//! transactions, each received by 4 distinct random shapes, so 1,000,000
//! (shape, transaction) pairs are pending and every shape holds about 3.3.
//! Timed: the 1,000,000 flush notifications, in commit order (each shape
//! reports the last offset it received of its oldest pending transaction:
//! a FIFO pop and a hold decrement; every fourth one completes a
//! transaction, removes its pending-set key and advances the global
//! offset). One criterion iteration = 1,000,000 notifications, so ns per
//! notification = reported time / 1,000,000.
//!
//! Run: `cargo bench --bench flush_tracker`. The mutex + BTreeMap pending
//! set instead of the skip list:
//! `RUSTFLAGS="--cfg shapebuf_btree_pending" CARGO_TARGET_DIR=target/btree cargo bench --bench flush_tracker`.
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shapebuf::{FlushTracker, LogOffset, TrackedShape};

const SHAPES: usize = 300_000;
const NOTIFICATIONS: usize = 1_000_000;
const PER_TX: usize = 4;

struct Fixture {
    tracker: FlushTracker,
    shapes: Vec<TrackedShape>,
    /// (shape index, offset it reports durable), in commit order.
    notifications: Vec<(u32, LogOffset)>,
}

fn id(i: usize) -> String {
    format!("shape-{i:06}")
}

fn fixture() -> Fixture {
    let tracker = FlushTracker::new();
    let shapes: Vec<TrackedShape> = (0..SHAPES).map(|i| tracker.register(id(i))).collect();
    let ids: Vec<String> = (0..SHAPES).map(id).collect();
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut notifications = Vec::with_capacity(NOTIFICATIONS);
    for tx in 1..=(NOTIFICATIONS / PER_TX) as u64 {
        let mut picked = [usize::MAX; PER_TX];
        let mut txn = tracker.transaction();
        for (op, slot) in (0u64..).zip(0..PER_TX) {
            let s = loop {
                let s = rng.random_range(0..SHAPES);
                if !picked.contains(&s) {
                    break s;
                }
            };
            picked[slot] = s;
            let off = LogOffset::new(tx, op);
            txn.received(&ids[s], off);
            notifications.push((s as u32, off));
        }
        txn.commit(LogOffset::new(tx, PER_TX as u64))
            .expect("in order");
    }
    assert_eq!(tracker.pending_shapes(), {
        let mut seen = vec![false; SHAPES];
        notifications
            .iter()
            .for_each(|(s, _)| seen[*s as usize] = true);
        seen.iter().filter(|b| **b).count()
    });
    Fixture {
        tracker,
        shapes,
        notifications,
    }
}

fn check(f: &Fixture) {
    assert_eq!(f.tracker.pending_shapes(), 0);
    assert_eq!(f.tracker.global(), f.tracker.last_commit());
}

fn notify_one_thread(f: &Fixture) -> Duration {
    let start = Instant::now();
    for (s, off) in &f.notifications {
        f.shapes[*s as usize].flushed(black_box(*off));
    }
    let took = start.elapsed();
    check(f);
    took
}

/// Two writer threads (shapes split by parity), each reporting its shapes'
/// notifications in commit order.
fn notify_two_threads(f: &Fixture) -> Duration {
    let parts: Vec<Vec<(u32, LogOffset)>> = (0..2)
        .map(|p| {
            f.notifications
                .iter()
                .copied()
                .filter(|(s, _)| *s as usize % 2 == p)
                .collect()
        })
        .collect();
    let barrier = Barrier::new(3);
    let took = std::thread::scope(|scope| {
        for part in &parts {
            let (barrier, shapes) = (&barrier, &f.shapes);
            scope.spawn(move || {
                barrier.wait();
                for (s, off) in part {
                    shapes[*s as usize].flushed(black_box(*off));
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    });
    check(f);
    took
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("flush_tracker");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(NOTIFICATIONS as u64));
    type Run = fn(&Fixture) -> Duration;
    let runs: [(&str, Run); 2] = [
        ("notify_300k_shapes_1m/1_thread", notify_one_thread),
        ("notify_300k_shapes_1m/2_threads", notify_two_threads),
    ];
    for (name, run) in runs {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let f = fixture();
                    total += run(&f);
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
