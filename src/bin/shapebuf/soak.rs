//! `shapebuf soak`: the buffer table under a realistic, adversarial
//! workload, every read checked against an independent model.
//!
//! # What it proves
//!
//! For the duration of the run, with hundreds of shapes, several writer
//! threads and many reader threads on the same store:
//!
//! - every read of `(after, upto]` — tails and random re-reads, through
//!   `Store::read`, `ShapeHandle::read` and `ShapeHandle::visit` — returns
//!   exactly the committed entries in the range as of some instant during
//!   the read: no gap, duplicate, reordering, wrong payload, partial or
//!   uncommitted transaction (the check is in `model.rs`);
//! - this holds while writers flush and trim (memory/disk hand-over), while
//!   segments grow, while shapes are terminated and restarted mid-traffic
//!   (one at a time and in whole-fleet "deploys": the deploy-restart storm),
//!   and while writers are dropped without terminate (an owner that
//!   panicked, mid-transaction or with committed but unflushed entries) and
//!   the next writer takes over;
//! - the library reports no error on this valid traffic;
//! - after every shape is terminated, the store dropped and the directory
//!   reopened, every shape's log equals the model exactly.
//!
//! Counters (dead-buffer fallbacks, trim races, takeovers) show that the
//! interesting interleavings were actually hit, not just possible.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shapebuf::{Config, Entry, Flushed, LogOffset, ShapeHandle, ShapeWriter, Store};

use crate::model::{payload, payload_ok, Model};

/// Options of `shapebuf soak`.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// How long to run traffic, in seconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// Number of shapes.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    shapes: u64,
    /// Reader threads (tailing shapes and re-reading random ranges).
    #[arg(long, default_value_t = 8)]
    readers: usize,
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

/// Probabilities of the writer's actions, per transaction.
const PANIC_MID_TX: f64 = 0.002;
const TERMINATE: f64 = 0.004;
const PANIC_AFTER_COMMIT: f64 = 0.002;
const EXPLICIT_FLUSH: f64 = 0.04;
/// How often a writer thread ticks all its writers (the host's timer).
const TICK_EVERY: Duration = Duration::from_millis(100);
/// Whole-fleet deploys happen every this many milliseconds per writer thread.
const DEPLOY_EVERY_MS: std::ops::Range<u64> = 1500..4000;
/// In a deploy, the share of writers that "crash" instead of terminating.
const DEPLOY_CRASH: f64 = 0.1;
/// Print at most this many wrong reads and errors in detail.
const MAX_REPORTS: u64 = 20;

/// The store settings of the soak: production defaults, except small log
/// files, a dense sparse index and a short tick interval, so that a 20 s
/// run also rolls files over, seeks by index and flushes on ticks.
fn config() -> Config {
    Config {
        file_bytes: 1 << 20,
        index_interval: 16 << 10,
        flush_interval: Duration::from_millis(250),
        ..Config::default()
    }
}

/// Shape ids are untrusted bytes: some carry `/`, `..`, NUL and non-UTF-8.
fn shape_id(i: usize) -> Vec<u8> {
    let mut id = format!("tenant/../shape-{i}").into_bytes();
    if i.is_multiple_of(3) {
        id.extend_from_slice(&[0, 0xff]);
    }
    id
}

#[derive(Default)]
struct Stats {
    reads: AtomicU64,
    entries_read: AtomicU64,
    appends: AtomicU64,
    flushes: AtomicU64,
    terminates: AtomicU64,
    takeovers: AtomicU64,
    dead: AtomicU64,
    raced: AtomicU64,
    errors: AtomicU64,
    wrong: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Relaxed)
}

/// What every soak thread shares.
struct Soak {
    store: Store,
    ids: Vec<Vec<u8>>,
    models: Vec<Model>,
    payload: usize,
    /// Global transaction numbers: every transaction gets the next one, so
    /// each shape's offsets increase across writers and restarts.
    next_tx: AtomicU64,
    /// Serialises "allocate a transaction number and tell the flush
    /// tracker" so the tracker sees commits in order, as a host's
    /// replication stream would deliver them.
    commit_order: Mutex<()>,
    /// The largest number of transactions the global durable offset
    /// trailed the last commit by, sampled during traffic.
    max_lag: AtomicU64,
    /// Set when traffic should end (a plain flag: the joins synchronize).
    stop: AtomicBool,
    stats: Stats,
    reports: AtomicU64,
    bar: ProgressBar,
}

