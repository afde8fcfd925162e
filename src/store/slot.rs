//! A shape's slot: what the store knows of one shape, in memory or not.
//!
//! A slot holds the shape's id, its file stem, its live-tail waiters, and
//! its state, which is [`Lazy`]: *open* (an [`Open`]: the in-memory buffer
//! and the log, recovered) or *closed* (a [`Closed`]: how to open it, or why
//! it cannot be). Nothing is recovered or allocated until a shape is first
//! read or written, and a terminated shape whose log is small is closed
//! again, so a store of a million mostly idle shapes holds a million small
//! slots, not a million buffers and logs.
//!
//! # Invariants
//!
//! - A shape is opened at most once at a time ([`Lazy`]'s gate): a reader
//!   and a writer racing to be the first to touch a cold shape share one
//!   recovery and one [`Open`].
//! - Only the holder of the open buffer's writer claim closes the slot
//!   (terminate), or a remover that holds the claim; a writer that claimed
//!   an [`Open`] checks that it is still the published one, so nobody ever
//!   writes into an `Open` that readers can no longer find.
//! - A slot whose files fail verification is *quarantined*: it answers
//!   `Error::Corrupt` (the same error each time) until it is removed; its
//!   files are left as they are.
//! - A removed slot stays removed: the id may get a new slot, never this
//!   one back, so a handle to the old shape never sees the new one's data.

use std::path::PathBuf;
use std::sync::Arc;

use tracing::error;

use crate::durable::Durable;
use crate::id;
use crate::log::catalog::Stem;
use crate::log::dir_sync::Ticket;
use crate::log::{self, Appended, Files, LogCtx, ShapeLog};
use crate::shape::buffer::{Buffer, HoldsBuffer, Reclaim, WriterToken};
use crate::shape::lazy::{Held, Lazy};
use crate::shape::segment::Batch;
use crate::shape::wait::Waiters;
use crate::store::flusher::Sink;
use crate::sync::{Epoch, Guard};
use crate::{Error, LogOffset, Result};

/// A terminated shape whose log is one file of at most this many bytes is
/// closed (its buffer and log dropped): recovering it again on its next use
/// reads at most this much. Larger logs stay open: their state is small
/// beside their data, and re-reading them would not be.
pub(crate) const CLOSE_BELOW: u64 = 64 << 10;

/// An open shape: its in-memory buffer and its log, in one allocation
/// (an `Arc`: reads and flushes that outlive the pin hold it, and the
/// log's last owner deletes a removed shape's files).
pub(crate) struct Open {
    pub(crate) buffer: Buffer,
    pub(crate) log: ShapeLog,
}

// An open shape's own block: 96 bytes, an `Arc`'s 112, a 128-byte heap
// chunk (glibc: multiples of 16 with 8 bytes of overhead).
#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Open>() <= 96);

impl HoldsBuffer for Open {
    fn buffer(&self) -> &Buffer {
        &self.buffer
    }
}

/// The writer's flush batches go to the shape's log.
impl Sink for Open {
    fn append(&self, pending: &Batch, commit: Option<(u64, LogOffset)>) -> Result<Appended> {
        self.log.append(pending.iter(), commit)
    }

    fn dir_durable(&self, ticket: Ticket) -> Result<Durable> {
        self.log.dir_durable(ticket)
    }
}

/// A closed shape: what opening it takes.
#[derive(Debug)]
pub(crate) enum Closed {
    /// Open now (the state holds the [`Open`]).
    Open,
    /// Created by this process and never flushed: nothing on disk.
    New,
    /// On disk, in these files: recovered when first used.
    OnDisk(Files),
    /// Its files failed verification: the error every use returns, and
    /// the files (which a removal deletes).
    Quarantined(Box<Quarantine>),
    /// Removed: every use fails with [`Error::ShapeRemoved`].
    Removed,
}

/// A quarantined shape's error and files.
#[derive(Debug)]
pub(crate) struct Quarantine {
    pub(crate) path: PathBuf,
    pub(crate) detail: String,
    pub(crate) files: Files,
}

impl Quarantine {
    fn error(&self) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            detail: self.detail.clone(),
        }
    }
}

