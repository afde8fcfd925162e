//! Recovery: rebuilding a shape's log state from its files alone.
//!
//! Recovery reads only the files it was handed and builds a fresh
//! [`ShapeLog`]; it never consults state shared with other threads. It runs
//! the first time a shape is used after the store opened (lazily: opening
//! a store reads no log), on the thread that uses it, and opens each file
//! through the store's descriptor cache, one at a time.
//!
//! It runs in two phases. The first reads and verifies everything and
//! decides; it changes no file, so a verdict of corruption leaves every
//! file of the shape as it was. The second applies the decision.
//!
//! For each shape, files are taken in entry order and every record is
//! verified (length bound, checksum, increasing offsets, contiguous entry
//! numbers, batch structure: see `record`). Damage anywhere but the last
//! file is an [`Error::Corrupt`]: those records were acknowledged and cannot
//! be repaired by truncation. In the last file, the first bad record (bad
//! length, checksum, kind or structure, or the file ending inside a record or
//! a batch) at byte `p` is either a torn tail or corruption:
//!
//! - `p` inside a segment of batch `k` whose header was intact: the header's
//!   length gives the segment's end `e` (following a second segment of `k`
//!   from there). An intact `synced k` or `batch k+1` at `e` proves batch `k`
//!   was synced: corruption. If `e` holds neither (the damage reaches past
//!   `e`: over the marker, say), the rest of the file from `p` is scanned
//!   byte by byte, as below, for an intact `synced j` with `j >= k` or
//!   `batch j` with `j >= k+1`: found, corruption. Otherwise the tail is
//!   torn.
//! - `p` where a batch header or a marker was expected (after batch `k`, or at
//!   a file's data start with `k = 0`), or inside the records of a version-1
//!   file before its first batch header (the legacy batch 0, of unknown
//!   length): the rest of the file is scanned byte by byte for an intact
//!   marker or header proving that a batch whose bytes lie after `p` was
//!   synced — `synced j` with `j >= k+1` or `batch j` with `j >= k+2` (in the
//!   legacy region `synced j >= 1` or `batch j >= 1`). Found: corruption.
//!   Otherwise the tail is torn. (A lone `batch k+1` proves only that batch
//!   `k`, which is intact, was synced: when marker `k` and the next batch
//!   were both unsynced, a power cut may keep the header and lose the
//!   marker.)
//!
//! Why that holds: a batch's header is written only after every earlier
//! batch's `fdatasync` returned, and its marker only after its own; recovery
//! syncs a last file that does not end with its last batch's marker before
//! the log continues, so a batch adopted from the page cache after a process
//! crash is durable before anything is written after it; and a file is
//! synced before the log rolls past it, so its final marker is durable.
//!
//! A torn tail is truncated: at `p`, or, inside a segment, at that segment's
//! header (its records before `p` are entries whose commit, at the segment's
//! end or later, is gone: the next rule would discard them anyway). Then:
//!
//! - a last file whose header never became durable (the file ends inside
//!   it) is removed, unless an intact batch record follows in it: then the
//!   header was durable and a damaged id length makes it look torn, which is
//!   corruption (decided in the first phase);
//! - the uncommitted tail (entries after the last commit record) is
//!   truncated, so a transaction whose commit never reached the disk is
//!   discarded; the cut lands on a segment boundary;
//! - a last file that does not end with its last batch's marker is synced.
//!
//! What remains ambiguous: a batch whose `synced` marker was lost to the
//! power cut (the cut came between its sync and the marker's write-back) and
//! that is the last batch is indistinguishable from a torn one, so damage in
//! it is treated as a torn tail (so is damage in the legacy records of a
//! version-1 file that no batch follows). A payload (or a shape id) may
//! contain bytes that look like an intact marker or header; only the byte
//! scans can be fooled by them, and the worst outcome is a shape reported
//! corrupt, never data served wrong.
//!
//! The sparse index is rebuilt during the scan.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tracing::{info, warn};

