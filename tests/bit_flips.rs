//! One flipped bit anywhere in a log of several flush batches, on the real
//! file system: reopening and reading the shape gives either every
//! acknowledged entry or `Error::Corrupt` (from `Store::open` or from the
//! read), never a shorter log without an error. Damage followed by an intact
//! record of a later batch is corruption of acknowledged data, not a torn
//! tail (docs/format.md, "Recovery on open"); and a corruption verdict
//! changes no file.
//!
//! Every byte of the files is flipped in turn (one bit, rotating through the
//! bit positions), each in a fresh copy of the directory.

use std::path::{Path, PathBuf};
use std::time::Instant;

use shapebuf::{Config, Error, LogOffset, Store};

const SHAPE: &str = "shape";
const TXS: u64 = 60;

fn payload(o: LogOffset) -> Vec<u8> {
    format!("{o}:{}", "p".repeat((o.tx % 7) as usize)).into_bytes()
}

fn config(file_bytes: u64) -> Config {
    Config {
        file_bytes,
        // Only the explicit flushes write.
        flush_bytes: usize::MAX,
        ..Config::default()
    }
}

/// Writes `TXS` one-entry transactions, flushing after every `per_flush`,
/// then drops the writer and the store; returns the acknowledged offsets.
fn write_log(dir: &Path, cfg: Config, per_flush: u64) -> Vec<LogOffset> {
    let store = Store::open_with(dir, cfg).expect("open");
    let mut w = store.writer(SHAPE).expect("writer");
    let mut acked = Vec::new();
    for tx in 1..=TXS {
        let o = LogOffset::new(tx, 0);
        w.append(o, payload(o)).expect("append");
        w.commit().expect("commit");
        if tx % per_flush == 0 {
            w.flush().expect("flush");
            acked = (1..=tx).map(|t| LogOffset::new(t, 0)).collect();
        }
    }
    drop(w);
    drop(store);
    assert_eq!(acked.len() as u64, TXS);
    acked
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("shapes"))
        .expect("list")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Every acknowledged entry, intact.
    Full,
    /// `Error::Corrupt`, from the open or from the read.
    Corrupt,
}

/// Opens `dir` and reads the shape; `Err` describes a forbidden outcome.
fn outcome(dir: &Path, cfg: Config, want: &[LogOffset]) -> Result<Outcome, String> {
    let store = match Store::open_with(dir, cfg) {
        Ok(s) => s,
        Err(Error::Corrupt { .. }) => return Ok(Outcome::Corrupt),
        Err(e) => return Err(format!("open failed: {e}")),
    };
    let got = match store.read(SHAPE, LogOffset::ZERO, LogOffset::MAX) {
        Ok(r) => r.entries,
        Err(Error::Corrupt { .. }) => return Ok(Outcome::Corrupt),
        Err(e) => return Err(format!("read failed: {e}")),
    };
    if got.len() != want.len() {
        return Err(format!(
            "{} of {} acknowledged entries and no error",
            got.len(),
            want.len()
        ));
    }
    for (e, o) in got.iter().zip(want) {
        if e.offset != *o || e.payload[..] != payload(*o)[..] {
            return Err(format!("got {} where {o} was written", e.offset));
        }
    }
    Ok(Outcome::Full)
}

/// Flips one bit of every byte of every log file in `pristine`, each in a
/// fresh copy; returns (cases, corrupt verdicts).
fn flip_every_byte(pristine: &Path, cfg: Config, want: &[LogOffset]) -> (usize, usize) {
    let files = log_files(pristine);
    let images: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read(p).expect("read log file"))
        })
        .collect();
    let (mut cases, mut corrupt) = (0, 0);
    for (k, (name, image)) in images.iter().enumerate() {
        for pos in 0..image.len() {
            let bit = (pos * 3 + k) % 8;
            let copy = tempfile::tempdir().expect("tempdir");
            let shapes = copy.path().join("shapes");
            std::fs::create_dir_all(&shapes).expect("shapes dir");
            for (j, (other, bytes)) in images.iter().enumerate() {
                let mut bytes = bytes.clone();
                if j == k {
                    bytes[pos] ^= 1 << bit;
                }
                std::fs::write(shapes.join(other), bytes).expect("write copy");
            }
            let before: Vec<Vec<u8>> = images
                .iter()
                .map(|(n, _)| std::fs::read(shapes.join(n)).expect("read copy"))
                .collect();
            match outcome(copy.path(), cfg.clone(), want) {
                Ok(Outcome::Full) => {}
                Ok(Outcome::Corrupt) => {
                    corrupt += 1;
                    // A corruption verdict truncates and removes nothing.
                    for ((n, _), b) in images.iter().zip(&before) {
                        let now = std::fs::read(shapes.join(n))
                            .unwrap_or_else(|e| panic!("{n} gone after a corrupt verdict: {e}"));
                        assert!(
                            now == *b,
                            "{n} changed by a corrupt verdict (flip of bit {bit} at byte {pos} of {name})"
                        );
                    }
                }
                Err(why) => panic!("flip of bit {bit} at byte {pos} of {name}: {why}"),
            }
            cases += 1;
        }
    }
    (cases, corrupt)
}

#[test]
fn one_file_of_three_batches() {
    let t = Instant::now();
    let pristine = tempfile::tempdir().expect("tempdir");
    let cfg = config(64 << 20);
    let want = write_log(pristine.path(), cfg.clone(), 20);
    assert_eq!(log_files(pristine.path()).len(), 1, "one log file");
    let (cases, corrupt) = flip_every_byte(pristine.path(), cfg, &want);
    eprintln!(
        "bit_flips (one file): {cases} cases, {corrupt} corrupt, {} full, {:?}",
        cases - corrupt,
        t.elapsed()
    );
    // Flips of the last batch's marker are a torn tail; everything else is
    // data or proof of it.
    assert!(corrupt > cases * 9 / 10, "{corrupt} of {cases}");
    assert!(corrupt < cases);
}

#[test]
fn three_files_of_two_batches() {
    let t = Instant::now();
    let pristine = tempfile::tempdir().expect("tempdir");
    // About 400 bytes per 10-entry batch (one commit record per flush):
    // two batches fill a file.
    let cfg = config(700);
    let want = write_log(pristine.path(), cfg.clone(), 10);
    let files = log_files(pristine.path()).len();
    let sizes: Vec<u64> = log_files(pristine.path())
        .iter()
        .map(|p| std::fs::metadata(p).expect("meta").len())
        .collect();
    assert!(files >= 3, "the workload must roll files ({sizes:?})");
    let (cases, corrupt) = flip_every_byte(pristine.path(), cfg, &want);
    eprintln!(
        "bit_flips ({files} files): {cases} cases, {corrupt} corrupt, {} full, {:?}",
        cases - corrupt,
        t.elapsed()
    );
    assert!(corrupt > cases * 9 / 10, "{corrupt} of {cases}");
}
