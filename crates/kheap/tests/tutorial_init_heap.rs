//! The rCore tutorial's `init_heap` (chapter 4, `os/src/mm/heap_allocator.rs`) compiled and run
//! exactly as written, but for its `use` line, which now names kheap's drop-in, in two
//! revisions: the chapter-4 text that takes the address with `HEAP_SPACE.as_ptr() as usize`
//! (the one the demo kernel includes, `kernel/src/tutorial_heap.rs`), and the later text of
//! rCore-Tutorial-v3 commit a4525b7, with `addr_of_mut!(HEAP_SPACE) as usize`.
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

/// The same file as rcore-os/rCore-Tutorial-v3 has it at commit a4525b7 (it takes the array's
/// address with `addr_of_mut!`): its heap part verbatim but for the `use` line, without its
/// `#[alloc_error_handler]` (a nightly-only feature) and `heap_test` (it needs the kernel's
/// linker symbols), and with `#[global_allocator]` left to the kernel build.
#[rustfmt::skip]
mod heap_allocator_a4525b7 {
    use crate::config::KERNEL_HEAP_SIZE;
    use kheap::compat::buddy_system_allocator::LockedHeap;
    use core::ptr::addr_of_mut;

    // #[global_allocator]
    pub static HEAP_ALLOCATOR: LockedHeap = LockedHeap::empty();

    static mut HEAP_SPACE: [u8; KERNEL_HEAP_SIZE] = [0; KERNEL_HEAP_SIZE];

    pub fn init_heap() {
        unsafe {
            HEAP_ALLOCATOR
                .lock()
                .init(addr_of_mut!(HEAP_SPACE) as usize, KERNEL_HEAP_SIZE);
        }
    }
}

#[test]
fn tutorial_init_heap_of_revision_a4525b7_runs_unchanged_on_kheap() {
    use heap_allocator_a4525b7::{init_heap, HEAP_ALLOCATOR};
    init_heap();
    assert!(HEAP_ALLOCATOR.lock().stats_total_bytes() > KERNEL_HEAP_SIZE * 96 / 100);
    let layout = Layout::from_size_align(500 * 8, 8).unwrap();
    // SAFETY: non-zero size; freed at once with the same layout.
    unsafe {
        let block = HEAP_ALLOCATOR.alloc(layout);
        assert!(!block.is_null());
        HEAP_ALLOCATOR.dealloc(block, layout);
    }
    HEAP_ALLOCATOR.check_invariants().unwrap();
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
