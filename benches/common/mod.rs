//! Shared helpers of the shapebuf benches: criterion settings, percentile
//! summaries written as JSON next to criterion's own output (read by
//! `scripts/bench-report`), the record framing the baselines write, two
//! file-system wrappers (no-sync and in-memory null) built on the public
//! [`shapebuf::fs`] seam, the process's live heap (a counting allocator),
//! resident memory and open descriptors, and the fjall baseline
//! ([`fjall_log`]).
//!
//! Each bench binary includes this module with `mod common;` and uses only
//! part of it.
#![allow(dead_code)]

pub mod fjall_log;

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::Criterion;
use shapebuf::fs::{Fs, FsFile, RealFs};
use shapebuf::LogOffset;

/// Short default runs: the bench machine has 2 shared cores. Override on the
/// command line (`-- --measurement-time 10`).
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
        // Plots cost seconds of CPU per benchmark on this machine; the
        // report reads the estimates.
        .without_plots()
        .configure_from_args()
}

/// criterion's output directory (`$CRITERION_HOME`, else
/// `$CARGO_TARGET_DIR/criterion`, else `target/criterion`, as criterion
/// resolves it); our own summaries go to its `shapebuf/` subdirectory.
pub fn custom_dir() -> PathBuf {
    let home = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("target"))
                .join("criterion")
        });
    home.join("shapebuf")
}

/// A flat JSON object built by hand (the benches have no serde).
#[derive(Default)]
pub struct Json(Vec<(String, String)>);

impl Json {
    pub fn num(mut self, k: &str, v: f64) -> Self {
        let v = if v.is_finite() {
            format!("{v}")
        } else {
            "null".into()
        };
        self.0.push((k.into(), v));
        self
    }

    pub fn str(mut self, k: &str, v: &str) -> Self {
        let esc = v.replace('\\', "\\\\").replace('"', "\\\"");
        self.0.push((k.into(), format!("\"{esc}\"")));
        self
    }

    /// Writes `<custom_dir>/<name>.json` (a `/` in `name` makes a subdirectory).
    pub fn write(self, name: &str) {
        let path = custom_dir().join(format!("{name}.json"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the summary directory");
        }
        let mut s = String::from("{\n");
        for (i, (k, v)) in self.0.iter().enumerate() {
            let comma = if i + 1 < self.0.len() { "," } else { "" };
            let _ = writeln!(s, "  \"{k}\": {v}{comma}");
        }
        s.push_str("}\n");
        std::fs::write(&path, s).expect("write the summary");
    }
}

/// Percentiles of latencies in nanoseconds (sorts `v`).
pub struct Pcts {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

pub fn pcts(v: &mut [u64]) -> Pcts {
    v.sort_unstable();
    let at = |q: f64| -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v[i] as f64
    };
    Pcts {
        n: v.len(),
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        max: at(1.0),
    }
}

impl Json {
    /// Adds `<prefix>_n`, `_p50_ns`, `_p99_ns`, `_p999_ns`, `_max_ns`.
    pub fn pcts(self, prefix: &str, p: &Pcts) -> Self {
        self.num(&format!("{prefix}_n"), p.n as f64)
            .num(&format!("{prefix}_p50_ns"), p.p50)
            .num(&format!("{prefix}_p99_ns"), p.p99)
            .num(&format!("{prefix}_p999_ns"), p.p999)
            .num(&format!("{prefix}_max_ns"), p.max)
    }
}

/// Counts live heap bytes (requested sizes) for [`heap_bytes`]; a bench
/// that reads them installs it (`#[global_allocator] static ALLOC: Counting
/// = Counting;`). Relaxed: a statistic read while the measured code is
/// quiescent.
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments and
// only adds bookkeeping; the allocator contract is `System`'s.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is (see the impl).
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is (see the impl).
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is (see the impl).
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

/// Live heap bytes, if the bench installed [`Counting`] (else 0).
pub fn heap_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// This process's resident set size in bytes (`/proc/self/statm`; 0 where
/// there is none).
pub fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

extern "C" {
    /// glibc: returns free heap memory to the system.
    fn malloc_trim(pad: usize) -> i32;
}

/// RSS after asking glibc to return the free memory it keeps: separates
/// live memory from the allocator's retention.
pub fn rss_after_trim() -> u64 {
    // SAFETY: `malloc_trim` has no preconditions; it only releases free
    // memory held by glibc's allocator (which `System` uses).
    unsafe { malloc_trim(0) };
    rss_bytes()
}

/// File descriptors this process holds (`/proc/self/fd`, less the one that
/// lists it).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count().saturating_sub(1))
}

