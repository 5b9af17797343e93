//! Reference points that are not contenders: a bump allocator (the speed of light: an add and
//! a compare, never frees), the least a per-CPU cache can do (the ceiling of the multi-thread
//! workloads on this machine) and the host's system allocator (a hosted allocator with its own
//! locking and the whole machine's memory; labelled as such wherever it appears).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use kheap::CpuId;
use kheap_testkit::ThreadCpu;

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

/// Classes of the per-CPU reference: one per 8 bytes up to this size.
const LOCAL_MAX: usize = 512;
/// Blocks a class's stack holds; a free beyond it is dropped (the block is never reused).
const LOCAL_DEPTH: usize = 256;
/// CPU slots; a CPU index is taken modulo this.
const LOCAL_CPUS: usize = 8;

/// One CPU's stacks of free blocks, one per class, behind a flag that only that CPU's thread
/// takes (uncontended unless more threads than slots share one).
#[repr(align(128))]
struct LocalSlot {
    busy: AtomicBool,
    stacks: UnsafeCell<[Stack; LOCAL_MAX / 8]>,
}

#[derive(Clone, Copy)]
struct Stack {
    len: usize,
    blocks: [*mut u8; LOCAL_DEPTH],
}

/// The least work a per-CPU cache does and nothing shared but a bump pointer: a block freed
/// goes on the freeing CPU's stack of its class, an allocation takes from the calling CPU's
/// stack, or else from the arena by an atomic bump. No checks, no lock between CPUs, no
/// memory given back: what the multi-thread workloads cost without a heap that shares
/// anything, so the figure kheap's per-CPU caches are measured against on this machine.
/// Sizes above `LOCAL_MAX` or alignments above 8 come from the bump alone and are never
/// reused (other workloads exhaust the arena: this subject is for the thread workloads).
struct PerCpuReference {
    base: *mut u8,
    next: AtomicUsize,
    end: usize,
    slots: Box<[LocalSlot]>,
}

// SAFETY: a slot's stacks are only touched by the thread that set its flag; the bump is atomic.
unsafe impl Sync for PerCpuReference {}
// SAFETY: as above; the arena is owned by this heap alone.
unsafe impl Send for PerCpuReference {}

impl PerCpuReference {
    /// The class of `layout`, if stacks serve it.
    fn class(layout: Layout) -> Option<usize> {
        (layout.size() <= LOCAL_MAX && layout.align() <= 8).then(|| layout.size().max(1).div_ceil(8) - 1)
    }

    /// Runs `f` on the calling CPU's stacks, waiting for the slot's flag (held by another
    /// thread only when threads outnumber the slots).
    fn with_stacks<T>(&self, f: impl FnOnce(&mut [Stack; LOCAL_MAX / 8]) -> T) -> T {
        let slot = &self.slots[ThreadCpu::current() % LOCAL_CPUS];
        while slot.busy.swap(true, Ordering::Acquire) {
            std::hint::spin_loop();
        }
        // SAFETY: the flag gives this thread the slot's stacks alone until it is cleared.
        let result = f(unsafe { &mut *slot.stacks.get() });
        slot.busy.store(false, Ordering::Release);
        result
    }

    fn bump(&self, layout: Layout) -> *mut u8 {
        let size = layout.size().next_multiple_of(8);
        let mut start = self.next.load(Ordering::Relaxed);
        loop {
            let aligned = start.next_multiple_of(layout.align());
            let Some(end) = aligned.checked_add(size).filter(|&end| end <= self.end) else {
                return ptr::null_mut();
            };
            match self.next.compare_exchange_weak(start, end, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return self.base.with_addr(aligned),
                Err(now) => start = now,
            }
        }
    }
}

// SAFETY: a block is handed out once: from the bump (each byte once) or popped from a stack it
// was pushed on by its free; blocks lie in the arena, aligned (class sizes are multiples of 8).
unsafe impl GlobalAlloc for PerCpuReference {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(class) = Self::class(layout) {
            let reused = self.with_stacks(|stacks| {
                let stack = &mut stacks[class];
                (stack.len > 0).then(|| {
                    stack.len -= 1;
                    stack.blocks[stack.len]
                })
            });
            if let Some(block) = reused {
                return block;
            }
            // Allocate the whole class, so the block can serve any request of it later.
            return self.bump(Layout::from_size_align(8 * (class + 1), 8).expect("class layout"));
        }
        self.bump(layout)
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if let Some(class) = Self::class(layout) {
            self.with_stacks(|stacks| {
                let stack = &mut stacks[class];
                if stack.len < LOCAL_DEPTH {
                    stack.blocks[stack.len] = block;
                    stack.len += 1;
                }
            });
        }
    }
}

fn per_cpu_reference(arena: &Arena) -> Result<Heap, String> {
    let start = arena.start.addr();
    let empty = Stack { len: 0, blocks: [ptr::null_mut(); LOCAL_DEPTH] };
    let slots = (0..LOCAL_CPUS)
        .map(|_| LocalSlot { busy: AtomicBool::new(false), stacks: UnsafeCell::new([empty; LOCAL_MAX / 8]) })
        .collect();
    Ok(Box::new(PerCpuReference {
        base: arena.start,
        next: AtomicUsize::new(start),
        end: start + arena.len,
        slots,
    }))
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
            only: None,
        },
        Subject {
            name: "percpu-floor",
            family: Family::Reference,
            config: "reference: per-CPU stacks of free blocks, nothing shared but an atomic bump, \
                     no checks (the least a per-CPU cache does; for the thread workloads)",
            build: per_cpu_reference,
            in_arena: true,
            only: Some("threads_"),
        },
        Subject {
            name: "system",
            family: Family::Reference,
            config:
                "hosted reference: the host's system allocator (glibc malloc), its own locks, not the arena",
            build: system,
            in_arena: false,
            only: None,
        },
    ]
}
