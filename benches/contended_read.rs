//! Contended range read: one writer, N readers, shapebuf against the
//! structures an engine author would pick instead.
//!
//! Workload (identical for every structure):
//! - the writer appends 10-entry transactions of 100-byte payloads (a fresh
//!   heap `Bytes` per entry), commits each, and publishes the committed
//!   transaction number in an atomic the readers watch (the host's
//!   notification);
//! - every 64 KiB of records (payload + 25 bytes per entry, shapebuf's
//!   `flush_bytes` accounting) it writes the framed records (shapebuf's
//!   framing, CRC32C included) to its log file and `sync_data`s it — the
//!   "nosync" groups skip the sync;
//! - N readers (1, 2, 4, 8 on a 2-core machine: 4 and 8 oversubscribe) each
//!   read the latest 100 committed entries (the last 10 transactions) in a
//!   loop. Mode `read`/`owned`: the entries are returned as owned
//!   `Vec<Entry>` (a `Bytes` clone, i.e. a shared refcount increment, per
//!   entry); mode `visit`/`borrow`: payload lengths are summed under the
//!   guard or lock without cloning.
//!
//! Structures:
//! - `shapebuf-read`: [`Store::read`] (registry lookup, owned);
//!   `shapebuf-visit`: [`ShapeHandle::visit`] (borrowing). Default config:
//!   the writer flushes and trims its segment every 64 KiB, so reads whose
//!   range starts below the last flush point go to the log on disk.
//! - `floor-read` / `floor-visit`: the same store API with a writer that
//!   never flushes (`flush_bytes = usize::MAX`, fresh store per criterion
//!   sample): every read is served by the segment. The bare segment type is
//!   crate-private; this is the smallest equivalent through the public API
//!   (it still includes the registry lookup for `read` and the handle
//!   indirection for `visit`).
//! - `std-rwlock`, `pl-rwlock`, `std-mutex`: `BTreeMap<LogOffset, Bytes>`
//!   behind `std::sync::RwLock`, `parking_lot::RwLock`, `std::sync::Mutex`;
//!   one write lock per transaction.
//! - `skiplist`: `crossbeam_skiplist::base::SkipList`, one epoch pin per
//!   read and per transaction.
//! - `scc-treeindex`: `scc::TreeIndex`.
//! - `fjall-owned` / `fjall-borrow`: fjall (an LSM key-value store) holding
//!   the log as a storage author would (`common::fjall_log`): a key per
//!   entry, a write batch per transaction, a range scan per read, collected
//!   (`owned`) or visited without collecting (`borrow`; fjall has no
//!   borrowing read: each value is still a reference count or an inline
//!   copy). Its writer persists (`SyncData`, or `Buffer` in the "nosync"
//!   groups) after the transaction that passes each 64 KiB. It keeps every
//!   entry (memtable, then tables on disk), so it needs no trim.
//!
//!   After each flush the baselines drop entries older than the newest
//!   1,024 (splitting the old part off under the lock, freeing it outside).
//!   They have no disk read path: a reader preempted for ~100 transactions
//!   finds its range trimmed and retries at the new head (counted as
//!   `short_read_retries`), where shapebuf reads the trimmed part from disk.
//!
//! Group `packed_read`: `shapebuf-read` (owned), `shapebuf-packed`
//! ([`Store::read_packed`]: the range copied into one buffer during a
//! visit) and `shapebuf-visit`, 4 readers, no syncs.
//!
//! Paced groups (`contended_paced_sync`, `contended_paced_nosync`; 4
//! readers, the targets' count): the writer appends at a fixed
//! [`PACE`] entries per second, which every structure's writer sustains,
//! so the structures are compared at equal bytes written and flushed (the
//! unpaced groups let each writer run flat out, and a faster writer takes
//! more of the 2 cores from its readers).
//!
//! Timing: one criterion iteration = one read by each of the N readers;
//! throughput is entries read per second across readers. Writer figures
//! (entries appended per second while the readers ran, per-transaction
//! latency) and reader latency (every 8th read timed) are written to
//! `target/criterion/shapebuf/contended_<sync|nosync>/<structure>/<N>.json`
//! over all criterion calls, warm-up included.
//!
//! Run: `cargo bench --bench contended_read` (filter e.g.
//! `-- 'contended_sync/.*/4'`). Report: `scripts/bench-report`.
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam_skiplist::base::SkipList;
use shapebuf::{Config, Entry, LogOffset, ShapeHandle, ShapeWriter, Store};

