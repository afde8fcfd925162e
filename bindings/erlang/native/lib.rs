//! The NIF side of the Erlang binding of shapebuf (module `shapebuf`).
//!
//! The Erlang module (`src/shapebuf.erl`) checks arguments and documents
//! the API; every NIF here is named `nif_*` and called only by it. Which
//! scheduler each NIF runs on, and why, is said on each one: anything that
//! may touch the disk, wait for a lock a dirty call may hold, or sleep runs
//! on a dirty I/O scheduler; that is every NIF here (none is so cheap and
//! lock-free that a normal scheduler could run it without ever waiting).
//! Waits run on no scheduler at all (see `sub.rs`), and every drop that may
//! block runs on the binding's reaper thread (`reaper.rs`).
//!
//! Resources: a store (`StoreRes`), a writer (`WriterRes`: owned by the
//! process that opened it, which is monitored), a subscription (`SubRes`,
//! also the `Ref` of its messages), and a read's buffer (`PackedBuf`: the
//! one binary whose sub-binaries a read returns).

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use rustler::types::map::MapIterator;
use rustler::{
    Atom, Binary, Encoder, Env, LocalPid, Monitor, NifResult, Resource, ResourceArc, Term,
};
use shapebuf::{Config, Error, LogOffset, PackedRead, ShapeWriter, Store};

mod durable;
mod reaper;
mod sub;

use sub::{Outcome, SubRes};

mod atoms {
    rustler::atoms! {
        ok,
        error,
        shapebuf,
        committed,
        timeout,
        terminated,
        writer_dropped,
        removed,
        closed,
        locked,
        not_found,
        not_owner,
        out_of_order,
        zero_offset,
        payload_too_large,
        bad_shape_id,
        writer_active,
        writer_closed,
        offset_collected,
        corrupt,
        io,
        commit_out_of_order,
        received_beyond_commit,
        invalid_config,
        other,
        dead,
        from_disk,
        more,
        persisted,
        had_files,
        shape_count,
        open_files,
        peak_open_files,
        retired_bytes,
        shapes_open,
        live_writers,
        quarantined,
        entries_not_durable,
        memory_bytes,
        flushes,
        flushed_bytes,
        flush_errors,
        sync_p50_us,
        sync_p99_us,
        flush_bytes,
        max_pending_bytes,
        flush_interval_ms,
        segment_capacity,
        retain_bytes,
        index_interval,
        file_bytes,
        flush_threads,
        max_payload,
        max_open_files,
        durable,
        lost,
    }
}

// ---- errors ---------------------------------------------------------------

fn offset_term(env: Env<'_>, o: LogOffset) -> Term<'_> {
    (o.tx, o.op).encode(env)
}

fn offset(o: (u64, u64)) -> LogOffset {
    LogOffset::new(o.0, o.1)
}

/// The one mapping of the library's errors to Erlang reasons (documented
/// in shapebuf.erl and the README).
fn reason<'a>(env: Env<'a>, e: &Error) -> Term<'a> {
    let msg = |m: String| m.encode(env);
    match e {
        Error::NonIncreasingOffset { last, .. } => {
            (atoms::out_of_order(), offset_term(env, *last)).encode(env)
        }
        Error::ZeroOffset => atoms::zero_offset().encode(env),
        Error::PayloadTooLarge { max, .. } => (atoms::payload_too_large(), *max).encode(env),
        Error::BadShapeId { .. } => atoms::bad_shape_id().encode(env),
        Error::UnknownShape(_) => atoms::not_found().encode(env),
        Error::ShapeRemoved(_) => atoms::removed().encode(env),
        Error::WriterActive(_) => atoms::writer_active().encode(env),
        Error::WriterClosed { reason, .. } => {
            (atoms::writer_closed(), msg(reason.to_string())).encode(env)
        }
        Error::OffsetCollected { earliest, .. } => {
            (atoms::offset_collected(), offset_term(env, *earliest)).encode(env)
        }
        Error::CommitOutOfOrder { last, .. } => {
            (atoms::commit_out_of_order(), offset_term(env, *last)).encode(env)
        }
        Error::ReceivedBeyondCommit { end, .. } => {
            (atoms::received_beyond_commit(), offset_term(env, *end)).encode(env)
        }
        Error::Corrupt { .. } => (atoms::corrupt(), msg(e.to_string())).encode(env),
        Error::Locked(_) => atoms::locked().encode(env),
        Error::Io { .. } => (atoms::io(), msg(e.to_string())).encode(env),
        // `Error` is non-exhaustive.
        _ => (atoms::other(), msg(e.to_string())).encode(env),
    }
}

