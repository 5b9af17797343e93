//! Per-operation latency in time-stamp-counter ticks: percentiles of single allocations and
//! frees under a fragmented heap, and TLSF's two classic worst cases.

use std::alloc::Layout;
use std::ptr;

use super::{Live, Metric, Sizes, Workload};
use crate::job::{Ctx, JobError, Metrics};
use crate::rng::Rng;
use crate::timer::{measured_loop, ticks};

const ARENA: usize = 16 << 20;

/// p50, p99, p99.9 and max of `samples` (sorted in place), under `prefix`.
fn percentiles(prefix: &'static str, samples: &mut [u64], out: &mut Metrics) {
    const KEYS: [[&str; 4]; 2] = [
        ["alloc_p50", "alloc_p99", "alloc_p999", "alloc_max"],
        ["free_p50", "free_p99", "free_p999", "free_max"],
    ];
    let keys = if prefix == "alloc" { KEYS[0] } else { KEYS[1] };
    if samples.is_empty() {
        return;
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize] as f64;
    out.extend([(keys[0], at(0.5)), (keys[1], at(0.99)), (keys[2], at(0.999)), (keys[3], at(1.0))]);
}

/// Fills the arena to about half with log-uniform 8 B..4 KiB blocks, frees a random half of
/// them, then times single operations: allocate while fewer than the target are live and
/// with probability 1/2 otherwise, else free a random live block.
fn fragmented(ctx: &Ctx) -> Result<Metrics, JobError> {
    let heap = ctx.build(ARENA)?;
    let mut rng = Rng::new(ctx.seed);
    let mut live = Live::new(&*heap, 1 << 16);
    while live.requested < ARENA / 2 && live.alloc(Sizes::LogUniform4K.next(&mut rng)) {}
    let target = live.len() / 2;
    for _ in 0..target {
        live.free(rng.below(live.len()));
    }
    let ops = ctx.scale.pick(200_000, 50_000, 2_000, 20_000);
    let mut allocs = Vec::with_capacity(ops);
    let mut frees = Vec::with_capacity(ops);
    let mut failed = 0u64;
    measured_loop(|| {
        for _ in 0..ops {
            if live.len() < target || rng.below(2) == 0 {
                let layout = Sizes::LogUniform4K.next(&mut rng);
                let start = ticks();
                let ok = live.alloc(layout);
                allocs.push(ticks() - start);
                failed += u64::from(!ok);
            } else {
                let index = rng.below(live.len());
                let start = ticks();
                live.free(index);
                frees.push(ticks() - start);
            }
        }
    });
    drop(live);
    let mut out = Vec::new();
    percentiles("alloc", &mut allocs, &mut out);
    percentiles("free", &mut frees, &mut out);
    out.extend([("failed_allocs", failed as f64), ("ops", ops as f64)]);
    Ok(out)
}

/// A fresh heap is one huge free block: allocate 16 B (carved from it) and free it again
/// (merged back), timing both.
fn split_huge_block(ctx: &Ctx) -> Result<Metrics, JobError> {
    let heap = ctx.build(ARENA)?;
    let layout = Layout::from_size_align(16, 8).expect("valid layout");
    let ops = ctx.scale.pick(100_000, 30_000, 1_000, 20_000);
    let mut allocs = Vec::with_capacity(ops);
    let mut frees = Vec::with_capacity(ops);
    measured_loop(|| {
        for _ in 0..ops {
            let start = ticks();
            // SAFETY: non-zero size.
            let block = unsafe { heap.alloc(layout) };
            let middle = ticks();
            if !block.is_null() {
                // SAFETY: just allocated with this layout.
                unsafe { heap.dealloc(block, layout) };
            }
            let end = ticks();
            allocs.push(middle - start);
            frees.push(end - middle);
        }
    });
    let mut out = Vec::new();
    percentiles("alloc", &mut allocs, &mut out);
    percentiles("free", &mut frees, &mut out);
    out.push(("ops", 2.0 * ops as f64));
    Ok(out)
}

