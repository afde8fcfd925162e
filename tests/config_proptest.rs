//! Issue 22 item 3: every `Config` a host can write either runs (open,
//! write, commit, flush, read, reopen, read: all exact) or is refused by
//! `Store::open_with` with `Error::InvalidConfig` before the directory is
//! touched. Never a panic, never an abort (a value that could abort must be
//! refused: an abort would kill this test process), never a writer that
//! breaks later.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use shapebuf::{Config, Error, LogOffset, Store, MAX_PAYLOAD};

fn o(tx: u64, op: u64) -> LogOffset {
    LogOffset::new(tx, op)
}

// Each field takes an everyday value, or (in about one case in seven per
// field, so one or two fields per case) a value from its whole range with
// its edges weighted in: 0, 1, MAX, the 4 GiB step some fields clamp at, the
// bounds `validate` sets and arbitrary values. So each edge is met both
// alone (then it runs, or is refused for itself) and beside others.
const EDGE: f64 = 0.15;

fn usize_edges() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(usize::MAX),
        Just(u32::MAX as usize),
        Just(u32::MAX as usize + 1),
        any::<usize>(),
        64usize..(1 << 21),
    ]
}

fn u64_edges() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), Just(1), Just(u64::MAX), any::<u64>()]
}

fn duration_edges() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_micros(999)),
        Just(Duration::from_millis(1)),
        Just(Duration::from_secs(24 * 60 * 60)),
        Just(Duration::from_secs(24 * 60 * 60) + Duration::from_nanos(1)),
        Just(Duration::MAX),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

/// `everyday`, or now and then a value from `edges`.
fn field<T: std::fmt::Debug + Clone>(
    everyday: impl Strategy<Value = T>,
    edges: impl Strategy<Value = T>,
) -> impl Strategy<Value = T> {
    (everyday, prop::option::weighted(EDGE, edges)).prop_map(|(e, edge)| edge.unwrap_or(e))
}

fn small() -> impl Strategy<Value = usize> {
    prop_oneof![1usize..64, 64usize..(1 << 16)]
}

fn small_u64() -> impl Strategy<Value = u64> {
    prop_oneof![1u64..64, 64u64..(1 << 16)]
}

fn config() -> impl Strategy<Value = Config> {
    let max_payload_edges = prop_oneof![
        3 => usize_edges(),
        1 => Just(MAX_PAYLOAD),
        1 => Just(MAX_PAYLOAD + 1),
    ];
    // Flusher threads start lazily, so large counts cost nothing until
    // batches queue up.
    let threads_edges = prop_oneof![3 => usize_edges(), 1 => Just(256usize), 1 => Just(257usize)];
    let segment_edges = prop_oneof![
        3 => usize_edges(),
        1 => Just(1usize << 20),
        1 => Just((1usize << 20) + 1),
    ];
    (
        field(small(), usize_edges()),
        field(small(), usize_edges()),
        field(
            (0u64..5_000_000).prop_map(Duration::from_micros),
            duration_edges(),
        ),
        field(0usize..64, segment_edges),
        field(prop_oneof![Just(0usize), small()], usize_edges()),
        field(small_u64(), u64_edges()),
        field(small_u64(), u64_edges()),
        field(0usize..8, threads_edges),
        field(0usize..300, max_payload_edges),
        field(1usize..64, usize_edges()),
    )
        .prop_map(|(fb, mpb, fi, sc, rb, ii, fbytes, ft, mp, mof)| Config {
            flush_bytes: fb,
            max_pending_bytes: mpb,
            flush_interval: fi,
            segment_capacity: sc,
            retain_bytes: rb,
            index_interval: ii,
            file_bytes: fbytes,
            flush_threads: ft,
            max_payload: mp,
            max_open_files: mof,
        })
}

/// Every entry of shape `id`, as (offset, payload).
fn all(store: &Store, id: &str) -> Vec<(LogOffset, Bytes)> {
    let out = store
        .read(id, LogOffset::ZERO, LogOffset::MAX)
        .unwrap_or_else(|e| panic!("read {id}: {e}"));
    out.entries
        .into_iter()
        .map(|e| (e.offset, e.payload))
        .collect()
}