/// One shape as its writer thread sees it.
struct Owned {
    shape: usize,
    writer: Option<ShapeWriter>,
    /// The last writer was dropped without terminate: the next one takes over.
    abandoned: bool,
    /// What the writer last reported durable (to count flushes).
    flushed: Option<Flushed>,
}

impl Soak {
    fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }

    /// Prints a problem (the first few in detail) and counts it.
    fn report(&self, counter: &AtomicU64, what: String) {
        bump(counter);
        if self.reports.fetch_add(1, Relaxed) < MAX_REPORTS {
            self.bar.suspend(|| eprintln!("soak: {what}"));
        }
    }

    fn error(&self, what: String) {
        self.report(&self.stats.errors, format!("unexpected error: {what}"));
    }

    fn shape_name(&self, shape: usize) -> String {
        format!("#{shape} ({})", self.ids[shape].escape_ascii())
    }

    // ---- writers ----

    fn writer_thread(&self, mut owned: Vec<Owned>, seed: u64) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut next_tick = Instant::now() + TICK_EVERY;
        let mut next_deploy =
            Instant::now() + Duration::from_millis(rng.random_range(DEPLOY_EVERY_MS));
        while !self.stopped() {
            let k = rng.random_range(0..owned.len());
            self.transaction(&mut owned[k], &mut rng);
            if Instant::now() >= next_tick {
                for o in &mut owned {
                    self.tick(o);
                }
                next_tick = Instant::now() + TICK_EVERY;
            }
            if Instant::now() >= next_deploy {
                for o in &mut owned {
                    if let Some(w) = o.writer.take() {
                        if rng.random_bool(DEPLOY_CRASH) {
                            self.crash(o, w);
                        } else {
                            self.terminate(o, w);
                        }
                    }
                }
                next_deploy =
                    Instant::now() + Duration::from_millis(rng.random_range(DEPLOY_EVERY_MS));
            }
        }
        // Wind down: every shape ends terminated, crashed ones taken over
        // first so that what they committed is flushed.
        for o in &mut owned {
            if o.writer.is_none() && o.abandoned {
                o.writer = self.open(o);
            }
            if let Some(w) = o.writer.take() {
                self.terminate(o, w);
            }
        }
    }

    /// The shape's writer, opening a new one (a restart or a takeover) if
    /// it has none.
    fn open(&self, o: &mut Owned) -> Option<ShapeWriter> {
        match self.store.writer(&self.ids[o.shape]) {
            Ok(w) => {
                if std::mem::take(&mut o.abandoned) {
                    bump(&self.stats.takeovers);
                }
                o.flushed = Some(w.flushed());
                Some(w)
            }
            Err(e) => {
                self.error(format!(
                    "open writer of shape {}: {e}",
                    self.shape_name(o.shape)
                ));
                None
            }
        }
    }

    /// One transaction of 1..=8 entries, then maybe a flush, tick,
    /// terminate or crash.
    fn transaction(&self, o: &mut Owned, rng: &mut SmallRng) {
        let Some(mut w) = o.writer.take().or_else(|| self.open(o)) else {
            return;
        };
        let shape = o.shape;
        let n = rng.random_range(1..=8u64);
        let tx = {
            let _order = self
                .commit_order
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let tx = self.next_tx.fetch_add(1, Relaxed) + 1;
            // The host tells the tracker this shape received the
            // transaction; the writer's flushes report durability.
            let end = LogOffset::new(tx, n - 1);
            if let Err(e) = self
                .store
                .flush_tracker()
                .commit(end, [(&self.ids[shape], end)])
            {
                self.error(format!("flush tracker commit {end}: {e}"));
            }
            tx
        };
        let offsets: Vec<LogOffset> = (0..n).map(|op| LogOffset::new(tx, op)).collect();
        for &at in &offsets {
            if let Err(e) = w.append(at, payload(shape, at, self.payload)) {
                self.error(format!(
                    "append {at} to shape {}: {e}",
                    self.shape_name(shape)
                ));
                return self.crash(o, w);
            }
            bump(&self.stats.appends);
            self.note_flush(o, &w);
        }
        if rng.random_bool(PANIC_MID_TX) {
            // The owner panicked mid-transaction: the next writer must
            // discard these entries, and no reader may ever see them.
            return self.crash(o, w);
        }
        let model = &self.models[shape];
        model.begin(&offsets);
        if let Err(e) = w.commit() {
            model.abort();
            self.error(format!(
                "commit tx {tx} of shape {}: {e}",
                self.shape_name(shape)
            ));
            return self.crash(o, w);
        }
        model.commit();
        let r: f64 = rng.random();
        if r < TERMINATE {
            return self.terminate(o, w);
        }
        if r < TERMINATE + PANIC_AFTER_COMMIT {
            // Committed, maybe not flushed: the next writer flushes it.
            return self.crash(o, w);
        }
        if r < TERMINATE + PANIC_AFTER_COMMIT + EXPLICIT_FLUSH {
            if let Err(e) = w.flush() {
                self.error(format!("flush shape {}: {e}", self.shape_name(shape)));
                return self.crash(o, w);
            }
            self.note_flush(o, &w);
        }
        o.writer = Some(w);
        self.tick(o);
    }

    fn tick(&self, o: &mut Owned) {
        let Some(mut w) = o.writer.take() else {
            return;
        };
        match w.tick() {
            Ok(_) => {
                self.note_flush(o, &w);
                o.writer = Some(w);
            }
            Err(e) => {
                self.error(format!("tick shape {}: {e}", self.shape_name(o.shape)));
                self.crash(o, w);
            }
        }
    }

    fn terminate(&self, o: &mut Owned, w: ShapeWriter) {
        match w.terminate() {
            Ok(flushed) => {
                if o.flushed != Some(flushed) {
                    bump(&self.stats.flushes);
                }
                bump(&self.stats.terminates);
            }
            Err(e) => {
                self.error(format!("terminate shape {}: {e}", self.shape_name(o.shape)));
                o.abandoned = true;
            }
        }
    }

    /// Drops the writer without terminate, as a panicking owner would.
    fn crash(&self, o: &mut Owned, w: ShapeWriter) {
        drop(w);
        o.abandoned = true;
    }

    /// Counts a flush if the writer made something new durable.
    fn note_flush(&self, o: &mut Owned, w: &ShapeWriter) {
        let now = Some(w.flushed());
        if o.flushed != now {
            o.flushed = now;
            bump(&self.stats.flushes);
        }
    }

    // ---- readers ----

    fn reader_thread(&self, seed: u64) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut handles: Vec<ShapeHandle> = Vec::with_capacity(self.ids.len());
        for (shape, id) in self.ids.iter().enumerate() {
            match self.store.handle(id) {
                Ok(h) => handles.push(h),
                Err(e) => {
                    return self.error(format!("handle of shape {}: {e}", self.shape_name(shape)))
                }
            }
        }
        // The last offset this reader saw of each shape.
        let mut tails = vec![LogOffset::ZERO; self.ids.len()];
        while !self.stopped() {
            let shape = rng.random_range(0..self.ids.len());
            let (after, upto) = match rng.random_range(0..100) {
                0..70 => (tails[shape], LogOffset::MAX),
                70..99 => self.random_range(shape, &mut rng),
                _ => (LogOffset::ZERO, LogOffset::MAX),
            };
            let via = Via::ALL[rng.random_range(0..Via::ALL.len())];
            let Some(entries) = self.checked_read(shape, &handles[shape], via, after, upto) else {
                continue;
            };
            if after == tails[shape] && upto == LogOffset::MAX {
                if let Some(last) = entries.last() {
                    tails[shape] = last.offset;
                }
            }
        }
    }

    /// A range to re-read, mostly within what was committed, its ends
    /// sometimes on offsets that do not exist and sometimes inverted.
    fn random_range(&self, shape: usize, rng: &mut SmallRng) -> (LogOffset, LogOffset) {
        let model = self.models[shape].read();
        let log = model.committed();
        let a = rng.random_range(0..=log.len());
        let b = (a + rng.random_range(0..=256)).min(log.len());
        let after = if a == 0 {
            LogOffset::ZERO
        } else {
            nudge(log[a - 1], rng)
        };
        let upto = if b == log.len() && rng.random_bool(0.5) {
            LogOffset::MAX
        } else if b == 0 {
            LogOffset::ZERO
        } else {
            nudge(log[b - 1], rng)
        };
        if rng.random_bool(0.01) {
            (upto, after)
        } else {
            (after, upto)
        }
    }

    /// Reads `(after, upto]` of a shape through `via` and checks the answer
    /// against the model. Returns the entries if the read succeeded.
    fn checked_read(
        &self,
        shape: usize,
        handle: &ShapeHandle,
        via: Via,
        after: LogOffset,
        upto: LogOffset,
    ) -> Option<Vec<Entry>> {
        let model = &self.models[shape];
        let lo = model.committed_len();
        let answer = match via {
            Via::Store => self
                .store
                .read(handle.id(), after, upto)
                .map(|r| (r.entries, r.dead, r.raced)),
            Via::Handle => handle
                .read(after, upto)
                .map(|r| (r.entries, r.dead, r.raced)),
            Via::Visit => {
                let mut entries = Vec::new();
                handle
                    .visit(after, upto, |e| entries.push(e.clone()))
                    .map(|v| (entries, v.dead, v.raced))
            }
        };
        let (entries, dead, raced) = match answer {
            Ok(a) => a,
            Err(e) => {
                self.error(format!(
                    "read {} of shape {} via {via:?}: {e}",
                    range(after, upto),
                    self.shape_name(shape)
                ));
                return None;
            }
        };
        bump(&self.stats.reads);
        self.stats
            .entries_read
            .fetch_add(entries.len() as u64, Relaxed);
        if dead {
            bump(&self.stats.dead);
        }
        if raced {
            bump(&self.stats.raced);
        }
        let offsets: Vec<LogOffset> = entries.iter().map(|e| e.offset).collect();
        let verdict = model
            .read()
            .check(lo, after, upto, &offsets)
            .and_then(|()| {
                match entries
                    .iter()
                    .find(|e| !payload_ok(shape, e.offset, self.payload, &e.payload))
                {
                    Some(e) => Err(format!("wrong payload at {}", e.offset)),
                    None => Ok(()),
                }
            });
        if let Err(what) = verdict {
            self.report(
                &self.stats.wrong,
                format!(
                    "WRONG READ of shape {} via {via:?}, range {}, dead={dead} raced={raced}: {what}",
                    self.shape_name(shape),
                    range(after, upto)
                ),
            );
        }
        Some(entries)
    }
}

