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
//!   may take everything below the loaded segment's `start` from disk. A
//!   trim may keep some durable entries (`start < persisted`): readers of a
//!   shape's tail then stay in memory.
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
//!   segment's directory, the entries written before the swap and
//!   `start`), every reader load Acquire.
//! - `persisted`: Release store after the disk write is synced, Acquire loads
//!   by observers; the segment swap that relies on it comes later in the
//!   writer's program order and is itself Release.
//! - `writer`: Acquire on claim pairs with the Release on release, so a new
//!   writer sees everything its predecessor did.

use std::sync::Arc;

use tracing::{debug, trace};

use crate::durable::Durable;
use crate::entry::Entry;
use crate::shape::segment::{Batch, Segment};
use crate::sync::{Atomic, AtomicBool, AtomicU64, Epoch, Guard, Ordering, Owned, Shared};
use crate::LogOffset;

/// Bytes retired by writers and not yet freed by the epoch collector.
///
/// Under loom it also holds the freed segments (see [`RetiredBytes::free`]).
#[derive(Debug, Default)]
pub(crate) struct RetiredBytes(std::sync::atomic::AtomicU64, #[cfg(loom)] Graveyard);

/// Freed segments, kept allocated until the loom model ends.
#[cfg(loom)]
#[derive(Default)]
#[expect(
    clippy::vec_box,
    reason = "a freed segment must stay at its address: readers may still point into it"
)]
pub(crate) struct Graveyard(std::sync::Mutex<Vec<Box<Segment>>>);

#[cfg(loom)]
impl Graveyard {
    fn bury(&self, seg: Box<Segment>) {
        let mut segs = self.0.lock().unwrap_or_else(|e| e.into_inner());
        segs.push(seg);
    }
}

#[cfg(loom)]
impl Drop for Graveyard {
    fn drop(&mut self) {
        // A failing model drops its state while unwinding, outside the loom
        // execution, where a segment's drop (loom cells) would panic again.
        if std::thread::panicking() {
            let segs = self.0.get_mut().unwrap_or_else(|e| e.into_inner());
            std::mem::forget(std::mem::take(segs));
        }
    }
}

#[cfg(loom)]
impl std::fmt::Debug for Graveyard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Graveyard")
    }
}

impl RetiredBytes {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Frees a retired segment.
    #[cfg(not(loom))]
    fn free(&self, seg: Box<Segment>) {
        drop(seg);
    }

    /// Under loom a freed segment is *poisoned* instead (its length, its
    /// directory and the slots of the chunks only it holds are written
    /// through loom's cells, which loom checks against every access not
    /// ordered before the free) and kept allocated until the
    /// model ends: a premature free is then reported by loom as a causality
    /// violation rather than being undefined behaviour in the test process.
    #[cfg(loom)]
    fn free(&self, seg: Box<Segment>) {
        // If loom reports the poisoning (a failing model), the segment must
        // not be dropped while unwinding: its drop would report again.
        let mut seg = std::mem::ManuallyDrop::new(seg);
        seg.poison();
        self.1.bury(std::mem::ManuallyDrop::into_inner(seg));
    }
}

/// A deliberate protocol error that the loom models inject to check that
/// loom catches it (each model's failing twin). Production has none.
#[cfg(loom)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// The shipping protocol.
    #[default]
    None,
    /// [`Buffer::view`] loads the segment pointer before the committed
    /// watermark.
    ViewSegmentFirst,
    /// [`WriterToken::commit`] stores the watermark Relaxed.
    CommitRelaxed,
    /// [`Segment::push`] publishes the length Relaxed.
    LenRelaxed,
    /// [`WriterToken::flush_with`] publishes `persisted` and trims before the
    /// entries are written.
    TrimBeforeWrite,
    /// [`WriterToken::flush_with`] unpublishes and retires the segment
    /// before the entries are written (a terminate that unpublishes first).
    RetireBeforeWrite,
    /// [`WriterToken::take_over`] installs the fresh segment before the
    /// predecessor's committed entries are written.
    InstallBeforeWrite,
    /// A retired segment is freed at once instead of after the epoch.
    FreeWithoutDefer,
    /// [`WriterToken::claim`] takes the claim Relaxed.
    ClaimRelaxed,
}

