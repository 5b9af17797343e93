//! Replay of allocation traces recorded from real programs (`traces/*.trace.gz`, format in
//! [`super::trace`]): time to replay, and the smallest arena that replays without a failure.

use std::alloc::Layout;
use std::path::{Path, PathBuf};
use std::ptr;
use std::time::{Duration, Instant};

use super::trace::{self, Event, Trace};
use super::{Metric, Workload};
use crate::job::{Ctx, JobError, Metrics, Scale};
use crate::subjects::Heap;
use crate::timer::measured_loop;

const MS: Metric = Metric { key: "ms", label: "milliseconds per replay", higher_is_better: false };

/// Why a replay stopped early.
enum Stop {
    /// This event's allocation or realloc failed.
    Failed(usize),
    /// The deadline passed.
    OverBudget,
}

/// Replays `trace` on `heap`, or stops at the first failed allocation or at `deadline`.
/// Frees whatever is still live afterwards (outside the timed part; not when over budget).
fn replay(heap: &Heap, trace: &Trace, events: usize, deadline: Instant) -> Result<(), Stop> {
    let mut slots: Vec<(*mut u8, Layout)> = vec![(ptr::null_mut(), Layout::new::<u8>()); trace.slots];
    let result = measured_loop(|| {
        for (index, event) in trace.events[..events].iter().enumerate() {
            if index.is_multiple_of(4096) && Instant::now() > deadline {
                return Err(Stop::OverBudget);
            }
            match *event {
                Event::Alloc { slot, size, align } => {
                    let layout = Layout::from_size_align(size, align).map_err(|_| Stop::Failed(index))?;
                    // SAFETY: non-zero size (checked by the reader).
                    let block = unsafe { heap.alloc(layout) };
                    if block.is_null() {
                        return Err(Stop::Failed(index));
                    }
                    slots[slot as usize] = (block, layout);
                }
                Event::Free { slot } => {
                    let (block, layout) =
                        std::mem::replace(&mut slots[slot as usize], (ptr::null_mut(), Layout::new::<u8>()));
                    // SAFETY: the reader checked the slot is live; the block has this layout.
                    unsafe { heap.dealloc(block, layout) };
                }
                Event::Realloc { slot, size } => {
                    let (block, layout) = slots[slot as usize];
                    // SAFETY: live block with this layout; non-zero size.
                    let new = unsafe { heap.realloc(block, layout, size) };
                    if new.is_null() {
                        return Err(Stop::Failed(index));
                    }
                    slots[slot as usize] = (
                        new,
                        Layout::from_size_align(size, layout.align()).map_err(|_| Stop::Failed(index))?,
                    );
                }
            }
        }
        Ok(())
    });
    if matches!(result, Err(Stop::OverBudget)) {
        // A heap this slow would take as long again to free the rest; it is thrown away.
        std::mem::forget(slots);
        return result;
    }
    for (block, layout) in slots {
        if !block.is_null() {
            // SAFETY: still live, with this layout.
            unsafe { heap.dealloc(block, layout) };
        }
    }
    result
}

/// Arena for timing: 64 MiB, or 2.5 times the peak if that is more.
fn timing_arena(trace: &Trace) -> usize {
    (5 * trace.peak_live / 2).next_multiple_of(1 << 20).max(64 << 20)
}

