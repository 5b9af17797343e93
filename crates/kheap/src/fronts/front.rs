//! The `Front` seam: what serves a program's allocation calls, in front of a heap.

use core::alloc::Layout;
use core::ptr::NonNull;

use crate::{AllocError, HeapStats};

/// A shareable allocator over a heap: what [`LockedHeap`](crate::LockedHeap) is, and what a
/// per-CPU cache or a C ABI sits on. It takes the same calls as `core::alloc::GlobalAlloc`,
/// with typed results, so a front in front of a front composes.
///
/// A front owns the policies an algorithm leaves out: locking, growing the heap from a memory
/// source, what a detected misuse leads to, and where a moving resize copies (never while a
/// lock is held). A shared reference to a front is a front too, so a per-CPU cache can sit in
/// front of a `static` heap that other code also uses.
///
/// # Safety
///
/// Implementors promise what `core::alloc::GlobalAlloc` promises: a block returned by
/// `allocate` or `reallocate` is aligned to the layout's alignment, holds at least its size,
/// and overlaps no other live block until it is deallocated; `reallocate` keeps the first
/// `min(old, new)` bytes; no method unwinds.
///
/// ```
/// use core::alloc::Layout;
/// use kheap::{BuddyHeap, Front, LockedHeap, RawSpinlock, StaticArena};
///
/// // Code over any front (a locked heap today; a per-CPU cache or a C ABI tomorrow).
/// fn scratch<F: Front>(front: &F) -> usize {
///     let layout = Layout::new::<[u8; 256]>();
///     let block = front.allocate(layout).expect("out of memory");
///     // SAFETY: allocated just above by this front, with `layout`.
///     unsafe { front.deallocate(block.cast(), layout) };
///     front.stats().live_allocations
/// }
/// static ARENA: StaticArena<{ 64 * 1024 }> = StaticArena::new();
/// static HEAP: LockedHeap<RawSpinlock, BuddyHeap> = LockedHeap::new(BuddyHeap::new()).with_source(&ARENA);
/// assert_eq!(scratch(&HEAP), 0);
/// ```
pub unsafe trait Front {
    /// Allocates a block for `layout` (of non-zero size).
    ///
    /// # Errors
    ///
    /// [`AllocError`] when no block can be found, even after growing the heap.
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError>;

    /// Returns a block. A misuse the heap detects is handled by the front's policy.
    ///
    /// # Safety
    ///
    /// 1. `ptr` was returned by this front's `allocate`, `allocate_batch`, `try_allocate` or
    ///    `reallocate` and not deallocated.
    /// 2. `layout` is the layout it was allocated (or last reallocated) with.
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout);

    /// Resizes a block to `new_size` bytes with the same alignment: in place where the heap
    /// can, otherwise by moving it (the copy is made with no lock held).
    ///
    /// # Errors
    ///
    /// [`AllocError`] when neither works; the block is then unchanged and still live.
    ///
    /// # Safety
    ///
    /// 1. and 2. as for `deallocate`, for `ptr` and `old`.
    /// 3. `new_size` is not zero, and rounded up to `old.align()` it does not exceed `isize::MAX`.
    unsafe fn reallocate(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<NonNull<[u8]>, AllocError>;

    /// A snapshot of the statistics.
    fn stats(&self) -> HeapStats;

    /// Allocates a block for `layout` (of non-zero size) from the memory the front already
    /// has: it never asks a memory source for more and never calls an out-of-memory or misuse
    /// hook. For callers that have a plan B when memory is short (a balloon driver, a
    /// `try_reserve`-style API, an interrupt handler that must not wait for a frame allocator).
    ///
    /// # Errors
    ///
    /// [`AllocError`] when no free block holds `layout` now.
    fn try_allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError>;

    /// The size in bytes of the largest block the front could hand out now without growing:
    /// no request larger than this can succeed through [`try_allocate`](Self::try_allocate).
    /// A snapshot: another CPU may change it at once.
    fn largest_free_block(&self) -> usize {
        self.stats().largest_free_block
    }

    /// Whether a call now would wait for another CPU (the front's lock is held): a hint, which
    /// may change at once, for a caller with a better way to wait than the front's own
    /// ([`PerCpu`](crate::PerCpu) waits with [`CpuId::relax`](crate::CpuId::relax)). The
    /// default, for fronts without a lock, is never.
    fn is_busy(&self) -> bool {
        false
    }

    /// Allocates up to `out.len()` blocks of one `layout` (of non-zero size), writing them to
    /// the start of `out`; returns how many. A front over a lock takes it once for the whole
    /// batch (what a per-CPU cache refilling a magazine wants). It grows the heap like
    /// [`allocate`](Self::allocate) only when not even one block is free; `0` means that
    /// failed too. The default allocates one by one.
    fn allocate_batch(&self, layout: Layout, out: &mut [NonNull<u8>]) -> usize {
        let mut count = 0;
        for slot in out.iter_mut() {
            match self.allocate(layout) {
                Ok(block) => *slot = block.cast(),
                Err(AllocError) => break,
            }
            count += 1;
        }
        count
    }

    /// Returns every block of `blocks`, all allocated with `layout`. A front over a lock takes
    /// it once for the whole batch; misuse is handled as by [`deallocate`](Self::deallocate)
    /// (a front may report only the first of several). The default returns them one by one.
    ///
    /// # Safety
    ///
    /// 1. Every pointer of `blocks` was returned by this front's `allocate`, `allocate_batch`,
    ///    `try_allocate` or `reallocate` and not deallocated, and no pointer appears twice.
    /// 2. `layout` is the layout each was allocated (or last reallocated) with.
    unsafe fn deallocate_batch(&self, blocks: &[NonNull<u8>], layout: Layout) {
        for &block in blocks {
            // SAFETY: (1) and (2) are `deallocate`'s obligations 1 and 2, for each block.
            unsafe { self.deallocate(block, layout) };
        }
    }
}

// SAFETY: every call is forwarded to `T`, whose promises they are.
unsafe impl<T: Front + ?Sized> Front for &T {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        (**self).allocate(layout)
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { (**self).deallocate(ptr, layout) }
    }

    unsafe fn reallocate(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { (**self).reallocate(ptr, old, new_size) }
    }

    fn stats(&self) -> HeapStats {
        (**self).stats()
    }

    fn try_allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        (**self).try_allocate(layout)
    }

    fn largest_free_block(&self) -> usize {
        (**self).largest_free_block()
    }

    fn is_busy(&self) -> bool {
        (**self).is_busy()
    }

    fn allocate_batch(&self, layout: Layout, out: &mut [NonNull<u8>]) -> usize {
        (**self).allocate_batch(layout, out)
    }

    unsafe fn deallocate_batch(&self, blocks: &[NonNull<u8>], layout: Layout) {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { (**self).deallocate_batch(blocks, layout) }
    }
}
