//! The handles the loom models in `loom-tests/` drive (compiled only under
//! `cfg(loom)`; not part of the public API).
//!
//! Everything here forwards to the shipping code: [`Shape`] is a
//! [`Buffer`] (with its own epoch collector, as each crossbeam loom model
//! builds its own), [`Writer`] its [`WriterToken`], [`Shape::read`] the
//! reader's `read`, [`Writer::flush`] and [`Writer::take_over`] the
//! protocols `ShapeWriter` runs, and [`Writer::hand_over`] /
//! [`Writer::settle`] its automatic flush split around the store flusher's
//! job ([`FlushJob`], run on a thread of the model's own). The only
//! model-side piece is [`MemDisk`], the shape's log as a loom-visible
//! in-memory structure.
//!
//! A failing twin is the same model with a [`Fault`] injected into the
//! buffer: the shipping code then takes the faulty path at one point.
//!
//! The flush tracker's model (model 5) drives the public [`FlushTracker`]
//! itself; [`flush_tracker`] builds one with a [`TrackerFault`] injected.

use std::sync::Arc;

use crate::durable::Durable;
use crate::log::dir_sync::Ticket;
use crate::log::Appended;
use crate::shape::buffer::{Buffer, Reclaim, Sizing, WriterToken};
use crate::shape::lazy::Lazy;
use crate::shape::reader::{self, Disk};
use crate::shape::segment::{Batch, Segment};
use crate::store::dirty::{visit_all, Pending, Shared, Visit};
use crate::store::flusher::{Done, Job, Sink};
use crate::sync::{lock, Epoch, Mutex, Ordering};
use crate::{Entry, FlushTracker, LogOffset, ReadOutcome, Result};

pub use crate::flush_tracker::TrackerFault;
pub use crate::shape::buffer::Fault;
pub use crate::shape::lazy::Fault as LazyFault;
pub use crate::store::dirty::Fault as DirtyFault;
pub use crate::store::registry::Fault as RegistryFault;

/// One shape's in-memory buffer, with its own epoch domain.
pub struct Shape {
    buffer: Arc<Buffer>,
    reclaim: Arc<Reclaim>,
}

impl Shape {
    /// An empty shape (nothing committed, no segment) with `fault` injected.
    pub fn new(fault: Fault) -> Shape {
        Shape::recovered(fault, 0)
    }

    /// A shape recovered from a log whose first `committed` entries are
    /// committed (`Buffer::new`, as `Slot::open` builds it), no segment.
    pub fn recovered(fault: Fault, committed: u64) -> Shape {
        let reclaim = Reclaim::new(Epoch::new());
        let buffer = Buffer::new(committed, Arc::clone(&reclaim)).with_fault(fault);
        Shape {
            buffer: Arc::new(buffer),
            reclaim,
        }
    }

    /// Takes the writer claim ([`WriterToken::claim`]).
    pub fn claim(&self) -> Option<Writer> {
        WriterToken::claim(&self.buffer).map(|token| Writer {
            token,
            durable: Durable::default(),
            sizing: Sizing {
                min_capacity: 1,
                retain_bytes: 0,
            },
        })
    }

    /// The reader's `read` of `(after, upto]`, with `disk` as the log.
    pub fn read(&self, disk: &MemDisk, after: LogOffset, upto: LogOffset) -> ReadOutcome {
        reader::read(&self.buffer, disk, after, upto).expect("the model disk does not fail")
    }

    /// The committed watermark (Acquire).
    pub fn committed(&self) -> u64 {
        self.buffer.committed()
    }

    /// The persisted watermark (Acquire).
    pub fn persisted(&self) -> u64 {
        self.buffer.persisted()
    }

    /// Whether a segment is published.
    pub fn is_live(&self) -> bool {
        self.buffer.is_live()
    }

    /// Bytes of retired segments not yet freed.
    pub fn retired_bytes(&self) -> u64 {
        self.reclaim.retired.get()
    }

    /// Pins and flushes the epoch `rounds` times, as `Store::collect` does:
    /// each round may advance the epoch once and run the deferred frees
    /// whose readers have all unpinned (a free needs two advances).
    pub fn collect(&self, rounds: usize) {
        for _ in 0..rounds {
            self.buffer.pin().flush();
        }
    }
}

