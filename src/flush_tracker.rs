//! The flush tracker: a global durable offset that is aligned to
//! transaction boundaries and never blocked by idle, crashed or restarted
//! shapes.
//!
//! A host engine may release upstream resources (its write-ahead log, a
//! replication slot's confirmed flush position) only up to the offset that
//! every shape has made durable. [`FlushTracker`] computes that offset:
//!
//! - the host tells it, per committed transaction, which shapes received
//!   entries of it and the last offset each received ([`Transaction`];
//!   fragments may arrive in several calls, only the commit counts);
//! - each shape's writer reports the last offset it made durable
//!   ([`TrackedShape::flushed`]). A shape that made every entry it received
//!   of transaction `T` durable is done with `T`, even if `T`'s global end is
//!   higher: the rest of `T` did not touch it;
//! - the *global durable offset* ([`FlushTracker::global`]) is the end of the
//!   last committed transaction that every live shape is done with, and
//!   every earlier one too. A shape with nothing pending never holds it
//!   back; with nothing pending at all it is the last commit seen;
//! - a shape whose writer went away is removed ([`TrackedShape::remove`],
//!   [`TrackedShape::crashed`]); if it still had data that was not durable,
//!   the loss is reported ([`Loss`]) and the offset moves past it;
//! - subscribers ([`FlushTracker::subscribe`], [`FlushTracker::on_event`])
//!   are told when the offset advances and when a shape lost data.
//!
//! A [`Store`](crate::Store) owns one tracker
//! ([`Store::flush_tracker`](crate::Store::flush_tracker)) that its writers
//! feed; the tracker also works on its own, for hosts that track their own
//! writers.
//!
//! ```
//! use shapebuf::{FlushTracker, LogOffset};
//! let tracker = FlushTracker::new();
//! let a = tracker.register("a");
//! let b = tracker.register("b");
//! // Transaction 7 ends at 7/9; shape a received 7/2, shape b 7/4 and 7/5.
//! let mut tx = tracker.transaction();
//! tx.received("a", LogOffset::new(7, 2));
//! tx.received("b", LogOffset::new(7, 5));
//! tx.commit(LogOffset::new(7, 9))?;
//! assert_eq!(tracker.global(), LogOffset::ZERO);
//! a.flushed(LogOffset::new(7, 2));
//! assert_eq!(tracker.global(), LogOffset::ZERO); // b still holds 7
//! b.flushed(LogOffset::new(7, 5));
//! assert_eq!(tracker.global(), LogOffset::new(7, 9)); // aligned to the end of 7
//! # Ok::<(), shapebuf::Error>(())
//! ```
//!
//! # Structure
//!
//! - Per committed transaction that some shape still waits on: a *hold*
//!   `(end, prev, waiting)`: its global end, the end of the commit before
//!   it, and how many shapes have not made their entries of it durable.
//! - Per shape ([`TrackedShape`]): its durable offset (the highest reported)
//!   and a FIFO of its pending transactions, each a hold and the last
//!   offset the shape received of it. Guarded by the shape's own mutex.
//! - The *pending set*: ordered, `end -> prev`, one key per transaction with
//!   `waiting > 0`. The global offset is the `prev` of the smallest key, or
//!   the last commit when the set is empty. It is a lock-free skip list
//!   (crossbeam-skiplist's `base::SkipList` on the tracker's own epoch
//!   collector); under `cfg(loom)` (or `--cfg shapebuf_btree_pending`, to
//!   benchmark it) a mutex around a `BTreeMap`, which loom can see.
//! - A sharded id -> shape map, for [`Transaction::received`] and
//!   [`FlushTracker::register`].
//!
//! A flush report pops the transactions it covers from the shape's FIFO and
//! decrements their holds: O(1) each, no search. Only the report that takes
//! a hold to zero removes its key from the set: O(log n) in the number of
//! pending transactions, and near the front of the set when shapes flush in
//! log order. A commit inserts one key (at the back). A first design with
//! one key per pending *shape* (moved on every report) cost 3 µs per report
//! at 300,000 shapes: two cache-cold searches each time; docs/benchmarks.md
//! has the figures of both pending-set structures.
//!
//! The skip list is used only through `insert`, `remove` (each returned
//! reference released at once) and `front`: never a range iteration, whose
//! references crossbeam-skiplist 0.1.3 leaks (crossbeam issue 1178).
//!
//! # Invariants
//!
//! 1. A hold's `waiting` is the number of FIFO entries that refer to it,
//!    plus one while its commit binds shapes. Its key is in the pending set
//!    from the commit (if any shape waits then) until the report or
//!    removal that takes `waiting` to zero, which removes it exactly once.
//! 2. A FIFO entry is pending iff `last > durable`: a report pops every
//!    leading entry it covers, and a commit binds nothing to a shape that
//!    already has `last` durable (the first fragment flushed before the
//!    commit: failure 3 of DESIGN.md).
//! 3. Keys only enter the set above every key in it (commits strictly
//!    increase), so its minimum never decreases and the global offset never
//!    does either.
//! 4. The global offset is a commit end (or the starting offset) and every
//!    live shape is done with every transaction at or below it (safety); it
//!    reaches the last commit once no shape has anything pending (liveness).
//! 5. A removed shape holds nothing, is out of the id map, and ignores every
//!    later call; a transaction binds a shape at [`Transaction::received`]
//!    time, so what a crashed writer received is never charged to its
//!    replacement.
//!
//! # Orderings
//!
//! Lock order: commit -> shape -> pending set; commit -> head -> marks ->
//! pending set; id-map shard -> shape. No lock is taken while a later one in
//! its chain is held.
//!
//! - A commit binds its shapes (incrementing `waiting` while its own hold
//!   keeps it above zero), inserts its key, releases its hold, and only
//!   then takes the head lock to publish `last_commit`. The advance step
//!   reads `last_commit` and the set's minimum under the head lock, so the
//!   key of every published commit that still has waiters is in the set: an
//!   empty set really means "the last commit is done".
//! - `waiting` is decremented with AcqRel (as `Arc`'s count): the thread
//!   that takes it to zero has seen every other shape's report and removes
//!   the key; the advance that follows (head lock) happens after them all.
//! - A report that removed a key peeks at the minimum and takes the head
//!   lock to advance only if the minimum moved past that key. Between the
//!   removal and the peek there is a SeqCst fence: two reporters removing
//!   the last two keys at the front form a store-load (Dekker) pattern, and
//!   the fences guarantee that at least one sees the other's removal, so an
//!   advance is never missed. (The mutex stand-in is sequentially
//!   consistent already.)
//! - Events are emitted under the head lock, so subscribers see advances in
//!   increasing order. A removal emits its loss and only then, under the
//!   same hold of the head lock, releases the removed shape's holds: every
//!   advance past the lost data needs those releases, so it reaches
//!   subscribers after the loss. (Releasing first, under the shape's lock,
//!   let another thread's advance overtake the loss: found by the loom
//!   model, `loom-tests/tests/flush_tracker.rs`.)
//! - The pending-shape count is approximate and Relaxed.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Bytes;
use tracing::warn;

