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