fn error<'a>(env: Env<'a>, e: &Error) -> Term<'a> {
    (atoms::error(), reason(env, e)).encode(env)
}

fn error_atom(env: Env<'_>, a: Atom) -> Term<'_> {
    (atoms::error(), a).encode(env)
}

// ---- the store ------------------------------------------------------------

/// A store opened by `open/1,2`. `close/1` takes the store out; later
/// calls answer `{error, closed}`.
struct StoreRes {
    /// Read-locked only to clone the `Store` out (an `Arc` increment);
    /// write-locked only by `close/1` to take it. No I/O under either.
    store: RwLock<Option<Store>>,
    /// The writers opened through it (closed by `close/1`).
    writers: Mutex<Vec<Weak<WriterCell>>>,
    /// Subscriptions not known to be finished (ended by `close/1`).
    subs: Mutex<Vec<ResourceArc<SubRes>>>,
    /// Subscribers to the flush tracker's events.
    durable: Arc<durable::DurableSubs>,
}

#[rustler::resource_impl]
impl Resource for StoreRes {}

impl Drop for StoreRes {
    fn drop(&mut self) {
        // Collected without close/1: the last handle on a store joins its
        // threads; not on the collecting scheduler.
        let store = self.store.get_mut().ok().and_then(Option::take);
        reaper::drop_later(store);
    }
}

fn plock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl StoreRes {
    fn get(&self) -> Option<Store> {
        self.store
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Lists of writers and subscriptions are pruned when they pass this.
const PRUNE_MIN: usize = 64;

fn push_pruned<T>(v: &mut Vec<T>, item: T, live: impl Fn(&T) -> bool) {
    if v.len() >= PRUNE_MIN && v.len() == v.capacity() {
        v.retain(live);
    }
    v.push(item);
}

fn config_from(map: Term) -> Result<Config, Term> {
    let mut cfg = Config::default();
    let Some(iter) = MapIterator::new(map) else {
        return Err(map);
    };
    for (key, value) in iter {
        let bad = || key;
        let n: u64 = value.decode().map_err(|_| bad())?;
        let within = |lo: u64, hi: u64| {
            if (lo..=hi).contains(&n) {
                Ok(n)
            } else {
                Err(bad())
            }
        };
        const U32: u64 = u32::MAX as u64;
        let Ok(name) = key.decode::<Atom>() else {
            return Err(key);
        };
        if name == atoms::flush_bytes() {
            cfg.flush_bytes = within(1, U32)? as usize;
        } else if name == atoms::max_pending_bytes() {
            cfg.max_pending_bytes = within(1, U32)? as usize;
        } else if name == atoms::flush_interval_ms() {
            cfg.flush_interval = Duration::from_millis(within(1, 86_400_000)?);
        } else if name == atoms::segment_capacity() {
            cfg.segment_capacity = within(1, 1 << 20)? as usize;
        } else if name == atoms::retain_bytes() {
            cfg.retain_bytes = within(0, U32)? as usize;
        } else if name == atoms::index_interval() {
            cfg.index_interval = within(1, u64::MAX)?;
        } else if name == atoms::file_bytes() {
            cfg.file_bytes = within(1, u64::MAX)?;
        } else if name == atoms::flush_threads() {
            cfg.flush_threads = within(0, 64)? as usize;
        } else if name == atoms::max_payload() {
            cfg.max_payload = within(1, shapebuf::MAX_PAYLOAD as u64)? as usize;
        } else if name == atoms::max_open_files() {
            cfg.max_open_files = within(1, 1 << 20)? as usize;
        } else {
            return Err(key);
        }
    }
    Ok(cfg)
}

/// Dirty I/O: opening locks the directory, creates it, syncs it and lists
/// it.
#[rustler::nif(schedule = "DirtyIo")]
fn nif_open<'a>(env: Env<'a>, dir: Binary<'a>, config: Term<'a>) -> Term<'a> {
    let cfg = match config_from(config) {
        Ok(cfg) => cfg,
        Err(key) => return (atoms::error(), (atoms::invalid_config(), key)).encode(env),
    };
    let path = Path::new(std::ffi::OsStr::from_bytes(dir.as_slice()));
    match Store::open_with(path, cfg) {
        Ok(store) => {
            let res = ResourceArc::new(StoreRes {
                store: RwLock::new(Some(store)),
                writers: Mutex::new(Vec::new()),
                subs: Mutex::new(Vec::new()),
                durable: Arc::default(),
            });
            (atoms::ok(), res).encode(env)
        }
        Err(e) => error(env, &e),
    }
}

/// Dirty I/O: ends the store's subscriptions (`closed`), terminates
/// (flushes and syncs) every writer opened through it, drops the store and
/// waits for the reaper to drop what it was handed, so the directory is
/// released when this returns.
#[rustler::nif(schedule = "DirtyIo")]
fn nif_close(env: Env<'_>, store: ResourceArc<StoreRes>) -> Term<'_> {
    let taken = store
        .store
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let Some(s) = taken else {
        return error_atom(env, atoms::closed());
    };
    // Subscriptions first: they learn `closed`, not the terminates below.
    let subs = std::mem::take(&mut *plock(&store.subs));
    for res in &subs {
        sub::finish(Some(env), res, Outcome::Closed);
    }
    drop(subs);
    let writers = std::mem::take(&mut *plock(&store.writers));
    let mut first_err = None;
    for cell in writers.iter().filter_map(Weak::upgrade) {
        let w = plock(&cell).take();
        if let Some(w) = w {
            if let Err(e) = w.terminate() {
                first_err.get_or_insert(e);
            }
        }
    }
    drop(s);
    reaper::barrier(Duration::from_secs(10));
    match first_err {
        None => atoms::ok().encode(env),
        Some(e) => error(env, &e),
    }
}

/// Dirty I/O: most counters are atomics, but the count of shapes not yet
/// resolved and the peak of open files are read under the catalog's and
/// the descriptor cache's locks, which the dirty calls take around file
/// operations.
#[rustler::nif(schedule = "DirtyIo")]
fn nif_stats(env: Env<'_>, store: ResourceArc<StoreRes>) -> NifResult<Term<'_>> {
    let Some(s) = store.get() else {
        return Ok(error_atom(env, atoms::closed()));
    };
    let st = s.stats();
    let keys = [
        atoms::shape_count(),
        atoms::shapes_open(),
        atoms::live_writers(),
        atoms::quarantined(),
        atoms::entries_not_durable(),
        atoms::memory_bytes(),
        atoms::retired_bytes(),
        atoms::flushes(),
        atoms::flushed_bytes(),
        atoms::flush_errors(),
        atoms::sync_p50_us(),
        atoms::sync_p99_us(),
        atoms::open_files(),
        atoms::peak_open_files(),
    ];
    let values = [
        st.shapes as u64,
        st.shapes_open as u64,
        st.live_writers as u64,
        st.quarantined as u64,
        st.entries_not_durable,
        st.memory_bytes,
        st.retired_bytes,
        st.flushes,
        st.flushed_bytes,
        st.flush_errors,
        st.sync_p50.as_micros() as u64,
        st.sync_p99.as_micros() as u64,
        st.open_files as u64,
        st.peak_open_files as u64,
    ];
    let map = Term::map_from_arrays(env, &keys, &values)?;
    Ok((atoms::ok(), map).encode(env))
}

/// Dirty I/O: the flush tracker's global offset is behind a mutex that
/// writers on dirty schedulers take (briefly, never across I/O) when they
/// report flushes; a normal scheduler must not wait on it.
#[rustler::nif(schedule = "DirtyIo")]
fn nif_durable_offset(env: Env<'_>, store: ResourceArc<StoreRes>) -> Term<'_> {
    match store.get() {
        Some(s) => (atoms::ok(), offset_term(env, s.flush_tracker().global())).encode(env),
        None => error_atom(env, atoms::closed()),
    }
}

/// Dirty I/O: may recover the shape from disk first.
#[rustler::nif(schedule = "DirtyIo")]
fn nif_committed<'a>(env: Env<'a>, store: ResourceArc<StoreRes>, id: Binary<'a>) -> Term<'a> {
    let Some(s) = store.get() else {
        return error_atom(env, atoms::closed());
    };
    match s.handle(id.as_slice()) {
        Ok(h) => (atoms::ok(), offset_term(env, h.committed())).encode(env),
        Err(e) => error(env, &e),
    }
}

/// Dirty I/O: writes a tombstone and syncs it.
#[rustler::nif(schedule = "DirtyIo")]
fn nif_remove<'a>(env: Env<'a>, store: ResourceArc<StoreRes>, id: Binary<'a>) -> Term<'a> {
    let Some(s) = store.get() else {
        return error_atom(env, atoms::closed());
    };
    match s.remove(id.as_slice()) {
        Ok(_) => atoms::ok().encode(env),
        Err(e) => error(env, &e),
    }
}

// ---- reads ----------------------------------------------------------------

/// A packed read's buffer: the one binary a read's entries are
/// sub-binaries of.
struct PackedBuf(Bytes);

#[rustler::resource_impl]
impl Resource for PackedBuf {}

fn encode_packed(env: Env<'_>, p: PackedRead) -> NifResult<Term<'_>> {
    let mut list = Vec::with_capacity(p.len());
    if !p.is_empty() {
        let buf = ResourceArc::new(PackedBuf(p.data));
        let bin = buf.make_binary(env, |b| &b.0[..]);
        let mut start = 0usize;
        for &(o, end) in &p.entries {
            let end = end as usize;
            let payload = bin.make_subbinary(start, end - start)?;
            list.push(((o.tx, o.op), payload).encode(env));
            start = end;
        }
    }
    let keys = [atoms::dead(), atoms::from_disk(), atoms::more()];
    let values = [
        p.dead.encode(env),
        p.from_disk.encode(env),
        p.more.encode(env),
    ];
    let info = Term::map_from_arrays(env, &keys, &values)?;
    Ok((atoms::ok(), list, info).encode(env))
}

/// Dirty I/O: a read may hit the disk (a terminated shape, an old range)
/// or wait for a descriptor. Bounded by `max` entries.
#[rustler::nif(schedule = "DirtyIo")]
fn nif_read<'a>(
    env: Env<'a>,
    store: ResourceArc<StoreRes>,
    id: Binary<'a>,
    after: (u64, u64),
    upto: (u64, u64),
    max: usize,
) -> NifResult<Term<'a>> {
    let Some(s) = store.get() else {
        return Ok(error_atom(env, atoms::closed()));
    };
    match s.read_packed(id.as_slice(), offset(after), offset(upto), max) {
        Ok(p) => encode_packed(env, p),
        Err(e) => Ok(error(env, &e)),
    }
}

// ---- writers --------------------------------------------------------------

type WriterCell = Mutex<Option<ShapeWriter>>;

/// A writer: owned by the process that opened it (monitored).
struct WriterRes {
    cell: Arc<WriterCell>,
    owner: LocalPid,
    /// A writer keeps its store open: the library closes a store when its
    /// last `Store` is dropped, and a store resource the VM collected while
    /// a process still writes through one of its writers must not close
    /// that writer under it (`close/1` still closes it).
    _store: ResourceArc<StoreRes>,
}

/// What happens to a writer whose owner died or whose resource was
/// collected (on the reaper thread): what it committed is flushed, so
/// committed data is durable as after a `flush/1`; its open transaction is
/// discarded by the next writer, as after a crash. Then it is dropped
/// (the shape's waiters see `writer_dropped`).
fn release_writer(cell: Arc<WriterCell>) {
    reaper::run(move || {
        let w = plock(&cell).take();
        if let Some(mut w) = w {
            let _ = w.flush();
            drop(w);
        }
    });
}

#[rustler::resource_impl]
impl Resource for WriterRes {
    /// The owner died: release its writer off this scheduler.
    fn down<'a>(&'a self, _env: Env<'a>, _pid: LocalPid, _mon: Monitor) {
        release_writer(Arc::clone(&self.cell));
    }
}

impl Drop for WriterRes {
    fn drop(&mut self) {
        release_writer(Arc::clone(&self.cell));
    }
}

/// Dirty I/O: taking a shape over recovers it (reads and may truncate its
/// log) and may wait for a dead predecessor's flush.
#[rustler::nif(schedule = "DirtyIo")]
fn nif_writer<'a>(env: Env<'a>, store: ResourceArc<StoreRes>, id: Binary<'a>) -> Term<'a> {
    let Some(s) = store.get() else {
        return error_atom(env, atoms::closed());
    };
    let mut got = s.writer(id.as_slice());
    if matches!(got, Err(Error::WriterActive(_))) {
        // A dead owner's writer may still be queued for the reaper.
        reaper::barrier(Duration::from_secs(5));
        got = s.writer(id.as_slice());
    }
    match got {
        Ok(w) => {
            let owner = env.pid();
            let cell = Arc::new(Mutex::new(Some(w)));
            push_pruned(&mut plock(&store.writers), Arc::downgrade(&cell), |w| {
                w.strong_count() > 0
            });
            let res = ResourceArc::new(WriterRes {
                cell,
                owner,
                _store: store.clone(),
            });
            if env.monitor(&res, &owner).is_none() {
                // The owner is gone already (cannot be: it is calling us).
                release_writer(Arc::clone(&res.cell));
            }
            (atoms::ok(), res).encode(env)
        }
        Err(e) => error(env, &e),
    }
}

/// Runs `f` on the writer if the caller owns it and it is open.
fn with_writer<'a>(
    env: Env<'a>,
    w: &WriterRes,
    f: impl FnOnce(&mut ShapeWriter) -> Result<Term<'a>, Error>,
) -> Term<'a> {
    if env.pid() != w.owner {
        return error_atom(env, atoms::not_owner());
    }
    let mut cell = plock(&w.cell);
    match cell.as_mut() {
        None => error_atom(env, atoms::closed()),
        Some(writer) => f(writer).unwrap_or_else(|e| error(env, &e)),
    }
}

