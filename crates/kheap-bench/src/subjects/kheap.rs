//! kheap's heaps. This is the only file that knows kheap's API: every heap is driven through
//! its `GlobalAlloc` front, `LockedHeap<RawSpinlock, H>`, over the arena given with
//! `add_region_raw`.
//!
//! Adding a kheap heap (TLSF, slab, the default `Heap`): one `build` function and one line in
//! [`subjects`].

use kheap::{BuddyHeap, FirstFitHeap, FitPolicy, LockedHeap, RawSpinlock, SlabHeap, TlsfHeap};

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

fn slab_tlsf(arena: &Arena) -> Result<Heap, String> {
    over_arena(SlabHeap::new(TlsfHeap::new()), arena)
}

fn slab_buddy(arena: &Arena) -> Result<Heap, String> {
    over_arena(SlabHeap::new(BuddyHeap::<{ kheap::DEFAULT_MAX_ORDER }>::new()), arena)
}

pub fn subjects() -> Vec<Subject> {
    let kheap = |name, config, build| Subject { name, family: Family::Kheap, config, build, in_arena: true };
    vec![
        kheap("kheap-buddy", "kheap BuddyHeap<DEFAULT_MAX_ORDER>, LockedHeap<RawSpinlock>", buddy),
        kheap("kheap-first-fit", "kheap FirstFitHeap(FitPolicy::First), LockedHeap<RawSpinlock>", first_fit),
        kheap("kheap-best-fit", "kheap FirstFitHeap(FitPolicy::Best), LockedHeap<RawSpinlock>", best_fit),
        kheap("kheap-tlsf", "kheap TlsfHeap, LockedHeap<RawSpinlock>", tlsf),
        kheap("kheap-slab-tlsf", "kheap SlabHeap<TlsfHeap>, LockedHeap<RawSpinlock>", slab_tlsf),
        kheap("kheap-slab-buddy", "kheap SlabHeap<BuddyHeap>, LockedHeap<RawSpinlock>", slab_buddy),
    ]
}
