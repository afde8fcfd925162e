//! A shape's on-disk log: a sequence of files of checksummed records.
//!
//! The writer appends batches ([`ShapeLog::append`]): a batch is written,
//! then synced, and only then counted as durable. Readers read committed
//! entries by position ([`ShapeLog::read`]) through a sparse in-memory index
//! that is rebuilt from the records on open, so there is no index file to
//! lose or corrupt. See docs/format.md for the bytes.
//!
//! # Invariants
//!
//! - Files are named `<stem>.<start>.log`, where `<stem>` is the shape's
//!   file stem (never derived from the id's bytes, see `store`) and `<start>`
//!   the entry number of the file's first entry, zero-padded to 20 digits.
//! - Within a batch, the commit record (if the batch commits anything) comes
//!   right after the last committed entry, so every record after the last
//!   commit record of the log is an uncommitted entry; discarding them is a
//!   truncation of the last file.
//! - A new file is started only when everything on disk is committed, so
//!   the uncommitted tail always lies in the last file.
//! - Every new file is synced, then its directory is synced, before any
//!   entry in it counts as durable.
//! - Collection removes a prefix of the files, oldest first; a read that
//!   starts below the earliest remaining offset is refused with
//!   [`Error::OffsetCollected`] instead of being answered with a gap.
//! - A failed write or sync poisons the log: nothing more is appended until
//!   the shape is recovered again, and the durable counts do not move.

mod file;
pub(crate) mod record;
mod recovery;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use tracing::{debug, info_span, warn};

use crate::fs::Fs;
use crate::segment::Entry;
use crate::{Error, LogOffset, Result};
use file::{IndexPoint, LogFile, Next};
use record::Record;

pub(crate) use recovery::{list_logs, recover};

/// Log layout settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LogConfig {
    /// Start a new file once the current one is at least this long.
    pub(crate) file_bytes: u64,
    /// One sparse index point per this many bytes of records.
    pub(crate) index_interval: u64,
}

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

/// Writer-side state; only the shape's writer locks it.
#[derive(Debug)]
struct WriteState {
    durable: Durable,
    /// Write position in the last file.
    end: u64,
    /// Position in the last file just after the last commit record (or the
    /// data start when the file holds no commit): a batch segment boundary.
    commit_end: u64,
    /// The sequence number the next batch written to the last file gets
    /// (batches of a file are numbered from 1, see `record`).
    next_seq: u64,
    /// The sequence number of the batch whose segment ends at `commit_end`
    /// (0 when that is the data start or inside a version-1 file's records);
    /// a cut back to `commit_end` continues with `commit_seq + 1`.
    commit_seq: u64,
    /// Bytes written since the last index point.
    since_index: u64,
    poisoned: bool,
}

#[derive(Debug)]
pub(crate) struct ShapeLog {
    id: Bytes,
    stem: String,
    dir: PathBuf,
    fs: Arc<dyn Fs>,
    cfg: LogConfig,
    files: RwLock<Vec<Arc<LogFile>>>,
    write: Mutex<WriteState>,
}

/// Where a log lives and what it belongs to.
struct Where<'a> {
    fs: Arc<dyn Fs>,
    dir: &'a Path,
    stem: String,
    id: Bytes,
    cfg: LogConfig,
}

fn file_name(stem: &str, start: u64) -> String {
    format!("{stem}.{start:020}.log")
}

impl ShapeLog {
    /// Creates the first file of a new shape's log.
    pub(crate) fn create(
        fs: Arc<dyn Fs>,
        dir: &Path,
        stem: String,
        id: Bytes,
        cfg: LogConfig,
    ) -> Result<ShapeLog> {
        let log = ShapeLog {
            id,
            stem,
            dir: dir.to_path_buf(),
            fs,
            cfg,
            files: RwLock::new(Vec::new()),
            write: Mutex::new(WriteState {
                durable: Durable::default(),
                end: 0,
                commit_end: 0,
                next_seq: 1,
                commit_seq: 0,
                since_index: 0,
                poisoned: false,
            }),
        };
        let (file, data_start) = log.new_file(0, LogOffset::ZERO)?;
        log.files_mut().push(Arc::new(file));
        let mut w = log.state();
        w.end = data_start;
        w.commit_end = data_start;
        drop(w);
        Ok(log)
    }