mod common;
use common::fjall_log::{FjallHandle, FjallStore, FjallWriter};
use common::{Json, NoSyncFs};

const PAYLOAD: usize = 100;
const TX_ENTRIES: u64 = 10;
/// Transactions per read: 10 x 10 = 100 entries.
const READ_TXS: u64 = 10;
const READ_ENTRIES: usize = (READ_TXS * TX_ENTRIES) as usize;
const FLUSH_BYTES: usize = 64 << 10;
/// Entries the baselines keep after a flush.
const KEEP: u64 = 1024;
const SHAPE: &str = "contended";
const READERS: [usize; 4] = [1, 2, 4, 8];
/// One reader in this many times its read.
const TIME_EVERY: u64 = 8;
/// The paced groups' append rate, entries per second: well below the
/// slowest structure's unpaced writer with 4 readers (~250,000/s).
const PACE: f64 = 100_000.0;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Owned entries (`Vec<Entry>`, a refcount increment per entry).
    Owned,
    /// Borrowed under the guard or lock.
    Borrow,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Shapebuf,
    /// Shapebuf with a 4 KiB sparse-index interval (a `Config` knob): a
    /// read of a just-trimmed tail scans at most ~4 KiB of log.
    ShapebufIdx4k,
    /// Shapebuf read with [`ShapeHandle::read_packed`] (one buffer per
    /// read) in mode `Owned` (group `packed_read`).
    ShapebufPacked,
    Floor,
    StdRwLock,
    PlRwLock,
    StdMutex,
    SkipList,
    TreeIndex,
    Fjall,
}

impl Kind {
    fn name(self, mode: Mode) -> &'static str {
        match (self, mode) {
            (Kind::Shapebuf, Mode::Owned) => "shapebuf-read",
            (Kind::Shapebuf, Mode::Borrow) => "shapebuf-visit",
            (Kind::ShapebufIdx4k, Mode::Owned) => "shapebuf-idx4k-read",
            (Kind::ShapebufIdx4k, Mode::Borrow) => "shapebuf-idx4k-visit",
            (Kind::ShapebufPacked, Mode::Owned) => "shapebuf-packed",
            (Kind::ShapebufPacked, Mode::Borrow) => "shapebuf-packed-visit",
            (Kind::Floor, Mode::Owned) => "floor-read",
            (Kind::Floor, Mode::Borrow) => "floor-visit",
            (Kind::StdRwLock, Mode::Owned) => "std-rwlock-owned",
            (Kind::StdRwLock, Mode::Borrow) => "std-rwlock-borrow",
            (Kind::PlRwLock, Mode::Owned) => "pl-rwlock-owned",
            (Kind::PlRwLock, Mode::Borrow) => "pl-rwlock-borrow",
            (Kind::StdMutex, Mode::Owned) => "std-mutex-owned",
            (Kind::StdMutex, Mode::Borrow) => "std-mutex-borrow",
            (Kind::SkipList, Mode::Owned) => "skiplist-owned",
            (Kind::SkipList, Mode::Borrow) => "skiplist-borrow",
            (Kind::TreeIndex, Mode::Owned) => "scc-treeindex-owned",
            (Kind::TreeIndex, Mode::Borrow) => "scc-treeindex-borrow",
            (Kind::Fjall, Mode::Owned) => "fjall-owned",
            (Kind::Fjall, Mode::Borrow) => "fjall-borrow",
        }
    }
}

/// What one read saw.
struct Seen {
    entries: usize,
    bytes: usize,
    from_disk: bool,
}

trait Reader: Sync {
    /// Reads the committed entries with offsets in `(after, upto]`.
    fn read(&self, after: LogOffset, upto: LogOffset, mode: Mode) -> Seen;

    /// Whether entries leave memory with no disk path to read them from
    /// (the baselines' trim).
    fn trims(&self) -> bool {
        false
    }
}

trait Writer: Send {
    /// Appends and commits transaction `tx` (flushing where shapebuf would).
    fn write_tx(&mut self, tx: u64, payloads: Vec<Bytes>);
}

