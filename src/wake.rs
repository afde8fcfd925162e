//! The store's waker thread: wakes a shape's waiters off the commit path.
//!
//! A commit (or a close) that finds waiters on its shape does not wake them
//! itself: waking 10,000 blocked threads is tens of milliseconds of futex
//! calls, and a writer must never stall on its readers. It marks the
//! shape's wake state queued and hands it to this store-wide queue; one
//! thread per store, `shapebuf-wake`, pops shapes and wakes their waiters
//! (see `wait.rs`, `Shared::wake_queued`, for the per-shape step and the
//! ordering argument).
//!
//! # Invariants
//!
//! - A shape is in the queue at most once: only the commit that sets its
//!   `queued` flag (from false) pushes it, and the thread clears the flag
//!   before it wakes the shape. The queue is therefore bounded by the
//!   number of shapes that have waiters.
//! - A push costs the committing thread one uncontended lock and at most one
//!   futex wake (only when the thread sleeps: `idle`), whatever the number
//!   of waiters.
//! - The thread is spawned lazily, by the first registration of a waiter
//!   (or, failing that, the first push): a store whose shapes never have
//!   waiters has no thread. If it cannot be spawned, the commit wakes its
//!   waiters itself, as before the hand-off.
//! - It exits after draining the queue when the store's last owner is gone:
//!   [`WakeService`] lives in the store's shared state, and its drop signals
//!   shutdown and joins the thread (unless the drop runs on the thread
//!   itself, when a waker it woke dropped the store's last owner: then the
//!   thread sees the shutdown and exits on its own).
//!
//! # Orderings
//!
//! The queue is a mutex and a condvar: a push happens-before the pop that
//! takes it, and the thread sleeps only after finding the queue empty under
//! the mutex with `idle` set, which a pusher reads under the same mutex.

use std::sync::Arc;

#[cfg(loom)]
use loom::sync::Condvar;
#[cfg(not(loom))]
use std::sync::Condvar;

use crate::sync::{lock, Mutex, MutexGuard};
use crate::wait::Shared;

/// One store's waker thread and its queue of shapes to wake.
pub(crate) struct WakeService {
    queue: Arc<Queue>,
    /// The thread once spawned.
    #[cfg(not(loom))]
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Whether `thread` holds a running thread (a hint read without the
    /// lock).
    #[cfg(not(loom))]
    started: std::sync::atomic::AtomicBool,
}

/// What the committers and the thread share.
#[derive(Default)]
struct Queue {
    state: Mutex<State>,
    /// The thread sleeps here when the queue is empty.
    cond: Condvar,
}

#[derive(Default)]
struct State {
    /// Shapes whose waiters are to be woken, each at most once.
    shapes: Vec<Arc<Shared>>,
    /// The thread waits on `cond` (a push notifies it).
    idle: bool,
    /// The store is gone: drain and exit.
    shutdown: bool,
}

impl Default for WakeService {
    fn default() -> Self {
        WakeService::new()
    }
}

impl WakeService {
    /// A service with no thread yet.
    pub(crate) fn new() -> WakeService {
        WakeService {
            queue: Arc::default(),
            #[cfg(not(loom))]
            thread: std::sync::Mutex::new(None),
            #[cfg(not(loom))]
            started: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Spawns the thread unless it runs; returns whether it runs. Called by
    /// a waiter's registration, so that the commit path does not spawn.
    /// Under loom the model runs [`WakeService::run`] on a thread of its own.
    #[cfg(not(loom))]
    pub(crate) fn start(&self) -> bool {
        use std::sync::atomic::Ordering;
        // Relaxed: a hint; the handle itself is read under the mutex.
        if self.started.load(Ordering::Relaxed) {
            return true;
        }
        let mut thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if thread.is_some() {
            return true;
        }
        let queue = Arc::clone(&self.queue);
        let spawned = std::thread::Builder::new()
            .name("shapebuf-wake".into())
            .spawn(move || queue.run());
        match spawned {
            Ok(handle) => {
                *thread = Some(handle);
                // Relaxed: as the load above.
                self.started.store(true, Ordering::Relaxed);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot spawn the waker thread; commits wake their waiters themselves");
                false
            }
        }
    }

    /// Under loom the model runs the thread's loop itself.
    #[cfg(loom)]
    pub(crate) fn start(&self) -> bool {
        true
    }

    /// Queues `shared` for the thread and wakes the thread if it sleeps.
    /// Hands `shared` back if no thread can take it (it could not be
    /// spawned, or the store is shutting down): the caller wakes it itself.
    pub(crate) fn push(&self, shared: Arc<Shared>) -> Result<(), Arc<Shared>> {
        if !self.start() {
            return Err(shared);
        }
        let mut st = lock(&self.queue.state);
        if st.shutdown {
            return Err(shared);
        }
        st.shapes.push(shared);
        let idle = std::mem::replace(&mut st.idle, false);
        drop(st);
        if idle {
            // The thread waits (it set `idle` before releasing the mutex in
            // `cond.wait`); a second push before it runs finds `idle` false
            // and skips the syscall: the thread drains both.
            self.queue.cond.notify_one();
        }
        Ok(())
    }

    /// The thread's loop (loom models call it on a loom thread).
    #[cfg(loom)]
    pub(crate) fn run(&self) {
        self.queue.run();
    }

    /// Tells the thread to exit once the queue is empty.
    pub(crate) fn shutdown(&self) {
        lock(&self.queue.state).shutdown = true;
        self.queue.cond.notify_one();
    }
}

impl Drop for WakeService {
    fn drop(&mut self) {
        self.shutdown();
        #[cfg(not(loom))]
        {
            let thread = self
                .thread
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(handle) = thread {
                // A waker run by the thread may drop the store's last owner:
                // the thread cannot join itself, and exits on its own.
                if handle.thread().id() != std::thread::current().id() {
                    let _ = handle.join();
                }
            }
        }
    }
}

fn relock<'a, T>(r: std::sync::LockResult<MutexGuard<'a, T>>) -> MutexGuard<'a, T> {
    // As `sync::lock`: every critical section leaves the state consistent.
    r.unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Queue {
    /// Pops shapes and wakes their waiters until shut down with the queue
    /// empty.
    fn run(&self) {
        let mut batch = Vec::new();
        let mut st = lock(&self.state);
        loop {
            if !st.shapes.is_empty() {
                std::mem::swap(&mut st.shapes, &mut batch);
                drop(st);
                for shared in batch.drain(..) {
                    wake(&shared);
                }
                st = lock(&self.state);
                continue;
            }
            if st.shutdown {
                return;
            }
            st.idle = true;
            st = relock(self.cond.wait(st));
            // Woken by a push (which cleared it already), the shutdown or
            // spuriously.
            st.idle = false;
        }
    }
}

/// Wakes one shape's waiters. A waker that panics (a broken executor) must
/// not kill the thread: every later commit's waiters would sleep on.
#[cfg(not(loom))]
fn wake(shared: &Shared) {
    let woken = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.wake_queued()));
    if woken.is_err() {
        tracing::error!("a waker panicked while the waker thread woke a shape's waiters");
    }
}

#[cfg(loom)]
fn wake(shared: &Shared) {
    shared.wake_queued();
}
