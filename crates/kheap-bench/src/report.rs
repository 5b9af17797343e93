//! Writing a run out: `results.json`, `results.csv`, one SVG plot per workload, `REPORT.md`
//! (and, with `--publish`, `BENCHMARKS.md` at the repository root).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::job::Scale;
use crate::plot;
use crate::runner::{JobResult, Status};
use crate::subjects::{Family, Subject};
use crate::workloads::Workload;

pub struct Context<'a> {
    pub id: &'a str,
    pub scale: Scale,
    /// Runs per job (1 for the smoke and instruction counts).
    pub runs: u32,
    /// Rounds of every job; a job's figures are those of its median round.
    pub rounds: u32,
    pub seed: u64,
    /// Also write BENCHMARKS.md at the repository root.
    pub publish: bool,
    pub machine: &'a str,
    pub command: &'a str,
    pub elapsed: Duration,
    pub out: &'a Path,
}

/// CPU model, core count, OS and compiler, for every report.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let rustc = std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-V")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "rustc (unknown version)".into());
    format!("{cpu}, {cores} cores, {} {}, {rustc}", std::env::consts::OS, std::env::consts::ARCH)
}

/// The metric a workload is judged by at this scale (instructions per operation when counting).
pub fn primary_key(workload: &Workload, scale: Scale) -> &'static str {
    if scale == Scale::Callgrind {
        "instructions_per_op"
    } else {
        workload.metric.key
    }
}

fn higher_is_better(workload: &Workload, scale: Scale) -> bool {
    scale != Scale::Callgrind && workload.metric.higher_is_better
}

fn metric_label(workload: &Workload, scale: Scale) -> String {
    if scale == Scale::Callgrind {
        "instructions per operation (callgrind, measured loop only)".into()
    } else {
        workload.metric.label.into()
    }
}

/// Best kheap heap against best peer on one workload.
pub struct Headline<'a> {
    pub workload: &'a str,
    pub kheap: Option<(&'a str, f64)>,
    pub peer: Option<(&'a str, f64)>,
    /// > 1: kheap's best is better than the best peer.
    pub ratio: Option<f64>,
}

fn best<'a>(results: &[&'a JobResult], family: Family, key: &str, higher: bool) -> Option<(&'a str, f64)> {
    results
        .iter()
        .filter(|r| r.family == family && r.status == Status::Ok)
        .filter_map(|r| r.metric(key).map(|v| (r.subject.as_str(), v)))
        .max_by(|a, b| if higher { a.1.total_cmp(&b.1) } else { b.1.total_cmp(&a.1) })
}

