//! The benchmark's global allocator: while a collection workload runs, routes this program's
//! allocations to the heap under test, so `Vec`, `BTreeMap` and friends exercise it as a
//! kernel's would; everything else (the runner's own bookkeeping) goes to the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::arena::Arena;

type Active = &'static (dyn GlobalAlloc + Sync);

/// The heap allocations go to now (null: the system allocator). Points to a leaked `Active`.
static ACTIVE: AtomicPtr<Active> = AtomicPtr::new(null_mut());
/// The active heap's arena: frees inside it go to the heap, others to the system allocator.
static ARENA_START: AtomicUsize = AtomicUsize::new(0);
static ARENA_END: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set while this thread is inside the active heap: allocations made by the heap's own
    /// wrapper (verify mode's bookkeeping) go to the system allocator.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `work` with every allocation of this thread going to `heap` (leaked: it must outlive
/// any block the workload might leave).
///
/// The workload must free every block it allocates before returning.
pub fn with_heap<R>(heap: Active, arena: &Arena, work: impl FnOnce() -> R) -> R {
    let holder: &'static Active = Box::leak(Box::new(heap));
    ARENA_START.store(arena.start.addr(), Ordering::SeqCst);
    ARENA_END.store(arena.start.addr() + arena.len, Ordering::SeqCst);
    ACTIVE.store((holder as *const Active).cast_mut(), Ordering::SeqCst);
    let result = work();
    ACTIVE.store(null_mut(), Ordering::SeqCst);
    result
}

fn active() -> Option<Active> {
    if INSIDE.with(Cell::get) {
        return None;
    }
    let holder = ACTIVE.load(Ordering::Relaxed);
    // SAFETY: non-null values are leaked `Active`s, valid for ever.
    (!holder.is_null()).then(|| unsafe { *holder })
}

fn in_arena(ptr: *mut u8) -> bool {
    (ARENA_START.load(Ordering::Relaxed)..ARENA_END.load(Ordering::Relaxed)).contains(&ptr.addr())
}

/// Runs `f` marked as inside the heap.
fn inside<R>(f: impl FnOnce() -> R) -> R {
    INSIDE.with(|i| i.set(true));
    let result = f();
    INSIDE.with(|i| i.set(false));
    result
}

struct Router;

// SAFETY: each call goes either to the active heap or to `System`, both sound `GlobalAlloc`s;
// frees and reallocs go to the allocator that owns the block (decided by its address).
unsafe impl GlobalAlloc for Router {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match active() {
            // SAFETY: the caller's obligations are passed on.
            Some(heap) => inside(|| unsafe { heap.alloc(layout) }),
            // SAFETY: the caller's obligations are passed on.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match active() {
            // SAFETY: the block is in the arena, so the active heap handed it out.
            Some(heap) if in_arena(ptr) => inside(|| unsafe { heap.dealloc(ptr, layout) }),
            // SAFETY: blocks outside the arena come from the system allocator.
            _ => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match active() {
            // SAFETY: the block is in the arena, so the active heap handed it out.
            Some(heap) if in_arena(ptr) => inside(|| unsafe { heap.realloc(ptr, layout, new_size) }),
            // SAFETY: blocks outside the arena come from the system allocator.
            _ => unsafe { System.realloc(ptr, layout, new_size) },
        }
    }
}

#[global_allocator]
static ROUTER: Router = Router;
