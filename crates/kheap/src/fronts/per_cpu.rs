//! `PerCpu`: per-CPU magazines of small objects in front of a shared front.

mod classes;
mod depot;
mod magazine;
#[cfg(test)]
mod tests;

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};

use lock_api::{Mutex, MutexGuard};

use crate::{
    panic_on_misuse, AllocError, CpuId, Front, HeapStats, Misuse, MisuseHook, MisuseKind, RawIrqSpinlock,
    SizeClass,
};
use classes::{cached_class, object_aligned, object_layout};
use depot::{max_depot_bytes, Depot};
use magazine::{capacity, max_cached_bytes_per_cpu, Magazine};

/// Per-CPU caches of small objects in front of a shared front `F` (such as a
/// [`LockedHeap`](crate::LockedHeap)), for `CPUS` CPUs numbered by `C`; usable as
/// `#[global_allocator]`.
///
/// One lock for all CPUs collapses under contention: every allocation of every CPU queues on
/// it. `PerCpu` keeps, for each CPU and each [`SizeClass`], a magazine: a stack of up to 32 free
/// objects of the class (fewer above 128 bytes, at most 4 KiB a magazine). An allocation pops
/// from the calling CPU's magazine; an empty magazine is refilled with half its capacity from
/// the shared front under one acquisition of its lock ([`Front::allocate_batch`]). A free
/// pushes onto the calling CPU's magazine, whichever CPU allocated the object; a full magazine
/// flushes its oldest half to the shared front, again under one lock
/// ([`Front::deallocate_batch`]). After a refill or a flush the magazine is half full, so an
/// allocate/free pair at either edge never moves objects back and forth (hysteresis).
///
/// Between the magazines and the shared front sits a *depot* of up to 32 batches (each half
/// a magazine): a flush stores its half there while a slot is free, and a refill takes a batch
/// of its class from there before it asks the shared front. When one CPU allocates what another
/// frees, objects then travel from the freeing CPU to the allocating one as a copy of at most
/// 32 pointers under the depot's short-held lock, not as one free and one allocate per object
/// under the shared front's. A CPU that finds the depot or the shared front busy spins briefly,
/// then waits the kernel's way ([`CpuId::relax`]).
///
/// Every object of a class is a block the shared front handed out with one layout, the
/// class's, so any two are interchangeable: a block freed on another CPU serves that CPU's next
/// allocation of the class, and a flush returns it to the shared front with the layout it was
/// allocated with. The class's layout has the class's size ([`SizeClass`]) and, up to
/// [`SLAB_MAX`](crate::SLAB_MAX) bytes, its alignment ([`SizeClass::align`], which the slab
/// layer gives for free); larger classes are two-word aligned (an aligned search in the backing
/// heap on every refill would cost more than the cache saves). Requests above
/// [`SizeClass::MAX_SIZE`] (1 KiB), and requests above `SLAB_MAX` aligned to more than two
/// words, go to the shared front directly.
///
/// # Soundness with any CPU numbering
///
/// Each CPU's magazines sit behind their own interrupt-masking spin lock (interrupts masked by
/// [`CpuId::Interrupts`]), which is only ever *tried*: an allocation or free that finds its
/// CPU's lock held (an interrupt handler on that CPU, a thread that shares the index, a
/// [`drain`](PerCpu::drain) from another CPU) goes to the shared front with the class layout
/// instead of waiting. So a [`CpuId`] that maps two threads to one index, or answers for a CPU
/// the caller has just left, is still sound (the lock serialises them) and cannot deadlock
/// (nobody waits on a magazine lock but `drain` and the statistics). In a kernel the lock is
/// uncontended: it is one CPU's, taken with interrupts masked.
///
/// # Memory held, statistics
///
/// The caches hold at most [`PerCpu::MAX_CACHED_BYTES_PER_CPU`] bytes per CPU (the sum over
/// the 40 classes of capacity × class size: 144,536 bytes) and the depot at most
/// [`PerCpu::MAX_DEPOT_BYTES`] (65,536 bytes) in all, every byte of it blocks the shared front
/// counts as allocated. [`drain`](PerCpu::drain) returns one CPU's objects (before the CPU goes
/// offline: nothing stays stranded), [`drain_all`](PerCpu::drain_all) every CPU's and the
/// depot's. [`stats`](Front::stats) counts callers exactly (`live_allocations`,
/// `requested_bytes`); `free_bytes` and `allocated_bytes` are the shared front's, in which
/// cached objects count as allocated ([`cached_bytes`](PerCpu::cached_bytes) says how many),
/// so they are exact after a `drain_all`; `peak_requested_bytes` is the shared front's (class
/// sizes and cached objects included: an upper bound).
///
/// # Misuse
///
/// A free of a pointer that is not aligned for its layout's class, or of an object still in
/// the calling CPU's magazine (a double free), goes to the front's [`MisuseHook`] (after the
/// magazine's lock is released) and changes nothing; a small filter per magazine keeps that
/// check from scanning the magazine on almost every free, and nothing is written into cached
/// objects. A double free found when a magazine is flushed is reported by the shared front's
/// hook. Other misuse (a wrong layout, a foreign pointer, a double free of an object cached by
/// another CPU) is not detected here: as for any heap, undetected misuse is undefined
/// behaviour.
///
/// ```
/// use core::alloc::{GlobalAlloc, Layout};
/// use kheap::{CpuId, Front, LockedHeap, NoInterrupts, PerCpu, RawSpinlock, StaticArena, TlsfHeap};
///
/// struct OneCpu;
/// impl CpuId for OneCpu {
///     type Interrupts = NoInterrupts;
///     fn current() -> usize {
///         0
///     }
/// }
/// static ARENA: StaticArena<{ 1 << 20 }> = StaticArena::new();
/// static HEAP: PerCpu<LockedHeap<RawSpinlock, TlsfHeap>, OneCpu, 1> =
///     PerCpu::new(LockedHeap::new(TlsfHeap::new()).with_source(&ARENA));
///
/// let layout = Layout::new::<[u64; 8]>();
/// // SAFETY: non-zero size; freed below with the same layout.
/// let block = unsafe { HEAP.alloc(layout) };
/// assert!(!block.is_null());
/// assert_eq!(HEAP.stats().live_allocations, 1);
/// // SAFETY: allocated above with `layout`.
/// unsafe { HEAP.dealloc(block, layout) };
/// assert!(HEAP.cached_bytes() > 0); // the refill's objects wait in CPU 0's magazine
/// HEAP.drain_all();
/// let stats = HEAP.stats();
/// assert_eq!((stats.live_allocations, stats.free_bytes), (0, stats.total_bytes));
/// ```
pub struct PerCpu<F, C: CpuId, const CPUS: usize> {
    /// Where refills come from and flushes go; serves large requests.
    shared: F,
    /// Invariant: slot `i` holds the caches of CPU `i`; every object in them is a block of
    /// `shared` allocated with its class layout and held by no caller.
    slots: [Slot<C>; CPUS],
    /// Full batches on their way from CPUs that free to CPUs that allocate.
    depot: DepotSlot<C>,
    /// Called with no magazine lock held when a free is detected as misuse.
    on_misuse: MisuseHook,
    /// Wrapping sum of `requested − class size` over the small allocations that bypassed a busy
    /// cache (and of size changes within a class), minus the same over such frees: the part of
    /// the caller statistics no cache recorded.
    bypass_adjust: AtomicUsize,
    /// How many small allocations and frees found their CPU's cache busy.
    bypasses: AtomicUsize,
}