fn headline<'a>(workload: &'a Workload, scale: Scale, results: &[&'a JobResult]) -> Headline<'a> {
    let key = primary_key(workload, scale);
    let higher = higher_is_better(workload, scale);
    let kheap = best(results, Family::Kheap, key, higher);
    let peer = best(results, Family::Peer, key, higher);
    let ratio = match (kheap, peer) {
        (Some((_, k)), Some((_, p))) if k > 0.0 && p > 0.0 => Some(if higher { k / p } else { p / k }),
        _ => None,
    };
    Headline { workload: &workload.name, kheap, peer, ratio }
}

/// A ratio with two significant digits at least (0.0042x, not 0.00x).
fn ratio_text(ratio: f64) -> String {
    let digits = if ratio >= 0.1 { 2 } else { (1 - ratio.log10().floor() as i32).clamp(2, 8) as usize };
    format!("{ratio:.digits$}x")
}

fn value_cell(value: Option<f64>) -> String {
    value.map_or_else(|| "–".into(), plot::format_value)
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn workload_table(out: &mut String, workload: &Workload, scale: Scale, results: &[&JobResult]) {
    let key = primary_key(workload, scale);
    let mut columns: Vec<&str> = vec![key];
    if scale != Scale::Callgrind {
        columns.extend(workload.columns.iter().filter(|c| **c != key));
    }
    let higher = higher_is_better(workload, scale);
    let best_peer = best(results, Family::Peer, key, higher).map(|b| b.1);
    let _ = write!(out, "| subject | status | {} | vs best peer |\n|---|---|", columns.join(" | "));
    for _ in &columns {
        out.push_str("---:|");
    }
    out.push_str("---:|\n");
    for r in results {
        let _ = write!(out, "| {} | {} |", r.subject, r.status.label());
        for c in &columns {
            let _ = write!(out, " {} |", value_cell(r.metric(c)));
        }
        let ratio = match (r.metric(key), best_peer) {
            (Some(v), Some(p)) if v > 0.0 && p > 0.0 => ratio_text(if higher { v / p } else { p / v }),
            _ => "–".into(),
        };
        let _ = writeln!(out, " {ratio} |");
    }
    let notes: Vec<String> = results
        .iter()
        .filter(|r| r.status != Status::Ok)
        .map(|r| format!("- {} {}: {}", r.subject, r.status.label(), escape(r.status.note())))
        .collect();
    if !notes.is_empty() {
        out.push_str("\nNot measured:\n\n");
        for n in notes {
            let _ = writeln!(out, "{n}");
        }
    }
}

const METHOD: &str = "\
Every subject gets the same arena (host memory aligned to 2 MiB, every page touched before \
timing), the same seeded operation sequence (SplitMix64; the seed is printed with each job) and, \
where it can take one, the same lock: kheap's `RawSpinlock`, a plain test-and-set spinlock \
(through `lock_api` for talc, a wrapper for the peers that ship without a lock). emballoc and \
buddy-slab-allocator keep their own locks (they cannot run without them); the system allocator \
is a labelled hosted reference (its own locks, the whole machine's memory). The bump allocator \
never frees: it is the speed of light, not a contender. Each job (one workload on one subject) \
runs in a fresh process with a timeout, so a crash or hang is reported against that job; \
with `--verify`, one checked pass (alignment, bounds, overlap, per-block byte pattern on free \
and after realloc) gates the timed runs and a subject failing it is reported FAILED, not timed. \
Timed numbers are the median of the runs. The trace-replay workloads read `traces/*.trace.gz`, \
allocation traces of real Rust programs recorded by `tools/trace-recorder` (see `traces/README.md`).";

const CAVEATS: &str = "\
- A shared 2-core virtual machine: other work ran beside the benchmark; expect a few percent \
of noise on the 200 ms throughput jobs, up to a third between runs (and bimodal runs) on jobs \
of a few milliseconds (the trace replays, the thread workloads), and much more on latency \
maxima (interrupts, preemption). For deterministic comparisons use `--callgrind`.\n\
- Latencies are time-stamp-counter ticks including the cost of `rdtsc` itself; on this virtual \
machine the counter advances in steps of 26 ticks, so small latencies are quantised.\n\
- The bump allocator fills its arena within a fraction of a throughput run; after that only frees \
succeed (see `failed_actions`), so its throughput is not the speed of light there: its \
latency and collection numbers are.\n\
- The 4- and 8-thread jobs oversubscribe the 2 cores: a preempted spinlock holder stalls the \
spinners, which is what a kernel avoids by disabling preemption under the lock. The reference \
`percpu-floor` (per-CPU stacks, nothing shared, no checks) shows how far the thread workloads' \
own hand-overs let any per-CPU design scale on this machine.\n\
- A subject marked unsupported could not run that job (for example emballoc's arena size is a \
compile-time constant, buddy-slab-allocator needs 2 MiB-granular regions); FAILED means it \
broke a `GlobalAlloc` promise under verify (for example returning a misaligned block).";

/// Writes everything; returns the Markdown path.
pub fn write(
    ctx: &Context,
    subjects: &[&Subject],
    workloads: &[&Workload],
    results: &[JobResult],
) -> Result<(), String> {
    let plots = ctx.out.join("plots");
    std::fs::create_dir_all(&plots).map_err(|e| e.to_string())?;

    let json_results: Vec<_> = results
        .iter()
        .map(|r| {
            json!({
                "workload": r.workload, "subject": r.subject, "family": r.family.label(),
                "status": r.status.label(), "note": r.status.note(),
                "metrics": r.metrics.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "runs": r.runs, "seconds": r.seconds,
            })
        })
        .collect();
    let document = json!({
        "run": ctx.id, "machine": ctx.machine, "command": ctx.command, "scale": format!("{:?}", ctx.scale),
        "runs_per_job": ctx.runs, "rounds": ctx.rounds, "seed": ctx.seed, "minutes": ctx.elapsed.as_secs_f64() / 60.0,
        "subjects": subjects.iter().map(|s| json!({"name": s.name, "family": s.family.label(), "config": s.config})).collect::<Vec<_>>(),
        "results": json_results,
    });
    let pretty = serde_json::to_string_pretty(&document).map_err(|e| e.to_string())?;
    std::fs::write(ctx.out.join("results.json"), pretty).map_err(|e| e.to_string())?;

    let mut csv = String::from("workload,subject,family,status,metric,value\n");
    for r in results {
        if r.metrics.is_empty() {
            let _ = writeln!(csv, "{},{},{},{},,", r.workload, r.subject, r.family.label(), r.status.label());
        }
        for (k, v) in &r.metrics {
            let _ = writeln!(
                csv,
                "{},{},{},{},{k},{v}",
                r.workload,
                r.subject,
                r.family.label(),
                r.status.label()
            );
        }
    }
    std::fs::write(ctx.out.join("results.csv"), csv).map_err(|e| e.to_string())?;

    let per_workload =
        |w: &Workload| -> Vec<&JobResult> { results.iter().filter(|r| r.workload == w.name).collect() };
    for w in workloads {
        let mine = per_workload(w);
        let key = primary_key(w, ctx.scale);
        let direction = if higher_is_better(w, ctx.scale) { "higher is better" } else { "lower is better" };
        plot::bars(
            &plots.join(format!("{}.svg", w.name)),
            &w.title,
            &format!("{} ({direction})", metric_label(w, ctx.scale)),
            key,
            &mine,
        )?;
    }

    let root = crate::root();
    let plots_rel = plots
        .strip_prefix(&root)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| plots.display().to_string());
    let markdown = markdown(ctx, subjects, workloads, results, &plots_rel);
    std::fs::write(ctx.out.join("REPORT.md"), &markdown).map_err(|e| e.to_string())?;
    if ctx.publish {
        std::fs::write(root.join("BENCHMARKS.md"), &markdown).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn markdown(
    ctx: &Context,
    subjects: &[&Subject],
    workloads: &[&Workload],
    results: &[JobResult],
    plots: &str,
) -> String {
    let mut out = String::new();
    let per_workload =
        |w: &Workload| -> Vec<&JobResult> { results.iter().filter(|r| r.workload == w.name).collect() };
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "kheap against every peer, from one run: `{}` ({:?} scale, {} run(s) per job{}, {:.0} minutes).\n\n\
         - Command: `cargo xtask bench {}`\n- Machine: {}\n- Results: `bench-results/{}/` (results.json, results.csv, \
         plots/; per-job logs/ stay local)\n- Rerun one workload: `cargo xtask bench --workloads NAME [--subjects A,B] [--runs N] \
         [--verify]`; instruction counts: `cargo xtask bench --callgrind --workloads NAME --subjects A,B`.\n",
        ctx.id,
        ctx.scale,
        ctx.runs,
        if ctx.rounds > 1 { format!(" in each of {} interleaved rounds, the median round by the primary metric", ctx.rounds) } else { String::new() },
        ctx.elapsed.as_secs_f64() / 60.0,
        ctx.command,
        ctx.machine,
        ctx.id,
    );
    let _ = writeln!(out, "## Headline: kheap against the best peer\n");
    let _ = writeln!(
        out,
        "Each cell: the kheap heap's figure divided by the best peer's in the same run, turned so that > 1 means \
         kheap is better (faster, more efficient or a shorter tail, by the workload's own metric) and < 1 means \
         kheap loses; within 1 % counts as a tie. References (bump, percpu-floor, system) are not peers. The last columns compare \
         kheap's best heap on that workload with the best peer.\n"
    );
    let kheaps: Vec<&Subject> = subjects.iter().copied().filter(|s| s.family == Family::Kheap).collect();
    let _ = write!(out, "| workload | metric | best peer |");
    for k in &kheaps {
        let _ = write!(out, " {} |", k.name);
    }
    let _ = writeln!(out, " best kheap vs best peer | verdict |");
    let _ = write!(out, "|---|---|---|");
    for _ in &kheaps {
        out.push_str("---:|");
    }
    out.push_str("---:|---|\n");
    let (mut wins, mut losses, mut ties) = (0, 0, 0);
    for w in workloads {
        let mine = per_workload(w);
        let h = headline(w, ctx.scale, &mine);
        let key = primary_key(w, ctx.scale);
        let higher = higher_is_better(w, ctx.scale);
        let ratio_to_peer = |v: f64| {
            h.peer.filter(|(_, p)| *p > 0.0 && v > 0.0).map(|(_, p)| if higher { v / p } else { p / v })
        };
        let _ = write!(
            out,
            "| [{}](#{}) | {} | {} |",
            h.workload,
            h.workload,
            key,
            h.peer.map_or_else(|| "–".into(), |(n, v)| format!("{n} {}", plot::format_value(v)))
        );
        for k in &kheaps {
            let cell = match mine.iter().find(|r| r.subject == k.name) {
                Some(r) => match r.metric(key) {
                    Some(v) => ratio_to_peer(v).map_or_else(|| plot::format_value(v), ratio_text),
                    None => r.status.label().to_string(),
                },
                None => "–".into(),
            };
            let _ = write!(out, " {cell} |");
        }
        let verdict = match h.ratio {
            Some(r) if (r - 1.0).abs() < 0.01 => {
                ties += 1;
                "tie"
            }
            Some(r) if r > 1.0 => {
                wins += 1;
                "kheap wins"
            }
            Some(_) => {
                losses += 1;
                "**kheap loses**"
            }
            None => "no comparison",
        };
        let best = match (h.kheap, h.ratio) {
            (Some((name, _)), Some(r)) => format!("{} ({name})", ratio_text(r)),
            _ => "–".into(),
        };
        let _ = writeln!(out, " {best} | {verdict} |");
    }
    let _ = writeln!(
        out,
        "\nkheap's best heap wins {wins}, ties {ties} and loses {losses} of the {} compared workloads.\n",
        wins + ties + losses
    );
    let _ = writeln!(out, "## Method\n\n{METHOD}\n\n### Caveats\n\n{CAVEATS}\n");
    let _ = writeln!(out, "## Subjects\n\n| subject | family | configuration |\n|---|---|---|");
    for s in subjects {
        let _ = writeln!(out, "| {} | {} | {} |", s.name, s.family.label(), escape(s.config));
    }
    out.push('\n');
    for w in workloads {
        let mine = per_workload(w);
        let _ = writeln!(out, "## {}\n", w.name);
        let _ = writeln!(out, "**{}.** {}\n", w.title, w.about);
        let _ = writeln!(
            out,
            "- Metric: {} ({})\n- Command: `cargo xtask bench --workloads {}`\n- Source: `{}`\n- Machine: as above\n",
            metric_label(w, ctx.scale),
            if higher_is_better(w, ctx.scale) { "higher is better" } else { "lower is better" },
            w.name,
            w.source
        );
        let _ = writeln!(out, "![{}]({}/{}.svg)\n", w.name, plots, w.name);
        workload_table(&mut out, w, ctx.scale, &mine);
        out.push('\n');
    }
    out
}
