//! Live tail: waits for the next commit against a real store (blocking and
//! async), across terminate, a dropped writer and restart; many waiters on
//! one shape; one waiter on each of many shapes.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shapebuf::fs::{Fs, FsFile};
use shapebuf::{Config, LogOffset, ShapeHandle, Store, WaitOutcome};

mod common;
use common::live::{spawn_wait, store, until_waiting, FOREVER};

/// Files in memory, no durability (`SimFs::sync_dir` walks every file and
/// real files need one descriptor per shape: neither suits 100,000 shapes).
#[derive(Debug, Default)]
struct MemFs(Mutex<HashMap<PathBuf, Arc<MemFile>>>);

#[derive(Debug, Default)]
struct MemFile(Mutex<Vec<u8>>);

impl FsFile for MemFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let data = self.0.lock().unwrap();
        let from = (pos as usize).min(data.len());
        let n = buf.len().min(data.len() - from);
        buf[..n].copy_from_slice(&data[from..from + n]);
        Ok(n)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        let mut data = self.0.lock().unwrap();
        let end = pos as usize + buf.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[pos as usize..end].copy_from_slice(buf);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.lock().unwrap().resize(len as usize, 0);
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.lock().unwrap().len() as u64)
    }
}

impl Fs for MemFs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        let mut files = self.0.lock().unwrap();
        if files.contains_key(path) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let f = Arc::new(MemFile::default());
        files.insert(path.to_path_buf(), Arc::clone(&f));
        Ok(f)
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        match self.0.lock().unwrap().get(path) {
            Some(f) => Ok(Arc::clone(f) as Arc<dyn FsFile>),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let files = self.0.lock().unwrap();
        Ok(files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        match self.0.lock().unwrap().remove(path) {
            Some(_) => Ok(()),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut files = self.0.lock().unwrap();
        let f = files.remove(from).ok_or(io::ErrorKind::NotFound)?;
        files.insert(to.to_path_buf(), f);
        Ok(())
    }
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}

async fn until_waiting_async(h: &ShapeHandle, n: usize) {
    while h.waiting() < n {
        tokio::task::yield_now().await;
    }
}

#[test]
fn a_commit_wakes_a_blocked_reader_with_the_last_committed_offset() {
    let (_d, store) = store();
    let mut w = store.writer("s").unwrap();
    let h = store.handle("s").unwrap();
    let waiter = spawn_wait(&h, LogOffset::ZERO);
    until_waiting(&h, 1);
    w.append(LogOffset::new(4, 0), "a").unwrap();
    w.append(LogOffset::new(4, 1), "b").unwrap();
    w.commit().unwrap();
    assert_eq!(
        waiter.join().unwrap(),
        WaitOutcome::Committed(LogOffset::new(4, 1))
    );
    assert_eq!(h.waiting(), 0);
}

#[test]
fn an_append_without_commit_does_not_end_the_wait() {
    let (_d, store) = store();
    let mut w = store.writer("s").unwrap();
    let h = store.handle("s").unwrap();
    let waiter = spawn_wait(&h, LogOffset::ZERO);
    until_waiting(&h, 1);
    w.append(LogOffset::new(1, 0), "never committed").unwrap();
    // Terminate discards the open transaction: had the append woken the
    // waiter, it would have returned `Committed`.
    w.terminate().unwrap();
    assert_eq!(waiter.join().unwrap(), WaitOutcome::Terminated);
}

#[test]
fn waits_past_an_offset_ahead_of_the_log() {
    let (_d, store) = store();
    let mut w = store.writer("s").unwrap();
    let h = store.handle("s").unwrap();
    let waiter = spawn_wait(&h, LogOffset::new(5, 0));
    until_waiting(&h, 1);
    for tx in 1..=5 {
        w.append(LogOffset::new(tx, 0), "x").unwrap();
        w.commit().unwrap();
    }
    w.append(LogOffset::new(5, 1), "y").unwrap();
    w.commit().unwrap();
    assert_eq!(
        waiter.join().unwrap(),
        WaitOutcome::Committed(LogOffset::new(5, 1))
    );
}

#[test]
fn timeout_returns_timed_out_and_store_wait_checks_the_shape() {
    let (_d, store) = store();
    let _w = store.writer("s").unwrap();
    let out = store
        .wait_for("s", LogOffset::ZERO, Duration::from_millis(10))
        .unwrap();
    assert_eq!(out, WaitOutcome::TimedOut);
    let err = store
        .wait_for("missing", LogOffset::ZERO, FOREVER)
        .unwrap_err();
    assert!(matches!(err, shapebuf::Error::UnknownShape(_)), "{err}");
}

#[test]
fn terminate_wakes_every_waiter_and_a_restarted_shape_keeps_working() {
    let (_d, store) = store();
    let mut w = store.writer("s").unwrap();
    w.append(LogOffset::new(1, 0), "a").unwrap();
    w.commit().unwrap();
    let h = store.handle("s").unwrap();
    let after = LogOffset::new(1, 0);
    let waiters: Vec<_> = (0..16).map(|_| spawn_wait(&h, after)).collect();
    until_waiting(&h, 16);
    w.terminate().unwrap();
    for t in waiters {
        assert_eq!(t.join().unwrap(), WaitOutcome::Terminated);
    }
    assert_eq!(h.waiting(), 0);

    // A wait that starts on the dead shape learns it at once.
    assert_eq!(h.wait_for(after, FOREVER), WaitOutcome::Terminated);
    // A restarted shape's waits (same handle) wait again.
    let mut w = store.writer("s").unwrap();
    let waiter = spawn_wait(&h, after);
    until_waiting(&h, 1);
    w.append(LogOffset::new(2, 0), "b").unwrap();
    w.commit().unwrap();
    assert_eq!(
        waiter.join().unwrap(),
        WaitOutcome::Committed(LogOffset::new(2, 0))
    );
    let all = h.read(LogOffset::ZERO, LogOffset::MAX).unwrap().entries;
    assert_eq!(all.len(), 2);
}

#[test]
fn a_dropped_writer_wakes_waiters_and_keeps_its_commits() {
    let (_d, store) = store();
    let mut w = store.writer("s").unwrap();
    w.append(LogOffset::new(1, 0), "a").unwrap();
    w.commit().unwrap();
    let h = store.handle("s").unwrap();
    let waiter = spawn_wait(&h, LogOffset::new(1, 0));
    until_waiting(&h, 1);
    drop(w);
    assert_eq!(waiter.join().unwrap(), WaitOutcome::WriterDropped);
    // A commit made before the drop wins over the drop.
    let out = h.wait_for(LogOffset::ZERO, FOREVER);
    assert_eq!(out, WaitOutcome::Committed(LogOffset::new(1, 0)));
}

#[test]
fn a_reopened_shape_is_dead_until_its_first_writer() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.writer("s").unwrap();
        w.append(LogOffset::new(1, 0), "a").unwrap();
        w.commit().unwrap();
        w.terminate().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let h = store.handle("s").unwrap();
    let after = LogOffset::new(1, 0);
    assert_eq!(
        h.wait_for(LogOffset::ZERO, FOREVER),
        WaitOutcome::Committed(after)
    );
    assert_eq!(h.wait_for(after, FOREVER), WaitOutcome::Terminated);
    let mut w = store.writer("s").unwrap();
    assert_eq!(
        h.wait_for(after, Duration::from_millis(1)),
        WaitOutcome::TimedOut
    );
    w.append(LogOffset::new(2, 0), "b").unwrap();
    w.commit().unwrap();
    assert_eq!(
        h.wait_for(after, FOREVER),
        WaitOutcome::Committed(LogOffset::new(2, 0))
    );
}

