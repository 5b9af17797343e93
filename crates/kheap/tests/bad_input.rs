//! The README's "Bad input" table, row by row: each kind of misuse committed against every heap
//! the table has a column for (`BuddyHeap`, `TlsfHeap`, `FirstFitHeap`, the default `Heap`, and
//! `Guarded<TlsfHeap>` at each level), with the outcome the table states asserted for each.
//!
//! A misuse a heap does not detect is asserted as such ([`Outcome::Accepted`]): the table says
//! "not detected" because of these tests, and a heap that starts detecting one fails here until
//! the README says so.

use std::alloc::Layout;
use std::cell::Cell;
use std::ptr::NonNull;

use kheap::{
    BuddyHeap, FirstFitHeap, FitPolicy, GuardLevel, Guarded, Heap, HeapUsage, InvariantError, LockedHeap,
    Misuse, MisuseKind, PartKind, RawHeap, RawSpinlock, TlsfHeap,
};

/// The bytes of every heap's memory.
const LEN: usize = 1 << 20;
/// Its alignment: a block at the region's start is aligned to anything the tests ask.
const ALIGN: usize = 64 * 1024;

/// The table's columns, the debug mode once per level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    Buddy,
    Tlsf,
    FirstFit,
    Heap,
    Checks,
    RedZones,
    Poison,
}

const COLUMNS: [Column; 7] = [
    Column::Buddy,
    Column::Tlsf,
    Column::FirstFit,
    Column::Heap,
    Column::Checks,
    Column::RedZones,
    Column::Poison,
];

/// What a call with bad input led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Refused as this misuse, the heap unchanged (checked where the call is made).
    Refused(MisuseKind),
    /// Accepted: the misuse was not detected.
    Accepted,
}

use Outcome::{Accepted, Refused};

/// Zeroed host memory for one heap, freed on drop (zeroed, as a kernel's `.bss` is: the slab
/// layer may read a tag's place in it when a free names the wrong class).
struct Memory(NonNull<u8>);

impl Memory {
    fn new() -> Self {
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { std::alloc::alloc_zeroed(Layout::from_size_align(LEN, ALIGN).unwrap()) };
        Memory(NonNull::new(base).expect("no host memory"))
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { std::alloc::dealloc(self.0.as_ptr(), Layout::from_size_align(LEN, ALIGN).unwrap()) }
    }
}

/// A heap under test over its own memory (the memory declared last: dropped after the heap).
struct Fixture<H> {
    heap: H,
    /// Gives back what the heap holds for reuse (a quarantine; spares go on `trim`).
    settle: fn(&mut H) -> Result<(), Misuse>,
    make: fn() -> H,
    memory: Memory,
}

/// A fixture, whatever its heap.
trait Probe {
    /// A block for `layout`, or `None` if the heap refused it.
    fn try_alloc(&mut self, layout: Layout) -> Option<NonNull<u8>>;
    /// A block for `layout`, which the heap must grant.
    fn alloc(&mut self, layout: Layout) -> NonNull<u8> {
        self.try_alloc(layout).unwrap_or_else(|| panic!("{layout:?} refused"))
    }
    /// # Safety
    /// As `RawHeap::deallocate`, except that the misuse under test is allowed: the tests that
    /// commit one go on only with checks, never with allocations that could follow a
    /// corrupted link.
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Misuse>;
    fn usage(&self) -> HeapUsage;
    fn check(&self) -> Result<(), InvariantError>;
    /// Gives back what the heap holds for reuse; a debug heap's quarantine is checked.
    fn settle(&mut self) -> Result<(), Misuse>;
    /// The start and length of every part of `kind` the walk reports.
    fn parts(&self, kind: PartKind) -> Vec<(usize, usize)>;
    /// A pointer to `addr` inside the heap's memory (with its provenance).
    fn at(&self, addr: usize) -> NonNull<u8>;
    /// A `GlobalAlloc::dealloc` of null through a `LockedHeap` over a fresh heap of this type:
    /// the misuses its hook received.
    fn null_through_the_front(&self) -> Vec<MisuseKind>;
    /// A `GlobalAlloc::realloc` of a block already freed, through a `LockedHeap` over a fresh
    /// heap of this type: the misuses its hook received, and whether realloc returned a block.
    fn realloc_freed_through_the_front(&self) -> (Vec<MisuseKind>, bool);
}

