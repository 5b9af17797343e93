//! Tests of the slab layer's own mechanics; the shared conformance suite (over `SlabHeap` on
//! each backing heap) lives in `kheap-testkit`.

use core::alloc::Layout;
use core::ptr::NonNull;
use std::vec;
use std::vec::Vec;

use super::*;
use crate::test_memory::Memory;
use crate::{BuddyHeap, TlsfHeap};

fn heap_over(memory: &Memory, len: usize) -> SlabHeap<TlsfHeap> {
    let mut heap = SlabHeap::new(TlsfHeap::new());
    // SAFETY: the memory outlives the heap and only the heap uses it.
    unsafe { heap.add_region(memory.region(0, len)) }.unwrap();
    heap.check_invariants().unwrap();
    heap
}

/// Checks the heap's invariants after a step: after every step natively; under Miri, where one
/// walk of a 1 MiB region takes seconds, after every 64th (the tests' own checks still run).
fn check_step<B: BlockLookup>(heap: &SlabHeap<B>) {
    std::thread_local!(static STEPS: core::cell::Cell<usize> = const { core::cell::Cell::new(0) });
    let step = STEPS.with(|s| {
        s.set(s.get() + 1);
        s.get()
    });
    if !cfg!(miri) || step % 64 == 0 {
        heap.check_invariants().unwrap();
    }
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

fn alloc<B: BlockLookup>(heap: &mut SlabHeap<B>, layout: Layout) -> NonNull<u8> {
    let block = heap.allocate(layout).unwrap_or_else(|_| panic!("{layout:?} refused"));
    assert!(block.len() >= layout.size());
    assert_eq!(block.cast::<u8>().as_ptr().addr() % layout.align(), 0, "{layout:?} misaligned");
    check_step(heap);
    block.cast()
}

fn free<B: BlockLookup>(heap: &mut SlabHeap<B>, ptr: NonNull<u8>, layout: Layout) {
    // SAFETY: every caller passes a live allocation with its layout.
    unsafe { heap.deallocate(ptr, layout) }.unwrap_or_else(|e| panic!("{e}"));
    check_step(heap);
}

fn misuse<B: BlockLookup>(heap: &mut SlabHeap<B>, ptr: NonNull<u8>, layout: Layout) -> MisuseKind {
    let before = heap.usage();
    // SAFETY: the misuse is detected (asserted by the callers) and changes nothing.
    let kind = unsafe { heap.deallocate(ptr, layout) }.expect_err("misuse accepted").kind;
    assert_eq!(heap.usage(), before, "a refused free changed the heap");
    heap.check_invariants().unwrap();
    kind
}

#[test]
fn the_geometry_fits_every_class() {
    assert_eq!(SLAB_CLASSES, 32);
    for (class, g) in GEOMETRY.iter().enumerate() {
        assert!(g.slab.is_power_of_two() && g.slab >= MIN_SLAB && g.slab <= MAX_SLAB, "class {class}");
        assert!(g.objects >= 16 && g.objects <= MAX_OBJECTS, "class {class}: {} objects", g.objects);
        assert!(g.objects * g.size + HEADER <= g.slab, "class {class} overlaps its header");
        // The header and the tail waste under 5 % of every slab (the figure the docs give).
        assert!((g.slab - g.objects * g.size) * 100 < 5 * g.slab, "class {class} wastes too much");
        // Every offset natively; a sample under Miri, where this loop alone would take minutes.
        for offset in (0..g.slab).step_by(if cfg!(miri) { 61 } else { 1 }) {
            let expected = (offset % g.size == 0 && offset / g.size < g.objects).then_some(offset / g.size);
            assert_eq!(g.object_at(offset), expected, "class {class} offset {offset}");
        }
    }
    assert_eq!((MAX_SLAB - HEADER) % core::mem::align_of::<SlabHeader>(), 0);
}

#[test]
fn small_requests_come_from_slabs_and_large_ones_from_the_backing_heap() {
    let memory = Memory::new(1 << 20);
    let mut heap = heap_over(&memory, 1 << 20);
    let whole = heap.usage();
    let small = heap.allocate(layout(20, 4)).unwrap();
    assert_eq!(small.len(), 24, "the class size is the usable size");
    let large = heap.allocate(layout(600, 8)).unwrap();
    // One slab of 4 KiB for the small object.
    let slab_base = round_down(small.cast(), 4096);
    assert_eq!(heap.backing().block_layout(slab_base).unwrap().size(), 4096);
    assert_eq!(
        heap.block_layout(small.cast()).unwrap(),
        SizeClass::for_layout(layout(20, 4)).unwrap().layout()
    );
    assert!(heap.block_layout(large.cast()).unwrap().size() >= 600);
    heap.check_invariants().unwrap();
    free(&mut heap, small.cast(), layout(20, 4));
    free(&mut heap, large.cast(), layout(600, 8));
    assert_ne!(heap.usage(), whole, "the emptied slab is kept as its class's spare");
    heap.trim();
    assert_eq!(heap.usage(), whole, "a trimmed idle heap has given every slab back");
}

#[test]
fn every_class_is_aligned_and_disjoint() {
    // Under Miri, a sample of the sizes in a smaller arena (its usage walks are slow there).
    let len = if cfg!(miri) { 1 << 20 } else { 4 << 20 };
    let memory = Memory::new(len);
    let mut heap = heap_over(&memory, len);
    let whole = heap.usage();
    let mut live = Vec::new();
    for size in (1..=SLAB_MAX).step_by(if cfg!(miri) { 37 } else { 1 }) {
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512] {
            if size % 7 != 0 && align > 8 && size > 100 {
                continue; // keep the test short: a sample of the large alignments
            }
            let l = layout(size, align);
            let ptr = alloc(&mut heap, l);
            // SAFETY: the block is live and at least `size` bytes.
            unsafe { ptr.as_ptr().write_bytes((size % 251) as u8, size) };
            live.push((ptr, l));
        }
    }
    live.sort_by_key(|(p, _)| p.as_ptr().addr());
    for pair in live.windows(2) {
        let ((a, la), (b, _)) = (pair[0], pair[1]);
        assert!(a.as_ptr().addr() + la.size() <= b.as_ptr().addr(), "blocks overlap");
    }
    for (ptr, l) in &live {
        // SAFETY: live blocks of at least `l.size()` bytes.
        let bytes = unsafe { core::slice::from_raw_parts(ptr.as_ptr(), l.size()) };
        assert!(bytes.iter().all(|b| *b == (l.size() % 251) as u8), "a block was overwritten");
    }
    for (ptr, l) in live {
        free(&mut heap, ptr, l);
    }
    heap.trim();
    assert_eq!(heap.usage(), whole);
}

