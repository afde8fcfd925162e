//! One log file: its header facts, its entry in the descriptor cache, its
//! sparse index, and a cursor that reads its records in order.
//!
//! # Invariants
//!
//! - Index points are sorted by position; the first is at the end of the
//!   header. A point `(seq, pos, prev)` says the record at `pos` is entry
//!   number `seq` and every entry before it has an offset `<= prev`, so a
//!   read of entries after `prev` may start there.
//! - The cursor never reads beyond what its caller asks for, and validates
//!   every record it returns (length bound and checksum).

use std::path::Path;
use std::sync::{Arc, RwLock};

use bytes::{Bytes, BytesMut};

use crate::fs::FsFile;
use crate::log::descriptors::{self, Descriptors, Lease, Mode};
use crate::log::record::{self, Bad, Record};
use crate::{Error, LogOffset, Result};

/// A sparse index point: entry `seq` starts at byte `pos`, and every earlier
/// entry has an offset `<= prev`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexPoint {
    pub(crate) seq: u64,
    pub(crate) pos: u64,
    pub(crate) prev: LogOffset,
}

#[derive(Debug)]
pub(crate) struct LogFile {
    /// The entry number of the file's first entry.
    pub(crate) start: u64,
    /// The offset of entry `start - 1`.
    pub(crate) base: LogOffset,
    /// The header's length: where the records start.
    pub(crate) data_start: u64,
    /// The file's entry in the store's descriptor cache.
    fd: Arc<descriptors::Slot>,
    /// Sparse index points after the file's first record, in order (the
    /// point at the first record is [`LogFile::first_point`], not stored:
    /// a small file's index allocates nothing).
    index: RwLock<Vec<IndexPoint>>,
}

impl LogFile {
    pub(crate) fn new(start: u64, base: LogOffset, data_start: u64) -> Self {
        LogFile {
            start,
            base,
            data_start,
            fd: Arc::default(),
            index: RwLock::new(Vec::new()),
        }
    }

    /// The index point at the file's first record.
    fn first_point(&self) -> IndexPoint {
        IndexPoint {
            seq: self.start,
            pos: self.data_start,
            prev: self.base,
        }
    }

    /// The record of a file that was opened (and whose header was read)
    /// through `probe`'s cache entry, which it takes over.
    pub(crate) fn with_slot(start: u64, base: LogOffset, data_start: u64, probe: LogFile) -> Self {
        let mut f = LogFile::new(start, base, data_start);
        f.fd = probe.fd;
        f
    }

    /// The file's descriptor, through the cache (`path` is where the file
    /// is; `Mode::Create` creates it).
    pub(crate) fn lease(
        &self,
        cache: &Descriptors,
        path: &Path,
        mode: Mode,
    ) -> std::io::Result<Lease> {
        cache.get(&self.fd, path, mode)
    }

    /// Drops the cache's descriptor of this file (it closes once its
    /// leases end).
    pub(crate) fn forget(&self) {
        Descriptors::forget(&self.fd);
    }

    pub(crate) fn push_index(&self, point: IndexPoint) {
        let mut idx = self
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let last = idx.last().copied().unwrap_or_else(|| self.first_point());
        debug_assert!(last.pos < point.pos && last.seq < point.seq);
        idx.push(point);
    }

    /// Drops index points at or beyond `pos` (after a truncation).
    pub(crate) fn truncate_index(&self, pos: u64) {
        let mut idx = self
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while idx.last().is_some_and(|p| p.pos >= pos) {
            idx.pop();
        }
    }

    /// The last index point from which a read of entries after `after` may
    /// start.
    pub(crate) fn seek(&self, after: LogOffset) -> IndexPoint {
        let idx = self
            .index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match idx.partition_point(|p| p.prev <= after) {
            0 => self.first_point(),
            i => idx[i - 1],
        }
    }
}

/// What a cursor found where it expected a record.
#[derive(Debug)]
pub(crate) enum Next {
    Record(Record, u64),
    /// End of file exactly at a record boundary.
    End,
    /// The file ends inside a record, or the record is corrupt.
    Bad(&'static str),
}

/// Reads the records of one file in order, in chunks.
pub(crate) struct Cursor<'a> {
    file: &'a dyn FsFile,
    /// For errors.
    path: &'a Path,
    /// File position of `buf[0]`.
    pos: u64,
    buf: Bytes,
}

const CHUNK: usize = 64 << 10;

impl<'a> Cursor<'a> {
    /// A cursor over `file` (at `path`) from byte `pos`.
    pub(crate) fn new(file: &'a dyn FsFile, path: &'a Path, pos: u64) -> Self {
        Cursor {
            file,
            path,
            pos,
            buf: Bytes::new(),
        }
    }

    /// The file position of the next record.
    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    /// The next record and the position just after it.
    pub(crate) fn next(&mut self) -> Result<Next> {
        loop {
            match record::decode(&self.buf) {
                Ok((rec, n)) => {
                    self.pos += n as u64;
                    self.buf = self.buf.slice(n..);
                    return Ok(Next::Record(rec, self.pos));
                }
                Err(Bad::Corrupt(why)) => return Ok(Next::Bad(why)),
                Err(Bad::Short { need }) => {
                    let have = self.buf.len();
                    // At most double what the file has really yielded: a
                    // corrupt length then costs about what the file holds,
                    // not what the length claims, and a large record is
                    // still read in O(size).
                    let want = need.max(CHUNK).min((have * 2).max(have + CHUNK));
                    let mut more = BytesMut::with_capacity(want);
                    more.extend_from_slice(&self.buf);
                    more.resize(want, 0);
                    let at = self.pos + have as u64;
                    let mut filled = have;
                    while filled < want {
                        let n = self
                            .file
                            .read_at(&mut more[filled..], at + (filled - have) as u64)
                            .map_err(Error::io("read", self.path))?;
                        if n == 0 {
                            break;
                        }
                        filled += n;
                    }
                    more.truncate(filled);
                    if filled == have {
                        return Ok(if have == 0 {
                            Next::End
                        } else {
                            Next::Bad("file ends inside a record")
                        });
                    }
                    self.buf = more.freeze();
                }
            }
        }
    }
}
