//! The store's flusher: writes and syncs a writer's flush batch off the
//! writer's thread.
//!
//! A [`ShapeWriter`](crate::ShapeWriter) whose pending bytes pass
//! [`Config::flush_bytes`](crate::Config::flush_bytes) takes the batch out
//! of its segment ([`WriterToken::take_pending`](crate::shape::buffer::WriterToken::take_pending),
//! step 1 of the flush protocol) and hands it here as a [`Job`]; it keeps
//! appending and committing while a flusher thread appends the batch to the
//! shape's log and syncs it (step 2). The writer polls the job's [`Done`]
//! and, once it reports the batch durable, publishes `persisted` and trims
//! (steps 3 and 4) itself, so only the writer ever swaps its segments.
//!
//! # Invariants
//!
//! - A writer has at most one job in flight, so a shape's log receives its
//!   batches in order, from one thread at a time; an explicit
//!   [`flush`](crate::ShapeWriter::flush), `terminate` and the writer's drop
//!   wait for the job in flight first (the drop before it releases the
//!   writer claim, so a successor's take-over never races the append).
//! - A job's result is stored once, under its mutex, before `ready` is set
//!   (Release; the writer's Acquire load then sees the result). The job
//!   and its [`Done`] are the shipping code of loom model 7
//!   (docs/protocol.md); its threads and queue are not modelled.
//! - Threads are spawned lazily, up to `Config::flush_threads` ([`THREADS`]
//!   by default), by the first jobs; a store whose writers never pass
//!   `flush_bytes` has none. With 0 threads, or if a thread cannot be
//!   spawned and none runs, a job runs on the writer's thread when it is
//!   handed over (the writer still completes it at its next call).
//! - A flusher thread takes its share of the jobs queued (all of them
//!   divided among the threads, so syncs of different shapes still
//!   overlap) and writes and syncs all of them before it waits for the
//!   directory: a job whose batch created a
//!   file (a new shape's first flush, or a roll) is durable only once the
//!   file's directory entry is, and one grouped directory sync
//!   (`log::dir_sync`) then covers every file the batch created.
//! - After each batch a flusher thread runs an epoch collection of the
//!   store's domain: what writers retire (trimmed chunks and their
//!   payloads) is then mostly freed here, off the writers' and readers'
//!   threads (theirs still collect every 128 pins, and `tick` and
//!   `Store::collect` do).
//! - The store's timer thread (`dirty.rs`) submits the batches of shapes
//!   whose committed data is due, and waits for them with
//!   [`Done::wait_ready`] (which takes nothing: the writer, or the timer
//!   under the writer's lock, completes the batch). A close runs its
//!   batches on threads of its own ([`run_parallel`]).
//! - They exit when the store's last owner is gone (after the queue is
//!   empty: every job is waited for by its writer, which keeps the store
//!   alive).

use std::collections::VecDeque;
use std::sync::Arc;

use super::stats::Counters;
use crate::durable::Durable;
use crate::log::dir_sync::Ticket;
use crate::log::Appended;
use crate::shape::segment::Batch;
use crate::sync::{lock, wait, AtomicBool, Condvar, Epoch, Mutex, Ordering};
use crate::{Error, LogOffset, Result};

/// Flusher threads per store by default (`Config::flush_threads`): syncs of
/// different shapes overlap, up to this many at once.
pub(crate) const THREADS: usize = 2;

/// Where a job's batch is written: the shape's log, or, in the loom models,
/// their in-memory log.
pub(crate) trait Sink: Send + Sync {
    /// Appends `pending` and then the commit point and syncs them; they are
    /// durable once the directory entry [`Appended::dir`] names (a file the
    /// append created) is too.
    fn append(&self, pending: &Batch, commit: Option<(u64, LogOffset)>) -> Result<Appended>;
    /// Returns once the directory entry `ticket` stands for is durable
    /// (grouped with the other creations), with what the log holds then.
    fn dir_durable(&self, ticket: Ticket) -> Result<Durable>;
}

/// One flush batch: entries of one shape to append to its log, with the
/// commit point to record after them.
pub(crate) struct Job {
    sink: Arc<dyn Sink>,
    pending: Batch,
    commit: Option<(u64, LogOffset)>,
    done: Arc<Done>,
}

