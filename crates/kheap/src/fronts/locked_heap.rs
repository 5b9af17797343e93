//! `LockedHeap`: any [`RawHeap`] behind any lock, as a [`GlobalAlloc`].

use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};

use lock_api::{Mutex, MutexGuard, RawMutex};

use super::give_back::{GrownRegions, MAX_GROWN};
use crate::{
    panic_on_misuse, AllocError, BlockLookup, Counted, Front, HeapStats, InvariantError, MemorySource,
    Misuse, MisuseHook, MisuseKind, RawHeap, RegionError,
};

/// A heap behind a lock, usable as `#[global_allocator]`.
///
/// `R` is the lock: [`RawIrqSpinlock`](crate::RawIrqSpinlock) in a kernel whose interrupt
/// handlers allocate, [`RawSpinlock`](crate::RawSpinlock) where none do, or any other
/// `lock_api::RawMutex`. `H` is the algorithm; the front wraps it in [`Counted`] for exact
/// statistics.
///
/// The front owns the policies: it grows the heap from a [`MemorySource`] in a loop, with the
/// lock released; it copies a moving `realloc` with the lock released; and it hands a misuse the
/// heap detects (a double free, say) to a [`MisuseHook`] after releasing the lock, so a report
/// that allocates finds the heap free. Nothing unwinds out of its `GlobalAlloc` methods.
///
/// ```
/// use core::mem::MaybeUninit;
/// use kheap::{BuddyHeap, LockedHeap, RawSpinlock};
///
/// static HEAP: LockedHeap<RawSpinlock, BuddyHeap> = LockedHeap::new(BuddyHeap::new());
///
/// // A kernel would use a `static` array in `.bss`; a leaked box is `'static` too.
/// let memory: &'static mut [MaybeUninit<u8>] = Box::leak(Box::new([MaybeUninit::uninit(); 64 * 1024]));
/// HEAP.add_region(memory).unwrap();
///
/// let layout = core::alloc::Layout::new::<[u64; 4]>();
/// // SAFETY: the layout has a non-zero size.
/// let block = unsafe { core::alloc::GlobalAlloc::alloc(&HEAP, layout) };
/// assert!(!block.is_null());
/// assert_eq!(HEAP.stats().live_allocations, 1);
/// // SAFETY: `block` came from `HEAP.alloc` with this layout.
/// unsafe { core::alloc::GlobalAlloc::dealloc(&HEAP, block, layout) };
/// ```
///
/// The safe [`add_region`](Self::add_region) takes only memory that lives for ever; a
/// shorter-lived buffer is refused at compile time:
///
/// ```compile_fail
/// use core::mem::MaybeUninit;
/// use kheap::{BuddyHeap, LockedHeap, RawSpinlock};
///
/// static HEAP: LockedHeap<RawSpinlock, BuddyHeap> = LockedHeap::new(BuddyHeap::new());
/// let mut local = [MaybeUninit::<u8>::uninit(); 4096];
/// HEAP.add_region(&mut local).unwrap(); // error: `local` does not live long enough
/// ```
pub struct LockedHeap<R: RawMutex, H> {
    heap: Mutex<R, Counted<H>>,
    /// Asked for a new region when an allocation fails, with the lock released.
    source: Option<&'static (dyn MemorySource + Sync)>,
    /// Called, with the lock released, when the heap refuses a call as a misuse.
    on_misuse: MisuseHook,
    /// `Some(watermark)`: wholly free grown regions go back to the source while more than
    /// the watermark plus the region stays free (see [`give_back_above`](Self::give_back_above)).
    give_back: Option<usize>,
    /// The regions grown from `source` that may go back. Locked only while `heap` is locked
    /// (never the other way round), so the two locks cannot deadlock.
    grown: Mutex<R, GrownRegions>,
    /// Invariant: how many callers are asking the source for a region right now (changed only
    /// while `heap` is locked). A request the source cannot serve waits, boundedly, for those
    /// growths to land before it is refused: another CPU may be adding the very region it needs.
    growing: AtomicUsize,
    /// Invariant: how many regions went back to the source.
    given_back: AtomicUsize,
}