use crate::id::display as display_id;
use crate::sync::{fence, lock, mpsc, AtomicUsize, Mutex, Ordering};
use crate::{Error, LogOffset, Result};

/// Picks an id's shard.
#[cfg(not(loom))]
type ShardHasher = std::hash::RandomState;
/// Under loom, fixed keys: which shard (which loom mutex) a shape lands in
/// must be the same in every execution, or loom's replay of a schedule
/// diverges.
#[cfg(loom)]
type ShardHasher = std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;

/// A deliberate protocol error that the loom model of the tracker (model 5)
/// injects to check that loom catches it (its failing twins). Production
/// has none.
#[cfg(loom)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TrackerFault {
    /// The shipping protocol.
    #[default]
    None,
    /// A report or removal drops its count of a hold Relaxed instead of
    /// AcqRel: the thread that takes it to zero does not acquire the other
    /// shapes' reports.
    ReleaseRelaxed,
    /// A report pops and releases the transactions it covers, unlocks the
    /// shape, and only then records the shape's durable offset: a commit
    /// that binds the shape in between charges it a transaction it has
    /// already made durable.
    ReleaseBeforeDurable,
    /// A release takes the hold's key out of the pending set before its
    /// decrement, and puts it back if the count did not reach zero.
    KeyRemovedEarly,
    /// A removal takes the shape's FIFO but forgets to release its holds.
    RemoveKeepsHolds,
    /// A removal releases its holds before it emits the loss (under the
    /// head lock): another thread's advance past the lost data can reach
    /// subscribers first.
    LossAfterRelease,
    /// A commit binds a shape that was removed after the commit looked it
    /// up.
    BindIgnoresRemoved,
    /// An advance reads the pending set's minimum before it takes the head
    /// lock (a stale snapshot against a fresh `last_commit`).
    StaleSnapshot,
}

/// Shards of the id -> shape map.
const SHARDS: usize = 64;

/// One shard of the id -> shape map: the shapes themselves, hashed by id
/// (an entry is one pointer; the id lives in the shape, shared with the
/// store's slot: a million tracked shapes cost no second copy of each id).
type IdMap = hashbrown::HashTable<Arc<ShapeState>>;

/// The pending-set key: a transaction's global end.
type Key = LogOffset;

/// Tracks which shapes still hold committed transactions that are not
/// durable, and derives the global durable offset. Cheap to clone (shared);
/// `Send + Sync`: writers report from their own threads.
///
/// ```
/// use shapebuf::{FlushEvent, FlushTracker, LogOffset};
/// let tracker = FlushTracker::new();
/// let events = tracker.subscribe();
/// let s = tracker.register("s");
/// tracker.commit(LogOffset::new(3, 7), [("s", LogOffset::new(3, 1))])?;
/// s.flushed(LogOffset::new(3, 1));
/// assert_eq!(tracker.global(), LogOffset::new(3, 7));
/// assert!(matches!(events.try_recv(), Ok(FlushEvent::Advanced(o)) if o == LogOffset::new(3, 7)));
/// # Ok::<(), shapebuf::Error>(())
/// ```
#[derive(Clone)]
pub struct FlushTracker {
    inner: Arc<Inner>,
}

struct Inner {
    shapes: Box<[Mutex<IdMap>]>,
    hasher: ShardHasher,
    pending: PendingSet,
    /// Shapes with a non-empty FIFO (approximate while others update it).
    pending_shapes: AtomicUsize,
    /// The last commit end: serialises commits and checks their order.
    commit: Mutex<LogOffset>,
    /// Serialises advances and event delivery.
    head: Mutex<Subscribers>,
    /// What [`FlushTracker::global`] reads; written under `head`.
    marks: Mutex<Marks>,
    #[cfg(loom)]
    fault: TrackerFault,
}

#[derive(Clone, Copy)]
struct Marks {
    last_commit: LogOffset,
    global: LogOffset,
}

type Callback = Box<dyn FnMut(&FlushEvent) + Send>;

#[derive(Default)]
struct Subscribers {
    channels: Vec<mpsc::Sender<FlushEvent>>,
    callbacks: Vec<Callback>,
}

impl Subscribers {
    fn emit(&mut self, event: FlushEvent) {
        self.channels.retain(|c| c.send(event.clone()).is_ok());
        for f in &mut self.callbacks {
            f(&event);
        }
    }
}

struct ShapeState {
    id: Arc<[u8]>,
    progress: Mutex<Progress>,
}

impl ShapeState {
    fn new(id: Arc<[u8]>) -> Arc<Self> {
        Arc::new(ShapeState {
            id,
            progress: Mutex::new(Progress {
                durable: LogOffset::ZERO,
                fifo: VecDeque::new(),
                removed: false,
            }),
        })
    }
}

struct Progress {
    /// The highest offset reported durable.
    durable: LogOffset,
    /// Committed transactions with entries not durable yet, oldest first.
    fifo: VecDeque<PendingTx>,
    removed: bool,
}

/// A committed transaction that shapes may still wait on.
struct TxHold {
    /// The transaction's global end: its key in the pending set.
    end: LogOffset,
    /// The end of the commit before it.
    prev: LogOffset,
    /// FIFO entries referring to it, plus one while its commit binds.
    waiting: AtomicUsize,
}

struct PendingTx {
    hold: Arc<TxHold>,
    /// The last offset this shape received of the transaction.
    last: LogOffset,
}

/// What the tracker tells its subscribers.
///
/// ```
/// use shapebuf::{FlushEvent, FlushTracker, LogOffset};
/// let tracker = FlushTracker::new();
/// let events = tracker.subscribe();
/// let s = tracker.register("s");
/// tracker.commit(LogOffset::new(1, 0), [("s", LogOffset::new(1, 0))])?;
/// s.crashed(LogOffset::ZERO); // its writer died before flushing 1/0
/// match events.try_recv() {
///     Ok(FlushEvent::Lost(loss)) => assert_eq!(&loss.shape[..], b"s"),
///     other => panic!("expected a loss, got {other:?}"),
/// }
/// assert!(matches!(events.try_recv(), Ok(FlushEvent::Advanced(_))));
/// # Ok::<(), shapebuf::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlushEvent {
    /// The global durable offset advanced to this offset.
    Advanced(LogOffset),
    /// A shape was removed with data that was not durable. Emitted before
    /// any advance past that data.
    Lost(Loss),
}

