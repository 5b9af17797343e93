//! Extreme layouts through every algorithm, layer and front: sizes near `isize::MAX`, the
//! largest alignments a `Layout` allows, resizes to extreme sizes and zero sizes. Every call
//! must give what `core::alloc` expects (null, `AllocError`, `Err`) or a real block, without a
//! panic and without an arithmetic overflow: run in debug, where overflow checks fire.
//!
//! The cases are one deterministic table ([`LAYOUTS`], [`RESIZES`]), run over each heap by
//! [`run_all`]; each assertion names the heap, the call and the layout.

use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use kheap::{
    BlockLookup, BuddyHeap, Counted, FirstFitHeap, FitPolicy, Front, LockedHeap, MemorySource, RawHeap,
    RawSpinlock, TlsfHeap,
};

/// Bytes of each test heap.
const HEAP_LEN: usize = 1 << 20;
/// Alignment of its memory.
const HEAP_ALIGN: usize = 1 << 16;
/// The largest alignment a `Layout` allows with a non-zero size (`1 << (BITS - 1)` would
/// round every size past `isize::MAX`).
const TOP_ALIGN: usize = 1 << (usize::BITS - 2);
const MAX: usize = isize::MAX as usize;

/// `(name, size, align)`: every layout here is valid (`Layout::from_size_align` accepts it) and
/// none fits in a heap of [`HEAP_LEN`] bytes, except where `may_fit` says a block could exist.
const LAYOUTS: &[(&str, usize, usize)] = &[
    ("isize::MAX bytes", MAX, 1),
    ("isize::MAX - 1 bytes, align 2", MAX - 1, 2),
    ("largest size for align 16", MAX - 15, 16),
    ("largest size for align 4096", MAX - 4095, 4096),
    ("half the address space + 1", MAX / 2 + 1, 8),
    ("a quarter of the address space", MAX / 4 + 1, 8),
    ("just over the heap", HEAP_LEN + 1, 8),
    ("the next power of two past isize::MAX / 2", MAX / 2 + 1, 1 << 12),
    ("1 byte at the top alignment", 1, TOP_ALIGN),
    ("0 bytes at the top alignment", 0, TOP_ALIGN),
    ("0 bytes at 2^(BITS-1), the largest alignment of all", 0, 1 << (usize::BITS - 1)),
    ("the top alignment's size", TOP_ALIGN, TOP_ALIGN),
    ("the largest size at the top alignment", MAX - (TOP_ALIGN - 1), TOP_ALIGN),
    ("1 byte at half the top alignment", 1, TOP_ALIGN / 2),
    ("the largest size at half the top alignment", MAX - (TOP_ALIGN / 2 - 1), TOP_ALIGN / 2),
    ("1 byte at 2^40 alignment (may fit)", 1, 1 << 40),
    ("1 byte at 2^32 alignment (may fit)", 1, 1 << 32),
    ("1 byte at 2^21 alignment (may fit)", 1, 1 << 21),
    ("the heap's size at the heap's alignment", HEAP_LEN, HEAP_ALIGN),
];

/// `(name, old size, old align, new size)` for resizes of a live block; each new size rounded
/// up to the alignment stays within `isize::MAX`, as the resize contracts require.
const RESIZES: &[(&str, usize, usize, usize)] = &[
    ("64 B to isize::MAX - 7", 64, 8, MAX - 7),
    ("64 B to isize::MAX (align 1)", 64, 1, MAX),
    ("64 B to half the address space", 64, 8, MAX / 2 + 1),
    ("64 B to a quarter of the address space", 64, 8, MAX / 4),
    ("64 B to just over the heap", 64, 8, HEAP_LEN + 1),
    ("4 KiB at align 4096 to the largest size for it", 4096, 4096, MAX - 4095),
    ("1 B to isize::MAX", 1, 1, MAX),
];

/// Whether a block for `(size, align)` could exist in a heap of [`HEAP_LEN`] bytes aligned to
/// [`HEAP_ALIGN`] (wherever the host put it).
fn may_fit(size: usize, align: usize) -> bool {
    size <= HEAP_LEN && align <= 1 << 40
}

/// A constructor of an empty heap.
type MakeHeap<H> = fn() -> H;

fn layout_of(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).expect("every layout in the table is valid")
}

