//! `BuddyHeap`: the binary buddy system of the rCore tutorial, with O(1) buddy lookup and exact
//! misuse detection.
//!
//! Memory is cut into blocks of `GRANULE << order` bytes, each aligned (by address) to its
//! own size. A free block of order `k` and its *buddy* (the block whose address differs only
//! in bit `GRANULE_SHIFT + k`) merge into one block of order `k + 1`.
//!
//! The tutorial's allocator finds out whether a buddy is free by scanning a singly linked
//! free list, so freeing costs O(free blocks). Here every region keeps two bits per possible
//! block per order: "free at this order" (the block is on free list `k`) and "allocated at this
//! order" (the block was handed out as one block of order `k`). A buddy is then checked and
//! unlinked in O(1) (free lists are doubly linked), and a free is checked exactly in O(1):
//! the pointer must be the start of a block allocated at the order its layout asks for, so a
//! double, interior, foreign or wrong-layout free is refused before anything changes. The
//! price is four bits per granule: about 1/32 of each region on 64-bit targets, 1/16 on 32-bit
//! ones.

use core::alloc::Layout;
use core::mem::{align_of, size_of};
use core::ptr::NonNull;

use crate::algorithms::bitmap::Bitmap;
use crate::algorithms::pointer::{offset, with_addr, GRANULE, GRANULE_SHIFT};
use crate::algorithms::region::{granule_span, Span};
use crate::{
    AllocError, BlockLookup, HeapUsage, InvariantError, Misuse, MisuseKind, Part, PartKind, RawHeap,
    RegionError,
};

mod region_tree;
#[cfg(test)]
mod tests;

/// The links written into a free block. Fits in one granule.
///
/// Invariant: `next` is the next block on the block's free list; `prev`, the block before it,
/// holds only while the block is not the first of its list. The first block's `prev` is never
/// read (unwritten, or stale): not clearing it saves a write to the next block each time the
/// first is taken.
#[repr(C)]
struct FreeBlock {
    next: Option<NonNull<FreeBlock>>,
    prev: NonNull<FreeBlock>,
}

impl FreeBlock {
    /// The block after `node` on its list.
    ///
    /// # Safety
    ///
    /// 1. `node` is on a free list (so holds its links in heap memory).
    #[inline(always)]
    unsafe fn next(node: NonNull<Self>) -> Option<NonNull<Self>> {
        // SAFETY: (1); only the field is read, as `prev` may never have been written.
        unsafe { (&raw const (*node.as_ptr()).next).read() }
    }

    /// The block before `node` on its list.
    ///
    /// # Safety
    ///
    /// 1. `node` is on a free list and is not its first block.
    #[inline(always)]
    unsafe fn prev(node: NonNull<Self>) -> NonNull<Self> {
        // SAFETY: (1) a block after the first has its back link written.
        unsafe { (&raw const (*node.as_ptr()).prev).read() }
    }

    /// Writes `node`'s forward link.
    ///
    /// # Safety
    ///
    /// 1. `node` is a free block of heap memory (at least one granule, granule-aligned) that
    ///    nobody else uses.
    #[inline(always)]
    unsafe fn set_next(node: NonNull<Self>, next: Option<NonNull<Self>>) {
        // SAFETY: (1).
        unsafe { (&raw mut (*node.as_ptr()).next).write(next) }
    }

    /// Writes `node`'s back link.
    ///
    /// # Safety
    ///
    /// As [`set_next`](Self::set_next).
    #[inline(always)]
    unsafe fn set_prev(node: NonNull<Self>, prev: NonNull<Self>) {
        // SAFETY: (1).
        unsafe { (&raw mut (*node.as_ptr()).prev).write(prev) }
    }
}

/// The state bits of a block slot: bit 0 "free at this order", bit 1 "allocated at this order".
const FREE: usize = 0b01;
const TAKEN: usize = 0b10;

/// The bookkeeping of one contiguous span of memory, stored inside that span.
///
/// Invariants:
/// - `meta` lies inside `span` and holds this record and its bitmap; no block overlapping
///   `meta` is ever free or allocated.
/// - for slot `s = slot(addr, k) + bias[k]` (wrapping, `slot(addr, k)` being
///   `addr >> (GRANULE_SHIFT + k)`), bit `2s` of `bits` is set iff the block of order `k` at
///   `addr` is on free list `k`, and bit `2s + 1` iff it is allocated as one block of order `k`.
/// - every `bias[k]` is even, and each order's slots run from an even slot number to an odd
///   one: a block and its buddy (slot numbers `n` and `n ^ 1`) have their four state bits in
///   one aligned nibble of one word, whether the buddy lies inside the span or not.
/// - every granule of `span` outside `meta` lies in exactly one free or allocated block.
/// - spans of different records never overlap; `left` / `right` make a treap by span start
///   and `priority` (see `region_tree`).
#[repr(C)]
struct RegionRecord<const MAX_ORDER: usize> {
    span: Span,
    meta: Span,
    left: Option<NonNull<RegionRecord<MAX_ORDER>>>,
    right: Option<NonNull<RegionRecord<MAX_ORDER>>>,
    priority: u32,
    bits: Bitmap,
    /// Per order, what turns a slot number into a slot index: the order's first index minus the
    /// span's first slot (wrapping), so a lookup is one shift and one add.
    bias: [usize; MAX_ORDER],
}

impl<const MAX_ORDER: usize> RegionRecord<MAX_ORDER> {
    /// The slot numbers of order `k` that have state bits for `span` (slots are counted from
    /// address 0): those of the blocks starting in the span, widened to whole buddy pairs, so
    /// the buddy of every block in the span has its bits too (see the invariants).
    fn slots(span: &Span, k: usize) -> core::ops::RangeInclusive<usize> {
        let shift = GRANULE_SHIFT as usize + k;
        (span.start_addr() >> shift & !1)..=((span.end_addr() - 1) >> shift | 1)
    }

    /// Each order's bias (see the field) and how many slots there are in all, for `span`.
    fn slot_layout(span: &Span) -> ([usize; MAX_ORDER], usize) {
        let mut bias = [0; MAX_ORDER];
        let mut slots: usize = 0;
        for (k, bias) in bias.iter_mut().enumerate() {
            let range = Self::slots(span, k);
            // `slots` is even (every order adds an even count) and so is the first slot number.
            *bias = slots.wrapping_sub(*range.start());
            slots += range.end() - range.start() + 1;
        }
        (bias, slots)
    }

    /// Bytes of bookkeeping a record for `span` needs, rounded up to the granule.
    fn meta_bytes(span: &Span) -> usize {
        let (_, slots) = Self::slot_layout(span);
        let bytes = size_of::<Self>() + Bitmap::words_for(2 * slots) * size_of::<usize>();
        bytes.next_multiple_of(GRANULE)
    }