std::thread_local! {
    /// The misuses the fronts of this thread reported.
    static REPORTED: Cell<Vec<MisuseKind>> = const { Cell::new(Vec::new()) };
}

/// A misuse hook that records, so that a test goes on after a report.
fn record(misuse: &Misuse) {
    REPORTED.with(|r| {
        let mut all = r.take();
        all.push(misuse.kind);
        r.set(all);
    });
}

impl<H: RawHeap> Fixture<H> {
    /// A `LockedHeap` over a fresh heap and over a second memory, reporting to [`record`].
    fn front(&self, memory: &Memory) -> LockedHeap<RawSpinlock, H> {
        let locked = LockedHeap::new((self.make)()).on_misuse(record);
        // SAFETY: `memory` outlives the front in every caller, and only the heap uses it.
        unsafe { locked.add_region_raw(memory.0.as_ptr(), LEN) }.expect("region refused");
        REPORTED.with(|r| r.take());
        locked
    }
}

impl<H: RawHeap> Probe for Fixture<H> {
    fn try_alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        let block = self.heap.allocate(layout).ok()?;
        assert!(block.len() >= layout.size());
        assert_eq!(block.cast::<u8>().as_ptr().addr() % layout.align(), 0, "{layout:?} misaligned");
        Some(block.cast())
    }
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Misuse> {
        let (before, sound) = (self.usage(), self.check().is_ok());
        // SAFETY: the caller's.
        let result = unsafe { self.heap.deallocate(ptr, layout) };
        if let Err(misuse) = result {
            assert_eq!(self.usage(), before, "a refused free changed the heap: {misuse}");
            if sound {
                self.check().unwrap_or_else(|e| panic!("a refused free broke the heap ({misuse}): {e}"));
            }
        }
        result
    }
    fn usage(&self) -> HeapUsage {
        self.heap.usage()
    }
    fn check(&self) -> Result<(), InvariantError> {
        self.heap.check_invariants()
    }
    fn settle(&mut self) -> Result<(), Misuse> {
        let drained = (self.settle)(&mut self.heap);
        self.heap.trim();
        drained
    }
    fn parts(&self, kind: PartKind) -> Vec<(usize, usize)> {
        let mut parts = Vec::new();
        self.heap.walk(&mut |part| {
            if part.kind == kind {
                parts.push((part.start.addr(), part.len));
            }
        });
        parts
    }
    fn at(&self, addr: usize) -> NonNull<u8> {
        let base = self.memory.0.as_ptr();
        assert!((base.addr()..base.addr() + LEN).contains(&addr), "{addr:#x} outside the memory");
        NonNull::new(base.wrapping_add(addr - base.addr())).unwrap()
    }
    fn null_through_the_front(&self) -> Vec<MisuseKind> {
        let memory = Memory::new();
        let locked = self.front(&memory);
        // SAFETY: the misuse under test; the front reports it and changes nothing.
        unsafe { std::alloc::GlobalAlloc::dealloc(&locked, std::ptr::null_mut(), Layout::new::<u64>()) };
        locked.check_invariants().unwrap();
        drop(locked);
        REPORTED.with(|r| r.take())
    }
    fn realloc_freed_through_the_front(&self) -> (Vec<MisuseKind>, bool) {
        use std::alloc::GlobalAlloc;
        let memory = Memory::new();
        let locked = self.front(&memory);
        let layout = Layout::from_size_align(48, 8).unwrap();
        // SAFETY: a non-zero size; a correct free, then the misuse under test: a realloc of
        // the freed block (the heaps' memory is zeroed, so the copy reads initialised bytes).
        // Live blocks on both sides keep the freed block from merging into a free block that
        // could hold the new size, so the block moves to memory apart from it.
        let moved = unsafe {
            let _before = locked.alloc(layout);
            let a = locked.alloc(layout);
            let _after = locked.alloc(layout);
            locked.dealloc(a, layout);
            locked.realloc(a, layout, 100)
        };
        locked.check_invariants().unwrap();
        drop(locked);
        (REPORTED.with(|r| r.take()), !moved.is_null())
    }
}