#[test]
fn misuse_of_slab_objects_is_detected_and_changes_nothing() {
    // A free with the layout of a class whose slabs are larger reads where such a slab would
    // keep its tag: region memory outside this slab, initialised as a kernel's `.bss` is.
    let memory = Memory::zeroed(1 << 20);
    let mut heap = heap_over(&memory, 1 << 20);
    let l = layout(40, 8);
    let keep = alloc(&mut heap, l);
    let a = alloc(&mut heap, l);
    let b = alloc(&mut heap, l);
    free(&mut heap, b, l);
    assert_eq!(misuse(&mut heap, b, l), MisuseKind::DoubleFree);
    // Interior pointer.
    // SAFETY: inside the live block `a`.
    let inside = unsafe { a.add(8) };
    assert_eq!(misuse(&mut heap, inside, l), MisuseKind::NotBlockStart);
    // Another class sharing the slab size (4 KiB): the header names the right one.
    let wrong = misuse(&mut heap, a, layout(64, 8));
    assert_eq!(wrong, MisuseKind::WrongLayout);
    // SAFETY: the misuse is refused; the report names the class the block has.
    let report = unsafe { heap.deallocate(a, layout(64, 8)) }.unwrap_err();
    assert_eq!(report.found, Some(SizeClass::for_layout(l).unwrap().layout()));
    // A class with a larger slab (16 KiB).
    assert_eq!(misuse(&mut heap, keep, layout(500, 8)), MisuseKind::WrongLayout);
    // The slab's first object freed with a large layout (as the whole slab would be).
    let first = round_down(keep, 4096);
    assert_eq!(misuse(&mut heap, first, layout(4096, 4096)), MisuseKind::WrongLayout);
    // The header.
    // SAFETY: a pointer into the slab's header, never dereferenced.
    let header = unsafe { first.add(4096 - 8) };
    assert_eq!(misuse(&mut heap, header, layout(8, 8)), MisuseKind::Bookkeeping);
    free(&mut heap, a, l);
    free(&mut heap, keep, l);
}

