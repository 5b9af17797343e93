//! Replay of allocation traces recorded from real programs (`traces/*.trace.gz`, format in
//! [`super::trace`]): time to replay, and the smallest arena that replays without a failure.

use std::alloc::Layout;
use std::path::{Path, PathBuf};
use std::ptr;
use std::time::Instant;

use super::trace::{self, Event, Trace};
use super::{Metric, Workload};
use crate::job::{Ctx, JobError, Metrics, Scale};
use crate::subjects::Heap;
use crate::timer::measured_loop;

const MS: Metric = Metric { key: "ms", label: "milliseconds per replay", higher_is_better: false };

/// Replays `trace` on `heap`; `Err(event index)` at the first failed allocation or realloc.
/// Frees whatever is still live afterwards (outside the timed part).
fn replay(heap: &Heap, trace: &Trace) -> Result<(), usize> {
    let mut slots: Vec<(*mut u8, Layout)> = vec![(ptr::null_mut(), Layout::new::<u8>()); trace.slots];
    let result = measured_loop(|| {
        for (index, event) in trace.events.iter().enumerate() {
            match *event {
                Event::Alloc { slot, size, align } => {
                    let layout = Layout::from_size_align(size, align).map_err(|_| index)?;
                    // SAFETY: non-zero size (checked by the reader).
                    let block = unsafe { heap.alloc(layout) };
                    if block.is_null() {
                        return Err(index);
                    }
                    slots[slot as usize] = (block, layout);
                }
                Event::Free { slot } => {
                    let (block, layout) = std::mem::replace(&mut slots[slot as usize], (ptr::null_mut(), Layout::new::<u8>()));
                    // SAFETY: the reader checked the slot is live; the block has this layout.
                    unsafe { heap.dealloc(block, layout) };
                }
                Event::Realloc { slot, size } => {
                    let (block, layout) = slots[slot as usize];
                    // SAFETY: live block with this layout; non-zero size.
                    let new = unsafe { heap.realloc(block, layout, size) };
                    if new.is_null() {
                        return Err(index);
                    }
                    slots[slot as usize] = (new, Layout::from_size_align(size, layout.align()).map_err(|_| index)?);
                }
            }
        }
        Ok(())
    });
    for (block, layout) in slots {
        if !block.is_null() {
            // SAFETY: still live, with this layout.
            unsafe { heap.dealloc(block, layout) };
        }
    }
    result
}

/// Arena for timing: 64 MiB, or four times the peak if that is more.
fn timing_arena(trace: &Trace) -> usize {
    (4 * trace.peak_live).next_multiple_of(1 << 20).max(64 << 20)
}

fn smallest_arena(ctx: &Ctx, trace: &Trace) -> Result<Option<usize>, JobError> {
    let fits = |len: usize| -> Result<bool, JobError> {
        let heap = ctx.build(len)?;
        Ok(replay(&heap, trace).is_ok())
    };
    let granule = 4096;
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

fn run(ctx: &Ctx, path: &Path) -> Result<Metrics, JobError> {
    let trace = trace::read(path).map_err(JobError::Unsupported)?;
    let heap = ctx.build(timing_arena(&trace))?;
    let start = Instant::now();
    if let Err(index) = replay(&heap, &trace) {
        return Err(JobError::Unsupported(format!(
            "allocation {index} failed in a {} MiB arena",
            timing_arena(&trace) >> 20
        )));
    }
    let ms = start.elapsed().as_secs_f64() * 1e3;
    drop(heap);
    let mut out = vec![(MS.key, ms), ("ops", trace.events.len() as f64), ("peak_live_kib", trace.peak_live as f64 / 1024.0)];
    // The arena search is deterministic: done on the first run only, skipped when counting
    // instructions, and not possible for arenas of fixed sizes or the hosted reference.
    if ctx.scale != Scale::Callgrind && ctx.first_run && ctx.subject.in_arena {
        match smallest_arena(ctx, &trace) {
            Ok(Some(len)) => out.push(("min_arena_x_peak", len as f64 / trace.peak_live.max(1) as f64)),
            Ok(None) | Err(JobError::Unsupported(_)) => {}
            Err(e) => return Err(e),
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
            about: format!("Replays `*.trace.gz` files from {dir}; none were found, so this workload is skipped."),
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
                     in order, with the recorded sizes and alignments, in an arena of 64 MiB (or 4× the trace's peak \
                     live bytes if more). Reported: replay time, and the smallest arena (binary search, 4 KiB or \
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
