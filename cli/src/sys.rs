//! What the soak measures of its own process: resident memory, open
//! descriptors and their limit (Linux `/proc`; elsewhere the readings are
//! absent and reported as such).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The resident set size (`VmRSS` of `/proc/self/status`), in bytes.
pub fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb << 10)
}

/// The descriptors this process has open now (the entries of
/// `/proc/self/fd`, less the one the listing itself uses).
pub fn open_fds() -> Option<usize> {
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some(n.saturating_sub(1))
}

/// How many descriptors of this process point into `dir` (its files or
/// itself), once background threads had up to a second to let go of them.
pub fn open_in(dir: &Path) -> usize {
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return 0;
    };
    let count = || {
        std::fs::read_dir("/proc/self/fd").map_or(0, |listing| {
            listing
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|target| target.starts_with(&dir))
                .count()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let n = count();
        if n == 0 || Instant::now() >= deadline {
            return n;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The soft limit on open descriptors (`ulimit -n`), if there is one.
pub fn fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a valid pointer to a
    // local and reads nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// Gives the allocator's free memory back to the system (glibc keeps freed
/// memory in its arenas), so that a later RSS reading counts what is in
/// use.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks glibc's own arenas.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// Samples [`open_fds`] every 20 ms on its own thread until dropped,
/// keeping the maximum.
pub struct FdSampler {
    max: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FdSampler {
    pub fn start() -> Self {
        let max = Arc::new(AtomicUsize::new(open_fds().unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (max, stop) = (Arc::clone(&max), Arc::clone(&stop));
            thread::Builder::new()
                .name("soak-fds".into())
                .spawn(move || {
                    while !stop.load(Relaxed) {
                        if let Some(n) = open_fds() {
                            max.fetch_max(n, Relaxed);
                        }
                        thread::sleep(Duration::from_millis(20));
                    }
                })
                .ok()
        };
        FdSampler { max, stop, thread }
    }

    /// The most descriptors seen open at once so far.
    pub fn max(&self) -> usize {
        if let Some(n) = open_fds() {
            self.max.fetch_max(n, Relaxed);
        }
        self.max.load(Relaxed)
    }

    /// The most descriptors seen open at once since the last call (or the
    /// start), starting over from the count now.
    pub fn phase(&self) -> usize {
        let max = self.max();
        self.max.store(open_fds().unwrap_or(0), Relaxed);
        max
    }
}

impl Drop for FdSampler {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
