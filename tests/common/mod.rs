//! A deterministic workload over a few shapes, with a model of what was
//! committed and what was acknowledged durable, shared by the durability
//! tests (crash points, I/O faults).
#![allow(dead_code)]

pub mod live;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use shapebuf::fs::Fs;
use shapebuf::{Config, LogOffset, ShapeWriter, Store};

pub const SHAPES: [&str; 3] = ["a", "b/../c", "\u{0}d"];

/// Slots per chunk of a segment: the library's `segment::CHUNK`, which is
/// crate-private (its unit test `chunk_size_mirrored_in_tests` fails if the
/// two part). A segment's memory comes in chunks (doubling from one slot,
/// `segment::FIRST`, up to this); tests that count growth or memory use it.
pub const CHUNK_SLOTS: u64 = 64;

/// Small limits so the workload rolls files, grows and trims segments and
/// flushes mid-transaction.
pub fn config() -> Config {
    Config {
        flush_bytes: 400,
        file_bytes: 700,
        index_interval: 120,
        segment_capacity: 2,
        // Batches are written when handed over, on the writer's thread:
        // the order of file operations, which the crash points and fault
        // sweeps count, is then the same in every run.
        flush_threads: 0,
        ..Config::default()
    }
}

pub fn payload(shape: &str, o: LogOffset) -> Bytes {
    let n = 1 + (o.tx * 7 + o.op * 13) % 60;
    Bytes::from(format!("{shape}:{o}:{}", "x".repeat(n as usize)))
}

/// Per shape: the committed entries in order, and how many of them a
/// successful flush, terminate or takeover acknowledged as durable.
#[derive(Debug, Default, Clone)]
pub struct Model {
    pub committed: BTreeMap<&'static str, Vec<LogOffset>>,
    pub acked: BTreeMap<&'static str, usize>,
    /// The highest offset the host allowed collection up to, per shape.
    pub collectable: BTreeMap<&'static str, LogOffset>,
    /// Log files the collector removed.
    pub files_collected: usize,
}

impl Model {
    fn ack(&mut self, s: &'static str) {
        let n = self.committed.get(s).map_or(0, Vec::len);
        self.acked.insert(s, n);
    }
}

/// Runs the workload until it ends or an operation fails; `model` records
/// what happened up to that point. `steps` sizes the workload.
pub fn run(fs: Arc<dyn Fs>, dir: &Path, steps: u64, model: &mut Model) -> shapebuf::Result<()> {
    let store = Store::open_with_fs(dir, config(), fs)?;
    let mut writers: BTreeMap<&'static str, ShapeWriter> = BTreeMap::new();
    for step in 0..steps {
        let s = SHAPES[(step % 3) as usize];
        if !writers.contains_key(s) {
            let w = store.writer(s)?;
            // Opening a writer takes over: what a dropped predecessor
            // committed is now durable.
            model.ack(s);
            writers.insert(s, w);
        }
        let w = writers.get_mut(s).expect("inserted above");
        let tx = step + 1;
        let ops = 1 + step % 4;
        for op in 0..ops {
            let o = LogOffset::new(tx, op);
            w.append(o, payload(s, o))?;
        }
        if step % 9 == 5 {
            // Abandon the transaction: drop the writer before committing.
            writers.remove(s);
            continue;
        }
        w.commit()?;
        model
            .committed
            .entry(s)
            .or_default()
            .extend((0..ops).map(|op| LogOffset::new(tx, op)));
        match step % 8 {
            1 | 4 => {
                w.flush()?;
                model.ack(s);
            }
            6 => {
                writers.remove(s).expect("present").terminate()?;
                model.ack(s);
            }
            7 => {
                // Owner "panicked": dropped without terminate.
                writers.remove(s);
            }
            _ => {}
        }
        if step % 10 == 9 {
            // The host no longer needs the first half of this shape's log.
            let c = &model.committed[s];
            let upto = c[c.len() / 2];
            model.collectable.insert(s, upto);
            model.files_collected += store.handle(s)?.collect_files_before(upto)?;
        }
        if step % 5 == 0 {
            let from = model.collectable.get(s).copied().unwrap_or(LogOffset::ZERO);
            let got = store.read(s, from, LogOffset::MAX)?;
            let want = model.committed[s].iter().filter(|o| **o > from).count();
            assert_eq!(got.entries.len(), want, "live read of {s:?} at step {step}");
        }
    }
    for (s, w) in std::mem::take(&mut writers) {
        w.terminate()?;
        model.ack(s);
    }
    Ok(())
}

/// Reopens `dir` on `fs` and checks every shape against `model`: each holds
/// exactly a prefix of its committed entries, at least the acknowledged
/// ones, with the right payloads. Returns a description of the first
/// violation.
pub fn verify(fs: Arc<dyn Fs>, dir: &Path, model: &Model) -> Result<(), String> {
    let store =
        Store::open_with_fs(dir, config(), fs).map_err(|e| format!("reopen failed: {e}"))?;
    for s in SHAPES {
        let committed = model.committed.get(s).map(Vec::as_slice).unwrap_or(&[]);
        let acked = model.acked.get(s).copied().unwrap_or(0);
        if !store.contains(s) {
            if acked > 0 {
                return Err(format!(
                    "shape {s:?} lost with {acked} acknowledged entries"
                ));
            }
            continue;
        }
        // Collection may have removed a prefix, never more than the host
        // allowed; what remains must be exact from there on.
        let (skip, got) = match store.read(s, LogOffset::ZERO, LogOffset::MAX) {
            Ok(r) => (0, r),
            Err(shapebuf::Error::OffsetCollected { earliest, .. }) => {
                let allowed = model.collectable.get(s).copied().unwrap_or(LogOffset::ZERO);
                if earliest > allowed {
                    return Err(format!(
                        "{s:?}: collected up to {earliest}, host allowed {allowed}"
                    ));
                }
                let skip = committed.iter().filter(|o| **o <= earliest).count();
                let r = store
                    .read(s, earliest, LogOffset::MAX)
                    .map_err(|e| format!("read {s:?} after {earliest}: {e}"))?;
                (skip, r)
            }
            Err(e) => return Err(format!("read {s:?}: {e}")),
        };
        let committed = &committed[skip..];
        let acked = acked.saturating_sub(skip);
        if got.entries.len() < acked || got.entries.len() > committed.len() {
            return Err(format!(
                "shape {s:?}: {} entries, acknowledged {acked}, committed {}",
                got.entries.len(),
                committed.len()
            ));
        }
        for (e, want) in got.entries.iter().zip(committed) {
            if e.offset != *want || e.payload != payload(s, *want) {
                return Err(format!(
                    "shape {s:?}: got {} where {want} was committed",
                    e.offset
                ));
            }
        }
    }
    if store.shape_count() > SHAPES.len() {
        return Err(format!("{} shapes after recovery", store.shape_count()));
    }
    Ok(())
}

/// Reads through `ShapeHandle::visit`, collecting what it lends into a
/// `ReadOutcome` so visit answers compare like read answers.
pub fn visit_outcome(
    h: &shapebuf::ShapeHandle,
    after: LogOffset,
    upto: LogOffset,
) -> shapebuf::ReadOutcome {
    let mut entries = Vec::new();
    let v = h
        .visit(after, upto, |e| entries.push(e.clone()))
        .expect("ShapeHandle::visit");
    assert_eq!(v.visited, entries.len());
    shapebuf::ReadOutcome {
        entries,
        from_disk: v.from_disk,
        dead: v.dead,
        raced: v.raced,
    }
}