    /// Builds a record covering `span` whose bookkeeping occupies `meta`; no block is free or
    /// allocated yet.
    ///
    /// # Safety
    ///
    /// 1. `meta` lies inside `span`, is at least `meta_bytes(span)` long, and is memory the
    ///    heap owns and uses for nothing else.
    unsafe fn write(span: Span, meta: Span) -> NonNull<Self> {
        const { assert!(align_of::<Self>() <= GRANULE) };
        let (bias, slots) = Self::slot_layout(&span);
        let record = meta.start.cast::<Self>();
        let words = offset(meta.start, size_of::<Self>()).cast::<usize>();
        // SAFETY: (1) the words follow the record inside `meta`, which is long enough, owned
        // and aligned (granule-aligned start, record size a multiple of the word size).
        let bits = unsafe { Bitmap::new_zeroed(words, Bitmap::words_for(2 * slots)) };
        let priority = region_tree::priority(record);
        // SAFETY: (1) `meta` is owned, granule-aligned (enough for the record) and long enough.
        unsafe { record.write(RegionRecord { span, meta, left: None, right: None, priority, bits, bias }) };
        record
    }

    /// The index of the first of the two state bits of the order-`k` block at `addr`.
    ///
    /// Meaningful only for a block inside `span` (then the index is in range).
    #[inline]
    fn state_bit(&self, addr: usize, k: usize) -> usize {
        2 * (addr >> (GRANULE_SHIFT as usize + k)).wrapping_add(self.bias[k])
    }

    /// The state bits (`FREE`, `TAKEN`) of the order-`k` block at `addr` (aligned to its size);
    /// 0 for a block that does not start inside the span.
    ///
    /// Only the start is checked: slots run from the span's first to its last byte at every
    /// order, so an aligned block starting inside the span has its bits in the bitmap, and a
    /// block reaching past the end is never free or allocated (its bits stay clear).
    #[inline]
    fn state(&self, addr: usize, k: usize) -> usize {
        if !self.span.contains(addr) {
            return 0;
        }
        // SAFETY: the block starts inside the span, so its slot is in the bitmap (above).
        unsafe { self.bits.get_pair(self.state_bit(addr, k)) }
    }

    /// Whether the block of order `k` at `addr` lies inside the span and is free at that order.
    #[inline]
    fn is_free(&self, addr: usize, k: usize) -> bool {
        self.state(addr, k) & FREE != 0
    }

    /// Whether the buddy of the order-`k` block at `addr` is free at order `k`, without asking
    /// whether the buddy lies in the span: its bits exist either way (the invariants), and are
    /// clear when it does not.
    ///
    /// # Safety
    ///
    /// 1. The block at `addr` (aligned to its size) starts inside the span.
    #[inline]
    unsafe fn buddy_is_free(&self, addr: usize, k: usize) -> bool {
        // SAFETY: (1) the block's slot is in the bitmap, and so is its buddy's: the pair
        // `state_bit ^ 2`, since the bias is even (the invariants).
        unsafe { self.bits.get_pair(self.state_bit(addr, k) ^ 2) & FREE != 0 }
    }

    /// Sets or clears one state bit of the order-`k` block at `addr`.
    ///
    /// # Safety
    ///
    /// 1. The block lies inside the span.
    #[inline]
    unsafe fn set_state(&mut self, addr: usize, k: usize, which: usize, value: bool) {
        debug_assert!(self.span.contains_range(addr, GRANULE << k));
        let bit = self.state_bit(addr, k) + usize::from(which == TAKEN);
        // SAFETY: (1) a block inside the span has its bits in the bitmap.
        unsafe { self.bits.set(bit, value) };
    }

    /// Turns the order-`k` block at `addr` from free to allocated or back (both state bits
    /// flip), with one read and one write of the bitmap.
    ///
    /// # Safety
    ///
    /// 1. The block lies inside the span, and its state is `FREE` or `TAKEN` (not both).
    #[inline]
    unsafe fn flip_free_taken(&mut self, addr: usize, k: usize) {
        debug_assert!(matches!(self.state(addr, k), FREE | TAKEN));
        // SAFETY: (1) a block inside the span has its pair in the bitmap.
        unsafe { self.bits.flip_pair(self.state_bit(addr, k), FREE | TAKEN) };
    }

    /// Marks the order-`k` block at `addr` no longer allocated, if it was allocated at that
    /// order, reading its buddy's state from the same word (the invariants): with a buddy free
    /// at order `k` (and `k` not the largest order) both are left neither free nor allocated,
    /// for the caller to merge, and the answer is `Some(true)`; otherwise the block is marked
    /// free and the answer is `Some(false)`. `None` means the block was not allocated at order
    /// `k`, and nothing changed.
    ///
    /// # Safety
    ///
    /// 1. The block at `addr` (aligned to its size) starts inside the span.
    #[inline]
    unsafe fn free_taken(&mut self, addr: usize, k: usize) -> Option<bool> {
        const WORD_BITS: usize = usize::BITS as usize;
        let bit = self.state_bit(addr, k);
        let (own, buddy) = (bit % WORD_BITS, (bit ^ 2) % WORD_BITS);
        // SAFETY: (1) the block's pair is in the bitmap, and its buddy's shares its word.
        let word = unsafe { self.bits.load_word(bit) };
        if word >> own & TAKEN == 0 {
            return None;
        }
        debug_assert_eq!(word >> own & 0b11, TAKEN);
        let merges = k + 1 < MAX_ORDER && word >> buddy & FREE != 0;
        let new = if merges { word & !(TAKEN << own | FREE << buddy) } else { word ^ (FREE | TAKEN) << own };
        // SAFETY: as above.
        unsafe { self.bits.store_word(bit, new) };
        Some(merges)
    }

    /// Marks the order-`k` block at `addr` free and answers `true` if it was allocated at that
    /// order and its buddy is not free at order `k`; otherwise changes nothing.
    ///
    /// # Safety
    ///
    /// 1. The block at `addr` (aligned to its size) starts inside the span.
    #[inline(always)]
    unsafe fn free_unmerged(&mut self, addr: usize, k: usize) -> bool {
        const WORD_BITS: usize = usize::BITS as usize;
        let bit = self.state_bit(addr, k);
        let (own, buddy) = (bit % WORD_BITS, (bit ^ 2) % WORD_BITS);
        // SAFETY: (1) the block's pair is in the bitmap, and its buddy's shares its word.
        let word = unsafe { self.bits.load_word(bit) };
        // A free buddy sends the free to `deallocate` even at the largest order, where the
        // two do not merge: that rare case is not worth a comparison here.
        if word >> own & TAKEN == 0 || word >> buddy & FREE != 0 {
            return false;
        }
        // SAFETY: as above.
        unsafe { self.bits.store_word(bit, word ^ (FREE | TAKEN) << own) };
        true
    }

    /// The order of the allocated block starting at `addr`, if one does.
    fn taken_order(&self, addr: usize) -> Option<usize> {
        (0..MAX_ORDER).find(|&k| addr % (GRANULE << k) == 0 && self.state(addr, k) & TAKEN != 0)
    }

