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
//! # Files
//!
//! This file is the public face ([`FlushTracker`]); `tracked.rs` holds the
//! per-shape handle and the commit in progress, `model.rs` the shared state
//! and the advance, `pending.rs` the pending set, `events.rs` what
//! subscribers receive. Imports run one way: `mod.rs` -> `tracked.rs` ->
//! `model.rs` -> `pending.rs`, `events.rs`. The tracker imports no layer of
//! the crate (only `id`, `sync`, `offset`, `error`): a host may use it
//! without a store.
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

mod events;
mod model;
mod pending;
mod tracked;

pub use events::{FlushEvent, Loss};
#[cfg(loom)]
pub use model::TrackerFault;
pub(crate) use pending::PendingSet;
pub use tracked::{TrackedShape, Transaction};

use events::Subscribers;
use model::{IdMap, Inner, Marks, ShapeState, ShardHasher, SHARDS};

use std::sync::Arc;

use crate::sync::{lock, mpsc, AtomicUsize, Mutex, Ordering};
use crate::{LogOffset, Result};

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
            inner: &self.inner,
            bound: Vec::new(),
        }
    }

    /// Records a committed transaction ending at `end` in one call: each
    /// `(id, last)` says shape `id` received entries of it up to `last`.
    /// Same as [`FlushTracker::transaction`], one `received` per pair, then
    /// `commit`. Returns the global offset after the commit.
    ///
    /// # Errors
    ///
    /// As [`Transaction::commit`](crate::Transaction::commit):
    /// [`Error::CommitOutOfOrder`](crate::Error::CommitOutOfOrder) or
    /// [`Error::ReceivedBeyondCommit`](crate::Error::ReceivedBeyondCommit), and
    /// nothing is recorded.
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::Error;

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
