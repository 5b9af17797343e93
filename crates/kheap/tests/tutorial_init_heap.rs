//! The rCore tutorial's `init_heap` (chapter 4, `os/src/mm/heap_allocator.rs`) compiled and run
//! exactly as written, but for its `use` line, which now names kheap's drop-in.
#![allow(static_mut_refs, missing_docs)]

mod config {
    pub const KERNEL_HEAP_SIZE: usize = 0x30_0000;
}

// ---- the tutorial's code, unchanged but for the first line ----
use kheap::compat::buddy_system_allocator::LockedHeap;
use crate::config::KERNEL_HEAP_SIZE;

// #[global_allocator] (the test harness keeps the system allocator; the kernel build uses it)
static HEAP_ALLOCATOR: LockedHeap = LockedHeap::empty();

static mut HEAP_SPACE: [u8; KERNEL_HEAP_SIZE] = [0; KERNEL_HEAP_SIZE];

pub fn init_heap() {
    unsafe {
        HEAP_ALLOCATOR
            .lock()
            .init(HEAP_SPACE.as_ptr() as usize, KERNEL_HEAP_SIZE);
    }
}
// ---- end of the tutorial's code ----

#[test]
fn tutorial_init_heap_runs_unchanged_on_kheap() {
    init_heap();
    let heap = HEAP_ALLOCATOR.lock();
    let total = heap.stats_total_bytes();
    assert!(total <= KERNEL_HEAP_SIZE && total > KERNEL_HEAP_SIZE * 98 / 100, "usable bytes: {total}");
    drop(heap);

    let layout = std::alloc::Layout::from_size_align(500 * 8, 8).unwrap();
    // SAFETY: non-zero size.
    let block = unsafe { std::alloc::GlobalAlloc::alloc(&HEAP_ALLOCATOR, layout) };
    assert!(!block.is_null());
    let space = unsafe { HEAP_SPACE.as_ptr() } as usize..unsafe { HEAP_SPACE.as_ptr() } as usize + KERNEL_HEAP_SIZE;
    assert!(space.contains(&(block as usize)), "block outside HEAP_SPACE");
    assert_eq!(HEAP_ALLOCATOR.lock().stats_alloc_user(), 4000);
    assert_eq!(HEAP_ALLOCATOR.lock().stats_alloc_actual(), 4096);
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::GlobalAlloc::dealloc(&HEAP_ALLOCATOR, block, layout) };
    assert_eq!(HEAP_ALLOCATOR.lock().stats_alloc_actual(), 0);
    HEAP_ALLOCATOR.check_invariants().unwrap();

    // The original API's `add_to_heap(start, end)` also works, and bad ranges are refused loudly.
    let refused = std::panic::catch_unwind(|| unsafe { HEAP_ALLOCATOR.lock().add_to_heap(0, 4096) });
    assert!(refused.is_err(), "a range at address 0 was accepted");
}
