//! Waiting for the next commit: each shape's waiter registry.
//!
//! A reader that has seen everything up to `after` calls
//! [`ShapeHandle::wait_for`](crate::ShapeHandle::wait_for) (or its async
//! form) and is woken as soon as a transaction committing an offset past
//! `after` is visible, when its timeout expires, or when the shape's writer
//! goes away (terminate, or a writer dropped without terminate).
//!
//! # Outcomes
//!
//! A commit past `after` wins over everything else. Otherwise a shape that
//! is *dead* (terminated: no writer's buffer published) ends the wait at
//! once with `Terminated`, so a tailing loop always learns that its shape
//! went away, even if the terminate fell between two of its waits. A
//! terminate or a dropped writer *during* the wait ends it too (even if a
//! new writer already restarted the shape). A writer dropped before the
//! wait began does not: its shape stays live and the next writer continues
//! it.
//!
//! # Structure
//!
//! Every shape's slot holds one [`Waiters`]:
//!
//! - `count`: how many waiters are registered. The commit path reads it
//!   once and does nothing more when it is zero: no lock, no syscall, no
//!   allocation, whatever the number of shapes.
//! - `closed`: a generation, bumped each time the writer goes away, with the
//!   reason in its low bit. A waiter snapshots it when it starts and
//!   reports a close if the generation moved while it waited.
//! - `shared`: allocated by the first waiter of the shape and kept for the
//!   slot's life: a mutex around the async wakers, a condvar for blocking
//!   waiters, `seq`, a wake counter (an event count) bumped under the
//!   mutex by every wake, and `queued`, set while the shape waits in the
//!   store's wake queue.
//!
//! Waiting never holds an epoch pin: a waiter pins only inside `committed`
//! (the caller's check of the last committed offset), then sleeps unpinned.
//!
//! # Waking: the hand-off
//!
//! The committing thread never wakes anyone itself: a writer must not stall
//! on its readers (10,000 sleeping threads are tens of milliseconds of
//! futex wakes). A commit or close that finds `count != 0` sets `queued`
//! and, if it was clear, pushes the shape onto the store's wake queue
//! ([`WakeService`](crate::shape::wait::WakeService), `wake.rs`): no lock, one
//! compare-and-swap and at most one futex wake, whatever the number of
//! waiters. A commit that finds `queued` already set pushes nothing: the
//! pending wake carries it. The store's waker thread (`shapebuf-wake`,
//! spawned by the first waiter) takes the shape off the queue, clears
//! `queued`, and only then wakes: bumps `seq` under the mutex, takes the
//! async wakers, and outside the lock notifies the condvar and wakes the
//! wakers. A wake touches only that shape's `shared`; a shape is in the
//! queue at most once. If the thread cannot be spawned, the commit wakes
//! inline (the same step, on its own thread).
//!
//! # Orderings
//!
//! *No lost wake-up between a commit and a waiter going to sleep* is a
//! store-then-load on each side (Dekker's pattern):
//!
//! ```text
//! committer                          waiter
//! committed.store(n, Release)        count.fetch_add(1)          (register)
//! fence(SeqCst)         -- F1        fence(SeqCst)       -- F2
//! count.load() == 0 => done          committed.load()            (re-check)
//! ```
//!
//! Release/Acquire alone does not forbid both loads reading the old value
//! (each store may still sit in its CPU's store buffer while the other
//! side's load runs): the committer would skip the wake and the waiter
//! would sleep past a visible commit. The two SeqCst fences are totally
//! ordered: if F2 precedes F1, the committer's load sees the registration
//! and wakes; if F1 precedes F2, the waiter's re-check (and every later one)
//! sees the commit. Fences rather than SeqCst accesses because the
//! committed store lives in the buffer's commit protocol (Release, modelled
//! by the loom tests) and keeps its ordering; the fence is this module's
//! whole addition to the commit path.
//!
//! *No lost wake-up between the re-check and sleeping*: a waiter loads
//! `seq` before its re-check and sleeps only if `seq` is unchanged under the
//! mutex; a wake bumps `seq` under the same mutex before notifying. A wake
//! that lands between the re-check and the sleep therefore changes `seq`
//! and the waiter checks again instead of sleeping; a wake after it went to
//! sleep notifies it; a wake before its `seq` load happened-before the
//! waiter's next re-check (through the mutex or the Acquire load of `seq`).
//!
//! *No commit lost in the hand-off*: a commit whose `queued` swap finds
//! the flag set pushes nothing, so the wake already queued must publish it.
//!
//! ```text
//! committer (commit k)                 waker thread
//! committed.store(k, Release)          take the shape off the queue
//! fence(SeqCst); count.load() != 0     queued.swap(false, Acquire)  -- C
//! queued.swap(true, Release)  -- M     seq += 1 under the mutex; notify
//!   was true => no push
//! ```
//!
//! M and C are RMWs on one flag, so one precedes the other in its
//! modification order. If M precedes C, C reads M's value or a later RMW's
//! in M's release sequence (an RMW reads the last value before it), so M
//! synchronises with C: commit k happens-before the `seq` bump, and a
//! waiter that sees the bump (or is notified by it) re-checks and sees
//! commit k. If C precedes M, M reads false and pushes the shape again.
//! Hence the two orders the loom twins break: the clear must be an RMW with
//! Acquire (a store, even SeqCst, reads nothing and synchronises with no
//! one: the waiter wakes, re-checks, misses commit k and sleeps past it),
//! and it must come before the wake (cleared after, a commit landing
//! between the bump and the clear is skipped and never woken).
//!
//! A close is the same pattern on `closed` instead of `committed`. A waiter
//! loads `closed` (Acquire), then whether the shape is live (the segment
//! pointer, Acquire; terminate unpublishes it with Release), and only then
//! the committed offset. The writer commits, then retires the segment, then
//! bumps `closed` (Release): a waiter that sees either sign of the
//! terminate has seen every commit made before it, so a close is never
//! reported while a commit past `after` was visible.