/// A shape removed while it had data that was not durable.
///
/// ```
/// use shapebuf::{FlushTracker, LogOffset};
/// let tracker = FlushTracker::new();
/// let s = tracker.register("s");
/// s.flushed(LogOffset::new(1, 4));
/// tracker.commit(LogOffset::new(2, 9), [("s", LogOffset::new(2, 3))])?;
/// let loss = s.crashed(LogOffset::new(1, 4)).expect("first removal");
/// assert_eq!(loss.after, LogOffset::new(1, 4));
/// assert_eq!(loss.received_through, Some(LogOffset::new(2, 3)));
/// # Ok::<(), shapebuf::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loss {
    /// The shape's id.
    pub shape: Bytes,
    /// Everything the shape received up to this offset is durable; entries
    /// after it may be lost.
    pub after: LogOffset,
    /// The last offset of a committed transaction the shape was known to
    /// have received and not made durable (`None` if the tracker knew of
    /// none: the writer died inside a transaction that had not committed).
    pub received_through: Option<LogOffset>,
}

impl Default for FlushTracker {
    fn default() -> Self {
        FlushTracker::new()
    }
}

impl std::fmt::Debug for FlushTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let marks = *lock(&self.inner.marks);
        f.debug_struct("FlushTracker")
            .field("global", &marks.global)
            .field("last_commit", &marks.last_commit)
            .field("pending_transactions", &self.inner.pending.len())
            .finish()
    }
}

impl FlushTracker {
    /// A tracker whose global offset starts at [`LogOffset::ZERO`].
    ///
    /// ```
    /// let t = shapebuf::FlushTracker::new();
    /// assert_eq!(t.global(), shapebuf::LogOffset::ZERO);
    /// ```
    pub fn new() -> Self {
        FlushTracker::starting_at(LogOffset::ZERO)
    }

    /// A tracker whose global offset (and last commit) starts at `offset`,
    /// e.g. the position a host resumes its upstream log from. Commits must
    /// end above it.
    ///
    /// ```
    /// use shapebuf::{FlushTracker, LogOffset};
    /// let t = FlushTracker::starting_at(LogOffset::new(40, 0));
    /// assert_eq!(t.global(), LogOffset::new(40, 0));
    /// assert!(t.commit(LogOffset::new(39, 0), [] as [(&str, LogOffset); 0]).is_err());
    /// ```
    pub fn starting_at(offset: LogOffset) -> Self {
        FlushTracker {
            inner: Arc::new(Inner {
                shapes: (0..SHARDS).map(|_| Mutex::new(IdMap::new())).collect(),
                hasher: ShardHasher::default(),
                pending: PendingSet::new(),
                pending_shapes: AtomicUsize::new(0),
                commit: Mutex::new(offset),
                head: Mutex::new(Subscribers::default()),
                marks: Mutex::new(Marks {
                    last_commit: offset,
                    global: offset,
                }),
                #[cfg(loom)]
                fault: TrackerFault::None,
            }),
        }
    }

    /// A tracker with `fault` injected (loom models only).
    #[cfg(loom)]
    pub(crate) fn with_fault(fault: TrackerFault) -> Self {
        let mut t = FlushTracker::new();
        if let Some(inner) = Arc::get_mut(&mut t.inner) {
            inner.fault = fault;
        }
        t
    }

    /// Starts tracking shape `id` (its writer opened) and returns its
    /// handle. If `id` is already tracked, returns the existing handle.
    /// Entries a shape receives count only while it is registered.
    ///
    /// ```
    /// let t = shapebuf::FlushTracker::new();
    /// let s = t.register("s");
    /// assert_eq!(&s.id()[..], b"s");
    /// assert_eq!(t.shapes(), 1);
    /// ```
    pub fn register(&self, id: impl AsRef<[u8]>) -> TrackedShape {
        let id = id.as_ref();
        self.register_with(id, || Arc::from(id))
    }

    /// [`FlushTracker::register`] with the id already shared (the store's
    /// writers pass their log's: no copy).
    pub(crate) fn register_shared(&self, id: &Arc<[u8]>) -> TrackedShape {
        self.register_with(id, || Arc::clone(id))
    }

    fn register_with(&self, id: &[u8], shared: impl FnOnce() -> Arc<[u8]>) -> TrackedShape {
        let hash = self.inner.hash(id);
        let mut shard = lock(self.inner.shard(hash));
        match shard.entry(hash, |s| *s.id == *id, |s| self.inner.hash(&s.id)) {
            hashbrown::hash_table::Entry::Occupied(mut e) => {
                if !lock(&e.get().progress).removed {
                    return self.handle(Arc::clone(e.get()));
                }
                // A removed shape that is still listed (its removal has not
                // unlisted it yet): this registration replaces it.
                let state = ShapeState::new(shared());
                *e.get_mut() = Arc::clone(&state);
                drop(shard);
                self.handle(state)
            }
            hashbrown::hash_table::Entry::Vacant(e) => {
                let state = ShapeState::new(shared());
                e.insert(Arc::clone(&state));
                drop(shard);
                self.handle(state)
            }
        }
    }

    /// The handle of shape `id` if it is tracked.
    ///
    /// ```
    /// let t = shapebuf::FlushTracker::new();
    /// assert!(t.get("s").is_none());
    /// t.register("s");
    /// assert!(t.get("s").is_some());
    /// ```
    pub fn get(&self, id: impl AsRef<[u8]>) -> Option<TrackedShape> {
        self.inner.lookup(id.as_ref()).map(|s| self.handle(s))
    }

    fn handle(&self, state: Arc<ShapeState>) -> TrackedShape {
        TrackedShape {
            inner: Arc::clone(&self.inner),
            state,
        }
    }

