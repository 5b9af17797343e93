//! `CpuId`: which CPU the caller runs on, as a kernel tells a per-CPU cache.

use crate::InterruptControl;

/// Which CPU the caller runs on, and how to keep interrupt handlers off it while its cache is
/// in use: what a [`PerCpu`](crate::PerCpu) front asks of the kernel.
///
/// The trait is safe to implement: the cache of every CPU sits behind its own lock, so a wrong
/// or stale answer (a thread preempted and moved to another CPU between `current` and the
/// lock, two threads mapped to one index, an index beyond the CPU count) only costs speed: the
/// caller waits for no one, it finds the cache busy and goes to the shared heap instead.
///
/// In a kernel, `current` reads the hart or CPU id (RISC-V `tp` or a per-hart variable, x86
/// `gs`-relative data) and `Interrupts` masks interrupts for the few instructions a cache is
/// used; an interrupt handler that allocates on a CPU whose cache is in use falls back to the
/// shared heap rather than deadlocking. Host programs and tests map threads to indices
/// (`kheap_testkit::ThreadCpu`).
///
/// ```
/// use kheap::{CpuId, NoInterrupts};
///
/// /// A single-CPU system: always CPU 0, no interrupts that allocate.
/// struct OneCpu;
/// impl CpuId for OneCpu {
///     type Interrupts = NoInterrupts;
///     fn current() -> usize {
///         0
///     }
/// }
/// assert_eq!(OneCpu::current(), 0);
/// ```
pub trait CpuId {
    /// How interrupts are masked on this CPU while its cache is locked (as for
    /// [`RawIrqSpinlock`](crate::RawIrqSpinlock)); [`NoInterrupts`](crate::NoInterrupts) where no
    /// interrupt handler allocates.
    type Interrupts: InterruptControl;

    /// The index of the CPU the caller runs on now, from `0`; a front takes it modulo its CPU
    /// count. Must not allocate.
    fn current() -> usize;

    /// What the caller does while it waits for a lock another CPU holds (the per-CPU front's
    /// depot, or the shared front), after a short spin: called in a loop until the lock is
    /// free. The default spins, right for a kernel,
    /// where the holder runs with interrupts masked and cannot be preempted. Where the holder
    /// *can* be preempted (host threads, more threads than cores) spinning burns the waiter's
    /// time slice while the holder waits for a core; yield there instead. Must not allocate.
    #[inline]
    fn relax() {
        crate::sync::spin_loop();
    }
}
