//! Descriptors are a cache, not a property of a shape: a child process
//! whose `RLIMIT_NOFILE` is lowered to 256 (by `ulimit -n`, in a child so
//! the rest of the suite keeps its limit) creates 5,000 shapes, keeps a
//! live writer on each, writes, reads, terminates, reopens and reads them
//! all. Before the descriptor cache every shape kept its log file open for
//! the life of the store: this failed with "Too many open files" near 250
//! shapes. Files are real (the limit is the kernel's); only fsyncs are
//! skipped, which this test is not about.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use shapebuf::fs::{Fs, FsFile, RealFs};
use shapebuf::{Config, LogOffset, Store};

const CHILD_ENV: &str = "SHAPEBUF_FD_LIMIT_CHILD_DIR";
const SHAPES: usize = 5_000;
const LIMIT: usize = 256;

/// The real file system without fsyncs (descriptors are what is tested).
#[derive(Debug)]
struct NoSync;

#[derive(Debug)]
struct File(Arc<dyn FsFile>);

impl FsFile for File {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
        self.0.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> std::io::Result<()> {
        self.0.write_all_at(buf, pos)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
}

impl Fs for NoSync {
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        RealFs.create_dir_all(dir)
    }
    fn create(&self, path: &Path) -> std::io::Result<Arc<dyn FsFile>> {
        Ok(Arc::new(File(RealFs.create(path)?)))
    }
    fn open(&self, path: &Path) -> std::io::Result<Arc<dyn FsFile>> {
        Ok(Arc::new(File(RealFs.open(path)?)))
    }
    fn read_dir(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        RealFs.read_dir(dir)
    }
    fn list(&self, dir: &Path, each: &mut dyn FnMut(&OsStr)) -> std::io::Result<()> {
        RealFs.list(dir, each)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        RealFs.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        RealFs.rename(from, to)
    }
    fn sync_dir(&self, _dir: &Path) -> std::io::Result<()> {
        Ok(())
    }
    fn lock(&self, path: &Path) -> std::io::Result<Box<dyn std::fmt::Debug + Send + Sync>> {
        RealFs.lock(path)
    }
}

fn id(i: usize) -> String {
    format!("shape/{i}")
}

fn payload(i: usize, op: u64) -> String {
    format!("{}:{op}", id(i))
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

fn config() -> Config {
    Config {
        // Well under the process limit, leaving room for the test harness,
        // the LOCK file and the flusher threads' directory syncs.
        max_open_files: 200,
        // Small files: some shapes roll to a second file.
        file_bytes: 4096,
        ..Config::default()
    }
}

fn check_all(store: &Store, ops: u64) {
    for i in 0..SHAPES {
        let got = store
            .read(id(i), LogOffset::ZERO, LogOffset::MAX)
            .unwrap_or_else(|e| panic!("read {}: {e}", id(i)));
        let want: Vec<String> = (0..ops).map(|op| payload(i, op)).collect();
        let got: Vec<String> = got
            .entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.payload).into_owned())
            .collect();
        assert_eq!(got, want, "shape {}", id(i));
    }
}

/// The child: runs under the lowered limit.
fn child(dir: &Path) {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files limit");
    assert!(
        line.split_whitespace().nth(3) == Some(&LIMIT.to_string()),
        "the child runs under ulimit -n {LIMIT}: {line}"
    );
    let store = Store::open_with_fs(dir, config(), Arc::new(NoSync)).expect("open");
    // Every shape gets a live writer, and they all stay live.
    let mut writers: Vec<_> = (0..SHAPES)
        .map(|i| store.writer(id(i)).expect("writer"))
        .collect();
    let mut peak_fds = 0;
    for op in 0..3u64 {
        for (i, w) in writers.iter_mut().enumerate() {
            w.append(LogOffset::new(op + 1, 0), payload(i, op))
                .expect("append");
            w.commit().expect("commit");
            w.flush().expect("flush");
        }
        peak_fds = peak_fds.max(open_fds());
    }
    check_all(&store, 3);
    for w in writers {
        w.terminate().expect("terminate");
    }
    assert!(
        store.peak_open_files() <= 200,
        "the cache held {} files",
        store.peak_open_files()
    );
    drop(store);
    // Reopen: every shape is recovered lazily, through the cache.
    let store = Store::open_with_fs(dir, config(), Arc::new(NoSync)).expect("reopen");
    assert_eq!(store.shape_count(), SHAPES);
    check_all(&store, 3);
    peak_fds = peak_fds.max(open_fds());
    assert!(store.peak_open_files() <= 200);
    println!(
        "descriptor_limit: {SHAPES} shapes under ulimit -n {LIMIT}: peak {} cached files, {peak_fds} descriptors",
        store.peak_open_files()
    );
}

#[test]
fn five_thousand_shapes_under_a_limit_of_256_descriptors() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {LIMIT} && exec \"$0\" \"$@\""))
        .arg(exe)
        .args([
            "--exact",
            "five_thousand_shapes_under_a_limit_of_256_descriptors",
            "--nocapture",
        ])
        .env(CHILD_ENV, dir.path())
        .status()
        .expect("spawn the child");
    assert!(status.success(), "the child failed: {status}");
}
