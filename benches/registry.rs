//! Registry: random-key lookup and publish + unpublish with 1,000 / 100,000
//! / 1,000,000 shapes, against the maps a host would use instead.
//!
//! The store runs on an in-memory null file system (`common::NullFs`:
//! creating a shape creates no file, writes are dropped), so building a
//! million shapes costs the registry and the per-shape state, not a million
//! files; nothing is read back from disk. Sizes are built incrementally in
//! one process (1k, then grown to 100k, then to 1M).
//!
//! Lookup (`registry_lookup/<structure>/<shapes>`, one random existing id
//! per iteration, ids `shape-0000000`.. as `Bytes`):
//! - `shapebuf-contains`: [`Store::contains`] (shard hash, arc-swap load,
//!   hash-map probe, `Arc<Slot>` clone + drop);
//! - `shapebuf-handle`: [`Store::handle`] (the same, plus the store `Arc`
//!   clone; what a reader does before reading);
//! - `arcswap-hashmap`: `ArcSwap<HashMap<Bytes, Arc<_>>>` load + get + clone;
//! - `rwlock-hashmap`: `RwLock<HashMap<..>>` read + get + clone;
//! - `per-shape-handle`: cloning an already resolved [`ShapeHandle`] from a
//!   vector by random index: no lookup at all (the floor).
//!
//! Publish + unpublish (`registry_publish/<structure>/<shapes>`):
//! - `shapebuf-restart`: [`Store::writer`] on an existing, terminated shape
//!   (lookup, writer claim, take-over, publish a fresh segment) then
//!   [`ShapeWriter::terminate`](shapebuf::ShapeWriter::terminate) (nothing
//!   to flush; unpublish the segment, defer its free). The registry slot
//!   itself is permanent in shapebuf (terminate never removes it), so this is
//!   the publish/unpublish a running engine does;
//! - `arcswap-rcu`: insert a new key then remove it, each a whole-map copy
//!   (`ArcSwap::rcu`);
//! - `rwlock-hashmap`: insert then remove under the write lock.
//!
//! First publish of a new id (registry insert: one shard copied) is timed
//! while the sizes are built: `target/criterion/shapebuf/registry_create/
//! <shapes>.json` has the percentiles of [`Store::writer`] on a new id +
//! terminate over the last 10% of shapes created before each size.
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use shapebuf::{Config, ShapeHandle, Store};

mod common;
use common::{Json, NullFs, XorShift};

const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];

fn id(i: usize) -> Bytes {
    Bytes::from(format!("shape-{i:07}"))
}

type Value = Arc<u64>;

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    handles: Vec<ShapeHandle>,
    ids: Vec<Bytes>,
    arcswap: ArcSwap<HashMap<Bytes, Value>>,
    rwlock: RwLock<HashMap<Bytes, Value>>,
}

impl World {
    fn new() -> Self {
        let dir = common::tmpfs_dir();
        let store = Store::open_with_fs(dir.path(), Config::default(), Arc::new(NullFs))
            .expect("open store");
        World {
            _dir: dir,
            store,
            handles: Vec::new(),
            ids: Vec::new(),
            arcswap: ArcSwap::from_pointee(HashMap::new()),
            rwlock: RwLock::new(HashMap::new()),
        }
    }

    /// Grows every structure to `n` shapes, timing each shapebuf creation
    /// (writer on a new id + terminate) in the last 10% of the growth.
    fn grow(&mut self, n: usize) {
        let from = self.ids.len();
        let timed_from = n - n / 10;
        let mut lat = Vec::new();
        let mut plain = HashMap::clone(&self.arcswap.load());
        for i in from..n {
            let k = id(i);
            let t = Instant::now();
            let w = self.store.writer(&k).expect("writer");
            w.terminate().expect("terminate");
            if i >= timed_from {
                lat.push(t.elapsed().as_nanos() as u64);
            }
            self.handles.push(self.store.handle(&k).expect("handle"));
            plain.insert(k.clone(), Arc::new(i as u64));
            self.rwlock
                .write()
                .expect("lock")
                .insert(k.clone(), Arc::new(i as u64));
            self.ids.push(k);
        }
        self.arcswap.store(Arc::new(plain));
        let p = common::pcts(&mut lat);
        Json::default()
            .num("shapes", n as f64)
            .pcts("create", &p)
            .write(&format!("registry_create/{n}"));
    }
}

fn registry(c: &mut Criterion) {
    let mut world = World::new();
    for n in SIZES {
        world.grow(n);
        let w = &world;
        let mut g = c.benchmark_group("registry_lookup");
        g.bench_function(BenchmarkId::new("shapebuf-contains", n), |b| {
            let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
            b.iter(|| black_box(w.store.contains(&w.ids[rng.below(n)])))
        });
        g.bench_function(BenchmarkId::new("shapebuf-handle", n), |b| {
            let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
            b.iter(|| black_box(w.store.handle(&w.ids[rng.below(n)]).is_ok()))
        });
        g.bench_function(BenchmarkId::new("arcswap-hashmap", n), |b| {
            let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
            b.iter(|| black_box(w.arcswap.load().get(&w.ids[rng.below(n)]).cloned()))
        });
        g.bench_function(BenchmarkId::new("rwlock-hashmap", n), |b| {
            let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
            b.iter(|| {
                black_box(
                    w.rwlock
                        .read()
                        .expect("lock")
                        .get(&w.ids[rng.below(n)])
                        .cloned(),
                )
            })
        });
        g.bench_function(BenchmarkId::new("per-shape-handle", n), |b| {
            let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
            b.iter(|| black_box(w.handles[rng.below(n)].clone()))
        });
        g.finish();

        let mut g = c.benchmark_group("registry_publish");
        g.bench_function(BenchmarkId::new("shapebuf-restart", n), |b| {
            let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
            b.iter(|| {
                let w = w.store.writer(&w.ids[rng.below(n)]).expect("writer");
                black_box(w.terminate().expect("terminate"))
            })
        });
        let fresh = Bytes::from_static(b"not-a-shape");
        g.bench_function(BenchmarkId::new("arcswap-rcu", n), |b| {
            b.iter(|| {
                w.arcswap.rcu(|m| {
                    let mut m = HashMap::clone(m);
                    m.insert(fresh.clone(), Arc::new(0));
                    m
                });
                w.arcswap.rcu(|m| {
                    let mut m = HashMap::clone(m);
                    m.remove(&fresh);
                    m
                });
            })
        });
        g.bench_function(BenchmarkId::new("rwlock-hashmap", n), |b| {
            b.iter(|| {
                w.rwlock
                    .write()
                    .expect("lock")
                    .insert(fresh.clone(), Arc::new(0));
                w.rwlock.write().expect("lock").remove(&fresh);
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = registry
}
criterion_main!(benches);