/// One CPU's caches, alone on their cache lines so CPUs do not share lines.
#[repr(align(128))]
struct Slot<C: CpuId> {
    cache: Mutex<RawIrqSpinlock<C::Interrupts>, Cache>,
}

/// The depot, alone on its cache lines. Its lock masks interrupts like a CPU's: it is taken
/// with a CPU's cache held (interrupts already masked) and also without (`drain_all`, the
/// statistics), where an interrupt handler that allocates must not find it held.
#[repr(align(128))]
struct DepotSlot<C: CpuId> {
    depot: Mutex<RawIrqSpinlock<C::Interrupts>, Depot>,
}

/// One CPU's magazines and counters.
struct Cache {
    /// Invariant: `magazines[i]` holds objects of `SizeClass::from_index(i)`, at most its
    /// `capacity`.
    magazines: [Magazine; SizeClass::COUNT],
    /// Wrapping sum of the requested sizes of the small allocations this cache served, minus
    /// those of the frees it took.
    requested: usize,
    /// Per class, the small allocations this cache served minus the frees it took (wrapping:
    /// an object allocated here and freed elsewhere counts +1 here, -1 there). With
    /// `requested`, what turns the shared front's count of class sizes into the callers'
    /// requested bytes ([`requested_adjust`](Self::requested_adjust)): two additions per call,
    /// no class size looked up.
    live: [usize; SizeClass::COUNT],
    /// Counters for [`CpuCacheStats`].
    counters: CpuCacheStats,
}

