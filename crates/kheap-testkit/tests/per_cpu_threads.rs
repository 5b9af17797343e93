//! Host stress of the per-CPU front: several threads, half of every thread's blocks freed by
//! another thread, patterns checked on every free, the shared heap whole after `drain_all`.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::Mutex;

use kheap::{BuddyHeap, Front, LockedHeap, PerCpu, RawHeap, RawSpinlock, TlsfHeap};
use kheap_testkit::{Arena, Rng, SeedReport, ThreadCpu};

/// Room for every block a finished thread's inbox may collect (about 12 MB), buddy rounding
/// included, so every allocation must succeed.
const ARENA: usize = 64 << 20;
const OPS_PER_THREAD: usize = 40_000;

/// A block in flight, with the byte written over it.
struct Block(NonNull<u8>, Layout, u8);

// SAFETY: a block of the shared heap is plain memory; whoever holds it may free it.
unsafe impl Send for Block {}

/// Checks the pattern and frees the block.
fn free<F: Front>(heap: &F, Block(ptr, layout, tag): Block) {
    // SAFETY: the block is live and `layout.size()` bytes of it were written with `tag`.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.as_ptr(), layout.size()) };
    if let Some(at) = bytes.iter().position(|&b| b != tag) {
        panic!("block {ptr:p} ({layout:?}) overwritten at byte {at}: another owner had it");
    }
    // SAFETY: allocated with `layout`, freed once.
    unsafe { heap.deallocate(ptr, layout) };
}

fn worker<F: Front>(heap: &F, me: usize, cpu: usize, inboxes: &[Mutex<Vec<Block>>], seed: u64) {
    ThreadCpu::set(cpu);
    let _report = SeedReport { label: "per_cpu_threads worker", seed };
    let mut rng = Rng::new(seed);
    let mut kept: Vec<Block> = Vec::new();
    let next = (me + 1) % inboxes.len();
    for step in 0..OPS_PER_THREAD {
        let size = if rng.chance(3) { rng.range(1025..=8192) } else { rng.range(1..=1024) };
        let layout = Layout::from_size_align(size, 1 << rng.range(0..=5)).unwrap();
        {
            let ptr = heap
                .allocate(layout)
                .unwrap_or_else(|_| panic!("{layout:?} refused at step {step}"))
                .cast::<u8>();
            assert_eq!(ptr.as_ptr() as usize % layout.align(), 0);
            let tag = (step as u8) ^ (me as u8).wrapping_mul(37);
            // SAFETY: the block holds at least `size` bytes.
            unsafe { ptr.as_ptr().write_bytes(tag, size) };
            let block = Block(ptr, layout, tag);
            if rng.chance(50) {
                inboxes[next].lock().unwrap().push(block);
            } else {
                kept.push(block);
            }
        }
        if kept.len() > 200 || (!kept.is_empty() && rng.chance(30)) {
            let index = rng.range(0..=kept.len() - 1);
            free(heap, kept.swap_remove(index));
        }
        if step % 32 == 0 {
            let received = std::mem::take(&mut *inboxes[me].lock().unwrap());
            for block in received {
                free(heap, block);
            }
        }
    }
    for block in kept {
        free(heap, block);
    }
}

/// Runs `threads` workers on `heap` (thread `i` stands for CPU `i % cpus`), then frees what is
/// left in the inboxes and drains every cache: the shared heap must be whole.
fn stress<F: Front + Sync, const CPUS: usize>(
    heap: &PerCpu<F, ThreadCpu, CPUS>,
    threads: usize,
    seed: u64,
    whole: impl Fn(&F) -> Result<(), kheap::InvariantError>,
) {
    let inboxes: Vec<Mutex<Vec<Block>>> = (0..threads).map(|_| Mutex::new(Vec::new())).collect();
    std::thread::scope(|scope| {
        for me in 0..threads {
            let inboxes = &inboxes;
            scope.spawn(move || worker(heap, me, me % CPUS, inboxes, seed.wrapping_add(me as u64)));
        }
    });
    for inbox in &inboxes {
        for block in inbox.lock().unwrap().drain(..) {
            free(heap, block);
        }
    }
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
    stress::<_, 4>(&heap, 4, 0x0001_2345, |s| s.check_invariants());
}

#[test]
fn four_threads_sharing_two_cpus_over_buddy_stay_sound_and_end_whole() {
    // Two threads per CPU index: each finds its CPU's cache busy at times and bypasses it.
    let shared = leaked_over(BuddyHeap::<{ kheap::DEFAULT_MAX_ORDER }>::new());
    let heap: PerCpu<_, ThreadCpu, 2> = PerCpu::new(shared);
    stress::<_, 2>(&heap, 4, 0x0006_789A, |s| s.check_invariants());
}
