//! A log file's header: the format version and the shape's id, read on its
//! own (how a listed stem learns whose it is) and at recovery.
//!
//! # Invariants
//!
//! - A header is read whole or not at all: a file that ends inside its
//!   header is `Torn` (created, never made durable), one whose complete
//!   header fails verification is `Corrupt` (damage, not a crash).

use std::path::Path;

use super::catalog::Stem;
use super::ctx::LogCtx;
use super::descriptors::{Lease, Mode};
use super::file::LogFile;
use super::record::{Bad, Header, Version};
use crate::{Error, LogOffset, Result};

/// What a file's first bytes hold.
pub(crate) enum HeaderRead {
    /// A valid header, its length and its format version.
    Ok(Header, u64, Version),
    /// The file ends inside its header: it was created but its header never
    /// became durable, so it holds nothing that was acknowledged (unless a
    /// damaged length only makes it look so: see `recover`).
    Torn,
    /// A complete header that fails verification: damage, not a crash.
    Corrupt(&'static str),
}

pub(super) fn read_header(fd: &Lease, path: &Path) -> Result<HeaderRead> {
    let mut buf = vec![0u8; 4096];
    let mut have = 0;
    loop {
        let n = fd
            .read_at(&mut buf[have..], have as u64)
            .map_err(Error::io("read", path))?;
        have += n;
        match Header::decode(&buf[..have]) {
            Ok((h, len, v)) => return Ok(HeaderRead::Ok(h, len as u64, v)),
            Err(Bad::Short { need }) if n > 0 => {
                if need > buf.len() {
                    buf.resize(need, 0);
                }
            }
            Err(Bad::Short { .. }) => return Ok(HeaderRead::Torn),
            Err(Bad::Corrupt(why)) => return Ok(HeaderRead::Corrupt(why)),
        }
    }
}

/// The header of `stem`'s file starting at entry `start` (which holds the
/// shape's id): how a listed stem learns whose it is.
pub(crate) fn read_id(ctx: &LogCtx, stem: Stem, start: u64) -> Result<HeaderRead> {
    let path = ctx.path(stem, start);
    let file = LogFile::new(start, LogOffset::ZERO, 0);
    let fd = file
        .lease(&ctx.descriptors, &path, Mode::Open)
        .map_err(Error::io("open", &path))?;
    let header = read_header(&fd, &path);
    drop(fd);
    // A one-off read: do not keep the descriptor cached.
    file.forget();
    header
}
