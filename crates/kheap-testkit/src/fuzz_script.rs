//! Operation scripts decoded from arbitrary bytes, run against a heap with every check after
//! every step: what the `fuzz/` targets feed with libFuzzer's inputs, and what
//! `tests/fuzz_scripts.rs` feeds with seeded random bytes on stable Rust.
//!
//! A script allocates any size and alignment (up to the extremes a `Layout` allows), frees,
//! grows and shrinks live blocks, and adds regions that touch the previous one or not. After
//! every step: the heap's `check_invariants()`, the [`Shadow`] model (the block is aligned,
//! inside the heap's memory and disjoint from every live block; counters agree), the byte
//! pattern of every live block, and the free blocks walked against the usage figures. At the
//! end everything is freed and the heap must be whole: all its bytes free, and the same usage
//! as a fresh heap given the same regions in the same order.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::RefCell;
use std::ptr::NonNull;
use std::sync::Mutex;

use kheap::{
    BlockLookup, Counted, Heap, HeapUsage, LockedHeap, MemorySource, Misuse, PartKind, RawHeap, RawSpinlock,
};

use crate::{Arena, Shadow};

/// Bytes of memory a script may hand to its heap, in regions.
pub const SCRIPT_MEMORY: usize = 1 << 20;
/// Alignment of that memory.
const MEMORY_ALIGN: usize = 1 << 16;
/// Steps a script runs at most (the rest of a long input is ignored).
const MAX_STEPS: usize = 400;
/// A region's length is a multiple of this.
const REGION_UNIT: usize = 4096;
const MAX: usize = isize::MAX as usize;