/// How many times a request the source cannot serve waits for other CPUs' growths.
const MAX_GROWTH_WAITS: usize = 8;

impl<R: RawMutex, H: RawHeap> LockedHeap<R, H> {
    /// Wraps `heap`; `const`, so it can initialise a `static`. Misuse is reported with
    /// [`panic_on_misuse`]; no memory source.
    pub const fn new(heap: H) -> Self {
        LockedHeap {
            heap: Mutex::const_new(R::INIT, Counted::new(heap)),
            source: None,
            on_misuse: panic_on_misuse,
            give_back: None,
            grown: Mutex::const_new(R::INIT, GrownRegions::EMPTY),
            growing: AtomicUsize::new(0),
            given_back: AtomicUsize::new(0),
        }
    }

    /// The same heap, growing from `source` whenever an allocation would fail: the front asks
    /// the source for the region the heap says it needs
    /// ([`RawHeap::region_layout_for`]), with the lock released, adds it and tries again, until
    /// the allocation succeeds or the source has nothing more. `const`.
    ///
    /// ```
    /// # use kheap::{BuddyHeap, LockedHeap, MemorySource, RawSpinlock};
    /// # struct Frames;
    /// # unsafe impl MemorySource for Frames {
    /// #     fn acquire(&self, _: core::alloc::Layout) -> Option<core::ptr::NonNull<[u8]>> { None }
    /// # }
    /// static FRAMES: Frames = Frames;
    /// static HEAP: LockedHeap<RawSpinlock, BuddyHeap> = LockedHeap::new(BuddyHeap::new()).with_source(&FRAMES);
    /// ```
    pub const fn with_source(mut self, source: &'static (dyn MemorySource + Sync)) -> Self {
        self.source = Some(source);
        self
    }

    /// The same heap, giving memory back to its source: when a free leaves a region grown from
    /// the source wholly free and more than `watermark` bytes plus that region are free, the
    /// heap removes the region ([`RawHeap::remove_region`]) and the front hands it to
    /// [`MemorySource::release`] with the lock released. At least `watermark` bytes stay free
    /// after a give-back, so an allocate/free pair near the watermark cannot make the heap give
    /// back and grow in turn. `const`.
    ///
    /// Regions go back whole, as the source returned them: only heaps that can remove a region
    /// ([`TlsfHeap`](crate::TlsfHeap), [`BuddyHeap`](crate::BuddyHeap)) give any back, never a
    /// region the heap joined with a neighbour, and only 16 grown regions are remembered at a
    /// time. A source whose `release`
    /// refuses gets nothing: the heap takes the region again and keeps it.
    ///
    /// ```
    /// use core::alloc::{GlobalAlloc, Layout};
    /// use core::ptr::NonNull;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use kheap::{LockedHeap, MemorySource, RawSpinlock, TlsfHeap};
    ///
    /// /// 64 KiB regions of host memory, taken back for real.
    /// struct Pages(AtomicUsize);
    /// const REGION: Layout = match Layout::from_size_align(64 * 1024, 4096) { Ok(l) => l, Err(_) => panic!() };
    /// // SAFETY: each region is a fresh host allocation, valid until released (1), handed out
    /// // once (2).
    /// unsafe impl MemorySource for Pages {
    ///     fn acquire(&self, layout: Layout) -> Option<NonNull<[u8]>> {
    ///         if layout.size() > REGION.size() || layout.align() > REGION.align() {
    ///             return None;
    ///         }
    ///         self.0.fetch_add(1, Ordering::SeqCst);
    ///         // SAFETY: non-zero size.
    ///         let start = NonNull::new(unsafe { std::alloc::alloc(REGION) })?;
    ///         Some(NonNull::slice_from_raw_parts(start, REGION.size()))
    ///     }
    ///     unsafe fn release(&self, region: NonNull<[u8]>) -> bool {
    ///         self.0.fetch_sub(1, Ordering::SeqCst);
    ///         // SAFETY: (1) allocated in `acquire` with `REGION`, unused now.
    ///         unsafe { std::alloc::dealloc(region.cast::<u8>().as_ptr(), REGION) };
    ///         true
    ///     }
    /// }
    /// static PAGES: Pages = Pages(AtomicUsize::new(0));
    /// static HEAP: LockedHeap<RawSpinlock, TlsfHeap> =
    ///     LockedHeap::new(TlsfHeap::new()).with_source(&PAGES).give_back_above(16 * 1024);
    ///
    /// let layout = Layout::new::<[u8; 40 * 1024]>();
    /// // SAFETY: non-zero size; each freed once with the same layout.
    /// let blocks: Vec<*mut u8> = (0..3).map(|_| unsafe { HEAP.alloc(layout) }).collect();
    /// assert_eq!(PAGES.0.load(Ordering::SeqCst), 3);
    /// for block in blocks {
    ///     unsafe { HEAP.dealloc(block, layout) };
    /// }
    /// // Two regions went back; one stays, as the watermark asks.
    /// assert_eq!((PAGES.0.load(Ordering::SeqCst), HEAP.regions_given_back()), (1, 2));
    /// ```
    pub const fn give_back_above(mut self, watermark: usize) -> Self {
        self.give_back = Some(watermark);
        self
    }

