//! Opens a store whose log files hold arbitrary bytes and reads every shape:
//! recovery and reads must never panic or allocate without bound, whatever
//! the files contain.
//!
//! Input layout: the input is split at each `0xFF 0xFE` pair into up to 8
//! pieces; piece k becomes the file `shapes/0000000000000000-{k/2}.{k%2*5:020}.log`,
//! so pieces pair up into two-file logs. Seeds in `corpus/open_store` are
//! real log files joined the same way, written by `write_fuzz_seeds` in
//! tests/corrupt_files.rs: `seed-*` in format version 1 (before batch
//! records), `seed-v2-*` in version 2 (batch headers and `synced` markers).
//! Both versions are opened, read and appended to.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use shapebuf::fs::{Fs, SimFs};
use shapebuf::{LogOffset, Store};

fuzz_target!(|data: &[u8]| {
    let fs = SimFs::new();
    let dir = Path::new("/db/shapes");
    for (k, piece) in split(data).into_iter().take(8).enumerate() {
        // Name the file after the start its header claims (bytes 8..16), so
        // real logs open cleanly and mutations explore from there.
        let start = piece
            .get(8..16)
            .map_or(k as u64 % 2, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        let name = format!("0000000000000000-{}.{start:020}.log", k / 2);
        // Two pieces may claim the same name: keep the first.
        if let Ok(f) = fs.create(&dir.join(name)) {
            f.write_all_at(piece, 0).expect("in-memory write");
        }
    }
    let Ok(store) = Store::open_with_fs("/db", Default::default(), Arc::new(fs)) else {
        return;
    };
    for id in store.shapes() {
        let _ = store.read(&id, LogOffset::ZERO, LogOffset::MAX);
        if let Ok(mut w) = store.writer(&id) {
            let _ = w.append(LogOffset::MAX, "x");
            let _ = w.commit();
            let _ = w.flush();
        }
    }
});

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < data.len() {
        if data[i] == 0xFF && data[i + 1] == 0xFE {
            out.push(&data[start..i]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    out.push(&data[start..]);
    out
}