fn smallest_arena(ctx: &Ctx, trace: &Trace, deadline: Instant) -> Result<Option<usize>, JobError> {
    let fits = |len: usize| -> Result<bool, JobError> {
        let heap = ctx.build(len)?;
        match replay(&heap, trace, trace.events.len(), deadline) {
            Ok(()) => Ok(true),
            Err(Stop::Failed(_)) => Ok(false),
            Err(Stop::OverBudget) => Err(JobError::OverBudget("arena search".into())),
        }
    };
    // 64 KiB steps: some peers (axallocator's slab) only take arenas of whole 32 KiB units.
    let granule = 64 << 10;
    let mut lo = trace.peak_live.next_multiple_of(granule).max(granule) - granule;
    let mut hi = (2 * trace.peak_live).next_multiple_of(granule).max(64 * granule);
    while !fits(hi)? {
        lo = hi;
        hi *= 2;
        if hi > 1 << 30 {
            return Ok(None);
        }
    }
    // Invariant: `lo` fails (or is below the peak), `hi` fits.
    while hi - lo > granule.max(hi / 256) {
        let mid = (lo + (hi - lo) / 2).next_multiple_of(granule);
        if mid >= hi {
            break;
        }
        if fits(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(Some(hi))
}

/// Timed runs replay the trace on fresh heaps until this much time is spent (once at least) and
/// report the mean: one replay of a few milliseconds moved by up to a third from run to run on
/// a shared VM.
const MIN_TIMED: Duration = Duration::from_millis(50);

fn run(ctx: &Ctx, path: &Path) -> Result<Metrics, JobError> {
    let trace = trace::read(path).map_err(JobError::Unsupported)?;
    let budget = ctx.scale.pick(
        Duration::from_secs(10),
        Duration::from_secs(5),
        Duration::from_secs(20),
        Duration::from_secs(900),
    );
    // The smoke replays a prefix only (its blocks still live at the cut are freed after).
    let events = trace.events.len().min(ctx.scale.pick(usize::MAX, usize::MAX, 20_000, usize::MAX));
    let timed = matches!(ctx.scale, Scale::Full | Scale::Quick);
    let (mut passes, mut spent) = (0u32, Duration::ZERO);
    while passes == 0 || (timed && spent < MIN_TIMED) {
        let heap = ctx.build(timing_arena(&trace))?;
        let start = Instant::now();
        match replay(&heap, &trace, events, start + budget) {
            Ok(()) => {}
            Err(Stop::Failed(index)) => {
                return Err(JobError::Unsupported(format!(
                    "{}: event {index} failed in a {} MiB arena",
                    trace.name,
                    timing_arena(&trace) >> 20
                )))
            }
            Err(Stop::OverBudget) => {
                return Err(JobError::OverBudget(format!(
                    "one replay of {} took over {} s",
                    trace.name,
                    budget.as_secs()
                )))
            }
        }
        spent += start.elapsed();
        passes += 1;
    }
    let ms = spent.as_secs_f64() * 1e3 / f64::from(passes);
    let mut out =
        vec![(MS.key, ms), ("ops", events as f64), ("peak_live_kib", trace.peak_live as f64 / 1024.0)];
    // The arena search is deterministic: done on the first run only, skipped when counting
    // instructions, and not possible for arenas of fixed sizes or the hosted reference; given
    // up (the figure left out) if it takes more than three replay budgets.
    if matches!(ctx.scale, Scale::Full | Scale::Quick) && ctx.first_run && ctx.subject.in_arena {
        if let Ok(Some(len)) = smallest_arena(ctx, &trace, Instant::now() + 3 * budget) {
            out.push(("min_arena_x_peak", len as f64 / trace.peak_live.max(1) as f64));
        }
    }
    Ok(out)
}

/// The trace files in `dir`, sorted.
fn trace_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(".trace.gz"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

pub fn workloads(dir: &Path) -> Vec<Workload> {
    let files = trace_files(dir);
    if files.is_empty() {
        let dir = dir.display().to_string();
        return vec![Workload {
            name: "replay".into(),
            title: "Trace replay (no traces found)".into(),
            about: format!(
                "Replays `*.trace.gz` files from {dir}; none were found, so this workload is skipped."
            ),
            source: "crates/kheap-bench/src/workloads/replay.rs",
            metric: MS,
            columns: vec![MS.key],
            timeout_secs: 10,
            run: Box::new(move |_| Err(JobError::Unsupported(format!("no traces found in {dir}")))),
        }];
    }
    files
        .into_iter()
        .map(|path| {
            let (name, description) = trace::header(&path).unwrap_or_else(|e| (format!("unreadable:{e}"), String::new()));
            let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            Workload {
                name: format!("replay_{name}"),
                title: format!("Trace replay: {name}"),
                about: format!(
                    "Replays `traces/{file}` ({description}): every allocation, free and realloc of a real program, \
                     in order, with the recorded sizes and alignments, in an arena of 64 MiB (or 2.5× the trace's peak \
                     live bytes if more). Reported: replay time (the mean of as many replays, each on a fresh heap, as fill \
                     50 ms), and the smallest arena (binary search, 64 KiB or \
                     0.4 % steps) that replays the whole trace without a failed allocation, as a multiple of the \
                     trace's peak live requested bytes (`min_arena_x_peak`; n/a for emballoc, whose arena size is \
                     fixed at compile time, and for the hosted reference). Why: synthetic mixes miss the size and \
                     lifetime correlations of real programs."
                ),
                source: "crates/kheap-bench/src/workloads/replay.rs",
                metric: MS,
                columns: vec![MS.key, "min_arena_x_peak", "peak_live_kib"],
                timeout_secs: 300,
                run: Box::new(move |ctx| run(ctx, &path)),
            }
        })
        .collect()
}