/// How a trim sizes the segment it swaps in.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizing {
    /// The fewest slots a fresh segment gets.
    pub(crate) min_capacity: usize,
    /// Durable entries kept in memory after a flush, by payload bytes (the
    /// newest ones; see [`WriterToken::trim`]).
    pub(crate) retain_bytes: usize,
}

/// What every buffer of a store shares to free its retired segments: the
/// store's epoch domain and its count of retired bytes. One pointer in each
/// buffer, not two: a live shape's state is one heap block smaller.
///
/// The count has its own `Arc`: a deferred free holds it, and must not
/// hold the epoch domain, whose collector holds the deferred free (a cycle
/// that would leak the collector and its garbage with the store).
#[derive(Debug)]
pub(crate) struct Reclaim {
    pub(crate) epoch: Epoch,
    pub(crate) retired: Arc<RetiredBytes>,
}

impl Reclaim {
    /// Reclamation in `epoch`, nothing retired yet.
    pub(crate) fn new(epoch: Epoch) -> Arc<Self> {
        Arc::new(Reclaim {
            epoch,
            retired: Arc::default(),
        })
    }
}

/// The per-shape in-memory buffer. See the module docs.
pub(crate) struct Buffer {
    segment: Atomic<Segment>,
    committed: AtomicU64,
    persisted: AtomicU64,
    writer: AtomicBool,
    reclaim: Arc<Reclaim>,
    #[cfg(loom)]
    fault: Fault,
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
    pub(crate) fn new(committed: u64, reclaim: Arc<Reclaim>) -> Self {
        Buffer {
            segment: Atomic::null(),
            committed: AtomicU64::new(committed),
            persisted: AtomicU64::new(committed),
            writer: AtomicBool::new(false),
            reclaim,
            #[cfg(loom)]
            fault: Fault::None,
        }
    }

    /// The same buffer with `fault` injected (loom models only).
    #[cfg(loom)]
    pub(crate) fn with_fault(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }

    pub(crate) fn pin(&self) -> Guard {
        self.reclaim.epoch.pin()
    }

    /// Loads the committed watermark, then the segment (in that order; see
    /// the module's orderings).
    pub(crate) fn view<'g>(&self, guard: &'g Guard) -> View<'g> {
        #[cfg(loom)]
        if self.fault == Fault::ViewSegmentFirst {
            let seg = self.segment.load(Ordering::Acquire, guard);
            let committed = self.committed.load(Ordering::Acquire);
            // SAFETY: as below.
            let segment = unsafe { seg.as_ref() };
            return View { committed, segment };
        }
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

    /// Entries `[0, persisted)` are durable.
    pub(crate) fn persisted(&self) -> u64 {
        // Acquire: pairs with the Release store in
        // `WriterToken::publish_persisted`.
        self.persisted.load(Ordering::Acquire)
    }

    /// Whether a segment is published (a writer is live or was dropped
    /// without terminating).
    pub(crate) fn is_live(&self) -> bool {
        let guard = self.pin();
        // Acquire: pairs with the writer's Release stores of the pointer.
        !self.segment.load(Ordering::Acquire, &guard).is_null()
    }
}

/// What owns a buffer behind an `Arc`: the buffer itself, or a state that
/// embeds it (an open shape, `slot::Open`: one allocation, not two). A
/// [`WriterToken`] holds the owner.
pub(crate) trait HoldsBuffer: Send + Sync {
    fn buffer(&self) -> &Buffer;
}

