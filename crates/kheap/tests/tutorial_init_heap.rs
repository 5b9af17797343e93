//! The rCore tutorial's `init_heap` (chapter 4, `os/src/mm/heap_allocator.rs`) compiled and run
//! exactly as written, but for its `use` line, which now names kheap's drop-in.
// The tutorial's code is kept verbatim, so its lints are allowed rather than fixed.
#![allow(static_mut_refs, missing_docs, clippy::undocumented_unsafe_blocks)]

mod config {
    pub const KERNEL_HEAP_SIZE: usize = 0x30_0000;
}

/// `os/src/mm/heap_allocator.rs`, verbatim but for the first `use` line (and with
/// `#[global_allocator]` left to the kernel build: the test harness keeps the system allocator).
#[rustfmt::skip]
mod heap_allocator {
    use kheap::compat::buddy_system_allocator::LockedHeap;
    use crate::config::KERNEL_HEAP_SIZE;

    // #[global_allocator]
    pub static HEAP_ALLOCATOR: LockedHeap = LockedHeap::empty();

    pub static mut HEAP_SPACE: [u8; KERNEL_HEAP_SIZE] = [0; KERNEL_HEAP_SIZE];

    pub fn init_heap() {
        unsafe {
            HEAP_ALLOCATOR
                .lock()
                .init(HEAP_SPACE.as_ptr() as usize, KERNEL_HEAP_SIZE);
        }
    }
}

use config::KERNEL_HEAP_SIZE;
use heap_allocator::{init_heap, HEAP_ALLOCATOR, HEAP_SPACE};
use std::alloc::{GlobalAlloc, Layout};

#[test]
fn tutorial_init_heap_runs_unchanged_on_kheap() {
    init_heap();
    let total = HEAP_ALLOCATOR.lock().stats_total_bytes();
    // The bookkeeping (two bits per possible block: free, allocated) is about 1/32 of the heap.
    assert!(total <= KERNEL_HEAP_SIZE && total > KERNEL_HEAP_SIZE * 96 / 100, "usable bytes: {total}");

    let layout = Layout::from_size_align(500 * 8, 8).unwrap();
    // SAFETY: non-zero size.
    let block = unsafe { HEAP_ALLOCATOR.alloc(layout) };
    assert!(!block.is_null());
    // SAFETY: only the address of the static is taken.
    let space = unsafe { HEAP_SPACE.as_ptr() } as usize;
    assert!((space..space + KERNEL_HEAP_SIZE).contains(&(block as usize)), "block outside HEAP_SPACE");
    assert_eq!(HEAP_ALLOCATOR.lock().stats_alloc_user(), 4000);
    assert_eq!(HEAP_ALLOCATOR.lock().stats_alloc_actual(), 4096);
    // SAFETY: allocated above with this layout.
    unsafe { HEAP_ALLOCATOR.dealloc(block, layout) };
    assert_eq!(HEAP_ALLOCATOR.lock().stats_alloc_actual(), 0);
    HEAP_ALLOCATOR.check_invariants().unwrap();

    // A bad range is refused loudly, naming it, and leaves the heap as it was.
    // SAFETY: the range is refused before anything is touched.
    let refused = std::panic::catch_unwind(|| unsafe { HEAP_ALLOCATOR.lock().add_to_heap(0, 4096) });
    let message = refused.expect_err("a range at address 0 was accepted");
    let message = message.downcast_ref::<String>().expect("panic message");
    assert!(message.contains("0x0") && message.contains("null"), "{message}");
    assert_eq!(HEAP_ALLOCATOR.lock().stats_total_bytes(), total);
}
