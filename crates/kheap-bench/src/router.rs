//! The benchmark's global allocator: routes allocations to the heap under test while a
//! workload runs, and to the system allocator otherwise.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::{Duration, Instant};

/// A heap under test: any `GlobalAlloc` built over the arena, leaked for the run.
pub type Heap = &'static (dyn GlobalAlloc + Sync);

/// The heap allocations go to now (null: the system allocator). Points to a leaked `Heap`.
static ACTIVE: AtomicPtr<Heap> = AtomicPtr::new(null_mut());

/// Host memory shared by every contender, aligned to 64 KiB.
pub struct Arena {
    pub start: *mut u8,
    pub len: usize,
}

// SAFETY: the arena is plain memory handed to one heap at a time, on the benchmark thread.
unsafe impl Sync for Arena {}

impl Arena {
    pub fn new(len: usize) -> Self {
        let layout = Layout::from_size_align(len, 64 * 1024).unwrap();
        // SAFETY: non-zero size; never freed (the arena lives as long as the program).
        let start = unsafe { System.alloc(layout) };
        assert!(!start.is_null(), "no memory for the arena");
        Arena { start, len }
    }

    fn contains(&self, ptr: *mut u8) -> bool {
        ptr.addr() >= self.start.addr() && ptr.addr() < self.start.addr() + self.len
    }
}

static ARENA_RANGE: AtomicPtr<Arena> = AtomicPtr::new(null_mut());

/// Runs `work` with every allocation going to `heap`, and times it.
///
/// Panics if the workload leaves a block of the heap alive (it would outlive the heap).
pub fn with_heap(heap: Heap, work: impl FnOnce()) -> Duration {
    let holder: &'static Heap = Box::leak(Box::new(heap));
    ACTIVE.store((holder as *const Heap).cast_mut(), Ordering::SeqCst);
    let started = Instant::now();
    work();
    let elapsed = started.elapsed();
    ACTIVE.store(null_mut(), Ordering::SeqCst);
    elapsed
}

/// Records the arena so frees of its blocks are routed to the active heap.
pub fn set_arena(arena: &Arena) {
    ARENA_RANGE.store((arena as *const Arena).cast_mut(), Ordering::SeqCst);
}

struct Router;

fn active() -> Option<Heap> {
    let holder = ACTIVE.load(Ordering::Relaxed);
    // SAFETY: non-null values are leaked `Heap`s, valid for ever.
    (!holder.is_null()).then(|| unsafe { *holder })
}

fn in_arena(ptr: *mut u8) -> bool {
    let arena = ARENA_RANGE.load(Ordering::Relaxed);
    // SAFETY: non-null values point to the program's one `Arena`, which is never dropped
    // while the router can be called (it lives in `main`).
    !arena.is_null() && unsafe { (*arena).contains(ptr) }
}

// SAFETY: each call goes either to the active heap or to `System`, both sound `GlobalAlloc`s;
// frees and reallocs go to the allocator that owns the block (decided by its address).
unsafe impl GlobalAlloc for Router {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's obligations are passed on.
        unsafe {
            match active() {
                Some(heap) => heap.alloc(layout),
                None => System.alloc(layout),
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the block goes back to the allocator that handed it out.
        unsafe {
            match active() {
                Some(heap) if in_arena(ptr) => heap.dealloc(ptr, layout),
                _ => System.dealloc(ptr, layout),
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the block goes to the allocator that handed it out.
        unsafe {
            match active() {
                Some(heap) if in_arena(ptr) => heap.realloc(ptr, layout, new_size),
                _ => System.realloc(ptr, layout, new_size),
            }
        }
    }
}

#[global_allocator]
static ROUTER: Router = Router;