impl HoldsBuffer for Buffer {
    fn buffer(&self) -> &Buffer {
        self
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
pub(crate) struct WriterToken<H: HoldsBuffer = Buffer> {
    owner: Arc<H>,
}

impl<H: HoldsBuffer> WriterToken<H> {
    /// Takes the single-writer claim of `owner`'s buffer, or `None` when
    /// another writer holds it.
    pub(crate) fn claim(owner: &Arc<H>) -> Option<Self> {
        let buffer = owner.buffer();
        // Acquire: pairs with the Release in `WriterToken::drop`, so the new
        // writer sees its predecessor's stores.
        let acquire = Ordering::Acquire;
        #[cfg(loom)]
        let acquire = match buffer.fault {
            Fault::ClaimRelaxed => Ordering::Relaxed,
            _ => acquire,
        };
        buffer
            .writer
            .compare_exchange(false, true, acquire, Ordering::Relaxed)
            .ok()
            .map(|_| WriterToken {
                owner: Arc::clone(owner),
            })
    }

    pub(crate) fn buffer(&self) -> &Buffer {
        self.owner.buffer()
    }

    /// What owns the buffer.
    pub(crate) fn owner(&self) -> &Arc<H> {
        &self.owner
    }

    /// The current segment as the writer sees it. Relaxed is enough: only
    /// this writer stores the pointer.
    pub(crate) fn current<'g>(&self, guard: &'g Guard) -> Option<&'g Segment> {
        let seg = self.buffer().segment.load(Ordering::Relaxed, guard);
        // SAFETY: only this writer retires segments, and it does not retire
        // the one it is using while `guard` lives.
        unsafe { seg.as_ref() }
    }

    /// The current segment as the writer sees it, with no pin: only this
    /// writer retires its segments, and it retires one only after its last
    /// use of it, so the writer needs no pin to use its own (readers do).
    /// Used where the writer only reads or lends its segment; a pin also
    /// runs an epoch collection every 128 pins, and with it the frees of
    /// whatever this thread retired.
    fn unpinned_current(&self) -> Option<&Segment> {
        // SAFETY: the unprotected guard is only used to load the pointer (it
        // defers nothing); the segment stays allocated while the writer
        // uses it (above), and the result borrows the writer.
        self.current(unsafe { crossbeam_epoch::unprotected() })
    }

    /// Publishes a new, empty segment starting at entry `start` (whose
    /// predecessor has offset `base`), retiring the current one. All entries
    /// below `start` must be durable and `committed <= start`.
    pub(crate) fn install(&mut self, start: u64, base: LogOffset, capacity: usize, guard: &Guard) {
        debug_assert!(self.buffer().persisted.load(Ordering::Relaxed) >= start);
        self.replace(
            Owned::new(self.new_segment(start, base, capacity)),
            usize::MAX,
            guard,
        );
    }

    /// Appends `entry` as the next entry, growing the segment when it is
    /// full. Not visible to readers until [`WriterToken::commit`].
    ///
    /// Pins only to grow (see [`WriterToken::unpinned_current`]); the
    /// growth retires the old segment after its last use.
    pub(crate) fn append(&mut self, entry: Entry) {
        let Some(seg) = self.unpinned_current() else {
            unreachable!("append before install: ShapeWriter installs a segment when it opens");
        };
        // SAFETY: `self` is the unique writer token of this buffer, and `seg`
        // is its current (not retired) segment.
        let Err(entry) = (unsafe { seg.push(entry) }) else {
            return;
        };
        let guard = &self.buffer().pin();
        // Growth takes the chunks over (no entry is copied) into a directory
        // twice the size.
        let (grown, kept) = seg.carry(0, seg.start(), seg.base(), seg.capacity() * 2, usize::MAX);
        // SAFETY: `grown` is not published yet; only this thread sees it.
        let pushed = unsafe { grown.push(entry) };
        debug_assert!(pushed.is_ok(), "a grown segment has room");
        trace!(capacity = grown.capacity(), "segment grown");
        self.replace(Owned::new(grown), kept, guard);
    }