// SAFETY: the pointers in a cache are blocks of the shared front that no caller holds; they
// are data owned by the cache, and whichever thread holds the cache's lock may hand them out
// or return them to the (thread-safe) shared front.
unsafe impl Send for Cache {}

/// What one CPU's cache did and holds, from [`PerCpu::cpu_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuCacheStats {
    /// Objects in the CPU's magazines now.
    pub cached_objects: usize,
    /// Their bytes (class sizes).
    pub cached_bytes: usize,
    /// Small allocations this cache served.
    pub allocations: usize,
    /// Small frees it took.
    pub frees: usize,
    /// Refills from the shared front (one lock acquisition each).
    pub refills: usize,
    /// Flushes to the shared front (one lock acquisition each), drains included.
    pub flushes: usize,
}

impl Cache {
    /// The objects in the magazines: counted when asked, not kept up to date by every
    /// allocate and free.
    fn cached_objects(&self) -> usize {
        self.magazines.iter().map(Magazine::len).sum()
    }

    /// Their bytes (class sizes).
    fn cached_bytes(&self) -> usize {
        self.magazines
            .iter()
            .enumerate()
            .filter_map(|(index, magazine)| Some(magazine.len() * SizeClass::from_index(index)?.size()))
            .sum()
    }

    /// Wrapping sum of `requested − class size` over the small allocations this cache served,
    /// minus the same over the frees it took.
    fn requested_adjust(&self) -> usize {
        let class_bytes = self.live.iter().enumerate().fold(0usize, |sum, (index, &live)| {
            let size = SizeClass::from_index(index).map_or(0, SizeClass::size);
            sum.wrapping_add(live.wrapping_mul(size))
        });
        self.requested.wrapping_sub(class_bytes)
    }

    /// Counts a small allocation of `layout` in `class` served by this cache.
    #[inline(always)]
    fn count_allocation(&mut self, layout: Layout, class: SizeClass) {
        self.requested = self.requested.wrapping_add(layout.size());
        self.live[class.index()] = self.live[class.index()].wrapping_add(1);
        self.counters.allocations += 1;
    }

    /// Counts a small free of `layout` in `class` taken by this cache.
    #[inline(always)]
    fn count_free(&mut self, layout: Layout, class: SizeClass) {
        self.requested = self.requested.wrapping_sub(layout.size());
        self.live[class.index()] = self.live[class.index()].wrapping_sub(1);
        self.counters.frees += 1;
    }

    const EMPTY: Cache = Cache {
        magazines: [Magazine::EMPTY; SizeClass::COUNT],
        requested: 0,
        live: [0; SizeClass::COUNT],
        counters: CpuCacheStats {
            cached_objects: 0,
            cached_bytes: 0,
            allocations: 0,
            frees: 0,
            refills: 0,
            flushes: 0,
        },
    };
}

impl<C: CpuId> Slot<C> {
    /// A CPU with empty caches.
    const fn new() -> Self {
        Slot {
            cache: Mutex::const_new(
                <RawIrqSpinlock<C::Interrupts> as lock_api::RawMutex>::INIT,
                Cache::EMPTY,
            ),
        }
    }
}

/// Spins a CPU does on a busy lock before it waits its kernel's way ([`CpuId::relax`]): about
/// what a holder of the depot or of the shared front needs for a batch, so a holder that is
/// running is waited for cheaply, and only one that is not (preempted) costs a yield.
const SPINS_BEFORE_RELAX: u32 = 128;

