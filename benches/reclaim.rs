//! Reclaim: a host that churns through distinct shape ids must get its
//! memory and its disk back. 1,000,000 cycles of create (a new id) +
//! write (one committed 16-byte entry, flushed: the shape gets a file) +
//! remove (`ShapeWriter::remove`), on one store; it prints RSS (after
//! `malloc_trim`, so glibc's free-but-kept pages are not counted) and the
//! live heap (a counting allocator) after 100,000 and after 1,000,000
//! cycles, their ratio (the lifecycle issue's target: within 1.1x), and
//! how many files are left in the store's directory (target: none), with
//! the store open and after it closes (the last removals' deletions may
//! wait in an idle flusher thread's epoch bag until then).
//!
//! It runs twice, each in a child process: with glibc's default arenas
//! and with `MALLOC_ARENA_MAX=1` (one arena: the flusher threads' frees
//! return to the same arena the store allocates from; with an arena per
//! thread, RSS grows by what glibc keeps per arena while the live heap
//! stays flat: docs/benchmarks.md, cause 12).
//!
//! Not a criterion bench: one figure per run. Files go to tmpfs
//! (`/dev/shm`) with fsyncs skipped (`common::NoSyncFs`): a million file
//! creations and deletions in one ext4 directory slow down over the run
//! (the kernel's inode allocator scanning recently deleted inodes), which
//! is the file system's figure, not the library's. Run:
//!
//! ```text
//! cargo bench --bench reclaim            # 1,000,000 cycles
//! RECLAIM_CYCLES=200000 cargo bench --bench reclaim
//! ```

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::{heap_bytes, rss_after_trim, tmpfs_dir, Counting, NoSyncFs};
use shapebuf::{Config, LogOffset, Store};

#[global_allocator]
static ALLOC: Counting = Counting;

const CHILD: &str = "SHAPEBUF_RECLAIM_CHILD";

fn main() {
    // `cargo bench` passes `--bench`; a filter that is not ours skips us.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && a != "reclaim")
    {
        return;
    }
    if std::env::var_os(CHILD).is_some() {
        return run();
    }
    println!("| arenas | cycles | RSS (trimmed) | live heap | files left | shapes |");
    println!("|---|---|---|---|---|---|");
    let exe = std::env::current_exe().expect("bench binary");
    for one_arena in [false, true] {
        let mut cmd = std::process::Command::new(&exe);
        cmd.env(CHILD, "1").arg("--bench");
        if one_arena {
            cmd.env("MALLOC_ARENA_MAX", "1");
        } else {
            cmd.env_remove("MALLOC_ARENA_MAX");
        }
        let status = cmd.status().expect("spawn the measuring child");
        assert!(status.success(), "the measuring child failed: {status}");
    }
}

/// One measurement (in a child process).
fn run() {
    let arenas = match std::env::var("MALLOC_ARENA_MAX") {
        Ok(n) => format!("MALLOC_ARENA_MAX={n}"),
        Err(_) => "glibc default".to_string(),
    };
    let cycles: u64 = std::env::var("RECLAIM_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tmpfs_dir();
    let store = Store::open_with_fs(dir.path(), Config::default(), Arc::new(NoSyncFs::default()))
        .expect("open");
    let start = Instant::now();
    let mut first: Option<(u64, usize)> = None;
    let checkpoint = cycles.min(100_000);
    for i in 0..cycles {
        let mut w = store.writer(format!("shape-{i:07}")).expect("writer");
        w.append(LogOffset::new(1, 0), "payload-16-bytes")
            .expect("append");
        w.commit().expect("commit");
        w.flush().expect("flush");
        w.remove().expect("remove");
        if i + 1 == checkpoint {
            store.collect();
            first = Some((rss_after_trim(), heap_bytes()));
            eprintln!("reclaim: {checkpoint} cycles in {:.1?}", start.elapsed());
        }
    }
    // Two epoch advances run the last removals' deferred frees (and with
    // them the deletion of their files).
    for _ in 0..3 {
        store.collect();
    }
    let (rss, heap) = (rss_after_trim(), heap_bytes());
    let (rss0, heap0) = first.expect("checkpoint reached");
    // The shape logs' directory (`Store::dir` is the one the store opened).
    let shapes_dir = store.dir().join("shapes");
    let left: Vec<String> = std::fs::read_dir(&shapes_dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    if !left.is_empty() {
        eprintln!("reclaim: left in {}: {left:?}", shapes_dir.display());
    }
    let left = left.len();
    let shapes = store.shape_count();
    let path = shapes_dir;
    // Closing the store runs what the epoch collector still holds (a
    // removal whose last reference sits in an idle flusher thread's bag).
    drop(store);
    let closed = std::fs::read_dir(&path).map_or(0, Iterator::count);
    println!(
        "| {arenas} | {checkpoint} | {} KiB | {} KiB | | |",
        rss0 / 1024,
        heap0 / 1024
    );
    println!(
        "| {arenas} | {cycles} | {} KiB ({:.3}x) | {} KiB ({:.3}x) | {left} ({closed} after close) | {shapes} |",
        rss / 1024,
        rss as f64 / rss0 as f64,
        heap / 1024,
        heap as f64 / heap0 as f64,
    );
    eprintln!("reclaim: {cycles} cycles in {:.1?}", start.elapsed());
}