    /// Makes entries `[0, committed)` visible to readers.
    pub(crate) fn commit(&mut self, committed: u64) {
        debug_assert!(committed >= self.buffer().committed.load(Ordering::Relaxed));
        // Release: publishes the appends (slot writes and `len` stores) below
        // `committed`; pairs with the Acquire load in `Buffer::view`.
        let release = Ordering::Release;
        #[cfg(loom)]
        let release = match self.buffer().fault {
            Fault::CommitRelaxed => Ordering::Relaxed,
            _ => release,
        };
        self.buffer().committed.store(committed, release);
    }

    /// Records that entries `[0, persisted)` are durable. Call only after
    /// the disk write was synced. It only rewinds when a new writer has just
    /// discarded its predecessor's uncommitted tail (never below
    /// `committed`). It may be below `committed` when the writer committed
    /// more while the batch was being written (a background flush).
    pub(crate) fn publish_persisted(&mut self, persisted: u64) {
        // Unless a new writer rewinds it (to `committed` or above), it only
        // grows; the loads are the writer's own stores (Relaxed). Not under
        // loom: the two extra loads shift what a bound-3 exploration reaches
        // (model 4c stops reaching `persisted = 1`, and its twin passes).
        #[cfg(not(loom))]
        debug_assert!(
            persisted >= self.buffer().persisted.load(Ordering::Relaxed)
                || persisted >= self.buffer().committed.load(Ordering::Relaxed)
        );
        // Release: pairs with the Acquire load in `Buffer::persisted`.
        self.buffer().persisted.store(persisted, Ordering::Release);
    }

    /// Swaps in a segment that holds the current segment's entries from
    /// entry `persisted` on (`base` is the offset of entry `persisted - 1`),
    /// plus the last durable entries before it whose payloads and slots add
    /// up to at most `retain_bytes` (so that readers tailing the shape keep reading
    /// from memory), then retires the old segment. Must follow
    /// [`WriterToken::publish_persisted`] for the same count.
    pub(crate) fn trim(&mut self, persisted: u64, base: LogOffset, sizing: Sizing, guard: &Guard) {
        let Some(seg) = self.current(guard) else {
            return;
        };
        debug_assert!(persisted >= seg.start());
        debug_assert!(self.buffer().persisted.load(Ordering::Relaxed) >= persisted);
        let durable_end = usize::try_from(persisted - seg.start()).unwrap_or(usize::MAX);
        let durable_end = durable_end.min(seg.writer_len());
        // Walk back over the durable entries while they fit the budget.
        let mut keep_from = durable_end;
        let mut bytes = 0usize;
        while keep_from > 0 {
            bytes = bytes.saturating_add(seg.get(keep_from - 1).retained_size());
            if bytes > sizing.retain_bytes {
                break;
            }
            keep_from -= 1;
        }
        let (start, base) = match keep_from {
            k if k == durable_end => (persisted, base),
            0 => (seg.start(), seg.base()),
            k => (seg.start() + k as u64, seg.get(k - 1).offset),
        };
        let keep = seg.writer_len() - keep_from;
        // The trimmed segment takes over the chunks from `keep_from`'s on
        // (no entry is copied, unless `keep_from`'s chunk holds more than
        // the budget before it); the older ones are freed with `seg`.
        let (trimmed, kept) = seg.carry(
            keep_from,
            start,
            base,
            (keep * 2).max(sizing.min_capacity),
            sizing.retain_bytes,
        );
        self.replace(Owned::new(trimmed), kept, guard);
    }

    /// Hands the segments this thread retired to the collector now
    /// (`Epoch::hand_off`).
    pub(crate) fn hand_off_retired(&self) {
        let guard = self.buffer().pin();
        self.buffer().reclaim.epoch.hand_off(&guard);
    }

    /// Unpublishes the segment (the shape becomes dead) and retires it.
    /// Callers flush first so that readers that find it dead get everything
    /// from disk.
    pub(crate) fn retire(&mut self, guard: &Guard) {
        // Release: a reader that sees null must also see everything stored
        // before (the watermarks); pairs with the reader's Acquire load.
        let old = self
            .buffer()
            .segment
            .swap(Shared::null(), Ordering::Release, guard);
        self.defer_free(old, usize::MAX, guard);
    }

