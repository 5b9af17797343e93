//! `TlsfHeap` under arbitrary scripts.
#![no_main]

use kheap::TlsfHeap;
use kheap_testkit::fuzz_script::{lookup, run_raw};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| run_raw(TlsfHeap::new, Some(lookup()), bytes));
