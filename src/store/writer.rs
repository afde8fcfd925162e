//! The shape writer: append, commit, flush, terminate.
//!
//! # Invariants
//!
//! - One writer per shape (the buffer's writer claim); a second is refused
//!   with [`Error::WriterActive`].
//! - `append` accepts only strictly increasing offsets above
//!   [`LogOffset::ZERO`]; appended entries are invisible until `commit`.
//! - `flush` writes every appended entry not yet on disk and a commit record,
//!   syncs, publishes `persisted`, and only then trims the in-memory buffer,
//!   so a reader that finds an entry missing from memory finds it on disk.
//! - The automatic flush (pending bytes past `Config::flush_bytes`) splits
//!   that protocol: `append` takes the batch out and hands it to the store's
//!   flusher threads (`flusher.rs`), which write and sync it while the
//!   writer goes on; the writer's next call that finds it durable publishes
//!   `persisted` and trims, so only the writer swaps segments. At most one
//!   batch is in flight; with `Config::max_pending_bytes` pending besides
//!   it, `append` waits for it (back-pressure), and the next batch takes
//!   everything pending (group commit). `flush`, `terminate` and the drop
//!   wait for it first. A failed batch poisons the writer at the call that
//!   finds it; if the writer was dropped first, the drop logs it and the
//!   next writer heals the log and rewrites what was committed (the segment
//!   was never trimmed past the failed batch).
//! - A failed write or sync poisons the writer: `persisted` does not move,
//!   the buffer keeps every entry (readers still see every committed one),
//!   and every later call fails until a new writer recovers the shape.
//! - `terminate` = flush, then retire the buffer (unpublish + deferred
//!   free). It never waits for readers.
//! - Dropping a writer without terminating only releases the claim: the
//!   buffer stays readable, and the next writer flushes what its
//!   predecessor committed and discards what it did not.
//! - Committed data is durable within `Config::flush_interval` with no
//!   further call (`dirty.rs`): a `ShapeWriter` is a handle on its `Core`
//!   behind a mutex it shares with the store's timer thread; every call
//!   holds it (one uncontended lock per call), a commit that leaves the
//!   shape newly dirty queues it, and the timer hands the batch over and
//!   completes it under the same lock, never while another batch of the
//!   writer is in flight. `terminate`, `remove` and the drop take the core
//!   out of the shared state first.
//! - A closed store (`Store::close`, the last `Store`'s drop) flushed the
//!   writer's committed data and marked it closed: every later call fails
//!   with [`Error::Closed`].
//! - No epoch pin is held across disk I/O.
//! - The store's [`FlushTracker`](crate::FlushTracker) hears from the
//!   writer: each flush reports the last durable commit, `terminate`
//!   removes the shape, and a drop with entries past the last durable
//!   commit removes it and reports a [`Loss`](crate::Loss).
//! - A predecessor dropped inside a transaction leaves it torn: its new
//!   writer skips the rest of that transaction (entries of its `tx` above
//!   the predecessor's last) instead of committing a tail without its
//!   beginning, and its `append` says so with [`Error::TornTransaction`]
//!   (never `Ok` as if written); the loss was reported at the drop. An
//!   entry at or below the
//!   predecessor's last is the host replaying the transaction: it is
//!   written. (After terminate or a restart there is no torn transaction:
//!   an open one was discarded on purpose, and hosts replay it whole.)

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tracing::{debug, info_span};

use crate::durable::Durable;
use crate::entry::Entry;
use crate::flush_tracker::TrackedShape;
use crate::id::display as display_id;
use crate::log::ShapeLog;
use crate::shape::buffer::{Sizing, WriterToken};
use crate::shape::wait::Close;
use crate::store::dirty::{Fault, Pending, Shared, Visit};
use crate::store::flusher::{Done, Job, Sink};
use crate::store::inner::Inner;
use crate::store::slot::{Open, Slot, CLOSE_BELOW};
use crate::{Error, LogOffset, Result};

