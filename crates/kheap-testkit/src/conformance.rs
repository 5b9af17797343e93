//! One suite of checks, run over every heap algorithm and configuration.
//!
//! Each function builds a fresh heap with `make`, gives it an [`Arena`], and panics (naming
//! the block, the layout and, for random scripts, the seed) when the heap breaks its contract.

use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;

use kheap::{
    Counted, Front, HeapStats, HeapUsage, LockedHeap, MemorySource, PartKind, RawHeap, RawSpinlock,
    RegionError,
};

use crate::fuzz_script::refusal_changed_at_most_the_cache;
use crate::{Arena, Rng, SeedReport, Shadow};

/// Size of the arena most checks use.
pub const ARENA_LEN: usize = 1 << 20;
/// Alignment of that arena: the largest alignment the suite asks for.
pub const ARENA_ALIGN: usize = 64 * 1024;

/// What the suite allows for in a layer that guards its blocks (a debug layer): the bytes a
/// block takes beyond its size, and the blocks it holds back after their free (a quarantine).
/// Algorithms and plain layers have [`Guards::none`].
pub struct Guards<H> {
    /// Bytes a block for the layout takes from free memory beyond its size (header, red
    /// zones, padding), so "a request succeeds iff a free block can hold it" counts them.
    pub bytes: fn(&H, Layout) -> usize,
    /// Gives every held-back block to the heap below, before the suite compares the heap with
    /// its initial state (everything freed leaves the heap whole once the blocks are back).
    pub settle: fn(&mut H),
}

impl<H> Guards<H> {
    /// No guard bytes, nothing held back.
    pub fn none() -> Self {
        Guards { bytes: |_, _| 0, settle: |_| {} }
    }

    /// Whether the layer adds nothing.
    fn is_none(&self, heap: &H) -> bool {
        (self.bytes)(heap, Layout::new::<u8>()) == 0
    }
}

/// A heap under test with its memory and its shadow.
pub struct Fixture<H> {
    /// The heap, counted so that its statistics can be checked against the model.
    pub heap: Counted<H>,
    /// Its model.
    pub shadow: Shadow,
    /// Its memory (declared last: dropped after the heap).
    pub arena: Arena,
}

impl<H: RawHeap> Fixture<H> {
    /// A heap given one arena of `len` bytes.
    pub fn new(make: fn() -> H, len: usize) -> Self {
        let arena = Arena::new(len, ARENA_ALIGN);
        let mut heap = Counted::new(make());
        let mut shadow = Shadow::new();
        // SAFETY: the arena is valid until the fixture drops, after the heap, and only the
        // heap uses it.
        unsafe { heap.add_region(arena.region()) }.expect("heap refused a 1 MiB arena");
        shadow.add_region(arena.region());
        Fixture { heap, shadow, arena }
    }

    /// Allocates through the heap and checks the result against the model.
    pub fn allocate(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        let block = self.heap.allocate(layout).ok()?;
        assert!(block.len() >= layout.size(), "usable size {} below the request {layout:?}", block.len());
        let ptr = block.cast::<u8>();
        self.shadow.allocated(ptr, layout);
        Some(ptr)
    }

    /// Allocates as a front does: through the heap's fast path
    /// ([`RawHeap::allocate_fast`]), and through `allocate` when the fast path declines; checks
    /// the result against the model either way.
    pub fn allocate_fast(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        let before = self.heap.stats();
        let Some(block) = self.heap.allocate_fast(layout) else {
            assert_eq!(self.heap.stats(), before, "a declined fast allocation changed the heap");
            return self.allocate(layout);
        };
        assert!(block.len() >= layout.size(), "usable size {} below the request {layout:?}", block.len());
        let ptr = block.cast::<u8>();
        self.shadow.allocated(ptr, layout);
        Some(ptr)
    }

    /// Frees a block the model knows.
    pub fn free(&mut self, ptr: NonNull<u8>) {
        let layout = self.shadow.freed(ptr);
        // SAFETY: the model only holds live allocations of this heap, with their layouts.
        if let Err(misuse) = unsafe { self.heap.deallocate(ptr, layout) } {
            panic!("a correct free was refused: {misuse}");
        }
    }

    /// Frees a block the model knows as a front does: through the heap's fast path
    /// ([`RawHeap::deallocate_fast`]), and through `deallocate` when the fast path declines.
    pub fn free_fast(&mut self, ptr: NonNull<u8>) {
        let layout = self.shadow.freed(ptr);
        // SAFETY: the model only holds live allocations of this heap, with their layouts.
        if unsafe { self.heap.deallocate_fast(ptr, layout) } {
            return;
        }
        // SAFETY: as above; a declined fast free changed nothing.
        if let Err(misuse) = unsafe { self.heap.deallocate(ptr, layout) } {
            panic!("a correct free was refused after the fast path declined it: {misuse}");
        }
    }

    /// Gives every block a guarding layer holds back to the heap below.
    pub fn settle(&mut self, guards: &Guards<H>) {
        (guards.settle)(self.heap.inner_mut());
        self.heap.trim();
    }

    /// Frees every live block in a seeded random order.
    pub fn free_all(&mut self, rng: &mut Rng) {
        let mut all = self.shadow.all();
        rng.shuffle(&mut all);
        for (ptr, _) in all {
            self.free(ptr);
        }
    }

    /// The end of a seeded script: frees every live block in a random order, then checks that
    /// the heap (once a guarding layer gave its held blocks back) is as it was at the start,
    /// `initial`: no byte lost, no free block left split.
    pub fn free_all_and_assert_whole(
        &mut self,
        rng: &mut Rng,
        guards: &Guards<H>,
        initial: HeapStats,
        seed: u64,
    ) {
        self.free_all(rng);
        self.check();
        self.settle(guards);
        assert_eq!(self.heap.stats().free_bytes, initial.free_bytes, "bytes lost by seed {seed}");
        assert_eq!(
            self.heap.stats().largest_free_block,
            initial.largest_free_block,
            "heap left split by seed {seed}"
        );
    }

