//! The allocators compared, each built fresh over the shared arena for every run.

use std::alloc::GlobalAlloc;

use kheap::{BuddyHeap, FirstFitHeap, FitPolicy, LockedHeap, RawSpinlock};

use crate::router::{set_arena, Arena, Heap};

/// One allocator under test.
pub struct Contender {
    pub name: &'static str,
    /// Builds a new, empty heap over the whole arena.
    pub build: fn(&Arena) -> Heap,
}

fn leak<T: GlobalAlloc + Sync + 'static>(heap: T) -> &'static T {
    Box::leak(Box::new(heap))
}

fn kheap_buddy(arena: &Arena) -> Heap {
    set_arena(arena);
    let heap = leak(LockedHeap::<RawSpinlock, BuddyHeap<32>>::new(BuddyHeap::new()));
    // SAFETY: the arena is handed to this heap alone until the next contender's run, after
    // every block of this one was freed.
    unsafe { heap.add_region_raw(arena.start, arena.len) }.expect("arena refused");
    heap
}

fn kheap_first_fit(arena: &Arena) -> Heap {
    set_arena(arena);
    let heap = leak(LockedHeap::<RawSpinlock, FirstFitHeap>::new(FirstFitHeap::new(FitPolicy::First)));
    // SAFETY: as in `kheap_buddy`.
    unsafe { heap.add_region_raw(arena.start, arena.len) }.expect("arena refused");
    heap
}

fn buddy_system_allocator(arena: &Arena) -> Heap {
    set_arena(arena);
    let heap = leak(buddy_system_allocator::LockedHeap::<32>::new());
    // SAFETY: as in `kheap_buddy`.
    unsafe { heap.lock().init(arena.start as usize, arena.len) };
    heap
}

pub const CONTENDERS: &[Contender] = &[
    Contender { name: "kheap-buddy", build: kheap_buddy },
    Contender { name: "buddy_system_allocator-0.13", build: buddy_system_allocator },
    Contender { name: "kheap-first-fit", build: kheap_first_fit },
];
