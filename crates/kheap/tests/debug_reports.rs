//! The debug mode's detections reach the user of a host program whose `#[global_allocator]` is
//! `LockedHeap<_, Guarded<TlsfHeap>>`: for an overrun, a write after free, a double free, a
//! wrong layout and an overwritten header, the report is printed (one line naming the kind,
//! the address, the layout, the layout the block was allocated with and its state) and the
//! program ends by aborting, without hanging on the heap's lock or unwinding out of the
//! allocator.
//!
//! Each test runs this test binary again as a child (`KHEAP_DEBUG_MISUSE` names the bug to
//! commit) and checks the child's stderr and how it ended, with a time limit.

use std::alloc::{GlobalAlloc, Layout};

use kheap::{GuardLevel, Guarded, LockedHeap, RawSpinlock, StaticArena, TlsfHeap, QUARANTINE_BLOCKS};

mod common;

/// 64 MiB in `.bss` (only what is touched costs anything), claimed on the first allocation.
static ARENA: StaticArena<{ 64 << 20 }> = StaticArena::new();

#[global_allocator]
static GLOBAL: LockedHeap<RawSpinlock, Guarded<TlsfHeap>> =
    LockedHeap::new(Guarded::new(TlsfHeap::new(), GuardLevel::Poison)).with_source(&ARENA);

/// Commits the bug `kind` through the global allocator, as a buggy program would.
fn commit(kind: &str) {
    let layout = Layout::from_size_align(48, 8).unwrap();
    // SAFETY: every call but the bug under test is correct; kheap's debug layer detects the
    // bug (the writes land in red zones or quarantined blocks, which the layer owns) and
    // reports it before anything changes.
    unsafe {
        let block = GLOBAL.alloc(layout);
        let _neighbour = GLOBAL.alloc(layout);
        match kind {
            "overrun" => {
                block.add(48).write(0);
                GLOBAL.dealloc(block, layout);
            }
            "underrun" => {
                block.sub(3).write(0);
                GLOBAL.dealloc(block, layout);
            }
            "use-after-free" => {
                GLOBAL.dealloc(block, layout);
                block.add(7).write(1); // through a dangling pointer
                                       // Later frees push the block out of quarantine, where its poison is checked.
                for _ in 0..=QUARANTINE_BLOCKS {
                    let other = GLOBAL.alloc(layout);
                    GLOBAL.dealloc(other, layout);
                }
            }
            "double-free" => {
                GLOBAL.dealloc(block, layout);
                GLOBAL.dealloc(block, layout);
            }
            "wrong-layout" => GLOBAL.dealloc(block, Layout::from_size_align(64, 8).unwrap()),
            "corrupted-header" => {
                // A stray write 20 bytes before the block: into its header.
                block.sub(20).write(0x55);
                GLOBAL.dealloc(block, layout);
            }
            other => panic!("unknown bug {other}"),
        }
    }
    println!("kheap-test: the program went on after the bug");
}

fn run_child(kind: &str) -> String {
    common::run_child("KHEAP_DEBUG_MISUSE", kind)
}

/// The report line of a child's stderr.
fn report(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|line| line.starts_with("kheap: deallocate(0x"))
        .unwrap_or_else(|| panic!("no report:\n{stderr}"))
}

/// The child's entry point: commits the bug named by `KHEAP_DEBUG_MISUSE`.
#[test]
fn child() {
    if let Ok(kind) = std::env::var("KHEAP_DEBUG_MISUSE") {
        commit(&kind);
    }
}

#[test]
fn an_overrun_is_reported_with_the_offset_and_the_layout_allocated() {
    let stderr = run_child("overrun");
    let line = report(&stderr);
    assert!(
        line.contains("size 48, align 8): the red zone around the block was overwritten (overrun)"),
        "{line}"
    );
    assert!(line.contains("the block there has size 48 and align 8"), "{line}");
    assert!(line.contains("first bad byte at offset 48"), "{line}");
    assert!(line.contains("block state: allocated"), "{line}");
}

#[test]
fn an_underrun_is_reported_before_the_block() {
    let line = report(&run_child("underrun")).to_owned();
    assert!(line.contains("(overrun)") && line.contains("offset -3 (before the block)"), "{line}");
}

#[test]
fn a_write_after_free_is_reported_when_the_block_leaves_quarantine() {
    let stderr = run_child("use-after-free");
    let line = report(&stderr);
    assert!(line.contains("(use after free)"), "{line}");
    assert!(line.contains("first bad byte at offset 7"), "{line}");
    assert!(line.contains("block state: freed, in quarantine"), "{line}");
}

#[test]
fn a_double_free_is_reported_with_the_layout_allocated() {
    let stderr = run_child("double-free");
    let line = report(&stderr);
    assert!(line.contains("(double free)") && line.contains("the block there has size 48"), "{line}");
    assert!(line.contains("block state: free"), "{line}");
}

#[test]
fn a_wrong_layout_is_reported_with_the_layout_allocated() {
    let stderr = run_child("wrong-layout");
    let line = report(&stderr);
    assert!(line.contains("size 64, align 8): the layout is not the one"), "{line}");
    assert!(line.contains("the block there has size 48 and align 8"), "{line}");
}

#[test]
fn an_overwritten_header_is_reported() {
    let stderr = run_child("corrupted-header");
    assert!(report(&stderr).contains("the block's guard header was overwritten"), "{stderr}");
}
