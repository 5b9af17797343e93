//! `BuddyHeap`: the binary buddy system of the rCore tutorial, with O(1) buddy lookup.
//!
//! Memory is cut into blocks of `GRANULE << order` bytes, each aligned (by address) to its
//! own size. A free block of order `k` and its *buddy* (the block whose address differs only
//! in bit `GRANULE_SHIFT + k`) merge into one block of order `k + 1`.
//!
//! The tutorial's allocator finds out whether a buddy is free by scanning a singly linked
//! free list, so freeing costs O(free blocks). Here every region keeps a bitmap with one bit
//! per possible block per order ("this block is free, at this order"), and free lists are
//! doubly linked, so the buddy is checked and unlinked in O(1) and a free costs O(MAX_ORDER).
//! The price is the bitmap: about 1/64 of each region (one bit per granule, twice over).

use core::alloc::Layout;
use core::mem::{align_of, size_of};
use core::ptr::NonNull;

use crate::algorithms::bitmap::Bitmap;
use crate::algorithms::pointer::{offset, with_addr, GRANULE, GRANULE_SHIFT};
use crate::algorithms::region::{granule_span, Span};
use crate::contract::stats::Counters;
use crate::{AllocError, HeapStats, InvariantError, RawHeap, RegionError};

#[cfg(test)]
mod tests;

/// The links written into a free block. Fits in one granule.
#[repr(C)]
struct FreeBlock {
    next: Option<NonNull<FreeBlock>>,
    prev: Option<NonNull<FreeBlock>>,
}

/// The bookkeeping of one contiguous span of memory, stored inside that span.
///
/// Invariants:
/// - `meta` lies inside `span` and holds this record and its bitmap; no block overlapping
///   `meta` is ever free or allocated.
/// - bit `slot(addr, k) + bias[k]` (wrapping) of `free` is set iff the block of order `k` at
///   `addr` is on free list `k`, where `slot(addr, k)` is `addr >> (GRANULE_SHIFT + k)`.
/// - spans of different records never overlap.
#[repr(C)]
struct RegionRecord<const MAX_ORDER: usize> {
    span: Span,
    meta: Span,
    next: Option<NonNull<RegionRecord<MAX_ORDER>>>,
    free: Bitmap,
    /// Per order, what turns a slot number into a bit number: the order's first bit minus the
    /// span's first slot (wrapping), so a lookup is one shift and one add.
    bias: [usize; MAX_ORDER],
}

impl<const MAX_ORDER: usize> RegionRecord<MAX_ORDER> {
    /// First slot number of order `k` blocks in `span` (slots are counted from address 0).
    fn first_slot(span: &Span, k: usize) -> usize {
        span.start_addr() >> (GRANULE_SHIFT as usize + k)
    }

    /// Each order's bias (see the field) and how many bits there are in all, for `span`.
    fn bit_layout(span: &Span) -> ([usize; MAX_ORDER], usize) {
        let mut bias = [0; MAX_ORDER];
        let mut bits: usize = 0;
        for (k, bias) in bias.iter_mut().enumerate() {
            let first = Self::first_slot(span, k);
            *bias = bits.wrapping_sub(first);
            let last = (span.end_addr() - 1) >> (GRANULE_SHIFT as usize + k);
            bits += last - first + 1;
        }
        (bias, bits)
    }

    /// Bytes of bookkeeping a record for `span` needs, rounded up to the granule.
    fn meta_bytes(span: &Span) -> usize {
        let (_, bits) = Self::bit_layout(span);
        let bytes = size_of::<Self>() + Bitmap::words_for(bits) * size_of::<usize>();
        bytes.next_multiple_of(GRANULE)
    }

    /// Builds a record covering `span` whose bookkeeping occupies `meta`; no block is free yet.
    ///
    /// # Safety
    ///
    /// 1. `meta` lies inside `span`, is at least `meta_bytes(span)` long, and is memory the
    ///    heap owns and uses for nothing else.
    unsafe fn write(span: Span, meta: Span) -> NonNull<Self> {
        const { assert!(align_of::<Self>() <= GRANULE) };
        let (bias, bits) = Self::bit_layout(&span);
        let record = meta.start.cast::<Self>();
        let words = offset(meta.start, size_of::<Self>()).cast::<usize>();
        // SAFETY: (1) the words follow the record inside `meta`, which is long enough, owned
        // and aligned (granule-aligned start, record size a multiple of the word size).
        let free = unsafe { Bitmap::new_zeroed(words, Bitmap::words_for(bits)) };
        // SAFETY: (1) `meta` is owned, granule-aligned (enough for the record) and long enough.
        unsafe { record.write(RegionRecord { span, meta, next: None, free, bias }) };
        record
    }

