//! The supervisor trap vector: saves the caller-saved registers, dispatches timer interrupts to
//! [`crate::timer`], and treats anything else as a fatal kernel bug.

use core::arch::{asm, global_asm};

/// `scause` of a supervisor timer interrupt (interrupt bit set, code 5).
const SUPERVISOR_TIMER: usize = (1 << 63) | 5;

// The handler is a Rust `extern "C"` function, which preserves the callee-saved registers
// itself; the vector saves the other 16 integer registers (ra, t0-t6, a0-a7) so that the
// interrupted code finds them unchanged. Floating point is switched off (`disable_fpu`), so
// there are no FP registers to save. The frame is 128 bytes, keeping `sp` 16-byte aligned.
global_asm!(
    r#"
    .section .text
    .globl trap_vector
    .p2align 2
trap_vector:
    addi sp, sp, -128
    sd ra, 0(sp)
    sd t0, 8(sp)
    sd t1, 16(sp)
    sd t2, 24(sp)
    sd t3, 32(sp)
    sd t4, 40(sp)
    sd t5, 48(sp)
    sd t6, 56(sp)
    sd a0, 64(sp)
    sd a1, 72(sp)
    sd a2, 80(sp)
    sd a3, 88(sp)
    sd a4, 96(sp)
    sd a5, 104(sp)
    sd a6, 112(sp)
    sd a7, 120(sp)
    call {handler}
    ld ra, 0(sp)
    ld t0, 8(sp)
    ld t1, 16(sp)
    ld t2, 24(sp)
    ld t3, 32(sp)
    ld t4, 40(sp)
    ld t5, 48(sp)
    ld t6, 56(sp)
    ld a0, 64(sp)
    ld a1, 72(sp)
    ld a2, 80(sp)
    ld a3, 88(sp)
    ld a4, 96(sp)
    ld a5, 104(sp)
    ld a6, 112(sp)
    ld a7, 120(sp)
    addi sp, sp, 128
    sret
    "#,
    handler = sym trap_handler,
);

extern "C" {
    fn trap_vector();
}

/// Called by `trap_vector` with interrupts off (the hart cleared `sstatus.SIE` on entry).
extern "C" fn trap_handler() {
    let scause: usize;
    let sepc: usize;
    let stval: usize;
    // SAFETY: reads three CSRs; touches no memory.
    unsafe {
        asm!("csrr {}, scause", "csrr {}, sepc", "csrr {}, stval", out(reg) scause, out(reg) sepc, out(reg) stval, options(nomem, nostack))
    };
    match scause {
        SUPERVISOR_TIMER => crate::timer::on_interrupt(),
        _ => panic!("unexpected trap: scause {scause:#x}, sepc {sepc:#x}, stval {stval:#x}"),
    }
}

/// Points `stvec` at the vector (direct mode) and switches the FPU off on this hart.
pub fn init_hart() {
    let vector = trap_vector as *const () as usize;
    // SAFETY: `trap_vector` is 4-byte aligned (direct mode needs the low two bits clear) and
    // handles every trap the kernel can take; writing stvec touches no memory.
    unsafe { asm!("csrw stvec, {}", in(reg) vector, options(nomem, nostack)) };
    disable_fpu();
}

/// Sets `sstatus.FS` to Off: an FP instruction in the kernel then traps loudly instead of
/// silently sharing FP registers between the main flow and the trap handler, which does not
/// save them.
fn disable_fpu() {
    // SAFETY: clears sstatus bits 13-14 (FS); touches no memory.
    unsafe { asm!("csrc sstatus, {}", in(reg) 3usize << 13, options(nomem, nostack)) };
}

/// Disables supervisor interrupts on this hart; returns whether they were enabled.
pub fn disable_interrupts() -> bool {
    let previous: usize;
    // SAFETY: clears sstatus.SIE atomically and reads its old value. Not `nomem`: memory
    // accesses after this point must stay after it, inside the interrupt-free section.
    unsafe { asm!("csrrci {}, sstatus, 2", out(reg) previous, options(nostack)) };
    previous & 2 != 0
}

/// Re-enables supervisor interrupts on this hart if `were_enabled`.
pub fn restore_interrupts(were_enabled: bool) {
    if were_enabled {
        enable_interrupts();
    }
}

/// Enables supervisor interrupts (`sstatus.SIE`) on this hart.
pub fn enable_interrupts() {
    // SAFETY: sets sstatus.SIE; `stvec` points at a vector able to take any trap (init_hart
    // ran first). Not `nomem`: memory accesses before this point must stay before it.
    unsafe { asm!("csrsi sstatus, 2", options(nostack)) };
}
