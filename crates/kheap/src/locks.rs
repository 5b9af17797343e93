//! Raw locks for [`LockedHeap`](crate::LockedHeap): a spinlock, and a spinlock that masks
//! interrupts on the current CPU while it is held.
//!
//! A plain spinlock deadlocks a kernel whose interrupt handler allocates: the handler spins on
//! a lock that the code it interrupted holds, on the same CPU, for ever. [`RawIrqSpinlock`]
//! turns interrupts off *before* taking the lock and restores them after releasing it, so no
//! handler can run on this CPU while the heap is locked.

use core::marker::PhantomData;
use lock_api::{GuardNoSend, GuardSend, RawMutex};

use crate::sync::{spin_loop, AtomicBool, AtomicUsize, Ordering};

#[cfg(test)]
mod tests;

/// A test-and-test-and-set spinlock.
///
/// ```
/// use kheap::{BuddyHeap, LockedHeap, RawSpinlock};
///
/// // For a heap no interrupt handler uses (or a host program).
/// static HEAP: LockedHeap<RawSpinlock, BuddyHeap> = LockedHeap::new(BuddyHeap::new());
/// assert!(!HEAP.is_locked());
/// ```
pub struct RawSpinlock {
    /// Invariant: `true` exactly while some holder owns the lock.
    locked: AtomicBool,
}

impl RawSpinlock {
    /// An unlocked spinlock.
    pub const fn new() -> Self {
        RawSpinlock { locked: AtomicBool::new(false) }
    }
}

impl Default for RawSpinlock {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: `try_lock` succeeds only by swapping `locked` from false to true with Acquire, so at
// most one holder exists; `unlock` stores false with Release, publishing the holder's writes to
// the next holder.
unsafe impl RawMutex for RawSpinlock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawSpinlock::new();
    type GuardMarker = GuardSend;

    #[inline]
    fn lock(&self) {
        if !self.try_lock() {
            self.lock_contended();
        }
    }

    #[inline]
    fn try_lock(&self) -> bool {
        self.locked.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    #[inline]
    unsafe fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}

impl RawSpinlock {
    /// The wait of [`lock`](RawMutex::lock) when the first try failed, out of line so every
    /// uncontended acquisition is one inlined compare-and-swap.
    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        while !self.try_lock() {
            while self.locked.load(Ordering::Relaxed) {
                spin_loop();
            }
        }
    }
}

/// How a lock turns interrupts off and back on for the current CPU; the kernel supplies it.
///
/// A kernel that keeps per-CPU data should also supply [`this_cpu`](Self::this_cpu): with it,
/// interrupt-masking locks count how many of them this CPU holds and turn interrupts back on
/// only when the last is released, in whatever order they are released. Without it, each lock
/// restores the state it found, which is right only when locks are released in the reverse
/// order of taking them (as guards in nested scopes are).
///
/// # Safety
///
/// 1. After `disable()` returns, no interrupt handler runs on the current CPU until
///    `restore` is called with the value `disable()` returned.
/// 2. `restore(true)` re-enables interrupts; `restore(false)` leaves them disabled.
/// 3. `this_cpu()`, called with interrupts disabled, returns the same record every time on the
///    same CPU and a different one on every other CPU, and nothing but interrupt-masking locks
///    touches it.
///
/// ```
/// use core::sync::atomic::{AtomicBool, Ordering};
/// use kheap::{BuddyHeap, InterruptControl, LockedHeap, RawIrqSpinlock};
///
/// // A kernel's interrupt switch (here a flag standing in for the CPU's).
/// static ENABLED: AtomicBool = AtomicBool::new(true);
/// struct Interrupts;
/// // SAFETY: (in a kernel: disabling really masks interrupts on this CPU) 1: nothing runs
/// // "interrupts" while the flag is clear; 2: `restore(true)` sets it again.
/// unsafe impl InterruptControl for Interrupts {
///     fn disable() -> bool {
///         ENABLED.swap(false, Ordering::SeqCst)
///     }
///     fn restore(was_enabled: bool) {
///         if was_enabled {
///             ENABLED.store(true, Ordering::SeqCst);
///         }
///     }
/// }
/// static HEAP: LockedHeap<RawIrqSpinlock<Interrupts>, BuddyHeap> = LockedHeap::new(BuddyHeap::new());
/// let guard = HEAP.lock();
/// assert!(!ENABLED.load(Ordering::SeqCst)); // masked while the heap is locked
/// drop(guard);
/// assert!(ENABLED.load(Ordering::SeqCst));
/// ```
pub unsafe trait InterruptControl {
    /// Disables interrupts on this CPU; returns whether they were enabled.
    fn disable() -> bool;

