//! Durable without host calls: the store-wide dirty queue and the timer
//! thread that drains it.
//!
//! A writer's commit that leaves committed data not yet durable, while its
//! shape is not queued, marks the shape queued and pushes a weak reference
//! to its shared writer state ([`Shared`]) onto the store's one queue, with
//! the deadline `now + Config::flush_interval`. One thread per store
//! (`shapebuf-timer`, spawned by the first push) sleeps until the earliest
//! deadline, takes every entry that is due, and flushes exactly those
//! shapes: an idle shape is never queued and costs nothing, and no timer or
//! scan exists per shape.
//!
//! # The handshake
//!
//! The writer owns its pending batch (`ShapeWriter`'s `&mut self`); the
//! background flush reaches it through the writer's shared state, a mutex
//! around the writer's core that every writer call holds for its duration
//! (one uncontended lock and unlock per call: the cost of this mechanism on
//! `append`'s fast path). A visit has two phases:
//!
//! 1. [`Visit::start`], under the lock: clear `queued` (first, so that a
//!    commit after this phase queues the shape again), complete a batch in
//!    flight that finished (a close waits for it), and, if committed data
//!    is still not durable,
//!    hand the pending batch to the flusher unless a batch is already in
//!    flight (at most one per writer, so the log receives its batches in
//!    order), returning the batch to wait for.
//! 2. The wait for that batch, without the lock (the writer goes on).
//! 3. [`Visit::finish`], under the lock: complete the batch if the writer
//!    has not already, and queue the shape again if committed data is
//!    still not durable and nothing queued it meanwhile (the batch waited
//!    for was the writer's own, handed over before its last commit).
//!
//! A writer that is dropped, terminated or removed takes its core out of
//! the shared state under the lock; a visit then finds nothing to do.
//! [`Store::close`](crate::Store::close) runs the same two phases over
//! every live writer, marking each closed in phase 1.
//!
//! # Orderings
//!
//! No atomic of its own: the handshake is the writer's mutex (`queued`
//! and the core under it), the queue is a mutex and a condition variable,
//! and the wait for a batch is `Done::wait_ready` (flusher.rs: `ready` is
//! stored with Release under the result's mutex and loaded with Acquire,
//! so the sync happens-before phase 3's trim).
//!
//! The protocol is loom model 10 (`loom-tests/tests/dirty_flush.rs`),
//! written against this file through `loom_api`.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::store::flusher::{Done, Job};
use crate::sync::{lock, Mutex, MutexGuard};
use crate::Result;

/// A known-bad variant of the handshake, for the loom model's failing
/// twins (model 10). Production has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(
    not(loom),
    allow(dead_code, reason = "the faults are for the loom models")
)]
pub enum Fault {
    /// The shipping protocol.
    #[default]
    None,
    /// Phase 1 hands the pending batch over even while the writer's own
    /// batch is in flight: the background flush takes the batch without
    /// agreeing with the writer on what was handed over already.
    IgnoreInFlight,
    /// Phase 3 never queues the shape again: a commit that found the shape
    /// still queued (before phase 1) and that the batch waited for does not
    /// carry is forgotten.
    SkipRequeue,
}

/// What the background flush needs from a writer: the writer's core
/// (`writer.rs`) and the loom model's writer implement it.
pub(crate) trait Pending {
    /// Committed data (entries or a commit point) is not durable yet, and
    /// the writer can still write.
    fn due(&self) -> bool;
    /// The batch in flight, if any.
    fn in_flight(&self) -> Option<Arc<Done>>;
    /// Takes every pending entry out (step 1 of the flush protocol) and
    /// returns the job writing it; no batch may be in flight.
    fn hand_over(&mut self) -> (Job, Arc<Done>);
    /// Completes the batch in flight if it finished (steps 3 and 4); a
    /// failure poisons the writer and is returned.
    fn settle(&mut self) -> Result<()>;
    /// [`Pending::settle`], waiting for the batch in flight.
    fn settle_wait(&mut self) -> Result<()>;
    /// Later calls on this writer fail with [`Error::Closed`](crate::Error::Closed).
    fn close(&mut self);
}

/// One live writer's state as the background flush sees it.
pub(crate) struct State<C> {
    /// The writer's core; `None` once the writer is gone.
    pub(crate) core: Option<C>,
    /// On the store's queue (or being visited before phase 1 cleared it).
    queued: bool,
    fault: Fault,
}

