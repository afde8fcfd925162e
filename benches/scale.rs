//! Scale: a store holding 1,000 / 100,000 / 1,000,000 mostly idle shapes,
//! shapebuf against fjall holding the same logs (`common::fjall_log`: one
//! keyspace, a key per entry, a write batch per transaction, `persist` as
//! the flush). Not a criterion bench (most figures are sizes, counts and
//! one-off latencies): it prints a markdown table and writes
//! `target/criterion/shapebuf/scale/<engine>/<shapes>.json`.
//!
//! Each (engine, size) runs in child processes of this bench, so that RSS
//! deltas are the phase's own and a failure (a panic, `Too many open
//! files`) ends one row, not the run. The parent raises `RLIMIT_NOFILE`'s
//! soft limit to the hard limit first (children inherit it), so that the
//! figures are about the library, not the default limit. Shapes are
//! `shape-0000000`.., each holding one committed 100-byte entry. Stores
//! live on disk (the system temp dir, or `SCALE_DIR`), default configs.
//!
//! 1. **build** child, fresh directory:
//!    - the 1 MiB shape `big` (1,024 entries of 1 KiB, 8 per transaction,
//!      flushed, writer terminated), before the memory baseline;
//!    - per shape: `writer(new id)` (**create**), `append` + `commit`
//!      (**first commit**, timed from before `writer`), `flush` +
//!      `terminate` (**first flush**); percentiles over the last 1,000
//!      shapes created. fjall has no per-shape state: its `writer` builds a
//!      key prefix and its first commit is the shape's first write batch,
//!      so *first commit* is the comparable figure; its flush is
//!      `persist(SyncData)` of the one journal, its terminate a flush;
//!    - **RSS per idle shape**: (RSS after the shapes - RSS before) / shapes,
//!      after the host's idle collection (`Store::collect`; nothing for
//!      fjall), also after `malloc_trim` (glibc's retention excluded), and
//!      **heap per idle shape**, the live heap's growth (a counting global
//!      allocator, as in `benches/memory.rs`: requested bytes, steady where
//!      RSS at 1,000 shapes moves with glibc's arenas by a few hundred bytes
//!      a shape from run to run);
//!      **descriptors** (`/proc/self/fd`) once every shape was written;
//!    - **hot read**: shape `hot` gets 1,000 entries (100 transactions of
//!      10) with its writer live; a read of its last 10 entries through a
//!      handle (`ShapeHandle::read`: owned; fjall: a range scan collected),
//!      ns per read (median of 501 batches of 100 reads), while the N idle
//!      shapes exist;
//!    - close: shapebuf drops the store; fjall persists and drops the
//!      database (fjall does not flush memtables on close: its next open
//!      replays the journal, as a restart does).
//! 2. **reopen** child, the build's directory: **open** time
//!    (`Store::open_with`; `Database::open` + keyspace), descriptors, RSS
//!    and heap per shape after open (fjall's include the memtable its open
//!    rebuilds from the journal: at 1,000 shapes mostly the 1 MiB shape); the **first read after reopen** of `big` (its
//!    whole log, 1 MiB) and of 100 distinct small shapes (p50 and max, each
//!    the first read of its shape; through the store: lookup + read); then
//!    a read of every shape (**touch all**, per shape) and the descriptors
//!    held after it. The page cache is not dropped: "cold" is the store's
//!    state, not the disk's.
//! 3. **live** child (shapebuf only; fjall has no per-shape writer state),
//!    fresh directory: a live `ShapeWriter` per shape, each holding one
//!    committed (unflushed) entry; **RSS and heap per live shape** as above
//!    (the heap figure includes the `ShapeWriter` struct, whose vector is
//!    allocated before the baseline).
//! 4. **flushed** child (shapebuf only), fresh directory: the same, each
//!    writer having flushed its entry (`flush`: its file created, the
//!    segment trimmed); RSS and heap per live flushed shape.
//!
//! Run: `cargo bench --bench scale` (1,000 and 100,000 shapes);
//! `SCALE_SHAPES=1000,100000,1000000 cargo bench --bench scale` for the
//! million. Every flush syncs (shapebuf's terminate too): a flush per shape
//! is an `fdatasync` per shape, and a shared disk's syncs take 0.2 to
//! several ms, so a million shapes take one to several hours;
//! `SCALE_SYNC=0` opens every store without syncs (shapebuf on
//! `common::NoSyncFs`, fjall persisting with `PersistMode::Buffer`) for
//! the memory, descriptor, open and read figures at that size (create and
//! flush latencies then exclude the syncs). `SCALE_DIR=/path` puts the
//! stores elsewhere.
use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;
use std::hint::black_box;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use fjall::PersistMode;
use shapebuf::{Config, LogOffset, ShapeHandle, ShapeWriter, Store};

