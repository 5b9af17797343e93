//! `cargo xtask qemu`: build the demo kernel and boot it in QEMU.
//!
//! The kernel (in `kernel/`, a Cargo workspace of its own) runs its test suite and ends its
//! console output with a line `N passed, M failed`, then powers QEMU off through the `virt`
//! test device with exit code 0 (all passed) or non-zero. A run passes when QEMU exits 0
//! within [`TIME_LIMIT`], the verdict line is there with `N > 0` and `M == 0`, and no test
//! line says `FAILED`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::{cargo, root, run};

/// The kernel's target (also named in `kernel/.cargo/config.toml`).
const TARGET: &str = crate::RISCV64;
/// The kernel's binary name (its package name).
const KERNEL: &str = "kheap-demo-kernel";
/// How long one boot may take, tests included; QEMU is killed after that.
const TIME_LIMIT: Duration = Duration::from_secs(120);
/// Harts QEMU gives the kernel; the multi-hart test starts all of them.
const HARTS: &str = "4";

/// Environment a `cargo xtask` run may carry that would override the kernel's own
/// `.cargo/config.toml` (its target, linker script and target directory).
const FOREIGN_ENV: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
];

/// The kernel builds: which feature each turns on (`None`: the default build).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Build {
    Default,
    /// The tutorial's heap file (`--features compat`).
    Compat,
    /// The heap in debug mode, one deliberate overrun (`--features debug-demo`).
    DebugDemo,
}

impl Build {
    const ALL: [Build; 3] = [Build::Default, Build::Compat, Build::DebugDemo];

    fn feature(self) -> Option<&'static str> {
        match self {
            Build::Default => None,
            Build::Compat => Some("compat"),
            Build::DebugDemo => Some("debug-demo"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Build::Default => "default build",
            Build::Compat => "compat build",
            Build::DebugDemo => "debug-demo build",
        }
    }

    /// The build's verdict: the kernel's own, and for the debug demo also the report on the
    /// console (the kernel's verdict says its hook saw it; this checks it was printed).
    fn verdict(self, outcome: &Outcome) -> Result<(), String> {
        outcome.verdict()?;
        if self == Build::DebugDemo
            && !outcome.console.lines().any(|l| l.contains("kheap: deallocate(") && l.contains("(overrun)"))
        {
            return Err("the debug demo printed no overrun report".into());
        }
        Ok(())
    }
}

/// `cargo xtask qemu [--compat | --debug-demo]`.
pub fn main(args: &[String]) -> Result<(), String> {
    let which = match args {
        [] => Build::Default,
        [flag] if flag == "--compat" => Build::Compat,
        [flag] if flag == "--debug-demo" => Build::DebugDemo,
        _ => return Err("usage: cargo xtask qemu [--compat | --debug-demo]".into()),
    };
    install()?;
    let elf = build(which)?;
    let outcome = boot(&elf)?;
    which.verdict(&outcome)
}

/// Boots both kernel builds and checks their verdicts (part of `cargo xtask test`); also keeps
/// the kernel's sources formatted and clippy-clean, since the host workspace excludes them.
pub fn test() -> Result<(), String> {
    install()?;
    let kernel = kernel_dir();
    run(kernel_cargo(&kernel).args(["fmt", "--", "--check"]))?;
    for which in Build::ALL {
        let mut clippy = kernel_cargo(&kernel);
        clippy.args(["clippy", "--release"]);
        if let Some(feature) = which.feature() {
            clippy.args(["--features", feature]);
        }
        run(clippy.args(["--", "-D", "warnings"]))?;
    }
    for which in Build::ALL {
        let elf = build(which)?;
        let outcome = boot(&elf)?;
        which.verdict(&outcome).map_err(|e| format!("{}: {e}", which.name()))?;
        eprintln!("xtask qemu: {} passed in {:.1} s", which.name(), outcome.elapsed.as_secs_f64());
    }
    Ok(())
}

/// Installs the rustup target and QEMU if they are missing.
fn install() -> Result<(), String> {
    crate::install::rust_target(TARGET)?;
    crate::install::debian_package("qemu-system-riscv64", "qemu-system-misc")
}

fn kernel_dir() -> PathBuf {
    root().join("kernel")
}

/// `cargo` in the kernel's folder, so that its `.cargo/config.toml` applies, with its own
/// target directory and without flags meant for the host build.
fn kernel_cargo(kernel: &Path) -> Command {
    let mut command = cargo();
    command.current_dir(kernel);
    for name in FOREIGN_ENV {
        command.env_remove(name);
    }
    command.env("CARGO_TARGET_DIR", kernel.join("target"));
    command
}