    fn bit(&self, addr: usize, k: usize) -> usize {
        (addr >> (GRANULE_SHIFT as usize + k)).wrapping_add(self.bias[k])
    }

    /// Whether the block of order `k` at `addr` lies inside the span and is free at that order.
    fn is_free(&self, addr: usize, k: usize) -> bool {
        self.span.contains_range(addr, GRANULE << k) && self.free.get(self.bit(addr, k))
    }
}

/// The default number of block sizes of a [`BuddyHeap`]: 32 (blocks up to 32 GiB) on 64-bit
/// targets, 28 (blocks up to 1 GiB, the most a 32-bit address space allows) on 32-bit ones.
pub const DEFAULT_MAX_ORDER: usize = if usize::BITS >= 64 { 32 } else { 28 };

// The default configuration must build on every target the crate builds for.
const _: BuddyHeap = BuddyHeap::new();

/// The binary buddy system with `MAX_ORDER` block sizes: `GRANULE << 0` up to
/// `GRANULE << (MAX_ORDER - 1)` bytes, where `GRANULE` is two pointers (16 bytes on 64-bit).
///
/// - `allocate`: O(1) to find a list (a bit mask of non-empty lists), O(MAX_ORDER) to split.
/// - `deallocate`: O(MAX_ORDER + R) where R is the number of separate regions (usually 1):
///   buddy state comes from a bitmap, never from scanning a free list.
/// - Fragmentation: requests are rounded up to a power of two (up to 2x internal waste);
///   alignment is free up to the block size; free blocks merge at once.
///
/// Regions of any start and length are cut into the largest aligned blocks that fit, so no
/// usable memory is dropped but the sub-granule slivers at their ends. A region added next to
/// one the heap already has is joined to it, so blocks merge across the seam.
///
/// A `MAX_ORDER` the heap cannot represent is refused when the heap is built:
///
/// ```compile_fail
/// // Blocks of 16 << 70 bytes do not fit in a usize.
/// let heap = kheap::BuddyHeap::<70>::new();
/// ```
/// ```compile_fail
/// let heap = kheap::BuddyHeap::<0>::new();
/// ```
pub struct BuddyHeap<const MAX_ORDER: usize = DEFAULT_MAX_ORDER> {
    /// Heads of the doubly linked free lists, one per order.
    /// Invariant: every block on list `k` is free, of order `k`, inside a region, and its bit
    /// is set in its region's bitmap; no two free buddies of the same order both exist.
    free_lists: [Option<NonNull<FreeBlock>>; MAX_ORDER],
    /// Invariant: bit `k` is set iff `free_lists[k]` is not empty.
    nonempty: u64,
    /// Singly linked list of region records. Invariant: their spans do not overlap.
    regions: Option<NonNull<RegionRecord<MAX_ORDER>>>,
    /// Invariant: `counters.total - counters.allocated` equals the bytes on the free lists.
    counters: Counters,
}

// SAFETY: the heap exclusively owns its regions (obligation 2 of `add_region`); the pointers it
// holds are only followed through `&mut self` or `&self`, so moving the heap to another thread
// moves that ownership with it.
unsafe impl<const MAX_ORDER: usize> Send for BuddyHeap<MAX_ORDER> {}

impl<const MAX_ORDER: usize> Default for BuddyHeap<MAX_ORDER> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const MAX_ORDER: usize> BuddyHeap<MAX_ORDER> {
    const VALID: () = assert!(
        MAX_ORDER >= 1 && MAX_ORDER <= 64 && MAX_ORDER + (GRANULE_SHIFT as usize) < usize::BITS as usize,
        "BuddyHeap: MAX_ORDER must be at least 1 and small enough that GRANULE << (MAX_ORDER - 1) fits in a usize"
    );

    /// The largest block, and so the largest allocation, this heap can hand out.
    pub const MAX_BLOCK: usize = GRANULE << (MAX_ORDER - 1);

