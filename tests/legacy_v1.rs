//! Log files written in format version 1 (tests/fixtures/v1, see its
//! README) open, read, and take appends: new batches go after the version-1
//! records of a last file, rolled files are version 2, and a reopen reads
//! everything. Damage to the version-1 records of a file that version-2
//! batches were appended to is corruption (a later intact batch header
//! proves they were durable); a torn tail there is still a torn tail.

use std::path::{Path, PathBuf};

use shapebuf::{Config, Error, LogOffset, Store};

const MULTI: &str = "multi";
const TAIL: &str = "tail";
const COLLECTED: &str = "collected\u{0}../x";
/// The stem of the `tail` shape's only file (fixtures README).
const TAIL_FILE: &str = "d94c56ef0798d723-0.00000000000000000000.log";

fn payload(shape: &str, o: LogOffset) -> Vec<u8> {
    format!("{shape}|{o}|{}", "v1".repeat((o.tx % 5) as usize)).into_bytes()
}

fn config() -> Config {
    Config {
        file_bytes: 600,
        flush_bytes: usize::MAX,
        flush_threads: 0,
        ..Config::default()
    }
}

/// What the fixtures hold, per shape: the entries a reader gets (from the
/// earliest offset that was not collected).
fn v1_entries(shape: &str) -> Vec<LogOffset> {
    match shape {
        MULTI => (1..=24)
            .flat_map(|tx| (0..2).map(move |op| LogOffset::new(tx, op)))
            .collect(),
        TAIL => (1..=5).map(|tx| LogOffset::new(tx, 0)).collect(),
        // Entries 12.. of (10 * tx, 0), tx 1..=24: the file of entries
        // 0..12 was collected.
        COLLECTED => (13..=24).map(|tx| LogOffset::new(10 * tx, 0)).collect(),
        _ => unreachable!(),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let shapes = to.join("shapes");
    std::fs::create_dir_all(&shapes).expect("shapes dir");
    for e in std::fs::read_dir(from.join("shapes")).expect("list") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, shapes.join(p.file_name().expect("name"))).expect("copy");
    }
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("shapes"))
        .expect("list")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

/// Reads all of `shape` that was not collected, checking payloads.
fn read_all(store: &Store, shape: &str) -> shapebuf::Result<Vec<LogOffset>> {
    let r = match store.read(shape, LogOffset::ZERO, LogOffset::MAX) {
        Err(Error::OffsetCollected { earliest, .. }) => {
            store.read(shape, earliest, LogOffset::MAX)?
        }
        r => r?,
    };
    for e in &r.entries {
        assert_eq!(
            e.payload[..],
            payload(shape, e.offset)[..],
            "{shape:?} {}",
            e.offset
        );
    }
    Ok(r.entries.iter().map(|e| e.offset).collect())
}

/// Appends `n` one-entry transactions to `shape` after `last`, flushing
/// after each `per_flush`; returns their offsets.
fn append(store: &Store, shape: &str, last: LogOffset, n: u64, per_flush: u64) -> Vec<LogOffset> {
    let mut w = store.writer(shape).expect("writer");
    let mut out = Vec::new();
    for i in 1..=n {
        let o = LogOffset::new(last.tx + i, 0);
        w.append(o, payload(shape, o)).expect("append");
        w.commit().expect("commit");
        out.push(o);
        if i % per_flush == 0 {
            w.flush().expect("flush");
        }
    }
    w.terminate().expect("terminate");
    out
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

/// Opens a copy of the fixtures, checks them, appends to every shape;
/// returns the directory and what each shape holds now.
fn upgraded() -> (tempfile::TempDir, Vec<(&'static str, Vec<LogOffset>)>) {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixtures(), dir.path());
    let v1_files = log_files(dir.path());
    assert_eq!(v1_files.len(), 5, "the fixtures");
    let store = Store::open_with(dir.path(), config()).expect("open version-1 files");
    let mut want = Vec::new();
    for shape in [MULTI, TAIL, COLLECTED] {
        let mut entries = v1_entries(shape);
        assert_eq!(
            read_all(&store, shape).expect("read"),
            entries,
            "{shape:?} as written by version 1"
        );
        let last = *entries.last().expect("entries");
        // Two flushes each; `multi` writes enough to roll a file.
        let n = if shape == MULTI { 30 } else { 6 };
        entries.extend(append(&store, shape, last, n, n / 2));
        assert_eq!(read_all(&store, shape).expect("read"), entries);
        want.push((shape, entries));
    }
    drop(store);
    // Version-1 files keep their magic; files rolled now are version 2.
    let files = log_files(dir.path());
    for f in &files {
        let magic = &std::fs::read(f).expect("read")[..8];
        let want_magic: &[u8] = if v1_files.contains(f) {
            b"SHPBLOG\x01"
        } else {
            b"SHPBLOG\x02"
        };
        assert_eq!(magic, want_magic, "{}", f.display());
    }
    assert!(files.len() > v1_files.len(), "multi rolled a new file");
    (dir, want)
}

#[test]
fn version_1_files_open_read_and_take_appends() {
    let (dir, want) = upgraded();
    let store = Store::open_with(dir.path(), config()).expect("reopen");
    for (shape, entries) in &want {
        assert_eq!(
            &read_all(&store, shape).expect("read"),
            entries,
            "{shape:?} after reopening"
        );
    }
    // And once more, after appending to the reopened log.
    let tail = &want[1].1;
    let more = append(&store, TAIL, *tail.last().expect("entries"), 3, 3);
    drop(store);
    let store = Store::open_with(dir.path(), config()).expect("reopen");
    let mut expect = tail.clone();
    expect.extend(more);
    assert_eq!(read_all(&store, TAIL).expect("read"), expect);
}

#[test]
fn damaged_version_1_records_before_version_2_batches_are_corruption() {
    let (dir, want) = upgraded();
    let path = dir.path().join("shapes").join(TAIL_FILE);
    let image = std::fs::read(&path).expect("read");
    // Byte 60 lies in the first version-1 entry (the header is 8 + 24 + 4 +
    // 4 + 4 bytes for the id "tail"; the record's body starts at 52): its
    // `tx` field.
    let mut damaged = image.clone();
    damaged[60] ^= 0x10;
    std::fs::write(&path, &damaged).expect("write");
    let verdict = match Store::open_with(dir.path(), config()) {
        Err(e) => Err(e),
        Ok(store) => read_all(&store, TAIL),
    };
    assert!(
        matches!(verdict, Err(Error::Corrupt { .. })),
        "damage to acknowledged version-1 records: {verdict:?}"
    );
    assert_eq!(
        std::fs::read(&path).expect("read"),
        damaged,
        "a corruption verdict changes no file"
    );

    // A torn tail in the same file is still a torn tail: cut into the last
    // batch's commit record (before its 17-byte marker), and that batch's
    // entries go, nothing else.
    std::fs::write(&path, &image[..image.len() - 20]).expect("write");
    let store = Store::open_with(dir.path(), config()).expect("open after a torn tail");
    let tail = &want[1].1;
    assert_eq!(
        read_all(&store, TAIL).expect("read"),
        tail[..tail.len() - 3],
        "the torn last batch (3 entries) is gone, the rest is there"
    );
}
