//! The parent process: runs every job in a fresh child process with a timeout, collects the
//! results and writes them out.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::job::{Scale, EXIT_OVER_BUDGET, EXIT_UNSUPPORTED, EXIT_VERIFY_FAILED};
use crate::subjects::{Family, Subject};
use crate::workloads::Workload;
use crate::{report, Cli};

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// A verify check failed: not timed.
    Failed(String),
    /// The subject cannot run this workload (arena size, no arena, ...).
    Unsupported(String),
    /// Killed at the timeout, or over its own budget.
    Timeout(String),
    /// Crashed: exit code or signal, and the last line it printed.
    Crashed(String),
}

impl Status {
    pub fn label(&self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed(_) => "FAILED",
            Status::Unsupported(_) => "unsupported",
            Status::Timeout(_) => "TIMEOUT",
            Status::Crashed(_) => "CRASHED",
        }
    }

    pub fn note(&self) -> &str {
        match self {
            Status::Ok => "",
            Status::Failed(n) | Status::Unsupported(n) | Status::Timeout(n) | Status::Crashed(n) => n,
        }
    }
}

/// One job's outcome.
#[derive(Clone, Debug)]
pub struct JobResult {
    pub workload: String,
    pub subject: String,
    pub family: Family,
    pub status: Status,
    /// Metrics of the median run.
    pub metrics: Vec<(String, f64)>,
    /// The primary metric of every run.
    pub runs: Vec<f64>,
    pub seconds: f64,
}

impl JobResult {
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.metrics.iter().find(|(k, _)| k == key).map(|(_, v)| *v).filter(|v| v.is_finite())
    }
}

fn run_id(scale: Scale) -> String {
    let stamp = Command::new("date")
        .args(["-u", "+%Y%m%d-%H%M%S"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            format!(
                "{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs()
            )
        });
    let suffix = match scale {
        Scale::Full => "",
        Scale::Quick => "-quick",
        Scale::Smoke => "-smoke",
        Scale::Callgrind => "-callgrind",
    };
    format!("{stamp}{suffix}")
}

fn timeout(workload: &Workload, scale: Scale) -> Duration {
    let full = workload.timeout_secs;
    Duration::from_secs(scale.pick(full, full.div_ceil(2).max(30), 60, (full * 30).min(1800)))
}

/// Last non-empty line of a file starting with `prefix` (or the last line at all), with the
/// line after it (a panic's message follows its location).
fn last_line(path: &Path, prefix: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let at = lines.iter().rposition(|l| l.starts_with(prefix)).or(lines.len().checked_sub(1))?;
    let found = lines[at..].iter().take(2).copied().collect::<Vec<_>>().join(" ");
    Some(found.chars().take(400).collect())
}