/// Allocates runs of four 64 B blocks (a, b, c, guard), frees every a and c, then times the
/// free of each b: a free whose two neighbours are free (in heaps that place consecutive
/// requests next to each other).
fn free_between_free_neighbours(ctx: &Ctx) -> Result<Metrics, JobError> {
    let heap = ctx.build(ARENA)?;
    let layout = Layout::from_size_align(64, 8).expect("valid layout");
    let runs = ctx.scale.pick(20_000, 10_000, 500, 5_000);
    let mut blocks = vec![[ptr::null_mut::<u8>(); 4]; runs];
    for run in blocks.iter_mut() {
        for slot in run.iter_mut() {
            // SAFETY: non-zero size.
            *slot = unsafe { heap.alloc(layout) };
        }
    }
    if blocks.iter().flatten().any(|b| b.is_null()) {
        return Err(JobError::Unsupported("the arena did not hold the setup's blocks".into()));
    }
    for run in &blocks {
        // SAFETY: live blocks of this heap with this layout.
        unsafe {
            heap.dealloc(run[0], layout);
            heap.dealloc(run[2], layout);
        }
    }
    let mut frees = Vec::with_capacity(runs);
    measured_loop(|| {
        for run in &blocks {
            let start = ticks();
            // SAFETY: live block of this heap with this layout.
            unsafe { heap.dealloc(run[1], layout) };
            frees.push(ticks() - start);
        }
    });
    for run in &blocks {
        // SAFETY: the guards are still live.
        unsafe { heap.dealloc(run[3], layout) };
    }
    let mut out = Vec::new();
    percentiles("free", &mut frees, &mut out);
    out.push(("ops", runs as f64));
    Ok(out)
}

pub fn workloads() -> Vec<Workload> {
    let p99 = |key| Metric { key, label: "p99 latency, TSC ticks", higher_is_better: false };
    let all_columns = vec![
        "alloc_p99",
        "alloc_p50",
        "alloc_p999",
        "alloc_max",
        "free_p50",
        "free_p99",
        "free_p999",
        "free_max",
    ];
    vec![
        Workload {
            name: "latency_fragmented".into(),
            title: "Per-operation latency under a fragmented heap".into(),
            about: "A 16 MiB arena filled to half with log-uniform 8 B..4 KiB blocks, a random half of them freed; then \
                    200,000 single operations (allocate while below that count, else allocate or free a random block \
                    with equal odds), each timed with the time-stamp counter (rdtsc, including its own ~20 ticks). \
                    Reported: p50 / p99 / p99.9 / max for allocations and frees separately; the plot shows the \
                    allocation p99. Why: a kernel's heap runs in interrupt handlers and under spinlocks; its tail, \
                    not its mean, sets the worst-case latency."
                .into(),
            source: "crates/kheap-bench/src/workloads/latency.rs",
            metric: p99("alloc_p99"),
            columns: all_columns.clone(),
            timeout_secs: 60,
            run: Box::new(fragmented),
        },
        Workload {
            name: "latency_split_huge_block".into(),
            title: "TLSF worst case 1: a small request carved from one huge free block".into(),
            about: "A fresh 16 MiB heap is one free block; 100,000 times allocate 16 B and free it, timing each call. \
                    Why: the first of TLSF's two classic worst cases (sysprog21/tlsf-bsd's WCET harness); a buddy heap \
                    splits log2(arena/16) times here, and merges as often on the free."
                .into(),
            source: "crates/kheap-bench/src/workloads/latency.rs",
            metric: p99("alloc_p99"),
            columns: all_columns.clone(),
            timeout_secs: 60,
            run: Box::new(split_huge_block),
        },
        Workload {
            name: "latency_free_between_free".into(),
            title: "TLSF worst case 2: a free whose two neighbours are free".into(),
            about: "20,000 runs of four 64 B blocks (a, b, c, guard) allocated in order; every a and c freed; then each \
                    b freed and timed. Why: the second classic worst case: the free must merge with both neighbours \
                    (for heaps that place consecutive requests side by side; a buddy or slab heap may not)."
                .into(),
            source: "crates/kheap-bench/src/workloads/latency.rs",
            metric: p99("free_p99"),
            columns: vec!["free_p99", "free_p50", "free_p999", "free_max"],
            timeout_secs: 60,
            run: Box::new(free_between_free_neighbours),
        },
    ]
}
