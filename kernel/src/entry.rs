//! The first instructions: a stack for each hart (chosen by hart id), `.bss` zeroed by the boot
//! hart, then Rust.
//!
//! OpenSBI enters `_start` on whichever hart it picked to boot (not necessarily hart 0), with
//! `a0` = hart id and `a1` = device-tree address. The other harts stay stopped in OpenSBI
//! until `harts::start_others` starts them at `_start_secondary` (`a0` = hart id, `a1` = the
//! opaque value passed to SBI `hart_start`).

use core::arch::global_asm;

/// Harts the kernel has stacks for; QEMU virt numbers its harts 0.. so `-smp 4` gives 0..=3.
pub const MAX_HARTS: usize = 4;

/// Bytes of stack per hart. The test suite and the trap handler run on it.
pub const STACK_SIZE: usize = 64 * 1024;
const _: () = assert!(STACK_SIZE.is_power_of_two(), "_start shifts by log2(STACK_SIZE)");

/// The stacks, lowest hart first. `_start` points `sp` at the top of its hart's slice.
#[repr(C, align(4096))]
struct Stacks([u8; MAX_HARTS * STACK_SIZE]);

// In `.bss.stack`, which the linker script places before `sbss` so that zeroing `.bss` does
// not wipe the stack the boot hart is running on.
#[link_section = ".bss.stack"]
#[no_mangle]
static mut HART_STACKS: Stacks = Stacks([0; MAX_HARTS * STACK_SIZE]);

global_asm!(
    r#"
    .section .text.entry
    .globl _start
_start:
    call .Lset_stack
    # Zero [sbss, ebss) before any Rust code can read a static there.
    la t0, sbss
    la t1, ebss
1:  bgeu t0, t1, 2f
    sd zero, 0(t0)
    addi t0, t0, 8
    j 1b
2:  tail {boot_main}

    .globl _start_secondary
    .p2align 2
_start_secondary:
    call .Lset_stack
    tail {secondary_main}

    # sp = top of HART_STACKS[a0]; spins for ever on a hart id without a stack.
    .p2align 2
.Lset_stack:
    li t0, {max_harts}
    bgeu a0, t0, 3f
    la sp, HART_STACKS
    addi t0, a0, 1
    slli t0, t0, {stack_shift}
    add sp, sp, t0
    # tp = hart id, for the per-CPU heap caches (`tests::per_cpu::Hart`); Rust code here uses
    # no thread-local storage, so nothing else reads or writes tp.
    mv tp, a0
    ret
3:  wfi
    j 3b
    "#,
    boot_main = sym crate::boot_main,
    secondary_main = sym crate::harts::secondary_main,
    max_harts = const MAX_HARTS,
    stack_shift = const STACK_SIZE.trailing_zeros(),
);

extern "C" {
    /// Entry point of the non-boot harts, for SBI `hart_start`.
    pub fn _start_secondary();
}

/// The word written at the bottom of every hart's stack: a stack that overflows runs through
/// it (into the next-lower hart's stack, or for the lowest hart into `.data`, where the heap's
/// state lives), so a changed canary names the overflow instead of silently corrupting memory.
const STACK_CANARY: u64 = 0x6b68_6561_705f_5354;

/// The bottom word of hart `hart`'s stack.
fn canary_slot(hart: usize) -> *mut u64 {
    (&raw mut HART_STACKS).cast::<u8>().wrapping_add(hart * STACK_SIZE).cast::<u64>()
}

/// Writes the canary at the bottom of every hart's stack. Call once on the boot hart, before
/// any other hart runs.
pub fn plant_stack_canaries() {
    for hart in 0..MAX_HARTS {
        // SAFETY: the slot is the lowest, 4096-aligned word of a hart's stack slice: inside
        // HART_STACKS and never reached by a stack that has not overflowed 64 KiB; the other
        // harts are not running yet and the boot hart's `sp` is near the top of its slice.
        unsafe { canary_slot(hart).write_volatile(STACK_CANARY) };
    }
}

/// The lowest hart whose stack canary was overwritten, if any.
pub fn overflowed_stack() -> Option<usize> {
    // SAFETY: reads the slots written by `plant_stack_canaries` (inside HART_STACKS); a racing
    // write could only come from an overflowing stack, which is what is being looked for.
    (0..MAX_HARTS).find(|&hart| unsafe { canary_slot(hart).read_volatile() } != STACK_CANARY)
}
