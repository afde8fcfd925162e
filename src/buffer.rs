//! A shape's in-memory buffer: the epoch-protected segment pointer, the
//! committed and persisted watermarks, and the single-writer claim.
//!
//! Entries are numbered from 0 in log order; the watermarks are entry
//! *counts*, so they fit one atomic word each:
//!
//! - `committed`: entries `[0, committed)` belong to committed transactions
//!   and are visible to readers;
//! - `persisted`: entries `[0, persisted)` are durable on disk.
//!
//! # Invariants
//!
//! - Only the holder of the [`WriterToken`] (at most one per buffer, enforced
//!   by the `writer` flag) stores the segment pointer or the watermarks, or
//!   pushes into a segment.
//! - A segment published with `start = s` is published only after entries
//!   `[0, s)` are durable (`persisted >= s` was stored first), so a reader
//!   may take everything below the loaded segment's `start` from disk.
//! - The current segment holds every entry numbered `start..appended`; entry
//!   `committed - 1` is therefore either below `start` (on disk) or in the
//!   segment.
//! - `committed` never decreases while the buffer lives; neither does
//!   `persisted`, except that a new writer that discards its predecessor's
//!   uncommitted tail rewinds it to `committed`.
//! - The pointer is null when no writer has published a segment yet, or
//!   after terminate retired the last one: the shape is then served from
//!   disk only ("dead").
//!
//! # Orderings
//!
//! - `committed`: the writer's Release store in [`WriterToken::commit`] pairs
//!   with the reader's Acquire load in [`Buffer::view`]. The writer pushes
//!   into (and swaps in) every segment holding entries below `committed`
//!   before storing it, so a reader that sees `committed = c` and *then*
//!   loads the pointer gets a segment (or null after terminate's flush)
//!   whose entries cover `[start, c)`. Loading the pointer first and the
//!   watermark second would miss entries appended after a growth swap.
//! - segment pointer: every writer store is Release (publishes the new
//!   segment's initialised slots and `start`), every reader load Acquire.
//! - `persisted`: Release store after the disk write is synced, Acquire loads
//!   by observers; the segment swap that relies on it comes later in the
//!   writer's program order and is itself Release.
//! - `writer`: Acquire on claim pairs with the Release on release, so a new
//!   writer sees everything its predecessor did.

use std::sync::Arc;

use tracing::trace;

use crate::segment::{Entry, Segment};
use crate::sync::{Atomic, AtomicBool, AtomicU64, Epoch, Guard, Ordering, Owned, Shared};
use crate::LogOffset;

/// Bytes retired by writers and not yet freed by the epoch collector.
#[derive(Debug, Default)]
pub(crate) struct RetiredBytes(std::sync::atomic::AtomicU64);

impl RetiredBytes {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The per-shape in-memory buffer. See the module docs.
pub(crate) struct Buffer {
    segment: Atomic<Segment>,
    committed: AtomicU64,
    persisted: AtomicU64,
    writer: AtomicBool,
    epoch: Epoch,
    retired: Arc<RetiredBytes>,
}

/// What a reader sees of a buffer at one instant, valid while its guard is
/// pinned.
pub(crate) struct View<'g> {
    /// Entries `[0, committed)` are committed.
    pub(crate) committed: u64,
    /// The live segment, or `None` when the buffer is dead.
    pub(crate) segment: Option<&'g Segment>,
}

impl Buffer {
    /// A buffer with no live segment whose first `committed` entries are
    /// committed and durable (a shape recovered from disk, or a new one).
    pub(crate) fn new(committed: u64, epoch: Epoch, retired: Arc<RetiredBytes>) -> Self {
        Buffer {
            segment: Atomic::null(),
            committed: AtomicU64::new(committed),
            persisted: AtomicU64::new(committed),
            writer: AtomicBool::new(false),
            epoch,
            retired,
        }
    }

    pub(crate) fn pin(&self) -> Guard {
        self.epoch.pin()
    }

