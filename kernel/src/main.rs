//! A small RISC-V S-mode kernel, booted by OpenSBI on QEMU `virt`, that puts kheap through the
//! rCore / Blog OS tutorials' heap exercises and a test suite of its own. See README.md.
#![no_std]
#![no_main]
// The debug demo runs its one check instead of the suite, which it still builds.
#![cfg_attr(feature = "debug-demo", allow(dead_code, unused_imports))]

extern crate alloc;

#[macro_use]
mod console;

mod config;
#[cfg(feature = "debug-demo")]
mod debug_demo;
mod entry;
mod fnv;
mod frames;
mod harts;
mod heap;
mod heapmap;
mod panic;
mod qemu_exit;
mod report;
mod rng;
mod sbi;
mod tests;
mod timer;
mod trap;
mod workload;

/// The boot hart's Rust entry, from `_start` (stack set, `.bss` zeroed).
pub extern "C" fn boot_main(hartid: usize, dtb: usize) -> ! {
    trap::init_hart();
    entry::plant_stack_canaries();
    println!("[kernel] kheap demo kernel on hart {hartid} (device tree at {dtb:#x})");
    print_layout();
    frames::FRAMES.init(dtb);
    heap::init_heap();
    println!("[kernel] heap: {}", heap::NAME);
    let stats = heap::stats();
    println!("[kernel] static heap: {} bytes allocatable, seed {:#x}", stats.total_bytes, config::SEED);

    #[cfg(feature = "debug-demo")]
    debug_demo::run();
    #[cfg(not(feature = "debug-demo"))]
    run_suite(hartid);
}

/// The kernel's test suite and timing table, then the verdict.
fn run_suite(hartid: usize) -> ! {
    let others = harts::start_others(hartid);
    println!("[kernel] {others} other harts started and parked");

    let (passed, mut failed) = tests::run_all(hartid);
    // The timing table runs the checked workload again; a failure there fails the run too.
    failed += report::show();
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        qemu_exit::pass()
    } else {
        qemu_exit::fail(1)
    }
}

/// Prints where the linker put the image and `.bss`.
fn print_layout() {
    extern "C" {
        fn stext();
        fn etext();
        fn sbss();
        fn ebss();
        fn ekernel();
    }
    println!(
        "[kernel] .text [{:#x}, {:#x}), .bss [{:#x}, {:#x}), image ends at {:#x}",
        stext as *const () as usize,
        etext as *const () as usize,
        sbss as *const () as usize,
        ebss as *const () as usize,
        ekernel as *const () as usize
    );
}
