//! The store's shared core: what every [`Store`](crate::Store) clone,
//! writer and handle of one directory hold (`Arc<Inner>`), and the
//! operations they share: resolving an id to its slot, opening a shape for a
//! read, reading, removing.
//!
//! The writer and the handle reach the store only through this core; the
//! public faces (`mod.rs`, `handle.rs`, `writer.rs`) sit above it, and it
//! names none of them.
//!
//! # Orderings
//!
//! - `closed`: set once by [`Inner::shutdown`] with an AcqRel swap (only
//!   the first close works; its Release pairs with the Acquire load in
//!   [`Inner::is_closed`]). A writer registers under the writers' lock and
//!   then loads `closed`; the close stores it before taking that lock, so
//!   the lock orders the two and no writer escapes the close.
//! - `stores`: a count of `Store` values; increments Relaxed (made from a
//!   live one), the decrement AcqRel (the last one sees every other's work,
//!   as `Arc`'s count does), and only the last one closes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, Weak};
use std::time::Instant;

use crate::entry::Entry;
use crate::flush_tracker::FlushTracker;
use crate::id;
use crate::log::catalog::fnv1a;
use crate::log::{self, Files, HeaderRead};
use crate::shape::lazy::Held;
use crate::shape::reader::{self, ReadOutcome, Visit, VisitOutcome};
use crate::shape::wait::WakeService;
use crate::store::dirty::{self, Dirty, Visit as DirtyShape};
use crate::store::flusher::{self, Flusher};
use crate::store::registry::{share, Registry};
use crate::store::slot::{Closed, Env, Idle, Open, Quarantine, Slot};
use crate::sync::Guard;
use crate::{Error, LogOffset, Result};

use super::config::Config;

pub(crate) struct Inner {
    /// The directory's `LOCK`, held until the store is closed
    /// ([`Inner::shutdown`]: `Store::close`, or the last `Store`'s drop),
    /// even while writers and handles outlive it.
    pub(crate) lock: std::sync::Mutex<Option<Box<dyn std::fmt::Debug + Send + Sync>>>,
    /// Set once by [`Inner::shutdown`]; later calls fail with
    /// [`Error::Closed`].
    pub(crate) closed: AtomicBool,
    /// `Store` values alive (clones included); the last one's drop closes
    /// the store.
    pub(crate) stores: AtomicUsize,
    /// Every writer opened (weakly; dead entries are swept as it grows):
    /// what a close makes durable.
    pub(crate) writers: std::sync::Mutex<Writers>,
    /// Shapes with committed data not yet durable, and the timer thread
    /// that flushes them (`dirty.rs`).
    pub(crate) dirty: Dirty,
    pub(crate) config: Config,
    pub(crate) registry: Registry,
    /// The log context (directory, catalog, descriptors), the epoch domain
    /// and the retired-bytes count every shape's state is built with.
    pub(crate) env: Env,
    pub(crate) tracker: FlushTracker,
    /// Live tail: the waker thread (spawned by the first waiter; joined
    /// when the last owner of the store is gone).
    pub(crate) wake: WakeService,
    /// Writes and syncs writers' flush batches off their threads.
    pub(crate) flusher: Arc<Flusher>,
    /// Shapes opened by reads and kept open, boundedly.
    pub(crate) idle: Idle,
    /// When the store opened: writers keep their times as nanoseconds
    /// since ([`Inner::clock`]).
    pub(crate) started: Instant,
}