    /// The free or allocated block (order, state) that contains `addr`, if any.
    fn block_containing(&self, addr: usize) -> Option<(usize, usize)> {
        (0..MAX_ORDER).find_map(|k| {
            let start = addr & !((GRANULE << k) - 1);
            let state = self.state(start, k);
            (state != 0).then_some((k, state))
        })
    }

    /// Calls `visit(addr, order, state)` for every block with a state bit set, reading the
    /// bitmap a word at a time.
    fn for_each_block(&self, visit: &mut dyn FnMut(usize, usize, usize)) {
        for k in 0..MAX_ORDER {
            let shift = GRANULE_SHIFT as usize + k;
            let (first, last) = Self::slots(&self.span, k).into_inner();
            let start = first.wrapping_add(self.bias[k]);
            self.bits.for_each_nonzero_pair(start..start + (last - first + 1), &mut |pair, state| {
                visit(pair.wrapping_sub(self.bias[k]) << shift, k, state);
            });
        }
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
/// - `allocate`: O(1) to find a list (a bit mask of non-empty lists), O(MAX_ORDER) to split,
///   O(log R) expected to find the block's region among R separate regions.
/// - `deallocate`: O(MAX_ORDER) to merge, O(log R) expected for the region; buddy state comes
///   from a bitmap, never from scanning a free list.
/// - Misuse: every free is checked exactly, in O(1): a pointer that is not the start of a
///   block allocated with that layout's block size is refused as a [`Misuse`] (foreign,
///   interior, double, wrong-layout, bookkeeping) and the heap is unchanged. A layout with the
///   same block size as the one allocated is the same block, and is accepted.
/// - Fragmentation: requests are rounded up to a power of two (up to 2x internal waste);
///   alignment is free up to the block size; free blocks merge at once. Bookkeeping: about
///   1/32 of each region (1/16 on 32-bit targets).
/// - Shrinking in place splits a block for good while it lives, so the heap shrinks in place
///   only when no free block could take the smaller size elsewhere; otherwise it refuses and
///   the front moves the block, which lets the large block merge again.
///
/// Regions of any start and length are cut into the largest aligned blocks that fit, so no
/// usable memory is dropped but the sub-granule slivers at their ends. A region added next to
/// one the heap already has is joined to it, so blocks merge across the seam.
///
/// Used on its own (a front such as [`LockedHeap`](crate::LockedHeap) adds the lock and the
/// policies):
///
/// ```
/// use core::alloc::Layout;
/// use core::ptr::NonNull;
/// use kheap::{BuddyHeap, MisuseKind, RawHeap};
///
/// let memory: &'static mut [u8] = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
/// let mut heap = BuddyHeap::new();
/// // SAFETY: the leaked buffer lives for ever and only the heap uses it.
/// unsafe { heap.add_region(NonNull::from(memory)) }.unwrap();
///
/// let layout = Layout::from_size_align(100, 8).unwrap();
/// let block = heap.allocate(layout).unwrap();
/// assert_eq!(block.len(), 128); // the buddy block: 100 bytes rounded up to a power of two
/// // SAFETY: `block` is live with `layout`.
/// unsafe { heap.deallocate(block.cast(), layout) }.unwrap();
/// // SAFETY: deliberately wrong, to show the check: the heap refuses and changes nothing.
/// let misuse = unsafe { heap.deallocate(block.cast(), layout) }.unwrap_err();
/// assert_eq!(misuse.kind, MisuseKind::DoubleFree);
/// heap.check_invariants().unwrap();
/// ```
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
    /// Invariant: every block on list `k` is free, of order `k`, inside a region, and its free
    /// bit is set in its region's bitmap; no two free buddies of the same order both exist.
    free_lists: [Option<NonNull<FreeBlock>>; MAX_ORDER],
    /// Invariant: bit `k` is set iff `free_lists[k]` is not empty.
    nonempty: u64,
    /// Root of the treap of region records. Invariant: their spans do not overlap.
    regions: Option<NonNull<RegionRecord<MAX_ORDER>>>,
    /// Invariant: bytes in regions outside their bookkeeping.
    total: usize,
    /// Invariant: `free_counts[k]` is the length of free list `k` (kept per order so that a
    /// list operation updates it with one increment or decrement; the free bytes are summed
    /// when asked).
    free_counts: [usize; MAX_ORDER],
}

// SAFETY: the heap exclusively owns its regions (obligation 2 of `add_region`); the pointers it
// holds are only followed through `&mut self` or `&self`, so moving the heap to another thread
// moves that ownership with it.
unsafe impl<const MAX_ORDER: usize> Send for BuddyHeap<MAX_ORDER> {}

impl<const MAX_ORDER: usize> Default for BuddyHeap<MAX_ORDER> {
    fn default() -> Self {
        Self::with_orders()
    }
}

impl BuddyHeap {
    /// An empty heap with the default number of orders; give it memory with
    /// [`RawHeap::add_region`]. (`BuddyHeap::<N>::with_orders()` picks another number.)
    pub const fn new() -> Self {
        Self::with_orders()
    }
}

impl<const MAX_ORDER: usize> BuddyHeap<MAX_ORDER> {
    const VALID: () = assert!(
        MAX_ORDER >= 1 && MAX_ORDER <= 64 && MAX_ORDER + (GRANULE_SHIFT as usize) < usize::BITS as usize,
        "BuddyHeap: MAX_ORDER must be at least 1 and small enough that GRANULE << (MAX_ORDER - 1) fits in a usize"
    );

    /// The largest block, and so the largest allocation, this heap can hand out.
    pub const MAX_BLOCK: usize = GRANULE << (MAX_ORDER - 1);

    /// An empty heap with `MAX_ORDER` block sizes; give it memory with [`RawHeap::add_region`].
    pub const fn with_orders() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::VALID;
        BuddyHeap {
            free_lists: [None; MAX_ORDER],
            nonempty: 0,
            regions: None,
            total: 0,
            free_counts: [0; MAX_ORDER],
        }
    }

    /// The block size a request for `layout` occupies, or `None` if no block can hold it.
    pub fn block_size(layout: Layout) -> Option<usize> {
        Self::order_for(layout).map(|k| GRANULE << k)
    }

    /// Orders of a block with layout `old` and of the same block resized to `new_size`.
    #[inline]
    fn resize_orders(old: Layout, new_size: usize) -> Result<(usize, usize), AllocError> {
        let k_old = Self::order_of(old.size(), old.align());
        k_old.zip(Self::order_of(new_size, old.align())).ok_or(AllocError)
    }

    #[inline]
    fn order_for(layout: Layout) -> Option<usize> {
        Self::order_of(layout.size(), layout.align())
    }

    /// The order of the block that holds `size` bytes aligned to `align` (at least 1).
    #[inline]
    fn order_of(size: usize, align: usize) -> Option<usize> {
        let k = Self::order_unbounded(size, align);
        (k < MAX_ORDER).then_some(k)
    }

