//! Log offsets.
//!
//! A [`LogOffset`] names one entry of a shape's log: the transaction it
//! belongs to (`tx`) and its position inside that transaction (`op`).
//! Offsets are ordered lexicographically, `(tx, op)`, and a shape's offsets
//! strictly increase: the writer rejects anything else.
//!
//! A *transaction* is a run of entries with the same `tx`; the last entry of
//! the run is the transaction boundary.

use std::fmt;

/// The position of one entry in a shape's log, ordered by `(tx, op)`.
///
/// ```
/// use shapebuf::LogOffset;
/// let a = LogOffset::new(7, 0);
/// let b = LogOffset::new(7, 1);
/// let c = LogOffset::new(8, 0);
/// assert!(a < b && b < c);
/// assert!(LogOffset::ZERO < a);
/// assert_eq!(a.to_string(), "7/0");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogOffset {
    /// The transaction this entry belongs to.
    pub tx: u64,
    /// The entry's position inside its transaction.
    pub op: u64,
}

impl LogOffset {
    /// The smallest offset. Reading `after` it returns the whole log; no
    /// entry can be appended at it.
    pub const ZERO: LogOffset = LogOffset { tx: 0, op: 0 };
    /// The largest offset: reading `upto` it means "everything committed".
    pub const MAX: LogOffset = LogOffset {
        tx: u64::MAX,
        op: u64::MAX,
    };

    /// Builds an offset from a transaction number and an operation number.
    ///
    /// ```
    /// let o = shapebuf::LogOffset::new(3, 9);
    /// assert_eq!((o.tx, o.op), (3, 9));
    /// ```
    pub const fn new(tx: u64, op: u64) -> Self {
        LogOffset { tx, op }
    }
}

impl fmt::Display for LogOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tx, self.op)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn orders_by_tx_then_op() {
        let mut v = vec![
            LogOffset::new(2, 0),
            LogOffset::new(1, 5),
            LogOffset::new(1, 0),
            LogOffset::MAX,
            LogOffset::ZERO,
        ];
        v.sort();
        assert_eq!(
            v,
            vec![
                LogOffset::ZERO,
                LogOffset::new(1, 0),
                LogOffset::new(1, 5),
                LogOffset::new(2, 0),
                LogOffset::MAX
            ]
        );
    }
}
