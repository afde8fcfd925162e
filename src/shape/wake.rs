//! The store's waker thread: wakes a shape's waiters off the commit path.
//!
//! A commit (or a close) that finds waiters on its shape does not wake them
//! itself: waking 10,000 blocked threads is tens of milliseconds of futex
//! calls, and a writer must never stall on its readers. It marks the
//! shape's wake state queued and pushes it onto this store-wide queue; one
//! thread per store, `shapebuf-wake`, takes the queued shapes and wakes
//! their waiters (see `wait.rs`, `Shared::wake_queued`, for the per-shape
//! step and the ordering argument).
//!
//! # Invariants
//!
//! - A shape is in the queue at most once: only the notifier that sets its
//!   `queued` flag (from false) pushes it, and the thread clears the flag
//!   only after it took the shape off the queue. The queue is therefore
//!   bounded by the number of shapes that have waiters.
//! - A push takes no lock: one compare-and-swap on the queue's head and an
//!   `unpark` of the thread, which is a futex wake only if the thread
//!   sleeps. The writer never waits for the thread, even a preempted one.
//! - The queue is an intrusive stack (each shape's `Link`) of
//!   `Arc::into_raw` pointers; the thread takes the whole stack with one
//!   swap and wakes the shapes oldest first. A shape's link is written only
//!   by the notifier that pushes it, and read by the thread before it
//!   clears the shape's flag (after which the shape may be pushed again).
//! - The thread is spawned lazily, by the first registration of a waiter
//!   (or, failing that, the first push): a store whose shapes never have
//!   waiters has no thread. If it cannot be spawned, the commit wakes its
//!   waiters itself, as before the hand-off.
//! - It exits after draining the queue when the store's last owner is gone:
//!   [`WakeService`] lives in the store's shared state, and its drop
//!   signals shutdown and joins the thread (unless the drop runs on the
//!   thread itself, when a waker it woke dropped the store's last owner:
//!   then the thread sees the shutdown and exits on its own).
//!
//! # Orderings
//!
//! - A push's compare-and-swap of `head` is Release and the thread's swap
//!   Acquire: the thread sees the pushed shape's link and contents.
//! - No lost push: the thread parks only after a swap that found the stack
//!   empty, and a pusher unparks it after its compare-and-swap. If the push
//!   comes after that swap (in `head`'s modification order), its `unpark`
//!   comes after it too and either wakes the `park` or leaves the token
//!   that makes it return at once (no foreign code runs between the swap
//!   and the `park`, so nothing else consumes the token). Otherwise the
//!   swap took the shape.
//! - Shutdown: the thread loads `shutdown` (Acquire, pairs with the Release
//!   store in [`WakeService::shutdown`]) *before* its swap, and exits only
//!   if it was set and the swap found nothing: every push made before the
//!   shutdown happened-before that swap, which therefore sees it.

use std::ptr;
use std::sync::Arc;

#[cfg(loom)]
use loom::sync::atomic::AtomicPtr;
#[cfg(not(loom))]
use std::sync::atomic::AtomicPtr;

use crate::sync::{AtomicBool, Ordering};

/// What the queue holds: one shape's waiter state (`wait::Shared`). The
/// queue needs only its link and a way to wake it, so this module names no
/// type of `wait` and the two import one way (`wait` -> `wake`).
pub(crate) trait Node: Send + Sync + Sized + 'static {
    /// The node's link in the queue.
    fn link(&self) -> &Link<Self>;
    /// Wakes the node's queued waiters (on the waker thread).
    fn wake_queued(&self);
    /// The known-bad variant of a loom model: publish the push with
    /// Relaxed instead of Release.
    #[cfg(loom)]
    fn push_relaxed(&self) -> bool;
}

