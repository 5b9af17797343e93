//! The heap contract every algorithm implements.

use core::alloc::Layout;
use core::ptr::NonNull;

use crate::{AllocError, HeapStats, InvariantError, RegionError};

/// A single-threaded heap algorithm over memory handed to it explicitly.
///
/// A `RawHeap` has no lock and no global state; wrap it in a [`LockedHeap`](crate::LockedHeap)
/// to use it as a global allocator. Words in *italics* below are defined once in the
/// [crate documentation](crate#contract-words).
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
/// 4. A refused call (`Err`) changes nothing but the `failed_requests` counter.
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

    /// Allocates a block for `layout`.
    ///
    /// # Errors
    ///
    /// [`AllocError`] when no free block can hold `layout` (the heap is unchanged but for its
    /// `failed_requests` counter). Never panics.
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<u8>, AllocError>;

    /// Returns a block to the heap.
    ///
    /// # Panics
    ///
    /// When the heap can tell that `ptr` is not a *live allocation* (outside every region,
    /// misaligned for its block, or already free), with the address and layout in the
    /// message. Not every misuse can be detected.
    ///
    /// # Safety
    ///
    /// 1. `ptr` is a *live allocation* of this heap.
    /// 2. `layout` *fits* it.
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout);

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

    /// Whether some block of this heap could ever hold `layout`, given enough memory. A front
    /// asks before growing the heap, so a request no region could satisfy does not drain the
    /// memory source. Heaps without a largest block keep the default, `true`.
    fn could_ever_fit(&self, layout: Layout) -> bool {
        let _ = layout;
        true
    }

    /// Statistics, read in O(1).
    fn stats(&self) -> HeapStats;

    /// Walks all of the heap's bookkeeping and reports the first broken invariant.
    ///
    /// # Errors
    ///
    /// An [`InvariantError`] naming the invariant and the block where it fails.
    fn check_invariants(&self) -> Result<(), InvariantError>;

    /// Calls `f(start, len)` for each region the heap manages (joined regions count once).
    fn for_each_region(&self, f: &mut dyn FnMut(*const u8, usize));

    /// Calls `f(start, len)` for each free block, in no particular order.
    fn for_each_free_block(&self, f: &mut dyn FnMut(*const u8, usize));
}
