//! Live tail: how fast a commit wakes the readers waiting on its shape, and
//! what the wake hook costs a commit that nobody waits for.
//!
//! - `wake/{blocking,async}/{1,100,10000}`: N readers wait on one shape
//!   (`ShapeHandle::wait_for` on N threads, or `wait_for_async` in N tasks
//!   on a 2-worker tokio runtime); one criterion iteration is one round:
//!   every reader registered, the writer appends one entry and commits, and
//!   the round ends when the last reader has returned. criterion reports
//!   that commit-to-last-wake time; the bench also records, for every
//!   reader and round, the time from just before `commit()` to the moment
//!   its wait returned, and prints (and writes to
//!   `target/criterion/shapebuf/wake/`) its p50 / p99 / max, with the time
//!   `commit()` itself took.
//! - `commit_with_waiters/{blocking,async}/{1,100,10000}`: the same rounds
//!   on the same readers, but criterion times only the `commit()` call: what
//!   a writer pays for its readers (the wake itself is the store's waker
//!   thread's job since the hand-off; before it, the committing thread
//!   woke every reader inside `commit()`).
//! - `commit_no_waiters/append_commit`: a writer appends one entry and
//!   commits it, nobody waiting (in-memory files, no flush in the timed
//!   loop). Build once as is and once with
//!   `RUSTFLAGS="--cfg shapebuf_no_wait_hook"` (the same commit path without
//!   the hook) to compare.
//! - `commit_no_waiters/{publish,publish_and_hook}`: the hook's instructions
//!   alone, side by side in one binary: a Release store of a watermark, and
//!   the same store followed by the hook (a SeqCst fence and a load of the
//!   waiter count).

use std::hint::black_box;
use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use shapebuf::fs::SimFs;
use shapebuf::{Config, LogOffset, ShapeHandle, ShapeWriter, Store, WaitOutcome};

mod common;
use common::Json;

/// A store on in-memory files that never flushes on its own.
fn store() -> Store {
    let cfg = Config {
        flush_bytes: usize::MAX,
        ..Config::default()
    };
    let dir = std::env::temp_dir().join("shapebuf-bench-wake");
    Store::open_with_fs(dir, cfg, Arc::new(SimFs::new())).expect("open")
}

/// Nanoseconds since `base`.
fn ns(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

/// What the readers and the writer of a wake round share.
struct Round {
    base: Instant,
    /// When the writer called `commit()` this round (ns since `base`).
    t0: AtomicU64,
    /// Readers that returned this round.
    woken: AtomicUsize,
    /// The writer's thread, unparked by the round's last reader.
    writer: Mutex<Option<std::thread::Thread>>,
    readers: usize,
}

impl Round {
    fn new(readers: usize) -> Arc<Round> {
        Arc::new(Round {
            base: Instant::now(),
            t0: AtomicU64::new(0),
            woken: AtomicUsize::new(0),
            writer: Mutex::new(None),
            readers,
        })
    }

    /// A reader returned from its wait: its latency, and the writer's wake-up
    /// if it is the last one.
    fn woke(&self) -> u64 {
        // Acquire: pairs with the writer's Release store of `t0`.
        let lat = ns(self.base).saturating_sub(self.t0.load(Ordering::Acquire));
        // AcqRel: the last reader's increment orders every reader's before
        // the writer's next round.
        if self.woken.fetch_add(1, Ordering::AcqRel) + 1 == self.readers {
            if let Some(t) = self.writer.lock().unwrap().as_ref() {
                t.unpark();
            }
        }
        lat
    }

    /// One round: waits until every reader is registered, commits one
    /// entry, parks until the last reader returned. Returns (commit-to-last
    /// wake, time inside `commit()`).
    fn run(&self, w: &mut ShapeWriter, h: &ShapeHandle, tx: u64) -> (Duration, Duration) {
        until_waiting(h, self.readers);
        // Relaxed: reset before the commit that the readers synchronise with.
        self.woken.store(0, Ordering::Relaxed);
        w.append(LogOffset::new(tx, 0), "x").expect("append");
        let start = Instant::now();
        // Release: pairs with the readers' Acquire load in `woke`.
        self.t0.store(ns(self.base), Ordering::Release);
        w.commit().expect("commit");
        let commit = start.elapsed();
        // Acquire: pairs with the last reader's AcqRel increment.
        while self.woken.load(Ordering::Acquire) < self.readers {
            std::thread::park_timeout(Duration::from_millis(50));
        }
        (start.elapsed(), commit)
    }
}

#[derive(Default)]
struct Samples {
    /// Per reader and round: commit to return of its wait.
    wake: Vec<u64>,
    /// Per round: time inside `commit()`.
    commit: Vec<u64>,
}

fn report(name: &str, mut s: Samples) {
    if s.commit.is_empty() {
        // Filtered out (or `--list`): keep the last real run's summary.
        return;
    }
    let w = common::pcts(&mut s.wake);
    let c = common::pcts(&mut s.commit);
    let us = |n: f64| n / 1000.0;
    println!(
        "{name}: commit-to-wake p50 {:.1} us, p99 {:.1} us, max {:.1} us \
         ({} wakes, {} rounds); commit() p50 {:.2} us, p99 {:.2} us",
        us(w.p50),
        us(w.p99),
        us(w.max),
        w.n,
        c.n,
        us(c.p50),
        us(c.p99)
    );
    Json::default()
        .pcts("wake", &w)
        .pcts("commit", &c)
        .num("wakes", w.n as f64)
        .num("rounds", c.n as f64)
        .write(&format!("wake/{}", name.replace('/', "-")));
}

/// Benchmarks the rounds of `n` registered readers of `h` twice: the
/// commit-to-last-wake time (`wake/{form}/{n}`), then the time inside
/// `commit()` alone (`commit_with_waiters/{form}/{n}`). Returns every
/// round's `commit()` time.
fn rounds(
    c: &mut Criterion,
    form: &str,
    n: usize,
    round: &Round,
    w: &mut ShapeWriter,
    h: &ShapeHandle,
) -> Vec<u64> {
    let mut commits = Vec::new();
    let mut tx = 0;
    for (group, whole) in [("wake", true), ("commit_with_waiters", false)] {
        c.benchmark_group(format!("{group}/{form}")).bench_function(
            BenchmarkId::from_parameter(n),
            |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        tx += 1;
                        let (all, commit) = round.run(w, h, tx);
                        total += if whole { all } else { commit };
                        commits.push(commit.as_nanos() as u64);
                    }
                    total
                })
            },
        );
    }
    commits
}