#[test]
fn a_free_alloc_pair_at_a_slab_boundary_does_not_thrash() {
    let memory = Memory::new(1 << 20);
    let mut heap = heap_over(&memory, 1 << 20);
    let l = layout(64, 8);
    let per_slab = GEOMETRY[SizeClass::for_layout(l).unwrap().index()].objects;
    let mut live: Vec<_> = (0..per_slab).map(|_| alloc(&mut heap, l)).collect();
    let one_slab = heap.backing().usage();
    // The next object opens a second slab; freeing it keeps that slab as the spare.
    for _ in 0..if cfg!(miri) { 5 } else { 100 } {
        let extra = alloc(&mut heap, l);
        let two_slabs = heap.backing().usage();
        assert!(two_slabs.free_bytes < one_slab.free_bytes);
        free(&mut heap, extra, l);
        assert_eq!(heap.backing().usage(), two_slabs, "the empty slab went back to the backing heap");
    }
    // A second empty slab is not kept: fill two more slabs and empty them again.
    let more: Vec<_> = (0..2 * per_slab).map(|_| alloc(&mut heap, l)).collect();
    for p in more {
        free(&mut heap, p, l);
    }
    assert_eq!(heap.spares, 1);
    while let Some(p) = live.pop() {
        free(&mut heap, p, l);
    }
    assert_eq!(heap.spares, 1, "the last free keeps its slab as the spare");
    // On an idle heap too, an allocate/free pair reuses the spare instead of making a slab.
    let idle = heap.backing().usage();
    for _ in 0..if cfg!(miri) { 5 } else { 100 } {
        let p = alloc(&mut heap, l);
        free(&mut heap, p, l);
        assert_eq!(heap.backing().usage(), idle, "a slab was made or given back");
    }
    heap.trim();
    assert_eq!(heap.spares, 0, "trim gives every spare back");
    assert_eq!(heap.usage().free_bytes, heap.usage().total_bytes);
}

#[test]
fn spares_are_given_back_before_a_request_is_refused() {
    let memory = Memory::new(64 * 1024);
    let mut heap = heap_over(&memory, 64 * 1024);
    // Empty slabs of many classes are kept while one object stays live.
    let keep = alloc(&mut heap, layout(8, 8));
    let mut spares_made = 0;
    for size in [16, 24, 32, 40, 48, 56, 64, 72] {
        let p = alloc(&mut heap, layout(size, 8));
        free(&mut heap, p, layout(size, 8));
        spares_made += 1;
    }
    assert_eq!(heap.spares, spares_made);
    // The largest block the backing heap could give with no spare around.
    let big = layout(heap.backing().usage().free_bytes + spares_made * 4096 - 16 * 1024, 8);
    let block = alloc(&mut heap, big);
    assert_eq!(heap.spares, 0);
    free(&mut heap, block, big);
    free(&mut heap, keep, layout(8, 8));
}

#[test]
fn a_full_backing_heap_still_serves_small_requests_directly() {
    let memory = Memory::new(64 * 1024);
    let mut heap = heap_over(&memory, 64 * 1024);
    let whole = heap.usage();
    // Fill the backing heap with 256-byte blocks (past the slabs), leaving less than a slab.
    let large = layout(1000, 8);
    let mut blocks = Vec::new();
    while let Ok(b) = heap.allocate(large) {
        blocks.push(b.cast::<u8>());
    }
    let l = layout(100, 8);
    let mut direct = Vec::new();
    while let Ok(b) = heap.allocate(l) {
        direct.push(b.cast::<u8>());
        heap.check_invariants().unwrap();
    }
    assert!(!direct.is_empty(), "no small block from the leftover space");
    let slabs = heap.classes.iter().flat_map(|c| [c.partial, c.full, c.spare]).flatten().count();
    assert_eq!(slabs, 0, "there was no room for a slab");
    for p in direct.iter().copied() {
        free(&mut heap, p, l);
    }
    for p in blocks {
        free(&mut heap, p, large);
    }
    assert_eq!(heap.usage(), whole);
}

