//! The registry: shape id -> shape slot, for lookups that never block.
//!
//! # Structure
//!
//! A fixed array of [`SHARDS`] shards, each an immutable hash table
//! published through arc-swap ([`Published`]). A lookup hashes the id once
//! (SipHash-1-3 with a random key: ids are untrusted), picks the shard from
//! bits 40..52 of the hash, loads the shard (wait-free) and probes its table
//! with the same hash (the table uses the low bits for the bucket and the
//! top 7 for its tag, so the shard bits do not skew it). Adding a shape copies
//! only its shard (about `n / 4096` entries) under that shard's writer
//! lock. A table entry is a plain `(hash, slot pointer, id pointer)`
//! triple, so the copy is a memory copy that touches no slot: no reference
//! count is taken or dropped per entry (an entry of owned
//! `(Bytes, Arc<Slot>)` pairs made it two cold cache-line writes per entry,
//! twice; see docs/benchmarks.md, cause 7).
//!
//! # Invariants
//!
//! - Every slot a table points to is owned by its shard's `owned` list,
//!   which only grows and lives as long as the registry; it is pushed there
//!   before the table pointing to it is published. So an entry's pointer is
//!   valid for as long as the registry is borrowed.
//! - A shape's slot is created once: the creator holds the shard's writer
//!   lock from its second probe to the publish.
//!
//! A slot lives as long as its shape is known: terminate does not remove it,
//! it only empties the slot's buffer (the segment pointer), so a
//! [`ShapeHandle`](crate::ShapeHandle) stays valid across terminate and
//! restart and the shape's durable metadata stays readable.
//!
//! # Orderings
//!
//! Publication is arc-swap's (a load sees a complete map published by some
//! store, and every store before the load began); shard writers serialise on
//! a per-shard mutex so no insert is lost between copy and store.

use std::hash::{BuildHasher, RandomState};
use std::ptr::NonNull;
use std::sync::Arc;

use bytes::Bytes;

use crate::buffer::Buffer;
use crate::log::ShapeLog;
use crate::sync::{lock, Mutex, Published};
use crate::wait::Waiters;

/// The number of registry shards.
pub(crate) const SHARDS: usize = 4096;

/// Everything the store knows about one shape: its id, its in-memory buffer
/// (watermarks + segment pointer, which terminate empties) and its log.
pub(crate) struct Slot {
    pub(crate) id: Bytes,
    /// The registry's hash of `id` (kept so copying a shard never rehashes).
    pub(crate) hash: u64,
    pub(crate) buffer: Arc<Buffer>,
    pub(crate) log: ShapeLog,
    /// Readers waiting for the shape's next commit (live tail; see
    /// `wait.rs`). Lives with the slot, so waits span terminate and restart.
    pub(crate) waiters: Waiters,
}

/// A shard's table entry: the slot's hash, a pointer to it (owned by the
/// shard's `owned` list; see the module invariants) and its id's bytes, kept
/// inline so a probe compares ids without first loading the slot (one cache
/// miss fewer). `Copy`, so copying a table touches no slot.
#[derive(Clone, Copy)]
struct Entry {
    hash: u64,
    slot: NonNull<Slot>,
    /// `slot.id`'s bytes: a `Bytes` never moves its bytes, and the slot's id
    /// is never replaced, so this lives as long as the slot.
    id: NonNull<[u8]>,
}

impl Entry {
    fn new(hash: u64, slot: &Slot) -> Self {
        Entry {
            hash,
            slot: NonNull::from(slot),
            id: NonNull::from(&slot.id[..]),
        }
    }

    /// Whether this is the entry of `id` (with hash `hash`).
    fn is(&self, hash: u64, id: &[u8]) -> bool {
        // SAFETY: the id's bytes live as long as the slot, which the
        // registry owning this entry's table keeps alive (module
        // invariants); the table is borrowed for this call.
        self.hash == hash && unsafe { self.id.as_ref() } == id
    }