    /// Runs the heap's invariant walker and compares its counters with the model.
    pub fn check(&self) {
        if let Err(e) = self.heap.check_invariants() {
            panic!("{e}");
        }
        let stats = self.heap.stats();
        assert_eq!(stats.live_allocations, self.shadow.len(), "live allocation count");
        assert_eq!(stats.requested_bytes, self.shadow.requested(), "requested bytes");
        assert!(stats.allocated_bytes >= stats.requested_bytes, "allocated below requested: {stats:?}");
        assert_eq!(stats.free_bytes, stats.total_bytes - stats.allocated_bytes, "free bytes");
        assert_eq!(stats.peak_requested_bytes, self.shadow.peak(), "peak requested bytes");
        let (free, largest) = crate::fuzz_script::walked_free(&self.heap);
        assert_eq!(free, stats.free_bytes, "free blocks walked disagree with free bytes");
        assert_eq!(largest, stats.largest_free_block, "largest free block disagrees with the walk");
    }
}

/// Stats without the two history counters (failures, peak), to compare a heap's state before
/// and after calls that should leave it as it was.
fn without_failures(stats: HeapStats) -> HeapStats {
    HeapStats { failed_requests: 0, peak_requested_bytes: 0, ..stats }
}

/// Allocations at every power-of-two alignment from 1 byte to 64 KiB, at several sizes, are
/// aligned, disjoint and inside the heap; freeing them restores the heap.
pub fn every_alignment_is_honoured<H: RawHeap>(make: fn() -> H) {
    every_alignment_is_honoured_with(make, &Guards::none());
}

/// [`every_alignment_is_honoured`], allowing for `guards` (whose padding to a 64 KiB
/// alignment needs four times the memory).
pub fn every_alignment_is_honoured_with<H: RawHeap>(make: fn() -> H, guards: &Guards<H>) {
    let len = if guards.is_none(&make()) { ARENA_LEN } else { 4 * ARENA_LEN };
    let mut f = Fixture::new(make, len);
    let initial = f.heap.stats();
    for shift in 0..=16 {
        let align = 1usize << shift;
        for size in [1, 7, align / 2, align, align + 1, 3 * align / 2] {
            let layout = Layout::from_size_align(size.max(1), align).unwrap();
            let ptr = f.allocate(layout).unwrap_or_else(|| panic!("no block for {layout:?}"));
            assert_eq!(ptr.as_ptr().addr() % align, 0);
        }
        f.check();
        f.free_all(&mut Rng::new(shift));
    }
    f.check();
    f.settle(guards);
    assert_eq!(without_failures(f.heap.stats()), without_failures(initial), "heap not restored");
}

/// Requests from 1 byte to past the whole heap: a request succeeds whenever the largest free
/// block can hold it, and one larger than the heap fails without panicking or changing it.
pub fn every_size_up_to_the_whole_heap<H: RawHeap>(make: fn() -> H) {
    every_size_up_to_the_whole_heap_with(make, &Guards::none());
}

/// A refused allocation changes nothing but, at most, a layer's cache handed back
/// ([`refusal_changed_at_most_the_cache`]), and no caller figure.
fn assert_refusal_changed_at_most_the_cache(before: HeapStats, after: HeapStats) {
    let usage = |s: HeapStats| HeapUsage {
        total_bytes: s.total_bytes,
        free_bytes: s.free_bytes,
        largest_free_block: s.largest_free_block,
    };
    assert!(
        refusal_changed_at_most_the_cache(usage(before), usage(after)),
        "refused call changed the heap: {before:?} -> {after:?}"
    );
    let caller =
        |s: HeapStats| (s.requested_bytes, s.peak_requested_bytes, s.live_allocations, s.grown_requests);
    assert_eq!(caller(after), caller(before), "refused call changed the caller's figures");
}

/// [`every_size_up_to_the_whole_heap`], allowing for `guards`.
pub fn every_size_up_to_the_whole_heap_with<H: RawHeap>(make: fn() -> H, guards: &Guards<H>) {
    let mut f = Fixture::new(make, ARENA_LEN);
    let initial = f.heap.stats();
    let mut sizes: Vec<usize> = (1..=64).collect();
    let mut p = 128;
    while p <= 2 * ARENA_LEN {
        sizes.extend([p - 1, p, p + 1]);
        p *= 2;
    }
    sizes.push(initial.largest_free_block);
    sizes.push(initial.total_bytes);
    for size in sizes {
        let layout = Layout::from_size_align(size, 1).unwrap();
        let before = f.heap.stats();
        match f.allocate(layout) {
            Some(ptr) => {
                f.check();
                f.free(ptr);
            }
            None => {
                let needs = size + (guards.bytes)(f.heap.inner(), layout);
                assert!(
                    needs > before.largest_free_block,
                    "{size} bytes ({needs} with guards) refused with a free block of {}",
                    before.largest_free_block
                );
                let after = f.heap.stats();
                assert_eq!(after.failed_requests, before.failed_requests + 1, "failure not counted");
                assert_refusal_changed_at_most_the_cache(before, after);
            }
        }
        f.check();
    }
    f.settle(guards);
    assert_eq!(without_failures(f.heap.stats()), without_failures(initial));
}

/// Fills the heap with equal blocks until it refuses one, then frees everything in random
/// order: the heap must come back to exactly its initial free bytes and largest free block.
pub fn exhaust_then_free_everything<H: RawHeap>(make: fn() -> H) {
    exhaust_then_free_everything_with(make, &Guards::none());
}

