//! One allocation workload for every kheap algorithm, on a private arena: the algorithms test
//! checks it, the report times it.

use alloc::format;
use alloc::string::String;
use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use kheap::{BuddyHeap, Counted, FirstFitHeap, FitPolicy, Heap, RawHeap, SlabHeap, TlsfHeap};

use crate::rng::Rng;
use crate::timer::now;

/// Bytes of the arena each algorithm gets.
pub const ARENA_SIZE: usize = 512 * 1024;

#[repr(C, align(4096))]
struct Arena([u8; ARENA_SIZE]);

/// One arena in `.bss`, lent to one heap at a time (see [`with_arena`]).
static mut ARENA: Arena = Arena([0; ARENA_SIZE]);
/// Set while a heap owns [`ARENA`].
static ARENA_LENT: AtomicBool = AtomicBool::new(false);

/// The algorithms kheap offers, in the order the console lists them.
pub const ALGORITHMS: [(&str, Algorithm); 8] = [
    ("Heap (default)", Algorithm::Default),
    ("TlsfHeap", Algorithm::Tlsf),
    ("SlabHeap<BuddyHeap>", Algorithm::SlabBuddy),
    ("BuddyHeap", Algorithm::Buddy),
    ("FirstFitHeap(First)", Algorithm::Fit(FitPolicy::First)),
    ("FirstFitHeap(Next)", Algorithm::Fit(FitPolicy::Next)),
    ("FirstFitHeap(Best)", Algorithm::Fit(FitPolicy::Best)),
    ("FirstFitHeap(Worst)", Algorithm::Fit(FitPolicy::Worst)),
];

/// An algorithm to build a heap of.
#[derive(Clone, Copy)]
pub enum Algorithm {
    /// The default `Heap` (slabs over TLSF).
    Default,
    /// `TlsfHeap`.
    Tlsf,
    /// `SlabHeap` over `BuddyHeap`.
    SlabBuddy,
    /// `BuddyHeap`.
    Buddy,
    /// `FirstFitHeap` with a policy.
    Fit(FitPolicy),
}

/// What one run did, and how long its calls took in `time` ticks.
#[derive(Clone, Copy, Default)]
pub struct Outcome {
    pub allocations: usize,
    pub frees: usize,
    pub refused: usize,
    pub allocate_ticks: u64,
    pub free_ticks: u64,
}

/// Live blocks the workload keeps at most.
const SLOTS: usize = 128;

/// Runs `ops` steps on a fresh heap of `algorithm` over the arena, seeded by `seed`.
///
/// Each step picks a slot: an empty one gets a block of a random size (mostly small, some up
/// to 32 KiB) and alignment (up to 4 KiB), filled with a pattern; a full one has its pattern
/// checked and is freed. Invariants are walked every 256 steps. At the end every block is
/// freed and the heap must be back to its starting state.
pub fn run(algorithm: Algorithm, seed: u64, ops: usize) -> Result<Outcome, String> {
    with_arena(|arena| match algorithm {
        // Algorithms keep no caller statistics; the `Counted` layer does, as in `LockedHeap`.
        Algorithm::Default => run_on(&mut Counted::new(Heap::new()), arena, seed, ops),
        Algorithm::Tlsf => run_on(&mut Counted::new(TlsfHeap::new()), arena, seed, ops),
        Algorithm::SlabBuddy => {
            run_on(&mut Counted::new(SlabHeap::new(BuddyHeap::<32>::with_orders())), arena, seed, ops)
        }
        Algorithm::Buddy => run_on(&mut Counted::new(BuddyHeap::<32>::with_orders()), arena, seed, ops),
        Algorithm::Fit(policy) => run_on(&mut Counted::new(FirstFitHeap::new(policy)), arena, seed, ops),
    })
}

/// Lends the arena to `f` for the duration of the call.
fn with_arena<T>(f: impl FnOnce(NonNull<[u8]>) -> T) -> T {
    assert!(!ARENA_LENT.swap(true, Ordering::Acquire), "the workload arena is already lent");
    let start = NonNull::new(core::ptr::addr_of_mut!(ARENA).cast::<u8>()).expect("statics are not null");
    let result = f(NonNull::slice_from_raw_parts(start, ARENA_SIZE));
    ARENA_LENT.store(false, Ordering::Release);
    result
}

