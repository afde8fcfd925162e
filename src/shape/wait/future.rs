//! The async wait: a future registered with a shape's waiters, woken by the
//! store's waker thread (feature `tokio`; see the parent module for the
//! protocol it shares with the blocking wait).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{WaitOutcome, Watch};
use crate::sync::{lock, Ordering};
use crate::LogOffset;

#[cfg(not(loom))]
pub(crate) struct WaitFuture<W: Watch> {
    watch: W,
    after: LogOffset,
    gen0: u32,
    /// The slab key while registered.
    key: Option<usize>,
}

#[cfg(not(loom))]
impl<W: Watch> WaitFuture<W> {
    /// A wait for a commit past `after`; closes count from now.
    pub(crate) fn new(watch: W, after: LogOffset) -> Self {
        let gen0 = watch.waiters().generation();
        WaitFuture {
            watch,
            after,
            gen0,
            key: None,
        }
    }

    fn deregister(&mut self) {
        if let Some(key) = self.key.take() {
            let waiters = self.watch.waiters();
            if let Some(shared) = waiters.shared.get() {
                lock(&shared.state).wakers.remove(key);
            }
            waiters.deregister();
        }
    }
}

#[cfg(not(loom))]
impl<W: Watch + Unpin> Future for WaitFuture<W> {
    type Output = WaitOutcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<WaitOutcome> {
        let this = self.get_mut();
        let waiters = this.watch.waiters();
        let shared = match this.key {
            Some(_) => match waiters.shared.get() {
                Some(s) => s,
                None => unreachable!("registered without shared state"),
            },
            None => {
                // Fast path: no registration when there is something to
                // read already or the shape is dead.
                if let Some(out) = waiters.check(&this.watch, this.after, this.gen0) {
                    return Poll::Ready(out);
                }
                let shared = waiters.shared();
                this.key = Some(lock(&shared.state).wakers.insert());
                waiters.register(this.watch.wake_service())
            }
        };
        loop {
            // Acquire: pairs with the Release bump in `Shared::wake_all`.
            let seen = shared.seq.load(Ordering::Acquire);
            if let Some(out) = waiters.check(&this.watch, this.after, this.gen0) {
                this.deregister();
                return Poll::Ready(out);
            }
            let mut st = lock(&shared.state);
            // Relaxed: `seq` only changes under the mutex we hold.
            if shared.seq.load(Ordering::Relaxed) == seen {
                if let Some(key) = this.key {
                    st.wakers.set(key, cx.waker());
                }
                return Poll::Pending;
            }
        }
    }
}

#[cfg(not(loom))]
impl<W: Watch> Drop for WaitFuture<W> {
    fn drop(&mut self) {
        self.deregister();
    }
}
