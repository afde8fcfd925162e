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
//! # The layer
//!
//! `store/` composes the memory side (`shape/`) and the disk side (`log/`)
//! with the flush tracker: it may import all of them and the shared
//! vocabulary, and nothing imports it but `lib.rs`. Inside it, imports run
//! `mod.rs` (Store) -> `handle.rs`, `writer.rs` -> `inner.rs` (the shared
//! core every Store, writer and handle holds) -> `slot.rs`, `registry.rs`,
//! `flusher.rs`; `disk.rs` gives the reader its disk.
//!
//! # Layout
//!
//! `<dir>/shapes/<stem>.<start>.log`, and `<dir>/LOCK`, locked while the
//! store lives so that one directory has one store at a time (see
//! docs/format.md).

mod config;
pub(crate) mod dirty;
mod disk;
pub(crate) mod flusher;
mod handle;
pub(crate) mod inner;
mod packed;
pub(crate) mod registry;
pub(crate) mod slot;
mod stats;
pub(crate) mod writer;

pub use config::Config;
pub use handle::ShapeHandle;
pub use inner::Removed;
use inner::{Inner, Pinned};
pub use packed::PackedRead;
pub use stats::Stats;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::info;

use crate::flush_tracker::FlushTracker;
use crate::fs::{Fs, RealFs};
use crate::id;
use crate::log::catalog::Listing;
use crate::log::{self, LogConfig, LogCtx};
use crate::shape::buffer::Reclaim;
use crate::shape::reader::ReadOutcome;
use crate::shape::wait::WaitOutcome;
use crate::shape::wait::WakeService;
use crate::store::registry::{share, Registry};
use crate::store::slot::{Env, Idle};
use crate::sync::Epoch;
use crate::{Error, LogOffset, Result};
use writer::ShapeWriter;

/// A directory of shape logs with their in-memory buffers.
///
/// Cheap to clone (shared); `Send + Sync`. Dropping the last clone closes
/// the store as [`Store::close`] does (errors are logged).
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
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl Store {
    /// A `Store` value of `inner` (counted: the last one's drop closes it).
    fn of(inner: Arc<Inner>) -> Store {
        // Relaxed: a count; the clone it comes from keeps it above zero.
        inner
            .stores
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Store { inner }
    }

    /// Closes the store: makes every live writer's committed data durable
    /// (written all at once, then synced together on several threads),
    /// makes every later call on this store, its clones, and the writers
    /// and handles that outlive it fail with [`Error::Closed`] (a read
    /// already under way finishes), and releases the directory's lock, so
    /// that [`Store::open`] of the same directory succeeds at once, in this
    /// process or another. Dropping the last `Store` does the same and logs
    /// an error instead of returning it.
    ///
    /// # Errors
    ///
    /// The first error of a writer's final flush (each is logged; that
    /// writer's shape recovers on the next open as after a crash: its
    /// durable prefix survives). The store is closed either way.
    ///
    /// ```
    /// # fn main() -> shapebuf::Result<()> {
    /// use shapebuf::{Error, LogOffset, Store};
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path())?;
    /// let mut w = store.writer("s")?;
    /// w.append(LogOffset::new(1, 0), "a")?;
    /// w.commit()?;
    /// store.close()?;
    /// assert!(matches!(w.append(LogOffset::new(2, 0), "b"), Err(Error::Closed)));
    /// let again = Store::open(dir.path())?;
    /// assert_eq!(again.read("s", LogOffset::ZERO, LogOffset::MAX)?.entries.len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn close(self) -> Result<()> {
        self.inner.shutdown()
    }
}

