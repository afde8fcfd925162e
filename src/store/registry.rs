//! The registry: shape id -> shape slot, for lookups that never block.
//!
//! # Structure
//!
//! A fixed array of [`SHARDS`] shards, each an immutable hash table
//! published through arc-swap ([`Published`]). A lookup hashes the id once
//! (SipHash-1-3 with a random key: ids are untrusted), picks the shard from
//! bits 40..52 of the hash, loads the shard (wait-free) and probes its table
//! with the same hash (the table uses the low bits for the bucket and the
//! top 7 for its tag, so the shard bits do not skew it). Adding or removing
//! a shape copies only its shard (about `n / 4096` entries) under that
//! shard's writer lock. A table entry is a plain slot pointer and the id's
//! hash (16 bytes: a probe compares the hash, then the id through the
//! pointer; a growing table rehashes from the stored hashes), so the copy
//! is a memory copy that touches no slot: no reference count is taken or
//! dropped per entry (an entry of owned
//! `(Bytes, Arc<Slot>)` pairs made it two cold cache-line writes per entry,
//! twice; see docs/benchmarks.md, cause 7).
//!
//! # Invariants
//!
//! - **Ownership.** A slot in the registry has exactly one strong reference
//!   owned by the registry (not by a table: tables are copied bitwise),
//!   taken when it is inserted. Removing it unpublishes the entry, then
//!   hands that reference to the epoch collector, which drops it once every
//!   thread pinned before the removal has unpinned. So a slot found under a
//!   pin stays valid while the pin lasts ([`Registry::find`]); holders of an
//!   `Arc<Slot>` (handles, writers) keep it alive past its removal.
//! - A shape id has at most one slot in the registry: creators and removers
//!   of a shard serialise on its writer lock, and a creator probes again
//!   under it.
//!
//! # Orderings
//!
//! Publication is arc-swap's (a load sees a complete table published by some
//! store, and every store before the load began); shard writers serialise on
//! a per-shard mutex so no insert or removal is lost between copy and store.
//! A removal's table store comes before its deferral in program order, and
//! a lookup pins before it loads the table: the collector's epoch then
//! orders the drop after every lookup that could have loaded the old table.

use std::hash::BuildHasher;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::store::slot::Slot;
use crate::sync::{lock, Guard, Mutex, Published};

/// The number of registry shards.
#[cfg(not(loom))]
pub(crate) const SHARDS: usize = 4096;
/// The number of registry shards (loom: two, so models stay small).
#[cfg(loom)]
pub(crate) const SHARDS: usize = 2;

/// A deliberate protocol error that the loom model injects to check that
/// loom catches it (its failing twin). Production has none.
#[cfg(loom)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// The shipping protocol.
    #[default]
    None,
    /// [`Registry::remove`] lets the slot go at once instead of after the
    /// epoch.
    FreeWithoutDefer,
}

/// Slots the registry let go, under loom: poisoned and kept allocated
/// (see `Slot::poison`), dropped with the registry.
#[cfg(loom)]
#[derive(Default)]
struct Graveyard(std::sync::Mutex<Vec<Arc<Slot>>>);

#[cfg(loom)]
impl Graveyard {
    fn bury(&self, slot: Arc<Slot>) {
        slot.poison();
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(slot);
    }
}

#[cfg(loom)]
impl Drop for Graveyard {
    fn drop(&mut self) {
        // A failing model drops its state while unwinding, outside the loom
        // execution, where a slot's drop (loom objects) would panic again.
        if std::thread::panicking() {
            let slots = self.0.get_mut().unwrap_or_else(|e| e.into_inner());
            std::mem::forget(std::mem::take(slots));
        }
    }
}

/// A shard's table entry: the slot, whose registry reference the registry
/// owns (module invariants), and its id's hash. `Copy`, so copying a table
/// touches no slot. The hash is kept so that a table that grows rehashes
/// without reading a slot: reading each slot's id was two cache misses per
/// entry, and at 1,000,000 shapes a shard's growth (224 entries) took
/// 80-90 µs of the `Store::writer` that triggered it (about 1.3% of the
/// creations there, 111-128 µs at the p99; docs/benchmarks.md, "Scale").
/// A probe also compares the hash before it reads the slot.
#[derive(Clone, Copy)]
struct Entry {
    slot: NonNull<Slot>,
    hash: u64,
}

