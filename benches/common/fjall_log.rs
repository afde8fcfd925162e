//! fjall as a per-shape ordered log: the baseline a storage author would
//! write instead of shapebuf, as a thin adapter with the shape of
//! shapebuf's API (`open`, `writer`, `handle`, `read`; `append`, `commit`,
//! `flush`, `terminate`; `read`, `visit`), so that bench code reads the same
//! for both.
//!
//! One fjall [`Database`] with one keyspace, `shapes`, holds every shape.
//! A key is `id length: u16 BE | id | tx: u64 BE | op: u64 BE` (the length
//! prefix keeps one shape's keys from interleaving with another's, whatever
//! the ids' bytes), the value is the payload; big-endian offsets sort as
//! [`LogOffset`]s do.
//!
//! - A writer's transaction is a write batch: `append` adds to it, `commit`
//!   commits it (visible to readers; written to the journal's in-process
//!   buffer only, as the database is opened with `manual_journal_persist`,
//!   so that `commit` is in-memory as shapebuf's is).
//! - `flush` is `Database::persist` with the store's [`PersistMode`]
//!   (`SyncData` by default: the journal's buffer written and
//!   `fdatasync`ed). fjall has one journal for the whole database: a flush
//!   makes every shape's commits durable, not only this writer's.
//! - A read of `(after, upto]` is a range scan from the key of `after`
//!   (excluded) to the key of `upto` (included), owned
//!   ([`FjallHandle::read`], values as [`fjall::Slice`]: a reference count
//!   or an inline copy of a short value) or visited
//!   ([`FjallHandle::visit`]: the same scan without collecting; fjall has no
//!   borrowing read).
//!
//! fjall keeps no per-shape state: "creating" a shape writes nothing until
//! its first batch commits.
use std::ops::Bound;
use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode, Slice};
use shapebuf::LogOffset;

/// A committed entry read back from fjall.
pub struct FjallEntry {
    pub offset: LogOffset,
    pub payload: Slice,
}

/// One fjall database holding every shape's log.
#[derive(Clone)]
pub struct FjallStore {
    db: Database,
    shapes: Keyspace,
    flush_mode: PersistMode,
}

/// `u16 BE length | id`: a shape's key prefix.
fn prefix(id: &[u8]) -> Vec<u8> {
    let len = u16::try_from(id.len()).expect("a shape id of at most 65535 bytes");
    let mut p = Vec::with_capacity(2 + id.len() + 16);
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(id);
    p
}

fn key(prefix: &[u8], offset: LogOffset) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 16);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&offset.tx.to_be_bytes());
    k.extend_from_slice(&offset.op.to_be_bytes());
    k
}

fn offset_of(key: &[u8]) -> LogOffset {
    let n = key.len();
    let word = |at: usize| u64::from_be_bytes(key[at..at + 8].try_into().expect("8 bytes"));
    LogOffset::new(word(n - 16), word(n - 8))
}

impl FjallStore {
    /// Opens (creating if needed) the database in `dir`; flushes sync data.
    pub fn open(dir: impl AsRef<Path>) -> fjall::Result<Self> {
        FjallStore::open_with(dir, PersistMode::SyncData)
    }

    /// Opens the database in `dir`; `flush` persists with `flush_mode`
    /// (`Buffer`: written to the OS, not synced).
    pub fn open_with(dir: impl AsRef<Path>, flush_mode: PersistMode) -> fjall::Result<Self> {
        let db = Database::builder(dir.as_ref())
            .manual_journal_persist(true)
            .open()?;
        let shapes = db.keyspace("shapes", KeyspaceCreateOptions::default)?;
        Ok(FjallStore {
            db,
            shapes,
            flush_mode,
        })
    }

    /// The writer of shape `id`. Nothing is written until its first commit
    /// (and nothing enforces a single writer per shape).
    pub fn writer(&self, id: impl AsRef<[u8]>) -> fjall::Result<FjallWriter> {
        Ok(FjallWriter {
            store: self.clone(),
            prefix: prefix(id.as_ref()),
            batch: None,
        })
    }

    /// A handle reading shape `id` with its key prefix built once.
    pub fn handle(&self, id: impl AsRef<[u8]>) -> fjall::Result<FjallHandle> {
        Ok(FjallHandle {
            shapes: self.shapes.clone(),
            prefix: prefix(id.as_ref()),
        })
    }

    /// The committed entries of shape `id` in `(after, upto]`, in order.
    pub fn read(
        &self,
        id: impl AsRef<[u8]>,
        after: LogOffset,
        upto: LogOffset,
    ) -> fjall::Result<Vec<FjallEntry>> {
        self.handle(id)?.read(after, upto)
    }

    /// Makes every commit so far durable (all shapes: one journal).
    pub fn flush(&self) -> fjall::Result<()> {
        self.db.persist(self.flush_mode)
    }
}

/// A shape's writer: a write batch per transaction.
pub struct FjallWriter {
    store: FjallStore,
    prefix: Vec<u8>,
    batch: Option<OwnedWriteBatch>,
}

impl FjallWriter {
    /// Adds an entry to the open transaction.
    pub fn append(&mut self, offset: LogOffset, payload: impl AsRef<[u8]>) -> fjall::Result<()> {
        let store = &self.store;
        self.batch.get_or_insert_with(|| store.db.batch()).insert(
            &store.shapes,
            key(&self.prefix, offset),
            payload.as_ref(),
        );
        Ok(())
    }

    /// Commits the open transaction (its batch): visible to readers.
    pub fn commit(&mut self) -> fjall::Result<()> {
        match self.batch.take() {
            Some(batch) => batch.commit(),
            None => Ok(()),
        }
    }

    /// Makes the commits durable ([`FjallStore::flush`]: every shape's).
    pub fn flush(&mut self) -> fjall::Result<()> {
        self.store.flush()
    }

    /// Flushes and drops the writer; an open transaction is discarded.
    pub fn terminate(mut self) -> fjall::Result<()> {
        self.flush()
    }
}

/// Reads one shape's log.
#[derive(Clone)]
pub struct FjallHandle {
    shapes: Keyspace,
    prefix: Vec<u8>,
}

impl FjallHandle {
    fn scan(&self, after: LogOffset, upto: LogOffset) -> fjall::Iter {
        self.shapes.range::<Vec<u8>, _>((
            Bound::Excluded(key(&self.prefix, after)),
            Bound::Included(key(&self.prefix, upto)),
        ))
    }

    /// The committed entries with offsets in `(after, upto]`, in order.
    pub fn read(&self, after: LogOffset, upto: LogOffset) -> fjall::Result<Vec<FjallEntry>> {
        if upto <= after {
            return Ok(Vec::new());
        }
        self.scan(after, upto)
            .map(|g| {
                let (k, v) = g.into_inner()?;
                Ok(FjallEntry {
                    offset: offset_of(&k),
                    payload: v,
                })
            })
            .collect()
    }

    /// Calls `f` on each committed entry in `(after, upto]`, in order;
    /// returns how many.
    pub fn visit(
        &self,
        after: LogOffset,
        upto: LogOffset,
        mut f: impl FnMut(LogOffset, &[u8]),
    ) -> fjall::Result<usize> {
        if upto <= after {
            return Ok(0);
        }
        let mut n = 0;
        for g in self.scan(after, upto) {
            let (k, v) = g.into_inner()?;
            f(offset_of(&k), &v);
            n += 1;
        }
        Ok(n)
    }
}
