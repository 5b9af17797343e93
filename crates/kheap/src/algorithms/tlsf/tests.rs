//! Tests of the TLSF heap's own mechanics; the shared conformance suite lives in `kheap-testkit`.

use core::alloc::Layout;
use core::ptr::NonNull;
use std::vec::Vec;

use super::*;
use crate::test_memory::Memory;

const G: usize = GRANULE;

fn granules(n: usize) -> Layout {
    Layout::from_size_align(n * G, 1).unwrap()
}

fn heap_over(memory: &Memory, len: usize) -> TlsfHeap {
    let mut heap = TlsfHeap::new();
    // SAFETY: the memory outlives the heap and only the heap uses it.
    unsafe { heap.add_region(memory.region(0, len)) }.unwrap();
    heap.check_invariants().unwrap();
    heap
}

fn alloc(heap: &mut TlsfHeap, layout: Layout) -> NonNull<u8> {
    let block = heap.allocate(layout).unwrap_or_else(|_| panic!("{layout:?} refused"));
    heap.check_invariants().unwrap();
    block.cast()
}

fn free(heap: &mut TlsfHeap, ptr: NonNull<u8>, layout: Layout) {
    // SAFETY: every caller passes a live allocation with its layout.
    unsafe { heap.deallocate(ptr, layout) }.unwrap();
    heap.check_invariants().unwrap();
}

fn free_blocks(heap: &TlsfHeap) -> Vec<(usize, usize)> {
    let mut blocks = Vec::new();
    heap.walk(&mut |part| {
        if part.kind == PartKind::Free {
            blocks.push((part.start.addr(), part.len));
        }
    });
    blocks.sort();
    blocks
}

/// Allocates everything that is free, in one block: the heap is then full.
fn take_the_rest(heap: &mut TlsfHeap) -> Option<(NonNull<u8>, Layout)> {
    let largest = heap.usage().largest_free_block;
    (largest > 0).then(|| {
        let layout = Layout::from_size_align(largest, 1).unwrap();
        (alloc(heap, layout), layout)
    })
}

#[test]
fn classes_cover_every_size_and_the_good_fit_overshoots_by_at_most_a_32nd() {
    let mut n = 1;
    while n < 1 << 24 {
        let (fl, sl) = class_of(n);
        assert!(fl < FL_COUNT && sl < SL_COUNT);
        let floor = class_floor(fl, sl);
        assert!(floor <= n, "{n} granules below its class floor {floor}");
        let next = if sl + 1 < SL_COUNT { class_floor(fl, sl + 1) } else { class_floor(fl + 1, 0) };
        assert!(n < next, "{n} granules at or above the next class");
        let (sfl, ssl) = search_class(n).unwrap();
        let good = class_floor(sfl, ssl);
        assert!(good >= n, "the good fit for {n} granules may return {good}");
        // Rounding up to the good-fit class adds less than 1/32 of the size.
        assert!((good - n) * 32 < n.max(32), "{n} granules rounded to {good}");
        n += 1 + n / 7;
    }
    assert_eq!(class_of(1), (0, 1));
    assert_eq!(class_of(31), (0, 31));
    assert_eq!(class_of(32), (1, 0));
    assert_eq!(class_of(65), (2, 0));
    assert_eq!(search_class(65), Some((2, 1)));
    let largest = isize::MAX as usize >> GRANULE_SHIFT;
    assert!(class_of(largest).0 < FL_COUNT);
}

#[test]
fn deallocate_merges_with_both_neighbours() {
    let memory = Memory::new(8192);
    let mut heap = heap_over(&memory, 8192);
    let initial = heap.usage();
    let layout = granules(5);
    let a = alloc(&mut heap, layout);
    let b = alloc(&mut heap, layout);
    let c = alloc(&mut heap, layout);
    let d = alloc(&mut heap, layout);
    free(&mut heap, a, layout);
    free(&mut heap, c, layout);
    assert_eq!(free_blocks(&heap).len(), 3, "a, c and the tail are separate free blocks");
    free(&mut heap, b, layout);
    let blocks = free_blocks(&heap);
    assert_eq!(blocks.len(), 2, "b did not merge with a and c");
    assert_eq!(blocks[0], (a.as_ptr().addr(), 15 * G));
    free(&mut heap, d, layout);
    assert_eq!(free_blocks(&heap).len(), 1, "d did not merge with both neighbours");
    assert_eq!(heap.usage(), initial);
}

