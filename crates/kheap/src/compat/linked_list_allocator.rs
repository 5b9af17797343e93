//! The API of `linked_list_allocator` 0.10 (Blog OS's allocator), on kheap's [`BuddyHeap`].
//!
//! Blog OS's heap setup works unchanged but for its `use` line:
//!
//! ```
//! use kheap::compat::linked_list_allocator::LockedHeap; // was: use linked_list_allocator::LockedHeap;
//!
//! // #[global_allocator]
//! static ALLOCATOR: LockedHeap = LockedHeap::empty();
//!
//! static mut HEAP_SPACE: [u8; 100 * 1024] = [0; 100 * 1024];
//!
//! pub fn init_heap() {
//!     // SAFETY: the static is used by nothing but the heap from now on.
//!     unsafe {
//!         ALLOCATOR.lock().init((&raw mut HEAP_SPACE).cast::<u8>(), 100 * 1024);
//!     }
//! }
//!
//! init_heap();
//! assert_eq!(ALLOCATOR.lock().size(), 100 * 1024);
//! assert_eq!(ALLOCATOR.lock().used(), 0);
//! ```
//!
//! Differences: the heap is a buddy heap (sizes round up to a power of two; allocation and
//! free are bounded, not a list walk; every free is checked, and a double, foreign, interior or
//! wrong-layout free is reported instead of corrupting the heap); `free()` counts the bytes that
//! can be allocated, without the buddy heap's bookkeeping (about 1/32 of the heap), so the sum
//! of `used()` and `free()` is a little less than `size()`. The lock is a defaulted type
//! parameter (`LockedHeap<RawIrqSpinlock<X86Interrupts>>` for a kernel whose interrupt handlers
//! allocate).

use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;
use core::ops::Deref;
use core::ptr::NonNull;

use lock_api::RawMutex;

use crate::{
    AllocError, BuddyHeap, Counted, HeapUsage, InvariantError, LockedHeap as Locked, Misuse, Part, RawHeap,
    RawSpinlock, RegionError,
};

/// `linked_list_allocator::Heap`: one span of memory, `[bottom, top)`, that can grow at the top
/// with [`extend`](Self::extend); a [`BuddyHeap`] manages it.
///
/// ```
/// use core::alloc::Layout;
/// use kheap::compat::linked_list_allocator::Heap;
///
/// let memory = Box::leak(Box::new([core::mem::MaybeUninit::<u8>::uninit(); 8192]));
/// let mut heap = Heap::from_slice(memory);
/// let block = heap.allocate_first_fit(Layout::new::<[u64; 8]>()).unwrap();
/// assert_eq!(heap.used(), 64);
/// // SAFETY: allocated just above with this layout.
/// unsafe { heap.deallocate(block, Layout::new::<[u64; 8]>()) };
/// assert_eq!(heap.used(), 0);
/// ```
pub struct Heap {
    heap: BuddyHeap,
    /// The span's start (null before `init`).
    bottom: *mut u8,
    /// The span's length: what `init` and `extend` gave.
    size: usize,
    /// Invariant: `[bottom, bottom + added)` has been handed to `heap`; the rest of the span
    /// (too short to be a region yet) waits for the next `extend`.
    added: usize,
}

// SAFETY: the heap exclusively owns its span (`init`'s obligations), so moving it to another
// thread moves that ownership with it.
unsafe impl Send for Heap {}

impl Heap {
    /// An empty heap; every allocation fails until [`init`](Self::init). `const`.
    pub const fn empty() -> Heap {
        Heap { heap: BuddyHeap::new(), bottom: core::ptr::null_mut(), size: 0, added: 0 }
    }

