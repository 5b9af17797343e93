//! All harts allocate and free through kheap's per-CPU front (`PerCpu`, hart id from `tp`) over
//! one shared default heap, freeing each other's blocks; afterwards, once every hart's cache is
//! drained, every byte must be back. Prints what each hart's cache did.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use kheap::{CpuId, Front, Heap, LockedHeap, PerCpu, RawIrqSpinlock, RiscvSupervisorInterrupts, StaticArena};

use super::{ensure, ensure_eq, TestResult};
use crate::config::SEED;
use crate::entry::MAX_HARTS;
use crate::harts;
use crate::rng::Rng;

/// Steps each hart takes.
const STEPS: usize = 4000;
/// Blocks each hart keeps at most.
const KEEP: usize = 48;
/// Blocks the pool between the harts holds at most.
const POOL_CAPACITY: usize = 256;

/// The hart id, which `entry.rs` puts in `tp` before any Rust code runs on a hart.
struct Hart;

impl CpuId for Hart {
    type Interrupts = RiscvSupervisorInterrupts;

    #[inline]
    fn current() -> usize {
        let id: usize;
        // SAFETY: reads a register; touches no memory.
        unsafe { core::arch::asm!("mv {}, tp", out(reg) id, options(nomem, nostack, preserves_flags)) };
        id
    }
}

static ARENA: StaticArena<{ 1 << 20 }> = StaticArena::new();
type Shared = LockedHeap<RawIrqSpinlock<RiscvSupervisorInterrupts>, Heap>;
/// Per-hart magazines in front of the default heap over its own 1 MiB arena.
static CACHES: PerCpu<Shared, Hart, MAX_HARTS> =
    PerCpu::new(LockedHeap::new(Heap::new()).with_source(&ARENA));

/// A block of `CACHES` on its way between harts, every byte holding its tag.
struct Block {
    ptr: NonNull<u8>,
    layout: Layout,
    owner: usize,
}

// SAFETY: a block is plain memory of the shared heap; whichever hart holds it may use and free it.
unsafe impl Send for Block {}

/// At most `N` blocks, held in place. The stress keeps its blocks here rather than in a `Vec`
/// so that no hart touches the global heap while the boot hart's timer ticks: the tick handler
/// takes a held global lock for a lock that does not mask interrupts (`timer::on_interrupt`),
/// and on another hart a held lock is only busy, not a deadlock.
struct Blocks<const N: usize> {
    /// `slots[..len]` are `Some`, the rest `None`.
    slots: [Option<Block>; N],
    len: usize,
}

impl<const N: usize> Blocks<N> {
    const fn new() -> Self {
        Self { slots: [const { None }; N], len: 0 }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `block`, or hands it back when all `N` slots are taken.
    fn push(&mut self, block: Block) -> Result<(), Block> {
        if self.len == N {
            return Err(block);
        }
        self.slots[self.len] = Some(block);
        self.len += 1;
        Ok(())
    }

    fn pop(&mut self) -> Option<Block> {
        self.len = self.len.checked_sub(1)?;
        self.slots[self.len].take()
    }

    /// Removes the block at `index`, which must be below `len()`; the last one takes its place.
    fn swap_remove(&mut self, index: usize) -> Block {
        self.slots.swap(index, self.len - 1);
        self.pop().expect("swap_remove on an empty Blocks")
    }
}

impl Block {
    fn tag(&self) -> u8 {
        (self.owner * 67 + self.layout.size()) as u8
    }

