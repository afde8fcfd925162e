//! A `proptest` state-machine test of the life cycle of a few shapes
//! against a `BTreeMap` model of each one's committed entries.
//!
//! Random sequences of append (valid and invalid), commit, flush, tick,
//! read (random ranges; through `Store::read`, `ShapeHandle::read` and
//! `ShapeHandle::visit`), terminate, drop-without-terminate, restart,
//! remove and store reopen, each on one of three shape ids, run against
//! the real store with tiny settings, so segment growth, trims, sparse
//! index points and file rolls all happen, and ids are reused after
//! their removal.
//!
//! # The rules the model encodes
//!
//! - Readers see exactly the committed entries; an open transaction is
//!   invisible, and a read of `(after, upto]` returns the committed entries
//!   in that range, in order.
//! - A terminated shape, or one reopened from disk with no writer yet, reads
//!   as dead (served from disk); a live writer's, or a dropped writer's,
//!   buffer is live.
//! - Durability: the writer reports (`ShapeWriter::flushed`) the last entry
//!   whose commit is on disk. The model checks that report: it moves only
//!   to the last committed entry (a flush writes every commit so far) or
//!   stays; after `flush`, `terminate`, a tick that flushes, or a new
//!   writer, it is the last committed entry.
//! - Drop without terminate: committed entries stay visible; the next
//!   writer (in the same process) writes the ones that were not flushed and
//!   discards the open transaction.
//! - Reopen: what survives is exactly the committed entries at or below
//!   the last durable commit at that moment. Hence a dropped writer's
//!   committed-but-unflushed entries are lost by a reopen only if no writer
//!   took over before it; an open transaction never survives, even if an
//!   auto-flush put its entries on disk.
//! - Offsets: a new transaction always uses a `tx` above every offset ever
//!   appended to the shape (as a replicated stream would), so the test does
//!   not depend on whether a new writer may reuse the offsets of a
//!   transaction its predecessor left open. A shape created again after
//!   its removal is another shape: it starts again from offset zero.
//! - Remove: `Store::remove` refuses with `WriterActive` while a writer
//!   lives (and changes nothing); `ShapeWriter::remove` removes it with
//!   whatever that writer appended; with no writer, `Store::remove` removes
//!   the shape (`UnknownShape` if it does not exist). After a removal the
//!   old handles answer `ShapeRemoved` (reads, visits) and `Removed`
//!   (waits), `Store::read` and `Store::handle` answer `UnknownShape`, a
//!   new writer starts an empty shape, and a reopen does not bring it back.
//! - Reopen is checked at once, or (cold) shape by shape at each one's
//!   next use, so that a removal can be the first thing to find a shape
//!   on disk after a reopen (not looked up yet): it must remove it.

mod common;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;
use shapebuf::{
    Config, Error, Flushed, LogOffset, ReadOutcome, ShapeHandle, ShapeWriter, Store, WaitOutcome,
};

/// The shape ids the operations draw from (ids are reused after removal).
const SHAPES: [&[u8]; 3] = [b"the/shape\0", b"b", b"\xffc"];
const MAX_PAYLOAD: usize = 64;

#[derive(Clone, Copy, Debug)]
enum Via {
    Store,
    Handle,
    Visit,
}

/// How `append` picks its offset.
#[derive(Clone, Copy, Debug)]
enum At {
    /// Continue the open transaction (a new one if none is open).
    SameTx { op_step: u64 },
    /// Start a new transaction above every offset ever appended.
    NewTx { tx_step: u64, op: u64 },
    /// `LogOffset::ZERO`.
    Zero,
    /// The last appended offset again.
    Repeat,
    /// Below the last appended offset.
    Below { back: Index },
}

