//! Random actions: talc's throughput method (allocate, free, reallocate at random, counting
//! the actions done in a fixed time) with talc's sizes and with our own mixes.

use std::time::Duration;

use super::{Live, Metric, Sizes, Workload};
use crate::job::{Ctx, JobError, Metrics};
use crate::rng::Rng;
use crate::timer::{measured_loop, Meter};

/// Arena for the throughput workloads (talc's is 128 MiB; 64 MiB holds every live set here).
pub const ARENA: usize = 64 << 20;
/// The live set never drops below this many blocks (talc's figure for arena allocators).
const MIN_LIVE: usize = 300;
/// Actions per clock check.
const BATCH: usize = 100;

const ACTIONS_PER_SEC: Metric =
    Metric { key: "mactions_per_s", label: "million actions/s", higher_is_better: true };

/// The action loop: of every 6 (7 with realloc) equally likely choices, 3 allocate, 3 free a
/// random live block (allocate instead while fewer than `MIN_LIVE` are live) and, with
/// realloc, 1 resizes a random live block to a size uniform in `1..3 * max`.
/// Returns (successful actions, failed ones).
fn actions(
    live: &mut Live,
    rng: &mut Rng,
    sizes: Sizes,
    realloc_max: Option<usize>,
    meter: &mut Meter,
) -> (u64, u64) {
    let (mut done, mut failed) = (0u64, 0u64);
    let choices = if realloc_max.is_some() { 7 } else { 6 };
    while meter.more() {
        for _ in 0..BATCH {
            let action = rng.below(choices);
            let ok = if action == 6 {
                if live.len() == 0 {
                    continue;
                }
                let index = rng.below(live.len());
                let new_size = rng.between(1, 3 * realloc_max.unwrap_or(1));
                live.realloc(index, new_size)
            } else if action < 3 || live.len() < MIN_LIVE {
                live.alloc(sizes.next(rng))
            } else {
                live.free(rng.below(live.len()));
                true
            };
            if ok {
                done += 1;
            } else {
                failed += 1;
            }
        }
    }
    (done, failed)
}

fn run(ctx: &Ctx, sizes: Sizes, realloc_max: Option<usize>) -> Result<Metrics, JobError> {
    let heap = ctx.build(ARENA)?;
    let mut rng = Rng::new(ctx.seed);
    let mut live = Live::new(&*heap, 1 << 16);
    let mut meter = Meter::new(ctx.scale.budget(Duration::from_millis(200), 400));
    let (done, failed) = measured_loop(|| actions(&mut live, &mut rng, sizes, realloc_max, &mut meter));
    let seconds = meter.elapsed().as_secs_f64();
    drop(live);
    Ok(vec![
        (ACTIONS_PER_SEC.key, done as f64 / seconds / 1e6),
        ("failed_actions", failed as f64),
        ("ops", (done + failed) as f64),
    ])
}

pub fn workloads() -> Vec<Workload> {
    let mut all = Vec::new();
    let talc_about = |max: usize, realloc: bool| {
        format!(
            "talc's random-actions method over a {} MiB arena: each action allocates (3 in {n}), frees a random live \
             block (3 in {n}; allocates instead while fewer than {MIN_LIVE} blocks are live){r}. Sizes are talc's \
             small-skewed distribution up to {max} B (size uniform in 4..cap, cap uniform in 16..max), alignment 8 B \
             75 %, 16 B 19 %, higher rarely. Counted: successful actions per second over 200 ms. Why: general \
             kernel-heap churn at a given object size range; comparable with talc's published charts.",
            ARENA >> 20,
            n = if realloc { 7 } else { 6 },
            r = if realloc { ", or reallocates a random live block to a size uniform in 1..3×max (1 in 7)" } else { "" },
        )
    };
    for max in [200, 1000, 3000, 10_000, 30_000] {
        all.push(workload(
            format!("random_actions_{max}"),
            format!("Random actions with realloc, sizes up to {max} B"),
            talc_about(max, true),
            Sizes::TalcSkewed { max },
            Some(max),
        ));
    }
    for max in [200, 3000, 30_000] {
        all.push(workload(
            format!("random_actions_norealloc_{max}"),
            format!("Random actions without realloc, sizes up to {max} B"),
            talc_about(max, false),
            Sizes::TalcSkewed { max },
            None,
        ));
    }
    let mixes = [
        ("mix_small", Sizes::Small, "the bulk of a kernel's requests: inodes, skbuffs, tasks, list nodes"),
        ("mix_loguniform", Sizes::LogUniform, "no size dominates; stresses splitting and merging across every size class"),
        ("mix_kernel", Sizes::Kernel, "objects next to page-aligned buffers, where alignment waste and splitting meet"),
        ("high_align", Sizes::HighAlign, "cache-line, page and DMA alignment; over-aligned requests are where talc#44 and hermit#1968 slowed down"),
    ];
    for (name, sizes, why) in mixes {
        all.push(workload(
            name.to_string(),
            format!("Random actions, {}", sizes.describe()),
            format!(
                "Random actions as above (allocate 3 in 6, free 3 in 6, at least {MIN_LIVE} live, no realloc) with \
                 {}. Counted: successful actions per second over 200 ms. Why: {why}.",
                sizes.describe()
            ),
            sizes,
            None,
        ));
    }
    all
}

fn workload(
    name: String,
    title: String,
    about: String,
    sizes: Sizes,
    realloc_max: Option<usize>,
) -> Workload {
    Workload {
        name,
        title,
        about,
        source: "crates/kheap-bench/src/workloads/random.rs",
        metric: ACTIONS_PER_SEC,
        columns: vec![ACTIONS_PER_SEC.key, "failed_actions"],
        timeout_secs: 60,
        run: Box::new(move |ctx| run(ctx, sizes, realloc_max)),
    }
}