/// One round of waiting for a busy lock, the `waited`-th: a spin, or `relax` once the spins are
/// spent. Returns the next round's count.
#[inline]
fn wait(waited: u32, relax: fn()) -> u32 {
    if waited < SPINS_BEFORE_RELAX {
        crate::sync::spin_loop();
        waited + 1
    } else {
        relax();
        waited
    }
}

/// `requested − class size`, as a wrapping difference.
#[inline(always)]
fn adjustment(layout: Layout, class: SizeClass) -> usize {
    layout.size().wrapping_sub(class.size())
}

impl<F: Front, C: CpuId, const CPUS: usize> PerCpu<F, C, CPUS> {
    /// The most bytes one CPU's caches hold: the sum over classes of capacity × class size
    /// (144,536 bytes with 64-bit or 32-bit pointers alike).
    pub const MAX_CACHED_BYTES_PER_CPU: usize = max_cached_bytes_per_cpu();

    /// The most bytes the depot holds, whatever the CPU count: 32 batches of half a magazine
    /// (at most 2 KiB each), 65,536 bytes.
    pub const MAX_DEPOT_BYTES: usize = max_depot_bytes();

    /// Caches in front of `shared`, all empty; misuse reported with [`panic_on_misuse`].
    /// `const`, so it can initialise a `static`.
    pub const fn new(shared: F) -> Self {
        PerCpu {
            shared,
            slots: [const { Slot::new() }; CPUS],
            depot: DepotSlot {
                depot: Mutex::const_new(
                    <RawIrqSpinlock<C::Interrupts> as lock_api::RawMutex>::INIT,
                    Depot::EMPTY,
                ),
            },
            on_misuse: panic_on_misuse,
            bypass_adjust: AtomicUsize::new(0),
            bypasses: AtomicUsize::new(0),
        }
    }

    /// The same caches, calling `hook` instead of [`panic_on_misuse`] for the misuse they
    /// detect themselves (the shared front's own hook reports what it detects). `const`.
    pub const fn on_misuse(mut self, hook: MisuseHook) -> Self {
        self.on_misuse = hook;
        self
    }

    /// The shared front.
    pub fn shared(&self) -> &F {
        &self.shared
    }

