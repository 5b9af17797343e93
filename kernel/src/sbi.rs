//! Calls into OpenSBI (the Supervisor Binary Interface): console output, the timer, starting
//! harts and sending them interrupts.

use core::arch::asm;

/// Legacy extension "console putchar" (QEMU 7.2's OpenSBI lacks the DBCN extension).
const EID_CONSOLE_PUTCHAR: usize = 0x01;
/// The TIME extension ("TIME").
const EID_TIME: usize = 0x5449_4D45;
/// The IPI extension ("sPI").
const EID_IPI: usize = 0x73_5049;
/// The hart state management extension ("HSM").
const EID_HSM: usize = 0x48_534D;

const HSM_HART_START: usize = 0;
const HSM_HART_GET_STATUS: usize = 2;

/// An SBI error code (negative numbers in the specification).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SbiError(pub isize);

/// `hart_get_status`: the hart is stopped and can be started.
pub const HART_STOPPED: usize = 1;

/// One SBI call with the standard calling convention: returns `a1` or the error in `a0`.
fn call(eid: usize, fid: usize, arg0: usize, arg1: usize, arg2: usize) -> Result<usize, SbiError> {
    let error: isize;
    let value: usize;
    // SAFETY: `ecall` from S-mode traps to OpenSBI, which follows the SBI calling convention:
    // it reads a0-a2, a6, a7, writes a0 and a1, and preserves every other register and all of
    // this kernel's memory (the extensions used here do not write memory).
    unsafe {
        asm!(
            "ecall",
            inlateout("a0") arg0 => error,
            inlateout("a1") arg1 => value,
            in("a2") arg2,
            in("a6") fid,
            in("a7") eid,
            options(nostack),
        );
    }
    if error == 0 {
        Ok(value)
    } else {
        Err(SbiError(error))
    }
}

/// Writes one byte to the console.
pub fn console_putchar(byte: u8) {
    // SAFETY: legacy SBI calls read a0 and a7 and return in a0 only; console_putchar writes
    // no memory of ours.
    unsafe {
        asm!(
            "ecall",
            inlateout("a0") byte as usize => _,
            in("a7") EID_CONSOLE_PUTCHAR,
            options(nostack),
        );
    }
}

/// Asks for a supervisor timer interrupt once `time` reaches `deadline`; also clears a pending
/// one.
pub fn set_timer(deadline: u64) {
    // The TIME extension is part of every SBI v0.2+ implementation, OpenSBI's included.
    call(EID_TIME, 0, deadline as usize, 0, 0).expect("SBI set_timer");
}

/// Sends a supervisor software interrupt to the harts in `hart_mask` (bit `i`: hart `i`).
pub fn send_ipi(hart_mask: usize) -> Result<(), SbiError> {
    call(EID_IPI, 0, hart_mask, 0, 0).map(|_| ())
}

/// Starts `hartid` at `start` in S-mode with `a0` = hart id and `a1` = `opaque`.
pub fn hart_start(hartid: usize, start: usize, opaque: usize) -> Result<(), SbiError> {
    call(EID_HSM, HSM_HART_START, hartid, start, opaque).map(|_| ())
}

/// The HSM state of `hartid` (0 started, 1 stopped, ...), or an error for a hart that does
/// not exist.
pub fn hart_get_status(hartid: usize) -> Result<usize, SbiError> {
    call(EID_HSM, HSM_HART_GET_STATUS, hartid, 0, 0)
}