impl Entry {
    /// The slot, for as long as `_guard` is pinned.
    ///
    /// # Safety
    ///
    /// `self` must come from a table loaded from a registry under `_guard`.
    unsafe fn slot<'g>(&self, _guard: &'g Guard) -> &'g Slot {
        // SAFETY: the registry's reference is dropped only after every
        // guard pinned before the entry was removed is dropped (module
        // invariants); the caller loaded the entry under `_guard`.
        unsafe { self.slot.as_ref() }
    }
}

// SAFETY: an `Entry` is a shared reference to a `Slot` (which is `Send` and
// `Sync`) that its registry keeps alive; it never gives out `&mut`.
unsafe impl Send for Entry {}
// SAFETY: as above.
unsafe impl Sync for Entry {}

type Map = hashbrown::HashTable<Entry>;

struct Shard {
    map: Published<Map>,
    /// Serialises the shard's writers (copy, change and store happen under
    /// it).
    writer: Mutex<()>,
}

impl Shard {
    /// The slot of `id` (with hash `hash`) in the published table.
    fn find<'g>(&self, hash: u64, id: &[u8], guard: &'g Guard) -> Option<&'g Slot> {
        self.map
            .load()
            .find(hash, |e| {
                // SAFETY: loaded under `guard` just now.
                e.hash == hash && unsafe { e.slot(guard) }.id[..] == *id
            })
            // SAFETY: loaded under `guard` just now.
            .map(|e| unsafe { e.slot(guard) })
    }
}

/// A new owning reference to a slot found under a pin.
pub(crate) fn share(slot: &Slot) -> Arc<Slot> {
    let p: *const Slot = slot;
    // SAFETY: every slot the registry hands out came from an `Arc` whose
    // registry reference is alive while the caller's pin lasts (module
    // invariants), so `p` is an `Arc`'s pointer with a strong count of at
    // least 1.
    unsafe {
        Arc::increment_strong_count(p);
        Arc::from_raw(p)
    }
}

/// A slot pointer the deferred drop may carry to the collecting thread.
struct Owned(NonNull<Slot>);

impl Owned {
    /// The registry's reference (a method, so that a closure captures the
    /// whole wrapper rather than its non-`Send` field).
    fn into_arc(self) -> Arc<Slot> {
        // SAFETY: the registry's reference, from `Arc::into_raw` in
        // `get_or_insert_with`, dropped once (the entry is gone).
        unsafe { Arc::from_raw(self.0.as_ptr()) }
    }
}

// SAFETY: `Slot` is `Send + Sync`; the pointer is an `Arc<Slot>` reference.
unsafe impl Send for Owned {}

/// The ids' hasher: SipHash-1-3 with a random key (ids are untrusted);
/// under loom a fixed key, so that every execution of a model takes the
/// same shards (loom requires models to be deterministic).
#[cfg(not(loom))]
type Hasher = std::hash::RandomState;
#[cfg(loom)]
type Hasher = std::hash::BuildHasherDefault<std::hash::DefaultHasher>;

