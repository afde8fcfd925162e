//! Append and commit: single-writer entries per second, against a bare
//! `crossbeam_skiplist::SkipMap::insert` of the same entries.
//!
//! One iteration = one entry. shapebuf: [`ShapeWriter::append`] of
//! 100-byte payloads in 10-entry transactions, [`ShapeWriter::commit`] after
//! each; the writer never flushes (`flush_bytes = usize::MAX`; flushing is
//! measured by the `flush` bench) and the store is on a null file system. The
//! segment fills 64-slot chunks and its directory of chunks doubles as it
//! grows, so chunk allocations and growth swaps are included. SkipMap:
//! `insert(offset, payload)`. Both get the same payload (`Bytes` clones of
//! one shared buffer: a refcount increment). A fresh store / map per
//! criterion call, built and dropped outside the timing.
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crossbeam_skiplist::SkipMap;
use shapebuf::{Config, LogOffset, Store};

mod common;
use common::NullFs;

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_commit");
    g.throughput(Throughput::Elements(1));
    let payload: Bytes = common::payload(100, 7);
    g.bench_function("shapebuf", |b| {
        b.iter_custom(|iters| {
            let dir = common::tmpfs_dir();
            let cfg = Config {
                flush_bytes: usize::MAX,
                ..Config::default()
            };
            let store = Store::open_with_fs(dir.path(), cfg, Arc::new(NullFs)).expect("open");
            let mut w = store.writer("append").expect("writer");
            let t = Instant::now();
            let mut i = 0;
            while i < iters {
                let tx = i / 10 + 1;
                let end = (i + 10 - i % 10).min(iters);
                for k in i..end {
                    w.append(LogOffset::new(tx, k % 10), payload.clone())
                        .expect("append");
                }
                w.commit().expect("commit");
                i = end;
            }
            let d = t.elapsed();
            drop(w);
            drop(store);
            d
        })
    });
    g.bench_function("skipmap-insert", |b| {
        b.iter_custom(|iters| {
            let map = SkipMap::new();
            let t = Instant::now();
            for i in 0..iters {
                map.insert(LogOffset::new(i / 10 + 1, i % 10), payload.clone());
            }
            let d: Duration = t.elapsed();
            drop(map);
            d
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = append
}
criterion_main!(benches);