    /// The calling CPU's cache, if no one is using it.
    #[inline(always)]
    fn this_cpu(&self) -> Option<MutexGuard<'_, RawIrqSpinlock<C::Interrupts>, Cache>> {
        // `CPUS` is not zero for a usable front; with zero, every call bypasses.
        self.slots.get(C::current() % CPUS.max(1))?.cache.try_lock()
    }

    /// A small allocation: from the calling CPU's magazine, refilled in a batch when empty.
    #[inline(always)]
    fn allocate_small(&self, layout: Layout, class: SizeClass) -> Result<NonNull<[u8]>, AllocError> {
        let Some(mut guard) = self.this_cpu() else {
            return self.allocate_bypassing(layout, class);
        };
        let Some(block) = guard.magazines[class.index()].pop() else {
            // Out of line and last, so this path keeps no value across a call.
            return self.allocate_refilling(guard, layout, class);
        };
        guard.count_allocation(layout, class);
        Ok(NonNull::slice_from_raw_parts(block, class.size()))
    }

    /// A small allocation that finds the calling CPU's magazine (`guard`) empty.
    #[cold]
    #[inline(never)]
    fn allocate_refilling(
        &self,
        mut guard: MutexGuard<'_, RawIrqSpinlock<C::Interrupts>, Cache>,
        layout: Layout,
        class: SizeClass,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let cache = &mut *guard;
        let block = self.refill(cache, class).ok_or(AllocError)?;
        cache.count_allocation(layout, class);
        Ok(NonNull::slice_from_raw_parts(block, class.size()))
    }

    /// Refills the calling CPU's empty magazine of `class` with half its capacity, from the
    /// depot if it has a batch of the class, else from the shared front; returns one object.
    #[cold]
    #[inline(never)]
    fn refill(&self, cache: &mut Cache, class: SizeClass) -> Option<NonNull<u8>> {
        let magazine = &mut cache.magazines[class.index()];
        // The depot's guard is a temporary: released before the shared front is called.
        if self.lock_depot().refill(class, magazine) == 0 {
            let wanted = capacity(class) / 2;
            self.wait_for_shared();
            let got = self.shared.allocate_batch(object_layout(class), magazine.room(wanted));
            magazine.filled(got);
        }
        cache.counters.refills += 1;
        magazine.pop()
    }

    /// Makes room in the calling CPU's full magazine of `class`: its oldest half goes to the
    /// depot if it has a free slot, else back to the shared front.
    #[cold]
    #[inline(never)]
    fn flush(&self, cache: &mut Cache, class: SizeClass) {
        let magazine = &mut cache.magazines[class.index()];
        // The depot's guard is a temporary: released before the shared front is called.
        if !self.lock_depot().store(class, magazine) {
            let half = capacity(class) / 2;
            self.wait_for_shared();
            // SAFETY: the magazine's objects are distinct blocks of the shared front with the
            // class layout, held by no caller (the `Cache` invariant).
            unsafe { self.shared.deallocate_batch(magazine.oldest(half), object_layout(class)) };
            magazine.forget_oldest(half);
        }
        cache.counters.flushes += 1;
    }

    /// The depot, locked; waits the kernel's way ([`CpuId::relax`]) while another CPU has it.
    #[inline]
    fn lock_depot(&self) -> MutexGuard<'_, RawIrqSpinlock<C::Interrupts>, Depot> {
        let mut waited = 0;
        loop {
            if let Some(depot) = self.depot.depot.try_lock() {
                return depot;
            }
            waited = wait(waited, C::relax);
        }
    }

    /// Returns every batch in the depot to the shared front; returns how many objects went.
    fn empty_depot(&self) -> usize {
        let mut returned = 0;
        for class in (0..SizeClass::COUNT).filter_map(SizeClass::from_index) {
            // The depot's guard is a temporary: released before the shared front is called.
            while let Some((objects, len)) = self.lock_depot().take(class) {
                // SAFETY: a batch's objects are distinct blocks of the shared front with the
                // class layout, held by no caller (the `Depot` invariant), now taken out.
                unsafe { self.shared.deallocate_batch(&objects[..len], object_layout(class)) };
                returned += len;
            }
        }
        returned
    }

    /// A request without a class: the shared front's. Out of line, so the shared front's own
    /// fast path does not crowd the small one's registers.
    #[inline(never)]
    fn allocate_large(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.wait_for_shared();
        self.shared.allocate(layout)
    }

    /// A free without a class: to the shared front. Out of line, as `allocate_large`.
    ///
    /// # Safety
    ///
    /// 1. `ptr` is a live allocation of this front with `layout`, which has no class.
    #[inline(never)]
    unsafe fn deallocate_large(&self, ptr: NonNull<u8>, layout: Layout) {
        self.wait_for_shared();
        // SAFETY: (1): large blocks are the shared front's, with `layout`.
        unsafe { self.shared.deallocate(ptr, layout) }
    }

    /// A small allocation while the calling CPU's cache is busy: straight from the shared
    /// front, with the class layout so the object can join any magazine later.
    #[cold]
    fn allocate_bypassing(&self, layout: Layout, class: SizeClass) -> Result<NonNull<[u8]>, AllocError> {
        let block = self.shared.allocate(object_layout(class))?.cast::<u8>();
        self.bypasses.fetch_add(1, Ordering::Relaxed);
        self.bypass_adjust.fetch_add(adjustment(layout, class), Ordering::Relaxed);
        Ok(NonNull::slice_from_raw_parts(block, class.size()))
    }

    /// A small free: onto the calling CPU's magazine, whose oldest half is flushed when full.
    ///
    /// # Safety
    ///
    /// 1. `ptr` is a live allocation of this front with `layout`, whose class is `class`.
    #[inline(always)]
    unsafe fn deallocate_small(&self, ptr: NonNull<u8>, layout: Layout, class: SizeClass) {
        if !object_aligned(ptr, class) {
            // No block of this class starts there.
            return self.refuse(MisuseKind::NotBlockStart, ptr.as_ptr(), layout);
        }
        let Some(mut guard) = self.this_cpu() else {
            // SAFETY: (1): a small block is a block of the shared front with the class layout.
            return unsafe { self.deallocate_bypassing(ptr, layout, class) };
        };
        let magazine = &mut guard.magazines[class.index()];
        // The common case inline, every other out of line and last (so this path keeps no
        // value across a call): no object of the magazine shares the block's filter slot (so
        // it cannot be a double free of one), and there is room.
        if !magazine.may_hold(ptr) && magazine.len() < capacity(class) {
            // SAFETY: below the class's capacity, just compared.
            unsafe { magazine.push(ptr) };
            guard.count_free(layout, class);
            return;
        }
        // SAFETY: (1) passed on.
        unsafe { self.deallocate_small_slow(guard, ptr, layout) }
    }

    /// A small free that may be a double free of a cached object, or finds the magazine full.
    /// (The class is found again from `layout`: six arguments travel in registers, a seventh
    /// would make the caller build a stack frame on its fast path.)
    ///
    /// # Safety
    ///
    /// As [`deallocate_small`](Self::deallocate_small); `guard` is the calling CPU's cache.
    #[cold]
    #[inline(never)]
    unsafe fn deallocate_small_slow(
        &self,
        mut guard: MutexGuard<'_, RawIrqSpinlock<C::Interrupts>, Cache>,
        ptr: NonNull<u8>,
        layout: Layout,
    ) {
        let Some(class) = cached_class(layout) else {
            debug_assert!(false, "a small free's layout has a class");
            return;
        };
        let cache = &mut *guard;
        if cache.magazines[class.index()].holds(ptr) {
            drop(guard);
            return self.refuse(MisuseKind::DoubleFree, ptr.as_ptr(), layout);
        }
        if cache.magazines[class.index()].len() >= capacity(class) {
            self.flush(cache, class);
        }
        // SAFETY: below the class's capacity: it was, or the full magazine was just flushed to
        // half of it.
        unsafe { cache.magazines[class.index()].push(ptr) };
        cache.count_free(layout, class);
    }

    /// Reports a misuse of `kind` by a free of `ptr` with `layout`; out of line, so a caller's
    /// fast path builds no report.
    #[cold]
    #[inline(never)]
    fn refuse(&self, kind: MisuseKind, ptr: *const u8, layout: Layout) {
        self.report(&Misuse::new(kind, ptr, layout));
    }

    /// A small free while the calling CPU's cache is busy: straight to the shared front.
    ///
    /// # Safety
    ///
    /// 1. `ptr` is a block of the shared front allocated with `object_layout(class)`, live.
    #[cold]
    unsafe fn deallocate_bypassing(&self, ptr: NonNull<u8>, layout: Layout, class: SizeClass) {
        // SAFETY: (1).
        unsafe { self.shared.deallocate(ptr, object_layout(class)) };
        self.bypasses.fetch_add(1, Ordering::Relaxed);
        self.bypass_adjust.fetch_sub(adjustment(layout, class), Ordering::Relaxed);
    }

    /// Waits, the kernel's way ([`CpuId::relax`]), while the shared front is busy, so a CPU
    /// about to refill or flush does not spin inside the front's lock while its holder waits
    /// for a core (host threads outnumbering cores). A hint: the front may be taken again
    /// before the caller gets to it, and then its own lock waits.
    #[inline]
    fn wait_for_shared(&self) {
        let mut waited = 0;
        while self.shared.is_busy() {
            waited = wait(waited, C::relax);
        }
    }

    /// Hands a misuse to the hook; no magazine lock is held.
    #[cold]
    #[inline(never)]
    fn report(&self, misuse: &Misuse) {
        (self.on_misuse)(misuse);
    }

    /// Returns every object cached by CPU `cpu` to the shared front (each class in one batch);
    /// returns how many. Waits if that CPU is using its cache. Call it before a CPU goes
    /// offline, or on every CPU ([`drain_all`](Self::drain_all)) for exact memory statistics.
    /// Not from a misuse hook or a memory source (the calling CPU's cache may be held).
    pub fn drain(&self, cpu: usize) -> usize {
        let Some(slot) = self.slots.get(cpu) else { return 0 };
        let mut guard = slot.cache.lock();
        let cache = &mut *guard;
        let mut returned = 0;
        for (index, magazine) in cache.magazines.iter_mut().enumerate() {
            let Some(class) = SizeClass::from_index(index) else { break };
            let count = magazine.len();
            if count == 0 {
                continue;
            }
            // SAFETY: the magazine's objects are distinct blocks of the shared front with the
            // class layout, held by no caller (the `Cache` invariant).
            unsafe { self.shared.deallocate_batch(magazine.oldest(count), object_layout(class)) };
            magazine.forget_oldest(count);
            cache.counters.flushes += 1;
            returned += count;
        }
        returned
    }

    /// [`drain`](Self::drain)s every CPU and empties the depot; returns how many objects went
    /// back.
    pub fn drain_all(&self) -> usize {
        (0..CPUS).map(|cpu| self.drain(cpu)).sum::<usize>() + self.empty_depot()
    }

    /// What CPU `cpu`'s cache did and holds (`None` beyond the CPU count). Waits if that CPU is
    /// using its cache.
    pub fn cpu_stats(&self, cpu: usize) -> Option<CpuCacheStats> {
        let cache = self.slots.get(cpu)?.cache.lock();
        Some(CpuCacheStats {
            cached_objects: cache.cached_objects(),
            cached_bytes: cache.cached_bytes(),
            ..cache.counters
        })
    }

    /// The bytes all CPUs' caches and the depot hold now (class sizes): memory the shared front
    /// counts as allocated that no caller holds. At most `CPUS ×`
    /// [`MAX_CACHED_BYTES_PER_CPU`](Self::MAX_CACHED_BYTES_PER_CPU) `+`
    /// [`MAX_DEPOT_BYTES`](Self::MAX_DEPOT_BYTES).
    pub fn cached_bytes(&self) -> usize {
        self.slots.iter().map(|slot| slot.cache.lock().cached_bytes()).sum::<usize>()
            + self.lock_depot().held().1
    }

    /// How many small allocations and frees found their CPU's cache busy and went to the
    /// shared front directly.
    pub fn bypasses(&self) -> usize {
        self.bypasses.load(Ordering::Relaxed)
    }

    /// The caller statistics (see [`PerCpu`](PerCpu#memory-held-statistics)):
    /// exact counts of live allocations and requested bytes while no call is in flight; memory
    /// figures from the shared front, cached objects counted as allocated.
    pub fn stats(&self) -> HeapStats {
        let mut cached_objects = 0usize;
        let mut cached_bytes = 0usize;
        let mut adjust = self.bypass_adjust.load(Ordering::Relaxed);
        for slot in &self.slots {
            let cache = slot.cache.lock();
            cached_objects += cache.cached_objects();
            cached_bytes += cache.cached_bytes();
            adjust = adjust.wrapping_add(cache.requested_adjust());
        }
        let (depot_objects, depot_bytes) = self.lock_depot().held();
        cached_objects += depot_objects;
        cached_bytes += depot_bytes;
        let mut stats = self.shared.stats();
        stats.live_allocations = stats.live_allocations.wrapping_sub(cached_objects);
        stats.requested_bytes = stats.requested_bytes.wrapping_sub(cached_bytes).wrapping_add(adjust);
        stats
    }
}

