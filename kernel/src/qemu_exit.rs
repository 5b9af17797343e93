//! Ending the QEMU run with a verdict, through the `virt` machine's test device (sifive_test).
//!
//! SBI's system-reset "failure" reason still makes QEMU 7.2 exit 0, so the exit code is set by
//! writing the test device directly: `0x5555` passes (exit 0), `(code << 16) | 0x3333` fails
//! (exit `code`).

/// Physical address of the sifive_test device on QEMU virt (S-mode runs with paging off).
const TEST_DEVICE: *mut u32 = 0x10_0000 as *mut u32;

/// Powers QEMU off with exit code 0.
pub fn pass() -> ! {
    write(0x5555)
}

/// Powers QEMU off with exit code `code` (1 if `code` is 0, which would read as a pass).
pub fn fail(code: u16) -> ! {
    let code = if code == 0 { 1 } else { code };
    write((u32::from(code) << 16) | 0x3333)
}

fn write(value: u32) -> ! {
    // SAFETY: QEMU virt maps the sifive_test device at this physical address, paging is off,
    // and OpenSBI's PMP lets S-mode reach MMIO; the device takes a 32-bit write and nothing
    // else uses this address.
    unsafe { TEST_DEVICE.write_volatile(value) };
    // The write powers the machine off; should it not, stay here rather than run on.
    loop {
        core::hint::spin_loop();
    }
}
