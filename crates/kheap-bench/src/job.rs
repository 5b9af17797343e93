//! One job: one workload on one subject, in its own process (`kheap-bench --job W --subject S`).
//! The parent reads the single `RESULT {json}` line it prints; a verify failure exits with
//! [`EXIT_VERIFY_FAILED`], any other crash or hang is caught by the parent.

use std::cell::RefCell;
use std::time::Duration;

use serde_json::{json, Value};

use crate::arena::{Arena, HostMemory};
use crate::subjects::{Heap, Subject};
use crate::timer::Budget;
use crate::verify::{exit_failed, Checker, Verified};
use crate::workloads::Workload;

/// The seed of the run in progress, printed with any failure so that it can be replayed.
pub static SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Exit code of a job whose subject failed a verify check.
pub const EXIT_VERIFY_FAILED: i32 = 3;
/// Exit code of a job the subject cannot run (for example an arena size it does not support).
pub const EXIT_UNSUPPORTED: i32 = 4;
/// Exit code of a job that ran out of its own time budget.
pub const EXIT_OVER_BUDGET: i32 = 5;

/// How big and how long: the full run, `--quick`, the CI smoke, or instruction counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    Full,
    Quick,
    Smoke,
    Callgrind,
}

impl Scale {
    /// Picks one of the four values for this scale.
    pub fn pick<T>(self, full: T, quick: T, smoke: T, callgrind: T) -> T {
        match self {
            Scale::Full => full,
            Scale::Quick => quick,
            Scale::Smoke => smoke,
            Scale::Callgrind => callgrind,
        }
    }

    /// A budget for a loop that runs `full` in a full run.
    pub fn budget(self, full: Duration, steps_when_counting: u64) -> Budget {
        match self {
            Scale::Full => Budget::Time(full),
            Scale::Quick => Budget::Time(full / 4),
            Scale::Smoke => Budget::Steps(steps_when_counting / 20 + 1),
            Scale::Callgrind => Budget::Steps(steps_when_counting),
        }
    }
}

/// Why a workload could not produce a number.
#[derive(Debug)]
pub enum JobError {
    /// The subject cannot run this workload (reported, not dropped).
    Unsupported(String),
    /// The workload did not finish within its own time budget.
    OverBudget(String),
}

pub type Metrics = Vec<(&'static str, f64)>;

/// What a workload sees: the subject, the scale, and a way to build fresh heaps.
pub struct Ctx<'a> {
    pub subject: &'a Subject,
    pub scale: Scale,
    pub verify: bool,
    pub seed: u64,
    /// Whether this is the job's first run (deterministic extras are measured once).
    pub first_run: bool,
    memory: RefCell<Option<HostMemory>>,
}

impl<'a> Ctx<'a> {
    pub fn new(subject: &'a Subject, scale: Scale, verify: bool, seed: u64) -> Self {
        Ctx { subject, scale, verify, seed, first_run: true, memory: RefCell::new(None) }
    }

    /// An arena of `len` bytes at the start of the job's host memory (reserved on first use,
    /// at least 64 MiB, aligned to `ARENA_ALIGN`).
    pub fn arena(&self, len: usize) -> Arena {
        let mut memory = self.memory.borrow_mut();
        if memory.as_ref().is_none_or(|m| m.len() < len) {
            *memory = None;
            *memory = Some(HostMemory::new(len.max(64 << 20), self.scale != Scale::Smoke));
        }
        memory.as_ref().expect("just reserved").arena(len)
    }

    fn build_with(&self, len: usize, patterns: bool) -> Result<(Heap, Arena), JobError> {
        let arena = self.arena(len);
        let heap = (self.subject.build)(&arena).map_err(JobError::Unsupported)?;
        if !self.verify {
            return Ok((heap, arena));
        }
        let bounds = self.subject.in_arena.then(|| arena.start.addr()..arena.start.addr() + arena.len);
        Ok((Box::new(Verified::new(heap, Checker::new(bounds, patterns), exit_failed)), arena))
    }

    /// A fresh heap over an arena of `len` bytes; in verify mode every block is checked and
    /// pattern-filled (the workload must not write into its blocks).
    pub fn build(&self, len: usize) -> Result<Heap, JobError> {
        self.build_with(len, true).map(|(heap, _)| heap)
    }

    /// A fresh heap for workloads that write their blocks (collections): verify mode checks
    /// placement only.
    pub fn build_for_collections(&self, len: usize) -> Result<(Heap, Arena), JobError> {
        self.build_with(len, false)
    }
}

/// Runs `workload` `runs` times (seeds `seed`, `seed + 1`, ...), prints the median run's
/// metrics as `RESULT {json}`, and exits with the job's status.
pub fn run(workload: &Workload, subject: &Subject, scale: Scale, runs: u32, verify: bool, seed: u64) -> ! {
    eprintln!(
        "job {} x {}: seed {seed}, {runs} run(s), {scale:?}, verify {verify}",
        workload.name, subject.name
    );
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        eprintln!("(seed {}: replay with --seed)", SEED.load(std::sync::atomic::Ordering::Relaxed));
    }));
    SEED.store(seed, std::sync::atomic::Ordering::Relaxed);
    // In timed runs with --verify, one checked pass gates the measurement.
    if verify && scale != Scale::Smoke {
        let ctx = Ctx::new(subject, Scale::Smoke, true, seed);
        if let Err(e) = (workload.run)(&ctx) {
            exit_with(e, seed);
        }
    }
    let checked = verify && scale == Scale::Smoke;
    let mut results: Vec<Metrics> = Vec::new();
    for run in 0..runs {
        SEED.store(seed.wrapping_add(run as u64), std::sync::atomic::Ordering::Relaxed);
        let mut ctx = Ctx::new(subject, scale, checked, seed.wrapping_add(run as u64));
        ctx.first_run = run == 0;
        match (workload.run)(&ctx) {
            Ok(metrics) => results.push(metrics),
            Err(e) => exit_with(e, seed.wrapping_add(run as u64)),
        }
    }
    let primary =
        |m: &Metrics| m.iter().find(|(k, _)| *k == workload.metric.key).map_or(f64::NAN, |(_, v)| *v);
    results.sort_by(|a, b| primary(a).total_cmp(&primary(b)));
    let median = &results[results.len() / 2];
    let mut metrics: serde_json::Map<String, Value> =
        median.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    // Figures measured on one run only (the replay's arena search) come from that run.
    for (k, v) in results.iter().flatten() {
        metrics.entry(k.to_string()).or_insert_with(|| json!(v));
    }
    let all: Vec<f64> = results.iter().map(primary).collect();
    println!("RESULT {}", json!({ "metrics": metrics, "runs": all, "seed": seed }));
    std::process::exit(0)
}

fn exit_with(error: JobError, seed: u64) -> ! {
    match error {
        JobError::Unsupported(why) => {
            eprintln!("UNSUPPORTED: {why}");
            std::process::exit(EXIT_UNSUPPORTED)
        }
        JobError::OverBudget(why) => {
            eprintln!("OVER BUDGET (seed {seed}): {why}");
            std::process::exit(EXIT_OVER_BUDGET)
        }
    }
}
