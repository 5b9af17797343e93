//! The front calls its memory source with the heap's lock released, so a source may use the
//! heap itself (a frame allocator keeping its lists in `Vec`s, say), and a moving `realloc`
//! copies with the lock released.

use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use kheap::{BuddyHeap, LockedHeap, MemorySource, RawSpinlock};

static HEAP: LockedHeap<RawSpinlock, BuddyHeap> = LockedHeap::new(BuddyHeap::new()).with_source(&SOURCE);
static SOURCE: Pages =
    Pages { calls: AtomicUsize::new(0), locked_calls: AtomicUsize::new(0), probing: AtomicBool::new(false) };

/// Hands out leaked page-aligned host memory, noting whether the heap was locked when asked,
/// and allocating from the heap itself as it does.
struct Pages {
    calls: AtomicUsize,
    locked_calls: AtomicUsize,
    probing: AtomicBool,
}

// SAFETY: each region is a fresh leaked host allocation: valid for ever (1), handed out once (2).
unsafe impl MemorySource for Pages {
    fn acquire(&self, layout: Layout) -> Option<NonNull<[u8]>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if HEAP.is_locked() {
            self.locked_calls.fetch_add(1, Ordering::SeqCst);
        } else if !self.probing.swap(true, Ordering::SeqCst) {
            // The lock is free, so the source may use the heap it feeds. (Not while probing:
            // the probe itself may make the heap grow, and so call the source again.)
            let probe = Layout::new::<[u64; 4]>();
            // SAFETY: non-zero size; freed at once with the same layout.
            unsafe {
                let p = HEAP.alloc(probe);
                assert!(!p.is_null(), "the probe allocation failed");
                HEAP.dealloc(p, probe);
            }
            self.probing.store(false, Ordering::SeqCst);
        }
        let layout = layout.align_to(4096).ok()?.pad_to_align();
        // SAFETY: non-zero size (every region layout has one); leaked on purpose.
        let memory = NonNull::new(unsafe { std::alloc::alloc(layout) })?;
        Some(NonNull::slice_from_raw_parts(memory, layout.size()))
    }
}

#[test]
fn the_source_is_called_with_the_lock_released_and_may_use_the_heap() {
    let mut blocks = Vec::new();
    for size in [64, 5000, 100_000, 1 << 20, 3 << 20] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: non-zero size.
        let block = unsafe { HEAP.alloc(layout) };
        assert!(!block.is_null(), "{size} bytes refused though the source has memory");
        blocks.push((block, layout));
    }
    assert!(SOURCE.calls.load(Ordering::SeqCst) > 0, "the heap never grew");
    assert_eq!(SOURCE.locked_calls.load(Ordering::SeqCst), 0, "the source was called with the heap locked");
    // A moving realloc, with the same probe: the copy runs unlocked, so this cannot deadlock.
    let (block, layout) = blocks.pop().unwrap();
    // SAFETY: live with `layout`; the new size is non-zero.
    let moved = unsafe { HEAP.realloc(block, layout, 8 << 20) };
    assert!(!moved.is_null());
    blocks.push((moved, Layout::from_size_align(8 << 20, 8).unwrap()));
    for (block, layout) in blocks {
        // SAFETY: each block is live with its layout.
        unsafe { HEAP.dealloc(block, layout) };
    }
    HEAP.check_invariants().unwrap();
    assert_eq!(HEAP.stats().live_allocations, 0);
}