impl Inner {
    /// Nanoseconds since the store opened (saturating).
    pub(crate) fn clock(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether the store was closed.
    pub(crate) fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release of the swap in `shutdown` (what
        // the close did before is visible to a call that sees it closed).
        self.closed.load(Ordering::Acquire)
    }

    /// [`Error::Closed`] once the store was closed.
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Records a new writer, for [`Inner::shutdown`]. The writer checks
    /// [`Inner::is_closed`] after this: a close sets `closed` before it
    /// takes this list's lock, so either the close finds the writer here or
    /// the writer sees the close (the list's lock orders the two).
    pub(crate) fn register(&self, writer: Weak<dyn DirtyShape>) {
        let mut w = std::sync::Mutex::lock(&self.writers).unwrap_or_else(PoisonError::into_inner);
        if w.live.len() >= w.sweep_at {
            w.live.retain(|x| x.strong_count() > 0);
            w.sweep_at = (w.live.len() * 2).max(64);
        }
        w.live.push(writer);
    }

    /// Puts `shape` on the dirty queue, due `Config::flush_interval` from
    /// now (its writer marked it queued).
    pub(crate) fn queue_dirty(&self, shape: Weak<dyn DirtyShape>) {
        let flusher = Arc::downgrade(&self.flusher);
        let deadline = dirty::deadline(self.config.flush_interval);
        self.dirty
            .push(shape, deadline, move |job| match flusher.upgrade() {
                Some(f) => f.submit(job),
                // The store is going away: its writers' drops wait for their
                // batches, so run it here (uncounted: no stats are read
                // after).
                None => job.run(&Default::default()),
            });
    }

    /// Closes the store (`Store::close`, the last `Store`'s drop): stops
    /// the timer, makes every live writer's committed data durable (all
    /// written first, then synced, on [`CLOSE_THREADS`] threads at once),
    /// marks each writer closed, and releases the directory's lock. Later
    /// calls on writers, handles and stores fail with [`Error::Closed`]; a
    /// read already under way finishes. Idempotent.
    pub(crate) fn shutdown(&self) -> Result<()> {
        // AcqRel: the Release pairs with `is_closed`'s Acquire; only the
        // first caller closes.
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let _span = tracing::info_span!("close", dir = %self.env.log.dir.display()).entered();
        let start = std::time::Instant::now();
        self.dirty.shutdown();
        let live: Vec<Arc<dyn DirtyShape>> = {
            let mut w =
                std::sync::Mutex::lock(&self.writers).unwrap_or_else(PoisonError::into_inner);
            std::mem::take(&mut w.live)
                .into_iter()
                .filter_map(|x| x.upgrade())
                .collect()
        };
        let n = live.len();
        let mut out = Ok(());
        let mut round = live;
        // A writer whose own batch was in flight gets a second round for
        // what it committed after that batch; nothing commits after the
        // first round (every writer is closed), so a third finds nothing.
        for _ in 0..3 {
            if round.is_empty() {
                break;
            }
            let (again, r) = dirty::visit_all(round, true, |jobs| {
                flusher::run_parallel(jobs, CLOSE_THREADS, self.flusher.counters());
            });
            if out.is_ok() {
                out = r;
            }
            round = again;
        }
        debug_assert!(round.is_empty(), "a closed writer kept committing");
        drop(
            std::sync::Mutex::lock(&self.lock)
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        tracing::info!(writers = n, elapsed = ?start.elapsed(), "store closed");
        out
    }
}

/// Threads a close writes and syncs its writers' batches on: syncs of
/// different files overlap (about 2.6x the one-thread rate from 16 threads
/// on this project's test disk; issue 22).
pub(crate) const CLOSE_THREADS: usize = 16;

/// The store's writers (see [`Inner::writers`]).
#[derive(Default)]
pub(crate) struct Writers {
    live: Vec<Weak<dyn DirtyShape>>,
    /// Sweep the dead entries when `live` reaches this length.
    sweep_at: usize,
}

/// A read of an open shape whose memory part was taken under the pin; the
/// disk part (if any) runs after it, in [`Pinned::finish`].
pub(crate) struct Pinned {
    plan: reader::Plan,
    mem: Vec<Entry>,
    /// The shape's state, when the plan reads from its log (a reference,
    /// so that it outlives the pin).
    disk: Option<Arc<Open>>,
}

impl Pinned {
    pub(crate) fn read(
        open: Held<'_, Open>,
        after: LogOffset,
        upto: LogOffset,
        guard: &Guard,
    ) -> Self {
        let (plan, mem) = reader::memory(&open.buffer, after, upto, guard);
        let disk = plan.needs_disk().then(|| open.to_arc());
        Pinned { plan, mem, disk }
    }

    pub(crate) fn finish(self, after: LogOffset, upto: LogOffset) -> Result<ReadOutcome> {
        match &self.disk {
            Some(open) => reader::finish(&open.log, after, upto, self.plan, self.mem),
            None => reader::finish(&NoDisk, after, upto, self.plan, self.mem),
        }
    }
}

/// The disk of a read planned without one.
struct NoDisk;

impl reader::Disk for NoDisk {
    fn read(&self, _: LogOffset, _: LogOffset, _: u64, _: &mut Vec<Entry>) -> Result<()> {
        unreachable!("the plan reads nothing from disk")
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Nobody can reach the store any more: run what the collector still
        // holds of it (descriptors of closed shapes, removed shapes' files).
        self.env.drain();
    }
}

/// What [`Store::remove`](crate::Store::remove) (or [`ShapeWriter::remove`](crate::ShapeWriter::remove)) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Removed {
    /// The shape had files on disk: its removal was made durable (a
    /// tombstone) before the call returned, and the files are deleted once
    /// the reads in flight that use them are done.
    pub had_files: bool,
}

impl Inner {
    /// Removes `slot` (see [`Store::remove`](crate::Store::remove)). `claimed` is the caller's own
    /// writer claim on the shape's open state ([`ShapeWriter::remove`](crate::ShapeWriter::remove));
    /// without it the removal takes the claim itself, and refuses if a
    /// writer holds it.
    pub(crate) fn remove(
        &self,
        slot: &Arc<Slot>,
        claimed: Option<&Arc<crate::store::slot::Open>>,
    ) -> Result<Removed> {
        let env = &self.env;
        let _span = tracing::info_span!("remove", shape = %id::display(&slot.id)).entered();
        loop {
            let open = claimed
                .cloned()
                .or_else(|| slot.get_arc(&env.epoch().pin()));
            let Some(open) = open else {
                // Closed: remove it under its gate, so that nobody opens it
                // meanwhile; the tombstone first, so that a crash leaves the
                // whole shape or none of it.
                let files = slot.remove_closed(|files| match files {
                    Some(_) => log::write_tombstone(&env.log, slot.stem()),
                    None => Ok(()),
                })?;
                let Some(files) = files else { continue };
                self.unpublish(slot);
                // Delete the files now, unless a read still holds a log of
                // the shape from before it closed: then its drop does.
                let starts = files.as_ref().map_or(&[][..], Files::starts);
                if !env.log.catalog.defer_removal(slot.stem(), starts) {
                    match &files {
                        Some(files) => log::discard_stem(&env.log, slot.stem(), files)?,
                        None => env.log.catalog.release(slot.stem()),
                    }
                }
                tracing::debug!("removed");
                return Ok(Removed {
                    had_files: files.is_some(),
                });
            };
            // Open: hold its writer claim (ours, or the caller's), so that
            // no writer writes or closes it meanwhile.
            let _token = match claimed {
                Some(_) => None,
                None => {
                    let token = slot
                        .claim(&open)
                        .ok_or_else(|| Error::WriterActive(id::display(&slot.id)))?;
                    if !slot.is_current(&open, &env.epoch().pin()) {
                        continue;
                    }
                    Some(token)
                }
            };
            let had_files = open.log.has_file();
            open.log.remove()?;
            let removed = slot.remove_open(&open, &env.epoch().pin(), env);
            debug_assert!(removed, "the claimed state is the published one");
            self.unpublish(slot);
            drop(open);
            // The state's own reference goes with the epoch: once readers
            // that loaded it are done, the log's last owner deletes the
            // files (here, usually, or at the end of a read in flight).
            env.epoch().pin().flush();
            tracing::debug!("removed");
            return Ok(Removed { had_files });
        }
    }

