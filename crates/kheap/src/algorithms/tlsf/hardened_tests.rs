//! Tests of the hardened TLSF heap: the same placements as the plain heap, sealed links, and
//! every kind of damage to a free block's links or tags refused before it is followed.

use core::alloc::Layout;
use core::ptr::NonNull;
use std::format;
use std::string::ToString;
use std::vec::Vec;

use super::*;
use crate::test_memory::Memory;

const G: usize = GRANULE;
const LEN: usize = 16 * 1024;

fn granules(n: usize) -> Layout {
    Layout::from_size_align(n * G, 1).unwrap()
}

fn over<const H: bool>(memory: &Memory, mut heap: TlsfHeap<H>) -> TlsfHeap<H> {
    // SAFETY: the memory outlives the heap and only the heap uses it.
    unsafe { heap.add_region(memory.region(0, LEN)) }.unwrap();
    heap
}

fn alloc<const H: bool>(heap: &mut TlsfHeap<H>, layout: Layout) -> NonNull<u8> {
    heap.allocate(layout).unwrap_or_else(|_| panic!("{layout:?} refused")).cast()
}

fn free<const H: bool>(heap: &mut TlsfHeap<H>, ptr: NonNull<u8>, layout: Layout) {
    // SAFETY: every caller passes a live allocation with its layout.
    unsafe { heap.deallocate(ptr, layout) }.unwrap();
}

/// Three neighbours `a`, `b`, `c` of four granules each, `b` freed: a free block between two
/// allocated ones, whose links and tags a test then damages.
fn with_a_free_block_between(memory: &Memory) -> (TlsfHeap<true>, [NonNull<u8>; 3]) {
    let mut heap = over(memory, TlsfHeap::hardened());
    let [a, b, c] = [(); 3].map(|()| alloc(&mut heap, granules(4)));
    free(&mut heap, b, granules(4));
    heap.check_invariants().unwrap();
    (heap, [a, b, c])
}

/// Writes `value` at byte `at` of the free block `block` (a write after free).
fn scribble(block: NonNull<u8>, at: usize, value: usize) {
    // SAFETY: the tests scribble inside a free block of their own heap, on purpose.
    unsafe { offset(block, at).cast::<usize>().write(value) };
}

#[test]
fn the_hardened_heap_places_every_block_where_the_plain_one_does() {
    let (plain_memory, hardened_memory) = (Memory::new(LEN), Memory::new(LEN));
    let mut plain = over(&plain_memory, TlsfHeap::new());
    let mut hardened = over(&hardened_memory, TlsfHeap::hardened());
    let offset_in = |memory: &Memory, p: NonNull<u8>| p.as_ptr().addr() - memory.0.as_ptr().addr();
    let seed = 0x4A8D_u64;
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as usize
    };
    let mut live: Vec<(NonNull<u8>, NonNull<u8>, Layout)> = Vec::new();
    // Fewer under Miri, which interprets every step.
    let steps = if cfg!(miri) { 400 } else { 3000 };
    for step in 0..steps {
        if next() % 3 != 0 || live.is_empty() {
            let layout = Layout::from_size_align(1 + next() % 600, 1 << (next() % 7)).unwrap();
            match (plain.allocate(layout), hardened.allocate(layout)) {
                (Ok(p), Ok(h)) => {
                    let (p, h) = (p.cast::<u8>(), h.cast::<u8>());
                    assert_eq!(
                        offset_in(&plain_memory, p),
                        offset_in(&hardened_memory, h),
                        "step {step} (seed {seed:#x})"
                    );
                    live.push((p, h, layout));
                }
                (Err(_), Err(_)) => {}
                other => panic!("step {step} (seed {seed:#x}): {layout:?} gave {:?}", other.0.is_ok()),
            }
        } else {
            let (p, h, layout) = live.swap_remove(next() % live.len());
            free(&mut plain, p, layout);
            free(&mut hardened, h, layout);
        }
        assert_eq!(plain.usage(), hardened.usage(), "step {step} (seed {seed:#x})");
        if step % 50 == 0 {
            hardened.check_invariants().unwrap_or_else(|e| panic!("step {step} (seed {seed:#x}): {e}"));
        }
    }
    assert!(hardened.take_corruption().is_none());
}

