//! Typed errors: a refused region, a refused allocation, a broken invariant.

use core::fmt;

/// An allocation request the heap cannot satisfy now (out of memory) or ever (too large, or
/// aligned beyond what the heap supports). The heap is unchanged by the refused call.
///
/// ```
/// use core::alloc::Layout;
/// use kheap::{AllocError, BuddyHeap, RawHeap};
///
/// let mut heap = BuddyHeap::new(); // no memory yet
/// assert_eq!(heap.allocate(Layout::new::<u64>()), Err(AllocError));
/// assert_eq!(AllocError.to_string(), "memory allocation failed");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocError;

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("memory allocation failed")
    }
}

impl core::error::Error for AllocError {}

/// Why a heap refused a region. Nothing already in the heap is disturbed by a refused call.
///
/// ```
/// use kheap::{BuddyHeap, RawHeap, RegionError};
///
/// let memory: &'static mut [u8] = Box::leak(Box::new([0u8; 64]));
/// let mut heap = BuddyHeap::new();
/// // SAFETY: the leaked buffer lives for ever and only the heap uses it (if it takes it).
/// let refused = unsafe { heap.add_region(core::ptr::NonNull::from(memory)) };
/// assert!(matches!(refused, Err(RegionError::TooSmall { size: 64, .. })));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// The region starts at address zero.
    Null,
    /// The region is shorter than the smallest the heap can use.
    TooSmall {
        /// Length of the region handed in, in bytes.
        size: usize,
        /// The smallest region the heap accepts, in bytes.
        minimum: usize,
    },
    /// The region is long enough, but once its ends are rounded inward to the heap's granule
    /// (and its bookkeeping is placed) too little remains to hold one block.
    MisalignedBeyondUse {
        /// Usable bytes left after rounding.
        usable: usize,
        /// The smallest usable span the heap accepts, in bytes.
        minimum: usize,
    },
    /// The region overlaps memory the heap already manages.
    Overlaps,
    /// The region wraps around the end of the address space or is longer than `isize::MAX`.
    TooLarge,
    /// [`RawHeap::remove_region`](crate::RawHeap::remove_region): the region is not one the
    /// heap can give back now (not a region of its own as added, joined with a neighbour, not
    /// wholly free, or the heap cannot remove regions).
    NotRemovable,
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RegionError::Null => f.write_str("region starts at the null address"),
            RegionError::TooSmall { size, minimum } => {
                write!(f, "region of {size} bytes is smaller than the minimum of {minimum}")
            }
            RegionError::MisalignedBeyondUse { usable, minimum } => {
                write!(f, "region keeps only {usable} usable bytes after alignment (needs {minimum})")
            }
            RegionError::Overlaps => f.write_str("region overlaps memory the heap already manages"),
            RegionError::TooLarge => {
                f.write_str("region wraps the address space or is longer than isize::MAX")
            }
            RegionError::NotRemovable => {
                f.write_str("region is not a whole free region the heap can give back")
            }
        }
    }
}

impl core::error::Error for RegionError {}

/// A broken heap invariant found by [`RawHeap::check_invariants`](crate::RawHeap::check_invariants).
///
/// Names what is broken and where, so that a test, a fuzzer or a kernel's panic message can
/// point at the block.
///
/// ```
/// use kheap::{BuddyHeap, InvariantError, LockedHeap, RawSpinlock};
///
/// fn check(heap: &LockedHeap<RawSpinlock, BuddyHeap>) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
///     heap.check_invariants()?; // an `InvariantError` names what is broken, and where
///     Ok(())
/// }
/// static HEAP: LockedHeap<RawSpinlock, BuddyHeap> = LockedHeap::new(BuddyHeap::new());
/// check(&HEAP).unwrap();
/// let broken = InvariantError { what: "free bytes disagree with the free lists", at: core::ptr::null(), value: 16 };
/// assert!(broken.to_string().starts_with("heap invariant broken: free bytes disagree"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvariantError {
    /// Which invariant is broken, in words.
    pub what: &'static str,
    /// The block or region where it is broken (null when the invariant is global).
    pub at: *const u8,
    /// A figure that helps: an order, a size or a count, depending on `what`.
    pub value: usize,
}

// SAFETY: `at` is only an address to print; an `InvariantError` never dereferences it.
unsafe impl Send for InvariantError {}
// SAFETY: as above; shared access reads only the address.
unsafe impl Sync for InvariantError {}

impl InvariantError {
    pub(crate) const fn new(what: &'static str, at: *const u8, value: usize) -> Self {
        InvariantError { what, at, value }
    }
}

impl fmt::Display for InvariantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "heap invariant broken: {} (at {:p}, value {})", self.what, self.at, self.value)
    }
}

impl core::error::Error for InvariantError {}