/// A read range for messages, `MAX` spelled out.
fn range(after: LogOffset, upto: LogOffset) -> String {
    let show = |o: LogOffset| {
        if o == LogOffset::MAX {
            "MAX".to_string()
        } else {
            o.to_string()
        }
    };
    format!("({}, {}]", show(after), show(upto))
}

/// Mostly `o` itself, sometimes an offset just after it that may not exist.
fn nudge(o: LogOffset, rng: &mut SmallRng) -> LogOffset {
    if rng.random_bool(0.25) {
        LogOffset::new(o.tx, o.op + 1)
    } else {
        o
    }
}

/// The read APIs a reader exercises.
#[derive(Clone, Copy, Debug)]
enum Via {
    Store,
    Handle,
    Visit,
}

impl Via {
    const ALL: [Via; 3] = [Via::Store, Via::Handle, Via::Visit];
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
    let temp;
    let dir: &Path = match &opts.dir {
        Some(dir) => {
            let busy = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
            if busy {
                return Err(format!(
                    "{} is not empty; give an empty or new directory",
                    dir.display()
                ));
            }
            dir
        }
        None => {
            temp = tempfile::tempdir().map_err(|e| format!("create a temporary directory: {e}"))?;
            temp.path()
        }
    };
    let shapes = opts.shapes as usize;
    let writers = (opts.writers as usize).min(shapes);
    let store = Store::open_with(dir, config()).map_err(|e| format!("open store: {e}"))?;
    let ids: Vec<Vec<u8>> = (0..shapes).map(shape_id).collect();