impl Job {
    /// A job writing `pending` and then `commit` to `sink`, with the
    /// [`Done`] its writer polls.
    pub(crate) fn new(
        sink: Arc<dyn Sink>,
        pending: Batch,
        commit: Option<(u64, LogOffset)>,
    ) -> (Job, Arc<Done>) {
        let done = Arc::new(Done::new());
        let job = Job {
            sink,
            pending,
            commit,
            done: Arc::clone(&done),
        };
        (job, done)
    }

    /// Writes and syncs the batch, waits for its directory entry if it
    /// created a file, and reports the result.
    pub(crate) fn run(self, counters: &Counters) {
        let written = self.write(counters);
        written.finish();
    }

    /// Step one of a job: the append and its sync.
    fn write(self, counters: &Counters) -> Written {
        let Job {
            sink,
            pending,
            commit,
            done,
        } = self;
        let started = std::time::Instant::now();
        let out = guarded(|| sink.append(&pending, commit));
        let took = started.elapsed();
        let bytes: u64 = pending.iter().map(|e| e.payload.len() as u64).sum();
        counters.record(out.is_ok(), bytes, took);
        tracing::debug!(
            entries = pending.len(),
            bytes,
            took_us = took.as_micros() as u64,
            ok = out.is_ok(),
            "flush batch written and synced"
        );
        Written { sink, out, done }
    }
}

/// Runs `jobs` on up to `threads` threads at once (scoped: returns when
/// all are done), each writing and syncing its share of them first and
/// then waiting for their directory entries, as a flusher thread does with
/// a batch. For a close, which has every live writer's batch at once.
pub(crate) fn run_parallel(jobs: Vec<Job>, threads: usize, counters: &Counters) {
    let threads = threads.max(1);
    let per = jobs.len().div_ceil(threads).max(1);
    let mut shares: Vec<Vec<Job>> = Vec::with_capacity(threads);
    let mut jobs = jobs.into_iter().peekable();
    while jobs.peek().is_some() {
        shares.push(jobs.by_ref().take(per).collect());
    }
    // The calling thread works too, so a failed spawn loses no job.
    let shares = std::sync::Mutex::new(shares);
    let work = || loop {
        let share = shares
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        match share {
            Some(share) => run_batch(share, counters),
            None => break,
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            if std::thread::Builder::new()
                .name("shapebuf-close".into())
                .spawn_scoped(s, work)
                .is_err()
            {
                break;
            }
        }
        work();
    });
}

/// Writes and syncs every job of `jobs`, then waits for their directory
/// entries: one directory sync covers every file they created.
fn run_batch(jobs: Vec<Job>, counters: &Counters) {
    let written: Vec<Written> = jobs.into_iter().map(|j| j.write(counters)).collect();
    for w in written {
        w.finish();
    }
}

/// Runs `f`, turning a panic into an error for the writer.
fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(Error::Io {
            op: "flush",
            path: "(flusher thread)".into(),
            source: std::io::Error::other("the flush panicked"),
        })
    })
}

/// A job whose batch is written and synced.
struct Written {
    sink: Arc<dyn Sink>,
    out: Result<Appended>,
    done: Arc<Done>,
}

impl Written {
    /// Step two: waits for the directory entry of a file the append created
    /// (the first such wait of a flusher batch syncs the directory for all
    /// of them), then reports the result.
    fn finish(self) {
        let out = match self.out {
            Ok(Appended {
                dir: Some(ticket), ..
            }) => guarded(|| self.sink.dir_durable(ticket)),
            Ok(a) => Ok(a.durable),
            Err(e) => Err(e),
        };
        self.done.set(out);
    }
}

/// Where a job's result appears.
pub(crate) struct Done {
    result: Mutex<Option<Result<Durable>>>,
    cond: Condvar,
    /// Set (Release) after `result` is stored; lets the writer poll without
    /// locking.
    ready: AtomicBool,
}

impl Done {
    fn new() -> Self {
        Done {
            result: Mutex::new(None),
            cond: Condvar::new(),
            ready: AtomicBool::new(false),
        }
    }

    fn set(&self, out: Result<Durable>) {
        let mut r = lock(&self.result);
        *r = Some(out);
        // Release: pairs with the Acquire in `try_take` and `wait_ready`.
        // Stored under the lock, so that `wait_ready`'s check under it
        // never misses the `notify_all` below.
        self.ready.store(true, Ordering::Release);
        drop(r);
        self.cond.notify_all();
    }