    /// How many regions went back to the memory source (see
    /// [`give_back_above`](Self::give_back_above)).
    pub fn regions_given_back(&self) -> usize {
        self.given_back.load(Ordering::Relaxed)
    }

    /// With the heap locked, after `freed` went back: removes the region holding it if that
    /// region is wholly free and the heap keeps more than the watermark without it.
    #[cold]
    #[inline(never)]
    fn surplus_region(&self, heap: &mut Counted<H>, freed: NonNull<u8>) -> Option<NonNull<[u8]>> {
        let watermark = self.give_back?;
        let mut grown = self.grown.lock();
        let (index, region) = grown.containing(freed.addr().get())?;
        if heap.usage().free_bytes <= watermark.saturating_add(region.len()) {
            return None;
        }
        if heap.remove_region(region).is_err() {
            // A layer's cached spare slabs may be what keeps the region from being wholly free.
            heap.trim();
            heap.remove_region(region).ok()?;
        }
        grown.forget(index);
        Some(region)
    }

    /// Hands a removed region to the source, with no lock held; if the source refuses, the
    /// heap takes it again (and keeps it: it is not remembered again).
    #[cold]
    #[inline(never)]
    fn hand_back(&self, region: NonNull<[u8]>) {
        let Some(source) = self.source else { return };
        // SAFETY: (1) `region` is exactly what `acquire` returned (remembered when it was
        // added), and the heap removed it: no live allocation lies in it and the heap no
        // longer touches it (`RawHeap` promise 6).
        if unsafe { source.release(region) } {
            self.given_back.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // SAFETY: the source's promise keeps the region valid for ever (1) and nobody else
        // uses it: the heap gave it up and the source refused it (2).
        let _ = unsafe { self.heap.lock().add_region(region) };
    }

    /// The same heap, calling `hook` instead of [`panic_on_misuse`] when the heap detects a
    /// misuse. `const`.
    pub const fn on_misuse(mut self, hook: MisuseHook) -> Self {
        self.on_misuse = hook;
        self
    }

    /// Allocates from the heap; on failure, grows it from the source (if any) and tries again,
    /// as long as the source supplies memory. The source is called with the lock released.
    #[inline(always)]
    fn allocate_or_grow(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate_answering(layout, |result| result)
    }

    /// [`allocate_or_grow`](Self::allocate_or_grow), its result turned by `answer` on both
    /// paths (`GlobalAlloc::alloc` wants a bare pointer, null when refused), so that the
    /// out-of-line path answers as the caller does and is reached by a jump. Every path that
    /// makes a call leaves through that function, so a heap whose fast path makes no call (the
    /// buddy system's) gets a fast path without a stack frame.
    #[inline(always)]
    fn allocate_answering<T>(
        &self,
        layout: Layout,
        answer: impl Fn(Result<NonNull<[u8]>, AllocError>) -> T,
    ) -> T {
        let Some(mut heap) = self.heap.try_lock() else { return self.allocate_slow(None, layout, answer) };
        match heap.allocate_fast(layout) {
            Some(block) => answer(Ok(block)),
            None => self.allocate_slow(Some(heap), layout, answer),
        }
    }

    /// [`allocate_answering`](Self::allocate_answering) past the heap's fast path, with the
    /// lock held (`heap`) or still to take: the heap's full allocation, then growth.
    #[inline(never)]
    fn allocate_slow<'a, T>(
        &'a self,
        heap: Option<MutexGuard<'a, R, Counted<H>>>,
        layout: Layout,
        answer: impl Fn(Result<NonNull<[u8]>, AllocError>) -> T,
    ) -> T {
        let mut heap = heap.unwrap_or_else(|| self.heap.lock());
        answer(match heap.allocate_quietly(layout) {
            Ok(block) => Ok(block),
            Err(_) => self.grow_and_allocate(heap, layout),
        })
    }

