//! Each detection of the debug layer fired on purpose, at every level it belongs to, over
//! both heaps that can look a block up (TLSF and buddy).

use core::alloc::Layout;
use core::ptr::NonNull;

use std::string::ToString;

use super::*;
use crate::test_memory::Memory;
use crate::{BuddyHeap, TlsfHeap};

const LEVELS: [GuardLevel; 3] = [GuardLevel::Checks, GuardLevel::RedZones, GuardLevel::Poison];

/// A guarded heap over 1 MiB, with the memory it lives in (declared last: dropped last).
struct Fixture<H> {
    heap: Guarded<H>,
    _memory: Memory,
}

fn fixture<H: BlockLookup>(inner: H, level: GuardLevel) -> Fixture<H> {
    let memory = Memory::new(1024 * 1024);
    let mut heap = Guarded::new(inner, level);
    // SAFETY: the memory outlives the heap (fixture field order) and only the heap uses it.
    unsafe { heap.add_region(memory.region(0, 1024 * 1024)) }.unwrap();
    Fixture { heap, _memory: memory }
}

/// Runs `test` over TLSF and buddy at every level in `levels`.
fn each(levels: &[GuardLevel], test: fn(&mut dyn Probe, GuardLevel)) {
    for &level in levels {
        test(&mut fixture(TlsfHeap::new(), level), level);
        test(&mut fixture(BuddyHeap::<20>::with_orders(), level), level);
    }
}

/// The guarded heap of a fixture, whatever the heap below.
trait Probe {
    fn alloc(&mut self, layout: Layout) -> NonNull<u8>;
    /// # Safety
    /// As `RawHeap::deallocate`, except that a misuse the layer detects is allowed.
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Misuse>;
    fn usage(&self) -> HeapUsage;
    fn check(&self) -> Result<(), InvariantError>;
    fn lookup(&self, ptr: NonNull<u8>) -> Result<Layout, Misuse>;
    fn drain(&mut self) -> Result<(), Misuse>;
    /// # Safety
    /// As `RawHeap::resize_in_place`.
    unsafe fn resize(&mut self, ptr: NonNull<u8>, old: Layout, new_size: usize) -> Result<(), AllocError>;
}