mod common;
use common::fjall_log::{FjallHandle, FjallStore, FjallWriter};
use common::{heap_bytes, open_fds, rss_after_trim, rss_bytes, Counting, Json, NoSyncFs};

#[global_allocator]
static ALLOC: Counting = Counting;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const DEFAULT_SIZES: &str = "1000,100000";
/// Creates timed at each size: the last this many.
const TIMED: usize = 1000;
const PAYLOAD: usize = 100;
const BIG: &[u8] = b"big";
const BIG_ENTRIES: u64 = 1024;
const BIG_PAYLOAD: usize = 1024;
const BIG_TX: u64 = 8;
const HOT: &[u8] = b"hot";
const HOT_TXS: u64 = 100;
const HOT_TX_ENTRIES: u64 = 10;
/// Distinct small shapes read first after reopening.
const SMALL_READS: usize = 100;

fn shape_id(i: usize) -> String {
    format!("shape-{i:07}")
}

// ------------------------------------------------------------------ engines

/// What the measurements need of a store: shapebuf's API, which
/// `FjallStore` mirrors.
trait Engine: Sized {
    type Writer: LogWriter;
    type Handle: LogHandle;
    /// Opens the store in `dir`; without `sync`, flushes write to the OS
    /// and sync nothing.
    fn open(dir: &Path, sync: bool) -> Res<Self>;
    fn writer(&self, id: &[u8]) -> Res<Self::Writer>;
    fn handle(&self, id: &[u8]) -> Res<Self::Handle>;
    /// Entries of shape `id` in `(after, upto]`: a lookup, then the read.
    fn read(&self, id: &[u8], after: LogOffset, upto: LogOffset) -> Res<usize>;
    /// The host's idle-time housekeeping before memory is measured.
    fn settle(&self);
    /// A clean shutdown.
    fn close(self) -> Res<()>;
}

trait LogWriter {
    fn append(&mut self, offset: LogOffset, payload: Bytes) -> Res<()>;
    fn commit(&mut self) -> Res<()>;
    fn flush(&mut self) -> Res<()>;
    fn terminate(self) -> Res<()>;
}

trait LogHandle {
    /// Entries in `(after, upto]`, owned.
    fn read(&self, after: LogOffset, upto: LogOffset) -> Res<usize>;
}

impl Engine for Store {
    type Writer = ShapeWriter;
    type Handle = ShapeHandle;
    fn open(dir: &Path, sync: bool) -> Res<Self> {
        Ok(if sync {
            Store::open_with(dir, Config::default())?
        } else {
            Store::open_with_fs(dir, Config::default(), Arc::new(NoSyncFs::default()))?
        })
    }
    fn writer(&self, id: &[u8]) -> Res<ShapeWriter> {
        Ok(Store::writer(self, id)?)
    }
    fn handle(&self, id: &[u8]) -> Res<ShapeHandle> {
        Ok(Store::handle(self, id)?)
    }
    fn read(&self, id: &[u8], after: LogOffset, upto: LogOffset) -> Res<usize> {
        let out = Store::read(self, id, after, upto)?;
        Ok(black_box(out.entries).len())
    }
    fn settle(&self) {
        for _ in 0..1000 {
            self.collect();
            if self.retired_bytes() == 0 {
                return;
            }
        }
    }
    fn close(self) -> Res<()> {
        drop(self);
        Ok(())
    }
}

