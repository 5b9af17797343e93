//! `cargo xtask fuzz`: the cargo-fuzz targets of `fuzz/` (their own workspace), each run for a
//! bounded time with debug assertions on, so overflow checks fire as in the test build.

use std::process::Command;

use crate::{install, root, run};

/// The targets in `fuzz/fuzz_targets/`, one per algorithm, one for the default `Heap` and one for
/// the locked front.
pub const TARGETS: &[&str] = &["buddy", "first_fit", "tlsf", "hardened", "heap", "locked"];

/// How long each target runs.
pub enum Budget {
    /// For this many seconds, from a random seed: the long runs of `cargo xtask fuzz`.
    Seconds(u64),
    /// The test command's smoke: this many inputs from a fixed seed, so that it explores the
    /// same inputs on every machine and a finding is reproducible (at most a minute each).
    Runs(u64),
}

/// Runs `only` (or every target) within `budget` each; a crash fails the command, leaving the
/// input in `fuzz/artifacts/<target>/` (replay: `cargo +nightly fuzz run <target> <file>`).
pub fn main(budget: Budget, only: Option<&str>) -> Result<(), String> {
    let targets: Vec<&str> = match only {
        Some(name) if TARGETS.contains(&name) => vec![name],
        Some(name) => return Err(format!("no fuzz target `{name}`; the targets are {}", TARGETS.join(", "))),
        None => TARGETS.to_vec(),
    };
    install::nightly_with(&[])?;
    install::cargo_tool("cargo-fuzz", "cargo-fuzz")?;
    let fuzz = root().join("fuzz");
    for target in targets {
        let corpus = match budget {
            Budget::Seconds(_) => fuzz.join("corpus").join(target),
            // Always from an empty corpus: what the long runs found stays out of the smoke.
            Budget::Runs(_) => {
                let fresh = root().join("target").join("fuzz-smoke").join(target);
                let _ = std::fs::remove_dir_all(&fresh);
                fresh
            }
        };
        std::fs::create_dir_all(&corpus).map_err(|e| format!("cannot create {}: {e}", corpus.display()))?;
        // Through rustup, so that the nightly toolchain is picked whatever started xtask.
        run(Command::new("rustup")
            .current_dir(&fuzz)
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO")
            .args(["run", "nightly", "cargo", "fuzz", "run", "--debug-assertions", target])
            .arg(&corpus)
            .arg("--")
            .args(match budget {
                Budget::Seconds(seconds) => vec![format!("-max_total_time={seconds}")],
                Budget::Runs(runs) => {
                    vec![format!("-runs={runs}"), "-seed=1".into(), "-max_total_time=60".into()]
                }
            })
            .args(["-print_final_stats=1", "-rss_limit_mb=4096"]))?;
    }
    Ok(())
}
