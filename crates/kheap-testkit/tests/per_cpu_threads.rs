//! Host stress of the per-CPU front: several threads, half of every thread's blocks freed by
//! another thread, patterns checked on every free, the shared heap whole after `drain_all`.

use kheap::{BuddyHeap, Front, LockedHeap, PerCpu, RawHeap, RawSpinlock, TlsfHeap};
use kheap_testkit::stress::{self, Budget};
use kheap_testkit::{Arena, ThreadCpu};

/// Room for every block in flight (at most a few MB: the kept blocks and the bounded inboxes
/// of four threads), buddy rounding included, so every allocation must succeed.
const ARENA: usize = 64 << 20;
const OPS_PER_THREAD: usize = 40_000;

/// Runs `threads` workers on `heap` (thread `i` stands for CPU `i % CPUS`), then drains every
/// cache: the shared heap must be whole.
fn stress_then_drain<F: Front + Sync, const CPUS: usize>(
    heap: &PerCpu<F, ThreadCpu, CPUS>,
    threads: usize,
    seed: u64,
    whole: impl Fn(&F) -> Result<(), kheap::InvariantError>,
) {
    stress::run(heap, threads, CPUS, seed, Budget::Operations(OPS_PER_THREAD));
    let moved = heap.drain_all();
    assert_eq!(heap.cached_bytes(), 0);
    let stats = heap.stats();
    assert_eq!((stats.live_allocations, stats.requested_bytes), (0, 0), "seed {seed}: {stats:?}");
    assert_eq!(stats.free_bytes, stats.total_bytes, "seed {seed}: the heap is not whole: {stats:?}");
    assert_eq!(heap.shared().stats().live_allocations, 0);
    whole(heap.shared()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let per_cpu: Vec<_> = (0..CPUS).map(|cpu| heap.cpu_stats(cpu).unwrap()).collect();
    assert!(per_cpu.iter().all(|s| s.allocations > 0), "a CPU's cache served nothing: {per_cpu:?}");
    eprintln!("drained {moved} objects; bypasses {}; per CPU {per_cpu:?}", heap.bypasses());
}

fn leaked_over<H: RawHeap + Send + 'static>(heap: H) -> &'static LockedHeap<RawSpinlock, H> {
    let arena: &'static Arena = Box::leak(Box::new(Arena::new(ARENA, 4096)));
    let shared = Box::leak(Box::new(LockedHeap::<RawSpinlock, H>::new(heap)));
    // SAFETY: the leaked arena lives for ever and is handed to this heap alone.
    unsafe { shared.add_region_raw(arena.base().as_ptr(), ARENA) }.unwrap();
    shared
}

#[test]
fn four_threads_on_four_cpus_over_tlsf_end_with_the_heap_whole() {
    let shared = leaked_over(TlsfHeap::new());
    let heap: PerCpu<_, ThreadCpu, 4> = PerCpu::new(shared);
    stress_then_drain::<_, 4>(&heap, 4, 0x0001_2345, |s| s.check_invariants());
}

#[test]
fn four_threads_sharing_two_cpus_over_buddy_stay_sound_and_end_whole() {
    // Two threads per CPU index: each finds its CPU's cache busy at times and bypasses it.
    let shared = leaked_over(BuddyHeap::<{ kheap::DEFAULT_MAX_ORDER }>::new());
    let heap: PerCpu<_, ThreadCpu, 2> = PerCpu::new(shared);
    stress_then_drain::<_, 2>(&heap, 4, 0x0006_789A, |s| s.check_invariants());
}