use super::catalog::Stem;
use super::ctx::{LogConfig, LogCtx};
use super::descriptors::{Lease, Mode};
use super::file::{Cursor, IndexPoint, LogFile, Next};
use super::header::{read_header, HeaderRead};
use super::record::{self, Record, Version, BATCH_SIZE};
use super::{Durable, ShapeLog};
use crate::fs::FsFile;
use crate::{Error, LogOffset, Result};

/// Where the scan of a file is, between two records.
#[derive(Clone, Copy, Debug)]
enum At {
    /// In a version-1 file before its first batch header: records of the
    /// legacy batch 0, whose length is unknown.
    Legacy,
    /// Between segments: the last header was of batch `seq` (0: none yet),
    /// whose marker was `marked`.
    Boundary { seq: u64, marked: bool },
    /// Inside a segment of batch `seq` whose header starts at `header` and
    /// whose records end at `end`; `before` is the last batch number before
    /// the segment's header.
    Inside {
        seq: u64,
        header: u64,
        end: u64,
        before: u64,
    },
}

impl At {
    /// The number of the last batch header read.
    fn seq(self) -> u64 {
        match self {
            At::Legacy => 0,
            At::Boundary { seq, .. } | At::Inside { seq, .. } => seq,
        }
    }

    /// Takes record `rec`, at `[pos, after)`, into the batch structure, or
    /// says why it does not fit there.
    fn step(
        &mut self,
        rec: &Record,
        pos: u64,
        after: u64,
    ) -> std::result::Result<(), &'static str> {
        let seg = |seq: u64, len: u64, before: u64| {
            if len == 0 {
                return Err("empty batch segment");
            }
            let end = after.checked_add(len).ok_or("batch length out of range")?;
            Ok(At::Inside {
                seq,
                header: pos,
                end,
                before,
            })
        };
        *self = match (*self, rec) {
            (At::Legacy, Record::Entry { .. } | Record::Commit { .. }) => At::Legacy,
            (At::Legacy, Record::Batch { seq: 1, len }) => seg(1, *len, 0)?,
            (At::Legacy, _) => return Err("unexpected record before the first batch"),
            (At::Inside { end, .. }, Record::Entry { .. }) if after < end => *self,
            (At::Inside { seq, end, .. }, Record::Entry { .. } | Record::Commit { .. })
                if after == end =>
            {
                At::Boundary { seq, marked: false }
            }
            (At::Inside { .. }, _) => return Err("record does not fit its batch segment"),
            (At::Boundary { seq, marked }, Record::Batch { seq: s, len })
                if *s == seq + 1 || (*s == seq && seq > 0 && !marked) =>
            {
                seg(*s, *len, seq)?
            }
            (At::Boundary { seq, marked: false }, Record::Synced { seq: s })
                if *s == seq && seq > 0 =>
            {
                At::Boundary { seq, marked: true }
            }
            (At::Boundary { .. }, _) => return Err("unexpected record between batches"),
        };
        Ok(())
    }
}

/// A commit point: the position in recovered file `file` just after a
/// commit record (or a file's data start when everything before the file
/// is committed), and the number of the batch whose segment ends there.
#[derive(Clone, Copy, Debug)]
struct CommitPoint {
    file: usize,
    pos: u64,
    seq: u64,
}

