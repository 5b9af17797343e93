//! Several threads on one shared heap, with frees from another thread: a producer/consumer
//! ring in the spirit of mimalloc-bench's xmalloc-test and larson.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::Instant;

use super::{Metric, Sizes, Workload};
use crate::job::{Ctx, JobError, Metrics};
use crate::rng::Rng;
use crate::subjects::set_cpu;
use crate::timer::measured_loop;

/// Room for the blocks in flight even when one thread finishes early and the blocks handed to it
/// wait in its inbox until the end (up to half the other threads' allocations: 64 MiB ran dry).
const ARENA: usize = 256 << 20;
/// Blocks a thread keeps before freeing its oldest.
const KEEP: usize = 64;
/// Blocks a thread collects for the next thread before handing them over under one lock of the
/// inbox: a hand-over per block would make the inbox lock, not the heap, what is measured.
const HANDOVER: usize = 32;
const OPS_PER_SEC: Metric =
    Metric { key: "mops_per_s", label: "million operations/s, all threads", higher_is_better: true };

struct Block(*mut u8, Layout);

// SAFETY: a block is plain memory of the shared heap; whoever holds it may free it.
unsafe impl Send for Block {}

/// The blocks handed to one thread, and whether any wait. The owner reads the flag (a line
/// that changes only on a hand-over) before the lock, and only tries the lock (looking again
/// 16 calls later if the producer holds it), then swaps buffers; the producer only tries it too
/// (handing over with its next block if the owner holds it): no thread sleeps on an inbox.
/// With a plain lock taken every 16 calls, the hand-overs, not the heaps, set the pace on 2
/// threads: `percpu-floor`, which shares nothing, got 0.9-1.0x its single-thread figure
/// (1.5x with this inbox; 1.75x when no block crosses threads).
#[repr(align(128))]
struct Inbox {
    pending: AtomicBool,
    blocks: Mutex<Vec<Block>>,
}

impl Inbox {
    fn new() -> Self {
        Inbox { pending: AtomicBool::new(false), blocks: Mutex::new(Vec::with_capacity(256)) }
    }

    /// Moves `blocks` into the inbox, unless its owner holds the lock and `wait` is false
    /// (they are then kept for the next try).
    fn hand_over(&self, blocks: &mut Vec<Block>, wait: bool) {
        let mut inbox = match self.blocks.try_lock() {
            Ok(inbox) => inbox,
            Err(_) if wait => self.blocks.lock().expect("inbox"),
            Err(_) => return,
        };
        inbox.append(blocks);
        // Under the lock, so that it cannot be cleared between the append and the store.
        self.pending.store(true, Ordering::Relaxed);
    }

    /// Swaps the waiting blocks with `into` (empty), if the flag says some wait: the buffers
    /// change hands, no block is copied.
    fn take(&self, into: &mut Vec<Block>) {
        debug_assert!(into.is_empty());
        if self.pending.load(Ordering::Relaxed) {
            if let Ok(mut inbox) = self.blocks.try_lock() {
                std::mem::swap(&mut *inbox, into);
                self.pending.store(false, Ordering::Relaxed);
            }
        }
    }
}

/// One thread: allocates small objects; half go to the next thread's inbox (it frees them),
/// half are kept locally (the oldest freed once `KEEP` are held); drains its own inbox.
/// Returns the allocations and frees done, and the allocations refused (not counted as done).
fn worker(heap: &dyn GlobalAlloc, me: usize, inboxes: &[Inbox], allocs: usize, seed: u64) -> (u64, u64) {
    let mut rng = Rng::new(seed);
    let mut kept: VecDeque<Block> = VecDeque::with_capacity(KEEP + 1);
    let mut received = Vec::with_capacity(256);
    let mut outgoing: Vec<Block> = Vec::with_capacity(HANDOVER);
    let next = (me + 1) % inboxes.len();
    let (mut ops, mut refused) = (0u64, 0u64);
    for _ in 0..allocs {
        let layout = Sizes::Small.next(&mut rng);
        // SAFETY: non-zero size.
        let block = unsafe { heap.alloc(layout) };
        if block.is_null() {
            refused += 1;
        } else {
            ops += 1;
            if rng.chance(50) {
                outgoing.push(Block(block, layout));
                if outgoing.len() >= HANDOVER {
                    inboxes[next].hand_over(&mut outgoing, false);
                }
            } else {
                kept.push_back(Block(block, layout));
                if kept.len() > KEEP {
                    let Block(old, old_layout) = kept.pop_front().expect("not empty");
                    // SAFETY: live block of the shared heap with this layout.
                    unsafe { heap.dealloc(old, old_layout) };
                    ops += 1;
                }
            }
        }
        // Every 16 calls (refused ones too, so a thread whose allocations fail still frees).
        if (ops + refused).is_multiple_of(16) {
            inboxes[me].take(&mut received);
            for Block(block, layout) in received.drain(..) {
                // SAFETY: live block of the shared heap (allocated by another thread).
                unsafe { heap.dealloc(block, layout) };
                ops += 1;
            }
        }
    }
    for Block(block, layout) in kept {
        // SAFETY: live block of the shared heap with this layout.
        unsafe { heap.dealloc(block, layout) };
        ops += 1;
    }
    // What is still collected goes to the next thread's inbox (freed after the run).
    inboxes[next].hand_over(&mut outgoing, true);
    (ops, refused)
}

