//! Every kheap algorithm through the same seeded workload on its own arena.

use super::{ensure, TestResult};
use crate::config::SEED;
use crate::workload::{self, ALGORITHMS};

/// Steps per algorithm.
const OPS: usize = 6000;

pub fn every_algorithm() -> TestResult {
    for (name, algorithm) in ALGORITHMS {
        let outcome = workload::run(algorithm, SEED, OPS).map_err(|e| alloc::format!("{name}: {e}"))?;
        println!(
            "    {name:<20} {} allocations, {} refused, all memory back, invariants hold",
            outcome.allocations, outcome.refused
        );
        ensure!(
            outcome.allocations > OPS / 4,
            "{name}: only {} of {OPS} steps allocated",
            outcome.allocations
        );
    }
    Ok(())
}
