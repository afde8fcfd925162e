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
//! lock, so publish cost grows with `n / 4096`, not `n`; at 1,000,000
//! shapes a shard holds ~250 entries (17-20 µs per create). See docs/design.md for the measurements
//! behind the choice.
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

/// A shard's table: the id is kept inline beside its slot, so a probe
/// compares ids without first loading the slot (one cache miss fewer).
type Map = hashbrown::HashTable<(Bytes, Arc<Slot>)>;

struct Shard {
    map: Published<Map>,
    writer: Mutex<()>,
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
                    writer: Mutex::new(()),
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

    /// The slot of `id`, if the shape is known.
    pub(crate) fn get(&self, id: &[u8]) -> Option<Arc<Slot>> {
        let hash = self.hash(id);
        self.shard(hash)
            .map
            .load()
            .find(hash, |(k, _)| k == id)
            .map(|(_, s)| Arc::clone(s))
    }

    /// Whether `id` is known (no refcount traffic).
    pub(crate) fn contains(&self, id: &[u8]) -> bool {
        let hash = self.hash(id);
        self.shard(hash)
            .map
            .load()
            .find(hash, |(k, _)| k == id)
            .is_some()
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
        if let Some((_, s)) = shard.map.load().find(hash, |(k, _)| k == id) {
            return Ok(Arc::clone(s));
        }
        let _w = lock(&shard.writer);
        let cur = shard.map.load();
        if let Some((_, s)) = cur.find(hash, |(k, _)| k == id) {
            return Ok(Arc::clone(s));
        }
        let slot = make(hash)?;
        debug_assert_eq!(slot.hash, hash);
        let mut next = Map::clone(&cur);
        next.insert_unique(hash, (slot.id.clone(), Arc::clone(&slot)), |(_, s)| s.hash);
        shard.map.store(Arc::new(next));
        Ok(slot)
    }

    /// Calls `f` on every slot (a snapshot per shard).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Arc<Slot>)) {
        for shard in self.shards.iter() {
            for (_, slot) in shard.map.load().iter() {
                f(slot);
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
