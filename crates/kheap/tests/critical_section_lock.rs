//! `RawCriticalSectionLock`: a heap whose lock enters a `critical-section` critical section
//! (here the crate's host implementation), shared by threads.
#![cfg(feature = "critical-section")]

use std::alloc::{GlobalAlloc, Layout};

use kheap::{BuddyHeap, LockedHeap, RawCriticalSectionLock, StaticArena};

static ARENA: StaticArena<{ 1 << 20 }> = StaticArena::new();
static HEAP: LockedHeap<RawCriticalSectionLock, BuddyHeap> =
    LockedHeap::new(BuddyHeap::new()).with_source(&ARENA);

#[test]
fn threads_share_a_heap_behind_critical_sections() {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..2000usize {
                    let layout = Layout::from_size_align(8 + (i * 7 + t) % 500, 8).unwrap();
                    // SAFETY: non-zero size; freed at once with the same layout.
                    unsafe {
                        let p = HEAP.alloc(layout);
                        assert!(!p.is_null());
                        p.write_bytes(t as u8, layout.size());
                        HEAP.dealloc(p, layout);
                    }
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    // Inside a critical section of our own, the heap's (nested) one still works.
    critical_section::with(|_| {
        let guard = HEAP.try_lock().expect("the heap is free");
        assert_eq!(guard.stats().live_allocations, 0);
    });
    HEAP.check_invariants().unwrap();
    assert!(ARENA.is_taken());
}