    /// The slow path of [`allocate_or_grow`](Self::allocate_or_grow), kept out of line so the
    /// fast path stays small: the heap (locked) has just refused `layout`.
    #[cold]
    #[inline(never)]
    fn grow_and_allocate<'a>(
        &'a self,
        mut heap: MutexGuard<'a, R, Counted<H>>,
        layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // A hardened heap may have refused because it found its own records damaged: the
        // report goes to the hook with the lock released, then growth goes on as for any
        // refusal (the damaged block is never used again).
        if let Some(corruption) = heap.take_corruption() {
            drop(heap);
            self.report(&corruption);
            heap = self.heap.lock();
            // The heap repaired itself before refusing: the request may fit now.
            if let Ok(block) = heap.allocate_quietly(layout) {
                return Ok(block);
            }
        }
        // Waits for other CPUs' growths to land: bounded, so a CPU interrupted in the middle of
        // its own growth (whose handler allocates) cannot hang here.
        let mut waits = 0;
        loop {
            let wanted = self.source.zip(heap.region_layout_for(layout));
            let Some((source, wanted)) = wanted else {
                heap.count_refusal();
                return Err(AllocError);
            };
            self.growing.store(self.growing.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            drop(heap);
            let region = source.acquire(wanted);
            heap = self.heap.lock();
            self.growing.store(self.growing.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
            let Some(region) = region else {
                // The lock was released while the source was asked: another CPU may have freed
                // or grown the heap meanwhile, so the request gets one more try.
                if let Ok(block) = heap.allocate_quietly(layout) {
                    return Ok(block);
                }
                if self.growing.load(Ordering::Relaxed) > 0 && waits < MAX_GROWTH_WAITS {
                    // Another CPU holds a region from the source it has not added yet (the
                    // source may be empty because of it): wait for it, then try again.
                    waits += 1;
                    drop(heap);
                    let mut spins = 0u32;
                    while self.growing.load(Ordering::Relaxed) > 0 && spins < 1 << 16 {
                        core::hint::spin_loop();
                        spins += 1;
                    }
                    heap = self.heap.lock();
                    if let Ok(block) = heap.allocate_quietly(layout) {
                        return Ok(block);
                    }
                    continue;
                }
                heap.count_refusal();
                return Err(AllocError);
            };
            // SAFETY: `MemorySource` promises the region is valid for ever (1) and handed over (2).
            if unsafe { heap.add_region(region) }.is_err() {
                heap.count_refusal();
                drop(heap);
                // SAFETY: (1) the region is exactly what `acquire` returned, and the heap
                // refused it, so nothing uses it. If the source cannot take it back, it stays
                // unused: never handed out, never corrupted.
                unsafe { source.release(region) };
                return Err(AllocError);
            }
            if self.give_back.is_some() {
                self.grown.lock().record(region);
            }
            if let Ok(block) = heap.allocate_quietly(layout) {
                heap.count_grown();
                return Ok(block);
            }
        }
    }

    /// Allocates a block for `layout` from the memory the heap has now: never asks the memory
    /// source for more and never calls the misuse hook (there is nothing to report; a refusal
    /// is counted in [`HeapStats::failed_requests`]). For a balloon driver, a `try_reserve`-style
    /// caller, or an interrupt handler that must not wait for the source.
    ///
    /// ```
    /// use core::alloc::Layout;
    /// use kheap::{BuddyHeap, LockedHeap, RawSpinlock, StaticArena};
    ///
    /// static ARENA: StaticArena<{ 64 * 1024 }> = StaticArena::new();
    /// static HEAP: LockedHeap<RawSpinlock, BuddyHeap> = LockedHeap::new(BuddyHeap::new()).with_source(&ARENA);
    /// let layout = Layout::new::<[u8; 64]>();
    /// // Nothing claimed yet: `try_allocate` does not take the arena, `allocate` would.
    /// assert!(HEAP.try_allocate(layout).is_err());
    /// assert_eq!(HEAP.stats().total_bytes, 0);
    /// assert_eq!(HEAP.largest_free_block(), 0);
    /// ```
    ///
    /// # Errors
    ///
    /// [`AllocError`] when no free block holds `layout`.
    pub fn try_allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.heap.lock().allocate(layout)
    }

