//! The catalog: which shapes have (or are about to have) files in the
//! store's directory, known from one listing at open and kept current as
//! shapes are created and removed.
//!
//! # Names
//!
//! A shape's files are `<stem>.<start>.log`; the stem is
//! `<16 hex digits of FNV-1a-64(id)>-<n>` with `n` the smallest number no
//! other shape of the same hash uses, and `<start>` the entry number of the
//! file's first entry (20 digits). `<stem>.removed` is a removal's tombstone
//! (docs/format.md). Ids never become part of a path: they are untrusted.
//!
//! # What it holds
//!
//! Opening a store lists the directory once and reads no file: a listed
//! stem is *unresolved* (its id, stored in its files' headers, is unknown
//! until someone asks for a shape whose id hashes to the stem's hash). So a
//! million shapes on disk cost a listing and a few bytes each:
//!
//! - `taken`: every stem in use (on disk, resolved or not, or allocated to
//!   a new shape this process has not flushed yet): 8 bytes per shape of
//!   hash table, keyed by the hash, for stems numbered 0; the rare higher
//!   numbers (hash collisions) in `more`.
//! - `unresolved`: listed stems whose id is not known yet, with their
//!   files (no allocation for the usual single file starting at entry 0).
//! - `alive`: stems with a log in memory, how many (a read may still hold
//!   the log of a shape that has closed since, beside its state's newer
//!   one): 16 bytes per open shape of hash table. Closed shapes cost
//!   nothing here.
//! - `doomed`: removed stems that still have a log in memory, with the
//!   files to delete when the last of them drops (rare: a removal racing
//!   a read).
//!
//! # Invariants
//!
//! - A stem is in `taken` from the moment it is listed or allocated until
//!   its removal has deleted every file of it ([`Catalog::release`]); no two
//!   shapes are ever given the same stem.
//! - A removed stem's files are deleted only once no log of it is in
//!   memory ([`Catalog::log_dropped`], [`Catalog::defer_removal`]): a read
//!   that resolved a file of a shape finishes from it, whether the shape
//!   was open or closed when it was removed.
//! - Every lock is one shard's (by hash), held for a few map operations:
//!   no I/O under it.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Catalog shards (by hash): creations of shapes with different hashes
/// rarely share a lock.
const SHARDS: usize = 64;

/// A shape's file stem: the FNV-1a-64 hash of its id and a number that
/// tells shapes of the same hash apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Stem {
    pub(crate) hash: u64,
    pub(crate) n: u32,
}

impl fmt::Display for Stem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{}", self.hash, self.n)
    }
}

impl Stem {
    /// The name of the stem's file whose first entry is number `start`.
    pub(crate) fn file_name(&self, start: u64) -> String {
        format!("{self}.{start:020}.log")
    }

    /// The name of the stem's removal tombstone.
    pub(crate) fn tombstone_name(&self) -> String {
        format!("{self}.removed")
    }
}