use std::sync::Arc;
#[cfg(not(loom))]
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::shape::once_arc::OnceArc;
use crate::shape::wake::{self, Link, Node};
use crate::sync::{
    fence, lock, wait, AtomicBool, AtomicU32, AtomicU64, Condvar, MutexGuard, Ordering,
};

/// The store's waker thread, queueing shapes' waiter states.
pub(crate) type WakeService = wake::WakeService<Shared>;
use crate::{sync::Mutex, LogOffset};

/// Why a wait for new commits returned (see
/// [`ShapeHandle::wait_for`](crate::ShapeHandle::wait_for)).
///
/// A commit wins over a close: when both happened, the outcome is
/// [`WaitOutcome::Committed`].
///
/// ```
/// # fn main() -> shapebuf::Result<()> {
/// use std::time::Duration;
/// use shapebuf::{LogOffset, Store, WaitOutcome};
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// let mut w = store.writer("s")?;
/// let h = store.handle("s")?;
/// let t = std::thread::spawn(move || h.wait_for(LogOffset::ZERO, Duration::from_secs(30)));
/// w.append(LogOffset::new(7, 0), "x")?;
/// w.commit()?;
/// assert_eq!(t.join().unwrap(), WaitOutcome::Committed(LogOffset::new(7, 0)));
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitOutcome {
    /// A transaction committing an offset past `after` is visible; this is
    /// the offset of the last committed entry when the waiter checked.
    Committed(LogOffset),
    /// The timeout expired and nothing past `after` was committed.
    TimedOut,
    /// The shape is terminated (dead: no writer's buffer is published, as
    /// after [`ShapeWriter::terminate`](crate::ShapeWriter::terminate) or
    /// before a reopened store's first writer), or was terminated during
    /// the wait, and nothing past `after` is committed. Once a new writer
    /// restarts the shape, waits on the same handle wait again.
    Terminated,
    /// The shape's writer was dropped without terminating during the wait
    /// and nothing past `after` is committed; the next writer recovers the
    /// shape (a drop before the wait began does not end it).
    WriterDropped,
    /// The shape was removed ([`Store::remove`](crate::Store::remove)),
    /// before or during the wait: the handle will never see another entry
    /// (a new shape with the same id is another shape; take a new handle).
    Removed,
}

