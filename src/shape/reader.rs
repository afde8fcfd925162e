//! Reads: committed entries of one shape in an offset range, from memory and
//! disk, exactly once each and in order.
//!
//! # The read protocol
//!
//! 1. Pin the epoch once.
//! 2. Load the committed watermark `c`, then the segment `s` (that order:
//!    see `buffer`'s orderings).
//! 3. Take the entries numbered `[s.start, c)` in range from `s`: find both
//!    ends (one probe when the range reaches the last entry, else a binary
//!    search), then scan a chunk at a time.
//! 4. Unpin. Never hold a pin across disk I/O.
//! 5. If the range reaches at or below `s.base`, read entries numbered below
//!    `min(c, s.start)` from disk: they were durable before `s` was
//!    published.
//!
//! If `s` is null the shape is *dead* (terminated, or no writer this
//! process): everything below `c` is on disk, because terminate flushes
//! before it retires.
//!
//! A trim, growth or terminate that runs during the read swaps the pointer
//! but never mutates `s`, which stays allocated until this read unpins: the
//! answer is the one of the instant of step 2 — no gap, duplicate or
//! reordering. Such reads are counted as `raced`.
//!
//! # Invariants
//!
//! - The answer holds exactly the committed entries with offsets in
//!   `(after, upto]` as of step 2, in increasing offset order.

use std::ops::Range;

use crate::shape::buffer::Buffer;

use crate::entry::Entry;
use crate::shape::segment::{Segment, Slots};
use crate::{LogOffset, Result};

/// The answer to a read.
///
/// ```
/// # fn main() -> shapebuf::Result<()> {
/// use shapebuf::{LogOffset, Store};
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// let mut w = store.writer("s")?;
/// w.append(LogOffset::new(1, 0), "a")?;
/// w.commit()?;
/// w.terminate()?;
/// let out = store.read("s", LogOffset::ZERO, LogOffset::MAX)?;
/// assert_eq!(out.entries.len(), 1);
/// assert!(out.dead, "a terminated shape is served from disk");
/// assert_eq!(out.from_disk, 1);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadOutcome {
    /// The committed entries in the range, in offset order.
    pub entries: Vec<Entry>,
    /// How many of them came from disk.
    pub from_disk: usize,
    /// The shape had no live buffer (terminated, or not opened for writing
    /// in this process): the read was served from disk.
    pub dead: bool,
    /// A trim, growth or terminate replaced the segment while this read used
    /// it; the answer is still exact (the retired segment stays intact until
    /// the read ends).
    pub raced: bool,
}

/// Where the disk part of a read comes from. Production: the shape's log.
pub(crate) trait Disk {
    /// Appends entries numbered below `limit` with offsets in `(after, upto]`.
    fn read(
        &self,
        after: LogOffset,
        upto: LogOffset,
        limit: u64,
        out: &mut Vec<Entry>,
    ) -> Result<()>;
}

/// The in-memory part of a read, decided under the pin.
pub(crate) struct Plan {
    /// Read entries numbered below this from disk (0: none).
    disk_limit: u64,
    dead: bool,
    raced: bool,
}

/// The slots of a segment that hold committed entries in `(after, upto]`.
struct Memory<'g> {
    slots: Slots<'g>,
    range: Range<usize>,
}

impl<'g> Memory<'g> {
    fn entries(&self) -> impl ExactSizeIterator<Item = &'g Entry> {
        self.slots.iter(self.range.clone())
    }
}

/// The memory part (slots found by binary search for both ends, the
/// published length loaded once) and the disk plan.
fn plan<'g>(
    buffer: &Buffer,
    seg: Option<&'g Segment>,
    committed: u64,
    after: LogOffset,
    upto: LogOffset,
    guard: &crate::sync::Guard,
) -> (Plan, Option<Memory<'g>>) {
    let Some(seg) = seg else {
        return (
            Plan {
                disk_limit: committed,
                dead: true,
                raced: false,
            },
            None,
        );
    };
    let visible = committed.saturating_sub(seg.start());
    let slots = seg.published(usize::try_from(visible).unwrap_or(usize::MAX));
    let range = slots.first_after(after)..slots.first_after(upto);
    let disk_limit = if after < seg.base() {
        committed.min(seg.start())
    } else {
        0
    };
    let raced = !buffer.is_current(seg, guard);
    if raced {
        tracing::trace!("read raced a segment swap; served from the retired segment");
    }
    (
        Plan {
            disk_limit,
            dead: false,
            raced,
        },
        Some(Memory { slots, range }),
    )
}

