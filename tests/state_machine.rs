//! A `proptest` state-machine test of one shape's life cycle against a
//! `BTreeMap` model of its committed entries.
//!
//! Random sequences of append (valid and invalid), commit, flush, tick,
//! read (random ranges; through `Store::read`, `ShapeHandle::read` and
//! `ShapeHandle::visit`), terminate, drop-without-terminate, restart and
//! store reopen run against the real store with tiny settings, so segment
//! growth, trims, sparse index points and file rolls all happen.
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
//!   transaction its predecessor left open.

mod common;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;
use shapebuf::{Config, Error, Flushed, LogOffset, ReadOutcome, ShapeHandle, ShapeWriter, Store};

const SHAPE: &[u8] = b"the/shape\0";
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
    Append { at: At, len: usize },
    Commit,
    Flush,
    Tick,
    Read { after: Pick, upto: Pick, via: Via },
    Terminate,
    DropWriter,
    Restart,
    Reopen,
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
        1 => Just(Op::Reopen),
    ]
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

/// The system under test plus the model.
struct Machine {
    dir: tempfile::TempDir,
    cfg: Config,
    /// `None` only while reopening.
    store: Option<Store>,
    handle: Option<ShapeHandle>,
    writer: Option<ShapeWriter>,
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
    /// The shape exists (a writer was ever opened; after a reopen, only if
    /// it reached the disk).
    exists: bool,
    /// A flush or terminate made the shape durable (a new shape has no
    /// file until its first flush; an automatic one may have made it
    /// durable too, unseen by the model).
    on_disk: bool,
    /// A segment is published (a writer is live, or was dropped).
    live: bool,
    payloads: u64,
}

impl Machine {
    fn new(s: &Settings) -> Machine {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = Config {
            flush_bytes: s.flush_bytes,
            // Back-pressure within a few appends, so runs reach it.
            max_pending_bytes: 2 * s.flush_bytes,
            flush_interval: if s.tick_flushes {
                Duration::ZERO
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
            handle: None,
            writer: None,
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
            payloads: 0,
        }
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("store")
    }

    fn last_committed(&self) -> LogOffset {
        self.committed
            .last_key_value()
            .map_or(LogOffset::ZERO, |(k, _)| *k)
    }

    fn payload(&mut self, len: usize) -> Bytes {
        self.payloads += 1;
        let n = self.payloads;
        (0..len)
            .map(|i| (n as u8).wrapping_mul(31).wrapping_add(i as u8))
            .collect::<Vec<u8>>()
            .into()
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

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Append { at, len } => self.append(at, len),
            Op::Commit => {
                let Some(w) = self.writer.as_mut() else {
                    return;
                };
                let got = w.commit().expect("commit");
                self.committed.extend(self.open.drain(..));
                assert_eq!(got, self.last_committed(), "commit returns the last commit");
            }
            Op::Flush => {
                let Some(w) = self.writer.as_mut() else {
                    return;
                };
                let f = w.flush().expect("flush");
                self.on_disk = true;
                self.check_durable(true);
                assert_eq!(f, self.durable);
            }
            Op::Tick => {
                let Some(w) = self.writer.as_mut() else {
                    return;
                };
                let ticked = w.tick().expect("tick");
                let flushes = self.cfg.flush_interval == Duration::ZERO;
                // Whether anything was left to flush depends on whether a
                // background flush finished first; what must hold is that a
                // tick flushes only when due, and then everything.
                assert!(flushes || !ticked, "tick flushed before it was due");
                self.check_durable(flushes);
            }
            Op::Read { after, upto, via } => self.read(after, upto, via),
            Op::Terminate => {
                let Some(w) = self.writer.take() else { return };
                let f = w.terminate().expect("terminate");
                self.on_disk = true;
                assert_eq!(f.committed, self.last_committed());
                assert_eq!(f.persisted, self.last);
                self.durable = f;
                self.open.clear();
                self.live = false;
            }
            Op::DropWriter => {
                if self.writer.take().is_some() {
                    self.open.clear();
                }
            }
            Op::Restart => self.restart(),
            Op::Reopen => self.reopen(),
        }
    }

    fn append(&mut self, at: At, len: usize) {
        if self.writer.is_none() {
            return;
        }
        let offset = match at {
            At::SameTx { op_step } if !self.open.is_empty() => {
                LogOffset::new(self.last.tx, self.last.op + op_step)
            }
            At::SameTx { .. } => LogOffset::new(self.highest.tx + 1, 0),
            At::NewTx { tx_step, op } => LogOffset::new(self.highest.tx + tx_step, op),
            At::Zero => LogOffset::ZERO,
            At::Repeat => self.last,
            At::Below { back } => {
                // Anything at or below the last offset this writer holds.
                let below: Vec<LogOffset> = self
                    .committed
                    .keys()
                    .copied()
                    .chain(self.open.iter().map(|(o, _)| *o))
                    .filter(|o| *o <= self.last)
                    .flat_map(|o| [o, LogOffset::new(o.tx, o.op.saturating_sub(1))])
                    .collect();
                if below.is_empty() {
                    LogOffset::ZERO
                } else {
                    *back.get(&below)
                }
            }
        };
        let payload = self.payload(len);
        let w = self.writer.as_mut().expect("writer");
        let res = w.append(offset, payload.clone());
        if offset == LogOffset::ZERO {
            assert!(matches!(res, Err(Error::ZeroOffset)), "{res:?}");
        } else if offset <= self.last {
            match res {
                Err(Error::NonIncreasingOffset { last, got }) => {
                    assert_eq!((last, got), (self.last, offset));
                }
                other => panic!("append at {offset} after {}: {other:?}", self.last),
            }
        } else if len > MAX_PAYLOAD {
            assert!(
                matches!(res, Err(Error::PayloadTooLarge { len: l, max: MAX_PAYLOAD }) if l == len),
                "{res:?}"
            );
        } else {
            res.expect("valid append");
            self.open.push((offset, payload));
            self.last = offset;
            self.highest = self.highest.max(offset);
            self.check_durable(false);
        }
        // A rejected append changes nothing: the writer is still usable.
        assert_eq!(
            self.writer.as_ref().expect("writer").last_appended(),
            self.last
        );
    }