/// Outside loom there are no faults: `fence_unless` takes this stand-in.
#[cfg(not(loom))]
#[derive(Clone, Copy)]
enum Fault {
    NotifyWithoutFence,
    RegisterWithoutFence,
}

/// Why a shape's writer went away (the low two bits of `closed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Close {
    /// [`ShapeWriter::terminate`](crate::ShapeWriter::terminate).
    Terminated = 0,
    /// A writer dropped without terminating.
    WriterDropped = 1,
    /// [`Store::remove`](crate::Store::remove) or
    /// [`ShapeWriter::remove`](crate::ShapeWriter::remove).
    Removed = 2,
}

/// What a wait checks: the waiter registry and the last committed offset of
/// one shape. Implemented by [`ShapeHandle`](crate::ShapeHandle).
pub(crate) trait Watch {
    /// The shape's waiter registry.
    fn waiters(&self) -> &Waiters;
    /// The offset of the last committed entry visible now
    /// ([`LogOffset::ZERO`] if none). It must read the committed watermark
    /// with at least Acquire, after the caller's fence (see the module's
    /// orderings), and must not keep an epoch pin when it returns.
    fn committed(&self) -> LogOffset;
    /// Whether a writer's buffer is published (the shape is not dead), read
    /// with at least Acquire.
    fn is_live(&self) -> bool;
    /// Whether the shape was removed (a wait on it ends at once with
    /// [`WaitOutcome::Removed`]).
    fn is_removed(&self) -> bool {
        false
    }
    /// The store's waker thread (a registration starts it).
    fn wake_service(&self) -> &WakeService;
}

/// One shape's waiter registry. See the module docs.
#[derive(Default)]
pub(crate) struct Waiters {
    /// Registered waiters (blocking and async).
    count: AtomicU32,
    /// `(closes << 2) | reason` of the last close.
    closed: AtomicU32,
    /// Allocated by the first waiter; never freed before the slot (the
    /// waker thread's queue holds clones).
    shared: OnceArc<Shared>,
    #[cfg(loom)]
    fault: Fault,
    /// What the waits and wakes did (loom model only): registrations,
    /// sleeps, and hand-offs skipped because the shape was queued already.
    #[cfg(loom)]
    trace: (
        std::sync::atomic::AtomicUsize,
        std::sync::atomic::AtomicUsize,
        std::sync::atomic::AtomicUsize,
    ),
}

/// A deliberate protocol error that the loom model (`loom-tests/tests/wake.rs`)
/// injects to show that loom catches it. Production has none.
#[cfg(loom)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// The shipping protocol.
    #[default]
    None,
    /// `notify_commit` and `close` skip their SeqCst fence.
    NotifyWithoutFence,
    /// `register` skips its SeqCst fence.
    RegisterWithoutFence,
    /// A blocking waiter goes to sleep without comparing `seq` under the
    /// mutex.
    SleepWithoutSeqCheck,
    /// The waker thread clears a shape's `queued` flag with a Relaxed store
    /// instead of an Acquire swap.
    ClearRelaxed,
    /// The waker thread clears `queued` (with the shipping Acquire swap)
    /// after waking the shape's waiters instead of before.
    ClearAfterWake,
    /// A notifier pushes the shape onto the wake queue with a Relaxed
    /// compare-and-swap instead of a Release one.
    PushRelaxed,
}

/// One shape's wake state: allocated by its first waiter, woken by the
/// store's waker thread.
#[derive(Default)]
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes so far; bumped only with `state` locked.
    seq: AtomicU64,
    /// Blocking waiters sleep here.
    cond: Condvar,
    /// In the waker thread's queue, or about to be (set by the notifier
    /// that pushes, cleared by the thread before it wakes).
    queued: AtomicBool,
    /// Its place in the waker thread's queue (see `wake.rs`).
    pub(crate) link: Link<Shared>,
    #[cfg(loom)]
    pub(crate) fault: Fault,
}

