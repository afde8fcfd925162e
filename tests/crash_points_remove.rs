//! Power loss at every file-system operation of a workload that removes
//! shapes, with torn write-back at several byte positions (as
//! `tests/crash_points.rs`): a removed shape comes back whole or not at all,
//! never once its removal was acknowledged; its id, created again, never
//! shows the old shape's entries; a shape nobody removes keeps its
//! acknowledged prefix; and what the first open after the crash decides
//! (removals it completes included) is final.
//!
//! The workload, on one `SimFs` (`file_bytes` 200, so logs roll files):
//!
//! 1. "a" gets ten flushed transactions (several files) and keeps its
//!    writer; "c", never removed, gets a transaction after each (every
//!    other one flushed) and throughout the rest.
//! 2. "b" gets two flushed one-entry transactions (one file) and is
//!    terminated (a small log: the shape closes).
//! 3. "a" gets an open transaction, then is removed through its writer
//!    (`ShapeWriter::remove`: the shape is open, its files go when the
//!    epoch drops its state); "b" is removed with `Store::remove` (closed:
//!    its files go at once).
//! 4. "a" is created again (a new, empty shape) with other payloads at the
//!    same offsets, flushed; `Store::collect` runs until the old "a"'s
//!    files are gone; "a" gets more transactions (most flushed); "a" and "c" are
//!    terminated.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use shapebuf::fs::{Fs, Op, SimFs};
use shapebuf::{Config, Error, LogOffset, ShapeWriter, Store};

const TORN: [usize; 4] = [0, 1, 9, 100];
/// The framed size of a `synced` marker (docs/format.md).
const MARKER: usize = 17;
const DIR: &str = "/db";
const IDS: [&str; 3] = ["a", "b", "c"];

fn config() -> Config {
    Config {
        // Only explicit flushes, terminates and removals write: with no
        // flusher thread (batches written on the writer's thread) and no
        // timed flush, the order of file operations is the same every run.
        flush_bytes: 1 << 20,
        flush_interval: std::time::Duration::from_secs(3600),
        flush_threads: 0,
        file_bytes: 200,
        segment_capacity: 2,
        index_interval: 120,
        ..Config::default()
    }
}

/// The payload of entry `o` of generation `generation` of a shape: the
/// recreated "a" ("a2") uses the old one's ("a1") offsets with other bytes.
fn payload(generation: &str, o: LogOffset) -> Bytes {
    let n = if generation == "b" {
        1
    } else {
        5 + (o.tx * 7 + o.op * 3) % 20
    };
    Bytes::from(format!("{generation}:{o}:{}", "x".repeat(n as usize)))
}

type Entries = Vec<(LogOffset, Bytes)>;

/// One shape generation: its committed entries and how many of them a
/// successful flush or terminate acknowledged.
#[derive(Clone, Debug, Default)]
struct Log {
    committed: Entries,
    acked: usize,
}

