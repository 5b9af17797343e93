//! `Heap`: the default heap, the composition the benchmark suite chose.

use core::alloc::Layout;
use core::ptr::NonNull;

use crate::{
    AllocError, BlockLookup, HeapUsage, InvariantError, Misuse, Part, RawHeap, RegionError, SlabHeap,
    TlsfHeap, SLABS_FROM,
};

/// The heap to pick when you do not want to choose: size-class slabs for small objects
/// ([`SlabHeap`]) over a two-level segregated fit heap ([`TlsfHeap`]) for everything else.
///
/// Why this composition (figures in `BENCHMARKS.md`): requests up to
/// [`SLAB_MAX`](crate::SLAB_MAX) bytes (the bulk of a kernel's: list nodes, inodes, tasks) are a
/// bit in a slab's bitmap, with no header and nothing written into free objects, so a write
/// after free cannot corrupt the heap; every larger request is TLSF's O(1) good fit with a
/// fallback search, so a request is refused only when no free block can hold it. Every free is
/// checked before anything changes: a slab object exactly (double, interior and wrong-class
/// frees), a larger block in O(1) from TLSF's bit map (the few cases it cannot see are listed
/// in [`TlsfHeap`]'s documentation); a detected misuse is reported, never followed.
///
/// Slabs only pay in a heap of [`SLABS_FROM`] (8 MiB) or more: each class keeps a slab it is
/// filling and free objects only it can use, 150-200 KiB in all, a large share of a small heap.
/// A smaller heap serves every request from TLSF, as [`TlsfHeap`] alone would, and keeps doing
/// so after growing (see [`with_slabs_from`](Heap::with_slabs_from) to choose).
///
/// Worst case, in operations: a small allocate is a bitmap search of at most eight words, or a
/// new slab from TLSF; a TLSF allocate is two bit-map searches, and only when they fail a scan
/// of the second-level lists they skipped; every free is O(1) once its region is found.
///
/// It is a type of its own, not an alias, so the composition behind it can change without
/// changing your code. Use it wherever a [`RawHeap`] goes:
///
/// ```
/// use core::alloc::{GlobalAlloc, Layout};
/// use kheap::{Heap, LockedHeap, RawSpinlock, StaticArena};
///
/// static ARENA: StaticArena<{ 256 * 1024 }> = StaticArena::new();
/// static HEAP: LockedHeap<RawSpinlock, Heap> = LockedHeap::new(Heap::new()).with_source(&ARENA);
///
/// let layout = Layout::new::<[u64; 8]>();
/// // SAFETY: non-zero size; freed once below with the same layout.
/// let block = unsafe { HEAP.alloc(layout) };
/// assert!(!block.is_null());
/// // SAFETY: `block` came from `HEAP.alloc` with this layout.
/// unsafe { HEAP.dealloc(block, layout) };
/// assert_eq!(HEAP.stats().live_allocations, 0);
/// ```
pub struct Heap {
    inner: SlabHeap<TlsfHeap>,
}

impl Heap {
    /// An empty heap; `const`, so it can initialise a `static`.
    pub const fn new() -> Self {
        Heap { inner: SlabHeap::new(TlsfHeap::new()).with_slabs_from(SLABS_FROM) }
    }

    /// The same heap, making slabs once its regions total `bytes` instead of
    /// [`SLABS_FROM`] (8 MiB); `const`. `0` makes slabs from the first byte: for a small heap
    /// that values the slab path's speed over the memory its slabs hold.
    pub const fn with_slabs_from(self, bytes: usize) -> Self {
        Heap { inner: self.inner.with_slabs_from(bytes) }
    }

    /// The composition behind it, for figures that only the layers know.
    pub fn layers(&self) -> &SlabHeap<TlsfHeap> {
        &self.inner
    }
}

impl Default for Heap {
    fn default() -> Self {
        Heap::new()
    }
}

// SAFETY: every call is forwarded unchanged to `SlabHeap<TlsfHeap>`, whose promises are
// therefore this heap's.
unsafe impl RawHeap for Heap {
    const MIN_REGION: usize = <SlabHeap<TlsfHeap> as RawHeap>::MIN_REGION;

    #[inline]
    unsafe fn add_region(&mut self, region: NonNull<[u8]>) -> Result<usize, RegionError> {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.inner.add_region(region) }
    }

    #[inline(always)]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.inner.allocate(layout)
    }

    #[inline(always)]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Misuse> {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.inner.deallocate(ptr, layout) }
    }

    #[inline(always)]
    fn allocate_fast(&mut self, layout: Layout) -> Option<NonNull<[u8]>> {
        self.inner.allocate_fast(layout)
    }

    #[inline(always)]
    unsafe fn deallocate_fast(&mut self, ptr: NonNull<u8>, layout: Layout) -> bool {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.inner.deallocate_fast(ptr, layout) }
    }

    #[inline]
    fn allocate_batch(&mut self, layout: Layout, out: &mut [NonNull<u8>]) -> usize {
        self.inner.allocate_batch(layout, out)
    }

    #[inline]
    unsafe fn deallocate_batch(&mut self, blocks: &[NonNull<u8>], layout: Layout) -> (usize, Option<Misuse>) {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.inner.deallocate_batch(blocks, layout) }
    }

    #[inline]
    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError> {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.inner.grow_in_place(ptr, old, new_size) }
    }

    #[inline]
    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError> {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.inner.shrink_in_place(ptr, old, new_size) }
    }

    #[inline]
    unsafe fn resize_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError> {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.inner.resize_in_place(ptr, old, new_size) }
    }

    fn region_layout_for(&self, layout: Layout) -> Option<Layout> {
        self.inner.region_layout_for(layout)
    }

    fn trim(&mut self) {
        self.inner.trim()
    }

    fn take_corruption(&mut self) -> Option<Misuse> {
        self.inner.take_corruption()
    }

    fn remove_region(&mut self, region: NonNull<[u8]>) -> Result<usize, RegionError> {
        self.inner.remove_region(region)
    }

    #[inline]
    fn usage(&self) -> HeapUsage {
        self.inner.usage()
    }

    fn check_invariants(&self) -> Result<(), InvariantError> {
        self.inner.check_invariants()
    }

    fn walk(&self, visit: &mut dyn FnMut(Part)) {
        self.inner.walk(visit)
    }
}

// SAFETY: forwarded unchanged to `SlabHeap<TlsfHeap>`, whose promise is therefore this heap's.
unsafe impl BlockLookup for Heap {
    #[inline]
    fn block_layout(&self, ptr: NonNull<u8>) -> Result<Layout, Misuse> {
        self.inner.block_layout(ptr)
    }
}