/// Memory for a heap, leaked (regions live for ever).
fn memory() -> &'static mut [MaybeUninit<u8>] {
    let layout = layout_of(HEAP_LEN, HEAP_ALIGN);
    // SAFETY: the layout has a non-zero size.
    let base = unsafe { std::alloc::alloc(layout) };
    assert!(!base.is_null(), "host allocation failed");
    // SAFETY: `base` holds `HEAP_LEN` bytes, never freed, referenced only here.
    unsafe { std::slice::from_raw_parts_mut(base.cast(), HEAP_LEN) }
}

/// A memory source that counts how often it is asked and hands out pieces of a leaked buffer,
/// so the front's growth path runs for every refused layout.
struct CountingSource {
    base: NonNull<u8>,
    used: AtomicUsize,
    asked: AtomicUsize,
}

// SAFETY: `base` is only offset, never written through by the source; the atomic cursor hands
// each byte out once.
unsafe impl Sync for CountingSource {}

impl CountingSource {
    fn leaked() -> &'static Self {
        let memory = memory();
        Box::leak(Box::new(CountingSource {
            base: NonNull::new(memory.as_mut_ptr().cast()).expect("leaked memory is not null"),
            used: AtomicUsize::new(0),
            asked: AtomicUsize::new(0),
        }))
    }
}

// SAFETY: pieces come from a leaked allocation (valid for ever, 1); the cursor only moves
// forward, so each byte is handed out once (2).
unsafe impl MemorySource for CountingSource {
    fn acquire(&self, wanted: Layout) -> Option<NonNull<[u8]>> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let used = self.used.load(Ordering::SeqCst);
        let base = self.base.as_ptr().addr();
        let aligned = base.checked_add(used)?.checked_next_multiple_of(wanted.align())? - base;
        let end = aligned.checked_add(wanted.size())?;
        if end > HEAP_LEN
            || self.used.compare_exchange(used, end, Ordering::SeqCst, Ordering::SeqCst).is_err()
        {
            return None;
        }
        // SAFETY: `used <= end <= HEAP_LEN`: inside the leaked buffer.
        let start = unsafe { self.base.add(used) };
        Some(NonNull::slice_from_raw_parts(start, end - used))
    }
}

/// Checks a block handed out for `layout`: aligned, long enough, inside `memory`.
fn check_block(
    heap: &str,
    call: &str,
    name: &str,
    block: NonNull<[u8]>,
    layout: Layout,
    memory: &[(usize, usize)],
) {
    let start = block.cast::<u8>().as_ptr().addr();
    assert_eq!(start % layout.align(), 0, "{heap}: {call} of {name} ({layout:?}) gave a misaligned block");
    assert!(block.len() >= layout.size(), "{heap}: {call} of {name} gave {} bytes", block.len());
    assert!(
        memory.iter().any(|&(from, to)| start >= from && start.checked_add(layout.size()).is_some_and(|end| end <= to)),
        "{heap}: {call} of {name} ({layout:?}) gave a block outside the heap's memory"
    );
}