    /// Hands the memory the heap keeps cached for reuse (the default [`Heap`](crate::Heap)'s
    /// spare slabs) back to the heap's free memory ([`RawHeap::trim`]): before reading
    /// statistics that should show only what live blocks use, or before a long idle period.
    pub fn trim(&self) {
        self.heap.lock().trim();
    }

    /// The size of the largest free block: no request larger than this can succeed without
    /// growing the heap. O(1) under the lock (every algorithm keeps it); a snapshot.
    pub fn largest_free_block(&self) -> usize {
        self.heap.lock().usage().largest_free_block
    }

    /// `deallocate` with give-back on: the region the block leaves wholly free may go back.
    ///
    /// # Safety
    ///
    /// As [`Front::deallocate`].
    #[cold]
    #[inline(never)]
    unsafe fn deallocate_giving_back(&self, ptr: NonNull<u8>, layout: Layout) {
        let (result, surplus, damage) = {
            let mut heap = self.heap.lock();
            // SAFETY: (1) and (2) are the heap's obligations 1 and 2.
            let result = unsafe { heap.deallocate(ptr, layout) };
            let surplus = result.ok().and_then(|()| self.surplus_region(&mut heap, ptr));
            (result, surplus, heap.take_corruption())
        };
        if let Some(region) = surplus {
            self.hand_back(region);
        }
        if let Err(misuse) = result {
            self.report(&misuse);
        }
        if let Some(damage) = damage {
            // Found by a refused region removal (a hardened heap).
            self.report(&damage);
        }
    }

    /// A free past the heap's fast path, with the lock held (`heap`) or still to take.
    ///
    /// # Safety
    ///
    /// 1. and 2. as the heap's `deallocate`.
    #[inline(never)]
    unsafe fn deallocate_slow(
        &self,
        heap: Option<MutexGuard<'_, R, Counted<H>>>,
        ptr: NonNull<u8>,
        layout: Layout,
    ) {
        let mut heap = heap.unwrap_or_else(|| self.heap.lock());
        // SAFETY: (1) and (2) are the heap's obligations 1 and 2.
        let result = unsafe { heap.deallocate(ptr, layout) };
        drop(heap);
        if let Err(misuse) = result {
            self.report(&misuse);
        }
    }

    /// Reports a free of the null pointer with `layout`. Out of line, so that the report is
    /// built in this function's frame, not in the caller's fast path.
    #[cold]
    #[inline(never)]
    fn refuse_null(&self, layout: Layout) {
        self.report(&Misuse::new(MisuseKind::Null, ptr::null(), layout));
    }

    /// Hands a misuse to the hook; the caller has released the lock.
    #[cold]
    #[inline(never)]
    fn report(&self, misuse: &Misuse) {
        (self.on_misuse)(misuse);
    }

