//! The subjects: every heap the suite measures, each behind one small adapter.
//!
//! Every subject is built by a function that takes the run's [`Arena`] and returns a
//! `GlobalAlloc`. Heaps that can run without a lock are put behind the one lock every subject
//! shares ([`Spinlocked`], kheap's plain `RawSpinlock`); the few that cannot be separated from
//! their own locking say so in their `config`.
//!
//! Adding a subject: write its `build` function in the adapter file of its family and add one
//! [`Subject`] line to that file's list.

mod kheap;
mod peers;
mod reference;

use std::alloc::{GlobalAlloc, Layout};
use std::ptr;

use lock_api::Mutex;

use crate::arena::Arena;

/// The lock every subject that can take one is put behind: a test-and-set spinlock.
pub type SpinLock = ::kheap::RawSpinlock;

/// A heap under test, owned by the workload that built it.
pub type Heap = Box<dyn GlobalAlloc + Sync>;

/// Where a subject comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// One of kheap's heaps.
    Kheap,
    /// A peer from the crates registry.
    Peer,
    /// A reference point that is not a contender (bump: speed of light; percpu-floor: the least
    /// a per-CPU cache does; system: hosted).
    Reference,
}

impl Family {
    pub fn label(self) -> &'static str {
        match self {
            Family::Kheap => "kheap",
            Family::Peer => "peer",
            Family::Reference => "reference",
        }
    }
}

/// One heap the suite can measure.
pub struct Subject {
    /// Short name used on the command line, in tables and plots.
    pub name: &'static str,
    pub family: Family,
    /// Crate, version and configuration, printed with every run.
    pub config: &'static str,
    /// Builds a new, empty heap over the whole arena. `Err` says why this subject cannot run
    /// with this arena (it is then reported as unsupported, not dropped).
    pub build: fn(&Arena) -> Result<Heap, String>,
    /// Whether every block it hands out lies inside the arena (false for the system allocator).
    pub in_arena: bool,
    /// The workloads it is meant for (a name prefix), or `None` for all: the others neither
    /// run nor appear in its reports.
    pub only: Option<&'static str>,
}

impl Subject {
    /// Whether it runs `workload` (see [`only`](Self::only)).
    pub fn runs(&self, workload: &str) -> bool {
        self.only.is_none_or(|prefix| workload.starts_with(prefix))
    }
}

/// Tells the per-CPU subjects (kheap's and buddy-slab-allocator's) which CPU the calling
/// thread stands for.
pub fn set_cpu(cpu: usize) {
    peers::set_cpu(cpu);
    kheap_testkit::ThreadCpu::set(cpu);
}

/// Every subject, kheap's first.
pub fn all() -> Vec<Subject> {
    let mut subjects = kheap::subjects();
    subjects.extend(peers::subjects());
    subjects.extend(reference::subjects());
    subjects
}

/// A heap without a lock of its own, driven through `&mut self`.
pub trait RawAlloc: Send {
    /// # Safety
    /// `layout` has a non-zero size.
    unsafe fn alloc(&mut self, layout: Layout) -> *mut u8;

    /// # Safety
    /// `ptr` was returned by `alloc` or `realloc` of this heap with `layout` and is live.
    unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout);

    /// Defaults to allocate, copy, free for heaps without a realloc of their own.
    ///
    /// # Safety
    /// As `GlobalAlloc::realloc`.
    unsafe fn realloc(&mut self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        // SAFETY: `new_size` is non-zero (caller's obligation, as for `GlobalAlloc::realloc`).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct and at least this long.
            unsafe {
                ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

/// A [`RawAlloc`] behind the shared spinlock.
pub struct Spinlocked<T>(Mutex<SpinLock, T>);

impl<T: RawAlloc> Spinlocked<T> {
    pub fn new(inner: T) -> Self {
        Spinlocked(Mutex::new(inner))
    }

    /// Direct access to the wrapped heap (for setting it up in place).
    pub fn lock(&self) -> lock_api::MutexGuard<'_, SpinLock, T> {
        self.0.lock()
    }

    pub fn boxed(inner: T) -> Heap
    where
        T: 'static,
    {
        Box::new(Self::new(inner))
    }
}

// SAFETY: every call goes to the wrapped heap under the lock, one at a time; the heap's own
// contract gives `GlobalAlloc`'s.
unsafe impl<T: RawAlloc> GlobalAlloc for Spinlocked<T> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's obligations are passed on.
        unsafe { self.0.lock().alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's obligations are passed on.
        unsafe { self.0.lock().dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's obligations are passed on.
        unsafe { self.0.lock().realloc(ptr, layout, new_size) }
    }
}