    /// Starts collecting a transaction's fragments: which shapes received
    /// entries of it, up to which offset. Nothing is tracked until
    /// [`Transaction::commit`]; dropping it discards it (a rolled-back
    /// transaction).
    ///
    /// ```
    /// use shapebuf::{FlushTracker, LogOffset};
    /// let t = FlushTracker::new();
    /// t.register("s");
    /// let mut tx = t.transaction();
    /// tx.received("s", LogOffset::new(2, 0)); // fragment 1
    /// tx.received("s", LogOffset::new(2, 5)); // fragment 2
    /// tx.commit(LogOffset::new(2, 8))?;
    /// assert_eq!(t.pending_shapes(), 1);
    /// # Ok::<(), shapebuf::Error>(())
    /// ```
    pub fn transaction(&self) -> Transaction<'_> {
        Transaction {
            tracker: self,
            bound: Vec::new(),
        }
    }

    /// Records a committed transaction ending at `end` in one call: each
    /// `(id, last)` says shape `id` received entries of it up to `last`.
    /// Same as [`FlushTracker::transaction`], one `received` per pair, then
    /// `commit`. Returns the global offset after the commit.
    ///
    /// ```
    /// use shapebuf::{FlushTracker, LogOffset};
    /// let t = FlushTracker::new();
    /// // No tracked shape received anything: the offset moves at once.
    /// assert_eq!(t.commit(LogOffset::new(1, 3), [] as [(&str, LogOffset); 0])?, LogOffset::new(1, 3));
    /// # Ok::<(), shapebuf::Error>(())
    /// ```
    pub fn commit<I, S>(&self, end: LogOffset, received: I) -> Result<LogOffset>
    where
        I: IntoIterator<Item = (S, LogOffset)>,
        S: AsRef<[u8]>,
    {
        let mut tx = self.transaction();
        for (id, last) in received {
            tx.received(id, last);
        }
        tx.commit(end)
    }

    /// The global durable offset: the end of the last committed transaction
    /// that every live shape has made durable (and every one before it).
    ///
    /// ```
    /// let t = shapebuf::FlushTracker::new();
    /// assert_eq!(t.global(), shapebuf::LogOffset::ZERO);
    /// ```
    pub fn global(&self) -> LogOffset {
        lock(&self.inner.marks).global
    }

    /// The end of the last committed transaction seen.
    ///
    /// ```
    /// use shapebuf::{FlushTracker, LogOffset};
    /// let t = FlushTracker::new();
    /// t.commit(LogOffset::new(5, 0), [] as [(&str, LogOffset); 0])?;
    /// assert_eq!(t.last_commit(), LogOffset::new(5, 0));
    /// # Ok::<(), shapebuf::Error>(())
    /// ```
    pub fn last_commit(&self) -> LogOffset {
        lock(&self.inner.marks).last_commit
    }

    /// The number of shapes holding at least one committed transaction that
    /// is not durable (approximate while others update it).
    ///
    /// ```
    /// let t = shapebuf::FlushTracker::new();
    /// assert_eq!(t.pending_shapes(), 0);
    /// ```
    pub fn pending_shapes(&self) -> usize {
        self.inner.pending_shapes.load(Ordering::Relaxed)
    }

    /// The number of committed transactions that some shape has not made
    /// durable (approximate while others update it). The global offset is
    /// just below the oldest of them.
    ///
    /// ```
    /// use shapebuf::{FlushTracker, LogOffset};
    /// let t = FlushTracker::new();
    /// t.register("s");
    /// t.commit(LogOffset::new(1, 0), [("s", LogOffset::new(1, 0))])?;
    /// t.commit(LogOffset::new(2, 0), [("s", LogOffset::new(2, 0))])?;
    /// assert_eq!((t.pending_transactions(), t.pending_shapes()), (2, 1));
    /// # Ok::<(), shapebuf::Error>(())
    /// ```
    pub fn pending_transactions(&self) -> usize {
        self.inner.pending.len()
    }

    /// The number of tracked (registered, not removed) shapes.
    ///
    /// ```
    /// let t = shapebuf::FlushTracker::new();
    /// t.register("a").remove();
    /// assert_eq!(t.shapes(), 0);
    /// ```
    pub fn shapes(&self) -> usize {
        self.inner.shapes.iter().map(|s| lock(s).len()).sum()
    }

    /// A channel that receives every later [`FlushEvent`], in order. Drop
    /// the receiver to unsubscribe.
    ///
    /// ```
    /// use shapebuf::{FlushEvent, FlushTracker, LogOffset};
    /// let t = FlushTracker::new();
    /// let rx = t.subscribe();
    /// t.commit(LogOffset::new(1, 0), [] as [(&str, LogOffset); 0])?;
    /// assert_eq!(rx.try_recv().ok(), Some(FlushEvent::Advanced(LogOffset::new(1, 0))));
    /// # Ok::<(), shapebuf::Error>(())
    /// ```
    pub fn subscribe(&self) -> mpsc::Receiver<FlushEvent> {
        let (tx, rx) = mpsc::channel();
        lock(&self.inner.head).channels.push(tx);
        rx
    }

    /// Calls `f` on every later [`FlushEvent`], in order, on the thread that
    /// caused it.
    ///
    /// # Contract
    ///
    /// `f` runs while the tracker's event lock is held: it may read the
    /// tracker ([`FlushTracker::global`], [`FlushTracker::last_commit`],
    /// [`FlushTracker::pending_shapes`]) but must not commit, report, remove
    /// or subscribe (that deadlocks), and should return quickly.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use shapebuf::{FlushEvent, FlushTracker, LogOffset};
    /// let t = FlushTracker::new();
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let s2 = Arc::clone(&seen);
    /// t.on_event(move |e| s2.lock().unwrap().push(e.clone()));
    /// t.commit(LogOffset::new(1, 0), [] as [(&str, LogOffset); 0])?;
    /// assert_eq!(*seen.lock().unwrap(), vec![FlushEvent::Advanced(LogOffset::new(1, 0))]);
    /// # Ok::<(), shapebuf::Error>(())
    /// ```
    pub fn on_event(&self, f: impl FnMut(&FlushEvent) + Send + 'static) {
        lock(&self.inner.head).callbacks.push(Box::new(f));
    }

    /// Runs pending reclamation of the pending set's removed entries on this
    /// thread (it also runs on its own as threads use the tracker).
    ///
    /// ```
    /// let t = shapebuf::FlushTracker::new();
    /// t.collect();
    /// ```
    pub fn collect(&self) {
        self.inner.pending.collect();
    }
}

impl Inner {
    fn hash(&self, id: &[u8]) -> u64 {
        self.hasher.hash_one(id)
    }

    /// The shard of an id with hash `hash`: from bits 40.. of the hash,
    /// which the shard's table does not use for its buckets (low bits) nor
    /// its tags (top 7), so the choice of shard does not skew them.
    fn shard(&self, hash: u64) -> &Mutex<IdMap> {
        &self.shapes[(hash >> 40) as usize % SHARDS]
    }