    /// The order a block holding `size` bytes aligned to `align` (at least 1) would have if
    /// there were no largest order: at most `usize::BITS - GRANULE_SHIFT`, below 64 (a shift
    /// of `nonempty` by it is defined).
    #[inline]
    fn order_unbounded(size: usize, align: usize) -> usize {
        // The smallest `k` with `GRANULE << k >= need` is the bit length of `need - 1` (at
        // least that of `GRANULE - 1`) less `GRANULE_SHIFT`; `need` is at least `align`, 1.
        let need = size.max(align);
        let bits = usize::BITS - ((need - 1) | (GRANULE - 1)).leading_zeros();
        (bits - GRANULE_SHIFT) as usize
    }

    #[inline]
    fn record(&self, record: NonNull<RegionRecord<MAX_ORDER>>) -> &RegionRecord<MAX_ORDER> {
        // SAFETY: records are written by `RegionRecord::write` into memory the heap owns and
        // are only changed through `&mut self`; the returned borrow is tied to `&self`.
        unsafe { record.as_ref() }
    }

    #[inline]
    fn record_mut(&mut self, mut record: NonNull<RegionRecord<MAX_ORDER>>) -> &mut RegionRecord<MAX_ORDER> {
        // SAFETY: as in `record`, and `&mut self` excludes every other borrow of the record.
        unsafe { record.as_mut() }
    }

    /// The record whose span holds `addr`.
    #[inline]
    fn record_of(&self, addr: usize) -> Option<NonNull<RegionRecord<MAX_ORDER>>> {
        // SAFETY: the tree holds only records the heap owns; `&self` keeps them unchanged.
        unsafe { region_tree::find(self.regions, addr) }
    }

    /// Every record, in address order.
    fn for_each_record(&self, visit: &mut dyn FnMut(NonNull<RegionRecord<MAX_ORDER>>)) {
        // SAFETY: as in `record_of`.
        unsafe { region_tree::for_each(self.regions, visit) }
    }

    /// Puts the block of order `k` at `block` on free list `k` and marks it free.
    ///
    /// # Safety
    ///
    /// 1. The block lies in `record`'s span, outside its bookkeeping, and belongs to nobody.
    /// 2. Its buddy is not free at order `k` (or it has no buddy in the span).
    #[inline]
    unsafe fn push(&mut self, record: NonNull<RegionRecord<MAX_ORDER>>, block: NonNull<u8>, k: usize) {
        // SAFETY: (1) passed on.
        unsafe { self.link(block, k) };
        // SAFETY: (1) the block lies inside the span.
        unsafe { self.record_mut(record).set_state(block.as_ptr().addr(), k, FREE, true) };
    }

    /// Puts the block of order `k` at `block` on free list `k`, leaving its state bits to the
    /// caller.
    ///
    /// # Safety
    ///
    /// 1. The block is owned heap memory of order `k` that belongs to nobody.
    #[inline]
    unsafe fn link(&mut self, block: NonNull<u8>, k: usize) {
        let node = block.cast::<FreeBlock>();
        let head = self.free_lists[k];
        // SAFETY: (1) the block is at least one granule of owned memory that nobody else uses,
        // granule-aligned, so its links can be written there. As the first block it keeps no
        // back link.
        unsafe { FreeBlock::set_next(node, head) };
        match head {
            // SAFETY: `head` is on a free list, so it holds links in memory the heap owns; it
            // is no longer the first block, so it gets a back link.
            Some(head) => unsafe { FreeBlock::set_prev(head, node) },
            // The list was empty; a non-empty one has its bit already.
            None => self.nonempty |= 1 << k,
        }
        self.free_lists[k] = Some(node);
        self.free_counts[k] += 1;
    }

    /// Takes the block of order `k` at `block` off free list `k`.
    ///
    /// # Safety
    ///
    /// 1. The block is on free list `k` and lies in `record`'s span.
    #[inline]
    unsafe fn unlink(&mut self, record: NonNull<RegionRecord<MAX_ORDER>>, block: NonNull<u8>, k: usize) {
        // SAFETY: (1) passed on.
        unsafe { self.detach(block, k) };
        // SAFETY: (1) the block lies inside the span.
        unsafe { self.record_mut(record).set_state(block.as_ptr().addr(), k, FREE, false) };
    }

    /// Takes `head`, the first block of free list `k`, off the list, leaving its state bits to
    /// the caller.
    ///
    /// # Safety
    ///
    /// 1. `head` is the first block of free list `k`.
    #[inline]
    unsafe fn detach_head(&mut self, head: NonNull<FreeBlock>, k: usize) {
        // SAFETY: (1) the block is on a free list.
        let next = unsafe { FreeBlock::next(head) };
        // `next`, now the first block, keeps its back link, which is no longer read.
        self.free_lists[k] = next;
        self.free_counts[k] -= 1;
        if next.is_none() {
            self.nonempty &= !(1 << k);
        }
    }

    /// Takes the block of order `k` at `block` off free list `k`, leaving its state bits to
    /// the caller.
    ///
    /// # Safety
    ///
    /// 1. The block is on free list `k`.
    #[inline]
    unsafe fn detach(&mut self, block: NonNull<u8>, k: usize) {
        let node = block.cast::<FreeBlock>();
        if self.free_lists[k] == Some(node) {
            // SAFETY: (1) the block is the first of list `k`.
            return unsafe { self.detach_head(node, k) };
        }
        // SAFETY: (1) the block is on a free list and not its first.
        let (next, prev) = unsafe { (FreeBlock::next(node), FreeBlock::prev(node)) };
        // SAFETY: `prev` is on the list (before the block), so it holds links the heap owns.
        unsafe { FreeBlock::set_next(prev, next) };
        if let Some(next) = next {
            // SAFETY: `next` is on the list, after `prev`, which is now before it.
            unsafe { FreeBlock::set_prev(next, prev) };
        }
        self.free_counts[k] -= 1;
    }

    /// Frees the block of order `k` at `block`, merging it with its buddies as far as they go.
    ///
    /// # Safety
    ///
    /// 1. The block lies in `record`'s span, outside its bookkeeping, is neither free nor
    ///    marked allocated, and belongs to nobody.
    #[inline(always)]
    unsafe fn free_block(
        &mut self,
        record: NonNull<RegionRecord<MAX_ORDER>>,
        mut block: NonNull<u8>,
        mut k: usize,
    ) {
        while k + 1 < MAX_ORDER {
            let addr = block.as_ptr().addr();
            let buddy = addr ^ (GRANULE << k);
            // SAFETY: (1) the block lies in the span (and so does each merged block: it holds it).
            if !unsafe { self.record(record).buddy_is_free(addr, k) } {
                break;
            }
            // SAFETY: the buddy is free at order `k` inside the span, so on free list `k`.
            unsafe { self.unlink(record, with_addr(block, buddy), k) };
            block = with_addr(block, addr.min(buddy));
            k += 1;
        }
        // SAFETY: (1), and the loop stopped because the buddy is not free (or there is none).
        unsafe { self.push(record, block, k) };
    }