/// What the scan of one file found.
#[derive(Clone, Copy, Debug)]
struct Scanned {
    /// Where the records kept end.
    end: u64,
    /// The number of the last batch header before `end` (0: none).
    last_seq: u64,
    /// The last record before `end` is its last batch's `synced` marker.
    marked: bool,
    /// The torn tail to cut at `end` (last file only): where the first bad
    /// record is, and why.
    torn: Option<(u64, &'static str)>,
}

/// The shape's state while its files are scanned.
struct Scan {
    cfg: LogConfig,
    d: Durable,
    commit_at: Option<CommitPoint>,
}

impl Scan {
    /// Reads and verifies the records of `lf` (recovered file number
    /// `index`), updating the durable counts and the commit point. Changes
    /// no file.
    #[allow(clippy::too_many_arguments)]
    fn file(
        &mut self,
        lf: &LogFile,
        fd: &Lease,
        path: &Path,
        index: usize,
        data_start: u64,
        version: Version,
        last_file: bool,
    ) -> Result<Scanned> {
        let d = &mut self.d;
        let mut at = match version {
            Version::V1 => At::Legacy,
            Version::V2 => At::Boundary {
                seq: 0,
                marked: false,
            },
        };
        let mut cur = Cursor::new(&**fd, path, data_start);
        let mut since = 0u64;
        let mut good = data_start;
        let mut marked = false;
        let why = loop {
            let (rec, after) = match cur.next()? {
                Next::Record(rec, after) => (rec, after),
                Next::End if matches!(at, At::Inside { .. }) => break "file ends inside a batch",
                Next::End => {
                    return Ok(Scanned {
                        end: good,
                        last_seq: at.seq(),
                        marked,
                        torn: None,
                    })
                }
                Next::Bad(why) => break why,
            };
            if let Err(why) = at.step(&rec, good, after) {
                break why;
            }
            match rec {
                Record::Entry { offset, .. } => {
                    if offset <= d.last && d.entries > 0 || offset == LogOffset::ZERO {
                        return Err(Error::Corrupt {
                            path: path.to_path_buf(),
                            detail: format!("entry {offset} does not follow {}", d.last),
                        });
                    }
                    if since >= self.cfg.index_interval {
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
                            path: path.to_path_buf(),
                            detail: format!(
                                "commit of {committed} entries with {} on disk",
                                d.entries
                            ),
                        });
                    }
                    d.committed = committed;
                    d.last_committed = last;
                    self.commit_at = Some(CommitPoint {
                        file: index,
                        pos: after,
                        seq: at.seq(),
                    });
                }
                Record::Batch { .. } | Record::Synced { .. } => {}
            }
            marked = matches!(rec, Record::Synced { .. });
            good = after;
        };
        // The first bad record is at `good`.
        if !last_file {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                detail: format!("{why} at byte {good} of a file that is not the last"),
            });
        }
        if let Some((pos, proof)) = proof_of_sync(fd, path, at, good)? {
            let (kind, seq) = match proof {
                Record::Synced { seq } => ("synced marker", seq),
                Record::Batch { seq, .. } => ("header", seq),
                _ => ("record", 0),
            };
            let batch = match at {
                At::Legacy => "the records before the first batch (legacy batch 0)".to_string(),
                At::Inside { seq, .. } => format!("batch {seq}"),
                At::Boundary { seq, .. } => {
                    format!("the marker of batch {seq} or batch {}", seq + 1)
                }
            };
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                detail: format!(
                    "acknowledged data is damaged: {why} at byte {good}, in {batch}; \
                     the intact {kind} of batch {seq} at byte {pos} proves it was synced, \
                     so this is not a torn write (nothing was truncated)"
                ),
            });
        }
        let (end, last_seq) = match at {
            At::Inside { header, before, .. } => (header, before),
            At::Legacy | At::Boundary { .. } => (good, at.seq()),
        };
        Ok(Scanned {
            end,
            last_seq,
            marked: marked && end == good,
            torn: Some((good, why)),
        })
    }
}

/// An intact record proving that the data at the bad byte `p` was synced
/// (see the module doc), with its position; `None` for a torn tail.
fn proof_of_sync(fd: &Lease, path: &Path, at: At, p: u64) -> Result<Option<(u64, Record)>> {
    match at {
        At::Inside { seq, end, .. } => {
            let mut e = end;
            loop {
                match mark_at(fd, path, e)? {
                    // A second segment of the same batch: its end is next.
                    Some(Record::Batch { seq: s, len }) if s == seq => {
                        match (e + BATCH_SIZE as u64).checked_add(len) {
                            Some(next) => e = next,
                            None => return Ok(None),
                        }
                    }
                    Some(r @ Record::Synced { seq: s }) if s == seq => return Ok(Some((e, r))),
                    Some(r @ Record::Batch { seq: s, .. }) if s == seq + 1 => {
                        return Ok(Some((e, r)))
                    }
                    // Nothing intact at `e`: the damage may reach past it
                    // (over the marker, say, with the next batch intact
                    // after it). A later batch's header or any marker of
                    // this batch or a later one, anywhere after `p`, was
                    // written after this batch's sync returned.
                    _ => return scan_for_mark(&**fd, path, p, seq, seq + 1),
                }
            }
        }
        At::Legacy => scan_for_mark(&**fd, path, p, 1, 1),
        At::Boundary { seq, .. } => scan_for_mark(&**fd, path, p, seq + 1, seq + 2),
    }
}