/// The single writer of one shape. Obtain it with
/// [`Store::writer`](crate::Store::writer).
///
/// ```
/// # fn main() -> shapebuf::Result<()> {
/// use shapebuf::{LogOffset, Store};
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// let mut w = store.writer("orders")?;
/// w.append(LogOffset::new(1, 0), "a")?;
/// w.append(LogOffset::new(1, 1), "b")?;
/// assert_eq!(store.read("orders", LogOffset::ZERO, LogOffset::MAX)?.entries.len(), 0);
/// w.commit()?;
/// assert_eq!(store.read("orders", LogOffset::ZERO, LogOffset::MAX)?.entries.len(), 2);
/// w.flush()?;
/// w.terminate()?;
/// # Ok(()) }
/// ```
///
/// Committed data becomes durable within
/// [`Config::flush_interval`](crate::Config::flush_interval) without any
/// further call (see [`ShapeWriter::commit`]).
pub struct ShapeWriter {
    /// The writer's state, shared with the store's background flush
    /// (`dirty.rs`): every call holds its lock.
    shared: Arc<Shared<Core>>,
    slot: Arc<Slot>,
}

/// What a [`ShapeWriter`] owns, behind the lock it shares with the
/// background flush.
pub(crate) struct Core {
    /// This shape in the store's flush tracker.
    tracked: TrackedShape,
    /// The last entry a dropped predecessor appended and never committed:
    /// the rest of its transaction is skipped, never written torn
    /// ([`LogOffset::ZERO`]: none; no entry has that offset).
    torn: LogOffset,
    inner: Arc<Inner>,
    slot: Arc<Slot>,
    /// The claim on the slot's open state this writer writes (see
    /// `slot.rs`: it is the published one for as long as this writer holds
    /// the claim).
    token: WriterToken<Open>,
    appended: u64,
    last: LogOffset,
    committed: u64,
    last_committed: LogOffset,
    durable: Durable,
    /// Bytes appended since the last hand-over (payloads plus framing),
    /// saturating at 4 GiB: a `u32` beside `broken` (the writer is one of
    /// the things a live shape costs; see the size check below).
    pending_bytes: u32,
    /// When the last flush was handed over, in nanoseconds since the store
    /// opened ([`Inner::clock`]; an `Instant` takes twice the bytes).
    last_flush: u64,
    broken: Option<Broken>,
    /// The flush batch a flusher thread is writing (see `flusher.rs`).
    in_flight: Option<Arc<Done>>,
}

// A host holds one per live shape: 176 bytes, plus the shared state's lock
// and `queued` flag (8 bytes) and the `Arc`'s counts (16), in one heap
// block; the `ShapeWriter` itself is two pointers. Growing it is a decision.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Core>() <= 176);

impl std::fmt::Debug for ShapeWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.lock();
        let mut d = f.debug_struct("ShapeWriter");
        d.field("shape", &display_id(&self.slot.id));
        if let Some(c) = &st.core {
            d.field("appended", &c.appended)
                .field("committed", &c.committed)
                .field("durable", &c.durable);
        }
        d.finish()
    }
}

impl Core {
    /// Takes over `slot` with `token`: flushes what a dropped predecessor
    /// committed, discards what it did not, and publishes a fresh segment.
    pub(crate) fn open(
        inner: Arc<Inner>,
        slot: Arc<Slot>,
        mut token: WriterToken<Open>,
    ) -> Result<Self> {
        let _span = info_span!("writer_open", shape = %display_id(&slot.id)).entered();
        let buffer_committed = token.buffer().committed();
        // Its own reference: `take_over` below borrows the claim mutably.
        let owner = Arc::clone(token.owner());
        let log = &owner.log;
        // A predecessor whose write or sync failed left the log poisoned; cut
        // it back to what is known durable (the rest is still in memory).
        let durable = log.heal()?;
        let torn = torn_tail(&token, buffer_committed, &durable).unwrap_or(LogOffset::ZERO);
        // Entries a dropped predecessor committed but did not flush are still
        // in its segment: `take_over` writes them, discards the uncommitted
        // tail and installs a fresh segment (shared with the loom models).
        let durable = token.take_over(
            durable,
            inner.config.segment_capacity,
            |missing, commit| {
                let written = log.append(missing.iter(), Some(commit))?;
                match written.dir {
                    Some(ticket) => log.dir_durable(ticket),
                    None => Ok(written.durable),
                }
            },
            || log.discard_uncommitted(),
        )?;
        let tracked = inner.tracker.register_shared(log.id());
        tracked.flushed(durable.last_committed);
        let last_flush = inner.clock();
        Ok(Core {
            tracked,
            torn,
            inner,
            slot,
            token,
            appended: durable.committed,
            last: durable.last_committed,
            committed: durable.committed,
            last_committed: durable.last_committed,
            durable,
            pending_bytes: 0,
            last_flush,
            broken: None,
            in_flight: None,
        })
    }

