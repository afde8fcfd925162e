//! The store: opens a directory, recovers its shapes, and hands out writers,
//! handles and reads.
//!
//! # Shape ids and file names
//!
//! Shape ids are untrusted bytes (any length up to
//! [`MAX_ID`](crate::MAX_ID), `/`, `..`, NUL, non-UTF-8). They never become
//! part of a path: a shape's files are named by a *stem*
//! `<fnv-1a-64 hex>-<n>`, with `n` the smallest number no other shape uses,
//! and the id itself is stored in every file header. Two ids with the same
//! hash get different stems; on open, ids are read back from the headers.
//!
//! # Layout
//!
//! `<dir>/shapes/<stem>.<start>.log`, and `<dir>/LOCK`, locked while the
//! store lives so that one directory has one store at a time (see
//! docs/format.md).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tracing::info;

use crate::buffer::{Buffer, RetiredBytes};
use crate::flush_tracker::FlushTracker;
use crate::fs::{Fs, RealFs};
use crate::log::{self, LogConfig, ShapeLog};
use crate::reader::{self, ReadOutcome, VisitOutcome};
use crate::registry::{display_id, Registry, Slot};
use crate::segment::Entry;
use crate::sync::Epoch;
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
    /// many bytes are pending (default 64 KiB); see
    /// [`Config::flush_threads`].
    pub flush_bytes: usize,
    /// Back-pressure: while a writer's flush batch is being written,
    /// `append` goes on until this many more bytes are pending, then waits
    /// for the batch (default 1 MiB, at least `flush_bytes`). The next
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
    /// (default 64). Memory comes in chunks of 64 entry slots (3 KiB), so
    /// this rounds up to whole chunks; a segment grows by adding chunks
    /// (its directory of chunks doubles, no entry is copied).
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            flush_bytes: 64 << 10,
            max_pending_bytes: 1 << 20,
            flush_interval: Duration::from_secs(1),
            segment_capacity: 64,
            retain_bytes: 16 << 10,
            index_interval: 10 << 20,
            file_bytes: 64 << 20,
            max_payload: 16 << 20,
            flush_threads: crate::flusher::THREADS,
        }
    }
}

pub(crate) struct Inner {
    /// The directory's `LOCK`, held while the store lives (writers and
    /// handles keep `Inner` alive, so the lock outlives the `Store` value
    /// while any of them does).
    _lock: Box<dyn std::fmt::Debug + Send + Sync>,
    dir: PathBuf,
    fs: Arc<dyn Fs>,
    pub(crate) config: Config,
    registry: Registry,
    epoch: Epoch,
    retired: Arc<RetiredBytes>,
    stems: Mutex<HashSet<String>>,
    pub(crate) tracker: FlushTracker,
    /// Live tail: the waker thread (spawned by the first waiter; joined
    /// when the last owner of the store is gone).
    pub(crate) wake: WakeService,
    /// Writes and syncs writers' flush batches off their threads.
    pub(crate) flusher: crate::flusher::Flusher,
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
            .field("dir", &self.inner.dir)
            .field("shapes", &self.inner.registry.len())
            .finish()
    }
}

