//! Live tail, the wake hand-off: a commit never wakes its shape's waiters
//! on the committing thread. The store's waker thread (`shapebuf-wake`)
//! does it; it is spawned by the first waiter and joined when the store's
//! last owner is gone.

use std::future::Future;
use std::pin::pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::ThreadId;
use std::time::Duration;

use shapebuf::{LogOffset, Store, WaitOutcome};

mod common;
use common::live::{spawn_wait, store, until_waiting, FOREVER};

/// The tests count the process's waker threads: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A waker that reports the thread it is woken on and, unless that is the
/// committing thread, blocks there until released.
struct Blocking {
    committer: ThreadId,
    called: Mutex<mpsc::Sender<(ThreadId, Option<String>)>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl Wake for Blocking {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let me = std::thread::current();
        let _ = self
            .called
            .lock()
            .unwrap()
            .send((me.id(), me.name().map(str::to_owned)));
        if me.id() != self.committer {
            let _ = self.release.lock().unwrap().recv();
        }
    }
}

/// The wake runs on the waker thread, and while it is stuck there (a waker
/// that blocks) the writer's commits still return at once: the writer never
/// waits on its readers. (Before the hand-off the wake ran inside
/// `commit()`, on the writer's thread.)
#[test]
fn commit_returns_while_a_wake_is_blocked_on_the_waker_thread() {
    let _serial = serial();
    let (_d, store) = store();
    let mut w = store.writer("s").unwrap();
    let h = store.handle("s").unwrap();
    let (called_tx, called) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let waker = Waker::from(Arc::new(Blocking {
        committer: std::thread::current().id(),
        called: Mutex::new(called_tx),
        release: Mutex::new(release_rx),
    }));
    let mut cx = Context::from_waker(&waker);
    // The async wait's timeout needs a runtime's timer; it never fires.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _rt = rt.enter();
    let mut tail = pin!(h.wait_for_async(LogOffset::ZERO, FOREVER));
    assert!(tail.as_mut().poll(&mut cx).is_pending());
    assert_eq!(h.waiting(), 1);

    w.append(LogOffset::new(1, 0), "a").unwrap();
    w.commit().unwrap();
    let (on, name) = called.recv().unwrap();
    assert_ne!(
        on,
        std::thread::current().id(),
        "commit() woke the waiter on the writer's thread"
    );
    assert_eq!(name.as_deref(), Some("shapebuf-wake"));

    // The waker thread is now stuck in `wake`. A blocking reader waits for
    // the next commit; the commit returns although nobody can wake it yet.
    let reader = spawn_wait(&h, LogOffset::new(1, 0));
    until_waiting(&h, 2);
    w.append(LogOffset::new(2, 0), "b").unwrap();
    assert_eq!(w.commit().unwrap(), LogOffset::new(2, 0));
    release.send(()).unwrap();
    assert_eq!(
        reader.join().unwrap(),
        WaitOutcome::Committed(LogOffset::new(2, 0))
    );
    assert_eq!(
        tail.as_mut().poll(&mut cx),
        Poll::Ready(WaitOutcome::Committed(LogOffset::new(2, 0)))
    );
    assert_eq!(h.waiting(), 0);
}

/// The threads of this process named `shapebuf-wake`.
#[cfg(target_os = "linux")]
fn wake_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == "shapebuf-wake")
        .count()
}

