//! The API of `buddy_system_allocator::LockedHeap` (the rCore tutorial's allocator), on
//! kheap's [`BuddyHeap`].
//!
//! The tutorial's `init_heap` works unchanged but for its `use` line:
//!
//! ```
//! use kheap::compat::buddy_system_allocator::LockedHeap;
//! # const KERNEL_HEAP_SIZE: usize = 0x30_0000;
//!
//! // #[global_allocator]
//! static HEAP_ALLOCATOR: LockedHeap = LockedHeap::empty();
//!
//! static mut HEAP_SPACE: [u8; KERNEL_HEAP_SIZE] = [0; KERNEL_HEAP_SIZE];
//!
//! pub fn init_heap() {
//!     unsafe {
//!         HEAP_ALLOCATOR
//!             .lock()
//!             .init(HEAP_SPACE.as_ptr() as usize, KERNEL_HEAP_SIZE);
//!     }
//! }
//! # init_heap();
//! # assert!(HEAP_ALLOCATOR.lock().stats_total_bytes() > KERNEL_HEAP_SIZE * 9 / 10);
//! ```
//!
//! Differences, all in the caller's favour: freeing is O(MAX_ORDER) instead of a free-list
//! scan, and checked (a double, foreign, interior or wrong-layout free is reported instead of
//! corrupting the heap); touching ranges added separately merge; a bad range panics with the
//! range and the reason instead of being silently misused; `alloc` returns a typed
//! [`AllocError`].
//!
//! Addresses are `usize` here because the original API takes them so; they are turned into
//! pointers with exposed provenance (the only place kheap does that).

use core::alloc::{GlobalAlloc, Layout};
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use lock_api::RawMutex;

use crate::{
    AllocError, BuddyHeap, Counted, LockedHeap as Locked, Misuse, RawHeap, RawSpinlock, DEFAULT_MAX_ORDER,
};

/// A buddy heap with `buddy_system_allocator::Heap`'s method names: a [`Counted`]
/// [`BuddyHeap`] (the methods are on `Counted<BuddyHeap<ORDER>>`, which is also what
/// [`LockedHeap::lock`](Locked::lock) hands out, so `lock().init(..)` works as in the original).
///
/// `ORDER` counts block sizes as [`BuddyHeap`]'s `MAX_ORDER` does, from 16-byte blocks (8-byte
/// on 32-bit targets) rather than the original's 1-byte ones, so the same `ORDER` allows larger
/// blocks; it may be at most 59 on 64-bit and 28 on 32-bit targets. The default suits both.
pub struct Heap<const ORDER: usize = DEFAULT_MAX_ORDER>(Counted<BuddyHeap<ORDER>>);

impl<const ORDER: usize> Heap<ORDER> {
    /// An empty heap.
    pub const fn new() -> Self {
        Heap(Counted::new(BuddyHeap::with_orders()))
    }

    /// An empty heap.
    pub const fn empty() -> Self {
        Self::new()
    }
}

impl<const ORDER: usize> Default for Heap<ORDER> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const ORDER: usize> Deref for Heap<ORDER> {
    type Target = Counted<BuddyHeap<ORDER>>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<const ORDER: usize> DerefMut for Heap<ORDER> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// `buddy_system_allocator::Heap`'s methods.
impl<const ORDER: usize> Counted<BuddyHeap<ORDER>> {
    /// Adds the memory `[start, end)` to the heap.
    ///
    /// # Panics
    ///
    /// When the range is refused (null, too small, overlapping, ...), naming it and why.
    ///
    /// # Safety
    ///
    /// 1. `[start, end)` is valid for reads and writes for as long as the heap is used.
    /// 2. Nothing else reads or writes it from now on.
    pub unsafe fn add_to_heap(&mut self, start: usize, end: usize) {
        let Some(len) = end.checked_sub(start) else {
            panic!("kheap: add_to_heap({start:#x}, {end:#x}): end is below start");
        };
        let region = NonNull::new(core::ptr::with_exposed_provenance_mut::<u8>(start))
            .map(|p| NonNull::slice_from_raw_parts(p, len));
        let added = match region {
            // SAFETY: obligations 1 and 2 are this function's own.
            Some(region) => unsafe { self.add_region(region) },
            None => Err(crate::RegionError::Null),
        };
        if let Err(error) = added {
            panic!("kheap: add_to_heap({start:#x}, {end:#x}) refused: {error}");
        }
    }

