//! Lifetimes, alignments and sizes: long-lived blocks among churn, page and 64 KiB alignment,
//! `realloc`, and a request larger than all memory.

use alloc::alloc::{alloc, dealloc, realloc};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::alloc::Layout;

use super::{ensure, ensure_eq, TestResult};
use crate::config::SEED;
use crate::heap;
use crate::rng::Rng;

/// 300 long-lived boxes stay put while 20 000 short-lived ones come and go around them.
pub fn long_lived_among_churn() -> TestResult {
    let before = heap::settled_stats();
    let mut rng = Rng::new(SEED, "churn");
    let long: Vec<Box<[u32]>> =
        (0..300u32).map(|i| alloc::vec![i; rng.range(1, 200)].into_boxed_slice()).collect();
    let mut short: Vec<Box<[u8]>> = Vec::with_capacity(64);
    for step in 0..20_000usize {
        if short.len() == 64 || (!short.is_empty() && rng.percent(45)) {
            let victim = short.swap_remove(rng.below(short.len()));
            ensure!(
                victim.iter().all(|&b| b == victim.len() as u8),
                "short-lived block changed (step {step})"
            );
        } else {
            let len = rng.range(1, 1500);
            short.push(alloc::vec![len as u8; len].into_boxed_slice());
        }
    }
    drop(short);
    for (i, block) in long.iter().enumerate() {
        ensure!(block.iter().all(|&x| x == i as u32), "long-lived block {i} was overwritten");
    }
    drop(long);
    let after = heap::settled_stats();
    ensure_eq!(after.live_allocations, before.live_allocations);
    ensure_eq!(after.free_bytes, before.free_bytes);
    Ok(())
}

/// Blocks aligned to 4 KiB and 64 KiB, through `alloc` and through an over-aligned type.
pub fn aligned_4k_and_64k() -> TestResult {
    #[repr(C, align(4096))]
    struct Page([u8; 4096]);
    let pages: Vec<Box<Page>> = (0..8).map(|i| Box::new(Page([i; 4096]))).collect();
    for (i, page) in pages.iter().enumerate() {
        ensure!(
            core::ptr::from_ref(&**page).addr() % 4096 == 0,
            "page {i} at {:p} is not 4 KiB aligned",
            &**page
        );
        ensure!(page.0.iter().all(|&b| b == i as u8), "page {i} contents changed");
    }
    let mut blocks = Vec::new();
    for (align, size) in [(4096, 100), (4096, 5000), (65536, 64), (65536, 70_000), (65536, 65536)] {
        let layout = Layout::from_size_align(size, align).map_err(|e| alloc::format!("{e}"))?;
        // SAFETY: the layout has a non-zero size.
        let block = unsafe { alloc(layout) };
        ensure!(!block.is_null(), "{layout:?} refused");
        ensure!(block.addr() % align == 0, "{layout:?} got {block:p}, misaligned");
        // SAFETY: `alloc` returned `size` writable bytes at `block`.
        unsafe { block.write_bytes(align as u8 ^ size as u8, size) };
        blocks.push((block, layout));
    }
    for &(block, layout) in &blocks {
        // SAFETY: `block` is live with `layout.size()` initialised bytes.
        let bytes = unsafe { core::slice::from_raw_parts(block, layout.size()) };
        let fill = layout.align() as u8 ^ layout.size() as u8;
        ensure!(bytes.iter().all(|&b| b == fill), "{layout:?} block was overwritten");
        // SAFETY: `block` came from `alloc(layout)` and is freed once.
        unsafe { dealloc(block, layout) };
    }
    Ok(())
}

/// `realloc` up to 512 KiB and back down keeps every byte that stays in range.
pub fn realloc_keeps_contents() -> TestResult {
    let layout = Layout::from_size_align(16, 8).map_err(|e| alloc::format!("{e}"))?;
    // SAFETY: non-zero size.
    let mut block = unsafe { alloc(layout) };
    ensure!(!block.is_null(), "first allocation refused");
    let pattern = |i: usize| (i.wrapping_mul(31) >> 3) as u8;
    let mut size = 16;
    // SAFETY: 16 writable bytes at `block`.
    unsafe { (0..size).for_each(|i| block.add(i).write(pattern(i))) };
    let mut moved = 0;
    for new_size in [40, 100, 1000, 4096, 10_000, 65_536, 300_000, 1 << 19, 5000, 64] {
        // SAFETY: `block` is live with (size, 8); `new_size` is non-zero and small.
        let grown = unsafe { realloc(block, Layout::from_size_align_unchecked(size, 8), new_size) };
        ensure!(!grown.is_null(), "realloc to {new_size} refused");
        moved += usize::from(grown != block);
        block = grown;
        let kept = size.min(new_size);
        // SAFETY: `block` is live with at least `kept` initialised bytes.
        let bytes = unsafe { core::slice::from_raw_parts(block, kept) };
        if let Some(at) = (0..kept).find(|&i| bytes[i] != pattern(i)) {
            return Err(alloc::format!("after realloc {size} -> {new_size}, byte {at} changed"));
        }
        // SAFETY: `block` has `new_size` writable bytes.
        unsafe { (kept..new_size).for_each(|i| block.add(i).write(pattern(i))) };
        size = new_size;
    }
    // SAFETY: `block` is live with (size, 8).
    unsafe { dealloc(block, Layout::from_size_align_unchecked(size, 8)) };
    println!("    {moved} of 10 reallocs moved the block");
    Ok(())
}

/// Reserving 512 MiB (four times all RAM) fails with an error, without a panic, and leaves
/// the heap as it was.
pub fn try_reserve_beyond_memory() -> TestResult {
    let before = heap::settled_stats();
    let mut v: Vec<u8> = Vec::new();
    let result = v.try_reserve(512 << 20);
    ensure!(result.is_err(), "reserving 512 MiB succeeded on a 128 MiB machine");
    let after = heap::settled_stats();
    ensure_eq!(after.failed_requests, before.failed_requests + 1);
    ensure_eq!(after.total_bytes, before.total_bytes);
    ensure_eq!(after.free_bytes, before.free_bytes);
    v.try_reserve(4096).map_err(|e| alloc::format!("a small reserve failed afterwards: {e}"))?;
    println!("    try_reserve(512 MiB): {}", result.err().map(|e| alloc::format!("{e}")).unwrap_or_default());
    Ok(())
}