impl LogWriter for ShapeWriter {
    fn append(&mut self, offset: LogOffset, payload: Bytes) -> Res<()> {
        Ok(ShapeWriter::append(self, offset, payload)?)
    }
    fn commit(&mut self) -> Res<()> {
        ShapeWriter::commit(self)?;
        Ok(())
    }
    fn flush(&mut self) -> Res<()> {
        ShapeWriter::flush(self)?;
        Ok(())
    }
    fn terminate(self) -> Res<()> {
        ShapeWriter::terminate(self)?;
        Ok(())
    }
}

impl LogHandle for ShapeHandle {
    fn read(&self, after: LogOffset, upto: LogOffset) -> Res<usize> {
        let out = ShapeHandle::read(self, after, upto)?;
        Ok(black_box(out.entries).len())
    }
}

impl Engine for FjallStore {
    type Writer = FjallWriter;
    type Handle = FjallHandle;
    fn open(dir: &Path, sync: bool) -> Res<Self> {
        let mode = if sync {
            PersistMode::SyncData
        } else {
            PersistMode::Buffer
        };
        Ok(FjallStore::open_with(dir, mode)?)
    }
    fn writer(&self, id: &[u8]) -> Res<FjallWriter> {
        Ok(FjallStore::writer(self, id)?)
    }
    fn handle(&self, id: &[u8]) -> Res<FjallHandle> {
        Ok(FjallStore::handle(self, id)?)
    }
    fn read(&self, id: &[u8], after: LogOffset, upto: LogOffset) -> Res<usize> {
        Ok(black_box(FjallStore::read(self, id, after, upto)?).len())
    }
    fn settle(&self) {}
    fn close(self) -> Res<()> {
        self.flush()?;
        drop(self);
        Ok(())
    }
}

impl LogWriter for FjallWriter {
    fn append(&mut self, offset: LogOffset, payload: Bytes) -> Res<()> {
        Ok(FjallWriter::append(self, offset, payload)?)
    }
    fn commit(&mut self) -> Res<()> {
        Ok(FjallWriter::commit(self)?)
    }
    fn flush(&mut self) -> Res<()> {
        Ok(FjallWriter::flush(self)?)
    }
    fn terminate(self) -> Res<()> {
        Ok(FjallWriter::terminate(self)?)
    }
}

impl LogHandle for FjallHandle {
    fn read(&self, after: LogOffset, upto: LogOffset) -> Res<usize> {
        Ok(black_box(FjallHandle::read(self, after, upto)?).len())
    }
}

// ------------------------------------------------------------------ child

/// Hands one figure to the parent (a line on stdout, at once, so that the
/// figures before a crash survive it).
fn emit(key: &str, value: impl std::fmt::Display) {
    let v = value.to_string().replace(['\n', '\t'], " ");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "@scale {key}\t{v}");
    let _ = out.flush();
}

fn emit_pcts(key: &str, v: &mut [u64]) {
    let p = common::pcts(v);
    emit(&format!("{key}_p50_ns"), p.p50);
    emit(&format!("{key}_p99_ns"), p.p99);
}

