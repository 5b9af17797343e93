//! A walk over everything a heap manages: regions, free blocks and bookkeeping.

/// What a [`Part`] of a heap is.
///
/// ```
/// use kheap::{BuddyHeap, PartKind, RawHeap};
///
/// let heap = BuddyHeap::new();
/// let mut regions = 0;
/// heap.walk(&mut |part| regions += usize::from(part.kind == PartKind::Region));
/// assert_eq!(regions, 0); // no memory yet
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartKind {
    /// A region as the heap manages it (joined regions count once), after rounding its ends.
    Region,
    /// A free block: any request it is large enough for (at a suitable alignment) may use it.
    Free,
    /// Free memory a layer keeps for requests of one size class only (a free object in a slab):
    /// counted in [`HeapUsage::free_bytes`](crate::HeapUsage::free_bytes), but not in
    /// [`largest_free_block`](crate::HeapUsage::largest_free_block), since a request of another
    /// class cannot use it.
    Cached,
    /// The heap's own records inside a region (headers, bitmaps).
    Bookkeeping,
}

/// One span of a heap seen by [`RawHeap::walk`](crate::RawHeap::walk).
///
/// Free blocks and bookkeeping lie inside regions and never overlap each other; what a region
/// holds besides them is allocated (or lost to rounding inside allocated blocks).
///
/// ```
/// use kheap::{BuddyHeap, PartKind, RawHeap};
///
/// let memory: &'static mut [u8] = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
/// let mut heap = BuddyHeap::new();
/// // SAFETY: the leaked buffer lives for ever and only the heap uses it.
/// unsafe { heap.add_region(core::ptr::NonNull::from(memory)) }.unwrap();
/// let mut free = 0;
/// heap.walk(&mut |part| {
///     if part.kind == PartKind::Free {
///         free += part.len;
///     }
/// });
/// assert_eq!(free, heap.usage().free_bytes);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    /// What the span is.
    pub kind: PartKind,
    /// Where it starts (an address to compare and print; the walk does not lend the memory).
    pub start: *const u8,
    /// Its length in bytes.
    pub len: usize,
}

impl Part {
    /// The address one past the span's end.
    pub fn end_addr(&self) -> usize {
        self.start.addr() + self.len
    }
}