    fn lookup(&self, id: &[u8]) -> Option<Arc<ShapeState>> {
        let hash = self.hash(id);
        let shard = lock(self.shard(hash));
        let s = shard.find(hash, |s| *s.id == *id)?;
        let removed = lock(&s.progress).removed;
        (!removed).then(|| Arc::clone(s))
    }

    /// Charges committed transaction `hold` to `shape`, which received its
    /// entries up to `last`. Called by the commit, holding the commit lock
    /// and one count of `hold`.
    fn bind(&self, shape: &ShapeState, hold: &Arc<TxHold>, last: LogOffset) {
        let mut guard = lock(&shape.progress);
        let p = &mut *guard;
        #[cfg(not(loom))]
        let skip_removed = p.removed;
        #[cfg(loom)]
        let skip_removed = p.removed && self.fault != TrackerFault::BindIgnoresRemoved;
        if skip_removed {
            return;
        }
        match p.fifo.back_mut() {
            Some(back) if Arc::ptr_eq(&back.hold, hold) => {
                // Another fragment's report for the same transaction.
                back.last = back.last.max(last);
                return;
            }
            Some(_) => {}
            None if last <= p.durable => return, // flushed before the commit
            None => {
                self.pending_shapes.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Relaxed: the commit's own count keeps `waiting` above zero until
        // it releases it (AcqRel) after every bind.
        hold.waiting.fetch_add(1, Ordering::Relaxed);
        p.fifo.push_back(PendingTx {
            hold: Arc::clone(hold),
            last,
        });
    }

    /// Drops one count of `hold`; the last one removes its key. Returns the
    /// removed key.
    fn release(&self, hold: &TxHold) -> Option<LogOffset> {
        // AcqRel: the decrement that reaches zero acquires every earlier
        // one (pairs with their Release), like `Arc`'s drop.
        let order = Ordering::AcqRel;
        #[cfg(loom)]
        let order = match self.fault {
            TrackerFault::ReleaseRelaxed => Ordering::Relaxed,
            TrackerFault::KeyRemovedEarly => {
                self.pending.remove(&hold.end);
                if hold.waiting.fetch_sub(1, order) != 1 {
                    self.pending.insert(hold.end, hold.prev);
                    return None;
                }
                return Some(hold.end);
            }
            _ => order,
        };
        if hold.waiting.fetch_sub(1, order) != 1 {
            return None;
        }
        self.pending.remove(&hold.end);
        Some(hold.end)
    }

    /// After removing keys, the smallest of which is `removed`: advances if
    /// the set's minimum moved past it.
    fn after_removal(&self, removed: LogOffset) {
        // SeqCst: orders the removal before the peek below against the same
        // pair in another reporter (Dekker; see # Orderings), so of two
        // reporters emptying the front, at least one sees both removals.
        fence(Ordering::SeqCst);
        if self.pending.front().is_none_or(|(end, _)| end > removed) {
            self.advance(None, None);
        }
    }

    /// Records that `shape` has everything up to `durable` durable.
    fn flushed(&self, shape: &ShapeState, durable: LogOffset) {
        #[cfg(loom)]
        if self.fault == TrackerFault::ReleaseBeforeDurable {
            return self.flushed_release_before_durable(shape, durable);
        }
        let removed = {
            let mut p = lock(&shape.progress);
            if p.removed || durable <= p.durable {
                return;
            }
            p.durable = durable;
            self.pop_covered(&mut p, durable)
        };
        if let Some(end) = removed {
            self.after_removal(end);
        }
    }

    /// Pops and releases the leading FIFO entries that `durable` covers
    /// (the shape's lock held). Returns the first key removed: the FIFO is
    /// in commit order, so it is the smallest.
    fn pop_covered(&self, p: &mut Progress, durable: LogOffset) -> Option<LogOffset> {
        if p.fifo.front().is_none_or(|t| t.last > durable) {
            return None;
        }
        let mut removed = None;
        while let Some(t) = p.fifo.pop_front_if_covered(durable) {
            if let Some(end) = self.release(&t.hold) {
                removed.get_or_insert(end);
            }
        }
        if p.fifo.is_empty() {
            self.pending_shapes.fetch_sub(1, Ordering::Relaxed);
            if p.fifo.capacity() > 16 {
                p.fifo = VecDeque::new();
            }
        }
        removed
    }

    /// [`TrackerFault::ReleaseBeforeDurable`]: `flushed` in two critical
    /// sections, releasing first.
    #[cfg(loom)]
    fn flushed_release_before_durable(&self, shape: &ShapeState, durable: LogOffset) {
        let removed = {
            let mut p = lock(&shape.progress);
            if p.removed || durable <= p.durable {
                return;
            }
            self.pop_covered(&mut p, durable)
        };
        {
            let mut p = lock(&shape.progress);
            p.durable = p.durable.max(durable);
        }
        if let Some(end) = removed {
            self.after_removal(end);
        }
    }

    /// Removes `shape`; reports a loss if it had data that was not durable,
    /// or if `crash` says its writer died with some (`crash` is what was
    /// durable then).
    fn remove(&self, shape: &Arc<ShapeState>, crash: Option<LogOffset>) -> Option<Loss> {
        let (loss, fifo) = {
            let mut p = lock(&shape.progress);
            if p.removed {
                return None;
            }
            // From here on no commit binds the shape and no report pops its
            // FIFO: the holds taken out below are this thread's to release.
            p.removed = true;
            if let Some(d) = crash {
                p.durable = p.durable.max(d);
            }
            let fifo = std::mem::take(&mut p.fifo);
            let received_through = fifo.iter().map(|t| t.last).max();
            if !fifo.is_empty() {
                self.pending_shapes.fetch_sub(1, Ordering::Relaxed);
            }
            let loss = (crash.is_some() || received_through.is_some()).then(|| Loss {
                shape: Bytes::copy_from_slice(&shape.id),
                after: p.durable,
                received_through,
            });
            (loss, fifo)
        };
        #[cfg(loom)]
        let fifo = match self.fault {
            TrackerFault::RemoveKeepsHolds => VecDeque::new(),
            TrackerFault::LossAfterRelease => {
                for t in &fifo {
                    self.release(&t.hold);
                }
                VecDeque::new()
            }
            _ => fifo,
        };
        {
            let hash = self.hash(&shape.id);
            let mut shard = lock(self.shard(hash));
            if let Ok(e) = shard.find_entry(hash, |s| Arc::ptr_eq(s, shape)) {
                e.remove();
            }
        }
        if let Some(loss) = &loss {
            warn!(
                shape = %display_id(&loss.shape),
                after = %loss.after,
                received_through = ?loss.received_through,
                "shape removed with data that was not durable"
            );
        }
        // The holds are released under the head lock, after the loss is
        // emitted: no advance past the lost data can be emitted before it.
        // Always advance here (removal is rare), so the fence-and-peek of
        // `after_removal` is not needed: the head lock orders it.
        debug_assert!(loss.is_some() || fifo.is_empty(), "holds without a loss");
        self.advance(None, loss.clone().map(|l| (l, fifo)));
        loss
    }

    /// Publishes a commit and/or a loss (then releases the lost shape's
    /// holds), recomputes the global offset and tells subscribers. Returns
    /// the global offset.
    fn advance(
        &self,
        commit: Option<LogOffset>,
        lost: Option<(Loss, VecDeque<PendingTx>)>,
    ) -> LogOffset {
        #[cfg(loom)]
        let stale = (self.fault == TrackerFault::StaleSnapshot).then(|| self.pending.front());
        let mut head = lock(&self.head);
        if let Some((loss, holds)) = lost {
            head.emit(FlushEvent::Lost(loss));
            for t in &holds {
                self.release(&t.hold);
            }
        }
        let mut marks = lock(&self.marks);
        if let Some(end) = commit {
            marks.last_commit = end;
        }
        // Read under the head lock: see # Orderings.
        #[cfg(not(loom))]
        let front = self.pending.front();
        #[cfg(loom)]
        let front = stale.unwrap_or_else(|| self.pending.front());
        let candidate = match front {
            Some((_, prev)) => prev,
            None => marks.last_commit,
        };
        if candidate <= marks.global {
            return marks.global;
        }
        marks.global = candidate;
        drop(marks);
        head.emit(FlushEvent::Advanced(candidate));
        candidate
    }
}

/// One shape as the tracker sees it: the handle its writer reports through.
/// Obtained from [`FlushTracker::register`] or [`FlushTracker::get`]. Cheap
/// to clone; after the shape is removed every call is ignored.
///
/// ```
/// use shapebuf::{FlushTracker, LogOffset};
/// let t = FlushTracker::new();
/// let s = t.register("s");
/// t.commit(LogOffset::new(4, 2), [("s", LogOffset::new(4, 0))])?;
/// assert!(s.is_pending());
/// s.flushed(LogOffset::new(4, 0));
/// assert!(!s.is_pending());
/// assert_eq!(s.remove(), None); // terminated after a successful flush
/// # Ok::<(), shapebuf::Error>(())
/// ```
#[derive(Clone)]
pub struct TrackedShape {
    inner: Arc<Inner>,
    state: Arc<ShapeState>,
}

impl std::fmt::Debug for TrackedShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = lock(&self.state.progress);
        f.debug_struct("TrackedShape")
            .field("shape", &display_id(&self.state.id))
            .field("durable", &p.durable)
            .field("pending", &p.fifo.len())
            .field("removed", &p.removed)
            .finish()
    }
}

