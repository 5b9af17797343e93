//! The memory every subject is given: one block of host memory per job, aligned to
//! [`ARENA_ALIGN`] so that each subject's arena starts at the same alignment in every run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::NonNull;

/// Alignment of every arena's start (a huge-page boundary).
pub const ARENA_ALIGN: usize = 2 << 20;

/// A span of host memory handed to one heap at a time.
#[derive(Clone, Copy, Debug)]
pub struct Arena {
    pub start: *mut u8,
    pub len: usize,
}

impl Arena {
    pub fn non_null(&self) -> NonNull<u8> {
        NonNull::new(self.start).expect("arenas are never null")
    }
}

/// The job's host memory; arenas are prefixes of it.
pub struct HostMemory {
    start: NonNull<u8>,
    len: usize,
}

impl HostMemory {
    /// Reserves `len` bytes; with `touch`, writes every page once so that page faults are not
    /// measured later.
    pub fn new(len: usize, touch: bool) -> Self {
        let layout = Layout::from_size_align(len, ARENA_ALIGN).expect("arena layout");
        // SAFETY: non-zero size.
        let start = NonNull::new(unsafe { System.alloc(layout) }).expect("no host memory for the arena");
        if touch {
            for offset in (0..len).step_by(4096) {
                // SAFETY: in bounds of the block just allocated.
                unsafe { start.as_ptr().add(offset).write_volatile(0) };
            }
        }
        HostMemory { start, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The first `len` bytes. Panics if there are not that many.
    pub fn arena(&self, len: usize) -> Arena {
        assert!(len <= self.len, "arena of {len} bytes asked from {} bytes of host memory", self.len);
        Arena { start: self.start.as_ptr(), len }
    }
}

impl Drop for HostMemory {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.len, ARENA_ALIGN).expect("arena layout");
        // SAFETY: allocated in `new` with this layout.
        unsafe { System.dealloc(self.start.as_ptr(), layout) }
    }
}