/// FNV-1a-64 of a shape id: the hash part of its stem.
pub(crate) fn fnv1a(id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in id {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What a directory entry's name says, if it is one of the store's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Name {
    /// A log file: its stem and the entry number of its first entry.
    Log(Stem, u64),
    /// A removal's tombstone.
    Tombstone(Stem),
}

impl Name {
    /// Parses a directory entry's name; `None` for anything else (ignored).
    /// Only the canonical form the store writes is accepted (lowercase hex,
    /// no leading zero in `n`, 20 digits of start), so two names never
    /// denote the same file. Allocates nothing: opening a store parses a
    /// million of these.
    pub(crate) fn parse(name: &OsStr) -> Option<Name> {
        let name = name.to_str()?;
        let (stem, rest) = name.split_once('.')?;
        let (hash, n) = stem.split_once('-')?;
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if hash.len() != 16 || !hash.bytes().all(lower_hex) {
            return None;
        }
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(n) || (n.len() > 1 && n.starts_with('0')) {
            return None;
        }
        let stem = Stem {
            hash: u64::from_str_radix(hash, 16).ok()?,
            n: n.parse().ok()?,
        };
        if rest == "removed" {
            return Some(Name::Tombstone(stem));
        }
        let start = rest.strip_suffix(".log")?;
        if start.len() != 20 || !digits(start) {
            return None;
        }
        Some(Name::Log(stem, start.parse().ok()?))
    }
}

#[derive(Debug, Default)]
struct Shard {
    /// Hashes whose stem number 0 is in use.
    taken: HashSet<u64>,
    /// Stems numbered above 0 in use, by hash (hash collisions: rare).
    more: HashMap<u64, Vec<u32>>,
    /// Listed stems whose id is unknown yet -> their files.
    unresolved: HashMap<Stem, Files>,
    /// Stems with a log in memory (open shapes, and closed ones whose old
    /// log a read still holds), with how many.
    alive: hashbrown::HashTable<Alive>,
    /// Removed stems in `alive`: the starts of their files (merged from
    /// every log of it that drops, and from the closed state's list), to
    /// delete when the last log drops.
    doomed: HashMap<Stem, Vec<u64>>,
}

/// The logs in memory of one stem: 16 bytes (an open shape pays for one).
#[derive(Debug)]
struct Alive {
    hash: u64,
    n: u32,
    logs: u32,
}

impl Alive {
    fn stem(&self) -> Stem {
        Stem {
            hash: self.hash,
            n: self.n,
        }
    }

    /// The table's hash of `stem`. A shard holds the hashes of one residue
    /// mod [`SHARDS`] (their low bits are equal), and the table indexes by
    /// low bits: mix the high ones down (splitmix64's finalizer).
    fn mix(stem: Stem) -> u64 {
        let mut x = stem.hash ^ u64::from(stem.n);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
}

impl Shard {
    /// Adds `starts` to removed stem `stem`'s files to delete.
    fn doom(&mut self, stem: Stem, starts: &[u64]) {
        let v = self.doomed.entry(stem).or_default();
        v.extend_from_slice(starts);
        v.sort_unstable();
        v.dedup();
    }

    fn is_taken(&self, stem: Stem) -> bool {
        if stem.n == 0 {
            self.taken.contains(&stem.hash)
        } else {
            self.more
                .get(&stem.hash)
                .is_some_and(|v| v.contains(&stem.n))
        }
    }

    fn take(&mut self, stem: Stem) {
        if stem.n == 0 {
            self.taken.insert(stem.hash);
        } else {
            let v = self.more.entry(stem.hash).or_default();
            if !v.contains(&stem.n) {
                v.push(stem.n);
            }
        }
    }
}

/// The stems of the store's directory. See the module docs.
#[derive(Debug)]
pub(crate) struct Catalog {
    shards: Box<[Mutex<Shard>]>,
}

/// What a listing found besides log files.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Stems with a tombstone: removals a crash interrupted.
    pub(crate) tombstones: Vec<Stem>,
    /// Stems listed (log files), for the store's count.
    pub(crate) stems: usize,
}

impl Catalog {
    pub(crate) fn new() -> Self {
        Catalog {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        // The low bits: FNV-1a's best mixed ones.
        self.shards[(hash as usize) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one directory entry's name (ignoring names that are not the
    /// store's).
    pub(crate) fn add_listed(&self, name: &OsStr, listing: &mut Listing) {
        match Name::parse(name) {
            Some(Name::Log(stem, start)) => {
                let mut s = self.shard(stem.hash);
                s.take(stem);
                match s.unresolved.entry(stem) {
                    std::collections::hash_map::Entry::Vacant(v) => {
                        listing.stems += 1;
                        v.insert(Files::from_starts(&[start]));
                    }
                    std::collections::hash_map::Entry::Occupied(mut o) => {
                        let mut starts = o.get().starts().to_vec();
                        starts.push(start);
                        starts.sort_unstable();
                        starts.dedup();
                        o.insert(Files::from_starts(&starts));
                    }
                }
            }
            Some(Name::Tombstone(stem)) => {
                self.shard(stem.hash).take(stem);
                listing.tombstones.push(stem);
            }
            None => {}
        }
    }

    /// The unresolved stems of shapes whose id hashes to `hash`, with their
    /// files: the candidates for that id.
    pub(crate) fn candidates(&self, hash: u64) -> Vec<(Stem, Files)> {
        let s = self.shard(hash);
        if s.unresolved.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<(Stem, Files)> = std::iter::once(0)
            .chain(s.more.get(&hash).into_iter().flatten().copied())
            .map(|n| Stem { hash, n })
            .filter_map(|stem| s.unresolved.get(&stem).map(|f| (stem, f.clone())))
            .collect();
        out.sort_by_key(|(stem, _)| *stem);
        out
    }

    /// `stem`'s id is known now: if it is still unresolved, runs `register`
    /// (which hands the shape to the registry) and forgets it here, all
    /// under the catalog's lock, so that a racing resolver either sees it
    /// unresolved or finds it registered. Returns whether it ran. Lock
    /// order: catalog, then registry (nothing takes them the other way).
    pub(crate) fn resolve_with(&self, stem: Stem, register: impl FnOnce()) -> bool {
        let mut s = self.shard(stem.hash);
        if s.unresolved.remove(&stem).is_none() {
            return false;
        }
        register();
        true
    }

    /// Takes listed stem `stem` out of the unresolved ones, with its files.
    pub(crate) fn take(&self, stem: Stem) -> Option<Files> {
        self.shard(stem.hash).unresolved.remove(&stem)
    }

    /// Gives a new shape whose id hashes to `hash` the lowest free stem.
    pub(crate) fn allocate(&self, hash: u64) -> Stem {
        let mut s = self.shard(hash);
        let n = (0u32..)
            .find(|&n| !s.is_taken(Stem { hash, n }))
            .expect("fewer than 2^32 shapes share a hash");
        let stem = Stem { hash, n };
        s.take(stem);
        stem
    }

    /// `stem` is free again: its shape was removed and every file of it is
    /// gone, or it was allocated and never written.
    pub(crate) fn release(&self, stem: Stem) {
        let mut s = self.shard(stem.hash);
        s.unresolved.remove(&stem);
        if stem.n == 0 {
            s.taken.remove(&stem.hash);
        } else if let Some(v) = s.more.get_mut(&stem.hash) {
            v.retain(|&n| n != stem.n);
            if v.is_empty() {
                s.more.remove(&stem.hash);
            }
        }
    }

    /// A log of `stem` was made in memory (a shape opened or recovered).
    pub(crate) fn log_created(&self, stem: Stem) {
        let mut s = self.shard(stem.hash);
        let hash = Alive::mix(stem);
        match s.alive.find_mut(hash, |a| a.stem() == stem) {
            Some(a) => a.logs += 1,
            None => {
                s.alive.insert_unique(
                    hash,
                    Alive {
                        hash: stem.hash,
                        n: stem.n,
                        logs: 1,
                    },
                    |a| Alive::mix(a.stem()),
                );
            }
        }
    }

    /// A log of `stem` (whose files start at `starts`) was dropped; with
    /// `removed`, the shape was removed while it was its state. Returns the
    /// files to delete now if it was the stem's last log in memory and the
    /// stem was removed ([`Catalog::defer_removal`], or `removed`).
    pub(crate) fn log_dropped(
        &self,
        stem: Stem,
        removed: bool,
        starts: &[u64],
    ) -> Option<Vec<u64>> {
        let mut s = self.shard(stem.hash);
        let Ok(mut a) = s.alive.find_entry(Alive::mix(stem), |a| a.stem() == stem) else {
            return None;
        };
        a.get_mut().logs -= 1;
        let last = a.get().logs == 0;
        if last {
            a.remove();
        }
        if removed || s.doomed.contains_key(&stem) {
            s.doom(stem, starts);
        }
        if !last {
            return None;
        }
        s.doomed.remove(&stem)
    }

    /// A closed shape of `stem` (whose files start at `starts`) was
    /// removed. If a read still holds an old log of it (it was open when
    /// the read began), deleting the files waits for that log's drop, which
    /// then deletes them: returns true. Else the caller deletes them now.
    pub(crate) fn defer_removal(&self, stem: Stem, starts: &[u64]) -> bool {
        let mut s = self.shard(stem.hash);
        if s.alive
            .find(Alive::mix(stem), |a| a.stem() == stem)
            .is_none()
        {
            return false;
        }
        s.doom(stem, starts);
        true
    }

    /// Stems listed whose id is not known yet.
    pub(crate) fn unresolved(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .unresolved
                    .len()
            })
            .sum()
    }

    /// Every unresolved stem, with its files.
    pub(crate) fn all_unresolved(&self) -> Vec<(Stem, Files)> {
        let mut out = Vec::new();
        for s in self.shards.iter() {
            let s = s.lock().unwrap_or_else(PoisonError::into_inner);
            out.extend(s.unresolved.iter().map(|(&stem, f)| (stem, f.clone())));
        }
        out.sort_by_key(|(stem, _)| *stem);
        out
    }

    /// Whether `stem` is in use.
    #[cfg(test)]
    fn is_taken(&self, stem: Stem) -> bool {
        self.shard(stem.hash).is_taken(stem)
    }
}

/// The files of a closed log: the entry number each starts at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Files {
    /// One file, starting at entry 0 (almost every shape: no allocation).
    Zero,
    /// Any other set, in order (boxed twice: one pointer, so that a
    /// closed slot's state fits 16 bytes).
    #[expect(
        clippy::box_collection,
        reason = "a thin pointer keeps a closed slot at 16 bytes"
    )]
    List(Box<Vec<u64>>),
}

