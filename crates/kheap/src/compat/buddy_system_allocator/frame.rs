//! `buddy_system_allocator::FrameAllocator`: a buddy allocator over frame numbers (or any
//! numbers), which keeps its free lists in the global heap.

use alloc::collections::BTreeSet;
use core::alloc::Layout;
use core::ops::{Deref, Range};

use lock_api::{Mutex, RawMutex};

use crate::RawSpinlock;

/// A buddy allocator over numbers (page frame numbers, in a kernel): blocks of `2^k` numbers
/// starting at a multiple of `2^k`, for `k < ORDER`. Its free lists are `BTreeSet`s, so it
/// needs a global allocator, as the original does (feature `alloc`).
///
/// A block is found in O(ORDER · log n) and freed in O(ORDER · log n), n free blocks of an
/// order; a block freed twice is detected (panic) when it is still free.
///
/// ```
/// use kheap::compat::buddy_system_allocator::FrameAllocator;
///
/// let mut frames = FrameAllocator::<33>::new();
/// assert!(frames.alloc(1).is_none());
/// frames.add_frame(0, 3); // frames 0, 1 and 2: a block of two and a block of one
/// assert_eq!(frames.alloc(1), Some(2));
/// assert_eq!(frames.alloc(2), Some(0));
/// frames.dealloc(0, 2);
/// assert_eq!(frames.alloc(2), Some(0));
/// ```
pub struct FrameAllocator<const ORDER: usize = 33> {
    /// Invariant: `free[k]` holds the first number of every free block of `2^k` numbers; each is
    /// a multiple of `2^k`, no two
    /// free blocks overlap, and no free block has a free buddy of its order.
    free: [BTreeSet<usize>; ORDER],
    /// Invariant: numbers in allocated blocks.
    allocated: usize,
    /// Invariant: numbers given to the allocator.
    total: usize,
}

impl<const ORDER: usize> FrameAllocator<ORDER> {
    const VALID: () =
        assert!(ORDER >= 1 && ORDER <= usize::BITS as usize, "FrameAllocator: ORDER must be 1..=usize::BITS");

