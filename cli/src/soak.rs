//! `shapebuf soak`: the buffer table under a realistic, adversarial
//! workload at scale, every read checked against an independent model.
//!
//! # What it proves
//!
//! With `--shapes` shapes (up to a million and more), most of them idle,
//! several writer threads churning a hot set and many reader threads on the
//! same store:
//!
//! - every read of `(after, upto]` — tails and random re-reads of hot
//!   shapes, whole reads of random cold ones, through `Store::read`,
//!   `ShapeHandle::read` and `ShapeHandle::visit` — returns exactly the
//!   committed entries in the range of one incarnation of the shape as of
//!   some instant during the read: no gap, duplicate, reordering, wrong
//!   payload, partial or uncommitted transaction, and never an entry of
//!   another incarnation (a removed shape, or the new shape created with
//!   its id) through a handle (the check is in `model.rs`, the incarnation
//!   bookkeeping in `lanes.rs`);
//! - this holds while writers flush and trim (memory/disk hand-over), while
//!   shapes are terminated and restarted mid-traffic (one at a time, as the
//!   hot set rotates over the whole set, and in whole-fleet "deploys"),
//!   while writers are dropped without terminate (an owner that panicked,
//!   mid-transaction or with committed but unflushed entries) and the next
//!   writer takes over, and while shapes are removed and created again
//!   (same id or a new one) under readers' feet (`traffic.rs`);
//! - a read or wait that finds its shape removed does so only once a
//!   removal of that shape has begun (a *removed read*, counted, not an
//!   error), and the library reports no other error on this valid traffic;
//! - cold shapes come back from disk on first use (the store is reopened
//!   after setup, so every shape starts unread) within the process's
//!   descriptor limit: the store's descriptor cache is sized from
//!   `RLIMIT_NOFILE` (half of it, at most the default 512), and the real
//!   count of open descriptors is sampled from `/proc/self/fd` throughout;
//! - the flush tracker's global durable offset reaches the last commit once
//!   every writer is gone;
//! - a dropped store leaves no descriptor of its directory open
//!   (`leaked_fds`, checked after each of the three stores is dropped);
//! - after every shape is terminated, the store dropped and the directory
//!   reopened, every shape's log equals its model exactly (all of them,
//!   not a sample), ids moved away from are gone, and the store holds the
//!   shapes it should.
//!
//! # Phases
//!
//! 1. *Setup*: every shape gets one committed entry (`lanes::SETUP`),
//!    flushed and terminated, by 32 threads on a store whose flushes run on
//!    the writers' threads (so that 32 syncs overlap); the store is
//!    dropped.
//! 2. *Traffic*, `--seconds` long, on the directory reopened with the soak
//!    settings. Its end is where RSS is read: `rss_per_shape` is the growth
//!    of the process's RSS from just before this store opened (the setup's
//!    memory given back to the system first) to the end of traffic, per
//!    shape: the store's memory for its shapes, plus the soak's models of
//!    the shapes written during traffic.
//! 3. *Verification*: shapes written during traffic are read back through
//!    the running store, then every shape through the reopened one.
//!
//! Counters (dead-buffer fallbacks, trim races, takeovers, removed reads)
//! show that the interesting interleavings were actually hit, not just
//! possible.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use shapebuf::{Config, Error, LogOffset, Store};

use crate::lanes::{seed, shape_id, Lanes, View, SETUP};
use crate::model::payload_ok;
use crate::sys::{self, FdSampler};
use crate::traffic::{get, Soak};

/// Options of `shapebuf soak`.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// How long to run traffic, in seconds (setup and verification come on
    /// top).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// Number of shapes (lanes: a removed shape's lane goes on with the
    /// same id or a new one). Each gets one entry in the setup phase.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    shapes: u32,
    /// Shapes written at any one time (rotating over all of them); at most
    /// `--shapes`.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    hot: u64,
    /// Reader threads (tailing hot shapes, re-reading random ranges, reading
    /// random cold shapes).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(0..1000))]
    readers: u16,
    /// Writer threads (each owns a subset of the shapes).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    writers: u64,
    /// Payload size of every entry, in bytes.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Use this directory (absent or empty; kept afterwards) instead of a
    /// temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Threads creating shapes in the setup phase (their syncs overlap).
