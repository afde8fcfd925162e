//! The soak's independent model of what each shape committed, and the check
//! of a read against it.
//!
//! # What a correct read is
//!
//! Per shape the model keeps the offsets of every committed entry in log
//! order. A writer adds a transaction's offsets *before* it calls `commit()`
//! (as "in flight") and marks them committed right after `commit()` returns,
//! so at any instant:
//!
//! - `offsets[..committed]` were certainly committed, and
//! - nothing beyond `offsets[..]` can have been committed.
//!
//! A reader notes `committed` before its read (`lo`) and compares with the
//! model after it (`hi` = `offsets.len()`). The read of `(after, upto]` is
//! correct iff it equals the model's entries in `(after, upto]` cut at some
//! transaction boundary `k` with `lo <= k <= hi`: everything committed before
//! the read started is there, nothing uncommitted is, and entries are whole
//! transactions, in order, each once.
//!
//! Payloads are a pure function of (seed, offset, length), the seed naming
//! one incarnation of one shape id (`lanes.rs`), so every returned payload
//! is checked byte for byte too, and an entry of another shape or of an
//! earlier incarnation of the same id shows as a wrong payload.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use shapebuf::bytes::Bytes;
use shapebuf::LogOffset;

/// What one shape committed.
#[derive(Default)]
pub struct ShapeModel {
    /// Offsets of committed entries, then at most one in-flight transaction.
    offsets: Vec<LogOffset>,
    /// `offsets[..committed]` are certainly committed.
    committed: usize,
}

/// The model of one shape, shared by its writer thread and every reader.
#[derive(Default)]
pub struct Model {
    inner: RwLock<ShapeModel>,
}

impl Model {
    /// A model whose log is `committed`, all committed.
    pub fn with_committed(committed: Vec<LogOffset>) -> Self {
        Model {
            inner: RwLock::new(ShapeModel::with_committed(committed)),
        }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, ShapeModel> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, ShapeModel> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a transaction about to be committed (call before `commit()`).
    pub fn begin(&self, tx: &[LogOffset]) {
        let mut m = self.write();
        assert_eq!(m.committed, m.offsets.len(), "one transaction in flight");
        m.offsets.extend_from_slice(tx);
    }

    /// Marks the in-flight transaction committed (call after `commit()`
    /// returned Ok).
    pub fn commit(&self) {
        let mut m = self.write();
        m.committed = m.offsets.len();
    }

    /// Forgets the in-flight transaction (its `commit()` failed).
    pub fn abort(&self) {
        let mut m = self.write();
        let committed = m.committed;
        m.offsets.truncate(committed);
    }

    /// How many entries were certainly committed by now.
    pub fn committed_len(&self) -> usize {
        self.read().committed
    }
}

impl ShapeModel {
    /// A log of `committed` entries, nothing in flight.
    pub fn with_committed(committed: Vec<LogOffset>) -> Self {
        ShapeModel {
            committed: committed.len(),
            offsets: committed,
        }
    }

    /// The committed offsets (without any in-flight transaction).
    pub fn committed(&self) -> &[LogOffset] {
        &self.offsets[..self.committed]
    }

    /// Whether `at` is an entry of the log, committed or in flight.
    pub fn holds(&self, at: LogOffset) -> bool {
        self.offsets.binary_search(&at).is_ok()
    }

    /// Checks the offsets `got` of a read of `(after, upto]` that started
    /// when `lo` entries were committed. `self` must be the model as of
    /// after the read. Returns what is wrong, if anything.
    pub fn check(
        &self,
        lo: usize,
        after: LogOffset,
        upto: LogOffset,
        got: &[LogOffset],
    ) -> Result<(), String> {
        let offsets = &self.offsets;
        let i = offsets.partition_point(|o| *o <= after);
        let j = offsets.partition_point(|o| *o <= upto).max(i);
        let want = &offsets[i..j];
        if let Some(n) = got.iter().zip(want).position(|(g, w)| g != w) {
            let g = got[n];
            let what = if got[..n].contains(&g) || (n > 0 && g <= got[n - 1]) {
                "a duplicate or out-of-order entry"
            } else if offsets.binary_search(&g).is_err() {
                "an entry that was never committed"
            } else {
                "a gap"
            };
            return Err(format!(
                "{what}: entry #{n} of the answer is {g}, the model has {}",
                want[n]
            ));
        }
        if got.len() > want.len() {
            let g = got[want.len()];
            let what = if g <= after || g > upto {
                "an entry outside the range"
            } else {
                "an entry that was never committed"
            };
            return Err(format!(
                "{what}: {g} (entry #{} of the answer; the model has {} in range)",
                want.len(),
                want.len()
            ));
        }
        if got.len() < want.len() {
            // The answer stops at entry k of the log: that must be a
            // transaction boundary that was committed at some instant of
            // the read.
            let k = i + got.len();
            if k < lo {
                return Err(format!(
                    "a gap: the answer stops before {} although it was committed \
                     before the read started ({} of {} entries in range returned)",
                    offsets[k],
                    got.len(),
                    want.len()
                ));
            }
            if k > 0 && offsets[k].tx == offsets[k - 1].tx {
                return Err(format!(
                    "a partial transaction: the answer ends at {} inside transaction {}",
                    offsets[k - 1],
                    offsets[k].tx
                ));
            }
        }
        Ok(())
    }
}

/// The payload of entry `at` of the incarnation with seed `seed`: `len`
/// bytes of a deterministic stream, so any wrong or shifted payload shows.
pub fn payload(seed: u64, at: LogOffset, len: usize) -> Bytes {
    let mut v = Vec::with_capacity(len);
    let mut stream = Stream::new(seed, at);
    while v.len() < len {
        let word = stream.next_word().to_le_bytes();
        let n = (len - v.len()).min(8);
        v.extend_from_slice(&word[..n]);
    }
    Bytes::from(v)
}

/// Whether `got` is the payload of entry `at` of the incarnation with seed
/// `seed`.
pub fn payload_ok(seed: u64, at: LogOffset, len: usize, got: &[u8]) -> bool {
    if got.len() != len {
        return false;
    }
    let mut stream = Stream::new(seed, at);
    got.chunks(8).all(|chunk| {
        let word = stream.next_word().to_le_bytes();
        chunk == &word[..chunk.len()]
    })
}

/// splitmix64 seeded by (seed, offset).
struct Stream(u64);

impl Stream {
    fn new(seed: u64, at: LogOffset) -> Self {
        let mut s = Stream(seed);
        s.0 ^= s.next_word() ^ at.tx;
        s.0 ^= s.next_word() ^ at.op;
        s
    }

