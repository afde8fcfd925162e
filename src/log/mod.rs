//! A shape's on-disk log: a sequence of files of checksummed records.
//!
//! The writer appends batches ([`ShapeLog::append`]): a batch is written,
//! then synced, and only then counted as durable. Readers read committed
//! entries by position ([`ShapeLog::read`]) through a sparse in-memory index
//! that is rebuilt from the records on open, so there is no index file to
//! lose or corrupt. See docs/format.md for the bytes.
//!
//! A log holds no file descriptor of its own: every file is opened through
//! the store's descriptor cache ([`descriptors`]) for the time one read,
//! flush or recovery uses it.
//!
//! # Invariants
//!
//! - Files are named `<stem>.<start>.log` ([`catalog`]), where `<stem>` is
//!   the shape's file stem (never derived from the id's bytes) and `<start>`
//!   the entry number of the file's first entry, zero-padded to 20 digits.
//! - A new shape has no file: its first flush creates it, writing the
//!   header and the batch in one write and one sync; the directory entry
//!   becomes durable with a (grouped) directory sync ([`dir_sync`]) before
//!   the batch counts as durable ([`ShapeLog::dir_durable`]). A crash before
//!   that leaves no file, or a file whose header recovery discards, or a
//!   valid file holding only what was synced: never a half-created shape
//!   read as data.
//! - Within a batch, the commit record (if the batch commits anything) comes
//!   right after the last committed entry, so every record after the last
//!   commit record of the log is an uncommitted entry; discarding them is a
//!   truncation of the last file.
//! - A new file is started only when everything on disk is committed, so
//!   the uncommitted tail always lies in the last file.
//! - Collection removes a prefix of the files, oldest first; a read that
//!   starts below the earliest remaining offset is refused with
//!   [`Error::OffsetCollected`] instead of being answered with a gap.
//! - A failed write or sync poisons the log: nothing more is appended until
//!   the shape is recovered again, and the durable counts do not move.
//!
//! # The layer
//!
//! `log/` is the disk side: one shape's files, their records, recovery, the
//! catalog of stems, the descriptor cache and grouped directory syncs. It
//! may import only the shared vocabulary at the crate root (`entry`,
//! `durable`, `offset`, `error`, `id`, `sync`, `fs`): nothing of `shape/`
//! (the memory side), `store/` or the flush tracker. `tests/layering.rs`
//! checks this.

pub(crate) mod catalog;
mod ctx;
pub(crate) mod descriptors;
pub(crate) mod dir_sync;
mod file;
mod header;
pub(crate) mod record;
pub(crate) mod recovery;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{
    Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};

use bytes::Bytes;
use smallvec::SmallVec;
use tracing::{debug, info_span, warn};

use crate::durable::Durable;
use crate::entry::Entry;
use crate::id;
use crate::{Error, LogOffset, Result};
use catalog::Stem;
use descriptors::{Lease, Mode};
use dir_sync::Ticket;
use file::{IndexPoint, LogFile, Next};
use record::Record;

pub(crate) use catalog::Files;
pub(crate) use ctx::{LogConfig, LogCtx};
pub(crate) use header::{read_id, HeaderRead};

/// What an append wrote: what is durable now, once `dir` (the directory
/// entry of a file the append created) is durable too.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Appended {
    pub(crate) durable: Durable,
    /// Wait for this with [`ShapeLog::dir_durable`] before counting the
    /// batch as durable.
    pub(crate) dir: Option<Ticket>,
}

/// Writer-side state; only the shape's writer (or its flusher job) locks it.
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
    /// The last file's directory entry is not known durable yet.
    dir: Option<Ticket>,
}

/// A log's files and write state: allocated by its first append (the
/// first flush of a new shape) or by its removal, so a live shape that has
/// not flushed yet costs only the few words of [`ShapeLog`].
#[derive(Debug)]
struct Disk {
    /// Oldest first. One inline: most shapes have one file.
    files: RwLock<SmallVec<[Arc<LogFile>; 1]>>,
    write: Mutex<WriteState>,
    /// Collected files (unlisted, oldest first) waiting for the reads that
    /// resolved them to end before they are deleted ([`ShapeLog::reap`]).
    doomed: Mutex<Vec<Arc<LogFile>>>,
    /// The shape was removed: the last owner of the log deletes its files
    /// (Relaxed: that owner's drop is ordered after the store by the
    /// reference count's release and acquire).
    removed: AtomicBool,
}

