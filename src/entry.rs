//! An entry of a shape's log: the vocabulary the memory side (`shape/`)
//! and the disk side (`log/`) share, below both.
//!
//! # Invariants
//!
//! - An entry is immutable once built: its payload is a shared [`Bytes`], so
//!   a read hands out the buffer's bytes without copying them.
//! - Offsets order entries; a shape's entries are strictly increasing by
//!   offset (the writer checks this at append, the log at recovery).

use bytes::Bytes;

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
    /// What keeping this entry in memory costs against
    /// `Config::retain_bytes`: its payload and its slot (so that empty
    /// payloads cannot pile up).
    pub(crate) fn retained_size(&self) -> usize {
        self.payload.len() + std::mem::size_of::<Entry>()
    }

    /// Builds an entry from anything that converts into [`Bytes`].
    pub fn new(offset: LogOffset, payload: impl Into<Bytes>) -> Self {
        Entry {
            offset,
            payload: payload.into(),
        }
    }

    /// What an unwritten slot holds (no allocation).
    pub(crate) const fn placeholder() -> Self {
        Entry {
            offset: LogOffset::ZERO,
            payload: Bytes::new(),
        }
    }
}