/// [`exhaust_then_free_everything`], allowing for `guards`.
pub fn exhaust_then_free_everything_with<H: RawHeap>(make: fn() -> H, guards: &Guards<H>) {
    let mut f = Fixture::new(make, ARENA_LEN);
    let initial = f.heap.stats();
    for (seed, size) in [(1, 16), (2, 24), (3, 100), (4, 512), (5, 4000), (6, 65536)] {
        let _report = SeedReport { label: "exhaust_then_free_everything", seed };
        let layout = Layout::from_size_align(size, 8).unwrap();
        let mut count = 0;
        while f.allocate(layout).is_some() {
            count += 1;
        }
        assert!(count > 0, "no block of {size} bytes at all");
        let full = f.heap.stats();
        let needs = size + (guards.bytes)(f.heap.inner(), layout);
        assert!(
            full.largest_free_block < needs,
            "refused {size} bytes ({needs} with guards) with a free block of {}",
            full.largest_free_block
        );
        f.check();
        f.free_all(&mut Rng::new(seed));
        f.check();
        f.settle(guards);
        let now = f.heap.stats();
        assert_eq!(now.free_bytes, initial.free_bytes, "bytes lost after {count} blocks of {size}");
        assert_eq!(now.largest_free_block, initial.largest_free_block, "heap left split after {size}");
    }
}

/// A free block this large can hold `layout` in any heap here, guards included: a request the
/// heap refuses must have found a smaller largest free block.
fn always_fits<H>(heap: &H, layout: Layout, guards: &Guards<H>) -> usize {
    2 * layout.size().max(layout.align()).max(16) + layout.align() + 2 * (guards.bytes)(heap, layout)
}

fn random_layout(rng: &mut Rng) -> Layout {
    let size = match rng.range(0..=99) {
        0..=69 => rng.range(1..=64),
        70..=94 => rng.range(65..=2048),
        _ => rng.range(2049..=32768),
    };
    let align = match rng.range(0..=99) {
        0..=79 => 1 << rng.range(0..=4),
        80..=94 => 1 << rng.range(5..=12),
        _ => 1 << rng.range(13..=16),
    };
    Layout::from_size_align(size, align).unwrap()
}

/// Seeded scripts of allocations, frees and in-place resizes, checked against the shadow
/// model with `check_invariants()` after every step.
pub fn random_scripts<H: RawHeap>(make: fn() -> H) {
    random_scripts_with(make, &Guards::none());
}

