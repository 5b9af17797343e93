//! Memory sources: where a [`LockedHeap`](crate::LockedHeap) gets more memory when it runs out,
//! and where memory can go back.

use core::alloc::Layout;
use core::ptr::NonNull;

/// A supplier of fresh regions, such as a kernel's page-frame allocator.
///
/// A [`LockedHeap`](crate::LockedHeap) built [`with_source`](crate::LockedHeap::with_source)
/// calls [`acquire`](Self::acquire) when an allocation fails, with the layout of the region
/// the heap needs ([`RawHeap::region_layout_for`](crate::RawHeap::region_layout_for)), adds
/// what it gets and tries again, until the allocation succeeds or the source has nothing
/// more. The source is called **without** the heap's lock held, so it may allocate from that
/// heap itself (a frame allocator that keeps its lists in `Vec`s, say).
///
/// # Safety
///
/// 1. A region returned by `acquire` is valid for reads and writes for ever (as long as any
///    heap uses it).
/// 2. It is handed over: the source never returns it again (unless it is given back with
///    `release`) and nothing else uses it.
///
/// ```
/// use core::alloc::Layout;
/// use core::ptr::NonNull;
/// use kheap::{BuddyHeap, LockedHeap, MemorySource, RawSpinlock};
///
/// /// Pages from the host allocator, leaked (a kernel's frame allocator in a kernel).
/// struct Pages;
/// // SAFETY: each region is a fresh leaked allocation: valid for ever (1), handed out once (2).
/// unsafe impl MemorySource for Pages {
///     fn acquire(&self, layout: Layout) -> Option<NonNull<[u8]>> {
///         let layout = layout.align_to(4096).ok()?.pad_to_align();
///         // SAFETY: region layouts have a non-zero size.
///         let start = NonNull::new(unsafe { std::alloc::alloc(layout) })?;
///         Some(NonNull::slice_from_raw_parts(start, layout.size()))
///     }
/// }
/// static PAGES: Pages = Pages;
/// static HEAP: LockedHeap<RawSpinlock, BuddyHeap> = LockedHeap::new(BuddyHeap::new()).with_source(&PAGES);
/// let big = Layout::from_size_align(3 << 20, 8).unwrap();
/// // SAFETY: non-zero size; freed with the same layout.
/// unsafe { core::alloc::GlobalAlloc::dealloc(&HEAP, core::alloc::GlobalAlloc::alloc(&HEAP, big), big) };
/// assert_eq!(HEAP.stats().grown_requests, 1);
/// ```
pub unsafe trait MemorySource {
    /// Returns a region holding `layout.size()` bytes that start at a multiple of
    /// `layout.align()` and run to the region's end, or `None` when the source cannot.
    ///
    /// The region may start up to `layout.align() - 1` bytes before that aligned point: a
    /// bump allocator that skips memory to align should hand the skipped bytes over too, and
    /// the heap uses them. It may also round the length up (to whole pages, say); the heap uses
    /// all of it.
    fn acquire(&self, layout: Layout) -> Option<NonNull<[u8]>>;

    /// Takes back a region this source handed out with `acquire`, whole, that no heap uses any
    /// more. Returns `false` when the source cannot take it back (the caller then keeps it);
    /// the default never takes memory back.
    ///
    /// # Safety
    ///
    /// 1. `region` is exactly a region `acquire` returned, and nothing uses it any more.
    unsafe fn release(&self, region: NonNull<[u8]>) -> bool {
        let _ = region;
        false
    }
}

mod arena;

pub use arena::{ArenaByte, StaticArena, StaticRegion};