// ---------------------------------------------------------------- shapebuf

struct SbReader {
    store: Store,
    handle: ShapeHandle,
    /// `Owned` reads are packed reads (one buffer, no refcount per entry).
    packed: bool,
}

impl Reader for SbReader {
    fn read(&self, after: LogOffset, upto: LogOffset, mode: Mode) -> Seen {
        match mode {
            Mode::Owned if self.packed => {
                let out = self
                    .handle
                    .read_packed(after, upto, usize::MAX)
                    .expect("read_packed");
                Seen {
                    entries: out.len(),
                    bytes: out.data.len(),
                    from_disk: out.from_disk > 0,
                }
            }
            Mode::Owned => {
                let out = self.store.read(SHAPE, after, upto).expect("read");
                Seen {
                    entries: out.entries.len(),
                    bytes: out.entries.iter().map(|e| e.payload.len()).sum(),
                    from_disk: out.from_disk > 0,
                }
            }
            Mode::Borrow => {
                let mut bytes = 0;
                let out = self
                    .handle
                    .visit(after, upto, |e| bytes += e.payload.len())
                    .expect("visit");
                Seen {
                    entries: out.visited,
                    bytes,
                    from_disk: out.from_disk > 0,
                }
            }
        }
    }
}

struct SbWriter(ShapeWriter);

impl Writer for SbWriter {
    fn write_tx(&mut self, tx: u64, payloads: Vec<Bytes>) {
        for (op, p) in (0u64..).zip(payloads) {
            self.0.append(LogOffset::new(tx, op), p).expect("append");
        }
        self.0.commit().expect("commit");
    }
}

// ---------------------------------------------------------------- fjall

impl Reader for FjallHandle {
    fn read(&self, after: LogOffset, upto: LogOffset, mode: Mode) -> Seen {
        match mode {
            Mode::Owned => {
                let v = FjallHandle::read(self, after, upto).expect("read");
                Seen {
                    entries: v.len(),
                    bytes: v.iter().map(|e| e.payload.len()).sum(),
                    from_disk: false,
                }
            }
            Mode::Borrow => {
                let mut bytes = 0;
                let entries = self
                    .visit(after, upto, |_, p| bytes += p.len())
                    .expect("visit");
                Seen {
                    entries,
                    bytes,
                    from_disk: false,
                }
            }
        }
    }
}

/// fjall's writer, persisting after the transaction that passes each
/// [`FLUSH_BYTES`] (counted as shapebuf counts them).
struct FjallTxWriter {
    w: FjallWriter,
    pending: usize,
}

impl Writer for FjallTxWriter {
    fn write_tx(&mut self, tx: u64, payloads: Vec<Bytes>) {
        for (op, p) in (0u64..).zip(payloads) {
            self.pending += p.len() + 25;
            self.w.append(LogOffset::new(tx, op), p).expect("append");
        }
        self.w.commit().expect("commit");
        if self.pending >= FLUSH_BYTES {
            self.w.flush().expect("flush");
            self.pending = 0;
        }
    }
}

// ---------------------------------------------------------------- baselines

type Map = BTreeMap<LogOffset, Bytes>;

/// An ordered in-memory table a baseline writer fills and trims.
trait Table: Send + Sync + 'static {
    fn insert_tx(&self, entries: Vec<(LogOffset, Bytes)>);
    /// Drops entries with offsets below `cut`.
    fn trim_below(&self, cut: LogOffset);
    fn read(&self, after: LogOffset, upto: LogOffset, mode: Mode) -> Seen;
}

fn bounds(after: LogOffset, upto: LogOffset) -> (Bound<LogOffset>, Bound<LogOffset>) {
    (Bound::Excluded(after), Bound::Included(upto))
}

/// What a borrowing read saw, from its payloads' lengths.
fn seen_lens(lens: impl Iterator<Item = usize>) -> Seen {
    let mut seen = Seen {
        entries: 0,
        bytes: 0,
        from_disk: false,
    };
    for len in lens {
        seen.entries += 1;
        seen.bytes += len;
    }
    seen
}

fn read_map(map: &Map, after: LogOffset, upto: LogOffset) -> Seen {
    seen_lens(map.range(bounds(after, upto)).map(|(_, v)| v.len()))
}

