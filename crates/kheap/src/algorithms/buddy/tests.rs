//! Tests of the buddy heap's own mechanics; the shared conformance suite lives in
//! `kheap-testkit`.

use core::alloc::Layout;
use core::ptr::NonNull;
use std::vec::Vec;

use super::*;
use crate::test_memory::Memory;

fn heap_over(memory: &Memory, from: usize, len: usize) -> BuddyHeap<20> {
    let mut heap = BuddyHeap::new();
    // SAFETY: the memory outlives the heap in every test and only the heap uses it.
    unsafe { heap.add_region(memory.region(from, len)) }.unwrap();
    heap
}

fn free_blocks(heap: &BuddyHeap<20>) -> Vec<(usize, usize)> {
    let mut blocks = Vec::new();
    heap.for_each_free_block(&mut |p, len| blocks.push((p.addr(), len)));
    blocks.sort();
    blocks
}

#[test]
fn freeing_both_halves_merges_them_back_into_the_parent() {
    let memory = Memory::new(1 << 16);
    let mut heap = heap_over(&memory, 0, 1 << 16);
    let initial = free_blocks(&heap);
    let layout = Layout::from_size_align(16, 16).unwrap();
    let a = heap.allocate(layout).unwrap();
    let b = heap.allocate(layout).unwrap();
    assert_eq!(a.as_ptr().addr() ^ b.as_ptr().addr(), 16, "two small blocks should be buddies");
    heap.check_invariants().unwrap();
    // SAFETY: `a` and `b` are live with `layout`.
    unsafe {
        heap.deallocate(a, layout);
        heap.deallocate(b, layout);
    }
    heap.check_invariants().unwrap();
    assert_eq!(free_blocks(&heap), initial);
}

#[test]
fn a_region_of_any_start_and_length_loses_only_its_bookkeeping_and_slivers() {
    let memory = Memory::new(1 << 17);
    // Odd start, odd length.
    let (from, len) = (37, 100_003);
    let heap = heap_over(&memory, from, len);
    let first = (memory.0.as_ptr().addr() + from).next_multiple_of(GRANULE);
    let last = (memory.0.as_ptr().addr() + from + len) & !(GRANULE - 1);
    let meta = bookkeeping(&heap);
    assert_eq!(heap.stats().total_bytes, last - first - meta);
    assert!(meta < len / 32, "bookkeeping of {meta} bytes for {len}");
    heap.check_invariants().unwrap();
}

fn bookkeeping(heap: &BuddyHeap<20>) -> usize {
    heap.records().map(|r| heap.record(r).meta.len).sum()
}

#[test]
fn grow_in_place_takes_the_free_upper_buddy() {
    let memory = Memory::new(1 << 16);
    let mut heap = heap_over(&memory, 0, 1 << 16);
    let layout = Layout::from_size_align(64, 64).unwrap();
    let a = heap.allocate(layout).unwrap();
    // SAFETY: `a` is live with `layout`; 256 >= 64.
    unsafe { heap.grow_in_place(a, layout, 256) }.unwrap();
    assert_eq!(heap.stats().allocated_bytes, 256);
    heap.check_invariants().unwrap();
    let big = Layout::from_size_align(256, 64).unwrap();
    // SAFETY: `a` is now live with `big`.
    unsafe { heap.deallocate(a, big) };
    heap.check_invariants().unwrap();
}

#[test]
#[should_panic(expected = "double free")]
fn freeing_a_block_twice_panics_naming_it() {
    let memory = Memory::new(1 << 16);
    let mut heap = heap_over(&memory, 0, 1 << 16);
    let layout = Layout::new::<u64>();
    let a = heap.allocate(layout).unwrap();
    let _keep_buddy_busy = heap.allocate(layout).unwrap();
    // SAFETY: the first call is correct; the second is the misuse under test, caught before
    // the heap changes anything.
    unsafe {
        heap.deallocate(a, layout);
        heap.deallocate(a, layout);
    }
}

