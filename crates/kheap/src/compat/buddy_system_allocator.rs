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
//! The whole API of `buddy_system_allocator` 0.13 is here: [`Heap`] (`new`, `empty`, `init`,
//! `add_to_heap`, `alloc`, `dealloc`, `stats_*`, `Debug`), [`LockedHeap`],
//! [`LockedHeapWithRescue`] (the rCore-family kernels grow their heap with its rescue function)
//! and, with the `alloc` feature (as in the original), `FrameAllocator` and
//! `LockedFrameAllocator`. The types keep the original's generic parameters, in its order
//! (`LockedHeap<ORDER>`), with kheap's lock as an extra, defaulted last parameter; kheap's own
//! types put the lock first (`kheap::LockedHeap<R, H>`), because there the heap is the
//! parameter that varies.
//!
//! Differences, all in the caller's favour but the last: freeing is O(MAX_ORDER) instead of a
//! free-list scan, and checked (a double, foreign, interior or wrong-layout free is reported
//! instead of corrupting the heap); touching ranges added separately merge; a bad range (at
//! address 0, or overlapping) panics with the range and the reason instead of being silently
//! misused, while a range too small to hold a block is ignored, as the original ignores it;
//! `Heap::dealloc` is `unsafe` (the original's is a safe function, which lets safe code free
//! memory it does not own), so a call to it needs an `unsafe` block.
//!
//! Addresses are `usize` here because the original API takes them so; they are turned into
//! pointers with exposed provenance (the only place kheap does that).

use core::alloc::{GlobalAlloc, Layout};
use core::fmt;
use core::ops::{Deref, DerefMut};
use core::ptr::{self, NonNull};

use lock_api::RawMutex;

use crate::{BuddyHeap, Counted, LockedHeap as Locked, RawHeap, RawSpinlock, RegionError, DEFAULT_MAX_ORDER};

#[cfg(feature = "alloc")]
mod frame;

#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub use frame::{FrameAllocator, LockedFrameAllocator};

/// A buddy heap with `buddy_system_allocator::Heap`'s method names: a [`Counted`]
/// [`BuddyHeap`] (the methods are on `Counted<BuddyHeap<ORDER>>`, which is also what
/// [`LockedHeap::lock`](Locked::lock) hands out, so `lock().init(..)` works as in the original).
///
/// `ORDER` counts block sizes as [`BuddyHeap`]'s `MAX_ORDER` does, from 16-byte blocks (8-byte
/// on 32-bit targets) rather than the original's 1-byte ones, so the same `ORDER` allows larger
/// blocks; it may be at most 59 on 64-bit and 28 on 32-bit targets. The default suits both.
///
/// ```
/// use core::alloc::Layout;
/// use kheap::compat::buddy_system_allocator::Heap;
///
/// let space: &'static mut [usize] = Box::leak(vec![0usize; 4096].into_boxed_slice());
/// let mut heap = Heap::<32>::empty();
/// // SAFETY: the leaked buffer lives for ever and only the heap uses it.
/// unsafe { heap.init(space.as_mut_ptr() as usize, 4096 * core::mem::size_of::<usize>()) };
/// let block = heap.alloc(Layout::from_size_align(100, 8).unwrap()).unwrap();
/// assert_eq!(heap.stats_alloc_user(), 100);
/// // SAFETY: `block` was allocated just above with this layout.
/// unsafe { heap.dealloc(block, Layout::from_size_align(100, 8).unwrap()) };
/// assert_eq!(format!("{heap:?}"), format!("Heap {{ user: 0, allocated: 0, total: {} }}", heap.stats_total_bytes()));
/// ```
#[repr(transparent)]
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

    /// The heap a [`LockedHeap`]'s lock guards (kheap's `Counted<BuddyHeap<ORDER>>`, which has
    /// all of `Heap`'s methods), seen as a `Heap`: for code that names the type, such as a
    /// function written for the original taking `&mut Heap<32>`.
    ///
    /// ```
    /// use kheap::compat::buddy_system_allocator::{Heap, LockedHeap};
    ///
    /// fn total(heap: &mut Heap<32>) -> usize {
    ///     heap.stats_total_bytes()
    /// }
    /// static HEAP: LockedHeap<32> = LockedHeap::empty();
    /// assert_eq!(total(Heap::from_counted_mut(&mut HEAP.lock())), 0);
    /// ```
    pub fn from_counted_mut(heap: &mut Counted<BuddyHeap<ORDER>>) -> &mut Self {
        // SAFETY: `Heap` is a `repr(transparent)` wrapper of `Counted<BuddyHeap<ORDER>>`, so the
        // pointer is valid for the same type layout, and the borrow is carried over unchanged.
        unsafe { &mut *ptr::from_mut(heap).cast::<Self>() }
    }
}

