//! Power loss at every file-system operation of a workload that removes
//! shapes, with torn write-back at several byte positions (as
//! `tests/crash_points.rs`): a removed shape comes back whole or not at all,
//! never once its removal was acknowledged; its id, created again, never
//! shows the old shape's entries; a shape nobody removes keeps its
//! acknowledged prefix; and what the first open after the crash decides
//! (removals it completes included) is final: a second open, an open
//! after another power cut, and an open after a power cut at any
//! operation of that first open (torn 0) find the same.
//!
//! The workload, on one `SimFs` (`file_bytes` 200, so logs roll files),
//! removes a shape by each path a removal can take:
//!
//! - "a": ten flushed transactions (several files) and an open one; removed
//!   through its live writer (`ShapeWriter::remove`: the state is open, its
//!   files go when the epoch drops it, in a `Store::collect` loop).
//! - "b": two flushed one-entry transactions (one file), terminated (a
//!   small log: the shape closes); removed with `Store::remove` (closed:
//!   the files go at once).
//! - "d": four flushed transactions (several files), terminated (a log of
//!   several files stays open); `Store::remove` takes its writer claim.
//! - "e": two flushed transactions, writer dropped without terminating;
//!   `Store::remove`.
//! - "f": a committed transaction never flushed (no file), writer dropped;
//!   `Store::remove` (no tombstone).
//!
//! Then "a" is created again (with other payloads at the same offsets)
//! while the old "a"'s files are still there, and "b" after its stem was
//! freed (the new one may get the same stem: the same file names); "c",
//! never removed, is written throughout.

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

/// One id: the shape that is removed (or never is), and the one created
/// again with the same id after the removal.
#[derive(Clone, Debug, Default)]
struct Id {
    old: Log,
    removal: Removal,
    /// A writer was opened for the id after its removal.
    recreated: bool,
    new: Log,
}

type Model = BTreeMap<&'static str, Id>;

const IDS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

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

/// The current shape of `id`: the old one until its removal is
/// acknowledged, then the new one.
fn current<'m>(m: &'m mut Model, id: &'static str) -> &'m mut Log {
    let e = m.entry(id).or_default();
    if e.removal == Removal::Acked {
        &mut e.new
    } else {
        &mut e.old
    }
}

/// Appends transaction `tx` (`ops` entries) to `id` and commits it.
fn write_tx(
    w: &mut ShapeWriter,
    m: &mut Model,
    id: &'static str,
    tx: u64,
    ops: u64,
) -> shapebuf::Result<()> {
    let generation = if m.get(id).is_some_and(|e| e.recreated) {
        format!("{id}2")
    } else {
        format!("{id}1")
    };
    let entries: Entries = (0..ops)
        .map(|op| {
            let o = LogOffset::new(tx, op);
            (o, payload(&generation, o))
        })
        .collect();
    for (o, p) in &entries {
        w.append(*o, p.clone())?;
    }
    w.commit()?;
    current(m, id).committed.extend(entries);
    Ok(())
}

/// Flushes `id`'s writer and records the acknowledgement.
fn flush(w: &mut ShapeWriter, m: &mut Model, id: &'static str) -> shapebuf::Result<()> {
    w.flush()?;
    current(m, id).ack();
    Ok(())
}

fn terminate(w: ShapeWriter, m: &mut Model, id: &'static str) -> shapebuf::Result<()> {
    w.terminate()?;
    current(m, id).ack();
    Ok(())
}

/// A new writer for `id`: after a removal, a new shape.
fn writer(store: &Store, m: &mut Model, id: &'static str) -> shapebuf::Result<ShapeWriter> {
    let w = store.writer(id)?;
    let e = m.entry(id).or_default();
    if e.removal == Removal::Acked {
        e.recreated = true;
    }
    Ok(w)
}

/// Removes `id` (through `w` if given), recording when the removal started
/// and when it was acknowledged, and checks that the store no longer knows
/// it.
fn remove(
    store: &Store,
    w: Option<ShapeWriter>,
    m: &mut Model,
    id: &'static str,
) -> shapebuf::Result<()> {
    let e = m.entry(id).or_default();
    // Everything the removed shapes committed was acknowledged: "whole" is
    // exact.
    assert_eq!(e.old.acked, e.old.committed.len(), "{id:?} not flushed");
    e.removal = Removal::Started;
    match w {
        Some(w) => w.remove()?,
        None => store.remove(id)?,
    };
    m.get_mut(id).unwrap().removal = Removal::Acked;
    assert!(matches!(
        store.read(id, LogOffset::ZERO, LogOffset::MAX),
        Err(Error::UnknownShape(_))
    ));
    Ok(())
}

