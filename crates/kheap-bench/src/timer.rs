//! Clocks: wall time for throughput, the time-stamp counter for single operations, and the
//! marker function callgrind counts instructions in.

use std::time::{Duration, Instant};

/// A cycle-ish counter for timing one operation: the TSC on x86-64, nanoseconds elsewhere.
#[inline(always)]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        #[allow(unused_unsafe)]
        // SAFETY: `rdtsc` has no preconditions on x86-64 (it is `unsafe` on older compilers).
        unsafe {
            core::arch::x86_64::_rdtsc()
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        use std::sync::OnceLock;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// Runs the measured part of a workload. `cargo xtask bench --callgrind` counts instructions
/// only inside this function (`--toggle-collect=*measured_loop*`), so everything a workload
/// wants counted must happen inside `f` and nothing else.
#[inline(never)]
pub fn measured_loop<R>(f: impl FnOnce() -> R) -> R {
    std::hint::black_box(f())
}

/// When a workload stops: after a duration (timed runs) or after a fixed number of steps
/// (instruction counts, which must be the same whatever the machine's speed).
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    Time(Duration),
    Steps(u64),
}

/// Tracks a [`Budget`] cheaply (the clock is read once per call to `more`).
pub struct Meter {
    budget: Budget,
    started: Instant,
    steps: u64,
}

impl Meter {
    pub fn new(budget: Budget) -> Self {
        Meter { budget, started: Instant::now(), steps: 0 }
    }

    /// Whether to do another batch of work.
    pub fn more(&mut self) -> bool {
        self.steps += 1;
        match self.budget {
            Budget::Time(limit) => self.started.elapsed() < limit,
            Budget::Steps(limit) => self.steps <= limit,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}
