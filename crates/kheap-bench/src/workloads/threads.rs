//! Several threads on one shared heap, with frees from another thread: a producer/consumer
//! ring in the spirit of mimalloc-bench's xmalloc-test and larson.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Metric, Sizes, Workload};
use crate::job::{Ctx, JobError, Metrics};
use crate::rng::Rng;
use crate::subjects::set_cpu;
use crate::timer::{measured_loop, Budget};

/// Room for the blocks in flight: at most `MAX_WAITING` per inbox (and a thread's kept and
/// outgoing blocks), 512 bytes each at most, for 8 threads: 128 MiB and change.
const ARENA: usize = 256 << 20;
/// Blocks a thread keeps before freeing its oldest.
const KEEP: usize = 64;
/// Blocks a thread collects for the next thread before handing them over under one lock of the
/// inbox: a hand-over per block would make the inbox lock, not the heap, what is measured.
const HANDOVER: usize = 32;
/// Blocks an inbox holds at most: a thread whose consumer lags this far behind (descheduled:
/// 4 and 8 threads share 2 cores) frees what it would hand over itself, so a timed run cannot
/// pile up blocks without bound.
const MAX_WAITING: usize = 32_768;
/// How long every thread runs in a full run (a quarter of it in a quick one). Long against the
/// few milliseconds a thread may wait for a core at the start line (a fixed count of
/// allocations per thread let one thread start late and finish late, alone and handing over
/// to a thread that no longer frees, for up to a quarter of the run).
const RUN_FOR: Duration = Duration::from_millis(250);
/// Allocations of all threads together when instructions are counted (and a twentieth for the
/// smoke run): a fixed count, the same on every machine.
const COUNTED_ALLOCATIONS: u64 = 20_000;
const OPS_PER_SEC: Metric =
    Metric { key: "mops_per_s", label: "million operations/s, all threads", higher_is_better: true };

/// Invariant: a live block of the run's shared heap allocated with this layout, made only from
/// a successful allocation and owned by one holder (a thread's lists or an inbox) until freed.
struct Block(*mut u8, Layout);

// SAFETY: a block is plain memory of the shared heap; whoever holds it may free it.
unsafe impl Send for Block {}

/// The blocks handed to one thread, and how many wait. The owner reads the count (a line that
/// changes only on a hand-over) before the lock, and only tries the lock (looking again 16
/// calls later if the producer holds it), then swaps buffers; the producer only tries it too
/// (handing over with its next block if the owner holds it): no thread sleeps on an inbox.
/// With a plain lock taken every 16 calls, the hand-overs, not the heaps, set the pace on 2
/// threads: `percpu-floor`, which shares nothing, got 0.9-1.0x its single-thread figure
/// (1.3-1.5x with this inbox, 1.56-1.74x once the threads also ran for a time from one start
/// line).
#[repr(align(128))]
struct Inbox {
    waiting: AtomicUsize,
    blocks: Mutex<Vec<Block>>,
}

impl Inbox {
    fn new() -> Self {
        Inbox { waiting: AtomicUsize::new(0), blocks: Mutex::new(Vec::with_capacity(256)) }
    }