impl TrackedShape {
    /// The shape's id.
    ///
    /// ```
    /// let t = shapebuf::FlushTracker::new();
    /// assert_eq!(&t.register("s").id()[..], b"s");
    /// ```
    pub fn id(&self) -> &[u8] {
        &self.state.id
    }

    /// Reports that every entry of this shape up to `durable` is durable
    /// (lower reports than an earlier one are ignored). `durable` may lie
    /// inside a transaction that has not committed yet.
    ///
    /// ```
    /// use shapebuf::{FlushTracker, LogOffset};
    /// let t = FlushTracker::new();
    /// let s = t.register("s");
    /// s.flushed(LogOffset::new(9, 3)); // a first fragment flushed early
    /// t.commit(LogOffset::new(9, 7), [("s", LogOffset::new(9, 3))])?;
    /// assert_eq!(t.global(), LogOffset::new(9, 7));
    /// # Ok::<(), shapebuf::Error>(())
    /// ```
    pub fn flushed(&self, durable: LogOffset) {
        self.inner.flushed(&self.state, durable);
    }

    /// The highest offset reported durable.
    ///
    /// ```
    /// use shapebuf::{FlushTracker, LogOffset};
    /// let s = FlushTracker::new().register("s");
    /// s.flushed(LogOffset::new(1, 1));
    /// s.flushed(LogOffset::new(1, 0));
    /// assert_eq!(s.durable(), LogOffset::new(1, 1));
    /// ```
    pub fn durable(&self) -> LogOffset {
        lock(&self.state.progress).durable
    }

    /// Whether the shape holds a committed transaction it has not made
    /// durable.
    ///
    /// ```
    /// let s = shapebuf::FlushTracker::new().register("s");
    /// assert!(!s.is_pending());
    /// ```
    pub fn is_pending(&self) -> bool {
        !lock(&self.state.progress).fifo.is_empty()
    }

    /// Whether the shape was removed.
    ///
    /// ```
    /// let s = shapebuf::FlushTracker::new().register("s");
    /// s.remove();
    /// assert!(s.is_removed());
    /// ```
    pub fn is_removed(&self) -> bool {
        lock(&self.state.progress).removed
    }

    /// Removes the shape: its writer terminated. If it still held committed
    /// data that was not durable, that is reported as a [`Loss`] (to
    /// subscribers too) and returned; after a successful final flush it
    /// returns `None`. Either way the global offset no longer waits for it.
    /// A second removal does nothing and returns `None`.
    ///
    /// ```
    /// use shapebuf::{FlushTracker, LogOffset};
    /// let t = FlushTracker::new();
    /// let s = t.register("s");
    /// t.commit(LogOffset::new(2, 0), [("s", LogOffset::new(2, 0))])?;
    /// assert!(s.remove().is_some()); // 2/0 was never reported durable
    /// assert_eq!(t.global(), LogOffset::new(2, 0));
    /// # Ok::<(), shapebuf::Error>(())
    /// ```
    pub fn remove(&self) -> Option<Loss> {
        self.inner.remove(&self.state, None)
    }

