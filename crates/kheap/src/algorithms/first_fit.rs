//! `FirstFitHeap`: the textbook contiguous allocator over an address-ordered free list.
//!
//! The teaching baseline: every operation walks the free list, so allocation and free are
//! O(n) in the number of free blocks. Four placement policies show the classic trade-offs.

use core::alloc::Layout;
use core::ptr::NonNull;

use crate::algorithms::pointer::{align_up_addr, offset, GRANULE};
use crate::algorithms::region::{granule_span, Span};
use crate::{
    AllocError, HeapUsage, InvariantError, Misuse, MisuseKind, Part, PartKind, RawHeap, RegionError,
};

#[cfg(test)]
mod tests;

/// Which free block an allocation is carved from.
///
/// ```
/// use kheap::{FirstFitHeap, FitPolicy};
///
/// let heap = FirstFitHeap::new(FitPolicy::Next);
/// assert_eq!(heap.policy(), FitPolicy::Next);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FitPolicy {
    /// The lowest-addressed block that fits: fast when small blocks gather at the bottom.
    First,
    /// The first block that fits at or after where the last allocation ended, wrapping around:
    /// spreads allocations over the heap.
    Next,
    /// The smallest block that fits: keeps large blocks intact, leaves small slivers.
    Best,
    /// The largest block: leaves large remainders, breaks up large blocks early.
    Worst,
}

/// Header of a free block, written into the block itself. Fits in one granule.
#[repr(C)]
struct FreeBlock {
    size: usize,
    next: Option<NonNull<FreeBlock>>,
}

/// Header of a region, in the region's first granule.
#[repr(C)]
struct RegionHeader {
    len: usize,
    next: Option<NonNull<RegionHeader>>,
}

/// A contiguous allocator with an address-ordered, singly linked free list and a choice of
/// [`FitPolicy`].
///
/// - `allocate`, `deallocate`, `grow_in_place`, `shrink_in_place`: O(n) in free blocks.
/// - Fragmentation: sizes are rounded up to the granule (two pointers); no per-block header;
///   alignment slack before a block stays free; free blocks merge with both neighbours at once.
/// - Each region keeps a one-granule header; a region touching an existing one is joined to it.
/// - Misuse: a free outside every region, of a region header, misaligned for its layout, or
///   overlapping free memory (a double free, or a layout larger than the block's where the
///   memory after the block is free) is refused as a [`Misuse`]. Without a header per block
///   the heap cannot tell an interior pointer or a wrong layout that stays inside allocated
///   memory: those are not detected (use [`BuddyHeap`](crate::BuddyHeap), which checks every
///   free exactly).
///
/// ```
/// use core::alloc::Layout;
/// use core::ptr::NonNull;
/// use kheap::{FirstFitHeap, FitPolicy, RawHeap};
///
/// let memory: &'static mut [u8] = Box::leak(vec![0u8; 16 * 1024].into_boxed_slice());
/// let mut heap = FirstFitHeap::new(FitPolicy::Best);
/// // SAFETY: the leaked buffer lives for ever and only the heap uses it.
/// unsafe { heap.add_region(NonNull::from(memory)) }.unwrap();
/// let layout = Layout::from_size_align(100, 8).unwrap();
/// let block = heap.allocate(layout).unwrap();
/// assert_eq!(block.len(), 112); // rounded up to the granule only
/// // SAFETY: `block` is live with `layout`.
/// unsafe { heap.deallocate(block.cast(), layout) }.unwrap();
/// assert_eq!(heap.usage().free_bytes, heap.usage().total_bytes);
/// ```
pub struct FirstFitHeap {
    policy: FitPolicy,
    /// Invariant: blocks are in strictly increasing address order, none touches the next (they
    /// would have been merged), each is granule-aligned, a multiple of the granule long and
    /// inside a region, clear of its header.
    free: Option<NonNull<FreeBlock>>,
    /// Where the last allocation ended; only compared, never followed.
    rover: *const u8,
    /// Invariant: region spans do not overlap and do not touch.
    regions: Option<NonNull<RegionHeader>>,
    /// Invariant: the size of the largest block on `free` (0 when it is empty).
    largest: usize,
    /// Invariant: bytes in regions outside their headers.
    total: usize,
    /// Invariant: the bytes on `free`.
    free_bytes: usize,
}

