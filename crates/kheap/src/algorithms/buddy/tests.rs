//! Tests of the buddy heap's own mechanics and its misuse detection; the shared conformance
//! suite lives in `kheap-testkit`.

use core::alloc::Layout;
use core::ptr::NonNull;
use std::vec::Vec;

use super::*;
use crate::test_memory::Memory;

fn heap_over(memory: &Memory, from: usize, len: usize) -> BuddyHeap<20> {
    let mut heap = BuddyHeap::with_orders();
    // SAFETY: the memory outlives the heap in every test and only the heap uses it.
    unsafe { heap.add_region(memory.region(from, len)) }.unwrap();
    heap
}

fn free_blocks(heap: &BuddyHeap<20>) -> Vec<(usize, usize)> {
    let mut blocks = Vec::new();
    heap.walk(&mut |part| {
        if part.kind == PartKind::Free {
            blocks.push((part.start.addr(), part.len));
        }
    });
    blocks.sort();
    blocks
}

fn bookkeeping(heap: &BuddyHeap<20>) -> usize {
    let mut bytes = 0;
    heap.walk(&mut |part| {
        if part.kind == PartKind::Bookkeeping {
            bytes += part.len;
        }
    });
    bytes
}

fn alloc(heap: &mut BuddyHeap<20>, layout: Layout) -> NonNull<u8> {
    heap.allocate(layout).unwrap().cast()
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// Fills the heap with 16-byte blocks (and the granule-sized slivers left, on 32-bit targets);
/// returns the 16-byte blocks' addresses, sorted, the slivers', and the address of a 16-byte
/// block with its three next neighbours live too, aligned to 64.
fn fill_with_granules(heap: &mut BuddyHeap<20>) -> (Vec<usize>, usize) {
    let mut live = Vec::new();
    while let Ok(block) = heap.allocate(layout(16, 16)) {
        live.push(block.cast::<u8>().as_ptr().addr());
    }
    // On 32-bit targets the granule is 8 bytes: take the slivers too, so nothing is free.
    while heap.allocate(layout(GRANULE, GRANULE)).is_ok() {}
    live.sort();
    let x = *live
        .iter()
        .find(|&&x| x % 64 == 0 && [16, 32, 48].iter().all(|d| live.binary_search(&(x + d)).is_ok()))
        .expect("no four consecutive granules");
    (live, x)
}

#[test]
fn freeing_both_halves_merges_them_back_into_the_parent() {
    let memory = Memory::new(1 << 16);
    let mut heap = heap_over(&memory, 0, 1 << 16);
    let initial = free_blocks(&heap);
    let (live, x) = fill_with_granules(&mut heap);
    let small = layout(16, 16);
    // SAFETY: X and X+16 are live with `small`.
    unsafe {
        heap.deallocate(with_addr(memory.0, x + 16), small).unwrap();
        heap.deallocate(with_addr(memory.0, x), small).unwrap();
    }
    heap.check_invariants().unwrap();
    assert_eq!(free_blocks(&heap), [(x, 32)], "the buddies did not merge");
    for &addr in live.iter().filter(|&&a| a != x && a != x + 16) {
        // SAFETY: every other block is live with `small`.
        unsafe { heap.deallocate(with_addr(memory.0, addr), small) }.unwrap();
    }
    heap.check_invariants().unwrap();
    if GRANULE == 16 {
        assert_eq!(free_blocks(&heap), initial);
    }
}

#[test]
fn allocate_reports_the_usable_size_of_the_block() {
    let memory = Memory::new(1 << 16);
    let mut heap = heap_over(&memory, 0, 1 << 16);
    let block = heap.allocate(layout(100, 8)).unwrap();
    assert_eq!(block.len(), 128);
    assert_eq!(heap.usage().free_bytes, heap.usage().total_bytes - 128);
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
    assert_eq!(heap.usage().total_bytes, last - first - meta);
    // Four bits per granule: 1/32 of the region on 64-bit, 1/16 on 32-bit (8-byte granules).
    assert!(meta < len * 3 / (4 * GRANULE), "bookkeeping of {meta} bytes for {len}");
    heap.check_invariants().unwrap();
}

#[test]
fn grow_in_place_takes_the_free_upper_buddy() {
    let memory = Memory::new(1 << 16);
    let mut heap = heap_over(&memory, 0, 1 << 16);
    let small = layout(64, 64);
    // Small slivers are taken first; sooner or later a block is split off a larger one, and
    // its upper buddies are free.
    let mut live = Vec::new();
    let a = loop {
        let a = alloc(&mut heap, small);
        let free_before = heap.usage().free_bytes;
        // SAFETY: `a` is live with `small`; 256 >= 64.
        if unsafe { heap.grow_in_place(a, small, 256) }.is_ok() {
            assert_eq!(heap.usage().free_bytes, free_before - 192);
            break a;
        }
        live.push(a);
        assert!(live.len() < 1000, "no 64-byte block could ever grow");
    };
    heap.check_invariants().unwrap();
    // SAFETY: `a` is now live with (256, 64), and that is the only layout its block accepts.
    unsafe {
        assert_eq!(heap.deallocate(a, small).unwrap_err().kind, MisuseKind::WrongLayout);
        heap.deallocate(a, layout(256, 64)).unwrap();
    }
    heap.check_invariants().unwrap();
}

/// Runs `misuse` on a heap with some live blocks and checks that it is refused as `kind` and
/// leaves the heap exactly as it was.
fn refused(kind: MisuseKind, misuse: impl FnOnce(&mut BuddyHeap<20>, &[NonNull<u8>]) -> Result<(), Misuse>) {
    let memory = Memory::new(1 << 16);
    let mut heap = heap_over(&memory, 0, 1 << 16);
    let live: Vec<_> = [16, 16, 100, 4096, 16].iter().map(|&s| alloc(&mut heap, layout(s, 16))).collect();
    // One correct free first, so that a double free has a block to try.
    // SAFETY: `live[1]` is live with this layout; the tests use it only as a freed block.
    unsafe { heap.deallocate(live[1], layout(16, 16)) }.unwrap();
    let before = (free_blocks(&heap), heap.usage());
    let error = misuse(&mut heap, &live).expect_err("misuse accepted");
    assert_eq!(error.kind, kind, "{error}");
    assert_eq!((free_blocks(&heap), heap.usage()), before, "a refused free changed the heap");
    heap.check_invariants().unwrap();
}

#[test]
fn a_second_free_is_refused_as_a_double_free() {
    refused(MisuseKind::DoubleFree, |heap, live| {
        // SAFETY: deliberately wrong: `live[1]` was freed by `refused`; refused.
        unsafe { heap.deallocate(live[1], layout(16, 16)) }
    });
}

#[test]
fn a_free_with_a_larger_size_is_refused_as_a_wrong_layout() {
    refused(MisuseKind::WrongLayout, |heap, live| {
        // SAFETY: deliberately wrong; refused before anything changes.
        unsafe { heap.deallocate(live[0], layout(64, 16)) }
    });
}

#[test]
fn a_free_with_a_larger_alignment_is_refused_as_a_wrong_layout() {
    // A 16-byte block that happens to sit at a 4096-aligned address, freed as if it were
    // aligned to 4096: once it merged over live neighbours.
    let memory = Memory::new(1 << 16);
    let mut heap = heap_over(&memory, 0, 1 << 16);
    let mut live = Vec::new();
    let a = loop {
        let block = alloc(&mut heap, layout(16, 16));
        if block.as_ptr().addr() % 4096 == 0 {
            break block;
        }
        live.push(block);
    };
    let _neighbour = alloc(&mut heap, layout(16, 16));
    // SAFETY: deliberately wrong; refused before anything changes.
    let error = unsafe { heap.deallocate(a, layout(16, 4096)) }.unwrap_err();
    assert_eq!(error.kind, MisuseKind::WrongLayout);
    assert_eq!(error.found, Some(layout(16, 16)), "the report names the block really there");
    heap.check_invariants().unwrap();
}

#[test]
fn a_free_with_a_smaller_size_is_refused_as_a_wrong_layout() {
    refused(MisuseKind::WrongLayout, |heap, live| {
        // SAFETY: deliberately wrong (the block is 128 bytes); refused.
        unsafe { heap.deallocate(live[2], layout(16, 16)) }
    });
}

#[test]
fn an_interior_pointer_is_refused() {
    refused(MisuseKind::NotBlockStart, |heap, live| {
        // SAFETY: deliberately wrong: 64 bytes into a live 128-byte block, aligned for the
        // layout; refused.
        unsafe { heap.deallocate(offset(live[2], 64), layout(16, 16)) }
    });
}

#[test]
fn a_second_free_after_the_block_was_reused_is_refused() {
    let memory = Memory::new(1 << 16);
    let mut heap = heap_over(&memory, 0, 1 << 16);
    let (_, x) = fill_with_granules(&mut heap);
    let small = layout(16, 16);
    for d in [0, 16, 32, 48] {
        // SAFETY: correct frees of live blocks.
        unsafe { heap.deallocate(with_addr(memory.0, x + d), small) }.unwrap();
    }
    // The only free memory is [X, X+64): the next 64-byte block is X again.
    let reused = alloc(&mut heap, layout(64, 16));
    assert_eq!(reused.as_ptr().addr(), x);
    // SAFETY: deliberately wrong: the 16-byte block at X was freed; X is a live 64-byte block.
    let error = unsafe { heap.deallocate(reused, small) }.unwrap_err();
    assert_eq!(error.kind, MisuseKind::WrongLayout, "{error}");
    // SAFETY: deliberately wrong: X+16 was freed and now lies inside the live block.
    let error = unsafe { heap.deallocate(with_addr(memory.0, x + 16), small) }.unwrap_err();
    assert_eq!(error.kind, MisuseKind::NotBlockStart, "{error}");
    heap.check_invariants().unwrap();
}

#[test]
fn a_free_of_the_heaps_own_bookkeeping_is_refused() {
    let memory = Memory::new(1 << 16);
    let mut heap = heap_over(&memory, 0, 1 << 16);
    let mut meta = None;
    heap.walk(&mut |part| {
        if part.kind == PartKind::Bookkeeping {
            meta = Some(part.start);
        }
    });
    let meta = with_addr(memory.0, meta.unwrap().addr());
    // SAFETY: deliberately wrong; refused.
    let error = unsafe { heap.deallocate(meta, layout(16, 16)) }.unwrap_err();
    assert_eq!(error.kind, MisuseKind::Bookkeeping);
    heap.check_invariants().unwrap();
    assert!(heap.allocate(layout(16, 16)).is_ok());
}

#[test]
fn a_foreign_pointer_is_refused() {
    let memory = Memory::new(1 << 16);
    let mut heap = heap_over(&memory, 0, 1 << 15);
    let foreign = offset(memory.0, 1 << 15);
    // SAFETY: deliberately wrong; refused.
    let error = unsafe { heap.deallocate(foreign, Layout::new::<u64>()) }.unwrap_err();
    assert_eq!(error.kind, MisuseKind::Foreign);
}

#[test]
fn block_layout_finds_the_block_of_a_live_allocation() {
    let memory = Memory::new(1 << 16);
    let mut heap = heap_over(&memory, 0, 1 << 16);
    let a = alloc(&mut heap, layout(100, 8));
    assert_eq!(heap.block_layout(a), Ok(layout(128, 128)));
    assert_eq!(heap.block_layout(offset(a, 16)).unwrap_err().kind, MisuseKind::NotBlockStart);
    // SAFETY: the layout came from `block_layout`, which promises it frees exactly the block.
    unsafe { heap.deallocate(a, heap.block_layout(a).unwrap()) }.unwrap();
    assert_eq!(heap.block_layout(a).unwrap_err().kind, MisuseKind::DoubleFree);
    heap.check_invariants().unwrap();
}

#[test]
fn check_invariants_names_a_corrupted_bitmap() {
    let memory = Memory::new(1 << 16);
    let mut heap = heap_over(&memory, 0, 1 << 16);
    let a = alloc(&mut heap, Layout::new::<u64>());
    let record = heap.regions.unwrap();
    // Mark the allocated block free in the bitmap without putting it on a list.
    // SAFETY: the block lies inside the region.
    unsafe { heap.record_mut(record).set_state(a.as_ptr().addr(), 0, FREE, true) };
    assert!(heap.check_invariants().is_err());
}

#[test]
fn check_invariants_reports_a_corrupted_link_instead_of_following_it() {
    let memory = Memory::new(1 << 16);
    let heap = heap_over(&memory, 0, 1 << 16);
    let k = heap.nonempty.trailing_zeros() as usize;
    let mut head = heap.free_lists[k].unwrap();
    // A stray write over a free block's link, pointing far outside the heap.
    // SAFETY: the head of a free list holds a `FreeBlock` the heap owns.
    unsafe { head.as_mut().next = Some(NonNull::dangling()) };
    let error = heap.check_invariants().unwrap_err();
    assert!(error.what.contains("outside every region"), "{error}");
}

#[test]
fn touching_regions_join_and_return_the_old_bookkeeping() {
    let memory = Memory::new(1 << 17);
    let mut heap = heap_over(&memory, 0, 1 << 16);
    let live = alloc(&mut heap, layout(1000, 8));
    let alone = heap.usage().total_bytes;
    // SAFETY: as in `heap_over`.
    unsafe { heap.add_region(memory.region(1 << 16, 1 << 16)) }.unwrap();
    heap.check_invariants().unwrap();
    let mut once = BuddyHeap::<20>::with_orders();
    let other = Memory::new(1 << 17);
    // SAFETY: a second heap over separate memory of the same length, which outlives it.
    unsafe { once.add_region(other.region(0, 1 << 17)) }.unwrap();
    assert!(heap.usage().total_bytes > 2 * alone, "old bookkeeping not returned");
    assert_eq!(
        heap.usage().total_bytes,
        once.usage().total_bytes,
        "joined heap smaller than one added at once"
    );
    // The block allocated before the join is still known, exactly.
    // SAFETY: `live` is live with this layout.
    unsafe { heap.deallocate(live, layout(1000, 8)) }.unwrap();
    heap.check_invariants().unwrap();
}

#[test]
fn many_separate_regions_are_all_found() {
    let memory = Memory::new(1 << 20);
    let mut heap = BuddyHeap::<20>::with_orders();
    // 64 regions with gaps between them, added in a scrambled order.
    for i in (0..64).map(|i| (i * 37) % 64) {
        // SAFETY: disjoint pieces of memory that outlives the heap.
        unsafe { heap.add_region(memory.region(i * 16384, 8192)) }.unwrap();
    }
    heap.check_invariants().unwrap();
    let blocks: Vec<_> = (0..64 * 8).filter_map(|_| heap.allocate(layout(512, 8)).ok()).collect();
    assert!(blocks.len() >= 64 * 6, "only {} blocks", blocks.len());
    for block in blocks {
        // SAFETY: every block is live with this layout.
        unsafe { heap.deallocate(block.cast(), layout(512, 8)) }.unwrap();
    }
    heap.check_invariants().unwrap();
    assert_eq!(heap.usage().free_bytes, heap.usage().total_bytes);
}

#[test]
fn shrinking_moves_when_another_block_can_take_the_new_size() {
    let memory = Memory::new(1 << 16);
    let mut heap = heap_over(&memory, 0, 1 << 16);
    let big = layout(4096, 16);
    let a = alloc(&mut heap, big);
    // SAFETY: `a` is live with `big`; 16 <= 4096.
    let in_place = unsafe { heap.shrink_in_place(a, big, 16) };
    assert!(in_place.is_err(), "the heap split a page-aligned block for good while free blocks exist");
    heap.check_invariants().unwrap();
}

#[test]
fn shrinking_in_place_when_nothing_else_is_free() {
    let memory = Memory::new(1 << 16);
    let mut heap = heap_over(&memory, 0, 1 << 16);
    let mut all = Vec::new();
    while let Ok(block) = heap.allocate(layout(4096, 16)) {
        all.push(block.cast::<u8>());
    }
    while let Ok(block) = heap.allocate(layout(GRANULE, GRANULE)) {
        all.push(block.cast::<u8>());
    }
    let big = layout(4096, 16);
    // SAFETY: `all[0]` is live with `big`; 16 <= 4096.
    unsafe { heap.shrink_in_place(all[0], big, 16) }.unwrap();
    assert_eq!(heap.usage().free_bytes, 4096 - 16);
    heap.check_invariants().unwrap();
    // SAFETY: deliberately wrong: now live with (16, 16), a 16-byte block.
    assert_eq!(unsafe { heap.deallocate(all[0], big) }.unwrap_err().kind, MisuseKind::WrongLayout);
    // SAFETY: the shrunk block, with its new layout.
    unsafe { heap.deallocate(all[0], layout(16, 16)) }.unwrap();
    heap.check_invariants().unwrap();
}

#[test]
fn grow_in_place_refuses_an_upper_buddy_even_when_the_next_block_is_free() {
    let memory = Memory::new(1 << 16);
    let mut heap = heap_over(&memory, 0, 1 << 16);
    let (_, x) = fill_with_granules(&mut heap);
    let small = layout(16, 16);
    let at = |d: usize| with_addr(memory.0, x + d);
    // X+32 free at order 0, right after X+16, which is the *upper* half of [X, X+32).
    // SAFETY: live with `small`.
    unsafe { heap.deallocate(at(32), small) }.unwrap();
    // SAFETY: X+16 is live with `small`; 32 >= 16.
    let grown = unsafe { heap.grow_in_place(at(16), small, 32) };
    assert!(grown.is_err(), "an upper buddy grew into the next pair's block");
    heap.check_invariants().unwrap();
}

#[test]
fn region_layout_for_knows_the_largest_block_and_asks_for_little_more_than_the_block() {
    let heap = BuddyHeap::<16>::with_orders();
    let max = BuddyHeap::<16>::MAX_BLOCK;
    assert!(heap.region_layout_for(layout(max, 1)).is_some());
    assert!(heap.region_layout_for(layout(max + 1, 1)).is_none());
    assert!(heap.region_layout_for(layout(1, max * 2)).is_none());
    let wanted = BuddyHeap::new().region_layout_for(layout(3 << 20, 8)).unwrap();
    let block = 4 << 20;
    assert_eq!(wanted.align(), block);
    // The block and the bookkeeping (four bits per granule) of twice its span, with slack.
    assert!(wanted.size() < block + block / GRANULE + block / 64, "{wanted:?}");
}

#[test]
fn a_region_shaped_as_region_layout_for_asks_holds_the_request() {
    let request = layout(8192, 8192);
    let wanted = BuddyHeap::<20>::with_orders().region_layout_for(request).unwrap();
    let memory = Memory::new(wanted.size() + 2 * wanted.align());
    let aligned = wanted.align();
    // Aligned, and with every gap before the aligned point a source may hand over too.
    for gap in [0, GRANULE, 40, wanted.align() / 2 + 24, wanted.align() - 1] {
        let mut heap = BuddyHeap::<20>::with_orders();
        // SAFETY: memory that outlives the heap.
        unsafe { heap.add_region(memory.region(aligned - gap, gap + wanted.size())) }.unwrap();
        assert!(heap.allocate(request).is_ok(), "no block after a gap of {gap} bytes");
    }
}

#[test]
fn a_wholly_free_region_is_removed_after_any_history_and_one_in_use_or_joined_is_not() {
    let memory = Memory::new(512 * 1024);
    let mut heap = BuddyHeap::<20>::with_orders();
    // Odd lengths and starts, so the cut has blocks of many orders on both sides.
    let (a, b) = (memory.region(0, 40 * 1024 + 48), memory.region(200 * 1024 + 16, 100 * 1024 + 32));
    // SAFETY: the memory outlives the heap and only the heap uses it; the regions are disjoint.
    let (usable_a, usable_b) = unsafe { (heap.add_region(a).unwrap(), heap.add_region(b).unwrap()) };

    // A seeded history of small blocks all over both regions, freed in a shuffled order.
    let mut state = 0x00B0_DD1Eu64;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut blocks = Vec::new();
    loop {
        let layout = Layout::from_size_align(16 << (next() % 6), 8).unwrap();
        let Ok(block) = heap.allocate(layout) else { break };
        blocks.push((block.cast::<u8>(), layout));
    }
    for i in (1..blocks.len()).rev() {
        blocks.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    let (last, last_layout) = blocks.pop().unwrap();
    for (block, layout) in blocks {
        // SAFETY: live with `layout`, freed once.
        unsafe { heap.deallocate(block, layout) }.unwrap();
    }
    let in_b = last.as_ptr() >= b.cast::<u8>().as_ptr();
    let (holder, other) = if in_b { (b, a) } else { (a, b) };
    assert_eq!(heap.remove_region(holder), Err(RegionError::NotRemovable), "a block is still in it");
    heap.check_invariants().unwrap();
    let (holder_usable, other_usable) = if in_b { (usable_b, usable_a) } else { (usable_a, usable_b) };
    assert_eq!(heap.remove_region(other), Ok(other_usable));
    heap.check_invariants().unwrap();
    // SAFETY: live with `last_layout`, freed once.
    unsafe { heap.deallocate(last, last_layout) }.unwrap();
    assert_eq!(heap.remove_region(holder), Ok(holder_usable));
    heap.check_invariants().unwrap();
    assert_eq!(heap.usage(), HeapUsage::default());
    assert!(heap.allocate(Layout::new::<u64>()).is_err());

    // Given again, both serve again; joined with a region between them, neither is removable.
    // SAFETY: both belong to the caller again (promise 6) and go back to the heap.
    unsafe {
        heap.add_region(a).unwrap();
        heap.add_region(b).unwrap();
    }
    let c = memory.region(40 * 1024 + 48, 160 * 1024 - 32);
    // SAFETY: as above; `c` lies between `a` and `b` and joins them.
    unsafe { heap.add_region(c) }.unwrap();
    for region in [a, b, c] {
        assert_eq!(heap.remove_region(region), Err(RegionError::NotRemovable));
    }
    heap.check_invariants().unwrap();
    assert_eq!(heap.usage().free_bytes, heap.usage().total_bytes);
}
