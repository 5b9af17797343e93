//! `ThreadCpu`: a [`CpuId`] for host tests and benchmarks, where each thread stands for a CPU.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use kheap::{CpuId, NoInterrupts};

std::thread_local! {
    /// The CPU this thread stands for; `usize::MAX` until it is set or first asked.
    static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Threads not given an index take the next one, in the order they first allocate.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Each host thread stands for one CPU: the index set with [`ThreadCpu::set`], or else one
/// handed out in turn on the thread's first call. Threads are not pinned to CPUs and may share
/// an index (more threads than CPUs, `set` twice): a [`kheap::PerCpu`] front stays sound
/// because every CPU's cache has its own lock, which a second thread finds busy and bypasses.
pub struct ThreadCpu;

impl ThreadCpu {
    /// Makes the calling thread stand for CPU `index`.
    pub fn set(index: usize) {
        INDEX.with(|cell| cell.set(index));
    }
}

impl CpuId for ThreadCpu {
    type Interrupts = NoInterrupts;

    #[inline]
    fn current() -> usize {
        // `try_with`: during thread teardown the slot may be gone; CPU 0 is as good as any.
        INDEX
            .try_with(|cell| {
                let index = cell.get();
                if index != usize::MAX {
                    return index;
                }
                let index = NEXT.fetch_add(1, Ordering::Relaxed);
                cell.set(index);
                index
            })
            .unwrap_or(0)
    }

    /// Yields: the thread holding the shared front's lock may be waiting for a core (more
    /// threads than cores), and spinning would only delay it.
    fn relax() {
        std::thread::yield_now();
    }
}