/// Dirty I/O: an append may hand a flush batch over, complete one, or wait
/// for one (back-pressure at `max_pending_bytes`). Copies the payload once.
#[rustler::nif(schedule = "DirtyIo")]
fn nif_append<'a>(
    env: Env<'a>,
    w: ResourceArc<WriterRes>,
    at: (u64, u64),
    payload: Binary<'a>,
) -> Term<'a> {
    with_writer(env, &w, |writer| {
        writer.append(offset(at), Bytes::copy_from_slice(payload.as_slice()))?;
        Ok(atoms::ok().encode(env))
    })
}

/// Dirty I/O: as `nif_append`, for a list of `{{Tx, Op}, Binary}` in
/// order; stops at the first error (the entries before it stay appended).
#[rustler::nif(schedule = "DirtyIo")]
fn nif_append_many<'a>(
    env: Env<'a>,
    w: ResourceArc<WriterRes>,
    entries: Vec<((u64, u64), Binary<'a>)>,
) -> Term<'a> {
    with_writer(env, &w, |writer| {
        for (at, payload) in &entries {
            writer.append(offset(*at), Bytes::copy_from_slice(payload.as_slice()))?;
        }
        Ok(atoms::ok().encode(env))
    })
}

/// Dirty I/O: a commit completes a finished background flush (trims) and
/// hands the waiters to the wake thread; it may wait for nothing, but it
/// shares the writer's mutex with the dirty calls.
#[rustler::nif(schedule = "DirtyIo")]
fn nif_commit(env: Env<'_>, w: ResourceArc<WriterRes>) -> Term<'_> {
    with_writer(env, &w, |writer| {
        let at = writer.commit()?;
        Ok((atoms::ok(), offset_term(env, at)).encode(env))
    })
}

fn flushed(env: Env<'_>, f: shapebuf::Flushed) -> Term<'_> {
    let map = rustler::types::map::map_new(env)
        .map_put(atoms::persisted(), (f.persisted.tx, f.persisted.op))
        .and_then(|m| m.map_put(atoms::committed(), (f.committed.tx, f.committed.op)));
    match map {
        Ok(map) => (atoms::ok(), map).encode(env),
        // Distinct keys: map_put cannot fail.
        Err(_) => atoms::ok().encode(env),
    }
}

/// Dirty I/O: writes and fdatasyncs.
#[rustler::nif(schedule = "DirtyIo")]
fn nif_flush(env: Env<'_>, w: ResourceArc<WriterRes>) -> Term<'_> {
    with_writer(env, &w, |writer| Ok(flushed(env, writer.flush()?)))
}

/// Dirty I/O: flushes if something is pending and `flush_interval_ms`
/// passed since the last flush (the host's timer calls it); hands retired
/// memory to the collector.
#[rustler::nif(schedule = "DirtyIo")]
fn nif_tick(env: Env<'_>, w: ResourceArc<WriterRes>) -> Term<'_> {
    with_writer(env, &w, |writer| {
        Ok((atoms::ok(), writer.tick()?).encode(env))
    })
}

/// Dirty I/O: flushes and syncs, then retires the buffer.
#[rustler::nif(schedule = "DirtyIo")]
fn nif_terminate(env: Env<'_>, w: ResourceArc<WriterRes>) -> Term<'_> {
    if env.pid() != w.owner {
        return error_atom(env, atoms::not_owner());
    }
    let taken = plock(&w.cell).take();
    match taken {
        None => error_atom(env, atoms::closed()),
        Some(writer) => match writer.terminate() {
            Ok(f) => flushed(env, f),
            Err(e) => error(env, &e),
        },
    }
}

/// Dirty I/O: takes the flush tracker's locks (see `nif_durable_offset`).
/// Records a committed transaction ending at `end` that shapes received up
/// to the given offsets; returns the global durable offset after it.
#[rustler::nif(schedule = "DirtyIo")]
fn nif_track_commit<'a>(
    env: Env<'a>,
    store: ResourceArc<StoreRes>,
    end: (u64, u64),
    received: Vec<(Binary<'a>, (u64, u64))>,
) -> Term<'a> {
    let Some(s) = store.get() else {
        return error_atom(env, atoms::closed());
    };
    let received = received.iter().map(|(id, at)| (id.as_slice(), offset(*at)));
    match s.flush_tracker().commit(offset(end), received) {
        Ok(global) => (atoms::ok(), offset_term(env, global)).encode(env),
        Err(e) => error(env, &e),
    }
}

/// Dirty I/O: the first subscription registers the store's tracker
/// callback (the tracker's event lock).
#[rustler::nif(schedule = "DirtyIo")]
fn nif_subscribe_durable(env: Env<'_>, store: ResourceArc<StoreRes>) -> Term<'_> {
    let Some(s) = store.get() else {
        return error_atom(env, atoms::closed());
    };
    let res = durable::subscribe(env, &store.durable, &s);
    (atoms::ok(), res).encode(env)
}

/// Dirty I/O: waits for a delivery in progress on the reaper thread.
#[rustler::nif(schedule = "DirtyIo")]
fn nif_unsubscribe_durable(
    env: Env<'_>,
    store: ResourceArc<StoreRes>,
    sub: ResourceArc<durable::DurableSub>,
) -> Term<'_> {
    durable::unsubscribe(&store.durable, &sub);
    atoms::ok().encode(env)
}

// ---- subscriptions --------------------------------------------------------

/// Dirty I/O: the first check of a wait may recover the shape from disk.
/// The wait itself holds no scheduler: it is polled from the store's wake
/// thread, and the timeout (`timeout_ms`, negative for none) fires on the
/// binding's timer thread.
#[rustler::nif(schedule = "DirtyIo")]
fn nif_subscribe<'a>(
    env: Env<'a>,
    store: ResourceArc<StoreRes>,
    id: Binary<'a>,
    after: (u64, u64),
    timeout_ms: i64,
) -> Term<'a> {
    let Some(s) = store.get() else {
        return error_atom(env, atoms::closed());
    };
    let h = match s.handle(id.as_slice()) {
        Ok(h) => h,
        Err(e) => return error(env, &e),
    };
    drop(s);
    let wait = Box::pin(h.wait_future(offset(after)));
    drop(h);
    let res = sub::new(env, env.pid(), wait);
    push_pruned(&mut plock(&store.subs), res.clone(), |s| {
        !s.inner.done.load(std::sync::atomic::Ordering::Acquire)
    });
    if timeout_ms >= 0 {
        sub::add_timeout(res.clone(), Duration::from_millis(timeout_ms as u64));
    }
    sub::poll(Some(env), &res);
    (atoms::ok(), res).encode(env)
}

/// Dirty I/O: takes the subscription's mutex, which the wake thread holds
/// while it polls (a poll may read the shape's log). No message for this
/// subscription is sent after it returns.
#[rustler::nif(schedule = "DirtyIo")]
fn nif_unsubscribe(env: Env<'_>, sub: ResourceArc<SubRes>) -> Term<'_> {
    drop(sub::cancel_in(env, &sub));
    atoms::ok().encode(env)
}

rustler::init!("shapebuf");
