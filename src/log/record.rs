//! Record framing: the bytes of a log file (see docs/format.md).
//!
//! A file is a header followed by records. Every record is
//! `body_len: u32 LE | crc32c(body): u32 LE | body`, where the body's first
//! byte is its kind:
//!
//! - `1` entry: `tx: u64 LE | op: u64 LE | payload`
//! - `2` commit: `committed: u64 LE | tx: u64 LE | op: u64 LE` — entries
//!   `[0, committed)` of the shape are committed; `(tx, op)` is the offset of
//!   entry `committed - 1`.
//! - `3` batch: `seq: u64 LE | len: u64 LE` — starts a segment of flush batch
//!   `seq`; the segment's records (entries, and a commit record that ends
//!   it) take the `len` bytes after this header.
//! - `4` synced: `seq: u64 LE` — batch `seq`'s `fdatasync` returned before
//!   this marker was written.
//!
//! The header is `magic (8) | start: u64 | base tx: u64 | base op: u64 |
//! id_len: u32 | id | crc32c: u32` (the crc covers everything before it).
//! The magic's last byte is the format version: 2 for files written now, 1
//! for files written before batches existed (read and appended to as they
//! are: their records up to the first batch header form a legacy batch 0 of
//! unknown length).
//!
//! # Batches ([`encode_batch`], [`synced_marker`])
//!
//! One flush writes one batch, numbered `seq` (1, 2, ... within a file):
//!
//! ```text
//! batch(seq, len) | entries up to the last committed one | commit
//!   [ batch(seq, len') | the uncommitted entries after it ]
//! ```
//!
//! then `fdatasync`, then `synced(seq)` (written, not synced). Without a
//! commit the batch is one segment of entries; with a commit and no entry
//! after it, one segment ending with the commit. The second segment (same
//! `seq`) exists only when entries follow the commit, so the point just
//! after a commit record is always a segment boundary: cutting the
//! uncommitted tail there leaves whole segments whose headers are exact.
//!
//! # Invariants
//!
//! - A record is accepted only if its length is within [`MAX_BODY`] and its
//!   checksum matches; decoding never allocates more than the bytes it was
//!   given.
//! - Every segment's `len` is the exact byte length of the records after its
//!   header; a commit record is the last record of its segment.
//! - A `synced(seq)` marker is only ever written after batch `seq`'s
//!   `fdatasync` returned (the caller's duty, see `ShapeLog::append`).

use bytes::{BufMut, Bytes};

use crate::id::MAX_ID;
use crate::LogOffset;

/// The file magic of new files, with the format version in its last byte.
pub(crate) const MAGIC: &[u8; 8] = b"SHPBLOG\x02";
/// The magic of version-1 files (no batch records), still read and
/// appended to.
pub(crate) const MAGIC_V1: &[u8; 8] = b"SHPBLOG\x01";
/// The frame prefix: body length and checksum.
pub(crate) const FRAME: usize = 8;
/// The largest body a record may have: a hard bound that protects readers
/// and recovery from allocating on a corrupt length.
pub(crate) const MAX_BODY: usize = 64 << 20;
/// The largest payload an entry may carry.
pub const MAX_PAYLOAD: usize = MAX_BODY - 17;

const ENTRY: u8 = 1;
const COMMIT: u8 = 2;
const BATCH: u8 = 3;
const SYNCED: u8 = 4;

/// The framed size of a batch header record.
pub(crate) const BATCH_SIZE: usize = FRAME + 17;
/// The framed size of a synced marker.
pub(crate) const SYNCED_SIZE: usize = FRAME + 9;
/// The framed size of a commit record.
const COMMIT_SIZE: usize = FRAME + 25;

/// A file's format version (the magic's last byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    /// No batch records: every record belongs to the legacy batch 0.
    V1,
    /// Every record after the header belongs to a batch.
    V2,
}

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    Entry {
        offset: LogOffset,
        payload: Bytes,
    },
    Commit {
        committed: u64,
        last: LogOffset,
    },
    /// The header of a segment of flush batch `seq`; its records take the
    /// `len` bytes after it.
    Batch {
        seq: u64,
        len: u64,
    },
    /// Batch `seq` was synced before this marker was written.
    Synced {
        seq: u64,
    },
}

/// Why a record could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bad {
    /// The bytes end inside the record (a torn tail, or more to read).
    Short { need: usize },
    /// The record is corrupt.
    Corrupt(&'static str),
}