pub(crate) struct Registry {
    shards: Box<[Shard]>,
    hasher: Hasher,
    #[cfg(loom)]
    fault: Fault,
    #[cfg(loom)]
    graveyard: Arc<Graveyard>,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Registry {
            shards: (0..SHARDS)
                .map(|_| Shard {
                    map: Published::new(Arc::new(Map::new())),
                    writer: Mutex::new(()),
                })
                .collect(),
            hasher: Hasher::default(),
            #[cfg(loom)]
            fault: Fault::None,
            #[cfg(loom)]
            graveyard: Arc::default(),
        }
    }

    /// The same registry with `fault` injected (loom models only).
    #[cfg(loom)]
    pub(crate) fn with_fault(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }

    /// The hash of `id` that picks its shard and probes the shard's table.
    fn hash(&self, id: &[u8]) -> u64 {
        self.hasher.hash_one(id)
    }

    fn shard(&self, hash: u64) -> &Shard {
        &self.shards[(hash >> 40) as usize % SHARDS]
    }

    /// The slot of `id`, if the shape is in the registry, borrowed for as
    /// long as `guard` is pinned (no reference count is touched: readers of
    /// one shape share no written cache line).
    #[inline]
    pub(crate) fn find<'g>(&self, id: &[u8], guard: &'g Guard) -> Option<&'g Slot> {
        let hash = self.hash(id);
        self.shard(hash).find(hash, id, guard)
    }

    /// Returns the slot of `id`, creating it with `make()` if it is absent.
    /// `make` runs under the shard's writer lock, so two racing creators
    /// cannot both create; it must be cheap (no I/O).
    pub(crate) fn get_or_insert_with<E>(
        &self,
        id: &[u8],
        guard: &Guard,
        make: impl FnOnce() -> Result<Slot, E>,
    ) -> Result<Arc<Slot>, E> {
        let hash = self.hash(id);
        let shard = self.shard(hash);
        if let Some(s) = shard.find(hash, id, guard) {
            return Ok(share(s));
        }
        let _w = lock(&shard.writer);
        if let Some(s) = shard.find(hash, id, guard) {
            return Ok(share(s));
        }
        let slot = Arc::new(make()?);
        debug_assert_eq!(&slot.id[..], id);
        // The registry's reference (module invariants).
        let owned = Arc::into_raw(Arc::clone(&slot)).cast_mut();
        let entry = Entry {
            slot: NonNull::new(owned).expect("an Arc's pointer is not null"),
            hash,
        };
        let mut next = Map::clone(&shard.map.load());
        next.insert_unique(hash, entry, |e| e.hash);
        shard.map.store(Arc::new(next));
        Ok(slot)
    }

    /// Removes `slot` (if it is the registry's slot of its id) and hands the
    /// registry's reference to the epoch collector. Returns whether it was
    /// there.
    pub(crate) fn remove(&self, slot: &Slot, guard: &Guard) -> bool {
        let hash = self.hash(&slot.id);
        let shard = self.shard(hash);
        let _w = lock(&shard.writer);
        let mut next = Map::clone(&shard.map.load());
        let Ok(found) = next.find_entry(hash, |e| std::ptr::eq(e.slot.as_ptr(), slot)) else {
            return false;
        };
        let (entry, _) = found.remove();
        shard.map.store(Arc::new(next));
        let owned = Owned(entry.slot);
        #[cfg(loom)]
        {
            let graveyard = Arc::clone(&self.graveyard);
            if self.fault == Fault::FreeWithoutDefer {
                graveyard.bury(owned.into_arc());
                return true;
            }
            // SAFETY: as below.
            unsafe { guard.defer_unchecked(move || graveyard.bury(owned.into_arc())) };
        }
        // SAFETY: the closure only drops an `Arc<Slot>` (`Send`), after
        // every guard pinned before the table store above is dropped, so no
        // lookup still borrows the slot through the old table.
        #[cfg(not(loom))]
        unsafe {
            guard.defer_unchecked(move || drop(owned.into_arc()))
        };
        true
    }

    /// Calls `f` on every slot (a snapshot per shard).
    pub(crate) fn for_each(&self, guard: &Guard, mut f: impl FnMut(&Slot)) {
        for shard in self.shards.iter() {
            for e in shard.map.load().iter() {
                // SAFETY: loaded under `guard` just now.
                f(unsafe { e.slot(guard) });
            }
        }
    }

    /// The number of shapes in the registry.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.map.load().len()).sum()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        for shard in self.shards.iter() {
            for e in shard.map.load().iter() {
                // `&mut self`: no lookup can load the tables any more; each
                // slot's registry reference is dropped once, here.
                drop(Owned(e.slot).into_arc());
            }
        }
    }
}