/// A read bound.
#[derive(Clone, Copy, Debug)]
enum Pick {
    Zero,
    Max,
    /// A committed (or open) entry's offset.
    Entry(Index),
    /// Just above an entry's offset, between two entries.
    After(Index),
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        at: At,
        len: usize,
    },
    Commit,
    Flush,
    Tick,
    Read {
        after: Pick,
        upto: Pick,
        via: Via,
    },
    Terminate,
    DropWriter,
    Restart,
    /// Through the live writer (`ShapeWriter::remove`) if `via_writer` and
    /// there is one, else `Store::remove`.
    Remove {
        via_writer: bool,
    },
    /// Reopen the store. With `cold`, nothing is looked up at once: each
    /// shape is checked when an operation next uses it (a removal first
    /// finds it unresolved on disk, as lazy open leaves it).
    Reopen {
        cold: bool,
    },
}

/// An operation on shape `SHAPES[shape]` (`Reopen` is on the store).
#[derive(Clone, Debug)]
struct Step {
    shape: usize,
    op: Op,
}

fn at() -> impl Strategy<Value = At> {
    prop_oneof![
        6 => (1u64..3).prop_map(|op_step| At::SameTx { op_step }),
        4 => (1u64..3, 0u64..3).prop_map(|(tx_step, op)| At::NewTx { tx_step, op }),
        1 => Just(At::Zero),
        1 => Just(At::Repeat),
        1 => any::<Index>().prop_map(|back| At::Below { back }),
    ]
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        1 => Just(Pick::Zero),
        2 => Just(Pick::Max),
        3 => any::<Index>().prop_map(Pick::Entry),
        2 => any::<Index>().prop_map(Pick::After),
    ]
}

