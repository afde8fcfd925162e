//! The append-only segment: one generation of a shape's in-memory buffer.
//!
//! A segment is a fixed-capacity array of [`Entry`] slots, a published
//! length, and the position of its first slot in the shape's log.
//!
//! # Invariants
//!
//! - **Slot initialisation.** Slots `[0, len)` are initialised and are never
//!   written again; slots `[len, capacity)` are uninitialised and are only
//!   ever touched by the single writer (see [`Segment::push`]). A slot is
//!   written first, then `len` is raised with Release; a reader loads `len`
//!   with Acquire and reads only slots below it.
//! - **Position.** Slot `i` holds the shape's entry number `start + i`
//!   (entries are numbered from 0 in log order). Every entry numbered below
//!   `start` was durable on disk before this segment was published, and
//!   `base` is the offset of entry `start - 1` ([`LogOffset::ZERO`] when
//!   `start == 0`).
//! - **Order.** Offsets strictly increase across slots, and the first slot's
//!   offset is above `base`.
//! - **Immutability after retirement.** Once a segment is replaced (trim,
//!   growth, terminate) the writer never touches it again; it is freed by the
//!   epoch collector after every reader that loaded it has unpinned.
//!
//! # Orderings
//!
//! `len`: the writer's Release store in [`Segment::push`] pairs with the
//! Acquire load in [`Segment::published_len`], making the slot writes below
//! the new length visible to the reader.

use std::mem::MaybeUninit;

use bytes::Bytes;

use crate::sync::{exclusive_usize, AtomicUsize, Ordering, UnsafeCell};
use crate::LogOffset;

/// One entry of a shape's log: its offset and its payload.
///
/// Payloads are [`Bytes`], so a read shares them with the buffer instead of
/// copying.
///
/// ```
/// use shapebuf::{Entry, LogOffset};
/// let e = Entry::new(LogOffset::new(1, 0), "hello");
/// assert_eq!(&e.payload[..], b"hello");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Where the entry sits in the shape's log.
    pub offset: LogOffset,
    /// The entry's bytes.
    pub payload: Bytes,
}

impl Entry {
    /// Builds an entry from anything that converts into [`Bytes`].
    pub fn new(offset: LogOffset, payload: impl Into<Bytes>) -> Self {
        Entry {
            offset,
            payload: payload.into(),
        }
    }
}

/// The first `len` slots of a segment, every one initialised: what a reader
/// may read, fixed once per read.
#[derive(Clone, Copy)]
pub(crate) struct Slots<'a> {
    seg: &'a Segment,
    len: usize,
}

