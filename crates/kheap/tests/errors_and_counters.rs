//! Errors a caller can pass on with `?`, and the counters that tell refusals from requests the
//! front saved by growing the heap.

use std::alloc::{GlobalAlloc, Layout};
use std::error::Error;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use kheap::{BuddyHeap, InvariantError, LockedHeap, MemorySource, RawSpinlock, RegionError};

/// Hands out three leaked regions of the layout asked for, then nothing.
struct ThreeRegions(AtomicUsize);

// SAFETY: each region is a fresh leaked host allocation: valid for ever (1), handed out once (2).
unsafe impl MemorySource for ThreeRegions {
    fn acquire(&self, layout: Layout) -> Option<NonNull<[u8]>> {
        if self.0.fetch_add(1, Ordering::SeqCst) >= 3 {
            return None;
        }
        // SAFETY: non-zero size (every region layout has one); leaked on purpose.
        let memory = NonNull::new(unsafe { std::alloc::alloc(layout) })?;
        Some(NonNull::slice_from_raw_parts(memory, layout.size()))
    }
}

static SOURCE: ThreeRegions = ThreeRegions(AtomicUsize::new(0));
static HEAP: LockedHeap<RawSpinlock, BuddyHeap> = LockedHeap::new(BuddyHeap::new()).with_source(&SOURCE);

#[test]
fn refusals_that_growth_satisfied_are_counted_apart_from_failures() {
    let layout = Layout::from_size_align(512 * 1024, 8).unwrap();
    let mut blocks = Vec::new();
    // Each region holds one 512 KiB block (and its bookkeeping), and the empty heap grows
    // before the first: every success here came after a refusal, the fourth request fails.
    loop {
        // SAFETY: non-zero size.
        let block = unsafe { HEAP.alloc(layout) };
        if block.is_null() {
            break;
        }
        blocks.push(block);
    }
    let stats = HEAP.stats();
    assert_eq!(SOURCE.0.load(Ordering::SeqCst), 4, "the source was not asked until it ran dry");
    assert_eq!(stats.failed_requests, 1, "{stats:?}");
    assert_eq!(stats.grown_requests, 3, "{stats:?}");
    assert_eq!(stats.live_allocations, 3);
    assert_eq!(blocks.len(), 3);
    // A request the heap satisfies at once counts in neither.
    for block in blocks {
        // SAFETY: allocated above with `layout`.
        unsafe { HEAP.dealloc(block, layout) };
    }
    // SAFETY: non-zero size; freed at once.
    unsafe { HEAP.dealloc(HEAP.alloc(Layout::new::<u64>()), Layout::new::<u64>()) };
    let after = HEAP.stats();
    assert_eq!((after.failed_requests, after.grown_requests), (stats.failed_requests, stats.grown_requests));
}

fn check(heap: &LockedHeap<RawSpinlock, BuddyHeap>) -> Result<usize, Box<dyn Error + Send + Sync>> {
    heap.check_invariants()?;
    // SAFETY: a region at address 0 is refused before anything is touched.
    let refused: Result<usize, RegionError> = unsafe { heap.add_region_raw(std::ptr::null_mut(), 4096) };
    refused?;
    Ok(0)
}

#[test]
fn heap_errors_go_into_a_boxed_send_sync_error_with_the_question_mark() {
    fn assert_send_sync_error<E: Error + Send + Sync + 'static>() {}
    assert_send_sync_error::<InvariantError>();
    assert_send_sync_error::<RegionError>();
    assert_send_sync_error::<kheap::AllocError>();
    assert_send_sync_error::<kheap::Misuse>();
    static EMPTY: LockedHeap<RawSpinlock, BuddyHeap> = LockedHeap::new(BuddyHeap::new());
    let error = check(&EMPTY).expect_err("a null region was accepted");
    assert_eq!(error.to_string(), "region starts at the null address");
    // Sent to another thread, as a `Send` error can be.
    let message = std::thread::spawn(move || error.to_string()).join().unwrap();
    assert!(message.contains("null"));
}

/// Regression (found by `tests/extreme_layouts.rs`): a front over a counting layer
/// (`LockedHeap<_, Counted<H>>`, two `Counted` in the stack) counted the C-style pair's usable
/// size in its own layer only, so `deallocate_unsized` wrapped the inner layer's requested
/// bytes below zero and its invariant walker failed ("peak requested below requested").
#[test]
fn unsized_allocations_are_counted_by_every_counting_layer() {
    use kheap::{Counted, TlsfHeap};
    fn check<H: kheap::BlockLookup>(front: &LockedHeap<RawSpinlock, Counted<H>>) {
        let memory = Box::leak(vec![core::mem::MaybeUninit::uninit(); 1 << 20].into_boxed_slice());
        front.add_region(memory).unwrap();
        let mut blocks = Vec::new();
        for (i, size) in (1..400).step_by(7).enumerate() {
            let layout = Layout::from_size_align(size, 1 << (i % 7)).unwrap();
            blocks.push(front.allocate_unsized(layout).unwrap());
            let (outer, inner) = { (front.stats(), front.lock().inner().stats()) };
            assert_eq!(outer.requested_bytes, inner.requested_bytes, "layers disagree after {layout:?}");
            front.check_invariants().unwrap();
        }
        for block in blocks {
            // SAFETY: allocated by this front with `allocate_unsized`, not used again.
            unsafe { front.deallocate_unsized(block.cast()) };
            front.check_invariants().unwrap();
        }
        let (outer, inner) = (front.stats(), front.lock().inner().stats());
        assert_eq!((outer.requested_bytes, inner.requested_bytes), (0, 0));
        assert_eq!((outer.live_allocations, inner.live_allocations), (0, 0));
    }
    check(&LockedHeap::new(Counted::new(TlsfHeap::new())));
    check(&LockedHeap::new(Counted::new(BuddyHeap::new())));
}
