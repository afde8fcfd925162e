//! A durable mark: what of a shape's log is on disk, and what of it is
//! committed. The disk side (`log/`) produces it after each sync; the memory
//! side (`shape/`) trims to it. It lives below both so neither names the
//! other.
//!
//! # Invariants
//!
//! - `committed <= entries`, and `last_committed <= last` (a flush may land
//!   in the middle of a transaction, so the last entry on disk can be past
//!   the last committed one, never the other way round).
//! - Marks of one log only grow while its writer lives; recovery may lower
//!   `entries` to `committed` (it discards an uncommitted tail).

use crate::LogOffset;

/// What is durable in a log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Durable {
    /// Entries on disk (committed or not).
    pub(crate) entries: u64,
    /// The offset of the last entry on disk.
    pub(crate) last: LogOffset,
    /// Entries `[0, committed)` are committed on disk.
    pub(crate) committed: u64,
    /// The offset of entry `committed - 1`.
    pub(crate) last_committed: LogOffset,
}
