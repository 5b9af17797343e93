//! The heap contract every algorithm implements.

use core::alloc::Layout;
use core::ptr::NonNull;

use crate::{AllocError, HeapUsage, InvariantError, Misuse, Part, RegionError};

/// A single-threaded heap over memory handed to it explicitly: an algorithm, or a layer in
/// front of one (a layer is a `RawHeap` wrapping a `RawHeap`, so layers stack).
///
/// The contract is mechanism only: a `RawHeap` has no lock and no global state, never panics
/// on a caller's mistake (it returns an error and changes nothing) and decides no policy;
/// wrap it in a [`LockedHeap`](crate::LockedHeap) to use it as a global allocator. Words in
/// *italics* below are defined once in the [crate documentation](crate#contract-words).
///
/// # Safety
///
/// Implementors promise, for every heap value:
///
/// 1. A pointer returned by `allocate(layout)` is aligned to `layout.align()`, points to at
///    least `layout.size()` bytes inside a *region* of this heap, and those bytes overlap no
///    other *live allocation* and none of the heap's own bookkeeping.
/// 2. The heap never reads or writes the bytes of a *live allocation*.
/// 3. A successful `grow_in_place` / `shrink_in_place` keeps the pointer and the first
///    `min(old, new)` bytes, and leaves promise 1 true for the new layout.
/// 4. A refused call (`Err`) changes nothing, with two exceptions: before refusing an
///    `allocate`, a layer may hand memory it keeps cached (a slab layer's empty spare slabs)
///    back to the heap below, so that no request is refused while that memory could serve it
///    (no block changes and nothing is lost: `usage()`'s allocated bytes, `total - free`, stay
///    the same, and its total and free bytes grow by what came back); and a hardened heap that
///    refuses because it found its own records damaged
///    ([`CorruptedFreeBlock`](crate::MisuseKind::CorruptedFreeBlock)) repairs them first,
///    setting the damaged free memory aside (its bytes leave the free count). The caller's
///    blocks stay as they were either way.
/// 5. No method panics or unwinds on any input a caller can give it within the `# Safety`
///    obligations of the method; refused requests and detected misuse are `Err` values.
/// 6. After `remove_region(region)` returns `Ok`, no live allocation lies in the region and
///    the heap never reads or writes it again: it belongs to the caller.
///
/// ```
/// use core::alloc::Layout;
/// use kheap::{BuddyHeap, RawHeap};
///
/// // Any heap, used directly: no lock, no global state.
/// fn round_trip<H: RawHeap>(heap: &mut H) {
///     let layout = Layout::new::<[u32; 10]>();
///     let block = heap.allocate(layout).expect("out of memory");
///     assert!(block.len() >= 40); // the usable size
///     // SAFETY: `block` is live and `layout` fits it.
///     unsafe { heap.deallocate(block.cast(), layout) }.expect("misuse");
///     heap.check_invariants().unwrap();
/// }
/// let memory: &'static mut [u8] = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
/// let mut heap = BuddyHeap::new();
/// // SAFETY: the leaked buffer lives for ever and only the heap uses it.
/// unsafe { heap.add_region(core::ptr::NonNull::from(memory)) }.unwrap();
/// round_trip(&mut heap);
/// ```
pub unsafe trait RawHeap {
    /// The smallest region, in bytes, that `add_region` can accept.
    const MIN_REGION: usize;

    /// Gives the heap a region to manage; returns how many bytes of it can be allocated (the
    /// rest is lost to alignment at its ends or holds the heap's bookkeeping).
    ///
    /// A region that touches one the heap already has is joined to it, so that blocks may
    /// span the seam.
    ///
    /// # Errors
    ///
    /// [`RegionError`] when the region is null, too small, unusable after alignment, overlaps
    /// memory the heap already manages, or wraps the address space. The heap is unchanged.
    ///
    /// # Safety
    ///
    /// 1. `region` is valid for reads and writes for its whole length, for as long as the heap
    ///    is used.
    /// 2. Nothing else reads or writes it from now on: it becomes a *region* of this heap.
    unsafe fn add_region(&mut self, region: NonNull<[u8]>) -> Result<usize, RegionError>;