impl<const ORDER: usize> fmt::Debug for Heap<ORDER> {
    /// As the original: `Heap { user, allocated, total }`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap")
            .field("user", &self.stats_alloc_user())
            .field("allocated", &self.stats_alloc_actual())
            .field("total", &self.stats_total_bytes())
            .finish()
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
    /// Adds the memory `[start, end)` to the heap. A range too small to hold a block (an empty
    /// one, say) is ignored, as the original ignores it.
    ///
    /// # Panics
    ///
    /// When `end < start` (as the original), and when the range is refused for another reason
    /// (at address 0, overlapping memory the heap has, wrapping the address space), naming it
    /// and why.
    ///
    /// # Safety
    ///
    /// 1. `[start, end)` is valid for reads and writes for as long as the heap is used.
    /// 2. Nothing else reads or writes it from now on.
    pub unsafe fn add_to_heap(&mut self, start: usize, end: usize) {
        let Some(len) = end.checked_sub(start) else {
            panic!("kheap: add_to_heap({start:#x}, {end:#x}): end is below start");
        };
        if len < Self::MIN_REGION {
            return;
        }
        let region = NonNull::new(core::ptr::with_exposed_provenance_mut::<u8>(start))
            .map(|p| NonNull::slice_from_raw_parts(p, len));
        let added = match region {
            // SAFETY: obligations 1 and 2 are this function's own.
            Some(region) => unsafe { self.add_region(region) },
            None => Err(RegionError::Null),
        };
        match added {
            Ok(_) | Err(RegionError::TooSmall { .. } | RegionError::MisalignedBeyondUse { .. }) => {}
            Err(error) => panic!("kheap: add_to_heap({start:#x}, {end:#x}) refused: {error}"),
        }
    }

    /// Adds the memory `[start, start + size)` to the heap; a range too small to hold a block is
    /// ignored.
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

    /// Allocates a block for `layout`; `Err(())` when no free block can hold it, as the
    /// original (kheap's own heaps return a typed [`AllocError`](crate::AllocError)).
    #[allow(clippy::result_unit_err)]
    pub fn alloc(&mut self, layout: Layout) -> Result<NonNull<u8>, ()> {
        self.allocate(layout).map(NonNull::cast).map_err(|_| ())
    }