// SAFETY: the heap exclusively owns its regions (obligation 2 of `add_region`); its pointers
// are only followed through `&mut self` / `&self`, so the heap can move to another thread.
unsafe impl Send for FirstFitHeap {}

impl Default for FirstFitHeap {
    fn default() -> Self {
        Self::new(FitPolicy::First)
    }
}

/// A free block seen during a walk: the block before it on the list, and the block.
type Link = (Option<NonNull<FreeBlock>>, NonNull<FreeBlock>);

impl FirstFitHeap {
    /// An empty heap with the given placement policy.
    pub const fn new(policy: FitPolicy) -> Self {
        FirstFitHeap {
            policy,
            free: None,
            rover: core::ptr::null(),
            regions: None,
            largest: 0,
            total: 0,
            free_bytes: 0,
        }
    }

    /// The policy this heap places allocations with.
    pub fn policy(&self) -> FitPolicy {
        self.policy
    }

    /// Bytes a block with layout `old` occupies, and the same block resized to `new_size`.
    fn resize_sizes(old: Layout, new_size: usize) -> Result<(usize, usize), AllocError> {
        let new = Layout::from_size_align(new_size, old.align()).map_err(|_| AllocError)?;
        Self::rounded(old).zip(Self::rounded(new)).ok_or(AllocError)
    }

    /// Bytes a request for `layout` occupies, or `None` when it overflows.
    fn rounded(layout: Layout) -> Option<usize> {
        layout.size().max(GRANULE).checked_next_multiple_of(GRANULE)
    }

    fn block(&self, block: NonNull<FreeBlock>) -> &FreeBlock {
        // SAFETY: blocks on the free list hold `FreeBlock`s written by `link` into memory the
        // heap owns; they only change through `&mut self`.
        unsafe { block.as_ref() }
    }