/// The single writer of a [`Shape`] ([`WriterToken`]). Dropping it releases
/// the claim.
pub struct Writer {
    token: WriterToken,
    /// What this writer last made durable (`ShapeWriter`'s `durable`).
    durable: Durable,
    /// How its flushes trim (no durable tail unless [`Writer::retain`]).
    sizing: Sizing,
}

impl Writer {
    /// Flushes keep the newest durable entries costing at most `bytes` (see
    /// `Config::retain_bytes`; an entry with an empty payload costs 48).
    pub fn retain(&mut self, bytes: usize) {
        self.sizing.retain_bytes = bytes;
    }

    /// Publishes a fresh segment at entry `start` (offset `base` before it).
    pub fn install(&mut self, start: u64, base: LogOffset, capacity: usize) {
        let guard = self.token.buffer().pin();
        self.token.install(start, base, capacity, &guard);
    }

    /// Appends `entry` (growing the segment when full).
    pub fn append(&mut self, entry: Entry) {
        self.token.append(entry);
    }

    /// Publishes the committed watermark.
    pub fn commit(&mut self, committed: u64) {
        self.token.commit(committed);
    }

    /// Records `persisted` entries as durable (the take-over publishes it
    /// before installing; tests set it up with this).
    pub fn publish_persisted(&mut self, persisted: u64) {
        self.token.publish_persisted(persisted);
    }

    /// The flush protocol ([`WriterToken::flush_with`], the steps `ShapeWriter` runs): the
    /// entries appended since this writer's last flush, up to `to`, and the
    /// commit point `commit` go to `disk`; then `persisted` is published and
    /// the segment trimmed.
    pub fn flush(&mut self, disk: &MemDisk, to: u64, commit: Option<(u64, LogOffset)>) {
        let written = self
            .token
            .flush_with(self.durable.entries, to, self.sizing, |pending| {
                disk.append(pending, commit).map(|a| a.durable)
            });
        self.durable = written.expect("the model disk does not fail").0;
    }

    /// `ShapeWriter`'s hand-over of an automatic flush (step 1 of the
    /// flush protocol, [`WriterToken::take_pending`]): the entries appended
    /// since this writer's last flush, up to `to`, with the commit point
    /// `commit`, as the [`FlushJob`] a flusher thread runs against `disk`.
    /// The writer completes it with [`Writer::settle`].
    pub fn hand_over(
        &mut self,
        disk: &Arc<MemDisk>,
        to: u64,
        commit: Option<(u64, LogOffset)>,
    ) -> (FlushJob, InFlight) {
        let pending = self.token.take_pending(self.durable.entries, to);
        self.token.inject_before_write(to, &pending, self.sizing);
        let (job, done) = Job::new(Arc::clone(disk) as Arc<dyn Sink>, pending, commit);
        (FlushJob(job), InFlight(done))
    }

    /// `ShapeWriter::settle`: once the batch in flight is durable (waiting
    /// for it with `wait`), publishes `persisted` and trims (steps 3 and 4,
    /// [`WriterToken::complete_flush`]). Returns whether it completed.
    pub fn settle(&mut self, in_flight: &InFlight, wait: bool) -> bool {
        let Some(out) = in_flight.0.take(wait) else {
            return false;
        };
        let durable = out.expect("the model disk does not fail");
        self.token.complete_flush(&durable, self.sizing);
        self.durable = durable;
        true
    }

    /// The tail of `ShapeWriter::terminate` (after its flush): unpublish and
    /// retire the segment, then hand it to the collector (as production
    /// does once its writer thread has retired 64 KiB: `Epoch::retired`).
    pub fn retire(&mut self) {
        let guard = self.token.buffer().pin();
        self.token.retire(&guard);
        guard.flush();
    }

    /// `ShapeWriter::open`'s take-over ([`WriterToken::take_over`]) against
    /// `disk`.
    pub fn take_over(&mut self, disk: &MemDisk) {
        let durable = disk.durable();
        let done = self.token.take_over(
            durable,
            1,
            |missing, commit| disk.append(missing, Some(commit)).map(|a| a.durable),
            || disk.discard_uncommitted(),
        );
        self.durable = done.expect("the model disk does not fail");
    }
}