impl Disk {
    /// The disk state of a log whose last file (if any) ends at `end`, with
    /// `durable` on disk and batch number `next_seq` next.
    fn new(files: SmallVec<[Arc<LogFile>; 1]>, durable: Durable, end: u64, next_seq: u64) -> Self {
        Disk {
            files: RwLock::new(files),
            write: Mutex::new(WriteState {
                durable,
                end,
                commit_end: end,
                next_seq,
                commit_seq: next_seq.saturating_sub(1),
                since_index: 0,
                poisoned: false,
                dir: None,
            }),
            doomed: Mutex::default(),
            removed: AtomicBool::new(false),
        }
    }

    fn state(&self) -> MutexGuard<'_, WriteState> {
        self.write.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn files(&self) -> RwLockReadGuard<'_, SmallVec<[Arc<LogFile>; 1]>> {
        self.files.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn files_mut(&self) -> RwLockWriteGuard<'_, SmallVec<[Arc<LogFile>; 1]>> {
        self.files.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn doomed(&self) -> MutexGuard<'_, Vec<Arc<LogFile>>> {
        self.doomed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
pub(crate) struct ShapeLog {
    ctx: Arc<LogCtx>,
    /// The shape's id, shared with its flush-tracker entry.
    id: Arc<[u8]>,
    stem: Stem,
    /// None until the first append or the removal (see [`Disk`]); a log
    /// without one has no file and nothing durable.
    disk: OnceLock<Box<Disk>>,
}

// A live shape holds one: 56 bytes, an `Arc`'s 72, an 80-byte heap chunk
// (the files and write state took 232 bytes before the first flush).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<ShapeLog>() <= 56);

impl ShapeLog {
    /// The log of a new shape: no file until its first flush.
    pub(crate) fn new(ctx: Arc<LogCtx>, id: Arc<[u8]>, stem: Stem) -> ShapeLog {
        ctx.catalog.log_created(stem);
        ShapeLog {
            ctx,
            id,
            stem,
            disk: OnceLock::new(),
        }
    }

    /// The shape's id (shared with its flush-tracker entry).
    pub(crate) fn id(&self) -> &Arc<[u8]> {
        &self.id
    }

    /// A log recovered from `files`: everything on disk is committed, the
    /// last file ends at `end`, and its next batch is number `next_seq`.
    fn from_parts(
        ctx: Arc<LogCtx>,
        id: Arc<[u8]>,
        stem: Stem,
        files: Vec<Arc<LogFile>>,
        durable: Durable,
        end: u64,
        next_seq: u64,
    ) -> ShapeLog {
        let log = ShapeLog::new(ctx, id, stem);
        let files = files.into_iter().collect();
        let _ = log
            .disk
            .set(Box::new(Disk::new(files, durable, end, next_seq)));
        log
    }

    /// The disk state, allocated now if the log had none (writer paths).
    fn disk(&self) -> &Disk {
        self.disk
            .get_or_init(|| Box::new(Disk::new(SmallVec::new(), Durable::default(), 0, 1)))
    }

    /// The disk state, if the log has one (a log without has no file).
    fn on_disk(&self) -> Option<&Disk> {
        self.disk.get().map(|d| &**d)
    }

    /// What is durable now.
    pub(crate) fn durable(&self) -> Durable {
        self.on_disk()
            .map_or_else(Durable::default, |d| d.state().durable)
    }

    /// The starts of the log's files (for a closed shape to reopen from).
    pub(crate) fn files_now(&self) -> Files {
        let starts: Vec<u64> = self
            .on_disk()
            .map(|d| d.files().iter().map(|f| f.start).collect())
            .unwrap_or_default();
        Files::from_starts(&starts)
    }