/// The raw heap's own calls: `allocate`, `region_layout_for`, `grow/shrink/resize_in_place`,
/// `deallocate` with a wrong extreme layout, `block_layout` of far pointers.
fn raw_heap_calls<H: RawHeap>(heap_name: &str, make: fn() -> H, lookup: Option<fn(&H, NonNull<u8>) -> bool>) {
    let memory = memory();
    let span = (memory.as_ptr().addr(), memory.as_ptr().addr() + HEAP_LEN);
    let region =
        NonNull::slice_from_raw_parts(NonNull::new(memory.as_mut_ptr().cast::<u8>()).unwrap(), HEAP_LEN);
    let mut heap = make();
    // SAFETY: leaked memory, handed to this heap only.
    unsafe { heap.add_region(region) }.expect("the heap refused its memory");
    let initial = heap.usage();
    for &(name, size, align) in LAYOUTS {
        let layout = layout_of(size, align);
        match heap.allocate(layout) {
            Ok(block) => {
                assert!(may_fit(size, align), "{heap_name}: {name} ({layout:?}) granted");
                check_block(heap_name, "allocate", name, block, layout, &[span]);
                // SAFETY: just allocated with `layout`.
                unsafe { heap.deallocate(block.cast(), layout) }.expect("a correct free was refused");
            }
            Err(_) => assert_eq!(heap.usage(), initial, "{heap_name}: a refused {name} changed the heap"),
        }
        heap.check_invariants().unwrap_or_else(|e| panic!("{heap_name} after {name}: {e}"));
        // The region a front would ask for: none, or one that really holds the block.
        if let Some(region) = heap.region_layout_for(layout) {
            assert!(
                region.size() >= size && region.align() >= align,
                "{heap_name}: region_layout_for({name}) = {region:?} cannot hold it"
            );
        }
    }
    for &(name, old_size, old_align, new_size) in RESIZES {
        let old = layout_of(old_size, old_align);
        let block = heap.allocate(old).expect("a small block").cast::<u8>();
        // SAFETY: the block is live and holds `old_size` bytes.
        unsafe { block.as_ptr().write_bytes(0x5A, old_size) };
        let before = heap.usage();
        // SAFETY: `block` is live with `old`; `new_size >= old_size`, and rounded up to the
        // alignment it stays within `isize::MAX` (the table's promise).
        let grown = unsafe { heap.grow_in_place(block, old, new_size) };
        assert!(grown.is_err(), "{heap_name}: grow_in_place {name} succeeded");
        // SAFETY: as above.
        let resized = unsafe { heap.resize_in_place(block, old, new_size) };
        assert!(resized.is_err(), "{heap_name}: resize_in_place {name} succeeded");
        assert_eq!(heap.usage(), before, "{heap_name}: a refused resize {name} changed the heap");
        // SAFETY: the block is live and holds `old_size` bytes.
        let kept = unsafe { core::slice::from_raw_parts(block.as_ptr(), old_size) };
        assert!(kept.iter().all(|&b| b == 0x5A), "{heap_name}: a refused resize {name} changed the block");
        // Shrinking to zero bytes keeps a block (or is refused); either way it is freed after.
        // SAFETY: `block` is live with `old`; 0 <= old_size.
        let live = match unsafe { heap.shrink_in_place(block, old, 0) } {
            Ok(()) => layout_of(0, old_align),
            Err(_) => old,
        };
        // Frees with an extreme layout are refused as misuse (the heaps detect a layout whose
        // block cannot be this one), never a panic or an overflow.
        for &(bad, size, align) in LAYOUTS.iter().filter(|&&(_, size, _)| size > HEAP_LEN) {
            // SAFETY: deliberately wrong; the heap refuses before changing anything.
            let refused = unsafe { heap.deallocate(block, layout_of(size, align)) };
            assert!(refused.is_err(), "{heap_name}: freeing a live block as {bad} was accepted");
        }
        // SAFETY: live with `live`.
        unsafe { heap.deallocate(block, live) }.expect("a correct free was refused");
        heap.check_invariants().unwrap_or_else(|e| panic!("{heap_name} after resize {name}: {e}"));
    }
    if let Some(lookup) = lookup {
        for far in [1, 4096, usize::MAX, usize::MAX - 15, usize::MAX / 2 + 1, span.1, span.0.wrapping_sub(16)]
        {
            let ptr = NonNull::new(core::ptr::without_provenance_mut::<u8>(far)).unwrap();
            assert!(!lookup(&heap, ptr), "{heap_name}: block_layout({far:#x}) found a block");
        }
    }
    assert_eq!(heap.usage(), initial, "{heap_name}: the heap was not whole again");
}

