//! kheap's `LockedHeap` as the real `#[global_allocator]` of a std program: every allocation
//! of this test binary (the test harness's included) goes through a `BuddyHeap`, which starts
//! empty and takes its memory from a static array (in `.bss`) through a `MemorySource` the first
//! time it is asked.

use std::alloc::Layout;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kheap::{BuddyHeap, LockedHeap, MemorySource, RawSpinlock};

const ARENA_LEN: usize = 64 << 20;

/// Page-aligned memory.
#[repr(C, align(4096))]
struct Pages([MaybeUninit<u8>; ARENA_LEN]);

/// The heap's memory: a zeroed static, so it lands in `.bss` as in a kernel.
static mut ARENA: Pages = Pages([MaybeUninit::uninit(); ARENA_LEN]);

/// Hands out `ARENA`, once.
struct StaticArena {
    taken: AtomicBool,
}

// SAFETY: `ARENA` is a static (valid for ever, 1) and `taken` makes sure it is handed out once
// and never touched again by this program (2).
unsafe impl MemorySource for StaticArena {
    fn acquire(&self, layout: Layout) -> Option<NonNull<[u8]>> {
        if layout.size() > ARENA_LEN || layout.align() > 4096 || self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        let start = NonNull::new((&raw mut ARENA).cast::<u8>())?;
        Some(NonNull::slice_from_raw_parts(start, ARENA_LEN))
    }
}

static SOURCE: StaticArena = StaticArena { taken: AtomicBool::new(false) };

#[global_allocator]
static GLOBAL: LockedHeap<RawSpinlock, BuddyHeap> = LockedHeap::new(BuddyHeap::new()).with_source(&SOURCE);

fn arena_contains(ptr: *const u8) -> bool {
    let start = (&raw const ARENA).cast::<u8>();
    ptr.addr() >= start.addr() && ptr.addr() < start.addr() + ARENA_LEN
}

fn collections_workload(thread: u64) -> u64 {
    let mut checksum = 0u64;
    let mut map = BTreeMap::new();
    let mut hash = HashMap::new();
    let mut queue = VecDeque::new();
    for i in 0..20_000u64 {
        let key = i.wrapping_mul(2_654_435_761).wrapping_add(thread) % 5_000;
        map.insert(key, format!("value {key} from {thread}"));
        hash.entry(key % 977).or_insert_with(Vec::new).push(i);
        queue.push_back(vec![i; (i % 37) as usize]);
        if queue.len() > 300 {
            checksum = checksum.wrapping_add(queue.pop_front().map_or(0, |v| v.len() as u64));
        }
        if i % 3 == 0 {
            map.remove(&(key / 2));
        }
    }
    checksum + map.len() as u64 + hash.values().map(|v| v.len() as u64).sum::<u64>()
}

#[test]
fn std_collections_across_threads_run_on_kheap() {
    let probe = Box::new(42u64);
    assert!(arena_contains((&*probe as *const u64).cast()), "a Box did not come from kheap's arena");
    let before = GLOBAL.stats();
    assert!(before.total_bytes > ARENA_LEN * 9 / 10, "heap did not grow from its source: {before:?}");

    let shared = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                let sum = collections_workload(t);
                // Hand blocks to other threads, which free them: cross-thread frees.
                shared.lock().unwrap().push(vec![t; 1000]);
                sum
            })
        })
        .collect();
    let sums: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    // The workload is deterministic per thread: equal inputs give equal sums.
    assert_eq!(sums[0], collections_workload(0));
    assert_eq!(shared.lock().unwrap().len(), 4);
    drop(shared);

    GLOBAL.check_invariants().unwrap();
    let after = GLOBAL.stats();
    assert!(
        after.peak_requested_bytes > before.requested_bytes + 100_000,
        "workload did not reach kheap: {after:?}"
    );
    assert!(
        after.allocated_bytes <= before.allocated_bytes + 64 * 1024,
        "blocks leaked: {} bytes allocated before, {} after",
        before.allocated_bytes,
        after.allocated_bytes
    );
}
