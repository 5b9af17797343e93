//! Memory sources: where a [`LockedHeap`](crate::LockedHeap) gets more memory when it runs out.

use core::alloc::Layout;
use core::ptr::NonNull;

/// A supplier of fresh regions, such as a kernel's page-frame allocator.
///
/// A [`LockedHeap`](crate::LockedHeap) built [`with_source`](crate::LockedHeap::with_source)
/// calls [`acquire`](Self::acquire) when an allocation fails, adds the region it returns and
/// tries once more. It is called with the heap locked, so it must not allocate from that heap.
///
/// # Safety
///
/// 1. A region returned by `acquire` is valid for reads and writes for ever (as long as any
///    heap uses it).
/// 2. It is handed over: the source never returns it again and nothing else uses it.
pub unsafe trait MemorySource {
    /// Returns a region of at least `min_len` bytes, or `None` when the source is exhausted.
    fn acquire(&self, min_len: usize) -> Option<NonNull<[u8]>>;
}

/// How many bytes a new region should have so that any kheap heap can place `layout` in it
/// after its bookkeeping: room for the block rounded to a power of two, again as much for
/// aligning it, and a page for bookkeeping.
pub const fn region_len_for(layout: Layout) -> usize {
    let size = if layout.size() > layout.align() { layout.size() } else { layout.align() };
    match size.checked_next_power_of_two() {
        Some(block) => block.saturating_mul(2).saturating_add(block / 16).saturating_add(4096),
        None => usize::MAX,
    }
}
