//! The descriptor cache: every log file a store opens goes through one
//! bounded cache, so a store holds at most `bound` files open whatever the
//! number of shapes (`Config::max_open_files`).
//!
//! The model is RocksDB's table cache and lsm-tree's descriptor table: a
//! file's descriptor is an [`Arc`]'d [`Handle`]; the cache holds one
//! reference and every user (a read, a flush, recovery) holds its own for as
//! long as it uses the file, so eviction drops only the cache's reference
//! and never closes a file under a user. What is done better than the
//! lsm-tree table: a hit takes no store-wide lock (each log file owns its
//! cache entry, a [`Slot`], and a hit is one arc-swap load of it), and a
//! miss never spins.
//!
//! # Invariants
//!
//! - **The bound counts descriptors, not entries.** `open` counts every
//!   [`Handle`] alive (cached, evicted but still in use, or reserved for an
//!   open under way); a handle's drop is the close and decrements it. A
//!   new open reserves a unit first, so more than `bound` descriptors are
//!   never open at once. When every open descriptor is in use, a miss waits
//!   until a user lets one go (a user holds at most one [`Lease`] at a
//!   time: no path waits for a descriptor while holding one, so the wait
//!   ends).
//! - **Eviction is a clock sweep** (the usual approximation of LRU): each
//!   hit marks its slot used; the sweep gives a used slot a second chance
//!   and evicts the first unused slot whose handle nobody else holds.
//! - **A slot's handle is published once per open**: a miss that loses the
//!   race to publish uses the winner's handle and closes its own.
//! - A handle may close anywhere, also under the cache's mutex (a sweep
//!   may hold the last reference of a record or a handle it looked at,
//!   when its file was forgotten or its record dropped meanwhile): a close
//!   only decrements the atomic count, and it locks the mutex to wake
//!   waiters only if this thread does not hold it already ([`HELD`]). A
//!   miss looks at the count again after its sweep, before it waits: a
//!   close its own sweep caused woke nobody.

use std::cell::Cell;
use std::io;
use std::path::Path;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};

use arc_swap::ArcSwapOption;

use crate::fs::{Fs, FsFile};

/// How a miss gets its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Open an existing file.
    Open,
    /// Create a new file (fails if it exists).
    Create,
}

/// The store's bounded cache of open log files. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub(crate) struct Descriptors {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    fs: Arc<dyn Fs>,
    bound: usize,
    clock: Mutex<Clock>,
    /// Signalled when a descriptor closes or a lease ends while misses wait.
    closed: Condvar,
    /// Misses waiting on `closed` (see [`Lease`]'s drop for the ordering).
    waiting: AtomicUsize,
    /// Descriptors open or reserved now (module invariants): incremented
    /// under `clock`'s mutex only (so a check and its increment are one
    /// step), decremented by closes anywhere.
    open: AtomicUsize,
}

thread_local! {
    /// The cache whose mutex this thread holds, if any (its `Shared`'s
    /// address): a close on this thread must not lock it again.
    static HELD: Cell<usize> = const { Cell::new(0) };
}

/// The cache's mutex, held; records itself in [`HELD`] meanwhile.
struct Locked<'a> {
    shared: &'a Shared,
    guard: Option<MutexGuard<'a, Clock>>,
    /// What [`HELD`] said before (another store's cache).
    prev: usize,
}

impl std::ops::Deref for Locked<'_> {
    type Target = Clock;

    fn deref(&self) -> &Clock {
        self.guard.as_ref().expect("held")
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Clock {
        self.guard.as_mut().expect("held")
    }
}

impl<'a> Locked<'a> {
    /// Waits on the cache's condition variable (the mutex is released
    /// meanwhile, and [`HELD`] says so).
    fn wait(mut self) -> Locked<'a> {
        let guard = self.guard.take().expect("held");
        HELD.with(|h| h.set(self.prev));
        let guard = self
            .shared
            .closed
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner);
        HELD.with(|h| h.set(self.shared.addr()));
        self.guard = Some(guard);
        self
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if self.guard.is_some() {
            HELD.with(|h| h.set(self.prev));
        }
    }
}

