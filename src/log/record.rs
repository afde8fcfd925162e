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
//!
//! The header is `magic (8) | start: u64 | base tx: u64 | base op: u64 |
//! id_len: u32 | id | crc32c: u32` (the crc covers everything before it).
//!
//! # Invariants
//!
//! - A record is accepted only if its length is within [`MAX_BODY`] and its
//!   checksum matches; decoding never allocates more than the bytes it was
//!   given.

use bytes::{BufMut, Bytes};

use crate::LogOffset;

/// The file magic, with the format version in its last byte.
pub(crate) const MAGIC: &[u8; 8] = b"SHPBLOG\x01";
/// The frame prefix: body length and checksum.
pub(crate) const FRAME: usize = 8;
/// The largest body a record may have: a hard bound that protects readers
/// and recovery from allocating on a corrupt length.
pub(crate) const MAX_BODY: usize = 64 << 20;
/// The largest payload an entry may carry.
pub const MAX_PAYLOAD: usize = MAX_BODY - 17;
/// The longest shape id.
pub const MAX_ID: usize = 64 << 10;

const ENTRY: u8 = 1;
const COMMIT: u8 = 2;

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    Entry { offset: LogOffset, payload: Bytes },
    Commit { committed: u64, last: LogOffset },
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
        _ => return Err(Bad::Corrupt("unknown record kind or size")),
    };
    Ok((rec, total))
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

    /// Decodes a header from the start of `buf`, returning it with its
    /// length.
    pub(crate) fn decode(buf: &[u8]) -> Result<(Header, usize), Bad> {
        const FIXED: usize = 8 + 24 + 4;
        if buf.len() < FIXED {
            return Err(Bad::Short { need: FIXED });
        }
        if &buf[..8] != MAGIC {
            return Err(Bad::Corrupt("bad magic"));
        }
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
        Ok((h, total))
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
    fn header_round_trips_and_rejects_corruption() {
        let h = Header {
            start: 42,
            base: LogOffset::new(7, 1),
            id: Bytes::from_static(b"../etc/passwd\0"),
        };
        let enc = h.encode();
        assert_eq!(Header::decode(&enc), Ok((h, enc.len())));
        let mut bad = enc.clone();
        bad[20] ^= 1;
        assert!(Header::decode(&bad).is_err());
    }
}
