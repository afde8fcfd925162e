//! Model 1: reads race the writer's append, commit, growth, flush and trim.
//! Every read is the range of a committed prefix of the log, in order: no
//! gap, no duplicate, nothing uncommitted, no partial transaction.
#![cfg(loom)]

use std::sync::Arc;

use loom_tests::{assert_committed_read, e, model_outcomes, shape_with_writer, Outcomes};
use shapebuf::loom_api::{Fault, MemDisk, Shape, Writer};
use shapebuf::{Entry, LogOffset};

/// A scenario: the log it produces, its commit points (entry counts at
/// which transactions end), what the writer does before the readers start
/// and what it does concurrently with them.
struct Scenario {
    log: fn() -> Vec<Entry>,
    commits: &'static [u64],
    before: fn(&mut Writer, &MemDisk),
    during: fn(&mut Writer, &MemDisk),
}

/// 1a. The segment starts with one slot, so transaction 2's two appends
/// each grow it (two segment swaps) before its commit.
const GROW: Scenario = Scenario {
    log: || vec![e(1, 0), e(2, 0), e(2, 1)],
    commits: &[0, 1, 3],
    before: |_, _| {},
    during: |w, _| {
        w.append(e(1, 0));
        w.commit(1);
        w.append(e(2, 0));
        w.append(e(2, 1));
        w.commit(3);
    },
};

/// 1b. Transaction 1 (two entries, committed before the readers start) is
/// flushed: written, persisted published, and the segment trimmed (a swap
/// to a segment starting at entry 2 with base 1.1); then transaction 2 goes
/// into the trimmed segment.
const TRIM: Scenario = Scenario {
    log: || vec![e(1, 0), e(1, 1), e(2, 0)],
    commits: &[2, 3],
    before: |w, _| {
        w.append(e(1, 0));
        w.append(e(1, 1));
        w.commit(2);
    },
    during: |w, disk| {
        w.flush(disk, 2, Some((2, LogOffset::new(1, 1))));
        w.append(e(2, 0));
        w.commit(3);
    },
};

/// 1e. As 1b, but the flush keeps a durable tail of one entry (a payload
/// of 3 bytes plus a 48-byte slot): the trimmed segment starts at entry 1
/// (base 1.0) and still holds the durable 1.1.
const TRIM_KEEP_ONE: Scenario = Scenario {
    log: || vec![e(1, 0), e(1, 1), e(2, 0)],
    commits: &[2, 3],
    before: |w, disk| {
        w.retain(51);
        (TRIM.before)(w, disk);
    },
    during: TRIM.during,
};

/// 1c. Both: 1a's steps (growth, commits), then a flush + trim, and a
/// commit into the trimmed segment.
const ALL_STEPS: Scenario = Scenario {
    log: || vec![e(1, 0), e(2, 0), e(2, 1), e(3, 0)],
    commits: &[0, 1, 3, 4],
    before: |_, _| {},
    during: |w, disk| {
        (GROW.during)(w, disk);
        w.flush(disk, 3, Some((3, LogOffset::new(2, 1))));
        w.append(e(3, 0));
        w.commit(4);
    },
};

/// A writer thread running `sc.during` and one reader per range (the first
/// on the model's main thread), each reading its range once; then, once
/// everything is joined, a read of everything.
fn run(
    name: &'static str,
    bound: usize,
    fault: Fault,
    sc: &'static Scenario,
    ranges: &'static [(LogOffset, LogOffset)],
) -> Outcomes {
    model_outcomes(name, bound, move |seen| {
        let (shape, disk, mut w) = shape_with_writer(fault, []);
        (sc.before)(&mut w, &disk);
        let writer = {
            let disk = Arc::clone(&disk);
            loom::thread::spawn(move || (sc.during)(&mut w, &disk))
        };
        let readers: Vec<_> = ranges[1..]
            .iter()
            .map(|&range| {
                let (shape, disk, seen) = (Arc::clone(&shape), Arc::clone(&disk), seen.clone());
                loom::thread::spawn(move || read(sc, &shape, &disk, range, &seen))
            })
            .collect();
        read(sc, &shape, &disk, ranges[0], seen);
        writer.join().expect("writer");
        for r in readers {
            r.join().expect("reader");
        }
        let all = shape.read(&disk, LogOffset::ZERO, LogOffset::MAX);
        assert_eq!(all.entries, (sc.log)(), "quiescent read");
    })
}

fn read(
    sc: &Scenario,
    shape: &Shape,
    disk: &MemDisk,
    range: (LogOffset, LogOffset),
    seen: &Outcomes,
) {
    let at_least = shape.committed();
    let out = shape.read(disk, range.0, range.1);
    assert_committed_read(&out.entries, &(sc.log)(), range, sc.commits, at_least);
    seen.read(&out);
}

