//! A value opened on first use and closable again: the state of a shape
//! slot, which is recovered from disk the first time the shape is read or
//! written and dropped again when the shape goes idle.
//!
//! A [`Lazy<T, C>`] is either *open*, publishing an `Arc<T>` that readers
//! load under an epoch pin without touching its reference count, or
//! *closed*, holding a `C` that says how to open it (or why it cannot be).
//! Opening runs arbitrary I/O (recovery) and never holds a pin; closing
//! defers the drop of the published reference to the epoch, so a reader
//! that loaded it reads it intact until it unpins.
//!
//! # Invariants
//!
//! - The gate (a mutex around `C`) serialises every transition: at most one
//!   opener runs at a time per value, and an opener checks again under the
//!   gate, so a value is never opened twice (two racing first users, say a
//!   reader and a writer of a cold shape, share one `T`).
//! - The pointer holds one strong reference of an `Arc<T>` while it is
//!   non-null; closing swaps it to null and hands that reference to the
//!   epoch collector, which drops it once every thread pinned before the
//!   swap has unpinned.
//! - Other holders keep their own strong references ([`Lazy::get_arc`],
//!   [`Held::to_arc`]), taken under a pin while the pointer still holds its
//!   own.
//!
//! # Orderings
//!
//! The opener's Release store of the pointer pairs with the Acquire loads
//! in [`Lazy::get`] and [`Lazy::get_arc`]: a loader that sees the pointer
//! sees the `T` fully built. The closer's swap is AcqRel: Release for the
//! same reason as a store (a later opener's value is ordered after it by
//! the gate), Acquire so that the reference it hands to the collector is
//! the one it read.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use crate::sync::{lock, AtomicPtr, Guard, Mutex, MutexGuard, Ordering};

/// A deliberate protocol error that the loom model injects to check that
/// loom catches it (its failing twins). Production has none.
#[cfg(loom)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// The shipping protocol.
    #[default]
    None,
    /// [`Lazy::open`] does not check the pointer again under the gate.
    OpenWithoutRecheck,
}

/// A [`Lazy`]'s open value as [`Lazy::get`] loaded it: borrowed for as
/// long as the guard it was loaded under is pinned, and, unlike a plain
/// reference, able to give an owning reference that outlives the pin
/// ([`Held::to_arc`]) without loading the pointer again (which may have
/// been closed, or opened anew, meanwhile).
///
/// It keeps the pointer as loaded, not a reference: an `Arc`'s count lies
/// outside the `T`, and only the published pointer's provenance covers it
/// (a pointer derived from a `&T` may not write it; Miri's borrow models
/// reject that).
pub(crate) struct Held<'g, T> {
    ptr: std::ptr::NonNull<T>,
    _guard: std::marker::PhantomData<&'g T>,
}

impl<T> Clone for Held<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Held<'_, T> {}

impl<T> std::ops::Deref for Held<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        self.get()
    }
}

impl<'g, T> Held<'g, T> {
    /// The value itself, for as long as the guard is pinned.
    #[inline]
    pub(crate) fn get(self) -> &'g T {
        // SAFETY: the pointer a `Lazy` published, whose strong reference
        // the collector drops only after the guard `'g` borrows is dropped
        // (see `Lazy::get`).
        unsafe { self.ptr.as_ref() }
    }

    /// An owning reference to the value.
    pub(crate) fn to_arc(self) -> Arc<T> {
        let p = self.ptr.as_ptr().cast_const();
        // SAFETY: `p` is the pointer a `Lazy` published, as loaded (with
        // its provenance over the whole `Arc` allocation), which came from
        // `Arc::into_raw`, and its strong reference cannot be dropped while
        // the guard `'g` borrows is pinned (as in `Lazy::get`), so the
        // count is at least 1; the increment is the returned `Arc`'s.
        unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        }
    }
}

/// See the module docs.
pub(crate) struct Lazy<T, C> {
    ptr: AtomicPtr<T>,
    gate: Mutex<C>,
    #[cfg(loom)]
    fault: Fault,
}

impl<T, C> Lazy<T, C> {
    /// A closed value.
    pub(crate) fn closed(c: C) -> Self {
        Lazy {
            ptr: AtomicPtr::new(std::ptr::null_mut()),
            gate: Mutex::new(c),
            #[cfg(loom)]
            fault: Fault::None,
        }
    }

    /// The same with `fault` injected (loom models only).
    #[cfg(loom)]
    pub(crate) fn with_fault(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }

    /// The open value, borrowed for as long as `guard` is pinned.
    #[inline]
    pub(crate) fn get<'g>(&self, guard: &'g Guard) -> Option<Held<'g, T>> {
        let _ = guard;
        // Acquire: pairs with the opener's Release store.
        let p = self.ptr.load(Ordering::Acquire);
        // A non-null pointer holds a strong reference, and a closer hands it
        // to the epoch collector (module invariants), which drops it only
        // after `guard`, pinned before the load, is dropped: the result
        // borrows `guard`.
        std::ptr::NonNull::new(p).map(|ptr| Held {
            ptr,
            _guard: std::marker::PhantomData,
        })
    }

    /// The open value as an owning reference, if open.
    pub(crate) fn get_arc(&self, guard: &Guard) -> Option<Arc<T>> {
        self.get(guard).map(Held::to_arc)
    }

    /// Opens the value unless it is open: runs `open` under the gate, and
    /// publishes what it returns. `open` may do I/O; the caller must not be
    /// pinned (it would stall reclamation for the whole store meanwhile).
    /// Returns whether this call opened it.
    pub(crate) fn open<E>(&self, open: impl FnOnce(&mut C) -> Result<T, E>) -> Result<bool, E> {
        #[cfg(loom)]
        if self.fault == Fault::OpenWithoutRecheck {
            // The twin: a lock-free "check, build, publish" (the build still
            // runs under the gate, but nothing checks again there).
            if !self.ptr.load(Ordering::Acquire).is_null() {
                return Ok(false);
            }
            let value = open(&mut lock(&self.gate))?;
            // The replaced value, if any, is leaked: the twin fails first.
            self.ptr
                .store(Arc::into_raw(Arc::new(value)).cast_mut(), Ordering::Release);
            return Ok(true);
        }
        let mut gate = lock(&self.gate);
        // Relaxed: the gate orders this load after every earlier opener's
        // store (they stored under the gate).
        if !self.ptr.load(Ordering::Relaxed).is_null() {
            return Ok(false);
        }
        let value = open(&mut gate)?;
        // Release: pairs with the loads' Acquire (module orderings). (Loom
        // model 8 cannot check this one: a Relaxed store passes it, since
        // loom does not track the construction of atomics-only values.)
        self.ptr
            .store(Arc::into_raw(Arc::new(value)).cast_mut(), Ordering::Release);
        drop(gate);
        Ok(true)
    }

    /// Closes the value if it is open: under the gate, `close` turns the
    /// open value into its closed form, the pointer is unpublished, and its
    /// reference is dropped once every thread pinned now has unpinned.
    /// `pending` counts the drops deferred and not run yet (so that an owner
    /// can run them all before it goes away). Returns whether it was open.
    pub(crate) fn close(
        &self,
        guard: &Guard,
        pending: &Arc<AtomicUsize>,
        close: impl FnOnce(&T, &mut C),
    ) -> bool
    where
        T: Send + Sync + 'static,
    {
        self.transition(guard, pending, |open, c| match open {
            Some(open) => {
                close(open, c);
                (true, true)
            }
            None => (false, false),
        })
    }

    /// Runs `f` under the gate with the open value, if any, and the closed
    /// state; if it returns `true` (only with an open value), the value is
    /// closed as [`Lazy::close`] does. `f` may do I/O only if the caller is
    /// willing to hold `guard`'s pin meanwhile; [`Lazy::gate`] is the
    /// unpinned way for a closed value.
    pub(crate) fn transition<R>(
        &self,
        guard: &Guard,
        pending: &Arc<AtomicUsize>,
        f: impl FnOnce(Option<&T>, &mut C) -> (bool, R),
    ) -> R
    where
        T: Send + Sync + 'static,
    {
        let mut gate = lock(&self.gate);
        // Relaxed: the gate serialises the transitions (module invariants).
        let p = self.ptr.load(Ordering::Relaxed);
        // SAFETY: non-null: the pointer's own strong reference keeps it
        // alive while we hold the gate (only a closer drops it, under it).
        let (close, out) = f(unsafe { p.as_ref() }, &mut gate);
        if !close || p.is_null() {
            return out;
        }
        // AcqRel: see the module orderings.
        let old = self.ptr.swap(std::ptr::null_mut(), Ordering::AcqRel);
        debug_assert_eq!(old, p);
        drop(gate);
        let old = SendPtr(old);
        // Relaxed: a count, read by the owner that drains the collector
        // after every user is gone (the collector's own synchronisation
        // orders the decrement after the drop it follows).
        pending.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pending = Arc::clone(pending);
        // SAFETY: `old` holds the strong reference the pointer owned
        // (`Arc::into_raw`), now unreachable for new loads; the collector
        // drops it after every guard pinned before this call is dropped, so
        // no reader borrowing it through `get` outlives it. `T` is `Send`.
        unsafe {
            guard.defer_unchecked(move || {
                drop(Arc::from_raw(old.into_inner()));
                pending.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            });
        }
        out
    }

    /// The closed state, for transitions that keep the value closed (or
    /// read it while open: the gate is held, so nobody opens or closes
    /// meanwhile), and whether the value is open.
    pub(crate) fn gate(&self) -> (MutexGuard<'_, C>, bool) {
        let gate = lock(&self.gate);
        // Relaxed: the gate serialises the transitions (module invariants).
        let open = !self.ptr.load(Ordering::Relaxed).is_null();
        (gate, open)
    }
}