/// The framed size of an entry with a payload of `len` bytes.
pub(crate) fn entry_size(len: usize) -> usize {
    FRAME + 17 + len
}

pub(crate) fn put_entry(out: &mut Vec<u8>, offset: LogOffset, payload: &[u8]) {
    let start = out.len();
    out.put_u32_le(0);
    out.put_u32_le(0);
    out.put_u8(ENTRY);
    out.put_u64_le(offset.tx);
    out.put_u64_le(offset.op);
    out.put_slice(payload);
    seal(out, start);
}

pub(crate) fn put_commit(out: &mut Vec<u8>, committed: u64, last: LogOffset) {
    let start = out.len();
    out.put_u32_le(0);
    out.put_u32_le(0);
    out.put_u8(COMMIT);
    out.put_u64_le(committed);
    out.put_u64_le(last.tx);
    out.put_u64_le(last.op);
    seal(out, start);
}

fn put_batch(out: &mut Vec<u8>, seq: u64, len: u64) {
    let start = out.len();
    out.put_u32_le(0);
    out.put_u32_le(0);
    out.put_u8(BATCH);
    out.put_u64_le(seq);
    out.put_u64_le(len);
    seal(out, start);
}

/// The `synced(seq)` marker, written after batch `seq`'s `fdatasync`
/// returned.
pub(crate) fn synced_marker(seq: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(SYNCED_SIZE);
    out.put_u32_le(0);
    out.put_u32_le(0);
    out.put_u8(SYNCED);
    out.put_u64_le(seq);
    seal(&mut out, 0);
    out
}

/// The bytes of one flush batch (see the module doc), with where its
/// uncommitted tail may be cut.
#[derive(Debug)]
pub(crate) struct EncodedBatch {
    pub(crate) bytes: Vec<u8>,
    /// The position in `bytes` just after the commit record, if the batch
    /// has one: a segment boundary.
    pub(crate) commit_end: Option<usize>,
}