/// The intact batch header or synced marker at `pos`, if there is one.
fn mark_at(fd: &Lease, path: &Path, pos: u64) -> Result<Option<Record>> {
    let mut buf = [0u8; BATCH_SIZE];
    let mut have = 0;
    while have < buf.len() {
        let n = fd
            .read_at(&mut buf[have..], pos + have as u64)
            .map_err(Error::io("read", path))?;
        if n == 0 {
            break;
        }
        have += n;
    }
    Ok(record::decode_mark(&buf[..have]))
}

/// Scans the file byte by byte from `from` for an intact `synced j` with
/// `j >= min_synced` or `batch j` with `j >= min_batch`.
fn scan_for_mark(
    file: &dyn FsFile,
    path: &Path,
    from: u64,
    min_synced: u64,
    min_batch: u64,
) -> Result<Option<(u64, Record)>> {
    const CHUNK: usize = 64 << 10;
    let mut pos = from; // file position of buf[0]
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + BATCH_SIZE);
    let mut eof = false;
    while !eof {
        let have = buf.len();
        buf.resize(CHUNK + BATCH_SIZE, 0);
        let mut filled = have;
        while filled < buf.len() {
            let n = file
                .read_at(&mut buf[filled..], pos + filled as u64)
                .map_err(Error::io("read", path))?;
            if n == 0 {
                eof = true;
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        // Positions whose whole candidate record is in `buf` (all of them
        // at the end of the file).
        let upto = if eof {
            buf.len()
        } else {
            buf.len() + 1 - BATCH_SIZE
        };
        for q in 0..upto {
            match record::decode_mark(&buf[q..]) {
                Some(r @ Record::Synced { seq }) if seq >= min_synced => {
                    return Ok(Some((pos + q as u64, r)))
                }
                Some(r @ Record::Batch { seq, .. }) if seq >= min_batch => {
                    return Ok(Some((pos + q as u64, r)))
                }
                _ => {}
            }
        }
        buf.drain(..upto);
        pos += upto as u64;
    }
    Ok(None)
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
    // Phase 1: read, verify, decide. No file is changed before every
    // verdict is in.
    let mut logs: Vec<(Arc<LogFile>, Scanned)> = Vec::new();
    let mut id: Option<Bytes> = None;
    let mut scan = Scan {
        cfg: ctx.cfg,
        d: Durable::default(),
        commit_at: None,
    };
    let mut torn_header: Option<(LogFile, std::path::PathBuf)> = None;

    for (k, start) in starts.iter().enumerate() {
        let path = ctx.path(stem, *start);
        let last_file = k + 1 == starts.len();
        let probe = LogFile::new(*start, LogOffset::ZERO, 0);
        let fd = probe
            .lease(&ctx.descriptors, &path, Mode::Open)
            .map_err(Error::io("open", &path))?;
        let (h, data_start, version) = match read_header(&fd, &path)? {
            HeaderRead::Ok(h, len, v) => (h, len, v),
            HeaderRead::Torn if last_file => {
                // Records are written only after the header was synced: an
                // intact batch record means the header was durable and a
                // damaged id length makes it look torn.
                if let Some((q, _)) = scan_for_mark(&*fd, &path, 0, 1, 1)? {
                    return Err(Error::Corrupt {
                        path,
                        detail: format!(
                            "header: the file ends inside the header its id length claims, \
                             but an intact batch record follows at byte {q}: \
                             the header is damaged, not torn (nothing was removed)"
                        ),
                    });
                }
                drop(fd);
                torn_header = Some((probe, path));
                continue;
            }
            HeaderRead::Torn => {
                return Err(Error::Corrupt {
                    path,
                    detail: "torn header in a file that is not the last".into(),
                })
            }
            HeaderRead::Corrupt(why) => {
                return Err(Error::Corrupt {
                    path,
                    detail: format!("header: {why}"),
                })
            }
        };
        let d = &mut scan.d;
        if k == 0 && h.start > 0 {
            // Collection removed the files before this one; every entry in
            // them was committed (files roll only when all is committed).
            *d = Durable {
                entries: h.start,
                last: h.base,
                committed: h.start,
                last_committed: h.base,
            };
        }
        if h.start != *start || h.start != d.entries || id.as_ref().is_some_and(|i| *i != h.id) {
            return Err(Error::Corrupt {
                path,
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
            scan.commit_at = Some(CommitPoint {
                file: logs.len(),
                pos: data_start,
                seq: 0,
            });
        }
        let scanned = scan.file(&lf, &fd, &path, logs.len(), data_start, version, last_file)?;
        logs.push((lf, scanned));
    }

    // Phase 2: apply. A last file whose header never became durable holds
    // nothing that was acknowledged.
    if let Some((probe, path)) = torn_header {
        warn!(path = %path.display(), "removing log file whose header never became durable");
        probe.forget();
        fs.remove_file(&path).map_err(Error::io("remove", &path))?;
        ctx.sync_dir()?;
    }
    let Some(id) = id else {
        return Ok(None);
    };
    let mut d = scan.d;
    let Some((last, tail)) = logs.last_mut() else {
        return Ok(None);
    };
    let lease = |lf: &LogFile| {
        let path = ctx.path(stem, lf.start);
        lf.lease(&ctx.descriptors, &path, Mode::Open)
            .map(|fd| (fd, path.clone()))
            .map_err(Error::io("open", &path))
    };
    let mut synced = false;
    if let Some((at, why)) = tail.torn {
        let (fd, path) = lease(last)?;
        warn!(path = %path.display(), at, cut = tail.end, why, "truncating torn log tail");
        fd.set_len(tail.end).map_err(Error::io("truncate", &path))?;
        fd.sync_data().map_err(Error::io("sync", &path))?;
        last.truncate_index(tail.end);
        synced = true;
    }
    let mut end = tail.end;
    let mut next_seq = tail.last_seq + 1;
    let marked = tail.marked;

    // Discard the uncommitted tail: truncate the file holding the last commit
    // point, remove any later files.
    if d.entries > d.committed {
        let cp = scan.commit_at.unwrap_or(CommitPoint {
            file: 0,
            pos: 0,
            seq: 0,
        });
        let dropped = d.entries - d.committed;
        for (lf, _) in logs.drain(cp.file + 1..) {
            let path = ctx.path(stem, lf.start);
            lf.forget();
            fs.remove_file(&path).map_err(Error::io("remove", &path))?;
        }
        let Some((lf, _)) = logs.last() else {
            return Ok(None);
        };
        let (fd, path) = lease(lf)?;
        fd.set_len(cp.pos).map_err(Error::io("truncate", &path))?;
        fd.sync_data().map_err(Error::io("sync", &path))?;
        drop(fd);
        ctx.sync_dir()?;
        lf.truncate_index(cp.pos);
        info!(
            %stem,
            dropped, "discarded entries of transactions whose commit never became durable"
        );
        d.entries = d.committed;
        d.last = d.last_committed;
        end = cp.pos;
        next_seq = cp.seq + 1;
        synced = true;
    }
    if !synced && !marked {
        // The last batch has no marker: it may have been adopted from the
        // page cache after a process crash, never synced. Sync it before
        // anything is written after it (see the module doc).
        if let Some((lf, _)) = logs.last() {
            let (fd, path) = lease(lf)?;
            fd.sync_data().map_err(Error::io("sync", &path))?;
        }
    }
    let files = logs.into_iter().map(|(lf, _)| lf).collect();
    let log = ShapeLog::from_parts(
        Arc::clone(ctx),
        Arc::from(&id[..]),
        stem,
        files,
        d,
        end,
        next_seq,
    );
    Ok(Some((log, d)))
}