#[test]
fn one_granule_blocks_merge_on_both_sides() {
    let memory = Memory::new(4096);
    let mut heap = heap_over(&memory, 4096);
    let initial = heap.usage();
    let one = granules(1);
    let blocks: Vec<_> = (0..6).map(|_| alloc(&mut heap, one)).collect();
    for i in [0, 2, 4] {
        free(&mut heap, blocks[i], one);
    }
    assert!(free_blocks(&heap).iter().filter(|b| b.1 == G).count() == 3, "three one-granule free blocks");
    for i in [1, 3, 5] {
        free(&mut heap, blocks[i], one);
    }
    assert_eq!(heap.usage(), initial);
    assert_eq!(free_blocks(&heap).len(), 1);
}

#[test]
fn the_only_free_block_is_found_even_when_the_good_fit_skips_its_class() {
    // Each size lies strictly inside its class, so the good fit rounds the request up past the
    // class that holds the only free block: without the fallback each request is refused.
    for n in [67, 97, 131, 1025, 2049] {
        assert_ne!(class_of(n), search_class(n).unwrap(), "{n} granules is a class floor");
        let len = (n + 2) * G + 4096 + RegionRecord::meta_bytes((n + 2) * G + 4096);
        let memory = Memory::new(len);
        let mut heap = heap_over(&memory, len);
        let hole = alloc(&mut heap, granules(n));
        let fence = alloc(&mut heap, granules(1));
        let rest = take_the_rest(&mut heap);
        free(&mut heap, hole, granules(n));
        assert_eq!(heap.usage().largest_free_block, n * G);
        assert_eq!(heap.usage().free_bytes, n * G, "the hole is the only free memory");
        let again = heap.allocate(granules(n)).expect("the only free block fits, yet was refused");
        assert_eq!(again.cast::<u8>(), hole);
        heap.check_invariants().unwrap();
        // Smaller requests inside the same class are found too.
        free(&mut heap, hole, granules(n));
        let smaller = alloc(&mut heap, granules(n - 1));
        free(&mut heap, smaller, granules(n - 1));
        free(&mut heap, fence, granules(1));
        if let Some((ptr, layout)) = rest {
            free(&mut heap, ptr, layout);
        }
    }
}

#[test]
fn a_request_is_refused_only_when_no_free_block_holds_it() {
    let len = 1000 * G + 4096;
    let memory = Memory::new(len);
    let mut heap = heap_over(&memory, len);
    // Holes of many sizes between one-granule fences; then every size up to the largest hole
    // must succeed, and one granule more must fail.
    let mut holes = Vec::new();
    let mut fences = Vec::new();
    for n in [3, 40, 70, 100, 150, 260, 300] {
        holes.push((alloc(&mut heap, granules(n)), granules(n)));
        fences.push(alloc(&mut heap, granules(1)));
    }
    let rest = take_the_rest(&mut heap);
    for (ptr, layout) in holes {
        free(&mut heap, ptr, layout);
    }
    // Every size natively; under Miri (which interprets every invariant walk) every seventh
    // and the two largest, which keeps this test from taking minutes there.
    let step = if cfg!(miri) { 7 } else { 1 };
    for n in (1..=300).step_by(step).chain([299, 300]) {
        let block = alloc(&mut heap, granules(n));
        free(&mut heap, block, granules(n));
    }
    assert!(heap.allocate(granules(301)).is_err());
    heap.check_invariants().unwrap();
    for fence in fences {
        free(&mut heap, fence, granules(1));
    }
    if let Some((ptr, layout)) = rest {
        free(&mut heap, ptr, layout);
    }
}

#[test]
fn an_aligned_allocation_returns_its_leading_gap_to_the_free_lists() {
    let len = 64 * 1024;
    let memory = Memory::new(len);
    let mut heap = heap_over(&memory, len);
    let initial = heap.usage();
    let first = alloc(&mut heap, granules(1));
    let aligned_layout = Layout::from_size_align(G, 4096).unwrap();
    let aligned = alloc(&mut heap, aligned_layout);
    assert_eq!(aligned.as_ptr().addr() % 4096, 0);
    let usage = heap.usage();
    assert_eq!(usage.free_bytes, initial.free_bytes - 2 * G, "the gap was not returned");
    let gap = free_blocks(&heap)[0];
    assert_eq!(gap, (first.as_ptr().addr() + G, aligned.as_ptr().addr() - first.as_ptr().addr() - G));
    // The gap serves small requests at once.
    let small = alloc(&mut heap, granules(3));
    assert_eq!(small.as_ptr().addr(), first.as_ptr().addr() + G);
    free(&mut heap, small, granules(3));
    free(&mut heap, aligned, aligned_layout);
    free(&mut heap, first, granules(1));
    assert_eq!(heap.usage(), initial);
}

