//! Helpers of the live-tail tests (waits on a shape's next commit).

use std::thread::JoinHandle;
use std::time::Duration;

use shapebuf::{LogOffset, ShapeHandle, Store, WaitOutcome};

/// A timeout no test reaches: a wait that ends does so for another reason.
pub const FOREVER: Duration = Duration::from_secs(3600);

/// A store in a fresh directory (kept alive by the returned guard).
pub fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    (dir, store)
}

/// Spins (yielding) until `n` waiters are registered on `h`.
pub fn until_waiting(h: &ShapeHandle, n: usize) {
    while h.waiting() < n {
        std::thread::yield_now();
    }
}

/// A thread blocked in `h.wait_for(after, FOREVER)`.
pub fn spawn_wait(h: &ShapeHandle, after: LogOffset) -> JoinHandle<WaitOutcome> {
    let h = h.clone();
    std::thread::spawn(move || h.wait_for(after, FOREVER))
}