#[derive(Debug, Default)]
struct Clock {
    /// Slots with a cached handle, in sweep order.
    ring: Vec<Weak<Slot>>,
    hand: usize,
    /// The most that were ever open at once.
    peak: usize,
}

/// One log file's entry in the cache, owned by the file's in-memory record.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    fd: ArcSwapOption<Handle>,
    /// Set by hits; the clock sweep clears it (second chance).
    used: AtomicBool,
    /// The ring holds this slot (read and written under the cache's mutex
    /// only, so Relaxed): a slot is in the ring at most once.
    in_ring: AtomicBool,
}

/// A user's hold on a descriptor: it stays open (even if evicted) until
/// every lease on it is dropped. Dereferences to the file.
#[derive(Debug)]
pub(crate) struct Lease(Option<Arc<Handle>>);

impl std::ops::Deref for Lease {
    type Target = dyn FsFile;

    fn deref(&self) -> &Self::Target {
        match &self.0 {
            Some(h) => &*h.file,
            None => unreachable!("a lease holds its handle until it drops"),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(h) = self.0.take() else { return };
        let shared = Arc::clone(&h.shared);
        drop(h);
        // SeqCst fence: orders the reference count's decrement above before
        // the `waiting` load; pairs with the fence in `Descriptors::miss`
        // between its `waiting` increment and its sweep. Either the sweep
        // sees this lease gone, or this load sees the waiter and wakes it
        // (under the mutex, which the waiter holds from its sweep until it
        // waits, so the wake cannot fall between them).
        fence(Ordering::SeqCst);
        if shared.waiting.load(Ordering::Relaxed) > 0 {
            shared.wake();
        }
    }
}

/// An open descriptor. Dropping the last reference closes it.
#[derive(Debug)]
pub(crate) struct Handle {
    file: Arc<dyn FsFile>,
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.release();
    }
}

impl Shared {
    fn addr(&self) -> usize {
        self as *const Shared as usize
    }

    fn lock(&self) -> Locked<'_> {
        let guard = self.clock.lock().unwrap_or_else(PoisonError::into_inner);
        let prev = HELD.with(|h| h.replace(self.addr()));
        Locked {
            shared: self,
            guard: Some(guard),
            prev,
        }
    }

    /// Wakes the waiting misses: under the mutex (which a waiter holds from
    /// its last look at the count until it waits, so the wake cannot fall
    /// between them), unless this thread holds it (then no waiter is
    /// between them either).
    fn wake(&self) {
        if HELD.with(Cell::get) != self.addr() {
            drop(self.lock());
        }
        self.closed.notify_all();
    }

    /// Counts a close (or an abandoned reservation) and wakes the waiters.
    fn release(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        // SeqCst fence: the decrement before the `waiting` load; pairs
        // with the fence in `Descriptors::miss` (as `Lease`'s drop does).
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.wake();
        }
    }

    /// Reserves a descriptor if fewer than `bound` are open. The caller
    /// holds the mutex (`clock`): increments happen only under it, so the
    /// load and the add are one step; closes only make room.
    fn reserve(&self, clock: &mut Clock) -> bool {
        let open = self.open.load(Ordering::Relaxed);
        if open >= self.bound {
            return false;
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        clock.peak = clock.peak.max(open + 1);
        true
    }
}

impl Clock {
    /// One clock sweep (at most two turns of the ring): takes the first
    /// evictable handle out of its slot. Returns `None` when every cached
    /// handle is in use.
    fn evict(&mut self) -> Option<Arc<Handle>> {
        let mut budget = 2 * self.ring.len();
        while budget > 0 && !self.ring.is_empty() {
            budget -= 1;
            if self.hand >= self.ring.len() {
                self.hand = 0;
            }
            let i = self.hand;
            let Some(slot) = self.ring[i].upgrade() else {
                // The file's record is gone (its handle went with it).
                self.ring.swap_remove(i);
                continue;
            };
            let Some(handle) = slot.fd.load_full() else {
                // Forgotten.
                slot.in_ring.store(false, Ordering::Relaxed);
                self.ring.swap_remove(i);
                continue;
            };
            // Relaxed: a hint; a hit racing the sweep costs at most an
            // early eviction, never a closed descriptor in use.
            if slot.used.swap(false, Ordering::Relaxed) {
                self.hand += 1;
                continue;
            }
            // The slot's reference and ours: anything more is a lease.
            if Arc::strong_count(&handle) > 2 {
                self.hand += 1;
                continue;
            }
            slot.in_ring.store(false, Ordering::Relaxed);
            self.ring.swap_remove(i);
            drop(handle);
            return slot.fd.swap(None);
        }
        None
    }