impl Log {
    fn ack(&mut self) {
        self.acked = self.committed.len();
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Removal {
    #[default]
    NotStarted,
    /// The removal call was made and has not returned Ok.
    Started,
    /// The removal call returned Ok: the removal is acknowledged.
    Acked,
}

#[derive(Clone, Debug, Default)]
struct Model {
    old_a: Log,
    b: Log,
    c: Log,
    new_a: Log,
    a_removal: Removal,
    b_removal: Removal,
}

/// Appends transaction `tx` (`ops` entries of `generation`) and commits it.
fn write_tx(
    w: &mut ShapeWriter,
    log: &mut Log,
    generation: &str,
    tx: u64,
    ops: u64,
) -> shapebuf::Result<()> {
    let entries: Entries = (0..ops)
        .map(|op| {
            let o = LogOffset::new(tx, op);
            (o, payload(generation, o))
        })
        .collect();
    for (o, p) in &entries {
        w.append(*o, p.clone())?;
    }
    w.commit()?;
    log.committed.extend(entries);
    Ok(())
}

/// The log files of each stem in the store's directory, and the stems
/// with a tombstone. (A listing is a file-system operation: the workload
/// lists in every run, so that its operations are numbered alike; after a
/// power cut it finds nothing.)
fn listing(fs: &dyn Fs) -> (BTreeMap<String, usize>, Vec<String>) {
    let mut files = BTreeMap::new();
    let mut tombstones = Vec::new();
    for p in fs
        .read_dir(&Path::new(DIR).join("shapes"))
        .unwrap_or_default()
    {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".removed") {
            tombstones.push(stem.to_owned());
        } else if let Some(rest) = name.strip_suffix(".log") {
            let stem = rest.split('.').next().unwrap().to_owned();
            *files.entry(stem).or_insert(0) += 1;
        }
    }
    (files, tombstones)
}

/// Runs the workload until it ends or an operation fails; `model` records
/// what happened up to that point. With `clean`, also checks that the
/// workload does what it is meant to (files rolled, deleted).
fn run(fs: &SimFs, model: &mut Model, clean: bool) -> shapebuf::Result<()> {
    let store = Store::open_with_fs(DIR, config(), Arc::new(fs.clone()))?;
    let mut wc = store.writer("c")?;
    let mut ctx = 0;
    let mut c_tx = |wc: &mut ShapeWriter, m: &mut Model, flush: bool| {
        ctx += 1;
        write_tx(wc, &mut m.c, "c", ctx, 1 + ctx % 2)?;
        if flush {
            wc.flush()?;
            m.c.ack();
        }
        shapebuf::Result::Ok(())
    };

    // 1. "a": several flushed transactions, several files; its writer stays.
    let mut wa = store.writer("a")?;
    for tx in 1..=10 {
        write_tx(&mut wa, &mut model.old_a, "a1", tx, 2)?;
        wa.flush()?;
        model.old_a.ack();
        c_tx(&mut wc, model, tx % 2 == 0)?;
    }
    let (before_b, _) = listing(fs);
    if clean {
        assert!(
            before_b.values().any(|n| *n >= 3),
            "\"a\" must have several files: {before_b:?}"
        );
    }

    // 2. "b": two flushed transactions, one file, terminated (and closed).
    let mut wb = store.writer("b")?;
    for tx in 1..=2 {
        write_tx(&mut wb, &mut model.b, "b", tx, 1)?;
        wb.flush()?;
        model.b.ack();
    }
    wb.terminate()?;
    model.b.ack();
    let (after_b, _) = listing(fs);
    if clean {
        let new: Vec<_> = after_b
            .iter()
            .filter(|(s, _)| !before_b.contains_key(*s))
            .collect();
        assert!(
            matches!(new[..], [(_, 1)]),
            "\"b\" must have one file: {new:?}"
        );
    }
    c_tx(&mut wc, model, true)?;

    // 3. Remove "a" through its writer (with a transaction open), then "b"
    //    (closed) through the store.
    let old_handle = store.handle("a")?;
    // An open transaction, never committed: it must never show.
    for op in 0..2 {
        let o = LogOffset::new(11, op);
        wa.append(o, payload("a1", o))?;
    }
    assert_eq!(model.old_a.acked, model.old_a.committed.len());
    c_tx(&mut wc, model, false)?;
    model.a_removal = Removal::Started;
    wa.remove()?;
    model.a_removal = Removal::Acked;
    assert!(matches!(
        old_handle.read(LogOffset::ZERO, LogOffset::MAX),
        Err(Error::ShapeRemoved(_))
    ));
    assert!(matches!(
        store.read("a", LogOffset::ZERO, LogOffset::MAX),
        Err(Error::UnknownShape(_))
    ));
    c_tx(&mut wc, model, true)?;
    assert_eq!(model.b.acked, model.b.committed.len());
    model.b_removal = Removal::Started;
    store.remove("b")?;
    model.b_removal = Removal::Acked;
    assert!(matches!(
        store.read("b", LogOffset::ZERO, LogOffset::MAX),
        Err(Error::UnknownShape(_))
    ));

    // 4. "a" again: a new shape, other payloads at the same offsets.
    let mut wa = store.writer("a")?;
    write_tx(&mut wa, &mut model.new_a, "a2", 1, 2)?;
    wa.flush()?;
    model.new_a.ack();
    c_tx(&mut wc, model, false)?;
    for _ in 0..4 {
        store.collect();
    }
    let (files, tombstones) = listing(fs);
    if clean {
        // Only the new "a" and "c" have files now: the old "a"'s went with
        // its state, "b"'s with its removal, and no tombstone is left.
        assert_eq!(files.len(), 2, "stems left after the removals: {files:?}");
        assert!(tombstones.is_empty(), "tombstones left: {tombstones:?}");
    }
    for tx in 2..=12 {
        write_tx(&mut wa, &mut model.new_a, "a2", tx, 2)?;
        if tx % 3 != 0 {
            wa.flush()?;
            model.new_a.ack();
        }
        c_tx(&mut wc, model, tx % 2 == 1)?;
    }
    wa.terminate()?;
    model.new_a.ack();
    wc.terminate()?;
    model.c.ack();
    Ok(())
}

/// What a store holds: each shape's entries, or `None` if it is unknown.
type State = BTreeMap<&'static str, Option<Entries>>;

/// Opens the store on `fs` and reads every shape; any error but
/// `UnknownShape` is a failure.
fn observe(fs: &SimFs) -> Result<State, String> {
    let store = Store::open_with_fs(DIR, config(), Arc::new(fs.clone()))
        .map_err(|e| format!("reopen failed: {e}"))?;
    let mut state = State::new();
    for id in IDS {
        let got = match store.read(id, LogOffset::ZERO, LogOffset::MAX) {
            Ok(r) => Some(
                r.entries
                    .into_iter()
                    .map(|e| (e.offset, e.payload))
                    .collect(),
            ),
            Err(Error::UnknownShape(_)) => None,
            Err(e) => return Err(format!("read {id:?}: {e}")),
        };
        state.insert(id, got);
    }
    // The store knows each present shape once (no second stem of an id
    // left behind), and nothing else.
    let mut shapes = store.shapes().map_err(|e| format!("shapes: {e}"))?;
    shapes.sort();
    let present: Vec<Bytes> = state
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| Bytes::from_static(k.as_bytes()))
        .collect();
    if shapes != present {
        return Err(format!("shapes() {shapes:?}, readable {present:?}"));
    }
    if store.shape_count() != present.len() {
        return Err(format!(
            "shape_count {} with {} shapes readable",
            store.shape_count(),
            present.len()
        ));
    }
    drop(store);
    // The open finished every interrupted removal.
    let (_, tombstones) = listing(fs);
    if !tombstones.is_empty() {
        return Err(format!("tombstones left after open: {tombstones:?}"));
    }
    Ok(state)
}