fn clone_map(map: &Map, after: LogOffset, upto: LogOffset) -> Vec<Entry> {
    map.range(bounds(after, upto))
        .map(|(k, v)| Entry {
            offset: *k,
            payload: v.clone(),
        })
        .collect()
}

fn seen_owned(v: &[Entry]) -> Seen {
    Seen {
        entries: v.len(),
        bytes: v.iter().map(|e| e.payload.len()).sum(),
        from_disk: false,
    }
}

macro_rules! locked_table {
    ($name:ident, $lock:ty, $new:expr, $read:ident, $write:ident) => {
        struct $name($lock);

        impl Table for $name {
            fn insert_tx(&self, entries: Vec<(LogOffset, Bytes)>) {
                let mut m = $write(&self.0);
                for (k, v) in entries {
                    m.insert(k, v);
                }
            }
            fn trim_below(&self, cut: LogOffset) {
                let old = {
                    let mut m = $write(&self.0);
                    let keep = m.split_off(&cut);
                    std::mem::replace(&mut *m, keep)
                };
                drop(old);
            }
            fn read(&self, after: LogOffset, upto: LogOffset, mode: Mode) -> Seen {
                match mode {
                    Mode::Borrow => read_map(&$read(&self.0), after, upto),
                    Mode::Owned => {
                        let v = clone_map(&$read(&self.0), after, upto);
                        seen_owned(&v)
                    }
                }
            }
        }

        impl $name {
            fn new() -> Self {
                $name($new)
            }
        }
    };
}

fn std_read(l: &std::sync::RwLock<Map>) -> std::sync::RwLockReadGuard<'_, Map> {
    l.read().expect("lock")
}
fn std_write(l: &std::sync::RwLock<Map>) -> std::sync::RwLockWriteGuard<'_, Map> {
    l.write().expect("lock")
}
fn pl_read(l: &parking_lot::RwLock<Map>) -> parking_lot::RwLockReadGuard<'_, Map> {
    l.read()
}
fn pl_write(l: &parking_lot::RwLock<Map>) -> parking_lot::RwLockWriteGuard<'_, Map> {
    l.write()
}
fn mutex_lock(l: &std::sync::Mutex<Map>) -> std::sync::MutexGuard<'_, Map> {
    l.lock().expect("lock")
}

locked_table!(
    StdRw,
    std::sync::RwLock<Map>,
    std::sync::RwLock::new(Map::new()),
    std_read,
    std_write
);
locked_table!(
    PlRw,
    parking_lot::RwLock<Map>,
    parking_lot::RwLock::new(Map::new()),
    pl_read,
    pl_write
);
locked_table!(
    StdMutex,
    std::sync::Mutex<Map>,
    std::sync::Mutex::new(Map::new()),
    mutex_lock,
    mutex_lock
);

/// crossbeam-skiplist's raw structure: one pin per read, one per
/// transaction; readers bound their range by the published head, so
/// entries of a transaction being inserted are never read.
struct Skip(SkipList<LogOffset, Bytes>);

impl Table for Skip {
    fn insert_tx(&self, entries: Vec<(LogOffset, Bytes)>) {
        let guard = crossbeam_epoch::pin();
        for (k, v) in entries {
            self.0.insert(k, v, &guard).release(&guard);
        }
    }
    fn trim_below(&self, cut: LogOffset) {
        let guard = crossbeam_epoch::pin();
        while let Some(front) = self.0.front(&guard) {
            if *front.key() >= cut {
                break;
            }
            if let Some(e) = self.0.remove(front.key(), &guard) {
                e.release(&guard);
            }
        }
    }
    fn read(&self, after: LogOffset, upto: LogOffset, mode: Mode) -> Seen {
        let guard = crossbeam_epoch::pin();
        let range = self.0.range(bounds(after, upto), &guard);
        match mode {
            Mode::Borrow => seen_lens(range.map(|e| e.value().len())),
            Mode::Owned => {
                let v: Vec<Entry> = range
                    .map(|e| Entry {
                        offset: *e.key(),
                        payload: e.value().clone(),
                    })
                    .collect();
                drop(guard);
                seen_owned(&v)
            }
        }
    }
}

struct Tree(scc::TreeIndex<LogOffset, Bytes>);