/// A fast, deterministic PRNG for key choice in timed loops.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A fresh, heap-allocated payload (its first clone allocates the shared
/// header, later clones bump a reference count, as with any payload a host
/// hands over).
pub fn payload(len: usize, seed: u64) -> Bytes {
    let mut v = vec![0u8; len];
    for (i, b) in v.iter_mut().enumerate() {
        *b = (seed as usize).wrapping_add(i) as u8;
    }
    Bytes::from(v)
}

/// The framed size of an entry record in shapebuf's log (frame 8 + kind 1 +
/// offset 16 + payload), which is also what the writer counts towards
/// `flush_bytes` (payload + 25).
pub const fn entry_record_size(payload: usize) -> usize {
    8 + 17 + payload
}

/// Appends an entry record with shapebuf's framing (len | crc32c | body) to
/// `out`, so a baseline writes the same bytes the library writes.
pub fn put_entry(out: &mut Vec<u8>, offset: LogOffset, payload: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    out.push(1);
    out.extend_from_slice(&offset.tx.to_le_bytes());
    out.extend_from_slice(&offset.op.to_le_bytes());
    out.extend_from_slice(payload);
    seal(out, start);
}

/// Appends a commit record (entry count + last committed offset).
pub fn put_commit(out: &mut Vec<u8>, committed: u64, last: LogOffset) {
    let start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    out.push(2);
    out.extend_from_slice(&committed.to_le_bytes());
    out.extend_from_slice(&last.tx.to_le_bytes());
    out.extend_from_slice(&last.op.to_le_bytes());
    seal(out, start);
}

fn seal(out: &mut [u8], start: usize) {
    let body_len = (out.len() - start - 8) as u32;
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A temporary directory on tmpfs (`/dev/shm`) when there is one, for
/// benches that must not measure the disk.
pub fn tmpfs_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().expect("create a temporary directory")
}

/// A temporary directory on the disk the system temp dir lives on (for
/// benches that measure write + sync_data).
pub fn disk_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

/// [`RealFs`] with `sync_data` (and directory syncs) turned into no-ops: the
/// "no-sync" variant of the contention bench.
#[derive(Debug, Default)]
pub struct NoSyncFs(RealFs);

#[derive(Debug)]
struct NoSyncFile(Arc<dyn FsFile>);

impl FsFile for NoSyncFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.0.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.0.write_all_at(buf, pos)
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
}

impl Fs for NoSyncFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.0.create_dir_all(dir)
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        Ok(Arc::new(NoSyncFile(self.0.create(path)?)))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        Ok(Arc::new(NoSyncFile(self.0.open(path)?)))
    }
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.0.read_dir(dir)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.0.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename(from, to)
    }
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}

/// A file system that stores nothing: writes are dropped, files are empty.
/// For benches of in-memory paths (registry, append) that must create many
/// shapes without creating files; reads of flushed entries would fail, so
/// only use it where nothing is read back from disk.
#[derive(Debug, Default)]
pub struct NullFs;

#[derive(Debug)]
struct NullFile;

impl FsFile for NullFile {
    fn read_at(&self, _buf: &mut [u8], _pos: u64) -> io::Result<usize> {
        Ok(0)
    }
    fn write_all_at(&self, _buf: &[u8], _pos: u64) -> io::Result<()> {
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
    fn set_len(&self, _len: u64) -> io::Result<()> {
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(0)
    }
}

impl Fs for NullFs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn create(&self, _path: &Path) -> io::Result<Arc<dyn FsFile>> {
        Ok(Arc::new(NullFile))
    }
    fn open(&self, _path: &Path) -> io::Result<Arc<dyn FsFile>> {
        Ok(Arc::new(NullFile))
    }
    fn read_dir(&self, _dir: &Path) -> io::Result<Vec<PathBuf>> {
        Ok(Vec::new())
    }
    fn remove_file(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
    fn rename(&self, _from: &Path, _to: &Path) -> io::Result<()> {
        Ok(())
    }
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}