/// Builds the kernel with the build's feature; returns the ELF.
fn build(which: Build) -> Result<PathBuf, String> {
    let kernel = kernel_dir();
    let mut command = kernel_cargo(&kernel);
    command.args(["build", "--release"]);
    if let Some(feature) = which.feature() {
        command.args(["--features", feature]);
    }
    run(&mut command)?;
    let elf = kernel.join("target").join(TARGET).join("release").join(KERNEL);
    if elf.is_file() {
        Ok(elf)
    } else {
        Err(format!("the kernel build left no {}", elf.display()))
    }
}

/// What one boot printed and how it ended.
struct Outcome {
    console: String,
    /// `None` when QEMU was killed at the time limit.
    status: Option<ExitStatus>,
    elapsed: Duration,
}

/// Boots `elf` in QEMU, streaming the console (without `\r`) while it runs; kills QEMU at
/// the time limit.
fn boot(elf: &Path) -> Result<Outcome, String> {
    let mut command = Command::new("qemu-system-riscv64");
    command
        .args(["-machine", "virt", "-bios", "default", "-nographic", "-smp", HARTS, "-kernel"])
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    eprintln!("$ {}", crate::describe(&command));
    let started = Instant::now();
    let mut child = command.spawn().map_err(|e| format!("cannot start qemu-system-riscv64: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("QEMU has no stdout pipe")?;
    let (sender, receiver) = mpsc::channel::<Vec<u8>>();
    // Reads the console until QEMU closes it; the main thread keeps the clock.
    let reader = thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(count @ 1..) = stdout.read(&mut buffer) {
            if sender.send(buffer[..count].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut console = Vec::new();
    let mut out = std::io::stdout();
    let status = loop {
        let left = TIME_LIMIT.saturating_sub(started.elapsed());
        match receiver.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok(bytes) => {
                let text: Vec<u8> = bytes.into_iter().filter(|&b| b != b'\r').collect();
                // The console is shown as it comes; a closed terminal must not stop the run.
                let _ = out.write_all(&text).and_then(|()| out.flush());
                console.extend_from_slice(&text);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // The console closed: QEMU is exiting. Poll, so the time limit still holds.
                match child.try_wait().map_err(|e| format!("waiting for QEMU: {e}"))? {
                    Some(status) => break Some(status),
                    None => thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        if started.elapsed() >= TIME_LIMIT {
            // Killing fails only if QEMU already exited, which `wait` then reports anyway.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
    };
    // The pipe closes when QEMU is gone, so the reader ends; a panic in it loses no verdict.
    let _ = reader.join();
    Ok(Outcome {
        console: String::from_utf8_lossy(&console).into_owned(),
        status,
        elapsed: started.elapsed(),
    })
}

impl Outcome {
    /// `Ok` when the kernel passed: see the module documentation.
    fn verdict(&self) -> Result<(), String> {
        let Some(status) = self.status else {
            return Err(format!("QEMU was still running after {} s and was killed", TIME_LIMIT.as_secs()));
        };
        let failed_tests: Vec<&str> =
            self.console.lines().filter(|l| l.starts_with("test ") && l.contains("FAILED")).collect();
        let counts = self.console.lines().rev().find_map(parse_verdict);
        let announced = self
            .console
            .lines()
            .find_map(|l| l.strip_prefix("running ")?.strip_suffix(" tests")?.parse::<usize>().ok());
        eprintln!(
            "xtask qemu: QEMU {status} after {:.1} s; verdict line: {}",
            self.elapsed.as_secs_f64(),
            counts.map_or("missing".into(), |(p, f)| format!("{p} passed, {f} failed"))
        );
        if !failed_tests.is_empty() {
            return Err(format!("failed in the kernel:\n  {}", failed_tests.join("\n  ")));
        }
        match counts {
            None => Err("the kernel printed no `N passed, M failed` line".into()),
            Some((_, failed)) if failed > 0 => Err(format!("{failed} kernel tests failed")),
            Some((0, _)) => Err("the kernel ran no test".into()),
            Some((passed, failed)) if announced != Some(passed + failed) => Err(format!(
                "the kernel announced {announced:?} tests but reported {} ({passed} passed, {failed} failed)",
                passed + failed
            )),
            Some(_) if !status.success() => Err(format!("QEMU exited with {status}")),
            Some(_) => Ok(()),
        }
    }
}

/// `(N, M)` from a line that is exactly `N passed, M failed`.
fn parse_verdict(line: &str) -> Option<(usize, usize)> {
    let (passed, failed) = line.strip_suffix(" failed")?.split_once(" passed, ")?;
    let is_number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !is_number(passed) || !is_number(failed) {
        return None;
    }
    Some((passed.parse().ok()?, failed.parse().ok()?))
}