    /// Frees a block.
    ///
    /// # Panics
    ///
    /// When the heap detects that the block is not a live allocation with this layout (a
    /// double, foreign, interior or wrong-layout free), with the report; the heap is then
    /// unchanged. (The original corrupts its free lists, or panics on a double free.)
    ///
    /// # Safety
    ///
    /// 1. `ptr` is a live allocation of this heap.
    /// 2. `layout` is the layout it was allocated with.
    pub unsafe fn dealloc(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: obligations 1 and 2 are this function's own.
        if let Err(misuse) = unsafe { self.deallocate(ptr, layout) } {
            panic!("{misuse}");
        }
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

/// `buddy_system_allocator::LockedHeapWithRescue`: a [`LockedHeap`] that calls `rescue` when an
/// allocation fails, with the heap locked, so it can add memory (rCore-family kernels map more
/// pages there), then tries again.
///
/// As long as the rescue adds memory and the allocation still fails, it is called again (the
/// original calls it once: a region that touches the heap may spend part of itself on joined
/// bookkeeping, so one call is not always enough). The rescue runs with the lock held: it must
/// not allocate from this heap. (A kheap [`LockedHeap`](crate::LockedHeap) built
/// [`with_source`](crate::LockedHeap::with_source) grows without holding the lock.)
///
/// ```
/// use core::alloc::{GlobalAlloc, Layout};
/// use kheap::compat::buddy_system_allocator::{Heap, LockedHeapWithRescue};
///
/// static HEAP: LockedHeapWithRescue<32> = LockedHeapWithRescue::new(|heap: &mut Heap<32>, layout: &Layout| {
///     // A kernel maps fresh pages here; a leaked host buffer serves as well.
///     let pages: &'static mut [u8] = Box::leak(vec![0u8; layout.size().max(4096) * 2].into_boxed_slice());
///     // SAFETY: the leaked buffer lives for ever and only the heap uses it.
///     unsafe { heap.add_to_heap(pages.as_mut_ptr() as usize, pages.as_mut_ptr() as usize + pages.len()) };
/// });
///
/// // SAFETY: non-zero size; freed with the same layout.
/// unsafe {
///     let block = HEAP.alloc(Layout::from_size_align(1000, 8).unwrap());
///     assert!(!block.is_null()); // the empty heap was rescued
///     HEAP.dealloc(block, Layout::from_size_align(1000, 8).unwrap());
/// }
/// assert_eq!(HEAP.stats().grown_requests, 1);
/// ```
pub struct LockedHeapWithRescue<const ORDER: usize = DEFAULT_MAX_ORDER, R: RawMutex = RawSpinlock> {
    inner: Locked<R, BuddyHeap<ORDER>>,
    rescue: fn(&mut Heap<ORDER>, &Layout),
}

impl<const ORDER: usize> LockedHeapWithRescue<ORDER> {
    /// An empty heap behind kheap's spinlock (the original's lock) that calls `rescue` when an
    /// allocation fails; `const`. (For another lock: [`with_lock`](Self::with_lock).)
    pub const fn new(rescue: fn(&mut Heap<ORDER>, &Layout)) -> Self {
        Self::with_lock(rescue)
    }
}

impl<const ORDER: usize, R: RawMutex> LockedHeapWithRescue<ORDER, R> {
    /// An empty heap behind the lock `R` that calls `rescue` when an allocation fails;
    /// `const`: `static HEAP: LockedHeapWithRescue<32, RawIrqSpinlock<I>> =
    /// LockedHeapWithRescue::with_lock(rescue);`.
    pub const fn with_lock(rescue: fn(&mut Heap<ORDER>, &Layout)) -> Self {
        LockedHeapWithRescue { inner: Locked::new(BuddyHeap::with_orders()), rescue }
    }

    /// Allocates, calling the rescue function while the heap refuses and the rescue adds memory.
    fn allocate_or_rescue(&self, layout: Layout) -> *mut u8 {
        let mut heap = self.inner.lock();
        if let Ok(block) = heap.allocate_quietly(layout) {
            return block.cast::<u8>().as_ptr();
        }
        loop {
            let before = heap.usage().total_bytes;
            (self.rescue)(Heap::from_counted_mut(&mut heap), &layout);
            if let Ok(block) = heap.allocate_quietly(layout) {
                heap.count_grown();
                return block.cast::<u8>().as_ptr();
            }
            if heap.usage().total_bytes <= before {
                heap.count_refusal();
                return ptr::null_mut();
            }
        }
    }
}

impl<const ORDER: usize, R: RawMutex> Deref for LockedHeapWithRescue<ORDER, R> {
    type Target = Locked<R, BuddyHeap<ORDER>>;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

// SAFETY: blocks come from the heap under its lock (the heap's promises 1 and 4); frees and
// in-place resizes go through kheap's front or the locked heap, with the caller's obligations
// passed on; a moving realloc copies `min(old, new)` bytes into a fresh block before freeing the
// old one. Nothing here unwinds but a rescue function that panics (the caller's code).
unsafe impl<const ORDER: usize, R: RawMutex> GlobalAlloc for LockedHeapWithRescue<ORDER, R>
where
    Locked<R, BuddyHeap<ORDER>>: Sync,
{
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.allocate_or_rescue(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(block) = NonNull::new(ptr) else {
            // SAFETY: a null pointer is reported by the front (its misuse hook), never used.
            unsafe { self.inner.dealloc(ptr, layout) };
            return ptr::null_mut();
        };
        // SAFETY: `GlobalAlloc::realloc`'s contract: `block` is live with `layout` (1, 2), and
        // `new_size` fits `isize` once rounded to the alignment (3).
        if unsafe { self.inner.lock().resize_in_place(block, layout, new_size) }.is_ok() {
            return ptr;
        }
        let Ok(new) = Layout::from_size_align(new_size, layout.align()) else { return ptr::null_mut() };
        let moved = self.allocate_or_rescue(new);
        if !moved.is_null() {
            // SAFETY: both blocks are live and distinct and hold at least `min(old, new)` bytes;
            // then the old block goes back with its layout.
            unsafe {
                ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                self.inner.dealloc(ptr, layout);
            }
        }
        moved
    }
}