    /// An empty allocator; `const`.
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::VALID;
        FrameAllocator { free: [const { BTreeSet::new() }; ORDER], allocated: 0, total: 0 }
    }

    /// Adds the numbers `[start, end)`, cut into the largest aligned blocks that fit (at most
    /// `2^(ORDER - 1)` numbers each). An empty range is ignored.
    ///
    /// # Panics
    ///
    /// When `end < start`, as the original.
    pub fn add_frame(&mut self, start: usize, end: usize) {
        assert!(start <= end, "kheap: add_frame({start:#x}, {end:#x}): end is below start");
        let mut at = start;
        while at < end {
            let aligned = if at == 0 { ORDER - 1 } else { at.trailing_zeros() as usize };
            let fits = (end - at).ilog2() as usize;
            let order = aligned.min(fits).min(ORDER - 1);
            self.free[order].insert(at);
            at += 1 << order;
            self.total += 1 << order;
        }
    }

    /// Adds the numbers in `range` (as [`add_frame`](Self::add_frame)).
    pub fn insert(&mut self, range: Range<usize>) {
        self.add_frame(range.start, range.end);
    }

    /// Allocates `count` numbers (rounded up to a power of two, aligned to it); returns the
    /// first, or `None` when no free block is large enough.
    pub fn alloc(&mut self, count: usize) -> Option<usize> {
        self.alloc_order(count.checked_next_power_of_two()?.trailing_zeros() as usize)
    }

    /// Allocates `layout.size()` numbers aligned to `layout.align()` (the block is the larger
    /// of the two, rounded up to a power of two); returns the first.
    pub fn alloc_aligned(&mut self, layout: Layout) -> Option<usize> {
        self.alloc_order(Self::order_of(layout)?)
    }

    /// Frees the `count` numbers at `start`, as allocated with [`alloc`](Self::alloc).
    ///
    /// # Panics
    ///
    /// When the block is already free (a double free), or the count is impossible.
    pub fn dealloc(&mut self, start: usize, count: usize) {
        let order = count.checked_next_power_of_two().map(|size| size.trailing_zeros() as usize);
        self.dealloc_order(
            start,
            order.filter(|&k| k < ORDER).expect("kheap: FrameAllocator::dealloc: count too large"),
        );
    }

    /// Frees a block allocated with [`alloc_aligned`](Self::alloc_aligned) and this `layout`.
    ///
    /// # Panics
    ///
    /// As [`dealloc`](Self::dealloc).
    pub fn dealloc_aligned(&mut self, start: usize, layout: Layout) {
        self.dealloc_order(
            start,
            Self::order_of(layout).expect("kheap: FrameAllocator::dealloc_aligned: layout too large"),
        );
    }

    /// Numbers in allocated blocks.
    pub fn allocated(&self) -> usize {
        self.allocated
    }

    /// Numbers given to the allocator.
    pub fn total(&self) -> usize {
        self.total
    }

    fn order_of(layout: Layout) -> Option<usize> {
        let size = layout.size().checked_next_power_of_two()?.max(layout.align());
        Some(size.trailing_zeros() as usize).filter(|&k| k < ORDER)
    }

    fn alloc_order(&mut self, order: usize) -> Option<usize> {
        let from = (order..ORDER).find(|&k| !self.free[k].is_empty())?;
        let start = self.free[from].pop_first()?;
        for k in (order..from).rev() {
            // The upper half of each split goes back to the free list of its order.
            self.free[k].insert(start + (1 << k));
        }
        self.allocated += 1 << order;
        Some(start)
    }

    fn dealloc_order(&mut self, start: usize, order: usize) {
        let mut at = start;
        let mut k = order;
        assert!(
            (0..=order).all(|j| !self.free[j].contains(&start)),
            "kheap: FrameAllocator: frames {start:#x}..+{:#x} are already free (double free)",
            1usize << order
        );
        while k + 1 < ORDER {
            let buddy = at ^ (1 << k);
            if !self.free[k].remove(&buddy) {
                break;
            }
            at = at.min(buddy);
            k += 1;
        }
        self.free[k].insert(at);
        self.allocated -= 1 << order;
    }
}

impl<const ORDER: usize> Default for FrameAllocator<ORDER> {
    fn default() -> Self {
        Self::new()
    }
}

/// `buddy_system_allocator::LockedFrameAllocator`: a [`FrameAllocator`] behind a lock (`R`,
/// kheap's spinlock by default, as the original's `spin::Mutex`).
///
/// ```
/// use kheap::compat::buddy_system_allocator::LockedFrameAllocator;
///
/// static FRAMES: LockedFrameAllocator = LockedFrameAllocator::new();
/// FRAMES.lock().add_frame(0x8_0000, 0x8_8000);
/// let frame = FRAMES.lock().alloc(4).unwrap();
/// assert_eq!(frame % 4, 0);
/// FRAMES.lock().dealloc(frame, 4);
/// ```
pub struct LockedFrameAllocator<const ORDER: usize = 33, R: RawMutex = RawSpinlock>(
    Mutex<R, FrameAllocator<ORDER>>,
);

impl<const ORDER: usize, R: RawMutex> LockedFrameAllocator<ORDER, R> {
    /// An empty allocator; `const` (the original's is not).
    pub const fn new() -> Self {
        LockedFrameAllocator(Mutex::const_new(R::INIT, FrameAllocator::new()))
    }
}

impl<const ORDER: usize, R: RawMutex> Default for LockedFrameAllocator<ORDER, R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const ORDER: usize, R: RawMutex> Deref for LockedFrameAllocator<ORDER, R> {
    type Target = Mutex<R, FrameAllocator<ORDER>>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}