impl<H: BlockLookup> Probe for Fixture<H> {
    fn alloc(&mut self, layout: Layout) -> NonNull<u8> {
        let block = self.heap.allocate(layout).expect("allocation refused");
        assert_eq!(block.len(), layout.size());
        assert_eq!(block.cast::<u8>().as_ptr().addr() % layout.align(), 0, "misaligned for {layout:?}");
        block.cast()
    }
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Misuse> {
        // SAFETY: the caller's.
        unsafe { self.heap.deallocate(ptr, layout) }
    }
    fn usage(&self) -> HeapUsage {
        self.heap.usage()
    }
    fn check(&self) -> Result<(), InvariantError> {
        self.heap.check_invariants()
    }
    fn lookup(&self, ptr: NonNull<u8>) -> Result<Layout, Misuse> {
        self.heap.block_layout(ptr)
    }
    fn drain(&mut self) -> Result<(), Misuse> {
        self.heap.drain_quarantine()
    }
    unsafe fn resize(&mut self, ptr: NonNull<u8>, old: Layout, new_size: usize) -> Result<(), AllocError> {
        // SAFETY: the caller's.
        unsafe { self.heap.resize_in_place(ptr, old, new_size) }
    }
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// Asserts that a refused free changed nothing, and returns its report.
fn refused(heap: &mut dyn Probe, ptr: NonNull<u8>, layout: Layout) -> Misuse {
    let before = heap.usage();
    // SAFETY: the misuse under test, which the layer detects before changing anything.
    let misuse = unsafe { heap.free(ptr, layout) }.expect_err("the misuse was accepted");
    assert_eq!(heap.usage(), before, "a refused free changed the heap: {misuse}");
    heap.check().unwrap();
    misuse
}

#[test]
fn blocks_round_trip_at_every_level_and_alignment() {
    each(&LEVELS, |heap, level| {
        let initial = heap.usage();
        let mut live = std::vec::Vec::new();
        // Under Miri, every third alignment: the poison and red-zone checks are byte by byte.
        for shift in (0..=12).step_by(if cfg!(miri) { 3 } else { 1 }) {
            for size in [0, 1, 48, 100, 4000] {
                let l = layout(size, 1 << shift);
                let ptr = heap.alloc(l);
                // SAFETY: the block is live with `size` bytes.
                unsafe { ptr.as_ptr().write_bytes(0xA5, size) };
                assert_eq!(heap.lookup(ptr), Ok(l), "lookup at {level:?}");
                live.push((ptr, l));
            }
        }
        heap.check().unwrap();
        for (ptr, l) in live {
            // SAFETY: live with `l`.
            unsafe { heap.free(ptr, l) }.unwrap_or_else(|m| panic!("{level:?}: {m}"));
        }
        heap.drain().unwrap();
        heap.check().unwrap();
        assert_eq!(heap.usage(), initial, "{level:?}: the heap is not whole again");
    });
}

#[test]
fn a_double_free_is_caught_right_away_and_after_the_block_went_back() {
    each(&LEVELS, |heap, level| {
        let l = layout(48, 8);
        let a = heap.alloc(l);
        let _b = heap.alloc(l);
        // SAFETY: live with `l`.
        unsafe { heap.free(a, l) }.unwrap();
        let misuse = refused(heap, a, l);
        assert_eq!(misuse.kind, MisuseKind::DoubleFree, "{level:?}: {misuse}");
        assert_eq!(misuse.ptr, a.as_ptr().cast_const());
        // Out of quarantine and back in the heap below: still caught.
        heap.drain().unwrap();
        let misuse = refused(heap, a, l);
        assert_eq!(misuse.kind, MisuseKind::DoubleFree, "{level:?} after release: {misuse}");
        assert!(heap.lookup(a).is_err());
    });
}

#[test]
fn a_wrong_layout_names_the_layout_the_block_was_allocated_with() {
    each(&LEVELS, |heap, level| {
        let l = layout(48, 8);
        let a = heap.alloc(l);
        for wrong in [layout(40, 8), layout(64, 8), layout(48, 16), layout(48, 1)] {
            let misuse = refused(heap, a, wrong);
            assert_eq!(
                (misuse.kind, misuse.found),
                (MisuseKind::WrongLayout, Some(l)),
                "{level:?}: {misuse}"
            );
            assert!(misuse.to_string().contains("the block there has size 48 and align 8"), "{misuse}");
        }
        // SAFETY: live with `l`.
        unsafe { heap.free(a, l) }.unwrap();
    });
}

#[test]
fn interior_and_foreign_pointers_are_told_apart() {
    each(&LEVELS, |heap, level| {
        let l = layout(256, 16);
        let a = heap.alloc(l);
        // SAFETY: the block is live; zeroes (a plausible user pattern) under the interior pointers.
        unsafe { a.as_ptr().write_bytes(0, 256) };
        for inside in [16, 64, 128] {
            let misuse = refused(heap, offset(a, inside), layout(16, 16));
            assert_eq!(misuse.kind, MisuseKind::NotBlockStart, "{level:?} +{inside}: {misuse}");
        }
        let mut local = [0u64; 8];
        let misuse = refused(heap, NonNull::from(&mut local).cast(), layout(64, 8));
        assert_eq!(misuse.kind, MisuseKind::Foreign, "{level:?}: {misuse}");
        // SAFETY: live with `l`.
        unsafe { heap.free(a, l) }.unwrap();
    });
}

#[test]
fn an_overwritten_header_is_caught_and_not_mistaken_for_a_block() {
    each(&LEVELS, |heap, level| {
        let l = layout(48, 8);
        let a = heap.alloc(l);
        let header = a.as_ptr().wrapping_sub(match level {
            GuardLevel::Checks => HEADER,
            _ => HEADER + RED_ZONE,
        });
        for byte in [0, 3, WORD, 2 * WORD - 1] {
            // SAFETY: the header is inside the block's inner block; flipped and put back.
            unsafe { header.add(byte).write(header.add(byte).read() ^ 0x10) };
            let misuse = refused(heap, a, l);
            assert_eq!(misuse.kind, MisuseKind::CorruptedHeader, "{level:?} byte {byte}: {misuse}");
            assert!(heap.lookup(a).is_err());
            // SAFETY: as above.
            unsafe { header.add(byte).write(header.add(byte).read() ^ 0x10) };
        }
        // A header copied to another block does not check out there (the key has the address).
        let b = heap.alloc(l);
        let b_header = b.as_ptr().wrapping_sub(a.as_ptr().addr() - header.addr());
        // SAFETY: both headers are the layer's; b's is restored below.
        let saved = unsafe { b_header.cast::<[usize; 2]>().read() };
        // SAFETY: as above.
        unsafe { b_header.cast::<[usize; 2]>().write(header.cast::<[usize; 2]>().read()) };
        assert_eq!(refused(heap, b, l).kind, MisuseKind::CorruptedHeader);
        // SAFETY: as above.
        unsafe { b_header.cast::<[usize; 2]>().write(saved) };
        // SAFETY: both live with `l`, headers intact again.
        unsafe {
            heap.free(a, l).unwrap();
            heap.free(b, l).unwrap();
        }
    });
}

#[test]
fn overruns_on_either_side_name_the_offset() {
    each(&LEVELS[1..], |heap, level| {
        let l = layout(48, 8);
        for at in [-1isize, -16, 48, 49, 63] {
            let a = heap.alloc(l);
            // SAFETY: inside the red zones, which the layer owns; the bug under test.
            unsafe { a.as_ptr().offset(at).write(0x00) };
            let misuse = refused(heap, a, l);
            assert_eq!(
                (misuse.kind, misuse.at, misuse.found),
                (MisuseKind::Overrun, Some(at), Some(l)),
                "{level:?}"
            );
            assert!(misuse.to_string().contains(&std::format!("first bad byte at offset {at}")), "{misuse}");
            assert!(misuse.to_string().contains("block state: allocated"), "{misuse}");
            // Repaired, the block frees normally.
            // SAFETY: as above.
            unsafe { a.as_ptr().offset(at).write(RED_ZONE_BYTE) };
            // SAFETY: live with `l`.
            unsafe { heap.free(a, l) }.unwrap();
        }
    });
}

#[test]
fn a_write_after_free_is_caught_when_the_block_leaves_quarantine() {
    each(&[GuardLevel::Poison], |heap, _| {
        let l = layout(48, 8);
        let victim = heap.alloc(l);
        // SAFETY: live with `l`.
        unsafe { heap.free(victim, l) }.unwrap();
        // The bug: a dangling pointer writes into the freed block.
        // SAFETY: the block is in quarantine, so the write lands in memory the layer holds.
        unsafe { victim.as_ptr().add(5).write(1) };
        let error = heap.check().expect_err("the walker missed a write after free");
        assert_eq!(error.at, victim.as_ptr().cast_const());
        // Later frees push it out of quarantine: that free is refused and names the victim.
        let mut reported = None;
        for _ in 0..QUARANTINE_BLOCKS {
            let other = heap.alloc(l);
            // SAFETY: live with `l`; a refusal (the report) leaves it live.
            match unsafe { heap.free(other, l) } {
                Ok(()) => {}
                Err(misuse) => {
                    reported = Some(misuse);
                    // SAFETY: still live; this time the quarantine has room.
                    unsafe { heap.free(other, l) }.unwrap();
                }
            }
        }
        let misuse = reported.expect("the write after free was never reported");
        assert_eq!(
            (misuse.kind, misuse.ptr, misuse.at),
            (MisuseKind::UseAfterFree, victim.as_ptr().cast_const(), Some(5))
        );
        assert!(misuse.to_string().contains("use after free"), "{misuse}");
        // The damaged block is kept out of the heap; the rest drains cleanly.
        heap.drain().unwrap();
        heap.check().unwrap();
    });
}

#[test]
fn a_late_overrun_of_a_freed_block_is_caught_too() {
    each(&[GuardLevel::Poison], |heap, _| {
        let l = layout(40, 8);
        let a = heap.alloc(l);
        // SAFETY: live with `l`.
        unsafe { heap.free(a, l) }.unwrap();
        // SAFETY: the back red zone of a quarantined block: the layer's memory.
        unsafe { a.as_ptr().add(41).write(7) };
        let misuse = heap.drain().expect_err("missed");
        assert_eq!((misuse.kind, misuse.at), (MisuseKind::UseAfterFree, Some(41)));
    });
}

#[test]
fn the_quarantine_is_bounded_and_counted_as_allocated() {
    each(&[GuardLevel::Poison], |heap, _| {
        let initial = heap.usage();
        let l = layout(1000, 8);
        for _ in 0..3 * QUARANTINE_BLOCKS {
            let a = heap.alloc(l);
            // SAFETY: live with `l`.
            unsafe { heap.free(a, l) }.unwrap();
        }
        heap.check().unwrap();
        let held = initial.free_bytes - heap.usage().free_bytes;
        assert!((QUARANTINE_BLOCKS * 1000..=QUARANTINE_BLOCKS * 2048).contains(&held), "{held} bytes held");
        // A block larger than the whole quarantine goes straight back.
        let big = layout(QUARANTINE_BYTES + 1, 8);
        let before = heap.usage();
        let b = heap.alloc(big);
        // SAFETY: live with `big`.
        unsafe { heap.free(b, big) }.unwrap();
        assert_eq!(heap.usage(), before);
        heap.drain().unwrap();
        assert_eq!(heap.usage(), initial);
    });
}

#[test]
fn resizing_in_place_moves_the_back_red_zone() {
    each(&LEVELS, |heap, level| {
        let l = layout(3000, 8);
        let a = heap.alloc(l);
        // SAFETY: live with `l`; 2900 <= 3000.
        if unsafe { heap.resize(a, l, 2900) }.is_ok() {
            let small = layout(2900, 8);
            assert_eq!(heap.lookup(a), Ok(small));
            assert_eq!(refused(heap, a, l).kind, MisuseKind::WrongLayout, "{level:?}");
            if level != GuardLevel::Checks {
                // SAFETY: the new back red zone: the layer's.
                unsafe { a.as_ptr().add(2900).write(0) };
                assert_eq!(refused(heap, a, small).at, Some(2900));
                // SAFETY: as above.
                unsafe { a.as_ptr().add(2900).write(RED_ZONE_BYTE) };
            }
            // SAFETY: live with `small`.
            unsafe { heap.free(a, small) }.unwrap();
        } else {
            // SAFETY: live with `l`.
            unsafe { heap.free(a, l) }.unwrap();
        }
    });
}

#[test]
fn every_report_is_one_line_naming_kind_address_layout_and_state() {
    let mut heap = fixture(TlsfHeap::new(), GuardLevel::RedZones);
    let l = layout(48, 8);
    let a = heap.alloc(l);
    // SAFETY: the back red zone, the layer's.
    unsafe { a.as_ptr().add(50).write(0) };
    let text = refused(&mut heap, a, l).to_string();
    assert_eq!(
        text,
        std::format!(
            "kheap: deallocate({a:p}, size 48, align 8): the red zone around the block was overwritten \
             (overrun); the block there has size 48 and align 8; first bad byte at offset 50 (counted \
             from the block's start); block state: allocated"
        )
    );
    assert!(!text.contains('\n'));
}

#[test]
fn impossible_layouts_are_refused_without_overflow() {
    for level in LEVELS {
        let mut f = fixture(TlsfHeap::new(), level);
        let before = f.heap.usage();
        let top = 1 << (usize::BITS - 2);
        for l in [
            layout(isize::MAX as usize, 1),
            layout(1, top),
            layout(top, top),
            layout(isize::MAX as usize - 15, 16),
        ] {
            assert!(f.heap.allocate(l).is_err(), "{l:?} granted at {level:?}");
            assert_eq!(f.heap.region_layout_for(l), None, "{l:?}");
            assert_eq!(f.heap.usage(), before, "{l:?}");
        }
    }
    let heap = Guarded::new(TlsfHeap::new(), GuardLevel::Poison);
    assert_eq!(heap.guard_bytes(layout(48, 8)), Some(HEADER + 2 * RED_ZONE));
    assert_eq!(heap.guard_bytes(layout(48, 4096)), Some(4096 + RED_ZONE));
    assert_eq!(heap.guard_bytes(layout(1 << (usize::BITS - 2), 1 << (usize::BITS - 2))), None);
}

#[test]
fn the_word_at_a_time_scan_finds_the_first_other_byte_wherever_it_is() {
    let mut buffer = [POISON_BYTE; 64];
    // Every start (aligned or not), every length, and every place of one odd byte, or none.
    // Under Miri, lengths up to three words: a head, a middle and a tail still occur.
    let longest = if cfg!(miri) { 3 * WORD } else { buffer.len() - WORD };
    for start in 0..WORD {
        for len in 0..=longest {
            assert_eq!(first_other_byte(&buffer[start..start + len], POISON_BYTE), None);
            for odd in 0..len {
                buffer[start + odd] = 0;
                // A second odd byte later must not be the one found.
                let later = (start + odd + 5).min(start + len - 1);
                let saved = buffer[later];
                buffer[later] = 1;
                assert_eq!(
                    first_other_byte(&buffer[start..start + len], POISON_BYTE),
                    Some(odd),
                    "start {start} len {len} odd {odd}"
                );
                buffer[later] = saved;
                buffer[start + odd] = POISON_BYTE;
            }
        }
    }
}
