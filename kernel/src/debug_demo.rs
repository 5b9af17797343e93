//! The debug demo (feature `debug-demo`): the global heap is in kheap's debug mode, the kernel
//! writes one byte past the end of a `Box` and frees it, and the heap's misuse hook prints the
//! report on the console. The run passes when the hook saw exactly that overrun.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, Ordering};

use kheap::{Misuse, MisuseKind};

use crate::qemu_exit;

/// Set by the hook when it saw the demo's overrun, named as expected.
static OVERRUN_REPORTED: AtomicBool = AtomicBool::new(false);

/// The global heap's misuse hook in this build: prints the report and lets the kernel go on
/// (the heap refused the free and is unchanged; the block stays allocated).
pub fn print_misuse(misuse: &Misuse) {
    println!("[kernel] heap misuse reported: {misuse}");
    if misuse.kind == MisuseKind::Overrun && misuse.at == Some(48) && misuse.layout.size() == 48 {
        OVERRUN_REPORTED.store(true, Ordering::Release);
    }
}

/// Commits the overrun, checks the report and ends the run with the verdict.
pub fn run() -> ! {
    println!("running 1 tests");
    let block = Box::into_raw(Box::new([0u8; 48])).cast::<u8>();
    // The bug: one byte past the 48-byte block, into the red zone that follows it.
    // SAFETY: out of the block's bounds on purpose; the byte lies in the debug layer's back red
    // zone inside the same heap block (the layer's memory), which nothing else uses.
    unsafe { block.add(48).write_volatile(0xEE) };
    // SAFETY: the block came from `Box::new` above; the heap refuses this free (overrun).
    drop(unsafe { Box::from_raw(block.cast::<[u8; 48]>()) });
    if OVERRUN_REPORTED.load(Ordering::Acquire) {
        println!("test debug_demo_overrun_is_reported ... ok");
        println!("1 passed, 0 failed");
        qemu_exit::pass()
    } else {
        println!("test debug_demo_overrun_is_reported ... FAILED: no overrun report");
        println!("0 passed, 1 failed");
        qemu_exit::fail(1)
    }
}
