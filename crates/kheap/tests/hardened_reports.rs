//! A hardened heap's detections reach the user of a host program whose `#[global_allocator]` is
//! `LockedHeap<_, TlsfHeap<true>>`: a write after free that lands on a free block's links or
//! size tags is reported when a later call meets the block (an allocate, through
//! `RawHeap::take_corruption` and the front's misuse hook; a free that would merge with it,
//! as its own misuse), and the program ends by aborting, without hanging on the heap's lock.
//!
//! Each test runs this test binary again as a child (`KHEAP_HARDENED_BUG` names the bug to
//! commit) and checks the child's stderr and how it ended, with a time limit.

use std::alloc::{GlobalAlloc, Layout};

use kheap::{LockedHeap, RawSpinlock, StaticArena, TlsfHeap};

mod common;

/// 64 MiB in `.bss` (only what is touched costs anything), claimed on the first allocation.
static ARENA: StaticArena<{ 64 << 20 }> = StaticArena::new();

#[global_allocator]
static GLOBAL: LockedHeap<RawSpinlock, TlsfHeap<true>> =
    LockedHeap::new(TlsfHeap::hardened()).with_source(&ARENA);

/// Commits the bug `kind` through the global allocator, as a buggy program would.
fn commit(kind: &str) {
    // An odd size of its own, so that the freed block is alone on its free list.
    let layout = Layout::from_size_align(720, 8).unwrap();
    // SAFETY: every call but the bug under test is correct; the write after free lands in
    // memory the heap owns (its own free block), which the hardened heap checks before it
    // follows anything written there.
    unsafe {
        match kind {
            "allocate" => {
                let _before = GLOBAL.alloc(layout);
                let block = GLOBAL.alloc(layout);
                let _after = GLOBAL.alloc(layout);
                GLOBAL.dealloc(block, layout);
                // A dangling pointer writes a string over the freed block's first bytes: its
                // links.
                block.copy_from_nonoverlapping(b"dangling write!!".as_ptr(), 16);
                let _ = GLOBAL.alloc(layout);
            }
            "free" => {
                // A block shrunk in place: its freed tail is the free block right after it,
                // wherever the runtime's own allocations put the block.
                let wide = Layout::from_size_align(3 * 720, 8).unwrap();
                let block = GLOBAL.alloc(wide);
                let block = GLOBAL.realloc(block, wide, 1440);
                // A stale pointer into the old tail writes over the free block's links.
                block.add(1440).copy_from_nonoverlapping(b"dangling write!!".as_ptr(), 16);
                GLOBAL.dealloc(block, Layout::from_size_align(1440, 8).unwrap());
            }
            other => panic!("unknown bug {other}"),
        }
    }
    println!("kheap-test: the program went on after the bug");
}

/// The report line of a child's stderr.
fn report(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|line| line.starts_with("kheap: the free block at 0x"))
        .unwrap_or_else(|| panic!("no report:\n{stderr}"))
}

/// The child's entry point: commits the bug named by `KHEAP_HARDENED_BUG`.
#[test]
fn child() {
    if let Ok(kind) = std::env::var("KHEAP_HARDENED_BUG") {
        commit(&kind);
    }
}

#[test]
fn an_allocate_that_meets_overwritten_links_reports_them() {
    let stderr = common::run_child("KHEAP_HARDENED_BUG", "allocate");
    let line = report(&stderr);
    assert!(line.contains("links or size tags were overwritten"), "{line}");
    assert!(line.contains("found serving a call with size 720, align 8"), "{line}");
}

#[test]
fn a_free_next_to_overwritten_links_reports_them() {
    let stderr = common::run_child("KHEAP_HARDENED_BUG", "free");
    let line = report(&stderr);
    assert!(line.contains("links or size tags were overwritten"), "{line}");
}