/// The bytes of an input, read front to back; past the end every read is 0.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&first, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        first
    }

    fn u16(&mut self) -> usize {
        usize::from(self.byte()) | usize::from(self.byte()) << 8
    }

    fn u24(&mut self) -> usize {
        self.u16() | usize::from(self.byte()) << 16
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One step of a script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Allocate `size` bytes aligned to `align` (a power of two; the layout may be invalid,
    /// then the step is skipped).
    Allocate {
        /// Bytes asked for.
        size: usize,
        /// Alignment asked for.
        align: usize,
    },
    /// Free the live block at this position (modulo the number of live blocks) in address order.
    Free {
        /// Which live block.
        index: usize,
    },
    /// Resize the live block at this position to `size` bytes (in place for a raw heap,
    /// `realloc` through a front).
    Resize {
        /// Which live block.
        index: usize,
        /// The new size.
        size: usize,
    },
    /// Hand the heap `len` more bytes: right after the previous region when `touching`,
    /// otherwise after a gap of `gap` bytes.
    AddRegion {
        /// Length of the region.
        len: usize,
        /// Whether it starts where the previous one ended.
        touching: bool,
        /// Bytes skipped first when not touching (not a multiple of the granule, sometimes).
        gap: usize,
    },
    /// The alternative calls of each target: a lookup of the block by address (raw heaps),
    /// `alloc_zeroed` or the C-style pair (fronts).
    Other {
        /// Which live block, or a size selector.
        selector: usize,
    },
}

/// A size: small, medium, large, or one of the extremes (near `isize::MAX`, past the heap).
fn size(input: &mut Input) -> usize {
    let class = input.byte();
    match class >> 6 {
        0 => usize::from(input.byte()),
        1 => input.u16() % 4096,
        2 => input.u24() % (SCRIPT_MEMORY / 2),
        _ => match class % 8 {
            0 => MAX,
            1 => MAX - usize::from(input.byte()),
            2 => MAX / 2 + 1,
            3 => MAX / 4 + usize::from(input.byte()),
            4 => SCRIPT_MEMORY + usize::from(input.byte()),
            5 => 1 << (input.byte() % 63).min(usize::BITS as u8 - 2),
            6 => SCRIPT_MEMORY - usize::from(input.byte()),
            _ => 0,
        },
    }
}

/// A power-of-two alignment: mostly small, sometimes up to `1 << (BITS - 1)`.
fn align(input: &mut Input) -> usize {
    let byte = input.byte();
    let shift = match byte {
        0..=199 => byte % 8,
        200..=249 => byte % 17,
        _ => byte % usize::BITS as u8,
    };
    1 << shift
}

/// Decodes a script from arbitrary bytes; every byte string is a script.
pub fn decode(bytes: &[u8]) -> Vec<Op> {
    let mut input = Input(bytes);
    let mut ops = Vec::new();
    while !input.is_empty() && ops.len() < MAX_STEPS {
        let op = match input.byte() % 10 {
            0..=3 => Op::Allocate { size: size(&mut input), align: align(&mut input) },
            4..=5 => Op::Free { index: usize::from(input.byte()) },
            6 => Op::Resize { index: usize::from(input.byte()), size: size(&mut input) },
            7 => {
                let shape = input.byte();
                Op::AddRegion {
                    len: REGION_UNIT * (1 + usize::from(shape % 32)),
                    touching: shape & 0x80 != 0,
                    gap: usize::from(input.byte()) * 8 + REGION_UNIT * usize::from(shape >> 5 & 3),
                }
            }
            _ => Op::Other { selector: usize::from(input.byte()) },
        };
        ops.push(op);
    }
    ops
}

/// Regions carved from one arena, in the order they were handed out.
struct Carver {
    arena: Arena,
    /// `(offset, len)` of every region handed out, in order.
    log: Vec<(usize, usize)>,
    /// Where the last region ended.
    end: usize,
}

impl Carver {
    fn new() -> Self {
        Carver { arena: Arena::new(SCRIPT_MEMORY, MEMORY_ALIGN), log: Vec::new(), end: 0 }
    }

    /// The next region for an [`Op::AddRegion`] (or a first region), if the arena has room.
    fn carve(&mut self, len: usize, touching: bool, gap: usize) -> Option<NonNull<[u8]>> {
        let start = if touching || self.log.is_empty() { self.end } else { self.end + gap };
        if start + len > SCRIPT_MEMORY {
            return None;
        }
        self.end = start + len;
        self.log.push((start, len));
        Some(self.arena.slice(start, len))
    }

    /// A piece for a memory source: at least `layout.size()` bytes from the end of the last
    /// region (touching it), with the bytes skipped for the alignment handed over too.
    fn carve_for(&mut self, layout: Layout) -> Option<NonNull<[u8]>> {
        let base = self.arena.base().as_ptr().addr();
        let aligned = base.checked_add(self.end)?.checked_next_multiple_of(layout.align())? - base;
        let end = aligned.checked_add(layout.size())?.checked_next_multiple_of(REGION_UNIT)?;
        if end > SCRIPT_MEMORY {
            return None;
        }
        let start = self.end;
        self.end = end;
        self.log.push((start, end - start));
        Some(self.arena.slice(start, end - start))
    }
}

/// The checks made after every step: invariants, counters against the model, the walk against
/// the usage figures, and the pattern of every live block.
///
/// `exact_peak`: whether the heap's peak must equal the model's; a front's moving `realloc`
/// holds both blocks for a moment, so its peak may be higher.
fn check_heap<H: RawHeap>(heap: &Counted<H>, shadow: &Shadow, exact_peak: bool, step: usize, op: &Op) {
    if let Err(e) = heap.check_invariants() {
        panic!("step {step} ({op:?}): {e}");
    }
    let stats = heap.stats();
    assert_eq!(stats.live_allocations, shadow.len(), "step {step} ({op:?}): live allocations");
    assert_eq!(stats.requested_bytes, shadow.requested(), "step {step} ({op:?}): requested bytes");
    if exact_peak {
        assert_eq!(stats.peak_requested_bytes, shadow.peak(), "step {step} ({op:?}): peak requested");
    } else {
        assert!(stats.peak_requested_bytes >= shadow.peak(), "step {step} ({op:?}): peak below the model's");
    }
    let (free, largest) = walked_free(heap);
    assert_eq!(free, stats.free_bytes, "step {step} ({op:?}): free blocks walked vs free bytes");
    assert_eq!(largest, stats.largest_free_block, "step {step} ({op:?}): largest free block vs walk");
    shadow.verify_all();
}

/// What a heap's walk shows free: the bytes of its free blocks and cached pieces (which must
/// add up to `usage().free_bytes`) and its largest free block (`usage().largest_free_block`;
/// a piece cached for one size class is no free block). Shared with the conformance suite.
pub(crate) fn walked_free(heap: &impl RawHeap) -> (usize, usize) {
    let (mut free, mut largest) = (0, 0);
    heap.walk(&mut |part| match part.kind {
        PartKind::Free => {
            free += part.len;
            largest = largest.max(part.len);
        }
        PartKind::Cached => free += part.len,
        PartKind::Region | PartKind::Bookkeeping => {}
    });
    (free, largest)
}

/// Whether a refused allocation changed no block: the usage is the same, except that a layer
/// may have handed memory it kept cached (a slab layer's spare slabs) back to the heap below
/// first, which leaves the allocated bytes (`total - free`) as they were, loses nothing and
/// shrinks no free block (`RawHeap` promise 4). Shared by the scripts and the conformance suite.
pub(crate) fn refusal_changed_at_most_the_cache(before: HeapUsage, after: HeapUsage) -> bool {
    let allocated = |u: HeapUsage| u.total_bytes - u.free_bytes;
    after == before
        || (allocated(after) == allocated(before)
            && after.total_bytes > before.total_bytes
            && after.largest_free_block >= before.largest_free_block)
}

/// A refused allocation must be one the heap could not place: no free block is large enough
/// to hold the request wherever it starts.
fn check_refusal(layout: Layout, before: HeapUsage, step: usize) {
    let enough =
        layout.size().max(layout.align()).max(16).checked_mul(2).and_then(|n| n.checked_add(layout.align()));
    if let Some(enough) = enough {
        assert!(
            before.largest_free_block < enough,
            "step {step}: {layout:?} refused with a free block of {}",
            before.largest_free_block
        );
    }
}

/// The end of every script: free everything (in address order), then the heap must hold all
/// its bytes free and look as a fresh heap given the same regions would.
fn check_whole<H: RawHeap>(usage: HeapUsage, make: fn() -> H, carver: &Carver) {
    assert_eq!(usage.free_bytes, usage.total_bytes, "bytes lost after freeing everything: {usage:?}");
    let mut fresh = make();
    for &(offset, len) in &carver.log {
        // SAFETY: the script's heap is no longer used (every block is free and it is not
        // called again); the arena outlives `fresh`, which alone uses it now.
        let _ = unsafe { fresh.add_region(carver.arena.slice(offset, len)) };
    }
    assert_eq!(usage, fresh.usage(), "the heap is not whole: a fresh heap over the same regions differs");
}

/// Runs a script over the default [`Heap`]: with slabs at once when the first byte is even (a
/// script's heap is smaller than `SLABS_FROM`, below which the default heap's small blocks are
/// TLSF's), as it comes otherwise; the script is the bytes after the first.
pub fn run_default_heap(bytes: &[u8]) {
    let script = bytes.get(1..).unwrap_or(&[]);
    match bytes.first().map(|b| b % 2) {
        Some(0) => run_raw(|| Heap::new().with_slabs_from(0), Some(lookup()), script),
        _ => run_raw(Heap::new, Some(lookup()), script),
    }
}

/// Runs a script over a raw heap (wrapped in [`Counted`], whose counters the model checks).
///
/// `lookup` is [`BlockLookup::block_layout`] for heaps that have it; [`Op::Other`] then checks
/// that it finds every live block from its start and no block from inside one.
pub fn run_raw<H: RawHeap>(make: fn() -> H, lookup: Option<Lookup<H>>, bytes: &[u8]) {
    let ops = decode(bytes);
    let mut carver = Carver::new();
    let mut heap = Counted::new(make());
    let mut shadow = Shadow::new();
    let first = carver.carve(64 * 1024, true, 0).expect("the arena holds a first region");
    // SAFETY: the arena outlives the heap (dropped at the end of this function, after it) and
    // only the heap uses the region.
    unsafe { heap.add_region(first) }.expect("a fresh heap refused 64 KiB");
    shadow.add_region(first);
    check_heap(&heap, &shadow, true, 0, &Op::Free { index: 0 });
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Allocate { size, align } => {
                let Ok(layout) = Layout::from_size_align(size, align) else { continue };
                let before = heap.usage();
                match heap.allocate(layout) {
                    Ok(block) => {
                        assert!(block.len() >= size, "step {step}: usable size {} below {size}", block.len());
                        shadow.allocated(block.cast(), layout);
                    }
                    Err(_) => {
                        let after = heap.usage();
                        assert!(
                            refusal_changed_at_most_the_cache(before, after),
                            "step {step}: a refused allocation changed the heap: {before:?} -> {after:?}"
                        );
                        check_refusal(layout, after, step);
                    }
                }
            }
            Op::Free { index } => {
                let Some((ptr, _)) = pick(&shadow, index) else { continue };
                let layout = shadow.freed(ptr);
                // SAFETY: the model holds only live blocks of this heap, with their layouts.
                if let Err(misuse) = unsafe { heap.deallocate(ptr, layout) } {
                    panic!("step {step}: a correct free was refused: {misuse}");
                }
            }
            Op::Resize { index, size } => {
                let Some((ptr, old)) = pick(&shadow, index) else { continue };
                // The contract's bound: rounded up to the alignment, within `isize::MAX`.
                let size = size.min(MAX - (old.align() - 1));
                let before = heap.usage();
                // SAFETY: `ptr` is live with `old`; `size` obeys the bound above.
                match unsafe { heap.resize_in_place(ptr, old, size) } {
                    Ok(()) => shadow.resized(ptr, size),
                    Err(_) => {
                        assert_eq!(heap.usage(), before, "step {step}: a refused resize changed the heap")
                    }
                }
            }
            Op::AddRegion { len, touching, gap } => {
                let Some(region) = carver.carve(len, touching, gap) else { continue };
                let before = heap.usage();
                // SAFETY: a fresh part of the arena, which outlives the heap; only it uses it.
                match unsafe { heap.add_region(region) } {
                    Ok(_) => shadow.add_region(region),
                    Err(e) => {
                        assert_eq!(heap.usage(), before, "step {step}: a refused region changed the heap");
                        assert!(len < H::MIN_REGION * 2, "step {step}: a {len}-byte region refused: {e:?}");
                    }
                }
            }
            Op::Other { selector } => {
                let (Some(lookup), Some((ptr, layout))) = (lookup, pick(&shadow, selector)) else { continue };
                let found = lookup(heap.inner(), ptr)
                    .unwrap_or_else(|m| panic!("step {step}: a live block was not found: {m}"));
                assert!(
                    found.size() >= layout.size(),
                    "step {step}: block_layout gave {found:?} for a block allocated as {layout:?}"
                );
                if found.size() > 16 {
                    let inside = ptr.map_addr(|a| a.checked_add(16).expect("inside a live block"));
                    assert!(
                        lookup(heap.inner(), inside).is_err(),
                        "step {step}: an interior pointer was found"
                    );
                }
            }
        }
        check_heap(&heap, &shadow, true, step + 1, op);
    }
    for (ptr, _) in shadow.all() {
        let layout = shadow.freed(ptr);
        // SAFETY: live with this layout.
        unsafe { heap.deallocate(ptr, layout) }.expect("a correct free was refused");
    }
    check_heap(&heap, &shadow, true, ops.len() + 1, &Op::Free { index: 0 });
    heap.trim();
    check_heap(&heap, &shadow, true, ops.len() + 2, &Op::Free { index: 0 });
    check_whole(heap.usage(), make, &carver);
}

