//! Memory: heap bytes per buffered entry beyond the payload, and resident
//! memory across create/terminate cycles with readers. Not a criterion
//! bench (nothing here is a time): it prints its figures and writes them to
//! `target/criterion/shapebuf/memory/*.json`.
//!
//! 1. **Per entry.** A counting global allocator tracks live heap bytes. A
//!    fresh store (null file system, `flush_bytes = usize::MAX`: nothing is
//!    flushed or trimmed) gets `n` committed entries with 100-byte payloads,
//!    each a fresh `Bytes::from(Vec<u8>)` as a host would hand over; after
//!    retired segments are collected, `(live after - live before - 100 n) /
//!    n` is the overhead per entry. `n` runs over sizes just at and just past
//!    a chunk and directory doubling (a segment's slots come in chunks of
//!    64, and its directory of chunks doubles), so the table shows the best
//!    and worst case of both.
//! 2. **Cycles.** 64 shapes on tmpfs; 2 reader threads read random shapes
//!    in a loop (`visit` of the last entry, from memory while the shape is
//!    live, from disk while it is dead); the main thread runs cycles of
//!    open writer, append one entry, commit, terminate, round robin over the
//!    shapes. At each checkpoint the readers pause (no read in flight), the
//!    retired bytes not yet freed are recorded (the collector's lag: a
//!    writer thread hands its retired segments to the collector per 64 KiB,
//!    and collections run as threads pin), the main thread runs
//!    `Store::collect` as a host would when idle, and
//!    resident set size (`/proc/self/statm`) and live heap bytes are
//!    recorded at 1,000, 10,000, 100,000 and 1,000,000 cycles
//!    (`SHAPEBUF_BENCH_CYCLES` lowers the last), also after `malloc_trim`
//!    (what glibc keeps of freed memory is not the library's). Run twice:
//!    with the default config (10 MiB index interval: a dead read scans up
//!    to the whole of its shape's small log) and with a 4 KiB interval
//!    (cheap dead reads; the sparse index then grows by 24 bytes per 4 KiB
//!    of log, i.e. with the bytes logged, not with the cycles).
//! 3. **Cycles, one malloc arena.** The default-config cycles again, in a
//!    child process of this bench started with `MALLOC_ARENA_MAX=1`: glibc
//!    gives each thread that allocates an arena of its own and keeps freed
//!    pages in each, so the first run's RSS includes what the reader and
//!    flusher threads' arenas retain. With one arena, RSS tracks the
//!    library's live memory plus one arena's free pages.
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use shapebuf::{Config, LogOffset, Store};

mod common;
use common::{heap_bytes, rss_after_trim, rss_bytes, Counting, Json, NullFs, XorShift};

#[global_allocator]
static ALLOC: Counting = Counting;

const PAYLOAD: usize = 100;

/// Collects retired segments until none is pending (bounded).
fn settle(store: &Store) {
    for _ in 0..1000 {
        store.collect();
        if store.retired_bytes() == 0 {
            return;
        }
    }
    eprintln!(
        "memory: {} retired bytes still pending after 1000 collections",
        store.retired_bytes()
    );
}

fn per_entry() {
    println!("bytes per buffered entry beyond the 100-byte payload:");
    // 64 * 2^k fills whole chunks and a whole directory; 64 * 2^k + 1 has
    // just started a chunk and doubled the directory.
    let sizes = [
        1_000usize, 4_096, 4_097, 65_536, 65_537, 100_000, 1_048_576, 1_048_577,
    ];
    for n in sizes {
        let dir = common::tmpfs_dir();
        let cfg = Config {
            flush_bytes: usize::MAX,
            ..Config::default()
        };
        let store = Store::open_with_fs(dir.path(), cfg, Arc::new(NullFs)).expect("open");
        let mut w = store.writer("mem").expect("writer");
        settle(&store);
        let before = heap_bytes();
        for i in 0..n as u64 {
            w.append(LogOffset::new(i / 10 + 1, i % 10), vec![7u8; PAYLOAD])
                .expect("append");
            if i % 10 == 9 {
                w.commit().expect("commit");
            }
        }
        w.commit().expect("commit");
        settle(&store);
        let grown = heap_bytes() as f64 - before as f64;
        let overhead = (grown - (n * PAYLOAD) as f64) / n as f64;
        println!("  n = {n:>9}: {overhead:7.1} B/entry");
        Json::default()
            .num("entries", n as f64)
            .num("heap_growth_bytes", grown)
            .num("overhead_bytes_per_entry", overhead)
            .write(&format!("memory/per_entry/{n}"));
        drop(w);
    }
}