fn run(ctx: &Ctx, threads: usize) -> Result<Metrics, JobError> {
    let heap = ctx.build(ARENA)?;
    let heap: &(dyn GlobalAlloc + Sync) = &*heap;
    let allocs = ctx.scale.pick(2_000_000, 400_000, 2_000, 20_000) / threads;
    let inboxes: Vec<Inbox> = (0..threads).map(|_| Inbox::new()).collect();
    let barrier = Barrier::new(threads + 1);
    let (ops, refused, seconds) = measured_loop(|| {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|me| {
                    let (inboxes, barrier) = (&inboxes, &barrier);
                    let seed = ctx.seed.wrapping_mul(31).wrapping_add(me as u64);
                    scope.spawn(move || {
                        set_cpu(me);
                        barrier.wait();
                        worker(heap, me, inboxes, allocs, seed)
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            let (ops, refused) = handles
                .into_iter()
                .map(|h| h.join().expect("worker panicked"))
                .fold((0, 0), |(ops, refused), (o, r)| (ops + o, refused + r));
            (ops, refused, start.elapsed().as_secs_f64())
        })
    });
    let mut leftover = 0u64;
    for inbox in &inboxes {
        for Block(block, layout) in inbox.blocks.lock().expect("inbox").drain(..) {
            // SAFETY: live block of the shared heap with this layout.
            unsafe { heap.dealloc(block, layout) };
            leftover += 1;
        }
    }
    // Throughput counts what was done: a refused allocation is reported, not credited.
    Ok(vec![
        (OPS_PER_SEC.key, ops as f64 / seconds / 1e6),
        ("failed_allocations", refused as f64),
        ("ops", (ops + refused + leftover) as f64),
    ])
}

pub fn workloads() -> Vec<Workload> {
    [1, 2, 4, 8]
        .into_iter()
        .map(|threads| Workload {
            name: format!("threads_{threads}"),
            title: format!("{threads} thread(s) on one shared heap, cross-thread frees"),
            about: format!(
                "{threads} thread(s) share one heap (and its one lock, where the subject takes the shared \
                 spinlock). Each allocates 2,000,000/{threads} small objects (8..=512 B); half are handed to the next \
                 thread (in batches of 32, one inbox lock each), which frees them (a ring of producer/consumer pairs, as in xmalloc-test), half are kept \
                 and freed oldest-first once 64 are held. Reported: allocations plus frees per second, all threads \
                 together. Thread i stands for CPU i for the per-CPU subjects. The reference `percpu-floor` (per-CPU \
                 stacks of free blocks, nothing shared) is what the hand-overs themselves allow: the ceiling of any \
                 per-CPU design here. Why: kernel objects are often freed on \
                 another CPU than the one that allocated them; one lock for all CPUs collapses (hermit#1984). On \
                 this 2-core machine, 4 and 8 threads oversubscribe the cores: a preempted lock holder stalls spinners."
            ),
            source: "crates/kheap-bench/src/workloads/threads.rs",
            metric: OPS_PER_SEC,
            columns: vec![OPS_PER_SEC.key, "failed_allocations"],
            // Heaps that collapse under oversubscription (one spin lock, an O(n) search) take
            // minutes at 8 threads.
            timeout_secs: 120,
            run: Box::new(move |ctx| run(ctx, threads)),
        })
        .collect()
}
