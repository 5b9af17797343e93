//! Host stress of a shared front: several threads allocate, write a byte pattern, and free,
//! half of every thread's blocks freed by another thread; each pattern is checked on its free.
//!
//! A run lasts a number of operations per thread or a time budget ([`Budget`]); the caller
//! then trims the caches and checks that the heap is whole (see the `stress` and
//! `per_cpu_threads` tests).

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kheap::Front;

use crate::{Rng, SeedReport, ThreadCpu};

/// How long each worker runs.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    /// This many operations (an allocation, and maybe frees) per thread.
    Operations(usize),
    /// Until this much time has passed since the run started.
    Time(Duration),
}

/// Blocks a thread's inbox may hold before senders free their blocks themselves: a thread
/// preempted for long (4 threads on 2 cores) would otherwise collect blocks without bound in a
/// long run and exhaust the heap.
const INBOX_LIMIT: usize = 1024;
/// Blocks a thread keeps before it must free one.
const KEPT_LIMIT: usize = 200;
/// A thread empties its inbox once every this many steps.
const INBOX_EVERY: usize = 32;

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

/// One thread's work: returns the operations it did.
fn worker<F: Front>(
    heap: &F,
    me: usize,
    cpu: usize,
    inboxes: &[Mutex<Vec<Block>>],
    seed: u64,
    until: impl Fn(usize) -> bool,
) -> usize {
    ThreadCpu::set(cpu);
    let _report = SeedReport { label: "stress worker", seed };
    let mut rng = Rng::new(seed);
    let mut kept: Vec<Block> = Vec::new();
    let next = (me + 1) % inboxes.len();
    let mut step = 0;
    while !until(step) {
        let size = if rng.chance(3) { rng.range(1025..=8192) } else { rng.range(1..=1024) };
        let layout = Layout::from_size_align(size, 1 << rng.range(0..=5)).unwrap();
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
            let mut inbox = inboxes[next].lock().unwrap();
            if inbox.len() < INBOX_LIMIT {
                inbox.push(block);
            } else {
                drop(inbox);
                free(heap, block);
            }
        } else {
            kept.push(block);
        }
        if kept.len() > KEPT_LIMIT || (!kept.is_empty() && rng.chance(30)) {
            let index = rng.range(0..=kept.len() - 1);
            free(heap, kept.swap_remove(index));
        }
        if step % INBOX_EVERY == 0 {
            let received = std::mem::take(&mut *inboxes[me].lock().unwrap());
            for block in received {
                free(heap, block);
            }
        }
        step += 1;
    }
    for block in kept {
        free(heap, block);
    }
    step
}

/// Runs `threads` workers on `heap` for `budget` (thread `i` seeded with `seed + i` and
/// standing for CPU `i % cpus`, for a per-CPU front), then frees what is left in the inboxes.
/// Every block is checked and freed: afterwards the heap holds no block of the run, only what
/// its caches keep. Returns the operations each thread did.
pub fn run<F: Front + Sync>(heap: &F, threads: usize, cpus: usize, seed: u64, budget: Budget) -> Vec<usize> {
    let inboxes: Vec<Mutex<Vec<Block>>> = (0..threads).map(|_| Mutex::new(Vec::new())).collect();
    let start = Instant::now();
    let until = move |step: usize| match budget {
        Budget::Operations(count) => step >= count,
        // The clock is read once every 256 steps: it is a system call on some hosts.
        Budget::Time(limit) => step % 256 == 0 && start.elapsed() >= limit,
    };
    let done = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|me| {
                let inboxes = &inboxes;
                scope.spawn(move || worker(heap, me, me % cpus, inboxes, seed.wrapping_add(me as u64), until))
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a stress worker failed")).collect()
    });
    for inbox in &inboxes {
        for block in inbox.lock().unwrap().drain(..) {
            free(heap, block);
        }
    }
    done
}