    /// The slot, for as long as the registry is borrowed.
    ///
    /// # Safety
    ///
    /// `self` must come from a table of a registry that outlives `'r`.
    unsafe fn slot<'r>(&self) -> &'r Slot {
        // SAFETY: the caller's registry owns the slot (module invariants).
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
    /// Owns every slot the shard's tables point to, and serialises the
    /// shard's writers (copy, insert and store happen under it).
    owned: Mutex<Vec<Arc<Slot>>>,
}

impl Shard {
    /// The slot of `id` (with hash `hash`) in the published table.
    fn find(&self, hash: u64, id: &[u8]) -> Option<&Slot> {
        self.map
            .load()
            .find(hash, |e| e.is(hash, id))
            // SAFETY: `self` borrows the registry that owns the table.
            .map(|e| unsafe { e.slot() })
    }
}

/// A new owning reference to `slot`, which the registry owns.
fn share(slot: &Slot) -> Arc<Slot> {
    let p: *const Slot = slot;
    // SAFETY: every slot the registry hands out came from an `Arc` in a
    // shard's `owned` list (module invariants), so `p` is an `Arc`'s
    // pointer whose strong count is at least 1 while we hold `&Slot`.
    unsafe {
        Arc::increment_strong_count(p);
        Arc::from_raw(p)
    }
}

pub(crate) struct Registry {
    shards: Box<[Shard]>,
    hasher: RandomState,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Registry {
            shards: (0..SHARDS)
                .map(|_| Shard {
                    map: Published::new(Arc::new(Map::new())),
                    owned: Mutex::new(Vec::new()),
                })
                .collect(),
            hasher: RandomState::new(),
        }
    }

    /// The hash of `id` that picks its shard and probes the shard's table.
    pub(crate) fn hash(&self, id: &[u8]) -> u64 {
        self.hasher.hash_one(id)
    }

    fn shard(&self, hash: u64) -> &Shard {
        &self.shards[(hash >> 40) as usize % SHARDS]
    }

    /// The slot of `id`, if the shape is known, borrowed from the registry
    /// (no reference count is touched: readers of one shape share no
    /// written cache line).
    pub(crate) fn find(&self, id: &[u8]) -> Option<&Slot> {
        let hash = self.hash(id);
        self.shard(hash).find(hash, id)
    }

    /// The slot of `id`, if the shape is known, as an owning reference.
    pub(crate) fn get(&self, id: &[u8]) -> Option<Arc<Slot>> {
        self.find(id).map(share)
    }

    /// Whether `id` is known.
    pub(crate) fn contains(&self, id: &[u8]) -> bool {
        self.find(id).is_some()
    }

    /// Returns the slot of `id`, creating it with `make(hash)` if it is
    /// absent. `make` runs under the shard's writer lock (it may do I/O:
    /// creating a shape's first file), so two racing creators cannot both
    /// create.
    pub(crate) fn get_or_insert_with<E>(
        &self,
        id: &[u8],
        make: impl FnOnce(u64) -> Result<Arc<Slot>, E>,
    ) -> Result<Arc<Slot>, E> {
        let hash = self.hash(id);
        let shard = self.shard(hash);
        if let Some(s) = shard.find(hash, id) {
            return Ok(share(s));
        }
        let mut owned = lock(&shard.owned);
        if let Some(s) = shard.find(hash, id) {
            return Ok(share(s));
        }
        let slot = make(hash)?;
        debug_assert_eq!(slot.hash, hash);
        debug_assert_eq!(&slot.id[..], id);
        let entry = Entry::new(hash, &slot);
        // Owned before it is published (module invariants).
        owned.push(Arc::clone(&slot));
        let mut next = Map::clone(&shard.map.load());
        next.insert_unique(hash, entry, |e| e.hash);
        shard.map.store(Arc::new(next));
        Ok(slot)
    }

    /// Calls `f` on every slot (a snapshot per shard).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Slot)) {
        for shard in self.shards.iter() {
            for e in shard.map.load().iter() {
                // SAFETY: `self` borrows the registry that owns the table.
                f(unsafe { e.slot() });
            }
        }
    }

    /// The number of known shapes.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.map.load().len()).sum()
    }
}

/// A printable form of an untrusted shape id for messages and traces:
/// UTF-8 text is shown as is (escaped), anything else as hex, and long ids
/// are cut.
pub(crate) fn display_id(id: &[u8]) -> String {
    const MAX: usize = 64;
    let cut = &id[..id.len().min(MAX)];
    let mut s = match std::str::from_utf8(cut) {
        Ok(t) => t.escape_debug().to_string(),
        Err(_) => cut.iter().map(|b| format!("{b:02x}")).collect(),
    };
    if id.len() > MAX {
        s.push_str(&format!("...({} bytes)", id.len()));
    }
    s
}
