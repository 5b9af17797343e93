//! kheap's heaps. This is the only file that knows kheap's API: every heap is driven through
//! its `GlobalAlloc` front, `LockedHeap<RawSpinlock, H>`, over the arena given with
//! `add_region_raw`.
//!
//! Adding a kheap heap: one `build` function and one line in [`subjects`].

use kheap::{
    BuddyHeap, FirstFitHeap, FitPolicy, GuardLevel, Guarded, Heap as DefaultHeap, LockedHeap, PerCpu,
    RawSpinlock, SlabHeap, TlsfHeap,
};
use kheap_testkit::ThreadCpu;

use super::{Family, Heap, Subject};
use crate::arena::Arena;

fn over_arena<H: kheap::RawHeap + Send + 'static>(heap: H, arena: &Arena) -> Result<Heap, String> {
    let heap = Box::new(LockedHeap::<RawSpinlock, H>::new(heap));
    // SAFETY: the arena is valid for reads and writes while the job runs and is handed to
    // this heap alone until the heap is dropped (one heap per arena at a time).
    unsafe { heap.add_region_raw(arena.start, arena.len) }.map_err(|e| format!("arena refused: {e:?}"))?;
    Ok(heap)
}

fn buddy(arena: &Arena) -> Result<Heap, String> {
    over_arena(BuddyHeap::<{ kheap::DEFAULT_MAX_ORDER }>::new(), arena)
}

fn first_fit(arena: &Arena) -> Result<Heap, String> {
    over_arena(FirstFitHeap::new(FitPolicy::First), arena)
}

fn best_fit(arena: &Arena) -> Result<Heap, String> {
    over_arena(FirstFitHeap::new(FitPolicy::Best), arena)
}

fn tlsf(arena: &Arena) -> Result<Heap, String> {
    over_arena(TlsfHeap::new(), arena)
}

fn tlsf_hardened(arena: &Arena) -> Result<Heap, String> {
    over_arena(TlsfHeap::hardened(), arena)
}

fn default_heap(arena: &Arena) -> Result<Heap, String> {
    over_arena(DefaultHeap::new(), arena)
}

fn slab_tlsf(arena: &Arena) -> Result<Heap, String> {
    over_arena(SlabHeap::new(TlsfHeap::new()), arena)
}

fn slab_buddy(arena: &Arena) -> Result<Heap, String> {
    over_arena(SlabHeap::new(BuddyHeap::<{ kheap::DEFAULT_MAX_ORDER }>::new()), arena)
}

fn guarded_checks(arena: &Arena) -> Result<Heap, String> {
    over_arena(Guarded::new(TlsfHeap::new(), GuardLevel::Checks), arena)
}

fn guarded_red_zones(arena: &Arena) -> Result<Heap, String> {
    over_arena(Guarded::new(TlsfHeap::new(), GuardLevel::RedZones), arena)
}

fn guarded_poison(arena: &Arena) -> Result<Heap, String> {
    over_arena(Guarded::new(TlsfHeap::new(), GuardLevel::Poison), arena)
}

/// CPUs of the per-CPU subject: one per thread of the largest thread workload.
const PER_CPU_CPUS: usize = 8;

/// Per-CPU magazines (thread `i` stands for CPU `i`) in front of the default heap behind the
/// shared lock.
fn per_cpu(arena: &Arena) -> Result<Heap, String> {
    let heap = Box::new(PerCpu::<_, ThreadCpu, PER_CPU_CPUS>::new(LockedHeap::<RawSpinlock, _>::new(
        DefaultHeap::new(),
    )));
    // SAFETY: as in `over_arena`: the arena is this heap's alone while the job runs.
    unsafe { heap.shared().add_region_raw(arena.start, arena.len) }
        .map_err(|e| format!("arena refused: {e:?}"))?;
    Ok(heap)
}

pub fn subjects() -> Vec<Subject> {
    let kheap = |name, config, build| Subject {
        name,
        family: Family::Kheap,
        config,
        build,
        in_arena: true,
        only: None,
    };
    vec![
        kheap("kheap-heap", "kheap Heap (the default: SlabHeap<TlsfHeap>), LockedHeap<RawSpinlock>", default_heap),
        kheap("kheap-buddy", "kheap BuddyHeap<DEFAULT_MAX_ORDER>, LockedHeap<RawSpinlock>", buddy),
        kheap("kheap-first-fit", "kheap FirstFitHeap(FitPolicy::First), LockedHeap<RawSpinlock>", first_fit),
        kheap("kheap-best-fit", "kheap FirstFitHeap(FitPolicy::Best), LockedHeap<RawSpinlock>", best_fit),
        kheap("kheap-tlsf", "kheap TlsfHeap, LockedHeap<RawSpinlock>", tlsf),
        // Links and size tags checked before they are followed: its cost against `kheap-tlsf`.
        kheap("kheap-tlsf-hardened", "kheap TlsfHeap::hardened(), LockedHeap<RawSpinlock>", tlsf_hardened),
        kheap("kheap-slab-tlsf", "kheap SlabHeap<TlsfHeap>, LockedHeap<RawSpinlock>", slab_tlsf),
        kheap("kheap-slab-buddy", "kheap SlabHeap<BuddyHeap>, LockedHeap<RawSpinlock>", slab_buddy),
        // The debug mode at each level, over TLSF: its cost against `kheap-tlsf`.
        kheap(
            "kheap-guarded-checks",
            "kheap Guarded(TlsfHeap, GuardLevel::Checks), LockedHeap<RawSpinlock>",
            guarded_checks,
        ),
        kheap(
            "kheap-guarded-redzones",
            "kheap Guarded(TlsfHeap, GuardLevel::RedZones), LockedHeap<RawSpinlock>",
            guarded_red_zones,
        ),
        kheap(
            "kheap-guarded-poison",
            "kheap Guarded(TlsfHeap, GuardLevel::Poison), LockedHeap<RawSpinlock>",
            guarded_poison,
        ),
        kheap(
            "kheap-percpu",
            "kheap PerCpu<LockedHeap<RawSpinlock, Heap>, ThreadCpu, 8>: per-CPU magazines and a depot over the default heap (thread i = CPU i)",
            per_cpu,
        ),
    ]
}
