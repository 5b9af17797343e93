//! A timer interrupt every 2 ms whose handler allocates and frees, while the main flow
//! allocates as hard as it can: neither may deadlock, and every handler allocation must work.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::{ensure, ensure_eq, TestResult};
use crate::config::{CLOCK_FREQ, TIMER_INTERVAL};
use crate::heap;
use crate::timer::{self, now, HANDLER_ALLOCATIONS, HANDLER_FAILURES, LATENESS, TICKS};

/// How long the main flow allocates with the timer running.
const DURATION: u64 = CLOCK_FREQ * 3 / 10;

pub fn timer_handler_allocates() -> TestResult {
    let ticks_before = TICKS.load(Ordering::Relaxed);
    let allocations_before = HANDLER_ALLOCATIONS.load(Ordering::Relaxed);
    let failures_before = HANDLER_FAILURES.load(Ordering::Relaxed);
    let lateness_before = LATENESS.load(Ordering::Relaxed);
    let start = now();
    timer::start();
    let mut rounds = 0usize;
    let mut problem = None;
    while now() - start < DURATION {
        // With the tutorial's allocator (a plain spinlock) interrupts must be off while the
        // main flow allocates; with the native front they stay on throughout.
        let result = heap::irq_guarded(|| main_flow_round(rounds));
        if let Err(message) = result {
            problem = Some(message);
            break;
        }
        rounds += 1;
    }
    timer::stop();
    if let Some(message) = problem {
        return Err(message);
    }
    let ticks = TICKS.load(Ordering::Relaxed) - ticks_before;
    let allocations = HANDLER_ALLOCATIONS.load(Ordering::Relaxed) - allocations_before;
    let failures = HANDLER_FAILURES.load(Ordering::Relaxed) - failures_before;
    let lateness =
        (LATENESS.load(Ordering::Relaxed) - lateness_before).checked_div(ticks as u64).unwrap_or(0);
    println!(
        "    interrupts were taken {} us after their deadline on average",
        lateness * 1_000_000 / CLOCK_FREQ
    );
    println!(
        "    {} ms, timer every {} us: {ticks} interrupts, {allocations} handler allocations ok, {failures} failed; {rounds} main-flow rounds{}",
        DURATION * 1000 / CLOCK_FREQ,
        TIMER_INTERVAL * 1_000_000 / CLOCK_FREQ,
        if heap::IRQ_SAFE { "" } else { " (interrupts masked around each round: the tutorial's lock is not interrupt-safe)" }
    );
    ensure!(allocations > 0, "the handler never allocated ({ticks} interrupts)");
    ensure_eq!(failures, 0);
    ensure_eq!(allocations, ticks);
    ensure!(rounds > 0, "the main flow made no progress");
    Ok(())
}

/// One round of main-flow allocation: a map of strings and a growing vector, checked.
fn main_flow_round(round: usize) -> Result<(), String> {
    let mut map = BTreeMap::new();
    let mut v = Vec::new();
    for i in 0..200 {
        map.insert(i, alloc::format!("{round}:{i}"));
        v.push(i * round);
    }
    ensure!(
        v.iter().enumerate().all(|(i, &x)| x == i * round),
        "vector changed under interrupts (round {round})"
    );
    ensure!(
        map.iter().all(|(i, s)| *s == alloc::format!("{round}:{i}")),
        "map changed under interrupts (round {round})"
    );
    Ok(())
}