    // Every shape exists before traffic starts; shape i belongs to writer
    // thread i % writers.
    let mut owned: Vec<Vec<Owned>> = (0..writers).map(|_| Vec::new()).collect();
    for (shape, id) in ids.iter().enumerate() {
        let w = store
            .writer(id)
            .map_err(|e| format!("create shape {shape}: {e}"))?;
        owned[shape % writers].push(Owned {
            shape,
            flushed: Some(w.flushed()),
            writer: Some(w),
            abandoned: false,
        });
    }

    let bar = ProgressBar::new(opts.seconds * 1000);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:30}] {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let soak = Soak {
        store,
        models: ids.iter().map(|_| Model::default()).collect(),
        ids,
        payload: opts.payload,
        next_tx: AtomicU64::new(0),
        commit_order: Mutex::new(()),
        max_lag: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        stats: Stats::default(),
        reports: AtomicU64::new(0),
        bar,
    };

    let start = Instant::now();
    let traffic = Duration::from_secs(opts.seconds);
    let mut elapsed = traffic;
    thread::scope(|scope| {
        for (n, mine) in owned.into_iter().enumerate() {
            let soak = &soak;
            scope.spawn(move || soak.writer_thread(mine, 1000 + n as u64));
        }
        for n in 0..opts.readers {
            let soak = &soak;
            scope.spawn(move || soak.reader_thread(2000 + n as u64));
        }
        while start.elapsed() < traffic {
            thread::sleep(Duration::from_millis(100));
            let s = &soak.stats;
            soak.bar.set_position(start.elapsed().as_millis() as u64);
            let t = soak.store.flush_tracker();
            let lag = t.last_commit().tx.saturating_sub(t.global().tx);
            soak.max_lag.fetch_max(lag, Relaxed);
            soak.bar.set_message(format!(
                "reads {} appends {} terminates {} wrong {} errors {} retired {} KiB",
                get(&s.reads),
                get(&s.appends),
                get(&s.terminates),
                get(&s.wrong),
                get(&s.errors),
                soak.store.retired_bytes() >> 10,
            ));
        }
        elapsed = start.elapsed();
        soak.stop.store(true, Relaxed);
        soak.bar.set_message("stopping: terminating every writer");
    });
    soak.bar.finish_and_clear();

    // Every writer is terminated now; a full read of each shape must be
    // exactly the model.
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
    let Soak {
        store,
        ids,
        models,
        stats,
        ..
    } = soak;
    let mut final_check = Ok(());
    for (shape, id) in ids.iter().enumerate() {
        let want = models[shape].read();
        if let Err(what) = full_log_equals(&store, id, shape, want.committed(), opts.payload) {
            final_check = Err(format!("before reopen, shape #{shape}: {what}"));
            break;
        }
    }
    drop(store);
    let reopen = final_check.and_then(|()| verify_reopen(dir, &ids, &models, opts.payload));

    let secs = elapsed.as_secs_f64();
    let per_sec = |n: u64| (n as f64 / secs).round() as u64;
    let (errors, wrong) = (get(&stats.errors), get(&stats.wrong));
    println!(
        "soak: {secs:.1}s, {shapes} shapes, {writers} writers, {} readers: {} reads, \
         {} entries read/s, {} appends/s, {} flushes, {} terminates, {} takeovers, \
         {} dead-buffer fallbacks, {} trim races, {errors} errors, {wrong} wrong reads; \
         durable offset: max lag {max_lag} tx, final {global} = last commit {last_commit}: {}; reopen: {}",
        opts.readers,
        get(&stats.reads),
        per_sec(get(&stats.entries_read)),
        per_sec(get(&stats.appends)),
        get(&stats.flushes),
        get(&stats.terminates),
        get(&stats.takeovers),
        get(&stats.dead),
        get(&stats.raced),
        if watermark.is_ok() { "ok" } else { "STUCK" },
        match &reopen {
            Ok(entries) => format!("ok ({entries} entries exact)"),
            Err(what) => format!("FAILED ({what})"),
        },
    );
    Ok(errors == 0 && wrong == 0 && reopen.is_ok() && watermark.is_ok())
}

