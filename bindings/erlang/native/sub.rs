//! Live tail as messages: `subscribe/4`.
//!
//! A subscription owns a [`ShapeHandle::wait_future`] and polls it from the
//! waker the future registers: the store's wake thread (`shapebuf-wake`)
//! calls that waker after a commit, terminate or drop, outside the store's
//! locks, and the waker re-polls the future on that thread; when it is
//! ready the outcome is sent to the subscriber as
//! `{shapebuf, Ref, Outcome}` (`OwnedEnv::send_and_clear`), where `Ref` is
//! the subscription resource itself. No scheduler, normal or dirty, is held
//! while a subscription waits: between polls it is a boxed future, a waker
//! slot in the shape's waiter slab and, with a timeout, an entry in the
//! binding's timer heap (`shapebuf-timer`).
//!
//! Every way a subscription ends goes through [`finish`] or [`cancel`],
//! under the subscription's mutex, so exactly one of them sends (or none,
//! for a cancel): commit/terminate/drop/remove (the waker), the timer,
//! `unsubscribe/1`, the subscriber's death (monitor `down`), `close/1`.
//!
//! Lock order: a subscription's mutex, then the shape's waiter state
//! (inside the future's poll and drop). The wake thread calls wakers after
//! releasing the waiter state, so a waker taking the subscription's mutex
//! cannot deadlock with it.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use rustler::{Encoder, Env, LocalPid, Monitor, OwnedEnv, Resource, ResourceArc, Term};
use shapebuf::{LogOffset, WaitOutcome};

use crate::{atoms, reaper};

type WaitBox = Pin<Box<dyn Future<Output = WaitOutcome> + Send>>;

/// How a subscription ended: the third element of its message.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    Committed(LogOffset),
    Timeout,
    Terminated,
    WriterDropped,
    Removed,
    Closed,
}

impl From<WaitOutcome> for Outcome {
    fn from(w: WaitOutcome) -> Self {
        match w {
            WaitOutcome::Committed(o) => Outcome::Committed(o),
            WaitOutcome::TimedOut => Outcome::Timeout,
            WaitOutcome::Terminated => Outcome::Terminated,
            WaitOutcome::WriterDropped => Outcome::WriterDropped,
            WaitOutcome::Removed => Outcome::Removed,
            // `WaitOutcome` is non-exhaustive: a future variant ends the
            // wait; the subscriber re-reads and re-subscribes.
            _ => Outcome::Terminated,
        }
    }
}

impl Encoder for Outcome {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match *self {
            Outcome::Committed(o) => (atoms::committed(), (o.tx, o.op)).encode(env),
            Outcome::Timeout => atoms::timeout().encode(env),
            Outcome::Terminated => atoms::terminated().encode(env),
            Outcome::WriterDropped => atoms::writer_dropped().encode(env),
            Outcome::Removed => atoms::removed().encode(env),
            Outcome::Closed => atoms::closed().encode(env),
        }
    }
}

/// The subscription resource (the `Ref` of `{ok, Ref}` and of the
/// message).
pub struct SubRes {
    pub inner: Arc<SubInner>,
}

pub struct SubInner {
    pid: LocalPid,
    state: Mutex<SubState>,
    /// Set once the wait is finished or cancelled (read without the lock
    /// to prune the store's list of subscriptions).
    pub done: AtomicBool,
}

struct SubState {
    wait: Option<WaitBox>,
    mon: Option<Monitor>,
}

fn lock(m: &Mutex<SubState>) -> MutexGuard<'_, SubState> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[rustler::resource_impl]
impl Resource for SubRes {
    /// The subscriber died: drop its wait at once, on the reaper thread
    /// (this runs on a scheduler; the wake thread may hold the mutex while
    /// it polls, and a poll may read a shape's log).
    fn down<'a>(&'a self, _env: Env<'a>, _pid: LocalPid, _mon: Monitor) {
        let inner = Arc::clone(&self.inner);
        reaper::run(move || drop(cancel(&inner)));
    }
}

impl Drop for SubRes {
    fn drop(&mut self) {
        // Normally finished already (a registered wait's waker keeps the
        // resource alive); a wait that never registered is dropped off the
        // collecting scheduler.
        if !self.inner.done.load(AtomicOrdering::Acquire) {
            let inner = Arc::clone(&self.inner);
            reaper::run(move || drop(cancel(&inner)));
        }
    }
}

/// Ends the wait without a message; returns the wait for the caller to
/// drop where dropping may block (it holds a store handle).
pub fn cancel(inner: &SubInner) -> Option<WaitBox> {
    let mut st = lock(&inner.state);
    // Release: pairs with the Acquire loads in `Drop` and the store's prune.
    inner.done.store(true, AtomicOrdering::Release);
    st.mon = None;
    st.wait.take()
}

/// Cancels `res` from a NIF (`unsubscribe/1`, `close/1`): also removes the
/// monitor. Returns the wait, if it was still running.
pub fn cancel_in(env: Env, res: &ResourceArc<SubRes>) -> Option<WaitBox> {
    let mut st = lock(&res.inner.state);
    res.inner.done.store(true, AtomicOrdering::Release);
    if let Some(mon) = st.mon.take() {
        env.demonitor(res, &mon);
    }
    st.wait.take()
}

/// A new subscription of `pid` to `wait`, monitored by `env`'s caller.
pub fn new(env: Env, pid: LocalPid, wait: WaitBox) -> ResourceArc<SubRes> {
    let res = ResourceArc::new(SubRes {
        inner: Arc::new(SubInner {
            pid,
            state: Mutex::new(SubState {
                wait: Some(wait),
                mon: None,
            }),
            done: AtomicBool::new(false),
        }),
    });
    let mon = env.monitor(&res, &pid);
    lock(&res.inner.state).mon = mon;
    res
}