    /// Allocates a block for `layout`; returns it with its usable size (at least
    /// `layout.size()`; the caller may use all of it).
    ///
    /// # Errors
    ///
    /// [`AllocError`] when no free block can hold `layout`; the heap is unchanged.
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError>;

    /// Returns a block to the heap.
    ///
    /// # Errors
    ///
    /// A [`Misuse`] when the heap detects that obligation 1 or 2 is broken (which kinds each
    /// heap detects is in its documentation); the heap is then unchanged. Misuse that is not
    /// detected is undefined behaviour.
    ///
    /// # Safety
    ///
    /// 1. `ptr` is a *live allocation* of this heap.
    /// 2. `layout` *fits* it.
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Misuse>;

    /// The heap's common allocation, for a front's fast path: a block when the heap serves the
    /// request from its common case (for the buddy system, an exact fit at the head of its
    /// list, with no call; for the slab layer, an object of a partial slab; for TLSF, its whole
    /// allocation, whose refusal changes nothing), with its usable
    /// size as [`allocate`](Self::allocate) gives it; otherwise `None`, with nothing changed,
    /// and the caller calls `allocate`, which may still succeed. Kept free of calls where it
    /// can be, so that a front's fast path needs no stack frame. The default answers `None`.
    #[inline(always)]
    fn allocate_fast(&mut self, layout: Layout) -> Option<NonNull<[u8]>> {
        let _ = layout;
        None
    }

    /// The heap's common free, for a front's fast path: frees the block and answers `true`
    /// when the free is valid and the heap's common case (for the buddy system, a block whose
    /// buddy is in use, with no call; for the slab layer, an object back into its slab; for
    /// TLSF, its whole free); otherwise changes nothing and answers `false`, and the caller calls
    /// [`deallocate`](Self::deallocate), which does the rest and reports misuse. Kept free of
    /// calls where it can be, as `allocate_fast`. The default answers `false`.
    ///
    /// # Safety
    ///
    /// As [`deallocate`](Self::deallocate).
    #[inline(always)]
    unsafe fn deallocate_fast(&mut self, ptr: NonNull<u8>, layout: Layout) -> bool {
        let _ = (ptr, layout);
        false
    }

    /// Makes a *live allocation* larger without moving it, if the memory after it is free.
    ///
    /// # Errors
    ///
    /// [`AllocError`] when the block cannot grow where it is; it is then unchanged.
    ///
    /// # Safety
    ///
    /// 1. `ptr` is a *live allocation* of this heap.
    /// 2. `old` *fits* it.
    /// 3. `new_size >= old.size()`, and `new_size` rounded up to `old.align()` does not exceed
    ///    `isize::MAX`.
    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError>;

    /// Makes a *live allocation* smaller without moving it, returning the tail to the heap
    /// where the algorithm can.
    ///
    /// # Errors
    ///
    /// [`AllocError`] when the algorithm cannot keep the block where it is.
    ///
    /// # Safety
    ///
    /// 1. `ptr` is a *live allocation* of this heap.
    /// 2. `old` *fits* it.
    /// 3. `new_size <= old.size()`.
    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError>;

    /// Grows or shrinks a *live allocation* in place, whichever `new_size` asks for.
    ///
    /// # Errors
    ///
    /// [`AllocError`] when the block cannot take the new size where it is; it is then unchanged.
    ///
    /// # Safety
    ///
    /// 1. `ptr` is a *live allocation* of this heap.
    /// 2. `old` *fits* it.
    /// 3. `new_size` rounded up to `old.align()` does not exceed `isize::MAX`.
    #[inline]
    unsafe fn resize_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError> {
        // SAFETY: (1)-(3) are passed on; the direction picks the method whose size obligation
        // holds.
        unsafe {
            if new_size >= old.size() {
                self.grow_in_place(ptr, old, new_size)
            } else {
                self.shrink_in_place(ptr, old, new_size)
            }
        }
    }

