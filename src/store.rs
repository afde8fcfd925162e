//! The store: opens a directory, finds its shapes, and hands out writers,
//! handles and reads.
//!
//! # Shape ids and file names
//!
//! Shape ids are untrusted bytes (any length up to
//! [`MAX_ID`](crate::MAX_ID), `/`, `..`, NUL, non-UTF-8). They never become
//! part of a path: a shape's files are named by a *stem*
//! `<fnv-1a-64 hex>-<n>`, with `n` the smallest number no other shape uses,
//! and the id itself is stored in every file header. Two ids with the same
//! hash get different stems.
//!
//! # Many shapes
//!
//! Opening lists the directory and reads no file ([`log::catalog`]); a
//! shape is found by its id the first time someone asks for it (the header
//! of each listed file with the id's hash is read: almost always one), and
//! recovered the first time it is read or written (`slot.rs`). Files are
//! opened through one bounded descriptor cache
//! ([`Config::max_open_files`]). A new shape creates no file until its
//! first flush.
//!
//! # Layout
//!
//! `<dir>/shapes/<stem>.<start>.log`, and `<dir>/LOCK`, locked while the
//! store lives so that one directory has one store at a time (see
//! docs/format.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::info;

use crate::buffer::Reclaim;
use crate::flush_tracker::FlushTracker;
use crate::fs::{Fs, RealFs};
use crate::id;
use crate::lazy::Held;
use crate::log::catalog::{fnv1a, Listing};
use crate::log::{self, Files, HeaderRead, LogConfig, LogCtx};
use crate::reader::{self, ReadOutcome, Visit, VisitOutcome};
use crate::registry::{share, Registry};
use crate::segment::Entry;
use crate::slot::{Closed, Env, Idle, Open, Quarantine, Slot};
use crate::sync::{Epoch, Guard};
use crate::wait::{self, WaitOutcome, Waiters, Watch};
use crate::wake::WakeService;
use crate::writer::ShapeWriter;
use crate::{Error, LogOffset, Result};

/// Store settings. `Config::default()` is what production should start from.
///
/// ```
/// use std::time::Duration;
/// let cfg = shapebuf::Config { flush_bytes: 1 << 20, ..Default::default() };
/// assert_eq!(cfg.flush_interval, Duration::from_secs(1));
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    /// A writer hands a flush batch to the store's flusher threads when this
    /// many bytes are pending (default 64 KiB; at most 4 GiB); see
    /// [`Config::flush_threads`].
    pub flush_bytes: usize,
    /// Back-pressure: while a writer's flush batch is being written,
    /// `append` goes on until this many more bytes are pending, then waits
    /// for the batch (default 1 MiB, at least `flush_bytes`, at most 4 GiB). The next
    /// batch takes everything pending, so a writer that outruns its disk
    /// gets fewer, bigger syncs (group commit) and waits once per batch,
    /// not once per `flush_bytes`; this bounds its unflushed memory to
    /// about twice this. A writer that does not outrun its disk never
    /// gets near it: it hands over a batch every `flush_bytes`.
    pub max_pending_bytes: usize,
    /// [`ShapeWriter::tick`] flushes pending data this long after the last
    /// flush (default 1 s).
    pub flush_interval: Duration,
    /// Entries a fresh in-memory segment has room for before it grows
    /// (default 7). Memory comes in chunks that double from 1 entry slot
    /// (48 B, allocated at the first append) up to 64 slots (3 KiB), so
    /// this rounds up to whole chunks; a segment grows by adding chunks
    /// (its directory of chunks doubles, no entry is copied). The default
    /// is the chunks of 1, 2 and 4 slots, whose directory (3 pointers) is
    /// the smallest heap block: a shape holding a few entries pays for no
    /// more, and a busy one grows its segment a few times per flush (a
    /// trim sizes the next segment to what it keeps).
    pub segment_capacity: usize,
    /// After a flush, keep the newest durable entries in memory while their
    /// payloads plus about 48 bytes of slot each add up to at most this many
    /// bytes (default 16 KiB; 0 keeps none). Readers tailing a shape then
    /// read its last entries from memory instead of from disk. The cost is
    /// at most this much memory per shape that has flushed, plus the rest
    /// of the chunk the oldest kept entry sits in (a chunk whose trimmed
    /// part holds more than this is copied rather than kept).
    pub retain_bytes: usize,
    /// One sparse index point per this many bytes of log (default 10 MiB).
    pub index_interval: u64,
    /// Start a new log file once the current one reaches this size
    /// (default 64 MiB).
    pub file_bytes: u64,
    /// Threads per store that write and sync flush batches off the writers'
    /// threads (default 2; started when first needed). With 0, a batch is
    /// written on the writer's thread when it is handed over, as an explicit
    /// [`ShapeWriter::flush`] is: the order of file operations is then
    /// deterministic (the crash-point tests rely on it).
    pub flush_threads: usize,
    /// The largest payload `append` accepts (default 16 MiB, at most
    /// [`MAX_PAYLOAD`](crate::MAX_PAYLOAD)).
    pub max_payload: usize,
    /// The most log files the store keeps open at once (default 512, at
    /// least 1): every read, flush and recovery opens its file through one
    /// cache of this many descriptors, evicting the least recently used
    /// one that nobody is using, so any number of shapes runs under a
    /// descriptor limit (`ulimit -n`) above this plus a few (the `LOCK`
    /// file, one directory per flusher thread syncing it). A file evicted
    /// while a read or flush uses it stays open until that use ends; when
    /// all are in use, an open waits for one to be let go.
    pub max_open_files: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            flush_bytes: 64 << 10,
            max_pending_bytes: 1 << 20,
            flush_interval: Duration::from_secs(1),
            segment_capacity: 7,
            retain_bytes: 16 << 10,
            index_interval: 10 << 20,
            file_bytes: 64 << 20,
            max_payload: 16 << 20,
            flush_threads: crate::flusher::THREADS,
            max_open_files: 512,
        }
    }
}