    /// Locks the heap for direct use of its [`RawHeap`] methods.
    pub fn lock(&self) -> MutexGuard<'_, R, Counted<H>> {
        self.heap.lock()
    }

    /// Locks the heap if no one holds it, without waiting: for code (an interrupt handler, a
    /// panic handler printing statistics) that must not spin.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, R, Counted<H>>> {
        self.heap.try_lock()
    }

    /// Whether someone holds the lock now (a hint: it may change at once).
    pub fn is_locked(&self) -> bool {
        self.heap.is_locked()
    }

    /// Gives the heap memory that lives for ever, such as a `static` array.
    /// Returns how many bytes of it can be allocated.
    ///
    /// # Errors
    ///
    /// The [`RegionError`] of [`RawHeap::add_region`]; the heap is unchanged.
    pub fn add_region(&self, region: &'static mut [MaybeUninit<u8>]) -> Result<usize, RegionError> {
        let region = NonNull::from(region);
        let region = NonNull::slice_from_raw_parts(region.cast::<u8>(), region.len());
        // SAFETY: a `&'static mut` borrow is valid for ever (1) and unique: nothing else can
        // read or write the memory again (2).
        unsafe { self.heap.lock().add_region(region) }
    }

    /// Gives the heap `len` bytes at `start`. Returns how many bytes of it can be allocated.
    ///
    /// # Errors
    ///
    /// [`RegionError::Null`] for a null `start`, otherwise the [`RegionError`] of
    /// [`RawHeap::add_region`]; the heap is unchanged.
    ///
    /// # Safety
    ///
    /// 1. `[start, start + len)` is valid for reads and writes for as long as the heap is used.
    /// 2. Nothing else reads or writes it from now on.
    pub unsafe fn add_region_raw(&self, start: *mut u8, len: usize) -> Result<usize, RegionError> {
        let start = NonNull::new(start).ok_or(RegionError::Null)?;
        // SAFETY: obligations 1 and 2 are this function's own.
        unsafe { self.heap.lock().add_region(NonNull::slice_from_raw_parts(start, len)) }
    }

    /// A snapshot of the heap's statistics.
    pub fn stats(&self) -> HeapStats {
        self.heap.lock().stats()
    }

    /// Runs the heap's invariant walker.
    ///
    /// # Errors
    ///
    /// The first broken invariant found.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        self.heap.lock().check_invariants()
    }
}

impl<R: RawMutex, H: BlockLookup> LockedHeap<R, H> {
    /// Allocates a block that will be freed with [`deallocate_unsized`](Self::deallocate_unsized),
    /// as C's `malloc` does: the statistics count its whole usable size as requested, since
    /// the free will not say what was asked for. Grows the heap like every allocation.
    ///
    /// # Errors
    ///
    /// [`AllocError`] when no block can be found, even after growing the heap.
    pub fn allocate_unsized(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = self.allocate_or_grow(layout)?;
        let mut heap = self.heap.lock();
        // Every counting layer in the stack (this front's `Counted`, and any inside `H`) must
        // see the whole usable size, or the free, which gives it, would wrap their counts: a
        // grow in place to the usable size tells them all, and cannot fail for the block the
        // heap itself sized. Should a heap refuse it, this front's count is fixed alone.
        // SAFETY: the block is live with `layout` (1, 2) and its usable size is at least
        // `layout.size()` and fits `isize` (3: the heap handed out that many bytes).
        if unsafe { heap.grow_in_place(block.cast(), layout, block.len()) }.is_err() {
            heap.resized(layout.size(), block.len());
        }
        Ok(block)
    }

