//! The default build's heap: kheap's native front, interrupt-safe and growing from the frames
//! after the kernel image.

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

use kheap::{Counted, HeapStats, InvariantError, LockedHeap, RawIrqSpinlock, RiscvSupervisorInterrupts};

use crate::config::KERNEL_HEAP_SIZE;
use crate::frames::FRAMES;

/// The heap behind the front: kheap's default heap (TLSF for every request here: the 2 MiB
/// static heap is below `SLABS_FROM`, and stays so as it grows), or in the debug demo the
/// default heap in kheap's debug mode.
#[cfg(not(feature = "debug-demo"))]
type Algorithm = kheap::Heap;
#[cfg(feature = "debug-demo")]
type Algorithm = kheap::Guarded<kheap::Heap>;

/// What the locked global allocator hands out: the algorithm inside the front's `Counted`
/// layer (which keeps the caller statistics).
pub type Heap = Counted<Algorithm>;

/// What the console calls this build's allocator.
#[cfg(not(feature = "debug-demo"))]
pub const NAME: &str = "kheap::LockedHeap<RawIrqSpinlock<RiscvSupervisorInterrupts>, Heap>";
#[cfg(feature = "debug-demo")]
pub const NAME: &str =
    "kheap::LockedHeap<RawIrqSpinlock<RiscvSupervisorInterrupts>, Guarded<Heap>> (GuardLevel::Poison)";

/// The lock masks `sstatus.SIE` while held, so the timer handler can allocate at any moment.
pub const IRQ_SAFE: bool = true;

/// The heap asks [`FRAMES`] for more memory when an allocation would fail.
pub const GROWS_BY_ITSELF: bool = true;

/// A grown region that a free leaves wholly free goes back to [`FRAMES`] while the heap keeps
/// more than [`GIVE_BACK_WATERMARK`] bytes free without it.
pub const GIVES_BACK: bool = true;

/// Free bytes the heap keeps before it gives grown frames back: a quarter of the static heap,
/// so that an allocate/free pair near the edge does not take and return frames each time.
const GIVE_BACK_WATERMARK: usize = KERNEL_HEAP_SIZE / 4;

/// The global allocator: kheap's default heap behind an interrupt-masking spinlock.
#[cfg(not(feature = "debug-demo"))]
#[global_allocator]
static HEAP_ALLOCATOR: LockedHeap<RawIrqSpinlock<RiscvSupervisorInterrupts>, Algorithm> =
    LockedHeap::new(kheap::Heap::new()).with_source(&FRAMES).give_back_above(GIVE_BACK_WATERMARK);

/// The global allocator of the debug demo: the same, in debug mode, reporting misuse on the
/// console (after the heap's lock is released) instead of panicking.
#[cfg(feature = "debug-demo")]
#[global_allocator]
static HEAP_ALLOCATOR: LockedHeap<RawIrqSpinlock<RiscvSupervisorInterrupts>, Algorithm> =
    LockedHeap::new(kheap::Guarded::new(kheap::Heap::new(), kheap::GuardLevel::Poison))
        .with_source(&FRAMES)
        .give_back_above(GIVE_BACK_WATERMARK)
        .on_misuse(crate::debug_demo::print_misuse);

/// The static heap: a zeroed array, so it lands in `.bss` (`heap_test` checks).
#[repr(C, align(4096))]
struct HeapSpace([u8; KERNEL_HEAP_SIZE]);

static mut HEAP_SPACE: HeapSpace = HeapSpace([0; KERNEL_HEAP_SIZE]);

/// Set by the first `init_heap`: `HEAP_SPACE` is handed to the heap once only.
static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Gives the static array to the global heap, like the tutorial's `init_heap`.
pub fn init_heap() {
    assert!(!INITIALISED.swap(true, Ordering::AcqRel), "init_heap called twice");
    // SAFETY: the swap above lets this line run once, so this is the only reference ever made
    // to HEAP_SPACE; `u8` and `MaybeUninit<u8>` have the same layout and any bytes are valid
    // for `MaybeUninit`.
    let space: &'static mut [MaybeUninit<u8>; KERNEL_HEAP_SIZE] =
        unsafe { &mut *core::ptr::addr_of_mut!(HEAP_SPACE.0).cast() };
    HEAP_ALLOCATOR.add_region(space).expect("the static heap is refused");
}

/// The tutorial's `heap_test` (its function-to-integer casts spelled as current Rust wants):
/// boxes and vectors come from `.bss`.
#[allow(clippy::needless_range_loop)]
pub fn heap_test() {
    use alloc::boxed::Box;
    use alloc::vec::Vec;
    extern "C" {
        fn sbss();
        fn ebss();
    }
    let bss_range = sbss as *const () as usize..ebss as *const () as usize;
    let a = Box::new(5);
    assert_eq!(*a, 5);
    assert!(bss_range.contains(&(a.as_ref() as *const _ as usize)));
    drop(a);
    let mut v: Vec<usize> = Vec::new();
    for i in 0..500 {
        v.push(i);
    }
    for i in 0..500 {
        assert_eq!(v[i], i);
    }
    assert!(bss_range.contains(&(v.as_ptr() as usize)));
    drop(v);
    println!("heap_test passed!");
}

/// Whether the global heap's lock is held now.
pub fn is_locked() -> bool {
    HEAP_ALLOCATOR.is_locked()
}

/// A snapshot of the global heap's statistics.
pub fn stats() -> HeapStats {
    HEAP_ALLOCATOR.stats()
}

/// The global heap's statistics once the memory it keeps cached for reuse (spare slabs) is
/// back among its free memory: what live blocks alone leave, for before/after comparisons.
pub fn settled_stats() -> HeapStats {
    HEAP_ALLOCATOR.trim();
    HEAP_ALLOCATOR.stats()
}

/// Runs the global heap's invariant walker.
pub fn check_invariants() -> Result<(), InvariantError> {
    HEAP_ALLOCATOR.check_invariants()
}

/// How many grown regions went back to [`FRAMES`] so far.
pub fn regions_given_back() -> usize {
    HEAP_ALLOCATOR.regions_given_back()
}

/// Runs `f` on the locked heap; `f` must not allocate (the lock is held).
pub fn with_locked<T>(f: impl FnOnce(&Heap) -> T) -> T {
    f(&HEAP_ALLOCATOR.lock())
}

/// Gives the global heap `[start, start + len)` by hand (the native heap also grows by
/// itself, from its memory source).
///
/// # Safety
///
/// The range is valid for reads and writes for ever, and nothing else uses it from now on.
pub unsafe fn add_memory(start: *mut u8, len: usize) {
    // SAFETY: the obligations are this function's own.
    unsafe { HEAP_ALLOCATOR.add_region_raw(start, len) }.expect("the region is refused");
}