#[test]
fn resizing_in_place_stays_within_a_class() {
    let memory = Memory::new(1 << 20);
    let mut heap = heap_over(&memory, 1 << 20);
    let l = layout(100, 8);
    let p = alloc(&mut heap, l);
    // SAFETY: `p` is live with `l`; each resize is followed by the layout it leaves.
    unsafe {
        assert!(heap.grow_in_place(p, l, 104).is_ok(), "within the 104-byte class");
        assert!(heap.grow_in_place(p, layout(104, 8), 105).is_err(), "past the class");
        assert!(heap.shrink_in_place(p, layout(104, 8), 97).is_ok());
        assert!(heap.shrink_in_place(p, layout(97, 8), 50).is_err(), "to a smaller class: moved");
    }
    free(&mut heap, p, layout(97, 8));
    let big = layout(2000, 8);
    let q = alloc(&mut heap, big);
    // SAFETY: `q` is live with `big`.
    unsafe {
        assert!(heap.shrink_in_place(q, big, 100).is_err(), "a large block does not become small in place");
        heap.shrink_in_place(q, big, 1000).unwrap();
    }
    free(&mut heap, q, layout(1000, 8));
    heap.check_invariants().unwrap();
}

#[test]
fn the_walk_and_the_usage_agree() {
    let memory = Memory::new(1 << 20);
    let mut heap = heap_over(&memory, 1 << 20);
    let mut rng_state = 0x5eed_u64;
    let mut next = || {
        rng_state = rng_state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (rng_state >> 33) as usize
    };
    let mut live = Vec::new();
    for step in 0..if cfg!(miri) { 300 } else { 3000 } {
        if next() % 3 != 0 || live.is_empty() {
            let l = layout(1 + next() % 700, 1 << (next() % 5));
            if let Ok(b) = heap.allocate(l) {
                live.push((b.cast::<u8>(), l));
            }
        } else {
            let (p, l) = live.swap_remove(next() % live.len());
            free(&mut heap, p, l);
        }
        if step % 100 == 0 {
            heap.check_invariants().unwrap();
            let (mut free_bytes, mut largest) = (0, 0);
            heap.walk(&mut |part| {
                match part.kind {
                    PartKind::Free => {
                        free_bytes += part.len;
                        largest = largest.max(part.len);
                    }
                    // Free, but only for its own size class: not a free block.
                    PartKind::Cached => free_bytes += part.len,
                    PartKind::Region | PartKind::Bookkeeping => {}
                }
            });
            let usage = heap.usage();
            assert_eq!(
                (free_bytes, largest),
                (usage.free_bytes, usage.largest_free_block),
                "step {step} (seed 0x5eed)"
            );
        }
    }
    for (p, l) in live {
        free(&mut heap, p, l);
    }
    assert_eq!(heap.usage().free_bytes, heap.usage().total_bytes);
}

#[test]
fn the_checker_finds_a_damaged_header() {
    let memory = Memory::new(1 << 20);
    let mut heap = heap_over(&memory, 1 << 20);
    let l = layout(32, 8);
    let p = alloc(&mut heap, l);
    let q = alloc(&mut heap, l);
    let header = heap.classes[SizeClass::for_layout(l).unwrap().index()].partial.unwrap();
    // SAFETY: the test owns the heap; it clears a bit of a live object, as a stray write would.
    unsafe { (*header.as_ptr()).used[0] &= !2 };
    assert!(heap.check_invariants().is_err(), "a cleared bit went unnoticed");
    // SAFETY: put back as it was.
    unsafe { (*header.as_ptr()).used[0] |= 2 };
    heap.check_invariants().unwrap();
    // SAFETY: as above: a damaged tag makes the slab unknown, and frees in it are refused by
    // the backing heap (an interior pointer of its block) instead of corrupting it.
    unsafe { (*header.as_ptr()).tag ^= 1 << 20 };
    assert!(heap.check_invariants().is_err());
    // SAFETY: `q` is live, but its slab cannot be recognised.
    assert!(unsafe { heap.deallocate(q, l) }.is_err());
    // SAFETY: restored.
    unsafe { (*header.as_ptr()).tag ^= 1 << 20 };
    free(&mut heap, p, l);
    free(&mut heap, q, l);
}