/// One store's waker thread and its queue of shapes to wake.
pub(crate) struct WakeService<T: Node> {
    queue: Arc<Queue<T>>,
    /// The thread once spawned (serialises spawning; taken by the drop).
    #[cfg(not(loom))]
    spawned: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What the notifiers and the thread share.
struct Queue<T: Node> {
    /// The top of the stack of queued shapes (`Arc::into_raw`), linked
    /// through their `Link`s; null when empty.
    head: AtomicPtr<T>,
    /// Where the thread sleeps when the queue is empty.
    sleeper: Sleeper,
    /// The store is gone: drain and exit.
    shutdown: AtomicBool,
    /// The most shapes one swap took (loom models only).
    #[cfg(loom)]
    max_batch: std::sync::atomic::AtomicUsize,
}

/// A shape's link in the queue: the shape below it on the stack. Written
/// only by the notifier that pushes the shape, read by the thread before
/// it clears the shape's `queued` flag.
pub(crate) struct Link<T> {
    next: AtomicPtr<T>,
}

impl<T> Default for Link<T> {
    fn default() -> Self {
        Link {
            next: AtomicPtr::new(ptr::null_mut()),
        }
    }
}

impl<T: Node> Default for WakeService<T> {
    fn default() -> Self {
        WakeService::new()
    }
}

impl<T: Node> WakeService<T> {
    /// A service with no thread yet.
    pub(crate) fn new() -> Self {
        WakeService {
            queue: Arc::new(Queue {
                head: AtomicPtr::new(ptr::null_mut()),
                sleeper: Sleeper::default(),
                shutdown: AtomicBool::new(false),
                #[cfg(loom)]
                max_batch: Default::default(),
            }),
            #[cfg(not(loom))]
            spawned: std::sync::Mutex::new(None),
        }
    }

    /// Spawns the thread unless it runs; returns whether it runs. Called by
    /// a waiter's registration, so that the commit path does not spawn.
    /// Under loom the model runs [`WakeService::run`] on a thread of its
    /// own.
    #[cfg(not(loom))]
    pub(crate) fn start(&self) -> bool {
        if self.queue.sleeper.is_set() {
            return true;
        }
        let mut spawned = self
            .spawned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if spawned.is_some() {
            return true;
        }
        let queue = Arc::clone(&self.queue);
        let spawn = std::thread::Builder::new()
            .name("shapebuf-wake".into())
            .spawn(move || queue.run());
        match spawn {
            Ok(handle) => {
                self.queue.sleeper.set(handle.thread().clone());
                *spawned = Some(handle);
                true
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "cannot spawn the waker thread; commits wake their waiters themselves"
                );
                false
            }
        }
    }

    /// Under loom the model runs the thread's loop itself.
    #[cfg(loom)]
    pub(crate) fn start(&self) -> bool {
        true
    }