    /// Gives the heap `[heap_bottom, heap_bottom + heap_size)`.
    ///
    /// # Panics
    ///
    /// When the heap already has memory, or the span is refused (null, too small for the
    /// bookkeeping, wrapping the address space), naming it and why.
    ///
    /// # Safety
    ///
    /// 1. The span is valid for reads and writes for as long as the heap is used (`'static`).
    /// 2. Nothing else reads or writes it from now on.
    pub unsafe fn init(&mut self, heap_bottom: impl HeapBottom, heap_size: usize) {
        let heap_bottom = heap_bottom.into_pointer();
        assert!(self.bottom.is_null(), "kheap: Heap::init called on a heap that has memory");
        let Some(start) = NonNull::new(heap_bottom) else {
            panic!("kheap: Heap::init({heap_bottom:p}, {heap_size:#x}) refused: {}", RegionError::Null);
        };
        // SAFETY: obligations 1 and 2 are this function's own.
        if let Err(error) = unsafe { self.heap.add_region(NonNull::slice_from_raw_parts(start, heap_size)) } {
            panic!("kheap: Heap::init({heap_bottom:p}, {heap_size:#x}) refused: {error}");
        }
        (self.bottom, self.size, self.added) = (heap_bottom, heap_size, heap_size);
    }

    /// Gives the heap memory that lives for ever.
    ///
    /// # Panics
    ///
    /// As [`init`](Self::init).
    pub fn init_from_slice(&mut self, mem: &'static mut [MaybeUninit<u8>]) {
        let len = mem.len();
        // SAFETY: a `&'static mut` borrow is valid for ever (1) and unique (2).
        unsafe { self.init(mem.as_mut_ptr().cast::<u8>(), len) }
    }

    /// A heap over `[heap_bottom, heap_bottom + heap_size)`.
    ///
    /// # Panics
    ///
    /// As [`init`](Self::init).
    ///
    /// # Safety
    ///
    /// As [`init`](Self::init).
    pub unsafe fn new(heap_bottom: *mut u8, heap_size: usize) -> Heap {
        let mut heap = Heap::empty();
        // SAFETY: the obligations are this function's own.
        unsafe { heap.init(heap_bottom, heap_size) };
        heap
    }

    /// A heap over memory that lives for ever.
    ///
    /// # Panics
    ///
    /// As [`init`](Self::init).
    pub fn from_slice(mem: &'static mut [MaybeUninit<u8>]) -> Heap {
        let mut heap = Heap::empty();
        heap.init_from_slice(mem);
        heap
    }

    /// Allocates a block for `layout`; `Err(())` when none is free, as the original. (The
    /// block is the buddy heap's, not a first fit: the name is the original's.)
    #[allow(clippy::result_unit_err)]
    pub fn allocate_first_fit(&mut self, layout: Layout) -> Result<NonNull<u8>, ()> {
        self.heap.allocate(layout).map(NonNull::cast).map_err(|_| ())
    }

    /// Frees a block.
    ///
    /// # Panics
    ///
    /// When the heap detects the misuse of a double, foreign, interior or wrong-layout free,
    /// with the report; the heap is then unchanged.
    ///
    /// # Safety
    ///
    /// 1. `ptr` was returned by `allocate_first_fit` of this heap and not freed since.
    /// 2. `layout` is the layout it was allocated with.
    pub unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: obligations 1 and 2 are this function's own.
        if let Err(misuse) = unsafe { self.heap.deallocate(ptr, layout) } {
            panic!("{misuse}");
        }
    }

    /// The start of the span (null before `init`).
    pub fn bottom(&self) -> *mut u8 {
        self.bottom
    }

    /// The span's length: what `init` and `extend` gave.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The end of the span: `bottom() + size()`.
    pub fn top(&self) -> *mut u8 {
        self.bottom.wrapping_add(self.size)
    }

    /// Bytes in allocated blocks, rounding included.
    pub fn used(&self) -> usize {
        let usage = self.heap.usage();
        usage.total_bytes - usage.free_bytes
    }

    /// Bytes that can still be allocated (the buddy heap's bookkeeping excluded).
    pub fn free(&self) -> usize {
        self.heap.usage().free_bytes
    }

    /// Grows the span by `by` bytes at its top. Bytes too few to be used alone wait for the
    /// next `extend`.
    ///
    /// # Panics
    ///
    /// Before `init`, and when the new memory is refused (it overlaps memory the heap has, or
    /// wraps the address space).
    ///
    /// # Safety
    ///
    /// 1. `[top(), top() + by)` is valid for reads and writes for as long as the heap is used.
    /// 2. Nothing else reads or writes it from now on.
    pub unsafe fn extend(&mut self, by: usize) {
        assert!(!self.bottom.is_null(), "kheap: Heap::extend called before init");
        let size = self.size.checked_add(by).expect("kheap: Heap::extend: the span wraps the address space");
        let start = self.bottom.wrapping_add(self.added);
        // The start lies inside or at the end of the span, whose bottom is not null.
        let Some(start) = NonNull::new(start) else { return };
        let region = NonNull::slice_from_raw_parts(start, size - self.added);
        self.size = size;
        // SAFETY: the pending bytes and the new ones are `[top, top + by)` and the tail the
        // earlier calls gave (obligations 1 and 2, here and before).
        match unsafe { self.heap.add_region(region) } {
            Ok(_) => self.added = size,
            Err(RegionError::TooSmall { .. } | RegionError::MisalignedBeyondUse { .. }) => {}
            Err(error) => panic!("kheap: Heap::extend({by:#x}) refused: {error}"),
        }
    }
}