impl<'a> Slots<'a> {
    /// Slot `i`; panics if `i` is outside the view.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> &'a Entry {
        assert!(i < self.len, "slot {i} outside the read view");
        self.seg.slots[i].with(|p| {
            // SAFETY: `i < len`, and this thread has synchronised with the
            // publication of slot `i`: `len` was loaded with Acquire in
            // `Segment::published`, or (through `Segment::get`) `i` is below
            // a length the caller loaded with Acquire or stored itself. So
            // slot `i` was initialised before and is never written again
            // (slot initialisation invariant). The segment outlives `'a`.
            unsafe { (*p).assume_init_ref() }
        })
    }

    /// The index of the first slot whose offset is above `after` (`len`
    /// when none is).
    pub(crate) fn first_after(&self, after: LogOffset) -> usize {
        let (mut lo, mut hi) = (0, self.len);
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

/// One generation of a shape's in-memory buffer. See the module docs for the
/// invariants.
pub(crate) struct Segment {
    start: u64,
    base: LogOffset,
    len: AtomicUsize,
    slots: Box<[UnsafeCell<MaybeUninit<Entry>>]>,
    /// The ordering of the `len` store in [`Segment::push`]: Release, except
    /// in the loom model that checks loom catches a Relaxed one.
    #[cfg(loom)]
    len_store: Ordering,
}

// SAFETY: slots are shared between threads only through the published-length
// protocol (module docs): initialised slots are immutable, uninitialised ones
// are touched by the single writer only. `Entry` is Send + Sync.
unsafe impl Sync for Segment {}
// SAFETY: a segment owns its entries, which are Send.
unsafe impl Send for Segment {}

impl Segment {
    /// An empty segment whose first slot will be entry number `start`, the
    /// entry after `base`.
    pub(crate) fn new(start: u64, base: LogOffset, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Segment {
            start,
            base,
            len: AtomicUsize::new(0),
            slots: (0..capacity)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
            #[cfg(loom)]
            len_store: Ordering::Release,
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
    /// model ends): writes the length and every initialised slot through
    /// loom's cells, so that loom reports any read of this segment that is
    /// not ordered before the free.
    #[cfg(loom)]
    pub(crate) fn poison(&mut self) {
        let n = exclusive_usize(&mut self.len);
        for slot in &self.slots[..n] {
            slot.with_mut(|_| ());
        }
    }

    /// The log position (entry number) of slot 0.
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    /// The offset of the last entry that is on disk only (entry `start - 1`).
    pub(crate) fn base(&self) -> LogOffset {
        self.base
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The number of initialised slots. Acquire: pairs with the Release store
    /// in [`Segment::push`], so slots below the result may be read.
    pub(crate) fn published_len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// The number of initialised slots as the writer knows it. Relaxed: only
    /// the writer stores `len`, and it reads its own store.
    pub(crate) fn writer_len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Slot `i`, which must be below a length returned by
    /// [`Segment::published_len`] (or [`Segment::writer_len`] on the writer).
    pub(crate) fn get(&self, i: usize) -> &Entry {
        // Relaxed: the bound only checks `i`; the caller's own Acquire load
        // (or store) of a length above `i` is what orders the slot read.
        Slots {
            seg: self,
            len: self.len.load(Ordering::Relaxed),
        }
        .get(i)
    }

    /// A reader's view of the first `min(published_len, limit)` slots: the
    /// published length is loaded once (Acquire, via
    /// [`Segment::published_len`]), so reading an entry afterwards costs a
    /// bounds compare, not an atomic load of the `len` cache line the writer
    /// stores to on every append.
    pub(crate) fn published(&self, limit: usize) -> Slots<'_> {
        Slots {
            seg: self,
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
        if n == self.slots.len() {
            return Err(entry);
        }
        debug_assert!(n == 0 || self.get(n - 1).offset < entry.offset);
        debug_assert!(self.base < entry.offset || (self.start == 0 && n == 0));
        self.slots[n].with_mut(|p| {
            // SAFETY: slot `n` is at the published length, so no reader reads
            // it (they read below `len` only) and, by the caller's contract,
            // no other writer touches it; it is uninitialised, so nothing is
            // overwritten without a drop.
            unsafe { (*p).write(entry) };
        });
        // Release: publishes the slot just written; pairs with the Acquire
        // load in `published_len`.
        #[cfg(not(loom))]
        let release = Ordering::Release;
        #[cfg(loom)]
        let release = self.len_store;
        self.len.store(n + 1, release);
        Ok(())
    }

    /// Bytes this segment keeps alive: its slot array plus the payloads of
    /// its entries (payloads may be shared with the segment that replaced
    /// it, so this is an upper bound).
    pub(crate) fn footprint(&self) -> usize {
        let n = self.writer_len();
        std::mem::size_of::<Self>()
            + self.slots.len() * std::mem::size_of::<Entry>()
            + (0..n).map(|i| self.get(i).payload.len()).sum::<usize>()
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // A failing loom model unwinds through here; loom would report the
        // exclusive accesses below again, and a panic while unwinding aborts
        // the test process. Leak the entries instead.
        #[cfg(loom)]
        if std::thread::panicking() {
            return;
        }
        let n = exclusive_usize(&mut self.len);
        for slot in &self.slots[..n] {
            slot.with_mut(|p| {
                // SAFETY: slots below `len` are initialised (slot
                // initialisation invariant) and `&mut self` means no reader
                // holds the segment any more.
                unsafe { (*p).assume_init_drop() }
            });
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn e(tx: u64, op: u64) -> Entry {
        Entry::new(LogOffset::new(tx, op), format!("{tx}.{op}"))
    }

    #[test]
    fn push_until_full_then_hands_back() {
        let s = Segment::new(0, LogOffset::ZERO, 3);
        for i in 1..=3 {
            // SAFETY: single-threaded test; this is the only writer.
            assert!(unsafe { s.push(e(i, 0)) }.is_ok());
        }
        // SAFETY: as above.
        let back = unsafe { s.push(e(4, 0)) }.expect_err("full segment must refuse");
        assert_eq!(back, e(4, 0));
        assert_eq!(s.published_len(), 3);
        assert_eq!(s.get(2), &e(3, 0));
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
        assert_eq!(s.published(3).first_after(LogOffset::new(4, 0)), 3);
    }

    #[test]
    fn drop_releases_payloads() {
        let payload = bytes::Bytes::from(vec![7u8; 100]);
        let s = Segment::new(0, LogOffset::ZERO, 4);
        // SAFETY: single-threaded test; this is the only writer.
        unsafe { s.push(Entry::new(LogOffset::new(1, 0), payload.clone())) }.expect("room");
        assert!(!payload.is_unique());
        drop(s);
        assert!(
            payload.is_unique(),
            "dropping the segment must drop its entries"
        );
    }
}
