//! The workloads: what the tutorial kernels' users reported as slow (arceos#110).

use std::collections::BTreeMap;
use std::hint::black_box;

use kheap_testkit::Rng;

/// Bytes of arena every contender gets.
pub const ARENA_LEN: usize = 64 << 20;

pub struct Workload {
    pub name: &'static str,
    pub what: &'static str,
    /// Runs once; the argument varies the seed between runs.
    pub run: fn(u64),
}

fn vec_free_random_order(run: u64) {
    let mut rng = Rng::new(0x5eed ^ run);
    let mut vecs: Vec<Option<Vec<u64>>> = (0..25_000).map(|_| Some(Vec::with_capacity(64))).collect();
    let mut order: Vec<usize> = (0..vecs.len()).collect();
    rng.shuffle(&mut order);
    for i in order {
        black_box(vecs[i].take());
    }
}

fn btree_map_churn(run: u64) {
    let mut rng = Rng::new(0xb7ee ^ run);
    let mut map = BTreeMap::new();
    for i in 0..50_000u64 {
        let key = rng.range(0..=20_000) as u64;
        if rng.chance(60) {
            map.insert(key, i);
        } else {
            map.remove(&key);
        }
    }
    black_box(&map);
}

pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "vec_free_random_order",
        what: "25,000 Vec<u64> of capacity 64 allocated, then freed in random order",
        run: vec_free_random_order,
    },
    Workload {
        name: "btree_map_churn",
        what: "50,000 random inserts/removes on a BTreeMap<u64, u64>",
        run: btree_map_churn,
    },
];
