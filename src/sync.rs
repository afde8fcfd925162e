//! The loom facade: every atomic, cell and pointer that takes part in a
//! concurrency protocol comes from here, so that the loom models in
//! `loom-tests/` check the code that ships.
//!
//! Under `cfg(loom)` (with `--cfg crossbeam_loom` and the `loom` feature,
//! which puts crossbeam-epoch in its loom mode) the atomics and
//! [`UnsafeCell`] are loom's, and [`Published`] (arc-swap in production) is a
//! loom mutex around an `Arc`: arc-swap has no loom support, and the contract
//! the registry relies on (a load returns a complete value published by some
//! `store`, and a `store` is visible to every load that starts after it) is
//! the same for both.
//!
//! The flush tracker's subscriber channels are `std::sync::mpsc` in
//! production and, under loom, [`mpsc`] below: a loom mutex around a queue
//! with the same contract for what the tracker uses (`send` fails once the
//! receiver is gone; `try_recv` returns the messages in send order). Loom's
//! own `mpsc` stub does not fit: it counts a send to a dropped receiver as a
//! message leaked at the end of the execution (a false failure for a
//! subscriber that unsubscribes), and its `recv` prints through `dbg!`.
//!
//! [`pin`] pins the store's own epoch collector (never the process-global
//! one) through a per-thread handle cache.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(not(loom))]
pub(crate) use std::sync::{mpsc, Condvar, Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

pub(crate) use crossbeam_epoch::{Atomic, Collector, Guard, Owned, Shared};

#[cfg(not(loom))]
use crossbeam_epoch::LocalHandle;
#[cfg(not(loom))]
use std::cell::Cell;
use std::sync::Arc;

/// Reads an atomic the caller owns exclusively (`&mut`) through loom's
/// cell, so loom checks it against every other access (a freed segment's
/// poisoning).
#[cfg(loom)]
pub(crate) fn exclusive_usize(a: &mut AtomicUsize) -> usize {
    a.with_mut(|v| *v)
}

/// Locks a mutex, recovering the data if a previous holder panicked: every
/// critical section in this crate leaves its data consistent at each step,
/// so poisoning carries no information here.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(not(loom))]
    {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    #[cfg(loom)]
    {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Waits on `cond` with `guard`'s mutex, recovering the data if a holder
/// panicked (as [`lock`]).
pub(crate) fn wait<'a, T>(cond: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cond.wait(guard).unwrap_or_else(|e| e.into_inner())
}

/// A cell for slot data whose synchronisation is provided by an atomic
/// elsewhere (the segment's published length). Under loom every access is
/// checked for a happens-before edge to the last write.
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(
    #[cfg(not(loom))] std::cell::UnsafeCell<T>,
    #[cfg(loom)] loom::cell::UnsafeCell<T>,
);

impl<T> UnsafeCell<T> {
    pub(crate) fn new(v: T) -> Self {
        #[cfg(not(loom))]
        {
            UnsafeCell(std::cell::UnsafeCell::new(v))
        }
        #[cfg(loom)]
        {
            UnsafeCell(loom::cell::UnsafeCell::new(v))
        }
    }

    /// Runs `f` with a shared pointer to the contents.
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        #[cfg(not(loom))]
        {
            f(self.0.get())
        }
        #[cfg(loom)]
        {
            self.0.with(f)
        }
    }

    /// Runs `f` with a mutable pointer to the contents.
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        #[cfg(not(loom))]
        {
            f(self.0.get())
        }
        #[cfg(loom)]
        {
            self.0.with_mut(f)
        }
    }
}

/// An atomically replaceable `Arc<T>`: arc-swap in production, a loom mutex
/// under loom (same contract: loads see a complete published value).
pub(crate) struct Published<T> {
    #[cfg(not(loom))]
    inner: arc_swap::ArcSwap<T>,
    #[cfg(loom)]
    inner: Mutex<Arc<T>>,
}

/// What [`Published::load`] returns: derefs to the published value.
#[cfg(not(loom))]
pub(crate) type PublishedGuard<T> = arc_swap::Guard<Arc<T>>;
/// What [`Published::load`] returns: derefs to the published value.
#[cfg(loom)]
pub(crate) type PublishedGuard<T> = Arc<T>;

impl<T> Published<T> {
    pub(crate) fn new(v: Arc<T>) -> Self {
        #[cfg(not(loom))]
        {
            Published {
                inner: arc_swap::ArcSwap::new(v),
            }
        }
        #[cfg(loom)]
        {
            Published {
                inner: Mutex::new(v),
            }
        }
    }

