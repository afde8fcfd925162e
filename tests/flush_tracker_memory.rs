//! The pending set returns the memory of removed entries.
//!
//! crossbeam-skiplist 0.1.3 never frees an entry that a `SkipMap::range`
//! iteration passed over and that is removed later (crossbeam issue 1178).
//! The tracker uses the skip list without range iteration, releases every
//! reference it takes, and reclaims on its own epoch collector. This test
//! runs many cycles of "10,000 transactions commit with a waiting shape
//! each (10,000 keys inserted), then the shapes flush them all (10,000 keys
//! removed)" and checks that the process's live heap does not grow with the
//! number of cycles. A counting global allocator measures it, so this file
//! holds a single test.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use shapebuf::{FlushTracker, LogOffset, TrackedShape};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: defers to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SHAPES: u64 = 2_000;
const TXS_PER_CYCLE: u64 = 10_000;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// `TXS_PER_CYCLE` transactions commit, each received by one shape (round
/// robin); then each is flushed in commit order, removing its key. Returns
/// the live heap while everything was pending.
fn cycle(t: &FlushTracker, shapes: &[TrackedShape], ids: &[String], tx: &mut u64) -> isize {
    let first = *tx + 1;
    for _ in 0..TXS_PER_CYCLE {
        *tx += 1;
        let s = (*tx % SHAPES) as usize;
        t.commit(LogOffset::new(*tx, 1), [(&ids[s], LogOffset::new(*tx, 0))])
            .unwrap();
    }
    assert_eq!(t.pending_transactions(), TXS_PER_CYCLE as usize);
    assert_eq!(t.pending_shapes(), SHAPES as usize);
    let peak = live();
    for n in first..=*tx {
        shapes[(n % SHAPES) as usize].flushed(LogOffset::new(n, 0));
    }
    assert_eq!(t.pending_transactions(), 0);
    assert_eq!(t.pending_shapes(), 0);
    assert_eq!(t.global(), LogOffset::new(*tx, 1));
    peak
}

fn settle(t: &FlushTracker) -> isize {
    for _ in 0..200 {
        t.collect();
    }
    live()
}

#[test]
fn removed_pending_entries_memory_is_returned() {
    let t = FlushTracker::new();
    let ids: Vec<String> = (0..SHAPES).map(|s| format!("s{s}")).collect();
    let shapes: Vec<TrackedShape> = ids.iter().map(|id| t.register(id)).collect();
    let mut tx = 0;
    for _ in 0..3 {
        cycle(&t, &shapes, &ids, &mut tx);
    }
    let warm = settle(&t);
    let mut peak = 0;
    for _ in 0..30 {
        peak = peak.max(cycle(&t, &shapes, &ids, &mut tx));
    }
    let after = settle(&t);
    // Each cycle inserts and removes 10,000 skip-list nodes (50+ bytes
    // each); leaking them over 30 cycles would add some 15 MB or more. The
    // counter does see the pending entries:
    assert!(
        peak - warm > (TXS_PER_CYCLE as isize) * 64,
        "pending entries are visible to the allocator count (peak {peak}, warm {warm})"
    );
    assert!(
        after - warm < 256 << 10,
        "live heap grew by {} bytes over 30 cycles",
        after - warm
    );
}