    /// Frees a block given only its address, as C's `free` does: the heap looks up the block's
    /// layout. A pointer that is not the start of an allocated block goes to the misuse hook.
    /// Pair it with [`allocate_unsized`](Self::allocate_unsized), so the statistics stay exact.
    ///
    /// ```
    /// use core::alloc::{GlobalAlloc, Layout};
    /// use kheap::{BuddyHeap, LockedHeap, RawSpinlock};
    ///
    /// static HEAP: LockedHeap<RawSpinlock, BuddyHeap> = LockedHeap::new(BuddyHeap::new());
    /// HEAP.add_region(Box::leak(Box::new([core::mem::MaybeUninit::uninit(); 1 << 16]))).unwrap();
    /// let block = HEAP.allocate_unsized(Layout::from_size_align(100, 8).unwrap()).unwrap();
    /// assert_eq!(HEAP.stats().requested_bytes, 128); // the whole block: the free won't say
    /// // SAFETY: allocated by this front, not used afterwards.
    /// unsafe { HEAP.deallocate_unsized(block.cast()) };
    /// assert_eq!(HEAP.stats().requested_bytes, 0);
    /// assert_eq!(HEAP.stats().free_bytes, HEAP.stats().total_bytes);
    /// ```
    ///
    /// # Safety
    ///
    /// 1. `ptr` was allocated by this front (with `allocate_unsized`, for exact statistics) and
    ///    is not used after this call.
    pub unsafe fn deallocate_unsized(&self, ptr: NonNull<u8>) {
        let (result, surplus) = {
            let mut heap = self.heap.lock();
            // SAFETY: the looked-up layout fits the block (`BlockLookup`'s promise), which is a
            // live allocation by (1).
            let result = heap.block_layout(ptr).and_then(|layout| unsafe { heap.deallocate(ptr, layout) });
            let surplus = match result {
                Ok(()) if self.give_back.is_some() => self.surplus_region(&mut heap, ptr),
                _ => None,
            };
            (result, surplus)
        };
        if let Some(region) = surplus {
            self.hand_back(region);
        }
        if let Err(misuse) = result {
            self.report(&misuse);
        }
    }
}

// SAFETY: every heap call is made under the lock, so calls are serialised; the heap's own
// contract (`RawHeap` promises 1-5) gives `Front`'s: aligned, disjoint blocks of at least the
// requested size; `reallocate` copies `min(old, new)` bytes into a live block before freeing
// the old one; nothing panics but the misuse hook, which cannot unwind by default.
unsafe impl<R: RawMutex, H: RawHeap> Front for LockedHeap<R, H> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate_or_grow(layout)
    }

    #[inline(always)]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if self.give_back.is_some() {
            // SAFETY: (1) and (2) are passed on.
            return unsafe { self.deallocate_giving_back(ptr, layout) };
        }
        let Some(mut heap) = self.heap.try_lock() else {
            // SAFETY: (1) and (2) are passed on.
            return unsafe { self.deallocate_slow(None, ptr, layout) };
        };
        // SAFETY: (1) and (2) are the heap's obligations 1 and 2.
        if unsafe { heap.deallocate_fast(ptr, layout) } {
            return;
        }
        // SAFETY: as above; the fast path changed nothing.
        unsafe { self.deallocate_slow(Some(heap), ptr, layout) }
    }

    unsafe fn reallocate(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: (3) `new_size` rounded up to `old.align()` (a power of two) fits `isize`.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, old.align()) };
        // One lock for the resize and, when it is refused, for the new block too.
        let (moved, damage) = {
            let mut heap = self.heap.lock();
            // SAFETY: (1)-(3) are `resize_in_place`'s obligations 1-3.
            if unsafe { heap.resize_in_place(ptr, old, new_size) }.is_ok() {
                return Ok(NonNull::slice_from_raw_parts(ptr, new_size));
            }
            match heap.take_corruption() {
                None => (heap.allocate_quietly(new).ok(), None),
                damage => (None, damage),
            }
        };
        if let Some(damage) = damage {
            // Found by the refused resize (a hardened heap): reported with the lock released.
            self.report(&damage);
        }
        let moved = match moved {
            Some(block) => block,
            None => self.allocate_or_grow(new)?,
        };
        // `copy`, not `copy_nonoverlapping`: a realloc of a freed block (a misuse, reported by the
        // free below) may be handed its own memory back, and the copy must stay defined then.
        // SAFETY: both blocks hold at least `min(old, new)` bytes; in correct use they are live
        // and distinct (the heap's promise 1), and `copy` allows them to overlap in the misuse
        // above; the copy runs with no lock held. Then the old block, with its layout (1, 2),
        // goes back.
        unsafe {
            ptr::copy(ptr.as_ptr(), moved.cast::<u8>().as_ptr(), old.size().min(new_size));
            Front::deallocate(self, ptr, old);
        }
        Ok(moved)
    }

    fn stats(&self) -> HeapStats {
        LockedHeap::stats(self)
    }

    fn try_allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        LockedHeap::try_allocate(self, layout)
    }

    fn largest_free_block(&self) -> usize {
        LockedHeap::largest_free_block(self)
    }

    /// Takes the lock once for the whole batch; grows (as `allocate` does) only when the heap
    /// has not even one block.
    fn allocate_batch(&self, layout: Layout, out: &mut [NonNull<u8>]) -> usize {
        // The guard is a temporary: the lock is free before the heap grows.
        let mut count = self.heap.lock().allocate_batch(layout, out);
        if count == 0 && !out.is_empty() {
            if let Ok(block) = self.allocate_or_grow(layout) {
                out[0] = block.cast();
                count = 1;
            }
        }
        count
    }

    #[inline]
    fn is_busy(&self) -> bool {
        self.heap.is_locked()
    }

    /// Takes the lock once for the whole batch; reports the first misuse (if any) to the hook
    /// after releasing it. The heap refuses a misused block without change and the rest of
    /// the batch still goes back.
    unsafe fn deallocate_batch(&self, blocks: &[NonNull<u8>], layout: Layout) {
        if self.give_back.is_none() {
            // SAFETY: (1) and (2) are the heap's obligations 1 and 2. The guard is a
            // temporary: the lock is free before any report.
            let (_, first_misuse) = unsafe { self.heap.lock().deallocate_batch(blocks, layout) };
            if let Some(misuse) = first_misuse {
                self.report(&misuse);
            }
            return;
        }
        // Giving memory back: each free may leave a grown region wholly free.
        let mut first_misuse = None;
        let mut surplus = [None; MAX_GROWN];
        let mut surplus_count = 0;
        {
            let mut heap = self.heap.lock();
            for &block in blocks {
                // SAFETY: (1) and (2) are the heap's obligations 1 and 2, for each block.
                match unsafe { heap.deallocate(block, layout) } {
                    Err(misuse) => {
                        first_misuse.get_or_insert(misuse);
                    }
                    Ok(()) if surplus_count < MAX_GROWN => {
                        if let Some(region) = self.surplus_region(&mut heap, block) {
                            surplus[surplus_count] = Some(region);
                            surplus_count += 1;
                        }
                    }
                    Ok(()) => {}
                }
            }
        }
        for &region in surplus[..surplus_count].iter().flatten() {
            self.hand_back(region);
        }
        if let Some(misuse) = first_misuse {
            self.report(&misuse);
        }
    }
}