    /// Re-enables interrupts on this CPU if `was_enabled`.
    fn restore(was_enabled: bool);

    /// This CPU's count of held interrupt-masking locks, if the kernel keeps one (see above).
    fn this_cpu() -> Option<&'static CpuInterruptNesting> {
        None
    }
}

/// One CPU's record of the interrupt-masking locks it holds (see
/// [`InterruptControl::this_cpu`]): a kernel keeps one per CPU, `const`-initialised.
///
/// ```
/// use kheap::{CpuInterruptNesting, InterruptControl};
///
/// // One record per CPU (a single CPU here), returned by the kernel's `this_cpu`.
/// static CPU0: CpuInterruptNesting = CpuInterruptNesting::new();
/// struct Interrupts;
/// // SAFETY: 1, 2: no interrupts in this example; 3: one CPU, one record, used by the locks only.
/// unsafe impl InterruptControl for Interrupts {
///     fn disable() -> bool {
///         false
///     }
///     fn restore(_: bool) {}
///     fn this_cpu() -> Option<&'static CpuInterruptNesting> {
///         Some(&CPU0)
///     }
/// }
/// ```
#[derive(Debug, Default)]
pub struct CpuInterruptNesting {
    /// Invariant: how many interrupt-masking locks this CPU holds. Only this CPU touches it,
    /// with interrupts disabled (relaxed atomics, for `Sync`).
    depth: AtomicUsize,
    /// Invariant: while `depth > 0`, whether interrupts were enabled before the first lock.
    enabled_before: AtomicBool,
}

impl CpuInterruptNesting {
    /// No lock held.
    pub const fn new() -> Self {
        CpuInterruptNesting { depth: AtomicUsize::new(0), enabled_before: AtomicBool::new(false) }
    }

    /// A lock was taken, with interrupts `were_enabled` before it disabled them.
    fn enter(&self, were_enabled: bool) {
        if self.depth.fetch_add(1, Ordering::Relaxed) == 0 {
            self.enabled_before.store(were_enabled, Ordering::Relaxed);
        }
    }

    /// A lock was released; returns whether interrupts should come back on now.
    fn leave(&self) -> bool {
        let depth = self.depth.fetch_sub(1, Ordering::Relaxed);
        debug_assert!(depth > 0, "an interrupt-masking lock released more often than taken");
        depth == 1 && self.enabled_before.load(Ordering::Relaxed)
    }
}

/// For programs without interrupts (and host tests): does nothing.
///
/// ```
/// use kheap::{BuddyHeap, LockedHeap, NoInterrupts, RawIrqSpinlock};
///
/// // The interrupt-masking lock's type, on a host (tests of kernel code, say).
/// static HEAP: LockedHeap<RawIrqSpinlock<NoInterrupts>, BuddyHeap> = LockedHeap::new(BuddyHeap::new());
/// ```
pub struct NoInterrupts;

// SAFETY: with no interrupts there is no handler to keep out (obligation 1); `restore` has
// nothing to re-enable (obligation 2).
unsafe impl InterruptControl for NoInterrupts {
    fn disable() -> bool {
        false
    }

    fn restore(_: bool) {}
}

/// Supervisor-mode interrupts of the current RISC-V hart (`sstatus.SIE`), for a kernel running
/// in S-mode (under OpenSBI, say). Available on `riscv32` and `riscv64` targets.
///
/// ```ignore
/// // In a RISC-V kernel:
/// use kheap::{BuddyHeap, LockedHeap, RawIrqSpinlock, RiscvSupervisorInterrupts, StaticArena};
///
/// static ARENA: StaticArena<{ 3 << 20 }> = StaticArena::new();
/// #[global_allocator]
/// static HEAP: LockedHeap<RawIrqSpinlock<RiscvSupervisorInterrupts>, BuddyHeap> =
///     LockedHeap::new(BuddyHeap::new()).with_source(&ARENA);
/// ```
#[cfg(any(target_arch = "riscv64", target_arch = "riscv32", doc))]
#[cfg_attr(docsrs, doc(cfg(any(target_arch = "riscv64", target_arch = "riscv32"))))]
pub struct RiscvSupervisorInterrupts;

#[cfg(any(target_arch = "riscv64", target_arch = "riscv32", doc))]
// SAFETY: `csrrci` clears SIE atomically and returns its previous value, so no supervisor
// interrupt is taken on this hart until SIE is set again (1); `csrsi` sets it only when it was
// set before (2). (In documentation built for another target the bodies are never run.)
unsafe impl InterruptControl for RiscvSupervisorInterrupts {
    fn disable() -> bool {
        #[cfg(any(target_arch = "riscv64", target_arch = "riscv32"))]
        {
            let previous: usize;
            // SAFETY: reads and clears one bit of sstatus; touches no memory.
            unsafe { core::arch::asm!("csrrci {}, sstatus, 2", out(reg) previous, options(nostack)) };
            previous & 2 != 0
        }
        #[cfg(not(any(target_arch = "riscv64", target_arch = "riscv32")))]
        unreachable!("documentation only")
    }

