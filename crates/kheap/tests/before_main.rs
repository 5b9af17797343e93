//! A host program whose `#[global_allocator]` is a kheap heap over a [`StaticArena`], with no
//! init call: the heap claims the arena on its first allocation, which std makes before `main`
//! (the main thread's name, the arguments). The README's first example, as a program.
//!
//! The test (`harness = false`: this file is the whole program) runs itself again as a child
//! with `KHEAP_BEFORE_MAIN_CHILD` set; the child uses std's collections and threads and exits
//! 0; the parent checks that it did, and what it printed.

use std::collections::BTreeMap;
use std::process::Command;

use kheap::{BuddyHeap, LockedHeap, RawSpinlock, StaticArena};

static ARENA: StaticArena<{ 16 << 20 }> = StaticArena::new();

#[global_allocator]
static HEAP: LockedHeap<RawSpinlock, BuddyHeap> = LockedHeap::new(BuddyHeap::new()).with_source(&ARENA);

/// What the child does: ordinary std code, every allocation from the arena.
fn child() {
    let at_main = HEAP.stats();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                (0..1000u64).map(|i| (i, format!("{t}-{i}"))).collect::<BTreeMap<_, _>>()
            })
        })
        .collect();
    let maps: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(maps.iter().all(|m| m.len() == 1000));
    let probe = Box::new(7u8);
    let arena = (&raw const ARENA).cast::<u8>();
    let inside = (&*probe as *const u8).addr().wrapping_sub(arena.addr()) < 16 << 20;
    HEAP.check_invariants().unwrap();
    let end = HEAP.stats();
    println!(
        "kheap-child: arena taken {}, live allocations at main {}, failed {}, box inside arena {}, peak {}",
        ARENA.is_taken(),
        at_main.live_allocations,
        end.failed_requests,
        inside,
        end.peak_requested_bytes
    );
}

fn main() {
    if std::env::var_os("KHEAP_BEFORE_MAIN_CHILD").is_some() {
        child();
        return;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .env("KHEAP_BEFORE_MAIN_CHILD", "1")
        .output()
        .expect("the child could not be started");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the child failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains("kheap-child: arena taken true"), "{stdout}\n{stderr}");
    assert!(stdout.contains("failed 0, box inside arena true"), "{stdout}\n{stderr}");
    // This process too ran on the arena from its first allocation to here.
    assert!(ARENA.is_taken());
    println!("test a_program_allocates_before_main_from_a_static_arena ... ok ({})", stdout.trim());
}