// SAFETY: small blocks are blocks of the shared front allocated with their class layout, whose
// size is at least the request's and whose alignment is a multiple of its alignment
// (`cached_class`, `object_layout`), and the front's promises give disjointness; a magazine holds only
// blocks no caller holds, each once (taken out before being handed out, pushed only when freed),
// so no block is handed out twice. Large blocks are the shared front's. `reallocate` copies
// `min(old, new)` bytes into a live block before freeing the old one. Nothing panics but the
// misuse hooks, which cannot unwind by default.
unsafe impl<F: Front, C: CpuId, const CPUS: usize> Front for PerCpu<F, C, CPUS> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        match cached_class(layout) {
            Some(class) => self.allocate_small(layout, class),
            None => self.allocate_large(layout),
        }
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        match cached_class(layout) {
            // SAFETY: (1), (2): a live allocation of this front with `layout`.
            Some(class) => unsafe { self.deallocate_small(ptr, layout, class) },
            // SAFETY: (1), (2) passed on.
            None => unsafe { self.deallocate_large(ptr, layout) },
        }
    }

    unsafe fn reallocate(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let new = Layout::from_size_align(new_size, old.align()).map_err(|_| AllocError)?;
        match (cached_class(old), cached_class(new)) {
            // SAFETY: (1)-(3): a large block is the shared front's, with `old`.
            (None, None) => unsafe { self.shared.reallocate(ptr, old, new_size) },
            (Some(from), Some(to)) if from == to => {
                // The object already holds the new size: only the requested bytes change.
                self.bypass_adjust.fetch_add(new_size.wrapping_sub(old.size()), Ordering::Relaxed);
                Ok(NonNull::slice_from_raw_parts(ptr, to.size()))
            }
            _ => {
                let moved = self.allocate(new)?;
                // `copy`, not `copy_nonoverlapping`: a realloc of a freed block (a misuse,
                // reported by the free below) may be handed its own memory back, and the copy
                // must stay defined then.
                // SAFETY: both blocks hold at least `min(old, new)` bytes; in correct use they
                // are live and distinct, and `copy` allows them to overlap in the misuse above;
                // then the old block goes back with its layout (1, 2).
                unsafe {
                    ptr::copy(ptr.as_ptr(), moved.cast::<u8>().as_ptr(), old.size().min(new_size));
                    self.deallocate(ptr, old);
                }
                Ok(moved)
            }
        }
    }

    fn stats(&self) -> HeapStats {
        PerCpu::stats(self)
    }

    /// From the calling CPU's magazine if it has an object of the class, otherwise from the
    /// shared front's [`try_allocate`](Front::try_allocate): never grows, never a hook.
    fn try_allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let Some(class) = cached_class(layout) else { return self.shared.try_allocate(layout) };
        if let Some(mut guard) = self.this_cpu() {
            let cache = &mut *guard;
            if let Some(block) = cache.magazines[class.index()].pop() {
                cache.count_allocation(layout, class);
                return Ok(NonNull::slice_from_raw_parts(block, class.size()));
            }
        }
        let block = self.shared.try_allocate(object_layout(class))?.cast::<u8>();
        self.bypass_adjust.fetch_add(adjustment(layout, class), Ordering::Relaxed);
        Ok(NonNull::slice_from_raw_parts(block, class.size()))
    }

    /// The shared front's largest free block, or the largest class some CPU has cached if
    /// larger: an upper bound of what [`try_allocate`](Front::try_allocate) can serve.
    fn largest_free_block(&self) -> usize {
        let cached = self
            .slots
            .iter()
            .filter_map(|slot| {
                let cache = slot.cache.lock();
                let index = cache.magazines.iter().rposition(|magazine| magazine.len() > 0)?;
                SizeClass::from_index(index).map(SizeClass::size)
            })
            .chain(self.lock_depot().largest_class().map(SizeClass::size))
            .max()
            .unwrap_or(0);
        self.shared.largest_free_block().max(cached)
    }
}

