//! A heap that grew from its source gives wholly free regions back above a watermark, without
//! its lock held, and an allocate/free pair near the watermark does not thrash.

use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use kheap::{Front, LockedHeap, MemorySource, RawSpinlock, TlsfHeap};

const REGION: usize = 64 * 1024;

/// Hands out 64 KiB regions, each the first half of a 128 KiB host allocation (so no two
/// touch and the heap never joins them), and takes them back if `accepts`.
struct Pages {
    acquired: AtomicUsize,
    released: AtomicUsize,
    accepts: AtomicBool,
    heap: std::sync::OnceLock<&'static LockedHeap<RawSpinlock, TlsfHeap>>,
    released_under_lock: AtomicUsize,
}

impl Pages {
    /// None handed out yet; takes regions back if `accepts`.
    const fn new(accepts: bool) -> Pages {
        Pages {
            acquired: AtomicUsize::new(0),
            released: AtomicUsize::new(0),
            accepts: AtomicBool::new(accepts),
            heap: std::sync::OnceLock::new(),
            released_under_lock: AtomicUsize::new(0),
        }
    }
}

fn host_layout() -> Layout {
    Layout::from_size_align(2 * REGION, 4096).unwrap()
}

// SAFETY: each region is part of a fresh host allocation, valid until it is released (1) and
// handed out once (2).
unsafe impl MemorySource for Pages {
    fn acquire(&self, layout: Layout) -> Option<NonNull<[u8]>> {
        if layout.size() > REGION || layout.align() > 4096 {
            return None;
        }
        self.acquired.fetch_add(1, Ordering::SeqCst);
        // SAFETY: non-zero size.
        let start = NonNull::new(unsafe { std::alloc::alloc(host_layout()) })?;
        Some(NonNull::slice_from_raw_parts(start, REGION))
    }

    unsafe fn release(&self, region: NonNull<[u8]>) -> bool {
        if self.heap.get().is_some_and(|heap| heap.is_locked()) {
            self.released_under_lock.fetch_add(1, Ordering::SeqCst);
        }
        if !self.accepts.load(Ordering::SeqCst) {
            return false;
        }
        assert_eq!(region.len(), REGION, "not a region as handed out");
        self.released.fetch_add(1, Ordering::SeqCst);
        // SAFETY: (1) allocated in `acquire` with this layout and unused now.
        unsafe { std::alloc::dealloc(region.cast::<u8>().as_ptr(), host_layout()) };
        true
    }
}

fn setup(accepts: bool, watermark: usize) -> (&'static Pages, &'static LockedHeap<RawSpinlock, TlsfHeap>) {
    let pages: &'static Pages = Box::leak(Box::new(Pages::new(accepts)));
    let heap = Box::leak(Box::new(
        LockedHeap::<RawSpinlock, _>::new(TlsfHeap::new()).with_source(pages).give_back_above(watermark),
    ));
    pages.heap.set(heap).ok().unwrap();
    (pages, heap)
}

/// Allocates `count` 1 KiB blocks.
fn fill(heap: &LockedHeap<RawSpinlock, TlsfHeap>, count: usize) -> Vec<*mut u8> {
    let layout = Layout::new::<[u8; 1024]>();
    // SAFETY: non-zero size.
    (0..count).map(|_| unsafe { heap.alloc(layout) }).inspect(|p| assert!(!p.is_null())).collect()
}

fn free_all(heap: &LockedHeap<RawSpinlock, TlsfHeap>, blocks: Vec<*mut u8>) {
    for block in blocks {
        // SAFETY: allocated by `fill` with this layout, freed once.
        unsafe { heap.dealloc(block, Layout::new::<[u8; 1024]>()) };
    }
}

#[test]
fn free_regions_beyond_the_watermark_go_back_without_the_lock() {
    let (pages, heap) = setup(true, 2 * REGION);
    let blocks = fill(heap, 300); // about five regions
    let grown = pages.acquired.load(Ordering::SeqCst);
    assert!(grown >= 5, "{grown}");
    free_all(heap, blocks);
    let released = pages.released.load(Ordering::SeqCst);
    assert_eq!(heap.regions_given_back(), released);
    assert_eq!(pages.released_under_lock.load(Ordering::SeqCst), 0, "released with the heap locked");
    let stats = heap.stats();
    assert_eq!(stats.free_bytes, stats.total_bytes);
    // More than the watermark stays; no more than the watermark plus one region.
    assert!(stats.free_bytes >= 2 * REGION - 4096, "{stats:?}");
    assert!(stats.free_bytes <= 3 * REGION + REGION, "{stats:?}: too little went back");
    assert_eq!(grown - released, stats.total_bytes.div_ceil(REGION), "{stats:?}");
    assert!(released >= 2, "released {released} of {grown}");
    heap.check_invariants().unwrap();
}

