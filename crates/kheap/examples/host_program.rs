//! A host program on kheap: a heap over a static arena, as `#[global_allocator]`.

use std::collections::BTreeMap;

use kheap::{Heap, LockedHeap, RawSpinlock, StaticArena};

/// 16 MiB, zero-initialised (in `.bss`, free in the binary), claimed by the heap on its first
/// allocation: there is no init call to forget, or to make too late.
static ARENA: StaticArena<{ 16 << 20 }> = StaticArena::new();

/// Every allocation of the program, from std's own before `main`, comes from this heap.
#[global_allocator]
static HEAP: LockedHeap<RawSpinlock, Heap> = LockedHeap::new(Heap::new()).with_source(&ARENA);

fn main() {
    let squares: BTreeMap<u32, String> = (0..1000).map(|i| (i, (i * i).to_string())).collect();
    assert_eq!(squares[&12], "144");

    let s = HEAP.stats();
    println!(
        "{} live allocations, {} of {} bytes used (asked for {}, peak {}), largest free block {} bytes",
        s.live_allocations,
        s.allocated_bytes,
        s.total_bytes,
        s.requested_bytes,
        s.peak_requested_bytes,
        s.largest_free_block,
    );
    HEAP.check_invariants().expect("heap corrupted");
}
