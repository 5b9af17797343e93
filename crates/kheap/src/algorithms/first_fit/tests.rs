//! Tests of the first-fit heap's own mechanics; the shared conformance suite lives in
//! `kheap-testkit`.

use core::alloc::Layout;
use core::ptr::NonNull;
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
        blocks.push((heap.allocate(bytes(size)).unwrap().cast::<u8>(), size));
    }
    let mut holes = [0; 3];
    for (i, index) in [0, 2, 4].into_iter().enumerate() {
        let (ptr, size) = blocks[index];
        holes[i] = ptr.as_ptr().addr();
        // SAFETY: live with this layout.
        unsafe { heap.deallocate(ptr, bytes(size)) }.unwrap();
    }
    heap.check_invariants().unwrap();
    (heap, holes)
}

#[test]
fn each_policy_picks_its_block() {
    let memory = Memory::new(8192);
    let (mut first, holes) = heap_with_holes(&memory, FitPolicy::First);
    assert_eq!(first.allocate(bytes(64)).unwrap().cast::<u8>().as_ptr().addr(), holes[0], "first fit");
    let (mut best, holes) = heap_with_holes(&memory, FitPolicy::Best);
    assert_eq!(best.allocate(bytes(64)).unwrap().cast::<u8>().as_ptr().addr(), holes[1], "best fit");
    let (mut worst, holes) = heap_with_holes(&memory, FitPolicy::Worst);
    let tail = worst.allocate(bytes(64)).unwrap().cast::<u8>().as_ptr().addr();
    assert!(tail > holes[2], "worst fit should take the large tail block");
    let (mut next, holes) = heap_with_holes(&memory, FitPolicy::Next);
    // The last allocation ended after the third hole, so next fit starts from the tail block.
    assert!(next.allocate(bytes(64)).unwrap().cast::<u8>().as_ptr().addr() > holes[2], "next fit");
}

fn alloc(heap: &mut FirstFitHeap, n: usize) -> NonNull<u8> {
    heap.allocate(bytes(n)).unwrap().cast()
}

fn heap_over(memory: &Memory) -> FirstFitHeap {
    let mut heap = FirstFitHeap::new(FitPolicy::First);
    // SAFETY: the memory outlives the heap and only the heap uses it.
    unsafe { heap.add_region(memory.region(0, 8192)) }.unwrap();
    heap
}

#[test]
fn deallocate_merges_with_both_neighbours() {
    let memory = Memory::new(8192);
    let mut heap = heap_over(&memory);
    let initial = heap.usage();
    let a = alloc(&mut heap, 100);
    let b = alloc(&mut heap, 100);
    let c = alloc(&mut heap, 100);
    // SAFETY: live with these layouts.
    unsafe {
        heap.deallocate(a, bytes(100)).unwrap();
        heap.deallocate(c, bytes(100)).unwrap();
        heap.deallocate(b, bytes(100)).unwrap();
    }
    heap.check_invariants().unwrap();
    let mut blocks = 0;
    heap.walk(&mut |part| blocks += usize::from(part.kind == PartKind::Free));
    assert_eq!(blocks, 1, "free neighbours were not merged");
    assert_eq!(heap.usage(), initial);
}

#[test]
fn freeing_a_block_twice_is_refused_as_a_double_free() {
    let memory = Memory::new(8192);
    let mut heap = heap_over(&memory);
    let a = alloc(&mut heap, 64);
    let _b = alloc(&mut heap, 64);
    // SAFETY: the first free is correct.
    unsafe { heap.deallocate(a, bytes(64)) }.unwrap();
    let before = heap.usage();
    // SAFETY: the misuse under test, refused before anything changes.
    let error = unsafe { heap.deallocate(a, bytes(64)) }.unwrap_err();
    assert_eq!(error.kind, MisuseKind::DoubleFree);
    assert_eq!(heap.usage(), before);
    heap.check_invariants().unwrap();
}

#[test]
fn a_free_larger_than_the_block_over_free_memory_is_refused_as_a_wrong_layout() {
    let memory = Memory::new(8192);
    let mut heap = heap_over(&memory);
    let a = alloc(&mut heap, 64);
    // SAFETY: deliberately wrong: the memory after the 64-byte block is free.
    let error = unsafe { heap.deallocate(a, bytes(256)) }.unwrap_err();
    assert_eq!(error.kind, MisuseKind::WrongLayout);
    heap.check_invariants().unwrap();
}

#[test]
fn foreign_header_and_misaligned_frees_are_refused() {
    let memory = Memory::new(16384);
    let mut heap = heap_over(&memory);
    let a = alloc(&mut heap, 64);
    let cases = [
        (offset(memory.0, 12288), bytes(16), MisuseKind::Foreign),
        (memory.0, bytes(16), MisuseKind::Bookkeeping),
        // Half a granule in: misaligned for any block of this heap.
        (
            offset(a, GRANULE / 2),
            Layout::from_size_align(GRANULE / 2, GRANULE / 2).unwrap(),
            MisuseKind::NotBlockStart,
        ),
        (a, Layout::from_size_align(isize::MAX as usize / 2, 16).unwrap(), MisuseKind::WrongLayout),
    ];
    for (ptr, layout, kind) in cases {
        // SAFETY: deliberately wrong; refused before anything changes.
        let error = unsafe { heap.deallocate(ptr, layout) }.unwrap_err();
        assert_eq!(error.kind, kind, "{error}");
    }
    heap.check_invariants().unwrap();
}

#[test]
fn check_invariants_reports_a_corrupted_link_instead_of_following_it() {
    let memory = Memory::new(8192);
    let heap = heap_over(&memory);
    let mut head = heap.free.unwrap();
    // A stray write over the free block's link, pointing far outside the heap.
    // SAFETY: the head of the free list holds a `FreeBlock` the heap owns.
    unsafe { head.as_mut().next = Some(NonNull::dangling()) };
    let error = heap.check_invariants().unwrap_err();
    assert!(error.what.contains("outside every region"), "{error}");
}

#[test]
fn check_invariants_names_a_stale_largest_block() {
    let memory = Memory::new(8192);
    let mut heap = heap_over(&memory);
    heap.largest += GRANULE;
    let error = heap.check_invariants().unwrap_err();
    assert!(error.what.contains("largest"), "{error}");
}
