//! The soak's traffic: writer threads churning a hot set of shapes, reader
//! threads reading hot and cold shapes, every answer judged against the
//! model of the incarnation it came from (`lanes.rs`, `model.rs`).
//!
//! # Writers
//!
//! Writer thread `w` owns the lanes `k` with `k % writers == w` and keeps
//! `--hot / writers` of them *hot*: it appends transactions (1 to 8
//! entries, global transaction numbers) to a random hot shape, commits,
//! tells the flush tracker, and flushes (automatically by size, by explicit
//! flush and by tick). Per transaction it may also terminate the shape,
//! drop its writer without terminate (an owner that panicked, mid
//! transaction or after commit; the next writer takes over), remove it
//! (`ShapeWriter::remove` when it holds the writer, else `Store::remove`;
//! the lane then goes on with the same id created again, empty, or with a
//! new id), *rotate* (terminate a hot shape and make a random cold one of
//! its lanes hot: its first transaction recovers it from disk and restarts
//! it), or remove a random cold shape and create it again with one
//! transaction. Every few seconds a "deploy" terminates every hot shape at
//! once (some crash instead, some are removed). Over a run, restarts and
//! removals reach shapes all over the set while most stay idle.
//!
//! # Readers
//!
//! Reader threads read hot shapes (tails and random ranges, through a
//! cached handle: `ShapeHandle::read` and `visit`, or by id: `Store::read`),
//! wait on them now and then (`ShapeHandle::wait_for`), and read random
//! cold shapes (a first read recovers the shape from disk). A read that
//! finds its shape removed (`ShapeRemoved` through a handle, `UnknownShape`
//! by id, a wait that ends `Removed`) is a *removed read* if a removal of
//! that shape had begun by the time the read returned, and an error
//! otherwise. Any data it returns must be exactly that of one incarnation
//! it could see (`judge`): a handle sees only its own incarnation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shapebuf::{Entry, Error, Flushed, LogOffset, ShapeHandle, ShapeWriter, Store, WaitOutcome};

use crate::lanes::{seed, shape_id, Lanes, Seen, View};
use crate::model::{payload, payload_ok, Model};

/// Probabilities of a writer's actions, per transaction.
const PANIC_MID_TX: f64 = 0.002;
const TERMINATE: f64 = 0.004;
const PANIC_AFTER_COMMIT: f64 = 0.002;
const EXPLICIT_FLUSH: f64 = 0.04;
/// Remove the hot shape instead of writing to it.
const REMOVE: f64 = 0.002;
/// Make another shape hot (after the transaction).
const ROTATE: f64 = 0.02;
/// Remove a random cold shape and create it again (after the transaction).
const REMOVE_COLD: f64 = 0.002;
/// A removed shape's lane goes on with the same id (else a new id).
const SAME_ID: f64 = 0.5;
/// How often a writer thread ticks all its writers (the host's timer).
const TICK_EVERY: Duration = Duration::from_millis(100);
/// Whole-fleet deploys happen every this many milliseconds per writer thread.
const DEPLOY_EVERY_MS: std::ops::Range<u64> = 1500..4000;
/// In a deploy, the share of writers that "crash" instead of terminating,
/// and the share of shapes removed.
const DEPLOY_CRASH: f64 = 0.1;
const DEPLOY_REMOVE: f64 = 0.02;
/// A reader's share of reads on hot shapes (the rest: random shapes).
const HOT_READ: f64 = 0.7;
/// A reader waits for the next commit on a hot shape this often.
const WAIT: f64 = 0.02;
const WAIT_FOR: Duration = Duration::from_millis(2);
/// Print at most this many wrong reads, and this many errors, in detail.
const MAX_REPORTS: u64 = 20;

#[derive(Default)]
pub struct Stats {
    pub reads: AtomicU64,
    pub cold_reads: AtomicU64,
    pub entries_read: AtomicU64,
    pub appends: AtomicU64,
    pub flushes: AtomicU64,
    pub terminates: AtomicU64,
    pub takeovers: AtomicU64,
    pub dead: AtomicU64,
    pub raced: AtomicU64,
    pub errors: AtomicU64,
    pub wrong: AtomicU64,
    pub removes: AtomicU64,
    pub removed_reads: AtomicU64,
    pub waits: AtomicU64,
    pub removed_waits: AtomicU64,
    pub rotations: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Relaxed)
}