#[test]
fn works_over_the_buddy_heap_too() {
    // Under Miri, every eighth size in half the arena: the buddy heap's walk is slow there.
    let len = if cfg!(miri) { 512 << 10 } else { 1 << 20 };
    let memory = Memory::new(len);
    let mut heap = SlabHeap::new(BuddyHeap::new());
    // SAFETY: the memory outlives the heap and only the heap uses it.
    unsafe { heap.add_region(memory.region(0, len)) }.unwrap();
    let whole = heap.usage();
    let sizes = (1..=600).step_by(if cfg!(miri) { 8 } else { 1 });
    let blocks: Vec<_> = sizes.map(|s| (alloc(&mut heap, layout(s, 1)), layout(s, 1))).collect();
    for (p, l) in blocks {
        free(&mut heap, p, l);
    }
    heap.trim();
    assert_eq!(heap.usage(), whole);
}

#[test]
fn a_new_heap_ignores_the_headers_an_earlier_heap_left_in_its_memory() {
    let memory = Memory::new(1 << 20);
    {
        let mut old = heap_over(&memory, 1 << 20);
        // Slabs of the 16-byte class all over the first pages, then the heap is dropped with
        // them live (as a program that throws its heap away does).
        for _ in 0..if cfg!(miri) { 600 } else { 4000 } {
            alloc(&mut old, layout(16, 8));
        }
    }
    let mut heap = heap_over(&memory, 1 << 20);
    // Page-aligned pages, where the old slabs' headers still lie: freeing them must not be
    // taken for a slab freed with a large layout.
    let page = layout(4096, 4096);
    let pages: Vec<_> = (0..32).map(|_| alloc(&mut heap, page)).collect();
    for p in pages {
        free(&mut heap, p, page);
    }
}

#[test]
fn direct_blocks_of_a_slab_shape_are_never_read_for_a_tag_the_caller_left_unwritten() {
    // Fresh memory is uninitialised: under Miri, reading a byte nobody wrote fails the test.
    let memory = Memory::new(256 * 1024);
    let mut heap = heap_over(&memory, 256 * 1024);
    let keep = alloc(&mut heap, layout(64, 8));
    let page = layout(4096, 4096);
    let pages: Vec<_> = (0..4).map(|_| alloc(&mut heap, page)).collect();
    for p in pages {
        free(&mut heap, p, page);
    }
    // A resize that would give a block exactly a slab's shape, with the caller's bytes where a
    // slab's tag lies, is refused (the front moves the block); others go ahead.
    let big = layout(5000, 4096);
    let b = alloc(&mut heap, big);
    // SAFETY: `b` is live with `big`; 4096 <= 5000.
    assert!(unsafe { heap.shrink_in_place(b, big, 4096) }.is_err());
    // SAFETY: as above; 3000 <= 5000.
    unsafe { heap.shrink_in_place(b, big, 3000) }.unwrap();
    free(&mut heap, b, layout(3000, 4096));
    free(&mut heap, keep, layout(64, 8));
    assert_eq!(heap.usage().free_bytes, heap.usage().total_bytes);
}

#[test]
fn a_batch_takes_whole_bitmap_words_across_slabs() {
    let memory = Memory::new(1 << 20);
    let mut heap = heap_over(&memory, 1 << 20);
    let l = layout(16, 8);
    let class = SizeClass::for_layout(l).unwrap().index();
    let per_slab = GEOMETRY[class].objects;
    // One object first, so the batch starts inside a word of a partial slab.
    let single = alloc(&mut heap, l);
    let mut out = vec![NonNull::dangling(); per_slab + 70];
    let count = heap.allocate_batch(l, &mut out);
    assert_eq!(count, out.len(), "a batch with room in the arena came back short");
    heap.check_invariants().unwrap();
    let mut all: Vec<_> = out.iter().map(|p| p.as_ptr().addr()).chain([single.as_ptr().addr()]).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), out.len() + 1, "an object was handed out twice");
    assert!(all.iter().all(|a| a % 16 == 0));
    // No object left behind: the slabs made hold exactly the rest as free objects.
    let taken = per_slab + 71;
    assert_eq!(heap.free_bytes, (taken.div_ceil(per_slab) * per_slab - taken) * 16);
    // The batch's objects are what single allocations would have taken next: lowest first.
    assert_eq!(out[0].as_ptr().addr(), single.as_ptr().addr() + 16);
    // SAFETY: live objects of this heap, each allocated with `l`, none twice.
    let (refused, misuse) = unsafe { heap.deallocate_batch(&out, l) };
    assert_eq!((refused, misuse.map(|m| m.kind)), (0, None));
    free(&mut heap, single, l);
    heap.trim();
    assert_eq!(heap.usage().free_bytes, heap.usage().total_bytes);
}

