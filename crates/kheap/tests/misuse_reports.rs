//! Every misuse kheap detects reaches the user of a host program whose `#[global_allocator]`
//! is a kheap `LockedHeap`: the report is printed and the program ends, without hanging on the
//! heap's lock and without unwinding out of the allocator.
//!
//! Each test runs this test binary again as a child (`KHEAP_MISUSE` names the misuse to
//! commit) and checks the child's output and how it ended, with a time limit.

mod common;

use std::alloc::{GlobalAlloc, Layout};

use kheap::{BuddyHeap, LockedHeap, RawHeap, RawSpinlock, StaticArena};

/// 256 MiB in `.bss` (only what is touched costs anything), claimed on the first allocation.
static ARENA: StaticArena<{ 256 << 20 }> = StaticArena::new();

#[global_allocator]
static GLOBAL: LockedHeap<RawSpinlock, BuddyHeap> = LockedHeap::new(BuddyHeap::new()).with_source(&ARENA);

/// Commits the misuse `kind` through the global allocator, as a buggy program would.
fn commit(kind: &str) {
    let layout = Layout::from_size_align(48, 8).unwrap();
    // SAFETY: every call below but the last is correct; the last is the misuse under test,
    // which kheap detects and reports before it changes anything.
    unsafe {
        let block = GLOBAL.alloc(layout);
        let _neighbour = GLOBAL.alloc(layout);
        match kind {
            "double-free" => {
                GLOBAL.dealloc(block, layout);
                GLOBAL.dealloc(block, layout);
            }
            "wrong-layout" => GLOBAL.dealloc(block, Layout::from_size_align(4096, 8).unwrap()),
            "interior" => GLOBAL.dealloc(block.add(16), Layout::from_size_align(16, 8).unwrap()),
            "foreign" => {
                let mut local = [0u8; 64];
                GLOBAL.dealloc(local.as_mut_ptr(), Layout::from_size_align(64, 8).unwrap());
            }
            "null" => GLOBAL.dealloc(std::ptr::null_mut(), layout),
            "bookkeeping" => {
                // The first piece of the heap's own bookkeeping, found by its walk (which does
                // not allocate, so it may run under the lock).
                let mut at = None;
                GLOBAL.lock().walk(&mut |part| {
                    if part.kind == kheap::PartKind::Bookkeeping && at.is_none() {
                        at = Some(part.start.cast_mut());
                    }
                });
                GLOBAL.dealloc(at.expect("the heap has bookkeeping"), layout);
            }
            "impossible" => GLOBAL.dealloc(block, Layout::from_size_align(1 << 60, 8).unwrap()),
            other => panic!("unknown misuse {other}"),
        }
    }
    println!("kheap-test: the program went on after the misuse");
}

fn run_child(kind: &str) -> String {
    common::run_child("KHEAP_MISUSE", kind)
}

/// The child's entry point: commits the misuse named by `KHEAP_MISUSE`.
#[test]
fn child() {
    if let Ok(kind) = std::env::var("KHEAP_MISUSE") {
        commit(&kind);
    }
}

#[test]
fn a_double_free_is_reported_and_ends_the_program() {
    let report = run_child("double-free");
    assert!(report.contains("kheap: deallocate(0x") && report.contains("double free"), "{report}");
    assert!(report.contains("size 48, align 8"), "the report does not name the layout:\n{report}");
}

#[test]
fn a_wrong_layout_is_reported_with_the_block_really_there() {
    let report = run_child("wrong-layout");
    assert!(report.contains("not the one the block was allocated with"), "{report}");
    assert!(report.contains("the block there has size 64"), "{report}");
}

#[test]
fn an_interior_pointer_is_reported() {
    let report = run_child("interior");
    assert!(report.contains("not the start of an allocated block"), "{report}");
}

#[test]
fn a_foreign_pointer_is_reported() {
    let report = run_child("foreign");
    assert!(report.contains("not inside this heap"), "{report}");
}

#[test]
fn a_null_pointer_is_reported() {
    let report = run_child("null");
    assert!(report.contains("the pointer is null"), "{report}");
}

#[test]
fn a_pointer_into_the_heaps_bookkeeping_is_reported() {
    let report = run_child("bookkeeping");
    assert!(report.contains("the heap's own bookkeeping"), "{report}");
}

#[test]
fn a_layout_no_block_can_have_is_reported() {
    let report = run_child("impossible");
    assert!(report.contains("no block of this heap has that layout"), "{report}");
}
