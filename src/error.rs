//! The one error type of the crate.
//!
//! Every bad input a caller can give (a non-increasing offset, an unknown
//! shape, a second writer) and every failure the disk can produce is a
//! variant here with a message that says what happened. Nothing a caller or
//! the disk can influence panics.

use std::io;
use std::path::PathBuf;

use crate::LogOffset;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in shapebuf.
///
/// ```
/// use shapebuf::{Error, LogOffset};
/// let e = Error::NonIncreasingOffset { last: LogOffset::new(2, 0), got: LogOffset::new(1, 0) };
/// assert!(e.to_string().contains("must be greater than"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `append` was given an offset at or below the last appended one.
    #[error("offset {got} must be greater than the last appended offset {last}")]
    NonIncreasingOffset {
        /// The last offset this shape holds.
        last: LogOffset,
        /// The offset that was rejected.
        got: LogOffset,
    },
    /// `append` was given [`LogOffset::ZERO`], which is reserved as "before
    /// the first entry".
    #[error("offset 0/0 is reserved as the start of a log and cannot hold an entry")]
    ZeroOffset,
    /// A payload larger than the configured maximum
    /// ([`Config::max_payload`](crate::Config::max_payload)).
    #[error("payload of {len} bytes exceeds Config::max_payload ({max} bytes)")]
    PayloadTooLarge {
        /// The rejected payload's length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A shape id that is empty or longer than the maximum.
    #[error("shape id of {len} bytes is not allowed (must be 1..={max} bytes)")]
    BadShapeId {
        /// The rejected id's length.
        len: usize,
        /// The maximum id length.
        max: usize,
    },
    /// The shape is not known to the store (never written, not on disk).
    #[error("unknown shape {0}")]
    UnknownShape(String),
    /// The shape was removed ([`Store::remove`](crate::Store::remove)):
    /// a handle, reader or writer of it that outlived the removal gets this
    /// (a new shape with the same id is another shape).
    #[error("shape {0} was removed")]
    ShapeRemoved(String),
    /// Another live writer already owns this shape.
    #[error("shape {0} already has a live writer")]
    WriterActive(String),
    /// `append` of an entry of a transaction that a dropped predecessor
    /// writer left torn: the predecessor appended the transaction's
    /// beginning (up to `torn_after`) and was dropped before committing it,
    /// so that beginning is gone (the flush tracker reported it as a
    /// [`Loss`](crate::Loss)). The entry was **not** written: committing the
    /// rest of a transaction without its beginning would store a torn
    /// transaction. The writer stays usable: the host either replays the
    /// transaction from its beginning (an entry at or below `torn_after`
    /// is written and ends this state) or goes on with the next
    /// transaction; later entries of the torn one get this error too.
    #[error(
        "entry {offset} of shape {shape} was not written: its transaction {tx} was torn by a \
         writer dropped after appending up to {torn_after} (replay the transaction from its \
         start, or go on with the next)",
        tx = offset.tx
    )]
    TornTransaction {
        /// The shape.
        shape: String,
        /// The entry that was not written.
        offset: LogOffset,
        /// The last entry the dropped writer appended in that transaction.
        torn_after: LogOffset,
    },
    /// The writer was terminated, or poisoned by an earlier I/O failure.
    #[error("the writer of shape {shape} is unusable: {reason}")]
    WriterClosed {
        /// The shape.
        shape: String,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// The store was closed ([`Store::close`](crate::Store::close), or its
    /// last `Store` dropped): writers, handles and stores that outlive it
    /// answer this.
    #[error("the store was closed")]
    Closed,
    /// A read asked for a range whose start is no longer on disk.
    #[error(
        "offset {after} is no longer available; the earliest available offset is after {earliest}"
    )]
    OffsetCollected {
        /// The requested start.
        after: LogOffset,
        /// Reads must start at or after this offset.
        earliest: LogOffset,
    },
    /// A flush-tracker commit whose end is not above the previous commit's.
    #[error("transaction commit at {got} must be after the last commit {last}")]
    CommitOutOfOrder {
        /// The end of the last commit.
        last: LogOffset,
        /// The rejected commit end.
        got: LogOffset,
    },
    /// A flush-tracker commit in which a shape received an offset beyond
    /// the transaction's end.
    #[error("a shape received offset {received}, beyond the end {end} of its transaction")]
    ReceivedBeyondCommit {
        /// The offset the shape received.
        received: LogOffset,
        /// The transaction's end.
        end: LogOffset,
    },
    /// A log file failed verification outside the tail (where recovery
    /// cannot repair it by truncation).
    #[error("corrupt log file {path}: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// Another store holds the directory (its `LOCK` file is locked: another
    /// process, or another `Store` in this one, has it open).
    #[error("store directory {0} is in use by another store (its LOCK file is locked)")]
    Locked(PathBuf),
    /// A [`Config`](crate::Config) value the store cannot run with, refused
    /// by [`Config::validate`](crate::Config::validate) (which
    /// [`Store::open_with`](crate::Store::open_with) runs before it touches
    /// the directory).
    #[error("invalid Config::{field}: {reason}")]
    InvalidConfig {
        /// The field, as spelled in [`Config`](crate::Config).
        field: &'static str,
        /// Its bounds, and the value given.
        reason: String,
    },
    /// An I/O operation failed. The message names the operation and the
    /// path; the OS error is the [`source`](std::error::Error::source)
    /// (print the chain, e.g. with `anyhow`'s `{:#}`, to see it).
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}

/// An error and its causes, `: `-separated, each printed once (what
/// `anyhow`'s `{:#}` prints): for log lines, where [`Error::Io`]'s own
/// message leaves its OS error to its source.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn an_io_error_prints_its_os_error_once_in_a_chain() {
        let e = Error::io("sync", "/x/y.log")(io::Error::other("disk on fire"));
        assert_eq!(e.to_string(), "sync /x/y.log");
        assert_eq!(Chain(&e).to_string(), "sync /x/y.log: disk on fire");
    }
}
