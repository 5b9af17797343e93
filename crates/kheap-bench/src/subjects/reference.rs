//! Reference points that are not contenders: a bump allocator (the speed of light: an add and
//! a compare, never frees), the least a per-CPU cache can do (the ceiling of the multi-thread
//! workloads on this machine) and the host's system allocator (a hosted allocator with its own
//! locking and the whole machine's memory; labelled as such wherever it appears).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

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
/// Blocks a class's stack has room for from the start (it grows beyond, through the system
/// allocator, rather than drop a block: a dropped block is never reused, and long timed runs
/// ran the bump parts dry).
const LOCAL_CAPACITY: usize = 4096;
/// CPU slots; a CPU index is taken modulo this.
const LOCAL_CPUS: usize = 8;

/// One CPU's stacks of free blocks, one per class, and its own part of the arena, behind a
/// flag that only that CPU's thread takes (uncontended unless more threads than slots share
/// one).
#[repr(align(128))]
struct LocalSlot {
    busy: AtomicBool,
    local: UnsafeCell<Local>,
}

struct Local {
    stacks: [Stack; LOCAL_MAX / 8],
    /// The CPU's part of the arena.
    part: BumpHeap,
}

type Stack = Vec<*mut u8>;

/// The least work a per-CPU cache does, sharing nothing: a block freed goes on the freeing
/// CPU's stack of its class (which grows as needed, so no block is lost), an allocation takes
/// from the calling CPU's stack, or else from that CPU's part of the arena (an eighth) by a
/// bump. No checks, no lock between CPUs, no memory given back or moved between CPUs: what
/// the multi-thread workloads cost without a heap that shares anything, so the figure kheap's
/// per-CPU caches are measured against on this machine. Requests above `LOCAL_MAX` or
/// aligned above 8 are refused (this subject is for the thread workloads).
struct PerCpuReference {
    slots: Box<[LocalSlot]>,
}

// SAFETY: a slot is only touched by the thread that set its flag.
unsafe impl Sync for PerCpuReference {}
// SAFETY: as above; the arena is owned by this heap alone.
unsafe impl Send for PerCpuReference {}

impl PerCpuReference {
    /// The class of `layout`, if stacks serve it.
    fn class(layout: Layout) -> Option<usize> {
        (layout.size() <= LOCAL_MAX && layout.align() <= 8).then(|| layout.size().max(1).div_ceil(8) - 1)
    }

    /// Runs `f` on the calling CPU's slot, waiting for its flag (held by another thread only
    /// when threads outnumber the slots).
    fn with_local<T>(&self, f: impl FnOnce(&mut Local) -> T) -> T {
        let slot = &self.slots[ThreadCpu::current() % LOCAL_CPUS];
        while slot.busy.swap(true, Ordering::Acquire) {
            std::hint::spin_loop();
        }
        // SAFETY: the flag gives this thread the slot alone until it is cleared.
        let result = f(unsafe { &mut *slot.local.get() });
        slot.busy.store(false, Ordering::Release);
        result
    }
}

// SAFETY: a block is handed out once: from a CPU's part of the arena (each byte once) or popped
// from a stack it was pushed on by its free; blocks lie in the arena, aligned to 8 (the parts
// and the class sizes are multiples of 8).
unsafe impl GlobalAlloc for PerCpuReference {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = Self::class(layout) else { return ptr::null_mut() };
        self.with_local(|local| {
            if let Some(block) = local.stacks[class].pop() {
                return block;
            }
            // The whole class, so the block can serve any request of it later.
            let whole = Layout::from_size_align(8 * (class + 1), 8).expect("a class layout");
            // SAFETY: a non-zero size.
            unsafe { local.part.alloc(whole) }
        })
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if let Some(class) = Self::class(layout) {
            self.with_local(|local| local.stacks[class].push(block));
        }
    }
}

fn per_cpu_reference(arena: &Arena) -> Result<Heap, String> {
    let part = arena.len / LOCAL_CPUS / 8 * 8;
    let slots = (0..LOCAL_CPUS)
        .map(|cpu| {
            let next = arena.start.addr() + cpu * part;
            let part = BumpHeap { base: arena.start, bump: Bump { next, end: next + part } };
            let local = Local { stacks: std::array::from_fn(|_| Vec::with_capacity(LOCAL_CAPACITY)), part };
            LocalSlot { busy: AtomicBool::new(false), local: UnsafeCell::new(local) }
        })
        .collect();
    Ok(Box::new(PerCpuReference { slots }))
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
            config: "reference: per-CPU stacks of free blocks and per-CPU bumps, nothing shared, \
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