    /// An empty heap; give it memory with [`RawHeap::add_region`].
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::VALID;
        BuddyHeap { free_lists: [None; MAX_ORDER], nonempty: 0, regions: None, counters: Counters::new() }
    }

    /// The block size a request for `layout` occupies, or `None` if no block can hold it.
    pub fn block_size(layout: Layout) -> Option<usize> {
        Self::order_for(layout).map(|k| GRANULE << k)
    }

    /// Orders of a block with layout `old` and of the same block resized to `new_size`.
    fn resize_orders(old: Layout, new_size: usize) -> Result<(usize, usize), AllocError> {
        let new = Layout::from_size_align(new_size, old.align()).map_err(|_| AllocError)?;
        Self::order_for(old).zip(Self::order_for(new)).ok_or(AllocError)
    }

    fn order_for(layout: Layout) -> Option<usize> {
        let need = layout.size().max(layout.align()).max(GRANULE).checked_next_power_of_two()?;
        let k = (need.trailing_zeros() - GRANULE_SHIFT) as usize;
        (k < MAX_ORDER).then_some(k)
    }

    fn record(&self, record: NonNull<RegionRecord<MAX_ORDER>>) -> &RegionRecord<MAX_ORDER> {
        // SAFETY: records are written by `RegionRecord::write` into memory the heap owns and
        // are only changed through `&mut self`; the returned borrow is tied to `&self`.
        unsafe { record.as_ref() }
    }

    fn records(&self) -> impl Iterator<Item = NonNull<RegionRecord<MAX_ORDER>>> + '_ {
        core::iter::successors(self.regions, |r| self.record(*r).next)
    }

    /// The record whose span holds `[addr, addr + len)`.
    fn record_of(&self, addr: usize, len: usize) -> Option<NonNull<RegionRecord<MAX_ORDER>>> {
        self.records().find(|r| self.record(*r).span.contains_range(addr, len))
    }

    fn set_free_bit(
        &mut self,
        mut record: NonNull<RegionRecord<MAX_ORDER>>,
        addr: usize,
        k: usize,
        value: bool,
    ) {
        // SAFETY: as in `record`, and `&mut self` excludes every other borrow of the record.
        let record = unsafe { record.as_mut() };
        let bit = record.bit(addr, k);
        record.free.set(bit, value);
    }

    /// Puts the block of order `k` at `block` on free list `k` and marks it free.
    ///
    /// Requires (checked by callers' logic, not here): the block lies in `record`'s span,
    /// outside its bookkeeping, belongs to nobody, and its buddy is not free at order `k`.
    fn push(&mut self, record: NonNull<RegionRecord<MAX_ORDER>>, block: NonNull<u8>, k: usize) {
        let node = block.cast::<FreeBlock>();
        let head = self.free_lists[k];
        // SAFETY: the block is at least one granule of owned memory that nobody else uses
        // (callers' requirement), granule-aligned, so a `FreeBlock` can be written there.
        unsafe { node.write(FreeBlock { next: head, prev: None }) };
        if let Some(mut head) = head {
            // SAFETY: `head` is on a free list, so it holds a `FreeBlock` the heap owns.
            unsafe { head.as_mut().prev = Some(node) };
        }
        self.free_lists[k] = Some(node);
        self.nonempty |= 1 << k;
        self.set_free_bit(record, block.as_ptr().addr(), k, true);
    }

    /// Takes the block of order `k` at `block` off free list `k`.
    ///
    /// Requires: the block is on free list `k` and lies in `record`'s span.
    fn unlink(&mut self, record: NonNull<RegionRecord<MAX_ORDER>>, block: NonNull<u8>, k: usize) {
        let node = block.cast::<FreeBlock>();
        // SAFETY: the block is on a free list (callers' requirement), so it holds a `FreeBlock`.
        let FreeBlock { next, prev } = unsafe { node.read() };
        match prev {
            // SAFETY: list neighbours are free blocks holding `FreeBlock`s.
            Some(mut prev) => unsafe { prev.as_mut().next = next },
            None => self.free_lists[k] = next,
        }
        if let Some(mut next) = next {
            // SAFETY: list neighbours are free blocks holding `FreeBlock`s.
            unsafe { next.as_mut().prev = prev };
        }
        if self.free_lists[k].is_none() {
            self.nonempty &= !(1 << k);
        }
        self.set_free_bit(record, block.as_ptr().addr(), k, false);
    }

    /// Frees the block of order `k` at `block`, merging it with its buddies as far as they go.
    fn free_block(&mut self, record: NonNull<RegionRecord<MAX_ORDER>>, mut block: NonNull<u8>, mut k: usize) {
        while k + 1 < MAX_ORDER {
            let addr = block.as_ptr().addr();
            let buddy = addr ^ (GRANULE << k);
            if !self.record(record).is_free(buddy, k) {
                break;
            }
            self.unlink(record, with_addr(block, buddy), k);
            block = with_addr(block, addr.min(buddy));
            k += 1;
        }
        self.push(record, block, k);
    }

    /// Frees `[start, start + len)` (granule-aligned, inside `record`'s span, owned by nobody)
    /// as the largest aligned blocks that fit, and counts it as heap memory.
    fn release(&mut self, record: NonNull<RegionRecord<MAX_ORDER>>, start: NonNull<u8>, len: usize) {
        let mut done = 0;
        while done < len {
            let block = offset(start, done);
            let aligned = (block.as_ptr().addr() >> GRANULE_SHIFT).trailing_zeros() as usize;
            let mut k = aligned.min(MAX_ORDER - 1);
            while GRANULE << k > len - done {
                k -= 1;
            }
            self.free_block(record, block, k);
            done += GRANULE << k;
        }
        self.counters.total += len;
    }

    /// Retires record `old` in favour of `new` (which covers `old`'s span and is already
    /// linked): carries the free bits over, unlinks `old` and returns its bookkeeping to the
    /// heap as free memory.
    fn retire_record(
        &mut self,
        old: NonNull<RegionRecord<MAX_ORDER>>,
        new: NonNull<RegionRecord<MAX_ORDER>>,
    ) {
        let old_span = self.record(old).span;
        for k in 0..MAX_ORDER {
            let mut cursor = self.free_lists[k];
            while let Some(node) = cursor {
                let addr = node.as_ptr().addr();
                if old_span.contains_range(addr, GRANULE << k) {
                    self.set_free_bit(new, addr, k, true);
                }
                // SAFETY: nodes on a free list hold `FreeBlock`s.
                cursor = unsafe { node.as_ref().next };
            }
        }
        let old_meta = self.record(old).meta;
        let old_next = self.record(old).next;
        let mut link = &mut self.regions;
        while let Some(mut r) = *link {
            if r == old {
                *link = old_next;
                break;
            }
            // SAFETY: `r` is a record the heap owns; `&mut self` excludes other borrows.
            link = unsafe { &mut r.as_mut().next };
        }
        self.release(new, old_meta.start, old_meta.len);
    }

    fn link_record(&mut self, mut record: NonNull<RegionRecord<MAX_ORDER>>) {
        // SAFETY: `record` was just written by `RegionRecord::write` and is owned by the heap.
        unsafe { record.as_mut().next = self.regions };
        self.regions = Some(record);
    }

    /// Joins `span` with the records it touches (one on each side at most) if `span` can hold
    /// the joined bookkeeping. Returns whether it did.
    fn join(&mut self, span: Span) -> bool {
        let left = self.records().find(|r| self.record(*r).span.end_addr() == span.start_addr());
        let right = self.records().find(|r| self.record(*r).span.start_addr() == span.end_addr());
        if left.is_none() && right.is_none() {
            return false;
        }
        let start = left.map_or(span.start, |l| self.record(l).span.start);
        let end = right.map_or(span.end_addr(), |r| self.record(r).span.end_addr());
        let union = Span { start, len: end - start.as_ptr().addr() };
        let meta_len = RegionRecord::<MAX_ORDER>::meta_bytes(&union);
        if meta_len >= span.len {
            return false;
        }
        // The new bookkeeping goes at the end of the new memory away from the left seam (or, with
        // only a right neighbour, away from the right seam), so blocks merge across it.
        let rest = span.len - meta_len;
        let (meta, fresh) = if left.is_some() {
            (Span { start: offset(span.start, rest), len: meta_len }, Span { start: span.start, len: rest })
        } else {
            (
                Span { start: span.start, len: meta_len },
                Span { start: offset(span.start, meta_len), len: rest },
            )
        };
        // SAFETY: (1) `meta` lies inside `span` (new, owned memory) and so inside `union`, and
        // is `meta_bytes(union)` long.
        let new = unsafe { RegionRecord::write(union, meta) };
        self.link_record(new);
        for old in [left, right].into_iter().flatten() {
            self.retire_record(old, new);
        }
        self.release(new, fresh.start, fresh.len);
        true
    }
}