#[test]
fn links_are_stored_sealed() {
    let memory = Memory::new(LEN);
    let (mut heap, [_, b, _]) = with_a_free_block_between(&memory);
    // SAFETY: `b` is a free block holding the links the heap wrote.
    let raw = unsafe { b.cast::<FreeHead>().as_ptr().read() };
    // `b` heads its list alone: both links are `None`, stored as the secret, not as null.
    assert_ne!(raw.prev.addr(), 0, "an empty link is stored as null");
    assert_eq!(raw.prev.addr(), heap.secret);
    // SAFETY: as above.
    assert_eq!(unsafe { heap.next_of(b.cast()) }, None);
    assert!(heap.take_corruption().is_none());
}

#[test]
fn an_allocate_meeting_an_overwritten_link_refuses_and_reports_it() {
    let memory = Memory::new(LEN);
    let (mut heap, [a, b, c]) = with_a_free_block_between(&memory);
    // A string written into the freed block: its first bytes hold the next link.
    scribble(b, 0, usize::from_ne_bytes([b'k'; core::mem::size_of::<usize>()]));
    let before = heap.usage();
    assert!(heap.allocate(granules(4)).is_err(), "a damaged block was handed out");
    let misuse = heap.take_corruption().expect("the damage is kept for the front");
    assert_eq!((misuse.kind, misuse.ptr), (MisuseKind::CorruptedFreeBlock, b.as_ptr().cast_const()));
    assert!(misuse.to_string().contains("is damaged"), "{misuse}");
    assert!(heap.take_corruption().is_none(), "taken once");
    // The damaged list is set aside: the heap goes on serving from the rest.
    assert_eq!(heap.usage().total_bytes, before.total_bytes);
    let other = alloc(&mut heap, granules(4));
    assert_ne!(other, b);
    free(&mut heap, other, granules(4));
    let _ = (a, c);
}

#[test]
fn a_free_that_would_merge_with_a_damaged_block_is_refused_and_keeps_the_block() {
    // Each place of `b`'s records: the next link, the previous link, the leading size tag and
    // the trailing one; `a` merges with `b` after it, `c` with `b` before it.
    for (place, at) in [("next", 0), ("prev", WORD), ("leading tag", G), ("trailing tag", 4 * G - WORD)] {
        for (freed, name) in [(0, "a"), (2, "c")] {
            let memory = Memory::new(LEN);
            let (mut heap, blocks) = with_a_free_block_between(&memory);
            scribble(blocks[1], at, 0x5A5A_5A5A);
            let before = heap.usage();
            // SAFETY: a live block with its layout; the heap refuses because of the damage.
            let misuse = unsafe { heap.deallocate(blocks[freed], granules(4)) }
                .expect_err(&format!("{name} merged with a block whose {place} is damaged"));
            assert_eq!(misuse.kind, MisuseKind::CorruptedFreeBlock, "{place}, {name}");
            // The damaged block is set aside: its bytes leave the free count; nothing else moves.
            let after = heap.usage();
            assert_eq!(
                (after.total_bytes, after.free_bytes, after.largest_free_block),
                (before.total_bytes, before.free_bytes - 4 * G, before.largest_free_block),
                "{place}, {name}: the refused free changed more than the damaged block"
            );
            heap.check_invariants().unwrap_or_else(|e| panic!("{place}, {name}: {e}"));
            // The refused block is still allocated: the bit map says so.
            assert_eq!(heap.block_layout(blocks[freed]).map(|l| l.size()), Ok(4 * G), "{place}, {name}");
            // The next request of its size is served elsewhere, with nothing more to report.
            assert_ne!(alloc(&mut heap, granules(4)), blocks[1], "{place}, {name}");
            assert!(heap.take_corruption().is_none(), "{place}, {name}");
        }
    }
}