    /// Removes the shape because its writer died (was dropped or crashed)
    /// with data after `durable` that was not durable, possibly of a
    /// transaction that has not committed. Always reports a [`Loss`] on the
    /// first call; `None` if the shape was already removed.
    ///
    /// ```
    /// use shapebuf::{FlushTracker, LogOffset};
    /// let t = FlushTracker::new();
    /// let s = t.register("s");
    /// let loss = s.crashed(LogOffset::new(3, 1)).expect("reported");
    /// assert_eq!((loss.after, loss.received_through), (LogOffset::new(3, 1), None));
    /// assert!(s.crashed(LogOffset::new(3, 1)).is_none());
    /// ```
    pub fn crashed(&self, durable: LogOffset) -> Option<Loss> {
        self.inner.remove(&self.state, Some(durable))
    }
}

/// A transaction being received: which tracked shapes got entries of it and
/// up to which offset. Built by [`FlushTracker::transaction`]; only
/// [`Transaction::commit`] makes it count.
///
/// ```
/// use shapebuf::{FlushTracker, LogOffset};
/// let t = FlushTracker::new();
/// let s = t.register("s");
/// let mut tx = t.transaction();
/// assert!(tx.received("s", LogOffset::new(1, 0)));
/// assert!(!tx.received("unknown", LogOffset::new(1, 1)));
/// drop(tx); // rolled back: nothing is tracked
/// assert!(!s.is_pending());
/// ```
pub struct Transaction<'t> {
    tracker: &'t FlushTracker,
    bound: Vec<(Arc<ShapeState>, LogOffset)>,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("bound", &self.bound.len())
            .finish()
    }
}

impl Transaction<'_> {
    /// Records that shape `id` received entries of this transaction up to
    /// `last` (call once per fragment, or once per entry). The shape is
    /// bound now: if its writer is removed before the commit, what it
    /// received here is not charged to a replacement. Returns `false` (and
    /// records nothing) if `id` is not tracked.
    ///
    /// ```
    /// use shapebuf::{FlushTracker, LogOffset};
    /// let t = FlushTracker::new();
    /// t.register("s");
    /// let mut tx = t.transaction();
    /// assert!(tx.received("s", LogOffset::new(6, 2)));
    /// ```
    pub fn received(&mut self, id: impl AsRef<[u8]>, last: LogOffset) -> bool {
        let id = id.as_ref();
        if let Some((s, l)) = self.bound.last_mut() {
            if *s.id == *id && !lock(&s.progress).removed {
                *l = (*l).max(last);
                return true;
            }
        }
        match self.tracker.inner.lookup(id) {
            Some(s) => {
                self.bound.push((s, last));
                true
            }
            None => false,
        }
    }

    /// Commits the transaction, whose last global offset is `end`: every
    /// bound shape that has not yet made its entries of it durable now holds
    /// the global offset below `end`. Returns the global offset after the
    /// commit.
    ///
    /// # Errors
    ///
    /// [`Error::CommitOutOfOrder`] if `end` is not above the previous
    /// commit; [`Error::ReceivedBeyondCommit`] if a shape received an offset
    /// above `end`. Nothing is recorded then.
    ///
    /// ```
    /// use shapebuf::{Error, FlushTracker, LogOffset};
    /// let t = FlushTracker::new();
    /// t.register("s");
    /// let mut tx = t.transaction();
    /// tx.received("s", LogOffset::new(2, 9));
    /// assert!(matches!(tx.commit(LogOffset::new(2, 1)), Err(Error::ReceivedBeyondCommit { .. })));
    /// ```
    pub fn commit(self, end: LogOffset) -> Result<LogOffset> {
        let inner = &self.tracker.inner;
        let mut last_commit = lock(&inner.commit);
        if end <= *last_commit {
            return Err(Error::CommitOutOfOrder {
                last: *last_commit,
                got: end,
            });
        }
        if let Some((_, received)) = self.bound.iter().find(|(_, l)| *l > end) {
            return Err(Error::ReceivedBeyondCommit {
                received: *received,
                end,
            });
        }
        let hold = Arc::new(TxHold {
            end,
            prev: *last_commit,
            waiting: AtomicUsize::new(1), // the commit's own count
        });
        for (shape, last) in &self.bound {
            inner.bind(shape, &hold, *last);
        }
        // Relaxed: a stale value above 1 only inserts a key that the release
        // below removes; 1 means no FIFO entry refers to the hold any more
        // (this thread's increments are visible to its own load), and none
        // can be added, so no report will ever look for the key.
        let waited = hold.waiting.load(Ordering::Relaxed) > 1;
        if waited {
            inner.pending.insert(end, hold.prev);
        }
        if hold.waiting.fetch_sub(1, Ordering::AcqRel) == 1 && waited {
            inner.pending.remove(&end);
        }
        *last_commit = end;
        // Still under the commit lock, so commits publish in order.
        Ok(inner.advance(Some(end), None))
    }
}

trait PopCovered {
    /// Pops the first entry if `durable` covers it.
    fn pop_front_if_covered(&mut self, durable: LogOffset) -> Option<PendingTx>;
}

impl PopCovered for VecDeque<PendingTx> {
    fn pop_front_if_covered(&mut self, durable: LogOffset) -> Option<PendingTx> {
        if self.front()?.last <= durable {
            self.pop_front()
        } else {
            None
        }
    }
}

pub(crate) use pending::PendingSet;

/// The skip-list pending set (production).
#[cfg(not(any(loom, shapebuf_btree_pending)))]
mod pending {
    use crossbeam_skiplist::base::SkipList;

    use super::Key;
    use crate::sync::Epoch;
    use crate::LogOffset;

    /// Pin-and-flush rounds of [`PendingSet::collect`]: each moves this
    /// thread's garbage to the collector and frees what is two epochs old.
    const COLLECT_ROUNDS: usize = 8;

    /// Transaction end -> `prev` of every transaction some shape waits on,
    /// on the tracker's own epoch collector (so a host's long pins on the
    /// global collector never hold its memory, nor ours the host's).
    pub(crate) struct PendingSet {
        list: SkipList<Key, LogOffset>,
        epoch: Epoch,
    }

    impl PendingSet {
        pub(crate) fn new() -> Self {
            let epoch = Epoch::new();
            // A guard pinned through a registered handle always names its
            // collector; the skip list checks every guard against it.
            let collector = epoch
                .pin()
                .collector()
                .cloned()
                .expect("a pinned guard belongs to a collector");
            PendingSet {
                list: SkipList::new(collector),
                epoch,
            }
        }

        pub(crate) fn insert(&self, key: Key, prev: LogOffset) {
            let guard = self.epoch.pin();
            // The returned reference must be released, or the node leaks.
            self.list.insert(key, prev, &guard).release(&guard);
        }

