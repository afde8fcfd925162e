//! The binding's reaper thread: where everything that may block is dropped.
//!
//! A resource's destructor and a monitor's `down` callback run on whatever
//! scheduler thread the VM picks, and must not block it. Dropping a
//! [`ShapeWriter`](shapebuf::ShapeWriter) waits for its flush batch in
//! flight; dropping the last handle on a store joins its threads. So those
//! drops are handed here, as tasks on an unbounded channel, and run on one
//! thread the binding owns (`shapebuf-reaper`, spawned at the first task).
//! The wake and timer threads hand their drops here too: the last owner of
//! a store must never be dropped on the store's own wake thread.

use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

type Task = Box<dyn FnOnce() + Send>;

fn sender() -> Option<&'static Mutex<Sender<Task>>> {
    static REAPER: OnceLock<Option<Mutex<Sender<Task>>>> = OnceLock::new();
    REAPER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Task>();
            std::thread::Builder::new()
                .name("shapebuf-reaper".into())
                .spawn(move || {
                    for task in rx {
                        task();
                    }
                })
                .ok()
                .map(|_| Mutex::new(tx))
        })
        .as_ref()
}

/// Runs `task` on the reaper thread. If the thread could not be spawned
/// the task is leaked rather than run here (running it could block a
/// scheduler); a host without threads has bigger problems.
pub fn run(task: impl FnOnce() + Send + 'static) {
    if let Some(tx) = sender() {
        // The lock is held for one channel push (no allocation beyond the
        // node, no wait on the receiver).
        let sent = match tx.lock() {
            Ok(tx) => tx.send(Box::new(task)),
            Err(poisoned) => poisoned.into_inner().send(Box::new(task)),
        };
        if let Err(mpsc::SendError(task)) = sent {
            std::mem::forget(task);
        }
    } else {
        std::mem::forget(task);
    }
}

/// Drops `value` on the reaper thread.
pub fn drop_later<T: Send + 'static>(value: T) {
    run(move || drop(value));
}

/// Waits (at most `timeout`) until every task handed over before this call
/// has run. Only for dirty-scheduler NIFs (it blocks).
pub fn barrier(timeout: Duration) -> bool {
    let (tx, rx) = mpsc::sync_channel(1);
    run(move || {
        let _ = tx.send(());
    });
    rx.recv_timeout(timeout).is_ok()
}
