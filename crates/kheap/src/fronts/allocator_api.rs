//! `allocator_api2::alloc::Allocator` for [`LockedHeap`], so that collections can be placed in a
//! particular heap (a DMA pool, a per-subsystem arena) rather than the global one.

use core::alloc::Layout;
use core::ptr::{self, NonNull};

use allocator_api2::alloc::{AllocError, Allocator};
use lock_api::RawMutex;

use crate::{Front, LockedHeap, RawHeap};

// SAFETY: forwards to `Front`, whose promises give `Allocator`'s: a block is valid, aligned
// and disjoint until it is deallocated; `grow`/`shrink` keep contents (in place, or by copying
// before the old block is freed); the heap lives as long as `&self`. The slice handed out has
// exactly the requested length, so the layout given back on deallocate is the one allocated.
// Zero-sized requests get a real (granule-sized) block, which deallocate takes back with the
// same layout.
unsafe impl<R: RawMutex, H: RawHeap> Allocator for LockedHeap<R, H> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = Front::allocate(self, layout).map_err(|_| AllocError)?;
        Ok(NonNull::slice_from_raw_parts(block.cast::<u8>(), layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: `Allocator::deallocate`'s contract: `ptr` is currently allocated by this
        // allocator (1) and `layout` fits it (2).
        unsafe { Front::deallocate(self, ptr, layout) }
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
    /// Resizes a block for `Allocator::grow` / `shrink`: through [`Front::reallocate`] when the
    /// alignment is kept, otherwise by moving it to a block of the new layout.
    ///
    /// # Safety
    ///
    /// 1. `ptr` is a live allocation of this front with layout `old`.
    unsafe fn resize(&self, ptr: NonNull<u8>, old: Layout, new: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if new.align() == old.align() && new.size() != 0 {
            // SAFETY: (1) gives obligations 1 and 2; `new` is a valid layout of non-zero size (3).
            let block = unsafe { Front::reallocate(self, ptr, old, new.size()) }.map_err(|_| AllocError)?;
            return Ok(NonNull::slice_from_raw_parts(block.cast::<u8>(), new.size()));
        }
        let moved = Front::allocate(self, new).map_err(|_| AllocError)?.cast::<u8>();
        // `copy`, not `copy_nonoverlapping`: a realloc of a freed block (a misuse, reported by the
        // free below) may be handed its own memory back, and the copy must stay defined then.
        // SAFETY: both blocks hold at least `min(old, new)` bytes; in correct use they are live
        // and distinct, and `copy` allows them to overlap in the misuse above; then the old
        // block goes back with its layout (1).
        unsafe {
            ptr::copy(ptr.as_ptr(), moved.as_ptr(), old.size().min(new.size()));
            Front::deallocate(self, ptr, old);
        }
        Ok(NonNull::slice_from_raw_parts(moved, new.size()))
    }
}