/// A raw pointer the deferred drop may carry to the collecting thread.
struct SendPtr<T>(*mut T);

impl<T> SendPtr<T> {
    /// The pointer (a method, so that a closure captures the whole wrapper
    /// rather than its non-`Send` field).
    fn into_inner(self) -> *mut T {
        self.0
    }
}

// SAFETY: the pointer is an `Arc<T>`'s reference with `T: Send + Sync`
// (required by `Lazy::close`), dropped on whichever thread collects.
unsafe impl<T: Send + Sync> Send for SendPtr<T> {}

impl<T, C> Drop for Lazy<T, C> {
    fn drop(&mut self) {
        // `&mut self`: nobody can load the pointer any more.
        let p = self.ptr.swap(std::ptr::null_mut(), Ordering::Relaxed);
        if !p.is_null() {
            // SAFETY: the pointer's own strong reference (`Arc::into_raw`).
            drop(unsafe { Arc::from_raw(p) });
        }
    }
}

// SAFETY: a `Lazy` hands out `&T` and `Arc<T>` across threads (needs
// `T: Send + Sync`) and moves `C` between the threads that lock the gate
// (needs `C: Send`).
unsafe impl<T: Send + Sync, C: Send> Send for Lazy<T, C> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync, C: Send> Sync for Lazy<T, C> {}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::Epoch;

    /// `Held::to_arc` takes a reference count through the published
    /// pointer (run under Miri: no epoch domain, whose own code Miri's
    /// borrow models reject, only the unprotected guard).
    #[test]
    fn a_held_value_becomes_an_owner_that_outlives_the_state() {
        let lazy: Lazy<String, ()> = Lazy::closed(());
        lazy.open(|_| Ok::<_, ()>("v".to_string())).expect("open");
        // SAFETY: nothing closes `lazy` (nothing is retired) while the
        // unprotected guard is used.
        let guard = unsafe { crossbeam_epoch::unprotected() };
        let held = lazy.get(guard).expect("open");
        let owner = held.to_arc();
        assert_eq!(Arc::strong_count(&owner), 2);
        drop(lazy);
        assert_eq!(Arc::strong_count(&owner), 1);
        assert_eq!(*owner, "v");
    }

    #[test]
    fn opens_once_closes_and_reopens() {
        let epoch = Epoch::new();
        let lazy: Lazy<String, u32> = Lazy::closed(0);
        let mut opens = 0;
        for _ in 0..2 {
            lazy.open(|c| {
                opens += 1;
                *c += 1;
                Ok::<_, ()>(format!("open #{c}"))
            })
            .expect("open");
        }
        assert_eq!(opens, 1, "an open value is not opened again");
        assert!(!lazy.open(|_| Ok::<_, ()>(String::new())).expect("open"));
        let guard = epoch.pin();
        assert_eq!(lazy.get(&guard).map(|s| s.get().as_str()), Some("open #1"));
        let held = lazy.get_arc(&guard).expect("open");
        let pending = Arc::default();
        assert!(lazy.close(&guard, &pending, |v, c| *c = v.len() as u32 * 100));
        assert!(lazy.get(&guard).is_none());
        assert!(!lazy.close(&guard, &pending, |_, _| unreachable!()));
        drop(guard);
        while pending.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            epoch.pin().flush();
        }
        assert_eq!(*held, "open #1", "a held reference outlives the close");
        assert_eq!(*lazy.gate().0, 700);
        lazy.open(|c| Ok::<_, ()>(format!("again from {c}")))
            .expect("reopen");
        assert_eq!(
            lazy.get(&epoch.pin()).map(|s| s.get().as_str()),
            Some("again from 700")
        );
    }

    #[test]
    fn a_failed_open_stays_closed() {
        let lazy: Lazy<String, &str> = Lazy::closed("corrupt");
        let err = lazy.open(|c| Err::<String, _>(c.to_string()));
        assert_eq!(err, Err("corrupt".to_string()));
        assert!(!lazy.gate().1);
    }
}
