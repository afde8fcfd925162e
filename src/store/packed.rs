//! A read answered as one contiguous buffer: [`ShapeHandle::read_packed`].
//!
//! An owned read ([`ShapeHandle::read`]) clones one `Bytes` per entry: each
//! clone is an atomic increment on the payload's shared count, and with
//! several readers on one shape those counts bounce between cores. A packed
//! read copies the payloads of the range back to back into one buffer
//! during a [`visit`](ShapeHandle::visit) (which lends the entries without
//! touching their counts) and keeps each entry's offset and end beside it.
//! The answer owns one `Bytes`: a host that hands payloads on (an HTTP
//! body, an Erlang binary and its sub-binaries) shares that one buffer
//! instead of one per entry.

use bytes::Bytes;

use super::handle::ShapeHandle;
use crate::{LogOffset, Result};

/// The committed entries of a range, their payloads back to back in one
/// buffer. Built by [`ShapeHandle::read_packed`] and [`Store::read_packed`].
///
/// Entry `i` has offset `entries[i].0` and payload
/// `data[start..entries[i].1]`, where `start` is the previous entry's end
/// (0 for the first): [`PackedRead::get`] and [`PackedRead::iter`] do the
/// arithmetic.
///
/// ```
/// # fn main() -> shapebuf::Result<()> {
/// use shapebuf::{LogOffset, Store};
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// let mut w = store.writer("s")?;
/// for op in 0..5 {
///     w.append(LogOffset::new(1, op), format!("e{op}"))?;
/// }
/// w.commit()?;
/// let h = store.handle("s")?;
/// let r = h.read_packed(LogOffset::ZERO, LogOffset::MAX, 3)?;
/// assert_eq!(r.len(), 3);
/// assert!(r.more, "two more entries are committed in the range");
/// assert_eq!(&r.data[..], b"e0e1e2");
/// assert_eq!(r.get(1), Some((LogOffset::new(1, 1), &b"e1"[..])));
/// // Continue after the last entry returned.
/// let next = h.read_packed(r.last().unwrap(), LogOffset::MAX, 3)?;
/// let rest: Vec<_> = next.iter().map(|(o, p)| (o.op, p.to_vec())).collect();
/// assert_eq!(rest, vec![(3, b"e3".to_vec()), (4, b"e4".to_vec())]);
/// assert!(!next.more);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackedRead {
    /// Every returned entry's payload, in offset order, back to back.
    pub data: Bytes,
    /// Each returned entry's offset and the end of its payload in `data`.
    pub entries: Vec<(LogOffset, u32)>,
    /// How many of the returned entries came from disk.
    pub from_disk: usize,
    /// As [`ReadOutcome::dead`](crate::ReadOutcome::dead): the shape had no
    /// live buffer and the read was served from disk.
    pub dead: bool,
    /// The range held more committed entries than `max_entries`: read on
    /// from [`PackedRead::last`].
    pub more: bool,
}

impl PackedRead {
    /// How many entries were returned.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry was returned.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The offset of the last returned entry (where a continuing read
    /// starts), if any.
    pub fn last(&self) -> Option<LogOffset> {
        self.entries.last().map(|&(o, _)| o)
    }

    /// Entry `i`: its offset and payload.
    pub fn get(&self, i: usize) -> Option<(LogOffset, &[u8])> {
        let &(offset, end) = self.entries.get(i)?;
        let start = match i {
            0 => 0,
            _ => self.entries[i - 1].1,
        };
        Some((offset, &self.data[start as usize..end as usize]))
    }

    /// The returned entries in order: offset and payload.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (LogOffset, &[u8])> + '_ {
        let mut start = 0usize;
        self.entries.iter().map(move |&(offset, end)| {
            let payload = &self.data[start..end as usize];
            start = end as usize;
            (offset, payload)
        })
    }

    /// Entry `i`'s payload as a `Bytes` sharing `data` (no copy).
    pub fn payload(&self, i: usize) -> Option<Bytes> {
        let &(_, end) = self.entries.get(i)?;
        let start = match i {
            0 => 0,
            _ => self.entries[i - 1].1,
        };
        Some(self.data.slice(start as usize..end as usize))
    }
}

/// A packed read's first buffer: 16 KiB (doubling after).
const INITIAL_BYTES: usize = 16 << 10;
/// A packed read's first entry table: 128 entries (doubling after).
const INITIAL_ENTRIES: usize = 128;

impl ShapeHandle {
    /// The committed entries with offsets in `(after, upto]`, in order, at
    /// most `max_entries` of them, as one buffer ([`PackedRead`]). The same
    /// consistency as [`ShapeHandle::read`]; [`PackedRead::more`] tells
    /// whether the range held more.
    ///
    /// Payloads are copied once, into the answer's buffer, while the
    /// entries are lent by [`ShapeHandle::visit`]; entries past the limit
    /// are counted, not copied. (A range with a disk part is read from disk
    /// whole by the visit before the limit applies: bound `upto` for very
    /// long logs.) A buffer larger than 4 GiB is cut at the entry that would
    /// pass it, with `more` set.
    pub fn read_packed(
        &self,
        after: LogOffset,
        upto: LogOffset,
        max_entries: usize,
    ) -> Result<PackedRead> {
        // Sized for a typical tail read up front: growing from empty costs
        // a dozen reallocations (and copies) on a read of 10 KiB.
        let mut data: Vec<u8> = Vec::with_capacity(INITIAL_BYTES);
        let mut entries = Vec::with_capacity(max_entries.min(INITIAL_ENTRIES));
        let mut more = false;
        let out = self.visit(after, upto, |e| {
            if more {
                return;
            }
            let end = data.len() + e.payload.len();
            if entries.len() == max_entries || end > u32::MAX as usize {
                more = true;
                return;
            }
            data.extend_from_slice(&e.payload);
            entries.push((e.offset, end as u32));
        })?;
        // The visit serves the disk part first (entries up to the segment's
        // base), then memory: the first `from_disk` visited entries came
        // from disk.
        let from_disk = out.from_disk.min(entries.len());
        // The answer may be kept long (an Erlang binary, an HTTP body):
        // do not keep most of the first buffer of a small read alive.
        if data.capacity() > 2 * data.len() + 1024 {
            data.shrink_to_fit();
        }
        Ok(PackedRead {
            data: Bytes::from(data),
            entries,
            from_disk,
            dead: out.dead,
            more,
        })
    }
}