fn via() -> impl Strategy<Value = Via> {
    prop_oneof![Just(Via::Store), Just(Via::Handle), Just(Via::Visit)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        // Payloads up to MAX_PAYLOAD + 16: some are too large.
        20 => (at(), 0usize..MAX_PAYLOAD + 16).prop_map(|(at, len)| Op::Append { at, len }),
        7 => Just(Op::Commit),
        2 => Just(Op::Flush),
        1 => Just(Op::Tick),
        7 => (pick(), pick(), via()).prop_map(|(after, upto, via)| Op::Read { after, upto, via }),
        1 => Just(Op::Terminate),
        1 => Just(Op::DropWriter),
        3 => Just(Op::Restart),
        2 => any::<bool>().prop_map(|via_writer| Op::Remove { via_writer }),
        2 => any::<bool>().prop_map(|cold| Op::Reopen { cold }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    // The first shape gets most operations, so that its life runs long.
    (
        prop_oneof![3 => Just(0usize), 2 => Just(1), 1 => Just(2)],
        op(),
    )
        .prop_map(|(shape, op)| Step { shape, op })
}

#[derive(Clone, Debug)]
struct Settings {
    flush_bytes: usize,
    tick_flushes: bool,
    /// Open the writer before the first op (else the shape starts unknown).
    start_writer: bool,
    /// `Config::retain_bytes`: none, about one small entry, or the default.
    retain_bytes: usize,
    /// `Config::flush_threads`: batches written when handed over, or by
    /// the flusher threads.
    flush_threads: usize,
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        prop_oneof![Just(1usize), Just(150), Just(1 << 20)],
        any::<bool>(),
        prop::bool::weighted(0.8),
        prop_oneof![Just(0usize), Just(60), Just(16 << 10)],
        prop_oneof![Just(0usize), Just(2)],
    )
        .prop_map(
            |(flush_bytes, tick_flushes, start_writer, retain_bytes, flush_threads)| Settings {
                flush_bytes,
                tick_flushes,
                start_writer,
                retain_bytes,
                flush_threads,
            },
        )
}

/// One shape id's part of the system under test, and its model.
struct Shape {
    id: &'static [u8],
    handle: Option<ShapeHandle>,
    writer: Option<ShapeWriter>,
    /// Handles of earlier shapes with this id, removed since.
    removed_handles: Vec<ShapeHandle>,
    // --- the model ---
    /// Committed entries, visible to readers.
    committed: BTreeMap<LogOffset, Bytes>,
    /// The writer's open transaction.
    open: Vec<(LogOffset, Bytes)>,
    /// The last offset the live writer holds (appended or committed).
    last: LogOffset,
    /// The highest offset ever appended to the shape, by any writer.
    highest: LogOffset,
    /// What the writer last reported durable.
    durable: Flushed,
    /// The shape exists (a writer was opened since it was last removed;
    /// after a reopen, only if it reached the disk).
    exists: bool,
    /// A flush or terminate made the shape durable (a new shape has no
    /// file until its first flush; an automatic one may have made it
    /// durable too, unseen by the model).
    on_disk: bool,
    /// A segment is published (a writer is live, or was dropped).
    live: bool,
    /// Not looked up since a cold reopen: what survived is not known yet.
    unchecked: bool,
}

impl Shape {
    fn new(id: &'static [u8]) -> Shape {
        Shape {
            id,
            handle: None,
            writer: None,
            removed_handles: Vec::new(),
            committed: BTreeMap::new(),
            open: Vec::new(),
            last: LogOffset::ZERO,
            highest: LogOffset::ZERO,
            durable: Flushed {
                persisted: LogOffset::ZERO,
                committed: LogOffset::ZERO,
            },
            exists: false,
            on_disk: false,
            live: false,
            unchecked: false,
        }
    }

    fn last_committed(&self) -> LogOffset {
        self.committed
            .last_key_value()
            .map_or(LogOffset::ZERO, |(k, _)| *k)
    }

    /// Checks the writer's durability report after an operation that may
    /// have flushed; `exact` when it must have flushed everything.
    fn check_durable(&mut self, exact: bool) {
        let w = self.writer.as_ref().expect("writer");
        let now = w.flushed();
        let lc = self.last_committed();
        if exact {
            assert_eq!(
                now,
                Flushed {
                    persisted: self.last,
                    committed: lc
                },
                "everything must be durable"
            );
        } else {
            // A flush batch in flight in the background took the commit
            // point of when it started: any commit from the previous
            // durable one to the last.
            assert!(
                now.committed >= self.durable.committed
                    && now.committed <= lc
                    && (now.committed == LogOffset::ZERO
                        || self.committed.contains_key(&now.committed)),
                "durable commit {} is not a commit between the previous {} and the last {lc}",
                now.committed,
                self.durable.committed
            );
            assert!(now.persisted >= self.durable.persisted && now.persisted <= self.last);
        }
        self.durable = now;
    }

    fn bound(&self, p: Pick) -> LogOffset {
        // Committed entries and the open transaction's (which must stay
        // invisible) are the interesting places to cut.
        let keys: Vec<LogOffset> = self
            .committed
            .keys()
            .copied()
            .chain(self.open.iter().map(|(o, _)| *o))
            .collect();
        match p {
            Pick::Zero => LogOffset::ZERO,
            Pick::Max => LogOffset::MAX,
            Pick::Entry(i) if !keys.is_empty() => *i.get(&keys),
            Pick::After(i) if !keys.is_empty() => {
                let o = *i.get(&keys);
                LogOffset::new(o.tx, o.op + 1)
            }
            Pick::Entry(_) | Pick::After(_) => LogOffset::new(1, 0),
        }
    }

    /// Every handle of a removed shape with this id answers that it was
    /// removed, whatever it is asked.
    fn check_removed_handles(&self, after: LogOffset, upto: LogOffset) {
        for h in &self.removed_handles {
            let read = h.read(after, upto);
            assert!(
                matches!(read, Err(Error::ShapeRemoved(_))),
                "read through a removed shape's handle: {read:?}"
            );
            let visit = h.visit(after, upto, |_| {});
            assert!(
                matches!(visit, Err(Error::ShapeRemoved(_))),
                "visit through a removed shape's handle: {visit:?}"
            );
            assert_eq!(
                h.wait_for(after, Duration::ZERO),
                WaitOutcome::Removed,
                "wait on a removed shape's handle"
            );
        }
    }
}

/// The system under test plus the model.
struct Machine {
    dir: tempfile::TempDir,
    cfg: Config,
    /// `None` only while reopening.
    store: Option<Store>,
    /// Per id of `SHAPES`.
    shapes: Vec<Shape>,
    payloads: u64,
}

impl Machine {
    fn new(s: &Settings) -> Machine {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = Config {
            flush_bytes: s.flush_bytes,
            // Back-pressure within a few appends, so runs reach it.
            max_pending_bytes: 2 * s.flush_bytes,
            // The shortest interval `Config::validate` accepts: a tick
            // flushes when at least this long has passed since the last
            // flush (checked from what the tick reports, not timed).
            flush_interval: if s.tick_flushes {
                Duration::from_millis(1)
            } else {
                Duration::from_secs(3600)
            },
            segment_capacity: 2,
            retain_bytes: s.retain_bytes,
            index_interval: 64,
            file_bytes: 256,
            max_payload: MAX_PAYLOAD,
            flush_threads: s.flush_threads,
            max_open_files: 4,
        };
        let store = Some(Store::open_with(dir.path(), cfg.clone()).expect("open"));
        Machine {
            dir,
            cfg,
            store,
            shapes: SHAPES.iter().map(|id| Shape::new(id)).collect(),
            payloads: 0,
        }
    }

    fn payload(&mut self, len: usize) -> Bytes {
        self.payloads += 1;
        let n = self.payloads;
        (0..len)
            .map(|i| (n as u8).wrapping_mul(31).wrapping_add(i as u8))
            .collect::<Vec<u8>>()
            .into()
    }

    fn step(&mut self, step: &Step) {
        let i = step.shape;
        if self.shapes[i].unchecked {
            match step.op {
                Op::Remove { .. } => return self.remove_unchecked(i),
                Op::Reopen { .. } => {}
                _ => self.check_reopened(i),
            }
        }
        match step.op {
            Op::Append { at, len } => self.append(i, at, len),
            Op::Commit => {
                let sh = &mut self.shapes[i];
                let Some(w) = sh.writer.as_mut() else {
                    return;
                };
                let got = w.commit().expect("commit");
                sh.committed.extend(sh.open.drain(..));
                assert_eq!(got, sh.last_committed(), "commit returns the last commit");
            }
            Op::Flush => {
                let sh = &mut self.shapes[i];
                let Some(w) = sh.writer.as_mut() else {
                    return;
                };
                let f = w.flush().expect("flush");
                sh.on_disk = true;
                sh.check_durable(true);
                assert_eq!(f, sh.durable);
            }
            Op::Tick => {
                let never_due = self.cfg.flush_interval >= Duration::from_secs(3600);
                let sh = &mut self.shapes[i];
                let Some(w) = sh.writer.as_mut() else {
                    return;
                };
                let ticked = w.tick().expect("tick");
                // Whether anything was left to flush depends on whether a
                // background flush finished first, and whether the tick was
                // due on how long ago the last flush was; what must hold is
                // that a tick flushes only when due, and then everything.
                assert!(!never_due || !ticked, "tick flushed before it was due");
                sh.check_durable(ticked);
            }
            Op::Read { after, upto, via } => self.read(i, after, upto, via),
            Op::Terminate => {
                let sh = &mut self.shapes[i];
                let Some(w) = sh.writer.take() else { return };
                let f = w.terminate().expect("terminate");
                sh.on_disk = true;
                assert_eq!(f.committed, sh.last_committed());
                assert_eq!(f.persisted, sh.last);
                sh.durable = f;
                sh.open.clear();
                sh.live = false;
            }
            Op::DropWriter => {
                let sh = &mut self.shapes[i];
                if sh.writer.take().is_some() {
                    sh.open.clear();
                }
            }
            Op::Restart => self.restart(i),
            Op::Remove { via_writer } => self.remove(i, via_writer),
            Op::Reopen { cold } => self.reopen(cold),
        }
    }

    fn append(&mut self, i: usize, at: At, len: usize) {
        if self.shapes[i].writer.is_none() {
            return;
        }
        let payload = self.payload(len);
        let sh = &mut self.shapes[i];
        let offset = match at {
            At::SameTx { op_step } if !sh.open.is_empty() => {
                LogOffset::new(sh.last.tx, sh.last.op + op_step)
            }
            At::SameTx { .. } => LogOffset::new(sh.highest.tx + 1, 0),
            At::NewTx { tx_step, op } => LogOffset::new(sh.highest.tx + tx_step, op),
            At::Zero => LogOffset::ZERO,
            At::Repeat => sh.last,
            At::Below { back } => {
                // Anything at or below the last offset this writer holds.
                let below: Vec<LogOffset> = sh
                    .committed
                    .keys()
                    .copied()
                    .chain(sh.open.iter().map(|(o, _)| *o))
                    .filter(|o| *o <= sh.last)
                    .flat_map(|o| [o, LogOffset::new(o.tx, o.op.saturating_sub(1))])
                    .collect();
                if below.is_empty() {
                    LogOffset::ZERO
                } else {
                    *back.get(&below)
                }
            }
        };
        let w = sh.writer.as_mut().expect("writer");
        let res = w.append(offset, payload.clone());
        if offset == LogOffset::ZERO {
            assert!(matches!(res, Err(Error::ZeroOffset)), "{res:?}");
        } else if offset <= sh.last {
            match res {
                Err(Error::NonIncreasingOffset { last, got }) => {
                    assert_eq!((last, got), (sh.last, offset));
                }
                other => panic!("append at {offset} after {}: {other:?}", sh.last),
            }
        } else if len > MAX_PAYLOAD {
            assert!(
                matches!(res, Err(Error::PayloadTooLarge { len: l, max: MAX_PAYLOAD }) if l == len),
                "{res:?}"
            );
        } else {
            res.expect("valid append");
            sh.open.push((offset, payload));
            sh.last = offset;
            sh.highest = sh.highest.max(offset);
            sh.check_durable(false);
        }
        // A rejected append changes nothing: the writer is still usable.
        assert_eq!(sh.writer.as_ref().expect("writer").last_appended(), sh.last);
    }

    fn read(&mut self, i: usize, after: Pick, upto: Pick, via: Via) {
        let store = self.store.as_ref().expect("store");
        let sh = &self.shapes[i];
        let (after, upto) = (sh.bound(after), sh.bound(upto));
        sh.check_removed_handles(after, upto);
        if !sh.exists {
            assert!(matches!(
                store.read(sh.id, after, upto),
                Err(Error::UnknownShape(_))
            ));
            assert!(matches!(store.handle(sh.id), Err(Error::UnknownShape(_))));
            return;
        }
        let h = sh.handle.as_ref().expect("handle");
        let out: ReadOutcome = match via {
            Via::Store => store.read(sh.id, after, upto).expect("read"),
            Via::Handle => h.read(after, upto).expect("read"),
            Via::Visit => common::visit_outcome(h, after, upto),
        };
        let want: Vec<(LogOffset, Bytes)> = if after < upto {
            sh.committed
                .range((Bound::Excluded(after), Bound::Included(upto)))
                .map(|(k, v)| (*k, v.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let got: Vec<(LogOffset, Bytes)> = out
            .entries
            .iter()
            .map(|e| (e.offset, e.payload.clone()))
            .collect();
        assert_eq!(got, want, "{via:?} read ({after}, {upto}]");
        assert!(out.from_disk <= out.entries.len());
        assert!(!out.raced, "nothing runs concurrently");
        if after < upto {
            assert_eq!(out.dead, !sh.live, "dead flag ({via:?})");
            if !sh.live {
                assert_eq!(
                    out.from_disk,
                    out.entries.len(),
                    "dead reads come from disk"
                );
            }
        }
        assert_eq!(h.committed(), sh.last_committed(), "handle.committed()");
        assert_eq!(h.is_live(), sh.live, "handle.is_live()");
    }

    fn restart(&mut self, i: usize) {
        let store = self.store.as_ref().expect("store");
        let sh = &mut self.shapes[i];
        if sh.writer.is_some() {
            assert!(matches!(store.writer(sh.id), Err(Error::WriterActive(_))));
            return;
        }
        let w = store.writer(sh.id).expect("writer");
        sh.writer = Some(w);
        sh.exists = true;
        sh.live = true;
        // The new writer continues after the last committed entry, having
        // written what a dropped predecessor committed.
        sh.last = sh.last_committed();
        sh.check_durable(true);
        if sh.handle.is_none() {
            sh.handle = Some(store.handle(sh.id).expect("handle"));
        }
    }

    fn remove(&mut self, i: usize, via_writer: bool) {
        let store = self.store.as_ref().expect("store");
        let sh = &mut self.shapes[i];
        let res = match sh.writer.take() {
            Some(w) if via_writer => w.remove(),
            w => {
                sh.writer = w;
                store.remove(sh.id)
            }
        };
        if sh.writer.is_some() {
            // `Store::remove` refuses while a writer lives, and the shape
            // stays as it was.
            assert!(matches!(res, Err(Error::WriterActive(_))), "{res:?}");
            return;
        }
        if !sh.exists {
            assert!(matches!(res, Err(Error::UnknownShape(_))), "{res:?}");
            return;
        }
        let removed = res.expect("remove");
        assert!(
            removed.had_files || !sh.on_disk,
            "a shape that was flushed had no files"
        );
        // A new shape with this id, if one is created, is another: empty,
        // and free to use any offsets.
        let mut fresh = Shape::new(sh.id);
        fresh.removed_handles = std::mem::take(&mut sh.removed_handles);
        fresh.removed_handles.extend(sh.handle.take());
        *sh = fresh;
        let sh = &self.shapes[i];
        sh.check_removed_handles(LogOffset::ZERO, LogOffset::MAX);
        assert!(matches!(
            store.read(sh.id, LogOffset::ZERO, LogOffset::MAX),
            Err(Error::UnknownShape(_))
        ));
        assert!(!store.contains(sh.id), "a removed shape is still known");
    }

    fn reopen(&mut self, cold: bool) {
        for sh in &mut self.shapes {
            sh.writer = None;
            sh.handle = None;
            sh.removed_handles.clear();
            sh.open.clear();
            sh.live = false;
        }
        let dir = self.dir.path().to_path_buf();
        // Drop the old store (and every handle on it) before reopening.
        self.store = None;
        self.store = Some(Store::open_with(&dir, self.cfg.clone()).expect("reopen"));
        for i in 0..self.shapes.len() {
            self.shapes[i].unchecked = true;
            if !cold {
                self.check_reopened(i);
            }
        }
        if cold {
            return;
        }
        let store = self.store.as_ref().expect("store");
        let mut known = store.shapes().expect("shapes");
        known.sort();
        let mut want: Vec<Bytes> = self
            .shapes
            .iter()
            .filter(|sh| sh.exists)
            .map(|sh| Bytes::from_static(sh.id))
            .collect();
        want.sort();
        assert_eq!(known, want, "the shapes after a reopen");
    }

    /// What a shape must be after a reopen (its first use since).
    fn check_reopened(&mut self, i: usize) {
        let store = self.store.as_ref().expect("store");
        let sh = &mut self.shapes[i];
        sh.unchecked = false;
        let found = store.contains(sh.id);
        if sh.on_disk || sh.durable.committed > LogOffset::ZERO {
            assert!(found, "a shape made durable is gone after a reopen");
        } else {
            // Never flushed: it exists only if an automatic flush created
            // its file (and a removed shape never comes back).
            assert!(found <= sh.exists, "a shape appeared from nowhere");
            sh.exists = found;
            sh.on_disk = found;
        }
        // What survives: the committed entries up to the last commit the
        // writer reported durable, and possibly more: a background flush
        // that was in flight when the writer was dropped lands anyway (its
        // commit point was taken when it started). Never less, never an
        // entry the model does not have as committed, always a prefix.
        let durable = sh.durable.committed;
        let got: Vec<(LogOffset, Bytes)> = if sh.exists {
            let out = store
                .read(sh.id, LogOffset::ZERO, LogOffset::MAX)
                .expect("read after reopen");
            out.entries
                .iter()
                .map(|e| (e.offset, e.payload.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let model: Vec<(LogOffset, Bytes)> =
            sh.committed.iter().map(|(k, v)| (*k, v.clone())).collect();
        assert!(
            model.starts_with(&got),
            "after reopen {:?} is not a prefix of the committed {:?}",
            got.iter().map(|e| e.0).collect::<Vec<_>>(),
            sh.committed.keys().collect::<Vec<_>>()
        );
        let at_least = model.iter().filter(|(k, _)| *k <= durable).count();
        assert!(
            got.len() >= at_least,
            "after reopen only {} of the {at_least} entries reported durable survive",
            got.len()
        );
        let last = got.last().map_or(LogOffset::ZERO, |e| e.0);
        sh.committed.retain(|k, _| *k <= last);
        sh.durable = Flushed {
            persisted: last,
            committed: last,
        };
        if sh.exists {
            sh.handle = Some(store.handle(sh.id).expect("handle"));
        }
    }

    /// A removal that is the first use of a shape since a cold reopen: it
    /// finds the shape on disk, not looked up yet (or nothing).
    fn remove_unchecked(&mut self, i: usize) {
        let store = self.store.as_ref().expect("store");
        let sh = &mut self.shapes[i];
        let res = store.remove(sh.id);
        if sh.on_disk || sh.durable.committed > LogOffset::ZERO {
            let removed = res.expect("remove after a reopen");
            assert!(removed.had_files, "a flushed shape had no files");
        } else if !sh.exists {
            assert!(matches!(res, Err(Error::UnknownShape(_))), "{res:?}");
        } else {
            // Never flushed by the model: there only if an automatic flush
            // created its file.
            assert!(
                matches!(res, Ok(r) if r.had_files) || matches!(res, Err(Error::UnknownShape(_))),
                "{res:?}"
            );
        }
        *sh = Shape::new(sh.id);
        assert!(matches!(
            store.read(sh.id, LogOffset::ZERO, LogOffset::MAX),
            Err(Error::UnknownShape(_))
        ));
        assert!(!store.contains(sh.id), "a removed shape is still known");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 384,
        ..ProptestConfig::default()
    })]

    #[test]
    fn shape_life_cycle_matches_model(
        s in settings(),
        steps in proptest::collection::vec(step(), 1..120),
    ) {
        let mut m = Machine::new(&s);
        if s.start_writer {
            m.step(&Step { shape: 0, op: Op::Restart });
        }
        for step in &steps {
            m.step(step);
        }
        // Finally: everything read through a fresh store equals the model
        // after a clean shutdown of whatever writers are left.
        for sh in &mut m.shapes {
            if let Some(w) = sh.writer.take() {
                w.terminate().expect("terminate");
                sh.open.clear();
                sh.durable.committed = sh.last_committed();
                sh.live = false;
            }
        }
        m.reopen(false);
        for i in 0..SHAPES.len() {
            m.read(i, Pick::Zero, Pick::Max, Via::Store);
        }
    }
}