    /// Frees `[start, start + len)` as the largest aligned blocks that fit, and counts it as
    /// heap memory.
    ///
    /// # Safety
    ///
    /// 1. The range is granule-aligned, inside `record`'s span, outside its bookkeeping, and
    ///    owned by nobody (no state bit set for any block in it).
    unsafe fn release(&mut self, record: NonNull<RegionRecord<MAX_ORDER>>, start: NonNull<u8>, len: usize) {
        let mut done = 0;
        while done < len {
            let block = offset(start, done);
            let k = Self::carve_order(block.as_ptr().addr(), len - done);
            // SAFETY: (1) the block lies in the range.
            unsafe { self.free_block(record, block, k) };
            done += GRANULE << k;
        }
        self.total += len;
    }

    /// The order of the largest block that starts at `addr` (granule-aligned), is aligned to
    /// its size and fits in `len` bytes (at least a granule): how a free range is cut.
    fn carve_order(addr: usize, len: usize) -> usize {
        let aligned = (addr >> GRANULE_SHIFT).trailing_zeros() as usize;
        let mut k = aligned.min(MAX_ORDER - 1);
        while GRANULE << k > len {
            k -= 1;
        }
        k
    }

    /// Whether `[start, start + len)` of `record` is wholly free. A wholly free range bounded
    /// by the bookkeeping or the span's ends is exactly the blocks `release` cuts it into:
    /// two cut blocks are never buddies (the larger block would have been cut instead), and
    /// a cut block's buddy reaching outside the range is never free, so nothing merges.
    fn range_is_free(&self, record: NonNull<RegionRecord<MAX_ORDER>>, start: usize, len: usize) -> bool {
        let mut done = 0;
        while done < len {
            let k = Self::carve_order(start + done, len - done);
            if !self.record(record).is_free(start + done, k) {
                return false;
            }
            done += GRANULE << k;
        }
        true
    }

    fn link_record(&mut self, record: NonNull<RegionRecord<MAX_ORDER>>) {
        // SAFETY: `record` was just written by `RegionRecord::write`, is owned by the heap, is
        // not in the tree and overlaps no record in it (checked by `add_region`).
        self.regions = unsafe { region_tree::insert(self.regions, record) };
    }

    /// Joins `span` with the records it touches (one on each side at most) if `span` can hold
    /// the joined bookkeeping. Returns whether it did.
    fn join(&mut self, span: Span) -> bool {
        let left = span
            .start_addr()
            .checked_sub(1)
            .and_then(|last| self.record_of(last))
            .filter(|l| self.record(*l).span.end_addr() == span.start_addr());
        let right =
            self.record_of(span.end_addr()).filter(|r| self.record(*r).span.start_addr() == span.end_addr());
        if left.is_none() && right.is_none() {
            return false;
        }
        let start = left.map_or(span.start, |l| self.record(l).span.start);
        let end = right.map_or(span.end_addr(), |r| self.record(r).span.end_addr());
        let union = Span { start, len: end - start.as_ptr().addr() };
        let meta_len = RegionRecord::<MAX_ORDER>::meta_bytes(&union);
        // Joining puts the union's bookkeeping in the new memory. When that would take more than
        // half of it, the new memory is worth more as a region of its own (its own, smaller
        // bookkeeping at its end): a grown heap then gets the block it asked for at once,
        // instead of bookkeeping that leaves the new memory too small for the request.
        if meta_len > span.len / 2 {
            return false;
        }
        // The new bookkeeping goes at the end of the new memory away from the left seam (or, with
        // only a right neighbour, away from the right seam), so blocks merge across it.
        let (meta, fresh) = span.split_bookkeeping(meta_len, left.is_some());
        // The old records leave the tree before the union's record enters it (spans overlap).
        let olds = [left, right];
        for old in olds.into_iter().flatten() {
            // SAFETY: the tree holds owned records, `old` among them.
            self.regions = unsafe { region_tree::remove(self.regions, old) };
        }
        // SAFETY: (1) `meta` lies inside `span` (new, owned memory) and so inside `union`, and
        // is `meta_bytes(union)` long.
        let new = unsafe { RegionRecord::write(union, meta) };
        self.link_record(new);
        for old in olds.into_iter().flatten() {
            self.retire_old(old, new);
        }
        // SAFETY: `fresh` is the new memory outside the new bookkeeping, owned by nobody.
        unsafe { self.release(new, fresh.start, fresh.len) };
        true
    }

    /// Carries `old`'s state bits into `new` and frees `old`'s bookkeeping (`old` has already
    /// left the tree).
    fn retire_old(&mut self, old: NonNull<RegionRecord<MAX_ORDER>>, new: NonNull<RegionRecord<MAX_ORDER>>) {
        let mut blocks = |addr: usize, k: usize, state: usize| {
            // SAFETY: `new` covers `old`'s span, so the block lies inside it; `old` is only
            // read, `new` is a different record.
            let new = unsafe { &mut *new.as_ptr() };
            for which in [FREE, TAKEN] {
                if state & which != 0 {
                    // SAFETY: the block lies inside `new`'s span (above).
                    unsafe { new.set_state(addr, k, which, true) };
                }
            }
        };
        self.record(old).for_each_block(&mut blocks);
        let old_meta = self.record(old).meta;
        // SAFETY: the old bookkeeping lies in `new`'s span, outside its bookkeeping (which is in
        // the new memory), and is no block.
        unsafe { self.release(new, old_meta.start, old_meta.len) };
    }

    /// Grows the live block at `ptr` from order `k_old` to `k_new` if the upper halves are free.
    ///
    /// # Safety
    ///
    /// 1. `ptr` is a live block of order `k_old`, aligned to the size of order `k_new`, and
    ///    `k_old < k_new < MAX_ORDER`.
    #[inline(never)]
    unsafe fn grow_across_orders(
        &mut self,
        ptr: NonNull<u8>,
        k_old: usize,
        k_new: usize,
    ) -> Result<(), AllocError> {
        let addr = ptr.as_ptr().addr();
        let record = self.record_of(addr).ok_or(AllocError)?;
        // SAFETY: (1) the live block starts in the span; so does every larger block starting
        // at `addr`.
        if !(k_old..k_new).all(|j| unsafe { self.record(record).buddy_is_free(addr, j) }) {
            return Err(AllocError);
        }
        for j in k_old..k_new {
            // SAFETY: each upper half was just seen free at order `j` inside the span.
            unsafe { self.unlink(record, offset(ptr, GRANULE << j), j) };
        }
        // SAFETY: (1) the block is live, so inside the span, and so is the grown block (its
        // upper halves were inside).
        unsafe {
            self.record_mut(record).set_state(addr, k_old, TAKEN, false);
            self.record_mut(record).set_state(addr, k_new, TAKEN, true);
        }
        Ok(())
    }