    fn restore(was_enabled: bool) {
        #[cfg(any(target_arch = "riscv64", target_arch = "riscv32"))]
        if was_enabled {
            // SAFETY: sets sstatus.SIE, which was set when `disable` ran; touches no memory.
            unsafe { core::arch::asm!("csrsi sstatus, 2", options(nostack)) };
        }
        #[cfg(not(any(target_arch = "riscv64", target_arch = "riscv32")))]
        let _ = was_enabled;
    }
}

/// Maskable interrupts of the current x86-64 CPU (`RFLAGS.IF`), for a kernel running in ring 0
/// (Blog OS, say): `pushfq` reads the flag, `cli` clears it, `sti` sets it again. Available on
/// `x86_64` targets. (In a user-space program `cli` faults: use [`NoInterrupts`] there.)
///
/// ```ignore
/// // In an x86_64 kernel whose interrupt handlers allocate:
/// use kheap::compat::linked_list_allocator::LockedHeap;
/// use kheap::{RawIrqSpinlock, X86Interrupts};
///
/// #[global_allocator]
/// static ALLOCATOR: LockedHeap<RawIrqSpinlock<X86Interrupts>> = LockedHeap::empty();
/// ```
#[cfg(any(target_arch = "x86_64", doc))]
#[cfg_attr(docsrs, doc(cfg(target_arch = "x86_64")))]
pub struct X86Interrupts;