    /// Queues `shared` (whose `queued` flag the caller just set) for the
    /// thread and unparks the thread. Returns false if no thread can take
    /// it (it could not be spawned): the caller wakes the shape itself.
    pub(crate) fn push(&self, shared: &Arc<T>) -> bool {
        if !self.start() {
            return false;
        }
        #[cfg(not(loom))]
        let publish = Ordering::Release;
        #[cfg(loom)]
        let publish = if shared.push_relaxed() {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        let node = Arc::into_raw(Arc::clone(shared)).cast_mut();
        // Relaxed: the compare-and-swap below checks it.
        let mut head = self.queue.head.load(Ordering::Relaxed);
        loop {
            // Relaxed: published by the Release compare-and-swap.
            shared.link().next.store(head, Ordering::Relaxed);
            // Release: pairs with the thread's Acquire swap in `run` (the
            // link and the shape are visible to it).
            match self
                .queue
                .head
                .compare_exchange_weak(head, node, publish, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => head = now,
            }
        }
        // A futex wake only if the thread is parked.
        self.queue.sleeper.unpark();
        true
    }

    /// The thread's loop (loom models call it on a loom thread).
    #[cfg(loom)]
    pub(crate) fn run(&self) {
        self.queue.run();
    }

    /// The most shapes the thread took off the queue at once (loom models
    /// only).
    #[cfg(loom)]
    pub(crate) fn max_batch(&self) -> usize {
        self.queue
            .max_batch
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Tells the thread to exit once the queue is empty.
    pub(crate) fn shutdown(&self) {
        // Release: pairs with the thread's Acquire load in `run`.
        self.queue.shutdown.store(true, Ordering::Release);
        self.queue.sleeper.unpark();
    }
}

impl<T: Node> Drop for WakeService<T> {
    fn drop(&mut self) {
        self.shutdown();
        #[cfg(not(loom))]
        {
            let spawned = self
                .spawned
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(handle) = spawned {
                // A waker run by the thread may drop the store's last owner:
                // the thread cannot join itself, and exits on its own.
                if handle.thread().id() != std::thread::current().id() {
                    let _ = handle.join();
                }
            }
        }
    }
}

impl<T: Node> Queue<T> {
    /// Takes the queued shapes and wakes their waiters until shut down with
    /// the queue empty.
    fn run(&self) {
        let mut batch = Vec::new();
        loop {
            // Acquire: pairs with the Release store in `shutdown`; loaded
            // before the swap (module docs, Orderings).
            let shutdown = self.shutdown.load(Ordering::Acquire);
            // Acquire: pairs with the pushers' Release compare-and-swap.
            let mut top = self.head.swap(ptr::null_mut(), Ordering::Acquire);
            if top.is_null() {
                if shutdown {
                    return;
                }
                self.sleeper.park();
                continue;
            }
            while !top.is_null() {
                // SAFETY: every pointer on the stack came from
                // `Arc::into_raw` in `push`, and the swap above made this
                // thread its only owner: it turns each back into its `Arc`
                // exactly once.
                let shared = unsafe { Arc::from_raw(top) };
                // Relaxed: written before the push's Release
                // compare-and-swap, which the swap acquired; read before the
                // shape's flag is cleared (the next push may rewrite it).
                top = shared.link().next.load(Ordering::Relaxed);
                batch.push(shared);
            }
            #[cfg(loom)]
            self.max_batch
                .fetch_max(batch.len(), std::sync::atomic::Ordering::Relaxed);
            // Oldest first.
            for shared in batch.drain(..).rev() {
                wake(&*shared);
            }
        }
    }
}

impl<T: Node> Drop for Queue<T> {
    fn drop(&mut self) {
        // Shapes pushed after the thread's last swap (none once every
        // notifier is gone, but the `Arc`s must not leak).
        let mut top = self.head.swap(ptr::null_mut(), Ordering::Acquire);
        while !top.is_null() {
            // SAFETY: as in `run`: from `Arc::into_raw`, owned by the stack,
            // and this is its last owner.
            let shared = unsafe { Arc::from_raw(top) };
            top = shared.link().next.load(Ordering::Relaxed);
        }
    }
}

/// Wakes one shape's waiters. A waker that panics (a broken executor) must
/// not kill the thread: every later commit's waiters would sleep on.
#[cfg(not(loom))]
fn wake<T: Node>(shared: &T) {
    let woken = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.wake_queued()));
    if woken.is_err() {
        tracing::error!("a waker panicked while the waker thread woke a shape's waiters");
    }
}

#[cfg(loom)]
fn wake<T: Node>(shared: &T) {
    shared.wake_queued();
}

/// How the thread sleeps and is woken: a token, as `std::thread::park` /
/// `Thread::unpark` (`unpark` makes it available, `park` consumes it or
/// sleeps until it is; `park` may also return spuriously).
///
/// In production it is std's own (a futex wake only if the thread is
/// parked). Under loom it is a loom mutex and condvar with that contract:
/// loom's `unpark` makes a thread runnable whatever it is blocked on,
/// including a loom mutex held by another thread, which loom then reports
/// as a failed lock acquisition.
#[cfg(not(loom))]
#[derive(Default)]
struct Sleeper {
    /// The thread (set by `start` right after spawning it).
    thread: std::sync::OnceLock<std::thread::Thread>,
}

#[cfg(not(loom))]
impl Sleeper {
    fn set(&self, thread: std::thread::Thread) {
        let _ = self.thread.set(thread);
    }

    fn is_set(&self) -> bool {
        self.thread.get().is_some()
    }

    /// Called by the thread only.
    fn park(&self) {
        std::thread::park();
    }

    fn unpark(&self) {
        // Set before any push: `push` calls `start` first, and the drop
        // comes after every owner's `start` (the store's `Arc`).
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }
}

#[cfg(loom)]
#[derive(Default)]
struct Sleeper {
    token: crate::sync::Mutex<bool>,
    cond: loom::sync::Condvar,
}

#[cfg(loom)]
impl Sleeper {
    fn park(&self) {
        let mut token = crate::sync::lock(&self.token);
        while !*token {
            token = self
                .cond
                .wait(token)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *token = false;
    }

    fn unpark(&self) {
        *crate::sync::lock(&self.token) = true;
        self.cond.notify_one();
    }
}
