//! The recording global allocator.
//!
//! Every `alloc`, `alloc_zeroed`, `dealloc` and `realloc` of the process goes to
//! [`std::alloc::System`]; while recording is on, each one is also appended as a
//! [`RawEvent`] (raw addresses, not yet ids) to a buffer that was allocated
//! *before* recording started. Appending therefore never allocates, so the
//! allocator never re-enters itself. Addresses are turned into allocation ids
//! only after recording stops (see `trace.rs`), when allocating is harmless.
//!
//! Threads: every recorded operation takes one spin lock and performs the
//! `System` call *inside* it. The order of events in the buffer is therefore
//! the real order in which the system allocator saw them, even with several
//! threads: a block freed by one thread cannot be handed to another thread and
//! logged as a new allocation before its free is logged. (The workloads are
//! single-threaded anyway; the lock makes the recorder correct regardless.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, Ordering};

/// What happened to a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `alloc` or `alloc_zeroed` returned `addr`.
    Alloc,
    /// `dealloc(addr)`.
    Free,
    /// `realloc(addr)` moved or resized the block to `new_addr` with `size` bytes.
    Realloc,
}

/// One allocator call, as the allocator saw it.
#[derive(Clone, Copy, Debug)]
pub struct RawEvent {
    pub kind: Kind,
    pub addr: usize,
    /// Requested size (the new size for a realloc, unused for a free).
    pub size: usize,
    /// Requested alignment (unused for a free).
    pub align: usize,
    /// Where the block lives after a realloc (unused otherwise).
    pub new_addr: usize,
}

/// The buffer the allocator appends to. Only touched with [`LOCK`] held.
struct Buffer {
    ptr: *mut RawEvent,
    len: usize,
    cap: usize,
    /// Set when an event did not fit; recording then stops for good so that
    /// the trace is a clean prefix of the run rather than one with holes.
    overflowed: bool,
}

struct Shared(UnsafeCell<Buffer>);

// SAFETY: the `Buffer` inside is only read or written by a thread holding
// `LOCK` (see `Locked`), so sharing the cell between threads is sound.
unsafe impl Sync for Shared {}

static BUFFER: Shared =
    Shared(UnsafeCell::new(Buffer { ptr: std::ptr::null_mut(), len: 0, cap: 0, overflowed: false }));
/// Spin lock over `BUFFER`. A spin lock, because `std::sync::Mutex` may
/// allocate on some platforms and must not be used inside an allocator.
static LOCK: AtomicBool = AtomicBool::new(false);
/// Fast-path flag: when off, calls go straight to `System` without the lock.
/// It is only changed with `LOCK` held and re-read under the lock.
static RECORDING: AtomicBool = AtomicBool::new(false);

/// Holds `LOCK` for as long as it lives.
struct Locked;

impl Locked {
    fn acquire() -> Locked {
        while LOCK.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            spin_loop();
        }
        Locked
    }

    fn buffer(&mut self) -> &mut Buffer {
        // SAFETY: a `Locked` exists only while this thread holds `LOCK`, and
        // the `&mut self` borrow keeps the returned reference from outliving it
        // or being duplicated, so this is the only reference to the buffer.
        unsafe { &mut *BUFFER.0.get() }
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        LOCK.store(false, Ordering::Release);
    }
}

impl Buffer {
    fn push(&mut self, event: RawEvent) {
        if self.len == self.cap {
            self.overflowed = true;
            RECORDING.store(false, Ordering::Relaxed);
            return;
        }
        // SAFETY: `ptr` came from a `Vec<RawEvent>` with capacity `cap` (see
        // `start`) and `len < cap`, so slot `len` is in bounds and unaliased.
        unsafe { self.ptr.add(self.len).write(event) };
        self.len += 1;
    }
}

/// The `#[global_allocator]`: `System`, plus recording when switched on.
pub struct RecordingAlloc;

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged and returns its result unchanged, so `System`'s guarantees hold;
// recording only appends to a buffer and never touches the blocks.
unsafe impl GlobalAlloc for RecordingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !RECORDING.load(Ordering::Relaxed) {
            // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
            return unsafe { System.alloc(layout) };
        }
        let mut lock = Locked::acquire();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which is
        // all `System.alloc` asks. Called with the lock held so that the log's
        // order is the system allocator's order (see the module comment).
        let ptr = unsafe { System.alloc(layout) };
        record_alloc(&mut lock, ptr, layout);
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !RECORDING.load(Ordering::Relaxed) {
            // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
            return unsafe { System.alloc_zeroed(layout) };
        }
        let mut lock = Locked::acquire();
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract, which is
        // all `System.alloc_zeroed` asks. Called with the lock held so that the log's
        // order is the system allocator's order (see the module comment).
        let ptr = unsafe { System.alloc_zeroed(layout) };
        record_alloc(&mut lock, ptr, layout);
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !RECORDING.load(Ordering::Relaxed) {
            // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
            return unsafe { System.dealloc(ptr, layout) };
        }
        let mut lock = Locked::acquire();
        if RECORDING.load(Ordering::Relaxed) {
            lock.buffer().push(RawEvent {
                kind: Kind::Free,
                addr: ptr as usize,
                size: 0,
                align: 0,
                new_addr: 0,
            });
        }
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract, which
        // is all `System.dealloc` asks. Freed while the lock is held, so no
        // other thread can be given this address (and log it) before the
        // free is logged.
        unsafe { System.dealloc(ptr, layout) };
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !RECORDING.load(Ordering::Relaxed) {
            // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let mut lock = Locked::acquire();
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract, which is
        // all `System.realloc` asks. Called with the lock held so that the log's
        // order is the system allocator's order (see the module comment).
        let new_ptr = unsafe { System.realloc(ptr, layout, new_size) };
        // A failed realloc leaves the old block untouched: nothing happened.
        if !new_ptr.is_null() && RECORDING.load(Ordering::Relaxed) {
            lock.buffer().push(RawEvent {
                kind: Kind::Realloc,
                addr: ptr as usize,
                size: new_size,
                align: layout.align(),
                new_addr: new_ptr as usize,
            });
        }
        new_ptr
    }
}