    /// The flush protocol on one thread, as the loom models run it, for
    /// entries `[from, to)` of the current segment.
    /// [`ShapeWriter`](crate::ShapeWriter) runs the same steps split at step
    /// 2 ([`WriterToken::take_pending`], the write on its own thread or a
    /// flusher's, then [`WriterToken::complete_flush`]):
    ///
    /// 1. lend them out as a [`Batch`] (a reference to each of their
    ///    chunks, no entry copied, no pin): no pin is held across disk I/O;
    /// 2. `write` them; it returns once they are durable, with what the log
    ///    now holds;
    /// 3. publish `persisted`;
    /// 4. trim: swap in a segment that starts at the new persisted count,
    ///    less the durable tail `sizing` retains.
    ///
    /// Step 4 comes after step 2: a reader that loads the trimmed segment
    /// reads everything below its start from disk. Returns what is durable
    /// and how many entries were written; on error nothing is published.
    #[cfg(loom)]
    pub(crate) fn flush_with<E>(
        &mut self,
        from: u64,
        to: u64,
        sizing: Sizing,
        write: impl FnOnce(&Batch) -> Result<Durable, E>,
    ) -> Result<(Durable, usize), E> {
        let pending = self.take_pending(from, to);
        self.inject_before_write(to, &pending, sizing);
        let durable = write(&pending)?;
        self.complete_flush(&durable, sizing);
        Ok((durable, pending.len()))
    }

    /// Step 1 of the flush protocol (and of the take-over's): lends the
    /// entries numbered `[from, to)` that the current segment holds out (a
    /// [`Batch`] holding their chunks; entries below its start are on
    /// disk), with no pin (see [`WriterToken::unpinned_current`]): the
    /// batch's chunk references keep the entries alive after any swap. The
    /// caller writes them (on any thread), then calls
    /// [`WriterToken::complete_flush`] with what the log reported durable.
    pub(crate) fn take_pending(&self, from: u64, to: u64) -> Batch {
        match self.unpinned_current() {
            // Entries below the segment's start are on disk already.
            Some(seg) => {
                // Entry numbers from `start` on index the segment (its
                // length is a `usize`).
                let index = |seq: u64| (seq.max(seg.start()) - seg.start()) as usize;
                seg.batch(index(from).min(index(to)), index(to))
            }
            None => Batch::empty(),
        }
    }

    /// Steps 3 and 4 of the flush protocol, once the write of
    /// [`WriterToken::take_pending`]'s entries returned `durable` (synced):
    /// publish `persisted`, then trim.
    pub(crate) fn complete_flush(&mut self, durable: &Durable, sizing: Sizing) {
        self.publish_persisted(durable.entries);
        let guard = self.buffer().pin();
        self.trim(durable.entries, durable.last, sizing, &guard);
    }

    /// The take-over protocol of a new writer
    /// ([`ShapeWriter`](crate::ShapeWriter)'s open), given what the log holds
    /// (`durable`):
    ///
    /// 1. entries a dropped predecessor committed but did not flush are
    ///    still in its segment (which only this writer retires now): lend
    ///    them out as a [`Batch`] and `write` them with their commit point
    ///    (returns once durable);
    /// 2. `discard` the log's uncommitted tail;
    /// 3. publish `persisted`;
    /// 4. install a fresh segment at the durable committed count.
    ///
    /// Step 4 comes last: a reader that loads the fresh segment reads
    /// everything below its start from disk. Returns what is durable.
    pub(crate) fn take_over<E>(
        &mut self,
        durable: Durable,
        min_capacity: usize,
        write: impl FnOnce(&Batch, (u64, LogOffset)) -> Result<Durable, E>,
        discard: impl FnOnce() -> Result<Durable, E>,
    ) -> Result<Durable, E> {
        let committed = self.buffer().committed();
        if committed > durable.committed {
            let missing = self.take_pending(durable.entries, committed);
            // Entries `[0, durable.entries)` are on disk and the missing ones
            // follow them: with none missing, the last committed entry is
            // the last one on disk (flushed before its commit).
            let last = missing.last().map_or(durable.last, |e| e.offset);
            debug!(
                entries = missing.len(),
                "flushing entries a dropped writer committed"
            );
            #[cfg(loom)]
            if self.buffer().fault == Fault::InstallBeforeWrite {
                self.publish_persisted(committed);
                let guard = self.buffer().pin();
                self.install(committed, last, min_capacity, &guard);
            }
            write(&missing, (committed, last))?;
        }
        let durable = discard()?;
        self.publish_persisted(durable.entries);
        let guard = self.buffer().pin();
        self.install(
            durable.committed,
            durable.last_committed,
            min_capacity,
            &guard,
        );
        Ok(durable)
    }