/// A heap's lookup of a block by its address.
pub type Lookup<H> = fn(&H, NonNull<u8>) -> Result<Layout, Misuse>;

/// [`BlockLookup::block_layout`] as a [`Lookup`].
pub fn lookup<H: BlockLookup>() -> Lookup<H> {
    |heap, ptr| heap.block_layout(ptr)
}

fn pick(shadow: &Shadow, index: usize) -> Option<(NonNull<u8>, Layout)> {
    (!shadow.is_empty()).then(|| shadow.nth(index % shadow.len()).expect("in range"))
}

/// A memory source over the running script's arena: each thread's scripts share one (leaked
/// once per thread, since a front wants a `'static` source), pointed at the script's carver
/// while it runs.
struct ScriptSource {
    carver: Mutex<Option<NonNull<RefCell<Carver>>>>,
}

// SAFETY: the pointer is only set and used by the thread that owns the source (thread-local),
// while the carver it points to is alive (`run_locked` clears it before the carver drops).
unsafe impl Sync for ScriptSource {}
// SAFETY: as above.
unsafe impl Send for ScriptSource {}

// SAFETY: pieces are carved from the script's arena, which outlives the heap (1); the carver
// hands each byte out once (2).
unsafe impl MemorySource for ScriptSource {
    fn acquire(&self, layout: Layout) -> Option<NonNull<[u8]>> {
        let carver = (*self.carver.lock().expect("source lock"))?;
        // SAFETY: the carver is alive while set (see `Sync`), and no borrow of it is held
        // while the front runs.
        unsafe { carver.as_ref() }.borrow_mut().carve_for(layout)
    }
}