/// The part of a read done under the pin: the plan and the in-memory
/// entries (cloned). The disk part, if the plan has one, runs after the
/// caller unpins ([`finish`]).
pub(crate) fn memory(
    buffer: &Buffer,
    after: LogOffset,
    upto: LogOffset,
    guard: &crate::sync::Guard,
) -> (Plan, Vec<Entry>) {
    if upto <= after {
        let empty = Plan {
            disk_limit: 0,
            dead: false,
            raced: false,
        };
        return (empty, Vec::new());
    }
    let view = buffer.view(guard);
    let (plan, memory) = plan(buffer, view.segment, view.committed, after, upto, guard);
    let mem: Vec<Entry> = memory.map_or_else(Vec::new, |m| m.entries().cloned().collect());
    (plan, mem)
}

/// Reads committed entries with offsets in `(after, upto]` (the whole read
/// protocol on one buffer, as the loom models run it; the store splits it
/// around its registry lookup: [`memory`], then [`finish`]).
#[cfg(loom)]
pub(crate) fn read(
    buffer: &Buffer,
    disk: &impl Disk,
    after: LogOffset,
    upto: LogOffset,
) -> Result<ReadOutcome> {
    if upto <= after {
        return Ok(ReadOutcome::default());
    }
    let guard = buffer.pin();
    let (plan, mem) = memory(buffer, after, upto, &guard);
    drop(guard);
    finish(disk, after, upto, plan, mem)
}

impl Plan {
    /// Whether part of the read comes from disk.
    pub(crate) fn needs_disk(&self) -> bool {
        self.disk_limit > 0
    }
}

/// The part of a read done after unpinning: the disk part of `plan`,
/// stitched before the in-memory entries `mem`.
pub(crate) fn finish(
    disk: &impl Disk,
    after: LogOffset,
    upto: LogOffset,
    plan: Plan,
    mem: Vec<Entry>,
) -> Result<ReadOutcome> {
    if plan.dead {
        tracing::debug!("dead buffer: read served from disk");
    }
    if plan.disk_limit == 0 {
        return Ok(ReadOutcome {
            entries: mem,
            from_disk: 0,
            dead: plan.dead,
            raced: plan.raced,
        });
    }
    let mut entries = Vec::new();
    disk.read(after, upto, plan.disk_limit, &mut entries)?;
    let from_disk = entries.len();
    entries.extend(mem);
    Ok(ReadOutcome {
        entries,
        from_disk,
        dead: plan.dead,
        raced: plan.raced,
    })
}

/// Statistics of a [`visit`](crate::ShapeHandle::visit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VisitOutcome {
    /// Entries visited.
    pub visited: usize,
    /// How many came from disk.
    pub from_disk: usize,
    /// As [`ReadOutcome::dead`].
    pub dead: bool,
    /// As [`ReadOutcome::raced`].
    pub raced: bool,
}

/// What the pinned part of a visit did: visited everything from memory, or
/// planned a disk part (with the memory part cloned) for after the unpin.
pub(crate) enum Visit {
    Done(VisitOutcome),
    Disk(Plan, Vec<Entry>),
}

/// The part of a visit done under the pin: if the range is all in memory,
/// calls `f` on each committed entry in `(after, upto]`, in order, lending
/// the entries (no refcount traffic); otherwise clones the memory part for
/// [`finish_visit`].
pub(crate) fn visit_memory(
    buffer: &Buffer,
    after: LogOffset,
    upto: LogOffset,
    guard: &crate::sync::Guard,
    f: impl FnMut(&Entry),
) -> Visit {
    if upto <= after {
        return Visit::Done(VisitOutcome::default());
    }
    let view = buffer.view(guard);
    let (plan, memory) = plan(buffer, view.segment, view.committed, after, upto, guard);
    if plan.disk_limit == 0 {
        let mut raced = plan.raced;
        let mut visited = 0;
        if let (Some(seg), Some(m)) = (view.segment, &memory) {
            m.entries().for_each(f);
            visited = m.range.len();
            // The callbacks ran over `seg` too: a swap during them is a race
            // this visit survived on the retired segment.
            raced = raced || !buffer.is_current(seg, guard);
        }
        return Visit::Done(VisitOutcome {
            visited,
            from_disk: 0,
            dead: plan.dead,
            raced,
        });
    }
    let mem: Vec<Entry> = memory.map_or_else(Vec::new, |m| m.entries().cloned().collect());
    Visit::Disk(plan, mem)
}

/// The part of a visit done after unpinning: reads the disk part and calls
/// `f` on every entry.
pub(crate) fn finish_visit(
    disk: &impl Disk,
    after: LogOffset,
    upto: LogOffset,
    plan: Plan,
    mem: Vec<Entry>,
    f: impl FnMut(&Entry),
) -> Result<VisitOutcome> {
    let out = finish(disk, after, upto, plan, mem)?;
    out.entries.iter().for_each(f);
    Ok(VisitOutcome {
        visited: out.entries.len(),
        from_disk: out.from_disk,
        dead: out.dead,
        raced: out.raced,
    })
}
