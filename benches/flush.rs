//! Flush: MB/s of [`ShapeWriter::flush`] (write + `sync_data` + publish +
//! trim) against a raw `write_all` + `sync_data` of the same bytes to a file
//! in the same directory (the system temp dir, on disk).
//!
//! One iteration = one flush of `bytes` of records: 100-byte payloads in
//! 10-entry transactions, committed; the appends happen outside the timing
//! (the writer's `flush_bytes` is `usize::MAX`, so only the explicit flush
//! writes). The raw baseline writes the same framed records (shapebuf's
//! framing, CRC32C included, computed outside the timing) plus a commit
//! record, appending to one file; shapebuf's log also starts a new file every
//! 64 MiB (a create, a header write, two syncs), which its figure includes.
use std::fs::File;
use std::io::Write;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shapebuf::{Config, LogOffset, Store};

mod common;

const PAYLOAD: usize = 100;

fn flush(c: &mut Criterion) {
    let mut g = c.benchmark_group("flush");
    for target in [64usize << 10, 1 << 20] {
        let per = common::entry_record_size(PAYLOAD);
        let entries = target.div_ceil(per) as u64;
        // Entry records + one commit record (8 + 25 bytes).
        let bytes = entries as usize * per + 33;
        g.throughput(Throughput::Bytes(bytes as u64));
        let dir = common::disk_dir();
        let cfg = Config {
            flush_bytes: usize::MAX,
            ..Config::default()
        };
        let store = Store::open_with(dir.path(), cfg).expect("open");
        let mut w = store.writer("flush").expect("writer");
        let mut tx = 1u64;
        g.bench_function(BenchmarkId::new("shapebuf", target), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut left = entries;
                    while left > 0 {
                        for op in 0..left.min(10) {
                            w.append(LogOffset::new(tx, op), common::payload(PAYLOAD, op))
                                .expect("append");
                        }
                        left -= left.min(10);
                        w.commit().expect("commit");
                        tx += 1;
                    }
                    let t = Instant::now();
                    w.flush().expect("flush");
                    total += t.elapsed();
                }
                total
            })
        });
        let mut file = File::create(dir.path().join("raw.log")).expect("create");
        g.bench_function(BenchmarkId::new("raw-write-sync", target), |b| {
            let mut buf = Vec::with_capacity(bytes);
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    buf.clear();
                    let mut last = LogOffset::ZERO;
                    for i in 0..entries {
                        last = LogOffset::new(tx, i);
                        common::put_entry(&mut buf, last, &common::payload(PAYLOAD, i));
                    }
                    common::put_commit(&mut buf, entries, last);
                    tx += 1;
                    debug_assert_eq!(buf.len(), bytes);
                    let t = Instant::now();
                    file.write_all(&buf).expect("write");
                    file.sync_data().expect("sync");
                    total += t.elapsed();
                }
                total
            })
        });
        paired(&mut w, &mut file, &mut tx, entries, bytes, target);
        drop(w);
    }
    g.finish();
}

/// The two flushes alternated, one pair at a time, so that both see the
/// same disk (the machine's sync latency drifts with other load): medians
/// and their ratio go to `target/criterion/shapebuf/flush/<bytes>.json`.
fn paired(
    w: &mut shapebuf::ShapeWriter,
    file: &mut File,
    tx: &mut u64,
    entries: u64,
    bytes: usize,
    target: usize,
) {
    const PAIRS: usize = 100;
    let mut sb = Vec::with_capacity(PAIRS);
    let mut raw = Vec::with_capacity(PAIRS);
    let mut buf = Vec::with_capacity(bytes);
    for _ in 0..PAIRS {
        let mut left = entries;
        while left > 0 {
            for op in 0..left.min(10) {
                w.append(LogOffset::new(*tx, op), common::payload(PAYLOAD, op))
                    .expect("append");
            }
            left -= left.min(10);
            w.commit().expect("commit");
            *tx += 1;
        }
        let t = Instant::now();
        w.flush().expect("flush");
        sb.push(t.elapsed().as_nanos() as u64);
        buf.clear();
        let mut last = LogOffset::ZERO;
        for i in 0..entries {
            last = LogOffset::new(*tx, i);
            common::put_entry(&mut buf, last, &common::payload(PAYLOAD, i));
        }
        common::put_commit(&mut buf, entries, last);
        *tx += 1;
        let t = Instant::now();
        file.write_all(&buf).expect("write");
        file.sync_data().expect("sync");
        raw.push(t.elapsed().as_nanos() as u64);
    }
    let (sb, raw) = (common::pcts(&mut sb), common::pcts(&mut raw));
    let mbps = |ns: f64| bytes as f64 / ns * 1e9 / (1 << 20) as f64;
    common::Json::default()
        .num("bytes", bytes as f64)
        .num("pairs", PAIRS as f64)
        .pcts("shapebuf", &sb)
        .pcts("raw", &raw)
        .num("shapebuf_mib_s", mbps(sb.p50))
        .num("raw_mib_s", mbps(raw.p50))
        .num("ratio", raw.p50 / sb.p50)
        .write(&format!("flush/{target}"));
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = flush
}
criterion_main!(benches);
