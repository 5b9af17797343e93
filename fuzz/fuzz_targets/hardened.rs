//! The hardened TLSF heap (`TlsfHeap::hardened()`), alone and under the slab layer, under
//! arbitrary scripts: its checks must never take the heap's own records for damage.
#![no_main]

use kheap::{SlabHeap, TlsfHeap};
use kheap_testkit::fuzz_script::{lookup, run_raw};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| match bytes.split_first() {
    Some((first, rest)) if first % 2 == 1 => run_raw(|| SlabHeap::new(TlsfHeap::hardened()), Some(lookup()), rest),
    _ => run_raw(TlsfHeap::hardened, Some(lookup()), bytes.get(1..).unwrap_or(&[])),
});
