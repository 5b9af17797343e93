//! `Counted<H>`: the layer that counts what callers asked for, once, in front of any heap.
//!
//! Statistics about callers (requested bytes, their peak, live allocations, refusals) are kept
//! here and nowhere else, so a stack of layers (`Counted<Slab<Tlsf>>`) counts each request once
//! and an algorithm's hot path carries no counters. Statistics about memory (total, free,
//! largest free block) come from the wrapped heap's [`usage`](RawHeap::usage), which it keeps
//! anyway to manage its free space.

use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;

use crate::{
    AllocError, BlockLookup, HeapStats, HeapUsage, InvariantError, Misuse, Part, RawHeap, RegionError,
};

/// A heap with caller statistics: wraps `H`, forwards every call, and counts.
///
/// [`LockedHeap`](crate::LockedHeap) wraps its heap in one, so `LockedHeap::stats()` is exact
/// whatever the algorithm.
///
/// ```
/// use core::alloc::Layout;
/// use kheap::{BuddyHeap, Counted, RawHeap};
///
/// let memory = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
/// let mut heap = Counted::new(BuddyHeap::new());
/// // SAFETY: the leaked buffer lives for ever and only the heap uses it.
/// unsafe { heap.add_region(core::ptr::NonNull::from(memory)) }.unwrap();
/// let block = heap.allocate(Layout::new::<[u8; 100]>()).unwrap();
/// assert_eq!(heap.stats().requested_bytes, 100);
/// assert_eq!(heap.stats().allocated_bytes, 128); // the buddy block
/// // SAFETY: `block` was allocated just above with this layout.
/// unsafe { heap.deallocate(block.cast(), Layout::new::<[u8; 100]>()) }.unwrap();
/// assert_eq!(heap.stats().requested_bytes, 0);
/// ```
pub struct Counted<H> {
    heap: H,
    /// Invariant: the sum of the sizes callers asked for in their live allocations (with the
    /// size of their last successful resize). Wrapping arithmetic: a misuse the heap cannot
    /// detect may skew it, but never makes a count panic.
    requested: usize,
    /// Invariant: `peak_requested >= requested`.
    peak_requested: usize,
    /// Invariant: the number of live allocations.
    live: usize,
    /// Allocation requests refused to callers.
    failed: usize,
    /// Allocation requests refused at first, then satisfied after the heap grew.
    grown: usize,
}

impl<H> Counted<H> {
    /// Wraps `heap`, with every count at zero; `const`, so it can initialise a `static`.
    pub const fn new(heap: H) -> Self {
        Counted { heap, requested: 0, peak_requested: 0, live: 0, failed: 0, grown: 0 }
    }

    /// The wrapped heap.
    pub fn inner(&self) -> &H {
        &self.heap
    }

    /// Allocates without counting a refusal: a front that will grow the heap and try again
    /// counts the request as refused only if it finally is ([`count_refusal`](Self::count_refusal)).
    #[inline(always)]
    pub(crate) fn allocate_quietly(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError>
    where
        H: RawHeap,
    {
        let block = self.heap.allocate(layout)?;
        self.count_allocated(layout, 1);
        Ok(block)
    }

    /// Counts `count` blocks allocated with `layout`.
    #[inline(always)]
    fn count_allocated(&mut self, layout: Layout, count: usize) {
        self.requested = self.requested.wrapping_add(layout.size().wrapping_mul(count));
        self.raise_peak();
        self.live = self.live.wrapping_add(count);
    }

    /// Counts `count` blocks allocated with `layout` freed.
    #[inline(always)]
    fn count_freed(&mut self, layout: Layout, count: usize) {
        self.requested = self.requested.wrapping_sub(layout.size().wrapping_mul(count));
        self.live = self.live.wrapping_sub(count);
    }

    /// Counts one request refused to its caller.
    #[cold]
    pub(crate) fn count_refusal(&mut self) {
        self.failed = self.failed.wrapping_add(1);
    }

    /// Counts one request that the heap refused at first and satisfied after it grew.
    #[cold]
    pub(crate) fn count_grown(&mut self) {
        self.grown = self.grown.wrapping_add(1);
    }

    /// The wrapped heap, to change it without counting (a compat front adding memory, a test
    /// draining a debug layer's quarantine): allocations and frees made through it are not
    /// counted.
    pub fn inner_mut(&mut self) -> &mut H {
        &mut self.heap
    }

    /// The caller statistics with the wrapped heap's memory figures.
    pub fn stats(&self) -> HeapStats
    where
        H: RawHeap,
    {
        let HeapUsage { total_bytes, free_bytes, largest_free_block } = self.heap.usage();
        HeapStats {
            total_bytes,
            free_bytes,
            allocated_bytes: total_bytes - free_bytes,
            requested_bytes: self.requested,
            peak_requested_bytes: self.peak_requested,
            largest_free_block,
            live_allocations: self.live,
            failed_requests: self.failed,
            grown_requests: self.grown,
        }
    }

    /// A live allocation's requested size changed from `old` to `new` bytes.
    pub(crate) fn resized(&mut self, old: usize, new: usize) {
        self.requested = self.requested.wrapping_sub(old).wrapping_add(new);
        self.raise_peak();
    }

    /// Raises the peak to the requested bytes if they are above it: a test and a branch, the
    /// store only when the peak moves (rarely, once a program's heap has grown).
    #[inline(always)]
    fn raise_peak(&mut self) {
        if self.requested > self.peak_requested {
            self.peak_requested = self.requested;
        }
    }
}

impl<H: RawHeap> fmt::Debug for Counted<H> {
    /// The heap's [`HeapStats`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.stats();
        f.debug_struct("Counted")
            .field("total_bytes", &s.total_bytes)
            .field("free_bytes", &s.free_bytes)
            .field("allocated_bytes", &s.allocated_bytes)
            .field("requested_bytes", &s.requested_bytes)
            .field("peak_requested_bytes", &s.peak_requested_bytes)
            .field("largest_free_block", &s.largest_free_block)
            .field("live_allocations", &s.live_allocations)
            .field("failed_requests", &s.failed_requests)
            .field("grown_requests", &s.grown_requests)
            .finish()
    }
}

