//! `cargo xtask fuzz`: the cargo-fuzz targets of `fuzz/` (their own workspace), each run for a
//! bounded time with debug assertions on, so overflow checks fire as in the test build.

use std::process::Command;

use crate::{install, root, run};

/// The targets in `fuzz/fuzz_targets/`, one per algorithm, one for the default `Heap` and one for
/// the locked front.
pub const TARGETS: &[&str] = &["buddy", "first_fit", "tlsf", "heap", "locked"];

/// Runs `only` (or every target) for `seconds` each; a crash fails the command, leaving the
/// input in `fuzz/artifacts/<target>/` (replay: `cargo +nightly fuzz run <target> <file>`).
pub fn main(seconds: u64, only: Option<&str>) -> Result<(), String> {
    let targets: Vec<&str> = match only {
        Some(name) if TARGETS.contains(&name) => vec![name],
        Some(name) => return Err(format!("no fuzz target `{name}`; the targets are {}", TARGETS.join(", "))),
        None => TARGETS.to_vec(),
    };
    install::nightly_with(&[])?;
    install::cargo_tool("cargo-fuzz", "cargo-fuzz")?;
    let fuzz = root().join("fuzz");
    for target in targets {
        let corpus = fuzz.join("corpus").join(target);
        std::fs::create_dir_all(&corpus).map_err(|e| format!("cannot create {}: {e}", corpus.display()))?;
        // Through rustup, so that the nightly toolchain is picked whatever started xtask.
        run(Command::new("rustup")
            .current_dir(&fuzz)
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO")
            .args(["run", "nightly", "cargo", "fuzz", "run", "--debug-assertions", target])
            .arg(&corpus)
            .args([
                "--",
                &format!("-max_total_time={seconds}"),
                "-print_final_stats=1",
                "-rss_limit_mb=4096",
            ]))?;
    }
    Ok(())
}
