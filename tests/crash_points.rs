//! Power loss at every file-system operation of a fixed workload, with torn
//! write-back at several byte positions: recovery never fails or panics,
//! keeps every acknowledged entry, invents nothing and keeps order.
//!
//! CI enumerates the default workload; `cargo test --release --test
//! crash_points -- --ignored` runs the long enumeration.

mod common;

use std::path::Path;
use std::sync::Arc;

use shapebuf::fs::{Op, SimFs};

const TORN: [usize; 4] = [0, 1, 9, 100];
/// The framed size of a `synced` marker (docs/format.md).
const MARKER: usize = 17;

/// Enumerates every crash point of a `steps`-step workload; returns the
/// number of (crash point, torn position) scenarios checked.
fn enumerate(steps: u64) -> usize {
    let dir = Path::new("/db");
    let clean = SimFs::new();
    let mut clean_model = common::Model::default();
    common::run(Arc::new(clean.clone()), dir, steps, &mut clean_model).expect("clean run");
    let total = clean.ops();
    assert!(
        clean_model.files_collected > 0,
        "the workload must collect files"
    );
    common::verify(Arc::new(clean.clone()), dir, &clean_model).expect("clean run verifies");
    assert!(total > 100, "workload too small: {total} ops");
    let mut scenarios = 0;
    for cut in 0..total {
        let fs = SimFs::new();
        fs.cut_power_at(cut);
        let mut model = common::Model::default();
        let res = common::run(Arc::new(fs.clone()), dir, steps, &mut model);
        assert!(fs.is_powered_off());
        if res.is_ok() {
            // Only the workload's last operation, the `synced` marker of its
            // final flush (17 bytes, docs/format.md), may fail unnoticed:
            // the batch was synced before it, so everything is acknowledged.
            let refused = fs.refused();
            assert!(
                cut + 1 == total
                    && refused.is_some_and(|r| r.op == Op::Write && r.len == MARKER)
                    && model.acked == clean_model.acked,
                "power cut at op {cut} of {total} went unnoticed ({refused:?})"
            );
        }
        for torn in TORN {
            let rebooted = fs.after_power_loss(torn);
            if let Err(why) = common::verify(Arc::new(rebooted), dir, &model) {
                panic!("power cut at op {cut}/{total}, torn {torn}: {why}");
            }
            scenarios += 1;
        }
    }
    scenarios
}

#[test]
fn every_crash_point_recovers_the_acknowledged_prefix() {
    let n = enumerate(100);
    eprintln!("crash_points: {n} scenarios");
    assert!(
        n >= 1000,
        "CI must enumerate at least 1000 crash scenarios, got {n}"
    );
}

#[test]
#[ignore = "long run: cargo test --release --test crash_points -- --ignored"]
fn every_crash_point_of_a_long_workload() {
    let n = enumerate(900);
    eprintln!("crash_points (long): {n} scenarios");
    assert!(
        n >= 10_000,
        "the long run must enumerate at least 10000 scenarios, got {n}"
    );
}