// SAFETY: forwards to `Front`, whose promises are `GlobalAlloc`'s; null is returned for every
// refusal and nothing unwinds (a misuse goes to the hook, after the lock is released).
unsafe impl<R: RawMutex, H: RawHeap> GlobalAlloc for LockedHeap<R, H> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.allocate_answering(layout, |result| {
            result.map_or(ptr::null_mut(), |block| block.cast::<u8>().as_ptr())
        })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let Ok(block) = self.allocate_or_grow(layout) else { return ptr::null_mut() };
        let block = block.cast::<u8>().as_ptr();
        // SAFETY: the heap handed out at least `layout.size()` writable bytes at `block`.
        unsafe { block.write_bytes(0, layout.size()) };
        block
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match NonNull::new(ptr) {
            // SAFETY: `GlobalAlloc::dealloc`'s contract: `ptr` was allocated by this allocator
            // (1) with `layout` (2).
            Some(block) => unsafe { Front::deallocate(self, block, layout) },
            None => self.refuse_null(layout),
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(block) = NonNull::new(ptr) else {
            self.report(&Misuse::new(MisuseKind::Null, ptr, layout));
            return ptr::null_mut();
        };
        // SAFETY: `GlobalAlloc::realloc`'s contract: `block` is live with `layout` (1, 2), and
        // `new_size` is non-zero and fits `isize` once rounded to the alignment (3).
        unsafe { self.reallocate(block, layout, new_size) }
            .map_or(ptr::null_mut(), |b| b.cast::<u8>().as_ptr())
    }
}
