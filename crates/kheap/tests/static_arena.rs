//! `StaticArena` and `StaticRegion` as memory sources: claimed once, by the first request that
//! fits, aligned as asked, and taken back whole.

use core::alloc::Layout;
use core::mem::MaybeUninit;

use kheap::{MemorySource, StaticArena, StaticRegion};

#[test]
fn an_arena_is_claimed_once_by_the_first_request_that_fits() {
    static ARENA: StaticArena<8192> = StaticArena::new();
    assert!(ARENA.acquire(Layout::from_size_align(16384, 8).unwrap()).is_none(), "too large, yet granted");
    assert!(!ARENA.is_taken(), "a request that did not fit took the arena");
    let region = ARENA.acquire(Layout::from_size_align(100, 4096).unwrap()).expect("the arena was refused");
    assert_eq!(region.len(), 8192, "the page-aligned arena is handed over whole");
    assert_eq!(region.cast::<u8>().as_ptr().addr() % 4096, 0);
    assert!(ARENA.is_taken());
    assert!(ARENA.acquire(Layout::new::<u8>()).is_none(), "handed out twice");
    // SAFETY: exactly the region `acquire` returned; nothing uses it.
    assert!(unsafe { ARENA.release(region) });
    assert!(!ARENA.is_taken());
    assert!(ARENA.acquire(Layout::new::<u8>()).is_some());
}

#[test]
fn a_region_over_a_static_array_is_handed_over_whole_when_its_aligned_part_fits() {
    static mut SPACE: [u8; 8192] = [0; 8192];
    // SAFETY: nothing but this region uses SPACE.
    static REGION: StaticRegion = unsafe { StaticRegion::new(&raw mut SPACE) };
    let start = (&raw const SPACE).cast::<u8>();
    assert!(REGION.acquire(Layout::from_size_align(8193, 1).unwrap()).is_none());
    assert!(!REGION.is_taken(), "a request that did not fit took the array");
    let region = REGION.acquire(Layout::from_size_align(4096, 1024).unwrap()).unwrap();
    // The bytes before the aligned point are handed over too (the `MemorySource` contract).
    assert_eq!((region.cast::<u8>().as_ptr().cast_const(), region.len()), (start, 8192));
    assert!(REGION.acquire(Layout::new::<u8>()).is_none());
}

#[test]
fn a_region_over_a_maybe_uninit_array_is_accepted_too() {
    static mut SPACE: [MaybeUninit<u8>; 4096] = [MaybeUninit::uninit(); 4096];
    // SAFETY: nothing but this region uses SPACE.
    static REGION: StaticRegion = unsafe { StaticRegion::new(&raw mut SPACE) };
    let region = REGION.acquire(Layout::new::<u8>()).unwrap();
    assert_eq!(region.len(), 4096);
}