fn run_job(cli: &Cli, workload: &Workload, subject: &Subject, logs: &Path) -> JobResult {
    let exe = std::env::current_exe().expect("own executable");
    let stem = format!("{}__{}", workload.name, subject.name);
    let (out_path, err_path) = (logs.join(format!("{stem}.out")), logs.join(format!("{stem}.err")));
    let scale = cli.scale();
    let mut job_args: Vec<String> = vec![
        "--job".into(),
        workload.name.clone(),
        "--subject".into(),
        subject.name.into(),
        "--runs".into(),
        cli.runs.to_string(),
        "--seed".into(),
        cli.seed.to_string(),
    ];
    if let Some(traces) = &cli.traces {
        job_args.extend(["--traces".into(), traces.display().to_string()]);
    }
    match scale {
        Scale::Smoke => job_args.push("--smoke".into()),
        Scale::Quick => job_args.push("--quick".into()),
        Scale::Callgrind => job_args.push("--callgrind".into()),
        Scale::Full => {}
    }
    if cli.verify {
        job_args.push("--verify".into());
    }
    let callgrind_out = logs.join(format!("{stem}.callgrind"));
    let mut command = if scale == Scale::Callgrind {
        let mut c = Command::new("valgrind");
        c.arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", callgrind_out.display()))
            .arg("--collect-atstart=no")
            .arg("--toggle-collect=*measured_loop*")
            .arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    command.args(&job_args);
    let started = Instant::now();
    let mut result = JobResult {
        workload: workload.name.clone(),
        subject: subject.name.into(),
        family: subject.family,
        status: Status::Ok,
        metrics: Vec::new(),
        runs: Vec::new(),
        seconds: 0.0,
    };
    let (Ok(out), Ok(err)) = (File::create(&out_path), File::create(&err_path)) else {
        result.status = Status::Crashed(format!("cannot create logs in {}", logs.display()));
        return result;
    };
    let mut child = match command.stdin(Stdio::null()).stdout(out).stderr(err).spawn() {
        Ok(child) => child,
        Err(e) => {
            result.status =
                Status::Crashed(format!("cannot start {}: {e}", command.get_program().to_string_lossy()));
            return result;
        }
    };
    let limit = timeout(workload, scale);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() > limit => {
                // Our own child, by its id.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break None,
        }
    };
    result.seconds = started.elapsed().as_secs_f64();
    result.status = match status {
        None => Status::Timeout(format!("killed after {} s", limit.as_secs())),
        Some(s) if s.success() => Status::Ok,
        Some(s) => match s.code() {
            Some(EXIT_VERIFY_FAILED) => {
                Status::Failed(last_line(&err_path, "VERIFY FAILED").unwrap_or_default())
            }
            Some(EXIT_UNSUPPORTED) => {
                Status::Unsupported(last_line(&err_path, "UNSUPPORTED").unwrap_or_default())
            }
            Some(EXIT_OVER_BUDGET) => {
                Status::Timeout(last_line(&err_path, "OVER BUDGET").unwrap_or_default())
            }
            code => {
                let how =
                    code.map_or_else(|| format!("killed by a signal ({s})"), |c| format!("exit code {c}"));
                Status::Crashed(format!("{how}: {}", last_line(&err_path, "thread").unwrap_or_default()))
            }
        },
    };
    if result.status == Status::Ok {
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        let parsed: Option<Value> = text
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .and_then(|json| serde_json::from_str(json).ok());
        match parsed {
            Some(value) => {
                if let Some(metrics) = value["metrics"].as_object() {
                    result.metrics =
                        metrics.iter().filter_map(|(k, v)| v.as_f64().map(|v| (k.clone(), v))).collect();
                }
                result.runs = value["runs"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default();
            }
            None => result.status = Status::Crashed("no RESULT line".into()),
        }
    }
    if scale == Scale::Callgrind && result.status == Status::Ok {
        match callgrind_total(&callgrind_out) {
            Some(total) => {
                let ops = result.metric("ops").unwrap_or(f64::NAN);
                result.metrics.push(("instructions".into(), total as f64));
                result.metrics.push(("instructions_per_op".into(), total as f64 / ops));
            }
            None => result.status = Status::Crashed("no callgrind totals".into()),
        }
    }
    result
}

/// One job's rounds as one result: the first failure if a round failed (a subject that breaks
/// a promise once is reported, however the other rounds went), else the metrics of the median
/// round by the `primary` metric (as a job takes its median run: every figure from one round,
/// so a latency's percentiles or a replay's time and arena are never mixed across rounds),
/// every run of every round, and the time of all rounds.
fn over_rounds(rounds: Vec<JobResult>, primary: &str) -> Option<JobResult> {
    if let Some(failed) = rounds.iter().find(|r| r.status != Status::Ok) {
        return Some(failed.clone());
    }
    let mut order: Vec<usize> = (0..rounds.len()).collect();
    order.sort_by(|&a, &b| {
        let value = |i: usize| rounds[i].metric(primary).unwrap_or(f64::NAN);
        value(a).total_cmp(&value(b))
    });
    let median = *order.get(order.len() / 2)?;
    let mut merged = rounds[median].clone();
    merged.runs.clear();
    merged.seconds = 0.0;
    for round in rounds {
        merged.runs.extend(round.runs);
        merged.seconds += round.seconds;
    }
    Some(merged)
}

/// The event total of a callgrind output file (only the toggled function's cost was collected).
fn callgrind_total(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().rev().find(|l| l.starts_with("totals:") || l.starts_with("summary:"))?;
    line.split_once(':')?.1.split_whitespace().next()?.parse().ok()
}

/// Runs every job; returns the process exit code.
pub fn run(cli: &Cli, subjects: &[&Subject], workloads: &[&Workload]) -> i32 {
    let scale = cli.scale();
    let id = run_id(scale);
    let out: PathBuf = cli.out.clone().unwrap_or_else(|| match scale {
        Scale::Smoke => crate::root().join("target/bench-smoke").join(&id),
        _ => crate::root().join("bench-results").join(&id),
    });
    let logs = out.join("logs");
    if let Err(e) = std::fs::create_dir_all(&logs) {
        eprintln!("kheap-bench: cannot create {}: {e}", logs.display());
        return 1;
    }
    let machine = report::machine();
    // The smoke and instruction counts run once: one run, one round.
    let once = matches!(scale, Scale::Smoke | Scale::Callgrind);
    let (runs, rounds) = if once { (1, 1) } else { (cli.runs, cli.rounds) };
    println!(
        "kheap-bench run {id}: {} workload(s) x {} subject(s), {scale:?}, {runs} run(s) per job, verify {}",
        workloads.len(),
        subjects.len(),
        cli.verify || cli.smoke
    );
    println!("machine: {machine}");
    println!("results: {}", out.display());
    println!("subjects:");
    for s in subjects {
        println!("  {:<24} {}", s.name, s.config);
    }
    let started = Instant::now();
    // Per job (workload by subject, in order), its primary metric and its result in every
    // round so far.
    let mut per_job: Vec<(&str, Vec<JobResult>)> = Vec::new();
    for round in 0..rounds {
        if rounds > 1 {
            println!("\nround {} of {rounds}", round + 1);
        }
        let mut job = 0;
        for workload in workloads {
            println!("\n{} — {}", workload.name, workload.title);
            let primary = report::primary_key(workload, scale);
            for subject in subjects.iter().filter(|s| s.runs(&workload.name)) {
                let result = run_job(cli, workload, subject, &logs);
                let value = result.metric(primary).map_or(String::new(), |v| format!("{v:.4}"));
                println!(
                    "  {:<24} {:<11} {:>14} {}  ({:.1} s)",
                    subject.name,
                    result.status.label(),
                    value,
                    result.status.note(),
                    result.seconds
                );
                if round == 0 {
                    per_job.push((primary, Vec::new()));
                }
                per_job[job].1.push(result);
                job += 1;
            }
        }
    }
    let results: Vec<JobResult> =
        per_job.into_iter().filter_map(|(primary, rounds)| over_rounds(rounds, primary)).collect();
    let elapsed = started.elapsed();
    println!("\n{} jobs in {:.1} min", results.len(), elapsed.as_secs_f64() / 60.0);
    let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let context = report::Context {
        id: &id,
        scale,
        runs,
        rounds,
        seed: cli.seed,
        publish: cli.publish,
        machine: &machine,
        command: &command,
        elapsed,
        out: &out,
    };
    if let Err(e) = report::write(&context, subjects, workloads, &results) {
        eprintln!("kheap-bench: writing the results failed: {e}");
        return 1;
    }
    println!("wrote {}", out.display());
    // The smoke fails CI when one of kheap's heaps or a reference fails or crashes; a peer's
    // failures are findings about the peer, reported but not fatal.
    let bad: Vec<&JobResult> = results
        .iter()
        .filter(|r| {
            r.family != Family::Peer
                && matches!(r.status, Status::Failed(_) | Status::Crashed(_) | Status::Timeout(_))
        })
        .collect();
    for r in &bad {
        eprintln!("FAILED: {} x {}: {} {}", r.workload, r.subject, r.status.label(), r.status.note());
    }
    if scale == Scale::Smoke {
        let passed = results.len() - bad.len();
        println!("bench smoke: {passed} passed, {} failed", bad.len());
    }
    i32::from(!bad.is_empty())
}

fn family_of(label: &str) -> Family {
    match label {
        "kheap" => Family::Kheap,
        "peer" => Family::Peer,
        _ => Family::Reference,
    }
}

fn status_of(label: &str, note: &str) -> Status {
    let note = note.to_string();
    match label {
        "ok" => Status::Ok,
        "FAILED" => Status::Failed(note),
        "unsupported" => Status::Unsupported(note),
        "TIMEOUT" => Status::Timeout(note),
        _ => Status::Crashed(note),
    }
}

/// Rewrites the report, plots and (with `--publish`) BENCHMARKS.md of an earlier run from its
/// `results.json`, without measuring anything.
pub fn report_only(cli: &Cli, dir: &Path, subjects: &[Subject], workloads: &[Workload]) -> i32 {
    let text = match std::fs::read_to_string(dir.join("results.json")) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("kheap-bench: cannot read {}: {e}", dir.join("results.json").display());
            return 1;
        }
    };
    let Ok(doc) = serde_json::from_str::<Value>(&text) else {
        eprintln!("kheap-bench: {} is not valid JSON", dir.join("results.json").display());
        return 1;
    };
    let str_of = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let results: Vec<JobResult> = doc["results"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| JobResult {
                    workload: str_of(&r["workload"]),
                    subject: str_of(&r["subject"]),
                    family: family_of(r["family"].as_str().unwrap_or_default()),
                    status: status_of(
                        r["status"].as_str().unwrap_or_default(),
                        r["note"].as_str().unwrap_or_default(),
                    ),
                    metrics: r["metrics"]
                        .as_object()
                        .map(|m| m.iter().filter_map(|(k, v)| v.as_f64().map(|v| (k.clone(), v))).collect())
                        .unwrap_or_default(),
                    runs: r["runs"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_f64).collect())
                        .unwrap_or_default(),
                    seconds: r["seconds"].as_f64().unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    let chosen_subjects: Vec<&Subject> =
        subjects.iter().filter(|s| results.iter().any(|r| r.subject == s.name)).collect();
    let chosen_workloads: Vec<&Workload> =
        workloads.iter().filter(|w| results.iter().any(|r| r.workload == w.name)).collect();
    let scale = match doc["scale"].as_str().unwrap_or_default() {
        "Quick" => Scale::Quick,
        "Smoke" => Scale::Smoke,
        "Callgrind" => Scale::Callgrind,
        _ => Scale::Full,
    };
    let (id, machine, command) = (str_of(&doc["run"]), str_of(&doc["machine"]), str_of(&doc["command"]));
    let context = report::Context {
        id: &id,
        scale,
        runs: doc["runs_per_job"].as_u64().unwrap_or(1) as u32,
        rounds: doc["rounds"].as_u64().unwrap_or(1) as u32,
        seed: doc["seed"].as_u64().unwrap_or(cli.seed),
        publish: cli.publish,
        machine: &machine,
        command: &command,
        elapsed: Duration::from_secs_f64(doc["minutes"].as_f64().unwrap_or_default() * 60.0),
        out: dir,
    };
    match report::write(&context, &chosen_subjects, &chosen_workloads, &results) {
        Ok(()) => {
            println!("rewrote the report of {} in {}", id, dir.display());
            0
        }
        Err(e) => {
            eprintln!("kheap-bench: writing the report failed: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(status: Status, throughput: f64, runs: &[f64]) -> JobResult {
        JobResult {
            workload: "w".into(),
            subject: "s".into(),
            family: Family::Kheap,
            status,
            metrics: vec![("mops_per_s".into(), throughput), ("ops".into(), 40.0)],
            runs: runs.to_vec(),
            seconds: 1.0,
        }
    }

    #[test]
    fn rounds_merge_to_the_median_round_by_the_primary_metric() {
        let mut slow = result(Status::Ok, 60.0, &[60.0]);
        slow.metrics[1].1 = 45.0;
        let mut fast = result(Status::Ok, 95.0, &[95.0]);
        fast.metrics[1].1 = 50.0;
        let merged =
            over_rounds(vec![result(Status::Ok, 90.0, &[89.0, 90.0, 91.0]), slow, fast], "mops_per_s")
                .expect("three rounds");
        assert_eq!(merged.metric("mops_per_s"), Some(90.0), "the slow round is outvoted");
        assert_eq!(merged.metric("ops"), Some(40.0), "every metric from the median round");
        assert_eq!(merged.runs, [89.0, 90.0, 91.0, 60.0, 95.0]);
        assert_eq!(merged.seconds, 3.0);
    }

    #[test]
    fn a_failed_round_fails_the_job() {
        let failed = Status::Failed("misaligned".into());
        let merged = over_rounds(
            vec![result(Status::Ok, 90.0, &[90.0]), result(failed.clone(), 0.0, &[])],
            "mops_per_s",
        )
        .expect("two rounds");
        assert_eq!(merged.status, failed);
        assert!(over_rounds(Vec::new(), "mops_per_s").is_none());
    }
}
