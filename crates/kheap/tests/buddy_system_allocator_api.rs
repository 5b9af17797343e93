//! Code written against `buddy_system_allocator` 0.13's API, one test per type and method, run
//! on kheap's drop-in. Only the `use` lines name kheap; the one change to the calls themselves
//! is the `unsafe` block around `Heap::dealloc` (a safe function in the original: see the
//! module documentation).
#![allow(clippy::undocumented_unsafe_blocks)]
// The original's usual `ORDER` of 32 counts from 16-byte blocks here, which a 32-bit address
// space cannot hold (at most 28 there, as the compat module documents): 64-bit targets only.
#![cfg(target_pointer_width = "64")]

use core::alloc::{GlobalAlloc, Layout};
use core::mem::size_of;

use kheap::compat::buddy_system_allocator::{Heap, LockedHeap, LockedHeapWithRescue};

/// A leaked, `usize`-aligned buffer of `words` words: its start and end addresses.
fn space(words: usize) -> (usize, usize) {
    let space: &'static mut [usize] = Box::leak(vec![0usize; words].into_boxed_slice());
    let start = space.as_mut_ptr() as usize;
    (start, start + words * size_of::<usize>())
}

#[test]
fn heap_new_and_empty_refuse_every_allocation() {
    let mut heap = Heap::<32>::new();
    assert!(heap.alloc(Layout::from_size_align(1, 1).unwrap()).is_err());
    let mut heap = Heap::<32>::empty();
    assert_eq!(heap.alloc(Layout::from_size_align(1, 1).unwrap()), Err(()));
}

#[test]
fn heap_init_and_add_to_heap_give_memory() {
    let mut heap = Heap::<32>::empty();
    let (begin, end) = space(1000);
    unsafe { heap.init(begin, (end - begin) / 2) };
    let first = heap.stats_total_bytes();
    assert!(first > 0);
    unsafe { heap.add_to_heap(begin + (end - begin) / 2, end) };
    assert!(heap.stats_total_bytes() > first);
    assert!(heap.alloc(Layout::from_size_align(64, 8).unwrap()).is_ok());
}

#[test]
fn tiny_and_empty_ranges_are_ignored_as_the_original_ignores_them() {
    let mut heap = Heap::<32>::empty();
    let (begin, _) = space(16);
    unsafe {
        heap.init(begin, 0);
        heap.add_to_heap(begin, begin);
        heap.add_to_heap(begin, begin + 8);
        heap.init(begin, 100);
    }
    assert_eq!(heap.stats_total_bytes(), 0);
    assert!(heap.alloc(Layout::from_size_align(1, 1).unwrap()).is_err());
}

#[test]
fn heap_alloc_fails_with_unit_error_when_out_of_memory() {
    let mut heap = Heap::<32>::new();
    let (begin, end) = space(100);
    unsafe { heap.add_to_heap(begin, end) };
    match heap.alloc(Layout::from_size_align(100 * size_of::<usize>(), 1).unwrap()) {
        Err(()) => {}
        Ok(_) => panic!("more than the heap holds was granted"),
    }
    assert!(heap.alloc(Layout::from_size_align(1, 1).unwrap()).is_ok());
}

#[test]
fn heap_alloc_and_dealloc_keep_the_statistics() {
    let mut heap = Heap::<32>::new();
    let (begin, end) = space(100);
    unsafe { heap.add_to_heap(begin, end) };
    for _ in 0..100 {
        let addr = heap.alloc(Layout::from_size_align(1, 1).unwrap()).unwrap();
        assert_eq!((heap.stats_alloc_user(), heap.stats_alloc_actual()), (1, 16));
        unsafe { heap.dealloc(addr, Layout::from_size_align(1, 1).unwrap()) };
    }
    assert_eq!((heap.stats_alloc_user(), heap.stats_alloc_actual()), (0, 0));
    assert!(heap.stats_total_bytes() > 0);
}

#[test]
fn heap_debug_prints_the_originals_fields() {
    let mut heap = Heap::<32>::new();
    let (begin, end) = space(512);
    unsafe { heap.init(begin, end - begin) };
    let _block = heap.alloc(Layout::from_size_align(10, 1).unwrap()).unwrap();
    let total = heap.stats_total_bytes();
    assert_eq!(format!("{heap:?}"), format!("Heap {{ user: 10, allocated: 16, total: {total} }}"));
    // Through a lock, too.
    let locked = LockedHeap::<32>::new();
    unsafe { locked.lock().init(begin, 0) };
    assert!(format!("{:?}", *locked.lock()).contains("total_bytes: 0"));
}

