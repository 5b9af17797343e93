//! `LockedHeap` as an `allocator_api2::alloc::Allocator`: collections placed in one heap.
#![cfg(feature = "allocator-api2")]

use allocator_api2::vec::Vec;
use kheap::{FirstFitHeap, FitPolicy, LockedHeap, RawSpinlock};

#[test]
fn a_vec_placed_in_a_kheap_heap_grows_and_gives_everything_back() {
    let heap: LockedHeap<RawSpinlock, FirstFitHeap> = LockedHeap::new(FirstFitHeap::new(FitPolicy::First));
    heap.add_region(Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 1 << 16]))).unwrap();
    let initial = heap.stats();
    {
        let mut v = Vec::new_in(&heap);
        for i in 0..2000u32 {
            v.push(i);
        }
        assert!(v.iter().copied().eq(0..2000), "contents lost while growing");
        assert_eq!(heap.stats().live_allocations, 1);
        assert!(heap.stats().requested_bytes >= 8000);
        v.truncate(10);
        v.shrink_to_fit();
        assert_eq!(heap.stats().requested_bytes, 40, "shrink did not reach the heap");
        assert!(v.iter().copied().eq(0..10));
    }
    heap.check_invariants().unwrap();
    assert_eq!(heap.stats().free_bytes, initial.free_bytes);
    assert_eq!(heap.stats().largest_free_block, initial.largest_free_block);
}