impl<H: Default> Default for Counted<H> {
    fn default() -> Self {
        Self::new(H::default())
    }
}

// SAFETY: every call is forwarded to `H` unchanged, so `H`'s promises are this layer's; the
// layer itself only updates its counters, never memory.
unsafe impl<H: RawHeap> RawHeap for Counted<H> {
    const MIN_REGION: usize = H::MIN_REGION;

    unsafe fn add_region(&mut self, region: NonNull<[u8]>) -> Result<usize, RegionError> {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.heap.add_region(region) }
    }

    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = self.allocate_quietly(layout);
        if block.is_err() {
            self.count_refusal();
        }
        block
    }

    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Misuse> {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.heap.deallocate(ptr, layout) }?;
        self.count_freed(layout, 1);
        Ok(())
    }

    #[inline(always)]
    fn allocate_fast(&mut self, layout: Layout) -> Option<NonNull<[u8]>> {
        let block = self.heap.allocate_fast(layout)?;
        self.count_allocated(layout, 1);
        Some(block)
    }

    #[inline(always)]
    unsafe fn deallocate_fast(&mut self, ptr: NonNull<u8>, layout: Layout) -> bool {
        // SAFETY: the caller's obligations are passed on unchanged.
        let freed = unsafe { self.heap.deallocate_fast(ptr, layout) };
        if freed {
            self.count_freed(layout, 1);
        }
        freed
    }

    /// Counts the blocks the batch got; a short or empty batch counts no refusal: the front
    /// that asked decides whether the request is refused (it may grow the heap first).
    #[inline]
    fn allocate_batch(&mut self, layout: Layout, out: &mut [NonNull<u8>]) -> usize {
        let count = self.heap.allocate_batch(layout, out);
        self.count_allocated(layout, count);
        count
    }

    #[inline]
    unsafe fn deallocate_batch(&mut self, blocks: &[NonNull<u8>], layout: Layout) -> (usize, Option<Misuse>) {
        // SAFETY: the caller's obligations are passed on unchanged.
        let (refused, first) = unsafe { self.heap.deallocate_batch(blocks, layout) };
        self.count_freed(layout, blocks.len().wrapping_sub(refused));
        (refused, first)
    }

    #[inline]
    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError> {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.heap.grow_in_place(ptr, old, new_size) }?;
        self.resized(old.size(), new_size);
        Ok(())
    }

    #[inline]
    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError> {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.heap.shrink_in_place(ptr, old, new_size) }?;
        self.resized(old.size(), new_size);
        Ok(())
    }

    fn region_layout_for(&self, layout: Layout) -> Option<Layout> {
        self.heap.region_layout_for(layout)
    }

    fn trim(&mut self) {
        self.heap.trim()
    }

    fn take_corruption(&mut self) -> Option<Misuse> {
        self.heap.take_corruption()
    }

    fn remove_region(&mut self, region: NonNull<[u8]>) -> Result<usize, RegionError> {
        self.heap.remove_region(region)
    }

    fn usage(&self) -> HeapUsage {
        self.heap.usage()
    }

    fn check_invariants(&self) -> Result<(), InvariantError> {
        self.heap.check_invariants()?;
        if self.peak_requested < self.requested {
            return Err(InvariantError::new(
                "peak requested below requested",
                core::ptr::null(),
                self.peak_requested,
            ));
        }
        Ok(())
    }

    fn walk(&self, visit: &mut dyn FnMut(Part)) {
        self.heap.walk(visit);
    }
}

// SAFETY: forwarded unchanged to `H`, whose promise it is.
unsafe impl<H: BlockLookup> BlockLookup for Counted<H> {
    fn block_layout(&self, ptr: NonNull<u8>) -> Result<Layout, Misuse> {
        self.heap.block_layout(ptr)
    }
}
