//! When the static heap runs out, the heap grows from the frames after the kernel image: by
//! itself with the native front (a `MemorySource`), by the kernel's hand with the tutorial's
//! allocator (`add_to_heap`, as the tutorial would).

use alloc::vec::Vec;

use super::{bss_range, ensure, ensure_eq, TestResult};
use crate::config::KERNEL_HEAP_SIZE;
use crate::frames::FRAMES;
use crate::heap;
use kheap::{MemorySource, RawHeap};

/// More than the whole static heap.
const BIG: usize = KERNEL_HEAP_SIZE + KERNEL_HEAP_SIZE / 2;

pub fn heap_grows() -> TestResult {
    // Settled (spare slabs handed back), so that what a give-back leaves compares with it.
    let before = heap::settled_stats();
    let (_, frames_before, _) = FRAMES.usage();
    let mut big: Vec<u64> = Vec::new();
    let words = BIG / 8;
    if heap::GROWS_BY_ITSELF {
        big.try_reserve_exact(words).map_err(|e| alloc::format!("reserving {BIG} bytes failed: {e}"))?;
    } else {
        ensure!(big.try_reserve_exact(words).is_err(), "{BIG} bytes fit in a heap without growth");
        // What the native front does by itself: ask the heap which region would hold the
        // block, then ask the source with the heap's lock released (the source may allocate).
        let layout = core::alloc::Layout::array::<u64>(words).map_err(|e| alloc::format!("{e}"))?;
        let wanted = heap::with_locked(|h| h.region_layout_for(layout));
        let wanted = wanted.ok_or(alloc::format!("no region can hold {layout:?}"))?;
        let region = FRAMES.acquire(wanted).ok_or("the frame source is exhausted")?;
        println!(
            "    the tutorial's allocator has no source: adding {} KiB of frames with add_to_heap",
            region.len() / 1024
        );
        // SAFETY: FRAMES hands every frame out once and keeps it valid for ever.
        unsafe { heap::add_memory(region.cast::<u8>().as_ptr(), region.len()) };
        big.try_reserve_exact(words)
            .map_err(|e| alloc::format!("reserving {BIG} bytes failed after growing: {e}"))?;
    }
    big.extend((0..words as u64).map(|i| i ^ 0x5a5a));
    ensure!(big.iter().enumerate().all(|(i, &x)| x == i as u64 ^ 0x5a5a), "the big vector did not read back");
    let at = big.as_ptr().addr();
    ensure!(
        !bss_range().contains(&at),
        "the {BIG}-byte block at {at:#x} is inside .bss, which is too small for it"
    );
    let during = heap::stats();
    let (_, frames_after, _) = FRAMES.usage();
    println!(
        "    heap grew from {} to {} bytes ({} KiB of frames); {BIG}-byte vector at {at:#x}",
        before.total_bytes,
        during.total_bytes,
        (frames_after - frames_before) / 1024,
    );
    drop(big);
    let after = heap::stats();
    if heap::GIVES_BACK {
        return frames_go_back_and_come_again(before, during, frames_before, frames_after);
    }
    ensure!(during.total_bytes > before.total_bytes, "total bytes did not grow");
    ensure!(during.total_bytes >= before.total_bytes + BIG, "grew by less than the request");
    // Every frame taken went to the heap: the region it asked for (its block aligned to its
    // size, and bookkeeping) and the pages before the aligned point, which it uses too. The
    // heap grew by all of them but its bookkeeping, which is about 1/16 of the region at most.
    let frames = frames_after - frames_before;
    let grown = during.total_bytes - before.total_bytes;
    ensure!(frames >= grown, "the heap grew by more than the frames it took");
    ensure!(grown >= frames - frames / 16, "{frames} bytes of frames grew the heap by only {grown}");
    ensure_eq!(after.total_bytes, during.total_bytes);
    ensure_eq!(after.live_allocations, before.live_allocations);
    ensure_eq!(after.allocated_bytes, before.allocated_bytes);
    Ok(())
}

/// With give-back (the native front): the frames the big vector grew the heap by went back to
/// the frame allocator when it was freed (the region was wholly free and the heap keeps more
/// than its watermark without it); a second vector of the same size takes them again, and
/// they go back again.
fn frames_go_back_and_come_again(
    before: kheap::HeapStats,
    during: kheap::HeapStats,
    frames_before: usize,
    frames_grown: usize,
) -> TestResult {
    ensure!(during.total_bytes >= before.total_bytes + BIG, "grew by less than the request");
    let given_back = heap::regions_given_back();
    let (_, frames_now, _) = FRAMES.usage();
    let now = heap::stats();
    ensure!(
        frames_now == frames_before,
        "the frames did not go back: {given_back} regions given back; heap total {} free {} live {} (before: total {} free {})",
        now.total_bytes, now.free_bytes, now.live_allocations, before.total_bytes, before.free_bytes
    );
    ensure_eq!(heap::settled_stats().total_bytes, before.total_bytes);
    println!(
        "    freed: {} KiB of frames went back to the frame allocator, heap back to {} bytes",
        (frames_grown - frames_before) / 1024,
        before.total_bytes
    );
    let mut again: Vec<u64> = Vec::new();
    again
        .try_reserve_exact(BIG / 8)
        .map_err(|e| alloc::format!("reserving {BIG} bytes again failed: {e}"))?;
    let (_, frames_again, _) = FRAMES.usage();
    ensure_eq!(frames_again, frames_grown);
    drop(again);
    let (_, frames_end, _) = FRAMES.usage();
    ensure_eq!(frames_end, frames_before);
    ensure_eq!(heap::regions_given_back(), given_back + 1);
    println!(
        "    needed again: the same {} KiB came back and went back once more ({} regions given back)",
        (frames_again - frames_before) / 1024,
        heap::regions_given_back()
    );
    let after = heap::settled_stats();
    ensure_eq!(after.total_bytes, before.total_bytes);
    ensure_eq!(after.live_allocations, before.live_allocations);
    Ok(())
}