/// Progress on stderr, every tenth of `n`.
fn progress(what: &str, i: usize, n: usize, start: Instant) {
    if n >= 10_000 && (i + 1).is_multiple_of(n / 10) {
        eprintln!(
            "  {what}: {} of {n} shapes, {:.1} s",
            i + 1,
            start.elapsed().as_secs_f64()
        );
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn write_big<E: Engine>(store: &E) -> Res<()> {
    let mut w = store.writer(BIG)?;
    for i in 0..BIG_ENTRIES {
        w.append(
            LogOffset::new(i / BIG_TX + 1, i % BIG_TX),
            common::payload(BIG_PAYLOAD, i),
        )?;
        if i % BIG_TX == BIG_TX - 1 {
            w.commit()?;
        }
    }
    w.flush()?;
    w.terminate()
}

/// The time of one `f` in ns: the median over 501 batches of 100 calls
/// (short batches, so that on a loaded machine a preemption spoils a few
/// batches, not the median).
fn ns_per_call(mut f: impl FnMut() -> Res<()>) -> Res<f64> {
    const BATCH: u32 = 100;
    const BATCHES: usize = 501;
    for _ in 0..10 * BATCH {
        f()?;
    }
    let mut batches = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        let t = Instant::now();
        for _ in 0..BATCH {
            f()?;
        }
        batches.push(t.elapsed().as_nanos() as u64 / u64::from(BATCH));
    }
    Ok(common::pcts(&mut batches).p50)
}

/// Memory at a baseline: resident (after `malloc_trim`) and live heap.
struct Mem {
    rss: u64,
    heap: usize,
}

impl Mem {
    fn now() -> Mem {
        let rss = rss_after_trim();
        Mem {
            rss,
            heap: heap_bytes(),
        }
    }

    /// Emits `<what>_rss_per_shape`, `<what>_heap_per_shape` (plus
    /// `extra` bytes per shape allocated before the baseline) and
    /// `<what>_rss_trim_per_shape` (after `malloc_trim`): the growth since
    /// `self` over `n` shapes.
    fn emit_growth(&self, what: &str, n: usize, extra: usize) {
        let per = |now: f64, then: f64| (now - then) / n as f64;
        emit(
            &format!("{what}_rss_per_shape"),
            per(rss_bytes() as f64, self.rss as f64),
        );
        emit(
            &format!("{what}_heap_per_shape"),
            per(heap_bytes() as f64, self.heap as f64) + extra as f64,
        );
        emit(
            &format!("{what}_rss_trim_per_shape"),
            per(rss_after_trim() as f64, self.rss as f64),
        );
    }
}

/// `SCALE_SYNC=0` turns syncs off (inherited by the children).
fn sync() -> bool {
    std::env::var("SCALE_SYNC").map_or(true, |v| v != "0")
}

fn build<E: Engine>(name: &str, n: usize, dir: &Path) -> Res<()> {
    let start = Instant::now();
    let store = E::open(dir, sync())?;
    write_big(&store)?;
    let mut create = Vec::with_capacity(TIMED);
    let mut first_commit = Vec::with_capacity(TIMED);
    let mut first_flush = Vec::with_capacity(TIMED);
    let timed_from = n.saturating_sub(TIMED);
    store.settle();
    let mem = Mem::now();
    let shapes = Instant::now();
    for i in 0..n {
        let id = shape_id(i);
        let one = || -> Res<(u64, u64, u64)> {
            let t0 = Instant::now();
            let mut w = store.writer(id.as_bytes())?;
            let t1 = Instant::now();
            w.append(LogOffset::new(1, 0), common::payload(PAYLOAD, i as u64))?;
            w.commit()?;
            let t2 = Instant::now();
            w.flush()?;
            w.terminate()?;
            let t3 = Instant::now();
            let ns = |a: Instant, b: Instant| (b - a).as_nanos() as u64;
            Ok((ns(t0, t1), ns(t0, t2), ns(t2, t3)))
        };
        let (c, fc, ff) = one().inspect_err(|_| emit("failed_at", i))?;
        if i >= timed_from {
            create.push(c);
            first_commit.push(fc);
            first_flush.push(ff);
        }
        progress(&format!("{name} build"), i, n, shapes);
    }
    emit("build_s", shapes.elapsed().as_secs_f64());
    emit_pcts("create", &mut create);
    emit_pcts("first_commit", &mut first_commit);
    emit_pcts("first_flush", &mut first_flush);
    store.settle();
    mem.emit_growth("idle", n, 0);
    emit("fds_after_build", open_fds());

    let mut hot = store.writer(HOT)?;
    for tx in 1..=HOT_TXS {
        for op in 0..HOT_TX_ENTRIES {
            hot.append(
                LogOffset::new(tx, op),
                common::payload(PAYLOAD, tx * HOT_TX_ENTRIES + op),
            )?;
        }
        hot.commit()?;
    }
    hot.flush()?;
    let handle = store.handle(HOT)?;
    let after = LogOffset::new(HOT_TXS - 1, u64::MAX);
    let hot_ns = ns_per_call(|| {
        let got = handle.read(after, LogOffset::MAX)?;
        if got != HOT_TX_ENTRIES as usize {
            return Err(format!("hot read: {got} entries").into());
        }
        Ok(())
    })?;
    emit("hot_read_ns", hot_ns);
    hot.terminate()?;
    drop(handle);

    let t = Instant::now();
    store.close()?;
    emit("close_ms", ms(t));
    emit("build_child_s", start.elapsed().as_secs_f64());
    Ok(())
}

fn reopen<E: Engine>(name: &str, n: usize, dir: &Path) -> Res<()> {
    let start = Instant::now();
    emit("fds_before_open", open_fds());
    let mem = Mem::now();
    let t = Instant::now();
    let store = E::open(dir, sync())?;
    emit("open_ms", ms(t));
    emit("fds_after_open", open_fds());
    mem.emit_growth("open", n, 0);

    let t = Instant::now();
    let got = store.read(BIG, LogOffset::ZERO, LogOffset::MAX)?;
    emit("big_read_ms", ms(t));
    if got != BIG_ENTRIES as usize {
        return Err(format!("read of {}: {got} entries", "big").into());
    }
    let k = SMALL_READS.min(n);
    let mut small = Vec::with_capacity(k);
    for j in 0..k {
        let id = shape_id(j * n / k);
        let t = Instant::now();
        let got = store.read(id.as_bytes(), LogOffset::ZERO, LogOffset::MAX)?;
        small.push(t.elapsed().as_nanos() as u64);
        if got != 1 {
            return Err(format!("read of {id}: {got} entries").into());
        }
    }
    let p = common::pcts(&mut small);
    emit("small_read_p50_ns", p.p50);
    emit("small_read_max_ns", p.max);

    let t = Instant::now();
    for i in 0..n {
        let id = shape_id(i);
        let got = store
            .read(id.as_bytes(), LogOffset::ZERO, LogOffset::MAX)
            .inspect_err(|_| emit("failed_at", i))?;
        if got != 1 {
            return Err(format!("read of {id}: {got} entries").into());
        }
        progress(&format!("{name} touch"), i, n, t);
    }
    emit(
        "touch_ns_per_shape",
        t.elapsed().as_nanos() as f64 / n as f64,
    );
    emit("fds_after_touch", open_fds());
    emit("reopen_child_s", start.elapsed().as_secs_f64());
    Ok(())
}

/// The live child: a writer per shape holding one committed entry, left
/// in memory or (`flushed`) flushed.
fn live<E: Engine>(name: &str, n: usize, dir: &Path, flushed: bool) -> Res<()> {
    let role = if flushed { "flushed" } else { "live" };
    let start = Instant::now();
    let store = E::open(dir, sync())?;
    let mut writers = Vec::with_capacity(n);
    store.settle();
    let mem = Mem::now();
    let t = Instant::now();
    for i in 0..n {
        let id = shape_id(i);
        let one = || -> Res<E::Writer> {
            let mut w = store.writer(id.as_bytes())?;
            w.append(LogOffset::new(1, 0), common::payload(PAYLOAD, i as u64))?;
            w.commit()?;
            if flushed {
                w.flush()?;
            }
            Ok(w)
        };
        writers.push(one().inspect_err(|_| emit("failed_at", i))?);
        progress(&format!("{name} {role}"), i, n, t);
    }
    store.settle();
    // The writers' vector was allocated before the baseline: its share is
    // the writer struct itself.
    mem.emit_growth(role, n, std::mem::size_of::<E::Writer>());
    emit(&format!("fds_{role}"), open_fds());
    emit(&format!("{role}_child_s"), start.elapsed().as_secs_f64());
    Ok(())
}

const ENV_ROLE: &str = "SCALE_CHILD_ROLE";
const ENV_ENGINE: &str = "SCALE_CHILD_ENGINE";
const ENV_N: &str = "SCALE_CHILD_SHAPES";
const ENV_DIR: &str = "SCALE_CHILD_DIR";

/// The innermost cause of `e` ("Too many open files (os error 24)").
fn root_cause(e: &(dyn Error + 'static)) -> String {
    let mut e = e;
    while let Some(s) = e.source() {
        e = s;
    }
    e.to_string()
}

fn child(role: &str) {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    let engine = var(ENV_ENGINE);
    let n: usize = var(ENV_N).parse().expect("a shape count");
    let dir = PathBuf::from(var(ENV_DIR));
    let r = match (role, engine.as_str()) {
        ("build", "shapebuf") => build::<Store>(&engine, n, &dir),
        ("build", "fjall") => build::<FjallStore>(&engine, n, &dir),
        ("reopen", "shapebuf") => reopen::<Store>(&engine, n, &dir),
        ("reopen", "fjall") => reopen::<FjallStore>(&engine, n, &dir),
        ("live", "shapebuf") => live::<Store>(&engine, n, &dir, false),
        ("flushed", "shapebuf") => live::<Store>(&engine, n, &dir, true),
        other => panic!("unknown child {other:?}"),
    };
    if let Err(e) = r {
        emit("error", &e);
        emit("error_cause", root_cause(&*e));
    }
    // Skips the teardown of up to a million shapes: nothing measures it.
    std::process::exit(0);
}

// ------------------------------------------------------------------ parent

/// Raises the soft descriptor limit to the hard one; returns both.
fn raise_nofile() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable `rlimit` for the call's duration.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(got, 0, "getrlimit: {}", std::io::Error::last_os_error());
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a valid `rlimit`; raising the soft limit up to the
    // hard one needs no privilege.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(set, 0, "setrlimit: {}", std::io::Error::last_os_error());
    (lim.rlim_cur, lim.rlim_max)
}

/// One engine at one size: what its children reported, the failures keyed
/// `<role>_error` / `<role>_cause` / `<role>_failed_at`, a child not run
/// `<role>_skipped`.
type Figures = BTreeMap<String, String>;

fn run_child(role: &str, engine: &str, n: usize, dir: &Path, figs: &mut Figures) -> bool {
    let t = Instant::now();
    eprintln!("{engine}, {n} shapes: {role} ...");
    let out = Command::new(std::env::current_exe().expect("own path"))
        .env(ENV_ROLE, role)
        .env(ENV_ENGINE, engine)
        .env(ENV_N, n.to_string())
        .env(ENV_DIR, dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("start a child");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((k, v)) = line
            .strip_prefix("@scale ")
            .and_then(|l| l.split_once('\t'))
        {
            let k = match k {
                "error" | "error_cause" | "failed_at" => {
                    format!("{role}_{}", k.trim_start_matches("error_"))
                }
                _ => k.to_string(),
            };
            figs.insert(k, v.to_string());
        }
    }
    if !out.status.success() {
        figs.entry(format!("{role}_error"))
            .or_insert_with(|| format!("child exited with {}", out.status));
    }
    let failed = figs.contains_key(&format!("{role}_error"));
    eprintln!(
        "{engine}, {n} shapes: {role} {} in {:.1} s",
        if failed { "FAILED" } else { "done" },
        t.elapsed().as_secs_f64()
    );
    !failed
}

const ENGINES: [&str; 2] = ["shapebuf", "fjall"];

fn measure(engine: &str, n: usize, base: &Path) -> Figures {
    let mut figs = Figures::new();
    let dir = tempfile::tempdir_in(base).expect("a store directory");
    if run_child("build", engine, n, dir.path(), &mut figs) {
        run_child("reopen", engine, n, dir.path(), &mut figs);
    } else {
        figs.insert("reopen_skipped".into(), "the build failed".into());
    }
    drop(dir);
    if engine == "shapebuf" {
        for role in ["live", "flushed"] {
            let dir = tempfile::tempdir_in(base).expect("a store directory");
            run_child(role, engine, n, dir.path(), &mut figs);
        }
    }
    let mut j = Json::default()
        .str("engine", engine)
        .num("shapes", n as f64);
    for (k, v) in &figs {
        j = match v.parse::<f64>() {
            Ok(x) => j.num(k, x),
            Err(_) => j.str(k, v),
        };
    }
    j.write(&format!("scale/{engine}/{n}"));
    figs
}

#[derive(Clone, Copy)]
enum Unit {
    Ns,
    Ms,
    Secs,
    Bytes,
    Count,
}

fn fmt(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Ns if v >= 1e9 => format!("{:.2} s", v / 1e9),
        Unit::Ns if v >= 1e6 => format!("{:.2} ms", v / 1e6),
        Unit::Ns if v >= 1e3 => format!("{:.1} µs", v / 1e3),
        Unit::Ns => format!("{v:.0} ns"),
        Unit::Ms => fmt(v * 1e6, Unit::Ns),
        Unit::Secs => format!("{v:.1} s"),
        Unit::Bytes if v.abs() >= 10_240.0 => format!("{:.1} KiB", v / 1024.0),
        Unit::Bytes => format!("{v:.0} B"),
        Unit::Count => thousands(v as u64),
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The table's rows: label, figure, unit, the child that measures it.
const ROWS: &[(&str, &str, Unit, &str)] = &[
    (
        "create: `writer(new id)` p50",
        "create_p50_ns",
        Unit::Ns,
        "build",
    ),
    (
        "create: `writer(new id)` p99",
        "create_p99_ns",
        Unit::Ns,
        "build",
    ),
    (
        "first commit (`writer` + `append` + `commit`) p50",
        "first_commit_p50_ns",
        Unit::Ns,
        "build",
    ),
    ("first commit p99", "first_commit_p99_ns", Unit::Ns, "build"),
    (
        "first flush (`flush` + `terminate`) p50",
        "first_flush_p50_ns",
        Unit::Ns,
        "build",
    ),
    ("first flush p99", "first_flush_p99_ns", Unit::Ns, "build"),
    (
        "building the idle shapes (all)",
        "build_s",
        Unit::Secs,
        "build",
    ),
    (
        "RSS per idle shape",
        "idle_rss_per_shape",
        Unit::Bytes,
        "build",
    ),
    (
        "RSS per idle shape, after `malloc_trim`",
        "idle_rss_trim_per_shape",
        Unit::Bytes,
        "build",
    ),
    (
        "heap per idle shape (counting allocator)",
        "idle_heap_per_shape",
        Unit::Bytes,
        "build",
    ),
    (
        "RSS per live shape (live writer, 1 entry)",
        "live_rss_per_shape",
        Unit::Bytes,
        "live",
    ),
    (
        "RSS per live shape, after `malloc_trim`",
        "live_rss_trim_per_shape",
        Unit::Bytes,
        "live",
    ),
    (
        "heap per live shape (writer struct included)",
        "live_heap_per_shape",
        Unit::Bytes,
        "live",
    ),
    (
        "RSS per live shape, flushed (live writer, 1 entry on disk)",
        "flushed_rss_per_shape",
        Unit::Bytes,
        "flushed",
    ),
    (
        "heap per live shape, flushed",
        "flushed_heap_per_shape",
        Unit::Bytes,
        "flushed",
    ),
    (
        "descriptors, all shapes written",
        "fds_after_build",
        Unit::Count,
        "build",
    ),
    ("descriptors, live writers", "fds_live", Unit::Count, "live"),
    (
        "descriptors, live flushed writers",
        "fds_flushed",
        Unit::Count,
        "flushed",
    ),
    (
        "hot read, last 10 entries (handle)",
        "hot_read_ns",
        Unit::Ns,
        "build",
    ),
    ("open", "open_ms", Unit::Ms, "reopen"),
    (
        "RSS per shape after open",
        "open_rss_per_shape",
        Unit::Bytes,
        "reopen",
    ),
    (
        "heap per shape after open",
        "open_heap_per_shape",
        Unit::Bytes,
        "reopen",
    ),
    (
        "descriptors after open",
        "fds_after_open",
        Unit::Count,
        "reopen",
    ),
    (
        "first read after open, 1 MiB shape",
        "big_read_ms",
        Unit::Ms,
        "reopen",
    ),
    (
        "first read after open, small shape p50 (100 shapes)",
        "small_read_p50_ns",
        Unit::Ns,
        "reopen",
    ),
    (
        "first read after open, small shape max",
        "small_read_max_ns",
        Unit::Ns,
        "reopen",
    ),
    (
        "read of every shape after open, per shape",
        "touch_ns_per_shape",
        Unit::Ns,
        "reopen",
    ),
    (
        "descriptors after reading every shape",
        "fds_after_touch",
        Unit::Count,
        "reopen",
    ),
];

fn cell(figs: &Figures, engine: &str, key: &str, unit: Unit, role: &str) -> (String, Option<f64>) {
    if let Some(v) = figs.get(key).and_then(|v| v.parse::<f64>().ok()) {
        return (fmt(v, unit), Some(v));
    }
    if (role == "live" || role == "flushed") && engine == "fjall" {
        return ("n/a".into(), None);
    }
    let text = match (
        figs.get(&format!("{role}_cause")),
        figs.get(&format!("{role}_error")),
    ) {
        (Some(c), _) => format!("FAILED: {c}"),
        (None, Some(e)) => format!("FAILED: {e}"),
        (None, None) => match figs.get(&format!("{role}_skipped")) {
            Some(why) => format!("not run: {why}"),
            None => "-".into(),
        },
    };
    (text, None)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => {
            let x = a / b;
            if x >= 100.0 {
                format!("{x:.0}x")
            } else {
                format!("{x:.2}x")
            }
        }
        _ => "-".into(),
    }
}

fn report(results: &[(usize, Vec<Figures>)], nofile: (u64, u64)) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "RLIMIT_NOFILE {} (soft raised to hard); stores on disk, default configs{}.\n",
        nofile.1,
        if sync() {
            ""
        } else {
            ", syncs off (`SCALE_SYNC=0`)"
        }
    );
    s.push_str(
        "| measurement | shapes | shapebuf | fjall | shapebuf / fjall |\n|---|---|---|---|---|\n",
    );
    for &(label, key, unit, role) in ROWS {
        for (n, figs) in results {
            let (a, av) = cell(&figs[0], ENGINES[0], key, unit, role);
            let (b, bv) = cell(&figs[1], ENGINES[1], key, unit, role);
            let _ = writeln!(
                s,
                "| {label} | {} | {a} | {b} | {} |",
                thousands(*n as u64),
                ratio(av, bv)
            );
        }
    }
    // Each engine's hot read at the largest size it was measured at,
    // against the smallest.
    let mut growth = String::new();
    for (e, engine) in ENGINES.iter().enumerate() {
        let hot: Vec<(usize, f64)> = results
            .iter()
            .filter_map(|(n, figs)| Some((*n, figs[e].get("hot_read_ns")?.parse().ok()?)))
            .collect();
        if let (Some(&(n0, a)), Some(&(n1, b))) = (hot.first(), hot.last()) {
            if n1 > n0 {
                let _ = writeln!(
                    growth,
                    "| {engine} | {} / {} | {} |",
                    thousands(n1 as u64),
                    thousands(n0 as u64),
                    ratio(Some(b), Some(a))
                );
            }
        }
    }
    if !growth.is_empty() {
        s.push_str("\n| hot read growth | shapes | ratio |\n|---|---|---|\n");
        s.push_str(&growth);
    }
    let mut notes = String::new();
    for (n, figs) in results {
        for (engine, f) in ENGINES.iter().zip(figs) {
            for role in ["build", "reopen", "live", "flushed"] {
                if let Some(e) = f.get(&format!("{role}_error")) {
                    let at = f
                        .get(&format!("{role}_failed_at"))
                        .map(|i| format!(" at shape {}", thousands(i.parse().unwrap_or(0))))
                        .unwrap_or_default();
                    let _ = writeln!(
                        notes,
                        "- {engine}, {} shapes, {role}{at}: {e}",
                        thousands(*n as u64)
                    );
                }
            }
        }
    }
    if !notes.is_empty() {
        s.push_str("\nFailures:\n\n");
        s.push_str(&notes);
    }
    s
}

fn main() {
    // `cargo bench` passes `--bench` (and any filter); this bench has none.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Ok(role) = std::env::var(ENV_ROLE) {
        return child(&role);
    }
    let nofile = raise_nofile();
    eprintln!("RLIMIT_NOFILE: soft {} (hard {})", nofile.0, nofile.1);
    let sizes: Vec<usize> = std::env::var("SCALE_SHAPES")
        .unwrap_or_else(|_| DEFAULT_SIZES.into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("SCALE_SHAPES: comma-separated counts")
        })
        .collect();
    let base = std::env::var_os("SCALE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let mut results = Vec::new();
    for &n in &sizes {
        let t = Instant::now();
        let figs: Vec<Figures> = ENGINES.iter().map(|e| measure(e, n, &base)).collect();
        eprintln!(
            "{} shapes: {:.1} s (both engines)",
            thousands(n as u64),
            t.elapsed().as_secs_f64()
        );
        results.push((n, figs));
    }
    println!("{}", report(&results, nofile));
}