impl Default for Heap {
    fn default() -> Self {
        Self::empty()
    }
}

// SAFETY: every heap call is forwarded to the `BuddyHeap` unchanged, so its promises are this
// heap's; the span fields only record what was given.
unsafe impl RawHeap for Heap {
    const MIN_REGION: usize = BuddyHeap::<{ crate::DEFAULT_MAX_ORDER }>::MIN_REGION;

    unsafe fn add_region(&mut self, region: NonNull<[u8]>) -> Result<usize, RegionError> {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.heap.add_region(region) }
    }

    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.heap.allocate(layout)
    }

    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Misuse> {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.heap.deallocate(ptr, layout) }
    }

    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError> {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.heap.grow_in_place(ptr, old, new_size) }
    }

    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError> {
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { self.heap.shrink_in_place(ptr, old, new_size) }
    }

    fn region_layout_for(&self, layout: Layout) -> Option<Layout> {
        self.heap.region_layout_for(layout)
    }

    fn usage(&self) -> HeapUsage {
        self.heap.usage()
    }

    fn check_invariants(&self) -> Result<(), InvariantError> {
        self.heap.check_invariants()
    }

    fn walk(&self, visit: &mut dyn FnMut(Part)) {
        self.heap.walk(visit);
    }
}

/// `linked_list_allocator::Heap`'s methods on the heap a [`LockedHeap`]'s lock guards, so
/// `ALLOCATOR.lock().init(..)`, `.used()`, `.extend(..)` work as in the original; allocations
/// made here are counted in the front's statistics.
impl Counted<Heap> {
    /// As [`Heap::init`].
    ///
    /// # Panics
    ///
    /// As [`Heap::init`].
    ///
    /// # Safety
    ///
    /// As [`Heap::init`].
    pub unsafe fn init(&mut self, heap_bottom: impl HeapBottom, heap_size: usize) {
        // SAFETY: the obligations are this function's own.
        unsafe { self.inner_mut().init(heap_bottom, heap_size) }
    }

    /// As [`Heap::init_from_slice`].
    ///
    /// # Panics
    ///
    /// As [`Heap::init`].
    pub fn init_from_slice(&mut self, mem: &'static mut [MaybeUninit<u8>]) {
        self.inner_mut().init_from_slice(mem);
    }

    /// As [`Heap::allocate_first_fit`], counted.
    #[allow(clippy::result_unit_err)]
    pub fn allocate_first_fit(&mut self, layout: Layout) -> Result<NonNull<u8>, ()> {
        self.allocate(layout).map(NonNull::cast).map_err(|_| ())
    }