fn record_alloc(lock: &mut Locked, ptr: *mut u8, layout: Layout) {
    // A failed allocation hands out no block, so it is not part of the trace.
    if !ptr.is_null() && RECORDING.load(Ordering::Relaxed) {
        lock.buffer().push(RawEvent {
            kind: Kind::Alloc,
            addr: ptr as usize,
            size: layout.size(),
            align: layout.align(),
            new_addr: 0,
        });
    }
}

/// Starts recording into a fresh buffer of `capacity` events.
///
/// The buffer is allocated here, before the flag is raised, so that recording
/// itself never allocates.
pub fn start(capacity: usize) {
    let mut events = std::mem::ManuallyDrop::new(Vec::<RawEvent>::with_capacity(capacity));
    let mut lock = Locked::acquire();
    let buffer = lock.buffer();
    assert!(buffer.ptr.is_null(), "recording already started");
    *buffer = Buffer { ptr: events.as_mut_ptr(), len: 0, cap: events.capacity(), overflowed: false };
    RECORDING.store(true, Ordering::Relaxed);
}

/// Stops recording and returns the events and whether the buffer overflowed
/// (in which case the events are the run's first `capacity` events only).
pub fn stop() -> (Vec<RawEvent>, bool) {
    let mut lock = Locked::acquire();
    RECORDING.store(false, Ordering::Relaxed);
    let buffer = lock.buffer();
    let Buffer { ptr, len, cap, overflowed } =
        std::mem::replace(buffer, Buffer { ptr: std::ptr::null_mut(), len: 0, cap: 0, overflowed: false });
    drop(lock);
    assert!(!ptr.is_null(), "recording was not started");
    // SAFETY: `ptr` and `cap` are those of the `Vec` leaked in `start`, and
    // the first `len` slots were initialised by `Buffer::push`. Ownership was
    // taken out of the shared buffer above, so no one else can use it.
    let events = unsafe { Vec::from_raw_parts(ptr, len, cap) };
    (events, overflowed)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::trace;

    /// Recording is process-wide: the tests that record take turns.
    static RECORDING_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Threads allocating, growing, and freeing each other's blocks while
    /// recording: with the system call inside the lock, the log never shows
    /// an address handed out twice while live (which `render` asserts), and
    /// every free or realloc of a recorded block follows its allocation.
    #[test]
    fn recording_is_consistent_under_threads() {
        let _turn = RECORDING_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        start(1_000_000);
        let (send, receive) = mpsc::channel::<Vec<u64>>();
        let producers: Vec<_> = (0..3)
            .map(|t| {
                let send = send.clone();
                std::thread::spawn(move || {
                    for i in 0..2000u64 {
                        let mut v = Vec::new();
                        for k in 0..(i % 17) {
                            v.push(k + t);
                        }
                        let boxed = Box::new([i; 4]);
                        std::hint::black_box(&boxed);
                        // Freed by the consumer thread.
                        send.send(v).unwrap();
                    }
                })
            })
            .collect();
        drop(send);
        let consumer = std::thread::spawn(move || receive.iter().map(|v| v.len()).sum::<usize>());
        for p in producers {
            p.join().unwrap();
        }
        assert!(consumer.join().unwrap() > 0);
        let (events, overflowed) = stop();
        assert!(!overflowed);
        assert!(events.len() > 3 * 2000 * 2, "{} events", events.len());
        let (text, summary, _) = trace::render("t", "threads", &events, false);
        let (_, _, checked) = trace::check_lines("threads", "t.trace.gz", text.as_bytes()).unwrap();
        assert_eq!(checked, summary);
    }

    #[test]
    fn a_full_buffer_stops_the_recording() {
        let _turn = RECORDING_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        start(10);
        let blocks: Vec<Box<u64>> = (0..40).map(Box::new).collect();
        drop(blocks);
        let (events, overflowed) = stop();
        assert!(overflowed);
        assert_eq!(events.len(), 10);
    }
}