fn fnv1a(id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in id {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn check_id(id: &[u8]) -> Result<()> {
    if id.is_empty() || id.len() > log::record::MAX_ID {
        return Err(Error::BadShapeId {
            len: id.len(),
            max: log::record::MAX_ID,
        });
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the store in `dir` with default settings,
    /// recovering every shape found there.
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
        config.max_pending_bytes = config.max_pending_bytes.max(config.flush_bytes);
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
        let flush_threads = config.flush_threads;
        let epoch = Epoch::new();
        let inner = Arc::new(Inner {
            _lock: lock,
            dir,
            fs,
            config,
            registry: Registry::new(),
            flusher: crate::flusher::Flusher::new(flush_threads, epoch.clone()),
            epoch,
            retired: Arc::default(),
            stems: Mutex::new(HashSet::new()),
            tracker: FlushTracker::new(),
            wake: WakeService::new(),
        });
        let lcfg = inner.log_config();
        let logs = log::list_logs(inner.fs.as_ref(), &inner.dir)?;
        let mut recovered = 0usize;
        for (stem, files) in &logs {
            let Some((shape_log, durable)) =
                log::recover(Arc::clone(&inner.fs), &inner.dir, stem, files, lcfg)?
            else {
                continue;
            };
            let id = shape_log.id().clone();
            let buffer = Arc::new(inner.buffer(durable.committed));
            inner.registry.get_or_insert_with(&id, |hash| {
                Ok::<_, Error>(Arc::new(Slot {
                    id: id.clone(),
                    hash,
                    buffer,
                    log: shape_log,
                    waiters: Waiters::default(),
                }))
            })?;
            inner.stems_lock().insert(stem.clone());
            recovered += 1;
        }
        info!(dir = %inner.dir.display(), shapes = recovered, "store opened");
        Ok(Store { inner })
    }

    /// The writer of shape `id`, creating the shape if it is new. A shape
    /// has at most one live writer: a second call while the first lives is
    /// [`Error::WriterActive`]. A writer of a terminated shape continues its
    /// log after the last committed entry.
    pub fn writer(&self, id: impl AsRef<[u8]>) -> Result<ShapeWriter> {
        let id = id.as_ref();
        check_id(id)?;
        let slot = self
            .inner
            .registry
            .get_or_insert_with(id, |hash| self.inner.create_slot(id, hash))?;
        let token = slot
            .buffer
            .claim()
            .ok_or_else(|| Error::WriterActive(display_id(id)))?;
        ShapeWriter::open(Arc::clone(&self.inner), slot, token)
    }

    /// A handle on shape `id` that reads without a registry lookup and stays
    /// valid across terminate and restart of the shape.
    pub fn handle(&self, id: impl AsRef<[u8]>) -> Result<ShapeHandle> {
        let id = id.as_ref();
        let slot = self
            .inner
            .registry
            .get(id)
            .ok_or_else(|| Error::UnknownShape(display_id(id)))?;
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
        let slot = self
            .inner
            .registry
            .find(id)
            .ok_or_else(|| Error::UnknownShape(display_id(id)))?;
        reader::read(&slot.buffer, &slot.log, after, upto)
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

    /// Whether shape `id` is known (has a log).
    pub fn contains(&self, id: impl AsRef<[u8]>) -> bool {
        self.inner.registry.contains(id.as_ref())
    }

    /// The number of known shapes.
    pub fn shape_count(&self) -> usize {
        self.inner.registry.len()
    }

    /// The ids of every known shape.
    pub fn shapes(&self) -> Vec<Bytes> {
        let mut v = Vec::new();
        self.inner.registry.for_each(|s| v.push(s.id.clone()));
        v
    }

    /// Bytes of retired segments that the epoch collector has not freed yet:
    /// they wait for readers pinned before their retirement to unpin, for
    /// their writer thread to hand them over (per 64 KiB retired, or on
    /// [`ShapeWriter::tick`]), and for a collection (each thread runs one
    /// every 128 pins; [`Store::collect`] runs one now).
    pub fn retired_bytes(&self) -> u64 {
        self.inner.retired.get()
    }

    /// Runs pending epoch reclamation on this thread (it also runs on its
    /// own as threads pin), after handing over the segments this thread
    /// retired (writers hand them over per 64 KiB, and on
    /// [`ShapeWriter::tick`]).
    pub fn collect(&self) {
        let guard = self.inner.epoch.pin();
        self.inner.epoch.hand_off(&guard);
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
        &self.inner.dir
    }
}

impl Inner {
    fn log_config(&self) -> LogConfig {
        LogConfig {
            file_bytes: self.config.file_bytes,
            index_interval: self.config.index_interval,
        }
    }

    fn buffer(&self, committed: u64) -> Buffer {
        Buffer::new(committed, self.epoch.clone(), Arc::clone(&self.retired))
    }

    fn stems_lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.stems
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn create_slot(&self, id: &[u8], hash: u64) -> Result<Arc<Slot>> {
        let stem = {
            let mut stems = self.stems_lock();
            let h = fnv1a(id);
            let stem = (0u64..)
                .map(|n| format!("{h:016x}-{n}"))
                .find(|s| !stems.contains(s))
                .expect("a free stem exists");
            stems.insert(stem.clone());
            stem
        };
        let id = Bytes::copy_from_slice(id);
        let log = ShapeLog::create(
            Arc::clone(&self.fs),
            &self.dir,
            stem.clone(),
            id.clone(),
            self.log_config(),
        )
        .inspect_err(|_| {
            self.stems_lock().remove(&stem);
        })?;
        Ok(Arc::new(Slot {
            id,
            hash,
            buffer: Arc::new(self.buffer(0)),
            log,
            waiters: Waiters::default(),
        }))
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

    fn wake_service(&self) -> &WakeService {
        &self.inner.wake
    }
}

impl std::fmt::Debug for ShapeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShapeHandle")
            .field("shape", &display_id(&self.slot.id))
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
        reader::read(&self.slot.buffer, &self.slot.log, after, upto)
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
        reader::visit(&self.slot.buffer, &self.slot.log, after, upto, f)
    }

    /// The offset of the last committed entry ([`LogOffset::ZERO`] if none).
    pub fn committed(&self) -> LogOffset {
        let buffer = &self.slot.buffer;
        let guard = buffer.pin();
        let view = buffer.view(&guard);
        if let Some(seg) = view.segment {
            if view.committed > seg.start() {
                return seg.get((view.committed - 1 - seg.start()) as usize).offset;
            }
            if view.committed == seg.start() {
                // Entry `start - 1` is the last committed one: its offset is
                // the segment's base (it may not have a commit record on disk
                // yet: it was flushed before its transaction was committed).
                return seg.base();
            }
        }
        drop(guard);
        self.slot.log.durable().last_committed
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
        self.slot.log.collect_before(upto)
    }

    /// Whether a writer's buffer is published (the shape is not dead).
    pub fn is_live(&self) -> bool {
        self.slot.buffer.is_live()
    }

    /// The store this handle belongs to.
    pub fn store(&self) -> Store {
        Store {
            inner: Arc::clone(&self.inner),
        }
    }
}
