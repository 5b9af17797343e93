//! The interrupt-masking lock, with a fake interrupt controller per thread.

use core::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::vec::Vec;

use lock_api::RawMutex;

use super::*;

std::thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Interrupts of the current thread, as a flag.
struct FakeInterrupts;

// SAFETY: the flag models the CPU's interrupt-enable bit; `disable` clears it and reports it,
// `restore(true)` sets it again (test double: nothing is actually masked).
unsafe impl InterruptControl for FakeInterrupts {
    fn disable() -> bool {
        ENABLED.with(|e| e.replace(false))
    }

    fn restore(was_enabled: bool) {
        if was_enabled {
            ENABLED.with(|e| e.set(true));
        }
    }
}

fn enabled() -> bool {
    ENABLED.with(Cell::get)
}

#[test]
fn interrupts_are_off_while_held_and_restored_after() {
    let lock = RawIrqSpinlock::<FakeInterrupts>::INIT;
    assert!(enabled());
    lock.lock();
    assert!(!enabled(), "interrupts left on while the lock is held");
    // SAFETY: held by this thread.
    unsafe { lock.unlock() };
    assert!(enabled(), "interrupts not restored after unlock");
}

#[test]
fn interrupts_already_off_stay_off() {
    let lock = RawIrqSpinlock::<FakeInterrupts>::INIT;
    let was = FakeInterrupts::disable();
    lock.lock();
    // SAFETY: held by this thread.
    unsafe { lock.unlock() };
    assert!(!enabled(), "unlock turned on interrupts that were off before lock");
    FakeInterrupts::restore(was);
}

#[test]
fn a_failed_try_lock_restores_interrupts() {
    let lock = RawIrqSpinlock::<FakeInterrupts>::INIT;
    let held = std::thread::scope(|s| {
        s.spawn(|| {
            lock.lock();
        })
        .join()
    });
    held.unwrap();
    assert!(!lock.try_lock(), "try_lock took a lock another thread holds");
    assert!(enabled(), "a failed try_lock left interrupts off");
    // SAFETY: the other thread took the lock and ended without releasing it; release it on its
    // behalf (the raw lock has no owner).
    unsafe { lock.unlock() };
}

#[test]
fn threads_under_contention_exclude_each_other() {
    let lock = Arc::new(RawIrqSpinlock::<FakeInterrupts>::INIT);
    let inside = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (lock, inside) = (Arc::clone(&lock), Arc::clone(&inside));
            std::thread::spawn(move || {
                for _ in 0..if cfg!(miri) { 100 } else { 10_000 } {
                    lock.lock();
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                    inside.fetch_sub(1, Ordering::SeqCst);
                    // SAFETY: held by this thread.
                    unsafe { lock.unlock() };
                }
                assert!(enabled());
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