    /// Checks the bytes (counting a damaged block in `CORRUPT`), then frees the block through
    /// the calling hart's cache.
    fn free(self) {
        let bytes = self.ptr.as_ptr();
        // SAFETY: the block is live, `layout.size()` bytes long and was filled with its tag.
        let intact = unsafe { core::slice::from_raw_parts(bytes, self.layout.size()) }
            .iter()
            .all(|&b| b == self.tag());
        if !intact {
            CORRUPT.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: allocated from `CACHES` with this layout, freed once.
        unsafe { CACHES.dealloc(bytes, self.layout) };
    }
}

/// Blocks on their way between harts; a hart that finds it full frees its block itself.
static POOL: spin::Mutex<Blocks<POOL_CAPACITY>> = spin::Mutex::new(Blocks::new());
static READY: AtomicUsize = AtomicUsize::new(0);
static EXPECTED: AtomicUsize = AtomicUsize::new(0);
static CROSS_FREES: AtomicUsize = AtomicUsize::new(0);
/// Timer-handler allocations through the boot hart's cache, and those that failed.
static HANDLER_ROUNDS: AtomicUsize = AtomicUsize::new(0);
static HANDLER_FAILURES: AtomicUsize = AtomicUsize::new(0);
static CORRUPT: AtomicUsize = AtomicUsize::new(0);
static WRONG_HART: AtomicUsize = AtomicUsize::new(0);

pub fn harts_share_per_cpu_caches() -> TestResult {
    let others = harts::parked();
    ensure!(others > 0, "no other hart is running (QEMU runs with -smp 4)");
    for counter in [&READY, &CROSS_FREES, &CORRUPT, &WRONG_HART, &HANDLER_ROUNDS, &HANDLER_FAILURES] {
        counter.store(0, Ordering::Relaxed);
    }
    EXPECTED.store(others + 1, Ordering::Relaxed);
    let tick_failures_before = crate::timer::HANDLER_FAILURES.load(Ordering::Relaxed);
    let started = harts::run_on_others(stress);
    // The boot hart's timer interrupt allocates through the same cache its stress uses: the
    // cache lock masks interrupts, so the handler never finds it held by the code it
    // interrupted on this hart.
    crate::timer::THROUGH_CACHES.store(true, Ordering::Relaxed);
    crate::timer::start();
    stress(crate::tests::boot_hart());
    // A fast stress may end before the first tick: keep using the cache until the handler has
    // allocated through it at least once (or a hundred tick intervals have passed: ten were
    // once not enough for QEMU on a loaded host, which runs the guest's timer late).
    let deadline = crate::timer::now() + 100 * crate::config::TIMER_INTERVAL;
    let small = Layout::new::<[u64; 4]>();
    while HANDLER_ROUNDS.load(Ordering::Relaxed) + HANDLER_FAILURES.load(Ordering::Relaxed) == 0
        && crate::timer::now() < deadline
    {
        // SAFETY: non-zero size; freed at once with the same layout (null is never freed).
        unsafe {
            let block = CACHES.alloc(small);
            if !block.is_null() {
                CACHES.dealloc(block, small);
            }
        }
    }
    crate::timer::stop();
    crate::timer::THROUGH_CACHES.store(false, Ordering::Relaxed);
    harts::join_others(started);
    let mut leftovers = core::mem::replace(&mut *POOL.lock(), Blocks::new());
    let in_flight = leftovers.len();
    while let Some(block) = leftovers.pop() {
        block.free();
    }
    let cached = CACHES.cached_bytes();
    for hart in 0..MAX_HARTS {
        let s = CACHES.cpu_stats(hart).unwrap_or_default();
        if s.allocations + s.frees > 0 {
            println!(
                "    hart {hart}: {} allocations, {} frees from its cache; {} refills, {} flushes (one lock each); {} B cached",
                s.allocations, s.frees, s.refills, s.flushes, s.cached_bytes
            );
        }
    }
    println!(
        "    timer handler on hart {}: {} allocations through its cache during the stress, {} failed",
        crate::tests::boot_hart(),
        HANDLER_ROUNDS.load(Ordering::Relaxed),
        HANDLER_FAILURES.load(Ordering::Relaxed)
    );
    let drained = CACHES.drain_all();
    let stats = CACHES.stats();
    println!(
        "    {} harts x {STEPS} steps: {} cross-hart frees, {in_flight} left in the pool, {} bypasses; \
         {cached} B cached (bound {} B per hart + {} B depot), {drained} objects drained",
        started + 1,
        CROSS_FREES.load(Ordering::Relaxed),
        CACHES.bypasses(),
        PerCpu::<Shared, Hart, MAX_HARTS>::MAX_CACHED_BYTES_PER_CPU,
        PerCpu::<Shared, Hart, MAX_HARTS>::MAX_DEPOT_BYTES,
    );
    ensure!(
        cached
            <= MAX_HARTS * PerCpu::<Shared, Hart, MAX_HARTS>::MAX_CACHED_BYTES_PER_CPU
                + PerCpu::<Shared, Hart, MAX_HARTS>::MAX_DEPOT_BYTES,
        "the caches held more than their stated bound"
    );
    ensure_eq!(CORRUPT.load(Ordering::Relaxed), 0);
    ensure_eq!(WRONG_HART.load(Ordering::Relaxed), 0);
    ensure!(CROSS_FREES.load(Ordering::Relaxed) > 0, "no block was freed by another hart");
    // A failed tick stops the timer, so name it rather than report the rounds it prevented.
    ensure_eq!(crate::timer::HANDLER_FAILURES.load(Ordering::Relaxed), tick_failures_before);
    ensure!(
        HANDLER_ROUNDS.load(Ordering::Relaxed) > 0,
        "the timer handler never allocated through the cache"
    );
    ensure_eq!(HANDLER_FAILURES.load(Ordering::Relaxed), 0);
    ensure_eq!(stats.live_allocations, 0);
    ensure_eq!(stats.requested_bytes, 0);
    ensure_eq!(stats.free_bytes, stats.total_bytes);
    ensure_eq!(CACHES.cached_bytes(), 0);
    CACHES.shared().check_invariants().map_err(|e| alloc::format!("shared heap: {e}"))?;
    Ok(())
}

fn stress(hart: usize) {
    if Hart::current() != hart {
        WRONG_HART.fetch_add(1, Ordering::Relaxed);
    }
    READY.fetch_add(1, Ordering::AcqRel);
    while READY.load(Ordering::Acquire) < EXPECTED.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    let mut rng = Rng::new(SEED ^ hart as u64, "per_cpu");
    // Not a `Vec`: see `Blocks`.
    let mut mine = Blocks::<KEEP>::new();
    for _ in 0..STEPS {
        match rng.below(10) {
            0..4 if mine.len() < KEEP => {
                let layout = Layout::from_size_align(rng.range(1, 1500), 1 << rng.below(4)).unwrap();
                let Ok(ptr) = Front::allocate(&CACHES, layout) else { continue };
                let block = Block { ptr: ptr.cast::<u8>(), layout, owner: hart };
                // SAFETY: the block holds at least `layout.size()` writable bytes.
                unsafe { block.ptr.as_ptr().write_bytes(block.tag(), layout.size()) };
                if mine.push(block).is_err() {
                    unreachable!("this arm runs only below {KEEP} blocks kept");
                }
            }
            4..6 if !mine.is_empty() => {
                let block = mine.swap_remove(rng.below(mine.len()));
                let refused = POOL.lock().push(block);
                if let Err(block) = refused {
                    block.free();
                }
            }
            6..8 => {
                let taken = POOL.lock().pop();
                if let Some(block) = taken {
                    if block.owner != hart {
                        CROSS_FREES.fetch_add(1, Ordering::Relaxed);
                    }
                    block.free();
                }
            }
            _ if !mine.is_empty() => {
                let block = mine.swap_remove(rng.below(mine.len()));
                block.free();
            }
            _ => {}
        }
    }
    while let Some(block) = mine.pop() {
        block.free();
    }
}

/// One timer interrupt's allocation through the interrupted hart's cache: allocates, fills,
/// checks and frees a block; `false` if any step failed. Called by `timer::on_interrupt`
/// while `THROUGH_CACHES` is set.
pub fn handler_round(tick: usize) -> bool {
    let layout = Layout::from_size_align(16 + tick % 240, 8).unwrap();
    let fine = match Front::allocate(&CACHES, layout) {
        Ok(block) => {
            let bytes = block.cast::<u8>().as_ptr();
            // SAFETY: the block holds at least `layout.size()` writable bytes; freed once below
            // with `layout`.
            unsafe {
                bytes.write_bytes(tick as u8, layout.size());
                let intact =
                    core::slice::from_raw_parts(bytes, layout.size()).iter().all(|&b| b == tick as u8);
                CACHES.dealloc(bytes, layout);
                intact
            }
        }
        Err(_) => false,
    };
    let counter = if fine { &HANDLER_ROUNDS } else { &HANDLER_FAILURES };
    counter.fetch_add(1, Ordering::Relaxed);
    fine
}
