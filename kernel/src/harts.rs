//! Starting the other harts with SBI HSM and running one job on each of them.
//!
//! The boot hart stores the job, counts the harts OpenSBI reports as stopped, and starts each
//! one at `_start_secondary`; every started hart runs the job with its hart id, says it is
//! done, and stops itself again (so a later job can start it anew).

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::entry::MAX_HARTS;
use crate::sbi;

/// The job for the other harts, as a `fn(usize)` address (0: none).
static JOB: AtomicUsize = AtomicUsize::new(0);
/// Started harts that have finished the current job.
static DONE: AtomicUsize = AtomicUsize::new(0);

/// Harts whose SBI status is "stopped", i.e. those [`start_others`] will start.
pub fn stopped_harts(me: usize) -> usize {
    (0..MAX_HARTS).filter(|&id| id != me && sbi::hart_get_status(id) == Ok(sbi::HART_STOPPED)).count()
}

/// Starts every stopped hart on `job(hartid)`; returns how many started.
pub fn start_others(me: usize, job: fn(usize)) -> usize {
    DONE.store(0, Ordering::Relaxed);
    // Release: a started hart that reads JOB also sees everything the boot hart wrote before.
    JOB.store(job as usize, Ordering::Release);
    let mut started = 0;
    for id in (0..MAX_HARTS).filter(|&id| id != me) {
        if sbi::hart_get_status(id) != Ok(sbi::HART_STOPPED) {
            continue;
        }
        match sbi::hart_start(id, crate::entry::_start_secondary as *const () as usize, 0) {
            Ok(()) => started += 1,
            Err(error) => println!("    hart {id}: SBI hart_start failed ({error:?})"),
        }
    }
    started
}

/// Waits until `count` started harts have finished their job.
pub fn join_others(count: usize) {
    while DONE.load(Ordering::Acquire) < count {
        core::hint::spin_loop();
    }
}

/// Where `_start_secondary` lands, on the hart's own stack.
pub extern "C" fn secondary_main(hartid: usize, _opaque: usize) -> ! {
    crate::trap::init_hart();
    let job = JOB.load(Ordering::Acquire);
    if job != 0 {
        // SAFETY: JOB only ever holds 0 or the address of a `fn(usize)` stored by
        // `start_others`, so the transmute gives back that function pointer.
        let job: fn(usize) = unsafe { core::mem::transmute::<usize, fn(usize)>(job) };
        job(hartid);
    }
    // Release: the job's writes are visible to the boot hart once it sees DONE.
    DONE.fetch_add(1, Ordering::Release);
    let error = sbi::hart_stop();
    panic!("hart {hartid}: SBI hart_stop failed ({error:?})");
}
