//! Two reference points that are not contenders: a bump allocator (the speed of light: an
//! add and a compare, never frees) and the host's system allocator (a hosted allocator with
//! its own locking and the whole machine's memory; labelled as such wherever it appears).

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

use super::{Family, Heap, RawAlloc, Spinlocked, Subject};
use crate::arena::Arena;

/// Hands out the arena from the bottom up and never takes anything back.
struct Bump {
    next: usize,
    end: usize,
}

impl RawAlloc for Bump {
    unsafe fn alloc(&mut self, layout: Layout) -> *mut u8 {
        let start = self.next.next_multiple_of(layout.align());
        match start.checked_add(layout.size()) {
            Some(end) if end <= self.end => {
                self.next = end;
                ptr::without_provenance_mut::<u8>(0).with_addr(start)
            }
            _ => ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&mut self, _: *mut u8, _: Layout) {}
}

/// The bump allocator needs the arena's provenance: keep the base pointer and offsets.
struct BumpHeap {
    base: *mut u8,
    bump: Bump,
}

// SAFETY: the arena is owned by this heap alone.
unsafe impl Send for BumpHeap {}

impl RawAlloc for BumpHeap {
    unsafe fn alloc(&mut self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded; `Bump` only computes offsets.
        let block = unsafe { self.bump.alloc(layout) };
        if block.is_null() {
            block
        } else {
            self.base.with_addr(block.addr())
        }
    }

    unsafe fn dealloc(&mut self, _: *mut u8, _: Layout) {}
}

fn bump(arena: &Arena) -> Result<Heap, String> {
    let start = arena.start.addr();
    Ok(Spinlocked::boxed(BumpHeap { base: arena.start, bump: Bump { next: start, end: start + arena.len } }))
}

struct Hosted;

// SAFETY: forwards to the system allocator.
unsafe impl GlobalAlloc for Hosted {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's obligations are passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's obligations are passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's obligations are passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn system(_: &Arena) -> Result<Heap, String> {
    Ok(Box::new(Hosted))
}

pub fn subjects() -> Vec<Subject> {
    vec![
        Subject {
            name: "bump",
            family: Family::Reference,
            config:
                "reference: bump pointer over the arena behind the spinlock; never frees (speed of light)",
            build: bump,
            in_arena: true,
        },
        Subject {
            name: "system",
            family: Family::Reference,
            config:
                "hosted reference: the host's system allocator (glibc malloc), its own locks, not the arena",
            build: system,
            in_arena: false,
        },
    ]
}
