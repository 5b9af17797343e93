//! Host memory for the library's own unit tests: 64 KiB-aligned, freed on drop.

use core::ptr::NonNull;

use crate::algorithms::pointer::offset;

/// `len` bytes from the host allocator, aligned to 64 KiB.
pub(crate) struct Memory(pub(crate) NonNull<u8>, std::alloc::Layout);

impl Memory {
    pub(crate) fn new(len: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(len, 64 * 1024).unwrap();
        // SAFETY: every test asks for a non-zero size.
        Memory(NonNull::new(unsafe { std::alloc::alloc(layout) }).unwrap(), layout)
    }

    /// `len` zeroed bytes, as a kernel's `.bss` region is: for tests that commit a misuse whose
    /// detection reads region memory the heap does not own (uninitialised memory there would be
    /// undefined behaviour under Miri, not on hardware).
    pub(crate) fn zeroed(len: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(len, 64 * 1024).unwrap();
        // SAFETY: every test asks for a non-zero size.
        Memory(NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).unwrap(), layout)
    }

    /// `len` bytes from `from` as a region.
    pub(crate) fn region(&self, from: usize, len: usize) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(offset(self.0, from), len)
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { std::alloc::dealloc(self.0.as_ptr(), self.1) }
    }
}
