//! Project commands, run as `cargo xtask <command>` (`cargo xtask --help`):
//!
//! - `cargo xtask qemu [--compat | --debug-demo]`: build the demo kernel and boot it in QEMU (the main job;
//!   `--debug-demo`: its heap in debug mode, showing one overrun report).
//! - `cargo xtask test`: the whole test suite, as CI runs it (with the benchmark smoke).
//! - `cargo xtask bench [OPTIONS]`: benchmarks against the peers from crates.io
//!   (`cargo xtask bench --help` lists the options).
//! - `cargo xtask miri`: the library's tests under Miri.
//! - `cargo xtask fuzz [--time S] [--target NAME]`: the cargo-fuzz targets in `fuzz/`.
//! - `cargo xtask loom`: the loom models of the locks and the locked front.
//! - `cargo xtask stress [--time S] [--seed N]`: the host stress test (threads with
//!   cross-thread frees over the default heap) in release, for as long as asked.
//!
//! Each command installs what it needs and is missing (rustup targets and components, QEMU).

mod fuzz;
mod install;
mod qemu;

use std::process::{Command, ExitCode};
use std::time::Instant;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "kheap's project commands", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// The whole test suite, as CI runs it, including a smoke of every benchmark job.
    Test,
    /// Build the demo kernel and boot it in QEMU.
    Qemu {
        /// Build the kernel that uses the tutorial-compatible file.
        #[arg(long, conflicts_with = "debug_demo")]
        compat: bool,
        /// Build the kernel whose heap is in debug mode, commits one overrun and shows the report.
        #[arg(long)]
        debug_demo: bool,
    },
    /// Benchmarks against every peer: options go to kheap-bench (`cargo xtask bench --help`).
    #[command(disable_help_flag = true)]
    Bench {
        /// Options for kheap-bench, e.g. `--quick`, `--subjects a,b`, `--workloads x,y`, `--runs N`,
        /// `--verify`, `--callgrind`, `--publish`, `--help`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// The library's tests under Miri.
    Miri,
    /// The loom models of the locks and the locked front (`crates/kheap/tests/loom.rs`).
    Loom,
    /// The cargo-fuzz targets (`fuzz/`), each for `--time` seconds (installs nightly and
    /// cargo-fuzz if missing).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        time: u64,
        /// Only this target (`buddy`, `first_fit`, `tlsf`, `hardened`, `heap`, `locked`); all by default.
        #[arg(long)]
        target: Option<String>,
    },
    /// The host stress test (`crates/kheap-testkit/tests/stress.rs`) in release: four threads
    /// with cross-thread frees over the default heap behind one lock, then behind the per-CPU
    /// front, each for `--time` seconds, ending with the heap whole (`cargo test` runs it for
    /// 2 seconds each).
    Stress {
        /// Seconds per front.
        #[arg(long, default_value_t = 60)]
        time: u64,
        /// Base seed of the threads' operations (each thread adds its index); drawn from the
        /// clock and printed when not given.
        #[arg(long)]
        seed: Option<u64>,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Task::Test => test(),
        Task::Qemu { compat, debug_demo } => {
            let flag = if compat { Some("--compat") } else { debug_demo.then_some("--debug-demo") };
            qemu::main(&flag.map(String::from).into_iter().collect::<Vec<_>>())
        }
        Task::Bench { args } => bench(&args),
        Task::Miri => miri(),
        Task::Loom => loom(),
        Task::Fuzz { time, target } => fuzz::main(fuzz::Budget::Seconds(time), target.as_deref()),
        Task::Stress { time, seed } => stress(time, seed),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command, streaming its output; fails with the command line if it fails.
pub fn run(command: &mut Command) -> Result<(), String> {
    eprintln!("$ {}", describe(command));
    let status = command.status().map_err(|e| format!("cannot start {}: {e}", describe(command)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed ({status})", describe(command)))
    }
}

/// A command as one line, to show what runs.
pub fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// `cargo` as the one running xtask.
pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// The repository root (xtask lives one level below it).
pub fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent").to_path_buf()
}

fn test() -> Result<(), String> {
    let started = Instant::now();
    let mut phases = Phases::default();
    phases.run("set-up", || {
        install::rust_components(&["rustfmt", "clippy"])?;
        install::rust_target(RISCV64)?;
        install::rust_target(RISCV32)
    })?;
    let cargo_here = |args: &[&str]| run(cargo().current_dir(root()).args(args));
    phases.run("fmt and clippy", || {
        cargo_here(&["fmt", "--all", "--", "--check"])?;
        cargo_here(&["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"])
    })?;
    phases.run("cargo test", || cargo_here(&["test", "--workspace", "--all-features"]))?;
    // Every benchmark workload on every subject, tiny sizes, verify on: seconds, not minutes.
    phases.run("benchmark smoke", || bench(&["--smoke".to_string()]))?;
    phases.run("docs and bare-metal builds", || {
        run(cargo().current_dir(root()).env("RUSTDOCFLAGS", "-D warnings").args([
            "doc",
            "--no-deps",
            "--all-features",
            "-p",
            "kheap",
        ]))?;
        cargo_here(&["build", "-p", "kheap", "--all-features", "--target", RISCV64])?;
        for target in [RISCV64, RISCV32] {
            cargo_here(&[
                "clippy",
                "-p",
                "kheap",
                "--all-features",
                "--target",
                target,
                "--",
                "-D",
                "warnings",
            ])?;
        }
        Ok(())
    })?;
    phases.run("MSRV", msrv)?;
    phases.run("loom", loom)?;
    // Each fuzz target for 20,000 inputs from a fixed seed (the seeded twin of its scripts ran
    // in `cargo test`; `cargo xtask fuzz` runs them for as long as asked).
    phases.run("fuzz smoke", || fuzz::main(fuzz::Budget::Runs(20_000), None))?;
    phases.run("demo kernel in QEMU", qemu::test)?;
    phases.run("Miri", miri)?;
    eprintln!(
        "xtask test: all checks passed in {:.0} s ({})",
        started.elapsed().as_secs_f64(),
        phases.summary()
    );
    Ok(())
}

/// The bare-metal targets the library is built for: a 64-bit one (the demo kernel's), and a
/// 32-bit one, where the granule and the largest buddy order differ.
const RISCV64: &str = "riscv64gc-unknown-none-elf";
const RISCV32: &str = "riscv32imac-unknown-none-elf";

/// How long each phase of `cargo xtask test` took, so that a slow one shows (the whole must
/// stay well within CI's limit).
#[derive(Default)]
struct Phases(Vec<(&'static str, f64)>);

impl Phases {
    /// Runs `phase`, prints how long it took, and keeps the figure for the summary.
    fn run(&mut self, name: &'static str, phase: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        let started = Instant::now();
        let outcome = phase();
        let seconds = started.elapsed().as_secs_f64();
        self.0.push((name, seconds));
        let verdict = if outcome.is_ok() { "done" } else { "failed" };
        eprintln!("xtask test: {name} {verdict} in {seconds:.0} s");
        outcome
    }

    /// "name N s, ..." for every phase run.
    fn summary(&self) -> String {
        self.0.iter().map(|(name, seconds)| format!("{name} {seconds:.0} s")).collect::<Vec<_>>().join(", ")
    }
}

/// The library's declared MSRV (`rust-version` in the workspace manifest), checked by building
/// and testing the library with that toolchain (the bench and test-kit crates may need newer).
const MSRV: &str = "1.84";

fn msrv() -> Result<(), String> {
    install::toolchain(MSRV)?;
    run(Command::new("rustup").current_dir(root()).env_remove("RUSTUP_TOOLCHAIN").env_remove("CARGO").args([
        "run",
        MSRV,
        "cargo",
        "test",
        "-p",
        "kheap",
        "--all-features",
        "--target-dir",
        "target/msrv",
    ]))
}

fn bench(args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "--callgrind") {
        install::debian_package("valgrind", "valgrind")?;
    }
    let root = root();
    run(cargo().current_dir(&root).args(["run", "--release", "-p", "kheap-bench", "--"]).args(args))
}

/// The loom models, built with `--cfg loom` (the locks' atomics become loom's) in a target
/// directory of their own, so the usual build is not rebuilt. Bounded (a preemption bound of
/// 3 in each model): about a second of checking once built.
fn loom() -> Result<(), String> {
    run(cargo()
        .current_dir(root())
        .env("RUSTFLAGS", "--cfg loom")
        .args(["test", "--release", "-p", "kheap", "--test", "loom", "--target-dir", "target/loom"])
        .args(["--", "--nocapture", "--test-threads", "1"]))
}

/// The stress test in release (minutes of it in a debug build would be mostly overhead), its
/// two fronts one after the other so that each has the four threads to itself.
fn stress(seconds: u64, seed: Option<u64>) -> Result<(), String> {
    let seed = seed.unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        now.as_secs() ^ u64::from(now.subsec_nanos())
    });
    eprintln!("xtask stress: {seconds} s per front, seed {seed} (replay with --seed {seed})");
    run(cargo()
        .current_dir(root())
        .env("KHEAP_STRESS_SECONDS", seconds.to_string())
        .env("KHEAP_STRESS_SEED", seed.to_string())
        .args(["test", "--release", "-p", "kheap-testkit", "--test", "stress"])
        .args(["--", "--nocapture", "--test-threads", "1"]))
}