#[test]
fn a_stream_of_page_aligned_small_blocks_wastes_only_the_gaps() {
    let len = 32 * 1024;
    let memory = Memory::new(len);
    let mut heap = heap_over(&memory, len);
    let initial = heap.usage();
    let layout = Layout::from_size_align(24, 4096).unwrap();
    let size = block_bytes(layout);
    let mut blocks = Vec::new();
    while let Ok(block) = heap.allocate(layout) {
        blocks.push(block.cast::<u8>());
    }
    heap.check_invariants().unwrap();
    // Every page of the region (but the one the bookkeeping shares) holds one block, and all
    // the rest is free and allocatable.
    assert!(blocks.len() >= len / 4096 - 1, "only {} page-aligned blocks in {len} bytes", blocks.len());
    assert_eq!(heap.usage().free_bytes, initial.free_bytes - blocks.len() * size);
    let gaps = heap.usage().free_bytes;
    let mut fillers = 0;
    while heap.allocate(Layout::from_size_align(G, 1).unwrap()).is_ok() {
        fillers += 1;
    }
    assert_eq!(fillers * G, gaps, "the gaps were not all allocatable");
}

#[test]
fn grow_in_place_takes_the_free_block_after() {
    let memory = Memory::new(8192);
    let mut heap = heap_over(&memory, 8192);
    let initial = heap.usage();
    let a = alloc(&mut heap, granules(4));
    let b = alloc(&mut heap, granules(4));
    let c = alloc(&mut heap, granules(1));
    free(&mut heap, b, granules(4));
    // SAFETY: `a` is live with 4 granules.
    unsafe { heap.grow_in_place(a, granules(4), 7 * G) }.expect("grow into the free block after");
    heap.check_invariants().unwrap();
    assert_eq!(free_blocks(&heap)[0], (a.as_ptr().addr() + 7 * G, G), "the rest stays free");
    // SAFETY: `a` is live with 7 granules.
    assert!(unsafe { heap.grow_in_place(a, granules(7), 9 * G) }.is_err(), "grew over `c`");
    // SAFETY: as above.
    unsafe { heap.grow_in_place(a, granules(7), 8 * G) }.expect("grow over the whole free block");
    heap.check_invariants().unwrap();
    free(&mut heap, c, granules(1));
    free(&mut heap, a, granules(8));
    assert_eq!(heap.usage(), initial);
}

#[test]
fn shrink_in_place_returns_the_tail_merged_with_the_free_block_after() {
    let memory = Memory::new(8192);
    let mut heap = heap_over(&memory, 8192);
    let initial = heap.usage();
    let a = alloc(&mut heap, granules(10));
    // SAFETY: `a` is live with 10 granules.
    unsafe { heap.shrink_in_place(a, granules(10), 3 * G) }.unwrap();
    heap.check_invariants().unwrap();
    assert_eq!(heap.usage().free_bytes, initial.free_bytes - 3 * G);
    assert_eq!(free_blocks(&heap).len(), 1, "the tail did not merge with the free block after");
    let b = alloc(&mut heap, granules(2));
    assert_eq!(b.as_ptr().addr(), a.as_ptr().addr() + 3 * G);
    // A one-granule tail is a block too.
    // SAFETY: `a` is live with 3 granules.
    unsafe { heap.shrink_in_place(a, granules(3), 2 * G) }.unwrap();
    heap.check_invariants().unwrap();
    assert!(free_blocks(&heap).contains(&(a.as_ptr().addr() + 2 * G, G)));
    free(&mut heap, b, granules(2));
    free(&mut heap, a, granules(2));
    assert_eq!(heap.usage(), initial);
}

fn refused(heap: &mut TlsfHeap, ptr: NonNull<u8>, layout: Layout) -> MisuseKind {
    let before = heap.usage();
    let blocks = free_blocks(heap);
    // SAFETY: every call here is a misuse the heap must detect before touching anything.
    let misuse = unsafe { heap.deallocate(ptr, layout) }.expect_err("misuse accepted");
    heap.check_invariants().unwrap();
    assert_eq!(heap.usage(), before, "a refused free changed the heap");
    assert_eq!(free_blocks(heap), blocks, "a refused free changed the free blocks");
    misuse.kind
}