/// Polls the wait of `res` (first from the subscribing NIF, with its
/// `env`; then from the waker, without). Sends the message if it is ready.
pub fn poll(env: Option<Env>, res: &ResourceArc<SubRes>) {
    let mut st = lock(&res.inner.state);
    let Some(wait) = st.wait.as_mut() else {
        return; // finished or cancelled already
    };
    let waker = Waker::from(Arc::new(SubWaker(res.clone())));
    let mut cx = Context::from_waker(&waker);
    if let Poll::Ready(out) = wait.as_mut().poll(&mut cx) {
        let wait = st.wait.take();
        finish_locked(env, res, &mut st, out.into());
        drop(st);
        reaper::drop_later(wait);
    }
}

/// Ends the wait of `res` with `outcome` if it still runs (the timer and
/// `close/1`): sends the message.
pub fn finish(env: Option<Env>, res: &ResourceArc<SubRes>, outcome: Outcome) {
    let mut st = lock(&res.inner.state);
    if let Some(wait) = st.wait.take() {
        finish_locked(env, res, &mut st, outcome);
        drop(st);
        match env {
            // A dirty NIF may drop the last store handle itself.
            Some(_) => drop(wait),
            None => reaper::drop_later(wait),
        }
    }
}

fn finish_locked(env: Option<Env>, res: &ResourceArc<SubRes>, st: &mut SubState, out: Outcome) {
    res.inner.done.store(true, AtomicOrdering::Release);
    let mon = st.mon.take();
    // Sent under the mutex: `unsubscribe/1` takes it before flushing the
    // mailbox, so a message sent before it is never left behind.
    send(env, res, out);
    if let Some(mon) = mon {
        match env {
            Some(env) => {
                env.demonitor(res, &mon);
            }
            None => {
                res.demonitor(None, &mon);
            }
        }
    }
}

thread_local! {
    /// One process-independent environment per sending thread (the wake
    /// and timer threads), cleared after each message.
    static SEND_ENV: RefCell<OwnedEnv> = RefCell::new(OwnedEnv::new());
}

fn send(env: Option<Env>, res: &ResourceArc<SubRes>, out: Outcome) {
    let pid = res.inner.pid;
    match env {
        Some(env) => {
            let _ = env.send(&pid, (atoms::shapebuf(), res.clone(), out));
        }
        None if !rustler::thread::is_scheduler_thread() => {
            SEND_ENV.with(|e| {
                let _ = e.borrow_mut().send_and_clear(&pid, |env| {
                    (atoms::shapebuf(), res.clone(), out).encode(env)
                });
            });
        }
        None => {
            // A scheduler thread without its env (not expected: wakes come
            // from the store's wake thread): send from the reaper thread.
            let res = res.clone();
            reaper::run(move || send(None, &res, out));
        }
    }
}

/// Sends the message `make` builds to `pid` from a thread the VM does not
/// manage (the reaper, wake and timer threads).
pub fn send_from_thread(pid: LocalPid, make: impl for<'a> FnOnce(Env<'a>) -> Term<'a>) {
    SEND_ENV.with(|e| {
        let _ = e.borrow_mut().send_and_clear(&pid, make);
    });
}

/// The waker a subscription's wait registers: re-polls it.
struct SubWaker(ResourceArc<SubRes>);

impl Wake for SubWaker {
    fn wake(self: Arc<Self>) {
        poll(None, &self.0);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        poll(None, &self.0);
    }
}

// ---- timeouts -------------------------------------------------------------

struct Deadline {
    at: Instant,
    seq: u64,
    sub: ResourceArc<SubRes>,
}

impl PartialEq for Deadline {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Deadline {}
impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Timer {
    heap: Mutex<BinaryHeap<Reverse<Deadline>>>,
    cond: Condvar,
    seq: AtomicU64,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<&'static Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let t: &'static Timer = Box::leak(Box::new(Timer {
            heap: Mutex::new(BinaryHeap::new()),
            cond: Condvar::new(),
            seq: AtomicU64::new(0),
        }));
        let spawned = std::thread::Builder::new()
            .name("shapebuf-timer".into())
            .spawn(move || run_timer(t));
        if spawned.is_err() {
            // Without the thread, timeouts never fire; waits still end on
            // commit, terminate, unsubscribe or the subscriber's death.
        }
        t
    })
}

/// Sends `timeout` for `sub` after `after` unless it ended before.
pub fn add_timeout(sub: ResourceArc<SubRes>, after: Duration) {
    let t = timer();
    let at = Instant::now() + after;
    let seq = t.seq.fetch_add(1, AtomicOrdering::Relaxed);
    let mut heap = t
        .heap
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let first = heap.peek().is_none_or(|Reverse(d)| at < d.at);
    heap.push(Reverse(Deadline { at, seq, sub }));
    drop(heap);
    if first {
        t.cond.notify_one();
    }
}

fn run_timer(t: &'static Timer) {
    let mut heap = t
        .heap
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let now = Instant::now();
        match heap.peek() {
            None => {
                heap = t
                    .cond
                    .wait(heap)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            Some(Reverse(d)) if d.at > now => {
                let wait = d.at - now;
                heap = t
                    .cond
                    .wait_timeout(heap, wait)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            Some(_) => {
                let Some(Reverse(d)) = heap.pop() else {
                    continue;
                };
                drop(heap);
                if !d.sub.inner.done.load(AtomicOrdering::Acquire) {
                    finish(None, &d.sub, Outcome::Timeout);
                }
                drop(d);
                heap = t
                    .heap
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        }
    }
}