    /// The faults that [`WriterToken::flush_with`] injects between taking
    /// the entries out and writing them (loom models only).
    #[cfg(loom)]
    pub(crate) fn inject_before_write(&mut self, to: u64, pending: &Batch, sizing: Sizing) {
        match (self.buffer().fault, pending.last()) {
            (Fault::TrimBeforeWrite, Some(last)) => {
                self.publish_persisted(to);
                let guard = self.buffer().pin();
                self.trim(to, last.offset, sizing, &guard);
            }
            (Fault::RetireBeforeWrite, _) => {
                let guard = self.buffer().pin();
                self.retire(&guard);
            }
            _ => {}
        }
    }

    /// Publishes `new`, which holds the current segment's chunks from
    /// directory entry `kept` on (`usize::MAX`: none), and retires the
    /// current one.
    fn replace(&mut self, new: Owned<Segment>, kept: usize, guard: &Guard) {
        // Release: publishes the new segment's contents; pairs with the
        // readers' Acquire loads of the pointer.
        let old = self.buffer().segment.swap(new, Ordering::Release, guard);
        self.defer_free(old, kept, guard);
    }

    /// Defers the free of `old` (see [`WriterToken::replace`] for `kept`).
    fn defer_free(&self, old: Shared<'_, Segment>, kept: usize, guard: &Guard) {
        // SAFETY: only this writer publishes segments; `old` was just
        // unpublished, so no reader that pins from now on can reach it.
        let Some(seg) = (unsafe { old.as_ref() }) else {
            return;
        };
        let bytes = seg.footprint(kept) as u64;
        let retired = Arc::clone(&self.buffer().reclaim.retired);
        retired
            .0
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        let old = old.as_raw() as usize;
        let free = move || {
            // SAFETY: `old` came from `Owned::new`, and this closure runs
            // exactly once (see the deferral below).
            let seg = unsafe { Owned::from_raw(old as *mut Segment) };
            retired.free(seg.into_box());
            retired
                .0
                .fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
        };
        #[cfg(loom)]
        if self.buffer().fault == Fault::FreeWithoutDefer {
            free();
            return;
        }
        // SAFETY: the segment is unpublished and is freed only once every
        // guard that might have loaded it is dropped (epoch reclamation);
        // the collector runs `free` exactly once.
        unsafe { guard.defer_unchecked(free) };
        // Hand it to the collector once enough has piled up on this thread:
        // an idle writer thread keeps at most about 64 KiB alive.
        self.buffer().reclaim.epoch.retired(guard, bytes as usize);
    }

    /// A fresh segment (under loom, with the buffer's injected fault).
    fn new_segment(&self, start: u64, base: LogOffset, capacity: usize) -> Segment {
        let seg = Segment::new(start, base, capacity);
        #[cfg(loom)]
        let seg = match self.buffer().fault {
            Fault::LenRelaxed => seg.with_len_store(Ordering::Relaxed),
            _ => seg,
        };
        seg
    }
}

impl<H: HoldsBuffer> Drop for WriterToken<H> {
    fn drop(&mut self) {
        // Release: pairs with the Acquire in `WriterToken::claim`.
        self.buffer().writer.store(false, Ordering::Release);
    }
}
