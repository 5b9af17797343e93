//! `BuddyHeap` (the default orders, or 16 when the first byte is even) under arbitrary scripts.
#![no_main]

use kheap::BuddyHeap;
use kheap_testkit::fuzz_script::{lookup, run_raw};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    match bytes.split_first() {
        Some((first, rest)) if first % 2 == 0 => run_raw(BuddyHeap::<16>::with_orders, Some(lookup()), rest),
        _ => run_raw(BuddyHeap::new, Some(lookup()), bytes.get(1..).unwrap_or(&[])),
    }
});
