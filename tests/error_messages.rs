//! Issue 22 item 4: errors that read well. A message does not repeat its
//! source (a chain printer such as `anyhow`'s `{:#}` prints each cause
//! once), and an invalid shape id is the same error from every entry point.

use std::error::Error as _;
use std::time::Duration;

use shapebuf::{Error, LogOffset, Store, MAX_ID};

/// What `anyhow`'s `{:#}` prints: the error and each of its causes,
/// `: `-separated.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[test]
fn an_io_error_chain_prints_the_os_error_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The store's `shapes` directory cannot be created: a file is there.
    std::fs::write(dir.path().join("shapes"), b"not a directory").expect("write");
    let e = Store::open(dir.path()).expect_err("open over a file");
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    let os = e.source().expect("the OS error is the source").to_string();
    let printed = chain(&e);
    assert_eq!(
        printed.matches(&os).count(),
        1,
        "the OS error {os:?} must appear once in {printed:?}"
    );
    assert!(printed.contains("shapes"), "the path is named: {printed}");
    assert!(
        !e.to_string().contains(&os),
        "the message repeats its source: {e}"
    );
}

fn is_bad_id(r: Result<impl std::fmt::Debug, Error>, len: usize, what: &str) {
    match r {
        Err(Error::BadShapeId { len: l, max }) => {
            assert_eq!((l, max), (len, MAX_ID), "{what}");
        }
        other => panic!("{what} with an id of {len} bytes: {other:?}"),
    }
}

#[test]
fn an_invalid_id_is_bad_shape_id_from_every_entry_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let long = vec![b'x'; MAX_ID + 1];
    for id in [&b""[..], &long[..]] {
        let n = id.len();
        is_bad_id(store.writer(id), n, "writer");
        is_bad_id(store.handle(id), n, "handle");
        is_bad_id(store.read(id, LogOffset::ZERO, LogOffset::MAX), n, "read");
        // An empty range still checks the id.
        is_bad_id(
            store.read(id, LogOffset::MAX, LogOffset::ZERO),
            n,
            "empty read",
        );
        is_bad_id(store.remove(id), n, "remove");
        is_bad_id(
            store.wait_for(id, LogOffset::ZERO, Duration::ZERO),
            n,
            "wait_for",
        );
        is_bad_id(
            rt.block_on(store.wait_for_async(id, LogOffset::ZERO, Duration::ZERO)),
            n,
            "wait_for_async",
        );
        // `contains` answers a bool: no such shape can exist.
        assert!(!store.contains(id), "contains");
    }
    // A valid id that is not known is still `UnknownShape`.
    assert!(matches!(
        store.handle("nobody"),
        Err(Error::UnknownShape(_))
    ));
    assert_eq!(store.shape_count(), 0, "nothing was created");
}

#[test]
fn the_payload_limit_error_names_its_config_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = shapebuf::Config {
        max_payload: 4,
        ..shapebuf::Config::default()
    };
    let store = Store::open_with(dir.path(), cfg).expect("open");
    let mut w = store.writer("s").expect("writer");
    let e = w.append(LogOffset::new(1, 0), "12345").unwrap_err();
    assert!(
        matches!(e, Error::PayloadTooLarge { len: 5, max: 4 }),
        "{e:?}"
    );
    assert!(e.to_string().contains("max_payload"), "{e}");
}

#[test]
fn an_invalid_config_error_names_its_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = shapebuf::Config {
        index_interval: 0,
        ..shapebuf::Config::default()
    };
    let e = Store::open_with(dir.path(), cfg).unwrap_err();
    assert!(e.to_string().contains("Config::index_interval"), "{e}");
}
