//! The default `Heap` (slabs over TLSF) under arbitrary scripts, with slabs at once or as it
//! comes (see `run_default_heap`).
#![no_main]

use kheap_testkit::fuzz_script::run_default_heap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| run_default_heap(bytes));
