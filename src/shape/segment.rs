//! The append-only segment: one generation of a shape's in-memory buffer.
//!
//! A segment is a directory of *chunks* of [`Entry`] slots (sizes doubling
//! from chunk 0's up to [`CHUNK`], then [`CHUNK`] each; a fresh segment's
//! chunk 0 has [`FIRST`] slots, so a shape that holds a few entries costs a
//! few slots, not 3 KiB), a published length, and the position of its
//! first entry in the shape's log. Chunks are shared: a trim or a growth publishes a new
//! segment whose directory takes over the old one's chunks whole (a
//! reference count each), so neither copies an entry, and a flush batch
//! ([`Batch`]) lends entries to a flusher thread the same way.
//!
//! # Invariants
//!
//! - **Slot initialisation.** Every slot of a chunk always holds an entry: a
//!   placeholder (empty payload, no allocation) until the writer writes it.
//!   The segment's entries `[0, len)` are its slots from `skip` on (across
//!   the directory's chunks, in order: chunk `c` holds `min(first << c,
//!   CHUNK)` slots, where `first` is chunk 0's size, a power of two; see
//!   [`locate`]); each was written before `len` was
//!   raised past it and is never written again while the chunk lives. Slots
//!   past `len` are touched only by the single writer (see
//!   [`Segment::push`]). A slot is written first, then `len` is raised with
//!   Release; a reader loads `len` with Acquire and reads only below it.
//! - **Directory.** An entry of the directory is set before the segment is
//!   published (chunks taken over) or, for a fresh chunk, by the writer
//!   before it raises `len` onto the chunk's first slot; it is never changed
//!   afterwards, so a reader that may read entry `i` may follow the
//!   directory to it.
//! - **Sharing.** A chunk shared by an old (retired) segment and its
//!   successor is written only through the successor, and only at slots past
//!   the old segment's final length: what a reader of the old segment reads
//!   never changes. A chunk is freed with its last reference (segments and
//!   batches), after which nobody can reach it.
//! - **Position.** Entry `i` is the shape's entry number `start + i`
//!   (entries are numbered from 0 in log order). Every entry numbered below
//!   `start` was durable on disk before this segment was published, and
//!   `base` is the offset of entry `start - 1` ([`LogOffset::ZERO`] when
//!   `start == 0`).
//! - **Order.** Offsets strictly increase across entries, and the first
//!   entry's offset is above `base`.
//! - **Immutability after retirement.** Once a segment is replaced (trim,
//!   growth, terminate) the writer never pushes through it again; it is
//!   freed by the epoch collector after every reader that loaded it has
//!   unpinned.
//!
//! # Orderings
//!
//! `len`: the writer's Release store in [`Segment::push`] pairs with the
//! Acquire load in [`Segment::published_len`], making the slot and
//! directory writes below the new length visible to the reader.

use std::ops::Range;
use std::sync::Arc;

use crate::entry::Entry;
#[cfg(loom)]
use crate::sync::exclusive_usize;
use crate::sync::{AtomicUsize, Ordering, UnsafeCell};
use crate::LogOffset;

/// Slots of a full chunk (a power of two). 64 slots of 48 bytes are
/// 3 KiB. A directory's chunks double in size from its chunk 0 up to this,
/// then stay at it. Under loom, 1: every push then installs a chunk, and
/// the models' one-slot segments still grow at their second append.
#[cfg(not(loom))]
pub(crate) const CHUNK: usize = 64;
/// Slots of a full chunk (see the production value).
#[cfg(loom)]
pub(crate) const CHUNK: usize = 1;

/// Slots of a fresh segment's chunk 0 (a power of two, at most [`CHUNK`]).
/// Chunks double from there (1, 2, 4, ..., 64, 64, ...), so a shape holding
/// `n` entries has at most about `2n` slots (never more than `n + 63`), and
/// a million live shapes holding an entry each cost 64 MB of chunks, not
/// 3.1 GB as with 64-slot chunks. No chunk is grown or copied: the
/// directory maps each position to its chunk by arithmetic ([`locate`]).
#[cfg(not(loom))]
const FIRST: usize = 1;
/// Slots of a fresh segment's chunk 0 (see the production value).
#[cfg(loom)]
const FIRST: usize = 1;

/// Chunks of a directory whose chunk 0 has `first` slots that are smaller
/// than [`CHUNK`]: `log2(CHUNK / first)`.
#[inline]
fn doubling(first: usize) -> usize {
    debug_assert!(first.is_power_of_two() && first <= CHUNK);
    // Exponents, not `CHUNK / first`: a division by a variable is tens of
    // cycles on every slot lookup of a read.
    (CHUNK.trailing_zeros() - first.trailing_zeros()) as usize
}

/// The chunk and slot of position `g` in a directory whose chunk 0 has
/// `first` slots (chunk `c` has `min(first << c, CHUNK)`). With `p = g +
/// first`, chunk `c < doubling(first)` holds `p` in `[first << c, first <<
/// (c + 1))`; from `p = CHUNK` on, every chunk holds `CHUNK` of them.
#[inline]
fn locate(first: usize, g: usize) -> (usize, usize) {
    let p = g + first;
    if p < CHUNK {
        let top = (usize::BITS - 1 - p.leading_zeros()) as usize;
        (top - first.trailing_zeros() as usize, p - (1 << top))
    } else {
        (doubling(first) + p / CHUNK - 1, p % CHUNK)
    }
}