fn cycles(label: &str, index_interval: u64) {
    let last: u64 = std::env::var("SHAPEBUF_BENCH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    const SHAPES: usize = 64;
    let dir = common::tmpfs_dir();
    let cfg = Config {
        index_interval,
        ..Config::default()
    };
    let store = Store::open_with(dir.path(), cfg).expect("open");
    let ids: Vec<String> = (0..SHAPES).map(|i| format!("cycle-{i:02}")).collect();
    let heads: Vec<AtomicU64> = (0..SHAPES).map(|_| AtomicU64::new(0)).collect();
    for (i, id) in ids.iter().enumerate() {
        let mut w = store.writer(id).expect("writer");
        w.append(LogOffset::new(1, 0), vec![1u8; PAYLOAD])
            .expect("append");
        w.commit().expect("commit");
        w.terminate().expect("terminate");
        heads[i].store(1, Ordering::Relaxed);
    }
    let handles: Vec<_> = ids
        .iter()
        .map(|id| store.handle(id).expect("handle"))
        .collect();
    const READERS: usize = 2;
    let stop = AtomicBool::new(false);
    // Checkpoints pause the readers so that no read's buffers are in flight
    // when the heap is measured.
    let paused = AtomicBool::new(false);
    let idle = AtomicUsize::new(0);
    let mut points = Vec::new();
    // Start from what the cycles use, not what the per-entry phase left.
    rss_after_trim();
    std::thread::scope(|s| {
        for r in 0..READERS as u64 {
            let (handles, heads, stop, paused, idle) = (&handles, &heads, &stop, &paused, &idle);
            s.spawn(move || {
                let mut rng = XorShift(0x1234_5678 + r);
                let mut seen = 0usize;
                // Relaxed: `stop` carries no data.
                while !stop.load(Ordering::Relaxed) {
                    // Acquire/Release: pairs with the checkpoint's stores and
                    // loads, so the checkpoint sees this thread's frees.
                    if paused.load(Ordering::Acquire) {
                        idle.fetch_add(1, Ordering::AcqRel);
                        while paused.load(Ordering::Acquire) && !stop.load(Ordering::Relaxed) {
                            std::thread::yield_now();
                        }
                        idle.fetch_sub(1, Ordering::AcqRel);
                        continue;
                    }
                    let i = rng.below(SHAPES);
                    // Relaxed: any published transaction is a valid start.
                    let c = heads[i].load(Ordering::Relaxed);
                    handles[i]
                        .visit(LogOffset::new(c - 1, u64::MAX), LogOffset::MAX, |e| {
                            seen += e.payload.len()
                        })
                        .expect("read");
                }
                std::hint::black_box(seen);
            });
        }
        let mut checkpoints = vec![1_000u64, 10_000, 100_000, 1_000_000];
        checkpoints.retain(|&c| c < last);
        checkpoints.push(last);
        let start = Instant::now();
        let mut tx = vec![1u64; SHAPES];
        let mut next = 0;
        for cycle in 1..=last {
            let i = (cycle as usize) % SHAPES;
            tx[i] += 1;
            let mut w = store.writer(&ids[i]).expect("writer");
            w.append(LogOffset::new(tx[i], 0), vec![2u8; PAYLOAD])
                .expect("append");
            w.commit().expect("commit");
            w.terminate().expect("terminate");
            heads[i].store(tx[i], Ordering::Relaxed);
            if cycle == checkpoints[next] {
                paused.store(true, Ordering::Release);
                let wait = Instant::now();
                while idle.load(Ordering::Acquire) < READERS {
                    assert!(wait.elapsed().as_secs() < 60, "readers did not pause");
                    std::thread::yield_now();
                }
                // What the collector had not freed yet (its lag), then the
                // host's idle-time collection on this thread, then memory.
                let retired = store.retired_bytes();
                settle(&store);
                let p = (
                    cycle,
                    rss_bytes(),
                    heap_bytes(),
                    retired,
                    start.elapsed(),
                    rss_after_trim(),
                );
                println!(
                    "  {:>9} cycles: rss {:>6.1} MiB ({:>6.1} MiB after malloc_trim), heap {:>6.2} MiB, retired {:>6} B, {:.1} s",
                    p.0,
                    p.1 as f64 / (1 << 20) as f64,
                    p.5 as f64 / (1 << 20) as f64,
                    p.2 as f64 / (1 << 20) as f64,
                    p.3,
                    p.4.as_secs_f64()
                );
                points.push(p);
                next += 1;
                paused.store(false, Ordering::Release);
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let first = points.first().copied();
    for &(cycles, rss, heap, retired, t, trimmed) in &points {
        let mut j = Json::default()
            .num("cycles", cycles as f64)
            .num("index_interval", index_interval as f64)
            .num("rss_bytes", rss as f64)
            .num("rss_after_malloc_trim_bytes", trimmed as f64)
            .num("heap_bytes", heap as f64)
            .num("retired_bytes", retired as f64)
            .num("seconds", t.as_secs_f64());
        if let Some((_, rss0, heap0, _, _, _)) = first {
            j = j
                .num("rss_ratio_to_first", rss as f64 / rss0 as f64)
                .num("heap_ratio_to_first", heap as f64 / heap0 as f64);
        }
        j.write(&format!("memory/cycles/{label}/{cycles}"));
    }
}

/// Set in the child process that runs the one-arena cycles.
const CHILD: &str = "SHAPEBUF_MEMORY_ONE_ARENA";

fn main() {
    // `cargo bench` passes `--bench` (and any filter); this bench has none.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::var_os(CHILD).is_some() {
        cycles("default-arena1", Config::default().index_interval);
        return;
    }
    per_entry();
    println!(
        "resident memory across create/terminate cycles (64 shapes, 2 readers), default config:"
    );
    cycles("default", Config::default().index_interval);
    println!(
        "the same with a 4 KiB index interval (cheap dead reads, 24 B of index per 4 KiB of log):"
    );
    cycles("index4k", 4 << 10);
    println!(
        "the default config again, with one malloc arena (MALLOC_ARENA_MAX=1, child process):"
    );
    // glibc reads MALLOC_ARENA_MAX when the process starts, hence the child.
    let status = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env(CHILD, "1")
        .env("MALLOC_ARENA_MAX", "1")
        .status()
        .expect("start the one-arena child");
    assert!(status.success(), "one-arena child: {status}");
}
