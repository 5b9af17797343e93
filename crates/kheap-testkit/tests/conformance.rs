//! The conformance suite over every algorithm and configuration kheap ships.

use kheap::{compat, BuddyHeap, FirstFitHeap, FitPolicy};
use kheap_testkit::conformance_suite;

conformance_suite!(buddy_max_order_16, BuddyHeap<16>, BuddyHeap::new());
conformance_suite!(buddy_max_order_32, BuddyHeap<32>, BuddyHeap::new());
conformance_suite!(
    buddy_compat_heap,
    compat::buddy_system_allocator::Heap,
    compat::buddy_system_allocator::Heap::new()
);
conformance_suite!(first_fit, FirstFitHeap, FirstFitHeap::new(FitPolicy::First));
conformance_suite!(next_fit, FirstFitHeap, FirstFitHeap::new(FitPolicy::Next));
conformance_suite!(best_fit, FirstFitHeap, FirstFitHeap::new(FitPolicy::Best));
conformance_suite!(worst_fit, FirstFitHeap, FirstFitHeap::new(FitPolicy::Worst));