impl Clone for Store {
    fn clone(&self) -> Store {
        Store::of(Arc::clone(&self.inner))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // AcqRel: the last drop sees every other clone's work (as `Arc`'s
        // own count does).
        if self
            .inner
            .stores
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            if let Err(e) = self.inner.shutdown() {
                tracing::error!(error = %e, "closing the store at its last drop");
            }
        }
    }
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
    ///
    /// # Errors
    ///
    /// As [`Store::open_with`] with the default [`Config`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(dir, Config::default())
    }

    /// Opens the store in `dir` with `config`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] if [`Config::validate`] refuses `config`
    /// (nothing is created then); [`Error::Locked`] if another store (in this
    /// process or another) has the directory open; [`Error::Io`] if the
    /// directory cannot be created, locked, synced or listed, or a removal that
    /// a crash interrupted cannot be finished.
    pub fn open_with(dir: impl AsRef<Path>, config: Config) -> Result<Store> {
        Store::open_with_fs(dir, config, Arc::new(RealFs))
    }

    /// Opens the store in `dir` with `config`, doing all file I/O through
    /// `fs` (for fault injection and simulated power loss).
    ///
    /// # Errors
    ///
    /// As [`Store::open_with`] (the I/O errors are `fs`'s).
    pub fn open_with_fs(
        dir: impl AsRef<Path>,
        mut config: Config,
        fs: Arc<dyn Fs>,
    ) -> Result<Store> {
        config.validate()?;
        // What `validate` accepts and each field's doc says it acts as.
        config.segment_capacity = config.segment_capacity.max(1);
        // A writer counts pending bytes in a `u32` (saturating).
        config.flush_bytes = config.flush_bytes.min(u32::MAX as usize);
        config.max_pending_bytes = config
            .max_pending_bytes
            .max(config.flush_bytes)
            .min(u32::MAX as usize);
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
            lock: std::sync::Mutex::new(Some(lock)),
            closed: std::sync::atomic::AtomicBool::new(false),
            stores: std::sync::atomic::AtomicUsize::new(1),
            writers: std::sync::Mutex::default(),
            dirty: crate::store::dirty::Dirty::new(),
            config,
            registry: Registry::new(),
            flusher: Arc::new(crate::store::flusher::Flusher::new(
                flush_threads,
                epoch.clone(),
            )),
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
    ///
    /// # Errors
    ///
    /// [`Error::BadShapeId`] for an empty id or one longer than
    /// [`MAX_ID`](crate::MAX_ID); [`Error::WriterActive`] while another writer
    /// of the shape lives; [`Error::Corrupt`] for a quarantined shape;
    /// [`Error::Io`] if finding or recovering the shape's log fails (a new
    /// writer that must flush what a dropped one committed fails with that
    /// flush's error).
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
    ///
    /// # Errors
    ///
    /// [`Error::BadShapeId`] for an empty or over-long id;
    /// [`Error::UnknownShape`] if no such shape exists; [`Error::Io`] if reading
    /// a file header to find it fails.
    pub fn handle(&self, id: impl AsRef<[u8]>) -> Result<ShapeHandle> {
        let id = id.as_ref();
        id::check(id)?;
        let slot = self.inner.slot(id, false)?;
        Ok(ShapeHandle {
            inner: Arc::clone(&self.inner),
            slot,
        })
    }

    /// The committed entries of shape `id` with offsets in `(after, upto]`,
    /// in order. An unknown shape is [`Error::UnknownShape`].
    ///
    /// # Errors
    ///
    /// [`Error::BadShapeId`] for an empty or over-long id;
    /// [`Error::UnknownShape`] if no such shape exists; [`Error::ShapeRemoved`]
    /// if it was removed meanwhile; [`Error::Corrupt`] for a quarantined shape;
    /// [`Error::OffsetCollected`] if `after` is before the earliest entry still
    /// on disk ([`ShapeHandle::collect_files_before`]); [`Error::Io`] if reading
    /// its log fails.
    pub fn read(
        &self,
        id: impl AsRef<[u8]>,
        after: LogOffset,
        upto: LogOffset,
    ) -> Result<ReadOutcome> {
        self.inner.check_open()?;
        let id = id.as_ref();
        id::check(id)?;
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
    /// # Errors
    ///
    /// As [`Store::handle`]: the wait itself does not fail (a removed shape
    /// or a dead writer is a [`WaitOutcome`]).
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
    /// # Errors
    ///
    /// The future resolves to [`Store::handle`]'s error for an invalid or
    /// unknown id; the wait itself does not fail.
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
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
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
    /// header of the shape's first file, the first time. An id no shape
    /// can have (empty, or longer than [`MAX_ID`](crate::MAX_ID): what the
    /// other entry points refuse with [`Error::BadShapeId`]) answers
    /// `false`, as does a lookup that fails to read a header.
    pub fn contains(&self, id: impl AsRef<[u8]>) -> bool {
        let id = id.as_ref();
        id::check(id).is_ok() && self.inner.slot(id, false).is_ok()
    }

    /// The number of known shapes (found on disk at open, or created since),
    /// without reading any file.
    pub fn shape_count(&self) -> usize {
        self.inner.registry.len() + self.inner.env.log.catalog.unresolved()
    }

    /// The ids of every known shape. Reads the header of every shape's
    /// first file not read yet: one small read per shape found on disk.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if reading a file header fails.
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
    ///
    /// # Errors
    ///
    /// [`Error::Io`] for a failure other than damage (damage is counted and
    /// listed, not returned).
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
    /// # Errors
    ///
    /// [`Error::BadShapeId`] for an empty or over-long id;
    /// [`Error::UnknownShape`] if no such shape exists (or it was removed
    /// already); [`Error::WriterActive`] while a live writer owns it;
    /// [`Error::Io`] if writing the tombstone or deleting files fails (the
    /// shape is then either whole or removed, as after a crash).
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
        let id = id.as_ref();
        id::check(id)?;
        let slot = self.inner.slot(id, false)?;
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

    /// A snapshot for an operator: shapes known, open in memory, with live
    /// writers and quarantined; committed entries not yet durable; memory
    /// held by segments and by retired ones; flushes, bytes flushed, flush
    /// errors and write + sync latency (p50/p99 over the last 1,024
    /// batches); open files now and at peak. See [`Stats`].
    ///
    /// Costs the read and write paths nothing: the flush counters are
    /// written once per batch, and the rest is gathered here, by one pass
    /// over the shapes in the registry (linear in the number of shapes),
    /// so call it from a metrics scrape, not per request.
    ///
    /// ```
    /// # fn main() -> shapebuf::Result<()> {
    /// use shapebuf::{LogOffset, Store};
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path())?;
    /// let mut w = store.writer("s")?;
    /// w.append(LogOffset::new(1, 0), "abc")?;
    /// w.commit()?;
    /// let before = store.stats();
    /// assert_eq!((before.shapes, before.live_writers, before.entries_not_durable), (1, 1, 1));
    /// w.flush()?;
    /// let after = store.stats();
    /// assert_eq!((after.flushes, after.flushed_bytes, after.entries_not_durable), (1, 3, 0));
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> Stats {
        let inner = &self.inner;
        let mut s = Stats {
            shapes: self.shape_count(),
            retired_bytes: self.retired_bytes(),
            open_files: self.open_files(),
            peak_open_files: self.peak_open_files(),
            ..Stats::default()
        };
        inner.flusher.counters().fill(&mut s);
        let guard = inner.env.epoch().pin();
        inner.registry.for_each(&guard, |slot| {
            let Some(open) = slot.get(&guard) else {
                // Only a closed slot can be quarantined: the open ones (the
                // busy ones) skip its gate lock.
                if slot.quarantined().is_some() {
                    s.quarantined += 1;
                }
                return;
            };
            s.shapes_open += 1;
            let view = open.buffer.view(&guard);
            if let Some(seg) = view.segment {
                s.live_writers += 1;
                s.memory_bytes += seg.resident_bytes() as u64;
            }
            s.entries_not_durable += view.committed.saturating_sub(open.buffer.persisted());
        });
        s
    }

    /// The directory the store was opened on (the `dir` given to
    /// [`Store::open`]); the shape logs live in its `shapes` subdirectory
    /// (see docs/format.md).
    ///
    /// ```
    /// # fn main() -> shapebuf::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = shapebuf::Store::open(dir.path())?;
    /// assert_eq!(store.dir(), dir.path());
    /// # Ok(()) }
    /// ```
    pub fn dir(&self) -> &Path {
        // The logs' directory is `<dir>/shapes` (`open_with_fs`).
        let shapes = &self.inner.env.log.dir;
        shapes.parent().unwrap_or(shapes)
    }
}

// Here rather than in handle.rs: the handle names no `Store`, so the
// imports between the store's files run one way (mod -> handle -> inner).
impl ShapeHandle {
    /// The store this handle belongs to.
    pub fn store(&self) -> Store {
        Store::of(Arc::clone(&self.inner))
    }
}

// Here rather than in packed.rs, for the same reason as above.
impl Store {
    /// [`ShapeHandle::read_packed`] of shape `id` after a lookup. An unknown
    /// shape is [`Error::UnknownShape`](crate::Error::UnknownShape).
    pub fn read_packed(
        &self,
        id: impl AsRef<[u8]>,
        after: LogOffset,
        upto: LogOffset,
        max_entries: usize,
    ) -> Result<PackedRead> {
        self.handle(id)?.read_packed(after, upto, max_entries)
    }
}