pub(crate) struct Inner {
    /// The directory's `LOCK`, held while the store lives (writers and
    /// handles keep `Inner` alive, so the lock outlives the `Store` value
    /// while any of them does).
    _lock: Box<dyn std::fmt::Debug + Send + Sync>,
    pub(crate) config: Config,
    registry: Registry,
    /// The log context (directory, catalog, descriptors), the epoch domain
    /// and the retired-bytes count every shape's state is built with.
    pub(crate) env: Env,
    pub(crate) tracker: FlushTracker,
    /// Live tail: the waker thread (spawned by the first waiter; joined
    /// when the last owner of the store is gone).
    pub(crate) wake: WakeService,
    /// Writes and syncs writers' flush batches off their threads.
    pub(crate) flusher: crate::flusher::Flusher,
    /// Shapes opened by reads and kept open, boundedly.
    idle: Idle,
    /// When the store opened: writers keep their times as nanoseconds
    /// since ([`Inner::clock`]).
    started: Instant,
}

impl Inner {
    /// Nanoseconds since the store opened (saturating).
    pub(crate) fn clock(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A directory of shape logs with their in-memory buffers.
///
/// Cheap to clone (shared); `Send + Sync`.
///
/// ```
/// # fn main() -> shapebuf::Result<()> {
/// use shapebuf::{LogOffset, Store};
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// let mut w = store.writer("shape-1")?;
/// w.append(LogOffset::new(1, 0), "insert")?;
/// w.commit()?;
/// let read = store.read("shape-1", LogOffset::ZERO, LogOffset::MAX)?;
/// assert_eq!(&read.entries[0].payload[..], b"insert");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.env.log.dir)
            .field("shapes", &self.shape_count())
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir` with default settings.
    /// Lists the directory and reads no log: each shape is recovered when
    /// first used.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(dir, Config::default())
    }

    /// Opens the store in `dir` with `config`.
    pub fn open_with(dir: impl AsRef<Path>, config: Config) -> Result<Store> {
        Store::open_with_fs(dir, config, Arc::new(RealFs))
    }

    /// Opens the store in `dir` with `config`, doing all file I/O through
    /// `fs` (for fault injection and simulated power loss).
    pub fn open_with_fs(
        dir: impl AsRef<Path>,
        mut config: Config,
        fs: Arc<dyn Fs>,
    ) -> Result<Store> {
        config.max_payload = config.max_payload.min(log::record::MAX_PAYLOAD);
        config.segment_capacity = config.segment_capacity.max(1);
        // A writer counts pending bytes in a `u32` (saturating).
        config.flush_bytes = config.flush_bytes.min(u32::MAX as usize);
        config.max_pending_bytes = config
            .max_pending_bytes
            .max(config.flush_bytes)
            .min(u32::MAX as usize);
        config.max_open_files = config.max_open_files.max(1);
        let top = dir.as_ref();
        let dir = top.join("shapes");
        fs.create_dir_all(&dir)
            .map_err(Error::io("create directory", &dir))?;
        // One store per directory: a second one (another process, or a
        // restart whose predecessor still runs) would interleave its writes
        // with ours in the same logs.
        let lock_path = top.join("LOCK");
        let lock = fs.lock(&lock_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => Error::Locked(top.to_path_buf()),
            _ => Error::io("lock", &lock_path)(e),
        })?;
        if let Some(parent) = dir.parent() {
            fs.sync_dir(parent)
                .map_err(Error::io("sync directory", parent))?;
        }
        let lcfg = LogConfig {
            file_bytes: config.file_bytes,
            index_interval: config.index_interval,
        };
        let ctx = Arc::new(LogCtx::new(dir, lcfg, fs, config.max_open_files));
        let mut listing = Listing::default();
        ctx.fs()
            .list(&ctx.dir, &mut |name| {
                ctx.catalog.add_listed(name, &mut listing)
            })
            .map_err(Error::io("list", &ctx.dir))?;
        log::finish_removals(&ctx, &listing.tombstones)?;
        let flush_threads = config.flush_threads;
        let epoch = Epoch::new();
        let inner = Arc::new(Inner {
            _lock: lock,
            config,
            registry: Registry::new(),
            flusher: crate::flusher::Flusher::new(flush_threads, epoch.clone()),
            env: Env {
                log: ctx,
                reclaim: Reclaim::new(epoch),
                deferred: Arc::default(),
            },
            tracker: FlushTracker::new(),
            wake: WakeService::new(),
            idle: Idle::default(),
            started: Instant::now(),
        });
        info!(dir = %inner.env.log.dir.display(), shapes = listing.stems, "store opened");
        Ok(Store { inner })
    }

    /// The writer of shape `id`, creating the shape if it is new (no file
    /// until its first flush). A shape has at most one live writer: a second
    /// call while the first lives is [`Error::WriterActive`]. A writer of a
    /// terminated shape continues its log after the last committed entry. A
    /// shape whose files failed verification answers
    /// [`Error::Corrupt`] (see [`Store::corrupt_shapes`]).
    pub fn writer(&self, id: impl AsRef<[u8]>) -> Result<ShapeWriter> {
        let id = id.as_ref();
        id::check(id)?;
        let slot = self.inner.slot(id, true)?;
        let env = &self.inner.env;
        loop {
            slot.open(env)?;
            let guard = env.epoch().pin();
            let Some(open) = slot.get_arc(&guard) else {
                continue;
            };
            drop(guard);
            let token = slot
                .claim(&open)
                .ok_or_else(|| Error::WriterActive(id::display(id)))?;
            // Still the published state? A terminate (or an idle closer)
            // that closed it held the claim until after it did, so after
            // our claim this tells.
            if !slot.is_current(&open, &env.epoch().pin()) {
                continue;
            }
            return ShapeWriter::open(Arc::clone(&self.inner), slot, token);
        }
    }

    /// A handle on shape `id` that reads without a registry lookup and stays
    /// valid across terminate and restart of the shape.
    pub fn handle(&self, id: impl AsRef<[u8]>) -> Result<ShapeHandle> {
        let slot = self.inner.slot(id.as_ref(), false)?;
        Ok(ShapeHandle {
            inner: Arc::clone(&self.inner),
            slot,
        })
    }

    /// The committed entries of shape `id` with offsets in `(after, upto]`,
    /// in order. An unknown shape is [`Error::UnknownShape`].
    pub fn read(
        &self,
        id: impl AsRef<[u8]>,
        after: LogOffset,
        upto: LogOffset,
    ) -> Result<ReadOutcome> {
        let id = id.as_ref();
        if upto <= after {
            // Still an error for an unknown shape.
            self.inner.slot(id, false)?;
            return Ok(ReadOutcome::default());
        }
        let guard = self.inner.env.epoch().pin();
        let pinned = self
            .inner
            .registry
            .find(id, &guard)
            .and_then(|slot| slot.get(&guard))
            .map(|open| Pinned::read(open, after, upto, &guard));
        drop(guard);
        if let Some(p) = pinned {
            return p.finish(after, upto);
        }
        let slot = self.inner.slot(id, false)?;
        self.inner.read_slot(&slot, after, upto)
    }

    /// Blocks until shape `id` has a committed entry past `after`, its
    /// writer goes away, or `timeout` passes: [`ShapeHandle::wait_for`]
    /// after a lookup. An unknown shape is [`Error::UnknownShape`].
    ///
    /// ```
    /// # fn main() -> shapebuf::Result<()> {
    /// use std::time::Duration;
    /// use shapebuf::{LogOffset, Store, WaitOutcome};
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path())?;
    /// let mut w = store.writer("s")?;
    /// let out = store.wait_for("s", LogOffset::ZERO, Duration::from_millis(1))?;
    /// assert_eq!(out, WaitOutcome::TimedOut);
    /// w.append(LogOffset::new(1, 0), "x")?;
    /// w.commit()?;
    /// let out = store.wait_for("s", LogOffset::ZERO, Duration::from_secs(5))?;
    /// assert_eq!(out, WaitOutcome::Committed(LogOffset::new(1, 0)));
    /// # Ok(()) }
    /// ```
    pub fn wait_for(
        &self,
        id: impl AsRef<[u8]>,
        after: LogOffset,
        timeout: Duration,
    ) -> Result<WaitOutcome> {
        Ok(self.handle(id)?.wait_for(after, timeout))
    }