    /// Takes a removed slot out of the registry and ends its waits.
    pub(crate) fn unpublish(&self, slot: &Slot) {
        self.registry.remove(slot, &self.env.epoch().pin());
        slot.waiters
            .close(crate::shape::wait::Close::Removed, &self.wake);
    }

    /// The slot of shape `id`: from the registry, or found on disk (the
    /// first time: reading the header of each listed stem with the id's
    /// hash), or, with `create`, a new one (no I/O).
    pub(crate) fn slot(&self, id: &[u8], create: bool) -> Result<Arc<Slot>> {
        self.check_open()?;
        let epoch = &self.env.epoch();
        if let Some(s) = self.registry.find(id, &epoch.pin()) {
            return Ok(share(s));
        }
        let hash = fnv1a(id);
        let mut damaged = None;
        for (stem, files) in self.env.log.catalog.candidates(hash) {
            if let Some(slot) = self.resolve(stem, &files, Some((id, &mut damaged)))? {
                return Ok(slot);
            }
        }
        let guard = epoch.pin();
        if let Some((stem, files, path, detail)) = damaged {
            // A listed stem with this id's hash whose header is damaged: the
            // id cannot be read back, but the hash says it is (almost
            // certainly) this shape. Quarantine it under this id, so that
            // it answers `Corrupt` and can be removed.
            let mut slot = None;
            self.env.log.catalog.resolve_with(stem, || {
                slot = Some(self.registry.get_or_insert_with(id, &guard, || {
                    let q = Quarantine {
                        path,
                        detail,
                        files,
                    };
                    Ok::<_, Error>(Slot::quarantined_new(id, stem, q))
                }));
            });
            if let Some(slot) = slot {
                return slot;
            }
        }
        if !create {
            // A racing resolver may have registered it meanwhile.
            return match self.registry.find(id, &guard) {
                Some(s) => Ok(share(s)),
                None => Err(Error::UnknownShape(id::display(id))),
            };
        }
        // The stem is allocated outside the registry's lock (the lock order
        // is catalog, then registry), and given back if a racing creator
        // won.
        let catalog = &self.env.log.catalog;
        let stem = catalog.allocate(hash);
        let mut used = false;
        let slot = self.registry.get_or_insert_with(id, &guard, || {
            used = true;
            Ok::<_, Error>(Slot::new(id, stem, Closed::New))
        });
        if !used {
            catalog.release(stem);
        }
        slot
    }