fn fixture<H: RawHeap + 'static>(
    make: fn() -> H,
    settle: fn(&mut H) -> Result<(), Misuse>,
) -> Box<dyn Probe> {
    let memory = Memory::new();
    let mut heap = make();
    // SAFETY: the memory outlives the heap (the fixture drops it last) and only the heap uses it.
    unsafe { heap.add_region(NonNull::slice_from_raw_parts(memory.0, LEN)) }.expect("region refused");
    Box::new(Fixture { heap, settle, make, memory })
}

fn drain(heap: &mut Guarded<TlsfHeap>) -> Result<(), Misuse> {
    heap.drain_quarantine()
}

/// A fresh heap for `column`.
fn subject(column: Column) -> Box<dyn Probe> {
    match column {
        Column::Buddy => fixture(BuddyHeap::new, |_| Ok(())),
        Column::Tlsf => fixture(TlsfHeap::new, |_| Ok(())),
        Column::FirstFit => fixture(|| FirstFitHeap::new(FitPolicy::First), |_| Ok(())),
        // Slabs from the first byte: this column shows the slab layer; below `SLABS_FROM` a
        // default heap's small blocks are TLSF's, as in the `Tlsf` column.
        Column::Heap => fixture(|| Heap::new().with_slabs_from(0), |_| Ok(())),
        Column::Checks => fixture(|| Guarded::new(TlsfHeap::new(), GuardLevel::Checks), drain),
        Column::RedZones => fixture(|| Guarded::new(TlsfHeap::new(), GuardLevel::RedZones), drain),
        Column::Poison => fixture(|| Guarded::new(TlsfHeap::new(), GuardLevel::Poison), drain),
    }
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// Runs `scenario` on a fresh heap of every column and compares what it returns with
/// `expected` (one entry per column, in [`COLUMNS`] order); all columns at once, so that a
/// failure shows the whole row.
fn row<T: PartialEq + std::fmt::Debug>(expected: [T; 7], scenario: impl Fn(Column, &mut dyn Probe) -> T) {
    let got: Vec<(Column, T)> = COLUMNS.iter().map(|&c| (c, scenario(c, &mut *subject(c)))).collect();
    let expected: Vec<(Column, T)> = COLUMNS.into_iter().zip(expected).collect();
    assert_eq!(got, expected);
}

/// The outcome of a free.
fn outcome(result: Result<(), Misuse>) -> Outcome {
    match result {
        Ok(()) => Accepted,
        Err(misuse) => Refused(misuse.kind),
    }
}

#[test]
fn a_null_pointer_is_reported_by_the_front() {
    let null = || vec![MisuseKind::Null];
    row([null(), null(), null(), null(), null(), null(), null()], |_, heap| heap.null_through_the_front());
}

#[test]
fn a_foreign_pointer() {
    row([Refused(MisuseKind::Foreign); 7], |_, heap| {
        let _live = heap.alloc(layout(48, 8));
        let mut local = [0u64; 8];
        // SAFETY: the misuse under test.
        outcome(unsafe { heap.free(NonNull::from(&mut local).cast(), layout(64, 8)) })
    });
}

#[test]
fn a_pointer_into_the_heaps_own_bookkeeping() {
    use MisuseKind::{Bookkeeping, DoubleFree, WrongLayout};
    let algorithm = || vec![Refused(Bookkeeping)];
    let guarded = || vec![Refused(DoubleFree), Refused(Bookkeeping)];
    let heap = vec![Refused(Bookkeeping), Refused(WrongLayout)];
    row([algorithm(), algorithm(), algorithm(), heap, guarded(), guarded(), guarded()], |_, heap| {
        // A small block first, so that the default heap has a slab (whose header and the slack
        // below it are bookkeeping).
        let _live = heap.alloc(layout(48, 8));
        let mut seen = Vec::new();
        for (start, len) in heap.parts(PartKind::Bookkeeping) {
            for addr in [start, start + len - 16] {
                // SAFETY: the misuse under test.
                let got = outcome(unsafe { heap.free(heap.at(addr), layout(16, 1)) });
                if !seen.contains(&got) {
                    seen.push(got);
                }
            }
        }
        seen
    });
}

#[test]
fn an_interior_pointer() {
    use MisuseKind::{NotBlockStart, WrongLayout};
    let exact = || vec![Refused(NotBlockStart); 3];
    // First fit tells only a pointer misaligned for every block; the slab layer checks the
    // class of the layout first, then the block start.
    let first_fit = vec![Refused(NotBlockStart), Accepted];
    let heap = vec![Refused(WrongLayout), Refused(WrongLayout), Refused(NotBlockStart)];
    row([exact(), exact(), first_fit, heap, exact(), exact(), exact()], |_, heap| {
        let a = heap.alloc(layout(256, 16));
        let _after = heap.alloc(layout(256, 16));
        // SAFETY: the block is live; zeroes (a plausible user pattern) under the pointers.
        unsafe { a.as_ptr().write_bytes(0, 256) };
        let mut got = Vec::new();
        for (inside, l) in [(8, layout(8, 8)), (64, layout(16, 16)), (64, layout(256, 16))] {
            // SAFETY: the misuse under test.
            let result = outcome(unsafe { heap.free(heap.at(a.as_ptr().addr() + inside), l) });
            got.push(result);
            if result == Accepted {
                break;
            }
        }
        got
    });
}

#[test]
fn a_double_free() {
    row([Refused(MisuseKind::DoubleFree); 7], |_, heap| {
        let l = layout(48, 8);
        let a = heap.alloc(l);
        let _b = heap.alloc(l);
        // SAFETY: a correct free, then the misuse under test.
        unsafe { heap.free(a, l) }.unwrap();
        // SAFETY: as above.
        outcome(unsafe { heap.free(a, l) })
    });
}

#[test]
fn a_double_free_after_the_block_was_handed_out_again_with_the_same_layout() {
    row([(Accepted, true); 7], |_, heap| {
        let l = layout(48, 8);
        let a = heap.alloc(l);
        let _b = heap.alloc(l);
        // SAFETY: a correct free.
        unsafe { heap.free(a, l) }.unwrap();
        heap.settle().unwrap();
        let again = heap.alloc(l);
        assert_eq!(again, a, "the block was not handed out again");
        // SAFETY: the misuse under test: `a` now belongs to the owner of `again`.
        (outcome(unsafe { heap.free(a, l) }), heap.check().is_ok())
    });
}

#[test]
fn a_double_free_after_the_memory_went_to_a_larger_block() {
    let refused = || Some(vec![Refused(MisuseKind::WrongLayout), Refused(MisuseKind::NotBlockStart)]);
    // The buddy heap serves a small request from a sliver at its region's end, away from where
    // a larger block goes: its unit test `a_second_free_after_the_block_was_reused_is_refused`
    // fills the heap to build the case.
    let heap = Some(vec![Refused(MisuseKind::WrongLayout); 2]);
    row([None, refused(), Some(vec![Accepted]), heap, refused(), refused(), refused()], |column, heap| {
        if column == Column::Buddy {
            return None;
        }
        let small = layout(16, 16);
        let a = heap.alloc(small);
        // SAFETY: a correct free.
        unsafe { heap.free(a, small) }.unwrap();
        heap.settle().unwrap();
        let larger = heap.alloc(layout(64, 16));
        assert_eq!(larger, a, "{column:?}: the memory did not go to the larger block");
        let mut got = Vec::new();
        for stale in [a, heap.at(a.as_ptr().addr() + 16)] {
            // SAFETY: the misuse under test: a block freed earlier, inside `larger` now.
            let result = outcome(unsafe { heap.free(stale, small) });
            got.push(result);
            if result == Accepted {
                break;
            }
        }
        Some(got)
    });
}

/// Frees the second of four 48-byte blocks in a row with a layout of `size` bytes: the
/// outcome, and whether the heap checks out after it.
fn free_a_middle_block_as(heap: &mut dyn Probe, size: usize) -> (Outcome, bool) {
    let l = layout(48, 16);
    let _x = heap.alloc(l);
    let a = heap.alloc(l);
    let _b = heap.alloc(l);
    let _c = heap.alloc(l);
    // SAFETY: the misuse under test.
    (outcome(unsafe { heap.free(a, layout(size, 16)) }), heap.check().is_ok())
}

#[test]
fn a_free_with_a_larger_size_over_live_memory() {
    let mut expected = [(Refused(MisuseKind::WrongLayout), true); 7];
    expected[2] = (Accepted, true);
    row(expected, |_, heap| free_a_middle_block_as(heap, 100));
}

#[test]
fn a_free_with_a_larger_size_ending_where_the_next_block_ends() {
    // TLSF reads only the marks at the two ends of the block the layout names: here they are
    // those of `a`'s start and `b`'s end, so the free takes both blocks, `b` still in use. The
    // heap is then inconsistent, and its walker says so.
    let mut expected = [(Refused(MisuseKind::WrongLayout), true); 7];
    expected[1] = (Accepted, false);
    expected[2] = (Accepted, true);
    row(expected, |_, heap| free_a_middle_block_as(heap, 96));
}

#[test]
fn a_free_with_another_layout_of_the_same_block_size() {
    let refused = (Refused(MisuseKind::WrongLayout), true);
    row(
        [(Accepted, true), (Accepted, true), (Accepted, true), (Accepted, true), refused, refused, refused],
        |_, heap| {
            let a = heap.alloc(layout(41, 8));
            let _b = heap.alloc(layout(41, 8));
            // SAFETY: the misuse under test (or none, where the heap rounds both alike).
            (outcome(unsafe { heap.free(a, layout(48, 8)) }), heap.check().is_ok())
        },
    );
}

#[test]
fn a_free_with_a_larger_alignment() {
    use MisuseKind::{NotBlockStart, WrongLayout};
    let exact = (Refused(WrongLayout), Some(Refused(WrongLayout)));
    // TLSF and first fit check a pointer against the alignment only: a block whose address
    // has it by chance is the same block whatever the alignment said, and is freed.
    let by_address = (Refused(NotBlockStart), Some(Accepted));
    let heap = (Refused(NotBlockStart), Some(Refused(WrongLayout)));
    let checks = (Refused(WrongLayout), None);
    row([exact, by_address, by_address, heap, checks, exact, exact], |_, heap| {
        let l = layout(48, 16);
        let _first = heap.alloc(l);
        let misaligned = heap.alloc(l);
        let _after = heap.alloc(l);
        assert_ne!(misaligned.as_ptr().addr() % 4096, 0, "the block is aligned to 4096");
        let wide = layout(48, 4096);
        // SAFETY: the misuse under test.
        let first = outcome(unsafe { heap.free(misaligned, wide) });
        // A block whose address has the alignment by chance, if the heap places one there
        // (a guarded block with checks only never starts at a multiple of 64).
        let mut aligned = None;
        for _ in 0..4_000 {
            let block = heap.alloc(l);
            if block.as_ptr().addr() % 4096 == 0 {
                aligned = Some(block);
                break;
            }
        }
        let _after = heap.alloc(l);
        // SAFETY: as above.
        (first, aligned.map(|block| outcome(unsafe { heap.free(block, wide) })))
    });
}

#[test]
fn a_free_with_a_smaller_size() {
    // The outcome, the bytes the free gave back, and whether the heap still checks out: first
    // fit takes back 48 bytes of the 112-byte block, and the other 64 are lost to the heap.
    let mut expected = [(Refused(MisuseKind::WrongLayout), 0, true); 7];
    expected[2] = (Accepted, 48, true);
    row(expected, |_, heap| {
        let l = layout(100, 16);
        let _x = heap.alloc(l);
        let a = heap.alloc(l);
        let _b = heap.alloc(l);
        let before = heap.usage().free_bytes;
        // SAFETY: the misuse under test.
        let got = outcome(unsafe { heap.free(a, layout(40, 16)) });
        (got, heap.usage().free_bytes - before, heap.check().is_ok())
    });
}

#[test]
fn a_write_past_the_end() {
    // Only the debug mode sees it: with red zones when `a` is freed; with checks alone, when
    // the byte lands on the next block's header and that block is freed.
    let mut expected = [(Accepted, Accepted); 7];
    expected[4] = (Accepted, Refused(MisuseKind::CorruptedHeader));
    expected[5] = (Refused(MisuseKind::Overrun), Accepted);
    expected[6] = (Refused(MisuseKind::Overrun), Accepted);
    row(expected, |_, heap| {
        let l = layout(48, 8);
        let a = heap.alloc(l);
        let b = heap.alloc(l);
        let _c = heap.alloc(l);
        // SAFETY: the bug under test: one byte past the end of `a`, inside the heap's memory
        // (another block, slack, or a red zone: never free memory, `c` follows `b`).
        unsafe { heap.at(a.as_ptr().addr() + 48).as_ptr().write(0xEE) };
        // SAFETY: both live with `l`; a refusal leaves them so.
        unsafe { (outcome(heap.free(a, l)), outcome(heap.free(b, l))) }
    });
}

#[test]
fn a_write_before_the_start() {
    // With checks alone the byte before a block is its header's last.
    let mut expected = [(Accepted, Accepted); 7];
    expected[4] = (Refused(MisuseKind::CorruptedHeader), Accepted);
    expected[5] = (Refused(MisuseKind::Overrun), Accepted);
    expected[6] = (Refused(MisuseKind::Overrun), Accepted);
    row(expected, |_, heap| {
        let l = layout(48, 8);
        let x = heap.alloc(l);
        let a = heap.alloc(l);
        // SAFETY: the bug under test: one byte before `a` (the end of `x`, slack, a red zone
        // or a header).
        unsafe { heap.at(a.as_ptr().addr() - 1).as_ptr().write(0xEE) };
        // SAFETY: both live with `l`; a refusal leaves them so.
        unsafe { (outcome(heap.free(a, l)), outcome(heap.free(x, l))) }
    });
}

#[test]
fn a_write_after_free() {
    // Whether the heap still checks out after the write, and what giving back its held
    // blocks reports. The algorithms keep a free block's links in its first bytes: the
    // invariant walker sees the damage (what an allocation does with it: the row on
    // overwritten links). The slab layer keeps nothing in a free object. Guarded with checks
    // or red zones has given the block back to TLSF: its first byte lands on TLSF's size tag
    // behind the 16-byte header, or, behind red zones too, in the middle of the free block.
    let mut expected = [(false, Ok(())); 7];
    expected[3] = (true, Ok(()));
    expected[5] = (true, Ok(()));
    expected[6] = (false, Err(MisuseKind::UseAfterFree));
    row(expected, |_, heap| {
        let l = layout(48, 8);
        let _x = heap.alloc(l);
        let a = heap.alloc(l);
        let _b = heap.alloc(l);
        // SAFETY: a correct free, then the bug under test: the freed block's first byte.
        unsafe {
            heap.free(a, l).unwrap();
            a.as_ptr().write(0xEE);
        }
        (heap.check().is_ok(), heap.settle().map_err(|m| m.kind))
    });
}

#[test]
fn extreme_layouts_are_refused() {
    // Allocations: every one refused. Frees of a live block with each: what each heap says.
    // (`NotBlockStart`: the pointer is not aligned for the layout.)
    use MisuseKind::{ImpossibleLayout, NotBlockStart, WrongLayout};
    let buddy = vec![Refused(ImpossibleLayout)];
    let others = || vec![Refused(WrongLayout), Refused(NotBlockStart)];
    let guarded = || vec![Refused(WrongLayout)];
    row([buddy, others(), others(), others(), guarded(), guarded(), guarded()], |_, heap| {
        let top = 1usize << (usize::BITS - 2);
        let extremes = [
            layout(isize::MAX as usize, 1),
            layout(isize::MAX as usize - 4095, 4096),
            layout(1, top),
            layout(0, top),
            layout(top, top),
        ];
        let small = layout(64, 8);
        let block = heap.alloc(small);
        let mut seen = Vec::new();
        for l in extremes {
            let before = heap.usage();
            assert!(heap.try_alloc(l).is_none(), "{l:?} granted");
            assert_eq!(heap.usage(), before, "a refused {l:?} changed the heap");
            // SAFETY: the misuse under test: a live block freed with an impossible layout.
            let got = outcome(unsafe { heap.free(block, l) });
            if !seen.contains(&got) {
                seen.push(got);
            }
        }
        // SAFETY: live with `small`.
        unsafe { heap.free(block, small) }.unwrap();
        seen
    });
}

#[test]
fn zero_size_requests_get_a_real_block() {
    // Two zero-size blocks at distinct addresses, each freed with its layout; the heap whole.
    row([true; 7], |_, heap| {
        let whole = heap.usage();
        let mut blocks = Vec::new();
        for align in [1, 8, 4096] {
            let l = layout(0, align);
            blocks.push((heap.alloc(l), l));
            blocks.push((heap.alloc(l), l));
        }
        let distinct = blocks.iter().all(|(a, _)| blocks.iter().filter(|(b, _)| a == b).count() == 1);
        for (ptr, l) in blocks {
            // SAFETY: live with `l`.
            unsafe { heap.free(ptr, l) }.unwrap();
        }
        heap.settle().unwrap();
        distinct && heap.usage() == whole
    });
}

#[test]
fn an_overwritten_block_header() {
    // Only the slab layer and the debug mode keep a header: a stray write over it (every byte
    // changed) refuses the frees that rely on it. A slab whose header is damaged is no longer
    // recognised: its objects are refused by the backing heap, as pointers inside its block,
    // and its walker reports the damage. The debug mode's walker checks only quarantined
    // blocks' headers; a live block's is checked when it is freed or resized.
    let guarded = Some((Refused(MisuseKind::CorruptedHeader), true));
    let heap = Some((Refused(MisuseKind::NotBlockStart), false));
    row([None, None, None, heap, guarded, guarded, guarded], |column, heap| {
        let l = layout(32, 8);
        let _first = heap.alloc(l);
        let victim = heap.alloc(l);
        let (start, len) = match column {
            Column::Buddy | Column::Tlsf | Column::FirstFit => return None,
            // The slab's header: the bookkeeping part of the slab `victim` lies in.
            Column::Heap => heap
                .parts(PartKind::Bookkeeping)
                .into_iter()
                .find(|&(start, len)| {
                    (start.saturating_sub(16 * 1024)..start + len).contains(&victim.as_ptr().addr())
                })
                .expect("no slab header"),
            // The sealed header: two words, before the red zone if there is one.
            Column::Checks => (victim.as_ptr().addr() - 16, 16),
            Column::RedZones | Column::Poison => (victim.as_ptr().addr() - 32, 16),
        };
        let header = heap.at(start);
        // SAFETY: the header is the heap's memory; the bug under test, undone below.
        let saved: Vec<u8> = unsafe { std::slice::from_raw_parts(header.as_ptr(), len) }.to_vec();
        // SAFETY: as above.
        unsafe { header.as_ptr().write_bytes(0xEE, len) };
        // SAFETY: `victim` is live with `l`; the free is refused (asserted).
        let got = outcome(unsafe { heap.free(victim, l) });
        let checks_out = heap.check().is_ok();
        // SAFETY: as above.
        unsafe { header.as_ptr().copy_from_nonoverlapping(saved.as_ptr(), len) };
        // SAFETY: live with `l`, its header intact again.
        unsafe { heap.free(victim, l) }.unwrap();
        Some((got, checks_out))
    });
}

#[test]
fn a_realloc_of_a_freed_block() {
    // Through `GlobalAlloc::realloc` on a `LockedHeap`: the in-place resize refuses a block
    // that is not live, the front moves it (copying bytes the heap now owns), and the free of
    // the old block is the misuse the hook receives; realloc returns the new block.
    row(std::array::from_fn(|_| (vec![MisuseKind::DoubleFree], true)), |_, heap| {
        heap.realloc_freed_through_the_front()
    });
}