/// Encodes flush batch `seq`: `entries` in order, and `commit =
/// (split, committed, last)` as a commit record right after the first
/// `split` entries (a segment of its own ends there; later entries open a
/// second segment). `on_entry(pos, framed_len, offset)` is called for each
/// entry with its position in the batch, so the caller can place index
/// points. Returns an empty batch when there is nothing to write.
pub(crate) fn encode_batch<'a, I>(
    seq: u64,
    entries: I,
    commit: Option<(usize, u64, LogOffset)>,
    mut on_entry: impl FnMut(usize, usize, LogOffset),
) -> EncodedBatch
where
    I: Iterator<Item = (LogOffset, &'a [u8])> + Clone,
{
    let payloads: usize = entries.clone().map(|(_, p)| entry_size(p.len())).sum();
    let mut b = Segments {
        seq,
        bytes: Vec::with_capacity(payloads + 2 * BATCH_SIZE + COMMIT_SIZE),
        open: None,
    };
    let mut commit_end = None;
    let mut put_commit_now = |b: &mut Segments| {
        if let Some((_, c, last)) = commit {
            b.open();
            put_commit(&mut b.bytes, c, last);
            b.close();
            commit_end = Some(b.bytes.len());
        }
    };
    let mut n = 0;
    for (i, (offset, payload)) in entries.enumerate() {
        if commit.is_some_and(|(split, _, _)| split == i) {
            put_commit_now(&mut b);
        }
        b.open();
        let pos = b.bytes.len();
        put_entry(&mut b.bytes, offset, payload);
        on_entry(pos, b.bytes.len() - pos, offset);
        n = i + 1;
    }
    if commit.is_some_and(|(split, _, _)| split >= n) {
        put_commit_now(&mut b);
    }
    b.close();
    EncodedBatch {
        bytes: b.bytes,
        commit_end,
    }
}

/// A batch being encoded: segments of one `seq`, each header patched with
/// its length when the segment closes.
struct Segments {
    seq: u64,
    bytes: Vec<u8>,
    /// Where the open segment's header starts.
    open: Option<usize>,
}

impl Segments {
    fn open(&mut self) {
        if self.open.is_none() {
            self.open = Some(self.bytes.len());
            put_batch(&mut self.bytes, self.seq, 0);
        }
    }

    fn close(&mut self) {
        if let Some(at) = self.open.take() {
            let len = (self.bytes.len() - at - BATCH_SIZE) as u64;
            let mut header = Vec::with_capacity(BATCH_SIZE);
            put_batch(&mut header, self.seq, len);
            self.bytes[at..at + BATCH_SIZE].copy_from_slice(&header);
        }
    }
}

fn seal(out: &mut [u8], start: usize) {
    let body_len = (out.len() - start - FRAME) as u32;
    let crc = crc32c::crc32c(&out[start + FRAME..]);
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// Decodes the record at the start of `buf`; returns it with its framed
/// length. `buf` is a `Bytes` so that payloads are shared, not copied.
pub(crate) fn decode(buf: &Bytes) -> Result<(Record, usize), Bad> {
    if buf.len() < FRAME {
        return Err(Bad::Short { need: FRAME });
    }
    let body_len = u32_at(buf, 0) as usize;
    if body_len == 0 || body_len > MAX_BODY {
        return Err(Bad::Corrupt("record length out of range"));
    }
    let total = FRAME + body_len;
    if buf.len() < total {
        return Err(Bad::Short { need: total });
    }
    let body = &buf[FRAME..total];
    if crc32c::crc32c(body) != u32_at(buf, 4) {
        return Err(Bad::Corrupt("record checksum mismatch"));
    }
    let rec = match body[0] {
        ENTRY if body.len() >= 17 => Record::Entry {
            offset: LogOffset::new(u64_at(body, 1), u64_at(body, 9)),
            payload: buf.slice(FRAME + 17..total),
        },
        COMMIT if body.len() == 25 => Record::Commit {
            committed: u64_at(body, 1),
            last: LogOffset::new(u64_at(body, 9), u64_at(body, 17)),
        },
        BATCH if body.len() == 17 => Record::Batch {
            seq: u64_at(body, 1),
            len: u64_at(body, 9),
        },
        SYNCED if body.len() == 9 => Record::Synced {
            seq: u64_at(body, 1),
        },
        _ => return Err(Bad::Corrupt("unknown record kind or size")),
    };
    Ok((rec, total))
}

/// The batch header or synced marker at the start of `buf`, if an intact
/// one is there (any other bytes, or too few, give `None`). Reads at most
/// [`BATCH_SIZE`] bytes: recovery probes arbitrary positions with it.
pub(crate) fn decode_mark(buf: &[u8]) -> Option<Record> {
    if buf.len() < FRAME + 1 {
        return None;
    }
    let body_len = u32_at(buf, 0) as usize;
    let kind = buf[FRAME];
    let fits = match kind {
        BATCH => body_len == BATCH_SIZE - FRAME,
        SYNCED => body_len == SYNCED_SIZE - FRAME,
        _ => false,
    };
    if !fits || buf.len() < FRAME + body_len {
        return None;
    }
    let body = &buf[FRAME..FRAME + body_len];
    if crc32c::crc32c(body) != u32_at(buf, 4) {
        return None;
    }
    Some(match kind {
        BATCH => Record::Batch {
            seq: u64_at(body, 1),
            len: u64_at(body, 9),
        },
        _ => Record::Synced {
            seq: u64_at(body, 1),
        },
    })
}

/// A log file's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// The entry number of the file's first entry.
    pub(crate) start: u64,
    /// The offset of entry `start - 1` (`ZERO` when `start == 0`).
    pub(crate) base: LogOffset,
    /// The shape id.
    pub(crate) id: Bytes,
}

impl Header {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + self.id.len());
        out.put_slice(MAGIC);
        out.put_u64_le(self.start);
        out.put_u64_le(self.base.tx);
        out.put_u64_le(self.base.op);
        out.put_u32_le(self.id.len() as u32);
        out.put_slice(&self.id);
        let crc = crc32c::crc32c(&out);
        out.put_u32_le(crc);
        out
    }

    /// Decodes a header (of either version) from the start of `buf`,
    /// returning it with its length and the file's version. New headers are
    /// always [`Version::V2`].
    pub(crate) fn decode(buf: &[u8]) -> Result<(Header, usize, Version), Bad> {
        const FIXED: usize = 8 + 24 + 4;
        if buf.len() < FIXED {
            return Err(Bad::Short { need: FIXED });
        }
        let version = if &buf[..8] == MAGIC {
            Version::V2
        } else if &buf[..8] == MAGIC_V1 {
            Version::V1
        } else {
            return Err(Bad::Corrupt("bad magic"));
        };
        let id_len = u32_at(buf, 32) as usize;
        if id_len == 0 || id_len > MAX_ID {
            return Err(Bad::Corrupt("shape id length out of range"));
        }
        let total = FIXED + id_len + 4;
        if buf.len() < total {
            return Err(Bad::Short { need: total });
        }
        if crc32c::crc32c(&buf[..total - 4]) != u32_at(buf, total - 4) {
            return Err(Bad::Corrupt("header checksum mismatch"));
        }
        let h = Header {
            start: u64_at(buf, 8),
            base: LogOffset::new(u64_at(buf, 16), u64_at(buf, 24)),
            id: Bytes::copy_from_slice(&buf[FIXED..FIXED + id_len]),
        };
        Ok((h, total, version))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn entry_and_commit_round_trip() {
        let mut out = Vec::new();
        put_entry(&mut out, LogOffset::new(3, 4), b"payload");
        put_commit(&mut out, 9, LogOffset::new(3, 4));
        assert_eq!(out.len(), entry_size(7) + FRAME + 25);
        let buf = Bytes::from(out);
        let (r, n) = decode(&buf).expect("entry");
        assert_eq!(
            r,
            Record::Entry {
                offset: LogOffset::new(3, 4),
                payload: Bytes::from_static(b"payload")
            }
        );
        let (r, m) = decode(&buf.slice(n..)).expect("commit");
        assert_eq!(
            r,
            Record::Commit {
                committed: 9,
                last: LogOffset::new(3, 4)
            }
        );
        assert_eq!(n + m, buf.len());
    }

    #[test]
    fn torn_and_flipped_records_are_rejected() {
        let mut out = Vec::new();
        put_entry(&mut out, LogOffset::new(1, 0), b"abcdef");
        let full = Bytes::from(out.clone());
        for cut in 0..full.len() {
            assert!(
                matches!(decode(&full.slice(..cut)), Err(Bad::Short { .. })),
                "cut at {cut}"
            );
        }
        for i in 0..out.len() {
            let mut flipped = out.clone();
            flipped[i] ^= 0x40;
            assert!(
                decode(&Bytes::from(flipped)).is_err(),
                "flip at {i} accepted"
            );
        }
    }

    #[test]
    fn batch_and_synced_records_round_trip() {
        let mut out = Vec::new();
        put_batch(&mut out, 7, 1234);
        out.extend(synced_marker(u64::MAX));
        assert_eq!(out.len(), BATCH_SIZE + SYNCED_SIZE);
        let buf = Bytes::from(out);
        let (r, n) = decode(&buf).expect("batch");
        assert_eq!(
            (r.clone(), n),
            (Record::Batch { seq: 7, len: 1234 }, BATCH_SIZE)
        );
        assert_eq!(decode_mark(&buf), Some(r));
        let rest = buf.slice(n..);
        let (r, m) = decode(&rest).expect("synced");
        assert_eq!(
            (r.clone(), m),
            (Record::Synced { seq: u64::MAX }, SYNCED_SIZE)
        );
        assert_eq!(decode_mark(&rest), Some(r));
        // Entries and commits are not marks.
        let mut e = Vec::new();
        put_entry(&mut e, LogOffset::new(1, 0), b"x");
        put_commit(&mut e, 1, LogOffset::new(1, 0));
        assert_eq!(decode_mark(&e), None);
        assert_eq!(decode_mark(&e[entry_size(1)..]), None);
    }

    #[test]
    fn flipped_or_torn_batch_and_synced_records_are_rejected() {
        let mut batch = Vec::new();
        put_batch(&mut batch, 3, 99);
        for rec in [batch, synced_marker(3)] {
            for i in 0..rec.len() {
                for bit in 0..8 {
                    let mut flipped = rec.clone();
                    flipped[i] ^= 1 << bit;
                    assert!(
                        decode(&Bytes::from(flipped.clone())).is_err(),
                        "flip of bit {bit} at {i} accepted"
                    );
                    assert_eq!(decode_mark(&flipped), None, "flip of bit {bit} at {i}");
                }
            }
            for cut in 0..rec.len() {
                assert_eq!(decode_mark(&rec[..cut]), None, "cut at {cut}");
                assert!(matches!(
                    decode(&Bytes::copy_from_slice(&rec[..cut])),
                    Err(Bad::Short { .. })
                ));
            }
        }
    }

    /// Decodes a whole batch: its records, and for each segment header that
    /// its length is exact.
    fn records_of(bytes: &[u8]) -> Vec<Record> {
        let buf = Bytes::copy_from_slice(bytes);
        let mut at = 0;
        let mut out = Vec::new();
        let mut seg_end = None;
        while at < buf.len() {
            let (r, n) = decode(&buf.slice(at..)).expect("record");
            if let Record::Batch { len, .. } = r {
                assert!(seg_end.is_none_or(|e| e == at), "header inside a segment");
                seg_end = Some(at + n + len as usize);
            }
            at += n;
            if let Record::Commit { .. } = r {
                assert_eq!(seg_end, Some(at), "a commit ends its segment");
            }
            out.push(r);
        }
        assert_eq!(
            seg_end,
            Some(buf.len()),
            "the last segment's length is exact"
        );
        out
    }

    #[test]
    fn batches_place_the_commit_at_a_segment_boundary() {
        let offs: Vec<LogOffset> = (1..=3).map(|tx| LogOffset::new(tx, 0)).collect();
        let entries = || offs.iter().map(|o| (*o, &b"pay"[..]));
        let short = |r: &Record| match r {
            Record::Entry { offset, .. } => format!("e{}", offset.tx),
            Record::Commit { committed, .. } => format!("c{committed}"),
            Record::Batch { seq, .. } => format!("b{seq}"),
            Record::Synced { seq } => format!("s{seq}"),
        };
        let cases: [(Option<usize>, &str); 5] = [
            (None, "b5 e1 e2 e3"),
            (Some(3), "b5 e1 e2 e3 c13"),
            (Some(1), "b5 e1 c11 b5 e2 e3"),
            (Some(0), "b5 c10 b5 e1 e2 e3"),
            (Some(2), "b5 e1 e2 c12 b5 e3"),
        ];
        for (split, want) in cases {
            let mut seen = Vec::new();
            let b = encode_batch(
                5,
                entries(),
                split.map(|s| (s, 10 + s as u64, LogOffset::new(s as u64, 0))),
                |pos, len, o| seen.push((pos, len, o)),
            );
            let recs = records_of(&b.bytes);
            let got: Vec<String> = recs.iter().map(short).collect();
            assert_eq!(got.join(" "), want, "split {split:?}");
            // Each reported position holds that entry.
            for (pos, len, o) in &seen {
                let (r, n) = decode(&Bytes::copy_from_slice(&b.bytes[*pos..])).expect("entry");
                assert_eq!(
                    (&r, n),
                    (
                        &Record::Entry {
                            offset: *o,
                            payload: Bytes::from_static(b"pay")
                        },
                        *len
                    )
                );
            }
            assert_eq!(seen.len(), 3);
            match (split, b.commit_end) {
                (None, None) => {}
                (Some(_), Some(ce)) => {
                    // Cutting there leaves whole segments ending with the commit.
                    let kept = records_of(&b.bytes[..ce]);
                    assert!(matches!(kept.last(), Some(Record::Commit { .. })));
                }
                other => panic!("commit_end {other:?}"),
            }
        }
        // A commit of entries already on disk, alone.
        let b = encode_batch(
            2,
            std::iter::empty(),
            Some((0, 4, LogOffset::new(4, 0))),
            |_, _, _| {},
        );
        assert_eq!(records_of(&b.bytes).len(), 2);
        assert_eq!(b.commit_end, Some(b.bytes.len()));
        // Nothing to write.
        let b = encode_batch(2, std::iter::empty(), None, |_, _, _| {});
        assert!(b.bytes.is_empty());
    }

    #[test]
    fn header_round_trips_and_rejects_corruption() {
        let h = Header {
            start: 42,
            base: LogOffset::new(7, 1),
            id: Bytes::from_static(b"../etc/passwd\0"),
        };
        let enc = h.encode();
        assert_eq!(
            Header::decode(&enc),
            Ok((h.clone(), enc.len(), Version::V2))
        );
        let mut v1 = enc.clone();
        v1[..8].copy_from_slice(MAGIC_V1);
        let crc = crc32c::crc32c(&v1[..v1.len() - 4]);
        let at = v1.len() - 4;
        v1[at..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Header::decode(&v1), Ok((h, enc.len(), Version::V1)));
        let mut bad = enc.clone();
        bad[20] ^= 1;
        assert!(Header::decode(&bad).is_err());
    }
}