thread_local! {
    static SOURCE: &'static ScriptSource = Box::leak(Box::new(ScriptSource { carver: Mutex::new(None) }));
}

/// The front the scripts drive.
pub type ScriptFront<H> = LockedHeap<RawSpinlock, H>;

/// `LockedHeap::allocate_unsized` of a script's front.
pub type AllocateUnsized<H> = fn(&ScriptFront<H>, Layout) -> Option<NonNull<[u8]>>;

/// The C-style pair of a front whose heap can look blocks up.
pub struct CStyle<H: RawHeap> {
    /// `LockedHeap::allocate_unsized`.
    pub allocate: AllocateUnsized<H>,
    /// `LockedHeap::deallocate_unsized`.
    pub deallocate: unsafe fn(&ScriptFront<H>, NonNull<u8>),
}

/// The C-style pair for a heap with [`BlockLookup`].
pub fn c_style<H: BlockLookup>() -> CStyle<H> {
    CStyle {
        allocate: |front, layout| front.allocate_unsized(layout).ok(),
        // SAFETY: the caller's obligation (the block came from `allocate_unsized`) is passed on.
        deallocate: |front, ptr| unsafe { front.deallocate_unsized(ptr) },
    }
}

fn unexpected_misuse(misuse: &Misuse) {
    panic!("a correct call was reported as misuse: {misuse}");
}