impl<C: Pending> State<C> {
    /// After a commit: whether the shape must be pushed onto the queue
    /// (committed data not durable, not queued yet); marks it queued.
    pub(crate) fn mark(&mut self) -> bool {
        let due = self.core.as_ref().is_some_and(Pending::due);
        if due && !self.queued {
            self.queued = true;
            return true;
        }
        false
    }
}

/// A writer's core behind the lock the background flush shares with it.
pub(crate) struct Shared<C> {
    state: Mutex<State<C>>,
}

impl<C: Pending> Shared<C> {
    pub(crate) fn new(core: C, fault: Fault) -> Self {
        Shared {
            state: Mutex::new(State {
                core: Some(core),
                queued: false,
                fault,
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State<C>> {
        lock(&self.state)
    }
}

/// A phase-1 result: the job to run (if phase 1 handed a batch over) and
/// the batch to wait for.
pub(crate) struct Started {
    pub(crate) job: Option<Job>,
    pub(crate) done: Arc<Done>,
}

/// What the store's queue needs of a queued shape: to be sent to the timer
/// thread. (Not under loom, where a writer's core holds loom cells that are
/// not `Sync`, and the models drive the visits on loom's threads.)
#[cfg(not(loom))]
pub(crate) trait Threads: Send + Sync {}
#[cfg(not(loom))]
impl<T: Send + Sync + ?Sized> Threads for T {}
/// See the other definition.
#[cfg(loom)]
pub(crate) trait Threads {}
#[cfg(loom)]
impl<T: ?Sized> Threads for T {}

/// The two locked phases of a visit (see the module docs), type-erased for
/// the store's queue.
pub(crate) trait Visit: Threads {
    /// Phase 1; with `close`, the writer is closed in the same critical
    /// section. Errors are the writer's failed batch.
    fn start(&self, close: bool) -> Result<Option<Started>>;
    /// Phase 3: returns whether the shape must be queued again.
    fn finish(&self) -> Result<bool>;
}

impl<C: Pending> Visit for Shared<C>
where
    Shared<C>: Threads,
{
    fn start(&self, close: bool) -> Result<Option<Started>> {
        let mut st = self.lock();
        st.queued = false;
        let fault = st.fault;
        let Some(core) = st.core.as_mut() else {
            return Ok(None);
        };
        // A close waits for a batch in flight here, under the lock, and
        // hands over the rest: once it has run phase 1 the writer may drop
        // its core (whose drop waits for the close's batch), and the close's
        // batch alone then holds every commit.
        let settled = if close {
            core.settle_wait()
        } else {
            core.settle()
        };
        let started = if settled.is_ok() && core.due() {
            match core.in_flight() {
                Some(done) if fault != Fault::IgnoreInFlight => Some(Started { job: None, done }),
                _ => {
                    let (job, done) = core.hand_over();
                    Some(Started {
                        job: Some(job),
                        done,
                    })
                }
            }
        } else {
            None
        };
        if close {
            core.close();
        }
        settled.map(|()| started)
    }

    fn finish(&self) -> Result<bool> {
        let mut st = self.lock();
        let Some(core) = st.core.as_mut() else {
            return Ok(false);
        };
        core.settle()?;
        let again = core.due() && !st.queued && st.fault != Fault::SkipRequeue;
        if again {
            st.queued = true;
        }
        Ok(again)
    }
}

/// Visits `shapes`: phase 1 for all, then runs the jobs phase 1 handed
/// over (through `run`, which may run them on other threads, and must
/// return once they are all done), then phase 3 for all. Returns the shapes
/// to queue again and the first error (the others are logged).
pub(crate) fn visit_all(
    shapes: Vec<Arc<dyn Visit>>,
    close: bool,
    run: impl FnOnce(Vec<Job>),
) -> (Vec<Arc<dyn Visit>>, Result<()>) {
    let mut first = Ok(());
    let mut note = |r: Result<()>| {
        if let Err(e) = r {
            tracing::error!(error = %e, "background flush failed; the writer is poisoned");
            if first.is_ok() {
                first = Err(e);
            }
        }
    };
    let mut jobs = Vec::new();
    let mut waiting = Vec::new();
    for s in shapes {
        match s.start(close) {
            Ok(Some(Started { job, done })) => {
                jobs.extend(job);
                waiting.push((s, done));
            }
            Ok(None) => {}
            Err(e) => note(Err(e)),
        }
    }
    run(jobs);
    let mut again = Vec::new();
    for (s, done) in waiting {
        done.wait_ready();
        match s.finish() {
            Ok(true) => again.push(s),
            Ok(false) => {}
            Err(e) => note(Err(e)),
        }
    }
    (again, first)
}

/// The store's queue of shapes with committed data not yet durable, and
/// its timer thread (not modelled under loom: std's lock and condvar, for
/// the timed wait).
pub(crate) struct Dirty {
    queue: Arc<Queue>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Queue {
    state: std::sync::Mutex<QueueState>,
    cond: std::sync::Condvar,
}

#[derive(Default)]
struct QueueState {
    /// In deadline order: every push adds the same interval to `now`.
    due: VecDeque<(Instant, Weak<dyn Visit>)>,
    shutdown: bool,
}

fn lock_std<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Dirty {
    pub(crate) fn new() -> Self {
        Dirty {
            queue: Arc::new(Queue {
                state: std::sync::Mutex::default(),
                cond: std::sync::Condvar::new(),
            }),
            thread: std::sync::Mutex::new(None),
        }
    }

    /// Queues `shape` to be flushed at `deadline` (the caller marked it
    /// queued; see [`State::mark`]). `submit` hands the timer's jobs to the
    /// store's flusher; it must not own the store (the timer outlives no
    /// store: [`Dirty::shutdown`] joins it).
    pub(crate) fn push(
        &self,
        shape: Weak<dyn Visit>,
        deadline: Instant,
        submit: impl Fn(Job) + Send + 'static,
    ) {
        {
            let mut st = lock_std(&self.queue.state);
            if st.shutdown {
                return;
            }
            st.due.push_back((deadline, shape));
        }
        self.queue.cond.notify_one();
        self.start_timer(submit);
    }

    /// Under loom no store runs: the models call [`visit_all`] themselves.
    #[cfg(loom)]
    fn start_timer(&self, _submit: impl Fn(Job) + Send + 'static) {}

    /// Spawns the timer thread unless it runs.
    #[cfg(not(loom))]
    fn start_timer(&self, submit: impl Fn(Job) + Send + 'static) {
        let mut t = lock_std(&self.thread);
        if t.is_none() {
            let queue = Arc::clone(&self.queue);
            match std::thread::Builder::new()
                .name("shapebuf-timer".into())
                .spawn(move || timer(&queue, &submit))
            {
                Ok(h) => *t = Some(h),
                Err(e) => {
                    tracing::error!(error = %e, "no timer thread: committed data waits for the writer's next flush")
                }
            }
        }
    }

    /// Stops the timer thread (after the visit it is running) and drops the
    /// queue; later pushes are ignored.
    pub(crate) fn shutdown(&self) {
        lock_std(&self.queue.state).shutdown = true;
        self.queue.cond.notify_all();
        let t = lock_std(&self.thread).take();
        if let Some(t) = t {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
        lock_std(&self.queue.state).due.clear();
    }
}

impl Drop for Dirty {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The timer thread: sleeps until the earliest deadline, visits every
/// shape that is due, queues again those that need it.
#[cfg(not(loom))]
fn timer(queue: &Queue, submit: &dyn Fn(Job)) {
    loop {
        let batch: Vec<Arc<dyn Visit>> = {
            let mut st = lock_std(&queue.state);
            loop {
                if st.shutdown {
                    return;
                }
                let now = Instant::now();
                match st.due.front() {
                    None => {
                        st = queue
                            .cond
                            .wait(st)
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                    }
                    Some(&(at, _)) if at <= now => break,
                    Some(&(at, _)) => {
                        st = queue
                            .cond
                            .wait_timeout(st, at - now)
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .0;
                    }
                }
            }
            let now = Instant::now();
            let n = st.due.iter().take_while(|(at, _)| *at <= now).count();
            st.due.drain(..n).filter_map(|(_, w)| w.upgrade()).collect()
        };
        let n = batch.len();
        let (again, _) = visit_all(batch, false, |jobs| jobs.into_iter().for_each(submit));
        tracing::debug!(shapes = n, "background flush");
        if !again.is_empty() {
            let now = Instant::now();
            let mut st = lock_std(&queue.state);
            for s in again {
                st.due.push_front((now, Arc::downgrade(&s)));
            }
        }
    }
}

/// How long a timed wait may be asked to sleep at most (a deadline of
/// `Duration::MAX` would overflow `Instant`).
pub(crate) fn deadline(interval: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(interval)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}