fn miri() -> Result<(), String> {
    install::nightly_with(&["miri", "rust-src"])?;
    // nextest runs each test in a process of its own, so Miri interprets them on every core
    // (one `cargo miri test` interprets them all in one process, on one core).
    install::cargo_tool("cargo-nextest", "cargo-nextest")?;
    let root = root();
    let miri = |args: &[&str]| {
        // Through rustup, so that the nightly toolchain is picked whatever started xtask.
        run(Command::new("rustup")
            .current_dir(&root)
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO")
            .env("MIRIFLAGS", "-Zmiri-strict-provenance")
            .args(["run", "nightly", "cargo", "miri", "nextest", "run", "--no-fail-fast"])
            .args(args))
    };
    // The library's own tests, then the parts of the conformance suite that are quick under
    // Miri (the random scripts and the 1 MiB sweeps take hours there; they run natively), over
    // every heap and layer, on a 64-bit and a 32-bit target (the granule, the largest order and
    // the bitmaps differ). The 32-bit run leaves to the 64-bit one what does not depend on the
    // word size and took minutes a test there: the debug layer's, the per-CPU caches' and the
    // hardened TLSF heap's own tests and conformance, and the slab layer's over a threshold
    // (the plain algorithms and layers below them, whose 32-bit tests do run, hold the
    // word-size-dependent code) and the statistics check (a 1 MiB arena walked many times).
    // Both leave out the default heap with slabs at once (the same code as `slab_tlsf`, which
    // runs) and the counting layer over each heap (forwarding and counters, no unsafe code of
    // its own; natively it runs the whole suite).
    for (target, unit_tests, conformance) in [
        (
            "x86_64-unknown-linux-gnu",
            "all()",
            "test(/::(touching_regions_added|grow_and_shrink|statistics)/) and not test(/^(default_heap_slabs_at_once|counted_[a-z_]+)::/)",
        ),
        (
            "i686-unknown-linux-gnu",
            "not test(/^(layers::guarded|fronts::per_cpu|algorithms::tlsf::hardened_tests)::/)",
            "test(/::(touching_regions_added|grow_and_shrink)/) and not test(/^((slab_)?hardened_tlsf|default_heap_slabs_at_once|slab_tlsf_from_64k|guarded_[a-z_]+|counted_[a-z_]+)::/)",
        ),
    ] {
        miri(&["--target", target, "-p", "kheap", "--lib", "-E", unit_tests])?;
        miri(&["--target", target, "-p", "kheap-testkit", "--test", "conformance", "-E", conformance])?;
    }
    Ok(())
}