/// Runs a script through a [`LockedHeap`] as `GlobalAlloc` (`alloc`, `dealloc`, `realloc`,
/// `alloc_zeroed`), growing from a memory source that carves touching pieces of the arena,
/// with the C-style pair for heaps that have one.
pub fn run_locked<H: RawHeap>(make: fn() -> H, c_style: Option<CStyle<H>>, bytes: &[u8]) {
    let ops = decode(bytes);
    let carver = RefCell::new(Carver::new());
    let source = SOURCE.with(|s| *s);
    *source.carver.lock().expect("source lock") = Some(NonNull::from(&carver));
    let front: LockedHeap<RawSpinlock, H> =
        LockedHeap::new(make()).with_source(source).on_misuse(unexpected_misuse);
    let mut shadow = Shadow::new();
    // Blocks from the C-style pair, freed with it (by address).
    let mut unsized_blocks = std::collections::BTreeSet::new();
    let sync_spans = |shadow: &mut Shadow, known: &mut usize| {
        let carver = carver.borrow();
        for &(offset, len) in &carver.log[*known..] {
            shadow.add_region(carver.arena.slice(offset, len));
        }
        *known = carver.log.len();
    };
    let mut known = 0;
    let check = |shadow: &Shadow, step: usize, op: &Op| check_heap(&front.lock(), shadow, false, step, op);
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Allocate { size, align } => {
                let Ok(layout) = Layout::from_size_align(size, align) else { continue };
                if size == 0 {
                    continue; // `GlobalAlloc` takes no zero sizes
                }
                // SAFETY: a valid layout of non-zero size.
                let block = unsafe { front.alloc(layout) };
                sync_spans(&mut shadow, &mut known);
                match NonNull::new(block) {
                    Some(block) => shadow.allocated(block, layout),
                    // Refused after every growth the source allowed: no free block holds it.
                    None => check_refusal(layout, front.lock().usage(), step),
                }
            }
            Op::Free { index } => {
                let Some((ptr, layout)) = pick(&shadow, index) else { continue };
                shadow.freed(ptr);
                if unsized_blocks.remove(&ptr.addr()) {
                    let c = c_style.as_ref().expect("unsized blocks come from the C-style pair");
                    // SAFETY: allocated by `allocate_unsized` of this front and forgotten by the model.
                    unsafe { (c.deallocate)(&front, ptr) };
                } else {
                    // SAFETY: live with `layout`, allocated by this front.
                    unsafe { front.dealloc(ptr.as_ptr(), layout) };
                }
            }
            Op::Resize { index, size } => {
                let Some((ptr, old)) = pick(&shadow, index) else { continue };
                if unsized_blocks.contains(&ptr.addr()) {
                    continue;
                }
                let size = size.clamp(1, MAX - (old.align() - 1));
                // SAFETY: live with `old`; `size` is non-zero and fits `isize` once rounded.
                let moved = unsafe { front.realloc(ptr.as_ptr(), old, size) };
                sync_spans(&mut shadow, &mut known);
                if let Some(moved) = NonNull::new(moved) {
                    shadow.moved(ptr, moved, size);
                }
            }
            Op::AddRegion { len, touching, gap } => {
                let Some(region) = carver.borrow_mut().carve(len, touching, gap) else { continue };
                known += 1;
                // SAFETY: a fresh part of the arena, which outlives the front; only it uses it.
                if unsafe { front.add_region_raw(region.cast::<u8>().as_ptr(), len) }.is_ok() {
                    shadow.add_region(region);
                }
            }
            Op::Other { selector } => match &c_style {
                Some(c) if selector % 2 == 0 => {
                    let layout = Layout::from_size_align(selector * 8, 1 << (selector % 7)).expect("small");
                    let block = (c.allocate)(&front, layout);
                    sync_spans(&mut shadow, &mut known);
                    if let Some(block) = block {
                        // The front counts the whole usable size as requested.
                        let whole = Layout::from_size_align(block.len(), layout.align()).expect("usable");
                        shadow.allocated(block.cast(), whole);
                        unsized_blocks.insert(block.cast::<u8>().addr());
                    }
                }
                _ => {
                    let layout = Layout::from_size_align(1 + selector * 24, 8).expect("small");
                    // SAFETY: non-zero size.
                    let block = unsafe { front.alloc_zeroed(layout) };
                    sync_spans(&mut shadow, &mut known);
                    let Some(block) = NonNull::new(block) else { continue };
                    // SAFETY: the front handed out `layout.size()` bytes at `block`.
                    let bytes = unsafe { std::slice::from_raw_parts(block.as_ptr(), layout.size()) };
                    assert!(bytes.iter().all(|&b| b == 0), "step {step}: alloc_zeroed gave non-zero bytes");
                    shadow.allocated(block, layout);
                }
            },
        }
        check(&shadow, step + 1, op);
    }
    for (ptr, layout) in shadow.all() {
        shadow.freed(ptr);
        if unsized_blocks.remove(&ptr.addr()) {
            let c = c_style.as_ref().expect("unsized blocks come from the C-style pair");
            // SAFETY: allocated by `allocate_unsized` of this front and forgotten by the model.
            unsafe { (c.deallocate)(&front, ptr) };
        } else {
            // SAFETY: live with `layout`.
            unsafe { front.dealloc(ptr.as_ptr(), layout) };
        }
    }
    check(&shadow, ops.len() + 1, &Op::Free { index: 0 });
    *source.carver.lock().expect("source lock") = None;
    front.trim();
    let usage = front.lock().usage();
    drop(front);
    check_whole(usage, make, &carver.borrow());
}
