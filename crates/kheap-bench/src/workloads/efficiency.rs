//! Heap efficiency: how much of the arena callers get before the first failure.

use std::time::{Duration, Instant};

use super::{Live, Metric, Sizes, Workload};
use crate::job::{Ctx, JobError, Metrics, Scale};
use crate::rng::Rng;
use crate::timer::measured_loop;

const EFFICIENCY: Metric = Metric {
    key: "efficiency_pct",
    label: "live requested bytes at first failure, % of arena",
    higher_is_better: true,
};

/// Allocates (2 in 3) and frees a random live block (1 in 3) until the first allocation
/// fails; returns the requested bytes live at that moment and the operations done.
/// `None` if `deadline` passes first.
fn fill(
    live: &mut Live,
    rng: &mut Rng,
    sizes: Sizes,
    max_ops: u64,
    deadline: Instant,
) -> Option<(usize, u64)> {
    let mut ops = 0u64;
    loop {
        ops += 1;
        if ops.is_multiple_of(256) && Instant::now() > deadline {
            return None;
        }
        if ops > max_ops {
            return Some((live.requested, ops));
        }
        if live.len() > 0 && rng.below(3) == 0 {
            live.free(rng.below(live.len()));
        } else if !live.alloc(sizes.next(rng)) {
            return Some((live.requested, ops));
        }
    }
}

fn run(ctx: &Ctx, arena: usize, sizes: Sizes) -> Result<Metrics, JobError> {
    if !ctx.subject.in_arena {
        return Err(JobError::Unsupported("the hosted reference has no arena to fill".into()));
    }
    let seeds =
        ctx.scale.pick(if arena > 1 << 20 { 6 } else { 24 }, if arena > 1 << 20 { 2 } else { 6 }, 1, 1);
    let max_ops = ctx.scale.pick(u64::MAX, u64::MAX, 20_000, u64::MAX);
    let deadline = Instant::now()
        + ctx.scale.pick(
            Duration::from_secs(6),
            Duration::from_secs(4),
            Duration::from_secs(10),
            Duration::from_secs(600),
        );
    let mut shares = Vec::new();
    let mut total_ops = 0u64;
    for seed in 0..seeds {
        let heap = ctx.build(arena)?;
        let mut rng = Rng::new(ctx.seed.wrapping_mul(1000).wrapping_add(seed));
        let mut live = Live::new(&*heap, 1 << 16);
        let result = measured_loop(|| fill(&mut live, &mut rng, sizes, max_ops, deadline));
        // The heap is thrown away with its blocks: freeing them one by one would only measure
        // (and, for heaps with a linear free, wait for) the teardown.
        std::mem::forget(live);
        let Some((requested, ops)) = result else {
            return Err(JobError::OverBudget(format!(
                "seed {seed} did not reach a failure within the time budget"
            )));
        };
        total_ops += ops;
        shares.push(requested as f64 / arena as f64 * 100.0);
    }
    let mean = shares.iter().sum::<f64>() / shares.len() as f64;
    let min = shares.iter().copied().fold(f64::INFINITY, f64::min);
    Ok(vec![(EFFICIENCY.key, mean), ("min_pct", min), ("seeds", seeds as f64), ("ops", total_ops as f64)])
}

pub fn workloads() -> Vec<Workload> {
    let mut all = Vec::new();
    let mixes = [
        ("small", Sizes::Small),
        ("loguniform", Sizes::LogUniform),
        ("kernel", Sizes::Kernel),
        ("high_align", Sizes::HighAlign),
        ("talc30000", Sizes::TalcSkewed { max: 30_000 }),
    ];
    for (arena, arena_name) in [(1usize << 20, "1m"), (16 << 20, "16m")] {
        for (mix, sizes) in mixes {
            if mix == "talc30000" && arena == 1 << 20 {
                continue;
            }
            all.push(Workload {
                name: format!("efficiency_{arena_name}_{mix}"),
                title: format!("Heap efficiency, {} MiB arena, {}", arena >> 20, sizes.describe()),
                about: format!(
                    "A fresh heap over a {} MiB arena; allocate (2 in 3) or free a random live block (1 in 3) with {} \
                     until the first allocation fails. Reported: requested bytes live at that moment as a share of \
                     the arena, mean over {} seeds (min in the table; a quick run uses fewer). Why: a kernel heap is \
                     sized once; what it wastes in headers, rounding and fragments is memory the system never gets.",
                    arena >> 20,
                    sizes.describe(),
                    Scale::Full.pick(if arena > 1 << 20 { 6 } else { 24 }, 0, 0, 0),
                ) + if mix == "high_align" {
                    " With 64 KiB-aligned requests the arena has only arena / 64 KiB places for them: the first \
                     failure comes when those are taken, whatever the heap, so every share is low here; what \
                     differs between heaps is how much else fits around them."
                } else {
                    ""
                },
                source: "crates/kheap-bench/src/workloads/efficiency.rs",
                metric: EFFICIENCY,
                columns: vec![EFFICIENCY.key, "min_pct", "seeds"],
                timeout_secs: 60,
                run: Box::new(move |ctx| run(ctx, arena, sizes)),
            });
        }
    }
    all
}