/// Runs the workload until it ends or an operation fails; `model` records
/// what happened up to that point. With `clean`, also checks that the
/// workload does what it is meant to (files rolled, deleted).
fn run(fs: &SimFs, m: &mut Model, clean: bool) -> shapebuf::Result<()> {
    let store = Store::open_with_fs(DIR, config(), Arc::new(fs.clone()))?;
    let mut wc = writer(&store, m, "c")?;
    let mut ctx = 0;
    let mut c_tx = |wc: &mut ShapeWriter, m: &mut Model, flush_it: bool| {
        ctx += 1;
        write_tx(wc, m, "c", ctx, 1 + ctx % 2)?;
        if flush_it {
            flush(wc, m, "c")?;
        }
        shapebuf::Result::Ok(())
    };
    // The stems created by a step, with their number of files.
    let mut seen = listing(fs).0;
    let mut new_stems = |fs: &SimFs| {
        let now = listing(fs).0;
        let new: Vec<usize> = now
            .iter()
            .filter(|(s, _)| !seen.contains_key(*s))
            .map(|(_, n)| *n)
            .collect();
        seen = now;
        new
    };

    // "a": several flushed transactions, several files; its writer stays.
    let mut wa = writer(&store, m, "a")?;
    for tx in 1..=10 {
        write_tx(&mut wa, m, "a", tx, 2)?;
        flush(&mut wa, m, "a")?;
        c_tx(&mut wc, m, tx % 2 == 0)?;
    }
    let stems = new_stems(fs);
    if clean {
        assert!(
            stems.len() == 2 && stems.iter().all(|n| *n >= 3),
            "\"a\" and \"c\" must have several files: {stems:?}"
        );
    }

    // "b": two flushed transactions, one file, terminated (and closed).
    let mut wb = writer(&store, m, "b")?;
    for tx in 1..=2 {
        write_tx(&mut wb, m, "b", tx, 1)?;
        flush(&mut wb, m, "b")?;
    }
    terminate(wb, m, "b")?;
    let stems = new_stems(fs);
    if clean {
        assert_eq!(stems, [1], "\"b\" must have one file");
    }

    // "d": several files, terminated (it stays open).
    let mut wd = writer(&store, m, "d")?;
    for tx in 1..=4 {
        write_tx(&mut wd, m, "d", tx, 2)?;
        flush(&mut wd, m, "d")?;
    }
    terminate(wd, m, "d")?;
    let stems = new_stems(fs);
    if clean {
        assert!(
            matches!(stems[..], [n] if n >= 2),
            "\"d\" must have several files: {stems:?}"
        );
    }
    c_tx(&mut wc, m, true)?;

    // "e": flushed, then its writer dropped; "f": committed, never flushed
    // (no file), writer dropped.
    let mut we = writer(&store, m, "e")?;
    for tx in 1..=2 {
        write_tx(&mut we, m, "e", tx, 1)?;
        flush(&mut we, m, "e")?;
    }
    drop(we);
    let mut wf = writer(&store, m, "f")?;
    write_tx(&mut wf, m, "f", 1, 1)?;
    drop(wf);
    // Dropping it handed nothing to the disk (flushes are explicit).
    current(m, "f").committed.clear();

    // The removals: "a" through its writer, with a transaction open.
    let old_handle = store.handle("a")?;
    for op in 0..2 {
        let o = LogOffset::new(11, op);
        wa.append(o, payload("never", o))?;
    }
    c_tx(&mut wc, m, false)?;
    remove(&store, Some(wa), m, "a")?;
    assert!(matches!(
        old_handle.read(LogOffset::ZERO, LogOffset::MAX),
        Err(Error::ShapeRemoved(_))
    ));
    c_tx(&mut wc, m, true)?;
    for id in ["b", "d", "e", "f"] {
        remove(&store, None, m, id)?;
    }

    // "a" again, while the old one's files are still there.
    let mut wa = writer(&store, m, "a")?;
    write_tx(&mut wa, m, "a", 1, 2)?;
    flush(&mut wa, m, "a")?;
    c_tx(&mut wc, m, false)?;
    for _ in 0..4 {
        store.collect();
    }
    let (files, tombstones) = listing(fs);
    if clean {
        // Only the new "a" and "c" have files now: the removed shapes'
        // went with their states, and no tombstone is left.
        assert_eq!(files.len(), 2, "stems left after the removals: {files:?}");
        assert!(tombstones.is_empty(), "tombstones left: {tombstones:?}");
    }
    // "b" again: its old stem is free.
    let mut wb = writer(&store, m, "b")?;
    for tx in 1..=2 {
        write_tx(&mut wb, m, "b", tx, 1)?;
        flush(&mut wb, m, "b")?;
    }
    terminate(wb, m, "b")?;
    for tx in 2..=12 {
        write_tx(&mut wa, m, "a", tx, 2)?;
        if tx % 3 != 0 {
            flush(&mut wa, m, "a")?;
        }
        c_tx(&mut wc, m, tx % 2 == 1)?;
    }
    terminate(wa, m, "a")?;
    terminate(wc, m, "c")?;
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
    for id in IDS {
        let got = &state[id];
        let Some(model) = m.get(id) else {
            if got.is_some() {
                return Err(format!("{id:?} appeared from nowhere"));
            }
            continue;
        };
        match model.removal {
            Removal::NotStarted => prefix(id, got, &model.old)?,
            Removal::Started => whole_or_absent(id, got, &model.old)?,
            // Gone for good: the id is the new shape or nothing.
            Removal::Acked if model.recreated => prefix(id, got, &model.new)?,
            Removal::Acked => {
                if let Some(got) = got {
                    return Err(format!(
                        "{id:?} came back after its removal was acknowledged: {:?}",
                        offsets(got)
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The model in a line: per id, acknowledged/committed entries of the old
/// shape, the removal, and of the new one.
fn summary(m: &Model) -> String {
    m.iter()
        .map(|(id, e)| {
            format!(
                "{id}: {}/{} {:?} {}/{}",
                e.old.acked,
                e.old.committed.len(),
                e.removal,
                e.new.acked,
                e.new.committed.len()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every crash scenario; returns how many (crash point, torn position)
/// pairs were checked, and how many power cuts during the open after one.
fn enumerate() -> (usize, usize) {
    let clean = SimFs::new();
    let mut clean_model = Model::default();
    run(&clean, &mut clean_model, true).expect("clean run");
    let total = clean.ops();
    let state = observe(&clean).expect("clean run reopens");
    check(&state, &clean_model).expect("clean run verifies");
    let len = |id| state[id].as_ref().map(Vec::len);
    assert_eq!(
        IDS.map(len),
        [Some(24), Some(2), Some(38), None, None, None],
        "the clean run's end"
    );
    assert!(total > 250, "workload too small: {total} ops");
    let mut scenarios = 0;
    let mut open_cuts = 0;
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
                     model (acked/committed, removal, acked/committed): {}",
                    fs.refused(),
                    summary(&model),
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
            // A second power cut during that open (which completes the
            // interrupted removals): the open after it finds the same.
            let open_ops = {
                let f = fs.after_power_loss(torn);
                let before = f.ops();
                let store = Store::open_with_fs(DIR, config(), Arc::new(f.clone()))
                    .unwrap_or_else(|e| fail(format!("reopen failed: {e}")));
                let n = f.ops() - before;
                drop(store);
                n
            };
            for k in 0..open_ops {
                let f = fs.after_power_loss(torn);
                f.cut_power_at(k);
                drop(Store::open_with_fs(DIR, config(), Arc::new(f.clone())));
                assert!(f.is_powered_off());
                let again = observe(&f.after_power_loss(0)).unwrap_or_else(|e| {
                    fail(format!("open after a power cut at op {k} of an open: {e}"))
                });
                check(&again, &model).unwrap_or_else(|e| {
                    fail(format!("after a power cut at op {k} of an open: {e}"))
                });
                if again != first {
                    fail(format!(
                        "open after a power cut at op {k} of an open found {again:?}, \
                         an uninterrupted open {first:?}"
                    ));
                }
                open_cuts += 1;
            }
        }
    }
    (scenarios, open_cuts)
}

#[test]
fn every_crash_point_of_a_removal_leaves_all_or_nothing() {
    let (n, open_cuts) = enumerate();
    eprintln!(
        "crash_points_remove: {n} scenarios, {open_cuts} more with a power cut during the open"
    );
    assert!(
        n >= 1000,
        "must enumerate at least 1000 crash scenarios, got {n}"
    );
    assert!(
        open_cuts >= 500,
        "must cut the power during at least 500 opens, got {open_cuts}"
    );
}