    /// The shape's log (its open state's, which the claim holds).
    fn log(&self) -> &ShapeLog {
        &self.token.owner().log
    }

    fn check(&self) -> Result<()> {
        match self.broken {
            None => Ok(()),
            Some(Broken::Closed) => Err(Error::Closed),
            Some(b) => Err(Error::WriterClosed {
                shape: display_id(&self.slot.id),
                reason: b.reason(),
            }),
        }
    }

    /// See [`ShapeWriter::append`].
    pub(crate) fn append(&mut self, offset: LogOffset, payload: impl Into<Bytes>) -> Result<()> {
        self.check()?;
        self.settle(false)?;
        let payload = payload.into();
        if offset == LogOffset::ZERO {
            return Err(Error::ZeroOffset);
        }
        if offset <= self.last {
            return Err(Error::NonIncreasingOffset {
                last: self.last,
                got: offset,
            });
        }
        let max = self.inner.config.max_payload;
        if payload.len() > max {
            return Err(Error::PayloadTooLarge {
                len: payload.len(),
                max,
            });
        }
        if self.torn != LogOffset::ZERO {
            let torn = self.torn;
            if offset.tx == torn.tx && offset > torn {
                // The rest of a transaction whose beginning died with the
                // previous writer: skip it rather than commit it torn, and
                // say so. It is accounted for: the predecessor's drop
                // reported the loss.
                self.tracked.flushed(offset);
                return Err(Error::TornTransaction {
                    shape: display_id(&self.slot.id),
                    offset,
                    torn_after: torn,
                });
            }
            // A later transaction, or the host replaying this one.
            self.torn = LogOffset::ZERO;
        }
        let framed = u32::try_from(payload.len() + 25).unwrap_or(u32::MAX);
        self.pending_bytes = self.pending_bytes.saturating_add(framed);
        let pending_bytes = self.pending_bytes as usize;
        self.token.append(Entry { offset, payload });
        self.appended += 1;
        self.last = offset;
        let flush_bytes = self.inner.config.flush_bytes;
        if pending_bytes >= flush_bytes {
            // Back-pressure: a writer `max_pending_bytes` ahead of the batch
            // in flight waits for it, then hands over all it has.
            if self.in_flight.is_some() && pending_bytes >= self.inner.config.max_pending_bytes {
                self.settle(true)?;
            }
            if self.in_flight.is_none() {
                self.hand_over();
                // Written already when it ran on this thread
                // (`Config::flush_threads` 0): complete it, and report a
                // failure from this call.
                self.settle(false)?;
            }
        }
        Ok(())
    }

    /// Takes the entries not yet on disk out of the segment (step 1 of the
    /// flush protocol) and hands them, with the commit point, to the
    /// store's flusher threads to write (step 2; on this thread when there
    /// are none). The writer completes the batch in
    /// [`ShapeWriter::settle`] (steps 3-4). No batch may be in flight.
    fn hand_over(&mut self) {
        let job = self.take_batch();
        self.inner.flusher.submit(job);
    }

    /// [`Core::hand_over`] without the submission: the job, for the caller
    /// to run (the background flush, `Store::close`).
    fn take_batch(&mut self) -> Job {
        debug_assert!(self.in_flight.is_none());
        let commit = (self.committed > self.durable.committed)
            .then_some((self.committed, self.last_committed));
        let pending = self.token.take_pending(self.durable.entries, self.appended);
        let (job, done) = Job::new(
            Arc::clone(self.token.owner()) as Arc<dyn Sink>,
            pending,
            commit,
        );
        self.in_flight = Some(done);
        self.pending_bytes = 0;
        self.last_flush = self.inner.clock();
        job
    }