impl Files {
    pub(crate) fn from_starts(starts: &[u64]) -> Files {
        match starts {
            [0] => Files::Zero,
            _ => Files::List(Box::new(starts.to_vec())),
        }
    }

    pub(crate) fn starts(&self) -> &[u64] {
        match self {
            Files::Zero => &[0],
            Files::List(v) => v,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        let stem = Stem {
            hash: fnv1a(b"orders"),
            n: 3,
        };
        let log = stem.file_name(42);
        assert_eq!(Name::parse(OsStr::new(&log)), Some(Name::Log(stem, 42)));
        let tomb = stem.tombstone_name();
        assert_eq!(Name::parse(OsStr::new(&tomb)), Some(Name::Tombstone(stem)));
        for stranger in [
            "LOCK",
            "x.log",
            "0123456789abcdef-0.1.log",
            "0123456789abcdef-01.00000000000000000000.log",
            "0123456789abcdeg-0.00000000000000000000.log",
            "0123456789ABCDEF-0.00000000000000000000.log",
            "0123456789abcdef-.00000000000000000000.log",
            "0123456789abcdef-0.00000000000000000000.log.tmp",
            "0123456789abcdef-0.removed.x",
        ] {
            assert_eq!(Name::parse(OsStr::new(stranger)), None, "{stranger}");
        }
    }

    #[test]
    fn stems_are_allocated_lowest_first_and_never_twice() {
        let c = Catalog::new();
        let mut listing = Listing::default();
        let h = fnv1a(b"x");
        let listed = Stem { hash: h, n: 0 };
        c.add_listed(OsStr::new(&listed.file_name(7)), &mut listing);
        c.add_listed(OsStr::new(&listed.file_name(3)), &mut listing);
        assert_eq!(listing.stems, 1);
        assert_eq!(
            c.candidates(h),
            vec![(listed, Files::List(Box::new(vec![3, 7])))]
        );
        assert_eq!(c.allocate(h), Stem { hash: h, n: 1 });
        assert_eq!(c.allocate(h), Stem { hash: h, n: 2 });
        assert!(c.resolve_with(listed, || {}));
        assert!(!c.resolve_with(listed, || unreachable!()), "resolved once");
        assert!(c.candidates(h).is_empty());
        assert!(c.is_taken(listed), "a resolved stem stays taken");
        c.release(Stem { hash: h, n: 1 });
        assert_eq!(
            c.allocate(h),
            Stem { hash: h, n: 1 },
            "a released stem is reused"
        );
        assert_eq!(c.allocate(h ^ 1), Stem { hash: h ^ 1, n: 0 });
    }

    #[test]
    fn a_removed_stems_files_wait_for_its_last_log() {
        let c = Catalog::new();
        let h = fnv1a(b"x");
        let (a, b) = (Stem { hash: h, n: 0 }, Stem { hash: h, n: 1 });
        // Two logs of `a` (a read holds the old one), one of `b` (same hash).
        c.log_created(a);
        c.log_created(a);
        c.log_created(b);
        assert!(
            !c.defer_removal(Stem { hash: h, n: 2 }, &[0]),
            "no log alive"
        );
        assert!(c.defer_removal(a, &[5]), "a log of it is alive");
        assert_eq!(c.log_dropped(a, false, &[0, 5]), None, "one is still alive");
        assert_eq!(c.log_dropped(a, false, &[9]), Some(vec![0, 5, 9]));
        assert_eq!(c.log_dropped(a, false, &[]), None, "gone from the catalog");
        // `b` was not removed: its last drop deletes nothing; removed with
        // its log (the state's own), it deletes what that log names.
        assert_eq!(c.log_dropped(b, false, &[1]), None);
        c.log_created(b);
        assert_eq!(c.log_dropped(b, true, &[]), Some(vec![]));
        for n in 0..1000 {
            c.log_created(Stem { hash: h, n });
        }
        for n in 0..1000 {
            let stem = Stem { hash: h, n };
            assert_eq!(
                c.log_dropped(stem, n % 2 == 0, &[u64::from(n)]).is_some(),
                n % 2 == 0
            );
        }
    }
}