    fn blocks(&self) -> impl Iterator<Item = Link> + '_ {
        let mut prev = None;
        core::iter::successors(self.free, |b| self.block(*b).next).map(move |b| {
            let link = (prev, b);
            prev = Some(b);
            link
        })
    }

    fn region_len(&self, header: NonNull<RegionHeader>) -> usize {
        // SAFETY: region headers are written by `add_region` into owned memory and only change
        // through `&mut self`.
        unsafe { header.as_ref().len }
    }

    fn set_region_len(&mut self, mut header: NonNull<RegionHeader>, len: usize) {
        // SAFETY: as in `region_len`; `&mut self` excludes other borrows.
        unsafe { header.as_mut().len = len };
    }

    fn regions(&self) -> impl Iterator<Item = Span> + '_ {
        core::iter::successors(self.regions, |r| {
            // SAFETY: region headers are written by `add_region` into owned memory.
            unsafe { r.as_ref().next }
        })
        .map(|r| Span {
            start: r.cast(),
            // SAFETY: as above.
            len: unsafe { r.as_ref().len },
        })
    }

    /// Writes a free block of `size` bytes at `at` and links it after `prev` (or first).
    ///
    /// # Safety
    ///
    /// 1. `[at, at + size)` is granule-aligned, at least a granule long, owned by the heap and
    ///    used by nobody (no live allocation, no header, no other free block).
    /// 2. Linking it after `prev` keeps the list in address order, touching no neighbour.
    unsafe fn link(&mut self, prev: Option<NonNull<FreeBlock>>, at: NonNull<u8>, size: usize) {
        let block = at.cast::<FreeBlock>();
        let next = match prev {
            Some(p) => self.block(p).next,
            None => self.free,
        };
        // SAFETY: (1) `at` is owned, unused, granule-aligned memory of at least one granule, so
        // a `FreeBlock` fits there.
        unsafe { block.write(FreeBlock { size, next }) };
        self.set_next(prev, Some(block));
        self.largest = self.largest.max(size);
    }

    /// Points `prev` (or the list head) at `next`.
    fn set_next(&mut self, prev: Option<NonNull<FreeBlock>>, next: Option<NonNull<FreeBlock>>) {
        match prev {
            // SAFETY: `p` is on the free list; `&mut self` excludes other borrows.
            Some(mut p) => unsafe { p.as_mut().next = next },
            None => self.free = next,
        }
    }

    fn recompute_largest(&mut self) {
        self.largest = self.blocks().map(|(_, b)| self.block(b).size).max().unwrap_or(0);
    }

    /// Returns `[at, at + size)` to the free list, merging it with touching neighbours.
    ///
    /// # Errors
    ///
    /// When the range overlaps a free block: [`MisuseKind::DoubleFree`] when its start lies
    /// in one, [`MisuseKind::WrongLayout`] when only its end does (a block freed with a larger
    /// layout than its own). Nothing is changed then.
    ///
    /// # Safety
    ///
    /// 1. `[at, at + size)` is granule-aligned, a multiple of the granule long, inside a region
    ///    clear of its header, and used by nobody but possibly the free list (which is checked).
    unsafe fn insert(&mut self, at: NonNull<u8>, size: usize) -> Result<(), MisuseKind> {
        let addr = at.as_ptr().addr();
        let mut below: Option<Link> = None;
        let mut above = None;
        for link in self.blocks() {
            if link.1.as_ptr().addr() > addr {
                above = Some(link.1);
                break;
            }
            below = Some(link);
        }
        let below_end = below.map(|(_, b)| b.as_ptr().addr() + self.block(b).size);
        if below_end.is_some_and(|end| end > addr) {
            return Err(MisuseKind::DoubleFree);
        }
        if above.is_some_and(|n| n.as_ptr().addr() < addr + size) {
            return Err(MisuseKind::WrongLayout);
        }
        self.free_bytes += size;
        let (prev, start, mut size) = match below {
            Some((before, b)) if below_end == Some(addr) => {
                (before, b.cast::<u8>(), self.block(b).size + size)
            }
            Some((_, b)) => (Some(b), at, size),
            None => (None, at, size),
        };
        let end = start.as_ptr().addr() + size;
        let next = match above {
            Some(n) if n.as_ptr().addr() == end => {
                size += self.block(n).size;
                self.block(n).next
            }
            other => other,
        };
        self.set_next(prev, next);
        // SAFETY: (1), and the range was checked to overlap no free block; merged with the
        // neighbours it touches, it sits between `prev` and `next` in address order.
        unsafe { self.link(prev, start, size) };
        Ok(())
    }

    /// Chooses a block for `size` bytes at `align` by the heap's policy; returns the block and
    /// the aligned start inside it.
    fn find(&self, size: usize, align: usize) -> Option<(Link, usize)> {
        let fits = |(_, b): &Link| {
            let start = align_up_addr(b.as_ptr().addr(), align)?;
            let end = b.as_ptr().addr() + self.block(*b).size;
            (start.checked_add(size)? <= end).then_some(start)
        };
        let size_of = |link: &Link| self.block(link.1).size;
        let mut candidates = self.blocks().filter_map(|link| fits(&link).map(|start| (link, start)));
        match self.policy {
            FitPolicy::First => candidates.next(),
            FitPolicy::Next => {
                let rover = self.rover.addr();
                let mut first = None;
                for (link, start) in candidates {
                    if link.1.as_ptr().addr() >= rover {
                        return Some((link, start));
                    }
                    first = first.or(Some((link, start)));
                }
                first
            }
            FitPolicy::Best => candidates.min_by_key(|(link, _)| size_of(link)),
            FitPolicy::Worst => candidates.max_by_key(|(link, _)| size_of(link)),
        }
    }
}

// SAFETY: allocations are carved from blocks on the free list, which hold only disjoint free
// memory inside regions and clear of the region headers (field invariants, checked by
// `check_invariants`); the carved start is aligned to `max(align, GRANULE)` and is followed by
// at least the rounded size inside the block; the heap writes only into free blocks and
// region headers; refused calls return before changing anything but `failed`.
unsafe impl RawHeap for FirstFitHeap {
    const MIN_REGION: usize = 2 * GRANULE;