    /// The async form of [`Store::wait_for`] (feature `tokio`; the timeout
    /// runs on tokio's timer). The lookup happens at the call; the future
    /// is `'static`, `Send` and cancel-safe.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shapebuf::Result<()> {
    /// use std::time::Duration;
    /// use shapebuf::{LogOffset, Store, WaitOutcome};
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path())?;
    /// let mut w = store.writer("s")?;
    /// w.append(LogOffset::new(1, 0), "x")?;
    /// w.commit()?;
    /// let out = store.wait_for_async("s", LogOffset::ZERO, Duration::from_secs(5)).await?;
    /// assert_eq!(out, WaitOutcome::Committed(LogOffset::new(1, 0)));
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tokio")]
    pub fn wait_for_async(
        &self,
        id: impl AsRef<[u8]>,
        after: LogOffset,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<WaitOutcome>> + Send + 'static {
        let wait = self.handle(id).map(|h| h.wait_for_async(after, timeout));
        async move { Ok(wait?.await) }
    }

    /// Whether shape `id` is known (created, or on disk). May read the
    /// header of the shape's first file, the first time.
    pub fn contains(&self, id: impl AsRef<[u8]>) -> bool {
        self.inner.slot(id.as_ref(), false).is_ok()
    }

    /// The number of known shapes (found on disk at open, or created since),
    /// without reading any file.
    pub fn shape_count(&self) -> usize {
        self.inner.registry.len() + self.inner.env.log.catalog.unresolved()
    }

    /// The ids of every known shape. Reads the header of every shape's
    /// first file not read yet: one small read per shape found on disk.
    pub fn shapes(&self) -> Result<Vec<Bytes>> {
        let ctx = &self.inner.env.log;
        for (stem, files) in ctx.catalog.all_unresolved() {
            self.inner.resolve(stem, &files, None)?;
        }
        let mut v = Vec::new();
        let guard = self.inner.env.epoch().pin();
        self.inner
            .registry
            .for_each(&guard, |s| v.push(Bytes::copy_from_slice(&s.id)));
        Ok(v)
    }

    /// The shapes found quarantined so far: their files failed verification
    /// beyond what tail repair may fix (damage to acknowledged data), so
    /// they answer [`Error::Corrupt`] while every other shape serves on;
    /// [`Store::remove`] resets one. A shape is verified when first used
    /// (reads and writers), so a store opened just now lists none:
    /// [`Store::verify_all`] uses every shape first.
    pub fn corrupt_shapes(&self) -> Vec<(Bytes, Error)> {
        let mut v = Vec::new();
        let guard = self.inner.env.epoch().pin();
        self.inner.registry.for_each(&guard, |s| {
            if let Some(e) = s.quarantined() {
                v.push((Bytes::copy_from_slice(&s.id), e));
            }
        });
        v
    }

    /// Recovers every shape not recovered yet (reading every log: what
    /// opening a store did before recovery became lazy), so that
    /// [`Store::corrupt_shapes`] lists every damaged shape whose id can be
    /// read. Returns how many shapes are damaged: those, and those whose
    /// first file's header (where the id is stored) is damaged, which are
    /// named by path in a `tracing` error each (looking one up by its id
    /// quarantines it under that id; [`Store::remove`] of the id resets
    /// it). I/O errors other than damage are returned.
    pub fn verify_all(&self) -> Result<usize> {
        let env = &self.inner.env;
        // A stem whose first header is damaged has no readable id: it is
        // quarantined under an id when that id is looked up (its hash
        // matches the stem's); here it is counted and named by its path.
        let mut unreadable = 0;
        for (stem, files) in env.log.catalog.all_unresolved() {
            let mut damaged = None;
            // An empty id is never a shape's (`id::check`): no match, the
            // damage recorded.
            self.inner
                .resolve(stem, &files, Some((&[], &mut damaged)))?;
            if let Some((_, _, path, detail)) = damaged {
                unreadable += 1;
                tracing::error!(
                    path = %path.display(),
                    %detail,
                    "a shape's files are damaged where its id is stored; looking it up by id \
                     quarantines it (Store::remove of that id resets it)"
                );
            }
        }
        let mut slots = Vec::new();
        let guard = env.epoch().pin();
        self.inner
            .registry
            .for_each(&guard, |s| slots.push(share(s)));
        drop(guard);
        for s in &slots {
            match self.inner.open_for_read(s) {
                Ok(()) | Err(Error::Corrupt { .. } | Error::ShapeRemoved(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.corrupt_shapes().len() + unreadable)
    }

    /// Removes shape `id`: unpublishes it, makes the removal durable (a
    /// tombstone file, if the shape has files), and deletes its files once
    /// the reads in flight that use them are done (at once, usually).
    ///
    /// Refuses with [`Error::WriterActive`] while a live writer owns the
    /// shape (its owner removes it with [`ShapeWriter::remove`]); a shape
    /// whose writer was dropped without terminating is removed with what
    /// that writer committed and did not flush. Works on a quarantined
    /// shape (that is how a host resets one).
    ///
    /// Reads already under way finish exactly (the epoch keeps the memory
    /// they use, and a file is deleted only after its last reader is done);
    /// later reads, and every use of a [`ShapeHandle`] of the shape, get
    /// [`Error::ShapeRemoved`]; waits end with [`WaitOutcome::Removed`]. A
    /// new shape with the same id can be created at once and starts empty;
    /// handles of the old one never see its data. A crash at any point
    /// leaves, after a restart, either the whole shape or none of it.
    ///
    /// ```
    /// # fn main() -> shapebuf::Result<()> {
    /// use shapebuf::{Error, LogOffset, Store};
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path())?;
    /// let mut w = store.writer("s")?;
    /// w.append(LogOffset::new(1, 0), "old")?;
    /// w.commit()?;
    /// let h = store.handle("s")?;
    /// assert!(matches!(store.remove("s"), Err(Error::WriterActive(_))));
    /// w.terminate()?;
    /// assert!(store.remove("s")?.had_files);
    /// assert!(matches!(h.read(LogOffset::ZERO, LogOffset::MAX), Err(Error::ShapeRemoved(_))));
    /// assert!(matches!(store.read("s", LogOffset::ZERO, LogOffset::MAX), Err(Error::UnknownShape(_))));
    /// let mut w = store.writer("s")?; // a new shape, empty
    /// w.append(LogOffset::new(1, 0), "new")?;
    /// w.commit()?;
    /// assert_eq!(&store.read("s", LogOffset::ZERO, LogOffset::MAX)?.entries[0].payload[..], b"new");
    /// # Ok(()) }
    /// ```
    pub fn remove(&self, id: impl AsRef<[u8]>) -> Result<Removed> {
        let slot = self.inner.slot(id.as_ref(), false)?;
        self.inner.remove(&slot, None)
    }

    /// Log files open now (at most [`Config::max_open_files`]).
    pub fn open_files(&self) -> usize {
        self.inner.env.log.descriptors.open_now()
    }

    /// The most log files that were open at once since the store opened.
    pub fn peak_open_files(&self) -> usize {
        self.inner.env.log.descriptors.peak()
    }

    /// Bytes of retired segments that the epoch collector has not freed yet:
    /// they wait for readers pinned before their retirement to unpin, for
    /// their writer thread to hand them over (per 64 KiB retired, or on
    /// [`ShapeWriter::tick`]), and for a collection (each thread runs one
    /// every 128 pins; [`Store::collect`] runs one now).
    pub fn retired_bytes(&self) -> u64 {
        self.inner.env.reclaim.retired.get()
    }

    /// Runs pending epoch reclamation on this thread (it also runs on its
    /// own as threads pin), after handing over the segments this thread
    /// retired (writers hand them over per 64 KiB, and on
    /// [`ShapeWriter::tick`]).
    pub fn collect(&self) {
        let epoch = &self.inner.env.epoch();
        let guard = epoch.pin();
        epoch.hand_off(&guard);
        guard.flush();
    }

    /// The store's flush tracker: its writers report flushes, terminates and
    /// drops to it; the host feeds it its transaction commits and reads the
    /// global durable offset from it. Call each touched writer's
    /// [`commit`](ShapeWriter::commit) before the tracker's commit; the
    /// offset moves once the writers' commits are flushed.
    ///
    /// ```
    /// # fn main() -> shapebuf::Result<()> {
    /// use shapebuf::{LogOffset, Store};
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path())?;
    /// let tracker = store.flush_tracker();
    /// let mut w = store.writer("s")?;
    /// let mut tx = tracker.transaction();
    /// w.append(LogOffset::new(1, 3), "x")?;
    /// tx.received("s", LogOffset::new(1, 3));
    /// w.commit()?;
    /// tx.commit(LogOffset::new(1, 8))?;
    /// assert_eq!(tracker.global(), LogOffset::ZERO);
    /// w.flush()?;
    /// assert_eq!(tracker.global(), LogOffset::new(1, 8));
    /// # Ok(()) }
    /// ```
    pub fn flush_tracker(&self) -> &FlushTracker {
        &self.inner.tracker
    }

    /// The directory the shape logs live in.
    pub fn dir(&self) -> &Path {
        &self.inner.env.log.dir
    }
}

