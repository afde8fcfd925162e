//! The registry finds every shape it holds and nothing else: ids inserted
//! in their thousands (sharing shards, and sharing the table buckets inside
//! a shard) are each found by `contains`, `handle` and `read`, absent ids
//! are not, and a reopen finds them all again. A lookup that picked a
//! different shard, or probed with a different hash, than the insert did
//! would lose shapes here.
use std::path::Path;
use std::sync::Arc;

use shapebuf::fs::SimFs;
use shapebuf::{Config, Error, LogOffset, Store};

const SHAPES: usize = 1500;

fn id(i: usize) -> Vec<u8> {
    format!("shape/{i}").into_bytes()
}

fn check(store: &Store) {
    assert_eq!(store.shape_count(), SHAPES);
    for i in 0..SHAPES {
        assert!(store.contains(id(i)), "shape {i} lost");
        let out = store
            .read(id(i), LogOffset::ZERO, LogOffset::MAX)
            .expect("read");
        let got: Vec<_> = out.entries.iter().map(|e| e.payload.clone()).collect();
        assert_eq!(got, vec![bytes::Bytes::from(id(i))], "shape {i} mixed up");
    }
    for i in SHAPES..SHAPES + 500 {
        assert!(!store.contains(id(i)), "absent shape {i} found");
        assert!(matches!(store.handle(id(i)), Err(Error::UnknownShape(_))));
    }
}

#[test]
fn every_shape_is_found_and_no_other() {
    let fs = Arc::new(SimFs::new());
    let dir = Path::new("/store");
    let open = || Store::open_with_fs(dir, Config::default(), fs.clone()).expect("open");
    let store = open();
    for i in 0..SHAPES {
        let mut w = store.writer(id(i)).expect("writer");
        w.append(LogOffset::new(1, 0), id(i)).expect("append");
        w.commit().expect("commit");
        w.terminate().expect("terminate");
    }
    check(&store);
    drop(store);
    check(&open());
}