#[test]
fn a_batch_free_refuses_each_misused_object_and_returns_the_rest() {
    let memory = Memory::zeroed(1 << 20);
    let mut heap = heap_over(&memory, 1 << 20);
    let l = layout(40, 8);
    let per_slab = GEOMETRY[SizeClass::for_layout(l).unwrap().index()].objects;
    let keep = alloc(&mut heap, l);
    let mut objects: Vec<_> = (0..per_slab + 4).map(|_| alloc(&mut heap, l)).collect();
    // The first slab's objects but `keep`, then a double free of one of them, an interior
    // pointer, and the second slab's objects: the remembered slab must not excuse the misuse.
    let second: Vec<_> = objects.split_off(per_slab - 1);
    // SAFETY: inside the live object `keep`, never dereferenced.
    let interior = unsafe { keep.add(8) };
    let mut batch = objects.clone();
    batch.push(objects[3]);
    batch.push(interior);
    batch.extend(&second);
    // The second slab empties within the batch and becomes the spare; a second free of its
    // object after that is refused too.
    batch.push(second[0]);
    // SAFETY: a batch with three misuses, which the slab layer detects and refuses.
    let (refused, first) = unsafe { heap.deallocate_batch(&batch, l) };
    assert_eq!(refused, 3);
    assert_eq!(
        first.map(|m| (m.kind, m.ptr)),
        Some((MisuseKind::DoubleFree, objects[3].as_ptr().cast_const()))
    );
    heap.check_invariants().unwrap();
    // Every object but `keep` is free: the first slab's others, the second slab (the spare).
    let size = SizeClass::for_layout(l).unwrap().size();
    assert_eq!(heap.free_bytes, (2 * per_slab - 1) * size, "some object of the batch did not go back");
    free(&mut heap, keep, l);
    heap.trim();
    assert_eq!(heap.usage().free_bytes, heap.usage().total_bytes);
}

#[test]
fn below_its_slab_size_the_layer_serves_small_requests_from_the_backing_heap_and_stays_so() {
    let memory = Memory::new(1 << 20);
    let from = 256 << 10;
    {
        // Given its size at once, the layer makes slabs.
        let mut big = SlabHeap::new(TlsfHeap::new()).with_slabs_from(from);
        // SAFETY: the memory outlives the heap and only the heap uses it.
        unsafe { big.add_region(memory.region(0, 512 << 10)) }.unwrap();
        let object = alloc(&mut big, layout(24, 8));
        assert!(big.overhead > 0, "a slab was made");
        free(&mut big, object, layout(24, 8));
    }

    // Below it: small blocks are the backing heap's, exactly their granule-rounded size.
    let mut small = SlabHeap::new(TlsfHeap::new()).with_slabs_from(from);
    // SAFETY: as above.
    unsafe { small.add_region(memory.region(0, 128 << 10)) }.unwrap();
    let blocks: Vec<_> = (1..=40).map(|i| (alloc(&mut small, layout(i * 8, 8)), layout(i * 8, 8))).collect();
    assert_eq!(small.overhead, 0, "no slab below the size");
    assert_eq!(small.usage().free_bytes, small.backing().usage().free_bytes, "nothing cached");
    // Grown past the size, it still makes none: its small blocks from before are not counted.
    // SAFETY: as above.
    unsafe { small.add_region(memory.region(512 << 10, 512 << 10)) }.unwrap();
    let later = alloc(&mut small, layout(24, 8));
    assert_eq!(small.overhead, 0, "no slab after growing: the layer stays in direct mode");
    // Every block goes back, through the fast path and the full one alike; a double free of a
    // small block is the backing heap's to report.
    for (i, &(ptr, l)) in blocks.iter().enumerate() {
        if i % 2 == 0 {
            // SAFETY: live with `l`.
            assert!(unsafe { small.deallocate_fast(ptr, l) }, "a direct block's fast free declined");
            check_step(&small);
        } else {
            free(&mut small, ptr, l);
        }
    }
    assert_eq!(misuse(&mut small, blocks[0].0, blocks[0].1), MisuseKind::DoubleFree);
    free(&mut small, later, layout(24, 8));
    let usage = small.usage();
    assert_eq!(usage.free_bytes, usage.total_bytes, "the heap is whole");
}
