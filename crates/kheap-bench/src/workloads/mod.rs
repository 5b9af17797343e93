//! The workloads. Each says what it asks, how its requests are distributed and why that
//! matters to a kernel (`about`, printed in BENCHMARKS.md), and reports one primary metric
//! (plotted, used for the headline ratios) plus secondary ones (in the tables).

mod collections;
mod efficiency;
mod latency;
mod random;
mod replay;
mod threads;
pub mod trace;

use std::alloc::{GlobalAlloc, Layout};
use std::path::Path;

use crate::job::{Ctx, JobError, Metrics};
use crate::rng::Rng;

/// The number a workload is judged by.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    pub higher_is_better: bool,
}

pub type RunFn = Box<dyn Fn(&Ctx) -> Result<Metrics, JobError> + Send + Sync>;

pub struct Workload {
    pub name: String,
    /// One line.
    pub title: String,
    /// What it asks, its distribution, why it matters to a kernel.
    pub about: String,
    /// The source file, for the report.
    pub source: &'static str,
    pub metric: Metric,
    /// Secondary metrics shown in the tables (the primary one first).
    pub columns: Vec<&'static str>,
    /// Seconds a job may take before the parent kills it (full scale).
    pub timeout_secs: u64,
    pub run: RunFn,
}

/// Every workload; replay workloads come from the `*.trace.gz` files in `traces`.
pub fn all(traces: &Path) -> Vec<Workload> {
    let mut all = random::workloads();
    all.extend(efficiency::workloads());
    all.extend(latency::workloads());
    all.extend(collections::workloads());
    all.extend(threads::workloads());
    all.extend(replay::workloads(traces));
    all
}

/// A request size and alignment distribution.
#[derive(Clone, Copy, Debug)]
pub enum Sizes {
    /// talc's: size uniform in `4..cap` with `cap` uniform in `16..max` (skewed small);
    /// alignment `8 << (trailing zeros of a random u16) / 2` (75 % 8 B, 19 % 16 B, ...).
    TalcSkewed { max: usize },
    /// kmalloc-like small objects, 8..=512 B: a size class up to `8 << k` with `k` geometric
    /// (half of the requests ≤ 16 B), uniform within it; 8 B aligned.
    Small,
    /// Log-uniform 8 B ..= 64 KiB (each power-of-two range equally likely); 8 B aligned.
    LogUniform,
    /// 80 % small objects, 20 % 4 KiB buffers aligned to 4 KiB (a kernel's page-sized I/O and
    /// page-table buffers next to its objects).
    Kernel,
    /// 70 % small objects; 10 % each of 64 B-aligned (64..=256 B), 4 KiB-aligned (64 B..=4 KiB)
    /// and 64 KiB-aligned (64 B..=8 KiB) requests: cache lines, pages, DMA buffers.
    HighAlign,
    /// Log-uniform 8 B ..= 4 KiB, 8 B aligned (the latency workload's mix).
    LogUniform4K,
}

impl Sizes {
    pub fn next(self, rng: &mut Rng) -> Layout {
        let (size, align) = match self {
            Sizes::TalcSkewed { max } => {
                let cap = rng.between(16, max);
                let size = rng.between(4, cap);
                let align = 8usize << ((rng.next_u64() as u16).trailing_zeros() / 2);
                (size, align)
            }
            Sizes::Small => (small(rng), 8),
            Sizes::LogUniform => (log_uniform(rng, 3.0, 16.0), 8),
            Sizes::LogUniform4K => (log_uniform(rng, 3.0, 12.0), 8),
            Sizes::Kernel => {
                if rng.chance(20) {
                    (4096, 4096)
                } else {
                    (small(rng), 8)
                }
            }
            Sizes::HighAlign => match rng.below(10) {
                0 => (rng.between(64, 257), 64),
                1 => (rng.between(64, 4097), 4096),
                2 => (rng.between(64, 8193), 64 << 10),
                _ => (small(rng), 8),
            },
        };
        Layout::from_size_align(size, align).expect("valid layout")
    }

    pub fn describe(self) -> String {
        match self {
            Sizes::TalcSkewed { max } => format!("talc's small-skewed sizes up to {max} B"),
            Sizes::Small => "small objects 8..=512 B".into(),
            Sizes::LogUniform => "log-uniform 8 B..=64 KiB".into(),
            Sizes::LogUniform4K => "log-uniform 8 B..=4 KiB".into(),
            Sizes::Kernel => "kernel mix: small objects + 4 KiB page-aligned buffers".into(),
            Sizes::HighAlign => "small objects + 64 B / 4 KiB / 64 KiB aligned requests".into(),
        }
    }
}

fn small(rng: &mut Rng) -> usize {
    let k = ((rng.next_u64() | 1 << 6).trailing_zeros() as usize).min(6);
    rng.between(8, (16usize << k).min(512) + 1)
}

fn log_uniform(rng: &mut Rng, lo_log2: f64, hi_log2: f64) -> usize {
    let x = lo_log2 + rng.unit() * (hi_log2 - lo_log2);
    (x.exp2() as usize).max(1)
}

/// The live blocks of a workload, freed when dropped (outside the measured part).
pub struct Live<'h> {
    heap: &'h dyn GlobalAlloc,
    pub blocks: Vec<(*mut u8, Layout)>,
    /// Sum of the requested sizes of the live blocks.
    pub requested: usize,
}

impl<'h> Live<'h> {
    pub fn new(heap: &'h dyn GlobalAlloc, capacity: usize) -> Self {
        Live { heap, blocks: Vec::with_capacity(capacity), requested: 0 }
    }

    /// Allocates; `false` if the heap refused.
    #[inline]
    pub fn alloc(&mut self, layout: Layout) -> bool {
        // SAFETY: every layout the workloads make has a non-zero size.
        let block = unsafe { self.heap.alloc(layout) };
        if block.is_null() {
            return false;
        }
        self.blocks.push((block, layout));
        self.requested += layout.size();
        true
    }

    /// Frees the block at `index` (swap-remove).
    #[inline]
    pub fn free(&mut self, index: usize) {
        let (block, layout) = self.blocks.swap_remove(index);
        self.requested -= layout.size();
        // SAFETY: the block is live, from this heap, with this layout.
        unsafe { self.heap.dealloc(block, layout) }
    }

    /// Resizes the block at `index`; `false` if the heap refused (the block is kept).
    #[inline]
    pub fn realloc(&mut self, index: usize, new_size: usize) -> bool {
        let (block, layout) = self.blocks[index];
        // SAFETY: the block is live, from this heap, with this layout; `new_size` is non-zero.
        let new = unsafe { self.heap.realloc(block, layout, new_size) };
        if new.is_null() {
            return false;
        }
        let new_layout = Layout::from_size_align(new_size, layout.align()).expect("valid layout");
        self.blocks[index] = (new, new_layout);
        self.requested = self.requested - layout.size() + new_size;
        true
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }
}

impl Drop for Live<'_> {
    fn drop(&mut self) {
        while !self.blocks.is_empty() {
            self.free(self.blocks.len() - 1);
        }
    }
}
