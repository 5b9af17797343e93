//! `try_allocate` never grows the heap and never calls a hook; `largest_free_block` bounds
//! what can succeed; batches take the lock once and keep the statistics exact.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use kheap::{Front, LockedHeap, MemorySource, Misuse, RawSpinlock, TlsfHeap};

/// Hands out leaked 64 KiB-or-more regions and counts the calls.
struct CountingSource(AtomicUsize);

// SAFETY: each region is a fresh leaked host allocation: valid for ever (1), handed out once (2).
unsafe impl MemorySource for CountingSource {
    fn acquire(&self, layout: Layout) -> Option<NonNull<[u8]>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        let layout = Layout::from_size_align(layout.size().max(64 * 1024), layout.align()).ok()?;
        // SAFETY: non-zero size; leaked on purpose.
        let memory = NonNull::new(unsafe { std::alloc::alloc(layout) })?;
        Some(NonNull::slice_from_raw_parts(memory, layout.size()))
    }
}

static MISUSES: AtomicUsize = AtomicUsize::new(0);

fn count_misuse(_: &Misuse) {
    MISUSES.fetch_add(1, Ordering::SeqCst);
}

type Heap = LockedHeap<RawSpinlock, TlsfHeap>;

fn leak_heap(source: &'static CountingSource) -> &'static Heap {
    Box::leak(Box::new(Heap::new(TlsfHeap::new()).with_source(source).on_misuse(count_misuse)))
}

#[test]
fn try_allocate_uses_only_the_memory_the_heap_has() {
    let source: &'static CountingSource = Box::leak(Box::new(CountingSource(AtomicUsize::new(0))));
    let heap = leak_heap(source);
    let small = Layout::from_size_align(256, 8).unwrap();

    assert!(heap.try_allocate(small).is_err(), "an empty heap has nothing to give");
    assert_eq!(source.0.load(Ordering::SeqCst), 0, "try_allocate asked the source");
    assert_eq!(heap.stats().failed_requests, 1);

    // `allocate` grows the heap; then `try_allocate` finds room in what it has.
    let first = Front::allocate(heap, small).unwrap();
    assert_eq!(source.0.load(Ordering::SeqCst), 1);
    let largest = heap.largest_free_block();
    assert_eq!(largest, heap.stats().largest_free_block);
    assert!(largest > 0 && largest < 64 * 1024, "{largest}");
    let second = heap.try_allocate(small).unwrap();
    assert_eq!(heap.stats().live_allocations, 2);

    // Larger than the largest free block: refused, without the source or the hook.
    let too_big = Layout::from_size_align(heap.largest_free_block() + 1, 8).unwrap();
    assert!(Front::try_allocate(heap, too_big).is_err());
    assert_eq!(source.0.load(Ordering::SeqCst), 1, "try_allocate asked the source");
    assert_eq!(MISUSES.load(Ordering::SeqCst), 0);
    // Exactly the largest free block succeeds.
    let exact = Layout::from_size_align(heap.largest_free_block(), 8).unwrap();
    let whole = heap.try_allocate(exact).unwrap();
    assert!(whole.len() >= exact.size());

    // SAFETY: each block was allocated above with its layout and is freed once.
    unsafe {
        Front::deallocate(heap, whole.cast(), exact);
        Front::deallocate(heap, second.cast(), small);
        Front::deallocate(heap, first.cast(), small);
    }
    let stats = heap.stats();
    assert_eq!((stats.live_allocations, stats.requested_bytes), (0, 0));
    assert_eq!(stats.free_bytes, stats.total_bytes);
    heap.check_invariants().unwrap();
}

#[test]
fn batches_hand_out_distinct_aligned_blocks_and_take_them_all_back() {
    let source: &'static CountingSource = Box::leak(Box::new(CountingSource(AtomicUsize::new(0))));
    let heap = leak_heap(source);
    let layout = Layout::from_size_align(96, 32).unwrap();
    let mut blocks = [NonNull::dangling(); 16];

    // The empty heap grows for the first block only: the batch then holds one.
    assert_eq!(heap.allocate_batch(layout, &mut blocks), 1);
    assert_eq!(source.0.load(Ordering::SeqCst), 1);
    // The grown heap fills a whole batch under one lock.
    let mut more = [NonNull::dangling(); 16];
    assert_eq!(heap.allocate_batch(layout, &mut more), 16);
    let mut all: Vec<usize> = blocks[..1].iter().chain(&more).map(|b| b.as_ptr() as usize).collect();
    assert!(all.iter().all(|a| a % 32 == 0), "misaligned block in {all:x?}");
    all.sort_unstable();
    assert!(all.windows(2).all(|w| w[1] - w[0] >= 96), "overlapping blocks in {all:x?}");
    assert_eq!(heap.stats().live_allocations, 17);
    assert_eq!(heap.stats().requested_bytes, 17 * 96);

    // SAFETY: all allocated above with `layout`, each returned once.
    unsafe {
        heap.deallocate_batch(&more, layout);
        heap.deallocate_batch(&blocks[..1], layout);
    }
    let stats = heap.stats();
    assert_eq!((stats.live_allocations, stats.requested_bytes), (0, 0));
    assert_eq!(stats.free_bytes, stats.total_bytes);
    assert_eq!(MISUSES.load(Ordering::SeqCst), 0);
    heap.check_invariants().unwrap();
}

#[test]
fn a_misuse_in_a_batch_is_reported_after_the_rest_goes_back() {
    let source: &'static CountingSource = Box::leak(Box::new(CountingSource(AtomicUsize::new(0))));
    let heap: &'static Heap =
        Box::leak(Box::new(Heap::new(TlsfHeap::new()).with_source(source).on_misuse(|_| {
            BATCH_MISUSES.fetch_add(1, Ordering::SeqCst);
        })));
    let layout = Layout::from_size_align(64, 8).unwrap();
    let mut blocks = [NonNull::dangling(); 4];
    let got = heap.allocate_batch(layout, &mut blocks);
    let got = got + heap.allocate_batch(layout, &mut blocks[got..]);
    assert_eq!(got, 4);
    // SAFETY: the first block is freed once here; the batch then holds it a second time, a
    // double free the heap detects (TLSF checks a block's state) and refuses without change.
    unsafe {
        Front::deallocate(heap, blocks[0], layout);
        heap.deallocate_batch(&blocks, layout);
    }
    assert_eq!(BATCH_MISUSES.load(Ordering::SeqCst), 1);
    let stats = heap.stats();
    assert_eq!(stats.live_allocations, 0, "{stats:?}");
    assert_eq!(stats.free_bytes, stats.total_bytes);
    heap.check_invariants().unwrap();
}

static BATCH_MISUSES: AtomicUsize = AtomicUsize::new(0);
