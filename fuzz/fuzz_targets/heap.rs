//! The default `Heap` (slabs over TLSF) under arbitrary scripts: with slabs at once when the
//! first byte is even (a script's heap is smaller than `SLABS_FROM`, where the default heap's
//! small blocks are TLSF's), as it comes otherwise.
#![no_main]

use kheap::Heap;
use kheap_testkit::fuzz_script::{lookup, run_raw};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| match bytes.first().map(|b| b % 2) {
    Some(0) => run_raw(|| Heap::new().with_slabs_from(0), Some(lookup()), &bytes[1..]),
    _ => run_raw(Heap::new, Some(lookup()), bytes.get(1..).unwrap_or(&[])),
});