    /// Loads the committed watermark, then the segment (in that order; see
    /// the module's orderings).
    pub(crate) fn view<'g>(&self, guard: &'g Guard) -> View<'g> {
        // Acquire: pairs with the Release store in `WriterToken::commit`.
        let committed = self.committed.load(Ordering::Acquire);
        // Acquire: pairs with the writer's Release stores of the pointer.
        let seg = self.segment.load(Ordering::Acquire, guard);
        View {
            committed,
            // SAFETY: `seg` was loaded under `guard`; a retired segment is
            // only destroyed after every guard pinned before its retirement
            // is dropped, and the returned reference borrows `guard`.
            segment: unsafe { seg.as_ref() },
        }
    }

    /// Whether `seg` is still the current segment (a reader uses this to
    /// notice that a trim, growth or terminate raced its read).
    pub(crate) fn is_current(&self, seg: &Segment, guard: &Guard) -> bool {
        // Acquire: pairs with the writer's Release stores of the pointer.
        std::ptr::eq(self.segment.load(Ordering::Acquire, guard).as_raw(), seg)
    }

    /// Entries `[0, committed)` are committed.
    pub(crate) fn committed(&self) -> u64 {
        // Acquire: pairs with the Release store in `WriterToken::commit`.
        self.committed.load(Ordering::Acquire)
    }

    /// Whether a segment is published (a writer is live or was dropped
    /// without terminating).
    pub(crate) fn is_live(&self) -> bool {
        let guard = self.pin();
        // Acquire: pairs with the writer's Release stores of the pointer.
        !self.segment.load(Ordering::Acquire, &guard).is_null()
    }

    /// Takes the single-writer claim, or `None` when another writer holds it.
    pub(crate) fn claim(self: &Arc<Self>) -> Option<WriterToken> {
        // Acquire: pairs with the Release in `WriterToken::drop`, so the new
        // writer sees its predecessor's stores.
        self.writer
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| WriterToken {
                buffer: Arc::clone(self),
            })
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no reader or writer can reach the buffer any
        // more, so the last segment can be freed at once.
        let guard = unsafe { crossbeam_epoch::unprotected() };
        let seg = self.segment.swap(Shared::null(), Ordering::Relaxed, guard);
        if !seg.is_null() {
            // SAFETY: as above; `seg` was allocated by `Owned::new` and is
            // reachable from nowhere else.
            drop(unsafe { seg.into_owned() });
        }
    }
}

/// Proof of being the one writer of a buffer; every mutation goes through
/// it. Dropping it releases the claim (the segment stays published so
/// readers keep reading, and the next writer takes it over).
pub(crate) struct WriterToken {
    buffer: Arc<Buffer>,
}

impl WriterToken {
    pub(crate) fn buffer(&self) -> &Buffer {
        &self.buffer
    }