/// A joined thread can stay listed for a moment while the kernel finishes
/// its exit: polls a bounded number of times.
#[cfg(target_os = "linux")]
fn until_wake_threads(n: usize) -> usize {
    let mut seen = wake_threads();
    for _ in 0..2000 {
        if seen == n {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
        seen = wake_threads();
    }
    seen
}

#[cfg(target_os = "linux")]
#[test]
fn the_waker_thread_is_spawned_by_the_first_waiter_and_ends_with_the_store() {
    let _serial = serial();
    assert_eq!(until_wake_threads(0), 0, "a previous test's thread lingers");
    let (_d, store) = store();
    let mut a = store.writer("a").unwrap();
    let mut b = store.writer("b").unwrap();
    for tx in 1..=10 {
        a.append(LogOffset::new(tx, 0), "x").unwrap();
        a.commit().unwrap();
    }
    let out = store.wait_for("a", LogOffset::ZERO, FOREVER).unwrap();
    assert_eq!(out, WaitOutcome::Committed(LogOffset::new(10, 0)));
    assert_eq!(wake_threads(), 0, "no waiter has registered: no thread");

    // Waiters on two shapes: one thread for the store.
    let readers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|id| {
            let h = store.handle(id).unwrap();
            std::thread::spawn(move || h.wait_for(LogOffset::new(10, 0), FOREVER))
        })
        .collect();
    until_waiting(&store.handle("a").unwrap(), 1);
    until_waiting(&store.handle("b").unwrap(), 1);
    // (Spawned; it names itself when it first runs.)
    assert_eq!(until_wake_threads(1), 1);
    a.append(LogOffset::new(11, 0), "x").unwrap();
    a.commit().unwrap();
    b.append(LogOffset::new(11, 0), "y").unwrap();
    b.commit().unwrap();
    for r in readers {
        assert_eq!(
            r.join().unwrap(),
            WaitOutcome::Committed(LogOffset::new(11, 0))
        );
    }
    assert_eq!(wake_threads(), 1);
    // A writer or a handle keeps the store (and its thread) alive.
    let h = store.handle("a").unwrap();
    drop(store);
    assert_eq!(wake_threads(), 1);
    drop((a, b, h));
    assert_eq!(
        until_wake_threads(0),
        0,
        "the store is gone, its thread not"
    );
}

/// A waker that says it runs, and once let go drops a store it holds and
/// reports the thread it did it on.
struct OwnsStore {
    store: Mutex<Option<Store>>,
    running: Mutex<mpsc::Sender<()>>,
    go: Mutex<mpsc::Receiver<()>>,
    dropped_on: Mutex<mpsc::Sender<Option<String>>>,
}

impl Wake for OwnsStore {
    fn wake(self: Arc<Self>) {
        let _ = self.running.lock().unwrap().send(());
        let _ = self.go.lock().unwrap().recv();
        let store = self.store.lock().unwrap().take();
        drop(store);
        let name = std::thread::current().name().map(str::to_owned);
        let _ = self.dropped_on.lock().unwrap().send(name);
    }
}

/// A waker run by the waker thread drops the store's last owner: the
/// store's drop runs on the waker thread, which cannot join itself; it
/// exits on its own once its queue is empty.
#[cfg(target_os = "linux")]
#[test]
fn a_store_dropped_by_a_waker_on_the_waker_thread_ends_it() {
    let _serial = serial();
    assert_eq!(until_wake_threads(0), 0, "a previous test's thread lingers");
    let (_d, store) = store();
    let mut w = store.writer("s").unwrap();
    let h = store.handle("s").unwrap();
    let (running_tx, running) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let (tx, dropped_on) = mpsc::channel();
    let waker = Waker::from(Arc::new(OwnsStore {
        store: Mutex::new(Some(store.clone())),
        running: Mutex::new(running_tx),
        go: Mutex::new(go_rx),
        dropped_on: Mutex::new(tx),
    }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _rt = rt.enter();
    let mut tail = Box::pin(h.wait_for_async(LogOffset::ZERO, FOREVER));
    assert!(tail
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    w.append(LogOffset::new(1, 0), "x").unwrap();
    w.commit().unwrap();
    // The waker thread runs the waker (blocked until `go`): drop every
    // other owner of the store.
    running.recv().unwrap();
    drop((tail, h, w, store));
    assert_eq!(wake_threads(), 1);
    go.send(()).unwrap();
    assert_eq!(dropped_on.recv().unwrap().as_deref(), Some("shapebuf-wake"));
    assert_eq!(until_wake_threads(0), 0);
}