const ALL: (LogOffset, LogOffset) = (LogOffset::ZERO, LogOffset::MAX);
/// From above the first entry: with a trimmed segment (base above 1.0)
/// the read stitches disk and memory.
const FROM_1_0: (LogOffset, LogOffset) = (LogOffset { tx: 1, op: 0 }, LogOffset::MAX);

#[test]
fn read_vs_append_commit_grow() {
    let seen = run(
        "1a read vs append+commit+grow",
        3,
        Fault::None,
        &GROW,
        &[ALL],
    );
    seen.assert_seen(
        "1a",
        &[
            "0 entries, 0 from disk",
            "1 entries, 0 from disk",
            "1 entries, 0 from disk, raced",
            "3 entries, 0 from disk",
        ],
    );
}

#[test]
fn read_vs_flush_trim() {
    let seen = run("1b read vs flush+trim", 3, Fault::None, &TRIM, &[FROM_1_0]);
    // The untrimmed segment (possibly replaced during the read), the
    // trimmed one (entry 1.1 from disk), and transaction 2 on top.
    seen.assert_seen(
        "1b",
        &[
            "1 entries, 0 from disk",
            "1 entries, 0 from disk, raced",
            "1 entries, 1 from disk",
            "2 entries, 1 from disk",
        ],
    );
}

#[test]
fn read_vs_flush_trim_keeping_a_tail() {
    let seen = run(
        "1e read vs flush+trim keeping a tail",
        3,
        Fault::None,
        &TRIM_KEEP_ONE,
        &[ALL],
    );
    // Entry 1.0 is on disk once the trimmed segment is in; 1.1 never is
    // read from disk.
    seen.assert_seen(
        "1e",
        &[
            "2 entries, 0 from disk",
            "2 entries, 0 from disk, raced",
            "2 entries, 1 from disk",
            "3 entries, 1 from disk",
        ],
    );
}

#[test]
fn read_vs_all_steps() {
    let seen = run(
        "1c read vs all writer steps",
        3,
        Fault::None,
        &ALL_STEPS,
        &[ALL],
    );
    seen.assert_seen(
        "1c",
        &[
            "0 entries, 0 from disk",
            "1 entries, 0 from disk",
            "3 entries, 0 from disk",
            "3 entries, 3 from disk",
            "4 entries, 3 from disk",
        ],
    );
}

/// Three threads: bound 1 (bound 2 is 1.7 million executions, minutes).
#[test]
fn two_reads_vs_flush_trim() {
    let seen = run(
        "1d two reads vs flush+trim",
        1,
        Fault::None,
        &TRIM,
        &[ALL, FROM_1_0],
    );
    seen.assert_seen(
        "1d",
        &[
            "1 entries, 0 from disk",
            "1 entries, 0 from disk, raced",
            "1 entries, 1 from disk",
            "2 entries, 0 from disk",
            "3 entries, 2 from disk",
        ],
    );
}

/// Twin: the reader loads the segment before the committed watermark. It
/// can take the two-slot segment of between the growths and then the
/// watermark of after the commit: a read that ends inside transaction 2.
#[test]
#[should_panic(expected = "read ends inside a transaction")]
fn twin_view_loads_segment_first() {
    let fault = Fault::ViewSegmentFirst;
    run("1a twin: segment before watermark", 3, fault, &GROW, &[ALL]);
}

/// Twin: persisted is published and the segment trimmed before the entries
/// are written: a reader that loads the trimmed segment (start 2, base 1.1)
/// finds the disk short.
#[test]
#[should_panic(expected = "disk short")]
fn twin_trim_before_write() {
    let fault = Fault::TrimBeforeWrite;
    run("1b twin: trim before write", 3, fault, &TRIM, &[FROM_1_0]);
}

/// Twin of 1e: the tail-keeping trim swaps in before the write; a reader
/// of everything that loads it (start 1, base 1.0) finds entry 1.0 missing
/// from the disk.
#[test]
#[should_panic(expected = "disk short")]
fn twin_trim_keeping_a_tail_before_write() {
    let fault = Fault::TrimBeforeWrite;
    let sc = &TRIM_KEEP_ONE;
    run("1e twin: trim before write", 3, fault, sc, &[ALL]);
}

/// Twin of 1c: 1b's fault in the whole script; the read of everything that
/// loads the trimmed segment (start 3, base 2.1) finds the disk short.
#[test]
#[should_panic(expected = "disk short")]
fn twin_all_steps_trim_before_write() {
    let fault = Fault::TrimBeforeWrite;
    run("1c twin: trim before write", 3, fault, &ALL_STEPS, &[ALL]);
}

/// Twin of 1d: 1b's fault with two readers, at 1d's bound.
#[test]
#[should_panic(expected = "disk short")]
fn twin_two_reads_trim_before_write() {
    let fault = Fault::TrimBeforeWrite;
    run(
        "1d twin: trim before write",
        1,
        fault,
        &TRIM,
        &[ALL, FROM_1_0],
    );
}
