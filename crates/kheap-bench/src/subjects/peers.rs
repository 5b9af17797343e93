//! The peers from the crates registry, each in its default or documented configuration over
//! the shared arena. Every peer that can run without a lock of its own is put behind the
//! shared spinlock ([`Spinlocked`] or, for talc, its `lock_api` parameter).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, Ordering};

use axallocator::ByteAllocator;

use super::{Family, Heap, RawAlloc, SpinLock, Spinlocked, Subject};
use crate::arena::Arena;

// ---- talc 5 ---------------------------------------------------------------------------------

fn talc5(arena: &Arena) -> Result<Heap, String> {
    let heap = Box::new(talc::TalcLock::<SpinLock, talc::source::Manual>::new(talc::source::Manual));
    // SAFETY: the arena is valid and handed to this heap alone until it is dropped.
    unsafe { heap.lock().claim(arena.start, arena.len) }.ok_or("talc refused the arena")?;
    Ok(heap)
}

// ---- talc 4.4 -------------------------------------------------------------------------------

fn talc4(arena: &Arena) -> Result<Heap, String> {
    let heap = Box::new(talc4::Talc::new(talc4::ErrOnOom).lock::<SpinLock>());
    // SAFETY: as in `talc5`.
    unsafe { heap.lock().claim(talc4::Span::from_base_size(arena.start, arena.len)) }
        .map_err(|()| "talc 4 refused the arena")?;
    Ok(heap)
}

// ---- rlsf 0.2 -------------------------------------------------------------------------------

/// 32 second-level bins (rlsf's `GlobalTlsf` choice); 24 first-level bins: blocks up to 512 MiB.
type Rlsf = rlsf::Tlsf<'static, u32, u32, 24, 32>;

struct RlsfHeap(Rlsf);