// SAFETY: blocks handed out come off the free lists, which hold only disjoint free blocks
// inside regions and outside the bookkeeping (the field invariants, checked by
// `check_invariants`); a block of order k is aligned to its size, which is at least
// `max(size, align)`; the heap writes only into free blocks and its bookkeeping; refused
// calls return before changing anything but `failed`.
unsafe impl<const MAX_ORDER: usize> RawHeap for BuddyHeap<MAX_ORDER> {
    /// One granule of blocks after the smallest possible bookkeeping.
    const MIN_REGION: usize =
        (size_of::<RegionRecord<MAX_ORDER>>() + size_of::<usize>()).next_multiple_of(GRANULE) + GRANULE;

    unsafe fn add_region(&mut self, region: NonNull<[u8]>) -> Result<usize, RegionError> {
        let span = granule_span(region, Self::MIN_REGION)?;
        if self.records().any(|r| self.record(r).span.overlaps(&span)) {
            return Err(RegionError::Overlaps);
        }
        let before = self.counters.total;
        if !self.join(span) {
            let meta_len = RegionRecord::<MAX_ORDER>::meta_bytes(&span);
            let minimum = meta_len + GRANULE;
            if region.len() < minimum {
                return Err(RegionError::TooSmall { size: region.len(), minimum });
            }
            if span.len < minimum {
                return Err(RegionError::MisalignedBeyondUse { usable: span.len, minimum });
            }
            let meta = Span { start: span.start, len: meta_len };
            // SAFETY: (1) `meta` is the start of `span`, owned by the heap from now on
            // (obligations 1 and 2 of this function), and `meta_bytes(span)` long.
            let record = unsafe { RegionRecord::write(span, meta) };
            self.link_record(record);
            self.release(record, offset(span.start, meta_len), span.len - meta_len);
        }
        Ok(self.counters.total - before)
    }