impl Table for Tree {
    fn insert_tx(&self, entries: Vec<(LogOffset, Bytes)>) {
        for (k, v) in entries {
            let _ = self.0.insert(k, v);
        }
    }
    fn trim_below(&self, cut: LogOffset) {
        self.0.remove_range(..cut);
    }
    fn read(&self, after: LogOffset, upto: LogOffset, mode: Mode) -> Seen {
        let guard = scc::ebr::Guard::new();
        let range = self.0.range(bounds(after, upto), &guard);
        match mode {
            Mode::Borrow => seen_lens(range.map(|(_, v)| v.len())),
            Mode::Owned => {
                let v: Vec<Entry> = range
                    .map(|(k, v)| Entry {
                        offset: *k,
                        payload: v.clone(),
                    })
                    .collect();
                drop(guard);
                seen_owned(&v)
            }
        }
    }
}

impl<T: Table> Reader for Arc<T> {
    fn read(&self, after: LogOffset, upto: LogOffset, mode: Mode) -> Seen {
        Table::read(&**self, after, upto, mode)
    }

    fn trims(&self) -> bool {
        true
    }
}

/// A baseline writer: serialises each entry with shapebuf's framing,
/// flushes (write_all + optional sync_data) at the same points as
/// shapebuf's writer, then trims its table to the newest [`KEEP`] entries.
struct BaseWriter<T: Table> {
    table: Arc<T>,
    file: File,
    sync: bool,
    buf: Vec<u8>,
    pending: usize,
    entries: u64,
    committed: u64,
    flushed_committed: u64,
    last_committed: LogOffset,
}

impl<T: Table> BaseWriter<T> {
    fn flush(&mut self, tx: u64) {
        if self.committed > self.flushed_committed {
            common::put_commit(&mut self.buf, self.committed, self.last_committed);
            self.flushed_committed = self.committed;
        }
        self.file.write_all(&self.buf).expect("write");
        if self.sync {
            self.file.sync_data().expect("sync");
        }
        self.buf.clear();
        self.pending = 0;
        self.table
            .trim_below(LogOffset::new(tx.saturating_sub(KEEP / TX_ENTRIES), 0));
    }
}

impl<T: Table> Writer for BaseWriter<T> {
    fn write_tx(&mut self, tx: u64, payloads: Vec<Bytes>) {
        let mut batch = Vec::with_capacity(payloads.len());
        let mut last = LogOffset::ZERO;
        for (op, p) in (0u64..).zip(payloads) {
            let off = LogOffset::new(tx, op);
            common::put_entry(&mut self.buf, off, &p);
            self.pending += p.len() + 25;
            self.entries += 1;
            if self.pending >= FLUSH_BYTES {
                self.flush(tx);
            }
            batch.push((off, p));
            last = off;
        }
        self.table.insert_tx(batch);
        self.committed = self.entries;
        self.last_committed = last;
    }
}

// ---------------------------------------------------------------- fixture

struct Fixture {
    reader: Box<dyn Reader>,
    writer: Box<dyn Writer>,
    /// The next transaction number.
    next_tx: u64,
    /// The last committed transaction (what readers read up to).
    head: AtomicU64,
    _dir: tempfile::TempDir,
}

fn payloads(tx: u64) -> Vec<Bytes> {
    (0..TX_ENTRIES)
        .map(|op| common::payload(PAYLOAD, tx * TX_ENTRIES + op))
        .collect()
}

fn baseline<T: Table>(
    table: T,
    dir: tempfile::TempDir,
    sync: bool,
) -> (Box<dyn Reader>, Box<dyn Writer>, tempfile::TempDir) {
    let table = Arc::new(table);
    let file = File::create(dir.path().join("baseline.log")).expect("create log");
    let w = BaseWriter {
        table: Arc::clone(&table),
        file,
        sync,
        buf: Vec::with_capacity(FLUSH_BYTES * 2),
        pending: 0,
        entries: 0,
        committed: 0,
        flushed_committed: 0,
        last_committed: LogOffset::ZERO,
    };
    (Box::new(table), Box::new(w), dir)
}

