//! The default `Heap` (slabs over TLSF) under arbitrary scripts.
#![no_main]

use kheap::Heap;
use kheap_testkit::fuzz_script::{lookup, run_raw};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| run_raw(Heap::new, Some(lookup()), bytes));