impl RawAlloc for RlsfHeap {
    unsafe fn alloc(&mut self, layout: Layout) -> *mut u8 {
        self.0.allocate(layout).map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this heap with this alignment (caller's obligation).
        unsafe { self.0.deallocate(NonNull::new_unchecked(ptr), layout.align()) }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        // SAFETY: `ptr` is live in this heap and keeps its alignment.
        unsafe { self.0.reallocate(NonNull::new_unchecked(ptr), new_layout) }
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }
}

fn rlsf(arena: &Arena) -> Result<Heap, String> {
    let mut tlsf = Rlsf::new();
    // SAFETY: as in `talc5`.
    unsafe { tlsf.insert_free_block_ptr(NonNull::slice_from_raw_parts(arena.non_null(), arena.len)) }
        .ok_or("rlsf refused the arena")?;
    Ok(Spinlocked::boxed(RlsfHeap(tlsf)))
}

// ---- buddy_system_allocator 0.13 -------------------------------------------------------------

struct BuddySystem(buddy_system_allocator::Heap<32>);

impl RawAlloc for BuddySystem {
    unsafe fn alloc(&mut self, layout: Layout) -> *mut u8 {
        self.0.alloc(layout).map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this heap with this layout (caller's obligation).
        unsafe { self.0.dealloc(NonNull::new_unchecked(ptr), layout) }
    }
}

fn buddy_system(arena: &Arena) -> Result<Heap, String> {
    let mut heap = buddy_system_allocator::Heap::<32>::new();
    // SAFETY: as in `talc5`.
    unsafe { heap.init(arena.start as usize, arena.len) };
    Ok(Spinlocked::boxed(BuddySystem(heap)))
}

// ---- linked_list_allocator 0.10 --------------------------------------------------------------

struct LinkedList(linked_list_allocator::Heap);

impl RawAlloc for LinkedList {
    unsafe fn alloc(&mut self, layout: Layout) -> *mut u8 {
        self.0.allocate_first_fit(layout).map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this heap with this layout (caller's obligation).
        unsafe { self.0.deallocate(NonNull::new_unchecked(ptr), layout) }
    }
}

fn linked_list(arena: &Arena) -> Result<Heap, String> {
    let mut heap = linked_list_allocator::Heap::empty();
    // SAFETY: as in `talc5`.
    unsafe { heap.init(arena.start, arena.len) };
    Ok(Spinlocked::boxed(LinkedList(heap)))
}

// ---- good_memory_allocator 0.1 ---------------------------------------------------------------

struct Galloc(good_memory_allocator::Allocator);

impl RawAlloc for Galloc {
    unsafe fn alloc(&mut self, layout: Layout) -> *mut u8 {
        // SAFETY: non-zero size (caller's obligation).
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this heap (caller's obligation).
        unsafe { self.0.dealloc(ptr) }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as `GlobalAlloc::realloc` (caller's obligation).
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}

fn galloc(arena: &Arena) -> Result<Heap, String> {
    // The allocator points into itself once initialised: initialise it where it will stay.
    let heap = Box::new(Spinlocked::new(Galloc(good_memory_allocator::Allocator::empty())));
    // SAFETY: as in `talc5`.
    unsafe { heap.lock().0.init(arena.start as usize, arena.len) };
    Ok(heap)
}

// ---- dlmalloc 0.2 ----------------------------------------------------------------------------

/// dlmalloc's system interface over the fixed arena: the first request gets the whole arena
/// (flagged external, so dlmalloc never gives it back); later ones get nothing.
struct ArenaSystem {
    start: *mut u8,
    len: usize,
    handed_out: AtomicBool,
}

// SAFETY: the arena pointer is only handed to the one dlmalloc instance that owns this value.
unsafe impl Send for ArenaSystem {}

// SAFETY: `alloc` hands the arena out once; nothing is ever remapped or released.
unsafe impl dlmalloc::Allocator for ArenaSystem {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        if size <= self.len && !self.handed_out.swap(true, Ordering::Relaxed) {
            (self.start, self.len, 1)
        } else {
            (ptr::null_mut(), 0, 0)
        }
    }

    fn remap(&self, _: *mut u8, _: usize, _: usize, _: bool) -> *mut u8 {
        ptr::null_mut()
    }

    fn free_part(&self, _: *mut u8, _: usize, _: usize) -> bool {
        false
    }

    fn free(&self, _: *mut u8, _: usize) -> bool {
        false
    }

    fn can_release_part(&self, _: u32) -> bool {
        false
    }

    fn allocates_zeros(&self) -> bool {
        false
    }

    fn page_size(&self) -> usize {
        4096
    }
}

struct Dlmalloc(dlmalloc::Dlmalloc<ArenaSystem>);

impl RawAlloc for Dlmalloc {
    unsafe fn alloc(&mut self, layout: Layout) -> *mut u8 {
        // SAFETY: non-zero size (caller's obligation).
        unsafe { self.0.malloc(layout.size(), layout.align()) }
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this heap with this layout (caller's obligation).
        unsafe { self.0.free(ptr, layout.size(), layout.align()) }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as `GlobalAlloc::realloc` (caller's obligation).
        unsafe { self.0.realloc(ptr, layout.size(), layout.align(), new_size) }
    }
}

fn dlmalloc(arena: &Arena) -> Result<Heap, String> {
    let system = ArenaSystem { start: arena.start, len: arena.len, handed_out: AtomicBool::new(false) };
    Ok(Spinlocked::boxed(Dlmalloc(dlmalloc::Dlmalloc::new_with_allocator(system))))
}

// ---- axallocator 0.2 (slab, TLSF, buddy) -----------------------------------------------------

struct Ax<A>(A);

// SAFETY: the allocator exclusively owns the arena it was given; its pointers move with it.
unsafe impl<A> Send for Ax<A> {}

impl<A: ByteAllocator> RawAlloc for Ax<A> {
    unsafe fn alloc(&mut self, layout: Layout) -> *mut u8 {
        self.0.alloc(layout).map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        // SAFETY: a block of this heap is never null.
        self.0.dealloc(unsafe { NonNull::new_unchecked(ptr) }, layout)
    }
}

fn ax<A: ByteAllocator + 'static>(mut heap: A, arena: &Arena) -> Result<Heap, String> {
    heap.init(arena.start as usize, arena.len);
    Ok(Spinlocked::boxed(Ax(heap)))
}

fn ax_slab(arena: &Arena) -> Result<Heap, String> {
    ax(axallocator::SlabByteAllocator::new(), arena)
}

fn ax_tlsf(arena: &Arena) -> Result<Heap, String> {
    ax(axallocator::TlsfByteAllocator::new(), arena)
}

fn ax_buddy(arena: &Arena) -> Result<Heap, String> {
    ax(axallocator::BuddyByteAllocator::new(), arena)
}

// ---- buddy-alloc 0.6 -------------------------------------------------------------------------

struct BuddyAlloc(buddy_alloc::NonThreadsafeAlloc);

// SAFETY: the allocator exclusively owns the arena; it is only used under the lock.
unsafe impl Send for BuddyAlloc {}

impl RawAlloc for BuddyAlloc {
    unsafe fn alloc(&mut self, layout: Layout) -> *mut u8 {
        // SAFETY: non-zero size (caller's obligation).
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this heap (caller's obligation).
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

fn buddy_alloc(arena: &Arena) -> Result<Heap, String> {
    let fast = arena.len / 8;
    // SAFETY: `fast < arena.len`, so the pointer stays in the arena.
    let rest = unsafe { arena.start.add(fast) };
    let heap = buddy_alloc::NonThreadsafeAlloc::new(
        buddy_alloc::FastAllocParam::new(arena.start, fast),
        buddy_alloc::BuddyAllocParam::new(rest, arena.len - fast, 64),
    );
    Ok(Spinlocked::boxed(BuddyAlloc(heap)))
}

// ---- emballoc 0.3 ----------------------------------------------------------------------------

/// emballoc keeps its memory inside the allocator value (`Allocator<N>` holds `[u8; N]`), so
/// the value itself is placed at the start of the arena. Its size is a compile-time constant:
/// these are the arena sizes it is built for.
const EMBALLOC_SIZES: [usize; 3] = [1 << 20, 16 << 20, 64 << 20];

/// Room left for the allocator's own lock and padding.
const EMBALLOC_SLACK: usize = 64;

struct Emballoc<const N: usize>(&'static emballoc::Allocator<N>);

// SAFETY: forwards to emballoc's own `GlobalAlloc` (which takes its own spin lock).
unsafe impl<const N: usize> GlobalAlloc for Emballoc<N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's obligations are passed on.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's obligations are passed on.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's obligations are passed on.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}

fn emballoc_in<const N: usize>(arena: &Arena) -> Heap {
    let place = arena.start.cast::<emballoc::Allocator<N>>();
    assert!(size_of::<emballoc::Allocator<N>>() <= arena.len);
    // SAFETY: the arena is large enough (checked above) and aligned to `ARENA_ALIGN`, more than
    // the allocator's alignment. An all-zero value is the state `Allocator::new` creates
    // (unlocked spin lock, zero first header marking the buffer not yet initialised; the rest
    // of the buffer is uninitialised there); zeroing avoids building N bytes on the stack.
    unsafe {
        place.cast::<u8>().write_bytes(0, size_of::<emballoc::Allocator<N>>());
        Box::new(Emballoc::<N>(&*place))
    }
}

fn emballoc(arena: &Arena) -> Result<Heap, String> {
    const SMALL: usize = EMBALLOC_SIZES[0] - EMBALLOC_SLACK;
    const MEDIUM: usize = EMBALLOC_SIZES[1] - EMBALLOC_SLACK;
    const LARGE: usize = EMBALLOC_SIZES[2] - EMBALLOC_SLACK;
    match arena.len {
        len if len == EMBALLOC_SIZES[0] => Ok(emballoc_in::<SMALL>(arena)),
        len if len == EMBALLOC_SIZES[1] => Ok(emballoc_in::<MEDIUM>(arena)),
        len if len == EMBALLOC_SIZES[2] => Ok(emballoc_in::<LARGE>(arena)),
        len => Err(format!(
            "emballoc's arena size is a compile-time constant; built for 1, 16 and 64 MiB, not {len} bytes"
        )),
    }
}

// ---- buddy-slab-allocator 0.6 ----------------------------------------------------------------

const BSA_CPUS: usize = 4;

thread_local! {
    /// The "CPU" the current thread stands for, for the per-CPU slab (set by the thread workloads).
    static CPU: Cell<usize> = const { Cell::new(0) };
}

/// Tells buddy-slab-allocator which CPU the calling thread stands for.
pub fn set_cpu(cpu: usize) {
    CPU.with(|c| c.set(cpu % BSA_CPUS));
}

struct SlabPool([buddy_slab_allocator::PerCpuSlab<4096>; BSA_CPUS]);

impl buddy_slab_allocator::SlabPoolTrait for SlabPool {
    fn current_slab(&self) -> &dyn buddy_slab_allocator::SlabTrait {
        &self.0[CPU.with(Cell::get)]
    }

    fn owner_slab(&self, cpu_idx: usize) -> &dyn buddy_slab_allocator::SlabTrait {
        &self.0[cpu_idx]
    }
}

static SLAB_POOL: SlabPool = SlabPool([
    buddy_slab_allocator::PerCpuSlab::new(0),
    buddy_slab_allocator::PerCpuSlab::new(1),
    buddy_slab_allocator::PerCpuSlab::new(2),
    buddy_slab_allocator::PerCpuSlab::new(3),
]);

struct BuddySlabPlatform;

#[ax_crate_interface::impl_interface]
impl buddy_slab_allocator::interface::BuddySlabIf for BuddySlabPlatform {
    fn virt_to_phys(vaddr: usize) -> usize {
        vaddr
    }

    fn slab_pool() -> &'static dyn buddy_slab_allocator::SlabPoolTrait {
        &SLAB_POOL
    }
}

fn buddy_slab(arena: &Arena) -> Result<Heap, String> {
    // The crate allows one live instance per program: the previous one was dropped with its
    // heap; its per-CPU caches still point into the old arena, so they are emptied.
    // Collection workloads leak their heap (the routing allocator needs it `'static`), so the
    // crate's one-live-instance flag is cleared here too.
    buddy_slab_allocator::__reset_global_allocator_singleton_for_tests();
    for slab in &SLAB_POOL.0 {
        slab.reset();
    }
    let heap = Box::new(buddy_slab_allocator::GlobalAllocator::<4096>::new());
    // SAFETY: as in `talc5`.
    unsafe { heap.init(std::slice::from_raw_parts_mut(arena.start, arena.len)) }
        .map_err(|e| format!("buddy-slab-allocator refused the arena: {e:?}"))?;
    Ok(heap)
}

pub fn subjects() -> Vec<Subject> {
    let peer = |name, config, build| Subject {
        name,
        family: Family::Peer,
        config,
        build,
        in_arena: true,
        only: None,
    };
    vec![
        peer("talc5", "talc 5.1: TalcLock<spinlock, Manual> (default binning), arena claimed once", talc5),
        peer("talc4", "talc 4.4: Talc<ErrOnOom>.lock::<spinlock>(), arena claimed once; default features off (its default `allocator` feature needs nightly)", talc4),
        peer("rlsf", "rlsf 0.2: Tlsf<u32, u32, FLLEN 24, SLLEN 32> behind the spinlock", rlsf),
        peer("buddy_system_allocator", "buddy_system_allocator 0.13: Heap<32> behind the spinlock", buddy_system),
        peer("linked_list_allocator", "linked_list_allocator 0.10: Heap (first fit) behind the spinlock", linked_list),
        peer("galloc", "good_memory_allocator 0.1: Allocator<default bins> behind the spinlock", galloc),
        peer("dlmalloc", "dlmalloc 0.2: Dlmalloc over the arena as its one system segment, behind the spinlock", dlmalloc),
        peer("ax-slab", "axallocator 0.2: SlabByteAllocator behind the spinlock", ax_slab),
        peer("ax-tlsf", "axallocator 0.2: TlsfByteAllocator (rlsf u32/u32/28/32) behind the spinlock", ax_tlsf),
        peer("ax-buddy", "axallocator 0.2: BuddyByteAllocator (buddy_system_allocator 0.10) behind the spinlock", ax_buddy),
        peer(
            "buddy-alloc",
            "buddy-alloc 0.6: NonThreadsafeAlloc, FastAlloc on 1/8 of the arena + BuddyAlloc leaf 64 B on 7/8 (talc's chart setup), behind the spinlock",
            buddy_alloc,
        ),
        peer(
            "emballoc",
            "emballoc 0.3: Allocator<arena - 64 B> placed in the arena; keeps its own spin lock; arenas of 1, 16, 64 MiB only",
            emballoc,
        ),
        peer(
            "buddy-slab",
            "buddy-slab-allocator 0.6: GlobalAllocator<4 KiB pages>, 4 per-CPU slabs (thread i = CPU i); keeps its own per-CPU locks",
            buddy_slab,
        ),
    ]
}

/// The platform side of `ax-sync`'s spin locks (used inside buddy-slab-allocator): the same
/// test-and-set spinning as the shared lock, no preemption or interrupt state on the host.
struct HostSpinOps;

#[ax_crate_interface::impl_interface]
impl ax_sync::interface::SpinOps for HostSpinOps {
    fn acquire(
        locked: &AtomicBool,
        _metadata: &ax_sync::interface::LockMetadata,
        _lock_addr: usize,
        _context: u8,
        _subclass: u32,
        _caller: &'static std::panic::Location<'static>,
    ) -> ax_sync::interface::ContextState {
        while locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            while locked.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        }
        ax_sync::interface::ContextState::new(0, 0)
    }

    fn try_acquire(
        locked: &AtomicBool,
        _metadata: &ax_sync::interface::LockMetadata,
        _lock_addr: usize,
        _context: u8,
        _subclass: u32,
        _caller: &'static std::panic::Location<'static>,
    ) -> ax_sync::interface::AcquireResult {
        let acquired = locked.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok();
        ax_sync::interface::AcquireResult::new(acquired, ax_sync::interface::ContextState::new(0, 0))
    }

    fn release(
        locked: &AtomicBool,
        _lock_addr: usize,
        _context: u8,
        _state: ax_sync::interface::ContextState,
    ) {
        locked.store(false, Ordering::Release);
    }

    fn force_release(locked: &AtomicBool, _lock_addr: usize, _context: u8) {
        locked.store(false, Ordering::Release);
    }

    fn is_locked(locked: &AtomicBool) -> bool {
        locked.load(Ordering::Relaxed)
    }
}
