//! Tests of the first-fit heap's own mechanics; the shared conformance suite lives in
//! `kheap-testkit`.

use core::alloc::Layout;
use std::vec::Vec;

use super::*;
use crate::test_memory::Memory;

fn bytes(n: usize) -> Layout {
    Layout::from_size_align(n, 16).unwrap()
}

/// A heap whose free list is, in address order: a 256-byte hole, a 64-byte hole, a 128-byte
/// hole, then the rest. Returns the heap and the holes' addresses.
fn heap_with_holes(memory: &Memory, policy: FitPolicy) -> (FirstFitHeap, [usize; 3]) {
    let mut heap = FirstFitHeap::new(policy);
    // SAFETY: the memory outlives the heap and only the heap uses it.
    unsafe { heap.add_region(memory.region(0, 8192)) }.unwrap();
    let mut blocks = Vec::new();
    for size in [256, 32, 64, 32, 128, 32] {
        blocks.push((heap.allocate(bytes(size)).unwrap(), size));
    }
    let mut holes = [0; 3];
    for (i, index) in [0, 2, 4].into_iter().enumerate() {
        let (ptr, size) = blocks[index];
        holes[i] = ptr.as_ptr().addr();
        // SAFETY: live with this layout.
        unsafe { heap.deallocate(ptr, bytes(size)) };
    }
    heap.check_invariants().unwrap();
    (heap, holes)
}

#[test]
fn each_policy_picks_its_block() {
    let memory = Memory::new(8192);
    let (mut first, holes) = heap_with_holes(&memory, FitPolicy::First);
    assert_eq!(first.allocate(bytes(64)).unwrap().as_ptr().addr(), holes[0], "first fit");
    let (mut best, holes) = heap_with_holes(&memory, FitPolicy::Best);
    assert_eq!(best.allocate(bytes(64)).unwrap().as_ptr().addr(), holes[1], "best fit");
    let (mut worst, holes) = heap_with_holes(&memory, FitPolicy::Worst);
    let tail = worst.allocate(bytes(64)).unwrap().as_ptr().addr();
    assert!(tail > holes[2], "worst fit should take the large tail block");
    let (mut next, holes) = heap_with_holes(&memory, FitPolicy::Next);
    // The last allocation ended after the third hole, so next fit starts from the tail block.
    assert!(next.allocate(bytes(64)).unwrap().as_ptr().addr() > holes[2], "next fit");
}

#[test]
fn deallocate_merges_with_both_neighbours() {
    let memory = Memory::new(8192);
    let mut heap = FirstFitHeap::new(FitPolicy::First);
    // SAFETY: the memory outlives the heap and only the heap uses it.
    unsafe { heap.add_region(memory.region(0, 8192)) }.unwrap();
    let initial = heap.stats();
    let a = heap.allocate(bytes(100)).unwrap();
    let b = heap.allocate(bytes(100)).unwrap();
    let c = heap.allocate(bytes(100)).unwrap();
    // SAFETY: live with these layouts.
    unsafe {
        heap.deallocate(a, bytes(100));
        heap.deallocate(c, bytes(100));
        heap.deallocate(b, bytes(100));
    }
    heap.check_invariants().unwrap();
    let mut blocks = 0;
    heap.for_each_free_block(&mut |_, _| blocks += 1);
    assert_eq!(blocks, 1, "free neighbours were not merged");
    assert_eq!(heap.stats().largest_free_block, initial.largest_free_block);
}

#[test]
#[should_panic(expected = "double free")]
fn freeing_a_block_twice_panics_naming_it() {
    let memory = Memory::new(8192);
    let mut heap = FirstFitHeap::new(FitPolicy::First);
    // SAFETY: the memory outlives the heap and only the heap uses it.
    unsafe { heap.add_region(memory.region(0, 8192)) }.unwrap();
    let a = heap.allocate(bytes(64)).unwrap();
    // SAFETY: the second call is the misuse under test, caught before anything changes.
    unsafe {
        heap.deallocate(a, bytes(64));
        heap.deallocate(a, bytes(64));
    }
}

#[test]
fn check_invariants_names_a_stale_largest_block() {
    let memory = Memory::new(8192);
    let mut heap = FirstFitHeap::new(FitPolicy::First);
    // SAFETY: the memory outlives the heap and only the heap uses it.
    unsafe { heap.add_region(memory.region(0, 8192)) }.unwrap();
    heap.largest += GRANULE;
    let error = heap.check_invariants().unwrap_err();
    assert!(error.what.contains("largest"), "{error}");
}