/// A read of an open shape whose memory part was taken under the pin; the
/// disk part (if any) runs after it, in [`Pinned::finish`].
struct Pinned {
    plan: reader::Plan,
    mem: Vec<Entry>,
    /// The shape's state, when the plan reads from its log (a reference,
    /// so that it outlives the pin).
    disk: Option<Arc<Open>>,
}

impl Pinned {
    fn read(open: Held<'_, Open>, after: LogOffset, upto: LogOffset, guard: &Guard) -> Self {
        let (plan, mem) = reader::memory(&open.buffer, after, upto, guard);
        let disk = plan.needs_disk().then(|| open.to_arc());
        Pinned { plan, mem, disk }
    }

    fn finish(self, after: LogOffset, upto: LogOffset) -> Result<ReadOutcome> {
        match &self.disk {
            Some(open) => reader::finish(&open.log, after, upto, self.plan, self.mem),
            None => reader::finish(&NoDisk, after, upto, self.plan, self.mem),
        }
    }
}

/// The disk of a read planned without one.
struct NoDisk;

impl reader::Disk for NoDisk {
    fn read(&self, _: LogOffset, _: LogOffset, _: u64, _: &mut Vec<Entry>) -> Result<()> {
        unreachable!("the plan reads nothing from disk")
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Nobody can reach the store any more: run what the collector still
        // holds of it (descriptors of closed shapes, removed shapes' files).
        self.env.drain();
    }
}