// SAFETY: forwards to `Front`, whose promises are `GlobalAlloc`'s; null is returned for every
// refusal and nothing unwinds (a misuse goes to a hook, with no lock held).
unsafe impl<F: Front, C: CpuId, const CPUS: usize> GlobalAlloc for PerCpu<F, C, CPUS> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Front::allocate(self, layout).map_or(ptr::null_mut(), |block| block.cast::<u8>().as_ptr())
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let Ok(block) = Front::allocate(self, layout) else { return ptr::null_mut() };
        let block = block.cast::<u8>().as_ptr();
        // SAFETY: the front handed out at least `layout.size()` writable bytes at `block`.
        unsafe { block.write_bytes(0, layout.size()) };
        block
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match NonNull::new(ptr) {
            // SAFETY: `GlobalAlloc::dealloc`'s contract: allocated by this allocator (1) with
            // `layout` (2).
            Some(block) => unsafe { Front::deallocate(self, block, layout) },
            None => self.refuse(MisuseKind::Null, ptr, layout),
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(block) = NonNull::new(ptr) else {
            self.report(&Misuse::new(MisuseKind::Null, ptr, layout));
            return ptr::null_mut();
        };
        // SAFETY: `GlobalAlloc::realloc`'s contract: live with `layout` (1, 2); `new_size` is
        // non-zero and fits `isize` once rounded to the alignment (3).
        unsafe { Front::reallocate(self, block, layout, new_size) }
            .map_or(ptr::null_mut(), |b| b.cast::<u8>().as_ptr())
    }
}
