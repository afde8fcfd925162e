//! Shape ids are untrusted bytes: `/`, `..`, `../../x`, NUL, 10 KB long,
//! non-UTF-8, differing only in case. Each gets its own log; no file is
//! created outside `<dir>/shapes/`; reads never mix shapes; after a reopen
//! every id maps back to its own data.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use shapebuf::{Config, LogOffset, Store};

fn hostile_ids() -> Vec<Vec<u8>> {
    let mut ids: Vec<Vec<u8>> = [
        &b"/"[..],
        b".",
        b"..",
        b"../../x",
        b"../../../../escaped",
        b"/etc/passwd",
        b"a/b",
        b"a\\b",
        b"shapes",
        b"../shapes/x",
        b"a\0b",
        b"\0",
        b"\0\0",
        b"\n",
        b" ",
        b"*",
        b"\xff\xfe\x00/..",
        b"\xc3\x28",
        b"Shape",
        b"shape",
        b"SHAPE",
        "é".as_bytes(),
        "e\u{301}".as_bytes(), // the same text, decomposed: other bytes
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect();
    // 10 KB, full of separators and dots.
    ids.push(b"../".iter().copied().cycle().take(10 * 1024).collect());
    // 10 KB of every byte value.
    ids.push((0..10 * 1024).map(|i| (i % 256) as u8).collect());
    // Same long prefix, different last byte.
    let mut twin = vec![b'z'; 5000];
    ids.push(twin.clone());
    twin[4999] = b'Z';
    ids.push(twin);
    let unique: BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "test ids are distinct");
    ids
}

/// Entries of shape number `i`: its payloads name the shape, so a mix-up
/// cannot go unnoticed.
fn entries(i: usize, round: u64) -> Vec<(LogOffset, Bytes)> {
    (0..3)
        .map(|op| {
            (
                LogOffset::new(round, op),
                Bytes::from(format!("shape #{i} round {round} op {op}")),
            )
        })
        .collect()
}

fn read_all(store: &Store, id: &[u8]) -> Vec<(LogOffset, Bytes)> {
    store
        .read(id, LogOffset::ZERO, LogOffset::MAX)
        .expect("read")
        .entries
        .into_iter()
        .map(|e| (e.offset, e.payload))
        .collect()
}

/// Every path under `top`, recursively (directories included).
fn walk(top: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![top.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("dir entry").path();
            let meta = std::fs::symlink_metadata(&p).expect("metadata");
            if meta.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// Nothing exists under `top` except the directories leading to the store,
/// its `LOCK`, and plain files directly inside `<root>/shapes/` with tame
/// names.
fn assert_contained(top: &Path, root: &Path) {
    let shapes = root.join("shapes");
    let mut files = 0;
    for p in walk(top) {
        if root.starts_with(&p) || p == shapes || p == root.join("LOCK") {
            continue; // the directories down to the store, and its lock
        }
        assert_eq!(
            p.parent(),
            Some(shapes.as_path()),
            "{} is outside {}",
            p.display(),
            shapes.display()
        );
        let meta = std::fs::symlink_metadata(&p).expect("metadata");
        assert!(meta.is_file(), "{} is not a plain file", p.display());
        let name = p.file_name().and_then(|n| n.to_str()).expect("UTF-8 name");
        assert!(
            name.len() < 100
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
            "file name {name:?} is not derived safely"
        );
        files += 1;
    }
    assert!(files > 0, "the logs are inside {}", shapes.display());
}

#[test]
fn hostile_ids_get_their_own_logs_inside_the_store() {
    let top = tempfile::tempdir().expect("tempdir");
    // Deep enough that `../../../../x` from `shapes/` stays inside `top`.
    let root = top.path().join("a/b/c/store");
    let cfg = Config {
        file_bytes: 256, // several files per shape
        segment_capacity: 2,
        ..Config::default()
    };
    let ids = hostile_ids();
    let store = Store::open_with(&root, cfg.clone()).expect("open");
    let mut handles = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let mut w = store.writer(id).expect("writer");
        for round in 1..=2 {
            for (o, p) in entries(i, round) {
                w.append(o, p).expect("append");
            }
            w.commit().expect("commit");
            w.flush().expect("flush");
        }
        // Vary the life cycle: terminated, dropped, or still live.
        match i % 3 {
            0 => drop(w.terminate().expect("terminate")),
            1 => drop(w),
            _ => handles.push(w),
        }
    }
    assert_eq!(store.shape_count(), ids.len(), "one shape per id");
    for (i, id) in ids.iter().enumerate() {
        let mut want = entries(i, 1);
        want.extend(entries(i, 2));
        assert_eq!(read_all(&store, id), want, "shape #{i} via Store::read");
        let h = store.handle(id).expect("handle");
        assert_eq!(h.id(), &id[..]);
        let got: Vec<_> = h
            .read(LogOffset::new(1, 2), LogOffset::MAX)
            .expect("read")
            .entries
            .into_iter()
            .map(|e| (e.offset, e.payload))
            .collect();
        assert_eq!(got, want[3..], "shape #{i} via its handle");
    }
    assert_contained(top.path(), &root);
    drop(handles);
    drop(store);

    // Reopen: every id is found again, with its own data, and carries on.
    let store = Store::open_with(&root, cfg).expect("reopen");
    let found: BTreeSet<Vec<u8>> = store
        .shapes()
        .expect("shapes")
        .iter()
        .map(|b| b.to_vec())
        .collect();
    let expected: BTreeSet<Vec<u8>> = ids.iter().cloned().collect();
    assert_eq!(found, expected, "ids read back from the files");
    for (i, id) in ids.iter().enumerate() {
        let mut want = entries(i, 1);
        want.extend(entries(i, 2));
        assert_eq!(read_all(&store, id), want, "shape #{i} after reopen");
        let mut w = store.writer(id).expect("writer after reopen");
        for (o, p) in entries(i, 3) {
            w.append(o, p).expect("append");
        }
        w.commit().expect("commit");
        w.terminate().expect("terminate");
    }
    for (i, id) in ids.iter().enumerate() {
        let mut want = entries(i, 1);
        want.extend(entries(i, 2));
        want.extend(entries(i, 3));
        assert_eq!(read_all(&store, id), want, "shape #{i} after restart");
    }
    assert_eq!(store.shape_count(), ids.len());
    assert_contained(top.path(), &root);
}
