//! Real log files with flipped or truncated bytes: reopening never panics,
//! and whatever it serves is a prefix of what was committed. A truncation of
//! the last file looks like a torn write and may cut the tail; any other
//! damage (a truncation elsewhere, a flipped byte anywhere) is reported as
//! `Error::Corrupt` (by the damaged shape's reads: the store opens) or
//! changes nothing that is read, never served as a shorter log: every batch
//! but the last is followed by proof that it was synced (docs/format.md,
//! "Recovery on open").

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use proptest::prelude::*;
use shapebuf::{Config, Error, LogOffset, Store};

fn cfg() -> Config {
    Config {
        file_bytes: 600,
        index_interval: 100,
        ..Config::default()
    }
}

fn payload(o: LogOffset) -> Vec<u8> {
    format!("{o}-{}", "p".repeat((o.tx % 23) as usize)).into_bytes()
}

/// Writes a log with several files; returns the committed offsets.
fn build(dir: &std::path::Path) -> Vec<LogOffset> {
    let store = Store::open_with(dir, cfg()).expect("open");
    let mut w = store.writer("shape").expect("writer");
    let mut want = Vec::new();
    for tx in 1..=40u64 {
        for op in 0..2 {
            let o = LogOffset::new(tx, op);
            w.append(o, payload(o)).expect("append");
            want.push(o);
        }
        w.commit().expect("commit");
        if tx % 5 == 0 {
            w.flush().expect("flush");
        }
    }
    w.terminate().expect("terminate");
    want
}

fn log_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("shapes"))
        .expect("list")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn damaged_files_never_panic_or_serve_wrong_data(
        file_pick in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        truncate in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let want = build(dir.path());
        let files = log_files(dir.path());
        prop_assert!(files.len() > 2, "the workload must roll files");
        let path = file_pick.get(&files);
        let len = std::fs::metadata(path).expect("meta").len() as usize;
        let pos = at.index(len) as u64;
        let f = OpenOptions::new().read(true).write(true).open(path).expect("open file");
        if truncate {
            f.set_len(pos).expect("truncate");
        } else {
            let mut b = [0u8; 1];
            f.read_at(&mut b, pos).expect("read");
            b[0] ^= flip;
            f.write_at(&b, pos).expect("write");
        }
        drop(f);
        let is_last = path == files.last().expect("files");
        match Store::open_with(dir.path(), cfg()) {
            Ok(store) => {
                let got = match store.read("shape", LogOffset::ZERO, LogOffset::MAX) {
                    Ok(r) => r.entries,
                    Err(Error::UnknownShape(_)) => Vec::new(),
                    // Quarantined: the shape's damage is reported, not served.
                    Err(Error::Corrupt { .. }) => return Ok(()),
                    Err(e) => return Err(TestCaseError::fail(format!("read failed after a successful open: {e}"))),
                };
                prop_assert!(got.len() <= want.len());
                for (e, o) in got.iter().zip(&want) {
                    prop_assert_eq!(e.offset, *o);
                    prop_assert_eq!(&e.payload[..], &payload(*o)[..]);
                }
                if !is_last || !truncate {
                    // Damage that is not a torn-looking cut of the last file
                    // is never silently repaired by dropping acknowledged
                    // data... unless the damage did not change any record
                    // (a flip is caught by the checksums, so this means it
                    // landed on nothing that holds data: the final batch's
                    // `synced` marker, which recovery may cut).
                    prop_assert_eq!(got.len(), want.len(), "acknowledged data lost silently");
                }
            }
            Err(Error::Corrupt { .. }) => {}
            Err(e) => return Err(TestCaseError::fail(format!("unexpected error: {e}"))),
        }
    }
}

/// Writes real log files as seeds for the `open_store` fuzz target
/// (fuzz/fuzz_targets/open_store.rs): each seed is one shape's files joined
/// with `0xFF 0xFE`, named `seed-v2-<k>` (`seed-<k>` are version-1 files,
/// written before batches existed, and kept). Run: `cargo test --test
/// corrupt_files -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "generates fuzz seeds; run by hand"]
fn write_fuzz_seeds() {
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/open_store");
    std::fs::create_dir_all(&out).expect("corpus dir");
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path());
    let files = log_files(dir.path());
    for (k, pair) in files.chunks(2).enumerate() {
        let mut seed = Vec::new();
        for (i, f) in pair.iter().enumerate() {
            if i > 0 {
                seed.extend_from_slice(&[0xFF, 0xFE]);
            }
            seed.extend(std::fs::read(f).expect("read log file"));
        }
        std::fs::write(out.join(format!("seed-v2-{k}")), seed).expect("write seed");
    }
    assert!(out.join("seed-v2-0").exists());
}
