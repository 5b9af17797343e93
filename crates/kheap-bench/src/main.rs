//! Benchmarks of kheap against its peers from crates.io, side by side in one run.
//!
//! Every contender is a real `GlobalAlloc` over the same arena (the same host memory, reset
//! between runs). While a workload runs, this program's global allocator routes every
//! allocation to the contender under test, so `Vec`, `BTreeMap` and friends exercise it as a
//! kernel's would; everything else (the runner's own bookkeeping) goes to the system allocator.
//!
//! `cargo xtask bench` (or `cargo run --release -p kheap-bench -- [--runs N] [--only ALLOCATOR]
//! [--workload NAME]`).
//! Prints a table of median times and ratios against kheap, and writes `target/kheap-bench.csv`.

mod contenders;
mod router;
mod workloads;

use std::time::Duration;

use contenders::CONTENDERS;
use workloads::WORKLOADS;

struct Options {
    runs: usize,
    /// Run only this allocator (for callgrind: one process per contender).
    only: Option<String>,
    /// Run only this workload.
    workload: Option<String>,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    Options {
        runs: value("--runs").and_then(|r| r.parse().ok()).unwrap_or(5),
        only: value("--only"),
        workload: value("--workload"),
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let options = options();
    let arena = router::Arena::new(workloads::ARENA_LEN);
    let contenders: Vec<_> =
        CONTENDERS.iter().filter(|c| options.only.as_deref().is_none_or(|o| c.name == o)).collect();
    let mut csv = String::from("workload,allocator,median_ms,runs\n");
    println!("kheap-bench: {} runs each, interleaved; median wall time (lower is better)", options.runs);
    for workload in WORKLOADS.iter().filter(|w| options.workload.as_deref().is_none_or(|o| w.name == o)) {
        println!("\n{} — {}", workload.name, workload.what);
        let mut samples = vec![Vec::new(); contenders.len()];
        for run in 0..options.runs {
            for (i, contender) in contenders.iter().enumerate() {
                let heap = (contender.build)(&arena);
                let elapsed = router::with_heap(heap, || (workload.run)(run as u64));
                samples[i].push(elapsed);
            }
        }
        let medians: Vec<Duration> = samples.into_iter().map(median).collect();
        let kheap = contenders.iter().position(|c| c.name == "kheap-buddy").map(|i| medians[i]);
        for (contender, time) in contenders.iter().zip(&medians) {
            let ratio = kheap.map_or(String::new(), |k| {
                format!("{:>9.1}x kheap-buddy's time", time.as_secs_f64() / k.as_secs_f64())
            });
            println!("  {:<26} {:>10.3} ms {ratio}", contender.name, time.as_secs_f64() * 1e3);
            csv.push_str(&format!(
                "{},{},{:.4},{}\n",
                workload.name,
                contender.name,
                time.as_secs_f64() * 1e3,
                options.runs
            ));
        }
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/kheap-bench.csv");
    match std::fs::write(&path, csv) {
        Ok(()) => println!("\nwrote {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}
