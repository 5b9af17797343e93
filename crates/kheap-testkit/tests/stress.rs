//! Host stress for a time budget: four threads with cross-thread frees over the default heap,
//! behind one lock and behind the per-CPU front, ending with the heap whole.
//!
//! `KHEAP_STRESS_SECONDS` sets the budget of each test (default 2: `cargo test` stays fast;
//! `cargo xtask stress --time S` runs them in release for as long as asked) and
//! `KHEAP_STRESS_SEED` the seed (each thread adds its index). The seed fixes each thread's
//! operations, not how the threads interleave.

use std::time::Duration;

use kheap::{Heap, HeapStats, LockedHeap, PerCpu, RawSpinlock};
use kheap_testkit::stress::{self, Budget};
use kheap_testkit::{Arena, SeedReport, ThreadCpu};

/// Room for every block in flight (a few MB at most: the kept blocks and the bounded inboxes).
const ARENA: usize = 64 << 20;
/// Four threads on the two cores of CI: preemption inside the heap's lock is part of the test.
const THREADS: usize = 4;

/// A number from the environment variable `name`, or `default`.
fn from_env(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("{name}={text} is not a whole number")),
        Err(_) => default,
    }
}

fn budget() -> Budget {
    Budget::Time(Duration::from_secs(from_env("KHEAP_STRESS_SECONDS", 2)))
}

/// The default heap behind one lock, over a leaked arena of its own.
fn locked_heap() -> &'static LockedHeap<RawSpinlock, Heap> {
    let arena: &'static Arena = Box::leak(Box::new(Arena::new(ARENA, 4096)));
    let heap = Box::leak(Box::new(LockedHeap::<RawSpinlock, Heap>::new(Heap::new())));
    // SAFETY: the leaked arena lives for ever and is handed to this heap alone.
    unsafe { heap.add_region_raw(arena.base().as_ptr(), ARENA) }.unwrap();
    heap
}

/// Checks that `heap`, its caches trimmed, is as whole as it was `fresh`: no live block, and
/// the same free bytes and largest free block; and that its invariants hold.
fn assert_whole(heap: &LockedHeap<RawSpinlock, Heap>, fresh: HeapStats, seed: u64) {
    heap.trim();
    let now = heap.stats();
    assert_eq!((now.live_allocations, now.requested_bytes), (0, 0), "seed {seed}: {now:?}");
    assert_eq!(
        (now.total_bytes, now.free_bytes, now.largest_free_block),
        (fresh.total_bytes, fresh.free_bytes, fresh.largest_free_block),
        "seed {seed}: the heap is not whole again"
    );
    heap.check_invariants().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
}

#[test]
fn four_threads_over_the_locked_default_heap_end_with_it_whole() {
    let seed = from_env("KHEAP_STRESS_SEED", 0x5EED_0001);
    let _report = SeedReport { label: "locked default heap stress", seed };
    let heap = locked_heap();
    let fresh = heap.stats();
    let done = stress::run(heap, THREADS, 1, seed, budget());
    eprintln!("locked default heap, seed {seed}: operations per thread {done:?}");
    assert!(done.iter().all(|&n| n > 0), "a thread did nothing: {done:?}");
    assert_whole(heap, fresh, seed);
}

#[test]
fn four_threads_over_the_per_cpu_front_end_with_the_heap_whole() {
    let seed = from_env("KHEAP_STRESS_SEED", 0x5EED_0002);
    let _report = SeedReport { label: "per-CPU front stress", seed };
    let shared = locked_heap();
    let fresh = shared.stats();
    // Two CPUs for four threads: each finds its CPU's cache busy at times and bypasses it.
    let heap: PerCpu<_, ThreadCpu, 2> = PerCpu::new(shared);
    let done = stress::run(&heap, THREADS, 2, seed, budget());
    let drained = heap.drain_all();
    eprintln!("per-CPU front, seed {seed}: operations per thread {done:?}; {drained} objects drained");
    assert!(done.iter().all(|&n| n > 0), "a thread did nothing: {done:?}");
    assert_eq!(heap.cached_bytes(), 0);
    assert_eq!(heap.stats().live_allocations, 0, "seed {seed}");
    assert_whole(shared, fresh, seed);
}