    fn allocate(&mut self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let Some(k) = Self::order_for(layout).filter(|k| self.nonempty >> k != 0) else {
            self.counters.failed += 1;
            return Err(AllocError);
        };
        let mut j = k + (self.nonempty >> k).trailing_zeros() as usize;
        let block = self.free_lists[j].expect("non-empty mask bit set for an empty list").cast::<u8>();
        let record =
            self.record_of(block.as_ptr().addr(), GRANULE << j).expect("free block outside every region");
        self.unlink(record, block, j);
        while j > k {
            j -= 1;
            self.push(record, offset(block, GRANULE << j), j);
        }
        self.counters.on_allocate(layout.size(), GRANULE << k);
        Ok(block)
    }

    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        let addr = ptr.as_ptr().addr();
        let Some(k) = Self::order_for(layout) else {
            panic!("kheap: deallocate({ptr:p}, {layout:?}): no block of this heap has that layout");
        };
        let size = GRANULE << k;
        let Some(record) = self.record_of(addr, size) else {
            panic!("kheap: deallocate({ptr:p}, {layout:?}): pointer is not inside this heap");
        };
        assert!(
            addr % size == 0,
            "kheap: deallocate({ptr:p}, {layout:?}): pointer is not the start of a {size}-byte block"
        );
        // Double free: the block, or a block containing it, is free. Only orders with a free
        // block can hold one, and once an ancestor leaves the region all larger ones do.
        let mut orders = self.nonempty >> k << k;
        while orders != 0 {
            let j = orders.trailing_zeros() as usize;
            orders &= orders - 1;
            let ancestor = addr & !((GRANULE << j) - 1);
            let record = self.record(record);
            if !record.span.contains_range(ancestor, GRANULE << j) {
                break;
            }
            assert!(
                !record.free.get(record.bit(ancestor, j)),
                "kheap: deallocate({ptr:p}, {layout:?}): block is already free (double free)"
            );
        }
        self.free_block(record, ptr, k);
        self.counters.on_deallocate(layout.size(), size);
    }

    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError> {
        let (k_old, k_new) = Self::resize_orders(old, new_size)?;
        let addr = ptr.as_ptr().addr();
        if k_new > k_old {
            let record = self.record_of(addr, GRANULE << k_old).ok_or(AllocError)?;
            let mergeable = (k_old..k_new).all(|j| {
                addr % (GRANULE << (j + 1)) == 0 && self.record(record).is_free(addr + (GRANULE << j), j)
            });
            if !mergeable {
                return Err(AllocError);
            }
            for j in k_old..k_new {
                self.unlink(record, offset(ptr, GRANULE << j), j);
            }
        }
        self.counters.on_resize((old.size(), GRANULE << k_old), (new_size, GRANULE << k_new.max(k_old)));
        Ok(())
    }

    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError> {
        let (k_old, k_new) = Self::resize_orders(old, new_size)?;
        if k_new < k_old {
            let record = self.record_of(ptr.as_ptr().addr(), GRANULE << k_old).ok_or(AllocError)?;
            // The upper halves' buddies are the lower halves, which stay allocated: no merging.
            for j in (k_new..k_old).rev() {
                self.push(record, offset(ptr, GRANULE << j), j);
            }
        }
        self.counters.on_resize((old.size(), GRANULE << k_old), (new_size, GRANULE << k_new));
        Ok(())
    }

    fn could_ever_fit(&self, layout: Layout) -> bool {
        Self::order_for(layout).is_some()
    }

    fn stats(&self) -> HeapStats {
        let largest = match self.nonempty {
            0 => 0,
            mask => GRANULE << (63 - mask.leading_zeros()),
        };
        self.counters.snapshot(largest)
    }

    fn check_invariants(&self) -> Result<(), InvariantError> {
        let fail = |what, at: *const u8, value| Err(InvariantError::new(what, at, value));
        for a in self.records() {
            let ra = self.record(a);
            if !ra.span.contains_range(ra.meta.start_addr(), ra.meta.len) {
                return fail(
                    "region bookkeeping lies outside its region",
                    ra.meta.start.as_ptr(),
                    ra.meta.len,
                );
            }
            for b in self.records().filter(|b| *b != a) {
                if ra.span.overlaps(&self.record(b).span) {
                    return fail("two regions overlap", ra.span.start.as_ptr(), ra.span.len);
                }
            }
        }
        let mut free_bytes = 0;
        let mut free_blocks = 0;
        for k in 0..MAX_ORDER {
            let size = GRANULE << k;
            if (self.nonempty >> k & 1 == 1) != self.free_lists[k].is_some() {
                return fail("non-empty mask disagrees with free list", core::ptr::null(), k);
            }
            let mut prev = None;
            let mut cursor = self.free_lists[k];
            let mut on_list = 0;
            while let Some(node) = cursor {
                let at = node.as_ptr().cast::<u8>().cast_const();
                let addr = at.addr();
                on_list += 1;
                if on_list > self.counters.total / size + 1 {
                    return fail("free list has a cycle", at, k);
                }
                let Some(record) = self.record_of(addr, size) else {
                    return fail("free block outside every region", at, k);
                };
                let record = self.record(record);
                if addr % size != 0 {
                    return fail("free block not aligned to its size", at, k);
                }
                if record.meta.contains_range(addr, 1) || record.meta.contains_range(addr + size - 1, 1) {
                    return fail("free block overlaps region bookkeeping", at, k);
                }
                if !record.free.get(record.bit(addr, k)) {
                    return fail("free block's bitmap bit is clear", at, k);
                }
                if k + 1 < MAX_ORDER && record.is_free(addr ^ size, k) {
                    return fail("free block and its free buddy were not merged", at, k);
                }
                if let Some(j) = (k + 1..MAX_ORDER).find(|&j| record.is_free(addr & !((GRANULE << j) - 1), j))
                {
                    return fail("free block lies inside a larger free block", at, j);
                }
                // SAFETY: nodes on a free list hold `FreeBlock`s the heap owns.
                let links = unsafe { node.as_ref() };
                if links.prev != prev {
                    return fail("free list back link is wrong", at, k);
                }
                prev = Some(node);
                cursor = links.next;
            }
            free_bytes += on_list * size;
            free_blocks += on_list;
        }
        let bits: usize = self.records().map(|r| self.record(r).free.count_ones()).sum();
        if bits != free_blocks {
            return fail("bitmap marks blocks free that no free list holds", core::ptr::null(), bits);
        }
        if free_bytes != self.counters.total - self.counters.allocated {
            return fail("free bytes on the lists disagree with the counters", core::ptr::null(), free_bytes);
        }
        Ok(())
    }

    fn for_each_region(&self, f: &mut dyn FnMut(*const u8, usize)) {
        for r in self.records() {
            let span = self.record(r).span;
            f(span.start.as_ptr(), span.len);
        }
    }

    fn for_each_free_block(&self, f: &mut dyn FnMut(*const u8, usize)) {
        for (k, head) in self.free_lists.iter().enumerate() {
            let mut cursor = *head;
            while let Some(node) = cursor {
                f(node.as_ptr().cast::<u8>(), GRANULE << k);
                // SAFETY: nodes on a free list hold `FreeBlock`s the heap owns.
                cursor = unsafe { node.as_ref().next };
            }
        }
    }
}