    /// Puts `slot` (which holds a handle now) in the ring unless it is
    /// there, and drops an entry or two of records that are gone or
    /// forgotten, at the hand (a cache that never fills never sweeps; a
    /// dead entry's weak reference would keep its record's memory).
    fn insert(&mut self, slot: &Arc<Slot>) {
        for _ in 0..2 {
            if self.ring.is_empty() {
                break;
            }
            if self.hand >= self.ring.len() {
                self.hand = 0;
            }
            match self.ring[self.hand].upgrade() {
                Some(s) if s.fd.load().is_some() => self.hand += 1,
                Some(s) => {
                    s.in_ring.store(false, Ordering::Relaxed);
                    self.ring.swap_remove(self.hand);
                }
                None => {
                    self.ring.swap_remove(self.hand);
                }
            }
        }
        if !slot.in_ring.swap(true, Ordering::Relaxed) {
            self.ring.push(Arc::downgrade(slot));
        }
    }
}

impl Descriptors {
    /// A cache of at most `bound` (at least 1) open files of `fs`.
    pub(crate) fn new(fs: Arc<dyn Fs>, bound: usize) -> Self {
        Descriptors {
            shared: Arc::new(Shared {
                fs,
                bound: bound.max(1),
                clock: Mutex::new(Clock::default()),
                closed: Condvar::new(),
                waiting: AtomicUsize::new(0),
                open: AtomicUsize::new(0),
            }),
        }
    }

    /// The file system behind the cache.
    pub(crate) fn fs(&self) -> &Arc<dyn Fs> {
        &self.shared.fs
    }

    /// The descriptor of the file `slot` stands for: the cached one, or one
    /// opened (or created, with [`Mode::Create`]) at `path`, evicting an
    /// unused one or waiting for one to close when `bound` are open. The
    /// caller must not hold another handle of this cache while it calls
    /// (module invariants).
    pub(crate) fn get(&self, slot: &Arc<Slot>, path: &Path, mode: Mode) -> io::Result<Lease> {
        if let Some(h) = slot.fd.load_full() {
            // Relaxed: see `Clock::evict`. Read first so that a hot file's
            // flag line is not written by every hit.
            if !slot.used.load(Ordering::Relaxed) {
                slot.used.store(true, Ordering::Relaxed);
            }
            return Ok(Lease(Some(h)));
        }
        self.miss(slot, path, mode).map(|h| Lease(Some(h)))
    }