#[derive(Default)]
struct State {
    /// Blocking waiters inside `cond.wait` (skip the notify syscall when
    /// only async waiters wait).
    sleepers: usize,
    /// Async waiters' wakers.
    #[cfg(not(loom))]
    wakers: Slab,
}

/// Async waiters' wakers by key: a key stays its future's until it
/// deregisters, and a wake takes the wakers out, leaving the keys.
#[cfg(not(loom))]
#[derive(Debug, Default)]
struct Slab {
    entries: Vec<SlabEntry>,
    /// Head of the free list.
    free: Option<usize>,
    occupied: usize,
}

#[cfg(not(loom))]
#[derive(Debug)]
enum SlabEntry {
    Vacant { next: Option<usize> },
    Occupied(Option<Waker>),
}

#[cfg(not(loom))]
impl Slab {
    fn insert(&mut self) -> usize {
        self.occupied += 1;
        match self.free {
            Some(k) => {
                if let SlabEntry::Vacant { next } = self.entries[k] {
                    self.free = next;
                }
                self.entries[k] = SlabEntry::Occupied(None);
                k
            }
            None => {
                self.entries.push(SlabEntry::Occupied(None));
                self.entries.len() - 1
            }
        }
    }

    fn remove(&mut self, key: usize) {
        debug_assert!(matches!(self.entries[key], SlabEntry::Occupied(_)));
        self.occupied -= 1;
        if self.occupied == 0 {
            // Give back what a crowd of waiters left behind.
            *self = Slab::default();
            return;
        }
        self.entries[key] = SlabEntry::Vacant { next: self.free };
        self.free = Some(key);
    }

    fn set(&mut self, key: usize, waker: &Waker) {
        if let SlabEntry::Occupied(w) = &mut self.entries[key] {
            match w {
                Some(old) if old.will_wake(waker) => {}
                _ => *w = Some(waker.clone()),
            }
        }
    }

    /// Takes every stored waker (their keys stay registered).
    fn take_all(&mut self) -> Vec<Waker> {
        let mut wakers = Vec::new();
        if self.occupied > 0 {
            for e in &mut self.entries {
                if let SlabEntry::Occupied(w) = e {
                    wakers.extend(w.take());
                }
            }
        }
        wakers
    }
}

impl Waiters {
    /// The commit path's hook: call right after a commit's watermark is
    /// published. With no waiter: one fence and one load. With waiters: the
    /// shape goes to `wake`'s thread (no lock; at most one futex wake
    /// here, whatever the number of waiters).
    #[inline]
    pub(crate) fn notify_commit(&self, wake: &WakeService) {
        // SeqCst fence F1: orders the committed store before the count load
        // below; pairs with F2 in `register` (module docs, Orderings).
        self.fence_unless(Fault::NotifyWithoutFence);
        // Acquire: a nonzero count read from a registration (a release
        // sequence of RMWs) makes that waiter's `shared` visible here.
        if self.count.load(Ordering::Acquire) != 0 {
            self.hand_off(wake);
        }
    }

    /// The writer went away: wakes every waiter with `why` unless it sees a
    /// commit past its `after`.
    pub(crate) fn close(&self, why: Close, wake: &WakeService) {
        // Release: a waiter that sees this generation (Acquire in `check`)
        // sees every commit the writer made before closing. The writer
        // claim serialises closes; the update stays correct without it.
        let _ = self
            .closed
            .fetch_update(Ordering::Release, Ordering::Relaxed, |c| {
                Some(((c >> 2).wrapping_add(1) << 2) | why as u32)
            });
        // SeqCst fence: as in `notify_commit`, with `closed` as the store.
        self.fence_unless(Fault::NotifyWithoutFence);
        // Acquire: as in `notify_commit`.
        if self.count.load(Ordering::Acquire) != 0 {
            self.hand_off(wake);
        }
    }