/// What every traffic thread shares.
pub struct Soak<'a> {
    pub store: Store,
    pub lanes: &'a Lanes,
    /// The hot lanes, `hot_per` per writer thread (readers pick from here).
    hot: Box<[AtomicU32]>,
    hot_per: usize,
    writers: usize,
    payload: usize,
    /// Global transaction numbers: every transaction gets the next one, so
    /// each shape's offsets increase across writers and restarts (1 is
    /// the setup's).
    next_tx: AtomicU64,
    /// Serialises "allocate a transaction number and tell the flush
    /// tracker" so the tracker sees commits in order, as a host's
    /// replication stream would deliver them.
    commit_order: Mutex<()>,
    /// The largest number of transactions the global durable offset
    /// trailed the last commit by, sampled during traffic.
    pub max_lag: AtomicU64,
    /// Set when traffic should end (a plain flag: the joins synchronize).
    stop: AtomicBool,
    pub stats: Stats,
    pub bar: ProgressBar,
}

/// A hot shape as its writer thread sees it.
struct Hot {
    lane: u32,
    /// Its place in `Soak::hot` (`usize::MAX`: none, a cold re-creation).
    slot: usize,
    id: Vec<u8>,
    seed: u64,
    gen: u32,
    /// Its shape exists in the store.
    created: bool,
    model: Arc<Model>,
    writer: Option<ShapeWriter>,
    /// The last writer was dropped without terminate: the next one takes over.
    abandoned: bool,
    /// What the writer last reported durable (to count flushes).
    flushed: Option<Flushed>,
}

impl Hot {
    fn new(lane: u32, slot: usize, seen: Seen) -> Hot {
        Hot {
            lane,
            slot,
            id: shape_id(seen.id),
            seed: seen.seed(),
            gen: seen.gen,
            created: seen.created,
            model: seen.live(),
            writer: None,
            abandoned: false,
            flushed: None,
        }
    }
}

/// How a read reached its shape.
#[derive(Clone, Copy, Debug)]
enum Route {
    /// By id (`Store::read`, or a handle whose incarnation is not known):
    /// any incarnation the id had during the read.
    ById,
    /// Through a handle of this incarnation: that one only.
    Handle(u32),
}

/// The read APIs a reader exercises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Store,
    Handle,
    Visit,
}

impl Via {
    const ALL: [Via; 3] = [Via::Store, Via::Handle, Via::Visit];
}

/// What became of a read.
enum Outcome {
    Read(Vec<Entry>),
    Removed,
    Failed,
}

/// An incarnation a read may have seen.
struct Candidate {
    gen: u32,
    id: u32,
    view: View,
    /// Entries certainly committed when the read began.
    lo: usize,
}

/// A reader's handle on a hot shape, and how far it has read it.
struct Cached {
    handle: ShapeHandle,
    gen: u32,
    tail: LogOffset,
}

impl<'a> Soak<'a> {
    pub fn new(
        store: Store,
        lanes: &'a Lanes,
        writers: usize,
        hot: usize,
        payload: usize,
        bar: ProgressBar,
    ) -> Self {
        let n = lanes.len();
        let hot_per = (hot / writers).min(n / writers).max(1);
        let mut rng = SmallRng::seed_from_u64(7);
        let mut slots = Vec::with_capacity(hot_per * writers);
        for w in 0..writers {
            let count = (n - w).div_ceil(writers);
            let picks = rand::seq::index::sample(&mut rng, count, hot_per);
            slots.extend(
                picks
                    .iter()
                    .map(|i| AtomicU32::new((w + writers * i) as u32)),
            );
        }
        Soak {
            store,
            lanes,
            hot: slots.into(),
            hot_per,
            writers,
            payload,
            next_tx: AtomicU64::new(crate::lanes::SETUP.tx),
            commit_order: Mutex::new(()),
            max_lag: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            stats: Stats::default(),
            bar,
        }
    }