/// Runs the rounds against the `n` readers of `h`, then terminates the
/// shape (every reader's wait loop ends on it) and reports the readers'
/// wake latencies, which `join` collects, with the commit times.
fn finish(
    c: &mut Criterion,
    form: &str,
    n: usize,
    round: &Round,
    mut w: ShapeWriter,
    h: &ShapeHandle,
    join: impl FnOnce() -> Vec<u64>,
) {
    let commit = rounds(c, form, n, round, &mut w, h);
    until_waiting(h, n);
    w.terminate().expect("terminate");
    let wake = join();
    report(&format!("wake/{form}/{n}"), Samples { wake, commit });
}

/// Yields until `n` readers wait on `h`.
fn until_waiting(h: &ShapeHandle, n: usize) {
    while h.waiting() < n {
        std::thread::yield_now();
    }
}

/// `n` blocking readers, one thread each (small stacks).
fn wake_blocking(c: &mut Criterion, n: usize) {
    let store = store();
    let w = store.writer("s").expect("writer");
    let h = store.handle("s").expect("handle");
    let round = Round::new(n);
    *round.writer.lock().unwrap() = Some(std::thread::current());
    let readers: Vec<_> = (0..n)
        .map(|_| {
            let (h, round) = (h.clone(), Arc::clone(&round));
            std::thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(move || {
                    let mut lat = Vec::new();
                    let mut after = LogOffset::ZERO;
                    loop {
                        match h.wait_for(after, Duration::MAX) {
                            WaitOutcome::Committed(o) => {
                                lat.push(round.woke());
                                after = o;
                            }
                            _ => return lat,
                        }
                    }
                })
                .expect("spawn a reader")
        })
        .collect();
    finish(c, "blocking", n, &round, w, &h, || {
        readers
            .into_iter()
            .flat_map(|r| r.join().expect("reader"))
            .collect()
    });
}

/// `n` async readers, one task each, on a 2-worker tokio runtime.
fn wake_async(c: &mut Criterion, n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("runtime");
    let store = store();
    let w = store.writer("s").expect("writer");
    let h = store.handle("s").expect("handle");
    let round = Round::new(n);
    *round.writer.lock().unwrap() = Some(std::thread::current());
    let readers: Vec<_> = (0..n)
        .map(|_| {
            let (h, round) = (h.clone(), Arc::clone(&round));
            rt.spawn(async move {
                let mut lat = Vec::new();
                let mut after = LogOffset::ZERO;
                loop {
                    match h.wait_for_async(after, Duration::MAX).await {
                        WaitOutcome::Committed(o) => {
                            lat.push(round.woke());
                            after = o;
                        }
                        _ => return lat,
                    }
                }
            })
        })
        .collect();
    finish(c, "async", n, &round, w, &h, || {
        readers
            .into_iter()
            .flat_map(|r| rt.block_on(r).expect("reader"))
            .collect()
    });
}

fn wake(c: &mut Criterion) {
    for n in [1, 100, 10_000] {
        wake_blocking(c, n);
        wake_async(c, n);
    }
}

/// A writer appends one entry and commits it; nobody waits.
fn commit_no_waiters(c: &mut Criterion) {
    let mut g = c.benchmark_group("commit_no_waiters");
    let hook = if cfg!(shapebuf_no_wait_hook) {
        "append_commit (built without the hook)"
    } else {
        "append_commit"
    };
    g.bench_function(hook, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                // A fresh shape every 50,000 transactions bounds memory;
                // setting it up is not timed.
                let store = store();
                let mut w = store.writer("s").expect("writer");
                let n = (iters - done).min(50_000);
                let start = Instant::now();
                for tx in 1..=n {
                    w.append(LogOffset::new(tx, 0), "0123456789abcdef")
                        .expect("append");
                    black_box(w.commit().expect("commit"));
                }
                total += start.elapsed();
                done += n;
            }
            total
        })
    });
    let watermark = AtomicU64::new(0);
    let count = AtomicUsize::new(0);
    let mut v = 0u64;
    g.bench_function("publish", |b| {
        b.iter(|| {
            v += 1;
            watermark.store(black_box(v), Ordering::Release);
        })
    });
    g.bench_function("publish_and_hook", |b| {
        b.iter(|| {
            v += 1;
            watermark.store(black_box(v), Ordering::Release);
            fence(Ordering::SeqCst);
            if count.load(Ordering::Acquire) != 0 {
                black_box(&count);
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = commit_no_waiters, wake
}
criterion_main!(benches);