/// Checks that shape `id`'s whole log is exactly `want`, payloads included.
fn full_log_equals(
    store: &Store,
    id: &[u8],
    shape: usize,
    want: &[LogOffset],
    payload: usize,
) -> Result<(), String> {
    let got = store
        .read(id, LogOffset::ZERO, LogOffset::MAX)
        .map_err(|e| format!("read: {e}"))?;
    let offsets: Vec<LogOffset> = got.entries.iter().map(|e| e.offset).collect();
    if offsets != want {
        let n = offsets.iter().zip(want).take_while(|(g, w)| g == w).count();
        return Err(format!(
            "log differs from the model at entry #{n}: {} entries, model has {}",
            offsets.len(),
            want.len()
        ));
    }
    match got
        .entries
        .iter()
        .find(|e| !payload_ok(shape, e.offset, payload, &e.payload))
    {
        Some(e) => Err(format!("wrong payload at {}", e.offset)),
        None => Ok(()),
    }
}

/// Reopens `dir` and checks every shape's log against the model. Returns
/// the number of entries verified.
fn verify_reopen(
    dir: &Path,
    ids: &[Vec<u8>],
    models: &[Model],
    payload: usize,
) -> Result<u64, String> {
    let store = Store::open_with(dir, config()).map_err(|e| format!("reopen: {e}"))?;
    if store.shape_count() != ids.len() {
        return Err(format!(
            "{} shapes on disk, expected {}",
            store.shape_count(),
            ids.len()
        ));
    }
    let mut entries = 0;
    for (shape, id) in ids.iter().enumerate() {
        let want = models[shape].read();
        full_log_equals(&store, id, shape, want.committed(), payload)
            .map_err(|what| format!("shape #{shape}: {what}"))?;
        entries += want.committed().len() as u64;
    }
    Ok(entries)
}