fn fixture(kind: Kind, sync: bool) -> Fixture {
    let (reader, writer, dir): (Box<dyn Reader>, Box<dyn Writer>, _) = match kind {
        Kind::Shapebuf | Kind::ShapebufIdx4k | Kind::ShapebufPacked | Kind::Floor => {
            let (dir, config) = match kind {
                Kind::Floor => (
                    common::tmpfs_dir(),
                    Config {
                        flush_bytes: usize::MAX,
                        ..Config::default()
                    },
                ),
                Kind::ShapebufIdx4k => (
                    common::disk_dir(),
                    Config {
                        index_interval: 4 << 10,
                        ..Config::default()
                    },
                ),
                _ => (common::disk_dir(), Config::default()),
            };
            let store = if sync {
                Store::open_with(dir.path(), config)
            } else {
                Store::open_with_fs(dir.path(), config, Arc::new(NoSyncFs::default()))
            }
            .expect("open store");
            let w = store.writer(SHAPE).expect("writer");
            let handle = store.handle(SHAPE).expect("handle");
            (
                Box::new(SbReader {
                    store,
                    handle,
                    packed: matches!(kind, Kind::ShapebufPacked),
                }),
                Box::new(SbWriter(w)),
                dir,
            )
        }
        Kind::StdRwLock => baseline(StdRw::new(), common::disk_dir(), sync),
        Kind::PlRwLock => baseline(PlRw::new(), common::disk_dir(), sync),
        Kind::StdMutex => baseline(StdMutex::new(), common::disk_dir(), sync),
        Kind::SkipList => baseline(
            Skip(SkipList::new(crossbeam_epoch::default_collector().clone())),
            common::disk_dir(),
            sync,
        ),
        Kind::TreeIndex => baseline(Tree(scc::TreeIndex::new()), common::disk_dir(), sync),
        Kind::Fjall => {
            let dir = common::disk_dir();
            let mode = if sync {
                fjall::PersistMode::SyncData
            } else {
                fjall::PersistMode::Buffer
            };
            let store = FjallStore::open_with(dir.path(), mode).expect("open fjall");
            let w = store.writer(SHAPE).expect("writer");
            let handle = store.handle(SHAPE).expect("handle");
            (
                Box::new(handle),
                Box::new(FjallTxWriter { w, pending: 0 }),
                dir,
            )
        }
    };
    let mut fx = Fixture {
        reader,
        writer,
        next_tx: 1,
        head: AtomicU64::new(0),
        _dir: dir,
    };
    // Enough committed transactions for the first read.
    while fx.next_tx <= 2 * READ_TXS {
        let tx = fx.next_tx;
        fx.writer.write_tx(tx, payloads(tx));
        fx.head.store(tx, Ordering::Release);
        fx.next_tx += 1;
    }
    fx
}

// ---------------------------------------------------------------- running