    /// Allocates up to `out.len()` blocks of one `layout`, writing their starts to the front
    /// of `out`; returns how many. Each is a *live allocation* that `layout` fits, as if
    /// `allocate(layout)` had returned it. `0` when not even one block can hold `layout` (the
    /// heap is then unchanged).
    ///
    /// For a per-CPU cache refilling a magazine. The default calls
    /// [`allocate`](Self::allocate) until `out` is full or it refuses; a heap that can take
    /// several blocks in one step overrides it ([`SlabHeap`](crate::SlabHeap) takes every free
    /// object a bitmap word shows at once).
    #[inline]
    fn allocate_batch(&mut self, layout: Layout, out: &mut [NonNull<u8>]) -> usize {
        allocate_each(out, || self.allocate(layout))
    }

    /// Returns every block of `blocks`, all allocated with `layout`. A block whose free the
    /// heap detects as misuse is refused and left unchanged, the others still go back; returns
    /// how many were refused and the first refusal's [`Misuse`].
    ///
    /// For a per-CPU cache flushing a magazine. The default calls
    /// [`deallocate`](Self::deallocate) for each block; a heap whose frees share work
    /// overrides it ([`SlabHeap`](crate::SlabHeap) confirms a slab once for the objects of it
    /// that follow one another).
    ///
    /// # Safety
    ///
    /// 1. Every pointer of `blocks` is a *live allocation* of this heap, and none appears
    ///    twice.
    /// 2. `layout` *fits* each.
    #[inline]
    unsafe fn deallocate_batch(&mut self, blocks: &[NonNull<u8>], layout: Layout) -> (usize, Option<Misuse>) {
        // SAFETY: (1) and (2) are `deallocate`'s obligations 1 and 2, for each block.
        deallocate_each(blocks, |block| unsafe { self.deallocate(block, layout) })
    }

    /// The layout of a fresh region (from a memory source, touching no other region) in which
    /// `allocate(layout)` is sure to succeed, or `None` when no region can make it succeed.
    /// A front asks its source for exactly this when an allocation fails.
    ///
    /// "Sure to succeed" holds for any region that holds the returned layout's size from a
    /// multiple of its alignment to the region's end, with fewer than `align` bytes before
    /// that point: what [`MemorySource::acquire`](crate::MemorySource::acquire) returns.
    fn region_layout_for(&self, layout: Layout) -> Option<Layout>;

    /// Takes back a region given with [`add_region`](Self::add_region) (the same pointer and
    /// length) that holds no live allocation, so that it can go back to where it came from (a
    /// [`MemorySource::release`](crate::MemorySource::release)); returns the bytes it held for
    /// allocation (what `add_region` returned). The default removes nothing.
    ///
    /// # Errors
    ///
    /// [`RegionError::NotRemovable`] when the heap cannot give the region back now: a block
    /// in it is allocated, it was joined with a neighbouring region, or the heap does not
    /// remove regions. The heap is unchanged.
    fn remove_region(&mut self, region: NonNull<[u8]>) -> Result<usize, RegionError> {
        let _ = region;
        Err(RegionError::NotRemovable)
    }

    /// Hands memory the heap keeps cached for reuse (a slab layer's empty spare slabs) back to
    /// the heap below, so that the usage is what the live blocks alone leave: a heap with no
    /// live block is then whole. A layer keeps such memory so that an allocate/free pair at a
    /// boundary does not make and unmake a slab each time; it hands it back by itself before it
    /// refuses a request. The default does nothing (the algorithms cache nothing).
    fn trim(&mut self) {}