    /// Completes the batch in flight if it is durable (or, with `wait`,
    /// once it is): publishes `persisted` and trims (steps 3-4 of the
    /// flush protocol, on the writer's thread, so only the writer swaps
    /// segments), and reports the flush. A failed batch poisons the writer.
    fn settle(&mut self, wait: bool) -> Result<()> {
        let Some(done) = &self.in_flight else {
            return Ok(());
        };
        let Some(out) = done.take(wait) else {
            return Ok(());
        };
        self.in_flight = None;
        match out {
            Ok(durable) => {
                self.token.complete_flush(&durable, self.sizing());
                self.durable = durable;
                self.tracked.flushed(durable.last_committed);
                debug!(entries = durable.entries, "flushed and trimmed");
                Ok(())
            }
            Err(e) => {
                self.broken = Some(Broken::Failed);
                Err(e)
            }
        }
    }

    fn sizing(&self) -> Sizing {
        Sizing {
            min_capacity: self.inner.config.segment_capacity,
            retain_bytes: self.inner.config.retain_bytes,
        }
    }

    /// See [`ShapeWriter::commit`].
    pub(crate) fn commit(&mut self) -> Result<LogOffset> {
        self.check()?;
        self.settle(false)?;
        if self.appended > self.committed {
            self.token.commit(self.appended);
            // Live tail: hand this shape's waiters to the store's waker
            // thread (one fence and one load when there are none; see
            // wait.rs). The cfg exists only to measure the hook
            // (benches/wake.rs).
            #[cfg(not(shapebuf_no_wait_hook))]
            self.slot.waiters.notify_commit(&self.inner.wake);
            self.committed = self.appended;
            self.last_committed = self.last;
        }
        Ok(self.last_committed)
    }

    /// See [`ShapeWriter::flush`].
    pub(crate) fn flush(&mut self) -> Result<Flushed> {
        self.check()?;
        self.settle(true)?;
        // A new shape's first flush creates its file even with nothing to
        // write: after a flush, the shape survives a restart.
        let nothing_new = self.appended == self.durable.entries
            && self.committed == self.durable.committed
            && self.log().has_file();
        if nothing_new {
            self.last_flush = self.inner.clock();
            return Ok(self.flushed());
        }
        let _span = info_span!("flush", shape = %display_id(&self.slot.id)).entered();
        // The same steps as an automatic flush; then wait for the batch.
        // (A flusher thread writes it, and collects what is due after.)
        self.hand_over();
        self.settle(true)?;
        Ok(self.flushed())
    }