/// The slots of chunk `c` in a directory whose chunk 0 has `first`.
#[inline]
fn chunk_slots(first: usize, c: usize) -> usize {
    if c >= doubling(first) {
        CHUNK
    } else {
        first << c
    }
}

/// Positions that the first `chunks` chunks of such a directory hold.
fn positions(first: usize, chunks: usize) -> usize {
    let m = doubling(first);
    if chunks <= m {
        first * ((1 << chunks) - 1)
    } else {
        CHUNK - first + (chunks - m) * CHUNK
    }
}

/// Chunks such a directory needs to hold positions `[0, end)`.
fn chunks_for(first: usize, end: usize) -> usize {
    match end {
        0 => 0,
        e => locate(first, e - 1).0 + 1,
    }
}

/// A run of slots (a power of two, at most [`CHUNK`]: see [`locate`]);
/// shared by reference count between the segments (and batches)
/// that hold it.
#[repr(transparent)]
pub(crate) struct Chunk([UnsafeCell<Entry>]);

// SAFETY: slots are shared between threads only through the published-length
// protocol (module docs): written slots are immutable, unwritten ones are
// touched by the single writer only. `Entry` is Send + Sync.
unsafe impl Sync for Chunk {}
// SAFETY: a chunk owns its entries, which are Send.
unsafe impl Send for Chunk {}

impl Chunk {
    /// A chunk of `slots` placeholders (one allocation).
    fn new(slots: usize) -> Arc<Chunk> {
        let cells: Arc<[UnsafeCell<Entry>]> = (0..slots)
            .map(|_| UnsafeCell::new(Entry::placeholder()))
            .collect();
        // SAFETY: `Chunk` is a `repr(transparent)` wrapper of the slice: the
        // same layout and pointer metadata, so the `Arc`'s allocation is a
        // valid `ArcInner<Chunk>`.
        unsafe { Arc::from_raw(Arc::into_raw(cells) as *const Chunk) }
    }

    /// The directory's (thin) pointer to a chunk that `Arc::into_raw`
    /// gave: its reference now belongs to the directory entry.
    fn into_entry(chunk: Arc<Chunk>) -> Thin {
        Arc::into_raw(chunk).cast::<UnsafeCell<Entry>>()
    }

    /// The chunk pointer of thin pointer `p` to a chunk of `slots` slots.
    fn fat(p: Thin, slots: usize) -> *const Chunk {
        std::ptr::slice_from_raw_parts(p, slots) as *const Chunk
    }

    /// Slot `k`, which the caller may read (module invariants).
    ///
    /// # Safety
    ///
    /// Slot `k` was written before, in a way ordered before this call (the
    /// published-length protocol, or this thread is the writer), and is not
    /// written again while the returned reference lives.
    #[inline]
    unsafe fn read(&self, k: usize) -> &Entry {
        // SAFETY: the caller's contract: nothing writes slot `k` while the
        // reference lives.
        self.0[k].with(|p| unsafe { &*p })
    }
}

/// A chunk's thin pointer: its first slot.
type Thin = *const UnsafeCell<Entry>;

/// A directory entry: a chunk's thin pointer from [`Chunk::into_entry`]
/// (one strong count owned by the segment), or null when not allocated
/// yet. Thin (8 bytes, not a slice pointer's 16): entry `c`'s chunk has
/// `chunk_slots(first, c)` slots, so the length is known from where it
/// sits, and a million fresh directories of 7 entries save 56 MB.
type DirEntry = UnsafeCell<Thin>;

/// The chunk at directory entry `c` of a directory whose chunk 0 has
/// `first` slots.
///
/// # Safety
///
/// Entry `c` was set (module invariants: below a published length, or by
/// this thread), and the directory's segment outlives the returned
/// reference.
#[inline]
unsafe fn chunk_at(dir: &[DirEntry], first: usize, c: usize) -> &Chunk {
    let p = dir[c].with(|p| {
        // SAFETY: the caller's contract: entry `c` was set before and is
        // never written again.
        unsafe { *p }
    });
    debug_assert!(!p.is_null(), "directory entry {c} not set");
    // SAFETY: a set entry holds a live chunk of `chunk_slots(first, c)`
    // slots (the directory's geometry: every chunk set at entry `c` was
    // made with, or taken over at, that size), kept alive by the segment's
    // reference.
    unsafe { &*Chunk::fat(p, chunk_slots(first, c)) }
}

/// The first `len` entries of a segment, every one written: what a reader
/// may read, fixed once per read.
#[derive(Clone, Copy)]
pub(crate) struct Slots<'a> {
    dir: &'a [DirEntry],
    /// Slots of the directory's chunk 0.
    first: usize,
    skip: usize,
    len: usize,
}