#[test]
fn a_resize_meeting_a_damaged_neighbour_refuses() {
    // Growing `a` would take `b`; shrinking it would merge its tail with `b`: each on a heap
    // of its own, with `b`'s leading tag damaged.
    for grow in [true, false] {
        let memory = Memory::new(LEN);
        let (mut heap, [a, b, _]) = with_a_free_block_between(&memory);
        scribble(b, G, usize::MAX / 3);
        let live = heap.usage().total_bytes - heap.usage().free_bytes;
        // SAFETY: `a` is live with four granules.
        let refused = unsafe {
            if grow {
                heap.grow_in_place(a, granules(4), 6 * G)
            } else {
                heap.shrink_in_place(a, granules(4), 2 * G)
            }
        };
        assert!(refused.is_err(), "grow {grow}: the resize went through a damaged block");
        assert_eq!(heap.take_corruption().map(|m| m.kind), Some(MisuseKind::CorruptedFreeBlock));
        // Repaired: `a` unchanged, `b` set aside (allocated for ever), the rest consistent.
        assert_eq!(heap.block_layout(a).map(|l| l.size()), Ok(4 * G), "grow {grow}");
        assert_eq!(heap.usage().total_bytes - heap.usage().free_bytes, live + 4 * G, "grow {grow}");
        heap.check_invariants().unwrap_or_else(|e| panic!("grow {grow}: {e}"));
    }
}

#[test]
fn after_a_repair_healthy_neighbours_free_and_merge_as_before() {
    // D's previous link is damaged while A and D share a list; an allocate meets it, and the
    // heap rebuilds its lists from the bit map. Frees next to A and to blocks freed later must
    // then merge normally: nothing healthy is reported or set aside.
    let memory = Memory::new(LEN);
    let mut heap = over(&memory, TlsfHeap::hardened());
    let [a1, aa, _a2, d, _a3, e, a4] = [(); 7].map(|()| alloc(&mut heap, granules(4)));
    free(&mut heap, d, granules(4));
    free(&mut heap, aa, granules(4));
    scribble(d, WORD, 0x5A5A_5A5A);
    assert!(heap.allocate(granules(4)).is_err());
    assert!(heap.take_corruption().is_some());
    heap.check_invariants().unwrap();
    free(&mut heap, e, granules(4));
    free(&mut heap, a1, granules(4));
    free(&mut heap, a4, granules(4));
    heap.check_invariants().unwrap();
    assert!(heap.take_corruption().is_none(), "a healthy block was reported");
}

#[test]
fn joining_a_region_never_follows_a_link_at_the_seam() {
    // The free block at the end of the first region gets a sealed next link naming memory
    // outside every region; a touching region then joins. The heap rebuilds its lists from
    // the bit map instead of merging through that link, so the outside memory is untouched.
    let memory = Memory::new(2 * LEN);
    let mut heap = TlsfHeap::hardened();
    // SAFETY: the memory outlives the heap and only the heap uses it.
    unsafe { heap.add_region(memory.region(0, LEN)) }.unwrap();
    let a = alloc(&mut heap, granules(4));
    let tail = offset(a, 4 * G);
    let mut outside = std::boxed::Box::new([7usize; 4]);
    let forged = NonNull::from(&mut outside[0]).cast::<FreeHead>();
    scribble(tail, 0, forged.as_ptr().addr() ^ heap.secret);
    // SAFETY: as above; the second half touches the first region, so it joins.
    unsafe { heap.add_region(memory.region(LEN, LEN)) }.unwrap();
    assert_eq!(*outside, [7; 4], "the heap wrote outside its regions");
    heap.check_invariants().unwrap();
    free(&mut heap, a, granules(4));
    assert_eq!(heap.usage().free_bytes, heap.usage().total_bytes);
}

#[test]
fn a_fallback_scan_stops_at_a_damaged_link() {
    // Two blocks on the list of 5 granules: an aligned request that only the second can hold
    // makes the fallback scan the list; the first block's next link is damaged on the way.
    let memory = Memory::new(LEN);
    let mut heap = over(&memory, TlsfHeap::hardened());
    let blocks: Vec<_> = (0..6).map(|_| alloc(&mut heap, granules(5))).collect();
    free(&mut heap, blocks[1], granules(5));
    free(&mut heap, blocks[3], granules(5));
    // The list's head is the block freed last; its next link leads to the first.
    scribble(blocks[3], 0, usize::MAX & !(G - 1));
    // Nothing but those two blocks and the region's tail is free; ask for more than the tail's
    // class can start, in the lists the fallback scans: 5 granules' class, any alignment.
    let _tail = heap.allocate(Layout::from_size_align(heap.usage().largest_free_block, 1).unwrap());
    assert!(heap.allocate(Layout::from_size_align(4 * G + 1, 4 * G).unwrap()).is_err());
    assert_eq!(heap.take_corruption().map(|m| m.ptr), Some(blocks[3].as_ptr().cast_const()));
}