/// The front: `GlobalAlloc` (`alloc`, `alloc_zeroed`, `realloc`), `Front` and the growth path
/// (a source that must not be asked for what no region can hold).
fn front_calls<H: RawHeap>(heap_name: &str, make: fn() -> H) {
    let source = CountingSource::leaked();
    let front: LockedHeap<RawSpinlock, H> = LockedHeap::new(make()).with_source(source);
    let memory = memory();
    // The heap's own memory and the source's, which the growth path may have added.
    let spans = [
        (memory.as_ptr().addr(), memory.as_ptr().addr() + HEAP_LEN),
        (source.base.as_ptr().addr(), source.base.as_ptr().addr() + HEAP_LEN),
    ];
    front.add_region(memory).expect("the heap refused its memory");
    let initial = front.stats();
    let mut refusals = 0;
    for &(name, size, align) in LAYOUTS {
        let layout = layout_of(size, align);
        let never_fits = front.lock().region_layout_for(layout).is_none();
        let asked = source.asked.load(Ordering::SeqCst);
        match front.allocate(layout) {
            Ok(block) => {
                assert!(may_fit(size, align), "{heap_name}: Front::allocate granted {name}");
                // SAFETY: just allocated with `layout`.
                unsafe { front.deallocate(block.cast(), layout) };
            }
            Err(_) => refusals += 1,
        }
        if never_fits {
            assert_eq!(
                source.asked.load(Ordering::SeqCst),
                asked,
                "{heap_name}: the source was asked for {name}"
            );
        }
        if size == 0 {
            continue; // `GlobalAlloc` takes no zero sizes
        }
        // SAFETY: non-zero size.
        let block = unsafe { front.alloc(layout) };
        if !block.is_null() {
            assert!(may_fit(size, align), "{heap_name}: alloc granted {name}");
            // SAFETY: allocated just above with `layout`.
            unsafe { front.dealloc(block, layout) };
        } else {
            refusals += 1;
        }
        // SAFETY: non-zero size.
        let zeroed = unsafe { front.alloc_zeroed(layout) };
        if !zeroed.is_null() {
            assert!(may_fit(size, align), "{heap_name}: alloc_zeroed granted {name}");
            // SAFETY: allocated just above with `layout`.
            unsafe { front.dealloc(zeroed, layout) };
        } else {
            refusals += 1;
        }
        front.check_invariants().unwrap_or_else(|e| panic!("{heap_name} front after {name}: {e}"));
    }
    for &(name, old_size, old_align, new_size) in RESIZES {
        let old = layout_of(old_size, old_align);
        // SAFETY: non-zero size.
        let block = unsafe { front.alloc(old) };
        assert!(!block.is_null(), "{heap_name}: no small block");
        check_block(
            heap_name,
            "alloc",
            name,
            NonNull::slice_from_raw_parts(NonNull::new(block).unwrap(), old_size),
            old,
            &spans,
        );
        // SAFETY: the block is live and holds `old_size` bytes.
        unsafe { block.write_bytes(0xA7, old_size) };
        // SAFETY: live with `old`; `new_size` is non-zero and fits `isize` once rounded.
        let moved = unsafe { front.realloc(block, old, new_size) };
        assert!(moved.is_null(), "{heap_name}: realloc {name} succeeded");
        refusals += 1;
        // SAFETY: a failed realloc leaves the block live and unchanged.
        let kept = unsafe { core::slice::from_raw_parts(block, old_size) };
        assert!(kept.iter().all(|&b| b == 0xA7), "{heap_name}: a failed realloc {name} changed the block");
        // SAFETY: as for `realloc`.
        let moved = unsafe { Front::reallocate(&front, NonNull::new(block).unwrap(), old, new_size) };
        assert!(moved.is_err(), "{heap_name}: Front::reallocate {name} succeeded");
        refusals += 1;
        // SAFETY: still live with `old`.
        unsafe { front.dealloc(block, old) };
    }
    front.check_invariants().unwrap();
    let end = front.stats();
    assert_eq!(end.live_allocations, 0, "{heap_name}: blocks left live");
    assert_eq!(end.failed_requests - initial.failed_requests, refusals, "{heap_name}: refusals miscounted");
    // Whatever the growth path added is free again.
    assert_eq!(end.free_bytes, end.total_bytes, "{heap_name}: bytes lost");
}

/// `allocate_unsized` / `deallocate_unsized` (the C-style pair) for heaps that can look a block
/// up by its address.
fn unsized_calls<H: BlockLookup>(heap_name: &str, make: fn() -> H) {
    let front: LockedHeap<RawSpinlock, H> = LockedHeap::new(make());
    front.add_region(memory()).expect("the heap refused its memory");
    for &(name, size, align) in LAYOUTS {
        let layout = layout_of(size, align);
        match front.allocate_unsized(layout) {
            Ok(block) => {
                assert!(may_fit(size, align), "{heap_name}: allocate_unsized granted {name}");
                // SAFETY: allocated by this front just above, not used afterwards.
                unsafe { front.deallocate_unsized(block.cast()) };
            }
            Err(_) => assert!(size != 0 || align > HEAP_LEN, "{heap_name}: allocate_unsized refused {name}"),
        }
    }
    // A zero-size request gets a real block, which a C-style free takes back.
    let block = front.allocate_unsized(layout_of(0, 8)).expect("a zero-size request was refused");
    // SAFETY: allocated by this front just above.
    unsafe { front.deallocate_unsized(block.cast()) };
    front.check_invariants().unwrap();
    let stats = front.stats();
    assert_eq!(
        (stats.live_allocations, stats.requested_bytes),
        (0, 0),
        "{heap_name}: unsized calls left state"
    );
    assert_eq!(stats.free_bytes, stats.total_bytes, "{heap_name}: bytes lost");
}