/// A payload of `len` bytes (at most the configured limit), distinct per
/// entry.
fn payload(seed: u64, len: usize) -> Bytes {
    (0..len)
        .map(|i| (seed as usize * 31 + i) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// One case: refused at open with the field `validate` names, and nothing
/// touched; or the whole life cycle exact.
fn run(cfg: &Config, sizes: &[usize]) -> Outcome {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let checked = cfg.validate();
    let store = match Store::open_with(&root, cfg.clone()) {
        Err(Error::InvalidConfig { field, reason }) => {
            match checked {
                Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("open refused {field} ({reason}) but validate said {other:?}"),
            }
            assert!(
                !root.exists(),
                "refused, yet {} was created",
                root.display()
            );
            return Outcome::Refused;
        }
        Err(e) => panic!("open failed with something other than InvalidConfig: {e}"),
        Ok(store) => store,
    };
    assert!(
        checked.is_ok(),
        "open accepted what validate refused: {checked:?}"
    );
    let max = cfg.max_payload.min(400);
    let mut want_a = Vec::new();
    let mut want_b = Vec::new();
    {
        let mut a = store.writer("a").expect("writer a");
        let mut b = store.writer("b").expect("writer b");
        // Two transactions on `a`, one on `b`, with flushes between.
        for (i, &size) in sizes.iter().enumerate() {
            let i = i as u64;
            let (tx, op) = (1 + i / 3, i % 3);
            let p = payload(i, size.min(max));
            a.append(o(tx, op), p.clone()).expect("append a");
            want_a.push((o(tx, op), p));
            if op == 2 {
                a.commit().expect("commit a");
            }
            if i == 2 {
                a.flush().expect("flush a");
            }
        }
        a.commit().expect("commit a");
        if cfg.max_payload < 1000 {
            let e = a
                .append(o(100, 0), vec![0u8; cfg.max_payload + 1])
                .expect_err("over max_payload");
            assert!(
                matches!(e, Error::PayloadTooLarge { len, max } if len == cfg.max_payload + 1 && max == cfg.max_payload),
                "{e:?}"
            );
        }
        let p = payload(99, 7.min(max));
        b.append(o(1, 0), p.clone()).expect("append b");
        want_b.push((o(1, 0), p));
        b.commit().expect("commit b");
        b.tick().expect("tick b");
        assert_eq!(all(&store, "a"), want_a, "a before flush");
        a.flush().expect("flush a");
        assert_eq!(all(&store, "a"), want_a, "a after flush");
        assert_eq!(all(&store, "b"), want_b, "b before its flush");
        b.terminate().expect("terminate b");
        assert_eq!(all(&store, "b"), want_b, "b after terminate");
        // `a`'s writer is dropped without terminate: everything it
        // committed was flushed.
    }
    // A new shape's first flush with nothing to write creates its file
    // (a header only); its next flush follows it, whatever `file_bytes`.
    let mut want_c = Vec::new();
    {
        let mut c = store.writer("c").expect("writer c");
        c.flush().expect("empty first flush of c");
        for i in 0..3u64 {
            let p = payload(200 + i, 5.min(max));
            c.append(o(1, i), p.clone()).expect("append c");
            want_c.push((o(1, i), p));
            c.commit().expect("commit c");
            c.flush().expect("flush c");
        }
        assert_eq!(all(&store, "c"), want_c, "c");
    }
    drop(store);
    let store = Store::open_with(&root, cfg.clone()).expect("reopen");
    assert_eq!(all(&store, "a"), want_a, "a after reopen");
    assert_eq!(all(&store, "b"), want_b, "b after reopen");
    // The writer goes on after a restart.
    let mut a = store.writer("a").expect("writer a again");
    let p = payload(1000, 3.min(max));
    a.append(o(50, 0), p.clone()).expect("append after reopen");
    want_a.push((o(50, 0), p));
    a.commit().expect("commit after reopen");
    a.flush().expect("flush after reopen");
    a.terminate().expect("terminate a");
    assert_eq!(all(&store, "a"), want_a, "a at the end");
    drop(store);
    let store = Store::open_with(&root, cfg.clone()).expect("reopen 2");
    assert_eq!(all(&store, "a"), want_a, "a after the second reopen");
    assert_eq!(all(&store, "c"), want_c, "c after the second reopen");
    Outcome::Ran
}

/// What a case did.
#[derive(Debug, PartialEq)]
enum Outcome {
    Refused,
    Ran,
}

#[test]
fn any_config_runs_exactly_or_is_refused_at_open() {
    use proptest::test_runner::{TestCaseError, TestRunner};
    // 128 cases (a few seconds); PROPTEST_CASES=n runs more.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(128);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        ..ProptestConfig::default()
    });
    let sizes = prop::collection::vec(prop_oneof![0usize..40, 100usize..400], 1..8);
    let counts = std::cell::Cell::new((0usize, 0usize));
    runner
        .run(&(config(), sizes), |(cfg, sizes)| {
            match catch_unwind(AssertUnwindSafe(|| run(&cfg, &sizes))) {
                Ok(Outcome::Refused) => counts.set((counts.get().0 + 1, counts.get().1)),
                Ok(Outcome::Ran) => counts.set((counts.get().0, counts.get().1 + 1)),
                Err(p) => {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    return Err(TestCaseError::fail(format!("panicked with {cfg:?}: {msg}")));
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let (refused, ran) = counts.get();
    eprintln!("config cases: {refused} refused at open, {ran} ran");
    // Both sides are exercised (about half of the cases run).
    assert!(refused >= 16 && ran >= 32, "{refused} refused, {ran} ran");
}

/// Opens `cfg` in a fresh directory and expects it refused, naming `field`,
/// before anything is created.
fn refused(field: &str, cfg: Config) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    match Store::open_with(&root, cfg) {
        Err(Error::InvalidConfig { field: f, reason }) => {
            assert_eq!(f, field, "{reason}");
            assert!(!reason.is_empty());
            let msg = Error::InvalidConfig { field: f, reason }.to_string();
            assert!(msg.contains(field), "{msg}");
        }
        Err(e) => panic!("{field}: refused with {e} instead of InvalidConfig"),
        Ok(_) => panic!("{field}: accepted"),
    }
    assert!(
        !Path::new(&root).exists(),
        "{field}: the directory was created"
    );
}

#[test]
fn every_refused_field_is_named() {
    let d = Config::default;
    refused(
        "flush_bytes",
        Config {
            flush_bytes: 0,
            ..d()
        },
    );
    refused(
        "flush_interval",
        Config {
            flush_interval: Duration::ZERO,
            ..d()
        },
    );
    refused(
        "flush_interval",
        Config {
            flush_interval: Duration::from_micros(999),
            ..d()
        },
    );
    refused(
        "flush_interval",
        Config {
            flush_interval: Duration::MAX,
            ..d()
        },
    );
    refused(
        "segment_capacity",
        Config {
            segment_capacity: usize::MAX,
            ..d()
        },
    );
    refused(
        "segment_capacity",
        Config {
            segment_capacity: (1 << 20) + 1,
            ..d()
        },
    );
    refused(
        "index_interval",
        Config {
            index_interval: 0,
            ..d()
        },
    );
    refused(
        "file_bytes",
        Config {
            file_bytes: 0,
            ..d()
        },
    );
    refused(
        "flush_threads",
        Config {
            flush_threads: 257,
            ..d()
        },
    );
    refused(
        "flush_threads",
        Config {
            flush_threads: usize::MAX,
            ..d()
        },
    );
    refused(
        "max_payload",
        Config {
            max_payload: MAX_PAYLOAD + 1,
            ..d()
        },
    );
    refused(
        "max_payload",
        Config {
            max_payload: usize::MAX,
            ..d()
        },
    );
    refused(
        "max_open_files",
        Config {
            max_open_files: 0,
            ..d()
        },
    );
}

/// The bounds themselves are accepted, and so are the odd but safe values
/// each field documents.
#[test]
fn the_bounds_and_odd_but_safe_values_are_accepted() {
    let d = Config::default;
    let ok = [
        Config {
            flush_bytes: 1,
            ..d()
        },
        Config {
            flush_bytes: usize::MAX,
            ..d()
        },
        Config {
            max_pending_bytes: 0,
            ..d()
        },
        Config {
            max_pending_bytes: usize::MAX,
            ..d()
        },
        Config {
            flush_interval: Duration::from_millis(1),
            ..d()
        },
        Config {
            flush_interval: Duration::from_secs(24 * 60 * 60),
            ..d()
        },
        Config {
            segment_capacity: 0,
            ..d()
        },
        Config {
            segment_capacity: 1 << 20,
            ..d()
        },
        Config {
            retain_bytes: 0,
            ..d()
        },
        Config {
            retain_bytes: usize::MAX,
            ..d()
        },
        Config {
            index_interval: 1,
            ..d()
        },
        Config {
            index_interval: u64::MAX,
            ..d()
        },
        Config {
            file_bytes: 1,
            ..d()
        },
        Config {
            file_bytes: u64::MAX,
            ..d()
        },
        Config {
            flush_threads: 0,
            ..d()
        },
        Config {
            flush_threads: 256,
            ..d()
        },
        Config {
            max_payload: 0,
            ..d()
        },
        Config {
            max_payload: MAX_PAYLOAD,
            ..d()
        },
        Config {
            max_open_files: 1,
            ..d()
        },
        Config {
            max_open_files: usize::MAX,
            ..d()
        },
    ];
    for cfg in ok {
        cfg.validate().unwrap_or_else(|e| panic!("{cfg:?}: {e}"));
        assert_eq!(run(&cfg, &[3, 0, 200, 17]), Outcome::Ran);
    }
}