    /// See [`ShapeWriter::tick`].
    pub(crate) fn tick(&mut self) -> Result<bool> {
        self.check()?;
        self.settle(false)?;
        self.token.hand_off_retired();
        let pending =
            self.appended > self.durable.entries || self.committed > self.durable.committed;
        let since = Duration::from_nanos(self.inner.clock().saturating_sub(self.last_flush));
        if pending && since >= self.inner.config.flush_interval {
            self.flush()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// See [`ShapeWriter::terminate`].
    pub(crate) fn terminate(mut self) -> Result<Flushed> {
        let _span = info_span!("terminate", shape = %display_id(&self.slot.id)).entered();
        let flushed = self.flush()?;
        let guard = self.token.buffer().pin();
        // The retirement hands the segment to the collector once this thread
        // has retired 64 KiB (`Epoch::retired`), without collecting: a
        // collection here would put its cost, which grows with the number
        // of reader threads, into terminate.
        self.token.retire(&guard);
        // An idle shape with a small log costs a few bytes instead of
        // hundreds: close it (its next use recovers it again). We hold the
        // writer claim, so no writer is using the state we close.
        if self.log().is_small(CLOSE_BELOW) {
            self.slot.close(&guard, &self.inner.env);
        }
        drop(guard);
        self.broken = Some(Broken::Terminated);
        self.tracked.remove();
        // Live tail: waiters learn that the shape was terminated.
        self.slot.waiters.close(Close::Terminated, &self.inner.wake);
        debug!("terminated");
        Ok(flushed)
    }

    /// See [`ShapeWriter::remove`].
    pub(crate) fn remove(mut self) -> Result<crate::Removed> {
        // A poisoned writer may remove its shape; a closed store's may not
        // (its directory may belong to another store now).
        if self.broken == Some(Broken::Closed) {
            return Err(Error::Closed);
        }
        // The batch in flight lands first: nothing writes the log while it
        // is being removed.
        let _ = self.settle(true);
        let removed = self.inner.remove(&self.slot, Some(self.token.owner()))?;
        if self.appended > self.durable.committed {
            self.tracked.crashed(self.durable.last_committed);
        } else {
            self.tracked.remove();
        }
        self.broken = Some(Broken::Removed);
        Ok(removed)
    }

    /// See [`ShapeWriter::last_appended`].
    pub(crate) fn last_appended(&self) -> LogOffset {
        self.last
    }

    /// See [`ShapeWriter::flushed`].
    pub(crate) fn flushed(&self) -> Flushed {
        Flushed {
            persisted: self.durable.last,
            committed: self.durable.last_committed,
        }
    }
}

impl ShapeWriter {
    /// Takes over `slot` with `token` (see [`Core::open`]) and registers the
    /// writer with the store, for [`Store::close`](crate::Store::close).
    pub(crate) fn open(
        inner: Arc<Inner>,
        slot: Arc<Slot>,
        token: WriterToken<Open>,
    ) -> Result<Self> {
        let core = Core::open(Arc::clone(&inner), Arc::clone(&slot), token)?;
        let shared = Arc::new(Shared::new(core, Fault::None));
        let w = ShapeWriter { shared, slot };
        inner.register(Arc::downgrade(&w.shared) as Weak<dyn Visit>);
        // After registering: a close that began before it is seen here
        // (see `Inner::register`), and one that begins after finds it.
        if inner.is_closed() {
            return Err(Error::Closed);
        }
        Ok(w)
    }

    /// Runs `f` on the core under the shared lock.
    fn with<R>(&self, f: impl FnOnce(&mut Core) -> R) -> R {
        let mut st = self.shared.lock();
        let core = st
            .core
            .as_mut()
            .expect("a writer's core lives as long as the writer");
        f(core)
    }

    /// Takes the core out of the shared state (terminate, remove): the
    /// background flush then finds nothing to do.
    fn take(&mut self) -> Core {
        self.shared
            .lock()
            .core
            .take()
            .expect("a writer's core lives as long as the writer")
    }

    /// The shape's id.
    pub fn shape(&self) -> &[u8] {
        &self.slot.id
    }

    /// Appends an entry to the open transaction. `offset` must be greater
    /// than every offset the shape holds. The entry is invisible to readers
    /// until [`ShapeWriter::commit`]. May hand a flush batch to the store's
    /// flusher threads (see
    /// [`Config::flush_bytes`](crate::Config::flush_bytes)), complete one
    /// they finished, or wait for one when
    /// [`Config::max_pending_bytes`](crate::Config::max_pending_bytes) more
    /// are pending.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroOffset`], [`Error::NonIncreasingOffset`] or
    /// [`Error::PayloadTooLarge`] (over
    /// [`Config::max_payload`](crate::Config::max_payload)) for an entry it
    /// refuses: nothing is appended and the writer stays usable.
    /// [`Error::TornTransaction`] for the rest of a transaction a dropped
    /// predecessor left torn: the entry is not written (see the variant),
    /// and the writer stays usable. [`Error::WriterClosed`] once the writer
    /// is terminated, removed or poisoned by a failed write or sync (which
    /// this call may report: a batch it completed had failed);
    /// [`Error::Closed`] once the store was closed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = shapebuf::Store::open(dir.path()).unwrap();
    /// use shapebuf::{Error, LogOffset};
    /// let mut w = store.writer("s").unwrap();
    /// w.append(LogOffset::new(5, 0), "x").unwrap();
    /// let err = w.append(LogOffset::new(4, 9), "y").unwrap_err();
    /// assert!(matches!(err, Error::NonIncreasingOffset { .. }));
    /// ```
    pub fn append(&mut self, offset: LogOffset, payload: impl Into<Bytes>) -> Result<()> {
        let payload = payload.into();
        self.with(|c| c.append(offset, payload))
    }

    /// Commits the open transaction: every appended entry becomes visible to
    /// readers. Returns the offset of the last committed entry.
    ///
    /// The committed entries become durable within
    /// [`Config::flush_interval`](crate::Config::flush_interval) (plus one
    /// sync) with no further call: the commit queues the shape on the
    /// store's dirty queue, and the store's timer thread flushes it (see
    /// docs/protocol.md, "Durable without host calls"). Only a commit that
    /// leaves the shape newly dirty touches the queue.
    ///
    /// # Errors
    ///
    /// [`Error::WriterClosed`] once the writer is terminated, removed or
    /// poisoned; [`Error::Closed`] once the store was closed.
    ///
    /// ```
    /// # fn main() -> shapebuf::Result<()> {
    /// use std::time::Duration;
    /// use shapebuf::{Config, LogOffset, Store};
    /// let dir = tempfile::tempdir().unwrap();
    /// let cfg = Config { flush_interval: Duration::from_millis(20), ..Config::default() };
    /// let store = Store::open_with(dir.path(), cfg)?;
    /// let mut w = store.writer("s")?;
    /// w.append(LogOffset::new(1, 0), "a")?;
    /// w.commit()?;
    /// // No flush, no tick: the store's timer makes it durable.
    /// let mut waited = 0;
    /// while w.flushed().committed != LogOffset::new(1, 0) {
    ///     assert!(waited < 2_000, "durable within the interval");
    ///     std::thread::sleep(Duration::from_millis(5));
    ///     waited += 5;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn commit(&mut self) -> Result<LogOffset> {
        let mut st = self.shared.lock();
        let core = st
            .core
            .as_mut()
            .expect("a writer's core lives as long as the writer");
        let last = core.commit()?;
        if st.mark() {
            let inner = Arc::clone(&st.core.as_ref().expect("just used").inner);
            drop(st);
            let me = Arc::downgrade(&self.shared) as Weak<dyn Visit>;
            inner.queue_dirty(me);
        }
        Ok(last)
    }

    /// Writes every appended entry not yet on disk (and the commit point) to
    /// the log, syncs it, publishes the new persisted count and trims the
    /// in-memory buffer. Returns what is now durable.
    ///
    /// # Errors
    ///
    /// [`Error::WriterClosed`] once the writer is terminated, removed or
    /// poisoned; [`Error::Io`] from the write or sync (which poisons the
    /// writer: what was committed stays readable, and a new writer recovers
    /// the shape and writes it); [`Error::Closed`] once the store was
    /// closed.
    pub fn flush(&mut self) -> Result<Flushed> {
        self.with(Core::flush)
    }

    /// Flushes if anything is pending and the flush interval
    /// ([`Config::flush_interval`](crate::Config::flush_interval)) has passed
    /// since the last flush. Hosts call this from their own timer; returns
    /// whether it flushed. If this thread retired segments (trims,
    /// terminates) since its last hand-off, it also hands them to the epoch
    /// collector at once (otherwise that happens per 64 KiB retired) and
    /// runs a collection. It completes a background flush that finished.
    ///
    /// Not needed for durability: the store's timer flushes committed data
    /// within the interval by itself (see [`ShapeWriter::commit`]).
    ///
    /// # Errors
    ///
    /// as [`ShapeWriter::flush`].
    pub fn tick(&mut self) -> Result<bool> {
        self.with(Core::tick)
    }

    /// Flushes, then unpublishes and retires the buffer. Readers that hold
    /// the retired segment finish their reads from it; later readers find
    /// the shape dead and read from disk. Never waits for readers. An open
    /// (uncommitted) transaction is discarded.
    ///
    /// On error the writer is dropped without retiring: the buffer stays
    /// readable, and the next writer recovers the shape.
    ///
    /// # Errors
    ///
    /// as [`ShapeWriter::flush`].
    pub fn terminate(mut self) -> Result<Flushed> {
        self.take().terminate()
    }

    /// Removes the shape (see [`Store::remove`](crate::Store::remove)):
    /// what this writer appended is discarded with it, flushed or not (the
    /// flush tracker hears of a loss if anything was past the last durable
    /// commit, as for a dropped writer). Readers that are reading finish
    /// exactly; everything after gets [`Error::ShapeRemoved`].
    ///
    /// On error the writer is dropped and the shape stays as it was.
    ///
    /// # Errors
    ///
    /// [`Error::WriterClosed`] once the writer is terminated or removed;
    /// [`Error::Io`] from writing the tombstone (the shape stays as it
    /// was); [`Error::Closed`] once the store was closed.
    pub fn remove(mut self) -> Result<crate::Removed> {
        self.take().remove()
    }

    /// Entries appended so far (committed or not) and the last offset.
    pub fn last_appended(&self) -> LogOffset {
        self.with(|c| c.last_appended())
    }

    /// What is durable now.
    pub fn flushed(&self) -> Flushed {
        self.with(|c| c.flushed())
    }
}

impl Drop for ShapeWriter {
    fn drop(&mut self) {
        // Out of the shared state first: the core's drop may wait for a
        // batch in flight, and must not do so under the lock the
        // background flush takes.
        let core = self.shared.lock().core.take();
        drop(core);
    }
}

/// The background flush's view of the core (see `dirty.rs`).
impl Pending for Core {
    fn due(&self) -> bool {
        // A closed writer's commits still go to disk (the close's own
        // visits); a failed, terminated or removed one's never do.
        matches!(self.broken, None | Some(Broken::Closed))
            && self.committed > self.durable.committed
    }

