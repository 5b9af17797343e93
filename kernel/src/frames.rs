//! The physical memory after the kernel image, handed out in 4 KiB pages with a bump pointer:
//! the kernel heap's [`MemorySource`] for growing when its static array runs out.

use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use kheap::MemorySource;

use crate::config::MEMORY_END;

/// Page size; every chunk starts and ends on a page boundary.
pub const PAGE_SIZE: usize = 4096;

/// Hands out `[start, end)` front to back; takes a chunk back when it is the last one handed
/// out (the heap gives back its most recent growth first), like a stack.
pub struct FrameSource {
    /// Address of the next free page; 0 until [`init`](Self::init).
    next: AtomicUsize,
    /// First address past the memory this source may hand out.
    end: AtomicUsize,
    /// Where the memory started, for reporting.
    start: AtomicUsize,
}

/// The frames from `ekernel` to the end of RAM.
pub static FRAMES: FrameSource = FrameSource::new();

impl FrameSource {
    const fn new() -> Self {
        FrameSource { next: AtomicUsize::new(0), end: AtomicUsize::new(0), start: AtomicUsize::new(0) }
    }

    /// Gives the source the RAM from a page after the end of the kernel image to [`MEMORY_END`], or the
    /// device tree OpenSBI placed in RAM, whichever comes first (the tree stays untouched).
    pub fn init(&self, device_tree: usize) {
        extern "C" {
            fn ekernel();
        }
        // One page left out after the image: the static heap ends the image, and kheap joins
        // a region that touches one it has into one region, which it can never give back
        // whole; with the gap, each growth stays a region of its own and can go back.
        let start = (ekernel as *const () as usize).next_multiple_of(PAGE_SIZE) + PAGE_SIZE;
        self.start.store(start, Ordering::Relaxed);
        let end = if (start..MEMORY_END).contains(&device_tree) {
            device_tree & !(PAGE_SIZE - 1)
        } else {
            MEMORY_END
        };
        self.end.store(end, Ordering::Relaxed);
        // Release: a hart that sees `next` set also sees `end`.
        self.next.store(start, Ordering::Release);
    }

    /// Takes the chunk `[start, start + len)` back if it is the last one handed out; `false`
    /// (the caller keeps it) otherwise.
    fn give_back(&self, start: usize, len: usize) -> bool {
        self.next.compare_exchange(start + len, start, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// `(start, handed out, end)` addresses, for the console.
    pub fn usage(&self) -> (usize, usize, usize) {
        (
            self.start.load(Ordering::Relaxed),
            self.next.load(Ordering::Acquire),
            self.end.load(Ordering::Relaxed),
        )
    }

    /// Takes the pages from the front up to `len` bytes (a multiple of the page size) past the
    /// first multiple of `align` (a power of two, at least the page size), or `None` if they do
    /// not fit; returns the chunk's start and length. The pages before the aligned point are
    /// part of the chunk: a bump allocator could never hand them out again, and the heap uses
    /// them (`MemorySource` lets a region start before its aligned point). Lock-free, so harts
    /// growing at once each get their own chunk.
    fn take(&self, len: usize, align: usize) -> Option<(usize, usize)> {
        let end = self.end.load(Ordering::Relaxed);
        let mut next = self.next.load(Ordering::Acquire);
        loop {
            if next == 0 {
                return None;
            }
            let start = next.checked_next_multiple_of(align)?;
            let after = start.checked_add(len).filter(|&after| after <= end)?;
            match self.next.compare_exchange_weak(next, after, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some((next, after - next)),
                Err(seen) => next = seen,
            }
        }
    }
}

// SAFETY: each chunk is RAM of QEMU virt between the kernel image and the end of RAM (or the
// device tree, which `init` keeps out of the range), which nothing else in this kernel uses and
// which stays mapped for ever (paging is off), so it is valid for ever (1); the
// compare-exchange on `next` hands every byte out at most once (2), and `release` takes a
// chunk back only by moving `next` down over exactly that chunk when it is the last one out,
// so no byte is handed out twice.
unsafe impl MemorySource for FrameSource {
    fn acquire(&self, layout: Layout) -> Option<NonNull<[u8]>> {
        // Whole pages only: the start on a page boundary at least (or the heap's alignment,
        // if larger), the length rounded up to pages.
        let align = layout.align().max(PAGE_SIZE);
        let len = layout.size().checked_next_multiple_of(PAGE_SIZE)?;
        let (start, len) = self.take(len, align)?;
        // Physical memory outside every Rust object: an address is all there is, so the
        // pointer takes exposed provenance.
        let start = NonNull::new(core::ptr::with_exposed_provenance_mut::<u8>(start))?;
        Some(NonNull::slice_from_raw_parts(start, len))
    }

    unsafe fn release(&self, region: NonNull<[u8]>) -> bool {
        // The caller hands back exactly a chunk `acquire` returned (`MemorySource`'s obligation).
        self.give_back(region.cast::<u8>().as_ptr().addr(), region.len())
    }
}