/// What [`Store::remove`] (or [`ShapeWriter::remove`]) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Removed {
    /// The shape had files on disk: its removal was made durable (a
    /// tombstone) before the call returned, and the files are deleted once
    /// the reads in flight that use them are done.
    pub had_files: bool,
}

impl Inner {
    /// Removes `slot` (see [`Store::remove`]). `claimed` is the caller's own
    /// writer claim on the shape's open state ([`ShapeWriter::remove`]);
    /// without it the removal takes the claim itself, and refuses if a
    /// writer holds it.
    pub(crate) fn remove(
        &self,
        slot: &Arc<Slot>,
        claimed: Option<&Arc<crate::slot::Open>>,
    ) -> Result<Removed> {
        let env = &self.env;
        let _span = tracing::info_span!("remove", shape = %id::display(&slot.id)).entered();
        loop {
            let open = claimed
                .cloned()
                .or_else(|| slot.get_arc(&env.epoch().pin()));
            let Some(open) = open else {
                // Closed: remove it under its gate, so that nobody opens it
                // meanwhile; the tombstone first, so that a crash leaves the
                // whole shape or none of it.
                let files = slot.remove_closed(|files| match files {
                    Some(_) => log::write_tombstone(&env.log, slot.stem()),
                    None => Ok(()),
                })?;
                let Some(files) = files else { continue };
                self.unpublish(slot);
                // Delete the files now, unless a read still holds a log of
                // the shape from before it closed: then its drop does.
                let starts = files.as_ref().map_or(&[][..], Files::starts);
                if !env.log.catalog.defer_removal(slot.stem(), starts) {
                    match &files {
                        Some(files) => log::discard_stem(&env.log, slot.stem(), files)?,
                        None => env.log.catalog.release(slot.stem()),
                    }
                }
                tracing::debug!("removed");
                return Ok(Removed {
                    had_files: files.is_some(),
                });
            };
            // Open: hold its writer claim (ours, or the caller's), so that
            // no writer writes or closes it meanwhile.
            let _token = match claimed {
                Some(_) => None,
                None => {
                    let token = slot
                        .claim(&open)
                        .ok_or_else(|| Error::WriterActive(id::display(&slot.id)))?;
                    if !slot.is_current(&open, &env.epoch().pin()) {
                        continue;
                    }
                    Some(token)
                }
            };
            let had_files = open.log.has_file();
            open.log.remove()?;
            let removed = slot.remove_open(&open, &env.epoch().pin(), env);
            debug_assert!(removed, "the claimed state is the published one");
            self.unpublish(slot);
            drop(open);
            // The state's own reference goes with the epoch: once readers
            // that loaded it are done, the log's last owner deletes the
            // files (here, usually, or at the end of a read in flight).
            env.epoch().pin().flush();
            tracing::debug!("removed");
            return Ok(Removed { had_files });
        }
    }

    /// Takes a removed slot out of the registry and ends its waits.
    fn unpublish(&self, slot: &Slot) {
        self.registry.remove(slot, &self.env.epoch().pin());
        slot.waiters.close(crate::wait::Close::Removed, &self.wake);
    }

    /// The slot of shape `id`: from the registry, or found on disk (the
    /// first time: reading the header of each listed stem with the id's
    /// hash), or, with `create`, a new one (no I/O).
    pub(crate) fn slot(&self, id: &[u8], create: bool) -> Result<Arc<Slot>> {
        let epoch = &self.env.epoch();
        if let Some(s) = self.registry.find(id, &epoch.pin()) {
            return Ok(share(s));
        }
        let hash = fnv1a(id);
        let mut damaged = None;
        for (stem, files) in self.env.log.catalog.candidates(hash) {
            if let Some(slot) = self.resolve(stem, &files, Some((id, &mut damaged)))? {
                return Ok(slot);
            }
        }
        let guard = epoch.pin();
        if let Some((stem, files, path, detail)) = damaged {
            // A listed stem with this id's hash whose header is damaged: the
            // id cannot be read back, but the hash says it is (almost
            // certainly) this shape. Quarantine it under this id, so that
            // it answers `Corrupt` and can be removed.
            let mut slot = None;
            self.env.log.catalog.resolve_with(stem, || {
                slot = Some(self.registry.get_or_insert_with(id, &guard, || {
                    let q = Quarantine {
                        path,
                        detail,
                        files,
                    };
                    Ok::<_, Error>(Slot::quarantined_new(id, stem, q))
                }));
            });
            if let Some(slot) = slot {
                return slot;
            }
        }
        if !create {
            // A racing resolver may have registered it meanwhile.
            return match self.registry.find(id, &guard) {
                Some(s) => Ok(share(s)),
                None => Err(Error::UnknownShape(id::display(id))),
            };
        }
        // The stem is allocated outside the registry's lock (the lock order
        // is catalog, then registry), and given back if a racing creator
        // won.
        let catalog = &self.env.log.catalog;
        let stem = catalog.allocate(hash);
        let mut used = false;
        let slot = self.registry.get_or_insert_with(id, &guard, || {
            used = true;
            Ok::<_, Error>(Slot::new(id, stem, Closed::New))
        });
        if !used {
            catalog.release(stem);
        }
        slot
    }