    fn next_word(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(tx: u64, op: u64) -> LogOffset {
        LogOffset::new(tx, op)
    }

    /// Transactions 1 (2 entries), 2 (1 entry) committed; 3 (2) in flight.
    fn model() -> ShapeModel {
        ShapeModel {
            offsets: vec![o(1, 0), o(1, 1), o(2, 0), o(3, 0), o(3, 1)],
            committed: 3,
        }
    }

    #[test]
    fn accepts_every_committed_prefix_between_before_and_after() {
        let m = model();
        let all = m.offsets.clone();
        assert_eq!(
            m.check(3, LogOffset::ZERO, LogOffset::MAX, &all[..3]),
            Ok(())
        );
        assert_eq!(m.check(3, LogOffset::ZERO, LogOffset::MAX, &all), Ok(()));
        assert_eq!(
            m.check(0, LogOffset::ZERO, LogOffset::MAX, &all[..2]),
            Ok(())
        );
        assert_eq!(m.check(0, LogOffset::ZERO, LogOffset::MAX, &[]), Ok(()));
        // A range cut by `upto` inside a transaction is whole.
        assert_eq!(m.check(5, o(1, 0), o(3, 0), &all[1..4]), Ok(()));
        assert_eq!(m.check(5, o(9, 0), LogOffset::MAX, &[]), Ok(()));
        assert_eq!(m.check(5, o(2, 0), o(1, 0), &[]), Ok(()));
    }

    #[test]
    fn rejects_gaps_duplicates_reorders_partials_and_strangers() {
        let m = model();
        let bad: &[(usize, &[LogOffset])] = &[
            (3, &[o(1, 0), o(1, 1)]),                   // misses tx 2, committed before
            (3, &[o(1, 0), o(2, 0)]),                   // gap
            (3, &[o(1, 0), o(1, 0), o(1, 1)]),          // duplicate
            (3, &[o(1, 1), o(1, 0), o(2, 0)]),          // reordered
            (0, &[o(1, 0)]),                            // half a transaction
            (0, &[o(1, 0), o(1, 1), o(2, 0), o(3, 0)]), // half of the in-flight one
            (3, &[o(1, 0), o(1, 1), o(2, 0), o(2, 1)]), // never committed
            (5, &[o(1, 0), o(1, 1), o(2, 0), o(3, 0), o(3, 1), o(4, 0)]),
        ];
        for (lo, got) in bad {
            assert!(
                m.check(*lo, LogOffset::ZERO, LogOffset::MAX, got).is_err(),
                "{got:?} accepted"
            );
        }
        assert!(m
            .check(5, o(1, 0), o(2, 0), &[o(1, 1), o(2, 0), o(3, 0)])
            .is_err());
    }

    #[test]
    fn payloads_are_deterministic_and_distinct() {
        let p = payload(7, o(3, 1), 100);
        assert!(payload_ok(7, o(3, 1), 100, &p));
        assert!(!payload_ok(7, o(3, 2), 100, &p));
        assert!(!payload_ok(8, o(3, 1), 100, &p));
        assert!(
            !payload_ok(7 | 1 << 32, o(3, 1), 100, &p),
            "another incarnation"
        );
        assert!(!payload_ok(7, o(3, 1), 100, &p[..99]), "truncated");
        assert!(payload_ok(7, o(3, 1), 0, &payload(7, o(3, 1), 0)));
        let mut q = p.to_vec();
        q[99] ^= 1;
        assert!(!payload_ok(7, o(3, 1), 100, &q));
    }
}
