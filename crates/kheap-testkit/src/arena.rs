//! Aligned host memory to hand to a heap under test.

use std::alloc::{alloc, dealloc, Layout};
use std::ptr::NonNull;

/// `len` bytes from the host allocator, aligned to `align`, freed on drop.
///
/// Every pointer handed out derives from one base pointer, so slices of an arena added to a
/// heap as separate regions may still be joined by it (Miri accepts that).
pub struct Arena {
    base: NonNull<u8>,
    layout: Layout,
}

impl Arena {
    /// A new arena. Panics if the host cannot provide it.
    pub fn new(len: usize, align: usize) -> Self {
        let layout = Layout::from_size_align(len, align).expect("arena layout");
        // SAFETY: `len` is non-zero for every arena the kit makes.
        let base = NonNull::new(unsafe { alloc(layout) }).expect("host allocation for arena");
        Arena { base, layout }
    }

    /// The whole arena as a region.
    pub fn region(&self) -> NonNull<[u8]> {
        self.slice(0, self.layout.size())
    }

    /// `len` bytes from `offset` as a region.
    pub fn slice(&self, offset: usize, len: usize) -> NonNull<[u8]> {
        assert!(offset + len <= self.layout.size(), "slice outside the arena");
        // SAFETY: `offset <= len` of the allocation, so the pointer stays inside it.
        let start = unsafe { self.base.add(offset) };
        NonNull::slice_from_raw_parts(start, len)
    }

    /// The arena's first byte.
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.layout.size()
    }

    /// Whether the arena is empty (never, for arenas the kit makes).
    pub fn is_empty(&self) -> bool {
        self.layout.size() == 0
    }

    /// Hands the arena over for ever (for `'static` regions); it is never freed.
    pub fn leak(self) -> &'static mut [std::mem::MaybeUninit<u8>] {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: the arena is never freed (ManuallyDrop), so the memory lives for ever, and
        // this is the only reference to it from now on.
        unsafe { std::slice::from_raw_parts_mut(this.base.as_ptr().cast(), this.layout.size()) }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: `base` came from `alloc(self.layout)` and is freed once.
        unsafe { dealloc(self.base.as_ptr(), self.layout) }
    }
}