#[test]
#[should_panic(expected = "not inside this heap")]
fn freeing_a_foreign_pointer_panics_naming_it() {
    let memory = Memory::new(1 << 16);
    let mut heap = heap_over(&memory, 0, 1 << 15);
    let foreign = offset(memory.0, 1 << 15);
    // SAFETY: deliberately wrong; the heap detects it before touching anything.
    unsafe { heap.deallocate(foreign, Layout::new::<u64>()) };
}

#[test]
fn check_invariants_names_a_corrupted_bitmap() {
    let memory = Memory::new(1 << 16);
    let mut heap = heap_over(&memory, 0, 1 << 16);
    let layout = Layout::new::<u64>();
    let a = heap.allocate(layout).unwrap();
    let record = heap.regions.unwrap();
    // Mark the allocated block free in the bitmap without putting it on a list.
    heap.set_free_bit(record, a.as_ptr().addr(), 0, true);
    let error = heap.check_invariants().unwrap_err();
    assert!(error.what.contains("bitmap") || error.what.contains("merged"), "{error}");
}

#[test]
fn touching_regions_join_and_return_the_old_bookkeeping() {
    let memory = Memory::new(1 << 17);
    let mut heap = heap_over(&memory, 0, 1 << 16);
    let alone = heap.stats().total_bytes;
    // SAFETY: as in `heap_over`.
    unsafe { heap.add_region(memory.region(1 << 16, 1 << 16)) }.unwrap();
    heap.check_invariants().unwrap();
    let mut once = BuddyHeap::<20>::new();
    let other = Memory::new(1 << 17);
    // SAFETY: a second heap over separate memory of the same length, which outlives it.
    unsafe { once.add_region(other.region(0, 1 << 17)) }.unwrap();
    assert!(heap.stats().total_bytes > 2 * alone, "old bookkeeping not returned");
    assert_eq!(
        heap.stats().total_bytes,
        once.stats().total_bytes,
        "joined heap smaller than one added at once"
    );
}

#[test]
fn grow_in_place_refuses_an_upper_buddy_even_when_the_next_block_is_free() {
    let memory = Memory::new(1 << 16);
    let mut heap = heap_over(&memory, 0, 1 << 16);
    let small = Layout::from_size_align(16, 16).unwrap();
    // A 64-byte block at X, shrunk to 16 bytes: X+16 and X+32.. become free.
    let big = Layout::from_size_align(64, 16).unwrap();
    let x = heap.allocate(big).unwrap();
    // SAFETY: `x` is live with `big`; 16 <= 64.
    unsafe { heap.shrink_in_place(x, big, 16) }.unwrap();
    // Take 16-byte blocks until X+16, X+32 and X+48 are all live.
    let wanted: Vec<usize> = [16, 32, 48].iter().map(|d| x.as_ptr().addr() + d).collect();
    let mut got = Vec::new();
    while !wanted.iter().all(|w| got.iter().any(|g: &NonNull<u8>| g.as_ptr().addr() == *w)) {
        got.push(heap.allocate(small).expect("heap ran out before reaching X+48"));
    }
    let at = |d: usize| *got.iter().find(|g| g.as_ptr().addr() == x.as_ptr().addr() + d).unwrap();
    // X+32 free at order 0, right after X+16, which is the *upper* half of [X, X+32).
    // SAFETY: live with `small`.
    unsafe { heap.deallocate(at(32), small) };
    // SAFETY: X+16 is live with `small`; 32 >= 16.
    let grown = unsafe { heap.grow_in_place(at(16), small, 32) };
    assert!(grown.is_err(), "an upper buddy grew into the next pair's block");
    heap.check_invariants().unwrap();
}

#[test]
fn could_ever_fit_knows_the_largest_block() {
    let heap = BuddyHeap::<16>::new();
    assert!(heap.could_ever_fit(Layout::from_size_align(BuddyHeap::<16>::MAX_BLOCK, 1).unwrap()));
    assert!(!heap.could_ever_fit(Layout::from_size_align(BuddyHeap::<16>::MAX_BLOCK + 1, 1).unwrap()));
    assert!(!heap.could_ever_fit(Layout::from_size_align(1, BuddyHeap::<16>::MAX_BLOCK * 2).unwrap()));
}