    /// The job's result (taken once): waiting for it with `wait`, else
    /// only if the job has finished.
    pub(crate) fn take(&self, wait: bool) -> Option<Result<Durable>> {
        if wait {
            Some(self.wait())
        } else {
            self.try_take()
        }
    }

    /// Returns once the job has finished (whether or not its writer took
    /// the result already); takes nothing. The background flush waits so,
    /// without the writer's lock (`dirty.rs`).
    pub(crate) fn wait_ready(&self) {
        let mut r = lock(&self.result);
        // Both checked under the lock `set` stores them under: either they
        // are set, or `set` has not locked yet and its `notify_all` comes
        // after this wait begins. A writer may have taken the result: then
        // `ready` (Acquire, pairs with the Release in `set`) ends the wait.
        while r.is_none() && !self.ready.load(Ordering::Acquire) {
            r = wait(&self.cond, r);
        }
    }

    /// The result if the job has finished (taken once).
    fn try_take(&self) -> Option<Result<Durable>> {
        // Acquire: pairs with the Release in `set`.
        if !self.ready.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.result).take()
    }

    /// Waits for the job's result (taken once).
    fn wait(&self) -> Result<Durable> {
        let mut r = lock(&self.result);
        loop {
            if let Some(out) = r.take() {
                return out;
            }
            r = wait(&self.cond, r);
        }
    }
}

#[derive(Default)]
struct Queue {
    state: Mutex<State>,
    cond: Condvar,
    /// Flushes, bytes, latency and errors, for [`Store::stats`](crate::Store::stats).
    counters: Counters,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    shutdown: bool,
}

/// The store's flusher threads and their queue.
pub(crate) struct Flusher {
    queue: Arc<Queue>,
    /// The store's epoch domain, which each thread collects after a job.
    epoch: Epoch,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// At most this many threads; 0 runs every job on the submitter's
    /// thread.
    max: usize,
}

impl Flusher {
    /// The flush counters, for a stats snapshot.
    pub(crate) fn counters(&self) -> &Counters {
        &self.queue.counters
    }

    pub(crate) fn new(max: usize, epoch: Epoch) -> Self {
        Flusher {
            queue: Arc::default(),
            epoch,
            threads: Mutex::default(),
            max,
        }
    }

    /// Queues `job` for a flusher thread (spawning one if fewer than the
    /// maximum run), or runs it now when there are to be none.
    pub(crate) fn submit(&self, job: Job) {
        if self.max == 0 {
            job.run(&self.queue.counters);
            return;
        }
        {
            let mut threads = lock(&self.threads);
            if threads.len() < self.max {
                let (queue, epoch, max) = (Arc::clone(&self.queue), self.epoch.clone(), self.max);
                match std::thread::Builder::new()
                    .name("shapebuf-flush".into())
                    .spawn(move || run(&queue, &epoch, max))
                {
                    Ok(t) => threads.push(t),
                    Err(e) if threads.is_empty() => {
                        tracing::warn!(error = %e, "no flusher thread: flushing on the writer's thread");
                        drop(threads);
                        job.run(&self.queue.counters);
                        return;
                    }
                    Err(_) => {}
                }
            }
        }
        lock(&self.queue.state).jobs.push_back(job);
        self.queue.cond.notify_one();
    }
}

fn run(queue: &Queue, epoch: &Epoch, threads: usize) {
    loop {
        let jobs: Vec<Job> = {
            let mut st = lock(&queue.state);
            loop {
                if !st.jobs.is_empty() {
                    let share = st.jobs.len().div_ceil(threads.max(1));
                    let jobs: Vec<Job> = st.jobs.drain(..share).collect();
                    if !st.jobs.is_empty() {
                        queue.cond.notify_one();
                    }
                    break jobs;
                }
                if st.shutdown {
                    return;
                }
                st = wait(&queue.cond, st);
            }
        };
        // Every batch written and synced first, then the directory waits:
        // one directory sync covers every file this batch created.
        run_batch(jobs, &queue.counters);
        // Free what is due (see the module docs). The writers may be
        // completing their batches meanwhile; this never blocks them.
        epoch.pin().flush();
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        lock(&self.queue.state).shutdown = true;
        self.queue.cond.notify_all();
        let me = std::thread::current().id();
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}