impl<'a> Slots<'a> {
    /// Entry `i`; panics if `i` is outside the view.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> &'a Entry {
        assert!(i < self.len, "slot {i} outside the read view");
        let (c, k) = locate(self.first, self.skip + i);
        // SAFETY: `i < len`, and this thread has synchronised with the
        // publication of entry `i`: `len` was loaded with Acquire in
        // `Segment::published`, or (through `Segment::get`) `i` is below a
        // length the caller loaded with Acquire or stored itself. So the
        // directory entry and the slot were written before and are never
        // written again (slot initialisation and directory invariants). The
        // segment, which holds the chunk, outlives `'a`.
        unsafe { chunk_at(self.dir, self.first, c).read(k) }
    }

    /// Entries `range` in order, a chunk at a time (one directory lookup per
    /// chunk, not per entry).
    pub(crate) fn iter(&self, range: Range<usize>) -> Iter<'a> {
        assert!(range.start <= range.end && range.end <= self.len);
        Iter {
            view: *self,
            run: [].iter(),
            next: self.skip + range.start,
            end: self.skip + range.end,
        }
    }

    /// The index of the first entry whose offset is above `after` (`len`
    /// when none is).
    ///
    /// The last entry is tried first: a tail read's `upto` is at or past
    /// it, and then one probe replaces a binary search of the segment.
    pub(crate) fn first_after(&self, after: LogOffset) -> usize {
        if self.len == 0 || self.get(self.len - 1).offset <= after {
            return self.len;
        }
        let (mut lo, mut hi) = (0, self.len - 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.get(mid).offset <= after {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// Entries of a read view, in order (see [`Slots::iter`]).
pub(crate) struct Iter<'a> {
    view: Slots<'a>,
    /// The rest of the current chunk's run.
    run: std::slice::Iter<'a, UnsafeCell<Entry>>,
    /// Position (from the first chunk's slot 0) of the next run.
    next: usize,
    end: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a Entry;

    #[inline]
    fn next(&mut self) -> Option<&'a Entry> {
        // The hot path (the rest of the current run) stays small enough to
        // inline into the reader's loop; moving to the next chunk does not
        // (out of line, it cost a call per entry: docs/benchmarks.md,
        // "Contended range read").
        let cell = match self.run.next() {
            Some(cell) => cell,
            None => self.next_run()?,
        };
        // SAFETY: the run lies below the view's length (`iter`'s
        // assertion), so as in `Slots::get`.
        Some(cell.with(|p| unsafe { &*p }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.run.len() + (self.end - self.next);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> Iter<'a> {
    /// Moves to the next chunk's run and returns its first slot (`None`
    /// at the end).
    #[inline(never)]
    fn next_run(&mut self) -> Option<&'a UnsafeCell<Entry>> {
        if self.next >= self.end {
            return None;
        }
        let (c, k) = locate(self.view.first, self.next);
        let n = (chunk_slots(self.view.first, c) - k).min(self.end - self.next);
        // SAFETY: position `next` is below the view's length, so its
        // directory entry is set (as in `Slots::get`).
        let chunk = unsafe { chunk_at(self.view.dir, self.view.first, c) };
        self.run = chunk.0[k..k + n].iter();
        self.next += n;
        self.run.next()
    }
}

/// Entries lent out of a segment (a flush batch): readable on any thread,
/// with no epoch pin, for as long as the batch lives, because it holds a
/// reference to each of their chunks (and written slots are never written
/// again while a chunk lives). Send + Sync, as `Chunk` is.
pub(crate) struct Batch {
    chunks: Vec<Arc<Chunk>>,
    skip: usize,
    len: usize,
}

impl Batch {
    /// A batch of no entries.
    pub(crate) fn empty() -> Self {
        Batch {
            chunks: Vec::new(),
            skip: 0,
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The entries, in order.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &Entry> + Clone + '_ {
        (self.skip..self.skip + self.len).map(|g| self.at(g))
    }

    /// The last entry, if any.
    pub(crate) fn last(&self) -> Option<&Entry> {
        (self.len > 0).then(|| self.at(self.skip + self.len - 1))
    }

    /// The entry at position `g` of the chunks, in `[skip, skip + len)`.
    fn at(&self, g: usize) -> &Entry {
        debug_assert!(g >= self.skip && g < self.skip + self.len);
        // SAFETY: entries `[skip, skip + len)` of the chunks were written by
        // the writer before it made the batch (and the batch reached this
        // thread through a synchronising hand-over); they are never written
        // again while the batch holds their chunks.
        // Chunk 0's size sets the geometry (its slot count).
        let (c, k) = locate(self.chunks[0].0.len(), g);
        // SAFETY: as above.
        unsafe { self.chunks[c].read(k) }
    }
}

/// One generation of a shape's in-memory buffer. See the module docs for the
/// invariants.
pub(crate) struct Segment {
    start: u64,
    base: LogOffset,
    /// Slots of the directory's chunk 0 ([`FIRST`] in a fresh segment, the
    /// size of the chunk taken over in a carried one; the chunks after it
    /// double up to [`CHUNK`], as the ones after the taken-over chunk did).
    /// `u32`, as `skip` (both are at most [`CHUNK`]): a live shape's
    /// segment takes a 64-byte heap chunk, not 80.
    first: u32,
    /// Where entry 0 sits in the first chunk (below it: older entries, kept
    /// until the chunk is freed).
    skip: u32,
    len: AtomicUsize,
    dir: Box<[DirEntry]>,
    /// The ordering of the `len` store in [`Segment::push`]: Release, except
    /// in the loom model that checks loom catches a Relaxed one.
    #[cfg(loom)]
    len_store: Ordering,
}

// SAFETY: slots and directory entries are shared between threads only
// through the published-length protocol (module docs); the chunks are Send +
// Sync.
unsafe impl Sync for Segment {}
// SAFETY: a segment owns its directory and a reference to each chunk in it.
unsafe impl Send for Segment {}

impl Segment {
    /// Slots of the directory's chunk 0 (see the field).
    #[inline]
    fn first(&self) -> usize {
        self.first as usize
    }

    /// Where entry 0 sits in chunk 0 (see the field).
    #[inline]
    fn skip(&self) -> usize {
        self.skip as usize
    }

    /// An empty segment whose first entry will be entry number `start`, the
    /// entry after `base`, with room for `capacity` entries (rounded up to
    /// whole chunks, doubling from [`FIRST`] slots) before it grows.
    pub(crate) fn new(start: u64, base: LogOffset, capacity: usize) -> Self {
        let chunks = chunks_for(FIRST, capacity.max(1));
        Self::with_dir(start, base, FIRST, 0, 0, chunks)
    }

    fn with_dir(
        start: u64,
        base: LogOffset,
        first: usize,
        skip: usize,
        len: usize,
        chunks: usize,
    ) -> Self {
        debug_assert!(first.is_power_of_two() && first <= CHUNK && skip < first.max(1));
        Segment {
            start,
            base,
            // Both at most `CHUNK`.
            first: first as u32,
            skip: skip as u32,
            len: AtomicUsize::new(len),
            dir: (0..chunks)
                .map(|_| UnsafeCell::new(std::ptr::null()))
                .collect(),
            #[cfg(loom)]
            len_store: Ordering::Release,
        }
    }

    /// A segment holding this one's entries from entry `from` on (the
    /// writer's length), numbered from `start` after `base`, with room for
    /// `capacity` entries in all. It takes over the chunks that hold them,
    /// copying no entry, except in one case: when entry `from` sits inside
    /// a chunk whose older slots (invisible to the new segment, but freed
    /// only with the chunk) hold more than `stale_limit` bytes (payload plus
    /// slot), that chunk's entries from `from` on are cloned into a fresh
    /// chunk of the same size instead (at most [`CHUNK`] - 1), so a trim frees what it
    /// trims. With no entry to hold it shares nothing.
    ///
    /// Returns the segment (not published yet) and the first directory
    /// entry of `self` it holds a chunk from (`usize::MAX`: none; see
    /// [`Segment::footprint`]). Writer only.
    pub(crate) fn carry(
        &self,
        from: usize,
        start: u64,
        base: LogOffset,
        capacity: usize,
        stale_limit: usize,
    ) -> (Self, usize) {
        let len = self.writer_len();
        debug_assert!(from <= len);
        let n = len - from;
        if n == 0 {
            return (
                self.same_faults(Self::new(start, base, capacity)),
                usize::MAX,
            );
        }
        let g = self.skip() + from;
        let (first, skip) = locate(self.first(), g);
        let used = locate(self.first(), g + n - 1).0 - first + 1;
        // The new directory's chunk 0 is this one's chunk `first`.
        let slots = chunk_slots(self.first(), first);
        let chunks = chunks_for(slots, skip + capacity.max(n));
        let seg = Self::with_dir(start, base, slots, skip, n, chunks);
        let copy_first = skip > 0 && self.stale_bytes(first, skip) > stale_limit;
        if copy_first {
            let fresh = Chunk::new(slots);
            // SAFETY: entry `first` holds entry `from` (written), set by this
            // thread, the writer.
            let old = unsafe { chunk_at(&self.dir, self.first(), first) };
            for k in skip..slots.min(skip + n) {
                // SAFETY: slot `k` holds an entry this thread wrote; `fresh`
                // is not shared yet.
                fresh.0[k].with_mut(|p| unsafe { *p = old.read(k).clone() });
            }
            // SAFETY: `seg` is not published; only this thread sees it.
            seg.dir[0].with_mut(|q| unsafe { *q = Chunk::into_entry(fresh) });
        }
        for c in usize::from(copy_first)..used {
            let p = Chunk::into_entry(self.share(first + c));
            // SAFETY: `seg` is not published; only this thread sees it. It
            // owns the reference `share` took.
            seg.dir[c].with_mut(|q| unsafe { *q = p });
        }
        (self.same_faults(seg), first + usize::from(copy_first))
    }

    /// `seg` with this segment's injected fault (loom models only).
    fn same_faults(&self, seg: Self) -> Self {
        #[cfg(loom)]
        let seg = seg.with_len_store(self.len_store);
        seg
    }

    /// A new reference to the chunk at directory entry `c`, which this
    /// thread (the writer) set.
    fn share(&self, c: usize) -> Arc<Chunk> {
        let p = self.dir[c].with(|p| {
            // SAFETY: only the writer writes directory entries, and this is
            // the writer.
            unsafe { *p }
        });
        let p = Chunk::fat(p, chunk_slots(self.first(), c));
        // SAFETY: `p` is what `Arc::into_raw` gave (the thin pointer with
        // the chunk's own length, see `DirEntry`), and this segment holds a
        // reference, so the count is at least 1; the increment is the
        // returned `Arc`'s.
        unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        }
    }

    /// Payload and slot bytes of chunk entry `c`'s slots below `k` (written
    /// by this thread, the writer).
    fn stale_bytes(&self, c: usize, k: usize) -> usize {
        // SAFETY: entry `c` holds written entries (the caller's), set by
        // this thread; slots below `k` were written by it (or hold
        // placeholders).
        let chunk = unsafe { chunk_at(&self.dir, self.first(), c) };
        (0..k)
            // SAFETY: as above; the writer reads its own writes.
            .map(|s| unsafe { chunk.read(s) }.retained_size())
            .sum()
    }

    /// Entries `[from, to)` as a batch that holds their chunks (see
    /// [`Batch`]). Writer only.
    pub(crate) fn batch(&self, from: usize, to: usize) -> Batch {
        debug_assert!(from <= to && to <= self.writer_len());
        if from == to {
            return Batch::empty();
        }
        let (c0, skip) = locate(self.first(), self.skip() + from);
        let last = locate(self.first(), self.skip() + to - 1).0;
        Batch {
            chunks: (c0..=last).map(|c| self.share(c)).collect(),
            skip,
            len: to - from,
        }
    }

    /// The same segment with `len` published with `order` (loom models of
    /// a wrong ordering only).
    #[cfg(loom)]
    pub(crate) fn with_len_store(mut self, order: Ordering) -> Self {
        self.len_store = order;
        self
    }

    /// What a free does under loom (the memory itself is kept until the
    /// model ends): writes the length, every directory entry and every
    /// slot of the chunks only this segment holds through loom's cells, so
    /// that loom reports any read of this segment that is not ordered before
    /// the free.
    #[cfg(loom)]
    pub(crate) fn poison(&mut self) {
        let _ = exclusive_usize(&mut self.len);
        for (c, entry) in self.dir.iter().enumerate() {
            // SAFETY: `&mut self`: nobody else reaches the segment.
            let p = entry.with_mut(|p| unsafe { *p });
            if p.is_null() {
                continue;
            }
            let p = Chunk::fat(p, chunk_slots(self.first(), c));
            // SAFETY: a set entry holds a live chunk (this segment's
            // reference). Only segments and batches hold chunks, and nobody
            // can clone this (unpublished) segment's references any more, so
            // a count of 1 stays 1.
            let chunk = std::mem::ManuallyDrop::new(unsafe { Arc::from_raw(p) });
            if Arc::strong_count(&chunk) == 1 {
                for slot in &chunk.0 {
                    slot.with_mut(|_| ());
                }
            }
        }
    }

    /// The log position (entry number) of entry 0.
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    /// The offset of the last entry that is on disk only (entry `start - 1`).
    pub(crate) fn base(&self) -> LogOffset {
        self.base
    }

    /// Entries this segment has room for (a push beyond it hands the entry
    /// back).
    pub(crate) fn capacity(&self) -> usize {
        positions(self.first(), self.dir.len()) - self.skip()
    }

    /// The number of written entries. Acquire: pairs with the Release store
    /// in [`Segment::push`], so entries below the result may be read.
    pub(crate) fn published_len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// What the published part of this segment holds in memory: the
    /// segment, its directory, its slots and the payloads of its published
    /// entries (an estimate: a chunk shared with a retired segment counts
    /// here too). Any thread; O(published entries).
    pub(crate) fn resident_bytes(&self) -> usize {
        let slots = self.published(usize::MAX);
        std::mem::size_of::<Self>()
            + self.dir.len() * std::mem::size_of::<DirEntry>()
            + self.capacity().min(slots.len + self.skip()) * std::mem::size_of::<Entry>()
            + slots
                .iter(0..slots.len)
                .map(|e| e.payload.len())
                .sum::<usize>()
    }

    /// The number of written entries as the writer knows it. Relaxed: only
    /// the writer stores `len`, and it reads its own store.
    pub(crate) fn writer_len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Entry `i`, which must be below a length returned by
    /// [`Segment::published_len`] (or [`Segment::writer_len`] on the writer).
    pub(crate) fn get(&self, i: usize) -> &Entry {
        self.writer_view().get(i)
    }

    /// Every written entry, for the writer (or a caller that has itself
    /// synchronised with the lengths it reads below). Relaxed: the bound
    /// only checks indices; the caller's own Acquire load (or store) of a
    /// length is what orders the slot reads.
    fn writer_view(&self) -> Slots<'_> {
        Slots {
            dir: &self.dir,
            first: self.first(),
            skip: self.skip(),
            len: self.len.load(Ordering::Relaxed),
        }
    }

    /// A reader's view of the first `min(published_len, limit)` entries: the
    /// published length is loaded once (Acquire, via
    /// [`Segment::published_len`]), so reading an entry afterwards costs a
    /// bounds compare, not an atomic load of the `len` cache line the writer
    /// stores to on every append.
    pub(crate) fn published(&self, limit: usize) -> Slots<'_> {
        Slots {
            dir: &self.dir,
            first: self.first(),
            skip: self.skip(),
            len: self.published_len().min(limit),
        }
    }

    /// Appends `entry`, or hands it back when the segment is full.
    ///
    /// # Safety
    ///
    /// Only one thread may ever call `push` on a given segment (the shape's
    /// writer), and never after the segment has been retired.
    pub(crate) unsafe fn push(&self, entry: Entry) -> Result<(), Entry> {
        let n = self.len.load(Ordering::Relaxed);
        let g = self.skip() + n;
        let (c, k) = locate(self.first(), g);
        if c == self.dir.len() {
            return Err(entry);
        }
        debug_assert!(n == 0 || self.get(n - 1).offset < entry.offset);
        debug_assert!(self.base < entry.offset || (self.start == 0 && n == 0));
        if k == 0 {
            // The entry starts a chunk, which no segment holds yet: set the
            // directory entry. No reader reads it before `len` passes it.
            let p = Chunk::into_entry(Chunk::new(chunk_slots(self.first(), c)));
            self.dir[c].with_mut(|q| {
                // SAFETY: writer only (the caller's contract), and no reader
                // reads entry `c` before the Release store below.
                unsafe {
                    debug_assert!((*q).is_null());
                    *q = p;
                }
            });
        }
        // SAFETY: entry `c` is set (above, or it holds entries below `n` or
        // the partly written chunk `carry` took over).
        let chunk = unsafe { chunk_at(&self.dir, self.first(), c) };
        chunk.0[k].with_mut(|p| {
            // SAFETY: slot `k` is past every length published through this
            // segment or any segment that shares the chunk (sharing
            // invariant), so no reader reads it, and by the caller's
            // contract no other writer touches it. It holds a placeholder,
            // whose drop frees nothing.
            unsafe { *p = entry };
        });
        // Release: publishes the slot (and directory entry) just written;
        // pairs with the Acquire load in `published_len`.
        #[cfg(not(loom))]
        let release = Ordering::Release;
        #[cfg(loom)]
        let release = self.len_store;
        self.len.store(n + 1, release);
        Ok(())
    }

    /// Bytes that freeing this segment releases, if the segment that
    /// replaced it holds its chunks from directory entry `kept` on (0: it
    /// holds them all; `usize::MAX`: none): its directory, plus each chunk
    /// below `kept` with the payloads of its written entries. An estimate:
    /// a chunk also held by an older retired segment is freed with the last
    /// of them. Writer only.
    pub(crate) fn footprint(&self, kept: usize) -> usize {
        let view = self.writer_view();
        let owned = kept.min(chunks_for(self.first(), self.skip() + view.len));
        let slots = positions(self.first(), owned);
        let entries = slots.saturating_sub(self.skip()).min(view.len);
        std::mem::size_of::<Self>()
            + self.dir.len() * std::mem::size_of::<DirEntry>()
            + slots * std::mem::size_of::<Entry>()
            + view
                .iter(0..entries)
                .map(|e| e.payload.len())
                .sum::<usize>()
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // A failing loom model unwinds through here; loom would report the
        // accesses below again, and a panic while unwinding aborts the test
        // process. Leak the chunks instead.
        #[cfg(loom)]
        if std::thread::panicking() {
            return;
        }
        for (c, entry) in self.dir.iter().enumerate() {
            let p = entry.with_mut(|p| {
                // SAFETY: `&mut self`: no reader holds the segment any more.
                unsafe { *p }
            });
            if !p.is_null() {
                // SAFETY: `p` (with its chunk's length, see `DirEntry`) is
                // what `Arc::into_raw` gave, and this segment owns one
                // reference, released once here.
                drop(unsafe { Arc::from_raw(Chunk::fat(p, chunk_slots(self.first(), c))) });
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn e(tx: u64, op: u64) -> Entry {
        Entry::new(LogOffset::new(tx, op), format!("{tx}.{op}"))
    }

    /// Pushes entries `(i, 0)` for `i` in `range`.
    fn fill(s: &Segment, range: Range<u64>) {
        for i in range {
            // SAFETY: single-threaded test; this is the only writer.
            unsafe { s.push(e(i, 0)) }.expect("room");
        }
    }

    fn all(s: &Segment) -> Vec<Entry> {
        let v = s.published(usize::MAX);
        v.iter(0..s.published_len()).cloned().collect()
    }

    #[test]
    fn push_until_full_then_hands_back() {
        let s = Segment::new(0, LogOffset::ZERO, 3);
        assert_eq!(s.capacity(), 3, "chunks of 1 and 2 slots");
        fill(&s, 1..4);
        let extra = e(4, 0);
        // SAFETY: as above.
        let back = unsafe { s.push(extra.clone()) }.expect_err("full segment must refuse");
        assert_eq!(back, extra);
        assert_eq!(s.published_len(), 3);
        assert_eq!(s.get(2), &e(3, 0));
        let s = Segment::new(0, LogOffset::ZERO, 4);
        assert_eq!(s.capacity(), 7, "rounds up to the next chunk, of 4");
    }

    /// `tests/common/mod.rs` mirrors the chunk size (`CHUNK_SLOTS`) for the
    /// integration tests that count growth and memory: change both.
    #[test]
    #[cfg(not(loom))]
    fn chunk_size_mirrored_in_tests() {
        assert_eq!((FIRST, CHUNK), (1, 64));
    }

    /// The geometry: chunks doubling from chunk 0's size up to `CHUNK`,
    /// contiguous, from any power-of-two chunk 0 (a carried segment's).
    #[test]
    #[cfg(not(loom))]
    fn positions_map_to_doubling_chunks() {
        assert_eq!(locate(1, 0), (0, 0));
        assert_eq!(locate(1, 1), (1, 0));
        assert_eq!(locate(1, 2), (1, 1));
        assert_eq!(locate(1, 3), (2, 0));
        assert_eq!(locate(1, 62), (5, 31));
        assert_eq!(locate(1, 63), (6, 0));
        assert_eq!(locate(1, 127), (7, 0));
        assert_eq!(locate(4, 3), (0, 3));
        assert_eq!(locate(4, 4), (1, 0));
        assert_eq!(locate(CHUNK, CHUNK + 1), (1, 1));
        assert_eq!(
            (chunk_slots(1, 5), chunk_slots(1, 6), chunk_slots(1, 9)),
            (32, 64, 64)
        );
        assert_eq!((positions(1, 7), positions(1, 8)), (127, 191));
        for first in [1, 2, 4, 32, CHUNK] {
            let mut expect = (0, 0);
            let mut held = 0;
            for g in 0..4 * CHUNK {
                assert_eq!(locate(first, g), expect, "chunk 0 of {first}, position {g}");
                expect.1 += 1;
                if expect.1 == chunk_slots(first, expect.0) {
                    held += chunk_slots(first, expect.0);
                    expect = (expect.0 + 1, 0);
                    assert_eq!(positions(first, expect.0), held);
                }
                assert!(chunk_slots(first, locate(first, g).0).is_power_of_two());
                let c = chunks_for(first, g + 1);
                assert!(positions(first, c) > g && positions(first, c - 1) <= g);
            }
            assert_eq!(chunks_for(first, 0), 0);
        }
    }

    /// A carry from any position takes over the chunk holding it as its
    /// chunk 0, shares it, and the chunks after it follow at the right
    /// positions (sizes doubling from there).
    #[test]
    fn carry_from_any_chunk_shares_it() {
        let old = Segment::new(0, LogOffset::ZERO, 3 * CHUNK);
        fill(&old, 1..2 * CHUNK as u64 + 4);
        for from in [
            0,
            1,
            2,
            3,
            6,
            7,
            62,
            63,
            64,
            65,
            126,
            127,
            128,
            2 * CHUNK + 2,
        ] {
            let start = from as u64;
            let base = if from == 0 {
                LogOffset::ZERO
            } else {
                old.get(from - 1).offset
            };
            let (new, _) = old.carry(from, start, base, 2 * CHUNK, usize::MAX);
            assert!(
                std::ptr::eq(old.get(from), new.get(0)),
                "shared from {from}"
            );
            assert_eq!(all(&new), all(&old)[from..], "from {from}");
            let n = old.writer_len() as u64;
            let end = n + 1 + (new.capacity() - new.writer_len()) as u64;
            fill(&new, n + 1..end);
            let got: Vec<u64> = all(&new).iter().map(|x| x.offset.tx).collect();
            let want: Vec<u64> = (from as u64 + 1..end).collect();
            assert_eq!(got, want, "grown from {from}");
            let b = new.batch(1, new.writer_len());
            assert_eq!(b.iter().map(|x| x.offset.tx).collect::<Vec<_>>(), want[1..]);
        }
    }

    #[test]
    fn first_after_binary_searches() {
        let s = Segment::new(10, LogOffset::new(1, 9), 8);
        for (tx, op) in [(2, 0), (2, 1), (3, 0), (5, 2)] {
            // SAFETY: single-threaded test; this is the only writer.
            unsafe { s.push(e(tx, op)) }.expect("room");
        }
        let all = s.published(usize::MAX);
        assert_eq!(all.first_after(LogOffset::MAX), 4);
        assert_eq!(all.first_after(LogOffset::ZERO), 0);
        assert_eq!(all.first_after(LogOffset::new(2, 0)), 1);
        assert_eq!(all.first_after(LogOffset::new(2, 5)), 2);
        assert_eq!(all.first_after(LogOffset::new(5, 2)), 4);
        // Only the last entry is above: found by the search, not the probe.
        assert_eq!(all.first_after(LogOffset::new(5, 1)), 3);
        assert_eq!(all.first_after(LogOffset::new(3, 0)), 3);
        assert_eq!(s.published(3).first_after(LogOffset::new(4, 0)), 3);
    }

    #[test]
    fn iter_crosses_chunks_in_order() {
        let s = Segment::new(0, LogOffset::ZERO, 3 * CHUNK);
        let n = 2 * CHUNK as u64 + 5;
        fill(&s, 1..n + 1);
        let v = s.published(usize::MAX);
        for (lo, hi) in [(0, 0), (0, 1), (3, CHUNK + 2), (CHUNK, 2 * CHUNK + 5)] {
            let got: Vec<u64> = v.iter(lo..hi).map(|x| x.offset.tx).collect();
            let want: Vec<u64> = (lo as u64 + 1..hi as u64 + 1).collect();
            assert_eq!(got, want, "range {lo}..{hi}");
            assert_eq!(v.iter(lo..hi).len(), hi - lo);
        }
    }

    /// A trim's carry shares the chunks, starts mid-chunk, and leaves what
    /// the old segment shows unchanged while the new one grows the shared
    /// chunk and adds more.
    #[test]
    fn carry_shares_chunks_without_copying() {
        let old = Segment::new(0, LogOffset::ZERO, CHUNK);
        fill(&old, 1..CHUNK as u64 / 2 + 1);
        let kept_from = 3;
        let (new, kept) = old.carry(kept_from, 3, LogOffset::new(3, 0), 2 * CHUNK, usize::MAX);
        assert_eq!(
            kept, 2,
            "the new segment holds the chunks from the one of entry 3 on"
        );
        assert!(
            std::ptr::eq(old.get(kept_from), new.get(0)),
            "the entry is shared, not copied"
        );
        let before = all(&old);
        fill(&new, CHUNK as u64 / 2 + 1..2 * CHUNK as u64 + 1);
        assert_eq!(all(&old), before, "the old segment's view never changes");
        let got: Vec<u64> = all(&new).iter().map(|x| x.offset.tx).collect();
        assert_eq!(got, (4..2 * CHUNK as u64 + 1).collect::<Vec<_>>());
        // Growth: a carry of everything, then pushes into fresh chunks.
        let (grown, _) = new.carry(0, new.start(), new.base(), 4 * new.capacity(), usize::MAX);
        let n = new.writer_len();
        fill(&grown, 2 * CHUNK as u64 + 1..3 * CHUNK as u64 + 1);
        assert_eq!(all(&grown)[..n], all(&new)[..]);
        drop(old);
        drop(new);
        assert_eq!(
            grown.get(0).offset,
            LogOffset::new(4, 0),
            "chunks outlive the old segments"
        );
    }

    #[test]
    fn batch_outlives_its_segment() {
        let s = Segment::new(0, LogOffset::ZERO, 2 * CHUNK);
        fill(&s, 1..CHUNK as u64 + 11);
        let b = s.batch(CHUNK - 2, CHUNK + 3);
        drop(s);
        let got: Vec<u64> = b.iter().map(|x| x.offset.tx).collect();
        assert_eq!(
            got,
            (CHUNK as u64 - 1..CHUNK as u64 + 4).collect::<Vec<_>>()
        );
        assert_eq!(b.len(), 5);
        assert_eq!(b.last().map(|x| x.offset.tx), Some(CHUNK as u64 + 3));
        assert_eq!(Segment::new(0, LogOffset::ZERO, 1).batch(0, 0).len(), 0);
    }

    #[test]
    fn drop_releases_payloads_with_the_last_holder() {
        let payload = bytes::Bytes::from(vec![7u8; 100]);
        let s = Segment::new(0, LogOffset::ZERO, 4);
        // SAFETY: single-threaded test; this is the only writer.
        unsafe { s.push(Entry::new(LogOffset::new(1, 0), payload.clone())) }.expect("room");
        let (trimmed, _) = s.carry(0, 0, LogOffset::ZERO, 4, usize::MAX);
        drop(s);
        assert!(!payload.is_unique(), "the trimmed segment still holds it");
        drop(trimmed);
        assert!(
            payload.is_unique(),
            "dropping the last segment must drop its entries"
        );
    }

    #[test]
    fn footprint_counts_only_chunks_left_behind() {
        let s = Segment::new(0, LogOffset::ZERO, 2 * CHUNK);
        fill(&s, 1..CHUNK as u64 + 2);
        let dir = chunks_for(FIRST, 2 * CHUNK) * std::mem::size_of::<DirEntry>();
        let shell = std::mem::size_of::<Segment>() + dir;
        assert_eq!(s.footprint(0), shell, "a growth frees only the directory");
        // Chunks 0 and 1: 1 + 2 slots.
        let two = shell + 3 * std::mem::size_of::<Entry>();
        let payloads: usize = (0..3).map(|i| s.get(i).payload.len()).sum();
        assert_eq!(s.footprint(2), two + payloads);
        assert!(s.footprint(usize::MAX) > s.footprint(1));
    }

    /// A trim that would keep a chunk whose trimmed (invisible) slots hold
    /// more than the budget copies its kept part instead, so the trimmed
    /// payloads are freed with the old segment; with nothing to keep it
    /// shares nothing.
    #[test]
    fn carry_copies_a_chunk_whose_trimmed_part_is_over_budget() {
        let big = bytes::Bytes::from(vec![1u8; 4096]);
        let old = Segment::new(0, LogOffset::ZERO, CHUNK);
        fill(&old, 1..4);
        // Entry 3 starts chunk 2 (slots for entries 3..7).
        // SAFETY: single-threaded test; this is the only writer.
        unsafe { old.push(Entry::new(LogOffset::new(4, 0), big.clone())) }.expect("room");
        fill(&old, 5..8);
        let (new, kept) = old.carry(4, 4, LogOffset::new(4, 0), CHUNK, 1024);
        assert_eq!(kept, 3, "chunk 2 is not held");
        assert!(!std::ptr::eq(old.get(4), new.get(0)), "copied");
        assert_eq!(all(&new), all(&old)[4..]);
        drop(old);
        assert!(
            big.is_unique(),
            "the trimmed payload went with the old segment"
        );
        let (shared, kept) = new.carry(1, 5, LogOffset::new(5, 0), CHUNK, 1024);
        assert_eq!(kept, 0, "a small trimmed part is shared");
        assert!(std::ptr::eq(new.get(1), shared.get(0)));
        let (empty, kept) = new.carry(new.writer_len(), 7, LogOffset::new(7, 0), CHUNK, 1024);
        assert_eq!(
            (kept, empty.writer_len(), empty.capacity()),
            (usize::MAX, 0, 2 * CHUNK - 1)
        );
    }
}