    /// Wait-free in production (arc-swap's fast path).
    pub(crate) fn load(&self) -> PublishedGuard<T> {
        #[cfg(not(loom))]
        {
            self.inner.load()
        }
        #[cfg(loom)]
        {
            Arc::clone(&lock(&self.inner))
        }
    }

    /// Replaces the value. Callers serialise their read-modify-write cycles
    /// with their own lock; this is only the publication.
    pub(crate) fn store(&self, v: Arc<T>) {
        #[cfg(not(loom))]
        {
            self.inner.store(v)
        }
        #[cfg(loom)]
        {
            *lock(&self.inner) = v;
        }
    }
}

/// Retired bytes a thread accumulates before [`Epoch::retired`] hands them
/// to the collector: what an idle writer thread may keep alive.
#[cfg(not(loom))]
pub(crate) const HANDOFF_BYTES: usize = 64 << 10;

/// Deferred functions in a crossbeam-epoch 0.9 thread-local bag (its
/// `MAX_OBJECTS`): deferring this many seals the bag holding the earlier
/// ones. Were the bag ever larger, sealing would come later (frees wait
/// longer), never early.
#[cfg(not(loom))]
const BAG: usize = 64;

/// The store's own epoch domain: a dedicated crossbeam-epoch [`Collector`]
/// (so a host's long-held pins on the global collector cannot stall this
/// table's reclamation, nor ours the host's) and a liveness token that lets
/// per-thread handle caches drop handles of dead domains.
#[derive(Clone, Debug)]
pub(crate) struct Epoch {
    collector: Collector,
    #[cfg(not(loom))]
    alive: Arc<()>,
}

impl Epoch {
    pub(crate) fn new() -> Self {
        Epoch {
            collector: Collector::new(),
            #[cfg(not(loom))]
            alive: Arc::new(()),
        }
    }

    /// Pins this domain on the current thread.
    ///
    /// Production keeps one registered handle per (thread, domain) in a
    /// thread-local cache, so a pin costs what pinning crossbeam's global
    /// collector costs. Handles of dropped domains are released the next
    /// time the thread registers a new one.
    #[cfg(not(loom))]
    pub(crate) fn pin(&self) -> Guard {
        self.with_local(|h, _| h.pin())
    }

    /// Runs `f` on this thread's handle of the domain and its count of
    /// bytes retired since the last hand-off (registering the handle first
    /// if needed).
    #[cfg(not(loom))]
    fn with_local<R>(&self, f: impl FnOnce(&LocalHandle, &Cell<usize>) -> R) -> R {
        use std::cell::RefCell;
        use std::sync::Weak;

        type Local = (Weak<()>, LocalHandle, Cell<usize>);
        thread_local! {
            static HANDLES: RefCell<Vec<Local>> = const { RefCell::new(Vec::new()) };
        }
        HANDLES.with(|cell| {
            let mut handles = cell.borrow_mut();
            let at = handles
                .iter()
                .position(|(_, h, _)| h.collector() == &self.collector);
            let at = at.unwrap_or_else(|| {
                handles.retain(|(alive, _, _)| alive.strong_count() > 0);
                let h = self.collector.register();
                handles.push((Arc::downgrade(&self.alive), h, Cell::new(0)));
                handles.len() - 1
            });
            let (_, h, retired) = &handles[at];
            f(h, retired)
        })
    }

    /// Called after `guard` deferred the free of `bytes` of retired memory:
    /// once [`HANDOFF_BYTES`] have accumulated on this thread since the last
    /// hand-off, seals its local bag of deferred frees into the collector's
    /// global queue, where the next collection (any thread's pin runs one
    /// every 128 pins) frees them once no reader can hold them.
    ///
    /// It seals without collecting. crossbeam-epoch offers one call that
    /// seals, `Guard::flush`, and it also collects; collecting first tries
    /// to advance the epoch, which reads every registered thread's epoch
    /// word, cache lines the pinned readers keep writing, so its cost grows
    /// with the number of reader threads. Collecting on every terminate put
    /// it in terminate's tail (p99 0.76 µs with no reader, 8.4 µs with 64),
    /// and collecting per 1 MiB or 4 MiB retired still showed (2.7x, 1.95x)
    /// while letting retired memory pile up. Instead the bag is sealed the
    /// way crossbeam seals it itself, when it is full: by deferring no-ops
    /// until it is ([`BAG`] of them at most, about 0.3 µs). Left alone, a
    /// thread's deferred frees would wait in its bag until 64 had piled up or
    /// the thread exited: an idle writer thread would keep the last segments
    /// it retired, however large.
    #[cfg(not(loom))]
    pub(crate) fn retired(&self, guard: &Guard, bytes: usize) {
        let due = self.with_local(|_, retired| {
            let total = retired.get().saturating_add(bytes);
            retired.set(if total >= HANDOFF_BYTES { 0 } else { total });
            total >= HANDOFF_BYTES
        });
        if due {
            for _ in 0..BAG {
                guard.defer(|| ());
            }
        }
    }

