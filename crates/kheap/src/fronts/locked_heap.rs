//! `LockedHeap`: any [`RawHeap`] behind any lock, as a [`GlobalAlloc`].

use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;
use core::ptr::{self, NonNull};

use lock_api::{Mutex, MutexGuard, RawMutex};

use crate::{region_len_for, AllocError, HeapStats, InvariantError, MemorySource, RawHeap, RegionError};

/// A heap behind a lock, usable as `#[global_allocator]`.
///
/// `R` is the lock: [`RawIrqSpinlock`](crate::RawIrqSpinlock) in a kernel whose interrupt
/// handlers allocate, [`RawSpinlock`](crate::RawSpinlock) where none do, or any other
/// `lock_api::RawMutex`. `H` is the algorithm.
///
/// ```
/// use core::mem::MaybeUninit;
/// use kheap::{BuddyHeap, LockedHeap, RawSpinlock};
///
/// static HEAP: LockedHeap<RawSpinlock, BuddyHeap> = LockedHeap::new(BuddyHeap::new());
///
/// // A kernel would use a `static` array in `.bss`; a leaked box is `'static` too.
/// let memory: &'static mut [MaybeUninit<u8>] = Box::leak(Box::new([MaybeUninit::uninit(); 64 * 1024]));
/// HEAP.add_region(memory).unwrap();
///
/// let layout = core::alloc::Layout::new::<[u64; 4]>();
/// // SAFETY: the layout has a non-zero size.
/// let block = unsafe { core::alloc::GlobalAlloc::alloc(&HEAP, layout) };
/// assert!(!block.is_null());
/// assert_eq!(HEAP.stats().live_allocations, 1);
/// // SAFETY: `block` came from `HEAP.alloc` with this layout.
/// unsafe { core::alloc::GlobalAlloc::dealloc(&HEAP, block, layout) };
/// ```
///
/// The safe [`add_region`](Self::add_region) takes only memory that lives for ever; a
/// shorter-lived buffer is refused at compile time:
///
/// ```compile_fail
/// use core::mem::MaybeUninit;
/// use kheap::{BuddyHeap, LockedHeap, RawSpinlock};
///
/// static HEAP: LockedHeap<RawSpinlock, BuddyHeap> = LockedHeap::new(BuddyHeap::new());
/// let mut local = [MaybeUninit::<u8>::uninit(); 4096];
/// HEAP.add_region(&mut local).unwrap(); // error: `local` does not live long enough
/// ```
pub struct LockedHeap<R: RawMutex, H> {
    heap: Mutex<R, H>,
    /// Asked for a new region when an allocation fails.
    source: Option<&'static (dyn MemorySource + Sync)>,
}

impl<R: RawMutex, H: RawHeap> LockedHeap<R, H> {
    /// Wraps `heap`; `const`, so it can initialise a `static`.
    pub const fn new(heap: H) -> Self {
        LockedHeap { heap: Mutex::const_new(R::INIT, heap), source: None }
    }

    /// Wraps `heap`, growing it from `source` whenever an allocation would fail; `const`.
    pub const fn with_source(heap: H, source: &'static (dyn MemorySource + Sync)) -> Self {
        LockedHeap { heap: Mutex::const_new(R::INIT, heap), source: Some(source) }
    }

    /// Allocates from the locked heap; on failure, grows it from the source (if any) and tries
    /// again.
    fn allocate_or_grow(&self, heap: &mut H, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        if let Ok(block) = heap.allocate(layout) {
            return Ok(block);
        }
        let source = self.source.filter(|_| heap.could_ever_fit(layout)).ok_or(AllocError)?;
        let region = source.acquire(region_len_for(layout)).ok_or(AllocError)?;
        // SAFETY: `MemorySource` promises the region is valid for ever (1) and handed over (2).
        unsafe { heap.add_region(region) }.map_err(|_| AllocError)?;
        heap.allocate(layout)
    }

