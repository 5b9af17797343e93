//! `FirstFitHeap` with each policy (chosen by the first byte) under arbitrary scripts.
#![no_main]

use kheap::{FirstFitHeap, FitPolicy};
use kheap_testkit::fuzz_script::run_raw;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let rest = bytes.get(1..).unwrap_or(&[]);
    match bytes.first().copied().unwrap_or(0) % 4 {
        0 => run_raw(|| FirstFitHeap::new(FitPolicy::First), None, rest),
        1 => run_raw(|| FirstFitHeap::new(FitPolicy::Next), None, rest),
        2 => run_raw(|| FirstFitHeap::new(FitPolicy::Best), None, rest),
        _ => run_raw(|| FirstFitHeap::new(FitPolicy::Worst), None, rest),
    }
});
