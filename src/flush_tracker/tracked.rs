//! A tracked shape and a commit in progress: the handles through which a
//! writer reports what it made durable, and a host records which shapes a
//! transaction touched.

use std::sync::Arc;

use crate::id::display as display_id;
use crate::sync::{lock, AtomicUsize, Ordering};
use crate::{Error, LogOffset, Result};

use super::events::Loss;
use super::model::{Inner, ShapeState, TxHold};

/// One shape as the tracker sees it: the handle its writer reports through.
/// Obtained from [`FlushTracker::register`](crate::FlushTracker::register) or [`FlushTracker::get`](crate::FlushTracker::get). Cheap
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
    pub(super) inner: Arc<Inner>,
    pub(super) state: Arc<ShapeState>,
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
/// up to which offset. Built by [`FlushTracker::transaction`](crate::FlushTracker::transaction); only
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
    pub(super) inner: &'t Inner,
    pub(super) bound: Vec<(Arc<ShapeState>, LogOffset)>,
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
        match self.inner.lookup(id) {
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
    /// [`Error::CommitOutOfOrder`](crate::Error::CommitOutOfOrder) if `end` is not above the previous
    /// commit; [`Error::ReceivedBeyondCommit`](crate::Error::ReceivedBeyondCommit) if a shape received an offset
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
        let inner = self.inner;
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
