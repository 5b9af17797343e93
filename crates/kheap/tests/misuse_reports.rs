//! Every misuse kheap detects reaches the user of a host program whose `#[global_allocator]`
//! is a kheap `LockedHeap`: the report is printed and the program ends, without hanging on the
//! heap's lock and without unwinding out of the allocator.
//!
//! Each test runs this test binary again as a child (`KHEAP_MISUSE` names the misuse to
//! commit) and checks the child's output and how it ended, with a time limit.

use std::alloc::{GlobalAlloc, Layout};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kheap::{BuddyHeap, LockedHeap, RawSpinlock};

/// 256 MiB of page-aligned memory (in `.bss`: only what is touched costs anything), handed to the heap before `main` runs the tests.
#[repr(C, align(4096))]
struct Pages([u8; 256 << 20]);

static mut ARENA: Pages = Pages([0; 256 << 20]);

struct Arena;

// SAFETY: the static is valid for ever (1) and handed out once, guarded by the atomic (2).
unsafe impl kheap::MemorySource for Arena {
    fn acquire(&self, layout: Layout) -> Option<std::ptr::NonNull<[u8]>> {
        static TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if layout.size() > 256 << 20
            || layout.align() > 4096
            || TAKEN.swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return None;
        }
        let start = std::ptr::NonNull::new((&raw mut ARENA).cast::<u8>())?;
        Some(std::ptr::NonNull::slice_from_raw_parts(start, 256 << 20))
    }
}

#[global_allocator]
static GLOBAL: LockedHeap<RawSpinlock, BuddyHeap> = LockedHeap::new(BuddyHeap::new()).with_source(&Arena);

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
            other => panic!("unknown misuse {other}"),
        }
    }
    println!("kheap-test: the program went on after the misuse");
}

/// Runs the child for `kind`; returns its stderr, after checking that it ended (within the
/// time limit) by aborting rather than by exiting normally or unwinding.
fn run_child(kind: &str) -> String {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env("KHEAP_MISUSE", kind)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("the program hung after a {kind} (killed after 60 s)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stdout.contains("went on after the misuse"), "the misuse was not detected:\n{stdout}");
    assert!(!status.success(), "the program exited normally after a {kind}:\n{stderr}");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        // SIGABRT: the panic could not unwind out of the allocator, so the runtime aborted.
        assert_eq!(status.signal(), Some(6), "ended by {status} instead of an abort:\n{stderr}");
    }
    assert!(stderr.contains("panic in a function that cannot unwind"), "{stderr}");
    stderr
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
