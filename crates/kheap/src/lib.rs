//! kheap: dynamic memory for operating-system kernels and bare-metal programs.
//!
//! A complete program (`examples/host_program.rs`, the README's first example): the default
//! [`Heap`] (slabs over TLSF) behind a [`LockedHeap`], over a [`StaticArena`] that the heap
//! claims on its first allocation, as the program's global allocator from before `main`:
//!
//! ```
#![doc = include_str!("../examples/host_program.rs")]
//! ```
//!
//! A kernel does the same with an interrupt-masking lock
//! (`RawIrqSpinlock<`[`RiscvSupervisorInterrupts`]`>`, `RawIrqSpinlock<`[`X86Interrupts`]`>`, or
//! `RawCriticalSectionLock` with the `critical-section` feature). Kernels written for the
//! tutorials' allocators switch with one `use` line:
//! [`compat::buddy_system_allocator`] (rCore) and [`compat::linked_list_allocator`] (Blog OS).
//!
//! A kernel hands kheap memory (a zeroed `static` array in `.bss`, later pages from its frame
//! allocator); kheap manages it and, installed with `#[global_allocator]`, lets `Box`, `Vec`,
//! `String`, `BTreeMap`, `Rc` and `Arc` work inside the kernel.
//!
//! The crate has three layers (see `ARCHITECTURE.md` in the repository):
//!
//! 1. **Heaps** implement [`RawHeap`]: the algorithms [`BuddyHeap`], [`FirstFitHeap`] and
//!    [`TlsfHeap`], the layers that wrap one ([`SlabHeap`], [`Guarded`], [`Counted`]), and the
//!    default [`Heap`] (`SlabHeap<TlsfHeap>`). They are single-threaded (`&mut self`),
//!    lock-free and own nothing but the regions given to them.
//! 2. **Locks**: [`RawSpinlock`] and the interrupt-masking [`RawIrqSpinlock`].
//! 3. **Fronts**: [`LockedHeap`] implements [`GlobalAlloc`](core::alloc::GlobalAlloc) over any
//!    heap and any `lock_api::RawMutex`, growing from a [`MemorySource`] ([`StaticArena`],
//!    [`StaticRegion`], a kernel's frame allocator); [`compat`] holds the drop-ins for the
//!    tutorials' allocators.
//!
//! # Contract words
//!
//! These words are used with one meaning in every `# Safety` section of the crate.
//!
//! - <a id="live-allocation"></a>**live allocation**: a pointer returned by a heap's
//!   `allocate` (or kept or moved by a successful `grow_in_place` / `shrink_in_place`) that has
//!   not yet been passed to `deallocate`.
//! - <a id="fits"></a>**fits**: a layout *fits* a live allocation when it is the layout the
//!   allocation was last allocated or resized with (same size, same alignment).
//! - <a id="region"></a>**region**: memory handed to a heap with `add_region`. From then on the
//!   heap owns it: nothing else reads or writes it, and it stays valid for as long as the heap
//!   is used (for ever, in a kernel).
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(test)]
extern crate std;

mod algorithms;
pub mod compat;
mod contract;
mod fronts;
mod heap;
mod layers;
mod locks;
mod secret;
mod sources;
mod sync;
#[cfg(test)]
mod test_memory;

pub use algorithms::buddy::{BuddyHeap, DEFAULT_MAX_ORDER};
pub use algorithms::first_fit::{FirstFitHeap, FitPolicy};
pub use algorithms::tlsf::TlsfHeap;
pub use contract::error::{AllocError, InvariantError, RegionError};
pub use contract::misuse::{Misuse, MisuseKind};
pub use contract::raw_heap::{BlockLookup, RawHeap};
pub use contract::stats::{HeapStats, HeapUsage};
pub use contract::walk::{Part, PartKind};
pub use fronts::cpu_id::CpuId;
pub use fronts::front::Front;
pub use fronts::locked_heap::LockedHeap;
pub use fronts::misuse_hook::{panic_on_misuse, MisuseHook};
pub use fronts::per_cpu::{CpuCacheStats, PerCpu};
pub use heap::Heap;
pub use layers::counted::Counted;
pub use layers::guarded::{debug_heap, DebugHeap, GuardLevel, Guarded, QUARANTINE_BLOCKS, QUARANTINE_BYTES};
pub use layers::size_class::SizeClass;
pub use layers::slab::{SlabHeap, SLABS_FROM, SLAB_MAX};
pub use lock_api;
#[cfg(feature = "critical-section")]
pub use locks::RawCriticalSectionLock;
#[cfg(any(target_arch = "riscv64", target_arch = "riscv32", doc))]
pub use locks::RiscvSupervisorInterrupts;
#[cfg(any(target_arch = "x86_64", doc))]
pub use locks::X86Interrupts;
pub use locks::{CpuInterruptNesting, InterruptControl, NoInterrupts, RawIrqSpinlock, RawSpinlock};
pub use sources::{ArenaByte, MemorySource, StaticArena, StaticRegion};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