    /// A log recovered from `files`: everything on disk is committed, the
    /// last file ends at `end`, and its next batch is number `next_seq`.
    fn from_parts(
        at: Where,
        files: Vec<Arc<LogFile>>,
        durable: Durable,
        end: u64,
        next_seq: u64,
    ) -> ShapeLog {
        ShapeLog {
            id: at.id,
            stem: at.stem,
            dir: at.dir.to_path_buf(),
            fs: at.fs,
            cfg: at.cfg,
            files: RwLock::new(files),
            write: Mutex::new(WriteState {
                durable,
                end,
                commit_end: end,
                next_seq,
                commit_seq: next_seq.saturating_sub(1),
                since_index: 0,
                poisoned: false,
            }),
        }
    }

    pub(crate) fn id(&self) -> &Bytes {
        &self.id
    }

    fn state(&self) -> std::sync::MutexGuard<'_, WriteState> {
        self.write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn files(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<LogFile>>> {
        self.files
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn files_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<LogFile>>> {
        self.files
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What is durable now.
    pub(crate) fn durable(&self) -> Durable {
        self.state().durable
    }

    /// Creates, syncs and registers in the directory a new file whose first
    /// entry is number `start`.
    fn new_file(&self, start: u64, base: LogOffset) -> Result<(LogFile, u64)> {
        let path = self.dir.join(file_name(&self.stem, start));
        let header = record::Header {
            start,
            base,
            id: self.id.clone(),
        }
        .encode();
        let f = match self.fs.create(&path) {
            // A roll that failed after creating the file left an orphan that
            // no list refers to: replace it.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                self.fs
                    .remove_file(&path)
                    .map_err(Error::io("remove orphan", &path))?;
                self.fs.create(&path)
            }
            r => r,
        }
        .map_err(Error::io("create", &path))?;
        f.write_all_at(&header, 0)
            .map_err(Error::io("write header", &path))?;
        f.sync_data().map_err(Error::io("sync", &path))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(Error::io("sync directory", &self.dir))?;
        let data_start = header.len() as u64;
        Ok((LogFile::new(start, base, path, f, data_start), data_start))
    }

    /// Appends `entries` (numbered from the log's current entry count) and,
    /// if `commit` is given, a commit record making entries
    /// `[0, commit.0)` committed, as one batch (`record::encode_batch`);
    /// then syncs, then writes the batch's `synced` marker (unsynced). On
    /// success every record of the batch is durable. On failure the log is
    /// poisoned; a failed marker write also poisons it, but the batch was
    /// synced, so it is acknowledged (`Ok`).
    pub(crate) fn append<'a>(
        &self,
        entries: impl ExactSizeIterator<Item = &'a Entry> + Clone,
        commit: Option<(u64, LogOffset)>,
    ) -> Result<Durable> {
        let mut w = self.state();
        if w.poisoned {
            return Err(Error::WriterClosed {
                shape: crate::registry::display_id(&self.id),
                reason: "an earlier write or sync of its log failed; reopen the shape to recover",
            });
        }
        let first = w.durable.entries;
        let n = entries.len();
        if let Some((c, _)) = commit {
            debug_assert!(c >= w.durable.committed && c >= first && c <= first + n as u64);
        }
        // Roll to a new file only when nothing on disk is uncommitted, so the
        // uncommitted tail stays in the last file.
        if w.end >= self.cfg.file_bytes && w.durable.committed == w.durable.entries {
            // The full file's last marker was written unsynced: sync it
            // before the file stops being the last, where recovery treats
            // any damage as corruption.
            let full = Arc::clone(self.files().last().expect("a log always has a file"));
            full.file
                .sync_data()
                .map_err(Error::io("sync", &full.path))
                .inspect_err(|_| w.poisoned = true)?;
            let (file, data_start) = self.new_file(first, w.durable.last).inspect_err(|_| {
                w.poisoned = true;
            })?;
            self.files_mut().push(Arc::new(file));
            w.end = data_start;
            w.commit_end = data_start;
            w.next_seq = 1;
            w.commit_seq = 0;
            w.since_index = 0;
        }
        if n == 0 && commit.is_none() {
            return Ok(w.durable);
        }
        let file = Arc::clone(self.files().last().expect("a log always has a file"));

        // The batch's bytes (record.rs lays them out); index points go at
        // entry records.
        let (start, seq, interval) = (w.end, w.next_seq, self.cfg.index_interval);
        let split = commit.map_or(0, |(c, _)| (c - first) as usize);
        let mut points = Vec::new();
        let mut since = w.since_index;
        let mut prev = w.durable.last;
        let mut number = first;
        let batch = record::encode_batch(
            seq,
            entries.map(|e| (e.offset, &e.payload[..])),
            commit.map(|(c, last)| (split, c, last)),
            |pos, len, offset| {
                if since >= interval {
                    points.push(IndexPoint {
                        seq: number,
                        pos: start + pos as u64,
                        prev,
                    });
                    since = 0;
                }
                since += len as u64;
                prev = offset;
                number += 1;
            },
        );
        let res = file
            .file
            .write_all_at(&batch.bytes, start)
            .map_err(Error::io("write", &file.path))
            .and_then(|()| file.file.sync_data().map_err(Error::io("sync", &file.path)));
        if let Err(e) = res {
            warn!(shape = %crate::registry::display_id(&self.id), error = %e, "log write failed; writer poisoned");
            w.poisoned = true;
            return Err(e);
        }
        for p in points {
            file.push_index(p);
        }
        let batch_end = start + batch.bytes.len() as u64;
        w.end = batch_end;
        w.next_seq = seq + 1;
        w.since_index = since;
        if let Some(ce) = batch.commit_end {
            w.commit_end = start + ce as u64;
            w.commit_seq = seq;
        }
        w.durable.entries = first + n as u64;
        w.durable.last = prev;
        if let Some((c, last)) = commit {
            w.durable.committed = c;
            w.durable.last_committed = last;
        }
        // The batch is durable. The marker tells recovery so. It is not
        // synced itself (the next batch's sync, or the sync before a roll,
        // makes it durable; lost before that, it leaves the batch looking
        // like a torn one). If it cannot be written the batch still stands,
        // but the log is poisoned: `heal` cuts the file back to `batch_end`.
        match file
            .file
            .write_all_at(&record::synced_marker(seq), batch_end)
        {
            Ok(()) => w.end = batch_end + record::SYNCED_SIZE as u64,
            Err(e) => {
                warn!(shape = %crate::registry::display_id(&self.id), error = %e, "writing a synced marker failed; writer poisoned");
                w.poisoned = true;
            }
        }
        Ok(w.durable)
    }

    /// Clears a poisoned log so a new writer can continue: the bytes after
    /// the last batch known to be durable cannot be trusted after a failed
    /// write or sync (a failed fsync may drop dirty pages and report success
    /// later), so they are cut off and will be rewritten from memory by the
    /// writer. After a failed marker write that is the marker: `end` is the
    /// end of its (durable) batch, and the next batch keeps the next
    /// sequence number. No-op when the log is healthy.
    pub(crate) fn heal(&self) -> Result<Durable> {
        let mut w = self.state();
        if !w.poisoned {
            return Ok(w.durable);
        }
        let file = Arc::clone(self.files().last().expect("a log always has a file"));
        let _span = info_span!("heal", shape = %crate::registry::display_id(&self.id)).entered();
        file.file
            .set_len(w.end)
            .and_then(|()| file.file.sync_data())
            .map_err(Error::io("truncate", &file.path))?;
        file.truncate_index(w.end);
        w.poisoned = false;
        debug!(
            end = w.end,
            "poisoned log healed back to its last durable batch"
        );
        Ok(w.durable)
    }

    /// Truncates the uncommitted tail (entries after the last commit record)
    /// so a new writer continues after the last committed entry.
    pub(crate) fn discard_uncommitted(&self) -> Result<Durable> {
        let mut w = self.state();
        if w.durable.entries == w.durable.committed || w.poisoned {
            return Ok(w.durable);
        }
        let file = Arc::clone(self.files().last().expect("a log always has a file"));
        let _span =
            info_span!("discard_uncommitted", shape = %crate::registry::display_id(&self.id))
                .entered();
        let res = file
            .file
            .set_len(w.commit_end)
            .and_then(|()| file.file.sync_data())
            .map_err(Error::io("truncate", &file.path));
        if let Err(e) = res {
            w.poisoned = true;
            return Err(e);
        }
        debug!(
            dropped = w.durable.entries - w.durable.committed,
            "uncommitted tail discarded"
        );
        file.truncate_index(w.commit_end);
        w.end = w.commit_end;
        w.next_seq = w.commit_seq + 1;
        // The bytes counted since the last index point included the
        // discarded tail; restart the count so the next point lands after
        // every remaining one (all of which lie before `commit_end`).
        w.since_index = 0;
        w.durable.entries = w.durable.committed;
        w.durable.last = w.durable.last_committed;
        Ok(w.durable)
    }

    /// Removes the files all of whose entries have offsets `<= upto` (never
    /// the last file); returns how many. Safe while readers read and the
    /// writer writes:
    ///
    /// - files are unlisted first, so no read that starts later resolves
    ///   them; such a read that needs them gets [`Error::OffsetCollected`];
    /// - a read that resolved a file before it was unlisted holds its open
    ///   handle and finishes from it (positional reads on an open handle do
    ///   not need the directory entry), so it returns exactly the right data;
    /// - files are removed oldest first with a directory sync after each, so
    ///   a crash leaves a prefix removed, never a gap.
    pub(crate) fn collect_before(&self, upto: LogOffset) -> Result<usize> {
        // Serialise with the writer's rolls (which push files).
        let _w = self.state();
        let victims: Vec<Arc<LogFile>> = {
            let mut files = self.files_mut();
            let n = files.windows(2).take_while(|w| w[1].base <= upto).count();
            files.drain(..n).collect()
        };
        let _span = info_span!("collect", shape = %crate::registry::display_id(&self.id), files = victims.len()).entered();
        for v in &victims {
            self.fs
                .remove_file(&v.path)
                .map_err(Error::io("remove", &v.path))?;
            self.fs
                .sync_dir(&self.dir)
                .map_err(Error::io("sync directory", &self.dir))?;
        }
        if !victims.is_empty() {
            debug!(removed = victims.len(), "log files collected");
        }
        Ok(victims.len())
    }

    /// Appends to `out` the entries numbered below `limit` whose offsets lie
    /// in `(after, upto]`, in order. `limit` must not exceed the durable
    /// entry count.
    pub(crate) fn read(
        &self,
        after: LogOffset,
        upto: LogOffset,
        limit: u64,
        out: &mut Vec<Entry>,
    ) -> Result<()> {
        if limit == 0 || upto <= after {
            return Ok(());
        }
        let files: Vec<Arc<LogFile>> = {
            let files = self.files();
            let earliest = files.first().map_or(LogOffset::ZERO, |f| f.base);
            if after < earliest {
                return Err(Error::OffsetCollected { after, earliest });
            }
            let first = files.partition_point(|f| f.base <= after).saturating_sub(1);
            files[first..]
                .iter()
                .take_while(|f| f.start < limit)
                .cloned()
                .collect()
        };
        for (i, f) in files.iter().enumerate() {
            let end = files.get(i + 1).map_or(limit, |n| n.start.min(limit));
            let point = f.seek(after);
            let mut seq = point.seq;
            let mut cur = f.cursor(point.pos);
            while seq < end {
                match cur.next()? {
                    Next::Record(Record::Entry { offset, payload }, _) => {
                        if offset > upto {
                            return Ok(());
                        }
                        if offset > after {
                            out.push(Entry { offset, payload });
                        }
                        seq += 1;
                    }
                    Next::Record(
                        Record::Commit { .. } | Record::Batch { .. } | Record::Synced { .. },
                        _,
                    ) => {}
                    Next::End | Next::Bad(_) => {
                        return Err(Error::Corrupt {
                            path: f.path.clone(),
                            detail: format!(
                                "entry {seq} missing at byte {} (below the durable count {limit})",
                                cur.pos()
                            ),
                        })
                    }
                }
            }
        }
        Ok(())
    }
}
