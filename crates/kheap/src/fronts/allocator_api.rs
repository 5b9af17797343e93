//! `allocator_api2::alloc::Allocator` for [`LockedHeap`], so that collections can be placed in a
//! particular heap (a DMA pool, a per-subsystem arena) rather than the global one.

use core::alloc::Layout;
use core::ptr::{self, NonNull};

use allocator_api2::alloc::{AllocError, Allocator};
use lock_api::RawMutex;

use crate::{LockedHeap, RawHeap};

// SAFETY: blocks come from the locked `RawHeap`, whose promises 1-4 give `Allocator`'s: a block
// is valid, aligned and disjoint until it is deallocated; `grow`/`shrink` keep contents (in
// place, or by copying before the old block is freed); the heap lives as long as `&self`.
// Zero-sized requests get a real (granule-sized) block, which deallocate takes back with the
// same layout.
unsafe impl<R: RawMutex, H: RawHeap> Allocator for LockedHeap<R, H> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = self.try_allocate(layout).map_err(|_| AllocError)?;
        Ok(NonNull::slice_from_raw_parts(block, layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: `Allocator::deallocate`'s contract: `ptr` is currently allocated by this
        // allocator (a live allocation, 1) and `layout` fits it (2).
        unsafe { self.lock().deallocate(ptr, layout) }
    }

    unsafe fn grow(&self, ptr: NonNull<u8>, old: Layout, new: Layout) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: `Allocator::grow`'s contract: `ptr` is live with `old`, and
        // `new.size() >= old.size()`.
        unsafe { self.resize(ptr, old, new) }
    }

    unsafe fn shrink(&self, ptr: NonNull<u8>, old: Layout, new: Layout) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: `Allocator::shrink`'s contract: `ptr` is live with `old`, and
        // `new.size() <= old.size()`.
        unsafe { self.resize(ptr, old, new) }
    }
}

impl<R: RawMutex, H: RawHeap> LockedHeap<R, H> {
    /// Resizes a block for `Allocator::grow` / `shrink`: in place when the alignment is kept and
    /// the heap can, otherwise by moving.
    ///
    /// # Safety
    ///
    /// 1. `ptr` is a live allocation of this heap with layout `old`.
    unsafe fn resize(&self, ptr: NonNull<u8>, old: Layout, new: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let mut heap = self.lock();
        if new.align() == old.align() {
            // SAFETY: (1) gives obligations 1 and 2 (same alignment); `new` is a valid layout (3).
            let in_place = unsafe { heap.resize_in_place(ptr, old, new.size()) };
            if in_place.is_ok() {
                return Ok(NonNull::slice_from_raw_parts(ptr, new.size()));
            }
        }
        drop(heap);
        let moved = self.try_allocate(new).map_err(|_| AllocError)?;
        // SAFETY: both blocks are live and distinct and hold at least `min(old, new)` bytes;
        // then the old block goes back with its layout (1).
        unsafe {
            ptr::copy_nonoverlapping(ptr.as_ptr(), moved.as_ptr(), old.size().min(new.size()));
            self.lock().deallocate(ptr, old);
        }
        Ok(NonNull::slice_from_raw_parts(moved, new.size()))
    }
}
