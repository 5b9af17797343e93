//! Code written against `linked_list_allocator` 0.10's API, one test per method, run on
//! kheap's drop-in; only the `use` lines name kheap.
#![allow(clippy::undocumented_unsafe_blocks)]

use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;

use kheap::compat::linked_list_allocator::{Heap, LockedHeap};

fn memory(len: usize) -> &'static mut [MaybeUninit<u8>] {
    Box::leak(vec![MaybeUninit::new(0u8); len].into_boxed_slice())
}

#[test]
fn empty_heap_refuses_allocations() {
    let mut heap = Heap::empty();
    assert_eq!(heap.allocate_first_fit(Layout::new::<u8>()), Err(()));
    assert!(heap.bottom().is_null());
    assert_eq!((heap.size(), heap.used()), (0, 0));
}

#[test]
fn init_new_and_from_slice_give_the_heap_its_span() {
    let mem = memory(4096);
    let bottom = mem.as_mut_ptr().cast::<u8>();
    let mut heap = Heap::empty();
    unsafe { heap.init(bottom, 4096) };
    assert_eq!((heap.bottom(), heap.size(), heap.top()), (bottom, 4096, bottom.wrapping_add(4096)));

    let mem = memory(4096);
    let bottom = mem.as_mut_ptr().cast::<u8>();
    let heap = unsafe { Heap::new(bottom, 4096) };
    assert_eq!(heap.bottom(), bottom);

    let heap = Heap::from_slice(memory(4096));
    assert_eq!(heap.size(), 4096);
    let mut heap = Heap::empty();
    heap.init_from_slice(memory(2048));
    assert_eq!(heap.size(), 2048);
}

#[test]
fn allocate_first_fit_and_deallocate_track_used_and_free() {
    let mut heap = Heap::from_slice(memory(8192));
    let free = heap.free();
    let layout = Layout::from_size_align(100, 8).unwrap();
    let p = heap.allocate_first_fit(layout).unwrap();
    assert_eq!(heap.used(), 128);
    assert_eq!(heap.free(), free - 128);
    unsafe { heap.deallocate(p, layout) };
    assert_eq!((heap.used(), heap.free()), (0, free));
    assert!(heap.allocate_first_fit(Layout::from_size_align(8192, 8).unwrap()).is_err());
}

#[test]
fn extend_grows_the_heap_at_its_top() {
    let mem = memory(3 * 4096);
    let bottom = mem.as_mut_ptr().cast::<u8>();
    let mut heap = unsafe { Heap::new(bottom, 4096) };
    let free = heap.free();
    unsafe { heap.extend(8) }; // too few to use alone: kept for the next extend
    assert_eq!(heap.size(), 4096 + 8);
    assert_eq!(heap.free(), free);
    unsafe { heap.extend(2 * 4096 - 8) };
    assert_eq!(heap.size(), 3 * 4096);
    assert!(heap.free() > free + 4096, "{} after, {free} before", heap.free());
}

#[test]
fn locked_heap_is_a_global_allocator_with_the_heap_behind_lock() {
    static ALLOCATOR: LockedHeap = LockedHeap::empty();
    let mem = memory(64 * 1024);
    unsafe { ALLOCATOR.lock().init(mem.as_mut_ptr().cast(), 64 * 1024) };
    let layout = Layout::new::<[u64; 16]>();
    unsafe {
        let p = ALLOCATOR.alloc(layout);
        assert!(!p.is_null());
        assert_eq!(ALLOCATOR.lock().used(), 128);
        ALLOCATOR.dealloc(p, layout);
        let q = ALLOCATOR.lock().allocate_first_fit(layout).unwrap();
        ALLOCATOR.lock().deallocate(q, layout);
    }
    assert_eq!(ALLOCATOR.lock().used(), 0);
    assert_eq!(ALLOCATOR.stats().live_allocations, 0);
    let mem = memory(4096);
    let locked = unsafe { LockedHeap::new(mem.as_mut_ptr().cast(), 4096) };
    assert_eq!(locked.lock().size(), 4096);
}
