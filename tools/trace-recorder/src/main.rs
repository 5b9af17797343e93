//! trace-recorder: records the allocation traces that kheap-bench replays
//! (issue 7), and checks them.
//!
//! ```text
//! trace-recorder --out DIR [--only NAME,...]   record every (or the named) workload into DIR
//! trace-recorder --check DIR                   validate DIR/*.trace.gz and print their figures
//! trace-recorder --list                        list the workloads
//! ```
//!
//! Each workload is recorded in a fresh child process of this program, so a
//! trace never depends on which workloads ran before it in the same process
//! (lazily initialised statics, warmed-up buffers) and recordings stay
//! deterministic whatever `--only` selects.

mod recorder;
mod trace;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use workloads::{Workload, ALL};

mod locked {
    include!(concat!(env!("OUT_DIR"), "/locked.rs"));
}

#[global_allocator]
static ALLOCATOR: recorder::RecordingAlloc = recorder::RecordingAlloc;

/// Events one recording can hold (40 bytes each, allocated up front). The
/// workloads are sized to stay well below it; a run that fills it is written
/// as a truncated trace and says so in its header.
const MAX_EVENTS: usize = 2_000_000;

const USAGE: &str = "\
usage: trace-recorder --out DIR [--only NAME,...]   record the workloads' traces into DIR
       trace-recorder --check DIR                   validate DIR/*.trace.gz, print their figures
       trace-recorder --list                        list the workloads
       trace-recorder --help";

enum Mode {
    Record { out: PathBuf, only: Option<Vec<String>> },
    RecordOne { out: PathBuf, name: String },
    Check { dir: PathBuf },
    List,
    Help,
}

fn parse_args(args: &[String]) -> Result<Mode, String> {
    let mut out = None;
    let mut only = None;
    let mut one = None;
    let mut check = None;
    let mut list = false;
    let mut help = false;
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        let next = args.get(i + 1).cloned();
        let value = || next.clone().ok_or_else(|| format!("{flag} needs a value"));
        // Flags that take a value step over it.
        if matches!(flag, "--out" | "--only" | "--record-one" | "--check") {
            i += 1;
        }
        match flag {
            "--out" => out = Some(PathBuf::from(value()?)),
            "--only" => only = Some(value()?.split(',').map(str::to_string).collect::<Vec<_>>()),
            // Internal: how the parent asks a child process for one workload.
            "--record-one" => one = Some(value()?),
            "--check" => check = Some(PathBuf::from(value()?)),
            "--list" => list = true,
            "--help" | "-h" => help = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
        i += 1;
    }
    for n in only.iter().flatten().chain(one.iter()) {
        if !ALL.iter().any(|w| w.name == n) {
            return Err(format!("no workload named {n:?} (see --list)"));
        }
    }
    match (out, only, one, check, list, help) {
        (_, _, _, _, _, true) => Ok(Mode::Help),
        (None, None, None, None, true, false) => Ok(Mode::List),
        (None, None, None, Some(dir), false, false) => Ok(Mode::Check { dir }),
        (Some(out), None, Some(name), None, false, false) => Ok(Mode::RecordOne { out, name }),
        (Some(out), only, None, None, false, false) => Ok(Mode::Record { out, only }),
        _ => Err("give exactly one of --out, --check, --list".into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match parse_args(&args) {
        Err(e) => {
            eprintln!("trace-recorder: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
        Ok(Mode::Help) => {
            println!("{USAGE}");
            Ok(())
        }
        Ok(Mode::List) => {
            for w in ALL {
                println!("{:<10} {} {}: {}", w.name, w.krate, version_of(w.krate), w.what);
            }
            Ok(())
        }
        Ok(Mode::Record { out, only }) => record_all(&out, only.as_deref()),
        Ok(Mode::RecordOne { out, name }) => record_one(&out, &name),
        Ok(Mode::Check { dir }) => check_dir(&dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trace-recorder: {e}");
            ExitCode::FAILURE
        }
    }
}

fn version_of(krate: &str) -> &'static str {
    locked::LOCKED.iter().find(|(n, _)| *n == krate).map_or("(unlocked)", |(_, v)| v)
}

fn record_all(out: &Path, only: Option<&[String]>) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    for w in ALL.iter().filter(|w| only.is_none_or(|o| o.iter().any(|n| n == w.name))) {
        let status = Command::new(&exe)
            .arg("--out")
            .arg(out)
            .arg("--record-one")
            .arg(w.name)
            .status()
            .map_err(|e| format!("cannot start a child process: {e}"))?;
        if !status.success() {
            return Err(format!("recording {} failed ({status})", w.name));
        }
    }
    // Read back what was written, so a recording is never left unchecked.
    check_dir(out)
}

fn record_one(out: &Path, name: &str) -> Result<(), String> {
    let w: &Workload = ALL.iter().find(|w| w.name == name).ok_or_else(|| format!("no workload {name:?}"))?;
    let mut work = (w.prepare)();
    recorder::start(MAX_EVENTS);
    work();
    let (events, truncated) = recorder::stop();
    // The input is freed only now, outside the recording.
    drop(work);
    let description = format!("{} {}: {}", w.krate, version_of(w.krate), w.what);
    let (text, summary, untracked) = trace::render(w.name, &description, &events, truncated);
    let path = out.join(format!("{}.trace.gz", w.name));
    trace::write_gz(&path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    println!(
        "recorded {:<10} {:>8} events, peak {:>10} live bytes, {:>7} live blocks max{}; untracked: {} frees, {} reallocs",
        w.name,
        summary.events,
        summary.peak_live_bytes,
        summary.max_live_blocks,
        if truncated { " (TRUNCATED)" } else { "" },
        untracked.frees,
        untracked.reallocs
    );
    Ok(())
}

fn check_dir(dir: &Path) -> Result<(), String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(".trace.gz")))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(format!("no *.trace.gz in {}", dir.display()));
    }
    println!(
        "| trace | crate | events | allocs | frees | reallocs | peak live bytes | max live blocks | live at end (blocks / bytes) | file bytes |"
    );
    println!("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    let mut total = 0;
    for path in &paths {
        let (name, description, s) = trace::check(path)?;
        let size = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.len();
        total += size;
        let krate = description.split(':').next().unwrap_or("");
        println!(
            "| {name} | {krate} | {} | {} | {} | {} | {} | {} | {} / {} | {size} |",
            s.events,
            s.allocs,
            s.frees,
            s.reallocs,
            s.peak_live_bytes,
            s.max_live_blocks,
            s.live_blocks_at_end,
            s.live_bytes_at_end
        );
    }
    println!("\n{} traces checked, all valid; {total} bytes on disk", paths.len());
    Ok(())
}