    /// Hot shapes in all.
    pub fn hot_shapes(&self) -> usize {
        self.hot.len()
    }

    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }

    /// Prints a problem (the first few in detail) and counts it.
    fn report(&self, counter: &AtomicU64, what: String) {
        // Each kind of problem gets its own quota of detailed reports.
        if counter.fetch_add(1, Relaxed) < MAX_REPORTS {
            self.bar.suspend(|| eprintln!("soak: {what}"));
        }
    }

    fn error(&self, what: String) {
        self.report(&self.stats.errors, format!("unexpected error: {what}"));
    }

    fn name(lane: u32, id: &[u8], gen: u32) -> String {
        format!("#{lane} ({}, incarnation {gen})", id.escape_ascii())
    }

    fn hot_name(h: &Hot) -> String {
        Self::name(h.lane, &h.id, h.gen)
    }

    // ---- writers ----

    pub fn writer_thread(&self, w: usize, seed: u64) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let slots = w * self.hot_per..(w + 1) * self.hot_per;
        let mut hot: Vec<Hot> = slots
            .map(|slot| {
                let lane = self.hot[slot].load(Relaxed);
                Hot::new(lane, slot, self.lanes.hot(lane))
            })
            .collect();
        let mut next_tick = Instant::now() + TICK_EVERY;
        let mut next_deploy =
            Instant::now() + Duration::from_millis(rng.random_range(DEPLOY_EVERY_MS));
        while !self.stopped() {
            let k = rng.random_range(0..hot.len());
            if rng.random_bool(REMOVE) {
                self.remove_hot(&mut hot[k], &mut rng);
            } else {
                self.transaction(&mut hot[k], &mut rng);
            }
            if rng.random_bool(ROTATE) {
                self.rotate(w, &mut hot, &mut rng);
            }
            if rng.random_bool(REMOVE_COLD) {
                self.remove_cold(w, &hot, &mut rng);
            }
            if Instant::now() >= next_tick {
                for h in &mut hot {
                    self.tick(h);
                }
                next_tick = Instant::now() + TICK_EVERY;
            }
            if Instant::now() >= next_deploy {
                for h in &mut hot {
                    let r: f64 = rng.random();
                    if r < DEPLOY_REMOVE {
                        self.remove_hot(h, &mut rng);
                    } else if let Some(writer) = h.writer.take() {
                        if r < DEPLOY_REMOVE + DEPLOY_CRASH {
                            self.crash(h, writer);
                        } else {
                            self.terminate(h, writer);
                        }
                    }
                }
                next_deploy =
                    Instant::now() + Duration::from_millis(rng.random_range(DEPLOY_EVERY_MS));
            }
        }
        // Wind down: every shape ends terminated, crashed ones taken over
        // first so that what they committed is flushed.
        for h in &mut hot {
            self.cool(h);
        }
    }

    /// How many lanes writer thread `w` owns.
    fn partition_len(&self, w: usize) -> usize {
        (self.lanes.len() - w).div_ceil(self.writers)
    }

    /// A random lane of writer thread `w` that is not hot, if it has any.
    fn pick_cold(&self, w: usize, hot: &[Hot], rng: &mut SmallRng) -> Option<u32> {
        let count = self.partition_len(w);
        if count <= hot.len() {
            return None;
        }
        (0..16).find_map(|_| {
            let lane = (w + self.writers * rng.random_range(0..count)) as u32;
            (!hot.iter().any(|h| h.lane == lane)).then_some(lane)
        })
    }

    /// Terminates a random hot shape and makes a random cold one hot (the
    /// same one again when every lane is hot: a restart).
    fn rotate(&self, w: usize, hot: &mut [Hot], rng: &mut SmallRng) {
        let k = rng.random_range(0..hot.len());
        self.cool(&mut hot[k]);
        let lane = self.pick_cold(w, hot, rng).unwrap_or(hot[k].lane);
        let slot = hot[k].slot;
        hot[k] = Hot::new(lane, slot, self.lanes.hot(lane));
        self.hot[slot].store(lane, Relaxed);
        bump(&self.stats.rotations);
    }

    /// Leaves a shape terminated (taking over a crashed writer first, so
    /// that what it committed is flushed).
    fn cool(&self, h: &mut Hot) {
        if h.writer.is_none() && h.abandoned {
            h.writer = self.open(h);
        }
        if let Some(w) = h.writer.take() {
            self.terminate(h, w);
        }
    }

    /// Removes the hot shape: through its writer if this thread holds it,
    /// else through the store. Its lane goes on with a new incarnation.
    fn remove_hot(&self, h: &mut Hot, rng: &mut SmallRng) {
        if h.writer.is_none() && !h.created {
            return; // removed already, not created again yet
        }
        self.lanes.begin_remove(h.lane);
        let (how, result) = match h.writer.take() {
            Some(w) => ("ShapeWriter::remove", w.remove()),
            None => ("Store::remove", self.store.remove(&h.id)),
        };
        match result {
            Ok(_) => {
                bump(&self.stats.removes);
                let seen = self.lanes.finish_remove(h.lane, !rng.random_bool(SAME_ID));
                *h = Hot::new(h.lane, h.slot, seen);
            }
            Err(e) => {
                self.lanes.cancel_remove(h.lane);
                self.error(format!("{how} of shape {}: {e}", Self::hot_name(h)));
                // A failed writer removal drops the writer.
                h.abandoned |= how == "ShapeWriter::remove";
            }
        }
    }

    /// Removes a random cold shape of writer thread `w` through the store,
    /// then creates its lane's next incarnation with one transaction and
    /// terminates it.
    fn remove_cold(&self, w: usize, hot: &[Hot], rng: &mut SmallRng) {
        let Some(lane) = self.pick_cold(w, hot, rng) else {
            return;
        };
        let seen = self.lanes.peek(lane);
        if seen.created {
            self.lanes.begin_remove(lane);
            if let Err(e) = self.store.remove(shape_id(seen.id)) {
                self.lanes.cancel_remove(lane);
                let name = Self::name(lane, &shape_id(seen.id), seen.gen);
                return self.error(format!("Store::remove of cold shape {name}: {e}"));
            }
            bump(&self.stats.removes);
            self.lanes.finish_remove(lane, !rng.random_bool(SAME_ID));
        }
        let mut h = Hot::new(lane, usize::MAX, self.lanes.hot(lane));
        self.transaction(&mut h, rng);
        self.cool(&mut h);
    }

    /// The shape's writer: a restart, a takeover, or (for a new
    /// incarnation) its creation.
    fn open(&self, h: &mut Hot) -> Option<ShapeWriter> {
        match self.store.writer(&h.id) {
            Ok(w) => {
                if !h.created {
                    self.lanes.created(h.lane, h.gen);
                    h.created = true;
                }
                if std::mem::take(&mut h.abandoned) {
                    bump(&self.stats.takeovers);
                }
                h.flushed = Some(w.flushed());
                Some(w)
            }
            Err(e) => {
                self.error(format!("open writer of shape {}: {e}", Self::hot_name(h)));
                None
            }
        }
    }

    /// One transaction of 1..=8 entries, then maybe a flush, tick,
    /// terminate or crash.
    fn transaction(&self, h: &mut Hot, rng: &mut SmallRng) {
        let Some(mut w) = h.writer.take().or_else(|| self.open(h)) else {
            return;
        };
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
            if let Err(e) = self.store.flush_tracker().commit(end, [(&h.id, end)]) {
                self.error(format!("flush tracker commit {end}: {e}"));
            }
            tx
        };
        let offsets: Vec<LogOffset> = (0..n).map(|op| LogOffset::new(tx, op)).collect();
        for &at in &offsets {
            if let Err(e) = w.append(at, payload(h.seed, at, self.payload)) {
                self.error(format!("append {at} to shape {}: {e}", Self::hot_name(h)));
                return self.crash(h, w);
            }
            bump(&self.stats.appends);
            self.note_flush(h, &w);
        }
        if rng.random_bool(PANIC_MID_TX) {
            // The owner panicked mid-transaction: the next writer must
            // discard these entries, and no reader may ever see them.
            return self.crash(h, w);
        }
        h.model.begin(&offsets);
        if let Err(e) = w.commit() {
            h.model.abort();
            self.error(format!(
                "commit tx {tx} of shape {}: {e}",
                Self::hot_name(h)
            ));
            return self.crash(h, w);
        }
        h.model.commit();
        let r: f64 = rng.random();
        if r < TERMINATE {
            return self.terminate(h, w);
        }
        if r < TERMINATE + PANIC_AFTER_COMMIT {
            // Committed, maybe not flushed: the next writer flushes it.
            return self.crash(h, w);
        }
        if r < TERMINATE + PANIC_AFTER_COMMIT + EXPLICIT_FLUSH {
            if let Err(e) = w.flush() {
                self.error(format!("flush shape {}: {e}", Self::hot_name(h)));
                return self.crash(h, w);
            }
            self.note_flush(h, &w);
        }
        h.writer = Some(w);
        self.tick(h);
    }

    fn tick(&self, h: &mut Hot) {
        let Some(mut w) = h.writer.take() else {
            return;
        };
        match w.tick() {
            Ok(_) => {
                self.note_flush(h, &w);
                h.writer = Some(w);
            }
            Err(e) => {
                self.error(format!("tick shape {}: {e}", Self::hot_name(h)));
                self.crash(h, w);
            }
        }
    }

    fn terminate(&self, h: &mut Hot, w: ShapeWriter) {
        match w.terminate() {
            Ok(flushed) => {
                if h.flushed != Some(flushed) {
                    bump(&self.stats.flushes);
                }
                bump(&self.stats.terminates);
            }
            Err(e) => {
                self.error(format!("terminate shape {}: {e}", Self::hot_name(h)));
                h.abandoned = true;
            }
        }
    }

    /// Drops the writer without terminate, as a panicking owner would.
    fn crash(&self, h: &mut Hot, w: ShapeWriter) {
        drop(w);
        h.abandoned = true;
    }

    /// Counts a flush if the writer made something new durable.
    fn note_flush(&self, h: &mut Hot, w: &ShapeWriter) {
        let now = Some(w.flushed());
        if h.flushed != now {
            h.flushed = now;
            bump(&self.stats.flushes);
        }
    }

    // ---- readers ----

    pub fn reader_thread(&self, seed: u64) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut cache: HashMap<u32, Cached> = HashMap::new();
        while !self.stopped() {
            if rng.random_bool(HOT_READ) {
                let lane = self.hot[rng.random_range(0..self.hot.len())].load(Relaxed);
                self.hot_read(lane, &mut cache, &mut rng);
            } else {
                let lane = rng.random_range(0..self.lanes.len()) as u32;
                self.cold_read(lane, &mut rng);
            }
            if cache.len() > 2 * self.hot.len() + 64 {
                cache.clear();
            }
        }
    }

    /// A read of a hot shape: mostly its tail through the reader's cached
    /// handle (which may belong to an incarnation removed since), else a
    /// random range, by id or through a handle.
    fn hot_read(&self, lane: u32, cache: &mut HashMap<u32, Cached>, rng: &mut SmallRng) {
        let s1 = self.lanes.pin(lane);
        let via = Via::ALL[rng.random_range(0..Via::ALL.len())];
        if via == Via::Store {
            let (after, upto) = if rng.random_bool(0.8) {
                self.random_range(&s1.view, rng)
            } else {
                (LogOffset::ZERO, LogOffset::MAX)
            };
            let id = shape_id(s1.id);
            let answer = self.read_via(via, None, &id, after, upto);
            self.judge(lane, &s1, &id, Route::ById, via, (after, upto), answer);
            return;
        }
        let (handle, route, tail) = match cache.get(&lane) {
            Some(c) => (c.handle.clone(), Route::Handle(c.gen), c.tail),
            None => match self.take_handle(lane, &s1) {
                Ok((handle, route)) => (handle, route, LogOffset::ZERO),
                Err(_) => return,
            },
        };
        if let Route::Handle(gen) = route {
            if rng.random_bool(WAIT) {
                return self.checked_wait(lane, &s1, &handle, gen, tail);
            }
        }
        let (after, upto) = match rng.random_range(0..100) {
            0..70 => (tail, LogOffset::MAX),
            70..99 => self.random_range(&s1.view, rng),
            _ => (LogOffset::ZERO, LogOffset::MAX),
        };
        let answer = self.read_via(via, Some(&handle), handle.id(), after, upto);
        let outcome = self.judge(lane, &s1, handle.id(), route, via, (after, upto), answer);
        match (outcome, route) {
            (Outcome::Read(entries), Route::Handle(gen)) => {
                let c = cache.entry(lane).or_insert(Cached {
                    handle,
                    gen,
                    tail: LogOffset::ZERO,
                });
                if after == c.tail && upto == LogOffset::MAX {
                    if let Some(last) = entries.last() {
                        c.tail = last.offset;
                    }
                }
            }
            (Outcome::Removed, _) => {
                cache.remove(&lane);
            }
            _ => {}
        }
    }

    /// A read of any shape (most are idle: cold, maybe never read since the
    /// store opened), whole or a random range, by id or through a new
    /// handle.
    fn cold_read(&self, lane: u32, rng: &mut SmallRng) {
        bump(&self.stats.cold_reads);
        let s1 = self.lanes.pin(lane);
        let via = Via::ALL[rng.random_range(0..Via::ALL.len())];
        let (after, upto) = if rng.random_bool(0.8) {
            (LogOffset::ZERO, LogOffset::MAX)
        } else {
            self.random_range(&s1.view, rng)
        };
        if via == Via::Store {
            let id = shape_id(s1.id);
            let answer = self.read_via(via, None, &id, after, upto);
            self.judge(lane, &s1, &id, Route::ById, via, (after, upto), answer);
            return;
        }
        if let Ok((handle, route)) = self.take_handle(lane, &s1) {
            let answer = self.read_via(via, Some(&handle), handle.id(), after, upto);
            self.judge(lane, &s1, handle.id(), route, via, (after, upto), answer);
        }
    }

    /// A new handle on the lane's shape (pinned at `s1`), and whether it is
    /// known to be of incarnation `s1.gen`: it is if no removal began
    /// between the pin and the handle's return. On failure the read is
    /// judged (and the lane unpinned) here.
    fn take_handle(&self, lane: u32, s1: &Seen) -> Result<(ShapeHandle, Route), Outcome> {
        let id = shape_id(s1.id);
        match self.store.handle(&id) {
            Ok(handle) => {
                let now = self.lanes.peek(lane);
                let known = now.gen == s1.gen && !now.removing && !s1.removing;
                let route = if known {
                    Route::Handle(s1.gen)
                } else {
                    Route::ById
                };
                Ok((handle, route))
            }
            Err(e) => Err(self.judge(
                lane,
                s1,
                &id,
                Route::ById,
                Via::Handle,
                (LogOffset::ZERO, LogOffset::MAX),
                Err(e),
            )),
        }
    }

    fn read_via(
        &self,
        via: Via,
        handle: Option<&ShapeHandle>,
        id: &[u8],
        after: LogOffset,
        upto: LogOffset,
    ) -> shapebuf::Result<(Vec<Entry>, bool, bool)> {
        match (via, handle) {
            (Via::Handle, Some(h)) => h.read(after, upto).map(|r| (r.entries, r.dead, r.raced)),
            (Via::Visit, Some(h)) => {
                let mut entries = Vec::new();
                h.visit(after, upto, |e| entries.push(e.clone()))
                    .map(|v| (entries, v.dead, v.raced))
            }
            _ => self
                .store
                .read(id, after, upto)
                .map(|r| (r.entries, r.dead, r.raced)),
        }
    }

    /// A range to re-read, mostly within what was committed, its ends
    /// sometimes on offsets that do not exist and sometimes inverted.
    fn random_range(&self, view: &View, rng: &mut SmallRng) -> (LogOffset, LogOffset) {
        let (after, upto) = view.with(|m| {
            let log = m.committed();
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
            (after, upto)
        });
        if rng.random_bool(0.01) {
            (upto, after)
        } else {
            (after, upto)
        }
    }

    /// Unpins the lane and judges the answer of a read of shape `id` (of
    /// range `(after, upto]`) pinned at `s1`.
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &self,
        lane: u32,
        s1: &Seen,
        id: &[u8],
        route: Route,
        via: Via,
        (after, upto): (LogOffset, LogOffset),
        answer: shapebuf::Result<(Vec<Entry>, bool, bool)>,
    ) -> Outcome {
        let (now, passed) = self.lanes.unpin(lane, s1.gen);
        // A removal of the incarnation(s) this read could reach had begun
        // by the time it returned.
        let removal = s1.removing || now.removing || now.gen != s1.gen;
        let (removed_ok, unknown_ok) = match route {
            Route::ById => (removal, removal || !s1.created),
            Route::Handle(gen) => (now.gen > gen || (now.gen == gen && now.removing), false),
        };
        let describe = || {
            format!(
                "read {} of shape {} via {via:?} ({route:?}; lane #{lane} at incarnation {} \
                 when the read began, {} now{})",
                range(after, upto),
                id.escape_ascii(),
                s1.gen,
                now.gen,
                if now.removing { ", removing" } else { "" },
            )
        };
        let (entries, dead, raced) = match answer {
            Ok(a) => a,
            Err(Error::ShapeRemoved(_)) if removed_ok => {
                bump(&self.stats.removed_reads);
                return Outcome::Removed;
            }
            Err(Error::UnknownShape(_)) if unknown_ok => {
                bump(&self.stats.removed_reads);
                return Outcome::Removed;
            }
            Err(e) => {
                self.error(format!("{}: {e}", describe()));
                return Outcome::Failed;
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
        // The incarnations the read could have seen.
        let lo = |gen: u32| if gen == s1.gen { s1.lo } else { 0 };
        let mut candidates: Vec<Candidate> = passed
            .into_iter()
            .map(|g| Candidate {
                gen: g.gen,
                id: g.id,
                view: g.view,
                lo: lo(g.gen),
            })
            .collect();
        candidates.push(Candidate {
            gen: now.gen,
            id: now.id,
            lo: lo(now.gen),
            view: now.view,
        });
        match route {
            Route::ById => candidates.retain(|c| c.id == s1.id),
            Route::Handle(gen) => candidates.retain(|c| c.gen == gen),
        }
        if let Err(what) = self.check(&candidates, after, upto, &entries) {
            self.report(
                &self.stats.wrong,
                format!(
                    "WRONG READ: {}, dead={dead} raced={raced}: {what}",
                    describe()
                ),
            );
        }
        Outcome::Read(entries)
    }

    /// Checks an answer: exactly one candidate's entries in the range as
    /// of some instant of the read.
    fn check(
        &self,
        candidates: &[Candidate],
        after: LogOffset,
        upto: LogOffset,
        entries: &[Entry],
    ) -> Result<(), String> {
        let Some(first) = entries.first() else {
            // Fine if some incarnation had nothing in range at an instant
            // of the read.
            let mut why = None;
            for c in candidates {
                match c.view.with(|m| m.check(c.lo, after, upto, &[])) {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        why.get_or_insert(format!("incarnation {}: {e}", c.gen));
                    }
                }
            }
            return Err(why.unwrap_or_else(|| {
                "an answer through a handle of a shape removed before the read".into()
            }));
        };
        let Some(c) = candidates.iter().find(|c| {
            payload_ok(
                seed(c.id, c.gen),
                first.offset,
                self.payload,
                &first.payload,
            )
        }) else {
            let gens: Vec<u32> = candidates.iter().map(|c| c.gen).collect();
            return Err(format!(
                "entry {} is of no incarnation the read could see (incarnations {gens:?}): \
                 another incarnation's or another shape's data, or a wrong payload",
                first.offset
            ));
        };
        let offsets: Vec<LogOffset> = entries.iter().map(|e| e.offset).collect();
        c.view
            .with(|m| m.check(c.lo, after, upto, &offsets))
            .map_err(|e| format!("incarnation {}: {e}", c.gen))?;
        let seed = seed(c.id, c.gen);
        match entries
            .iter()
            .find(|e| !payload_ok(seed, e.offset, self.payload, &e.payload))
        {
            Some(e) => Err(format!(
                "incarnation {}: wrong payload at {} (another incarnation's?)",
                c.gen, e.offset
            )),
            None => Ok(()),
        }
    }

    /// Waits briefly for a commit past `tail` on a handle of incarnation
    /// `gen` (the lane pinned at `s1`) and judges the outcome: `Removed`
    /// only once that incarnation's removal began, `Committed` only with an
    /// offset of that incarnation past `tail`.
    fn checked_wait(&self, lane: u32, s1: &Seen, handle: &ShapeHandle, gen: u32, tail: LogOffset) {
        bump(&self.stats.waits);
        let out = handle.wait_for(tail, WAIT_FOR);
        let (now, passed) = self.lanes.unpin(lane, s1.gen);
        let name = || Self::name(lane, handle.id(), gen);
        match out {
            WaitOutcome::Removed => {
                if now.gen > gen || (now.gen == gen && now.removing) {
                    bump(&self.stats.removed_waits);
                } else {
                    self.error(format!("wait on shape {} ended Removed", name()));
                }
            }
            WaitOutcome::Committed(at) => {
                let view = if now.gen == gen {
                    Some(now.view)
                } else {
                    passed.into_iter().find(|g| g.gen == gen).map(|g| g.view)
                };
                let ok = at > tail && view.is_some_and(|v| v.with(|m| m.holds(at)));
                if !ok {
                    self.report(
                        &self.stats.wrong,
                        format!(
                            "WRONG WAIT: on shape {} after {tail}: Committed({at}), \
                             not an entry of the incarnation past {tail}",
                            name()
                        ),
                    );
                }
            }
            WaitOutcome::TimedOut | WaitOutcome::Terminated | WaitOutcome::WriterDropped => {}
            other => self.error(format!("wait on shape {}: {other:?}", name())),
        }
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