    fn in_flight(&self) -> Option<Arc<Done>> {
        self.in_flight.clone()
    }

    fn hand_over(&mut self) -> (Job, Arc<Done>) {
        let job = self.take_batch();
        let done = Arc::clone(self.in_flight.as_ref().expect("just handed over"));
        (job, done)
    }

    fn settle(&mut self) -> Result<()> {
        Core::settle(self, false)
    }

    fn settle_wait(&mut self) -> Result<()> {
        Core::settle(self, true)
    }

    fn close(&mut self) {
        if self.broken.is_none() {
            self.broken = Some(Broken::Closed);
        }
    }
}

/// Why a writer cannot be used any more (one byte: a writer is what a live
/// shape costs its host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Broken {
    /// A write or sync of its log failed.
    Failed,
    Terminated,
    Removed,
    /// Its store was closed ([`Error::Closed`]).
    Closed,
}

impl Broken {
    fn reason(self) -> &'static str {
        match self {
            Broken::Failed => "a write or sync of its log failed; open a new writer to recover",
            Broken::Terminated => "terminated",
            Broken::Removed => "removed",
            Broken::Closed => "the store was closed",
        }
    }
}

/// What a flush made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flushed {
    /// The last entry on disk (it may belong to an open transaction).
    pub persisted: LogOffset,
    /// The last entry of the last transaction whose commit is on disk.
    pub committed: LogOffset,
}

