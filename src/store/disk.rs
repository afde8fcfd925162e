//! The reader's way to the disk: a shape's log answers the reads that
//! `shape::reader` plans below a segment's base.
//!
//! `shape/` names no disk type: it reads through its own trait
//! ([`Disk`](crate::shape::reader::Disk)), and the store, which holds both
//! sides, implements it for the log here.

use crate::entry::Entry;
use crate::log::ShapeLog;
use crate::shape::reader::Disk;
use crate::{LogOffset, Result};

impl Disk for ShapeLog {
    fn read(
        &self,
        after: LogOffset,
        upto: LogOffset,
        limit: u64,
        out: &mut Vec<Entry>,
    ) -> Result<()> {
        ShapeLog::read(self, after, upto, limit, out)
    }
}