    /// Shrinks the live block at `ptr` from order `k_old` to `k_new`, unless a free block
    /// could take the smaller size.
    ///
    /// # Safety
    ///
    /// 1. `ptr` is a live block of order `k_old`, and `k_new < k_old`.
    #[inline(never)]
    unsafe fn shrink_across_orders(
        &mut self,
        ptr: NonNull<u8>,
        k_old: usize,
        k_new: usize,
    ) -> Result<(), AllocError> {
        // Splitting in place keeps the large block split while the small one lives. Where a
        // free block can take the new size, moving is better: the large block merges again.
        if self.nonempty >> k_new != 0 {
            return Err(AllocError);
        }
        let addr = ptr.as_ptr().addr();
        let record = self.record_of(addr).ok_or(AllocError)?;
        // SAFETY: (1) the block is live, so it and its lower part lie inside the span.
        unsafe {
            self.record_mut(record).set_state(addr, k_old, TAKEN, false);
            self.record_mut(record).set_state(addr, k_new, TAKEN, true);
        }
        for j in (k_new..k_old).rev() {
            // SAFETY: the upper halves are part of the live block, now given back; their
            // buddies are the lower halves, which stay allocated, so none is free.
            unsafe { self.push(record, offset(ptr, GRANULE << j), j) };
        }
        Ok(())
    }

    /// Finds out what is wrong with a free of `ptr` with `layout` (order `k`), which the fast
    /// check refused.
    #[cold]
    #[inline(never)]
    fn diagnose(&self, ptr: NonNull<u8>, layout: Layout, k: usize) -> Misuse {
        let addr = ptr.as_ptr().addr();
        let misuse = |kind| Misuse::new(kind, ptr.as_ptr(), layout);
        let Some(record) = self.record_of(addr) else { return misuse(MisuseKind::Foreign) };
        let record = self.record(record);
        if record.meta.contains_range(addr, 1) {
            return misuse(MisuseKind::Bookkeeping);
        }
        if let Some(j) = record.taken_order(addr) {
            debug_assert_ne!(j, k);
            let size = GRANULE << j;
            return misuse(MisuseKind::WrongLayout)
                .found(Layout::from_size_align(size, size).unwrap_or(layout));
        }
        match record.block_containing(addr) {
            Some((j, state)) if state & FREE != 0 => {
                let size = GRANULE << j;
                misuse(MisuseKind::DoubleFree).found(Layout::from_size_align(size, size).unwrap_or(layout))
            }
            Some((j, _)) => {
                let size = GRANULE << j;
                misuse(MisuseKind::NotBlockStart).found(Layout::from_size_align(size, size).unwrap_or(layout))
            }
            None => misuse(MisuseKind::NotBlockStart),
        }
    }
}

// SAFETY: blocks handed out come off the free lists, which hold only disjoint free blocks
// inside regions and outside the bookkeeping (the field invariants, checked by
// `check_invariants`); a block of order k is aligned to its size, which is at least
// `max(size, align)`; the heap writes only into free blocks and its bookkeeping; refused
// calls return before changing anything; nothing panics (internal invariants are
// `debug_assert!`s).
unsafe impl<const MAX_ORDER: usize> RawHeap for BuddyHeap<MAX_ORDER> {
    /// One granule of blocks after the smallest possible bookkeeping.
    const MIN_REGION: usize =
        (size_of::<RegionRecord<MAX_ORDER>>() + size_of::<usize>()).next_multiple_of(GRANULE) + GRANULE;

    unsafe fn add_region(&mut self, region: NonNull<[u8]>) -> Result<usize, RegionError> {
        let span = granule_span(region, Self::MIN_REGION)?;
        // SAFETY: the tree holds only owned records; `&mut self` keeps them unchanged here.
        let next = unsafe { region_tree::first_at_or_after(self.regions, span.start_addr()) };
        let overlaps_next = next.is_some_and(|n| self.record(n).span.start_addr() < span.end_addr());
        if self.record_of(span.start_addr()).is_some() || overlaps_next {
            return Err(RegionError::Overlaps);
        }
        let before = self.total;
        if !self.join(span) {
            let meta_len = RegionRecord::<MAX_ORDER>::meta_bytes(&span);
            let minimum = meta_len + GRANULE;
            if region.len() < minimum {
                return Err(RegionError::TooSmall { size: region.len(), minimum });
            }
            if span.len < minimum {
                return Err(RegionError::MisalignedBeyondUse { usable: span.len, minimum });
            }
            // The bookkeeping goes at the end, so a region aligned as `region_layout_for` asks
            // holds its aligned block at its start.
            let (meta, fresh) = span.split_bookkeeping(meta_len, true);
            // SAFETY: (1) `meta` is the end of `span`, owned by the heap from now on
            // (obligations 1 and 2 of this function), and `meta_bytes(span)` long.
            let record = unsafe { RegionRecord::write(span, meta) };
            self.link_record(record);
            // SAFETY: the rest of the new span is owned by nobody and outside the bookkeeping.
            unsafe { self.release(record, fresh.start, fresh.len) };
        }
        Ok(self.total - before)
    }