/// What the runs of one benchmark id saw, over all its criterion calls.
#[derive(Default)]
struct Acc {
    read_lat: Vec<u64>,
    tx_lat: Vec<u64>,
    appended: u64,
    writer_time: Duration,
    reads: u64,
    disk_reads: u64,
    short_reads: u64,
    wall: Duration,
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One criterion call: `iters` reads by each of `readers` threads while the
/// writer writes (flat out, or at `pace` entries per second). Returns the
/// wall time of the readers.
fn run(
    fx: &mut Fixture,
    readers: usize,
    mode: Mode,
    pace: Option<f64>,
    iters: u64,
    acc: &mut Acc,
) -> Duration {
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(readers + 2);
    let Fixture {
        reader,
        writer,
        next_tx,
        head,
        ..
    } = fx;
    let trims = reader.trims();
    let reader: &dyn Reader = &**reader;
    let head: &AtomicU64 = head;
    std::thread::scope(|s| {
        // Stops the writer however this scope ends (a reader's panic too),
        // so that the scope's final join cannot wait for it forever.
        let _stop = StopOnDrop(&stop);
        let w = s.spawn(|| {
            let mut lat = Vec::new();
            let mut tx = *next_tx;
            barrier.wait();
            let start = Instant::now();
            let mut appended = 0;
            // Acquire is not needed: `stop` carries no data.
            while !stop.load(Ordering::Relaxed) {
                let p = payloads(tx);
                let t = Instant::now();
                writer.write_tx(tx, p);
                lat.push(t.elapsed().as_nanos() as u64);
                // Release: the readers' Acquire load of `head` must see the
                // committed transaction in the structure.
                head.store(tx, Ordering::Release);
                appended += TX_ENTRIES;
                tx += 1;
                if let Some(rate) = pace {
                    // Sleeps only while ahead of the schedule, so that an
                    // oversleep is caught up and the mean rate is `rate`.
                    let due = start + Duration::from_secs_f64(appended as f64 / rate);
                    if let Some(ahead) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(ahead);
                    }
                }
            }
            *next_tx = tx;
            (lat, appended, start.elapsed())
        });
        let rs: Vec<_> = (0..readers)
            .map(|_| {
                s.spawn(|| {
                    let mut lat = Vec::with_capacity((iters / TIME_EVERY + 1) as usize);
                    let mut disk = 0u64;
                    let mut short = 0u64;
                    let mut bytes = 0usize;
                    barrier.wait();
                    for i in 0..iters {
                        let t = (i % TIME_EVERY == 0).then(Instant::now);
                        let seen = loop {
                            // Acquire: pairs with the writer's Release store.
                            let c = head.load(Ordering::Acquire);
                            let after = LogOffset::new(c - READ_TXS, u64::MAX);
                            let upto = LogOffset::new(c, u64::MAX);
                            let seen = reader.read(after, upto, mode);
                            if seen.entries == READ_ENTRIES || !trims {
                                break seen;
                            }
                            // A baseline reader preempted for more than
                            // ~100 transactions finds its range trimmed
                            // (it has no disk path): retry at the new head.
                            short += 1;
                        };
                        if let Some(t) = t {
                            lat.push(t.elapsed().as_nanos() as u64);
                        }
                        assert_eq!(
                            seen.entries, READ_ENTRIES,
                            "a read of the latest 10 transactions"
                        );
                        bytes += seen.bytes;
                        disk += u64::from(seen.from_disk);
                    }
                    std::hint::black_box(bytes);
                    (lat, disk, short)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for r in rs {
            let (lat, disk, short) = r.join().expect("reader");
            acc.read_lat.extend(lat);
            acc.disk_reads += disk;
            acc.short_reads += short;
        }
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        let (lat, appended, wtime) = w.join().expect("writer");
        acc.tx_lat.extend(lat);
        acc.appended += appended;
        acc.writer_time += wtime;
        acc.reads += iters * readers as u64;
        acc.wall += elapsed;
        elapsed
    })
}

fn summary(group: &str, name: &str, readers: usize, mut acc: Acc) {
    let secs = acc.writer_time.as_secs_f64();
    let read = common::pcts(&mut acc.read_lat);
    let tx = common::pcts(&mut acc.tx_lat);
    Json::default()
        .str("structure", name)
        .num("readers", readers as f64)
        .num("append_entries_per_s", acc.appended as f64 / secs)
        .num("reads", acc.reads as f64)
        .num(
            "read_entries_per_s_overall",
            (acc.reads as f64 * READ_ENTRIES as f64) / acc.wall.as_secs_f64(),
        )
        .num(
            "disk_read_fraction",
            acc.disk_reads as f64 / acc.reads.max(1) as f64,
        )
        .num("short_read_retries", acc.short_reads as f64)
        .pcts("read", &read)
        .pcts("tx", &tx)
        .write(&format!("{group}/{name}/{readers}"));
}

fn bench_group(c: &mut Criterion, sync: bool, pace: Option<f64>) {
    let group_name = match (sync, pace.is_some()) {
        (true, false) => "contended_sync",
        (false, false) => "contended_nosync",
        (true, true) => "contended_paced_sync",
        (false, true) => "contended_paced_nosync",
    };
    let mut group = c.benchmark_group(group_name);
    let kinds: &[Kind] = if pace.is_some() {
        &[
            Kind::Shapebuf,
            Kind::Floor,
            Kind::StdRwLock,
            Kind::PlRwLock,
            Kind::SkipList,
            Kind::Fjall,
        ]
    } else if sync {
        &[
            Kind::Shapebuf,
            Kind::Floor,
            Kind::StdRwLock,
            Kind::PlRwLock,
            Kind::StdMutex,
            Kind::SkipList,
            Kind::TreeIndex,
            Kind::Fjall,
        ]
    } else {
        // The floor never flushes: it is the same in both groups.
        &[
            Kind::Shapebuf,
            Kind::StdRwLock,
            Kind::PlRwLock,
            Kind::StdMutex,
            Kind::SkipList,
            Kind::TreeIndex,
            Kind::Fjall,
        ]
    };
    let readers: &[usize] = if pace.is_some() { &[4] } else { &READERS };
    for &n in readers {
        group.throughput(Throughput::Elements((n * READ_ENTRIES) as u64));
        // The dense-index diagnostic runs at the target's reader count only.
        let extra: &[Kind] = if n == 4 && pace.is_none() {
            &[Kind::ShapebufIdx4k]
        } else {
            &[]
        };
        for &kind in kinds.iter().chain(extra) {
            for mode in [Mode::Owned, Mode::Borrow] {
                let name = kind.name(mode);
                let mut acc = Acc::default();
                let mut fx = None;
                group.bench_function(BenchmarkId::new(name, n), |b| {
                    b.iter_custom(|iters| {
                        if matches!(kind, Kind::Floor) {
                            // A fresh never-flushing store per call bounds
                            // its memory.
                            let mut f = fixture(kind, sync);
                            run(&mut f, n, mode, pace, iters, &mut acc)
                        } else {
                            let f = fx.get_or_insert_with(|| fixture(kind, sync));
                            run(f, n, mode, pace, iters, &mut acc)
                        }
                    })
                });
                drop(fx);
                if acc.reads > 0 {
                    summary(group_name, name, n, acc);
                }
            }
        }
    }
    group.finish();
}

/// The same reads with no writer and no other reader: the per-read cost of
/// each structure without contention (the decomposition of the contended
/// figures). 200 committed entries, nothing flushed; one iteration = one
/// read of the latest 100.
fn read_uncontended(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_uncontended");
    group.throughput(Throughput::Elements(READ_ENTRIES as u64));
    let kinds = [
        Kind::Shapebuf,
        Kind::ShapebufPacked,
        Kind::StdRwLock,
        Kind::PlRwLock,
        Kind::StdMutex,
        Kind::SkipList,
        Kind::TreeIndex,
        Kind::Fjall,
    ];
    for kind in kinds {
        for mode in [Mode::Owned, Mode::Borrow] {
            let fx = fixture(kind, false);
            let c = fx.next_tx - 1;
            let after = LogOffset::new(c - READ_TXS, u64::MAX);
            let upto = LogOffset::new(c, u64::MAX);
            group.bench_function(kind.name(mode), |b| {
                b.iter(|| {
                    let seen = fx.reader.read(after, upto, mode);
                    assert_eq!(seen.entries, READ_ENTRIES);
                    std::hint::black_box(seen.bytes)
                })
            });
        }
    }
    group.finish();
}

/// The packed read ([`Store::read_packed`]: the range copied into one
/// buffer under the visit) beside the owned read (a `Bytes` clone per
/// entry) and the visit (borrowed), 4 readers of the latest 100 entries of
/// 100 B while the writer writes (no syncs): what the Erlang binding and
/// the HTTP example read with. The target: packed >= 3x owned.
fn packed_read(c: &mut Criterion) {
    let mut group = c.benchmark_group("packed_read");
    let n = 4;
    group.throughput(Throughput::Elements((n * READ_ENTRIES) as u64));
    for (kind, mode) in [
        (Kind::Shapebuf, Mode::Owned),
        (Kind::ShapebufPacked, Mode::Owned),
        (Kind::Shapebuf, Mode::Borrow),
    ] {
        let name = kind.name(mode);
        let mut acc = Acc::default();
        let mut fx = fixture(kind, false);
        group.bench_function(BenchmarkId::new(name, n), |b| {
            b.iter_custom(|iters| run(&mut fx, n, mode, None, iters, &mut acc))
        });
        drop(fx);
        if acc.reads > 0 {
            summary("packed_read", name, n, acc);
        }
    }
    group.finish();
}

fn contended_sync(c: &mut Criterion) {
    bench_group(c, true, None);
}

fn contended_nosync(c: &mut Criterion) {
    bench_group(c, false, None);
}

fn contended_paced(c: &mut Criterion) {
    bench_group(c, true, Some(PACE));
    bench_group(c, false, Some(PACE));
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = read_uncontended, contended_sync, contended_nosync, contended_paced, packed_read
}
criterion_main!(benches);
