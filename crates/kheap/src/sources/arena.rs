//! Static memory that a heap claims on its first allocation: no `init` call, so allocations made
//! before `main` (std names the main thread before `main` runs) or early in a kernel's boot
//! find a heap ready.

use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::MemorySource;

/// A static array that a [`LockedHeap`](crate::LockedHeap) takes as its memory the first time
/// it needs memory: build the heap [`with_source`](crate::LockedHeap::with_source)`(&ARENA)` and
/// it works from the very first allocation, with no `init` call to forget or to run too late.
///
/// The array lives inside the `StaticArena` (zero-initialised, so in `.bss`: it costs nothing
/// in the program image) and is page-aligned, so the heap can use all of it. It is handed over
/// once, whole, on the first request that fits in it; later requests get nothing more from it
/// (chain another source for growth).
///
/// ```
/// use core::alloc::{GlobalAlloc, Layout};
/// use kheap::{BuddyHeap, LockedHeap, RawSpinlock, StaticArena};
///
/// static ARENA: StaticArena<{ 1 << 20 }> = StaticArena::new();
///
/// // In a program or a kernel, mark it #[global_allocator].
/// static HEAP: LockedHeap<RawSpinlock, BuddyHeap> = LockedHeap::new(BuddyHeap::new()).with_source(&ARENA);
///
/// assert!(!ARENA.is_taken());
/// let layout = Layout::new::<[u64; 4]>();
/// // SAFETY: the layout has a non-zero size; the block is freed with it below.
/// unsafe {
///     let block = HEAP.alloc(layout); // no init call: the heap claims ARENA now
///     assert!(!block.is_null());
///     HEAP.dealloc(block, layout);
/// }
/// assert!(ARENA.is_taken());
/// assert!(HEAP.stats().total_bytes > 900 * 1024); // all of it but the bookkeeping
/// ```
#[repr(C, align(4096))]
pub struct StaticArena<const N: usize> {
    /// The memory. Invariant: nothing but this arena touches it until `taken` is set; from then
    /// on only the heap it was handed to.
    memory: UnsafeCell<[MaybeUninit<u8>; N]>,
    /// Invariant: set exactly while the memory is handed out.
    taken: AtomicBool,
}

// SAFETY: the memory is reached only through `acquire`, which hands it out at most once
// (guarded by the atomic swap), so sharing the arena between threads shares no access to it.
unsafe impl<const N: usize> Sync for StaticArena<N> {}

impl<const N: usize> StaticArena<N> {
    /// An arena of `N` bytes, not handed out yet; `const`, for a `static`.
    pub const fn new() -> Self {
        StaticArena { memory: UnsafeCell::new([MaybeUninit::uninit(); N]), taken: AtomicBool::new(false) }
    }

    /// Whether the arena has been handed to a heap.
    pub fn is_taken(&self) -> bool {
        self.taken.load(Ordering::Acquire)
    }
}