#[test]
fn misuse_is_refused_and_leaves_the_heap_unchanged() {
    let memory = Memory::new(8192);
    let other = Memory::new(4096);
    let mut heap = heap_over(&memory, 8192);
    let four = granules(4);
    let a = alloc(&mut heap, four);
    let b = alloc(&mut heap, four);
    let c = alloc(&mut heap, four);
    let d = alloc(&mut heap, four);
    assert_eq!(refused(&mut heap, other.0, four), MisuseKind::Foreign);
    assert_eq!(refused(&mut heap, offset(b, G), four), MisuseKind::NotBlockStart);
    assert_eq!(refused(&mut heap, offset(b, 1), Layout::new::<u8>()), MisuseKind::NotBlockStart);
    assert_eq!(refused(&mut heap, b, granules(3)), MisuseKind::WrongLayout);
    assert_eq!(refused(&mut heap, b, granules(5)), MisuseKind::WrongLayout);
    let misaligned = Layout::from_size_align(4 * G, 8192).unwrap();
    if b.as_ptr().addr() % 8192 != 0 {
        assert_eq!(refused(&mut heap, b, misaligned), MisuseKind::NotBlockStart);
    }
    let mut meta = None;
    heap.walk(&mut |part| {
        if part.kind == PartKind::Bookkeeping {
            meta = Some((part.start.addr(), part.len));
        }
    });
    let (meta, meta_len) = meta.unwrap();
    let meta_ptr = with_addr(a, meta);
    assert_eq!(
        refused(&mut heap, meta_ptr, Layout::from_size_align(meta_len, 1).unwrap()),
        MisuseKind::Bookkeeping
    );
    assert_eq!(refused(&mut heap, meta_ptr, four), MisuseKind::Bookkeeping);
    // A double free is detected however the block merged: alone, and after merging with a
    // free block on each side.
    free(&mut heap, b, four);
    assert_eq!(refused(&mut heap, b, four), MisuseKind::DoubleFree);
    free(&mut heap, a, four);
    free(&mut heap, c, four);
    for ptr in [a, b, c] {
        assert_eq!(refused(&mut heap, ptr, four), MisuseKind::DoubleFree);
    }
    assert_eq!(refused(&mut heap, with_addr(a, d.as_ptr().addr() + 4 * G), four), MisuseKind::DoubleFree);
    free(&mut heap, d, four);
}

#[test]
fn a_misuse_report_names_the_block_really_there() {
    let memory = Memory::new(8192);
    let mut heap = heap_over(&memory, 8192);
    let a = alloc(&mut heap, granules(6));
    // SAFETY: a misuse the heap detects.
    let misuse = unsafe { heap.deallocate(a, granules(2)) }.unwrap_err();
    assert_eq!(misuse.kind, MisuseKind::WrongLayout);
    assert_eq!(misuse.found.map(|l| l.size()), Some(6 * G));
    free(&mut heap, a, granules(6));
}

#[test]
fn a_corrupted_link_is_reported_not_followed() {
    let memory = Memory::new(8192);
    let mut heap = heap_over(&memory, 8192);
    let a = alloc(&mut heap, granules(4));
    let b = alloc(&mut heap, granules(4));
    let c = alloc(&mut heap, granules(4));
    free(&mut heap, b, granules(4));
    let outside = core::ptr::without_provenance_mut::<FreeHead>(0x10);
    // SAFETY: `b` is free memory of the heap; the test corrupts its link on purpose.
    unsafe { b.cast::<FreeHead>().as_ptr().write(FreeHead { next: outside, prev: core::ptr::null_mut() }) };
    let error = heap.check_invariants().expect_err("a corrupted link passed the check");
    assert_eq!(error.at.addr(), 0x10);
    // Corrupt the size tag instead.
    // SAFETY: as above; the link is restored, the size tag broken.
    unsafe {
        b.cast::<FreeHead>()
            .as_ptr()
            .write(FreeHead { next: core::ptr::null_mut(), prev: core::ptr::null_mut() });
        offset(b, G).cast::<usize>().write(1 << 20);
    }
    assert!(heap.check_invariants().is_err(), "a corrupted size tag passed the check");
    let _ = (a, c);
}