#[cfg(any(target_arch = "x86_64", doc))]
// SAFETY: `cli` clears IF, so no maskable interrupt is taken on this CPU until IF is set again
// (1); `sti` runs only when IF was set before `disable` (2). (In documentation built for another
// target the bodies are never run.)
unsafe impl InterruptControl for X86Interrupts {
    fn disable() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let flags: u64;
            // SAFETY: pushes RFLAGS and pops it into a register (balanced on the stack), then
            // clears IF; no Rust-visible memory is touched. Also a compiler barrier.
            unsafe { core::arch::asm!("pushfq", "pop {}", "cli", out(reg) flags) };
            flags & (1 << 9) != 0
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("documentation only")
    }

    fn restore(was_enabled: bool) {
        #[cfg(target_arch = "x86_64")]
        if was_enabled {
            // SAFETY: sets IF, which was set when `disable` ran; touches no memory.
            unsafe { core::arch::asm!("sti", options(nostack)) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = was_enabled;
    }
}

/// A spinlock that disables interrupts on the current CPU while it is held (through `I`), so
/// an interrupt handler that allocates cannot deadlock against the code it interrupted.
///
/// ```
/// use kheap::{BuddyHeap, LockedHeap, NoInterrupts, RawIrqSpinlock};
///
/// // In a RISC-V kernel: RawIrqSpinlock<kheap::RiscvSupervisorInterrupts>;
/// // on x86_64: RawIrqSpinlock<kheap::X86Interrupts>.
/// static HEAP: LockedHeap<RawIrqSpinlock<NoInterrupts>, BuddyHeap> = LockedHeap::new(BuddyHeap::new());
/// assert!(HEAP.try_lock().is_some());
/// ```
pub struct RawIrqSpinlock<I: InterruptControl> {
    lock: RawSpinlock,
    /// Invariant: while the lock is held, whether interrupts were enabled before the holder
    /// disabled them. Written only by the holder.
    were_enabled: AtomicBool,
    _interrupts: PhantomData<fn() -> I>,
}

impl<I: InterruptControl> RawIrqSpinlock<I> {
    /// Records, as the new holder, the interrupt state found before disabling.
    #[inline]
    fn held(&self, were_enabled: bool) {
        match I::this_cpu() {
            Some(cpu) => cpu.enter(were_enabled),
            None => self.were_enabled.store(were_enabled, Ordering::Relaxed),
        }
    }
}

// SAFETY: interrupts are disabled before `lock` is tried and restored only after it is released,
// so mutual exclusion is `RawSpinlock`'s; `were_enabled` is written by the holder after it owns
// the lock and read by the holder before it releases it.
unsafe impl<I: InterruptControl> RawMutex for RawIrqSpinlock<I> {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawIrqSpinlock {
        lock: RawSpinlock::new(),
        were_enabled: AtomicBool::new(false),
        _interrupts: PhantomData,
    };
    // The guard must be dropped on the CPU whose interrupts it disabled.
    type GuardMarker = GuardNoSend;

    #[inline]
    fn lock(&self) {
        let were_enabled = I::disable();
        self.lock.lock();
        self.held(were_enabled);
    }

    #[inline]
    fn try_lock(&self) -> bool {
        let were_enabled = I::disable();
        if self.lock.try_lock() {
            self.held(were_enabled);
            true
        } else {
            I::restore(were_enabled);
            false
        }
    }

    #[inline]
    unsafe fn unlock(&self) {
        let restore = match I::this_cpu() {
            Some(cpu) => cpu.leave(),
            None => self.were_enabled.load(Ordering::Relaxed),
        };
        // SAFETY: the caller holds the lock (the `RawMutex::unlock` contract).
        unsafe { self.lock.unlock() };
        I::restore(restore);
    }

    fn is_locked(&self) -> bool {
        self.lock.is_locked()
    }
}

/// A lock that enters a critical section of the [`critical-section`] crate while held: the
/// interrupt masking that embedded-alloc uses on single-core microcontrollers, where the
/// critical-section implementation (from the HAL, or `cortex-m`'s `critical-section-single-core`)
/// decides how. Feature `critical-section`.
///
/// Critical sections must be released in the reverse order of taking them (the crate's rule),
/// as guards in nested scopes are.
///
/// [`critical-section`]: https://docs.rs/critical-section
///
/// ```
/// use kheap::{BuddyHeap, LockedHeap, RawCriticalSectionLock, StaticArena};
///
/// static ARENA: StaticArena<{ 64 * 1024 }> = StaticArena::new();
/// // On a microcontroller: #[global_allocator]
/// static HEAP: LockedHeap<RawCriticalSectionLock, BuddyHeap> = LockedHeap::new(BuddyHeap::new()).with_source(&ARENA);
///
/// let layout = core::alloc::Layout::new::<u32>();
/// // SAFETY: non-zero size; freed with the same layout.
/// unsafe { core::alloc::GlobalAlloc::dealloc(&HEAP, core::alloc::GlobalAlloc::alloc(&HEAP, layout), layout) };
/// ```
#[cfg(feature = "critical-section")]
#[cfg_attr(docsrs, doc(cfg(feature = "critical-section")))]
pub struct RawCriticalSectionLock {
    lock: RawSpinlock,
    /// Invariant: while the lock is held, the state `critical_section::acquire` returned to the
    /// holder. Written and read only by the holder.
    state: core::cell::UnsafeCell<core::mem::MaybeUninit<critical_section::RestoreState>>,
}

// SAFETY: `state` is only touched by the holder of `lock`.
#[cfg(feature = "critical-section")]
unsafe impl Sync for RawCriticalSectionLock {}

// SAFETY: the critical section is entered before the lock is tried and left only after it is
// released, so mutual exclusion is `RawSpinlock`'s; `state` is written by the holder after it
// owns the lock and read by it before it releases the lock.
#[cfg(feature = "critical-section")]
unsafe impl RawMutex for RawCriticalSectionLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawCriticalSectionLock {
        lock: RawSpinlock::new(),
        state: core::cell::UnsafeCell::new(core::mem::MaybeUninit::uninit()),
    };
    // The guard must be dropped where the critical section was entered.
    type GuardMarker = GuardNoSend;

    fn lock(&self) {
        // SAFETY: released in `unlock` (or below), by the holder, with this state.
        let state = unsafe { critical_section::acquire() };
        self.lock.lock();
        // SAFETY: the lock is ours: no one else touches `state`.
        unsafe { self.state.get().write(core::mem::MaybeUninit::new(state)) };
    }

    fn try_lock(&self) -> bool {
        // SAFETY: released in `unlock`, or at once when the lock is taken.
        let state = unsafe { critical_section::acquire() };
        if self.lock.try_lock() {
            // SAFETY: the lock is ours: no one else touches `state`.
            unsafe { self.state.get().write(core::mem::MaybeUninit::new(state)) };
            true
        } else {
            // SAFETY: the state `acquire` just returned, released in reverse order.
            unsafe { critical_section::release(state) };
            false
        }
    }

    unsafe fn unlock(&self) {
        // SAFETY: the caller holds the lock (the `RawMutex::unlock` contract), so `state` holds
        // what `lock` wrote.
        let state = unsafe { self.state.get().read().assume_init() };
        // SAFETY: as above.
        unsafe { self.lock.unlock() };
        // SAFETY: the state of the matching `acquire`, on the same thread (the guard is !Send).
        unsafe { critical_section::release(state) };
    }

    fn is_locked(&self) -> bool {
        self.lock.is_locked()
    }
}
