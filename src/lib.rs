//! # shapebuf
//!
//! A lock-free in-memory buffer table with safe concurrent reader teardown,
//! backed by a checksummed on-disk log: the cache layer of a storage or sync
//! engine that keeps one ordered log per *shape*.
//!
//! - One [`ShapeWriter`] per shape appends entries ([`LogOffset`] ->
//!   payload), commits transactions, and flushes them to disk (fdatasync),
//!   then trims its memory.
//! - Any number of readers ([`Store::read`], [`ShapeHandle`]) read committed
//!   ranges: recent entries from an epoch-protected in-memory segment, older
//!   ones from disk, stitched together exactly.
//! - [`ShapeWriter::terminate`] flushes, unpublishes and retires the buffer
//!   without waiting for readers; a reader that finds it gone reads from
//!   disk ([`ReadOutcome::dead`]).
//!
//! ```
//! # fn main() -> shapebuf::Result<()> {
//! use shapebuf::{LogOffset, Store};
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path())?;
//! let mut w = store.writer("orders")?;
//! w.append(LogOffset::new(1, 0), "created")?;
//! w.append(LogOffset::new(1, 1), "paid")?;
//! w.commit()?;
//! w.flush()?; // durable; memory trimmed
//! let out = store.read("orders", LogOffset::ZERO, LogOffset::MAX)?;
//! assert_eq!(out.entries.len(), 2);
//! w.terminate()?;
//! drop(store); // one store per directory at a time
//! let store = Store::open(dir.path())?; // reopen: exact
//! assert_eq!(store.read("orders", LogOffset::new(1, 0), LogOffset::MAX)?.entries.len(), 1);
//! # Ok(()) }
//! ```
//!
//! # Consistency
//!
//! A read of `(after, upto]` returns exactly the entries of committed
//! transactions with offsets in that range as of one instant during the
//! read, in increasing offset order, each once. It never returns an entry of
//! an uncommitted transaction, never skips a committed one, and is never
//! disturbed by a concurrent flush, trim, growth or terminate. Reads never
//! wait for the writer, and the writer never waits for readers.
//!
//! Durability: an entry is durable once [`ShapeWriter::flush`] (or
//! terminate) returns Ok after it was appended; a transaction survives a
//! crash only if its commit was flushed.
//!
//! See `docs/design.md`, `docs/protocol.md` and `docs/format.md`.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

// Shared vocabulary: every layer may use these, they use no layer.
mod durable;
mod entry;
mod error;
pub mod fs;
mod id;
mod offset;
mod sync;

// The layers, lowest first (docs/design.md, "Layers"): `shape/` and `log/`
// know nothing of each other; `store/` composes them; the flush tracker
// stands on its own (a host may use it without a store).
mod flush_tracker;
mod log;
mod shape;
mod store;

#[cfg(loom)]
#[doc(hidden)]
pub mod loom_api;

/// The `bytes` crate, re-exported: payloads are [`bytes::Bytes`] (and
/// `append` takes anything `Into<Bytes>`), so a host needs no version of
/// its own.
pub use bytes;
pub use entry::Entry;
pub use error::{Error, Result};
pub use flush_tracker::{FlushEvent, FlushTracker, Loss, TrackedShape, Transaction};
pub use id::MAX_ID;
pub use log::record::MAX_PAYLOAD;
pub use offset::LogOffset;
pub use shape::reader::{ReadOutcome, VisitOutcome};
/// The live-tail waiter protocol for the loom model (`cfg(loom)` only).
#[cfg(loom)]
#[doc(hidden)]
pub use shape::wait::loom_model as wait_loom;
pub use shape::wait::WaitOutcome;
pub use store::writer::{Flushed, ShapeWriter};
pub use store::PackedRead;
pub use store::{Config, Removed, ShapeHandle, Stats, Store};

/// README.md's Rust examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
