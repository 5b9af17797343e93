//! kheap-bench: kheap against every peer, on the same arena, the same seeded operations and
//! the same lock. `cargo xtask bench --help` (or `cargo run --release -p kheap-bench -- --help`).
//!
//! The parent process runs each job (one workload on one subject) in a fresh child process
//! (`--job W --subject S`), so a crash or a hang is reported against that job and the run
//! goes on. Results go to `bench-results/<run-id>/` (JSON, CSV, SVG plots, a Markdown report);
//! `--publish` also writes `BENCHMARKS.md` at the repository root.

mod arena;
mod job;
mod plot;
mod report;
mod rng;
mod router;
mod runner;
mod subjects;
mod timer;
mod verify;
mod workloads;

use std::path::PathBuf;

use clap::{CommandFactory, Parser};

use job::Scale;

/// Benchmarks kheap's heaps against their peers from the crates registry.
///
/// Without options: every workload on every subject, 3 runs each (the full run, under
/// 40 minutes on 2 cores). Each job runs in its own process with a timeout.
#[derive(Parser, Debug)]
#[command(
    name = "kheap-bench",
    version,
    after_help = "Examples:\n  \
    cargo xtask bench --quick\n  \
    cargo xtask bench --subjects kheap-buddy,talc5 --workloads random_actions_200,mix_kernel --runs 5\n  \
    cargo xtask bench --workloads 'efficiency_*' --verify\n  \
    cargo xtask bench --callgrind --subjects kheap-first-fit,rlsf --workloads mix_small\n  \
    cargo xtask bench --list"
)]
pub struct Cli {
    /// Subjects to measure, comma-separated (default: all). See --list.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub subjects: Vec<String>,

    /// Workloads to run, comma-separated; a trailing `*` matches a prefix (default: all).
    #[arg(long, value_delimiter = ',', value_name = "X,Y")]
    pub workloads: Vec<String>,

    /// Shorter runs and fewer seeds (about a quarter of the full run's time).
    #[arg(long)]
    pub quick: bool,

    /// Runs per job; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,

    /// Rounds: every job runs this many times, the rounds interleaved (every job once, then
    /// every job again), and a job's figures are those of its median round by its primary
    /// metric (as a job's are those of its median run). A slow spell of a
    /// shared machine then falls on one round of a job, not on the job. Not for the smoke or
    /// instruction counts (always one round).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,

    /// Check every block (alignment, bounds, overlap, byte pattern) in one pass before timing;
    /// a subject failing a check is reported FAILED and not timed.
    #[arg(long)]
    pub verify: bool,

    /// The CI smoke: every workload on every subject, tiny sizes, verify on, one run.
    #[arg(long, conflicts_with_all = ["quick", "callgrind"])]
    pub smoke: bool,

    /// Count instructions with valgrind's callgrind inside the measured loop only, and report
    /// instructions per operation (fixed operation counts, one run).
    #[arg(long, conflicts_with = "quick")]
    pub callgrind: bool,

    /// Base seed of every random sequence (each run adds its index).
    #[arg(long, default_value_t = 0x5eed)]
    pub seed: u64,

    /// Output folder (default: `bench-results/<run-id>` at the repository root; the smoke writes
    /// under target/).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Also write BENCHMARKS.md at the repository root from this run.
    #[arg(long)]
    pub publish: bool,

    /// Folder of `*.trace.gz` allocation traces (default: traces/ at the repository root).
    #[arg(long, value_name = "DIR")]
    pub traces: Option<PathBuf>,

    /// Rewrite the report, plots (and BENCHMARKS.md with --publish) of an earlier run from its
    /// results.json, measuring nothing.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["smoke", "callgrind", "quick", "job"])]
    pub report_only: Option<PathBuf>,

    /// List subjects (with their configuration) and workloads, then exit.
    #[arg(long)]
    pub list: bool,

    /// Internal: run one job in this process (used by the parent).
    #[arg(long, hide = true, requires = "subject")]
    pub job: Option<String>,

    /// Internal: the subject of `--job`.
    #[arg(long, hide = true, requires = "job")]
    pub subject: Option<String>,
}

impl Cli {
    /// The scale the options ask for.
    pub fn scale(&self) -> Scale {
        if self.smoke {
            Scale::Smoke
        } else if self.callgrind {
            Scale::Callgrind
        } else if self.quick {
            Scale::Quick
        } else {
            Scale::Full
        }
    }
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

fn refuse(message: String) -> ! {
    Cli::command().error(clap::error::ErrorKind::InvalidValue, message).exit()
}

fn main() {
    let cli = Cli::parse();
    let traces = cli.traces.clone().unwrap_or_else(|| root().join("traces"));
    let all_subjects = subjects::all();
    let all_workloads = workloads::all(&traces);

    if let (Some(workload), Some(subject)) = (&cli.job, &cli.subject) {
        let w = all_workloads
            .iter()
            .find(|w| &w.name == workload)
            .unwrap_or_else(|| refuse(format!("no workload `{workload}`")));
        let s = all_subjects
            .iter()
            .find(|s| s.name == subject)
            .unwrap_or_else(|| refuse(format!("no subject `{subject}`")));
        let runs = if cli.smoke || cli.callgrind { 1 } else { cli.runs };
        job::run(w, s, cli.scale(), runs, cli.verify || cli.smoke, cli.seed);
    }

    if let Some(dir) = &cli.report_only {
        std::process::exit(runner::report_only(&cli, dir, &all_subjects, &all_workloads));
    }

    if cli.list {
        println!("Subjects:");
        for s in &all_subjects {
            println!("  {:<24} [{}] {}", s.name, s.family.label(), s.config);
        }
        println!("\nWorkloads:");
        for w in &all_workloads {
            println!("  {:<32} {}", w.name, w.title);
        }
        return;
    }

    let subjects: Vec<&subjects::Subject> = if cli.subjects.is_empty() {
        all_subjects.iter().collect()
    } else {
        cli.subjects
            .iter()
            .map(|name| {
                all_subjects.iter().find(|s| s.name == name).unwrap_or_else(|| {
                    let known: Vec<&str> = all_subjects.iter().map(|s| s.name).collect();
                    refuse(format!("unknown subject `{name}`; known: {}", known.join(", ")))
                })
            })
            .collect()
    };
    let workloads: Vec<&workloads::Workload> = if cli.workloads.is_empty() {
        all_workloads.iter().collect()
    } else {
        let mut chosen = Vec::new();
        for pattern in &cli.workloads {
            let matches: Vec<&workloads::Workload> = all_workloads
                .iter()
                .filter(|w| match pattern.strip_suffix('*') {
                    Some(prefix) => w.name.starts_with(prefix),
                    None => &w.name == pattern,
                })
                .collect();
            if matches.is_empty() {
                let known: Vec<&str> = all_workloads.iter().map(|w| w.name.as_str()).collect();
                refuse(format!("unknown workload `{pattern}`; known: {}", known.join(", ")));
            }
            for w in matches {
                if !chosen.iter().any(|c: &&workloads::Workload| c.name == w.name) {
                    chosen.push(w);
                }
            }
        }
        chosen
    };
    std::process::exit(runner::run(&cli, &subjects, &workloads));
}
