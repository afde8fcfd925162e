//! Shutting down (issue 22 item 5): a deploy stops every live shape at once.
//!
//! - `close`: a store with `SHAPES` live writers, each holding one
//!   committed, unflushed entry, closed with `Store::close` (every batch
//!   written, then synced on 16 threads at once), beside its baseline:
//!   the same shapes terminated one by one from one thread.
//! - `terminate`: `TERM_SHAPES` live one-entry shapes terminated from 1
//!   thread and from 16 threads (each owning a sixteenth of them).
//!
//! Each scenario builds its store afresh (on the disk `TMPDIR` is on) and is
//! timed once per run; `RUNS` runs, medians printed. Not criterion: one
//! sample of the baseline at 100,000 shapes takes a minute. Run with
//!
//! ```text
//! cargo bench --bench shutdown
//! SHAPES=10000 TERM_SHAPES=2000 RUNS=1 cargo bench --bench shutdown   # quick
//! ```
//!
//! Every run checks that the entries are durable: it reopens the store and
//! reads a sample of the shapes back (every shape at 10,000 or fewer).
use std::time::{Duration, Instant};

use shapebuf::{Config, LogOffset, ShapeWriter, Store};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(flush_threads: usize) -> Config {
    Config {
        // No background flush while the shapes are set up.
        flush_interval: Duration::from_secs(3600),
        flush_threads,
        ..Config::default()
    }
}

/// A store in a fresh directory with `n` live writers, each holding one
/// committed, unflushed entry.
fn live_shapes(n: usize, cfg: Config) -> (tempfile::TempDir, Store, Vec<ShapeWriter>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(dir.path(), cfg).expect("open");
    let writers = (0..n)
        .map(|i| {
            let mut w = store.writer(format!("shape-{i}")).expect("writer");
            w.append(LogOffset::new(1, 0), format!("entry of {i}"))
                .expect("append");
            w.commit().expect("commit");
            w
        })
        .collect();
    (dir, store, writers)
}

/// Reopens `dir` and checks that a sample of the `n` shapes (all of them up
/// to 10,000) hold their entry.
fn check_durable(dir: &std::path::Path, n: usize) {
    let store = Store::open(dir).expect("reopen");
    let step = n.div_ceil(10_000).max(1);
    for i in (0..n).step_by(step) {
        let out = store
            .read(format!("shape-{i}"), LogOffset::ZERO, LogOffset::MAX)
            .expect("read back");
        assert_eq!(out.entries.len(), 1, "shape-{i} lost its entry");
    }
}

fn close(n: usize) -> Duration {
    let (dir, store, writers) = live_shapes(n, config(2));
    let t = Instant::now();
    store.close().expect("close");
    let took = t.elapsed();
    drop(writers);
    check_durable(dir.path(), n);
    took
}

fn terminate_one_by_one(n: usize) -> Duration {
    let (dir, store, writers) = live_shapes(n, config(2));
    let t = Instant::now();
    for w in writers {
        w.terminate().expect("terminate");
    }
    let took = t.elapsed();
    drop(store);
    check_durable(dir.path(), n);
    took
}

fn terminate_from(threads: usize, n: usize, flush_threads: usize) -> Duration {
    let (dir, store, writers) = live_shapes(n, config(flush_threads));
    let mut shares: Vec<Vec<ShapeWriter>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, w) in writers.into_iter().enumerate() {
        shares[i % threads].push(w);
    }
    let t = Instant::now();
    std::thread::scope(|s| {
        for share in shares {
            s.spawn(move || {
                for w in share {
                    w.terminate().expect("terminate");
                }
            });
        }
    });
    let took = t.elapsed();
    drop(store);
    check_durable(dir.path(), n);
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with
    // no `--bench`: a smoke run at a small size.
    let bench = std::env::args().any(|a| a == "--bench");
    let (shapes, term, runs) = if bench {
        (
            env("SHAPES", 100_000),
            env("TERM_SHAPES", 20_000),
            env("RUNS", 1),
        )
    } else {
        (200, 64, 1)
    };
    let mut rows: Vec<(String, Duration, usize)> = Vec::new();
    let mut run = |name: String, n: usize, f: &dyn Fn() -> Duration| {
        let d = median((0..runs).map(|_| f()).collect());
        eprintln!("{name}: {d:.2?}");
        rows.push((name, d, n));
    };
    run(format!("close, {shapes} live shapes"), shapes, &|| {
        close(shapes)
    });
    run(
        format!("baseline: terminate one by one, {shapes} shapes"),
        shapes,
        &|| terminate_one_by_one(shapes),
    );
    for ft in [2, 16] {
        run(
            format!("terminate {term} shapes from 1 thread (flush_threads {ft})"),
            term,
            &|| terminate_from(1, term, ft),
        );
        run(
            format!("terminate {term} shapes from 16 threads (flush_threads {ft})"),
            term,
            &|| terminate_from(16, term, ft),
        );
    }
    println!("| scenario | time (median of {runs}) | per shape |");
    println!("|---|---:|---:|");
    for (name, d, n) in &rows {
        println!(
            "| {name} | {:.2} s | {:.1} us |",
            d.as_secs_f64(),
            d.as_secs_f64() * 1e6 / *n as f64
        );
    }
    let ratio = |a: usize, b: usize| rows[a].1.as_secs_f64() / rows[b].1.as_secs_f64();
    println!();
    println!("close vs one-by-one terminate: {:.1}x faster", ratio(1, 0));
    println!(
        "16 threads vs 1 thread terminating: {:.2}x (flush_threads 2), {:.2}x (flush_threads 16)",
        ratio(2, 3),
        ratio(4, 5)
    );
}
