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
/// lock is held).
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
    /// 1. `ptr` was returned by this front's `allocate` or `reallocate` and not deallocated.
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
}