/// [`random_scripts`], allowing for `guards`.
pub fn random_scripts_with<H: RawHeap>(make: fn() -> H, guards: &Guards<H>) {
    let default_seeds = if cfg!(miri) { 1 } else { 12 };
    let seeds: u64 =
        std::env::var("KHEAP_SCRIPT_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default_seeds);
    for seed in 0..seeds {
        let _report = SeedReport { label: "random_scripts", seed };
        let mut rng = Rng::new(seed);
        let mut f = Fixture::new(make, ARENA_LEN);
        let initial = f.heap.stats();
        // Miri runs the same script, shorter.
        for _ in 0..if cfg!(miri) { 150 } else { 1500 } {
            match rng.range(0..=99) {
                0..=49 => {
                    let layout = random_layout(&mut rng);
                    let before = f.heap.stats();
                    // Half the allocations go the way a front sends them: the fast path first.
                    let block =
                        if rng.range(0..=1) == 0 { f.allocate(layout) } else { f.allocate_fast(layout) };
                    if block.is_none() {
                        // Any heap here can place `layout` in a free block this large.
                        let enough = always_fits(f.heap.inner(), layout, guards);
                        assert!(
                            before.largest_free_block < enough,
                            "{layout:?} refused with a free block of {}",
                            before.largest_free_block
                        );
                    }
                }
                50..=84 if !f.shadow.is_empty() => {
                    let (ptr, _) = f.shadow.nth(rng.range(0..=f.shadow.len() - 1)).unwrap();
                    // Half the frees go the way a front sends them: the fast path first.
                    if rng.range(0..=1) == 0 {
                        f.free(ptr);
                    } else {
                        f.free_fast(ptr);
                    }
                }
                85..=99 if !f.shadow.is_empty() => {
                    let (ptr, layout) = f.shadow.nth(rng.range(0..=f.shadow.len() - 1)).unwrap();
                    let new_size = rng.range(1..=layout.size() * 2);
                    // SAFETY: `ptr` is live with `layout`; `new_size` is small.
                    let resized = unsafe { f.heap.resize_in_place(ptr, layout, new_size) };
                    if resized.is_ok() {
                        f.shadow.resized(ptr, new_size);
                    }
                }
                _ => {}
            }
            f.check();
        }
        f.free_all_and_assert_whole(&mut rng, guards, initial, seed);
    }
}

/// Seeded scripts of batch allocations and batch frees (what a per-CPU cache does), mixed
/// with single calls, checked against the shadow model: a batch hands out as many distinct,
/// aligned blocks as it reports (at least one while a free block can hold the layout), a batch
/// free returns every block, and the statistics count each block once.
pub fn batches_agree_with_the_shadow_model<H: RawHeap>(make: fn() -> H) {
    batches_agree_with_the_shadow_model_with(make, &Guards::none());
}

/// [`batches_agree_with_the_shadow_model`], allowing for `guards`.
pub fn batches_agree_with_the_shadow_model_with<H: RawHeap>(make: fn() -> H, guards: &Guards<H>) {
    let seeds = if cfg!(miri) { 1 } else { 6 };
    for seed in 0..seeds {
        let _report = SeedReport { label: "batches", seed };
        let mut rng = Rng::new(seed);
        let mut f = Fixture::new(make, ARENA_LEN);
        let initial = f.heap.stats();
        let mut out = [NonNull::dangling(); 48];
        for _ in 0..if cfg!(miri) { 40 } else { 400 } {
            match rng.range(0..=99) {
                0..=44 => {
                    let layout = random_layout(&mut rng);
                    let wanted = rng.range(1..=out.len());
                    let before = f.heap.stats();
                    let count = f.heap.allocate_batch(layout, &mut out[..wanted]);
                    assert!(count <= wanted, "{count} blocks written to a batch of {wanted}");
                    for &ptr in &out[..count] {
                        f.shadow.allocated(ptr, layout);
                    }
                    if count == 0 {
                        assert_refusal_changed_at_most_the_cache(before, f.heap.stats());
                        let enough = always_fits(f.heap.inner(), layout, guards);
                        assert!(
                            before.largest_free_block < enough,
                            "{layout:?} batch empty with a free block of {}",
                            before.largest_free_block
                        );
                    }
                }
                45..=59 => {
                    let _ = f.allocate(random_layout(&mut rng));
                }
                60..=84 if !f.shadow.is_empty() => {
                    // A batch of the live blocks that share a layout with a random one.
                    let (_, layout) = f.shadow.nth(rng.range(0..=f.shadow.len() - 1)).unwrap();
                    let mut same: Vec<NonNull<u8>> =
                        f.shadow.all().into_iter().filter(|&(_, l)| l == layout).map(|(p, _)| p).collect();
                    rng.shuffle(&mut same);
                    same.truncate(rng.range(1..=same.len()));
                    for &ptr in &same {
                        assert_eq!(f.shadow.freed(ptr), layout);
                    }
                    // SAFETY: distinct live blocks of the heap, each allocated with `layout`.
                    let (refused, misuse) = unsafe { f.heap.deallocate_batch(&same, layout) };
                    assert_eq!(refused, 0, "a correct batch free was refused: {misuse:?}");
                    assert!(misuse.is_none());
                }
                85..=99 if !f.shadow.is_empty() => {
                    let (ptr, _) = f.shadow.nth(rng.range(0..=f.shadow.len() - 1)).unwrap();
                    f.free(ptr);
                }
                _ => {}
            }
            f.check();
        }
        f.free_all_and_assert_whole(&mut rng, guards, initial, seed);
    }
}

/// Shrinking in place returns memory (or is refused, changing nothing, where the heap prefers
/// the block moved); growing in place works when the space after the block is free; contents
/// are kept either way.
pub fn resize_in_place<H: RawHeap>(make: fn() -> H) {
    let mut f = Fixture::new(make, ARENA_LEN);
    let layout = Layout::from_size_align(4096, 16).unwrap();
    let ptr = f.allocate(layout).unwrap();
    let allocated = f.heap.stats().allocated_bytes;
    let before = f.heap.stats();
    // SAFETY: `ptr` is live with `layout` and 100 <= 4096.
    if unsafe { f.heap.shrink_in_place(ptr, layout, 100) }.is_err() {
        assert_eq!(f.heap.stats(), before, "a refused shrink changed the heap");
        f.check();
        f.free(ptr);
        f.check();
        return;
    }
    f.shadow.resized(ptr, 100);
    f.check();
    assert!(f.heap.stats().allocated_bytes < allocated, "shrinking returned no memory");
    let small = Layout::from_size_align(100, 16).unwrap();
    // SAFETY: `ptr` is live with `small`, and 4096 >= 100.
    unsafe { f.heap.grow_in_place(ptr, small, 4096) }.expect("grow into the just-freed tail refused");
    f.shadow.resized(ptr, 4096);
    f.check();
    assert_eq!(f.heap.stats().allocated_bytes, allocated);
    f.free(ptr);
    f.check();
}

/// `LockedHeap::realloc` keeps contents when it grows or shrinks, in place or by moving.
pub fn realloc_preserves_contents<H: RawHeap>(make: fn() -> H) {
    let locked: LockedHeap<RawSpinlock, H> = LockedHeap::new(make());
    let arena = Arena::new(ARENA_LEN, ARENA_ALIGN);
    let mut shadow = Shadow::new();
    shadow.add_region(arena.region());
    locked.add_region(arena.leak()).expect("region refused");
    let mut rng = Rng::new(7);
    let mut blocks = Vec::new();
    for _ in 0..40 {
        let layout = Layout::from_size_align(rng.range(1..=300), 8).unwrap();
        // SAFETY: non-zero size.
        let ptr = NonNull::new(unsafe { locked.alloc(layout) }).expect("alloc");
        shadow.allocated(ptr, layout);
        blocks.push(ptr);
    }
    for round in 0..400 {
        let i = rng.range(0..=blocks.len() - 1);
        let (ptr, layout) = shadow.all().into_iter().find(|(p, _)| *p == blocks[i]).unwrap();
        let new_size = if round % 2 == 0 { rng.range(1..=8000) } else { rng.range(1..=layout.size()) };
        // SAFETY: `ptr` is live with `layout`; `new_size` is non-zero and small.
        let new = NonNull::new(unsafe { locked.realloc(ptr.as_ptr(), layout, new_size) }).expect("realloc");
        shadow.moved(ptr, new, new_size);
        blocks[i] = new;
        locked.check_invariants().unwrap();
    }
    for (ptr, _) in shadow.all() {
        let layout = shadow.freed(ptr);
        // SAFETY: live with this layout.
        unsafe { locked.dealloc(ptr.as_ptr(), layout) };
    }
    assert_eq!(locked.stats().live_allocations, 0);
}

/// Null, too small, misaligned-beyond-use, overlapping and oversized regions are refused with
/// the right [`RegionError`]; impossible layouts fail with `AllocError`; none of it changes the
/// heap.
pub fn bad_input_is_refused<H: RawHeap>(make: fn() -> H) {
    bad_input_is_refused_with(make, &Guards::none());
}

/// [`bad_input_is_refused`], allowing for `guards`.
pub fn bad_input_is_refused_with<H: RawHeap>(make: fn() -> H, guards: &Guards<H>) {
    let locked: LockedHeap<RawSpinlock, H> = LockedHeap::new(make());
    let arena = Arena::new(ARENA_LEN, ARENA_ALIGN);
    let base = arena.base().as_ptr();
    let first = arena.slice(ARENA_LEN / 2, ARENA_LEN / 2);
    // SAFETY: the arena outlives `locked` within this function and only the heap uses it.
    unsafe { locked.add_region_raw(first.cast::<u8>().as_ptr(), first.len()) }.unwrap();
    let before = locked.stats();
    let check_unchanged = || {
        locked.check_invariants().unwrap();
        assert_eq!(without_failures(locked.stats()), without_failures(before));
    };
    let refuse = |start: *mut u8, len: usize| {
        // SAFETY: every call here is refused before the heap touches the memory; where it is
        // not, the memory is the arena's.
        let result = unsafe { locked.add_region_raw(start, len) };
        check_unchanged();
        result.expect_err("bad region accepted")
    };
    assert_eq!(refuse(std::ptr::null_mut(), 4096), RegionError::Null);
    assert!(matches!(refuse(base, 0), RegionError::TooSmall { .. }));
    assert!(matches!(refuse(base, H::MIN_REGION - 1), RegionError::TooSmall { .. }));
    assert!(matches!(refuse(base.wrapping_add(1), H::MIN_REGION), RegionError::MisalignedBeyondUse { .. }));
    assert_eq!(refuse(base.wrapping_add(ARENA_LEN / 2 - 4096), 8192), RegionError::Overlaps);
    assert_eq!(refuse(base.wrapping_add(ARENA_LEN / 2 + 4096), 4096), RegionError::Overlaps);
    assert_eq!(refuse(std::ptr::without_provenance_mut(usize::MAX - 4095), 8192), RegionError::TooLarge);
    assert_eq!(refuse(base, usize::MAX / 2 + 1), RegionError::TooLarge);
    for layout in [
        Layout::from_size_align(ARENA_LEN, 1).unwrap(),
        Layout::from_size_align(8, 1 << 30).unwrap(),
        Layout::from_size_align(isize::MAX as usize - (1 << 20), 1).unwrap(),
    ] {
        assert!(locked.allocate(layout).is_err(), "{layout:?} cannot fit, yet was granted");
        check_unchanged();
    }
    assert_eq!(locked.stats().failed_requests, 3);
    // The heap still works.
    let ok = locked.allocate(Layout::new::<u64>()).expect("heap broken by refused calls");
    // SAFETY: live with this layout.
    unsafe { locked.deallocate(ok.cast(), Layout::new::<u64>()) };
    (guards.settle)(locked.lock().inner_mut());
    locked.trim();
    check_unchanged();
    drop(locked);
    drop(arena);
}

/// The fast free ([`RawHeap::deallocate_fast`]) takes only correct frees: a double free, a
/// free of an interior pointer, a free with a larger layout than the block's, a free of memory
/// the heap does not own and a free with an impossible layout are all declined (`false`) and
/// change nothing, so the front's `deallocate` gets them and reports them.
pub fn fast_frees_decline_misuse<H: RawHeap>(make: fn() -> H) {
    let mut f = Fixture::new(make, ARENA_LEN);
    let small = Layout::from_size_align(64, 64).unwrap();
    let page = Layout::from_size_align(64, 4096).unwrap();
    // Two blocks stay live beside the one freed twice, so that a layer's "last object of its
    // slab" case does not hide the double free.
    let kept = f.allocate(small).expect("a fresh heap holds 64 bytes");
    let neighbour = f.allocate(small).expect("a fresh heap holds 64 bytes");
    let freed = f.allocate(small).expect("a fresh heap holds 64 bytes");
    let aligned = f.allocate(page).expect("a fresh heap holds 64 bytes aligned to 4 KiB");
    f.free_fast(freed);
    f.check();
    let outside = [0u128; 8];
    let outside = NonNull::from(&outside).cast::<u8>();
    let cases = [
        ("double free", freed, small),
        (
            "interior pointer",
            kept.map_addr(|a| a.checked_add(16).unwrap()),
            Layout::from_size_align(16, 16).unwrap(),
        ),
        ("larger layout", aligned, Layout::from_size_align(32 * 1024, 4096).unwrap()),
        ("foreign pointer", outside, Layout::from_size_align(16, 16).unwrap()),
        ("impossible layout", aligned, Layout::from_size_align(isize::MAX as usize / 2 + 1, 4096).unwrap()),
    ];
    for (case, ptr, layout) in cases {
        let before = f.heap.stats();
        // SAFETY: deliberately wrong; a heap must decline without touching the memory, which
        // is the arena's or the local array's either way.
        let taken = unsafe { f.heap.deallocate_fast(ptr, layout) };
        assert!(!taken, "the fast path took a {case} ({ptr:p}, {layout:?})");
        assert_eq!(f.heap.stats(), before, "a declined {case} changed the heap");
        f.check();
    }
    f.free_fast(kept);
    f.free_fast(neighbour);
    f.free_fast(aligned);
    f.check();
}

/// Sizes near `isize::MAX`, the largest alignments a `Layout` allows, resizes to extreme sizes,
/// frees with extreme layouts and zero-size requests: every call returns an error (or a real
/// block, for zero sizes) without panicking or overflowing, and leaves the heap as it was.
pub fn extreme_layouts_are_refused_without_panicking<H: RawHeap>(make: fn() -> H) {
    extreme_layouts_are_refused_without_panicking_with(make, &Guards::none());
}

/// [`extreme_layouts_are_refused_without_panicking`], allowing for `guards`.
pub fn extreme_layouts_are_refused_without_panicking_with<H: RawHeap>(make: fn() -> H, guards: &Guards<H>) {
    let source: &'static PageSource = Box::leak(Box::new(PageSource::new(1 << 20)));
    let locked: LockedHeap<RawSpinlock, H> = LockedHeap::new(make()).with_source(source);
    let arena = Arena::new(ARENA_LEN, ARENA_ALIGN);
    // SAFETY: the arena outlives `locked` within this function and only the heap uses it.
    unsafe { locked.add_region_raw(arena.base().as_ptr(), arena.len()) }.unwrap();
    let before = locked.stats();
    let top_align = 1usize << (usize::BITS - 2);
    let extremes = [
        Layout::from_size_align(isize::MAX as usize, 1).unwrap(),
        Layout::from_size_align(isize::MAX as usize - 4095, 4096).unwrap(),
        Layout::from_size_align(isize::MAX as usize / 2 + 1, 8).unwrap(),
        Layout::from_size_align(1, top_align).unwrap(),
        Layout::from_size_align(0, top_align).unwrap(),
        Layout::from_size_align(top_align, top_align).unwrap(),
    ];
    for layout in extremes {
        assert!(locked.lock().allocate(layout).is_err(), "{layout:?} granted by the heap");
        assert!(locked.allocate(layout).is_err(), "{layout:?} granted by the front");
        // The source is not drained for a request no region could satisfy.
        assert_eq!(source.handed_out(), 0, "the source was asked for {layout:?}");
    }
    // Zero-size requests (the `Allocator` API allows them) get a real block.
    let zero = Layout::from_size_align(0, 8).unwrap();
    let block = locked.allocate(zero).expect("a zero-size request was refused");
    // SAFETY: live with `zero`.
    unsafe { locked.deallocate(block.cast(), zero) };
    // Resizing a live block to extreme sizes fails and keeps it.
    let small = Layout::from_size_align(64, 8).unwrap();
    let block = locked.allocate(small).unwrap().cast::<u8>();
    // SAFETY: the block is live and 64 bytes long.
    unsafe { block.as_ptr().write_bytes(0x5A, 64) };
    for new_size in [isize::MAX as usize - 7, isize::MAX as usize / 2 + 1, isize::MAX as usize / 4] {
        // SAFETY: `block` is live with `small`; `new_size` rounded to 8 stays within isize::MAX.
        assert!(unsafe { locked.reallocate(block, small, new_size) }.is_err(), "grown to {new_size}");
        // SAFETY: as above.
        assert!(unsafe { locked.lock().resize_in_place(block, small, new_size) }.is_err());
    }
    // SAFETY: the block is still live and 64 bytes long.
    let kept = unsafe { std::slice::from_raw_parts(block.as_ptr(), 64) };
    assert!(kept.iter().all(|&b| b == 0x5A), "a refused resize changed the block");
    // Frees with extreme layouts are refused as misuse, never a panic or an overflow.
    for layout in extremes {
        // SAFETY: deliberately wrong; the heap refuses before changing anything.
        let refused = unsafe { locked.lock().deallocate(block, layout) };
        assert!(refused.is_err(), "a free with {layout:?} was accepted");
    }
    // SAFETY: live with `small`.
    unsafe { locked.deallocate(block, small) };
    (guards.settle)(locked.lock().inner_mut());
    locked.trim();
    locked.check_invariants().unwrap();
    let after = locked.stats();
    assert_eq!(
        (after.total_bytes, after.free_bytes, after.live_allocations),
        (before.total_bytes, before.free_bytes, 0)
    );
    drop(locked);
}

/// Two touching regions added one after the other become one: some free block spans the seam.
pub fn touching_regions_merge<H: RawHeap>(make: fn() -> H) {
    let arena = Arena::new(128 * 1024, 128 * 1024);
    let seam = 40 * 1024;
    let mut heap = make();
    // SAFETY: both slices are the arena's, which outlives the heap; only the heap uses them.
    unsafe {
        heap.add_region(arena.slice(0, seam)).unwrap();
        heap.add_region(arena.slice(seam, arena.len() - seam)).unwrap();
    }
    heap.check_invariants().unwrap();
    assert_eq!(regions(&heap), 1, "touching regions were not joined");
    let seam_addr = arena.base().as_ptr().addr() + seam;
    let mut spanning = false;
    heap.walk(&mut |part| {
        spanning |=
            part.kind == PartKind::Free && part.start.addr() < seam_addr && part.end_addr() > seam_addr
    });
    assert!(spanning, "no free block spans the seam");
    // Joined in the other order too.
    let mut heap = make();
    // SAFETY: as above.
    unsafe {
        heap.add_region(arena.slice(seam, arena.len() - seam)).unwrap();
        heap.add_region(arena.slice(0, seam)).unwrap();
    }
    heap.check_invariants().unwrap();
    assert_eq!(regions(&heap), 1, "touching regions were not joined (prepended)");
    // A region filling the gap between two others touches both.
    let mut heap = make();
    let gap_end = 72 * 1024;
    // SAFETY: as above.
    unsafe {
        heap.add_region(arena.slice(0, seam)).unwrap();
        heap.add_region(arena.slice(gap_end, arena.len() - gap_end)).unwrap();
        heap.add_region(arena.slice(seam, gap_end - seam)).unwrap();
    }
    heap.check_invariants().unwrap();
    let mut spanning = false;
    heap.walk(&mut |part| {
        spanning |=
            part.kind == PartKind::Free && part.start.addr() < seam_addr && part.end_addr() > seam_addr
    });
    assert!(spanning, "no free block spans the first seam of a bridged gap");
}

fn regions<H: RawHeap>(heap: &H) -> usize {
    let mut regions = 0;
    heap.walk(&mut |part| regions += usize::from(part.kind == PartKind::Region));
    regions
}

/// Requested, allocated, peak, live and failure counters follow every call exactly, and the
/// fragmentation figures follow from them as the tutorial defines them.
pub fn statistics_are_exact<H: RawHeap>(make: fn() -> H) {
    statistics_are_exact_with(make, &Guards::none());
}

/// [`statistics_are_exact`], allowing for `guards`.
pub fn statistics_are_exact_with<H: RawHeap>(make: fn() -> H, guards: &Guards<H>) {
    let mut f = Fixture::new(make, ARENA_LEN);
    // A block's guard bytes count as allocated: the bounds below are for the block the heap
    // below hands out, rounded up to at most the next power of two.
    let with_guards =
        |size: usize, heap: &H| size + (guards.bytes)(heap, Layout::from_size_align(size, 8).unwrap());
    let rounded =
        |size: usize, heap: &H| with_guards(size, heap).next_power_of_two().max(size.next_power_of_two());
    let initial = f.heap.stats();
    assert_eq!((initial.allocated_bytes, initial.requested_bytes, initial.live_allocations), (0, 0, 0));
    assert_eq!(initial.free_bytes, initial.total_bytes);
    assert!(initial.total_bytes > ARENA_LEN * 9 / 10, "more than a tenth lost to bookkeeping: {initial:?}");
    let a = f.allocate(Layout::from_size_align(100, 8).unwrap()).unwrap();
    let after_a = f.heap.stats();
    // Every heap here rounds a request up to at most the next power of two (and a granule).
    let bounds = with_guards(100, f.heap.inner())..=rounded(100, f.heap.inner());
    assert!(bounds.contains(&after_a.allocated_bytes), "100 bytes took {}", after_a.allocated_bytes);
    let b = f.allocate(Layout::from_size_align(3000, 8).unwrap()).unwrap();
    let s = f.heap.stats();
    assert_eq!((s.requested_bytes, s.peak_requested_bytes, s.live_allocations), (3100, 3100, 2));
    let bounds = with_guards(3000, f.heap.inner())..=rounded(3000, f.heap.inner());
    assert!(bounds.contains(&(s.allocated_bytes - after_a.allocated_bytes)));
    assert_eq!(s.internal_fragmentation_bytes(), s.allocated_bytes - 3100);
    f.check();
    // Resizing in place moves `requested` and keeps `peak` as the high-water mark.
    let layout_b = Layout::from_size_align(3000, 8).unwrap();
    // SAFETY: `b` is live with `layout_b`; 2900 <= 3000 (the same block size in every heap).
    unsafe { f.heap.shrink_in_place(b, layout_b, 2900) }.unwrap();
    f.shadow.resized(b, 2900);
    f.check();
    assert_eq!((f.heap.stats().requested_bytes, f.heap.stats().peak_requested_bytes), (3000, 3100));
    f.free(b);
    assert!(f.heap.allocate(Layout::from_size_align(ARENA_LEN * 4, 8).unwrap()).is_err());
    assert_eq!(f.heap.stats().failed_requests, 1);
    f.free(a);
    f.check();
    f.settle(guards);
    let end = f.heap.stats();
    assert_eq!(end.allocated_bytes, 0);
    assert_eq!(end.peak_requested_bytes, 3100);
    let expected = 1.0 - end.largest_free_block as f64 / end.free_bytes as f64;
    assert_eq!(end.external_fragmentation(), expected);
    let permille = end.external_fragmentation_permille() as f64 / 1000.0;
    assert!((end.external_fragmentation() - permille).abs() <= 0.001, "per-mille figure disagrees");
}

/// `alloc_zeroed` returns zeroed memory even where the heap's memory held other bytes.
pub fn alloc_zeroed_returns_zeroes<H: RawHeap>(make: fn() -> H) {
    let locked: LockedHeap<RawSpinlock, H> = LockedHeap::new(make());
    let arena = Arena::new(ARENA_LEN, ARENA_ALIGN);
    // SAFETY: the arena outlives `locked` within this function and only the heap uses it.
    unsafe { locked.add_region_raw(arena.base().as_ptr(), arena.len()) }.unwrap();
    let layout = Layout::from_size_align(4000, 16).unwrap();
    for _ in 0..4 {
        // SAFETY: non-zero size.
        let dirty = unsafe { locked.alloc(layout) };
        assert!(!dirty.is_null());
        // SAFETY: the block is live and 4000 bytes long.
        unsafe { dirty.write_bytes(0xA5, layout.size()) };
        // SAFETY: allocated above with `layout`.
        unsafe { locked.dealloc(dirty, layout) };
        // SAFETY: non-zero size.
        let zeroed = unsafe { locked.alloc_zeroed(layout) };
        assert!(!zeroed.is_null());
        // SAFETY: the block is live and 4000 bytes long.
        let bytes = unsafe { std::slice::from_raw_parts(zeroed, layout.size()) };
        assert!(bytes.iter().all(|&b| b == 0), "alloc_zeroed returned non-zero bytes");
        // SAFETY: allocated above with `layout`.
        unsafe { locked.dealloc(zeroed, layout) };
    }
    drop(locked);
}

/// A `LockedHeap` with a memory source grows when a request does not fit, and does not take
/// memory from the source for a request no block could ever hold.
pub fn growth_from_a_memory_source<H: RawHeap>(make: fn() -> H) {
    let source: &'static PageSource = Box::leak(Box::new(PageSource::new(8 << 20)));
    let locked: LockedHeap<RawSpinlock, H> = LockedHeap::new(make()).with_source(source);
    let small = Arena::new(64 * 1024, ARENA_ALIGN);
    // SAFETY: the arena outlives `locked` within this function and only the heap uses it.
    unsafe { locked.add_region_raw(small.base().as_ptr(), small.len()) }.unwrap();
    let before = locked.stats();
    for size in [1 << 20, isize::MAX as usize / 2] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        if locked.lock().region_layout_for(layout).is_some() {
            continue;
        }
        assert!(locked.allocate(layout).is_err());
        assert_eq!(source.handed_out(), 0, "the source was drained for {size} bytes, which can never fit");
        assert_eq!(locked.stats().total_bytes, before.total_bytes);
    }
    let big = Layout::from_size_align(200 * 1024, 8).unwrap();
    let block = locked.allocate(big).expect("the heap did not grow from its source");
    assert!(source.handed_out() > 0);
    assert!(locked.stats().total_bytes > before.total_bytes + big.size());
    locked.check_invariants().unwrap();
    // SAFETY: live with `big`.
    unsafe { locked.deallocate(block.cast(), big) };
    locked.check_invariants().unwrap();
    drop(locked);
}

