//! Project commands, run as `cargo xtask <command>`:
//!
//! - `cargo xtask qemu [--compat]`: build the demo kernel and boot it in QEMU (the main job).
//! - `cargo xtask test`: the whole test suite, as CI runs it.
//! - `cargo xtask bench`: benchmarks against the peers from crates.io.
//!
//! Each command installs what it needs and is missing (rustup targets and components, QEMU).

mod install;
mod qemu;

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("qemu") => qemu::main(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("miri") => miri(),
        _ => {
            eprintln!("usage: cargo xtask <qemu [--compat] | test | bench [--runs N] [--only ALLOCATOR] [--workload NAME] | miri>");
            return ExitCode::from(2);
        }
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

fn describe(command: &Command) -> String {
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
    install::rust_components(&["rustfmt", "clippy"])?;
    install::rust_target("riscv64gc-unknown-none-elf")?;
    let cargo_here = |args: &[&str]| run(cargo().current_dir(root()).args(args));
    let riscv = "riscv64gc-unknown-none-elf";
    // A 32-bit bare-metal target too: the granule and the largest buddy order differ there.
    let riscv32 = "riscv32imac-unknown-none-elf";
    install::rust_target(riscv32)?;
    cargo_here(&["fmt", "--all", "--", "--check"])?;
    cargo_here(&["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"])?;
    cargo_here(&["test", "--workspace", "--all-features"])?;
    run(cargo().current_dir(root()).env("RUSTDOCFLAGS", "-D warnings").args([
        "doc",
        "--no-deps",
        "--all-features",
        "-p",
        "kheap",
    ]))?;
    cargo_here(&["build", "-p", "kheap", "--all-features", "--target", riscv])?;
    cargo_here(&["clippy", "-p", "kheap", "--all-features", "--target", riscv, "--", "-D", "warnings"])?;
    cargo_here(&["clippy", "-p", "kheap", "--all-features", "--target", riscv32, "--", "-D", "warnings"])?;
    qemu::test()?;
    miri()?;
    eprintln!("xtask test: all checks passed");
    Ok(())
}

fn bench(args: &[String]) -> Result<(), String> {
    let root = root();
    run(cargo().current_dir(&root).args(["run", "--release", "-p", "kheap-bench", "--"]).args(args))
}

fn miri() -> Result<(), String> {
    install::nightly_with(&["miri", "rust-src"])?;
    let root = root();
    let miri = |args: &[&str]| {
        // Through rustup, so that the nightly toolchain is picked whatever started xtask.
        run(Command::new("rustup")
            .current_dir(&root)
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO")
            .env("MIRIFLAGS", "-Zmiri-strict-provenance")
            .args(["run", "nightly", "cargo", "miri", "test"])
            .args(args))
    };
    // The library's own tests, then the parts of the conformance suite that are quick under
    // Miri (the random scripts and the 1 MiB sweeps take hours there; they run natively), on a
    // 64-bit and a 32-bit target (the granule, the largest order and the bitmaps differ).
    for target in ["x86_64-unknown-linux-gnu", "i686-unknown-linux-gnu"] {
        miri(&["--target", target, "-p", "kheap", "--lib"])?;
        miri(&[
            "--target",
            target,
            "-p",
            "kheap-testkit",
            "--test",
            "conformance",
            "--",
            "touching_regions_added",
            "grow_and_shrink",
            "statistics",
        ])?;
    }
    Ok(())
}