impl Drop for Core {
    fn drop(&mut self) {
        // The batch in flight lands before the claim is released (a
        // successor's take-over must not race its append). A failure has
        // nobody to report to: the log stays poisoned and the successor
        // heals it and rewrites what was committed (from the segment, which
        // was never trimmed past the failed batch).
        if let Err(e) = self.settle(true) {
            tracing::error!(
                shape = %display_id(&self.slot.id),
                error = %crate::error::Chain(&e),
                "background flush of a dropped writer failed; the next writer recovers the shape"
            );
        }
        if !matches!(self.broken, Some(Broken::Terminated | Broken::Removed)) {
            // Anything past the last durable commit is not durable: report
            // it so the global durable offset does not wait for this shape.
            if self.appended > self.durable.committed {
                self.tracked.crashed(self.durable.last_committed);
            } else {
                self.tracked.remove();
            }
            // Live tail: waiters learn that the writer is gone.
            self.slot
                .waiters
                .close(Close::WriterDropped, &self.inner.wake);
        }
        if !matches!(self.broken, Some(Broken::Terminated | Broken::Removed))
            && self.appended > self.durable.entries
        {
            debug!(
                shape = %display_id(&self.slot.id),
                unflushed = self.appended - self.durable.entries,
                "writer dropped without terminate; the next writer will recover the shape"
            );
        }
    }
}

/// The last entry a dropped predecessor appended but never committed, in
/// memory or flushed to disk; `None` if it left no open transaction. Only a
/// dropped writer leaves its segment published: after terminate (segment
/// retired) or a restart (none installed yet) an uncommitted tail on disk
/// was discarded on purpose or by the crash, and is not torn.
fn torn_tail(token: &WriterToken<Open>, committed: u64, durable: &Durable) -> Option<LogOffset> {
    let guard = token.buffer().pin();
    let seg = token.current(&guard)?;
    let len = seg.published_len();
    let in_memory =
        (len > 0 && seg.start() + len as u64 > committed).then(|| seg.get(len - 1).offset);
    drop(guard);
    // Entries on disk past every commit, in memory too (a transaction
    // flushed before its commit and committed in memory only is whole).
    let on_disk = (durable.entries > committed).then_some(durable.last);
    in_memory.max(on_disk)
}
