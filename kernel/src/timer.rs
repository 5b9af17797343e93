//! The supervisor timer: reading `time`, arming SBI `set_timer`, and an interrupt handler that
//! allocates and frees on every tick.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::config::TIMER_INTERVAL;
use crate::sbi;

/// `sie.STIE`: supervisor timer interrupts enabled.
const SIE_STIE: usize = 1 << 5;

/// Timer interrupts taken.
pub static TICKS: AtomicUsize = AtomicUsize::new(0);
/// Handler allocations that succeeded and read back what they wrote.
pub static HANDLER_ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
/// Handler allocations that failed or read back something else.
pub static HANDLER_FAILURES: AtomicUsize = AtomicUsize::new(0);
/// Sum of how late interrupts were taken, in `time` ticks past their deadline.
pub static LATENESS: AtomicU64 = AtomicU64::new(0);
/// The deadline the timer is armed for.
static DEADLINE: AtomicU64 = AtomicU64::new(u64::MAX);
/// While set, each interrupt re-arms the timer.
static RUNNING: AtomicBool = AtomicBool::new(false);
/// While set, each interrupt also allocates through the per-CPU caches of
/// `tests::per_cpu` (the test that stresses them sets it).
pub static THROUGH_CACHES: AtomicBool = AtomicBool::new(false);

/// The `time` CSR: 10 MHz on QEMU virt.
pub fn now() -> u64 {
    let time: u64;
    // SAFETY: `rdtime` reads a counter OpenSBI lets S-mode read; touches no memory.
    unsafe { asm!("rdtime {}", out(reg) time, options(nomem, nostack)) };
    time
}

/// Starts ticking every [`TIMER_INTERVAL`] on this hart and enables interrupts.
pub fn start() {
    RUNNING.store(true, Ordering::Relaxed);
    arm(now() + TIMER_INTERVAL);
    // SAFETY: sets sie.STIE; the trap vector is installed (trap::init_hart); no memory.
    unsafe { asm!("csrs sie, {}", in(reg) SIE_STIE, options(nomem, nostack)) };
    crate::trap::enable_interrupts();
}

/// Stops the timer on this hart and disables interrupts.
pub fn stop() {
    crate::trap::disable_interrupts();
    RUNNING.store(false, Ordering::Relaxed);
    // SAFETY: clears sie.STIE; touches no memory.
    unsafe { asm!("csrc sie, {}", in(reg) SIE_STIE, options(nomem, nostack)) };
    // Push the deadline out of reach, which also clears a pending interrupt.
    arm(u64::MAX);
}

/// The timer interrupt: allocates a `Vec` and a `Box`, checks them, frees them, re-arms.
///
/// It runs with interrupts off on this hart, possibly right in the middle of the main flow's
/// own `alloc` call; with an interrupt-masking heap lock that cannot be inside the locked
/// section, so this allocation cannot deadlock.
pub fn on_interrupt() {
    // Only this hart uses the heap while the timer runs, so a held lock here means the lock
    // did not mask interrupts: allocating now would spin for ever. Fail the test instead of
    // hanging until the runner's time limit.
    if crate::heap::is_locked() {
        HANDLER_FAILURES.fetch_add(1, Ordering::Relaxed);
        RUNNING.store(false, Ordering::Relaxed);
        arm(u64::MAX);
        return;
    }
    let tick = TICKS.fetch_add(1, Ordering::Relaxed) + 1;
    LATENESS.fetch_add(now().saturating_sub(DEADLINE.load(Ordering::Relaxed)), Ordering::Relaxed);
    let mut values: Vec<usize> = Vec::new();
    let fine = values.try_reserve(16 + tick % 48).is_ok() && {
        values.extend((0..values.capacity()).map(|i| i ^ tick));
        let boxed = Box::new([tick; 8]);
        values.iter().enumerate().all(|(i, &v)| v == i ^ tick) && boxed.iter().all(|&v| v == tick)
    };
    drop(values);
    let fine =
        fine && (!THROUGH_CACHES.load(Ordering::Relaxed) || crate::tests::per_cpu::handler_round(tick));
    if fine {
        HANDLER_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    } else {
        HANDLER_FAILURES.fetch_add(1, Ordering::Relaxed);
    }
    if RUNNING.load(Ordering::Relaxed) {
        arm(now() + TIMER_INTERVAL);
    } else {
        arm(u64::MAX);
    }
}

/// Arms the timer for `deadline` (which also clears a pending timer interrupt).
fn arm(deadline: u64) {
    DEADLINE.store(deadline, Ordering::Relaxed);
    sbi::set_timer(deadline);
}