    fn read(&mut self, after: Pick, upto: Pick, via: Via) {
        let (after, upto) = (self.bound(after), self.bound(upto));
        if !self.exists {
            assert!(matches!(
                self.store().read(SHAPE, after, upto),
                Err(Error::UnknownShape(_))
            ));
            assert!(matches!(
                self.store().handle(SHAPE),
                Err(Error::UnknownShape(_))
            ));
            return;
        }
        let h = self.handle.as_ref().expect("handle");
        let out: ReadOutcome = match via {
            Via::Store => self.store().read(SHAPE, after, upto).expect("read"),
            Via::Handle => h.read(after, upto).expect("read"),
            Via::Visit => common::visit_outcome(h, after, upto),
        };
        let want: Vec<(LogOffset, Bytes)> = if after < upto {
            self.committed
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
            assert_eq!(out.dead, !self.live, "dead flag ({via:?})");
            if !self.live {
                assert_eq!(
                    out.from_disk,
                    out.entries.len(),
                    "dead reads come from disk"
                );
            }
        }
        assert_eq!(h.committed(), self.last_committed(), "handle.committed()");
        assert_eq!(h.is_live(), self.live, "handle.is_live()");
    }

    fn restart(&mut self) {
        if self.writer.is_some() {
            assert!(matches!(
                self.store().writer(SHAPE),
                Err(Error::WriterActive(_))
            ));
            return;
        }
        let w = self.store().writer(SHAPE).expect("writer");
        self.writer = Some(w);
        self.exists = true;
        self.live = true;
        // The new writer continues after the last committed entry, having
        // written what a dropped predecessor committed.
        self.last = self.last_committed();
        self.check_durable(true);
        if self.handle.is_none() {
            self.handle = Some(self.store().handle(SHAPE).expect("handle"));
        }
    }

    fn reopen(&mut self) {
        self.writer = None;
        self.handle = None;
        self.open.clear();
        self.live = false;
        let dir = self.dir.path().to_path_buf();
        // Drop the old store (and every handle on it) before reopening.
        self.store = None;
        self.store = Some(Store::open_with(&dir, self.cfg.clone()).expect("reopen"));
        let found = self.store().contains(SHAPE);
        if self.on_disk || self.durable.committed > LogOffset::ZERO {
            assert!(found, "a shape made durable is gone after a reopen");
        } else {
            // Never flushed: it exists only if an automatic flush created
            // its file.
            assert!(found <= self.exists, "a shape appeared from nowhere");
            self.exists = found;
            self.on_disk = found;
        }
        // What survives: the committed entries up to the last commit the
        // writer reported durable, and possibly more: a background flush
        // that was in flight when the writer was dropped lands anyway (its
        // commit point was taken when it started). Never less, never an
        // entry the model does not have as committed, always a prefix.
        let durable = self.durable.committed;
        let got: Vec<LogOffset> = if self.exists {
            let out = self
                .store()
                .read(SHAPE, LogOffset::ZERO, LogOffset::MAX)
                .expect("read after reopen");
            out.entries.iter().map(|e| e.offset).collect()
        } else {
            Vec::new()
        };
        let model: Vec<LogOffset> = self.committed.keys().copied().collect();
        assert!(
            model.starts_with(&got),
            "after reopen {got:?} is not a prefix of the committed {model:?}"
        );
        let at_least = model.iter().filter(|k| **k <= durable).count();
        assert!(
            got.len() >= at_least,
            "after reopen only {} of the {at_least} entries reported durable survive",
            got.len()
        );
        let last = got.last().copied().unwrap_or(LogOffset::ZERO);
        self.committed.retain(|k, _| *k <= last);
        self.durable = Flushed {
            persisted: last,
            committed: last,
        };
        if self.exists {
            assert_eq!(
                self.store().shapes().expect("shapes"),
                vec![Bytes::from_static(SHAPE)]
            );
            self.handle = Some(self.store().handle(SHAPE).expect("handle"));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    })]

    #[test]
    fn shape_life_cycle_matches_model(
        s in settings(),
        ops in proptest::collection::vec(op(), 1..100),
    ) {
        let mut m = Machine::new(&s);
        if s.start_writer {
            m.step(&Op::Restart);
        }
        for op in &ops {
            m.step(op);
        }
        // Finally: everything read through a fresh store equals the model
        // after a clean shutdown of whatever writer is left.
        if let Some(w) = m.writer.take() {
            w.terminate().expect("terminate");
            m.open.clear();
            m.durable.committed = m.last_committed();
            m.live = false;
        }
        m.reopen();
        if m.exists {
            m.read(Pick::Zero, Pick::Max, Via::Store);
        }
    }
}