#[test]
fn touching_regions_join_and_lose_nothing_to_the_seam() {
    let len = 32 * 1024;
    let memory = Memory::new(len);
    let whole = heap_over(&memory, len).usage();
    drop(memory);
    for seam in [G, 4096, 10 * 1024 + 3 * G] {
        let memory = Memory::new(len);
        let mut heap = TlsfHeap::new();
        // SAFETY: both halves are the memory's, which outlives the heap; only the heap uses it.
        unsafe {
            heap.add_region(memory.region(seam, len - seam)).unwrap();
            // A one-granule piece is too small to be anything: refused, and that is fine.
            let _ = heap.add_region(memory.region(0, seam));
            heap.check_invariants().unwrap();
        }
        let mut heap = TlsfHeap::new();
        // SAFETY: as above.
        unsafe {
            heap.add_region(memory.region(0, len - seam)).unwrap();
            let _ = heap.add_region(memory.region(len - seam, seam));
        }
        heap.check_invariants().unwrap();
        if seam > 4096 {
            assert_eq!(heap.usage(), whole, "two halves joined differ from the whole (seam {seam})");
            assert_eq!(free_blocks(&heap).len(), 1);
        }
        let layout = Layout::from_size_align(heap.usage().largest_free_block, 1).unwrap();
        let block = alloc(&mut heap, layout);
        free(&mut heap, block, layout);
    }
}

#[test]
fn regions_of_any_start_and_length_are_used_whole() {
    let memory = Memory::new(16 * 1024);
    for (from, len) in [(1, 4095), (3, 8190), (G - 1, <TlsfHeap>::MIN_REGION + G)] {
        let mut heap = TlsfHeap::new();
        // SAFETY: the memory outlives the heap and only the heap uses it.
        let usable = unsafe { heap.add_region(memory.region(from, len)) }.unwrap();
        heap.check_invariants().unwrap();
        let end = (from + len) / G * G;
        let start = from.next_multiple_of(G);
        assert_eq!(usable, end - start - RegionRecord::meta_bytes(end - start));
        let block = alloc(&mut heap, Layout::from_size_align(usable, 1).unwrap());
        free(&mut heap, block, Layout::from_size_align(usable, 1).unwrap());
    }
}

#[test]
fn region_layout_for_gives_a_region_where_the_request_fits() {
    for layout in [
        Layout::from_size_align(1, 1).unwrap(),
        Layout::from_size_align(100, 8).unwrap(),
        Layout::from_size_align(5000, 4096).unwrap(),
        Layout::from_size_align(16, 4096).unwrap(),
        Layout::from_size_align(40_000, 16).unwrap(),
        Layout::from_size_align(3 * G, 2 * G).unwrap(),
    ] {
        let region = TlsfHeap::new().region_layout_for(layout).unwrap();
        let align = region.align();
        let memory = Memory::new(region.size() + 2 * align);
        // Exactly the layout, aligned; then starting `align - 1` bytes before the aligned
        // point (a source handing over what it skipped); then with a longer tail.
        for (from, len) in [
            (align, region.size()),
            (1, align - 1 + region.size()),
            (1, align - 1 + region.size() + G),
            (1, align - 1 + region.size() + align),
        ] {
            let mut heap = TlsfHeap::new();
            // SAFETY: the memory outlives the heap and only the heap uses it.
            unsafe { heap.add_region(memory.region(from, len)) }.unwrap();
            alloc(&mut heap, layout);
        }
    }
}

#[test]
fn block_layout_finds_each_allocated_block_and_frees_exactly_it() {
    let memory = Memory::new(16 * 1024);
    let mut heap = heap_over(&memory, 16 * 1024);
    let initial = heap.usage();
    let mut blocks = Vec::new();
    for (n, align) in [(1, 1), (3, 64), (40, 8), (2, 4096), (100, 1), (33, 16)] {
        let layout = Layout::from_size_align(n * G - 1, align).unwrap();
        blocks.push((alloc(&mut heap, layout), n));
    }
    let (free_one, _) = blocks.remove(2);
    free(&mut heap, free_one, Layout::from_size_align(40 * G - 1, 8).unwrap());
    for &(ptr, n) in &blocks {
        let layout = heap.block_layout(ptr).unwrap();
        assert_eq!(layout.size(), n * G);
        if n > 1 {
            let interior = heap.block_layout(offset(ptr, G)).map_err(|m| m.kind);
            assert_eq!(interior.err(), Some(MisuseKind::NotBlockStart));
        }
    }
    assert_eq!(heap.block_layout(free_one).map_err(|m| m.kind).err(), Some(MisuseKind::DoubleFree));
    for (ptr, _) in blocks {
        let layout = heap.block_layout(ptr).unwrap();
        free(&mut heap, ptr, layout);
    }
    assert_eq!(heap.usage(), initial);
}