    /// Learns the id of listed stem `stem` (whose files start at `files`)
    /// from its first file's header and registers it. With `wanted`, returns
    /// the slot if it is that id's, and records a damaged header in the
    /// second field (for the caller to quarantine if no stem matches).
    #[allow(clippy::type_complexity)]
    fn resolve(
        &self,
        stem: log::catalog::Stem,
        files: &Files,
        wanted: Option<(
            &[u8],
            &mut Option<(log::catalog::Stem, Files, PathBuf, String)>,
        )>,
    ) -> Result<Option<Arc<Slot>>> {
        let ctx = &self.env.log;
        let first = files.starts()[0];
        let header = match log::read_id(ctx, stem, first) {
            Ok(h) => h,
            // Removed meanwhile (a racing resolver and remover).
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        match header {
            HeaderRead::Ok(h, _, _) => {
                let guard = self.env.epoch().pin();
                let mut slot = None;
                ctx.catalog.resolve_with(stem, || {
                    slot = Some(self.registry.get_or_insert_with(&h.id, &guard, || {
                        Ok::<_, Error>(Slot::new(&h.id, stem, Closed::OnDisk(files.clone())))
                    }));
                });
                let slot = match slot {
                    Some(s) => s?,
                    // Resolved by someone else meanwhile.
                    None => match self.registry.find(&h.id, &guard) {
                        Some(s) => share(s),
                        None => return Ok(None),
                    },
                };
                Ok(wanted.and_then(|(id, _)| (*id == h.id[..]).then_some(slot)))
            }
            HeaderRead::Torn if files.starts().len() == 1 => {
                // A shape whose first flush never completed (nothing of it
                // was acknowledged): recovery clears it away, unless records
                // after the header show that the header was durable and is
                // damaged (then it is corrupt, and quarantined like any).
                match log::recover(ctx, stem, files.starts()) {
                    Ok(None) => {
                        ctx.catalog.release(stem);
                        Ok(None)
                    }
                    // The header reads whole now (it was being written):
                    // the stem is a shape's, never free it.
                    Ok(Some(_)) => self.resolve(stem, files, wanted),
                    Err(Error::Corrupt { path, detail }) => {
                        if let Some((_, damaged)) = wanted {
                            damaged.get_or_insert((stem, files.clone(), path, detail));
                        }
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            }
            HeaderRead::Torn | HeaderRead::Corrupt(_) => {
                let why = match header {
                    HeaderRead::Corrupt(why) => why,
                    _ => "torn header in a file that is not the last",
                };
                if let Some((_, damaged)) = wanted {
                    damaged.get_or_insert((
                        stem,
                        files.clone(),
                        ctx.path(stem, first),
                        format!("header: {why}"),
                    ));
                }
                Ok(None)
            }
        }
    }

    /// Reads `(after, upto]` of `slot`, opening (recovering) it first if it
    /// is closed.
    fn read_slot(
        &self,
        slot: &Arc<Slot>,
        after: LogOffset,
        upto: LogOffset,
    ) -> Result<ReadOutcome> {
        loop {
            let guard = self.env.epoch().pin();
            let pinned = slot
                .get(&guard)
                .map(|open| Pinned::read(open, after, upto, &guard));
            drop(guard);
            if let Some(p) = pinned {
                return p.finish(after, upto);
            }
            self.open_for_read(slot)?;
        }
    }

    /// Visits `(after, upto]` of `slot` (see [`ShapeHandle::visit`]).
    fn visit_slot(
        &self,
        slot: &Arc<Slot>,
        after: LogOffset,
        upto: LogOffset,
        mut f: impl FnMut(&Entry),
    ) -> Result<VisitOutcome> {
        loop {
            let guard = self.env.epoch().pin();
            if let Some(open) = slot.get(&guard) {
                return match reader::visit_memory(&open.buffer, after, upto, &guard, &mut f) {
                    Visit::Done(out) => Ok(out),
                    Visit::Disk(plan, mem) => {
                        let open = open.to_arc();
                        drop(guard);
                        reader::finish_visit(&open.log, after, upto, plan, mem, f)
                    }
                };
            }
            drop(guard);
            self.open_for_read(slot)?;
        }
    }

    /// Opens `slot` for a reader (recovering it if it is closed); a shape
    /// this opened is kept open boundedly ([`Idle`]).
    fn open_for_read(&self, slot: &Arc<Slot>) -> Result<()> {
        if slot.open(&self.env)? {
            self.idle.opened(slot, &self.env);
        }
        Ok(())
    }

    /// Runs `f` on `slot`'s open state under a pin, opening it for a reader
    /// first if needed.
    fn with_open<R>(
        &self,
        slot: &Arc<Slot>,
        f: impl FnOnce(Held<'_, Open>, &Guard) -> R,
    ) -> Result<R> {
        let mut f = Some(f);
        loop {
            let guard = self.env.epoch().pin();
            if let Some(open) = slot.get(&guard) {
                let f = f.take().expect("called once");
                return Ok(f(open, &guard));
            }
            drop(guard);
            self.open_for_read(slot)?;
        }
    }
}

/// A handle on one shape: reads without a registry lookup, valid across
/// terminate and restart of the shape.
///
/// ```
/// # fn main() -> shapebuf::Result<()> {
/// use shapebuf::{LogOffset, Store};
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// let mut w = store.writer("s")?;
/// let h = store.handle("s")?;
/// w.append(LogOffset::new(1, 0), "a")?;
/// w.commit()?;
/// w.terminate()?;
/// let mut w = store.writer("s")?; // restart
/// w.append(LogOffset::new(2, 0), "b")?;
/// w.commit()?;
/// assert_eq!(h.read(LogOffset::ZERO, LogOffset::MAX)?.entries.len(), 2);
/// assert_eq!(h.committed(), LogOffset::new(2, 0));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ShapeHandle {
    inner: Arc<Inner>,
    slot: Arc<Slot>,
}

impl Watch for ShapeHandle {
    fn waiters(&self) -> &Waiters {
        &self.slot.waiters
    }

    fn committed(&self) -> LogOffset {
        ShapeHandle::committed(self)
    }

    fn is_live(&self) -> bool {
        ShapeHandle::is_live(self)
    }

    fn is_removed(&self) -> bool {
        self.slot.is_removed()
    }

    fn wake_service(&self) -> &WakeService {
        &self.inner.wake
    }
}

impl std::fmt::Debug for ShapeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShapeHandle")
            .field("shape", &id::display(&self.slot.id))
            .finish()
    }
}

impl ShapeHandle {
    /// The shape's id.
    pub fn id(&self) -> &[u8] {
        &self.slot.id
    }

