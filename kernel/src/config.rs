//! Kernel constants, named as in the rCore tutorial where it has them.

/// Bytes of the static heap in `.bss`. Modest on purpose: the growth test must be able to
/// exhaust it, after which the heap grows from the frames after the kernel image.
pub const KERNEL_HEAP_SIZE: usize = 0x20_0000;

/// End of RAM on QEMU virt with its default 128 MiB (RAM starts at 0x8000_0000).
pub const MEMORY_END: usize = 0x8800_0000;

/// Frequency of the `time` CSR on QEMU virt.
pub const CLOCK_FREQ: u64 = 10_000_000;

/// `time` ticks between two timer interrupts: 2 ms, frequent enough to land inside the
/// allocator often while the main flow allocates.
pub const TIMER_INTERVAL: u64 = 20_000;

/// Seed of every random workload; each test mixes in its own name so tests stay independent.
pub const SEED: u64 = 0x6b68_6561_7033;