    /// Makes the shape's removal durable (a tombstone, if it has files on
    /// disk) and marks the log removed: its files are deleted when its last
    /// owner (the shape's state, or a read in flight) lets it go. The
    /// caller holds the shape's writer claim.
    pub(crate) fn remove(&self) -> Result<()> {
        if self.has_file() {
            write_tombstone(&self.ctx, self.stem)?;
        }
        // Removing is rare: a log without disk state gets one to say so.
        let disk = self.disk();
        // Nothing is appended to a removed log.
        disk.state().poisoned = true;
        disk.removed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Closes the log's cached descriptors (they close once their leases
    /// end): the shape was closed and holds none while idle.
    pub(crate) fn forget_descriptors(&self) {
        let Some(disk) = self.on_disk() else { return };
        for f in disk.files().iter() {
            f.forget();
        }
    }

    /// Whether the log has a file yet (a new shape's has none until its
    /// first flush).
    pub(crate) fn has_file(&self) -> bool {
        self.on_disk().is_some_and(|d| !d.files().is_empty())
    }

    /// Whether the log is one file of at most `bytes` (cheap to recover
    /// again: a closed shape costs a few bytes, an open one hundreds).
    pub(crate) fn is_small(&self, bytes: u64) -> bool {
        let Some(disk) = self.on_disk() else {
            return true;
        };
        let w = disk.state();
        disk.files().len() <= 1 && w.end <= bytes && !w.poisoned && w.dir.is_none()
    }

    fn lease(&self, file: &LogFile) -> Result<Lease> {
        let path = self.ctx.path(self.stem, file.start);
        file.lease(&self.ctx.descriptors, &path, Mode::Open)
            .map_err(Error::io("open", &path))
    }

    /// Creates the file whose first entry is number `start`, replacing an
    /// orphan a failed roll of this shape left (no list refers to it). A
    /// file there that names another shape is never replaced: that would
    /// delete acknowledged data of the other shape if two shapes ever
    /// shared a stem (the catalog's invariant says they do not; this is
    /// the check that turns a broken invariant into an error, not a loss).
    fn create_file(&self, file: &LogFile) -> Result<Lease> {
        let path = self.ctx.path(self.stem, file.start);
        match file.lease(&self.ctx.descriptors, &path, Mode::Create) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if let HeaderRead::Ok(h, _, _) = read_id(&self.ctx, self.stem, file.start)? {
                    if h.id[..] != self.id[..] {
                        return Err(Error::Corrupt {
                            path,
                            detail: format!(
                                "creating a file of shape {} found one of shape {} under \
                                 its name; left untouched",
                                id::display(&self.id),
                                id::display(&h.id)
                            ),
                        });
                    }
                }
                self.ctx
                    .fs()
                    .remove_file(&path)
                    .map_err(Error::io("remove orphan", &path))?;
                file.lease(&self.ctx.descriptors, &path, Mode::Create)
            }
            r => r,
        }
        .map_err(Error::io("create", &path))
    }

