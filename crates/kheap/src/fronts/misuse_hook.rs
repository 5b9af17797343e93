//! What a front does with a misuse its heap detected: the hook, called with no lock held.

use crate::Misuse;

/// What a front calls when its heap refuses a call as a [`Misuse`] (a double free, a foreign
/// pointer, a wrong layout, ...). It is called after the front has released its lock, so it may
/// allocate, print statistics or take the lock itself. If it returns, the call that was refused
/// returns normally and the heap is unchanged: the block stays allocated (leaked, not corrupted).
///
/// The default is [`panic_on_misuse`]. A kernel may install its own with
/// [`LockedHeap::on_misuse`](crate::LockedHeap::on_misuse), to log and go on, say.
///
/// ```
/// use kheap::{BuddyHeap, LockedHeap, Misuse, RawSpinlock};
///
/// /// Logs and goes on: the block stays allocated (leaked), never corrupted.
/// fn log_misuse(misuse: &Misuse) {
///     eprintln!("{misuse}");
/// }
/// static HEAP: LockedHeap<RawSpinlock, BuddyHeap> = LockedHeap::new(BuddyHeap::new()).on_misuse(log_misuse);
/// ```
pub type MisuseHook = fn(&Misuse);

/// The default [`MisuseHook`]: panics with the report, in a way that cannot unwind out of the
/// allocator (`GlobalAlloc` must not unwind).
///
/// In a kernel the panic handler runs with the report (and no heap lock held). In a hosted
/// program the panic hook prints the report, then the process aborts: the panic starts inside
/// an `extern "C"` function, which Rust does not let a panic leave.
#[cold]
#[inline(never)]
pub fn panic_on_misuse(misuse: &Misuse) {
    panic_without_unwinding(misuse);
}

/// A panic here cannot unwind further than this function: `extern "C"` turns an escaping panic
/// into an abort (Rust 1.81 and later), after the panic hook or handler has reported it.
#[cold]
#[inline(never)]
extern "C" fn panic_without_unwinding(misuse: &Misuse) {
    panic!("{misuse}");
}