    /// Waiters registered now (blocking and async).
    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed) as usize
    }

    /// Queues the shape for the waker thread unless it is queued already
    /// (module docs, Orderings: the hand-off).
    #[cold]
    #[inline(never)]
    fn hand_off(&self, wake: &WakeService) {
        let Some(shared) = self.shared.get() else {
            // Unreachable: a registration initialises `shared` first and the
            // count load that led here synchronised with it.
            debug_assert!(false, "a registered waiter without shared state");
            return;
        };
        // Release: if the shape is queued already, the thread's clearing
        // swap (an Acquire RMW, which reads the last value in the flag's
        // modification order) reads this store or a later one and so sees
        // this commit before it wakes anyone. (The SeqCst fence above is a
        // release fence and would do it alone: a Relaxed swap passes loom
        // model 6c. The Release keeps the argument local.)
        if shared.queued.swap(true, Ordering::Release) {
            #[cfg(loom)]
            self.trace
                .2
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        let queued = self.shared.get_arc().expect("set: checked above");
        if !wake.push(&queued) {
            // No thread to take it: wake here, as the thread would.
            shared.wake_queued();
        }
    }

    /// Registers a waiter: `shared` exists, the waker thread runs, the count
    /// includes the waiter, and the caller's next check of the committed
    /// offset or `closed` sees any commit or close whose notifier did not
    /// see the registration.
    fn register(&self, wake: &WakeService) -> &Shared {
        let shared = self.shared();
        // Spawned here (once per store) rather than by the first commit
        // that needs it; if it cannot be, that commit wakes inline.
        wake.start();
        #[cfg(loom)]
        self.trace
            .0
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The increment is an RMW, so any later count load that reads a
        // value at or after it synchronises with it (Acquire there).
        self.count.fetch_add(1, Ordering::Release);
        // SeqCst fence F2: orders the registration before the re-checks;
        // pairs with F1 in `notify_commit` and the fence in `close`.
        self.fence_unless(Fault::RegisterWithoutFence);
        shared
    }

    /// The shape's wake state, allocated by its first waiter.
    fn shared(&self) -> &Shared {
        #[cfg(not(loom))]
        let make = || Arc::new(Shared::default());
        #[cfg(loom)]
        let make = || {
            Arc::new(Shared {
                fault: self.fault,
                ..Shared::default()
            })
        };
        self.shared.get_or_init(make)
    }
}

// One pointer: what every shape's slot pays for a feature most never use.
const _: () = assert!(std::mem::size_of::<OnceArc<Shared>>() == 8);

impl Waiters {
    /// A SeqCst fence (skipped under loom when `_skip` is the injected
    /// fault).
    #[inline(always)]
    fn fence_unless(&self, _skip: Fault) {
        #[cfg(loom)]
        if self.fault == _skip {
            return;
        }
        fence(Ordering::SeqCst);
    }

    fn deregister(&self) {
        // Relaxed: nothing is published by leaving; a notifier that still
        // counts this waiter only wakes it needlessly.
        self.count.fetch_sub(1, Ordering::Relaxed);
    }

    /// The current close generation, snapshotted when a wait starts.
    fn generation(&self) -> u32 {
        // Acquire: pairs with the Release update in `close`.
        self.closed.load(Ordering::Acquire)
    }

    /// The outcome if the wait is over (a commit past `after`, or a close
    /// since generation `gen0`), `None` to keep waiting.
    fn check(&self, watch: &impl Watch, after: LogOffset, gen0: u32) -> Option<WaitOutcome> {
        // `closed`, then liveness, then the committed offset: see the
        // module's orderings.
        let closed = self.generation();
        if closed != gen0 && closed & 3 == Close::Removed as u32 || watch.is_removed() {
            return Some(WaitOutcome::Removed);
        }
        let live = watch.is_live();
        let last = watch.committed();
        if last > after {
            return Some(WaitOutcome::Committed(last));
        }
        if !live {
            return Some(WaitOutcome::Terminated);
        }
        if closed != gen0 {
            return Some(if closed & 3 == Close::WriterDropped as u32 {
                WaitOutcome::WriterDropped
            } else {
                WaitOutcome::Terminated
            });
        }
        None
    }
}