#[test]
fn locked_heap_is_a_global_allocator_initialised_through_lock() {
    static HEAP_ALLOCATOR: LockedHeap<32> = LockedHeap::<32>::empty();
    let (heap_start, heap_end) = space(4096);
    unsafe {
        HEAP_ALLOCATOR.lock().init(heap_start, heap_end - heap_start);
        let layout = Layout::from_size_align(256, 16).unwrap();
        let p = HEAP_ALLOCATOR.alloc(layout);
        assert!(!p.is_null() && (heap_start..heap_end).contains(&(p as usize)));
        HEAP_ALLOCATOR.dealloc(p, layout);
    }
    assert_eq!(HEAP_ALLOCATOR.lock().stats_alloc_actual(), 0);
    let _ = LockedHeap::<32>::new();
}

#[test]
fn locked_heap_with_rescue_adds_memory_and_retries() {
    static mut SPACE: [usize; 1000] = [0; 1000];
    static RESCUES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let heap = LockedHeapWithRescue::new(|heap: &mut Heap<32>, layout: &Layout| unsafe {
        assert!(layout.size() <= 1000 * size_of::<usize>());
        RESCUES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let space = &raw mut SPACE;
        heap.add_to_heap(space as usize, space as usize + 1000 * size_of::<usize>());
    });
    unsafe {
        assert!(heap.alloc(Layout::from_size_align(1, 1).unwrap()) as usize != 0);
        // The space is in the heap now: no second rescue for a small request.
        assert!(!heap.alloc(Layout::from_size_align(64, 8).unwrap()).is_null());
    }
    assert_eq!(RESCUES.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(heap.lock().stats_alloc_user(), 65);
    let stats = heap.stats();
    assert_eq!((stats.grown_requests, stats.failed_requests), (1, 0));
}

#[test]
fn locked_heap_with_rescue_gives_up_when_the_rescue_adds_nothing() {
    static HEAP: LockedHeapWithRescue<32> = LockedHeapWithRescue::new(|_: &mut Heap<32>, _: &Layout| {});
    unsafe { assert!(HEAP.alloc(Layout::from_size_align(8, 8).unwrap()).is_null()) };
    assert_eq!(HEAP.stats().failed_requests, 1);
}

#[cfg(feature = "alloc")]
mod frames {
    use core::alloc::Layout;

    use kheap::compat::buddy_system_allocator::{FrameAllocator, LockedFrameAllocator};

    #[test]
    fn frame_allocator_new_is_empty() {
        let mut frame = FrameAllocator::<33>::new();
        assert!(frame.alloc(1).is_none());
        let mut frame: FrameAllocator = FrameAllocator::new();
        assert_eq!(frame.alloc(4), None);
    }

    #[test]
    fn frame_allocator_insert_and_add_frame_split_into_aligned_blocks() {
        let mut frame = FrameAllocator::<33>::new();
        frame.insert(0..3);
        assert_eq!(frame.alloc(1), Some(2));
        assert_eq!(frame.alloc(2), Some(0));
        assert!(frame.alloc(1).is_none());
        frame.add_frame(100, 1024);
        frame.add_frame(5, 5); // empty: ignored
        let a = frame.alloc(1).unwrap();
        let b = frame.alloc(1).unwrap();
        assert_ne!(a, b);
        assert!((100..1024).contains(&a) && (100..1024).contains(&b));
    }

    #[test]
    fn frame_allocator_alloc_and_dealloc_merge_buddies() {
        let mut frame = FrameAllocator::<33>::new();
        frame.add_frame(0, 1024);
        for _ in 0..100 {
            let addr = frame.alloc(512).unwrap();
            frame.dealloc(addr, 512);
        }
        // Everything merged back: the whole range is one block again.
        assert_eq!(frame.alloc(1024), Some(0));
    }

    #[test]
    fn frame_allocator_alloc_aligned_honours_alignment() {
        let mut frame = FrameAllocator::<33>::new();
        frame.add_frame(1, 4096);
        let layout = Layout::from_size_align(3, 64).unwrap();
        let first = frame.alloc_aligned(layout).unwrap();
        assert_eq!(first % 64, 0);
        frame.dealloc_aligned(first, layout);
        assert_eq!(frame.allocated(), 0);
    }

    #[test]
    #[should_panic(expected = "double free")]
    fn frame_allocator_reports_a_double_free() {
        let mut frame = FrameAllocator::<33>::new();
        frame.add_frame(0, 64);
        let a = frame.alloc(4).unwrap();
        let _b = frame.alloc(4).unwrap();
        frame.dealloc(a, 4);
        frame.dealloc(a, 4);
    }

    #[test]
    fn locked_frame_allocator_locks() {
        let frame = LockedFrameAllocator::<33>::new();
        assert!(frame.lock().alloc(1).is_none());
        frame.lock().add_frame(0, 3);
        assert_eq!(frame.lock().alloc(1), Some(2));
        assert_eq!(frame.lock().alloc(2), Some(0));
    }
}