    /// The committed entries with offsets in `(after, upto]`, in order.
    pub fn read(&self, after: LogOffset, upto: LogOffset) -> Result<ReadOutcome> {
        self.inner.read_slot(&self.slot, after, upto)
    }

    /// Calls `f` on each committed entry with offset in `(after, upto]`, in
    /// order, lending in-memory entries without cloning them.
    ///
    /// # Contract
    ///
    /// For entries served from memory, `f` runs while this thread holds an
    /// epoch pin on the store: memory retired by any writer of the store
    /// cannot be freed until `f` returns. `f` must not block, sleep, do I/O
    /// or call back into the store; copy what it needs and return.
    ///
    /// ```
    /// # fn main() -> shapebuf::Result<()> {
    /// # use shapebuf::{LogOffset, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open(dir.path())?;
    /// # let mut w = store.writer("s")?;
    /// # w.append(LogOffset::new(1, 0), "abc")?; w.commit()?;
    /// let h = store.handle("s")?;
    /// let mut total = 0;
    /// h.visit(LogOffset::ZERO, LogOffset::MAX, |e| total += e.payload.len())?;
    /// assert_eq!(total, 3);
    /// # Ok(()) }
    /// ```
    pub fn visit(
        &self,
        after: LogOffset,
        upto: LogOffset,
        f: impl FnMut(&Entry),
    ) -> Result<VisitOutcome> {
        self.inner.visit_slot(&self.slot, after, upto, f)
    }

    /// The offset of the last committed entry ([`LogOffset::ZERO`] if none,
    /// or if the shape cannot be read: removed, or quarantined). Recovers
    /// the shape first if it is not in memory.
    pub fn committed(&self) -> LogOffset {
        let got = self.inner.with_open(&self.slot, |open, guard| {
            let view = open.buffer.view(guard);
            if let Some(seg) = view.segment {
                if view.committed > seg.start() {
                    return Ok(seg.get((view.committed - 1 - seg.start()) as usize).offset);
                }
                if view.committed == seg.start() {
                    // Entry `start - 1` is the last committed one: its offset
                    // is the segment's base (it may not have a commit record
                    // on disk yet: it was flushed before its transaction was
                    // committed).
                    return Ok(seg.base());
                }
            }
            Err(open.to_arc())
        });
        match got {
            Ok(Ok(offset)) => offset,
            Ok(Err(open)) => open.log.durable().last_committed,
            Err(_) => LogOffset::ZERO,
        }
    }

    /// Blocks until a transaction committing an offset past `after` is
    /// visible ([`WaitOutcome::Committed`] with the last committed offset),
    /// the shape is terminated or its writer dropped during the wait
    /// ([`WaitOutcome::Terminated`], [`WaitOutcome::WriterDropped`]), or
    /// `timeout` passes ([`WaitOutcome::TimedOut`]). Returns at once if
    /// something past `after` is committed already.
    ///
    /// A terminated shape (dead) ends the wait at once with
    /// [`WaitOutcome::Terminated`]; once a new writer restarts it, waits on
    /// the same handle wait again. Holds no epoch pin while it sleeps, and
    /// costs the writer one fence and one load per commit when nobody
    /// waits; when readers wait, the commit hands their wake-up to the
    /// store's waker thread (`shapebuf-wake`, started by the first wait)
    /// and does not wait for it. See `wait.rs` for the protocol.
    ///
    /// ```
    /// # fn main() -> shapebuf::Result<()> {
    /// use std::time::Duration;
    /// use shapebuf::{LogOffset, Store, WaitOutcome};
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path())?;
    /// let w = store.writer("s")?;
    /// let h = store.handle("s")?;
    /// let waiter = std::thread::spawn(move || h.wait_for(LogOffset::ZERO, Duration::from_secs(30)));
    /// w.terminate()?;
    /// assert_eq!(waiter.join().unwrap(), WaitOutcome::Terminated);
    /// # Ok(()) }
    /// ```
    pub fn wait_for(&self, after: LogOffset, timeout: Duration) -> WaitOutcome {
        wait::wait_for(self, after, timeout)
    }