    /// Locks the heap for direct use of its [`RawHeap`] methods.
    pub fn lock(&self) -> MutexGuard<'_, R, H> {
        self.heap.lock()
    }

    /// Locks the heap if no one holds it, without waiting: for code (an interrupt handler, a
    /// panic handler printing statistics) that must not spin.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, R, H>> {
        self.heap.try_lock()
    }

    /// Whether someone holds the lock now (a hint: it may change at once).
    pub fn is_locked(&self) -> bool {
        self.heap.is_locked()
    }

    /// Gives the heap memory that lives for ever, such as a `static` array.
    /// Returns how many bytes of it can be allocated.
    ///
    /// # Errors
    ///
    /// The [`RegionError`] of [`RawHeap::add_region`]; the heap is unchanged.
    pub fn add_region(&self, region: &'static mut [MaybeUninit<u8>]) -> Result<usize, RegionError> {
        let region = NonNull::from(region);
        let region = NonNull::slice_from_raw_parts(region.cast::<u8>(), region.len());
        // SAFETY: a `&'static mut` borrow is valid for ever (1) and unique: nothing else can
        // read or write the memory again (2).
        unsafe { self.heap.lock().add_region(region) }
    }

    /// Gives the heap `len` bytes at `start`. Returns how many bytes of it can be allocated.
    ///
    /// # Errors
    ///
    /// [`RegionError::Null`] for a null `start`, otherwise the [`RegionError`] of
    /// [`RawHeap::add_region`]; the heap is unchanged.
    ///
    /// # Safety
    ///
    /// 1. `[start, start + len)` is valid for reads and writes for as long as the heap is used.
    /// 2. Nothing else reads or writes it from now on.
    pub unsafe fn add_region_raw(&self, start: *mut u8, len: usize) -> Result<usize, RegionError> {
        let start = NonNull::new(start).ok_or(RegionError::Null)?;
        // SAFETY: obligations 1 and 2 are this function's own.
        unsafe { self.heap.lock().add_region(NonNull::slice_from_raw_parts(start, len)) }
    }

    /// A snapshot of the heap's statistics.
    pub fn stats(&self) -> HeapStats {
        self.heap.lock().stats()
    }

    /// Runs the heap's invariant walker.
    ///
    /// # Errors
    ///
    /// The first broken invariant found.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        self.heap.lock().check_invariants()
    }

    /// Allocates without involving the global out-of-memory handler.
    ///
    /// # Errors
    ///
    /// [`AllocError`] when the heap cannot satisfy `layout`.
    pub fn try_allocate(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        self.allocate_or_grow(&mut self.heap.lock(), layout)
    }
}

// SAFETY: every call goes to the `RawHeap` under the lock, so calls are serialised; the heap's
// own contract (`RawHeap` promises 1-4) gives `GlobalAlloc`'s: aligned, disjoint blocks of at
// least the requested size, null on failure, contents kept by `realloc`.
unsafe impl<R: RawMutex, H: RawHeap> GlobalAlloc for LockedHeap<R, H> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.allocate_or_grow(&mut self.heap.lock(), layout).map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let block = self.allocate_or_grow(&mut self.heap.lock(), layout);
        let Ok(block) = block else { return ptr::null_mut() };
        // SAFETY: the heap handed out at least `layout.size()` writable bytes at `block`.
        unsafe { block.as_ptr().write_bytes(0, layout.size()) };
        block.as_ptr()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(block) = NonNull::new(ptr) else {
            panic!("kheap: dealloc(null, {layout:?})");
        };
        // SAFETY: `GlobalAlloc::dealloc`'s contract: `ptr` was allocated by this allocator
        // (a live allocation of the heap, 1) with `layout` (it fits, 2).
        unsafe { self.heap.lock().deallocate(block, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(block) = NonNull::new(ptr) else {
            panic!("kheap: realloc(null, {layout:?}, {new_size})");
        };
        let mut heap = self.heap.lock();
        // SAFETY: `GlobalAlloc::realloc`'s contract: `block` is a live allocation with
        // `layout` (1, 2), and `new_size` rounded to the alignment fits `isize` (3).
        let in_place = unsafe { heap.resize_in_place(block, layout, new_size) };
        if in_place.is_ok() {
            return ptr;
        }
        // SAFETY: `realloc`'s contract makes `new_size` with this alignment a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let Ok(moved) = self.allocate_or_grow(&mut heap, new_layout) else { return ptr::null_mut() };
        // SAFETY: both blocks are live and distinct (the heap's promise 1) and hold at least
        // `min(old, new)` bytes; then the old block, with its layout, goes back to the heap.
        unsafe {
            ptr::copy_nonoverlapping(ptr, moved.as_ptr(), layout.size().min(new_size));
            heap.deallocate(block, layout);
        }
        moved.as_ptr()
    }
}