/// `got` is an acknowledged prefix of `log`: at least its acknowledged
/// entries, at most its committed ones, exactly. `None` (unknown) passes
/// if nothing was acknowledged.
fn prefix(id: &str, got: &Option<Entries>, log: &Log) -> Result<(), String> {
    let Some(got) = got else {
        return if log.acked == 0 {
            Ok(())
        } else {
            Err(format!(
                "{id:?} lost with {} acknowledged entries",
                log.acked
            ))
        };
    };
    if got.len() < log.acked || !log.committed.starts_with(got) {
        return Err(format!(
            "{id:?} holds {:?}, acknowledged {} of {:?}",
            offsets(got),
            log.acked,
            offsets(&log.committed)
        ));
    }
    Ok(())
}

fn offsets(e: &Entries) -> Vec<String> {
    e.iter()
        .map(|(o, p)| format!("{o}={}", String::from_utf8_lossy(&p[..2])))
        .collect()
}

/// A removed shape (removal started, not acknowledged): whole or absent.
fn whole_or_absent(id: &str, got: &Option<Entries>, log: &Log) -> Result<(), String> {
    match got {
        None => Ok(()),
        Some(got) if *got == log.committed => Ok(()),
        Some(got) => Err(format!(
            "{id:?}, whose removal was under way, is partial: {:?} of {:?}",
            offsets(got),
            offsets(&log.committed)
        )),
    }
}

