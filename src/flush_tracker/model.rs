//! The tracker's model: per-shape FIFOs of committed transactions not yet
//! durable, the pending set of their global ends, and the advance of the
//! global durable offset (see the module docs of `flush_tracker` for the
//! protocol, its invariants and orderings).

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Bytes;
use tracing::warn;

use crate::id::display as display_id;
use crate::sync::{fence, lock, AtomicUsize, Mutex, Ordering};
use crate::LogOffset;

use super::events::{FlushEvent, Loss, Subscribers};
use super::pending::PendingSet;

/// Picks an id's shard.
#[cfg(not(loom))]
pub(super) type ShardHasher = std::hash::RandomState;
/// Under loom, fixed keys: which shard (which loom mutex) a shape lands in
/// must be the same in every execution, or loom's replay of a schedule
/// diverges.
#[cfg(loom)]
pub(super) type ShardHasher =
    std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;

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
pub(super) const SHARDS: usize = 64;

/// One shard of the id -> shape map: the shapes themselves, hashed by id
/// (an entry is one pointer; the id lives in the shape, shared with the
/// store's slot: a million tracked shapes cost no second copy of each id).
pub(super) type IdMap = hashbrown::HashTable<Arc<ShapeState>>;

pub(super) struct Inner {
    pub(super) shapes: Box<[Mutex<IdMap>]>,
    pub(super) hasher: ShardHasher,
    pub(super) pending: PendingSet,
    /// Shapes with a non-empty FIFO (approximate while others update it).
    pub(super) pending_shapes: AtomicUsize,
    /// The last commit end: serialises commits and checks their order.
    pub(super) commit: Mutex<LogOffset>,
    /// Serialises advances and event delivery.
    pub(super) head: Mutex<Subscribers>,
    /// What [`FlushTracker::global`] reads; written under `head`.
    pub(super) marks: Mutex<Marks>,
    #[cfg(loom)]
    pub(super) fault: TrackerFault,
}

#[derive(Clone, Copy)]
pub(super) struct Marks {
    pub(super) last_commit: LogOffset,
    pub(super) global: LogOffset,
}

pub(super) struct ShapeState {
    pub(super) id: Arc<[u8]>,
    pub(super) progress: Mutex<Progress>,
}

impl ShapeState {
    pub(super) fn new(id: Arc<[u8]>) -> Arc<Self> {
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

pub(super) struct Progress {
    /// The highest offset reported durable.
    pub(super) durable: LogOffset,
    /// Committed transactions with entries not durable yet, oldest first.
    pub(super) fifo: VecDeque<PendingTx>,
    pub(super) removed: bool,
}

/// A committed transaction that shapes may still wait on.
pub(super) struct TxHold {
    /// The transaction's global end: its key in the pending set.
    pub(super) end: LogOffset,
    /// The end of the commit before it.
    pub(super) prev: LogOffset,
    /// FIFO entries referring to it, plus one while its commit binds.
    pub(super) waiting: AtomicUsize,
}

pub(super) struct PendingTx {
    pub(super) hold: Arc<TxHold>,
    /// The last offset this shape received of the transaction.
    pub(super) last: LogOffset,
}

impl Inner {
    pub(super) fn hash(&self, id: &[u8]) -> u64 {
        self.hasher.hash_one(id)
    }

    /// The shard of an id with hash `hash`: from bits 40.. of the hash,
    /// which the shard's table does not use for its buckets (low bits) nor
    /// its tags (top 7), so the choice of shard does not skew them.
    pub(super) fn shard(&self, hash: u64) -> &Mutex<IdMap> {
        &self.shapes[(hash >> 40) as usize % SHARDS]
    }

    pub(super) fn lookup(&self, id: &[u8]) -> Option<Arc<ShapeState>> {
        let hash = self.hash(id);
        let shard = lock(self.shard(hash));
        let s = shard.find(hash, |s| *s.id == *id)?;
        let removed = lock(&s.progress).removed;
        (!removed).then(|| Arc::clone(s))
    }

    /// Charges committed transaction `hold` to `shape`, which received its
    /// entries up to `last`. Called by the commit, holding the commit lock
    /// and one count of `hold`.
    pub(super) fn bind(&self, shape: &ShapeState, hold: &Arc<TxHold>, last: LogOffset) {
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
    pub(super) fn release(&self, hold: &TxHold) -> Option<LogOffset> {
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
    pub(super) fn after_removal(&self, removed: LogOffset) {
        // SeqCst: orders the removal before the peek below against the same
        // pair in another reporter (Dekker; see # Orderings), so of two
        // reporters emptying the front, at least one sees both removals.
        fence(Ordering::SeqCst);
        if self.pending.front().is_none_or(|(end, _)| end > removed) {
            self.advance(None, None);
        }
    }

    /// Records that `shape` has everything up to `durable` durable.
    pub(super) fn flushed(&self, shape: &ShapeState, durable: LogOffset) {
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
    pub(super) fn pop_covered(&self, p: &mut Progress, durable: LogOffset) -> Option<LogOffset> {
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
    pub(super) fn flushed_release_before_durable(&self, shape: &ShapeState, durable: LogOffset) {
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
    pub(super) fn remove(&self, shape: &Arc<ShapeState>, crash: Option<LogOffset>) -> Option<Loss> {
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
    pub(super) fn advance(
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

pub(super) trait PopCovered {
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