    /// Appends `entries` (numbered from the log's current entry count) and,
    /// if `commit` is given, a commit record making entries
    /// `[0, commit.0)` committed, as one batch (`record::encode_batch`);
    /// then syncs, then writes the batch's `synced` marker (unsynced). On
    /// success every record of the batch is durable once [`Appended::dir`]
    /// is (see [`ShapeLog::dir_durable`]). On failure the log is poisoned; a
    /// failed marker write also poisons it, but the batch was synced, so it
    /// is acknowledged (`Ok`). A log with no file yet gets its first one,
    /// even for an empty batch (an explicit flush of a new shape makes the
    /// shape durable).
    pub(crate) fn append<'a>(
        &self,
        entries: impl ExactSizeIterator<Item = &'a Entry> + Clone,
        commit: Option<(u64, LogOffset)>,
    ) -> Result<Appended> {
        let disk = self.disk();
        let mut w = disk.state();
        if w.poisoned {
            return Err(Error::WriterClosed {
                shape: id::display(&self.id),
                reason: "an earlier write or sync of its log failed; reopen the shape to recover",
            });
        }
        let first = w.durable.entries;
        let n = entries.len();
        if let Some((c, _)) = commit {
            debug_assert!(c >= w.durable.committed && c >= first && c <= first + n as u64);
        }
        let empty = n == 0 && commit.is_none();
        // A new shape's first file, or a roll to a new file (only when
        // nothing on disk is uncommitted, so the uncommitted tail stays in
        // the last file).
        let last = disk.files().last().cloned();
        let roll = last.is_none()
            || (!empty
                && w.end >= self.ctx.cfg.file_bytes
                && w.durable.committed == w.durable.entries);
        if empty && !roll {
            return Ok(Appended {
                durable: w.durable,
                dir: w.dir,
            });
        }
        let mut bytes = Vec::new();
        let (file, at) = match (roll, last) {
            (false, Some(last)) => {
                let at = w.end;
                (last, at)
            }
            (_, full) => {
                if let Some(full) = full {
                    // The full file's last marker was written unsynced: sync
                    // it before the file stops being the last, where
                    // recovery treats any damage as corruption.
                    let path = self.ctx.path(self.stem, full.start);
                    self.lease(&full)
                        .and_then(|fd| fd.sync_data().map_err(Error::io("sync", &path)))
                        .inspect_err(|_| w.poisoned = true)?;
                }
                let header = record::Header {
                    start: first,
                    base: w.durable.last,
                    id: Bytes::copy_from_slice(&self.id),
                }
                .encode();
                bytes.extend_from_slice(&header);
                let file = Arc::new(LogFile::new(first, w.durable.last, header.len() as u64));
                (file, 0)
            }
        };
        // The batch's bytes (record.rs lays them out) after the header of a
        // new file; index points go at entry records.
        let seq = if roll { 1 } else { w.next_seq };
        let start = at + bytes.len() as u64;
        let interval = self.ctx.cfg.index_interval;
        let split = commit.map_or(0, |(c, _)| (c - first) as usize);
        let mut points = Vec::new();
        let mut since = if roll { 0 } else { w.since_index };
        let mut prev = w.durable.last;
        let mut number = first;
        let batch = (!empty).then(|| {
            record::encode_batch(
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
            )
        });
        if let Some(b) = &batch {
            bytes.extend_from_slice(&b.bytes);
        }
        let path = self.ctx.path(self.stem, file.start);
        let fd = if roll {
            self.create_file(&file)
        } else {
            self.lease(&file)
        };
        let res = fd.and_then(|fd| {
            fd.write_all_at(&bytes, at)
                .map_err(Error::io("write", &path))?;
            fd.sync_data().map_err(Error::io("sync", &path))?;
            Ok(fd)
        });
        let fd = match res {
            Ok(fd) => fd,
            Err(e) => {
                warn!(shape = %id::display(&self.id), error = %crate::error::Chain(&e), "log write failed; writer poisoned");
                w.poisoned = true;
                return Err(e);
            }
        };
        if roll {
            // Durable once the directory is: the caller waits for it.
            w.dir = Some(self.ctx.dir_sync.created());
            w.commit_end = file.data_start;
            w.commit_seq = 0;
            disk.files_mut().push(Arc::clone(&file));
        }
        for p in points {
            file.push_index(p);
        }
        let batch_end = at + bytes.len() as u64;
        w.end = batch_end;
        let Some(batch) = batch else {
            // A new file with no batch (a new shape's explicit flush).
            w.next_seq = 1;
            w.since_index = 0;
            return Ok(Appended {
                durable: w.durable,
                dir: w.dir,
            });
        };
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
        match fd.write_all_at(&record::synced_marker(seq), batch_end) {
            Ok(()) => w.end = batch_end + record::SYNCED_SIZE as u64,
            Err(e) => {
                warn!(shape = %id::display(&self.id), error = %crate::error::Chain(&e), "writing a synced marker failed; writer poisoned");
                w.poisoned = true;
            }
        }
        Ok(Appended {
            durable: w.durable,
            dir: w.dir,
        })
    }

    /// Returns once the directory entry of the log's last file is durable
    /// (the file an append created; grouped with other creations), and
    /// what is durable then. A failed directory sync poisons the log.
    pub(crate) fn dir_durable(&self, ticket: Ticket) -> Result<Durable> {
        let res = self.ctx.dir_sync.wait(self.ctx.fs(), ticket);
        let disk = self.disk();
        let mut w = disk.state();
        match res {
            Ok(()) => {
                if w.dir == Some(ticket) {
                    w.dir = None;
                }
                Ok(w.durable)
            }
            Err(e) => {
                w.poisoned = true;
                Err(e)
            }
        }
    }

    /// Clears a poisoned log so a new writer can continue: the bytes after
    /// the last batch known to be durable cannot be trusted after a failed
    /// write or sync (a failed fsync may drop dirty pages and report success
    /// later), so they are cut off and will be rewritten from memory by the
    /// writer; a directory entry whose sync failed is synced again. After a
    /// failed marker write that is the marker: `end` is the end of its
    /// (durable) batch, and the next batch keeps the next sequence number.
    /// No-op when the log is healthy.
    pub(crate) fn heal(&self) -> Result<Durable> {
        let Some(disk) = self.on_disk() else {
            return Ok(Durable::default());
        };
        let mut w = disk.state();
        if !w.poisoned {
            return Ok(w.durable);
        }
        let _span = info_span!("heal", shape = %id::display(&self.id)).entered();
        let Some(file) = disk.files().last().cloned() else {
            // The first file's creation failed: nothing is on disk.
            w.poisoned = false;
            return Ok(w.durable);
        };
        let path = self.ctx.path(self.stem, file.start);
        let fd = self.lease(&file)?;
        fd.set_len(w.end)
            .and_then(|()| fd.sync_data())
            .map_err(Error::io("truncate", &path))?;
        drop(fd);
        if w.dir.is_some() {
            self.ctx.sync_dir()?;
            w.dir = None;
        }
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
        let Some(disk) = self.on_disk() else {
            return Ok(Durable::default());
        };
        let mut w = disk.state();
        if w.durable.entries == w.durable.committed || w.poisoned {
            return Ok(w.durable);
        }
        let file = Arc::clone(disk.files().last().expect("a log with entries has a file"));
        let _span = info_span!("discard_uncommitted", shape = %id::display(&self.id)).entered();
        let path = self.ctx.path(self.stem, file.start);
        let res = self.lease(&file).and_then(|fd| {
            fd.set_len(w.commit_end)
                .and_then(|()| fd.sync_data())
                .map_err(Error::io("truncate", &path))
        });
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
    /// - a read that resolved a file before it was unlisted holds a
    ///   reference to it, and the file is deleted only once no read holds
    ///   one (the last such read deletes it as it ends, [`ShapeLog::reap`]),
    ///   so such a read finishes from the file, exactly;
    /// - files are deleted oldest first with a directory sync after each
    ///   (a file waits for its older siblings), so a crash leaves a prefix
    ///   deleted, never a gap; a crash before they are deleted leaves them
    ///   listed again after the restart (collection undone, never beyond
    ///   what the host allowed).
    pub(crate) fn collect_before(&self, upto: LogOffset) -> Result<usize> {
        let Some(disk) = self.on_disk() else {
            return Ok(0);
        };
        let n = {
            // Serialise with the writer's rolls (which push files).
            let _w = disk.state();
            let mut files = disk.files_mut();
            let n = files.windows(2).take_while(|w| w[1].base <= upto).count();
            let mut doomed = disk.doomed();
            doomed.extend(files.drain(..n));
            n
        };
        if n > 0 {
            debug!(shape = %id::display(&self.id), files = n, "log files collected");
        }
        self.reap()?;
        Ok(n)
    }

    /// Deletes collected files that no read holds any more, oldest first,
    /// stopping at the first one still held (see
    /// [`ShapeLog::collect_before`]).
    pub(crate) fn reap(&self) -> Result<()> {
        let Some(disk) = self.on_disk() else {
            return Ok(());
        };
        let mut doomed = disk.doomed();
        while let Some(f) = doomed.first() {
            if Arc::strong_count(f) > 1 {
                break;
            }
            let path = self.ctx.path(self.stem, f.start);
            f.forget();
            let _span = info_span!("reap", path = %path.display()).entered();
            self.ctx
                .fs()
                .remove_file(&path)
                .map_err(Error::io("remove", &path))?;
            self.ctx.sync_dir()?;
            doomed.remove(0);
        }
        Ok(())
    }

    /// Appends to `out` the entries numbered below `limit` whose offsets lie
    /// in `(after, upto]`, in order. `limit` must not exceed the durable
    /// entry count. Deletes the files a collection left to it (see
    /// [`ShapeLog::collect_before`]).
    pub(crate) fn read(
        &self,
        after: LogOffset,
        upto: LogOffset,
        limit: u64,
        out: &mut Vec<Entry>,
    ) -> Result<()> {
        let res = self.read_files(after, upto, limit, out);
        if self.on_disk().is_some_and(|d| !d.doomed().is_empty()) {
            if let Err(e) = self.reap() {
                warn!(error = %crate::error::Chain(&e), "deleting collected log files failed; the next collection retries");
            }
        }
        res
    }

    fn read_files(
        &self,
        after: LogOffset,
        upto: LogOffset,
        limit: u64,
        out: &mut Vec<Entry>,
    ) -> Result<()> {
        if limit == 0 || upto <= after {
            return Ok(());
        }
        let Some(disk) = self.on_disk() else {
            // No file: nothing is durable, and `limit` is 0.
            return Ok(());
        };
        let files: Vec<Arc<LogFile>> = {
            let files = disk.files();
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
            let path = self.ctx.path(self.stem, f.start);
            // One descriptor at a time (the cache's rule): this file's
            // lease is dropped before the next file's is taken.
            let fd = self.lease(f)?;
            let mut cur = file::Cursor::new(&*fd, &path, point.pos);
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
                            path: path.clone(),
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

/// Makes the removal of shape `stem` durable: creates its tombstone and
/// syncs the directory. From then on a restart completes the removal
/// ([`finish_removals`]) instead of finding the shape.
pub(crate) fn write_tombstone(ctx: &LogCtx, stem: Stem) -> Result<()> {
    let path = ctx.dir.join(stem.tombstone_name());
    let file = LogFile::new(0, LogOffset::ZERO, 0);
    match file.lease(&ctx.descriptors, &path, Mode::Create) {
        Ok(fd) => drop(fd),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("create", &path)(e)),
    }
    file.forget();
    ctx.sync_dir()
}

/// Deletes every file of `stem` (in `files`) and its tombstone, if any,
/// syncs the directory, and frees the stem for new shapes: the last step of
/// a removal, or the clearing away of a shape whose first flush never
/// completed. The stem is freed only once nothing of it can come back
/// after a crash (a tombstone left behind would delete a new shape's files
/// on the next open).
pub(crate) fn discard_stem(ctx: &LogCtx, stem: Stem, files: &Files) -> Result<()> {
    let fs = ctx.fs();
    let gone = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    for &start in files.starts() {
        let path = ctx.path(stem, start);
        gone(fs.remove_file(&path)).map_err(Error::io("remove", &path))?;
    }
    ctx.sync_dir()?;
    let tomb = ctx.dir.join(stem.tombstone_name());
    gone(fs.remove_file(&tomb)).map_err(Error::io("remove", &tomb))?;
    ctx.sync_dir()?;
    ctx.catalog.release(stem);
    Ok(())
}

/// Completes the removals a crash interrupted: the stems with a tombstone
/// (listed at open) lose every file.
pub(crate) fn finish_removals(ctx: &LogCtx, tombstones: &[Stem]) -> Result<()> {
    for &stem in tombstones {
        let files = ctx
            .catalog
            .take(stem)
            .unwrap_or(Files::List(Box::default()));
        warn!(%stem, "completing a removal that a crash interrupted");
        discard_stem(ctx, stem, &files)?;
    }
    Ok(())
}

impl Drop for ShapeLog {
    fn drop(&mut self) {
        let removed = self
            .on_disk()
            .is_some_and(|d| d.removed.load(Ordering::Relaxed));
        if !removed {
            // Nobody reads this log any more: delete what collection left.
            if let Err(e) = self.reap() {
                warn!(error = %crate::error::Chain(&e), "deleting collected log files failed; they come back after a restart");
            }
        }
        // Close the cached descriptors.
        let mut starts: Vec<u64> = Vec::new();
        if let Some(disk) = self.on_disk() {
            for f in disk.doomed().drain(..).chain(disk.files_mut().drain(..)) {
                f.forget();
                starts.push(f.start);
            }
        }
        starts.sort_unstable();
        starts.dedup();
        // The last log in memory of a removed shape deletes its files (a
        // read may hold an older log of the shape than its state's: the
        // catalog counts them).
        let Some(doomed) = self.ctx.catalog.log_dropped(self.stem, removed, &starts) else {
            return;
        };
        // No file: no tombstone either (`ShapeLog::remove`).
        let res = if doomed.is_empty() {
            self.ctx.catalog.release(self.stem);
            Ok(())
        } else {
            discard_stem(&self.ctx, self.stem, &Files::from_starts(&doomed))
        };
        match res {
            Ok(()) => debug!(shape = %id::display(&self.id), "removed shape's files deleted"),
            Err(e) => {
                warn!(shape = %id::display(&self.id), error = %crate::error::Chain(&e), "deleting a removed shape's files failed; the next open completes it")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::RealFs;

    fn ctx(dir: &std::path::Path) -> Arc<LogCtx> {
        let cfg = LogConfig {
            file_bytes: 1 << 20,
            index_interval: 64,
        };
        Arc::new(LogCtx::new(dir.to_path_buf(), cfg, Arc::new(RealFs), 8))
    }

    #[test]
    fn a_new_log_has_no_disk_state_until_its_first_append() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = ctx(dir.path());
        let stem = ctx.catalog.allocate(catalog::fnv1a(b"s"));
        let log = ShapeLog::new(Arc::clone(&ctx), Arc::from(&b"s"[..]), stem);
        // Every reader-side and recovery-side question is answered
        // without allocating the disk state.
        assert_eq!(log.durable().entries, 0);
        assert_eq!(log.heal().expect("heal").entries, 0);
        assert_eq!(log.discard_uncommitted().expect("discard").entries, 0);
        assert!(!log.has_file() && log.is_small(0));
        assert_eq!(log.files_now(), Files::from_starts(&[]));
        assert_eq!(
            log.collect_before(LogOffset::new(9, 0)).expect("collect"),
            0
        );
        let mut out = Vec::new();
        log.read(LogOffset::ZERO, LogOffset::new(9, 0), 0, &mut out)
            .expect("read");
        log.forget_descriptors();
        assert!(
            log.on_disk().is_none(),
            "a question allocated the disk state"
        );

        let e = Entry::new(LogOffset::new(1, 0), "x");
        let appended = log
            .append(std::iter::once(&e), Some((1, e.offset)))
            .expect("append");
        let ticket = appended.dir.expect("a new file waits for its directory");
        assert_eq!(log.dir_durable(ticket).expect("dir").committed, 1);
        assert!(log.on_disk().is_some() && log.has_file());
        log.read(LogOffset::ZERO, LogOffset::new(9, 0), 1, &mut out)
            .expect("read");
        assert_eq!(out, vec![e]);
    }

    #[test]
    fn a_removed_log_without_files_says_so_to_the_catalog() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = ctx(dir.path());
        let hash = catalog::fnv1a(b"s");
        let stem = ctx.catalog.allocate(hash);
        let log = ShapeLog::new(Arc::clone(&ctx), Arc::from(&b"s"[..]), stem);
        log.remove().expect("remove");
        let e = Entry::new(LogOffset::new(1, 0), "x");
        assert!(log.append(std::iter::once(&e), None).is_err());
        drop(log);
        // The stem was released with its last log: allocated again.
        assert_eq!(ctx.catalog.allocate(hash), stem);
    }
}
