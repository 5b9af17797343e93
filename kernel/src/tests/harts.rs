//! All harts allocate and free on the shared global heap at once, and free each other's
//! blocks through a shared pool; afterwards every byte must be back.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::{ensure, ensure_eq, TestResult};
use crate::config::SEED;
use crate::rng::Rng;
use crate::{harts, heap};

/// Steps each hart takes.
const STEPS: usize = 3000;
/// Blocks each hart keeps at most.
const KEEP: usize = 48;

/// A block tagged with the hart that allocated it; every byte holds the tag.
struct Tagged {
    owner: usize,
    bytes: Box<[u8]>,
}

impl Tagged {
    fn new(owner: usize, len: usize) -> Self {
        Tagged { owner, bytes: alloc::vec![tag(owner, len); len].into_boxed_slice() }
    }

    fn intact(&self) -> bool {
        let fill = tag(self.owner, self.bytes.len());
        self.bytes.iter().all(|&b| b == fill)
    }
}

fn tag(owner: usize, len: usize) -> u8 {
    (owner * 67 + len) as u8
}

/// Blocks on their way from one hart to another.
static POOL: spin::Mutex<Vec<Tagged>> = spin::Mutex::new(Vec::new());
/// Harts that reached the start line.
static READY: AtomicUsize = AtomicUsize::new(0);
/// Harts expected at the start line.
static EXPECTED: AtomicUsize = AtomicUsize::new(0);
/// Blocks freed by a hart other than their owner.
static CROSS_FREES: AtomicUsize = AtomicUsize::new(0);
/// Corrupted blocks seen.
static CORRUPT: AtomicUsize = AtomicUsize::new(0);
/// Bit `i` set once hart `i` has finished its steps.
static FINISHED: AtomicUsize = AtomicUsize::new(0);

pub fn harts_share_the_heap() -> TestResult {
    let others = harts::parked();
    ensure!(others > 0, "no other hart is running (QEMU runs with -smp 4)");
    for counter in [&READY, &CROSS_FREES, &CORRUPT, &FINISHED] {
        counter.store(0, Ordering::Relaxed);
    }
    EXPECTED.store(others + 1, Ordering::Relaxed);
    let before = heap::settled_stats();
    let started = harts::run_on_others(stress);
    stress(crate::tests::boot_hart());
    harts::join_others(started);
    // Free what is still in flight, and the pool's own buffer, before measuring.
    let leftovers = core::mem::take(&mut *POOL.lock());
    let in_flight = leftovers.len();
    for block in &leftovers {
        if !block.intact() {
            CORRUPT.fetch_add(1, Ordering::Relaxed);
        }
    }
    drop(leftovers);
    let after = heap::settled_stats();
    let cross = CROSS_FREES.load(Ordering::Relaxed);
    println!(
        "    {} harts x {STEPS} steps: {cross} blocks freed by another hart, {in_flight} left in the pool",
        started + 1
    );
    println!(
        "    free bytes before {} after {}; largest free block before {} after {}",
        before.free_bytes, after.free_bytes, before.largest_free_block, after.largest_free_block
    );
    ensure_eq!(started, others);
    ensure_eq!(FINISHED.load(Ordering::Relaxed).count_ones() as usize, started + 1);
    ensure_eq!(CORRUPT.load(Ordering::Relaxed), 0);
    ensure!(cross > 0, "no block was freed by a hart other than its owner");
    ensure_eq!(after.free_bytes, before.free_bytes);
    ensure_eq!(after.largest_free_block, before.largest_free_block);
    ensure_eq!(after.live_allocations, before.live_allocations);
    ensure_eq!(after.total_bytes, before.total_bytes);
    Ok(())
}

/// One hart's share: keep up to `KEEP` blocks, hand some to the pool, free some from it.
fn stress(hart: usize) {
    READY.fetch_add(1, Ordering::AcqRel);
    while READY.load(Ordering::Acquire) < EXPECTED.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    let mut rng = Rng::new(SEED ^ hart as u64, "harts");
    let mut mine: Vec<Tagged> = Vec::with_capacity(KEEP);
    for _ in 0..STEPS {
        match rng.below(10) {
            0..4 if mine.len() < KEEP => mine.push(Tagged::new(hart, rng.range(1, 2048))),
            4..6 if !mine.is_empty() => {
                let block = mine.swap_remove(rng.below(mine.len()));
                POOL.lock().push(block);
            }
            6..8 => {
                let taken = POOL.lock().pop();
                if let Some(block) = taken {
                    if !block.intact() {
                        CORRUPT.fetch_add(1, Ordering::Relaxed);
                    }
                    if block.owner != hart {
                        CROSS_FREES.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(block);
                }
            }
            _ if !mine.is_empty() => {
                let block = mine.swap_remove(rng.below(mine.len()));
                if !block.intact() {
                    CORRUPT.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }
    for block in &mine {
        if !block.intact() {
            CORRUPT.fetch_add(1, Ordering::Relaxed);
        }
    }
    drop(mine);
    FINISHED.fetch_or(1 << hart, Ordering::Release);
}