/// `allocator_api2::Allocator` on the front: grow to extreme layouts (same or larger
/// alignment), shrink to zero bytes, zero-size requests.
#[cfg(feature = "allocator-api2")]
fn allocator_api_calls<H: RawHeap>(heap_name: &str, make: fn() -> H) {
    use allocator_api2::alloc::Allocator;
    let front: LockedHeap<RawSpinlock, H> = LockedHeap::new(make());
    front.add_region(memory()).expect("the heap refused its memory");
    for &(name, size, align) in LAYOUTS {
        let layout = layout_of(size, align);
        if let Ok(block) = Allocator::allocate(&front, layout) {
            assert!(may_fit(size, align), "{heap_name}: Allocator::allocate granted {name}");
            // SAFETY: allocated just above with `layout`.
            unsafe { Allocator::deallocate(&front, block.cast(), layout) };
        }
        let small = Layout::from_size_align(64, 8).unwrap();
        let block = Allocator::allocate(&front, small).expect("a small block").cast::<u8>();
        if size >= 64 {
            // SAFETY: `block` is live with `small`, and `layout.size() >= small.size()`.
            if let Ok(grown) = unsafe { Allocator::grow(&front, block, small, layout) } {
                assert!(may_fit(size, align), "{heap_name}: Allocator::grow to {name} succeeded");
                // SAFETY: the grown block is live with `layout`.
                unsafe { Allocator::deallocate(&front, grown.cast(), layout) };
                continue;
            }
        }
        // SAFETY: the block is live with `small`, and 0 <= 64.
        let shrunk =
            unsafe { Allocator::shrink(&front, block, small, layout_of(0, 8)) }.expect("shrink to 0");
        // SAFETY: live with the zero-size layout.
        unsafe { Allocator::deallocate(&front, shrunk.cast(), layout_of(0, 8)) };
    }
    front.check_invariants().unwrap();
    let stats = front.stats();
    assert_eq!(stats.live_allocations, 0, "{heap_name}: blocks left live");
    assert_eq!(stats.free_bytes, stats.total_bytes, "{heap_name}: bytes lost");
}

#[cfg(not(feature = "allocator-api2"))]
fn allocator_api_calls<H: RawHeap>(_: &str, _: fn() -> H) {}

fn lookup<H: BlockLookup>(heap: &H, ptr: NonNull<u8>) -> bool {
    heap.block_layout(ptr).is_ok()
}

/// Every table through one heap type and its fronts.
fn run_all<H: RawHeap>(name: &str, make: fn() -> H, lookup: Option<fn(&H, NonNull<u8>) -> bool>) {
    raw_heap_calls(name, make, lookup);
    front_calls(name, make);
    allocator_api_calls(name, make);
}

#[test]
fn buddy_default() {
    run_all("BuddyHeap", BuddyHeap::new, Some(lookup::<BuddyHeap>));
    unsized_calls("BuddyHeap", BuddyHeap::new);
}

#[test]
fn buddy_max_order_16() {
    run_all("BuddyHeap<16>", BuddyHeap::<16>::with_orders, Some(lookup::<BuddyHeap<16>>));
    unsized_calls("BuddyHeap<16>", BuddyHeap::<16>::with_orders);
}

#[test]
fn first_fit_every_policy() {
    let policies: [(&str, MakeHeap<FirstFitHeap>); 4] = [
        ("FirstFitHeap(First)", || FirstFitHeap::new(FitPolicy::First)),
        ("FirstFitHeap(Next)", || FirstFitHeap::new(FitPolicy::Next)),
        ("FirstFitHeap(Best)", || FirstFitHeap::new(FitPolicy::Best)),
        ("FirstFitHeap(Worst)", || FirstFitHeap::new(FitPolicy::Worst)),
    ];
    for (name, make) in policies {
        run_all(name, make, None);
    }
}

#[test]
fn tlsf() {
    run_all("TlsfHeap", TlsfHeap::new, Some(lookup::<TlsfHeap>));
    unsized_calls("TlsfHeap", TlsfHeap::new);
}

#[test]
fn counted_layers() {
    run_all("Counted<BuddyHeap>", || Counted::new(BuddyHeap::new()), Some(lookup::<Counted<BuddyHeap>>));
    run_all("Counted<TlsfHeap>", || Counted::new(TlsfHeap::new()), Some(lookup::<Counted<TlsfHeap>>));
    run_all("Counted<FirstFitHeap>", || Counted::new(FirstFitHeap::new(FitPolicy::Best)), None);
    unsized_calls("Counted<TlsfHeap>", || Counted::new(TlsfHeap::new()));
}