    // Always inlined: one call site (the front), and the call itself was a tenth of the cost.
    #[inline(always)]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        // No check against `MAX_ORDER`: a larger `k` finds no non-empty list above it.
        let k = Self::order_unbounded(layout.size(), layout.align());
        let larger = self.nonempty >> k;
        if larger == 0 {
            return Err(AllocError);
        }
        let mut j = k + larger.trailing_zeros() as usize;
        debug_assert!(
            j < MAX_ORDER && self.free_lists[j].is_some(),
            "non-empty mask disagrees with the lists"
        );
        // SAFETY: bit `j` of `nonempty` is set, so `j < MAX_ORDER` and list `j` is not empty
        // (the field's invariant).
        let head = unsafe { self.free_lists.get_unchecked(j).unwrap_unchecked() };
        let block = head.cast::<u8>();
        debug_assert!(self.regions.is_some(), "a free block but no region");
        // SAFETY: a free block lies in a region (the invariants of `free_lists` and `regions`),
        // so the tree of regions is not empty. Its records are owned by the heap and unchanged
        // while `&mut self` is held here.
        let found = unsafe { region_tree::find_from(self.regions.unwrap_unchecked(), block.as_ptr().addr()) };
        let Some(record) = found else {
            debug_assert!(false, "free block outside every region");
            return Err(AllocError);
        };
        // SAFETY: the block heads free list `j`.
        unsafe { self.detach_head(head, j) };
        if j == k {
            // An exact fit, the common case: free to allocated in one bitmap write.
            // SAFETY: the block lies in `record`'s span and is free.
            unsafe { self.record_mut(record).flip_free_taken(block.as_ptr().addr(), k) };
        } else {
            // SAFETY: the block lies in `record`'s span.
            unsafe { self.record_mut(record).set_state(block.as_ptr().addr(), j, FREE, false) };
            while j > k {
                j -= 1;
                // SAFETY: the upper half of a block just taken off the lists is owned by
                // nobody; its buddy, the lower half, is not free.
                unsafe { self.push(record, offset(block, GRANULE << j), j) };
            }
            // SAFETY: the block lies inside the span.
            unsafe { self.record_mut(record).set_state(block.as_ptr().addr(), k, TAKEN, true) };
        }
        Ok(NonNull::slice_from_raw_parts(block, GRANULE << k))
    }

    #[inline(always)]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Misuse> {
        let addr = ptr.as_ptr().addr();
        let Some(k) = Self::order_for(layout) else {
            return Err(Misuse::new(MisuseKind::ImpossibleLayout, ptr.as_ptr(), layout));
        };
        let size = GRANULE << k;
        let Some(record) = self.record_of(addr).filter(|_| addr % size == 0) else {
            return Err(self.diagnose(ptr, layout, k));
        };
        // SAFETY: the block starts in the record's span (`record_of`) and is aligned.
        match unsafe { self.record_mut(record).free_taken(addr, k) } {
            None => return Err(self.diagnose(ptr, layout, k)),
            // No merge, the common case: the block was allocated at order `k`, so it lies in
            // the span outside the bookkeeping; it belongs to the heap again, marked free.
            // SAFETY: as just said.
            Some(false) => unsafe { self.link(ptr, k) },
            Some(true) => {
                let buddy = with_addr(ptr, addr ^ size);
                // SAFETY: the buddy was free at order `k` (so on free list `k`); both are now
                // neither free nor allocated, and their union, of order `k + 1`, lies in the
                // span outside the bookkeeping and belongs to nobody.
                unsafe {
                    self.detach(buddy, k);
                    self.free_block(record, with_addr(ptr, addr & !size), k + 1);
                }
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn allocate_fast(&mut self, layout: Layout) -> Option<NonNull<[u8]>> {
        // No check against `MAX_ORDER`: `k` is below 64 (so the shift is defined) and no bit
        // at or above `MAX_ORDER` is ever set.
        let k = Self::order_unbounded(layout.size(), layout.align());
        // An exact fit only: list `k` is not empty.
        if self.nonempty >> k & 1 == 0 {
            return None;
        }
        debug_assert!(self.free_lists[k].is_some(), "non-empty mask disagrees with the lists");
        // SAFETY: bit `k` of `nonempty` is set, so list `k` is not empty (the field's
        // invariant).
        let head = unsafe { self.free_lists.get_unchecked(k).unwrap_unchecked() };
        let block = head.cast::<u8>();
        // SAFETY: a free block lies in a region, so the tree of regions is not empty; its
        // records are owned by the heap and unchanged while `&mut self` is held here.
        let record =
            unsafe { region_tree::find_from(self.regions.unwrap_unchecked(), block.as_ptr().addr()) }?;
        // SAFETY: the block heads free list `k`.
        unsafe { self.detach_head(head, k) };
        // SAFETY: the block lies in `record`'s span and is free: one bitmap write makes it
        // allocated.
        unsafe { self.record_mut(record).flip_free_taken(block.as_ptr().addr(), k) };
        Some(NonNull::slice_from_raw_parts(block, GRANULE << k))
    }

    #[inline(always)]
    unsafe fn deallocate_fast(&mut self, ptr: NonNull<u8>, layout: Layout) -> bool {
        let addr = ptr.as_ptr().addr();
        let k = Self::order_unbounded(layout.size(), layout.align());
        // A block of order `k` starts at a multiple of its size: at least `GRANULE_SHIFT + k`
        // trailing zero bits (one count and one comparison; no larger order is ever allocated).
        let aligned = ptr.addr().trailing_zeros() as usize >= GRANULE_SHIFT as usize + k;
        if k >= MAX_ORDER || !aligned {
            return false;
        }
        let Some(record) = self.record_of(addr) else { return false };
        // SAFETY: the block starts in the record's span (`record_of`) and is aligned.
        if !unsafe { self.record_mut(record).free_unmerged(addr, k) } {
            return false;
        }
        // SAFETY: the block was allocated at order `k`, so it lies in the span outside the
        // bookkeeping; it belongs to the heap again, marked free.
        unsafe { self.link(ptr, k) };
        true
    }

    // Inlined for the common case, a size that stays in its block; the rest is out of line.
    #[inline]
    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError> {
        let (k_old, k_new) = Self::resize_orders(old, new_size)?;
        if k_new <= k_old {
            return Ok(());
        }
        // The grown block starts where this one does: at every order up to `k_new`, this block
        // is the lower half (checked here, as it refuses half the requests at once), and the
        // upper halves must be free (checked out of line).
        if ptr.as_ptr().addr() % (GRANULE << k_new) != 0 {
            return Err(AllocError);
        }
        // SAFETY: (1) passed on; the orders are those of `old` and of the grown block, which
        // starts at `ptr`.
        unsafe { self.grow_across_orders(ptr, k_old, k_new) }
    }

    // Inlined for the common case, a size that stays in its block; the rest is out of line.
    #[inline]
    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError> {
        let (k_old, k_new) = Self::resize_orders(old, new_size)?;
        if k_new >= k_old {
            return Ok(());
        }
        // SAFETY: (1) passed on; the orders are those of `old` and of the shrunk block.
        unsafe { self.shrink_across_orders(ptr, k_old, k_new) }
    }

    fn region_layout_for(&self, layout: Layout) -> Option<Layout> {
        let block = GRANULE << Self::order_for(layout)?;
        // `add_region` puts the bookkeeping at the region's end, so the block is whole if the
        // bookkeeping fits after it. The region may also hold up to `block` bytes before the
        // aligned point (a source's alignment gap), so it spans less than `2 * block + meta`:
        // bookkeeping grows with the span, and that of `2 * block` plus a first bound is enough.
        // Four granules of slack cover a start that is not aligned: per order, a partial slot
        // at each end and the widening to whole buddy pairs add at most five slots (ten bits;
        // 320 bits for 32 orders, under the 512 of four granules).
        let at = NonNull::new(core::ptr::without_provenance_mut::<u8>(block))?;
        let meta_of = |len| RegionRecord::<MAX_ORDER>::meta_bytes(&Span { start: at, len });
        let twice = block.checked_mul(2)?;
        let own = meta_of(twice.checked_add(meta_of(twice))?);
        // If the region touches one the heap has, `add_region` joins them and puts the union's
        // bookkeeping (larger: it covers both) at the new region's end, which would cut into the
        // block. It joins only when that bookkeeping takes at most half the new region, less
        // than `block + own / 2`; so where the union's could be that small, ask for room for it
        // (bounded by the whole heap's span, the most a union can reach).
        let mut spans = 0usize;
        self.for_each_record(&mut |r| spans = spans.saturating_add(self.record(r).span.len));
        let joined = if spans == 0 {
            own // no region to join
        } else {
            let reach = twice.checked_add(own)?.checked_add(spans)?;
            let union = meta_of(reach.checked_add(meta_of(reach))?);
            if union > block + own / 2 {
                own
            } else {
                own.max(union)
            }
        };
        let meta = joined + 4 * GRANULE;
        Layout::from_size_align(block.checked_add(meta)?, block).ok()
    }

    /// Removes a region whose record spans exactly what `add_region` made of it (so not one
    /// joined with a neighbour) and whose memory outside the bookkeeping is all free.
    fn remove_region(&mut self, region: NonNull<[u8]>) -> Result<usize, RegionError> {
        let wanted = granule_span(region, Self::MIN_REGION).map_err(|_| RegionError::NotRemovable)?;
        let record = self
            .record_of(wanted.start_addr())
            .filter(|r| {
                let span = self.record(*r).span;
                span.start_addr() == wanted.start_addr() && span.len == wanted.len
            })
            .ok_or(RegionError::NotRemovable)?;
        let (span, meta) = (self.record(record).span, self.record(record).meta);
        let before = Span { start: span.start, len: meta.start_addr() - span.start_addr() };
        let after = Span { start: offset(meta.start, meta.len), len: span.end_addr() - meta.end_addr() };
        if !self.range_is_free(record, before.start_addr(), before.len)
            || !self.range_is_free(record, after.start_addr(), after.len)
        {
            return Err(RegionError::NotRemovable);
        }
        for piece in [before, after] {
            let mut done = 0;
            while done < piece.len {
                let block = offset(piece.start, done);
                let k = Self::carve_order(block.as_ptr().addr(), piece.len - done);
                // SAFETY: the block is free at order `k` inside the span (`range_is_free`), so
                // it is on free list `k`.
                unsafe { self.unlink(record, block, k) };
                done += GRANULE << k;
            }
            self.total -= piece.len;
        }
        // SAFETY: the tree holds owned records, `record` among them.
        self.regions = unsafe { region_tree::remove(self.regions, record) };
        Ok(before.len + after.len)
    }

    fn usage(&self) -> HeapUsage {
        let largest = match self.nonempty {
            0 => 0,
            mask => GRANULE << (63 - mask.leading_zeros()),
        };
        let free_bytes = self.free_counts.iter().enumerate().map(|(k, &count)| count * (GRANULE << k)).sum();
        HeapUsage { total_bytes: self.total, free_bytes, largest_free_block: largest }
    }

    fn check_invariants(&self) -> Result<(), InvariantError> {
        let fail = |what, at: *const u8, value| Err(InvariantError::new(what, at, value));
        let mut result = Ok(());
        let mut previous_end = 0;
        let mut total = 0;
        self.for_each_record(&mut |r| {
            let record = self.record(r);
            if result.is_err() {
                return;
            }
            let at = record.span.start.as_ptr().cast_const();
            if record.span.start_addr() < previous_end {
                result = fail("regions overlap or are out of order in the tree", at, record.span.len);
            } else if !record.span.contains_range(record.meta.start_addr(), record.meta.len) {
                result = fail("region bookkeeping lies outside its region", at, record.meta.len);
            } else {
                // Every granule outside the bookkeeping is in exactly one free or allocated block.
                let mut covered = 0;
                record.for_each_block(&mut |addr, k, state| {
                    if state == FREE | TAKEN && result.is_ok() {
                        result = fail(
                            "block is both free and allocated",
                            with_addr(record.span.start, addr).as_ptr(),
                            k,
                        );
                    }
                    covered += GRANULE << k;
                });
                if result.is_ok() && covered + record.meta.len != record.span.len {
                    result = fail("blocks and bookkeeping do not tile the region", at, covered);
                }
            }
            previous_end = record.span.end_addr();
            total += record.span.len - record.meta.len;
        });
        result?;
        if total != self.total {
            return fail("region bytes disagree with the total", core::ptr::null(), total);
        }
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
                if on_list > self.total / size + 1 {
                    return fail("free list has a cycle", at, k);
                }
                // Checked before the node is read: a corrupted link is reported, not followed.
                let Some(record) =
                    self.record_of(addr).filter(|r| self.record(*r).span.contains_range(addr, size))
                else {
                    return fail("free block outside every region", at, k);
                };
                let record = self.record(record);
                if addr % size != 0 {
                    return fail("free block not aligned to its size", at, k);
                }
                if record.meta.contains_range(addr, 1) || record.meta.contains_range(addr + size - 1, 1) {
                    return fail("free block overlaps region bookkeeping", at, k);
                }
                if !record.is_free(addr, k) {
                    return fail("free block's bitmap bit is clear", at, k);
                }
                if k + 1 < MAX_ORDER && record.is_free(addr ^ size, k) {
                    return fail("free block and its free buddy were not merged", at, k);
                }
                if let Some(j) =
                    (k + 1..MAX_ORDER).find(|&j| record.state(addr & !((GRANULE << j) - 1), j) != 0)
                {
                    return fail("free block lies inside a larger free or allocated block", at, j);
                }
                // The node lies inside a region, outside its bookkeeping, aligned, and its free
                // bit is set: it is a free block holding links the heap owns.
                if let Some(prev) = prev {
                    // SAFETY: as just said; a block after the first has its back link.
                    if unsafe { FreeBlock::prev(node) } != prev {
                        return fail("free list back link is wrong", at, k);
                    }
                }
                prev = Some(node);
                // SAFETY: as above.
                cursor = unsafe { FreeBlock::next(node) };
            }
            if on_list != self.free_counts[k] {
                return fail("free list length disagrees with its count", core::ptr::null(), k);
            }
            free_blocks += on_list;
        }
        let mut free_bits = 0;
        self.for_each_record(&mut |r| {
            self.record(r).for_each_block(&mut |_, _, state| free_bits += usize::from(state & FREE != 0));
        });
        if free_bits != free_blocks {
            return fail("bitmap marks blocks free that no free list holds", core::ptr::null(), free_bits);
        }
        Ok(())
    }

    fn walk(&self, visit: &mut dyn FnMut(Part)) {
        self.for_each_record(&mut |r| {
            let record = self.record(r);
            visit(Part { kind: PartKind::Region, start: record.span.start.as_ptr(), len: record.span.len });
            visit(Part {
                kind: PartKind::Bookkeeping,
                start: record.meta.start.as_ptr(),
                len: record.meta.len,
            });
        });
        for (k, head) in self.free_lists.iter().enumerate() {
            let mut cursor = *head;
            while let Some(node) = cursor {
                visit(Part { kind: PartKind::Free, start: node.as_ptr().cast::<u8>(), len: GRANULE << k });
                // SAFETY: nodes on a free list hold links the heap owns.
                cursor = unsafe { FreeBlock::next(node) };
            }
        }
    }
}

// SAFETY: `block_layout` returns a layout only for an address whose "allocated at order k" bit
// is set, i.e. the start of a block handed out as order `k`; the layout it returns
// (`GRANULE << k` bytes, aligned to that) maps to order `k`, so `deallocate` frees exactly it.
unsafe impl<const MAX_ORDER: usize> BlockLookup for BuddyHeap<MAX_ORDER> {
    fn block_layout(&self, ptr: NonNull<u8>) -> Result<Layout, Misuse> {
        let addr = ptr.as_ptr().addr();
        let k = self.record_of(addr).and_then(|r| self.record(r).taken_order(addr));
        let layout = k.and_then(|k| Layout::from_size_align(GRANULE << k, GRANULE << k).ok());
        layout.ok_or_else(|| self.diagnose(ptr, Layout::new::<u8>(), usize::MAX))
    }
}