        pub(crate) fn remove(&self, key: &Key) {
            let guard = self.epoch.pin();
            if let Some(e) = self.list.remove(key, &guard) {
                e.release(&guard);
            }
        }

        /// The smallest key and its value. `front` borrows the guard and
        /// takes no reference count, so there is nothing to release.
        pub(crate) fn front(&self) -> Option<(Key, LogOffset)> {
            let guard = self.epoch.pin();
            self.list.front(&guard).map(|e| (*e.key(), *e.value()))
        }

        pub(crate) fn len(&self) -> usize {
            self.list.len()
        }

        pub(crate) fn collect(&self) {
            for _ in 0..COLLECT_ROUNDS {
                self.epoch.pin().flush();
            }
        }
    }
}

/// The mutex + `BTreeMap` pending set: loom-visible stand-in, and the
/// benchmark's alternative (`--cfg shapebuf_btree_pending`). Same contract.
#[cfg(any(loom, shapebuf_btree_pending))]
mod pending {
    use std::collections::BTreeMap;

    use super::Key;
    use crate::sync::{lock, Mutex};
    use crate::LogOffset;

    pub(crate) struct PendingSet {
        map: Mutex<BTreeMap<Key, LogOffset>>,
    }

    impl PendingSet {
        pub(crate) fn new() -> Self {
            PendingSet {
                map: Mutex::new(BTreeMap::new()),
            }
        }

        pub(crate) fn insert(&self, key: Key, prev: LogOffset) {
            lock(&self.map).insert(key, prev);
        }

        pub(crate) fn remove(&self, key: &Key) {
            lock(&self.map).remove(key);
        }

        pub(crate) fn front(&self) -> Option<(Key, LogOffset)> {
            lock(&self.map).first_key_value().map(|(k, v)| (*k, *v))
        }

        pub(crate) fn len(&self) -> usize {
            lock(&self.map).len()
        }

        pub(crate) fn collect(&self) {}
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn o(tx: u64, op: u64) -> LogOffset {
        LogOffset::new(tx, op)
    }

    #[test]
    fn idle_shapes_never_hold_the_offset() {
        let t = FlushTracker::new();
        let busy = t.register("busy");
        let _idle = t.register("idle");
        t.commit(o(1, 5), [("busy", o(1, 2))]).unwrap();
        assert_eq!(t.global(), LogOffset::ZERO);
        busy.flushed(o(1, 2));
        assert_eq!(t.global(), o(1, 5));
        t.commit(o(2, 0), [] as [(&str, LogOffset); 0]).unwrap();
        assert_eq!(t.global(), o(2, 0));
    }

    #[test]
    fn offset_is_the_commit_before_the_oldest_pending() {
        let t = FlushTracker::new();
        let a = t.register("a");
        let b = t.register("b");
        t.commit(o(1, 9), [("a", o(1, 1))]).unwrap();
        t.commit(o(2, 9), [("b", o(2, 1))]).unwrap();
        t.commit(o(3, 9), [("a", o(3, 1)), ("b", o(3, 2))]).unwrap();
        assert_eq!(t.pending_shapes(), 2);
        b.flushed(o(3, 2)); // b is done with 2 and 3; a still holds 1
        assert_eq!(t.global(), LogOffset::ZERO);
        a.flushed(o(1, 1)); // a now holds 3
        assert_eq!(t.global(), o(2, 9));
        a.flushed(o(3, 1));
        assert_eq!(t.global(), o(3, 9));
        assert_eq!(t.pending_shapes(), 0);
    }

    #[test]
    fn fragments_of_one_transaction_merge() {
        let t = FlushTracker::new();
        let s = t.register("s");
        let other = t.register("other");
        let mut tx = t.transaction();
        tx.received("s", o(4, 1));
        tx.received("other", o(4, 2));
        tx.received("s", o(4, 3));
        tx.commit(o(4, 4)).unwrap();
        other.flushed(o(4, 2));
        s.flushed(o(4, 1));
        assert_eq!(t.global(), LogOffset::ZERO, "4/3 is not durable yet");
        s.flushed(o(4, 3));
        assert_eq!(t.global(), o(4, 4));
    }

    #[test]
    fn out_of_order_commit_is_refused_and_records_nothing() {
        let t = FlushTracker::new();
        let s = t.register("s");
        t.commit(o(5, 0), [] as [(&str, LogOffset); 0]).unwrap();
        let err = t.commit(o(5, 0), [("s", o(5, 0))]).unwrap_err();
        assert!(matches!(err, Error::CommitOutOfOrder { .. }), "{err}");
        assert!(!s.is_pending());
        assert_eq!(t.last_commit(), o(5, 0));
    }

    #[test]
    fn stale_handle_after_reregistration_is_ignored() {
        let t = FlushTracker::new();
        let old = t.register("s");
        assert!(old.remove().is_none());
        let new = t.register("s");
        t.commit(o(1, 0), [("s", o(1, 0))]).unwrap();
        old.flushed(o(1, 0)); // the dead writer's report does not count
        assert!(new.is_pending());
        assert_eq!(t.global(), LogOffset::ZERO);
        new.flushed(o(1, 0));
        assert_eq!(t.global(), o(1, 0));
    }

    #[test]
    fn register_twice_returns_the_same_shape() {
        let t = FlushTracker::new();
        let a = t.register("s");
        let b = t.register("s");
        t.commit(o(1, 0), [("s", o(1, 0))]).unwrap();
        assert!(a.is_pending() && b.is_pending());
        b.flushed(o(1, 0));
        assert!(!a.is_pending());
        assert_eq!(t.shapes(), 1);
    }

    #[test]
    fn advances_are_emitted_in_order_and_losses_first() {
        let t = FlushTracker::new();
        let rx = t.subscribe();
        let s = t.register("s");
        t.commit(o(1, 0), [] as [(&str, LogOffset); 0]).unwrap();
        t.commit(o(2, 0), [("s", o(2, 0))]).unwrap();
        let loss = s.remove().expect("pending data is a loss");
        let events: Vec<_> = rx.try_iter().collect();
        assert_eq!(
            events,
            vec![
                FlushEvent::Advanced(o(1, 0)),
                FlushEvent::Lost(loss),
                FlushEvent::Advanced(o(2, 0)),
            ]
        );
    }

    #[test]
    fn dropped_receiver_is_unsubscribed() {
        let t = FlushTracker::new();
        drop(t.subscribe());
        t.commit(o(1, 0), [] as [(&str, LogOffset); 0]).unwrap();
        assert!(lock(&t.inner.head).channels.is_empty());
    }
}
