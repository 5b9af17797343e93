//! The `compat` build's heap: the rCore tutorial's file, unchanged but for its `use` line, plus
//! the accessors the rest of the kernel needs.
//!
//! The tutorial keeps `HEAP_ALLOCATOR` private to its file. Rather than edit the file, it is
//! pulled in with `include!`, so the accessors below live in the same module and can see it.

// The tutorial's file predates the `static_mut_refs` and `function_casts_as_integer` lints and
// documents none of its unsafe blocks; it is kept verbatim, so its lints are allowed here rather
// than fixed. What makes it work in this kernel: `init_heap` runs once, on the boot hart, before
// anything else touches `HEAP_SPACE`. (Its `HEAP_SPACE.as_ptr() as usize` takes the address
// through a shared reference and the heap then writes there: tolerated on bare metal, and the
// reason the native build hands the heap a `&'static mut [MaybeUninit<u8>]` instead.)
#[allow(
    static_mut_refs,
    function_casts_as_integer,
    clippy::undocumented_unsafe_blocks,
    clippy::needless_range_loop
)]
mod tutorial {
    include!("../tutorial_heap.rs");

    /// The tutorial's allocator, for the accessors in the parent module.
    pub(super) fn allocator() -> &'static LockedHeap {
        &HEAP_ALLOCATOR
    }
}

use kheap::{BuddyHeap, Counted, HeapStats, InvariantError};

pub use tutorial::{heap_test, init_heap};

/// What the tutorial's locked allocator hands out: the algorithm inside the `Counted` layer
/// (which keeps the caller statistics and carries the tutorial's `Heap` methods).
pub type Heap = Counted<BuddyHeap>;

/// What the console calls this build's allocator.
pub const NAME: &str = "kheap::compat::buddy_system_allocator::LockedHeap (the tutorial's file)";

/// The tutorial's allocator sits behind a plain spinlock, like buddy_system_allocator's: an
/// interrupt handler that allocates while the interrupted code holds the lock would spin for
/// ever, so code that runs with interrupts enabled masks them around its allocations.
pub const IRQ_SAFE: bool = false;

/// The tutorial's allocator has no memory source: the kernel adds memory itself.
pub const GROWS_BY_ITSELF: bool = false;

/// Nor does it give memory back.
pub const GIVES_BACK: bool = false;

/// Whether the global heap's lock is held now.
pub fn is_locked() -> bool {
    tutorial::allocator().is_locked()
}

/// A snapshot of the global heap's statistics.
pub fn stats() -> HeapStats {
    tutorial::allocator().stats()
}

/// As [`stats`]: the buddy heap keeps no memory cached for reuse.
pub fn settled_stats() -> HeapStats {
    stats()
}

/// Runs the global heap's invariant walker.
pub fn check_invariants() -> Result<(), InvariantError> {
    tutorial::allocator().check_invariants()
}

/// The tutorial's allocator gives nothing back.
pub fn regions_given_back() -> usize {
    0
}

/// Runs `f` on the locked heap; `f` must not allocate (the lock is held).
pub fn with_locked<T>(f: impl FnOnce(&Heap) -> T) -> T {
    f(&tutorial::allocator().lock())
}

/// Gives the global heap `[start, start + len)`, as the tutorial's kernel would with
/// `add_to_heap` when it runs out.
///
/// # Safety
///
/// The range is valid for reads and writes for ever, and nothing else uses it from now on.
pub unsafe fn add_memory(start: *mut u8, len: usize) {
    let start = start.expose_provenance();
    // SAFETY: the obligations are this function's own.
    unsafe { tutorial::allocator().lock().add_to_heap(start, start + len) }
}
