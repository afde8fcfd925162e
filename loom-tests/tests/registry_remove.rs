//! Model 9: a reader's lookup races the removal of the shape's slot (the
//! design brief's seed-000 race, in memory). `Store::remove` takes the slot
//! out of the registry's table and hands the registry's reference to the
//! epoch collector; a lookup pins, finds the slot, and reads it. The slot
//! is let go (under loom: poisoned, see `loom_api::Registry`) only after
//! every reader that could have found it has unpinned, so a lookup either
//! misses or reads a slot that is whole. A new slot for the same id, created
//! after the removal, is found by later lookups.
#![cfg(loom)]

use std::sync::Arc;

use loom_tests::{model_outcomes, Outcomes};
use shapebuf::loom_api::{Registry, RegistryFault};

fn lookup_vs_remove(fault: RegistryFault) -> Outcomes {
    let name = format!("9 lookup vs removal ({fault:?})");
    model_outcomes(&name, 3, move |seen| {
        let registry = Arc::new(Registry::new(fault));
        registry.insert(b"s");

        let remover = {
            let registry = Arc::clone(&registry);
            loom::thread::spawn(move || {
                assert!(registry.remove(b"s"), "the slot was there");
                registry.collect(2);
            })
        };

        let found = registry.lookup(b"s");
        seen.record(if found { "found" } else { "missed" }.to_string());
        remover.join().expect("remover");

        assert!(!registry.lookup(b"s"), "removed");
        registry.insert(b"s");
        assert!(registry.lookup(b"s"), "a new slot for the id");
    })
}

#[test]
fn lookup_vs_remove_never_reads_a_freed_slot() {
    lookup_vs_remove(RegistryFault::None).assert_seen("9", &["found", "missed"]);
}

/// Twin: the removal lets the slot go at once instead of after the epoch:
/// a lookup that found it before the removal reads it after.
#[test]
#[should_panic(expected = "Causality violation")]
fn twin_free_without_defer() {
    lookup_vs_remove(RegistryFault::FreeWithoutDefer);
}