    /// The current segment as the writer sees it. Relaxed is enough: only
    /// this writer stores the pointer.
    pub(crate) fn current<'g>(&self, guard: &'g Guard) -> Option<&'g Segment> {
        let seg = self.buffer.segment.load(Ordering::Relaxed, guard);
        // SAFETY: only this writer retires segments, and it does not retire
        // the one it is using while `guard` lives.
        unsafe { seg.as_ref() }
    }

    /// Publishes a new, empty segment starting at entry `start` (whose
    /// predecessor has offset `base`), retiring the current one. All entries
    /// below `start` must be durable and `committed <= start`.
    pub(crate) fn install(&mut self, start: u64, base: LogOffset, capacity: usize, guard: &Guard) {
        debug_assert!(self.buffer.persisted.load(Ordering::Relaxed) >= start);
        self.replace(Owned::new(Segment::new(start, base, capacity)), guard);
    }

    /// Appends `entry` as entry number `seq` (the writer's running count),
    /// growing the segment when it is full. Not visible to readers until
    /// [`WriterToken::commit`].
    pub(crate) fn append(&mut self, entry: Entry, guard: &Guard) {
        let Some(seg) = self.current(guard) else {
            unreachable!("append before install: ShapeWriter installs a segment when it opens");
        };
        // SAFETY: `self` is the unique writer token of this buffer, and `seg`
        // is its current (not retired) segment.
        let Err(entry) = (unsafe { seg.push(entry) }) else {
            return;
        };
        let grown = Segment::new(seg.start(), seg.base(), seg.capacity() * 2);
        Self::copy_into(&grown, seg, 0);
        // SAFETY: `grown` is not published yet; only this thread sees it.
        let pushed = unsafe { grown.push(entry) };
        debug_assert!(pushed.is_ok(), "a doubled segment has room");
        trace!(capacity = grown.capacity(), "segment grown");
        self.replace(Owned::new(grown), guard);
    }

    /// Makes entries `[0, committed)` visible to readers.
    pub(crate) fn commit(&mut self, committed: u64) {
        debug_assert!(committed >= self.buffer.committed.load(Ordering::Relaxed));
        // Release: publishes the appends (slot writes and `len` stores) below
        // `committed`; pairs with the Acquire load in `Buffer::view`.
        self.buffer.committed.store(committed, Ordering::Release);
    }

    /// Records that entries `[0, persisted)` are durable. Call only after
    /// the disk write was synced. It only rewinds when a new writer has just
    /// discarded its predecessor's uncommitted tail (never below
    /// `committed`).
    pub(crate) fn publish_persisted(&mut self, persisted: u64) {
        debug_assert!(persisted >= self.buffer.committed.load(Ordering::Relaxed));
        // Release: pairs with the Acquire load in `Buffer::persisted`.
        self.buffer.persisted.store(persisted, Ordering::Release);
    }

    /// Swaps in a segment that starts at entry `persisted` (offset `base` is
    /// its predecessor) and holds the current segment's entries from there
    /// on, then retires the old segment. Must follow
    /// [`WriterToken::publish_persisted`] for the same count.
    pub(crate) fn trim(
        &mut self,
        persisted: u64,
        base: LogOffset,
        min_capacity: usize,
        guard: &Guard,
    ) {
        let Some(seg) = self.current(guard) else {
            return;
        };
        debug_assert!(persisted >= seg.start());
        debug_assert!(self.buffer.persisted.load(Ordering::Relaxed) >= persisted);
        let keep_from = usize::try_from(persisted - seg.start()).unwrap_or(usize::MAX);
        let keep = seg.writer_len().saturating_sub(keep_from);
        let trimmed = Segment::new(persisted, base, (keep * 2).max(min_capacity));
        Self::copy_into(&trimmed, seg, keep_from);
        self.replace(Owned::new(trimmed), guard);
    }

    /// Unpublishes the segment (the shape becomes dead) and retires it.
    /// Callers flush first so that readers that find it dead get everything
    /// from disk.
    pub(crate) fn retire(&mut self, guard: &Guard) {
        // Release: a reader that sees null must also see everything stored
        // before (the watermarks); pairs with the reader's Acquire load.
        let old = self
            .buffer
            .segment
            .swap(Shared::null(), Ordering::Release, guard);
        self.defer_free(old, guard);
    }

    fn copy_into(dst: &Segment, src: &Segment, from: usize) {
        for i in from..src.writer_len() {
            // SAFETY: `dst` is not published yet; only this thread sees it.
            let pushed = unsafe { dst.push(src.get(i).clone()) };
            debug_assert!(pushed.is_ok(), "copy target sized to fit");
        }
    }

    fn replace(&mut self, new: Owned<Segment>, guard: &Guard) {
        // Release: publishes the new segment's contents; pairs with the
        // readers' Acquire loads of the pointer.
        let old = self.buffer.segment.swap(new, Ordering::Release, guard);
        self.defer_free(old, guard);
    }

    fn defer_free(&self, old: Shared<'_, Segment>, guard: &Guard) {
        // SAFETY: only this writer publishes segments; `old` was just
        // unpublished, so no reader that pins from now on can reach it.
        let Some(seg) = (unsafe { old.as_ref() }) else {
            return;
        };
        let bytes = seg.footprint() as u64;
        let retired = Arc::clone(&self.buffer.retired);
        retired
            .0
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        let old = old.as_raw() as usize;
        // SAFETY: the segment is unpublished and is freed only once every
        // guard that might have loaded it is dropped (epoch reclamation);
        // `old` came from `Owned::new` and is freed exactly once, here.
        unsafe {
            guard.defer_unchecked(move || {
                drop(Owned::from_raw(old as *mut Segment));
                retired
                    .0
                    .fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
            });
        }
    }
}

impl Drop for WriterToken {
    fn drop(&mut self) {
        // Release: pairs with the Acquire in `Buffer::claim`.
        self.buffer.writer.store(false, Ordering::Release);
    }
}
