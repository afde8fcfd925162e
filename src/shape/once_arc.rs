//! An `Arc<T>` set at most once, in one pointer.
//!
//! # Invariants
//!
//! - The pointer is null or came from `Arc::into_raw`, and the `OnceArc`
//!   owns that one reference until it drops.
//! - It goes from null to set once (a compare-and-swap); a racing loser's
//!   value is dropped, never published.

use std::sync::Arc;

/// An `Arc<T>` set once: `OnceLock<Arc<T>>` in 8 bytes instead of 16 (every
/// shape's slot has one, and most never get a waiter).
pub(crate) struct OnceArc<T>(std::sync::atomic::AtomicPtr<T>);

impl<T> Default for OnceArc<T> {
    fn default() -> Self {
        OnceArc(std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()))
    }
}

impl<T> OnceArc<T> {
    /// The raw pointer (null if unset). Acquire: pairs with the Release of
    /// the setting CAS, so the value is seen whole.
    pub(crate) fn load(&self) -> *const T {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The value, if set.
    pub(crate) fn get(&self) -> Option<&T> {
        // SAFETY: a non-null pointer came from `Arc::into_raw` and `self`
        // owns that reference until it drops; the result borrows `self`.
        unsafe { self.load().as_ref() }
    }

    /// A new owning reference to the value, if set.
    pub(crate) fn get_arc(&self) -> Option<Arc<T>> {
        // The raw pointer itself, not one derived from a `&T`: the count
        // sits before the value, outside a reference's provenance (Miri,
        // Stacked Borrows).
        let v = self.load();
        if v.is_null() {
            return None;
        }
        // SAFETY: `v` came from `Arc::into_raw`, and `self` holds that
        // reference (count >= 1) while we borrow it.
        unsafe {
            Arc::increment_strong_count(v);
            Some(Arc::from_raw(v))
        }
    }

    /// The value, setting it with `make` if unset (a racing loser's value
    /// is dropped).
    pub(crate) fn get_or_init(&self, make: impl FnOnce() -> Arc<T>) -> &T {
        if let Some(v) = self.get() {
            return v;
        }
        let mine = Arc::into_raw(make()).cast_mut();
        // AcqRel: Release publishes the value (pairs with `get`'s Acquire);
        // Acquire on failure sees the winner's.
        if self
            .0
            .compare_exchange(
                std::ptr::null_mut(),
                mine,
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
            )
            .is_err()
        {
            // SAFETY: `mine` came from `Arc::into_raw` above and was not
            // published.
            drop(unsafe { Arc::from_raw(mine) });
        }
        self.get().expect("set above or by the winner")
    }
}

impl<T> Drop for OnceArc<T> {
    fn drop(&mut self) {
        let p = *self.0.get_mut();
        if !p.is_null() {
            // SAFETY: the `Arc::into_raw` pointer `self` owns.
            drop(unsafe { Arc::from_raw(p) });
        }
    }
}

// SAFETY: an `OnceArc<T>` is an `Arc<T>` (shared across threads): as
// `Arc<T>`, it needs `T: Send + Sync`.
unsafe impl<T: Send + Sync> Send for OnceArc<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for OnceArc<T> {}