    /// As [`Heap::deallocate`], counted.
    ///
    /// # Panics
    ///
    /// As [`Heap::deallocate`].
    ///
    /// # Safety
    ///
    /// As [`Heap::deallocate`].
    pub unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the obligations are this function's own.
        if let Err(misuse) = unsafe { RawHeap::deallocate(self, ptr, layout) } {
            panic!("{misuse}");
        }
    }

    /// As [`Heap::bottom`].
    pub fn bottom(&self) -> *mut u8 {
        self.inner().bottom()
    }

    /// As [`Heap::size`].
    pub fn size(&self) -> usize {
        self.inner().size()
    }

    /// As [`Heap::top`].
    pub fn top(&self) -> *mut u8 {
        self.inner().top()
    }

    /// As [`Heap::used`].
    pub fn used(&self) -> usize {
        self.inner().used()
    }

    /// As [`Heap::free`].
    pub fn free(&self) -> usize {
        self.inner().free()
    }

    /// As [`Heap::extend`].
    ///
    /// # Panics
    ///
    /// As [`Heap::extend`].
    ///
    /// # Safety
    ///
    /// As [`Heap::extend`].
    pub unsafe fn extend(&mut self, by: usize) {
        // SAFETY: the obligations are this function's own.
        unsafe { self.inner_mut().extend(by) }
    }
}

/// `linked_list_allocator::LockedHeap`: a [`Heap`] behind a lock, usable as
/// `#[global_allocator]`; `lock()` gives the [`Heap`] methods.
///
/// The lock `R` defaults to [`RawSpinlock`], like the original's spinlock: a kernel whose
/// interrupt handlers allocate deadlocks on it exactly as on the original. Name an
/// interrupt-masking lock to fix that:
///
/// ```
/// use kheap::compat::linked_list_allocator::LockedHeap;
/// use kheap::{NoInterrupts, RawIrqSpinlock};
/// // In an x86_64 kernel: RawIrqSpinlock<kheap::X86Interrupts>.
/// static ALLOCATOR: LockedHeap<RawIrqSpinlock<NoInterrupts>> = LockedHeap::empty();
/// ```
pub struct LockedHeap<R: RawMutex = RawSpinlock>(Locked<R, Heap>);

impl<R: RawMutex> LockedHeap<R> {
    /// An empty heap; `const`.
    pub const fn empty() -> Self {
        LockedHeap(Locked::new(Heap::empty()))
    }
}

impl LockedHeap {
    /// A heap over `[heap_bottom, heap_bottom + heap_size)`, behind kheap's spinlock.
    ///
    /// # Panics
    ///
    /// As [`Heap::init`].
    ///
    /// # Safety
    ///
    /// As [`Heap::init`].
    pub unsafe fn new(heap_bottom: *mut u8, heap_size: usize) -> LockedHeap {
        let heap = LockedHeap::empty();
        // SAFETY: the obligations are this function's own.
        unsafe { heap.lock().init(heap_bottom, heap_size) };
        heap
    }
}

impl<R: RawMutex> Default for LockedHeap<R> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<R: RawMutex> Deref for LockedHeap<R> {
    type Target = Locked<R, Heap>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

// SAFETY: forwards to `kheap::LockedHeap<R, Heap>`'s `GlobalAlloc`, whose contract is the same.
unsafe impl<R: RawMutex> GlobalAlloc for LockedHeap<R>
where
    Locked<R, Heap>: Sync,
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

/// The bottom of a heap as `init` takes it: a pointer (linked_list_allocator 0.10) or an
/// address (0.9, which the Blog OS post's text still uses). An address is turned into a
/// pointer with exposed provenance, as the original's API implies.
pub trait HeapBottom: sealed::Sealed {
    /// The bottom as a pointer.
    fn into_pointer(self) -> *mut u8;
}

impl HeapBottom for *mut u8 {
    fn into_pointer(self) -> *mut u8 {
        self
    }
}

impl HeapBottom for usize {
    fn into_pointer(self) -> *mut u8 {
        core::ptr::with_exposed_provenance_mut(self)
    }
}

mod sealed {
    /// Only the two spellings of the original crates.
    pub trait Sealed {}
    impl Sealed for *mut u8 {}
    impl Sealed for usize {}
}