    /// Whether the inbox is as full as it may get (its owner lags behind).
    fn full(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) >= MAX_WAITING
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
        self.waiting.store(inbox.len(), Ordering::Relaxed);
    }

    /// Swaps the waiting blocks with `into` (empty), if the count says some wait: the buffers
    /// change hands, no block is copied.
    fn take(&self, into: &mut Vec<Block>) {
        debug_assert!(into.is_empty());
        if self.waiting.load(Ordering::Relaxed) > 0 {
            if let Ok(mut inbox) = self.blocks.try_lock() {
                std::mem::swap(&mut *inbox, into);
                self.waiting.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// What the threads of one run share: the inboxes, the start line and the stop flag.
struct Ring {
    inboxes: Vec<Inbox>,
    /// Threads at the start line.
    ready: AtomicUsize,
    /// Raised once every thread is at the start line.
    go: AtomicBool,
    /// Raised when a timed run is over.
    stop: AtomicBool,
}

/// Frees `blocks` (live blocks of the shared heap with their layouts); returns how many.
fn free_all(heap: &dyn GlobalAlloc, blocks: impl IntoIterator<Item = Block>) -> u64 {
    let mut freed = 0;
    for Block(block, layout) in blocks {
        // SAFETY: the `Block` invariant: live, of this heap, with this layout, and given up here.
        unsafe { heap.dealloc(block, layout) };
        freed += 1;
    }
    freed
}

/// One thread: allocates small objects; half go to the next thread's inbox (it frees them),
/// half are kept locally (the oldest freed once `KEEP` are held); drains its own inbox. Runs
/// until `ring.stop` or, with `allocations`, for that many allocations.
/// Returns the allocations and frees done, and the allocations refused (not counted as done).
fn worker(heap: &dyn GlobalAlloc, me: usize, ring: &Ring, allocations: Option<u64>, seed: u64) -> (u64, u64) {
    let mut rng = Rng::new(seed);
    let mut kept: VecDeque<Block> = VecDeque::with_capacity(KEEP + 1);
    let mut received = Vec::with_capacity(256);
    let mut outgoing: Vec<Block> = Vec::with_capacity(HANDOVER);
    let (mine, next) = (&ring.inboxes[me], &ring.inboxes[(me + 1) % ring.inboxes.len()]);
    let (mut ops, mut refused) = (0u64, 0u64);
    ring.ready.fetch_add(1, Ordering::AcqRel);
    while !ring.go.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    for call in 1u64.. {
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
                    if next.full() {
                        ops += free_all(heap, outgoing.drain(..));
                    } else {
                        next.hand_over(&mut outgoing, false);
                    }
                }
            } else {
                kept.push_back(Block(block, layout));
                if kept.len() > KEEP {
                    ops += free_all(heap, kept.pop_front());
                }
            }
        }
        // Every 16 calls (refused ones too, so a thread whose allocations fail still frees).
        if call.is_multiple_of(16) {
            mine.take(&mut received);
            ops += free_all(heap, received.drain(..));
            if allocations.is_none() && ring.stop.load(Ordering::Relaxed) {
                break;
            }
        }
        if allocations == Some(call) {
            break;
        }
    }
    ops += free_all(heap, kept);
    // What is still collected goes to the next thread's inbox (freed after the run).
    next.hand_over(&mut outgoing, true);
    (ops, refused)
}

fn run(ctx: &Ctx, threads: usize) -> Result<Metrics, JobError> {
    let heap = ctx.build(ARENA)?;
    let heap: &(dyn GlobalAlloc + Sync) = &*heap;
    let budget = ctx.scale.budget(RUN_FOR, COUNTED_ALLOCATIONS);
    let allocations = match budget {
        Budget::Time(_) => None,
        Budget::Steps(total) => Some((total / threads as u64).max(1)),
    };
    let ring = Ring {
        inboxes: (0..threads).map(|_| Inbox::new()).collect(),
        ready: AtomicUsize::new(0),
        go: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    };
    let (ops, refused, seconds) = measured_loop(|| {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|me| {
                    let ring = &ring;
                    let seed = ctx.seed.wrapping_mul(31).wrapping_add(me as u64);
                    scope.spawn(move || {
                        set_cpu(me);
                        worker(heap, me, ring, allocations, seed)
                    })
                })
                .collect();
            // The clock starts when every thread is at the start line, not when the first is.
            while ring.ready.load(Ordering::Acquire) < threads {
                std::thread::yield_now();
            }
            let start = Instant::now();
            ring.go.store(true, Ordering::Release);
            if let Budget::Time(duration) = budget {
                std::thread::sleep(duration);
                ring.stop.store(true, Ordering::Relaxed);
            }
            let (ops, refused) = handles
                .into_iter()
                .map(|h| h.join().expect("worker panicked"))
                .fold((0, 0), |(ops, refused), (o, r)| (ops + o, refused + r));
            (ops, refused, start.elapsed().as_secs_f64())
        })
    });
    let mut leftover = 0u64;
    for inbox in &ring.inboxes {
        leftover += free_all(heap, inbox.blocks.lock().expect("inbox").drain(..));
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
                 spinlock). All start together and run for 250 ms (a fixed 20,000 allocations in all when \
                 instructions are counted), allocating small objects (8..=512 B); half are handed to the next \
                 thread (in batches of 32, one inbox lock each), which frees them (a ring of producer/consumer pairs, as in xmalloc-test; a thread \
                 whose consumer lags 32,768 blocks behind frees them itself), half are kept \
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
