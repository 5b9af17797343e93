//! The conformance suite over every algorithm, layer and configuration kheap ships.

use kheap::{BuddyHeap, Counted, FirstFitHeap, FitPolicy, GuardLevel, Guarded, Heap, SlabHeap, TlsfHeap};
use kheap_testkit::conformance::Guards;
use kheap_testkit::conformance_suite;

conformance_suite!(buddy_max_order_16, BuddyHeap<16>, BuddyHeap::with_orders());
conformance_suite!(buddy_default, BuddyHeap, BuddyHeap::new());
// A layer is a heap too: the counting layer over buddy (what the tutorial drop-in uses).
conformance_suite!(counted_buddy, Counted<BuddyHeap>, Counted::new(BuddyHeap::new()));
conformance_suite!(first_fit, FirstFitHeap, FirstFitHeap::new(FitPolicy::First));
conformance_suite!(next_fit, FirstFitHeap, FirstFitHeap::new(FitPolicy::Next));
conformance_suite!(best_fit, FirstFitHeap, FirstFitHeap::new(FitPolicy::Best));
conformance_suite!(worst_fit, FirstFitHeap, FirstFitHeap::new(FitPolicy::Worst));
conformance_suite!(tlsf, TlsfHeap, TlsfHeap::new());
conformance_suite!(counted_tlsf, Counted<TlsfHeap>, Counted::new(TlsfHeap::new()));
conformance_suite!(hardened_tlsf, TlsfHeap<true>, TlsfHeap::hardened());
conformance_suite!(slab_hardened_tlsf, SlabHeap<TlsfHeap<true>>, SlabHeap::new(TlsfHeap::hardened()));
// The default heap, and the slab layer over each backing heap that can confirm its slabs.
conformance_suite!(default_heap, Heap, Heap::new());
// The default heap with slabs at once (what it is from `SLABS_FROM` on), and a slab layer
// whose slabs start at 64 KiB, so that tests that grow the heap cross that size.
conformance_suite!(default_heap_slabs_at_once, Heap, Heap::new().with_slabs_from(0));
conformance_suite!(
    slab_tlsf_from_64k,
    SlabHeap<TlsfHeap>,
    SlabHeap::new(TlsfHeap::new()).with_slabs_from(64 << 10)
);
conformance_suite!(slab_tlsf, SlabHeap<TlsfHeap>, SlabHeap::new(TlsfHeap::new()));
conformance_suite!(slab_buddy, SlabHeap<BuddyHeap>, SlabHeap::new(BuddyHeap::new()));
conformance_suite!(
    counted_slab_tlsf,
    Counted<SlabHeap<TlsfHeap>>,
    Counted::new(SlabHeap::new(TlsfHeap::new()))
);

/// What the suite allows for in the debug layer: its guard bytes, and its quarantine drained
/// (checked: a write after free there fails the test) before whole-heap comparisons.
fn debug_guards<H: kheap::BlockLookup>() -> Guards<Guarded<H>> {
    Guards {
        bytes: |heap, layout| heap.guard_bytes(layout).unwrap_or(0),
        settle: |heap| heap.drain_quarantine().expect("a quarantined block was damaged"),
    }
}

// The debug layer at each level, over both heaps that can look a block up.
conformance_suite!(guarded_checks_tlsf, Guarded<TlsfHeap>, Guarded::new(TlsfHeap::new(), GuardLevel::Checks), guards: debug_guards());
conformance_suite!(guarded_red_zones_tlsf, Guarded<TlsfHeap>, Guarded::new(TlsfHeap::new(), GuardLevel::RedZones), guards: debug_guards());
conformance_suite!(guarded_poison_tlsf, Guarded<TlsfHeap>, Guarded::new(TlsfHeap::new(), GuardLevel::Poison), guards: debug_guards());
conformance_suite!(guarded_checks_buddy, Guarded<BuddyHeap>, Guarded::new(BuddyHeap::new(), GuardLevel::Checks), guards: debug_guards());
conformance_suite!(guarded_red_zones_buddy, Guarded<BuddyHeap>, Guarded::new(BuddyHeap::new(), GuardLevel::RedZones), guards: debug_guards());
conformance_suite!(guarded_poison_buddy, Guarded<BuddyHeap>, Guarded::new(BuddyHeap::new(), GuardLevel::Poison), guards: debug_guards());