    /// The async form of [`ShapeHandle::wait_for`] (feature `tokio`; the
    /// timeout runs on tokio's timer). The future owns a clone of the
    /// handle (`'static`, `Send`) and is cancel-safe: dropping it (for
    /// instance when a `select!` picks another branch) deregisters it, and
    /// no commit is consumed by a wait, so nothing is lost.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shapebuf::Result<()> {
    /// use std::time::Duration;
    /// use shapebuf::{LogOffset, Store, WaitOutcome};
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path())?;
    /// let mut w = store.writer("s")?;
    /// let h = store.handle("s")?;
    /// let tail = tokio::spawn(h.wait_for_async(LogOffset::ZERO, Duration::from_secs(30)));
    /// w.append(LogOffset::new(3, 1), "x")?;
    /// w.commit()?;
    /// assert_eq!(tail.await.unwrap(), WaitOutcome::Committed(LogOffset::new(3, 1)));
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tokio")]
    pub fn wait_for_async(
        &self,
        after: LogOffset,
        timeout: Duration,
    ) -> impl std::future::Future<Output = WaitOutcome> + Send + 'static {
        let wait = wait::WaitFuture::new(self.clone(), after);
        async move {
            tokio::time::timeout(timeout, wait)
                .await
                .unwrap_or(WaitOutcome::TimedOut)
        }
    }

    /// The wait of [`ShapeHandle::wait_for`] as a future without a timeout
    /// and without any runtime: it resolves when a commit past `after` is
    /// visible or the writer goes away, and is woken from the store's waker
    /// thread (`shapebuf-wake`), which calls the waker outside its locks.
    /// Hosts with their own event loop drive it (the Erlang binding
    /// re-polls it from its waker and sends a message); add a timeout by
    /// dropping it. `'static`, `Send`, and cancel-safe: dropping it
    /// deregisters the wait.
    ///
    /// ```
    /// # fn main() -> shapebuf::Result<()> {
    /// use std::future::Future;
    /// use std::sync::Arc;
    /// use std::task::{Context, Poll, Wake, Waker};
    /// use shapebuf::{LogOffset, Store, WaitOutcome};
    /// struct Noop;
    /// impl Wake for Noop {
    ///     fn wake(self: Arc<Self>) {}
    /// }
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path())?;
    /// let mut w = store.writer("s")?;
    /// let h = store.handle("s")?;
    /// let mut wait = Box::pin(h.wait_future(LogOffset::ZERO));
    /// let waker = Waker::from(Arc::new(Noop));
    /// let mut cx = Context::from_waker(&waker);
    /// assert!(wait.as_mut().poll(&mut cx).is_pending());
    /// w.append(LogOffset::new(2, 0), "x")?;
    /// w.commit()?;
    /// assert_eq!(wait.as_mut().poll(&mut cx), Poll::Ready(WaitOutcome::Committed(LogOffset::new(2, 0))));
    /// # Ok(()) }
    /// ```
    // Not under loom: its stand-ins are not `Send`.
    #[cfg(not(loom))]
    pub fn wait_future(
        &self,
        after: LogOffset,
    ) -> impl std::future::Future<Output = WaitOutcome> + Send + 'static {
        wait::WaitFuture::new(self.clone(), after)
    }

    /// How many readers wait on this shape now (blocking and async), for
    /// metrics.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = shapebuf::Store::open(dir.path()).unwrap();
    /// # let _w = store.writer("s").unwrap();
    /// assert_eq!(store.handle("s").unwrap().waiting(), 0);
    /// ```
    pub fn waiting(&self) -> usize {
        self.slot.waiters.count()
    }

    /// Removes the shape's log files whose entries all have offsets
    /// `<= upto` (the host no longer needs them; the newest file is always
    /// kept). Returns how many were removed. Safe while readers read and the
    /// writer writes: a read already under way finishes from the files it
    /// resolved; a read that starts later and needs a removed entry gets
    /// [`Error::OffsetCollected`] naming the earliest offset still
    /// available, never a partial answer.
    ///
    /// ```
    /// # fn main() -> shapebuf::Result<()> {
    /// use shapebuf::{Config, Error, LogOffset, Store};
    /// let dir = tempfile::tempdir().unwrap();
    /// // Small files, and no durable tail kept in memory after a flush.
    /// let cfg = Config { file_bytes: 64, retain_bytes: 0, ..Config::default() };
    /// let store = Store::open_with(dir.path(), cfg)?;
    /// let mut w = store.writer("s")?;
    /// for tx in 1..=20 {
    ///     w.append(LogOffset::new(tx, 0), vec![0u8; 40])?;
    ///     w.commit()?;
    ///     w.flush()?;
    /// }
    /// let h = store.handle("s")?;
    /// assert!(h.collect_files_before(LogOffset::new(10, 0))? > 0);
    /// let err = h.read(LogOffset::ZERO, LogOffset::MAX).unwrap_err();
    /// assert!(matches!(err, Error::OffsetCollected { .. }));
    /// assert_eq!(h.read(LogOffset::new(15, 0), LogOffset::MAX)?.entries.len(), 5);
    /// # Ok(()) }
    /// ```
    pub fn collect_files_before(&self, upto: LogOffset) -> Result<usize> {
        let open = self.inner.with_open(&self.slot, |open, _| open.to_arc())?;
        open.log.collect_before(upto)
    }

    /// Whether a writer's buffer is published (the shape is not dead).
    pub fn is_live(&self) -> bool {
        let guard = self.inner.env.epoch().pin();
        self.slot
            .get(&guard)
            .is_some_and(|open| open.buffer.is_live())
    }

    /// The store this handle belongs to.
    pub fn store(&self) -> Store {
        Store {
            inner: Arc::clone(&self.inner),
        }
    }
}
