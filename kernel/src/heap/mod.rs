//! The kernel heap behind `#[global_allocator]`, in one of two builds:
//!
//! - default: kheap's native front, `LockedHeap<RawIrqSpinlock<RiscvSupervisorInterrupts>,
//!   Heap>` (the default heap), built `with_source` so it grows from the frames after the kernel image;
//! - feature `compat`: the rCore tutorial's `heap_allocator.rs` with only its `use` line
//!   changed to `kheap::compat::buddy_system_allocator`.
//!
//! Both export the same functions, so the test suite is the same for both.

#[cfg(feature = "compat")]
mod compat;
#[cfg(not(feature = "compat"))]
mod native;

#[cfg(feature = "compat")]
pub use compat::*;
#[cfg(not(feature = "compat"))]
pub use native::*;

/// Runs `f` with supervisor interrupts masked on this hart if this build's allocator is not
/// interrupt-safe (see `IRQ_SAFE`); with the native front, runs it as it is.
pub fn irq_guarded<T>(f: impl FnOnce() -> T) -> T {
    if IRQ_SAFE {
        return f();
    }
    let were_enabled = crate::trap::disable_interrupts();
    let result = f();
    crate::trap::restore_interrupts(were_enabled);
    result
}