fn check(state: &State, m: &Model) -> Result<(), String> {
    let a = &state["a"];
    match m.a_removal {
        Removal::NotStarted => prefix("a", a, &m.old_a)?,
        Removal::Started => whole_or_absent("a", a, &m.old_a)?,
        // Gone for good: "a" is the new shape or nothing.
        Removal::Acked => prefix("a (recreated)", a, &m.new_a)?,
    }
    let b = &state["b"];
    match m.b_removal {
        Removal::NotStarted => prefix("b", b, &m.b)?,
        Removal::Started => whole_or_absent("b", b, &m.b)?,
        Removal::Acked if b.is_some() => {
            return Err(format!(
                "\"b\" came back after its removal was acknowledged: {:?}",
                offsets(b.as_ref().unwrap())
            ))
        }
        Removal::Acked => {}
    }
    prefix("c", &state["c"], &m.c)
}

/// Every crash scenario; returns how many (crash point, torn position)
/// pairs were checked.
fn enumerate() -> usize {
    let clean = SimFs::new();
    let mut clean_model = Model::default();
    run(&clean, &mut clean_model, true).expect("clean run");
    let total = clean.ops();
    let state = observe(&clean).expect("clean run reopens");
    check(&state, &clean_model).expect("clean run verifies");
    assert!(state["b"].is_none());
    assert_eq!(state["a"].as_ref().map(Vec::len), Some(24));
    assert!(total > 200, "workload too small: {total} ops");
    let mut scenarios = 0;
    for cut in 0..total {
        let fs = SimFs::new();
        fs.cut_power_at(cut);
        let mut model = Model::default();
        let res = run(&fs, &mut model, false);
        assert!(fs.is_powered_off());
        if res.is_ok() {
            // Only the last operation, the `synced` marker of the final
            // terminate, may fail unnoticed: its batch was synced before.
            let refused = fs.refused();
            assert!(
                cut + 1 == total && refused.is_some_and(|r| r.op == Op::Write && r.len == MARKER),
                "power cut at op {cut} of {total} went unnoticed ({refused:?})"
            );
        }
        for torn in TORN {
            let rebooted = fs.after_power_loss(torn);
            let fail = |why: String| -> ! {
                panic!(
                    "power cut at op {cut}/{total} ({:?}), torn {torn}: {why}\n\
                     model: old a {}/{}, b {}/{}, c {}/{}, new a {}/{} (acked/committed), \
                     removal of a {:?}, of b {:?}",
                    fs.refused(),
                    model.old_a.acked,
                    model.old_a.committed.len(),
                    model.b.acked,
                    model.b.committed.len(),
                    model.c.acked,
                    model.c.committed.len(),
                    model.new_a.acked,
                    model.new_a.committed.len(),
                    model.a_removal,
                    model.b_removal,
                )
            };
            let first = observe(&rebooted).unwrap_or_else(|e| fail(e));
            check(&first, &model).unwrap_or_else(|e| fail(e));
            // What that open decided is final: the same after another open,
            // and after a power cut right after it.
            let second = observe(&rebooted).unwrap_or_else(|e| fail(format!("second open: {e}")));
            if second != first {
                fail(format!("second open found {second:?}, first {first:?}"));
            }
            let third = observe(&rebooted.after_power_loss(0))
                .unwrap_or_else(|e| fail(format!("open after another power cut: {e}")));
            if third != first {
                fail(format!(
                    "open after another power cut found {third:?}, first {first:?}"
                ));
            }
            scenarios += 1;
        }
    }
    scenarios
}

#[test]
fn every_crash_point_of_a_removal_leaves_all_or_nothing() {
    let n = enumerate();
    eprintln!("crash_points_remove: {n} scenarios");
    assert!(
        n >= 800,
        "must enumerate at least 800 crash scenarios, got {n}"
    );
}
