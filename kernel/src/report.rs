//! After the tests: the global heap's statistics and map with a scattered set of blocks live,
//! and a timing table of every algorithm on the same workload.

use alloc::boxed::Box;
use alloc::vec::Vec;

use kheap::HeapStats;

use crate::config::{CLOCK_FREQ, SEED};
use crate::rng::Rng;
use crate::{heap, heapmap, workload};

/// Steps of the timed workload per algorithm.
const TIMED_OPS: usize = 20_000;

/// Prints the heap report and the timing table; returns how many timed workloads failed
/// their checks.
pub fn show() -> usize {
    let mut failures = 0;
    println!("== heap report ==");
    // A scattered heap to look at: 600 blocks of random sizes, then a random half freed.
    let mut rng = Rng::new(SEED, "report");
    let mut blocks: Vec<Box<[u8]>> =
        (0..600).map(|i| alloc::vec![i as u8; rng.range(16, 6 * 1024)].into_boxed_slice()).collect();
    let mut keep = 0;
    blocks.retain(|_| {
        keep += 1;
        rng.percent(50)
    });
    println!("global heap, {} of {keep} random blocks still live:", blocks.len());
    print_stats(&heap::stats());
    heapmap::show::<heap::Heap>(|f| heap::with_locked(|h| f(h)));
    drop(blocks);
    println!("global heap, all freed:");
    print_stats(&heap::stats());
    let (start, next, end) = crate::frames::FRAMES.usage();
    println!(
        "frames: {} KiB of {} KiB after the kernel image taken for the heap",
        (next - start) / 1024,
        (end - start) / 1024,
    );

    println!(
        "== time per call, {TIMED_OPS} random steps on a {} KiB arena (seed {SEED:#x}) ==",
        workload::ARENA_SIZE / 1024
    );
    println!(
        "    {:<22}{:>8}{:>12}{:>8}{:>12}{:>9}",
        "algorithm", "allocs", "ns/alloc", "frees", "ns/free", "refused"
    );
    for (name, algorithm) in workload::ALGORITHMS {
        match workload::run(algorithm, SEED, TIMED_OPS) {
            Ok(o) => println!(
                "    {:<22}{:>8}{:>12}{:>8}{:>12}{:>9}",
                name,
                o.allocations,
                ns_per(o.allocate_ticks, o.allocations),
                o.frees,
                ns_per(o.free_ticks, o.frees),
                o.refused
            ),
            Err(error) => {
                println!("    {name:<22}failed: {error}");
                failures += 1;
            }
        }
    }
    println!(
        "    (`time` CSR at {} MHz, read around each call; QEMU TCG, so only relative)",
        CLOCK_FREQ / 1_000_000
    );
    failures
}

/// Nanoseconds per call from a tick total.
fn ns_per(ticks: u64, calls: usize) -> u64 {
    (ticks * (1_000_000_000 / CLOCK_FREQ)).checked_div(calls as u64).unwrap_or(0)
}

/// Prints one snapshot of statistics.
pub fn print_stats(s: &HeapStats) {
    let ext = s.external_fragmentation_permille();
    println!(
        "    total {} B, used {} B (asked for {} B, peak {} B), free {} B, largest free block {} B",
        s.total_bytes,
        s.allocated_bytes,
        s.requested_bytes,
        s.peak_requested_bytes,
        s.free_bytes,
        s.largest_free_block
    );
    println!(
        "    {} live blocks, {} refused requests; fragmentation: internal {} B, external {}.{}%",
        s.live_allocations,
        s.failed_requests,
        s.internal_fragmentation_bytes(),
        ext / 10,
        ext % 10
    );
}
