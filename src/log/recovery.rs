//! Recovery: rebuilding a shape's log state from its files alone.
//!
//! Recovery reads only the files it was handed and builds a fresh
//! [`ShapeLog`]; it never consults state shared with other threads.
//!
//! For each shape, files are taken in entry order and every record is
//! verified (length bound, checksum, increasing offsets, contiguous entry
//! numbers). Then:
//!
//! - a torn or corrupt tail of the **last** file is truncated at the last
//!   good record (with a warning);
//! - a last file whose header never became durable is removed;
//! - the uncommitted tail (entries after the last commit record) is
//!   truncated, so a transaction whose commit never reached the disk is
//!   discarded;
//! - damage anywhere else (a middle file) is an [`Error::Corrupt`]: those
//!   records were acknowledged and cannot be repaired by truncation.
//!
//! The sparse index is rebuilt during the scan.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tracing::{info, warn};

use super::catalog::Stem;
use super::descriptors::{Lease, Mode};
use super::file::{Cursor, IndexPoint, LogFile, Next};
use super::record::{Header, Record};
use super::{Durable, LogCtx, ShapeLog};
use crate::{Error, LogOffset, Result};

/// What a file's first bytes hold.
pub(crate) enum HeaderRead {
    /// A valid header, and its length.
    Ok(Header, u64),
    /// The file ends inside its header: it was created but its header never
    /// became durable, so it holds nothing that was acknowledged.
    Torn,
    /// A complete header that fails verification: damage, not a crash.
    Corrupt(&'static str),
}

fn read_header(fd: &Lease, path: &Path) -> Result<HeaderRead> {
    let mut buf = vec![0u8; 4096];
    let mut have = 0;
    loop {
        let n = fd
            .read_at(&mut buf[have..], have as u64)
            .map_err(Error::io("read", path))?;
        have += n;
        match Header::decode(&buf[..have]) {
            Ok((h, len)) => return Ok(HeaderRead::Ok(h, len as u64)),
            Err(super::record::Bad::Short { need }) if n > 0 => {
                if need > buf.len() {
                    buf.resize(need, 0);
                }
            }
            Err(super::record::Bad::Short { .. }) => return Ok(HeaderRead::Torn),
            Err(super::record::Bad::Corrupt(why)) => return Ok(HeaderRead::Corrupt(why)),
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

/// Rebuilds the log of shape `stem` from its files, which start at the
/// entry numbers `starts` (sorted). Returns `None` when no file holds even a
/// valid header (the shape was never durably created).
pub(crate) fn recover(
    ctx: &Arc<LogCtx>,
    stem: Stem,
    starts: &[u64],
) -> Result<Option<(ShapeLog, Durable)>> {
    let fs = ctx.fs();
    let cfg = ctx.cfg;
    let mut logs: Vec<Arc<LogFile>> = Vec::new();
    let mut id: Option<Bytes> = None;
    let mut d = Durable::default();
    let mut end = 0;
    let mut commit_at: Option<(usize, u64)> = None; // (file index, position after the commit record)
    let mut removed = false;

    for (k, start) in starts.iter().enumerate() {
        let path = &ctx.path(stem, *start);
        let last_file = k + 1 == starts.len();
        let probe = LogFile::new(*start, LogOffset::ZERO, 0);
        let fd = probe
            .lease(&ctx.descriptors, path, Mode::Open)
            .map_err(Error::io("open", path))?;
        let (h, data_start) = match read_header(&fd, path)? {
            HeaderRead::Ok(h, len) => (h, len),
            HeaderRead::Torn if last_file => {
                drop(fd);
                probe.forget();
                warn!(path = %path.display(), "removing log file whose header never became durable");
                fs.remove_file(path).map_err(Error::io("remove", path))?;
                removed = true;
                continue;
            }
            HeaderRead::Torn => {
                return Err(Error::Corrupt {
                    path: path.clone(),
                    detail: "torn header in a file that is not the last".into(),
                })
            }
            HeaderRead::Corrupt(why) => {
                return Err(Error::Corrupt {
                    path: path.clone(),
                    detail: format!("header: {why}"),
                })
            }
        };
        if k == 0 && h.start > 0 {
            // Collection removed the files before this one; every entry in
            // them was committed (files roll only when all is committed).
            d = Durable {
                entries: h.start,
                last: h.base,
                committed: h.start,
                last_committed: h.base,
            };
        }
        if h.start != *start || h.start != d.entries || id.as_ref().is_some_and(|i| *i != h.id) {
            return Err(Error::Corrupt {
                path: path.clone(),
                detail: format!(
                    "file starts at entry {} (name says {start}) but the log so far holds {} entries, or belongs to another shape",
                    h.start, d.entries
                ),
            });
        }
        id.get_or_insert(h.id.clone());
        // The probe's cache entry becomes the file's (its descriptor stays
        // cached for the reads and writes that follow recovery).
        let lf = Arc::new(LogFile::with_slot(h.start, h.base, data_start, probe));
        if d.committed == d.entries {
            // Everything before this file is committed.
            commit_at = Some((logs.len(), data_start));
        }
        let mut cur = Cursor::new(&*fd, path, data_start);
        let mut since = 0u64;
        let mut good = data_start;
        loop {
            match cur.next()? {
                Next::Record(rec, after) => {
                    match rec {
                        Record::Entry { offset, .. } => {
                            if offset <= d.last && d.entries > 0 || offset == LogOffset::ZERO {
                                return Err(Error::Corrupt {
                                    path: path.clone(),
                                    detail: format!("entry {offset} does not follow {}", d.last),
                                });
                            }
                            if since >= cfg.index_interval {
                                lf.push_index(IndexPoint {
                                    seq: d.entries,
                                    pos: good,
                                    prev: d.last,
                                });
                                since = 0;
                            }
                            since += after - good;
                            d.entries += 1;
                            d.last = offset;
                        }
                        Record::Commit { committed, last } => {
                            if committed > d.entries || committed < d.committed {
                                return Err(Error::Corrupt {
                                    path: path.clone(),
                                    detail: format!(
                                        "commit of {committed} entries with {} on disk",
                                        d.entries
                                    ),
                                });
                            }
                            d.committed = committed;
                            d.last_committed = last;
                            commit_at = Some((logs.len(), after));
                        }
                    }
                    good = after;
                }
                Next::End => break,
                Next::Bad(why) => {
                    if !last_file {
                        return Err(Error::Corrupt {
                            path: path.clone(),
                            detail: format!("{why} at byte {good} of a file that is not the last"),
                        });
                    }
                    warn!(path = %path.display(), at = good, why, "truncating torn log tail");
                    fd.set_len(good).map_err(Error::io("truncate", path))?;
                    fd.sync_data().map_err(Error::io("sync", path))?;
                    break;
                }
            }
        }
        end = good;
        logs.push(lf);
    }
    if removed {
        ctx.sync_dir()?;
    }
    let Some(id) = id else {
        return Ok(None);
    };

    // Discard the uncommitted tail: truncate the file holding the last commit
    // point, remove any later files.
    if d.entries > d.committed {
        let (k, pos) = commit_at.unwrap_or((0, 0));
        let dropped = d.entries - d.committed;
        for lf in logs.drain(k + 1..) {
            let path = ctx.path(stem, lf.start);
            lf.forget();
            fs.remove_file(&path).map_err(Error::io("remove", &path))?;
        }
        let lf = &logs[k];
        let path = ctx.path(stem, lf.start);
        let fd = lf
            .lease(&ctx.descriptors, &path, Mode::Open)
            .map_err(Error::io("open", &path))?;
        fd.set_len(pos).map_err(Error::io("truncate", &path))?;
        fd.sync_data().map_err(Error::io("sync", &path))?;
        drop(fd);
        ctx.sync_dir()?;
        lf.truncate_index(pos);
        info!(
            %stem,
            dropped, "discarded entries of transactions whose commit never became durable"
        );
        d.entries = d.committed;
        d.last = d.last_committed;
        end = pos;
    }
    let log = ShapeLog::from_parts(Arc::clone(ctx), id, stem, logs, d, end);
    Ok(Some((log, d)))
}
