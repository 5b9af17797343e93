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

/// The same fake interrupts, with a per-thread ("per-CPU") nesting record.
struct NestingFakeInterrupts;

/// One nesting record per test thread (the fake's CPUs), from a static pool.
static NESTING: [CpuInterruptNesting; 64] = [const { CpuInterruptNesting::new() }; 64];
static NEXT_CPU: AtomicUsize = AtomicUsize::new(0);

std::thread_local! {
    static CPU: usize = NEXT_CPU.fetch_add(1, Ordering::Relaxed) % NESTING.len();
}

// SAFETY: as `FakeInterrupts`; each thread (the fake's CPU) has its own nesting record (3).
unsafe impl InterruptControl for NestingFakeInterrupts {
    fn disable() -> bool {
        FakeInterrupts::disable()
    }

    fn restore(was_enabled: bool) {
        FakeInterrupts::restore(was_enabled);
    }

    fn this_cpu() -> Option<&'static CpuInterruptNesting> {
        Some(&NESTING[CPU.with(|cpu| *cpu)])
    }
}

#[test]
fn locks_released_out_of_order_keep_interrupts_off_until_the_last() {
    let (a, b) =
        (RawIrqSpinlock::<NestingFakeInterrupts>::INIT, RawIrqSpinlock::<NestingFakeInterrupts>::INIT);
    assert!(enabled());
    a.lock();
    b.lock();
    // SAFETY: `a` is held by this thread.
    unsafe { a.unlock() };
    assert!(!enabled(), "interrupts came back on while lock b is still held");
    // SAFETY: `b` is held by this thread.
    unsafe { b.unlock() };
    assert!(enabled(), "interrupts not restored after the last lock");
}

#[test]
fn without_a_nesting_record_locks_released_in_reverse_order_restore_correctly() {
    let (a, b) = (RawIrqSpinlock::<FakeInterrupts>::INIT, RawIrqSpinlock::<FakeInterrupts>::INIT);
    a.lock();
    b.lock();
    // SAFETY: both held by this thread, released in reverse order.
    unsafe { b.unlock() };
    assert!(!enabled(), "interrupts came back on while lock a is still held");
    // SAFETY: as above.
    unsafe { a.unlock() };
    assert!(enabled());
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
