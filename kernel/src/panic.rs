//! The panic handler: a panic anywhere (a failed `assert!`, a broken heap invariant, an
//! unexpected trap) prints its message and fails the QEMU run.

use core::panic::PanicInfo;

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    // Keep a timer interrupt from running on top of a half-broken kernel.
    crate::trap::disable_interrupts();
    crate::console::print_panic(format_args!("\n[kernel] PANIC: {info}\n"));
    let (passed, failed) = crate::tests::counts();
    if let Some(test) = crate::tests::current() {
        crate::console::print_panic(format_args!("test {test} ... FAILED (panicked)\n"));
    }
    crate::console::print_panic(format_args!("{passed} passed, {} failed\n", failed + 1));
    crate::qemu_exit::fail(3)
}
