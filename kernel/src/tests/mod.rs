//! The in-kernel test suite. Each test returns `Ok(())` or a message; a panicking test is a
//! failure too (the panic handler reports it and fails the run). After every test the global
//! heap's invariants are walked, so a test that corrupts the heap fails even if its own checks
//! pass.

use alloc::string::String;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

mod algorithms;
mod collections;
mod growth;
mod harts;
mod interrupts;
mod layouts;
pub mod per_cpu;
mod tutorial;

/// What a test returns.
pub type TestResult = Result<(), String>;

/// Returns `Err(message)` from the enclosing test unless `$cond` holds.
macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err(alloc::format!($($message)+));
        }
    };
}

/// Returns an error naming both values unless they are equal.
macro_rules! ensure_eq {
    ($left:expr, $right:expr) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            return Err(alloc::format!(
                "{} = {:?}, expected {} = {:?} (line {})",
                stringify!($left),
                left,
                stringify!($right),
                right,
                line!()
            ));
        }
    }};
}

pub(crate) use {ensure, ensure_eq};

/// A test: its name and its function.
type Test = (&'static str, fn() -> TestResult);

/// The suite, in running order.
const TESTS: &[Test] = &[
    ("tutorial_heap_test", tutorial::heap_test),
    ("string", collections::string),
    ("vec_growth", collections::vec_growth),
    ("vec_deque", collections::vec_deque),
    ("linked_list", collections::linked_list),
    ("btree_map", collections::btree_map),
    ("btree_set", collections::btree_set),
    ("rc_refcell", collections::rc_refcell),
    ("arc_spin_mutex", collections::arc_spin_mutex),
    ("hashbrown_dictionary", collections::hashbrown_dictionary),
    ("long_lived_among_churn", layouts::long_lived_among_churn),
    ("aligned_4k_and_64k", layouts::aligned_4k_and_64k),
    ("realloc_keeps_contents", layouts::realloc_keeps_contents),
    ("try_reserve_beyond_memory", layouts::try_reserve_beyond_memory),
    ("every_algorithm", algorithms::every_algorithm),
    ("timer_handler_allocates", interrupts::timer_handler_allocates),
    ("harts_share_the_heap", harts::harts_share_the_heap),
    ("harts_share_per_cpu_caches", per_cpu::harts_share_per_cpu_caches),
    ("heap_grows", growth::heap_grows),
];

static PASSED: AtomicUsize = AtomicUsize::new(0);
static FAILED: AtomicUsize = AtomicUsize::new(0);
/// Name of the running test (null between tests), for the panic handler.
static CURRENT: AtomicPtr<&'static str> = AtomicPtr::new(core::ptr::null_mut());
/// Hart id of the boot hart, for tests that start the others.
static BOOT_HART: AtomicUsize = AtomicUsize::new(0);

/// Runs every test; returns `(passed, failed)`.
pub fn run_all(boot_hart: usize) -> (usize, usize) {
    BOOT_HART.store(boot_hart, Ordering::Relaxed);
    println!("running {} tests", TESTS.len());
    for (name, test) in TESTS {
        CURRENT.store(core::ptr::from_ref(name).cast_mut(), Ordering::Relaxed);
        let result = test()
            .and_then(|()| {
                crate::heap::check_invariants().map_err(|e| alloc::format!("global heap afterwards: {e}"))
            })
            .and_then(|()| match crate::entry::overflowed_stack() {
                Some(hart) => Err(alloc::format!("hart {hart}'s stack overflowed its 64 KiB")),
                None => Ok(()),
            });
        CURRENT.store(core::ptr::null_mut(), Ordering::Relaxed);
        match result {
            Ok(()) => {
                PASSED.fetch_add(1, Ordering::Relaxed);
                println!("test {name} ... ok");
            }
            Err(message) => {
                FAILED.fetch_add(1, Ordering::Relaxed);
                println!("test {name} ... FAILED: {message}");
            }
        }
    }
    counts()
}

/// `(passed, failed)` so far.
pub fn counts() -> (usize, usize) {
    (PASSED.load(Ordering::Relaxed), FAILED.load(Ordering::Relaxed))
}

/// The running test's name, if any.
pub fn current() -> Option<&'static str> {
    let name = CURRENT.load(Ordering::Relaxed);
    // SAFETY: CURRENT is null or points into the `'static` TESTS table.
    unsafe { name.as_ref() }.copied()
}

/// The boot hart's id.
pub fn boot_hart() -> usize {
    BOOT_HART.load(Ordering::Relaxed)
}

/// The `.bss` range, where the static heap lives.
pub fn bss_range() -> core::ops::Range<usize> {
    extern "C" {
        fn sbss();
        fn ebss();
    }
    sbss as *const () as usize..ebss as *const () as usize
}