const SETUP_THREADS: usize = 32;
/// Threads verifying shapes at the end.
const VERIFY_THREADS: usize = 4;

/// The store settings of the soak: production defaults, except small log
/// files, a dense sparse index and a short tick interval, so that a 20 s
/// run also rolls files over, seeks by index and flushes on ticks; and a
/// descriptor cache that fits the process's limit.
fn config(max_open_files: usize) -> Config {
    Config {
        file_bytes: 1 << 20,
        index_interval: 16 << 10,
        flush_interval: Duration::from_millis(250),
        max_open_files,
        ..Config::default()
    }
}

/// The descriptor cache's size: half of `ulimit -n` (the rest is headroom
/// for stdio, the `LOCK` file, directories being synced and whatever else
/// the process opens), at most the library's default.
pub(crate) fn max_open_files(limit: Option<u64>) -> usize {
    let default = Config::default().max_open_files;
    match limit {
        Some(l) => (usize::try_from(l / 2).unwrap_or(usize::MAX)).clamp(1, default),
        None => default,
    }
}

fn bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}

/// Runs `shapebuf soak`.
pub fn run(opts: &Options) -> ExitCode {
    match soak(opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the soak; Ok(passed) unless it could not even start.
fn soak(opts: &Options) -> Result<bool, String> {
    let mut temp = None;
    let dir: PathBuf = match &opts.dir {
        Some(dir) => {
            let busy = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
            if busy {
                return Err(format!(
                    "{} is not empty; give an empty or new directory",
                    dir.display()
                ));
            }
            dir.clone()
        }
        None => {
            let t =
                tempfile::tempdir().map_err(|e| format!("create a temporary directory: {e}"))?;
            let path = t.path().to_path_buf();
            temp = Some(t);
            path
        }
    };
    let dir = dir.as_path();
    let fds = FdSampler::start();
    let limit = sys::fd_limit();
    let max_files = max_open_files(limit);
    let shapes = opts.shapes as usize;
    let writers = (opts.writers as usize).min(shapes);
    let lanes = Lanes::new(opts.shapes);

    let started = Instant::now();
    setup(dir, &lanes, opts.payload, max_files)?;
    let setup_time = started.elapsed();
    let setup_fds = fds.phase();
    // Every store below is dropped with every thread that used it gone:
    // none may leave a descriptor of the directory open.
    let mut leaked = sys::open_in(dir);

    sys::trim();
    let rss_before = sys::rss();
    let started = Instant::now();
    let store = Store::open_with(dir, config(max_files)).map_err(|e| format!("open store: {e}"))?;
    let open_time = started.elapsed();

    let soak = Soak::new(
        store,
        &lanes,
        writers,
        opts.hot as usize,
        opts.payload,
        bar(
            opts.seconds * 1000,
            "{spinner} {elapsed:>4} [{bar:30}] {msg}",
        ),
    );
    let start = Instant::now();
    let traffic = Duration::from_secs(opts.seconds);
    let mut elapsed = traffic;
    let mut rss_end = None;
    thread::scope(|scope| {
        for w in 0..writers {
            let soak = &soak;
            scope.spawn(move || soak.writer_thread(w, 1000 + w as u64));
        }
        for n in 0..opts.readers {
            let soak = &soak;
            scope.spawn(move || soak.reader_thread(2000 + u64::from(n)));
        }
        while start.elapsed() < traffic {
            thread::sleep(Duration::from_millis(100));
            let s = &soak.stats;
            soak.bar.set_position(start.elapsed().as_millis() as u64);
            let t = soak.store.flush_tracker();
            let lag = t.last_commit().tx.saturating_sub(t.global().tx);
            soak.max_lag.fetch_max(lag, Relaxed);
            soak.bar.set_message(format!(
                "reads {} appends {} terminates {} removes {} wrong {} errors {} files {} fds {}",
                get(&s.reads),
                get(&s.appends),
                get(&s.terminates),
                get(&s.removes),
                get(&s.wrong),
                get(&s.errors),
                soak.store.open_files(),
                fds.max(),
            ));
        }
        elapsed = start.elapsed();
        rss_end = sys::rss();
        soak.stop();
        soak.bar
            .set_message("stopping: terminating every hot shape");
    });
    soak.bar.finish_and_clear();
    let traffic_fds = fds.phase();

    // Every writer has flushed or gone: the global durable offset must have
    // reached the last commit (the tracker's liveness).
    let tracker = soak.store.flush_tracker();
    let (global, last_commit) = (tracker.global(), tracker.last_commit());
    let max_lag = soak.max_lag.load(Relaxed);
    let watermark = if global == last_commit {
        Ok(())
    } else {
        Err(format!(
            "global durable offset {global} stuck behind the last commit {last_commit}"
        ))
    };
    let hot = soak.hot_shapes();
    let peak_files = soak.store.peak_open_files();
    // What an operator would have seen at the end of the traffic.
    let store_stats = soak.store.stats();
    let ghosts = lanes.ghosts();
    let Soak { store, stats, .. } = soak;

    // Every writer is terminated now: the shapes written during traffic,
    // read through the running store, must be exactly their models.
    let started = Instant::now();
    let written = verify(&store, &lanes, opts.payload, true, "written shapes")
        .map_err(|what| format!("before reopen: {what}"));
    drop(store);
    let before = leaked;
    leaked = sys::open_in(dir);
    let (reopen, reopen_peak) = match written {
        Ok(_) => match verify_reopen(dir, &lanes, opts.payload, max_files) {
            Ok((entries, peak)) => (Ok(entries), peak),
            Err(what) => (Err(what), 0),
        },
        Err(what) => (Err(what), 0),
    };
    let leaks = [
        before,
        leaked.saturating_sub(before),
        sys::open_in(dir).saturating_sub(leaked),
    ];
    let leaked: usize = leaks.iter().sum();
    let verify_time = started.elapsed();
    let verify_fds = fds.phase();
    let fds_max = [setup_fds, traffic_fds, verify_fds, peak_files, reopen_peak]
        .into_iter()
        .max()
        .unwrap_or(0);
    drop(fds);

    // Deleting a million files takes a while: on several threads, timed.
    let started = Instant::now();
    if let Some(temp) = temp {
        delete_files(&temp.path().join("shapes"));
        drop(temp);
    }
    let cleanup = started.elapsed();

    let secs = elapsed.as_secs_f64();
    let per_sec = |n: u64| (n as f64 / secs).round() as u64;
    let (errors, wrong) = (get(&stats.errors), get(&stats.wrong));
    let rss_per_shape = match (rss_before, rss_end) {
        (Some(a), Some(b)) => format!("{}B", b.saturating_sub(a) / shapes as u64),
        _ => "unknown".into(),
    };
    let ghosts_ok = ghosts == 0;
    println!(
        "soak: {secs:.1}s, shapes={shapes} ({hot} hot, {} made hot), {writers} writers, {} readers: \
         {} reads ({} of random shapes), {} entries read/s, {} appends/s, {} flushes, \
         {} terminates, {} takeovers, removes={} removed_reads={} ({} waits, {} ended Removed), \
         {} dead-buffer fallbacks, {} trim races, {errors} errors, {wrong} wrong reads; \
         fds_max={fds_max} (setup {setup_fds}, traffic {traffic_fds}, verify {verify_fds}; \
         cache {max_files}, peak {peak_files}; limit {}), leaked_fds={leaked}, rss_per_shape={rss_per_shape}; \
         setup {:.1}s, open {:.2}s, verify {:.1}s{}; durable offset: max lag {max_lag} tx, \
         final {global} = last commit {last_commit}: {}; reopen: {}",
        stats.rotations.load(Relaxed),
        opts.readers,
        get(&stats.reads),
        get(&stats.cold_reads),
        per_sec(get(&stats.entries_read)),
        per_sec(get(&stats.appends)),
        get(&stats.flushes),
        get(&stats.terminates),
        get(&stats.takeovers),
        get(&stats.removes),
        get(&stats.removed_reads),
        get(&stats.waits),
        get(&stats.removed_waits),
        get(&stats.dead),
        get(&stats.raced),
        limit.map_or("none".into(), |l| l.to_string()),
        setup_time.as_secs_f64(),
        open_time.as_secs_f64(),
        verify_time.as_secs_f64(),
        if opts.dir.is_none() {
            format!(", cleanup {:.1}s", cleanup.as_secs_f64())
        } else {
            String::new()
        },
        if watermark.is_ok() { "ok" } else { "STUCK" },
        match &reopen {
            Ok(entries) => format!("ok ({shapes} shapes, {entries} entries exact)"),
            Err(what) => format!("FAILED ({what})"),
        },
    );
    println!("stats: {store_stats}");
    if !ghosts_ok {
        eprintln!("soak: {ghosts} incarnations kept for readers that never came for them");
    }
    if leaked > 0 {
        eprintln!(
            "soak: DESCRIPTOR LEAK: dropped stores left {leaked} descriptors of their directory \
             open for good (setup's store {}, traffic's {}, verification's {}; \
             see tests/store_drop_leaks_descriptors.rs)",
            leaks[0], leaks[1], leaks[2]
        );
    }
    Ok(
        errors == 0
            && wrong == 0
            && reopen.is_ok()
            && watermark.is_ok()
            && ghosts_ok
            && leaked == 0,
    )
}

/// Deletes the files in `dir` on [`SETUP_THREADS`] threads (unlinks in one
/// directory overlap well; one thread takes three times as long), leaving
/// the rest to the caller.
fn delete_files(dir: &Path) {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return;
    };
    let paths: Vec<PathBuf> = listing.filter_map(|e| e.ok().map(|e| e.path())).collect();
    let per = paths.len().div_ceil(SETUP_THREADS).max(1);
    thread::scope(|scope| {
        for part in paths.chunks(per) {
            scope.spawn(move || {
                for path in part {
                    let _ = std::fs::remove_file(path);
                }
            });
        }
    });
}

/// Setup: every lane's first shape, with its one committed entry at
/// [`SETUP`], flushed and terminated.
fn setup(dir: &Path, lanes: &Lanes, payload: usize, max_files: usize) -> Result<(), String> {
    let store = Store::open_with(
        dir,
        Config {
            flush_threads: 0,
            ..config(max_files)
        },
    )
    .map_err(|e| format!("open store for setup: {e}"))?;
    let n = lanes.len();
    let bar = bar(
        n as u64,
        "{spinner} setup {elapsed:>4} [{bar:30}] {pos}/{len} shapes, {per_sec}, eta {eta}",
    );
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<String>> = Mutex::new(None);
    const CHUNK: usize = 256;
    thread::scope(|scope| {
        for _ in 0..SETUP_THREADS.min(n.div_ceil(CHUNK)) {
            scope.spawn(|| loop {
                let start = next.fetch_add(CHUNK, Relaxed);
                if start >= n {
                    return;
                }
                for k in start..(start + CHUNK).min(n) {
                    let k = k as u32;
                    if let Err(e) = create(&store, k, payload) {
                        let mut f = failed.lock().unwrap_or_else(PoisonError::into_inner);
                        f.get_or_insert(format!("create shape #{k}: {e}"));
                        next.store(n, Relaxed);
                        return;
                    }
                }
                bar.inc(CHUNK.min(n - start) as u64);
            });
        }
    });
    bar.finish_and_clear();
    match failed.into_inner().unwrap_or_else(PoisonError::into_inner) {
        Some(e) => Err(format!("setup: {e}")),
        None => Ok(()),
    }
}

/// Creates lane `k`'s first shape: one committed entry, flushed, terminated.
fn create(store: &Store, k: u32, payload: usize) -> shapebuf::Result<()> {
    let mut w = store.writer(shape_id(k))?;
    w.append(SETUP, crate::model::payload(seed(k, 0), SETUP, payload))?;
    w.commit()?;
    w.terminate()?;
    Ok(())
}

/// Checks every lane's shape (only those written during traffic, if
/// `written_only`) against its model, on a few threads. Returns the
/// number of entries verified.
fn verify(
    store: &Store,
    lanes: &Lanes,
    payload: usize,
    written_only: bool,
    what: &str,
) -> Result<u64, String> {
    let n = lanes.len();
    let bar = bar(
        n as u64,
        &format!(
            "{{spinner}} verify {what} {{elapsed:>4}} [{{bar:30}}] {{pos}}/{{len}}, eta {{eta}}"
        ),
    );
    let next = AtomicUsize::new(0);
    let entries = std::sync::atomic::AtomicU64::new(0);
    let failed: Mutex<Option<String>> = Mutex::new(None);
    const CHUNK: usize = 1024;
    thread::scope(|scope| {
        for _ in 0..VERIFY_THREADS {
            scope.spawn(|| loop {
                let start = next.fetch_add(CHUNK, Relaxed);
                if start >= n {
                    return;
                }
                for k in start..(start + CHUNK).min(n) {
                    let seen = lanes.peek(k as u32);
                    if written_only && !matches!(seen.view, View::Live(_)) {
                        continue;
                    }
                    match verify_shape(store, seen.id, seen.gen, &seen.view, payload) {
                        Ok(got) => {
                            entries.fetch_add(got, Relaxed);
                        }
                        Err(e) => {
                            let id = shape_id(seen.id);
                            let mut f = failed.lock().unwrap_or_else(PoisonError::into_inner);
                            f.get_or_insert(format!(
                                "shape #{k} ({}, incarnation {}): {e}",
                                id.escape_ascii(),
                                seen.gen
                            ));
                            next.store(n, Relaxed);
                            return;
                        }
                    }
                }
                bar.inc(CHUNK.min(n - start) as u64);
            });
        }
    });
    bar.finish_and_clear();
    match failed.into_inner().unwrap_or_else(PoisonError::into_inner) {
        Some(e) => Err(e),
        None => Ok(entries.into_inner()),
    }
}

/// Checks that the whole log of incarnation `gen` of id number `id` is
/// exactly `view`, payloads included. An incarnation that committed
/// nothing may be absent (it was never flushed). Returns its entry count.
fn verify_shape(
    store: &Store,
    id: u32,
    gen: u32,
    view: &View,
    payload: usize,
) -> Result<u64, String> {
    let want: Vec<LogOffset> = view.with(|m| m.committed().to_vec());
    let got = match store.read(shape_id(id), LogOffset::ZERO, LogOffset::MAX) {
        Ok(got) => got,
        Err(Error::UnknownShape(_)) if want.is_empty() => return Ok(0),
        Err(e) => return Err(format!("read: {e}")),
    };
    let offsets: Vec<LogOffset> = got.entries.iter().map(|e| e.offset).collect();
    if offsets != want {
        let n = offsets
            .iter()
            .zip(&want)
            .take_while(|(g, w)| g == w)
            .count();
        return Err(format!(
            "log differs from the model at entry #{n}: {} entries, model has {}",
            offsets.len(),
            want.len()
        ));
    }
    let seed = seed(id, gen);
    match got
        .entries
        .iter()
        .find(|e| !payload_ok(seed, e.offset, payload, &e.payload))
    {
        Some(e) => Err(format!("wrong payload at {}", e.offset)),
        None => Ok(want.len() as u64),
    }
}

/// Reopens the directory and checks every shape against its model, that
/// the ids lanes moved away from are gone, and the number of shapes.
/// Returns the entries verified and the store's peak of open files.
fn verify_reopen(
    dir: &Path,
    lanes: &Lanes,
    payload: usize,
    max_files: usize,
) -> Result<(u64, usize), String> {
    let store = Store::open_with(dir, config(max_files)).map_err(|e| format!("reopen: {e}"))?;
    let entries = verify(&store, lanes, payload, false, "all shapes after reopen")?;
    // Ids that no lane holds any more were removed: none may be found.
    let mut current = vec![false; lanes.ids() as usize];
    let (mut nonempty, mut count) = (0, 0);
    for k in 0..lanes.len() {
        let seen = lanes.peek(k as u32);
        current[seen.id as usize] = true;
        count += 1;
        if seen.view.committed_len() > 0 {
            nonempty += 1;
        }
    }
    for (id, held) in current.iter().enumerate() {
        if !held && store.contains(shape_id(id as u32)) {
            return Err(format!(
                "removed id {} is back after reopen",
                shape_id(id as u32).escape_ascii()
            ));
        }
    }
    // Every lane with entries has its shape; one without may have none.
    let on_disk = store.shape_count();
    if on_disk < nonempty || on_disk > count {
        return Err(format!(
            "{on_disk} shapes on disk, expected {nonempty}..={count}"
        ));
    }
    Ok((entries, store.peak_open_files()))
}