#[test]
fn an_allocate_free_pair_near_the_watermark_does_not_thrash() {
    let (pages, heap) = setup(true, REGION);
    let blocks = fill(heap, 300);
    free_all(heap, blocks);
    let (acquired, released) = (pages.acquired.load(Ordering::SeqCst), pages.released.load(Ordering::SeqCst));
    // Use memory up to (and past) the watermark and back, many times: no region moves.
    let layout = Layout::new::<[u8; 1024]>();
    let held = fill(heap, 40);
    for _ in 0..1000 {
        // SAFETY: non-zero size; freed at once with the same layout.
        unsafe { heap.dealloc(heap.alloc(layout), layout) };
    }
    free_all(heap, held);
    assert_eq!(pages.acquired.load(Ordering::SeqCst), acquired, "grew again near the watermark");
    assert_eq!(pages.released.load(Ordering::SeqCst), released, "gave back again near the watermark");
    heap.check_invariants().unwrap();
}

#[test]
fn a_source_that_refuses_leaves_the_heap_its_memory() {
    let (pages, heap) = setup(false, 0);
    let blocks = fill(heap, 200);
    let total = heap.stats().total_bytes;
    free_all(heap, blocks);
    assert_eq!(heap.regions_given_back(), 0);
    let stats = heap.stats();
    assert_eq!((stats.total_bytes, stats.free_bytes), (total, total), "memory lost on a refused give-back");
    // The memory serves again without growing.
    let acquired = pages.acquired.load(Ordering::SeqCst);
    free_all(heap, fill(heap, 200));
    assert_eq!(pages.acquired.load(Ordering::SeqCst), acquired);
    heap.check_invariants().unwrap();
}

#[test]
fn batches_give_back_too() {
    let (pages, heap) = setup(true, 0);
    let layout = Layout::new::<[u8; 1024]>();
    let mut blocks = vec![NonNull::dangling(); 200];
    let mut got = 0;
    while got < blocks.len() {
        let n = heap.allocate_batch(layout, &mut blocks[got..]);
        assert!(n > 0);
        got += n;
    }
    assert!(pages.acquired.load(Ordering::SeqCst) >= 3);
    // SAFETY: all allocated above with `layout`, each once.
    unsafe { heap.deallocate_batch(&blocks, layout) };
    assert_eq!(pages.released.load(Ordering::SeqCst), pages.acquired.load(Ordering::SeqCst) - 1);
    heap.check_invariants().unwrap();
}

#[test]
fn a_buddy_heap_gives_back_too() {
    use kheap::BuddyHeap;
    static PAGES: Pages = Pages::new(true);
    static HEAP: LockedHeap<RawSpinlock, BuddyHeap> =
        LockedHeap::new(BuddyHeap::new()).with_source(&PAGES).give_back_above(0);
    let layout = Layout::new::<[u8; 1024]>();
    // SAFETY: non-zero size; each freed once below with the same layout.
    let blocks: Vec<*mut u8> = (0..150).map(|_| unsafe { HEAP.alloc(layout) }).collect();
    assert!(blocks.iter().all(|b| !b.is_null()));
    let grown = PAGES.acquired.load(Ordering::SeqCst);
    assert!(grown >= 3, "{grown}");
    for block in blocks {
        // SAFETY: allocated above with `layout`.
        unsafe { HEAP.dealloc(block, layout) };
    }
    assert_eq!(PAGES.released.load(Ordering::SeqCst), grown - 1, "all but the last region go back");
    assert_eq!(HEAP.regions_given_back(), grown - 1);
    HEAP.check_invariants().unwrap();
}

#[test]
fn the_default_heap_gives_back_too() {
    // Small objects (slabs, kept as spares when empty) and larger blocks (TLSF's) in every
    // grown region: a region goes back once its last slab is a spare, which the front trims.
    use kheap::Heap;
    static PAGES: Pages = Pages::new(true);
    static HEAP: LockedHeap<RawSpinlock, Heap> =
        LockedHeap::new(Heap::new()).with_source(&PAGES).give_back_above(0);
    // 64 B objects: their slabs are 4 KiB, the largest alignment this source hands out.
    let layouts = [Layout::new::<[u8; 64]>(), Layout::new::<[u8; 1024]>()];
    // SAFETY: non-zero sizes; each freed once below with the same layout.
    let blocks: Vec<(*mut u8, Layout)> =
        (0..300).map(|i| layouts[i % 2]).map(|layout| (unsafe { HEAP.alloc(layout) }, layout)).collect();
    assert!(blocks.iter().all(|(b, _)| !b.is_null()));
    let grown = PAGES.acquired.load(Ordering::SeqCst);
    assert!(grown >= 3, "{grown}");
    for (block, layout) in blocks {
        // SAFETY: allocated above with `layout`.
        unsafe { HEAP.dealloc(block, layout) };
    }
    assert_eq!(PAGES.released.load(Ordering::SeqCst), grown - 1, "all but the last region go back");
    assert_eq!(HEAP.regions_given_back(), grown - 1);
    HEAP.check_invariants().unwrap();
}
