//! The pending set: the global ends of committed transactions that some
//! shape has not made durable, ordered; its minimum bounds the global
//! durable offset. Two implementations with one contract: a lock-free skip
//! list (production) and a mutex + `BTreeMap` (loom's stand-in, and a
//! benchmark baseline).

/// The pending-set key: a transaction's global end.
use crate::LogOffset;

pub(crate) type Key = LogOffset;

pub(crate) use imp::PendingSet;

/// The skip-list pending set (production).
#[cfg(not(any(loom, shapebuf_btree_pending)))]
mod imp {
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
mod imp {
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
