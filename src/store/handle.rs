//! A handle on one shape: reads and waits without a registry lookup per
//! call, valid across terminate and restart of the shape.

use std::sync::Arc;
use std::time::Duration;

use crate::entry::Entry;
use crate::id;
use crate::shape::reader::{ReadOutcome, VisitOutcome};
use crate::shape::wait::WakeService;
use crate::shape::wait::{self, WaitOutcome, Waiters, Watch};
use crate::store::slot::Slot;
use crate::{LogOffset, Result};

use super::inner::Inner;

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
    pub(crate) inner: Arc<Inner>,
    pub(crate) slot: Arc<Slot>,
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
    ///
    /// # Errors
    ///
    /// [`Error::ShapeRemoved`](crate::Error::ShapeRemoved) if the shape was removed; [`Error::Corrupt`](crate::Error::Corrupt)
    /// if it is quarantined; [`Error::OffsetCollected`](crate::Error::OffsetCollected) if `after` is before the
    /// earliest entry still on disk ([`ShapeHandle::collect_files_before`]);
    /// [`Error::Io`](crate::Error::Io) if reading its log fails.
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
    /// # Errors
    ///
    /// As [`ShapeHandle::read`]; `f` has seen the entries before the error
    /// (in order, none twice).
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
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn wait_for_async(
        &self,
        after: LogOffset,
        timeout: Duration,
    ) -> impl std::future::Future<Output = WaitOutcome> + Send + 'static {
        let wait = wait::future::WaitFuture::new(self.clone(), after);
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
        wait::future::WaitFuture::new(self.clone(), after)
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
    /// [`Error::OffsetCollected`](crate::Error::OffsetCollected) naming the earliest offset still
    /// available, never a partial answer.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeRemoved`](crate::Error::ShapeRemoved) if the shape was removed; [`Error::Corrupt`](crate::Error::Corrupt)
    /// if it is quarantined; [`Error::Io`](crate::Error::Io) if recovering the shape or deleting a
    /// file fails.
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
}