impl<const N: usize> Default for StaticArena<N> {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: the memory is part of a `'static` value (1: a `MemorySource` is used through
// `&'static`, see `LockedHeap::with_source`); `claim` hands it out at most once until it is
// released (2).
unsafe impl<const N: usize> MemorySource for StaticArena<N> {
    fn acquire(&self, layout: Layout) -> Option<NonNull<[u8]>> {
        let start = NonNull::new(self.memory.get().cast::<u8>())?;
        claim(&self.taken, NonNull::slice_from_raw_parts(start, N), layout)
    }

    unsafe fn release(&self, region: NonNull<[u8]>) -> bool {
        let start = NonNull::new(self.memory.get().cast::<u8>());
        start.is_some_and(|start| give_back(&self.taken, NonNull::slice_from_raw_parts(start, N), region))
    }
}

/// A byte type a static array of memory may be made of: `u8` (the tutorials' spelling,
/// `static mut HEAP_SPACE: [u8; N] = [0; N]`) or `MaybeUninit<u8>`. Sealed.
///
/// ```
/// use core::mem::MaybeUninit;
/// use kheap::StaticRegion;
///
/// static mut BYTES: [u8; 4096] = [0; 4096];
/// static mut UNINIT: [MaybeUninit<u8>; 4096] = [MaybeUninit::uninit(); 4096];
/// // SAFETY: each array is used by nothing but its region from now on.
/// static A: StaticRegion = unsafe { StaticRegion::new(&raw mut BYTES) };
/// // SAFETY: as above.
/// static B: StaticRegion = unsafe { StaticRegion::new(&raw mut UNINIT) };
/// ```
pub trait ArenaByte: sealed::Sealed {}

impl ArenaByte for u8 {}
impl ArenaByte for MaybeUninit<u8> {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for core::mem::MaybeUninit<u8> {}
}

/// A static array you already have (a `static mut [u8; N]`, as the tutorials write it, or a
/// `[MaybeUninit<u8>; N]`), handed to a heap the first time it needs memory, like
/// [`StaticArena`]. Prefer `StaticArena`, which needs no `unsafe`.
///
/// ```
/// use kheap::{BuddyHeap, LockedHeap, RawSpinlock, StaticRegion};
///
/// const KERNEL_HEAP_SIZE: usize = 0x30_0000;
/// static mut HEAP_SPACE: [u8; KERNEL_HEAP_SIZE] = [0; KERNEL_HEAP_SIZE];
/// // SAFETY: HEAP_SPACE is used by nothing but this region from now on.
/// static HEAP_REGION: StaticRegion = unsafe { StaticRegion::new(&raw mut HEAP_SPACE) };
///
/// // In a kernel: #[global_allocator]
/// static HEAP: LockedHeap<RawSpinlock, BuddyHeap> = LockedHeap::new(BuddyHeap::new()).with_source(&HEAP_REGION);
///
/// let layout = core::alloc::Layout::new::<[u64; 4]>();
/// // SAFETY: the layout has a non-zero size; the block is freed with it below.
/// unsafe {
///     let block = core::alloc::GlobalAlloc::alloc(&HEAP, layout);
///     assert!(!block.is_null());
///     core::alloc::GlobalAlloc::dealloc(&HEAP, block, layout);
/// }
/// assert!(HEAP.stats().total_bytes > KERNEL_HEAP_SIZE * 9 / 10);
/// ```
pub struct StaticRegion {
    /// The memory's start. Invariant: nothing but this value touches the `len` bytes there
    /// until `taken` is set.
    start: *mut u8,
    /// The memory's length in bytes.
    len: usize,
    /// Invariant: set exactly while the memory is handed out.
    taken: AtomicBool,
}

// SAFETY: as for `StaticArena`: the memory is handed out at most once, guarded by the atomic.
unsafe impl Sync for StaticRegion {}
// SAFETY: the value only holds the address until it hands the memory out.
unsafe impl Send for StaticRegion {}

impl StaticRegion {
    /// The array at `memory`, not handed out yet; `const`, for a `static`:
    /// `unsafe { StaticRegion::new(&raw mut HEAP_SPACE) }`.
    ///
    /// # Safety
    ///
    /// 1. `memory` is valid for reads and writes for ever (a `static`).
    /// 2. Nothing but this `StaticRegion` (and the heap it hands the memory to) reads or
    ///    writes it from now on.
    pub const unsafe fn new<B: ArenaByte, const N: usize>(memory: *mut [B; N]) -> Self {
        // `B` is one byte (sealed: `u8` or `MaybeUninit<u8>`), so N elements are N bytes.
        StaticRegion { start: memory.cast::<u8>(), len: N, taken: AtomicBool::new(false) }
    }

    /// Whether the array has been handed to a heap.
    pub fn is_taken(&self) -> bool {
        self.taken.load(Ordering::Acquire)
    }
}

// SAFETY: (1) and (2) are `StaticRegion::new`'s obligations 1 and 2; `claim` hands the memory
// out at most once until it is released.
unsafe impl MemorySource for StaticRegion {
    fn acquire(&self, layout: Layout) -> Option<NonNull<[u8]>> {
        let start = NonNull::new(self.start)?;
        claim(&self.taken, NonNull::slice_from_raw_parts(start, self.len), layout)
    }

    unsafe fn release(&self, region: NonNull<[u8]>) -> bool {
        NonNull::new(self.start).is_some_and(|start| {
            give_back(&self.taken, NonNull::slice_from_raw_parts(start, self.len), region)
        })
    }
}

/// Hands out `memory` whole, if it is not taken and it holds `layout.size()` bytes from its
/// first multiple of `layout.align()` (fewer than `align` bytes after its start: the
/// `MemorySource` contract lets the region start there, and the heap uses those bytes too). A
/// request that does not fit leaves the memory for a later one.
fn claim(taken: &AtomicBool, memory: NonNull<[u8]>, layout: Layout) -> Option<NonNull<[u8]>> {
    // `align` is a power of two; computed from the address, so it is exact under Miri too.
    let misalignment = memory.cast::<u8>().addr().get() & (layout.align() - 1);
    let skip = if misalignment == 0 { 0 } else { layout.align() - misalignment };
    memory.len().checked_sub(skip).filter(|&len| len >= layout.size())?;
    if taken.swap(true, Ordering::AcqRel) {
        return None;
    }
    Some(memory)
}

/// Takes `region` back if it is the memory `claim` handed out.
fn give_back(taken: &AtomicBool, memory: NonNull<[u8]>, region: NonNull<[u8]>) -> bool {
    if region.cast::<u8>() != memory.cast::<u8>() || region.len() != memory.len() {
        return false;
    }
    taken.store(false, Ordering::Release);
    true
}