    #[cold]
    fn miss(&self, slot: &Arc<Slot>, path: &Path, mode: Mode) -> io::Result<Arc<Handle>> {
        let shared = &self.shared;
        let mut clock = shared.lock();
        loop {
            if let Some(h) = slot.fd.load_full() {
                return Ok(h);
            }
            if shared.reserve(&mut clock) {
                break;
            }
            shared.waiting.fetch_add(1, Ordering::Relaxed);
            // SeqCst fence: pairs with the ones in `Lease`'s drop and in
            // `Shared::release` (a close's decrement, then its `waiting`
            // load): either this miss sees the lease gone or the close
            // counted, or that thread sees this waiter and wakes it.
            fence(Ordering::SeqCst);
            let victim = clock.evict();
            // The sweep may have closed a handle on this thread (its close
            // woke nobody): look at the count again before waiting.
            let reserved = victim.is_none() && shared.reserve(&mut clock);
            if victim.is_none() && !reserved {
                // Every descriptor is leased: wait for a lease to end.
                clock = clock.wait();
            }
            shared.waiting.fetch_sub(1, Ordering::Relaxed);
            if reserved {
                break;
            }
            if let Some(victim) = victim {
                // Closed (if nobody leases it) outside the lock.
                drop(clock);
                drop(victim);
                clock = shared.lock();
            }
        }
        drop(clock);
        // One unit is reserved: open outside the lock.
        let opened = match mode {
            Mode::Open => shared.fs.open(path),
            Mode::Create => shared.fs.create(path),
        };
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                shared.release();
                return Err(e);
            }
        };
        let handle = Arc::new(Handle {
            file,
            shared: Arc::clone(shared),
        });
        let prev = slot
            .fd
            .compare_and_swap(&None::<Arc<Handle>>, Some(Arc::clone(&handle)));
        if let Some(winner) = &*prev {
            // Another miss published first: use its descriptor; ours closes
            // when `handle` drops, outside the lock.
            return Ok(Arc::clone(winner));
        }
        drop(prev);
        shared.lock().insert(slot);
        Ok(handle)
    }

    /// Drops the cache's reference to `slot`'s descriptor (the file is being
    /// removed, or its record dropped): it closes once its users are done.
    pub(crate) fn forget(slot: &Slot) {
        drop(slot.fd.swap(None));
    }

    /// Descriptors open now (cached, in use, or being opened).
    pub(crate) fn open_now(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// The most descriptors that were open at once.
    pub(crate) fn peak(&self) -> usize {
        self.shared.lock().peak
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use proptest::prelude::*;

    use super::*;
    use crate::fs::SimFs;

    fn files(fs: &SimFs, n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| {
                let p = PathBuf::from(format!("/d/f{i}"));
                let f = fs.create(&p).expect("create");
                f.write_all_at(format!("file {i}").as_bytes(), 0)
                    .expect("write");
                p
            })
            .collect()
    }

    fn read(h: &Lease) -> String {
        let mut buf = [0u8; 16];
        let n = h.read_at(&mut buf, 0).expect("read");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn a_hit_reuses_the_descriptor_and_the_bound_evicts() {
        let fs = SimFs::new();
        let paths = files(&fs, 3);
        let base = fs.open_handles();
        let cache = Descriptors::new(Arc::new(fs.clone()), 2);
        let slots: Vec<Arc<Slot>> = (0..3).map(|_| Arc::default()).collect();
        let a = cache.get(&slots[0], &paths[0], Mode::Open).expect("open");
        let b = cache.get(&slots[0], &paths[0], Mode::Open).expect("hit");
        assert!(std::ptr::addr_eq(&*a, &*b));
        drop((a, b));
        cache.get(&slots[1], &paths[1], Mode::Open).expect("open");
        assert_eq!(cache.open_now(), 2);
        // A third file evicts one of the two unused ones.
        let c = cache.get(&slots[2], &paths[2], Mode::Open).expect("open");
        assert_eq!(read(&c), "file 2");
        assert_eq!(cache.open_now(), 2);
        assert_eq!(fs.open_handles() - base, 2);
        assert_eq!(cache.peak(), 2);
    }

    #[test]
    fn an_evicted_descriptor_in_use_stays_open_and_counted() {
        let fs = SimFs::new();
        let paths = files(&fs, 2);
        let cache = Descriptors::new(Arc::new(fs.clone()), 1);
        let slots: Vec<Arc<Slot>> = (0..2).map(|_| Arc::default()).collect();
        let held = cache.get(&slots[0], &paths[0], Mode::Open).expect("open");
        // Evict it from another thread: the bound is 1 and `held` is in
        // use, so the second open must wait until `held` is dropped.
        let t = {
            let cache = cache.clone();
            let slot = Arc::clone(&slots[1]);
            let path = paths[1].clone();
            std::thread::spawn(move || read(&cache.get(&slot, &path, Mode::Open).expect("open")))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !t.is_finished(),
            "a second descriptor opened past the bound"
        );
        assert_eq!(read(&held), "file 0", "the held descriptor still reads");
        drop(held);
        assert_eq!(t.join().expect("reader"), "file 1");
        assert!(cache.peak() <= 1);
    }

    /// Records dropped and files forgotten on some threads while others
    /// sweep: a sweep then holds the last reference of a record or handle
    /// it looked at, and that close runs under the mutex the sweep holds.
    /// It must not lock it again (it did: the store hung, found by
    /// benches/reclaim and the million-shape soak).
    #[test]
    fn a_close_under_the_sweep_does_not_lock_the_cache_again() {
        let fs = SimFs::new();
        let paths = files(&fs, 8);
        let cache = Descriptors::new(Arc::new(fs.clone()), 2);
        let (done, finished) = std::sync::mpsc::channel();
        for t in 0..4usize {
            let (cache, paths, done) = (cache.clone(), paths.clone(), done.clone());
            std::thread::spawn(move || {
                let mut kept: Vec<Arc<Slot>> = Vec::new();
                for i in 0..20_000usize {
                    let slot: Arc<Slot> = Arc::default();
                    let lease = cache
                        .get(&slot, &paths[(i * 7 + t) % paths.len()], Mode::Open)
                        .expect("open");
                    assert!(read(&lease).starts_with("file "));
                    drop(lease);
                    if i % 3 == t % 3 {
                        Descriptors::forget(&slot);
                    }
                    // Keep a few records a while, so that sweeps meet
                    // records that other threads drop.
                    kept.push(slot);
                    if kept.len() > 3 {
                        kept.remove(i % 3);
                    }
                }
                done.send(()).expect("report");
            });
        }
        for _ in 0..4 {
            finished
                .recv_timeout(std::time::Duration::from_secs(120))
                .expect("a thread hung in the descriptor cache");
        }
        drop(cache);
        assert!(fs.open_handles() <= 8 + 2);
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Get file `i`'s descriptor and keep it in hand `h`.
        Get(usize, usize),
        /// Drop hand `h`.
        Drop(usize),
        /// Read through hand `h`.
        Read(usize),
        /// Forget file `i`'s cached descriptor.
        Forget(usize),
    }

    const FILES: usize = 8;
    const HANDS: usize = 3;

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..FILES, 0..HANDS).prop_map(|(i, h)| Op::Get(i, h)),
            2 => (0..HANDS).prop_map(Op::Drop),
            3 => (0..HANDS).prop_map(Op::Read),
            1 => (0..FILES).prop_map(Op::Forget),
        ]
    }

    proptest! {
        /// Cache operations against a model: at most `bound` descriptors are
        /// ever open (counted by the file system itself), a hand always
        /// reads its own file, and a hit hands out the cached descriptor.
        #[test]
        fn cache_matches_its_model(bound in (HANDS + 1)..6, ops in prop::collection::vec(op(), 1..200)) {
            let fs = SimFs::new();
            let paths = files(&fs, FILES);
            let base = fs.open_handles();
            fs.reset_peak_open_handles();
            let cache = Descriptors::new(Arc::new(fs.clone()), bound);
            let slots: Vec<Arc<Slot>> = (0..FILES).map(|_| Arc::default()).collect();
            let mut hands: HashMap<usize, (usize, Lease)> = HashMap::new();
            for op in ops {
                match op {
                    Op::Get(i, h) => {
                        // A user holds one descriptor at a time.
                        hands.remove(&h);
                        let cached = slots[i].fd.load_full();
                        let got = cache.get(&slots[i], &paths[i], Mode::Open).expect("get");
                        if let (Some(c), Some(g)) = (cached, &got.0) {
                            prop_assert!(Arc::ptr_eq(&c, g), "a hit opened a new descriptor");
                        }
                        hands.insert(h, (i, got));
                    }
                    Op::Drop(h) => { hands.remove(&h); }
                    Op::Read(h) => {
                        if let Some((i, got)) = hands.get(&h) {
                            prop_assert_eq!(read(got), format!("file {i}"));
                        }
                    }
                    Op::Forget(i) => Descriptors::forget(&slots[i]),
                }
                let open = fs.open_handles() - base;
                prop_assert!(open <= bound, "{} open with a bound of {}", open, bound);
                prop_assert_eq!(open, cache.open_now());
            }
            prop_assert!(fs.peak_open_handles() - base <= bound);
        }
    }
}