/// The shapes that reads opened (recovered) and that have no writer: at
/// most [`IDLE_OPEN`] of them stay open; beyond that the oldest is closed
/// again if it is still idle ([`Slot::close_idle`]), so reading a million
/// cold shapes now and then keeps a bounded number of them in memory. (A
/// shape a writer opened is closed by its terminate.)
#[derive(Default)]
pub(crate) struct Idle {
    queue: std::sync::Mutex<std::collections::VecDeque<std::sync::Weak<Slot>>>,
}

/// Read-opened idle shapes kept open (about 1 KB each).
pub(crate) const IDLE_OPEN: usize = 4096;

impl Idle {
    /// A read opened `slot`: remember it, and close the oldest beyond the
    /// bound.
    pub(crate) fn opened(&self, slot: &Arc<Slot>, env: &Env) {
        let victims: Vec<Arc<Slot>> = {
            let mut q = self
                .queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            q.push_back(Arc::downgrade(slot));
            let over = q.len().saturating_sub(IDLE_OPEN);
            q.drain(..over).filter_map(|w| w.upgrade()).collect()
        };
        for v in victims {
            v.close_idle(env);
        }
    }
}

/// What opening a slot needs from the store.
pub(crate) struct Env {
    pub(crate) log: Arc<LogCtx>,
    /// The store's epoch domain and retired-bytes count, shared with
    /// every buffer.
    pub(crate) reclaim: Arc<Reclaim>,
    /// Closed states whose drop the epoch collector has not run yet (see
    /// [`Env::drain`]).
    pub(crate) deferred: Arc<std::sync::atomic::AtomicUsize>,
}

impl Env {
    /// The store's epoch domain.
    #[inline]
    pub(crate) fn epoch(&self) -> &Epoch {
        &self.reclaim.epoch
    }

    /// Runs the drops that closes and removals deferred, once nobody can
    /// use the store any more: a closed state may hold cached descriptors,
    /// and a removed shape's log deletes its files when dropped. The epoch
    /// domain outlives the store (threads cache handles of it), so what it
    /// still holds would otherwise be held for good.
    pub(crate) fn drain(&self) {
        for _ in 0..1_000_000 {
            // Relaxed: see `Lazy::close`.
            if self.deferred.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                return;
            }
            self.epoch().pin().flush();
        }
        tracing::warn!("a pinned thread kept closed shapes' state from being freed at store drop");
    }
}

/// See the module docs.
pub(crate) struct Slot {
    /// The id (boxed: 16 bytes where `Bytes` takes 32, and a heap chunk of
    /// 32 bytes for a short id where an `Arc<[u8]>`'s counts make it 48; a
    /// slot is what an idle shape costs). An open shape's log holds it
    /// again, as an `Arc` shared with its flush-tracker entry.
    pub(crate) id: Box<[u8]>,
    /// The stem's number (its hash is the id's: [`Slot::stem`]).
    stem_n: u32,
    /// An idle closer holds the writer claim ([`Slot::close_idle`]); a
    /// hint (it sits in what would be padding).
    closing: std::sync::atomic::AtomicBool,
    state: Lazy<Open, Closed>,
    /// Readers waiting for the shape's next commit (live tail; see
    /// `wait.rs`). Lives with the slot, so waits span terminate and restart.
    pub(crate) waiters: Waiters,
    /// Under loom, written when the registry lets the slot go (instead of
    /// freeing it): a lookup that reads it afterwards, unordered, is a
    /// causality violation loom reports (model 9).
    #[cfg(loom)]
    canary: crate::sync::UnsafeCell<u64>,
}

// What an idle shape costs is mostly its slot: 72 bytes, an `Arc`'s 88, a
// 96-byte heap chunk (glibc's chunks are multiples of 16 with 8 bytes of
// overhead: at 80 bytes the chunk would be 112). Growing it is a decision.
#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Slot>() <= 72);

impl Slot {
    pub(crate) fn new(id: &[u8], stem: Stem, closed: Closed) -> Self {
        debug_assert_eq!(stem.hash, crate::log::catalog::fnv1a(id));
        Slot {
            id: id.into(),
            stem_n: stem.n,
            closing: std::sync::atomic::AtomicBool::new(false),
            state: Lazy::closed(closed),
            waiters: Waiters::default(),
            #[cfg(loom)]
            canary: crate::sync::UnsafeCell::new(0),
        }
    }

