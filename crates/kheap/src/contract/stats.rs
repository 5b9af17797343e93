//! What a heap reports about its memory ([`HeapUsage`], from every algorithm) and about its
//! callers ([`HeapStats`], counted once by the [`Counted`](crate::Counted) layer).

/// What an algorithm knows about its memory, read in O(1): the figures every heap keeps anyway
/// to manage its free space.
///
/// ```
/// use kheap::{BuddyHeap, RawHeap};
///
/// let memory: &'static mut [u8] = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
/// let mut heap = BuddyHeap::new();
/// // SAFETY: the leaked buffer lives for ever and only the heap uses it.
/// unsafe { heap.add_region(core::ptr::NonNull::from(memory)) }.unwrap();
/// let usage = heap.usage();
/// assert_eq!(usage.free_bytes, usage.total_bytes);
/// assert!(usage.largest_free_block <= usage.free_bytes);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapUsage {
    /// Bytes the heap can hand out: the regions given to it, less its own bookkeeping and the
    /// slivers lost to alignment at region ends.
    pub total_bytes: usize,
    /// Bytes in free blocks.
    pub free_bytes: usize,
    /// The size of the largest free block any request may use: a request larger than this can
    /// succeed only from memory a layer caches for its size class (a free slab object,
    /// [`PartKind::Cached`](crate::PartKind::Cached), at most [`SizeClass::MAX_SIZE`](crate::SizeClass::MAX_SIZE)
    /// bytes), and a request that a free block of this size could hold wherever it starts
    /// (with the bytes a layer adds to each block, such as the debug mode's guards) is not
    /// refused.
    pub largest_free_block: usize,
}

/// A snapshot of a heap's statistics. Every figure is in bytes except the two counts.
///
/// Fragmentation follows the rCore tutorial's definitions:
/// *internal* fragmentation is memory handed out beyond what callers asked for
/// ([`internal_fragmentation_bytes`](Self::internal_fragmentation_bytes)); *external*
/// fragmentation is free memory that a large request cannot use because it is split
/// ([`external_fragmentation`](Self::external_fragmentation)).
///
/// ```
/// use kheap::{BuddyHeap, LockedHeap, RawSpinlock, StaticArena};
///
/// static ARENA: StaticArena<{ 64 * 1024 }> = StaticArena::new();
/// static HEAP: LockedHeap<RawSpinlock, BuddyHeap> = LockedHeap::new(BuddyHeap::new()).with_source(&ARENA);
///
/// let layout = core::alloc::Layout::new::<[u8; 100]>();
/// // SAFETY: non-zero size; freed below with the same layout.
/// let block = unsafe { core::alloc::GlobalAlloc::alloc(&HEAP, layout) };
/// let s = HEAP.stats();
/// assert_eq!((s.requested_bytes, s.allocated_bytes, s.live_allocations), (100, 128, 1));
/// assert_eq!(s.internal_fragmentation_bytes(), 28);
/// assert_eq!(s.grown_requests, 1); // the first allocation claimed the arena
/// // SAFETY: allocated above with this layout.
/// unsafe { core::alloc::GlobalAlloc::dealloc(&HEAP, block, layout) };
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes the heap can hand out: the regions given to it, less its own bookkeeping and the
    /// slivers lost to alignment at region ends.
    pub total_bytes: usize,
    /// Bytes in free blocks (`total_bytes - allocated_bytes`).
    pub free_bytes: usize,
    /// Bytes in allocated blocks, rounding included.
    pub allocated_bytes: usize,
    /// Bytes callers asked for in their live allocations.
    pub requested_bytes: usize,
    /// The largest `requested_bytes` has ever been.
    pub peak_requested_bytes: usize,
    /// The size of the largest free block any request may use (see
    /// [`HeapUsage::largest_free_block`]: a slab layer's free objects serve only their class).
    pub largest_free_block: usize,
    /// Number of live allocations.
    pub live_allocations: usize,
    /// Number of allocation requests refused to the caller (out of memory or impossible
    /// layout), counted once per request even when a front grew the heap in between.
    pub failed_requests: usize,
    /// Number of allocation requests the heap refused at first and satisfied after the front
    /// grew it from its memory source (or a compat front's rescue function added memory): how
    /// often growth saved a request. Not counted in `failed_requests`.
    pub grown_requests: usize,
}

impl HeapStats {
    /// Bytes handed out beyond what was requested: rounding, splitting slack, size classes.
    pub const fn internal_fragmentation_bytes(&self) -> usize {
        self.allocated_bytes - self.requested_bytes
    }

    /// `1 - largest_free_block / free_bytes`: 0 when all free memory is one block, close to 1
    /// when it is scattered in small pieces. 0 when nothing is free.
    pub fn external_fragmentation(&self) -> f64 {
        if self.free_bytes == 0 {
            0.0
        } else {
            1.0 - self.largest_free_block as f64 / self.free_bytes as f64
        }
    }

    /// [`external_fragmentation`](Self::external_fragmentation) in thousandths, for consoles
    /// without floating point.
    pub const fn external_fragmentation_permille(&self) -> usize {
        // In u64: `largest * 1000` overflows a 32-bit usize past 4 MiB.
        match (self.largest_free_block as u64 * 1000).checked_div(self.free_bytes as u64) {
            Some(largest_share) => 1000 - largest_share as usize,
            None => 0,
        }
    }
}