    /// Learns the id of listed stem `stem` (whose files start at `files`)
    /// from its first file's header and registers it. With `wanted`, returns
    /// the slot if it is that id's, and records a damaged header in the
    /// second field (for the caller to quarantine if no stem matches).
    #[allow(clippy::type_complexity)]
    pub(crate) fn resolve(
        &self,
        stem: log::catalog::Stem,
        files: &Files,
        wanted: Option<(
            &[u8],
            &mut Option<(log::catalog::Stem, Files, PathBuf, String)>,
        )>,
    ) -> Result<Option<Arc<Slot>>> {
        let ctx = &self.env.log;
        let first = files.starts()[0];
        let header = match log::read_id(ctx, stem, first) {
            Ok(h) => h,
            // Removed meanwhile (a racing resolver and remover).
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        match header {
            HeaderRead::Ok(h, _, _) => {
                let guard = self.env.epoch().pin();
                let mut slot = None;
                ctx.catalog.resolve_with(stem, || {
                    slot = Some(self.registry.get_or_insert_with(&h.id, &guard, || {
                        Ok::<_, Error>(Slot::new(&h.id, stem, Closed::OnDisk(files.clone())))
                    }));
                });
                let slot = match slot {
                    Some(s) => s?,
                    // Resolved by someone else meanwhile.
                    None => match self.registry.find(&h.id, &guard) {
                        Some(s) => share(s),
                        None => return Ok(None),
                    },
                };
                Ok(wanted.and_then(|(id, _)| (*id == h.id[..]).then_some(slot)))
            }
            HeaderRead::Torn if files.starts().len() == 1 => {
                // A shape whose first flush never completed (nothing of it
                // was acknowledged): recovery clears it away, unless records
                // after the header show that the header was durable and is
                // damaged (then it is corrupt, and quarantined like any).
                match log::recovery::recover(ctx, stem, files.starts()) {
                    Ok(None) => {
                        ctx.catalog.release(stem);
                        Ok(None)
                    }
                    // The header reads whole now (it was being written):
                    // the stem is a shape's, never free it.
                    Ok(Some(_)) => self.resolve(stem, files, wanted),
                    Err(Error::Corrupt { path, detail }) => {
                        if let Some((_, damaged)) = wanted {
                            damaged.get_or_insert((stem, files.clone(), path, detail));
                        }
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            }
            HeaderRead::Torn | HeaderRead::Corrupt(_) => {
                let why = match header {
                    HeaderRead::Corrupt(why) => why,
                    _ => "torn header in a file that is not the last",
                };
                if let Some((_, damaged)) = wanted {
                    damaged.get_or_insert((
                        stem,
                        files.clone(),
                        ctx.path(stem, first),
                        format!("header: {why}"),
                    ));
                }
                Ok(None)
            }
        }
    }

    /// Reads `(after, upto]` of `slot`, opening (recovering) it first if it
    /// is closed.
    pub(crate) fn read_slot(
        &self,
        slot: &Arc<Slot>,
        after: LogOffset,
        upto: LogOffset,
    ) -> Result<ReadOutcome> {
        self.check_open()?;
        loop {
            let guard = self.env.epoch().pin();
            let pinned = slot
                .get(&guard)
                .map(|open| Pinned::read(open, after, upto, &guard));
            drop(guard);
            if let Some(p) = pinned {
                return p.finish(after, upto);
            }
            self.open_for_read(slot)?;
        }
    }

    /// Visits `(after, upto]` of `slot` (see [`ShapeHandle::visit`]).
    pub(crate) fn visit_slot(
        &self,
        slot: &Arc<Slot>,
        after: LogOffset,
        upto: LogOffset,
        mut f: impl FnMut(&Entry),
    ) -> Result<VisitOutcome> {
        self.check_open()?;
        loop {
            let guard = self.env.epoch().pin();
            if let Some(open) = slot.get(&guard) {
                return match reader::visit_memory(&open.buffer, after, upto, &guard, &mut f) {
                    Visit::Done(out) => Ok(out),
                    Visit::Disk(plan, mem) => {
                        let open = open.to_arc();
                        drop(guard);
                        reader::finish_visit(&open.log, after, upto, plan, mem, f)
                    }
                };
            }
            drop(guard);
            self.open_for_read(slot)?;
        }
    }

    /// Opens `slot` for a reader (recovering it if it is closed); a shape
    /// this opened is kept open boundedly ([`Idle`]).
    pub(crate) fn open_for_read(&self, slot: &Arc<Slot>) -> Result<()> {
        if slot.open(&self.env)? {
            self.idle.opened(slot, &self.env);
        }
        Ok(())
    }

    /// Runs `f` on `slot`'s open state under a pin, opening it for a reader
    /// first if needed.
    pub(crate) fn with_open<R>(
        &self,
        slot: &Arc<Slot>,
        f: impl FnOnce(Held<'_, Open>, &Guard) -> R,
    ) -> Result<R> {
        let mut f = Some(f);
        loop {
            let guard = self.env.epoch().pin();
            if let Some(open) = slot.get(&guard) {
                let f = f.take().expect("called once");
                return Ok(f(open, &guard));
            }
            drop(guard);
            self.open_for_read(slot)?;
        }
    }
}