#[test]
fn a_commit_before_terminate_is_reported_as_committed() {
    let (_d, store) = store();
    let mut w = store.writer("s").unwrap();
    let h = store.handle("s").unwrap();
    let waiter = spawn_wait(&h, LogOffset::ZERO);
    until_waiting(&h, 1);
    w.append(LogOffset::new(1, 0), "a").unwrap();
    w.commit().unwrap();
    w.terminate().unwrap();
    // Whichever wake it saw, the commit happened before the close.
    assert_eq!(
        waiter.join().unwrap(),
        WaitOutcome::Committed(LogOffset::new(1, 0))
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

#[test]
fn ten_thousand_async_waiters_on_one_shape_all_wake_once() {
    let (_d, store) = store();
    let mut w = store.writer("s").unwrap();
    let h = store.handle("s").unwrap();
    runtime().block_on(async {
        let tasks: Vec<_> = (0..10_000)
            .map(|_| tokio::spawn(h.wait_for_async(LogOffset::ZERO, FOREVER)))
            .collect();
        until_waiting_async(&h, 10_000).await;
        w.append(LogOffset::new(9, 0), "x").unwrap();
        w.commit().unwrap();
        for t in tasks {
            assert_eq!(
                t.await.unwrap(),
                WaitOutcome::Committed(LogOffset::new(9, 0))
            );
        }
    });
    assert_eq!(h.waiting(), 0);
}

#[test]
fn a_dropped_async_wait_deregisters_and_loses_nothing() {
    let (_d, store) = store();
    let mut w = store.writer("s").unwrap();
    let h = store.handle("s").unwrap();
    runtime().block_on(async {
        // Cancelled by their timeout, by `select!`, and by a plain drop.
        for _ in 0..100 {
            let out = h
                .wait_for_async(LogOffset::ZERO, Duration::from_millis(1))
                .await;
            assert_eq!(out, WaitOutcome::TimedOut);
        }
        for _ in 0..100 {
            tokio::select! {
                biased;
                _ = tokio::task::yield_now() => {}
                _ = h.wait_for_async(LogOffset::ZERO, FOREVER) => panic!("nothing committed"),
            }
        }
        let polled = tokio::spawn(h.wait_for_async(LogOffset::ZERO, FOREVER));
        until_waiting_async(&h, 1).await;
        polled.abort();
        assert!(polled.await.unwrap_err().is_cancelled());
        drop(h.wait_for_async(LogOffset::ZERO, FOREVER)); // never polled
        assert_eq!(h.waiting(), 0, "every cancelled wait deregistered");

        let live = tokio::spawn(h.wait_for_async(LogOffset::ZERO, FOREVER));
        until_waiting_async(&h, 1).await;
        w.append(LogOffset::new(1, 0), "x").unwrap();
        w.commit().unwrap();
        assert_eq!(
            live.await.unwrap(),
            WaitOutcome::Committed(LogOffset::new(1, 0))
        );
    });
    assert_eq!(h.waiting(), 0);
}

#[test]
fn async_waits_see_terminate_and_restart() {
    let (_d, store) = store();
    let w = store.writer("s").unwrap();
    let h = store.handle("s").unwrap();
    runtime().block_on(async {
        let t = tokio::spawn(h.wait_for_async(LogOffset::ZERO, FOREVER));
        until_waiting_async(&h, 1).await;
        w.terminate().unwrap();
        assert_eq!(t.await.unwrap(), WaitOutcome::Terminated);
        let out = h.wait_for_async(LogOffset::ZERO, FOREVER).await;
        assert_eq!(out, WaitOutcome::Terminated, "dead at the start");
        let mut w = store.writer("s").unwrap();
        let t = tokio::spawn(store.wait_for_async("s", LogOffset::ZERO, FOREVER));
        until_waiting_async(&h, 1).await;
        w.append(LogOffset::new(3, 0), "x").unwrap();
        w.commit().unwrap();
        assert_eq!(
            t.await.unwrap().unwrap(),
            WaitOutcome::Committed(LogOffset::new(3, 0))
        );
    });
}

/// A future that counts its polls.
struct Counted<F> {
    inner: std::pin::Pin<Box<F>>,
    polls: Arc<AtomicUsize>,
}

impl<F: std::future::Future> std::future::Future for Counted<F> {
    type Output = F::Output;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.inner.as_mut().poll(cx)
    }
}

/// One waiter on each of many shapes: a commit wakes only its own shape's
/// waiter (on a current-thread runtime a task is polled again only if
/// woken), and every shape's waiter gets its own commit.
#[test]
fn one_waiter_per_shape_on_many_shapes_wakes_only_its_shape() {
    const SHAPES: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    // In-memory logs: this test is about waiters, not about 100,000 files.
    let store =
        Store::open_with_fs(dir.path(), Config::default(), Arc::new(MemFs::default())).unwrap();
    let ids: Vec<String> = (0..SHAPES).map(|i| format!("shape-{i}")).collect();
    let mut writers: Vec<_> = ids.iter().map(|id| store.writer(id).unwrap()).collect();
    let handles: Vec<_> = ids.iter().map(|id| store.handle(id).unwrap()).collect();
    let polls: Vec<_> = (0..SHAPES).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    runtime().block_on(async {
        let tasks: Vec<_> = handles
            .iter()
            .zip(&polls)
            .map(|(h, p)| {
                tokio::spawn(Counted {
                    inner: Box::pin(h.wait_for_async(LogOffset::ZERO, FOREVER)),
                    polls: Arc::clone(p),
                })
            })
            .collect();
        // Let every task register (one poll each).
        while polls.iter().any(|p| p.load(Ordering::Relaxed) == 0) {
            tokio::task::yield_now().await;
        }
        assert!(handles.iter().all(|h| h.waiting() == 1));
        let mut tasks = tasks.into_iter();
        let first = tasks.next().unwrap();
        writers[0].append(LogOffset::new(1, 0), "x").unwrap();
        writers[0].commit().unwrap();
        assert_eq!(
            first.await.unwrap(),
            WaitOutcome::Committed(LogOffset::new(1, 0))
        );
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let repolled = polls[1..]
            .iter()
            .filter(|p| p.load(Ordering::Relaxed) != 1)
            .count();
        assert_eq!(
            repolled, 0,
            "a commit to one shape woke other shapes' waiters"
        );
        for (i, w) in writers.iter_mut().enumerate().skip(1) {
            w.append(LogOffset::new(1, i as u64), "y").unwrap();
            w.commit().unwrap();
        }
        for (i, t) in tasks.enumerate() {
            assert_eq!(
                t.await.unwrap(),
                WaitOutcome::Committed(LogOffset::new(1, i as u64 + 1))
            );
        }
    });
    assert!(handles.iter().all(|h| h.waiting() == 0));
}