    /// Adds the memory `[start, start + size)` to the heap.
    ///
    /// # Panics
    ///
    /// As [`add_to_heap`](Self::add_to_heap).
    ///
    /// # Safety
    ///
    /// As [`add_to_heap`](Self::add_to_heap), for `[start, start + size)`.
    pub unsafe fn init(&mut self, start: usize, size: usize) {
        let Some(end) = start.checked_add(size) else {
            panic!("kheap: init({start:#x}, {size:#x}): range wraps the address space");
        };
        // SAFETY: the obligations are this function's own.
        unsafe { self.add_to_heap(start, end) }
    }

    /// Allocates a block for `layout`.
    ///
    /// # Errors
    ///
    /// [`AllocError`] when no free block can hold it.
    pub fn alloc(&mut self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        self.allocate(layout).map(NonNull::cast)
    }

    /// Frees a block.
    ///
    /// # Errors
    ///
    /// The [`Misuse`] when the heap detects that the block is not a live allocation with this
    /// layout (the original would corrupt its free lists); the heap is then unchanged.
    ///
    /// # Safety
    ///
    /// 1. `ptr` is a live allocation of this heap.
    /// 2. `layout` is the layout it was allocated with.
    pub unsafe fn dealloc(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Misuse> {
        // SAFETY: obligations 1 and 2 are this function's own.
        unsafe { self.deallocate(ptr, layout) }
    }

    /// Bytes callers asked for in live allocations.
    pub fn stats_alloc_user(&self) -> usize {
        self.stats().requested_bytes
    }

    /// Bytes in allocated blocks, rounding included.
    pub fn stats_alloc_actual(&self) -> usize {
        self.stats().allocated_bytes
    }

    /// Bytes the heap can hand out.
    pub fn stats_total_bytes(&self) -> usize {
        self.stats().total_bytes
    }
}

/// `buddy_system_allocator::LockedHeap`: a [`BuddyHeap`] behind a lock, usable as
/// `#[global_allocator]`; `lock()` gives the [`Heap`] methods.
///
/// The lock `R` defaults to [`RawSpinlock`], like the original's `spin::Mutex`: a kernel whose
/// interrupt handlers allocate deadlocks on it exactly as on the original. Name an
/// interrupt-masking lock to fix that without touching the rest of the tutorial's code:
///
/// ```
/// use kheap::compat::buddy_system_allocator::LockedHeap;
/// use kheap::{NoInterrupts, RawIrqSpinlock};
/// // In a RISC-V kernel: RawIrqSpinlock<kheap::RiscvSupervisorInterrupts>.
/// static HEAP_ALLOCATOR: LockedHeap<32, RawIrqSpinlock<NoInterrupts>> = LockedHeap::empty();
/// ```
pub struct LockedHeap<const ORDER: usize = DEFAULT_MAX_ORDER, R: RawMutex = RawSpinlock>(
    Locked<R, BuddyHeap<ORDER>>,
);

impl<const ORDER: usize, R: RawMutex> LockedHeap<ORDER, R> {
    /// An empty heap.
    pub const fn new() -> Self {
        LockedHeap(Locked::new(BuddyHeap::with_orders()))
    }

    /// An empty heap.
    pub const fn empty() -> Self {
        Self::new()
    }
}

impl<const ORDER: usize, R: RawMutex> Default for LockedHeap<ORDER, R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const ORDER: usize, R: RawMutex> Deref for LockedHeap<ORDER, R> {
    type Target = Locked<R, BuddyHeap<ORDER>>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

// SAFETY: forwards to `kheap::LockedHeap<R, BuddyHeap>`'s `GlobalAlloc`, whose contract is the
// same.
unsafe impl<const ORDER: usize, R: RawMutex> GlobalAlloc for LockedHeap<ORDER, R>
where
    Locked<R, BuddyHeap<ORDER>>: Sync,
{
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}