impl Node for Shared {
    fn link(&self) -> &Link<Shared> {
        &self.link
    }

    fn wake_queued(&self) {
        Shared::wake_queued(self);
    }

    #[cfg(loom)]
    fn push_relaxed(&self) -> bool {
        matches!(self.fault, Fault::PushRelaxed)
    }
}

impl Shared {
    /// The waker thread's step for one queued shape: clear `queued`, then
    /// wake every waiter (module docs, Orderings: the hand-off).
    pub(crate) fn wake_queued(&self) {
        #[cfg(loom)]
        match self.fault {
            Fault::ClearRelaxed => {
                self.queued.store(false, Ordering::Relaxed);
                return self.wake_all();
            }
            Fault::ClearAfterWake => {
                self.wake_all();
                self.queued.swap(false, Ordering::Acquire);
                return;
            }
            _ => {}
        }
        // Acquire RMW, before the wake: a notifier whose own swap found the
        // flag set skipped the push; this swap reads the last value in the
        // flag's modification order, so it synchronises with that
        // notifier's Release swap, and the wake below publishes its commit
        // (a plain store would read nothing and order nothing). A notifier
        // whose swap comes after this one finds the flag clear and pushes
        // again. (No Release needed: nothing here is read by the notifiers.)
        self.queued.swap(false, Ordering::Acquire);
        self.wake_all();
    }

    /// Bumps `seq` and wakes every waiter (sleeping threads and stored
    /// wakers), outside the lock.
    fn wake_all(&self) {
        let st = lock(&self.state);
        // Release: pairs with the Acquire load of `seq` in the waiters; the
        // bump happens under the mutex (the event count's rule).
        self.seq.fetch_add(1, Ordering::Release);
        #[cfg(not(loom))]
        let mut st = st;
        #[cfg(not(loom))]
        let wakers = st.wakers.take_all();
        let sleepers = st.sleepers;
        drop(st);
        if sleepers > 0 {
            self.cond.notify_all();
        }
        // Outside the lock: a waker may run its task inline.
        #[cfg(not(loom))]
        for w in wakers {
            w.wake();
        }
    }
}

/// Blocks until a commit past `after` is visible on `watch`'s shape, the
/// writer goes away, or `timeout` passes.
pub(crate) fn wait_for(watch: &impl Watch, after: LogOffset, timeout: Duration) -> WaitOutcome {
    wait_since(watch, after, timeout, watch.waiters().generation())
}

/// [`wait_for`], reporting closes after generation `gen0`.
fn wait_since(watch: &impl Watch, after: LogOffset, timeout: Duration, gen0: u32) -> WaitOutcome {
    let waiters = watch.waiters();
    // Fast path: no registration when there is something to read already
    // or the shape is dead.
    if let Some(out) = waiters.check(watch, after, gen0) {
        return out;
    }
    if timeout.is_zero() {
        return WaitOutcome::TimedOut;
    }
    // `None`: too far away to represent, i.e. no deadline.
    let deadline = Instant::now().checked_add(timeout);
    let shared = waiters.register(watch.wake_service());
    let out = loop {
        // Acquire: pairs with the Release bump in `Shared::wake_all`.
        let seen = shared.seq.load(Ordering::Acquire);
        if let Some(out) = waiters.check(watch, after, gen0) {
            break out;
        }
        let remaining = match deadline {
            None => None,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(r) if !r.is_zero() => Some(r),
                _ => break WaitOutcome::TimedOut,
            },
        };
        let mut st = lock(&shared.state);
        // Relaxed: `seq` only changes under the mutex we hold.
        let woken = shared.seq.load(Ordering::Relaxed) != seen;
        #[cfg(loom)]
        let woken = woken && waiters.fault != Fault::SleepWithoutSeqCheck;
        if woken {
            continue; // woken between the check and here: check again
        }
        st.sleepers += 1;
        #[cfg(loom)]
        waiters
            .trace
            .1
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        st = match remaining {
            Some(r) => relock_timeout(shared.cond.wait_timeout(st, r)),
            None => wait(&shared.cond, st),
        };
        st.sleepers -= 1;
    };
    waiters.deregister();
    out
}