    unsafe fn add_region(&mut self, region: NonNull<[u8]>) -> Result<usize, RegionError> {
        let span = granule_span(region, Self::MIN_REGION)?;
        if self.regions().any(|r| r.overlaps(&span)) {
            return Err(RegionError::Overlaps);
        }
        let before = self.total;
        let preceding = core::iter::successors(self.regions, |r| {
            // SAFETY: region headers are written below into owned memory.
            unsafe { r.as_ref().next }
        })
        .find(|r| r.as_ptr().addr() + self.region_len(*r) == span.start_addr());
        let header = match preceding {
            Some(header) => {
                // Appending: that region grows and the new memory is one free range.
                self.set_region_len(header, self.region_len(header) + span.len);
                self.total += span.len;
                // SAFETY: the new span is owned (obligations 1, 2), aligned, outside every region.
                let inserted = unsafe { self.insert(span.start, span.len) };
                debug_assert!(inserted.is_ok(), "new region overlapped a free block");
                header
            }
            None => {
                let header = span.start.cast::<RegionHeader>();
                // SAFETY: `span` is owned by the heap from now on (obligations 1 and 2), granule-
                // aligned and at least two granules long: its first granule holds the header.
                unsafe { header.write(RegionHeader { len: span.len, next: self.regions }) };
                self.regions = Some(header);
                self.total += span.len - GRANULE;
                // SAFETY: the span after its header is owned (obligations 1, 2) and unused.
                let inserted = unsafe { self.insert(offset(span.start, GRANULE), span.len - GRANULE) };
                debug_assert!(inserted.is_ok(), "new region overlapped a free block");
                header
            }
        };
        // A region that now ends where another starts absorbs it; the other's header becomes
        // free memory.
        let end = header.as_ptr().addr() + self.region_len(header);
        let follower = self.regions().find(|r| r.start_addr() == end);
        if let Some(follower) = follower {
            let mut link = &mut self.regions;
            while let Some(mut r) = *link {
                // SAFETY: `r` is an owned region header; `&mut self` excludes other borrows.
                let r = unsafe { r.as_mut() };
                if NonNull::from(&*r).cast::<u8>() == follower.start {
                    *link = r.next;
                    break;
                }
                link = &mut r.next;
            }
            self.set_region_len(header, self.region_len(header) + follower.len);
            self.total += GRANULE;
            // SAFETY: the absorbed region's header granule is owned and no longer used.
            let inserted = unsafe { self.insert(follower.start, GRANULE) };
            debug_assert!(inserted.is_ok(), "region header overlapped a free block");
        }
        Ok(self.total - before)
    }

    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let align = layout.align().max(GRANULE);
        let found = Self::rounded(layout).and_then(|size| Some((size, self.find(size, align)?)));
        let Some((size, ((prev, block), start))) = found else {
            return Err(AllocError);
        };
        let FreeBlock { size: block_size, next } = *self.block(block);
        let block_start = block.cast::<u8>();
        let front = start - block_start.as_ptr().addr();
        let back = block_size - front - size;
        self.set_next(prev, next);
        if back > 0 {
            // SAFETY: the tail of a free block just unlinked: owned, unused, in order.
            unsafe { self.link(prev, offset(block_start, front + size), back) };
        }
        if front > 0 {
            // SAFETY: the head of the same block, before its tail: owned, unused, in order.
            unsafe { self.link(prev, block_start, front) };
        }
        if block_size == self.largest {
            self.recompute_largest();
        }
        let ptr = offset(block_start, front);
        self.rover = offset(ptr, size).as_ptr();
        self.free_bytes -= size;
        Ok(NonNull::slice_from_raw_parts(ptr, size))
    }

    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Misuse> {
        let misuse = |kind| Err(Misuse::new(kind, ptr.as_ptr(), layout));
        let Some(size) = Self::rounded(layout) else { return misuse(MisuseKind::ImpossibleLayout) };
        let addr = ptr.as_ptr().addr();
        let Some(region) = self.regions().find(|r| r.contains_range(addr, 1)) else {
            return misuse(MisuseKind::Foreign);
        };
        if addr < region.start_addr() + GRANULE {
            return misuse(MisuseKind::Bookkeeping);
        }
        if !region.contains_range(addr, size) {
            return misuse(MisuseKind::WrongLayout);
        }
        if addr % layout.align().max(GRANULE) != 0 {
            return misuse(MisuseKind::NotBlockStart);
        }
        // SAFETY: the block lies in a region clear of its header and is aligned (checked above);
        // by (1) and (2) it is a live allocation that the caller gives up; overlap with free
        // memory, the misuse that can be seen here, is checked by `insert`.
        if let Err(kind) = unsafe { self.insert(ptr, size) } {
            return misuse(kind);
        }
        Ok(())
    }

    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError> {
        let (old_size, new_rounded) = Self::resize_sizes(old, new_size)?;
        if new_rounded > old_size {
            let end = ptr.as_ptr().addr() + old_size;
            let extra = new_rounded - old_size;
            let Some((prev, next)) =
                self.blocks().find(|(_, b)| b.as_ptr().addr() == end && self.block(*b).size >= extra)
            else {
                return Err(AllocError);
            };
            let FreeBlock { size, next: after } = *self.block(next);
            self.set_next(prev, after);
            if size > extra {
                // SAFETY: the rest of the free block just unlinked: owned, unused, in order.
                unsafe { self.link(prev, offset(ptr, new_rounded), size - extra) };
            }
            if size == self.largest {
                self.recompute_largest();
            }
            self.free_bytes -= extra;
        }
        Ok(())
    }

    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError> {
        let (old_size, new_rounded) = Self::resize_sizes(old, new_size)?;
        if new_rounded < old_size {
            let tail = offset(ptr, new_rounded);
            // A tail overlapping free memory means `old` was not the block's layout: refused.
            // SAFETY: the tail of a live block (1, 2) that the caller gives up.
            unsafe { self.insert(tail, old_size - new_rounded) }.map_err(|_| AllocError)?;
        }
        Ok(())
    }

    fn region_layout_for(&self, layout: Layout) -> Option<Layout> {
        // A fresh region starts with its one-granule header; the block goes at the first
        // multiple of its alignment after it.
        let size = Self::rounded(layout)?;
        let align = layout.align().max(GRANULE);
        let lead = if align > GRANULE { align } else { GRANULE };
        Layout::from_size_align(lead.checked_add(size)?, align).ok()
    }

    fn usage(&self) -> HeapUsage {
        HeapUsage { total_bytes: self.total, free_bytes: self.free_bytes, largest_free_block: self.largest }
    }

    fn check_invariants(&self) -> Result<(), InvariantError> {
        let fail = |what, at: *const u8, value| Err(InvariantError::new(what, at, value));
        let regions = || self.regions();
        for (i, a) in regions().enumerate() {
            for b in regions().skip(i + 1) {
                if a.overlaps(&b) || a.end_addr() == b.start_addr() || b.end_addr() == a.start_addr() {
                    return fail("two regions overlap or touch", a.start.as_ptr(), a.len);
                }
            }
        }
        let mut free_bytes = 0;
        let mut largest = 0;
        let mut prev_end = None;
        let limit = self.total / GRANULE + 1;
        let mut cursor = self.free;
        let mut count = 0;
        while let Some(block) = cursor {
            let at = block.as_ptr().cast::<u8>().cast_const();
            let addr = at.addr();
            count += 1;
            if count > limit {
                return fail("free list has a cycle", at, count);
            }
            // Checked before the block is read: a corrupted link is reported, not followed.
            if addr % GRANULE != 0
                || !regions().any(|r| r.contains_range(addr, GRANULE) && addr >= r.start_addr() + GRANULE)
            {
                return fail("free block outside every region, over its header or misaligned", at, 0);
            }
            let FreeBlock { size, next } = *self.block(block);
            if size % GRANULE != 0 || size == 0 || !regions().any(|r| r.contains_range(addr, size)) {
                return fail("free block's size is not a granule multiple inside its region", at, size);
            }
            if prev_end.is_some_and(|end| end >= addr) {
                return fail("free blocks out of order, overlapping or not merged", at, size);
            }
            prev_end = Some(addr + size);
            free_bytes += size;
            largest = largest.max(size);
            cursor = next;
        }
        if largest != self.largest {
            return fail("largest free block figure is stale", core::ptr::null(), self.largest);
        }
        if free_bytes != self.free_bytes {
            return fail("free bytes on the list disagree with the count", core::ptr::null(), free_bytes);
        }
        let region_bytes: usize = regions().map(|r| r.len - GRANULE).sum();
        if region_bytes != self.total {
            return fail("region bytes disagree with the total", core::ptr::null(), region_bytes);
        }
        Ok(())
    }

    fn walk(&self, visit: &mut dyn FnMut(Part)) {
        for r in self.regions() {
            visit(Part { kind: PartKind::Region, start: r.start.as_ptr(), len: r.len });
            visit(Part { kind: PartKind::Bookkeeping, start: r.start.as_ptr(), len: GRANULE });
        }
        for (_, b) in self.blocks() {
            visit(Part { kind: PartKind::Free, start: b.as_ptr().cast::<u8>(), len: self.block(b).size });
        }
    }
}