    /// Hands this thread's deferred frees to the collector and runs a
    /// collection, if it has retired anything since the last hand-off
    /// (`ShapeWriter::tick`, `Store::collect`: not on a latency path).
    #[cfg(not(loom))]
    pub(crate) fn hand_off(&self, guard: &Guard) {
        if self.with_local(|_, retired| retired.replace(0)) > 0 {
            guard.flush();
        }
    }

    /// Under loom, as production: a flush (`Store::collect` flushes
    /// regardless).
    #[cfg(loom)]
    pub(crate) fn hand_off(&self, guard: &Guard) {
        guard.flush();
    }

    /// Under loom no model retires megabytes: the hand-off never comes
    /// due. The models that check reclamation hand over explicitly where
    /// the threshold would be reached (`loom_api::Writer::retire`). A
    /// hand-off on every retirement would also hide bugs: crossbeam's queue
    /// operations add happens-before edges between writer and reader that
    /// production does not have on every step (model 4b's twin then passes).
    #[cfg(loom)]
    pub(crate) fn retired(&self, _guard: &Guard, _bytes: usize) {}

    /// Under loom the cache is the same, in a loom thread-local: it lives
    /// as long as the model thread (so never longer than the model's
    /// collector), and a thread's pins after its first neither register a
    /// handle nor try to collect, as in production. (Registering a fresh
    /// handle per pin multiplies the interleavings loom must explore by the
    /// collector's list and queue operations.)
    #[cfg(loom)]
    pub(crate) fn pin(&self) -> Guard {
        use crossbeam_epoch::LocalHandle;
        use std::cell::RefCell;

        /// The handles of one model thread.
        struct Handles(Vec<LocalHandle>);

        impl Drop for Handles {
            fn drop(&mut self) {
                // A failing model unwinds out of loom and drops its threads'
                // locals outside the execution, where unregistering a handle
                // (loom atomics) would panic again and abort: leak them.
                if std::thread::panicking() {
                    std::mem::forget(std::mem::take(&mut self.0));
                }
            }
        }

        loom::thread_local! {
            static HANDLES: RefCell<Handles> = RefCell::new(Handles(Vec::new()));
        }
        HANDLES.with(|cell| {
            let handles = &mut cell.borrow_mut().0;
            if let Some(h) = handles.iter().find(|h| h.collector() == &self.collector) {
                return h.pin();
            }
            let h = self.collector.register();
            let g = h.pin();
            handles.push(h);
            g
        })
    }
}

/// The subscriber channel under loom (see the module docs): a loom mutex
/// around a queue, so loom sees every send and receive and the order
/// between them. Only what the flush tracker and the models use.
#[cfg(loom)]
pub(crate) mod mpsc {
    use std::collections::VecDeque;
    use std::sync::Arc;

    pub use std::sync::mpsc::{SendError, TryRecvError};

    use super::{lock, Mutex};

    struct Chan<T> {
        queue: VecDeque<T>,
        receiver_alive: bool,
    }

    /// A new channel.
    pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
        let chan = Arc::new(Mutex::new(Chan {
            queue: VecDeque::new(),
            receiver_alive: true,
        }));
        (Sender(Arc::clone(&chan)), Receiver(chan))
    }

    /// The sending half.
    pub struct Sender<T>(Arc<Mutex<Chan<T>>>);

    impl<T> Sender<T> {
        /// Queues `v`; fails (returning it) once the receiver was dropped.
        pub fn send(&self, v: T) -> Result<(), SendError<T>> {
            let mut c = lock(&self.0);
            if !c.receiver_alive {
                return Err(SendError(v));
            }
            c.queue.push_back(v);
            Ok(())
        }
    }

    /// The receiving half. Dropping it makes later sends fail.
    pub struct Receiver<T>(Arc<Mutex<Chan<T>>>);

    impl<T> Receiver<T> {
        /// The oldest message not yet received, or `Empty` (never
        /// `Disconnected`: the tracker keeps its senders while it lives).
        pub fn try_recv(&self) -> Result<T, TryRecvError> {
            lock(&self.0).queue.pop_front().ok_or(TryRecvError::Empty)
        }
    }

    impl<T> Drop for Receiver<T> {
        fn drop(&mut self) {
            // A failing model drops its state while unwinding, outside the
            // loom execution, where locking a loom mutex would panic again.
            if std::thread::panicking() {
                return;
            }
            let mut c = lock(&self.0);
            c.receiver_alive = false;
            c.queue.clear();
        }
    }
}
