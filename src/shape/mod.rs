//! One shape in memory: its segment of entries, the buffer that publishes
//! it, the reads over it, and the live tail's waiters.
//!
//! # What this layer owns
//!
//! - `segment`: the append-only array of entries one writer fills and any
//!   number of readers scan (slot initialisation, published length).
//! - `buffer`: the epoch-protected pointer to the current segment, the
//!   committed watermark, trims after a flush and retirement at terminate.
//! - `reader`: the read protocol (pin once, memory above the segment's
//!   base, the rest from disk through the [`reader::Disk`] trait).
//! - `lazy`: a value loaded under a pin and opened on first use (a shape's
//!   open state).
//! - `wait` and `wake`: readers waiting for commits, and the thread that
//!   wakes them off the writer's path.
//!
//! # What it may not import
//!
//! Nothing of `log/` (the disk side) or `store/` (which composes both):
//! only the shared vocabulary at the crate root (`entry`, `durable`,
//! `offset`, `error`, `sync`). The disk is reached through
//! [`reader::Disk`], which `store/` implements. `tests/layering.rs` checks
//! this.

pub(crate) mod buffer;
pub(crate) mod lazy;
pub(crate) mod once_arc;
pub(crate) mod reader;
pub(crate) mod segment;
pub(crate) mod wait;
pub(crate) mod wake;