    /// Damage to the heap's own records that a call found but could not report (an
    /// `allocate`, a resize or a region removal, which can only refuse): a hardened heap
    /// ([`TlsfHeap::hardened`](crate::TlsfHeap::hardened)) keeps the first such finding until
    /// it is taken here; a front takes it after such a refusal and hands it to its misuse hook.
    /// The default finds nothing.
    fn take_corruption(&mut self) -> Option<Misuse> {
        None
    }

    /// Total, free and largest free bytes, read in O(1).
    fn usage(&self) -> HeapUsage;

    /// Walks all of the heap's bookkeeping and reports the first broken invariant.
    ///
    /// # Errors
    ///
    /// An [`InvariantError`] naming the invariant and the block where it fails.
    fn check_invariants(&self) -> Result<(), InvariantError>;

    /// Calls `visit` for every region (joined regions count once), every free block, every
    /// piece of free memory a layer caches for one size class and every piece of bookkeeping,
    /// in no particular order: for invariant checks, heap maps and the lab. The free blocks and
    /// the cached pieces add up to [`HeapUsage::free_bytes`]; the largest free block is
    /// [`HeapUsage::largest_free_block`].
    fn walk(&self, visit: &mut dyn FnMut(Part));
}

/// Fills `out` from the front with the blocks `allocate` returns, one call per slot, until it
/// refuses; returns how many. What `RawHeap::allocate_batch` does by default, and what a heap
/// that batches only some layouts does for the others.
#[inline]
pub(crate) fn allocate_each(
    out: &mut [NonNull<u8>],
    mut allocate: impl FnMut() -> Result<NonNull<[u8]>, AllocError>,
) -> usize {
    let mut count = 0;
    for slot in out.iter_mut() {
        let Ok(block) = allocate() else { break };
        *slot = block.cast();
        count += 1;
    }
    count
}

/// Frees every block of `blocks` with `free`; returns how many it refused and the first
/// refusal. What `RawHeap::deallocate_batch` does by default.
#[inline]
pub(crate) fn deallocate_each(
    blocks: &[NonNull<u8>],
    mut free: impl FnMut(NonNull<u8>) -> Result<(), Misuse>,
) -> (usize, Option<Misuse>) {
    let mut refused = 0;
    let mut first = None;
    for &block in blocks {
        if let Err(misuse) = free(block) {
            refused += 1;
            first.get_or_insert(misuse);
        }
    }
    (refused, first)
}

/// A heap that can tell, from its address alone, the block a *live allocation* occupies:
/// what a C `free(ptr)` and a debug layer need, and what makes every wrong-layout free
/// detectable.
///
/// # Safety
///
/// Implementors promise that when `block_layout(ptr)` returns `Ok(layout)`, `ptr` is the start
/// of a block the heap has handed out, `layout.size()` is the usable size `allocate` returned
/// for it, and `deallocate(ptr, layout)` frees exactly that block (`layout` *fits* it).
///
/// ```
/// use core::alloc::Layout;
/// use kheap::{BlockLookup, BuddyHeap, RawHeap};
///
/// let memory: &'static mut [u8] = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
/// let mut heap = BuddyHeap::new();
/// // SAFETY: the leaked buffer lives for ever and only the heap uses it.
/// unsafe { heap.add_region(core::ptr::NonNull::from(memory)) }.unwrap();
/// let block = heap.allocate(Layout::from_size_align(100, 8).unwrap()).unwrap().cast::<u8>();
/// let layout = heap.block_layout(block).unwrap(); // what a C `free(ptr)` needs
/// assert_eq!(layout.size(), 128);
/// // SAFETY: the looked-up layout fits the live block.
/// unsafe { heap.deallocate(block, layout) }.unwrap();
/// ```
pub unsafe trait BlockLookup: RawHeap {
    /// The layout of the allocated block that starts at `ptr`.
    ///
    /// # Errors
    ///
    /// A [`Misuse`] (with `layout` set to `Layout::new::<u8>()`) when no allocated block starts
    /// at `ptr`.
    fn block_layout(&self, ptr: NonNull<u8>) -> Result<Layout, Misuse>;
}
