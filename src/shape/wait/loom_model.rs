//! The waiter protocol on its own, for the loom model in
//! `loom-tests/tests/wake.rs` (compiled only under `cfg(loom)`).

use super::WakeService;
use super::{wait_since, Close, Waiters, Watch};
use crate::sync::{AtomicBool, AtomicU64, Ordering};
use crate::LogOffset;
use std::sync::Arc;
use std::time::Duration;

pub use super::{Fault, WaitOutcome};

/// A shape reduced to what a wait touches: the committed watermark
/// (written as `WriterToken::commit` does), the shipping [`Waiters`],
/// and the shipping waker service (one per shape here, one per store in
/// production), whose thread the model runs with [`Shape::run_waker`].
pub struct Shape {
    committed: AtomicU64,
    live: AtomicBool,
    waiters: Waiters,
    wake: Arc<WakeService>,
}

impl Shape {
    /// Nothing committed, no waiter, `fault` injected.
    pub fn new(fault: Fault) -> Shape {
        Shape::with_service(fault, Arc::new(WakeService::new()))
    }

    /// Another shape of the same store: it shares this one's waker
    /// thread and queue.
    pub fn sibling(&self, fault: Fault) -> Shape {
        Shape::with_service(fault, Arc::clone(&self.wake))
    }

    fn with_service(fault: Fault, wake: Arc<WakeService>) -> Shape {
        Shape {
            committed: AtomicU64::new(0),
            live: AtomicBool::new(true),
            waiters: Waiters {
                fault,
                ..Waiters::default()
            },
            wake,
        }
    }

    /// Commits up to transaction `tx`: the buffer's Release store of the
    /// watermark, then the writer's hook.
    pub fn commit(&self, tx: u64) {
        self.committed.store(tx, Ordering::Release);
        self.waiters.notify_commit(&self.wake);
    }

    /// How the waits and wakes went: `(registrations, sleeps, hand-offs
    /// skipped because the shape was queued already)`.
    pub fn trace(&self) -> (usize, usize, usize) {
        let t = &self.waiters.trace;
        (
            t.0.load(std::sync::atomic::Ordering::Relaxed),
            t.1.load(std::sync::atomic::Ordering::Relaxed),
            t.2.load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// The most shapes the waker thread took off its queue at once.
    pub fn max_batch(&self) -> usize {
        self.wake.max_batch()
    }

    /// Terminate: the buffer's Release unpublish of the segment, then
    /// the writer's hook.
    pub fn terminate(&self) {
        self.live.store(false, Ordering::Release);
        self.waiters.close(Close::Terminated, &self.wake);
    }

    /// The close generation now: a wait given it reports every later
    /// close.
    pub fn generation(&self) -> u32 {
        self.waiters.generation()
    }

    /// A blocking wait for a commit past transaction `after` or a close
    /// after generation `gen`, without a deadline (a lost wake-up is a
    /// deadlock loom reports).
    pub fn wait(&self, after: u64, gen: u32) -> WaitOutcome {
        wait_since(self, LogOffset::new(after, 0), Duration::MAX, gen)
    }

    /// The waker thread's loop (the shipping one): run it on a loom
    /// thread; it returns after [`Shape::stop_waker`] once its queue is
    /// empty.
    pub fn run_waker(&self) {
        self.wake.run();
    }

    /// Tells the waker thread to drain its queue and exit (as dropping
    /// the store does).
    pub fn stop_waker(&self) {
        self.wake.shutdown();
    }
}

impl Watch for Shape {
    fn waiters(&self) -> &Waiters {
        &self.waiters
    }
    fn committed(&self) -> LogOffset {
        // Acquire: as `Buffer::view`.
        LogOffset::new(self.committed.load(Ordering::Acquire), 0)
    }
    fn is_live(&self) -> bool {
        // Acquire: as `Buffer::is_live`.
        self.live.load(Ordering::Acquire)
    }
    fn wake_service(&self) -> &WakeService {
        &self.wake
    }
}