/// With a source that hands out pieces touching each other (a page bump allocator), every
/// allocation succeeds as long as the source has memory: growth loops until it does, and never
/// over-asks (a request takes at most a few times its size from the source).
pub fn growth_never_fails_while_the_source_has_memory<H: RawHeap>(make: fn() -> H) {
    growth_never_fails_while_the_source_has_memory_with(make, &Guards::none());
}

/// [`growth_never_fails_while_the_source_has_memory`], allowing for `guards`.
pub fn growth_never_fails_while_the_source_has_memory_with<H: RawHeap>(make: fn() -> H, guards: &Guards<H>) {
    let source_len = 64 << 20;
    let source: &'static PageSource = Box::leak(Box::new(PageSource::new(source_len)));
    let locked: LockedHeap<RawSpinlock, H> = LockedHeap::new(make()).with_source(source);
    let seed = 11;
    let _report = SeedReport { label: "growth_never_fails_while_the_source_has_memory", seed };
    let mut rng = Rng::new(seed);
    let mut live = Vec::new();
    let mut requested = 0;
    while requested < source_len / 4 {
        let size = match rng.range(0..=9) {
            0..=5 => rng.range(1..=4096),
            6..=8 => rng.range(4097..=256 * 1024),
            _ => rng.range(256 * 1024..=3 << 20),
        };
        let layout = Layout::from_size_align(size, 8).unwrap();
        if locked.lock().region_layout_for(layout).is_none() {
            continue; // larger than any block of this heap can be
        }
        let before = source.handed_out();
        let block = locked.allocate(layout).unwrap_or_else(|_| {
            panic!(
                "{size} bytes refused after {} allocations with {} of {source_len} bytes still in the source",
                live.len(),
                source_len - source.handed_out()
            )
        });
        let taken = source.handed_out() - before;
        assert!(
            taken <= 4 * size.next_power_of_two() + (64 << 10),
            "{size} bytes took {taken} from the source"
        );
        live.push((block.cast::<u8>(), layout));
        requested += size;
    }
    locked.check_invariants().unwrap();
    for (ptr, layout) in live {
        // SAFETY: every block is live with its layout.
        unsafe { locked.deallocate(ptr, layout) };
    }
    (guards.settle)(locked.lock().inner_mut());
    locked.trim();
    locked.check_invariants().unwrap();
    assert_eq!(locked.stats().allocated_bytes, 0);
}