/// A cold shape: its state is `slot.rs`'s [`Lazy`], opened by the first
/// user (recovering a [`Shape`] from its [`MemDisk`], as `Slot::open`
/// recovers a `Buffer` from the log), which the model's threads race to be.
pub struct Cold {
    lazy: Lazy<Shape, ()>,
    disk: Arc<MemDisk>,
    fault: Fault,
    /// A pin for the lazy state's borrows (its own domain; nothing closes
    /// the state in the model, so nothing is deferred).
    epoch: Epoch,
    /// Recoveries run (instrumentation: a std atomic, invisible to loom).
    recoveries: std::sync::atomic::AtomicUsize,
}

impl Cold {
    /// A closed shape whose log is `disk`, with `lazy` injected into its
    /// state and `fault` into the buffer a recovery builds.
    pub fn new(disk: Arc<MemDisk>, fault: Fault, lazy: LazyFault) -> Cold {
        Cold {
            lazy: Lazy::closed(()).with_fault(lazy),
            disk,
            fault,
            epoch: Epoch::new(),
            recoveries: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// `Slot::open`: recovers the shape unless a racing user did (or does).
    pub fn open(&self) {
        self.lazy
            .open(|()| {
                self.recoveries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let committed = self.disk.durable().committed;
                Ok::<_, ()>(Shape::recovered(self.fault, committed))
            })
            .expect("the model recovery does not fail");
    }

    /// The open shape, as `Slot::get_arc` returns it (`None` while closed).
    pub fn get(&self) -> Option<Arc<Shape>> {
        self.lazy.get_arc(&self.epoch.pin())
    }

    /// Whether `shape` is the published state (`Slot::is_current`).
    pub fn is_current(&self, shape: &Shape) -> bool {
        self.lazy
            .get(&self.epoch.pin())
            .is_some_and(|s| std::ptr::eq(s.get(), shape))
    }

    /// How many recoveries ran.
    pub fn recoveries(&self) -> usize {
        self.recoveries.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The shape's log.
    pub fn disk(&self) -> &Arc<MemDisk> {
        &self.disk
    }
}

/// The store's registry (`registry.rs`) with its own epoch domain: slots
/// inserted, looked up under a pin, and removed (their registry reference
/// handed to the epoch collector). Under loom a slot's drop *poisons* it
/// (writes its canary through a loom cell) and keeps it allocated, so a
/// lookup that reads a slot freed under it is a causality violation loom
/// reports, not undefined behaviour in the test process.
pub struct Registry {
    inner: crate::store::registry::Registry,
    epoch: Epoch,
}

impl Registry {
    /// An empty registry with `fault` injected.
    pub fn new(fault: RegistryFault) -> Registry {
        Registry {
            inner: crate::store::registry::Registry::new().with_fault(fault),
            epoch: Epoch::new(),
        }
    }

    /// Creates the slot of `id` (a new shape: nothing on disk).
    pub fn insert(&self, id: &[u8]) {
        let stem = crate::log::catalog::Stem {
            hash: crate::log::catalog::fnv1a(id),
            n: 0,
        };
        self.inner
            .get_or_insert_with(id, &self.epoch.pin(), || {
                Ok::<_, ()>(crate::store::slot::Slot::new(
                    id,
                    stem,
                    crate::store::slot::Closed::New,
                ))
            })
            .expect("the model's insert does not fail");
    }

    /// A reader's lookup (`Store::read`'s): pins, finds the slot, reads its
    /// id and its canary, unpins. Returns whether it found the slot.
    pub fn lookup(&self, id: &[u8]) -> bool {
        let guard = self.epoch.pin();
        match self.inner.find(id, &guard) {
            Some(slot) => {
                assert_eq!(&slot.id[..], id);
                assert_eq!(slot.canary(), 0, "a lookup read a freed slot");
                true
            }
            None => false,
        }
    }

    /// `Store::remove`'s unpublish: removes the slot of `id` and hands the
    /// registry's reference to the collector. Returns whether it was there.
    pub fn remove(&self, id: &[u8]) -> bool {
        let guard = self.epoch.pin();
        let Some(slot) = self
            .inner
            .find(id, &guard)
            .map(crate::store::registry::share)
        else {
            return false;
        };
        let removed = self.inner.remove(&slot, &guard);
        drop(guard);
        removed
    }

    /// Runs `rounds` collections of the registry's domain.
    pub fn collect(&self, rounds: usize) {
        for _ in 0..rounds {
            self.epoch.pin().flush();
        }
    }
}

/// A flush batch handed over by [`Writer::hand_over`]: the store
/// flusher's job (`flusher::Job`), which the model runs on its own thread.
pub struct FlushJob(Job);

impl FlushJob {
    /// Writes the batch and reports the result to its [`InFlight`]
    /// (`Job::run`, as a flusher thread does).
    pub fn run(self) {
        self.0.run(&Default::default());
    }
}

/// The writer's side of a batch in flight (`flusher::Done`).
pub struct InFlight(Arc<Done>);

/// A shape's log as a loom-visible in-memory structure (a loom mutex around
/// the entries and the commit point, like `ShapeLog`'s own lock around its
/// files). [`Disk::read`] asserts that every entry the reader asks for is
/// there: the reader asks only for entries its protocol says are durable,
/// so a short disk is a protocol violation.
#[derive(Default)]
pub struct MemDisk {
    state: Mutex<DiskState>,
}

#[derive(Default)]
struct DiskState {
    entries: Vec<Entry>,
    committed: u64,
}

impl MemDisk {
    /// An empty log.
    pub fn new() -> MemDisk {
        MemDisk::default()
    }

    /// The durable entries (committed or not), in order.
    pub fn entries(&self) -> Vec<Entry> {
        lock(&self.state).entries.clone()
    }

    fn durable_of(s: &DiskState) -> Durable {
        let last_of = |n: u64| match n {
            0 => LogOffset::ZERO,
            n => s.entries[(n - 1) as usize].offset,
        };
        let entries = s.entries.len() as u64;
        Durable {
            entries,
            last: last_of(entries),
            committed: s.committed,
            last_committed: last_of(s.committed),
        }
    }

    /// What the log holds.
    fn durable(&self) -> Durable {
        Self::durable_of(&lock(&self.state))
    }

    fn discard_uncommitted(&self) -> Result<Durable> {
        let mut s = lock(&self.state);
        let keep = s.committed as usize;
        s.entries.truncate(keep);
        Ok(Self::durable_of(&s))
    }
}

impl Sink for MemDisk {
    /// Appends entries and a commit point; durable on return (the model has
    /// no separate sync, and no directory).
    fn append(&self, pending: &Batch, commit: Option<(u64, LogOffset)>) -> Result<Appended> {
        let mut s = lock(&self.state);
        s.entries.extend(pending.iter().cloned());
        if let Some((n, _)) = commit {
            assert!(n <= s.entries.len() as u64, "commit point beyond the log");
            s.committed = n;
        }
        Ok(Appended {
            durable: Self::durable_of(&s),
            dir: None,
        })
    }

    fn dir_durable(&self, _ticket: Ticket) -> Result<Durable> {
        unreachable!("the model log creates no files")
    }
}

impl Disk for MemDisk {
    fn read(
        &self,
        after: LogOffset,
        upto: LogOffset,
        limit: u64,
        out: &mut Vec<Entry>,
    ) -> Result<()> {
        let s = lock(&self.state);
        assert!(
            limit <= s.entries.len() as u64,
            "disk short: the reader needs entries below {limit} from disk, the log holds {}",
            s.entries.len()
        );
        out.extend(
            s.entries[..limit as usize]
                .iter()
                .filter(|e| e.offset > after && e.offset <= upto)
                .cloned(),
        );
        Ok(())
    }
}

/// A bare segment, to check its own publication contract (model 4): one
/// [`SegmentWriter`] pushes, any number of [`SegmentReader`]s read below
/// the published length.
pub fn segment(capacity: usize, fault: Fault) -> (SegmentWriter, SegmentReader) {
    let seg = Segment::new(0, LogOffset::ZERO, capacity);
    let seg = match fault {
        Fault::LenRelaxed => seg.with_len_store(Ordering::Relaxed),
        _ => seg,
    };
    let seg = Arc::new(seg);
    (SegmentWriter(Arc::clone(&seg)), SegmentReader(seg))
}

/// The one pusher of a bare segment (not `Clone`).
pub struct SegmentWriter(Arc<Segment>);

impl SegmentWriter {
    /// `Segment::push`; false when full.
    pub fn push(&mut self, entry: Entry) -> bool {
        // SAFETY: `SegmentWriter` is unique per segment (`segment` makes one
        // and it is not `Clone`) and the segment is never retired.
        unsafe { self.0.push(entry) }.is_ok()
    }
}

/// A reader of a bare segment.
#[derive(Clone)]
pub struct SegmentReader(Arc<Segment>);

impl SegmentReader {
    /// The entries below the published length (Acquire), read in place.
    pub fn read(&self) -> Vec<Entry> {
        let n = self.0.published_len();
        (0..n).map(|i| self.0.get(i).clone()).collect()
    }
}

/// A [`FlushTracker`] (the shipping one) with `fault` injected.
pub fn flush_tracker(fault: TrackerFault) -> FlushTracker {
    FlushTracker::with_fault(fault)
}

/// The background flush's handshake (model 10, `dirty.rs`): a model writer
/// core behind the shipping [`Shared`] lock, driven through the shipping
/// [`visit_all`]. The core is [`Writer`]'s token with the counters
/// `ShapeWriter` keeps, against a [`MemDisk`].
pub struct BgWriter(Arc<Shared<ModelCore>>);

/// A batch the model's writer handed over itself (its automatic flush),
/// for a flusher thread of the model to run.
pub struct BgJob(Job);

impl BgJob {
    /// Writes the batch and reports it (`Job::run`).
    pub fn run(self) {
        self.0.run(&Default::default());
    }
}

/// `ShapeWriter`'s state, reduced to what the flush needs.
pub struct ModelCore {
    token: WriterToken,
    disk: Arc<MemDisk>,
    durable: Durable,
    appended: u64,
    last: LogOffset,
    committed: u64,
    last_committed: LogOffset,
    in_flight: Option<Arc<Done>>,
    closed: bool,
}

impl ModelCore {
    fn sizing() -> Sizing {
        Sizing {
            min_capacity: 1,
            retain_bytes: 0,
        }
    }

    /// `ShapeWriter::settle`.
    fn settle_with(&mut self, wait: bool) {
        let Some(done) = &self.in_flight else { return };
        let Some(out) = done.take(wait) else { return };
        self.in_flight = None;
        let durable = out.expect("the model disk does not fail");
        self.token.complete_flush(&durable, Self::sizing());
        self.durable = durable;
    }

    /// `ShapeWriter::take_batch`.
    fn take_batch(&mut self) -> (Job, Arc<Done>) {
        let commit = (self.committed > self.durable.committed)
            .then_some((self.committed, self.last_committed));
        let pending = self.token.take_pending(self.durable.entries, self.appended);
        let (job, done) = Job::new(Arc::clone(&self.disk) as Arc<dyn Sink>, pending, commit);
        self.in_flight = Some(Arc::clone(&done));
        (job, done)
    }
}

impl Pending for ModelCore {
    fn due(&self) -> bool {
        self.committed > self.durable.committed
    }

    fn in_flight(&self) -> Option<Arc<Done>> {
        self.in_flight.clone()
    }

    fn hand_over(&mut self) -> (Job, Arc<Done>) {
        self.take_batch()
    }

    fn settle(&mut self) -> Result<()> {
        self.settle_with(false);
        Ok(())
    }

    fn settle_wait(&mut self) -> Result<()> {
        self.settle_with(true);
        Ok(())
    }

    fn close(&mut self) {
        self.closed = true;
    }
}

impl BgWriter {
    /// A fresh shape's writer against `disk` (a one-slot segment at the
    /// start of the log), with `fault` injected into the handshake.
    pub fn new(shape: &Shape, disk: &Arc<MemDisk>, fault: DirtyFault) -> BgWriter {
        let mut w = shape.claim().expect("first claim");
        w.install(0, LogOffset::ZERO, 1);
        let core = ModelCore {
            token: w.token,
            disk: Arc::clone(disk),
            durable: Durable::default(),
            appended: 0,
            last: LogOffset::ZERO,
            committed: 0,
            last_committed: LogOffset::ZERO,
            in_flight: None,
            closed: false,
        };
        BgWriter(Arc::new(Shared::new(core, fault)))
    }

    fn with<R>(&self, f: impl FnOnce(&mut ModelCore) -> R) -> R {
        let mut st = self.0.lock();
        f(st.core.as_mut().expect("live writer"))
    }

    /// `ShapeWriter::append`, without its automatic flush: completes a
    /// finished batch, then appends.
    pub fn append(&self, entry: Entry) {
        self.with(|c| {
            assert!(!c.closed, "append on a closed writer");
            c.settle_with(false);
            c.last = entry.offset;
            c.token.append(entry);
            c.appended += 1;
        });
    }

    /// `ShapeWriter::append`'s automatic flush: hands everything pending
    /// over (unless a batch is in flight) for a flusher thread to run.
    pub fn auto_flush(&self) -> Option<BgJob> {
        self.with(|c| {
            c.settle_with(false);
            if c.in_flight.is_some() {
                return None;
            }
            Some(BgJob(c.take_batch().0))
        })
    }

    /// `ShapeWriter::commit`: commits, and returns whether the shape must
    /// be pushed onto the dirty queue ([`State::mark`](crate::store::dirty::State::mark)).
    pub fn commit(&self) -> bool {
        let mut st = self.0.lock();
        let c = st.core.as_mut().expect("live writer");
        c.settle_with(false);
        if c.appended > c.committed {
            c.token.commit(c.appended);
            c.committed = c.appended;
            c.last_committed = c.last;
        }
        st.mark()
    }

    /// `ShapeWriter::flush`, with the job run on this thread
    /// (`flush_threads` 0).
    pub fn flush(&self) {
        self.with(|c| {
            c.settle_with(true);
            if c.appended > c.durable.entries || c.committed > c.durable.committed {
                c.take_batch().0.run(&Default::default());
                c.settle_with(true);
            }
        });
    }

    /// `ShapeWriter::terminate`: takes the core out of the shared state,
    /// flushes and retires.
    pub fn terminate(&self) {
        let core = self.0.lock().core.take();
        let mut c = core.expect("live writer");
        c.settle_with(true);
        if c.appended > c.durable.entries || c.committed > c.durable.committed {
            c.take_batch().0.run(&Default::default());
            c.settle_with(true);
        }
        let guard = c.token.buffer().pin();
        c.token.retire(&guard);
        drop(guard);
    }

    /// This writer as the store's queue holds it.
    pub fn queued(&self) -> BgQueued {
        BgQueued(Arc::clone(&self.0) as Arc<dyn Visit>)
    }
}

/// A shape on the model's dirty queue.
#[derive(Clone)]
pub struct BgQueued(Arc<dyn Visit>);

/// One wake-up of the store's timer thread over `shapes` (the shipping
/// [`visit_all`], running the jobs it hands over on this thread); returns
/// the shapes to queue again.
pub fn background_flush(shapes: Vec<BgQueued>) -> Vec<BgQueued> {
    let (again, r) = visit_all(shapes.into_iter().map(|q| q.0).collect(), false, |jobs| {
        jobs.into_iter().for_each(|j| j.run(&Default::default()));
    });
    r.expect("the model disk does not fail");
    again.into_iter().map(BgQueued).collect()
}

/// `Store::close`'s visit of `shapes` (one round).
pub fn close_flush(shapes: Vec<BgQueued>) -> Vec<BgQueued> {
    let (again, r) = visit_all(shapes.into_iter().map(|q| q.0).collect(), true, |jobs| {
        jobs.into_iter().for_each(|j| j.run(&Default::default()));
    });
    r.expect("the model disk does not fail");
    again.into_iter().map(BgQueued).collect()
}

impl MemDisk {
    /// The committed count of the log.
    pub fn committed(&self) -> u64 {
        lock(&self.state).committed
    }
}