    /// The canary (loom models only; see the field).
    #[cfg(loom)]
    pub(crate) fn canary(&self) -> u64 {
        // SAFETY: loom checks this read against the poisoning write.
        self.canary.with(|p| unsafe { *p })
    }

    /// Marks the slot as let go by the registry (loom models only).
    #[cfg(loom)]
    pub(crate) fn poison(&self) {
        // SAFETY: loom checks this write against every read.
        self.canary.with_mut(|p| unsafe { *p = 0xdead })
    }

    /// The shape's file stem.
    pub(crate) fn stem(&self) -> Stem {
        Stem {
            hash: crate::log::catalog::fnv1a(&self.id),
            n: self.stem_n,
        }
    }

    /// A slot for a shape whose files failed verification before it could
    /// be opened (its header: its id could not even be read back).
    pub(crate) fn quarantined_new(id: &[u8], stem: Stem, q: Quarantine) -> Self {
        quarantined(id, &q);
        Slot::new(id, stem, Closed::Quarantined(Box::new(q)))
    }

    /// The open shape, if it is open, for as long as `guard` is pinned.
    #[inline]
    pub(crate) fn get<'g>(&self, guard: &'g Guard) -> Option<Held<'g, Open>> {
        self.state.get(guard)
    }

    /// The open shape as an owning reference, if it is open.
    pub(crate) fn get_arc(&self, guard: &Guard) -> Option<Arc<Open>> {
        self.state.get_arc(guard)
    }

    /// Whether `open` is the published state (a writer checks this after it
    /// claimed `open`'s buffer: see the module invariants).
    pub(crate) fn is_current(&self, open: &Open, guard: &Guard) -> bool {
        self.get(guard).is_some_and(|o| std::ptr::eq(o.get(), open))
    }

    /// Opens the shape if it is closed: recovers its log from disk (first
    /// use), or starts an empty one (a new shape). Must be called unpinned
    /// (it does I/O). Fails with the quarantine's `Error::Corrupt`, or
    /// [`Error::ShapeRemoved`]. Returns whether this call opened it.
    pub(crate) fn open(&self, env: &Env) -> Result<bool> {
        self.state.open(|closed| {
            let open = match closed {
                Closed::Open => unreachable!("the lazy state is closed"),
                Closed::New => Open {
                    buffer: Buffer::new(0, Arc::clone(&env.reclaim)),
                    log: ShapeLog::new(Arc::clone(&env.log), Arc::from(&self.id[..]), self.stem()),
                },
                Closed::OnDisk(files) => {
                    match log::recovery::recover(&env.log, self.stem(), files.starts()) {
                        Ok(Some((log, durable))) => Open {
                            log,
                            buffer: Buffer::new(durable.committed, Arc::clone(&env.reclaim)),
                        },
                        Ok(None) => Open {
                            // No file held a durable header: the shape's first
                            // flush never completed; start it afresh.
                            buffer: Buffer::new(0, Arc::clone(&env.reclaim)),
                            log: ShapeLog::new(
                                Arc::clone(&env.log),
                                Arc::from(&self.id[..]),
                                self.stem(),
                            ),
                        },
                        Err(Error::Corrupt { path, detail }) => {
                            let q = Quarantine {
                                path,
                                detail,
                                files: files.clone(),
                            };
                            quarantined(&self.id, &q);
                            let e = q.error();
                            *closed = Closed::Quarantined(Box::new(q));
                            return Err(e);
                        }
                        Err(e) => return Err(e),
                    }
                }
                Closed::Quarantined(q) => return Err(q.error()),
                Closed::Removed => return Err(Error::ShapeRemoved(id::display(&self.id))),
            };
            *closed = Closed::Open;
            Ok(open)
        })
    }

    /// Closes the shape again if a reader opened it and it is idle: no
    /// writer, no published segment (a dropped writer's stays readable),
    /// and a small log. Returns whether it closed it. (See [`Idle`].)
    pub(crate) fn close_idle(&self, env: &Env) -> bool {
        let Some(open) = self.get_arc(&env.epoch().pin()) else {
            return false;
        };
        // Closing needs the writer claim (module invariants); a writer
        // that finds it held by this closer waits instead of failing
        // (`Store::writer`).
        self.closing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let closed = match WriterToken::claim(&open) {
            Some(_token) => {
                let guard = env.epoch().pin();
                self.is_current(&open, &guard)
                    && !open.buffer.is_live()
                    && open.log.is_small(CLOSE_BELOW)
                    && self.close(&guard, env)
            }
            None => false,
        };
        self.closing
            .store(false, std::sync::atomic::Ordering::Release);
        closed
    }

    /// Takes the writer claim of `open` (this slot's state), waiting out an
    /// idle closer that holds it for a moment; `None` if a writer holds it.
    pub(crate) fn claim(&self, open: &Arc<Open>) -> Option<WriterToken<Open>> {
        loop {
            if let Some(token) = WriterToken::claim(open) {
                return Some(token);
            }
            // Acquire: pairs with the closer's Release clearing the flag
            // after it let the claim go: seeing it clear, the second try
            // below sees the claim free unless a writer holds it.
            if self.closing.load(std::sync::atomic::Ordering::Acquire) {
                std::thread::yield_now();
                continue;
            }
            return WriterToken::claim(open);
        }
    }

    /// Closes the shape (its buffer and log are dropped once readers that
    /// hold them are done) if it is open, leaving what reopening it takes.
    /// The caller holds the buffer's writer claim (module invariants).
    pub(crate) fn close(&self, guard: &Guard, env: &Env) -> bool {
        // The state's cached descriptors close now (its memory goes with
        // the epoch): an idle shape holds no descriptor.
        self.state.close(guard, &env.deferred, |open, closed| {
            open.log.forget_descriptors();
            *closed = Closed::OnDisk(open.log.files_now());
        })
    }

    /// Removes an open shape: `open` is its published state, whose writer
    /// claim the caller holds (and whose removal it made durable). Closes
    /// it for good. Returns false if `open` is not the published state.
    pub(crate) fn remove_open(&self, open: &Open, guard: &Guard, env: &Env) -> bool {
        self.state
            .transition(guard, &env.deferred, |current, closed| match current {
                Some(c) if std::ptr::eq(c, open) => {
                    *closed = Closed::Removed;
                    (true, true)
                }
                _ => (false, false),
            })
    }

    /// Removes a closed shape: under the gate (so nobody opens it
    /// meanwhile), `durable` makes the removal durable given the files the
    /// shape has on disk (if any), then the shape is marked removed.
    /// Returns `Ok(None)` if the shape is open (remove it with
    /// [`Slot::remove_open`]), else the files it had. Must be called
    /// unpinned (`durable` does I/O).
    pub(crate) fn remove_closed(
        &self,
        durable: impl FnOnce(Option<&Files>) -> Result<()>,
    ) -> Result<Option<Option<Files>>> {
        let (mut closed, open) = self.state.gate();
        if open {
            return Ok(None);
        }
        let files = match &*closed {
            Closed::Open => unreachable!("the lazy state is closed"),
            Closed::Removed => return Err(Error::ShapeRemoved(id::display(&self.id))),
            Closed::New => None,
            Closed::OnDisk(files) => Some(files.clone()),
            Closed::Quarantined(q) => Some(q.files.clone()),
        };
        durable(files.as_ref())?;
        *closed = Closed::Removed;
        Ok(Some(files))
    }

    /// The quarantine's error, if the shape is quarantined.
    pub(crate) fn quarantined(&self) -> Option<Error> {
        match &*self.state.gate().0 {
            Closed::Quarantined(q) => Some(q.error()),
            _ => None,
        }
    }

    /// Whether the shape was removed.
    pub(crate) fn is_removed(&self) -> bool {
        matches!(*self.state.gate().0, Closed::Removed)
    }
}

/// Says once, loudly, that a shape is quarantined.
fn quarantined(id: &[u8], q: &Quarantine) {
    error!(
        shape = %id::display(id),
        path = %q.path.display(),
        detail = %q.detail,
        "shape quarantined: its log failed verification; every other shape serves on (remove it to reset it)"
    );
}