/// A memory source handing out page-aligned pieces of one leaked host allocation.
pub struct PageSource {
    base: NonNull<u8>,
    len: usize,
    next: std::sync::atomic::AtomicUsize,
}

// SAFETY: `base` is never written through by the source itself; `next` is atomic, so each
// piece is handed out once, to one caller.
unsafe impl Sync for PageSource {}

impl PageSource {
    /// A source of `len` bytes (leaked: the heap may keep them for ever).
    pub fn new(len: usize) -> Self {
        // A fixed placement relative to a boundary of up to 8 MiB, so a heap's address-dependent
        // choices (a buddy block's alignment gap) are the same in every run. This one (364 pages
        // past 8 MiB) once made a join's bookkeeping cut the block a growth had asked room for.
        const PAGES_IN: usize = 364;
        let boundary = len.next_power_of_two().min(8 << 20);
        let skip = PAGES_IN * 4096 % boundary;
        let memory = Arena::new(len + skip, boundary).leak();
        let base = NonNull::new(memory.as_mut_ptr().cast::<u8>().wrapping_add(skip)).unwrap();
        PageSource { base, len, next: std::sync::atomic::AtomicUsize::new(0) }
    }

    /// Bytes handed out so far.
    pub fn handed_out(&self) -> usize {
        self.next.load(std::sync::atomic::Ordering::SeqCst)
    }
}

// SAFETY: pieces come from a leaked allocation (valid for ever, 1) and the atomic cursor hands
// each byte out once (2).
unsafe impl MemorySource for PageSource {
    fn acquire(&self, layout: Layout) -> Option<NonNull<[u8]>> {
        use std::sync::atomic::Ordering::SeqCst;
        let len = layout.size().checked_next_multiple_of(4096)?;
        let base = self.base.as_ptr().addr();
        let mut start = self.next.load(SeqCst);
        loop {
            // Aligned as asked, with the bytes skipped to get there handed over too (the
            // contract lets a region start before the aligned point).
            let aligned = (base + start).checked_next_multiple_of(layout.align().max(4096))? - base;
            if aligned.checked_add(len)? > self.len {
                return None;
            }
            match self.next.compare_exchange(start, aligned + len, SeqCst, SeqCst) {
                Ok(_) => {
                    // SAFETY: `aligned + len <= self.len`, inside the leaked allocation.
                    let piece = unsafe { self.base.add(start) };
                    return Some(NonNull::slice_from_raw_parts(piece, aligned + len - start));
                }
                Err(now) => start = now,
            }
        }
    }
}