#[test]
fn an_aligned_request_takes_a_hole_that_fits_it_exactly() {
    // The only free block is exactly one aligned page: smaller than the good fit's `need`
    // (size + align - granule), so only the fallback's scan of the lower classes finds it.
    let len = 64 * 1024;
    let memory = Memory::new(len);
    let mut heap = heap_over(&memory, len);
    let page = Layout::from_size_align(4096, 4096).unwrap();
    let a = alloc(&mut heap, page);
    let b = alloc(&mut heap, page);
    let c = alloc(&mut heap, page);
    let rest = take_the_rest(&mut heap);
    // Everything before `a` is allocated too (the region starts aligned, so `a` is first).
    assert_eq!(a.as_ptr().addr(), memory.0.as_ptr().addr());
    free(&mut heap, b, page);
    assert_eq!(heap.usage().free_bytes, 4096);
    let again = heap.allocate(page).expect("an aligned page refused while an aligned free page exists");
    assert_eq!(again.cast::<u8>(), b);
    heap.check_invariants().unwrap();
    free(&mut heap, b, page);
    free(&mut heap, a, page);
    free(&mut heap, c, page);
    if let Some((ptr, layout)) = rest {
        free(&mut heap, ptr, layout);
    }
}

#[test]
fn a_wholly_free_region_is_removed_and_one_in_use_or_joined_is_not() {
    let memory = Memory::new(256 * 1024);
    let mut heap = TlsfHeap::new();
    let (a, b) = (memory.region(0, 32 * 1024), memory.region(128 * 1024, 64 * 1024));
    // SAFETY: the memory outlives the heap and only the heap uses it; the regions are disjoint.
    let (usable_a, usable_b) = unsafe { (heap.add_region(a).unwrap(), heap.add_region(b).unwrap()) };
    let whole = heap.usage();

    // A block in `b` keeps it: refused, nothing changes.
    let big = Layout::from_size_align(usable_b, 1).unwrap();
    let block = heap.allocate(big).unwrap();
    assert!(block.cast::<u8>().as_ptr() >= b.cast::<u8>().as_ptr(), "the only fit is in b");
    assert_eq!(heap.remove_region(b), Err(RegionError::NotRemovable));
    assert_eq!(heap.remove_region(memory.region(128 * 1024, 32 * 1024)), Err(RegionError::NotRemovable));
    heap.check_invariants().unwrap();
    // SAFETY: live with `big`.
    unsafe { heap.deallocate(block.cast(), big) }.unwrap();

    assert_eq!(heap.remove_region(b), Ok(usable_b));
    heap.check_invariants().unwrap();
    let after = heap.usage();
    assert_eq!(after.total_bytes, whole.total_bytes - usable_b);
    assert_eq!((after.free_bytes, after.total_bytes), (usable_a, usable_a));
    assert!(heap.allocate(big).is_err(), "a block as large as b still found room");
    assert_eq!(heap.remove_region(b), Err(RegionError::NotRemovable), "removed twice");
    // Given again, it serves again.
    // SAFETY: `b` belongs to the caller again (promise 6) and goes back to the heap.
    assert_eq!(unsafe { heap.add_region(b) }, Ok(usable_b));
    let block = heap.allocate(big).unwrap();
    // SAFETY: live with `big`.
    unsafe { heap.deallocate(block.cast(), big) }.unwrap();

    // A region joined with its neighbour is no longer a region of its own.
    let c = memory.region(32 * 1024, 96 * 1024);
    // SAFETY: as above; `c` lies between `a` and `b` and joins them.
    unsafe { heap.add_region(c) }.unwrap();
    for region in [a, b, c] {
        assert_eq!(heap.remove_region(region), Err(RegionError::NotRemovable));
    }
    heap.check_invariants().unwrap();
    assert_eq!(heap.usage().free_bytes, heap.usage().total_bytes);
}