/// A timed wait's guard, recovering it if a holder panicked (as
/// [`sync::wait`](crate::sync::wait)).
fn relock_timeout<'a, T, R>(r: std::sync::LockResult<(MutexGuard<'a, T>, R)>) -> MutexGuard<'a, T> {
    r.unwrap_or_else(std::sync::PoisonError::into_inner).0
}

/// The async wait: resolves like [`wait_for`] without a timeout (the caller
/// adds one). Cancel-safe: dropping it deregisters.
#[cfg(not(loom))]
pub(crate) mod future;
/// The waiter protocol on its own, for the loom model in
/// `loom-tests/tests/wake.rs` (compiled only under `cfg(loom)`).
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_model;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64 as StdU64;
    use std::sync::Arc;

    /// A stand-in shape: a committed "offset" (tx only) and its waiters.
    #[derive(Default)]
    struct Fake {
        waiters: Waiters,
        committed: StdU64,
        dead: std::sync::atomic::AtomicBool,
        wake: WakeService,
    }

    impl Watch for Arc<Fake> {
        fn waiters(&self) -> &Waiters {
            &self.waiters
        }
        fn committed(&self) -> LogOffset {
            LogOffset::new(self.committed.load(std::sync::atomic::Ordering::Acquire), 0)
        }
        fn is_live(&self) -> bool {
            !self.dead.load(std::sync::atomic::Ordering::Acquire)
        }
        fn wake_service(&self) -> &WakeService {
            &self.wake
        }
    }

    impl Fake {
        fn commit(&self, tx: u64) {
            self.committed
                .store(tx, std::sync::atomic::Ordering::Release);
            self.waiters.notify_commit(&self.wake);
        }
    }

    #[test]
    fn committed_already_returns_without_registering() {
        let f = Arc::new(Fake::default());
        f.commit(3);
        let out = wait_for(&f, LogOffset::new(2, 0), Duration::from_secs(60));
        assert_eq!(out, WaitOutcome::Committed(LogOffset::new(3, 0)));
        assert!(
            f.waiters.shared.get().is_none(),
            "fast path allocates nothing"
        );
    }

    #[test]
    fn zero_timeout_times_out_at_once() {
        let f = Arc::new(Fake::default());
        let out = wait_for(&f, LogOffset::ZERO, Duration::ZERO);
        assert_eq!(out, WaitOutcome::TimedOut);
    }

    #[test]
    fn short_timeout_times_out_and_deregisters() {
        let f = Arc::new(Fake::default());
        let out = wait_for(&f, LogOffset::ZERO, Duration::from_millis(5));
        assert_eq!(out, WaitOutcome::TimedOut);
        assert_eq!(f.waiters.count(), 0);
    }

    #[test]
    fn a_commit_at_or_below_after_does_not_end_the_wait() {
        let f = Arc::new(Fake::default());
        f.commit(5);
        let g = Arc::clone(&f);
        let t = std::thread::spawn(move || wait_for(&g, LogOffset::new(6, 0), Duration::MAX));
        while f.waiters.count() == 0 {
            std::thread::yield_now();
        }
        f.commit(6); // == after: not past it
        f.commit(7);
        assert_eq!(
            t.join().unwrap(),
            WaitOutcome::Committed(LogOffset::new(7, 0))
        );
    }

    #[test]
    fn a_drop_before_the_wait_is_not_reported_a_dead_shape_is() {
        let f = Arc::new(Fake::default());
        f.waiters.close(Close::WriterDropped, &f.wake);
        let out = wait_for(&f, LogOffset::ZERO, Duration::from_millis(1));
        assert_eq!(out, WaitOutcome::TimedOut);
        f.dead.store(true, std::sync::atomic::Ordering::Release);
        f.waiters.close(Close::Terminated, &f.wake);
        let out = wait_for(&f, LogOffset::ZERO, Duration::MAX);
        assert_eq!(out, WaitOutcome::Terminated);
        // A commit past `after` wins.
        f.committed.store(1, std::sync::atomic::Ordering::Release);
        let out = wait_for(&f, LogOffset::ZERO, Duration::MAX);
        assert_eq!(out, WaitOutcome::Committed(LogOffset::new(1, 0)));
        assert_eq!(f.waiters.count(), 0);
    }

    #[test]
    fn close_wakes_every_waiter_with_its_reason() {
        for (why, want) in [
            (Close::Terminated, WaitOutcome::Terminated),
            (Close::WriterDropped, WaitOutcome::WriterDropped),
        ] {
            let f = Arc::new(Fake::default());
            let ts: Vec<_> = (0..8)
                .map(|_| {
                    let g = Arc::clone(&f);
                    std::thread::spawn(move || wait_for(&g, LogOffset::ZERO, Duration::MAX))
                })
                .collect();
            while f.waiters.count() < 8 {
                std::thread::yield_now();
            }
            f.waiters.close(why, &f.wake);
            for t in ts {
                assert_eq!(t.join().unwrap(), want);
            }
            assert_eq!(f.waiters.count(), 0);
        }
    }

    /// Commits race waiters registering; every waiter must return
    /// `Committed` (none sleeps past a visible commit: the waits have no
    /// deadline, so a lost wake-up hangs the test).
    #[test]
    fn no_lost_wakeup_under_racing_commits() {
        for round in 0..200u64 {
            let f = Arc::new(Fake::default());
            let ts: Vec<_> = (0..2)
                .map(|_| {
                    let g = Arc::clone(&f);
                    std::thread::spawn(move || wait_for(&g, LogOffset::ZERO, Duration::MAX))
                })
                .collect();
            if round % 2 == 0 {
                std::thread::yield_now();
            }
            f.commit(1);
            for t in ts {
                assert_eq!(
                    t.join().unwrap(),
                    WaitOutcome::Committed(LogOffset::new(1, 0))
                );
            }
        }
    }

    /// The waker thread takes pushed shapes (several at once, and each
    /// again once its flag is cleared), clears each flag before its wake,
    /// and keeps no reference once its service is dropped (run under Miri
    /// for `wake.rs`'s raw pointers).
    #[test]
    fn the_waker_thread_wakes_pushed_shapes_and_ends_with_its_service() {
        let wake = WakeService::new();
        let shapes: Vec<Arc<Shared>> = (0..3).map(|_| Arc::new(Shared::default())).collect();
        for round in 1..=2u64 {
            for s in &shapes {
                assert!(!s.queued.swap(true, Ordering::Release));
                assert!(wake.push(s));
            }
            for s in &shapes {
                // Acquire: pairs with the Release bump in `wake_all`.
                while s.seq.load(Ordering::Acquire) < round {
                    std::thread::yield_now();
                }
                assert!(!s.queued.load(Ordering::Relaxed), "cleared before the wake");
            }
        }
        drop(wake);
        for s in &shapes {
            assert_eq!(Arc::strong_count(s), 1, "the queue kept a reference");
        }
    }

    #[cfg(not(loom))]
    #[test]
    fn slab_reuses_keys_and_resets_when_empty() {
        let mut s = Slab::default();
        assert!(s.take_all().is_empty());
        let a = s.insert();
        let b = s.insert();
        s.remove(a);
        let c = s.insert();
        assert_eq!(c, a);
        s.set(b, Waker::noop());
        assert_eq!(s.take_all().len(), 1);
        assert!(s.take_all().is_empty(), "a wake takes the waker out");
        s.remove(b);
        s.remove(c);
        assert!(s.entries.is_empty());
    }
}