fn run_on<H: RawHeap>(
    heap: &mut Counted<H>,
    arena: NonNull<[u8]>,
    seed: u64,
    ops: usize,
) -> Result<Outcome, String> {
    // SAFETY: `with_arena` lends the arena to one caller at a time and only for the call, the
    // heap is dropped before `run_on` returns, and nothing else touches ARENA meanwhile.
    let usable = unsafe { heap.add_region(arena) }.map_err(|e| format!("arena refused: {e}"))?;
    let start = heap.stats();
    if start.total_bytes != usable || start.free_bytes != usable {
        return Err(format!(
            "fresh heap: total {} free {}, add_region said {usable}",
            start.total_bytes, start.free_bytes
        ));
    }
    let mut rng = Rng::new(seed, "workload");
    let mut slots: [Option<(NonNull<u8>, Layout, u8)>; SLOTS] = [None; SLOTS];
    let mut outcome = Outcome::default();
    for step in 0..ops {
        let slot = rng.below(SLOTS);
        match slots[slot] {
            None => {
                let size = match rng.below(100) {
                    0..70 => rng.range(1, 256),
                    70..95 => rng.range(256, 4096),
                    _ => rng.range(4096, 32 * 1024),
                };
                let align = [8, 8, 8, 16, 64, 4096][rng.below(6)];
                let layout = Layout::from_size_align(size, align).map_err(|e| format!("{e}"))?;
                let before = now();
                let block = heap.allocate(layout);
                outcome.allocate_ticks += now() - before;
                match block {
                    Ok(block) => {
                        if block.len() < size {
                            return Err(format!("step {step}: {layout:?} got only {} bytes", block.len()));
                        }
                        let block = block.cast::<u8>();
                        if block.as_ptr().addr() % align != 0 {
                            return Err(format!("step {step}: {layout:?} got misaligned {block:p}"));
                        }
                        let fill = rng.next_u64() as u8;
                        // SAFETY: the heap promises at least `size` writable bytes at `block`
                        // that no other live block overlaps.
                        unsafe { block.as_ptr().write_bytes(fill, size) };
                        slots[slot] = Some((block, layout, fill));
                        outcome.allocations += 1;
                    }
                    Err(_) => outcome.refused += 1,
                }
            }
            Some((block, layout, fill)) => {
                check_fill(block, layout, fill).map_err(|e| format!("step {step}: {e}"))?;
                let before = now();
                // SAFETY: `block` is a live allocation of this heap made with `layout`.
                let freed = unsafe { heap.deallocate(block, layout) };
                outcome.free_ticks += now() - before;
                // The heap refuses a misuse it detects: here that would be a bug in the heap.
                freed.map_err(|misuse| format!("step {step}: {misuse}"))?;
                slots[slot] = None;
                outcome.frees += 1;
            }
        }
        if step % 256 == 255 {
            heap.check_invariants().map_err(|e| format!("step {step}: {e}"))?;
        }
    }
    for (block, layout, fill) in slots.iter_mut().filter_map(Option::take) {
        check_fill(block, layout, fill)?;
        // SAFETY: as above; `take` empties the slot, so it is freed once.
        unsafe { heap.deallocate(block, layout) }.map_err(|misuse| format!("at the end: {misuse}"))?;
        outcome.frees += 1;
    }
    // A layer's cached spare slabs go back first: the heap is then as it started.
    heap.trim();
    heap.check_invariants().map_err(|e| format!("at the end: {e}"))?;
    let end = heap.stats();
    if end.allocated_bytes != 0 || end.live_allocations != 0 || end.free_bytes != start.free_bytes {
        return Err(format!("memory did not all return: {end:?}, started with {start:?}"));
    }
    if end.largest_free_block != start.largest_free_block {
        return Err(format!(
            "largest free block {} after, {} before: free memory did not merge back",
            end.largest_free_block, start.largest_free_block
        ));
    }
    if outcome.allocations != outcome.frees {
        return Err(format!("{} allocations but {} frees", outcome.allocations, outcome.frees));
    }
    Ok(outcome)
}

/// Checks that a block still holds the byte it was filled with.
fn check_fill(block: NonNull<u8>, layout: Layout, fill: u8) -> Result<(), String> {
    // SAFETY: the block is live with `layout.size()` bytes, all written with `fill`.
    let bytes = unsafe { core::slice::from_raw_parts(block.as_ptr(), layout.size()) };
    match bytes.iter().position(|&b| b != fill) {
        None => Ok(()),
        Some(at) => {
            Err(format!("block {block:p} ({layout:?}) byte {at} is {:#x}, wrote {fill:#x}", bytes[at]))
        }
    }
}
