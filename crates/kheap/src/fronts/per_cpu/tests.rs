use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::vec::Vec;

use super::magazine::{capacity, MAGAZINE_BYTES, MAGAZINE_OBJECTS};
use super::*;
use crate::test_memory::Memory;
use crate::{LockedHeap, NoInterrupts, RawSpinlock, TlsfHeap};

std::thread_local! {
    /// The CPU the test thread stands for.
    static CPU: Cell<usize> = const { Cell::new(0) };
}

/// CPU `i` is whatever the test last set on this thread.
struct TestCpu;

impl CpuId for TestCpu {
    type Interrupts = NoInterrupts;
    fn current() -> usize {
        CPU.with(Cell::get)
    }
}

fn on_cpu(cpu: usize) {
    CPU.with(|c| c.set(cpu));
}

type Shared = LockedHeap<RawSpinlock, TlsfHeap>;
type Caches = PerCpu<Shared, TestCpu, 2>;

/// Caches over a fresh 1 MiB TLSF heap (the memory lives as long as the test).
fn caches(memory: &Memory) -> Caches {
    let shared = Shared::new(TlsfHeap::new());
    // SAFETY: the memory outlives the heap (both live until the test ends) and only it uses it.
    unsafe { shared.add_region_raw(memory.0.as_ptr(), 1 << 20) }.unwrap();
    on_cpu(0);
    PerCpu::new(shared)
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

fn class_of(layout: Layout) -> SizeClass {
    SizeClass::for_layout(layout).unwrap()
}

/// After a drain of every CPU, nothing is cached and the shared heap is whole again.
fn assert_whole_after_drain(heap: &Caches) {
    heap.drain_all();
    assert_eq!(heap.cached_bytes(), 0);
    let stats = heap.stats();
    assert_eq!((stats.live_allocations, stats.requested_bytes), (0, 0), "{stats:?}");
    assert_eq!(stats.free_bytes, stats.total_bytes, "{stats:?}");
    assert_eq!(heap.shared().stats(), stats, "the shared heap and the front disagree after a drain");
    heap.shared().check_invariants().unwrap();
}

#[test]
fn the_memory_bound_is_the_sum_of_capacity_times_size_and_full_caches_reach_it() {
    let mut bound = 0;
    for index in 0..SizeClass::COUNT {
        let class = SizeClass::from_index(index).unwrap();
        let cap = capacity(class);
        assert!(cap <= MAGAZINE_OBJECTS && cap * class.size() <= MAGAZINE_BYTES.max(MAGAZINE_OBJECTS * 8));
        assert!(cap >= 4, "class {} keeps {cap}", class.size());
        bound += cap * class.size();
    }
    assert_eq!(Caches::MAX_CACHED_BYTES_PER_CPU, bound);
    assert_eq!(bound, 144_536, "the figure the documentation states");

    // Fill every magazine of CPU 1: allocate twice what it holds, then free until it is full.
    let memory = Memory::new(1 << 20);
    let heap = caches(&memory);
    on_cpu(1);
    let mut held = Vec::new();
    for index in 0..SizeClass::COUNT {
        let class = SizeClass::from_index(index).unwrap();
        let l = object_layout(class);
        let mut blocks: Vec<_> =
            (0..2 * capacity(class)).map(|_| Front::allocate(&heap, l).unwrap()).collect();
        while heap.slots[1].cache.lock().magazines[index].len() < capacity(class) {
            let block = blocks.pop().unwrap();
            // SAFETY: allocated just above with the object layout, freed once.
            unsafe { Front::deallocate(&heap, block.cast(), l) };
        }
        held.extend(blocks.into_iter().map(|block| (block, l)));
    }
    assert_eq!(heap.cpu_stats(1).unwrap().cached_bytes, Caches::MAX_CACHED_BYTES_PER_CPU);
    // More frees of full magazines cannot raise it: each flushes half first (into the depot,
    // itself bounded, or to the shared heap).
    assert_eq!(Caches::MAX_DEPOT_BYTES, 65_536, "the figure the documentation states");
    // (Under Miri the bound is checked after every eighth free: each check counts 40
    // magazines.)
    for (freed, (block, l)) in held.into_iter().enumerate() {
        // SAFETY: allocated above with `l`, freed once.
        unsafe { Front::deallocate(&heap, block.cast(), l) };
        if !cfg!(miri) || freed % 8 == 0 {
            assert!(heap.cpu_stats(1).unwrap().cached_bytes <= Caches::MAX_CACHED_BYTES_PER_CPU);
        }
    }
    assert!(heap.cached_bytes() <= Caches::MAX_CACHED_BYTES_PER_CPU + Caches::MAX_DEPOT_BYTES);
    assert!(heap.depot.depot.lock().held().1 > 0, "the flushes went through the depot");
    assert_whole_after_drain(&heap);
}

#[test]
fn small_blocks_are_class_sized_aligned_and_counted_as_the_caller_asked() {
    let memory = Memory::new(1 << 20);
    let heap = caches(&memory);
    let layouts = [
        layout(1, 1),
        layout(24, 16),
        layout(100, 8),
        layout(0, 64),
        layout(1000, 8),
        layout(700, 16),
        layout(300, 256),
    ];
    let mut blocks = Vec::new();
    for &l in &layouts {
        let block = Front::allocate(&heap, l).unwrap();
        assert_eq!(block.len(), class_of(l).size(), "{l:?}");
        assert_eq!(block.cast::<u8>().as_ptr() as usize % l.align(), 0, "{l:?}");
        blocks.push(block);
    }
    let stats = heap.stats();
    assert_eq!(stats.live_allocations, layouts.len());
    assert_eq!(stats.requested_bytes, layouts.iter().map(|l| l.size()).sum::<usize>());
    assert!(heap.cached_bytes() > 0, "the refills left objects in the magazines");
    // The shared heap counts the cached objects and class sizes: exact "modulo" the caches.
    let shared = heap.shared().stats();
    assert_eq!(shared.live_allocations - stats.live_allocations, heap.cpu_stats(0).unwrap().cached_objects);
    for (block, &l) in blocks.into_iter().zip(&layouts) {
        // SAFETY: allocated above with `l`, freed once.
        unsafe { Front::deallocate(&heap, block.cast(), l) };
    }
    let stats = heap.stats();
    assert_eq!((stats.live_allocations, stats.requested_bytes), (0, 0));
    assert_whole_after_drain(&heap);
}

#[test]
fn a_refill_takes_half_a_magazine_and_edges_do_not_thrash() {
    let memory = Memory::new(1 << 20);
    let heap = caches(&memory);
    let l = layout(64, 8);
    let cap = capacity(class_of(l));
    let first = Front::allocate(&heap, l).unwrap();
    let after_refill = heap.cpu_stats(0).unwrap();
    assert_eq!((after_refill.refills, after_refill.cached_objects), (1, cap / 2 - 1));
    assert_eq!(heap.shared().stats().live_allocations, cap / 2);

    // Empty the magazine, then alternate at the empty edge: one refill, then none.
    let mut held: Vec<_> = (1..cap / 2).map(|_| Front::allocate(&heap, l).unwrap()).collect();
    assert_eq!(heap.cpu_stats(0).unwrap().cached_objects, 0);
    for _ in 0..100 {
        let block = Front::allocate(&heap, l).unwrap();
        // SAFETY: allocated just above with `l`, freed once.
        unsafe { Front::deallocate(&heap, block.cast(), l) };
    }
    assert_eq!(heap.cpu_stats(0).unwrap().refills, 2, "alternating at the empty edge refilled again");

    // Fill the magazine to capacity, then alternate at the full edge: one flush, then none.
    held.push(first);
    while held.len() < cap + 1 {
        held.push(Front::allocate(&heap, l).unwrap());
    }
    let before = heap.cpu_stats(0).unwrap();
    for block in held.drain(..) {
        // SAFETY: allocated above with `l`, freed once.
        unsafe { Front::deallocate(&heap, block.cast(), l) };
    }
    let filled = heap.cpu_stats(0).unwrap();
    assert_eq!(filled.flushes - before.flushes, 1);
    for _ in 0..100 {
        // SAFETY: allocated just above with `l`, freed once.
        unsafe { Front::deallocate(&heap, Front::allocate(&heap, l).unwrap().cast(), l) };
    }
    assert_eq!(
        heap.cpu_stats(0).unwrap().flushes,
        filled.flushes,
        "alternating at the full edge flushed again"
    );
    assert_whole_after_drain(&heap);
}

#[test]
fn an_object_freed_on_another_cpu_serves_that_cpu_and_drains_back() {
    let memory = Memory::new(1 << 20);
    let heap = caches(&memory);
    let l = layout(200, 8);
    on_cpu(0);
    let block = Front::allocate(&heap, l).unwrap().cast::<u8>();
    on_cpu(1);
    // SAFETY: allocated on CPU 0 with `l`, freed once, here on CPU 1.
    unsafe { Front::deallocate(&heap, block, l) };
    assert_eq!(heap.cpu_stats(1).unwrap().cached_objects, 1);
    // CPU 1's next allocation of the class is that object (LIFO), no refill needed.
    let again = Front::allocate(&heap, layout(201, 1)).unwrap().cast::<u8>();
    assert_eq!(again, block);
    assert_eq!(heap.cpu_stats(1).unwrap().refills, 0);
    // SAFETY: allocated just above with this layout, freed once.
    unsafe { Front::deallocate(&heap, again, layout(201, 1)) };
    // CPU 1 goes offline: its drain returns the object, nothing is stranded.
    assert_eq!(heap.drain(1), 1);
    assert_eq!(heap.cpu_stats(1).unwrap().cached_objects, 0);
    assert_whole_after_drain(&heap);
}

#[test]
fn a_busy_cache_sends_calls_to_the_shared_heap_and_statistics_stay_exact() {
    let memory = Memory::new(1 << 20);
    let heap = caches(&memory);
    let l = layout(40, 8);
    let held = heap.slots[0].cache.lock(); // as if an interrupted holder on CPU 0
    let block = Front::allocate(&heap, l).unwrap();
    assert_eq!(heap.bypasses(), 1);
    assert_eq!(heap.shared().stats().requested_bytes, class_of(l).size());
    // SAFETY: allocated just above with `l`, freed once.
    unsafe { Front::deallocate(&heap, block.cast(), l) };
    assert_eq!(heap.bypasses(), 2);
    drop(held);
    // Allocated while busy, freed through the cache: still counted exactly.
    let held = heap.slots[0].cache.lock();
    let block = Front::allocate(&heap, l).unwrap();
    drop(held);
    assert_eq!(heap.stats().requested_bytes, 40);
    // SAFETY: allocated just above with `l`, freed once.
    unsafe { Front::deallocate(&heap, block.cast(), l) };
    assert_eq!(heap.stats().requested_bytes, 0);
    assert_eq!(heap.cpu_stats(0).unwrap().cached_objects, 1);
    assert_whole_after_drain(&heap);
}

static MISUSES: AtomicUsize = AtomicUsize::new(0);

fn count_misuse(misuse: &Misuse) {
    assert!(matches!(misuse.kind, MisuseKind::DoubleFree | MisuseKind::NotBlockStart | MisuseKind::Null));
    MISUSES.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn double_frees_into_the_magazine_and_misaligned_frees_are_reported_and_change_nothing() {
    let memory = Memory::new(1 << 20);
    let heap = caches(&memory).on_misuse(count_misuse);
    let l = layout(48, 16);
    let block = Front::allocate(&heap, l).unwrap().cast::<u8>();
    // SAFETY: allocated with `l`; the second free is the misuse under test, detected because
    // the object is still in CPU 0's magazine.
    unsafe {
        Front::deallocate(&heap, block, l);
        Front::deallocate(&heap, block, l);
    }
    assert_eq!(MISUSES.load(Ordering::SeqCst), 1);
    let cached = heap.cpu_stats(0).unwrap().cached_objects;
    // SAFETY: a pointer no class-48 object starts at: detected by its alignment, never cached.
    unsafe { Front::deallocate(&heap, block.map_addr(|a| a.checked_add(8).unwrap()), l) };
    assert_eq!(MISUSES.load(Ordering::SeqCst), 2);
    // SAFETY: null is refused before anything is touched.
    unsafe { GlobalAlloc::dealloc(&heap, core::ptr::null_mut(), l) };
    assert_eq!(MISUSES.load(Ordering::SeqCst), 3);
    assert_eq!(heap.cpu_stats(0).unwrap().cached_objects, cached);
    // The object is handed out once, not twice.
    let a = Front::allocate(&heap, l).unwrap().cast::<u8>();
    let b = Front::allocate(&heap, l).unwrap().cast::<u8>();
    assert_ne!(a, b);
    // SAFETY: both allocated just above with `l`, freed once each.
    unsafe {
        Front::deallocate(&heap, a, l);
        Front::deallocate(&heap, b, l);
    }
    assert_whole_after_drain(&heap);
}

#[test]
fn try_allocate_serves_the_magazine_then_the_shared_heap_without_growing() {
    let heap: Caches = PerCpu::new(Shared::new(TlsfHeap::new()));
    on_cpu(0);
    assert!(Front::try_allocate(&heap, layout(32, 8)).is_err());
    assert_eq!(Front::largest_free_block(&heap), 0);

    let memory = Memory::new(1 << 20);
    let heap = caches(&memory);
    let l = layout(32, 8);
    let block = Front::allocate(&heap, l).unwrap();
    let cached = heap.cpu_stats(0).unwrap().cached_objects;
    let next = Front::try_allocate(&heap, l).unwrap();
    assert_eq!(heap.cpu_stats(0).unwrap().cached_objects, cached - 1, "not served from the magazine");
    // Beyond what the shared heap has: refused.
    let huge = layout(Front::largest_free_block(&heap) + 1, 8);
    assert!(Front::try_allocate(&heap, huge).is_err());
    assert_eq!(heap.stats().requested_bytes, 64);
    // SAFETY: allocated above with `l`, freed once each.
    unsafe {
        Front::deallocate(&heap, block.cast(), l);
        Front::deallocate(&heap, next.cast(), l);
    }
    assert_whole_after_drain(&heap);
}

#[test]
fn reallocate_stays_within_a_class_and_moves_across_classes_and_to_the_shared_heap() {
    let memory = Memory::new(1 << 20);
    let heap = caches(&memory);
    let l = layout(100, 8);
    let block = Front::allocate(&heap, l).unwrap().cast::<u8>();
    // SAFETY: the block holds 104 bytes; we fill the 100 requested.
    unsafe { block.as_ptr().write_bytes(0xA5, 100) };
    // SAFETY: live with `l`; every new size is non-zero and small.
    let same = unsafe { Front::reallocate(&heap, block, l, 104) }.unwrap().cast::<u8>();
    assert_eq!(same, block, "a size within the class keeps the object");
    assert_eq!(heap.stats().requested_bytes, 104);
    // SAFETY: live with size 104.
    let bigger = unsafe { Front::reallocate(&heap, same, layout(104, 8), 600) }.unwrap().cast::<u8>();
    // SAFETY: live with size 600.
    let large = unsafe { Front::reallocate(&heap, bigger, layout(600, 8), 5000) }.unwrap().cast::<u8>();
    // SAFETY: the first 100 bytes were kept through both moves.
    let kept = unsafe { core::slice::from_raw_parts(large.as_ptr(), 100) };
    assert!(kept.iter().all(|&b| b == 0xA5));
    assert_eq!(heap.stats().requested_bytes, 5000);
    // SAFETY: live with size 5000, back to a small class.
    let small = unsafe { Front::reallocate(&heap, large, layout(5000, 8), 16) }.unwrap().cast::<u8>();
    // SAFETY: live with size 16.
    unsafe { Front::deallocate(&heap, small, layout(16, 8)) };
    assert_whole_after_drain(&heap);
}

#[test]
fn random_operations_on_several_cpus_keep_blocks_disjoint_and_end_whole() {
    let seed = 0x5EED_CAFE_u64;
    let mut rng = SplitMix(seed);
    let memory = Memory::new(1 << 20);
    let heap = caches(&memory);
    let mut live: Vec<(NonNull<u8>, Layout, u8)> = Vec::new();
    let steps = if cfg!(miri) { 400 } else { 20_000 };
    for step in 0..steps {
        on_cpu((rng.next() % 3) as usize); // index 2 wraps to CPU 0
        if live.is_empty() || rng.next() % 100 < 55 {
            let size = 1 + (rng.next() % 1200) as usize;
            let align = 1 << (rng.next() % 6);
            let l = layout(size, align);
            let Ok(block) = Front::allocate(&heap, l) else { continue };
            let block = block.cast::<u8>();
            assert_eq!(block.as_ptr() as usize % align, 0, "seed {seed:#x} step {step}");
            let tag = (step % 251) as u8;
            // SAFETY: the block holds at least `size` bytes.
            unsafe { block.as_ptr().write_bytes(tag, size) };
            live.push((block, l, tag));
        } else {
            let (block, l, tag) = live.swap_remove((rng.next() as usize) % live.len());
            // SAFETY: live, `l.size()` bytes written with `tag`.
            let bytes = unsafe { core::slice::from_raw_parts(block.as_ptr(), l.size()) };
            // Under Miri, every 61st byte and the last: a byte at a time is slow there.
            let stride = if cfg!(miri) { 61 } else { 1 };
            let overwritten = bytes.iter().step_by(stride).chain(bytes.last()).any(|&b| b != tag);
            assert!(!overwritten, "seed {seed:#x} step {step}: block overwritten");
            // SAFETY: allocated with `l`, freed once.
            unsafe { Front::deallocate(&heap, block, l) };
        }
        if step % 4096 == 0 {
            let stats = heap.stats();
            assert_eq!(stats.live_allocations, live.len(), "seed {seed:#x} step {step}");
            assert_eq!(stats.requested_bytes, live.iter().map(|e| e.1.size()).sum::<usize>());
        }
    }
    for (block, l, _) in live {
        // SAFETY: allocated with `l`, freed once.
        unsafe { Front::deallocate(&heap, block, l) };
    }
    assert_whole_after_drain(&heap);
}

/// The test kit's SplitMix64 (the library cannot depend on the kit), same constants.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[test]
fn the_magazine_filter_finds_every_held_object_and_none_it_gave_back() {
    use super::magazine::Magazine;
    // Addresses 8 bytes apart, as objects of the smallest class lie.
    let mut memory = [0u64; 3 * MAGAZINE_OBJECTS];
    let objects: Vec<NonNull<u8>> = memory.iter_mut().map(|word| NonNull::from(word).cast()).collect();
    let mut magazine = Magazine::EMPTY;
    for round in 0..3 {
        let batch = &objects[round * MAGAZINE_OBJECTS..(round + 1) * MAGAZINE_OBJECTS];
        for (pushed, &object) in batch.iter().enumerate() {
            assert!(!magazine.holds(object), "round {round}: object {pushed} before its push");
            // SAFETY: the magazine starts each round empty and takes one round's `MAGAZINE_OBJECTS`.
            unsafe { magazine.push(object) };
            assert!(magazine.holds(object), "round {round}, {pushed}");
            assert!(magazine.filter_is_exact(), "round {round}, {pushed}");
        }
        // Once, not after every push: quadratic in the magazine's size, it took most of this
        // test's time under Miri.
        assert!(batch.iter().all(|&held| magazine.holds(held)), "round {round}: a pushed object lost");
        // The newest half handed out, the oldest half flushed: none of them is held any more.
        for _ in 0..MAGAZINE_OBJECTS / 2 {
            magazine.pop().unwrap();
        }
        magazine.forget_oldest(MAGAZINE_OBJECTS / 2);
        assert_eq!(magazine.len(), 0);
        assert!(magazine.filter_is_exact(), "round {round}: counts left behind");
        assert!(batch.iter().all(|&gone| !magazine.holds(gone)), "round {round}: a stale filter entry");
    }
}

#[test]
fn objects_one_cpu_frees_reach_another_through_the_depot_which_is_bounded_and_drained() {
    let memory = Memory::new(1 << 20);
    let heap = caches(&memory);
    let l = layout(64, 8);
    let class = class_of(l);
    let half = capacity(class) / 2;
    // CPU 0 allocates, CPU 1 frees: CPU 1's magazine fills and flushes half into the depot.
    let blocks: Vec<_> = (0..4 * half).map(|_| Front::allocate(&heap, l).unwrap()).collect();
    on_cpu(1);
    for block in &blocks {
        // SAFETY: allocated above with `l`, freed once.
        unsafe { Front::deallocate(&heap, block.cast(), l) };
    }
    let depot_batches = heap.depot.depot.lock().batches_of(class);
    assert!(depot_batches >= 1, "a flush went to the depot");
    // CPU 0's refills now come from the depot: the shared heap hands out nothing more.
    on_cpu(0);
    let shared_live = heap.shared().stats().live_allocations;
    let again: Vec<_> = (0..depot_batches * half).map(|_| Front::allocate(&heap, l).unwrap()).collect();
    assert_eq!(heap.shared().stats().live_allocations, shared_live, "refilled from the depot");
    assert_eq!(heap.depot.depot.lock().batches_of(class), 0);
    // SAFETY: allocated above with `l`, freed once each.
    unsafe {
        for block in again {
            Front::deallocate(&heap, block.cast(), l);
        }
    }
    // Flushes beyond the depot's slots go to the shared heap: the depot never holds more than
    // its bound, whatever flows through it.
    let many: Vec<_> =
        (0..(depot::DEPOT_BATCHES + 4) * half).map(|_| Front::allocate(&heap, l).unwrap()).collect();
    on_cpu(1);
    for block in many {
        // SAFETY: allocated above with `l`, freed once.
        unsafe { Front::deallocate(&heap, block.cast(), l) };
    }
    assert!(heap.depot.depot.lock().held().1 <= Caches::MAX_DEPOT_BYTES);
    assert_eq!(
        heap.depot.depot.lock().batches_of(class),
        depot::DEPOT_BATCHES,
        "every slot used, then the shared heap"
    );
    assert_whole_after_drain(&heap);
    assert_eq!(heap.depot.depot.lock().held(), (0, 0), "drain_all empties the depot");
}

#[test]
fn classes_above_the_slab_layer_keep_two_word_objects_and_send_stricter_requests_to_the_shared_front() {
    // Up to the slab layer's largest class, objects keep the class's own alignment (free there).
    let small = class_of(layout(384, 8));
    assert_eq!(object_layout(small), layout(384, 128));
    assert_eq!(cached_class(layout(384, 128)), Some(small));
    // Above it, objects are two-word aligned: a 600-byte request at 8 or 16 is cached in the
    // 640-byte class, one at 32 goes to the shared front.
    let large = class_of(layout(600, 8));
    assert_eq!(object_layout(large), layout(640, 2 * core::mem::size_of::<usize>()));
    assert_eq!(cached_class(layout(600, 16)), Some(large));
    assert_eq!(cached_class(layout(600, 32)), None);
    assert_eq!(cached_class(layout(1025, 8)), None);

    let memory = Memory::new(1 << 20);
    let heap = caches(&memory);
    on_cpu(1);
    for (l, cached) in [(layout(600, 8), true), (layout(600, 32), false), (layout(1000, 1024), false)] {
        let block = Front::allocate(&heap, l).unwrap().cast::<u8>();
        assert_eq!(block.as_ptr().addr() % l.align(), 0, "{l:?}");
        // SAFETY: allocated just above with `l`, freed once.
        unsafe { Front::deallocate(&heap, block, l) };
        let held = heap.cpu_stats(1).unwrap().cached_bytes;
        assert_eq!(held > 0, cached, "{l:?}: {held} bytes cached");
        heap.drain_all();
    }
    assert_whole_after_drain(&heap);
}
