//! `LockedHeap` as `GlobalAlloc` (with growth from a source, `realloc`, `alloc_zeroed` and the
//! C-style pair) over the heap the first byte picks, under arbitrary scripts.
#![no_main]

use kheap::{BuddyHeap, Counted, FirstFitHeap, FitPolicy, Heap, TlsfHeap};
use kheap_testkit::fuzz_script::{c_style, run_locked};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let rest = bytes.get(1..).unwrap_or(&[]);
    match bytes.first().copied().unwrap_or(0) % 5 {
        0 => run_locked(BuddyHeap::new, Some(c_style()), rest),
        1 => run_locked(TlsfHeap::new, Some(c_style()), rest),
        2 => run_locked(|| FirstFitHeap::new(FitPolicy::Best), None, rest),
        3 => run_locked(|| Counted::new(TlsfHeap::new()), Some(c_style()), rest),
        _ => run_locked(Heap::new, Some(c_style()), rest),
    }
});
