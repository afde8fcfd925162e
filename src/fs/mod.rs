//! The file-system seam: every file operation of the log goes through the
//! [`Fs`] and [`FsFile`] traits.
//!
//! Production uses [`RealFs`], a thin layer over `std::fs` with positional
//! I/O. Tests substitute an implementation that fails chosen operations or
//! simulates power loss, and the log cannot tell the difference: there is no
//! other path to the disk.
//!
//! # Durability contract
//!
//! - Data written to a file is durable after [`FsFile::sync_data`] returns Ok.
//! - A created, renamed or removed directory entry is durable after
//!   [`Fs::sync_dir`] on its parent returns Ok.

mod real;
mod seam;
mod sim;

pub use real::RealFs;
pub use seam::{Fs, FsFile};
pub use sim::{Op, Refused, SimFs};
