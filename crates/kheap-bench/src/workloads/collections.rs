//! Collections on the heap under test (through the routing global allocator): the two
//! workloads where the tutorial kernels' allocator collapses (arceos#110).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use super::{Metric, Workload};
use crate::job::{Ctx, JobError, Metrics};
use crate::rng::Rng;
use crate::router;
use crate::timer::measured_loop;

const ARENA: usize = 64 << 20;
const MS: Metric = Metric { key: "ms", label: "milliseconds per run", higher_is_better: false };

fn vec_free_random_order(ctx: &Ctx) -> Result<Metrics, JobError> {
    let count = ctx.scale.pick(25_000, 25_000, 1_000, 25_000);
    let mut rng = Rng::new(ctx.seed);
    let mut order: Vec<usize> = (0..count).collect();
    rng.shuffle(&mut order);
    let (heap, arena) = ctx.build_for_collections(ARENA)?;
    let heap: &'static _ = Box::leak(heap);
    let elapsed = router::with_heap(heap, &arena, || {
        let start = Instant::now();
        measured_loop(|| {
            let mut vecs: Vec<Option<Vec<u64>>> = (0..count).map(|_| Some(Vec::with_capacity(64))).collect();
            for &i in &order {
                black_box(vecs[i].take());
            }
        });
        start.elapsed()
    });
    Ok(vec![(MS.key, elapsed.as_secs_f64() * 1e3), ("ops", 2.0 * count as f64)])
}

fn btree_map_churn(ctx: &Ctx) -> Result<Metrics, JobError> {
    let steps = ctx.scale.pick(50_000, 50_000, 2_000, 50_000);
    let mut rng = Rng::new(ctx.seed);
    let script: Vec<(u64, bool)> = (0..steps).map(|_| (rng.below(20_001) as u64, rng.chance(60))).collect();
    let (heap, arena) = ctx.build_for_collections(ARENA)?;
    let heap: &'static _ = Box::leak(heap);
    let elapsed = router::with_heap(heap, &arena, || {
        let start = Instant::now();
        measured_loop(|| {
            let mut map = BTreeMap::new();
            for (i, &(key, insert)) in script.iter().enumerate() {
                if insert {
                    map.insert(key, i);
                } else {
                    map.remove(&key);
                }
            }
            black_box(&map);
        });
        start.elapsed()
    });
    Ok(vec![(MS.key, elapsed.as_secs_f64() * 1e3), ("ops", steps as f64)])
}

pub fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "vec_free_random_order".into(),
            title: "25,000 Vec<u64> freed in random order".into(),
            about: "25,000 `Vec<u64>` of capacity 64 (512 B each) allocated, then dropped in a seeded random order, \
                    through this program's global allocator routed to the subject. Reported: wall time of the whole \
                    run. Why: arceos#110 measured 1.95 ms on rlsf and 1643 ms on buddy_system_allocator here: a free \
                    that scans a free list turns random-order teardown quadratic."
                .into(),
            source: "crates/kheap-bench/src/workloads/collections.rs",
            metric: MS,
            columns: vec![MS.key],
            timeout_secs: 120,
            run: Box::new(vec_free_random_order),
        },
        Workload {
            name: "btree_map_churn".into(),
            title: "BTreeMap churn, 50,000 operations".into(),
            about: "50,000 seeded random operations on a `BTreeMap<u64, usize>` (60 % insert, 40 % remove, keys in \
                    0..=20,000) through the routed global allocator. Reported: wall time. Why: node allocation and \
                    freeing in a long-lived index, the second case of arceos#110 (rlsf 11.3 ms, \
                    buddy_system_allocator 1282 ms)."
                .into(),
            source: "crates/kheap-bench/src/workloads/collections.rs",
            metric: MS,
            columns: vec![MS.key],
            timeout_secs: 120,
            run: Box::new(btree_map_churn),
        },
    ]
}
