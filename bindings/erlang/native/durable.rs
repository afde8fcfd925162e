//! The global durable offset as a stream of messages:
//! `subscribe_durable/1` and `track_commit/3`.
//!
//! The store's flush tracker calls one callback per store (registered by
//! the first `subscribe_durable/1`) on the thread that caused the event,
//! under the tracker's event lock: it only queues the event on the reaper
//! thread, which sends `{shapebuf, Ref, {durable, Offset}}` or
//! `{shapebuf, Ref, {lost, ShapeId, After}}` to every subscriber, in the
//! tracker's order (the reaper is one thread). A subscriber is monitored;
//! its death (or `unsubscribe_durable/1`) stops its messages.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rustler::{Encoder, Env, LocalPid, Monitor, Resource, ResourceArc};
use shapebuf::{FlushEvent, LogOffset, Store};

use crate::{atoms, reaper, sub};

/// One store's durable-offset subscribers.
#[derive(Default)]
pub struct DurableSubs {
    registered: OnceLock<()>,
    subs: Mutex<Vec<ResourceArc<DurableSub>>>,
}

pub struct DurableSub {
    pid: LocalPid,
    active: AtomicBool,
}

#[rustler::resource_impl]
impl Resource for DurableSub {
    fn down<'a>(&'a self, _env: Env<'a>, _pid: LocalPid, _mon: Monitor) {
        // Relaxed: the reaper prunes on its next event; a message sent to a
        // dead process meanwhile is dropped by the VM.
        self.active.store(false, Ordering::Relaxed);
    }
}

fn lock(
    m: &Mutex<Vec<ResourceArc<DurableSub>>>,
) -> std::sync::MutexGuard<'_, Vec<ResourceArc<DurableSub>>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Subscribes the caller of `env` to `store`'s durable-offset events.
pub fn subscribe(env: Env, subs: &Arc<DurableSubs>, store: &Store) -> ResourceArc<DurableSub> {
    subs.registered.get_or_init(|| {
        let subs = Arc::clone(subs);
        store.flush_tracker().on_event(move |e| {
            let subs = Arc::clone(&subs);
            let e = e.clone();
            reaper::run(move || deliver(&subs, &e));
        });
    });
    let pid = env.pid();
    let res = ResourceArc::new(DurableSub {
        pid,
        active: AtomicBool::new(true),
    });
    let _ = env.monitor(&res, &pid);
    lock(&subs.subs).push(res.clone());
    res
}

/// Stops `res`'s messages: none is sent after this returns.
pub fn unsubscribe(subs: &DurableSubs, res: &ResourceArc<DurableSub>) {
    res.active.store(false, Ordering::Relaxed);
    // The reaper sends under this lock: once we hold it, no send for `res`
    // is under way, and later ones see `active` false.
    lock(&subs.subs).retain(|s| s.active.load(Ordering::Relaxed));
}

/// On the reaper thread: sends `e` to every active subscriber.
fn deliver(subs: &DurableSubs, e: &FlushEvent) {
    enum What<'e> {
        Durable(LogOffset),
        Lost(&'e [u8], LogOffset),
    }
    let what = match e {
        FlushEvent::Advanced(o) => What::Durable(*o),
        FlushEvent::Lost(loss) => What::Lost(&loss.shape, loss.after),
        // Non-exhaustive: a new kind of event is not ours to send.
        _ => return,
    };
    let mut list = lock(&subs.subs);
    list.retain(|s| s.active.load(Ordering::Relaxed));
    for s in list.iter() {
        sub::send_from_thread(s.pid, |env| {
            let body = match what {
                What::Durable(o) => (atoms::durable(), (o.tx, o.op)).encode(env),
                What::Lost(id, o) => {
                    let mut bin = rustler::NewBinary::new(env, id.len());
                    bin.as_mut_slice().copy_from_slice(id);
                    let id: rustler::Binary = bin.into();
                    (atoms::lost(), id, (o.tx, o.op)).encode(env)
                }
            };
            (atoms::shapebuf(), s.clone(), body).encode(env)
        });
    }
}
