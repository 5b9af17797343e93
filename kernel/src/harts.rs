//! The other harts: started once with SBI HSM, then parked in `wfi` until the boot hart gives
//! them a job.
//!
//! Why park them ourselves: harts left stopped inside OpenSBI cost the host CPU time under
//! QEMU's multi-threaded TCG (with `-smp 4` on a two-core host, timer interrupts on the boot
//! hart then arrive about 8 ms late instead of 0.1 ms). A hart in `wfi` with only the
//! supervisor software interrupt enabled costs nothing until the boot hart's IPI wakes it.

use core::arch::asm;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::entry::MAX_HARTS;
use crate::sbi;

/// `sie.SSIE` / `sip.SSIP`: supervisor software interrupt (an IPI).
const SSI: usize = 1 << 1;

/// The current job for the other harts, as a `fn(usize)` address (0: none yet).
static JOB: AtomicUsize = AtomicUsize::new(0);
/// Bumped for each new job; a parked hart runs the job when it sees a new value.
static GENERATION: AtomicUsize = AtomicUsize::new(0);
/// Parked harts' bits (bit `i`: hart `i` waits for jobs).
static PARKED: AtomicUsize = AtomicUsize::new(0);
/// Harts that have finished the current job.
static DONE: AtomicUsize = AtomicUsize::new(0);

/// Starts every hart that OpenSBI holds stopped and waits until all of them are parked;
/// returns how many there are.
pub fn start_others(me: usize) -> usize {
    let mut expected = 0usize;
    for id in (0..MAX_HARTS).filter(|&id| id != me) {
        if sbi::hart_get_status(id) != Ok(sbi::HART_STOPPED) {
            continue;
        }
        match sbi::hart_start(id, crate::entry::_start_secondary as *const () as usize, 0) {
            Ok(()) => expected |= 1 << id,
            Err(error) => println!("[kernel] hart {id}: SBI hart_start failed ({error:?})"),
        }
    }
    while PARKED.load(Ordering::Acquire) != expected {
        core::hint::spin_loop();
    }
    expected.count_ones() as usize
}

/// How many harts wait for jobs.
pub fn parked() -> usize {
    PARKED.load(Ordering::Acquire).count_ones() as usize
}

/// Runs `job(hartid)` on every parked hart; returns how many got it. Follow with
/// [`join_others`].
pub fn run_on_others(job: fn(usize)) -> usize {
    DONE.store(0, Ordering::Relaxed);
    JOB.store(job as usize, Ordering::Relaxed);
    // Release: a hart that sees the new generation also sees JOB and everything before.
    GENERATION.fetch_add(1, Ordering::Release);
    let harts = PARKED.load(Ordering::Acquire);
    if let Err(error) = sbi::send_ipi(harts) {
        panic!("SBI send_ipi failed ({error:?})");
    }
    harts.count_ones() as usize
}

/// Waits until `count` harts have finished the job given by [`run_on_others`].
pub fn join_others(count: usize) {
    while DONE.load(Ordering::Acquire) < count {
        core::hint::spin_loop();
    }
}

/// Where `_start_secondary` lands, on the hart's own stack: park, run jobs, park again.
pub extern "C" fn secondary_main(hartid: usize, _opaque: usize) -> ! {
    crate::trap::init_hart();
    let mut seen = GENERATION.load(Ordering::Acquire);
    // SAFETY: enables only the software interrupt in `sie`; `sstatus.SIE` stays clear, so an
    // IPI wakes `wfi` without trapping. Touches no memory.
    unsafe { asm!("csrs sie, {}", in(reg) SSI, options(nomem, nostack)) };
    PARKED.fetch_or(1 << hartid, Ordering::Release);
    loop {
        // Clear the IPI before looking, so one sent after the look keeps `wfi` from sleeping.
        // SAFETY: clears sip.SSIP. Not `nomem`: the read of GENERATION below must stay after it.
        unsafe { asm!("csrc sip, {}", in(reg) SSI, options(nostack)) };
        let now = GENERATION.load(Ordering::Acquire);
        if now == seen {
            // SAFETY: waits for an interrupt; with SIE clear none is taken, `wfi` returns.
            unsafe { asm!("wfi", options(nostack)) };
            continue;
        }
        seen = now;
        let job = JOB.load(Ordering::Relaxed);
        // SAFETY: JOB holds the address of a `fn(usize)` stored by `run_on_others` before it
        // bumped GENERATION, which this hart has seen (Acquire).
        let job: fn(usize) = unsafe { core::mem::transmute::<usize, fn(usize)>(job) };
        job(hartid);
        // Release: the job's writes are visible to the boot hart once it sees DONE.
        DONE.fetch_add(1, Ordering::Release);
    }
}
