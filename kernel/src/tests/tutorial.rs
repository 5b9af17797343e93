//! The tutorial's own `heap_test`, as the first test: it panics on failure, which the panic
//! handler reports as a failed test.

use super::TestResult;

pub fn heap_test() -> TestResult {
    crate::heap::heap_test();
    Ok(())
}
