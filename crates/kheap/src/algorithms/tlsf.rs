//! `TlsfHeap`: two-level segregated fit, with no per-allocation header and a fallback search
//! so that a request is not refused while a free block can hold it.
//!
//! # Size classes
//!
//! Free blocks are kept in doubly linked lists, one per size class, and two levels of bit maps
//! say which lists are non-empty, so that "the first non-empty list at or above class c" is two
//! `trailing_zeros`. Sizes are counted in granules (`n = bytes / GRANULE`):
//!
//! - `n < 32`: one class per granule count (first level 0, second level `n`): exact.
//! - `n >= 32`: first level `f = log2(n) - 4`, second level the next five bits of `n` below its
//!   top bit: 32 classes per power of two, each `2^(f - 1)` granules wide (1/32 of the power
//!   of two where it starts).
//!
//! A class holds sizes from its lower bound to less than `1 + 1/32` times it, so rounding a
//! request up to the next class boundary (the *good fit*) overshoots it by less than 1/32
//! (3.125 %). The block found is split, so the overshoot is not handed out: it only decides
//! which lists the O(1) search may use.
//!
//! # No header in allocated blocks
//!
//! `deallocate` is given the layout, so the block's size is known; what a free needs besides is
//! whether each neighbour is free and, if so, where it starts and ends. Each region keeps a bit
//! map with two bits per *boundary* between granules (boundary `b` is the address
//! `start + b * GRANULE`, from 0 to the region's granule count `N`): *ends* (an allocated block
//! ends at this boundary) and *starts* (an allocated block begins at it). Free blocks carry no
//! bits; the region's own bookkeeping is marked as one allocated block, and two sentinels say
//! that the region is closed by allocated memory on both sides: boundary 0 always has *ends*,
//! boundary `N` always has *starts*. So, for a block `[a, b)`:
//!
//! - the block after is free iff boundary `b` has no *starts* bit;
//! - the block before is free iff boundary `a` has no *ends* bit;
//! - both facts sit in the same two bits that tell whether `[a, b)` is allocated (*starts* at
//!   `a`, *ends* at `b`), so a free reads two pairs of bits, checks the block and learns both
//!   neighbours at once, with no comparison against the region's ends;
//! - a free block is one granule long iff the boundary after its first granule has *starts*
//!   (free blocks never touch: they are merged at once); otherwise it stores its size in its
//!   second granule and in its last word (boundary tags inside free memory only).
//!
//! A free block holds its two list links in its first granule, so the minimum block is one
//! granule (16 bytes on 64-bit targets, 8 on 32-bit ones) and an allocation occupies exactly its
//! size rounded up to the granule. The price is the bit map: two bits per granule, 1/64 of each
//! region on 64-bit targets (1/32 on 32-bit ones), plus a record of seven words per region. A
//! header per block would cost a word or two per allocation instead (rlsf: 16 bytes, 32-byte
//! minimum block), which is more for any mix of blocks under 1 KiB; and the bits make every
//! double free and every interior pointer detectable at once, which a header cannot do without
//! reading a live allocation's bytes.
//!
//! # The fallback search
//!
//! The good fit looks for a block of `need` bytes (the request's size rounded up to the
//! granule, plus `align - GRANULE` when the alignment exceeds the granule: enough wherever the
//! block starts) in the first non-empty list at or above the class rounded up from `need`. It
//! is O(1), and it skips blocks that would do: those of at least `need` bytes in the class of
//! `need` itself, which spans 1/32 of its size (plain TLSF refuses a request that the largest
//! free block could hold, rlsf#15), and, for an aligned request, smaller blocks that hold it
//! at an aligned address inside them. Only when the good fit finds nothing, the fallback scans every list
//! from the class of the request's size up to the good fit's class, block by block. The
//! guarantee:
//!
//! > `allocate(layout)` fails only if no free block can hold `layout.size()` bytes at an
//! > address aligned to `layout.align()`.
//!
//! The cost: O(1) when the good fit succeeds (always, while a free block of `need` bytes
//! exists); otherwise O(the blocks on the scanned lists). With an alignment up to the granule
//! that is one list (the class of the size); with alignment `A`, the lists of sizes from the
//! request's to `A` bytes more.
//!
//! # High alignment
//!
//! A request aligned beyond the granule looks for a block of `need` bytes (O(1), like any
//! other), takes the aligned piece from it and returns the leading gap and the trailing rest
//! to the free lists at once (either is a block from one granule up). A stream of small
//! allocations aligned to 4 KiB therefore costs one search and two list insertions each, and
//! wastes nothing but the gaps, which stay allocatable.

use core::alloc::Layout;
use core::mem::{align_of, size_of};
use core::ptr::NonNull;

use crate::algorithms::bitmap::Bitmap;
use crate::algorithms::pointer::{
    align_up_addr, offset, offset_back_within, offset_within, with_addr, GRANULE, GRANULE_SHIFT,
};
use crate::algorithms::region::{granule_span, Span};
use crate::{
    AllocError, BlockLookup, HeapUsage, InvariantError, Misuse, MisuseKind, Part, PartKind, RawHeap,
    RegionError,
};

#[cfg(test)]
mod hardened_tests;
#[cfg(test)]
mod tests;

/// `log2` of the number of second-level classes per first-level class.
const SL_SHIFT: u32 = 5;
/// Second-level classes per first-level class: 32, so a class is at most 1/32 of its size wide.
const SL_COUNT: usize = 1 << SL_SHIFT;
/// First-level classes: enough for a block of `isize::MAX` bytes (the longest region; joined
/// regions are kept within it too).
const FL_COUNT: usize = (usize::BITS - SL_SHIFT - GRANULE_SHIFT) as usize;
/// The size of a word, where free blocks keep their size tags.
const WORD: usize = size_of::<usize>();

/// Marks of a boundary in a region's bit map (the low and the high bit of its pair): an
/// allocated block (or the bookkeeping, or the sentinel before the region) ends at it, or one
/// (or the sentinel after the region) starts at it. Free memory carries neither.
const ENDS: usize = 0b01;
const STARTS: usize = 0b10;

/// The links written into the first granule of a free block: the next and the previous block
/// on its list, sealed (see [`TlsfHeap::seal`]; null is `None`).
#[repr(C)]
struct FreeHead {
    next: *mut FreeHead,
    prev: *mut FreeHead,
}

/// A free block found for a request: its start, its size and its list.
type Found = (NonNull<u8>, usize, (usize, usize));

/// Hardened: where a check failed: a free block (or a size tag's place inside one) whose
/// records are damaged, or whose neighbour on its list is.
#[derive(Clone, Copy)]
struct Damaged {
    at: NonNull<u8>,
}

/// The size class `(first level, second level)` that a block of `n` granules belongs to.
#[inline]
const fn class_of(n: usize) -> (usize, usize) {
    if n < SL_COUNT {
        (0, n)
    } else {
        // `log2(n)`, without `ilog2`'s panic path (`n >= SL_COUNT` here).
        let log = usize::BITS - 1 - n.leading_zeros();
        ((log - SL_SHIFT + 1) as usize, (n >> (log - SL_SHIFT)) - SL_COUNT)
    }
}

/// The smallest class whose blocks all have at least `n` granules (the good fit), or `None`
/// when it lies beyond the largest class.
#[inline]
const fn search_class(n: usize) -> Option<(usize, usize)> {
    if n < SL_COUNT {
        return Some((0, n));
    }
    let log = usize::BITS - 1 - n.leading_zeros();
    let Some(rounded) = n.checked_add((1 << (log - SL_SHIFT)) - 1) else { return None };
    let (fl, sl) = class_of(rounded);
    if fl < FL_COUNT {
        Some((fl, sl))
    } else {
        None
    }
}

/// The smallest size, in granules, of a block in class `(fl, sl)`.
#[cfg_attr(not(test), allow(dead_code))]
const fn class_floor(fl: usize, sl: usize) -> usize {
    if fl == 0 {
        sl
    } else {
        (SL_COUNT + sl) << (fl - 1)
    }
}

/// Bytes a block for `layout` occupies: its size rounded up to the granule (at least one).
#[inline]
fn block_bytes(layout: Layout) -> usize {
    // A layout's size is at most `isize::MAX`, so adding less than a granule cannot overflow.
    (layout.size().max(1) + (GRANULE - 1)) & !(GRANULE - 1)
}

/// Bytes a free block must have to hold `layout` wherever it starts: the block, plus room to
/// move its start to the alignment.
#[inline]
fn needed_bytes(layout: Layout) -> Option<(usize, usize)> {
    let size = block_bytes(layout);
    Some((size, size.checked_add(layout.align().saturating_sub(GRANULE))?))
}

/// The bookkeeping of one contiguous span of memory, stored inside that span.
///
/// Invariants:
/// - `meta` lies inside `span` and holds this record and its bit map; it is marked as one
///   allocated block (`STARTS` at its first boundary, `ENDS` at its last).
/// - `bits` holds a pair of bits for each boundary `b` in `0..=N` (`N` the span's granule
///   count): bit `2b` (`ENDS`) is set iff an allocated block ends at `start + b * GRANULE`,
///   bit `2b + 1` (`STARTS`) iff one starts there; besides, `ENDS` at boundary 0 and `STARTS`
///   at boundary `N` are always set (the sentinels). Allocated blocks do not overlap.
/// - every stretch of granules outside allocated blocks is exactly one free block, on the free
///   list of its class (free blocks never touch each other).
/// - spans of different records never overlap and are at most `isize::MAX` bytes long.
#[repr(C)]
struct RegionRecord {
    span: Span,
    meta: Span,
    next: Option<NonNull<RegionRecord>>,
    bits: Bitmap,
}

impl RegionRecord {
    /// Bits of bit map a span of `len` bytes needs: a pair per boundary, both ends included.
    const fn map_bits(len: usize) -> usize {
        2 * ((len >> GRANULE_SHIFT) + 1)
    }

    /// Bytes of bookkeeping a record for a span of `len` bytes needs, rounded up to the granule.
    const fn meta_bytes(len: usize) -> usize {
        let bytes = size_of::<Self>() + Bitmap::words_for(Self::map_bits(len)) * WORD;
        bytes.next_multiple_of(GRANULE)
    }

    /// Builds a record covering `span` whose bookkeeping occupies `meta`, linked before `next`;
    /// only the bookkeeping is marked allocated, besides the sentinels.
    ///
    /// # Safety
    ///
    /// 1. `meta` lies inside `span`, is granule-aligned, at least `meta_bytes(span.len)` long,
    ///    and is memory the heap owns and uses for nothing else.
    unsafe fn write(span: Span, meta: Span, next: Option<NonNull<Self>>) -> NonNull<Self> {
        const { assert!(align_of::<Self>() <= GRANULE && size_of::<Self>() % WORD == 0) };
        let record = meta.start.cast::<Self>();
        let words = offset(meta.start, size_of::<Self>()).cast::<usize>();
        // SAFETY: (1) the words follow the record inside `meta`, which is long enough, owned
        // and aligned (granule-aligned start, record size a multiple of the word size).
        let bits = unsafe { Bitmap::new_zeroed(words, Bitmap::words_for(Self::map_bits(span.len))) };
        // SAFETY: (1) `meta` is owned, granule-aligned (enough for the record) and long enough.
        unsafe { record.write(RegionRecord { span, meta, next, bits }) };
        // SAFETY: the record was just written; nothing else refers to it.
        let this = unsafe { &mut *record.as_ptr() };
        let last = this.granules();
        let (meta_first, meta_end) = (this.boundary(meta.start_addr()), this.boundary(meta.end_addr()));
        // SAFETY: every boundary named is in `0..=N` (`meta` lies inside the span).
        unsafe {
            this.set_mark(0, ENDS, true);
            this.set_mark(last, STARTS, true);
            this.set_mark(meta_first, STARTS, true);
            this.set_mark(meta_end, ENDS, true);
        }
        record
    }

    /// The span's granule count `N`: its last boundary.
    #[inline]
    fn granules(&self) -> usize {
        self.span.len >> GRANULE_SHIFT
    }

    /// The boundary at `addr`, a granule-aligned address in `[start, end]` of the span.
    #[inline]
    fn boundary(&self, addr: usize) -> usize {
        debug_assert!(addr >= self.span.start_addr() && addr <= self.span.end_addr());
        (addr - self.span.start_addr()) >> GRANULE_SHIFT
    }

    /// The address of boundary `b`.
    #[inline]
    fn boundary_addr(&self, b: usize) -> usize {
        self.span.start_addr() + (b << GRANULE_SHIFT)
    }

    /// The marks (`ENDS`, `STARTS`) of boundary `b`.
    ///
    /// # Safety
    ///
    /// 1. `b <= self.granules()`.
    #[inline]
    unsafe fn marks(&self, b: usize) -> usize {
        debug_assert!(b <= self.granules());
        // SAFETY: (1) the pair of boundary `b` is in the bit map.
        unsafe { self.bits.get_pair(2 * b) }
    }

    /// Sets or clears one mark of boundary `b`.
    ///
    /// # Safety
    ///
    /// 1. `b <= self.granules()`.
    #[inline]
    unsafe fn set_mark(&mut self, b: usize, which: usize, value: bool) {
        debug_assert!(b <= self.granules());
        let bit = 2 * b + usize::from(which == STARTS);
        // SAFETY: (1) the pair of boundary `b` is in the bit map.
        unsafe {
            if value {
                self.bits.insert(bit);
            } else {
                self.bits.remove(bit);
            }
        }
    }

    /// Whether `addr` is a boundary of the span (granule-aligned, start and end included) that
    /// carries `which`.
    fn has(&self, addr: usize, which: usize) -> bool {
        addr % GRANULE == 0
            && addr >= self.span.start_addr()
            && addr <= self.span.end_addr()
            // SAFETY: checked to be a boundary of the span first.
            && unsafe { self.marks(self.boundary(addr)) } & which != 0
    }

    /// Whether the granule at `addr` (inside the span) starts a free block: no allocated block
    /// starts at its boundary, and one ends there (or the sentinel before the span).
    fn starts_free_block(&self, addr: usize) -> bool {
        self.span.contains(addr) && addr % GRANULE == 0 && {
            // SAFETY: `addr` is a boundary inside the span.
            let marks = unsafe { self.marks(self.boundary(addr)) };
            marks & STARTS == 0 && marks & ENDS != 0
        }
    }

    /// The block containing the granule at `addr`: whether it is allocated, its start and its
    /// length. Looks back and forth through the marks (O(block length)): for reports and
    /// checks, never on the fast paths.
    fn containing(&self, addr: usize) -> Option<(bool, usize, usize)> {
        if !self.span.contains(addr) {
            return None;
        }
        let granule = self.boundary(addr & !(GRANULE - 1));
        let mut b = granule;
        let (allocated, first) = loop {
            // SAFETY: `b` stays within `0..=granule`, inside the span.
            let m = unsafe { self.marks(b) };
            if m & STARTS != 0 {
                break (true, b);
            }
            // The sentinel at boundary 0 ends this loop.
            if m & ENDS != 0 || b == 0 {
                break (false, b);
            }
            b -= 1;
        };
        let mut e = granule + 1;
        let last = self.granules();
        let end = loop {
            // SAFETY: `e` stays within `granule + 1..=N`.
            let m = unsafe { self.marks(e) };
            if e == last || (allocated && m & ENDS != 0) || (!allocated && m & STARTS != 0) {
                break e;
            }
            e += 1;
        };
        Some((allocated, self.boundary_addr(first), (end - first) << GRANULE_SHIFT))
    }
}

/// An allocated block found where a free or a resize says one is: its region, its first and
/// last boundaries, and the marks at both (which tell whether the blocks around are free).
struct Located {
    record: NonNull<RegionRecord>,
    first: usize,
    last: usize,
    head: usize,
    tail: usize,
}

/// Two-level segregated fit over any number of regions, with no header in allocated blocks.
///
/// - `allocate`: O(1) to find a block (the good fit: two bit-map searches), O(R) to find its
///   region among R separate regions (touching regions are joined, so a heap grown from a
///   bump-allocating source has one). A request is refused only if no free block can hold it:
///   when the good fit fails, a fallback scans the lists it skipped (one list for alignments
///   up to the granule; see the module documentation for the guarantee and its cost).
/// - `deallocate`: O(1) to merge with both neighbours (their state is read from a bit map),
///   O(R) for the region. `grow_in_place` takes the free block after; `shrink_in_place`
///   returns the tail to the free lists (merged with a free block after it).
/// - Fragmentation: allocations occupy their size rounded up to the granule, no more; the
///   leading gap of an aligned allocation goes back to the free lists. Bookkeeping: two bits
///   per granule (1/64 of each region on 64-bit targets, 1/32 on 32-bit ones) plus a record of
///   seven words per region.
/// - `usage()`: total and free in O(1); the largest free block is exact, read from the
///   highest non-empty list (O(its length), usually 1).
/// - Growth: [`region_layout_for`](RawHeap::region_layout_for) asks for the request's rounded
///   size and a bound on the bookkeeping (about 1/32 of it), at the request's alignment.
/// - [`BlockLookup`]: the layout of an allocated block is read from the bit map (its end is
///   the next `ENDS` mark after its start), in O(block length / 32 granules).
///
/// Misuse: a free is accepted only if an allocated block starts at the pointer and ends where
/// the layout's rounded size says (both read from the bit map, O(1)). Refused as a
/// [`Misuse`], with the heap unchanged: a pointer outside every region (`Foreign`), into the
/// bookkeeping (`Bookkeeping`), misaligned for its layout or inside an allocated block
/// (`NotBlockStart`), into free memory, which includes every second free of a block not
/// handed out again (`DoubleFree`), a layout whose rounded size differs from the block's
/// (`WrongLayout`), except in one case: **not detected** is a layout too large whose end falls
/// exactly on the end of a later allocated block (the free would take the blocks between). A
/// layout with the same rounded size (and any alignment the pointer has) is the same block
/// and is accepted; a second free after the block was handed out again with the same rounded
/// size is indistinguishable from a correct one.
///
/// # Hardened
///
/// A free block keeps its list links and size tags in its own memory, where a write after
/// free or past the end of the block before it lands. [`TlsfHeap::hardened`] builds a
/// `TlsfHeap<true>` that protects them, as FreeRTOS's heap protector and snmalloc protect
/// theirs: every link is stored XORed with a per-heap secret (a stray value decodes to an
/// address that is no free block), and before the heap follows a link or trusts a size it
/// checks them against the bit map, which lives outside the blocks: the block a link names
/// must start a free stretch there and link back; a size must end where an allocated block
/// starts, agree with the block's other tag and with its list's class. A damaged block is
/// never followed: the heap rebuilds its free lists from the bit map (O(granules / 32), a
/// cold path) with fresh links and tags, and sets the damaged free stretch aside for good
/// (marked allocated: whatever wrote there may write again). A free that would merge with it
/// is refused as [`CorruptedFreeBlock`](MisuseKind::CorruptedFreeBlock), the caller's block
/// staying allocated; an allocate or resize that meets it refuses and keeps the finding for
/// [`RawHeap::take_corruption`], which the front hands to its misuse hook (and then tries the
/// allocation again). A region joining a touching one rebuilds the lists the same way,
/// rather than merging through the links at the seam.
///
/// The checks cost a few dozen instructions per list operation (figures in the README); the
/// plain `TlsfHeap` (`TlsfHeap<false>`, the default) compiles without them (it keeps the
/// unused secret and finding fields). Not covered: a write into the middle of a free block (no
/// record lives there: use [`Guarded`](crate::Guarded) with
/// [`GuardLevel::Poison`](crate::GuardLevel::Poison) to catch it), and a damaged block that no
/// call touches (`check_invariants()` finds it). The const parameter has a default, so
/// `TlsfHeap` alone names the plain heap in types; in expressions, name it in angle brackets
/// for associated items (`<TlsfHeap>::MIN_REGION`).
///
/// ```
/// use core::alloc::Layout;
/// use core::ptr::NonNull;
/// use kheap::{RawHeap, TlsfHeap};
///
/// let memory: &'static mut [u8] = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
/// let mut heap = TlsfHeap::new();
/// // SAFETY: the leaked buffer lives for ever and only the heap uses it.
/// unsafe { heap.add_region(NonNull::from(memory)) }.unwrap();
/// // A 4 KiB-aligned request: the gap before the aligned start goes back to the free lists.
/// let layout = Layout::from_size_align(100, 4096).unwrap();
/// let block = heap.allocate(layout).unwrap();
/// assert_eq!(block.cast::<u8>().as_ptr().addr() % 4096, 0);
/// // SAFETY: `block` is live with `layout`.
/// unsafe { heap.deallocate(block.cast(), layout) }.unwrap();
/// assert_eq!(heap.usage().free_bytes, heap.usage().total_bytes);
/// heap.check_invariants().unwrap();
/// ```
pub struct TlsfHeap<const HARDENED: bool = false> {
    /// Invariant: bit `f` is set iff `sl_bitmaps[f] != 0`.
    fl_bitmap: u64,
    /// Invariant: bit `s` of `sl_bitmaps[f]` is set iff `heads[f][s]` is not empty.
    sl_bitmaps: [u32; FL_COUNT],
    /// Heads of the doubly linked free lists, one per class. Invariant: every block on list
    /// `(f, s)` is free, of class `(f, s)`, lies in a region outside its bookkeeping, and is a
    /// whole stretch of unmarked granules; its size tags (if it is longer than a granule) hold
    /// its size.
    heads: [[Option<NonNull<FreeHead>>; SL_COUNT]; FL_COUNT],
    /// The region records, singly linked. Invariant: their spans do not overlap.
    regions: Option<NonNull<RegionRecord>>,
    /// Invariant: bytes in regions outside their bookkeeping.
    total: usize,
    /// Invariant: bytes on the free lists (once a damaged list is set aside, also the bytes
    /// that were on it).
    free: usize,
    /// Hardened: the seed the secret is drawn from (with the first region's address).
    seed: u64,
    /// Hardened: what links are XORed with; zero until the first region comes, then fixed
    /// and never zero (every link is sealed with it). A plain heap never draws one.
    secret: usize,
    /// Hardened: the first damage found by a call that could only refuse, until taken.
    damage: Option<Misuse>,
}

// SAFETY: the heap exclusively owns its regions (obligation 2 of `add_region`); the pointers it
// holds are only followed through `&mut self` or `&self`, so moving the heap to another thread
// moves that ownership with it.
unsafe impl<const HARDENED: bool> Send for TlsfHeap<HARDENED> {}

impl<const HARDENED: bool> Default for TlsfHeap<HARDENED> {
    fn default() -> Self {
        Self::empty()
    }
}

impl TlsfHeap {
    /// An empty heap; give it memory with [`RawHeap::add_region`].
    pub const fn new() -> Self {
        Self::empty()
    }
}

impl TlsfHeap<true> {
    /// An empty hardened heap (see [Hardened](TlsfHeap#hardened)); its secret is drawn from
    /// the address of its first region and the number of secrets drawn before it (by any
    /// kheap heap or layer). `const`.
    ///
    /// ```
    /// use core::alloc::Layout;
    /// use kheap::{RawHeap, TlsfHeap};
    ///
    /// let memory: &'static mut [u8] = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
    /// let mut heap = TlsfHeap::hardened();
    /// // SAFETY: the leaked buffer lives for ever and only the heap uses it.
    /// unsafe { heap.add_region(core::ptr::NonNull::from(memory)) }.unwrap();
    /// let layout = Layout::new::<[u8; 64]>();
    /// let block = heap.allocate(layout).unwrap();
    /// // SAFETY: `block` is live with `layout`.
    /// unsafe { heap.deallocate(block.cast(), layout) }.unwrap();
    /// heap.check_invariants().unwrap();
    /// ```
    pub const fn hardened() -> Self {
        Self::empty()
    }

    /// The same heap with another seed for its secret: a kernel with a source of randomness
    /// (a hardware generator, boot entropy) passes one, so that the secret cannot be guessed
    /// from the heap's address. Before any region is added; `const`.
    pub const fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

impl<const HARDENED: bool> TlsfHeap<HARDENED> {
    const VALID: () = assert!(FL_COUNT <= 63 && SL_COUNT == 32, "TlsfHeap: classes must fit the bit maps");

    const fn empty() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::VALID;
        TlsfHeap {
            fl_bitmap: 0,
            sl_bitmaps: [0; FL_COUNT],
            heads: [[None; SL_COUNT]; FL_COUNT],
            regions: None,
            total: 0,
            free: 0,
            seed: 0x6B68_6561_705F_746C,
            secret: 0,
            damage: None,
        }
    }

    /// A link as stored in a free block: XORed with the secret when hardened. The XOR keeps
    /// the pointer's provenance (`map_addr`), so unsealing gives back the pointer itself.
    #[inline(always)]
    fn seal(&self, link: Option<NonNull<FreeHead>>) -> *mut FreeHead {
        let raw = link.map_or(core::ptr::null_mut(), NonNull::as_ptr);
        if HARDENED {
            raw.map_addr(|addr| addr ^ self.secret)
        } else {
            raw
        }
    }

    /// A link read from a free block, unsealed.
    #[inline(always)]
    fn unseal(&self, raw: *mut FreeHead) -> Option<NonNull<FreeHead>> {
        NonNull::new(if HARDENED { raw.map_addr(|addr| addr ^ self.secret) } else { raw })
    }

    /// The next block on `node`'s list.
    ///
    /// # Safety
    ///
    /// 1. `node` holds a `FreeHead` the heap wrote (it is on a list, or checked to start a
    ///    free block).
    #[inline(always)]
    unsafe fn next_of(&self, node: NonNull<FreeHead>) -> Option<NonNull<FreeHead>> {
        // SAFETY: (1).
        self.unseal(unsafe { (*node.as_ptr()).next })
    }

    /// The previous block on `node`'s list.
    ///
    /// # Safety
    ///
    /// 1. As for [`next_of`](Self::next_of).
    #[inline(always)]
    unsafe fn prev_of(&self, node: NonNull<FreeHead>) -> Option<NonNull<FreeHead>> {
        // SAFETY: (1).
        self.unseal(unsafe { (*node.as_ptr()).prev })
    }

    /// Sets `node`'s next link.
    ///
    /// # Safety
    ///
    /// 1. `node` is a free block the heap owns, at least a granule long.
    #[inline(always)]
    unsafe fn set_next(&mut self, node: NonNull<FreeHead>, next: Option<NonNull<FreeHead>>) {
        // SAFETY: (1).
        unsafe { (*node.as_ptr()).next = self.seal(next) };
    }

    /// Sets `node`'s previous link.
    ///
    /// # Safety
    ///
    /// 1. As for [`set_next`](Self::set_next).
    #[inline(always)]
    unsafe fn set_prev(&mut self, node: NonNull<FreeHead>, prev: Option<NonNull<FreeHead>>) {
        // SAFETY: (1).
        unsafe { (*node.as_ptr()).prev = self.seal(prev) };
    }

    #[inline]
    fn record(&self, record: NonNull<RegionRecord>) -> &RegionRecord {
        // SAFETY: records are written by `RegionRecord::write` into memory the heap owns and
        // are only changed through `&mut self`; the returned borrow is tied to `&self`.
        unsafe { record.as_ref() }
    }

    #[inline]
    fn record_mut(&mut self, mut record: NonNull<RegionRecord>) -> &mut RegionRecord {
        // SAFETY: as in `record`, and `&mut self` excludes every other borrow of the record.
        unsafe { record.as_mut() }
    }

    fn records(&self) -> impl Iterator<Item = NonNull<RegionRecord>> + '_ {
        core::iter::successors(self.regions, |r| self.record(*r).next)
    }

    /// The record whose span holds `addr`.
    #[inline]
    fn record_of(&self, addr: usize) -> Option<NonNull<RegionRecord>> {
        // The common case inline: one region, or the first one's.
        let first = self.regions?;
        if self.record(first).span.contains(addr) {
            return Some(first);
        }
        self.later_record_of(addr)
    }

    /// The record after the first whose span holds `addr`: out of line, so the one-region case
    /// stays small.
    #[inline(never)]
    fn later_record_of(&self, addr: usize) -> Option<NonNull<RegionRecord>> {
        self.records().skip(1).find(|r| self.record(*r).span.contains(addr))
    }

    /// The head of list `(fl, sl)`.
    ///
    /// # Safety
    ///
    /// 1. `fl < FL_COUNT` and `sl < SL_COUNT`.
    #[inline]
    unsafe fn head(&self, fl: usize, sl: usize) -> Option<NonNull<FreeHead>> {
        debug_assert!(fl < FL_COUNT && sl < SL_COUNT);
        // SAFETY: (1) both indices are in range.
        unsafe { *self.heads.get_unchecked(fl).get_unchecked(sl) }
    }

    /// Sets the head of list `(fl, sl)`.
    ///
    /// # Safety
    ///
    /// 1. `fl < FL_COUNT` and `sl < SL_COUNT`.
    #[inline]
    unsafe fn set_head(&mut self, fl: usize, sl: usize, head: Option<NonNull<FreeHead>>) {
        debug_assert!(fl < FL_COUNT && sl < SL_COUNT);
        // SAFETY: (1) both indices are in range.
        unsafe { *self.heads.get_unchecked_mut(fl).get_unchecked_mut(sl) = head };
    }

    /// The second-level bit map of row `fl`.
    ///
    /// # Safety
    ///
    /// 1. `fl < FL_COUNT`.
    #[inline]
    unsafe fn row(&mut self, fl: usize) -> &mut u32 {
        debug_assert!(fl < FL_COUNT);
        // SAFETY: (1) the index is in range.
        unsafe { self.sl_bitmaps.get_unchecked_mut(fl) }
    }

    /// The size of the block on list `(fl, sl)` at `block`.
    ///
    /// # Safety
    ///
    /// 1. `block` is on free list `(fl, sl)`.
    #[inline]
    unsafe fn listed_size(block: NonNull<FreeHead>, fl: usize, sl: usize) -> usize {
        if (fl, sl) == (0, 1) {
            GRANULE
        } else {
            // SAFETY: (1) blocks of every other class are at least two granules long and keep
            // their size in the first word of the second granule.
            unsafe { block.cast::<u8>().as_ptr().wrapping_add(GRANULE).cast::<usize>().read() }
        }
    }

    /// The size of the free block at boundary `b` of `record`, starting at `block`.
    ///
    /// # Safety
    ///
    /// 1. A free block starts at `block`, at boundary `b` of `record`'s span.
    #[inline]
    unsafe fn free_size_at(&self, record: NonNull<RegionRecord>, block: NonNull<u8>, b: usize) -> usize {
        // SAFETY: (1) a free block ends at or before the span's end, so `b + 1 <= N`.
        if unsafe { self.record(record).marks(b + 1) } & STARTS != 0 {
            GRANULE
        } else {
            // SAFETY: (1) a free block of two granules or more keeps its size there.
            unsafe { block.as_ptr().wrapping_add(GRANULE).cast::<usize>().read() }
        }
    }

    /// The size of the free block that ends at boundary `b` of `record`, at `end`.
    ///
    /// # Safety
    ///
    /// 1. A free block ends at `end`, at boundary `b` of `record`'s span.
    #[inline]
    unsafe fn free_size_before(&self, record: NonNull<RegionRecord>, end: NonNull<u8>, b: usize) -> usize {
        // SAFETY: (1) a free block starts at or after the span's start, so `b >= 1`.
        if unsafe { self.record(record).marks(b - 1) } & ENDS != 0 {
            GRANULE
        } else {
            // SAFETY: (1) a free block of two granules or more keeps its size in its last word.
            unsafe { end.as_ptr().wrapping_sub(WORD).cast::<usize>().read() }
        }
    }

    /// Writes a free block of `size` bytes at `block` and puts it on the list of its class.
    ///
    /// # Safety
    ///
    /// 1. `[block, block + size)` is granule-aligned, at least a granule long, inside a region,
    ///    unmarked, owned by the heap and used by nobody (no live allocation, no bookkeeping,
    ///    no other free block), and touches no other free block.
    #[inline]
    unsafe fn link(&mut self, block: NonNull<u8>, size: usize) {
        let (fl, sl) = class_of(size >> GRANULE_SHIFT);
        let node = block.cast::<FreeHead>();
        // SAFETY: (1) the block lies in a region, which is at most `isize::MAX` bytes, so its
        // class is in range (`class_of` of fewer than `2^(BITS - 1 - GRANULE_SHIFT)` granules
        // has a first level below `FL_COUNT`).
        let next = unsafe { self.head(fl, sl) };
        // SAFETY: (1) the block is owned, unused and granule-aligned, so its first granule
        // holds the links; a block of two granules or more has room for both size tags.
        unsafe {
            node.write(FreeHead { next: self.seal(next), prev: self.seal(None) });
            if size > GRANULE {
                block.as_ptr().wrapping_add(GRANULE).cast::<usize>().write(size);
                block.as_ptr().wrapping_add(size - WORD).cast::<usize>().write(size);
            }
        }
        // SAFETY: the class is in range (above).
        unsafe { self.set_head(fl, sl, Some(node)) };
        match next {
            // SAFETY: list members are free blocks holding `FreeHead`s the heap owns. A list
            // that had a head is already marked in both bit maps.
            Some(next) => unsafe { self.set_prev(next, Some(node)) },
            None => {
                // SAFETY: the class is in range (above).
                unsafe { *self.row(fl) |= 1 << sl };
                self.fl_bitmap |= 1 << fl;
            }
        }
    }

    /// Takes the free block of `size` bytes at `block` off its list.
    ///
    /// # Safety
    ///
    /// 1. The block is on the free list of the class of `size`.
    #[inline]
    unsafe fn unlink(&mut self, block: NonNull<u8>, size: usize) {
        let (fl, sl) = class_of(size >> GRANULE_SHIFT);
        // SAFETY: (1).
        unsafe { self.unlink_from(block, fl, sl) }
    }

    /// Takes the free block at `block` off list `(fl, sl)`.
    ///
    /// # Safety
    ///
    /// 1. The block is on free list `(fl, sl)` (so that class is in range).
    #[inline]
    unsafe fn unlink_from(&mut self, block: NonNull<u8>, fl: usize, sl: usize) {
        let node = block.cast::<FreeHead>();
        // SAFETY: (1) the block is on a free list, so it holds a `FreeHead`.
        let (next, prev) = unsafe { (self.next_of(node), self.prev_of(node)) };
        match prev {
            // SAFETY: list members are free blocks holding `FreeHead`s the heap owns.
            Some(prev) => unsafe { self.set_next(prev, next) },
            // SAFETY: (1) the class is in range.
            None => unsafe { self.pop_head(fl, sl, next) },
        }
        if let Some(next) = next {
            // SAFETY: as above.
            unsafe { self.set_prev(next, prev) };
        }
    }

    /// Makes `next` the head of list `(fl, sl)` in place of its first block, clearing the bit
    /// maps if the list is now empty. Does not touch `next`'s back link.
    ///
    /// # Safety
    ///
    /// 1. `(fl, sl)` is in range, and `next` follows the list's head (or is `None`).
    #[inline]
    unsafe fn pop_head(&mut self, fl: usize, sl: usize, next: Option<NonNull<FreeHead>>) {
        // SAFETY: (1) the class is in range.
        unsafe { self.set_head(fl, sl, next) };
        if next.is_none() {
            // SAFETY: (1) as above.
            let row = unsafe { self.row(fl) };
            *row &= !(1 << sl);
            if *row == 0 {
                self.fl_bitmap &= !(1 << fl);
            }
        }
    }

    /// Returns `[start, start + len)` to the free lists, merged with a free block on either
    /// side, and counts it as free.
    ///
    /// # Safety
    ///
    /// 1. The range is granule-aligned, at least a granule long, inside `record`'s span,
    ///    outside its bookkeeping, unmarked, and used by nobody.
    #[inline]
    unsafe fn release(&mut self, record: NonNull<RegionRecord>, start: NonNull<u8>, len: usize) {
        let r = self.record(record);
        let first = r.boundary(start.as_ptr().addr());
        let last = first + (len >> GRANULE_SHIFT);
        // SAFETY: both boundaries are in `0..=N` (the range is inside the span).
        let (head, tail) = unsafe { (r.marks(first), r.marks(last)) };
        // SAFETY: (1), and the marks were read at the range's boundaries.
        unsafe { self.merge_and_link(record, start, len, first, last, head, tail) }
    }

    /// [`release`](Self::release) with the range's boundaries and their marks already read.
    ///
    /// # Safety
    ///
    /// 1. As for `release`; `first` and `last` are the boundaries of `start` and of
    ///    `start + len` in `record`, and `head`, `tail` their marks.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    unsafe fn merge_and_link(
        &mut self,
        record: NonNull<RegionRecord>,
        start: NonNull<u8>,
        len: usize,
        first: usize,
        last: usize,
        head: usize,
        tail: usize,
    ) {
        let mut block = start;
        let mut size = len;
        if tail & STARTS == 0 {
            // SAFETY: no block starts at the range's end, which is then inside the span (the
            // sentinel marks its end): a free block starts there (the range ends an allocated
            // stretch) and is on its list.
            unsafe {
                let after = offset_within(start, len);
                let after_size = self.free_size_at(record, after, last);
                self.unlink(after, after_size);
                size += after_size;
            }
        }
        if head & ENDS == 0 {
            // SAFETY: nothing ends at the range's start, which is then not the span's start
            // (the sentinel marks it): a free block ends there and is on its list.
            unsafe {
                let before_size = self.free_size_before(record, start, first);
                let before = offset_back_within(start, before_size);
                self.unlink(before, before_size);
                block = before;
                size += before_size;
            }
        }
        // SAFETY: (1), merged with the free blocks it touched, which are off their lists; the
        // blocks beyond them are allocated (free blocks never touch).
        unsafe { self.link(block, size) };
        self.free += len;
    }

    /// Hardened: whether a link read from a free block names a place the heap wrote one: the
    /// start of a free stretch by the bit map (so reading its links reads free memory the heap
    /// owns); what is read there is then checked to link back.
    #[inline(always)]
    fn plausible(&self, link: NonNull<FreeHead>) -> bool {
        let addr = link.as_ptr().addr();
        self.record_of(addr).is_some_and(|record| self.record(record).starts_free_block(addr))
    }

    /// Hardened: whether `next`, read from `node`'s next link, may be followed: none, or a
    /// plausible block whose previous link is `node`.
    #[inline(always)]
    fn follows(&self, node: NonNull<FreeHead>, next: Option<NonNull<FreeHead>>) -> bool {
        match next {
            None => true,
            // SAFETY: plausible (checked first): inside a region, aligned for a `FreeHead`.
            Some(next) => self.plausible(next) && (unsafe { self.prev_of(next) }) == Some(node),
        }
    }

    /// Hardened: whether the free block at `node` (inside a region: it came from a list head,
    /// a checked link or the bit map), `size` bytes long by its leading tag and on list
    /// `list`, is as the heap left it, before anything it records is followed: the size fits
    /// the region and `list`'s class, both tags hold it, an allocated block (or the
    /// region's end) starts right after it by the bit map, which lives outside every block; the
    /// previous link is the list's head slot or a block linking forward to `node`, the next
    /// link none or a block linking back.
    #[inline(always)]
    fn block_sound(&self, node: NonNull<FreeHead>, size: usize, list: (usize, usize)) -> bool {
        self.record_of(node.as_ptr().addr())
            .is_some_and(|record| self.block_sound_in(record, node, size, list))
    }

    /// [`block_sound`](Self::block_sound) for a block inside `record`'s span.
    #[inline(always)]
    fn block_sound_in(
        &self,
        record: NonNull<RegionRecord>,
        node: NonNull<FreeHead>,
        size: usize,
        list: (usize, usize),
    ) -> bool {
        let addr = node.as_ptr().addr();
        let r = self.record(record);
        // `addr` lies in the span, so the subtraction cannot wrap.
        let extent_ok = size >= GRANULE
            && size % GRANULE == 0
            && size <= r.span.end_addr() - addr
            && class_of(size >> GRANULE_SHIFT) == list
            // SAFETY: `addr + size` is a boundary of the span (checked just before). A free
            // block ends where an allocated block (or the sentinel) starts and none ends.
            && unsafe { r.marks(r.boundary(addr + size)) } & (STARTS | ENDS) == STARTS;
        if !extent_ok {
            return false;
        }
        let block = node.cast::<u8>();
        // SAFETY: `[addr, addr + size)` lies inside the span: region memory, readable. Both
        // tags: the size may have come from either (a neighbour before reads the trailing one).
        let tags_ok = size == GRANULE
            || unsafe {
                (
                    offset(block, GRANULE).cast::<usize>().read(),
                    offset(block, size - WORD).cast::<usize>().read(),
                )
            } == (size, size);
        // SAFETY: `node` is granule-aligned inside a region: the words read are region memory.
        let (next, prev) = unsafe { (self.next_of(node), self.prev_of(node)) };
        let prev_ok = match prev {
            // SAFETY: the class is in range (`class_of` of a size inside a region).
            None => (unsafe { self.head(list.0, list.1) }) == Some(node),
            // SAFETY: plausible (checked first).
            Some(prev) => self.plausible(prev) && (unsafe { self.next_of(prev) }) == Some(node),
        };
        tags_ok && prev_ok && self.follows(node, next)
    }

    /// Hardened: a search's result, with the block found checked ([`block_sound`]); damage
    /// is repaired and the call refuses.
    ///
    /// [`block_sound`]: Self::block_sound
    #[inline]
    fn sound(
        &mut self,
        found: Result<Option<Found>, Damaged>,
        layout: Layout,
    ) -> Result<Option<Found>, AllocError> {
        match found {
            Ok(Some((block, size, list))) if HARDENED && !self.block_sound(block.cast(), size, list) => {
                Err(self.keep_and_repair(Damaged { at: block }, layout))
            }
            Ok(found) => Ok(found),
            Err(damaged) => Err(self.keep_and_repair(damaged, layout)),
        }
    }

    /// Hardened: keeps the first damage found (for [`RawHeap::take_corruption`], naming the
    /// layout of the call that found it) and [repairs](Self::repair) the heap.
    #[cold]
    #[inline(never)]
    fn keep_and_repair(&mut self, damaged: Damaged, layout: Layout) -> AllocError {
        if self.damage.is_none() {
            self.damage = Some(Misuse::new(MisuseKind::CorruptedFreeBlock, damaged.at.as_ptr(), layout));
        }
        self.repair(Some(damaged.at));
        AllocError
    }

    /// Hardened: rebuilds every free list from the bit maps, which live outside the blocks, so
    /// no stray write into a block reaches them: each free stretch gets fresh links and tags,
    /// and no link written in a block is read. The stretch holding `damaged` (if it is free
    /// memory) is set aside instead: marked allocated for ever, its bytes out of the free count,
    /// since whatever wrote there may write again. O(granules / 32) over every region: a cold
    /// path, taken after damage and when regions join.
    #[cold]
    #[inline(never)]
    fn repair(&mut self, damaged: Option<NonNull<u8>>) {
        self.fl_bitmap = 0;
        self.sl_bitmaps = [0; FL_COUNT];
        self.heads = [[None; SL_COUNT]; FL_COUNT];
        self.free = 0;
        let damaged = damaged.map(|at| at.as_ptr().addr());
        let mut cursor = self.regions;
        while let Some(record) = cursor {
            let (span, bits, last) = {
                let r = self.record(record);
                (r.span, r.bits, r.granules())
            };
            cursor = self.record(record).next;
            let mut fence = None;
            let mut free_from = None;
            // The same walk as `check_invariants`: a free stretch runs from an `ENDS` mark
            // (boundary 0's is the sentinel) to the next `STARTS` mark.
            bits.for_each_nonzero_pair(0..last + 1, &mut |b, marks| {
                if marks & ENDS != 0 {
                    free_from = Some(b);
                }
                if marks & STARTS != 0 {
                    if let Some(from) = free_from.take().filter(|&from| from < b) {
                        let start = offset(span.start, from << GRANULE_SHIFT);
                        let len = (b - from) << GRANULE_SHIFT;
                        if damaged.is_some_and(|at| at.wrapping_sub(start.as_ptr().addr()) < len) {
                            fence = Some((from, b));
                        } else {
                            // SAFETY: a whole stretch of unmarked granules inside the span,
                            // outside the bookkeeping (which is marked): free memory the heap
                            // owns, touching no other free stretch (stretches are maximal).
                            unsafe { self.link(start, len) };
                            self.free += len;
                        }
                    }
                }
            });
            if let Some((from, to)) = fence {
                let r = self.record_mut(record);
                // SAFETY: both are boundaries of the span (a stretch inside it).
                unsafe {
                    r.set_mark(from, STARTS, true);
                    r.set_mark(to, ENDS, true);
                }
            }
        }
    }

    /// The first non-empty list at or above class `(fl, sl)` (in range).
    #[inline]
    fn first_nonempty(&self, fl: usize, sl: usize) -> Option<(usize, usize)> {
        debug_assert!(fl < FL_COUNT && sl < SL_COUNT);
        // SAFETY: the class is in range.
        let in_row = unsafe { *self.sl_bitmaps.get_unchecked(fl) } & (u32::MAX << sl);
        if in_row != 0 {
            return Some((fl, in_row.trailing_zeros() as usize));
        }
        // `fl + 1 <= FL_COUNT <= 63`: the shift is in range.
        let above = self.fl_bitmap & (u64::MAX << (fl + 1));
        if above == 0 {
            return None;
        }
        let fl = above.trailing_zeros() as usize;
        // SAFETY: bits of `fl_bitmap` are only set below `FL_COUNT`.
        Some((fl, unsafe { self.sl_bitmaps.get_unchecked(fl) }.trailing_zeros() as usize))
    }

    /// A free block that can hold `size` bytes at alignment `align`, needing `need` bytes for
    /// any start: the good fit, then the fallback scan. Returns the block, its size and its
    /// list.
    #[inline]
    fn find(&self, size: usize, align: usize, need: usize) -> Result<Option<Found>, Damaged> {
        let n = need >> GRANULE_SHIFT;
        let good = search_class(n).and_then(|(fl, sl)| self.first_nonempty(fl, sl));
        if let Some((fl, sl)) = good {
            // SAFETY: `first_nonempty` returns classes in range.
            let Some(head) = (unsafe { self.head(fl, sl) }) else { return Ok(None) };
            // SAFETY: `head` heads list `(fl, sl)`.
            let block_size = unsafe { Self::listed_size(head, fl, sl) };
            return Ok(Some((head.cast(), block_size, (fl, sl))));
        }
        self.fallback(size, align, n)
    }

    /// The fallback: scans every list from the class of `size` up to (not including) the
    /// good fit's class for `n` granules, for a block that holds `size` bytes at alignment
    /// `align`. Blocks below the class of `size` are too small; blocks at or above the good
    /// fit's class hold `n` granules, enough wherever they start, and the good fit found none.
    #[cold]
    #[inline(never)]
    fn fallback(&self, size: usize, align: usize, n: usize) -> Result<Option<Found>, Damaged> {
        let limit = search_class(n).unwrap_or((FL_COUNT, 0));
        let mut class = class_of(size >> GRANULE_SHIFT);
        while class < limit && class.0 < FL_COUNT {
            let Some((fl, sl)) = self.first_nonempty(class.0, class.1) else { return Ok(None) };
            if (fl, sl) >= limit {
                return Ok(None);
            }
            let mut cursor = self.heads[fl][sl];
            while let Some(node) = cursor {
                // SAFETY: `node` is on list `(fl, sl)`.
                let block_size = unsafe { Self::listed_size(node, fl, sl) };
                let start = node.as_ptr().addr();
                let fits = align_up_addr(start, align)
                    .and_then(|aligned| aligned.checked_add(size))
                    .is_some_and(|end| end <= start + block_size);
                if fits {
                    return Ok(Some((node.cast(), block_size, (fl, sl))));
                }
                // SAFETY: list members hold `FreeHead`s the heap owns (the next one checked
                // before it is read, when hardened).
                cursor = unsafe { self.next_of(node) };
                if HARDENED && !self.follows(node, cursor) {
                    return Err(Damaged { at: node.cast() });
                }
            }
            class = if sl + 1 < SL_COUNT { (fl, sl + 1) } else { (fl + 1, 0) };
        }
        Ok(None)
    }

    /// The size of the largest free block: the largest on the highest non-empty list.
    fn largest_free(&self) -> usize {
        if self.fl_bitmap == 0 {
            return 0;
        }
        let fl = (63 - self.fl_bitmap.leading_zeros()) as usize;
        let sl = (31 - self.sl_bitmaps[fl].leading_zeros()) as usize;
        let mut largest = 0;
        let mut cursor = self.heads[fl][sl];
        while let Some(node) = cursor {
            // SAFETY: `node` is on list `(fl, sl)`.
            largest = largest.max(unsafe { Self::listed_size(node, fl, sl) });
            // SAFETY: list members hold `FreeHead`s the heap owns.
            cursor = unsafe { self.next_of(node) };
            if HARDENED && !self.follows(node, cursor) {
                // Damaged: the blocks after it are not read (the next call to touch the list
                // reports it).
                break;
            }
        }
        largest
    }

    /// The allocated block at `ptr` of `size` bytes (a nonzero multiple of the granule), if
    /// the marks say one is there and `ptr` is a multiple of `align_mask + 1`.
    #[inline]
    fn allocated_block(&self, ptr: NonNull<u8>, size: usize, align_mask: usize) -> Option<Located> {
        let record = self.record_of(ptr.as_ptr().addr())?;
        self.allocated_in(record, ptr, size, align_mask)
    }

    /// [`allocated_block`](Self::allocated_block) in `record`, whose span holds `ptr`: aligned,
    /// inside the span, outside the bookkeeping, marked at both boundaries.
    #[inline(always)]
    fn allocated_in(
        &self,
        record: NonNull<RegionRecord>,
        ptr: NonNull<u8>,
        size: usize,
        align_mask: usize,
    ) -> Option<Located> {
        let addr = ptr.as_ptr().addr();
        let r = self.record(record);
        // `addr` lies in the span, so `rel < len`; `size <= isize::MAX`, so `end` does not wrap.
        let rel = addr - r.span.start_addr();
        let end = rel + size;
        // Only the bookkeeping's first boundary carries a mark inside it, so comparing with its
        // start is enough: any other address in it fails the mark check below.
        if addr & (align_mask | (GRANULE - 1)) != 0 || end > r.span.len || addr == r.meta.start_addr() {
            return None;
        }
        let (first, last) = (rel >> GRANULE_SHIFT, end >> GRANULE_SHIFT);
        // SAFETY: both boundaries are in `0..=N` (`end <= len`).
        let (head, tail) = unsafe { (r.marks(first), r.marks(last)) };
        // One test for both marks: `STARTS` at the head (bit 1) and `ENDS` at the tail (bit 0).
        ((head >> 1) & tail & 1 != 0).then_some(Located { record, first, last, head, tail })
    }

    /// Finds out what is wrong with a free of `ptr` with `layout`, which the fast check refused.
    #[cold]
    #[inline(never)]
    fn diagnose(&self, ptr: NonNull<u8>, layout: Layout) -> Misuse {
        let addr = ptr.as_ptr().addr();
        let misuse = |kind| Misuse::new(kind, ptr.as_ptr(), layout);
        let found = |len: usize| Layout::from_size_align(len, GRANULE).unwrap_or(layout);
        let Some(record) = self.record_of(addr) else { return misuse(MisuseKind::Foreign) };
        let record = self.record(record);
        if record.meta.contains(addr) {
            return misuse(MisuseKind::Bookkeeping);
        }
        match record.containing(addr) {
            Some((false, _, len)) => misuse(MisuseKind::DoubleFree).found(found(len)),
            Some((true, start, len)) if start == addr && addr % layout.align() == 0 => {
                misuse(MisuseKind::WrongLayout).found(found(len))
            }
            Some((true, _, len)) => misuse(MisuseKind::NotBlockStart).found(found(len)),
            None => misuse(MisuseKind::Foreign),
        }
    }

    /// A refused free: what is wrong with it, as the error `deallocate` returns. Out of line (and
    /// returning the whole result), so the fast path of `deallocate` ends in a jump here.
    #[cold]
    #[inline(never)]
    fn refuse(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Misuse> {
        Err(self.diagnose(ptr, layout))
    }

    /// The end of a free whose block touches a free neighbour: out of line (with few enough
    /// arguments to be reached by a jump), so that the common free stays small. `marks` holds
    /// the marks of the block's first boundary in its low two bits, of its last in the next two.
    /// Returns `true`, so that the fast free ends in a jump here too.
    ///
    /// # Safety
    ///
    /// 1. As for [`release`](Self::release), with `[start, start + len)` just unmarked and
    ///    `marks` read before.
    #[inline(never)]
    unsafe fn free_merging(
        &mut self,
        record: NonNull<RegionRecord>,
        start: NonNull<u8>,
        len: usize,
        marks: usize,
    ) -> bool {
        let first = self.record(record).boundary(start.as_ptr().addr());
        let last = first + (len >> GRANULE_SHIFT);
        // SAFETY: (1).
        unsafe { self.merge_and_link(record, start, len, first, last, marks & 0b11, marks >> 2) };
        true
    }

    /// `deallocate` of a pointer outside the first region: finds its region, then frees as
    /// usual (or refuses).
    ///
    /// # Safety
    ///
    /// As for [`RawHeap::deallocate`].
    #[inline(never)]
    unsafe fn deallocate_elsewhere(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Misuse> {
        match self.later_record_of(ptr.as_ptr().addr()) {
            // SAFETY: the caller's obligations, passed on; the record's span holds `ptr`.
            Some(record) => unsafe { self.deallocate_in(record, ptr, layout) },
            None => self.refuse(ptr, layout),
        }
    }

    /// The fast free of a pointer outside the first region: finds its region, then frees as
    /// usual, or declines (no region holds it, or the free is refused).
    ///
    /// # Safety
    ///
    /// As for [`RawHeap::deallocate`].
    #[inline(never)]
    unsafe fn free_elsewhere(&mut self, ptr: NonNull<u8>, layout: Layout) -> bool {
        match self.later_record_of(ptr.as_ptr().addr()) {
            // SAFETY: the caller's obligations, passed on; the record's span holds `ptr`.
            Some(record) => unsafe { self.free_in(record, ptr, layout) },
            None => false,
        }
    }

    /// `deallocate` in the region of `record`: checks the block's marks, unmarks it and returns
    /// it to the free lists (merging out of line), or refuses with what is wrong.
    ///
    /// # Safety
    ///
    /// As for [`RawHeap::deallocate`]; besides, `record`'s span holds `ptr`.
    #[inline(always)]
    unsafe fn deallocate_in(
        &mut self,
        record: NonNull<RegionRecord>,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Result<(), Misuse> {
        let size = block_bytes(layout);
        let Some(block) = self.allocated_in(record, ptr, size, layout.align() - 1) else {
            return self.refuse(ptr, layout);
        };
        if HARDENED && block.head & (block.tail >> 1) & 1 == 0 {
            // A free neighbour is followed: checked while the bit map still shows the block.
            if let Err(damaged) = self.neighbours_sound(record, ptr, size, block.head, block.tail) {
                // Refused: the caller's block stays allocated; the damaged one is set aside.
                self.repair(Some(damaged.at));
                return Err(Misuse::new(MisuseKind::CorruptedFreeBlock, damaged.at.as_ptr(), layout));
            }
        }
        // SAFETY: the caller gives up the allocated block just located (1, 2).
        unsafe { self.free_located(ptr, size, block) };
        Ok(())
    }

    /// Frees `ptr` with `layout` if it is an allocated block of `record` (whose span holds
    /// `ptr`): unmarks it and returns it to the free lists (linking or merging out of line,
    /// reached by a jump). Returns
    /// whether it did; a refusal changes nothing and builds no report, so that the fast free
    /// keeps no stack frame.
    ///
    /// # Safety
    ///
    /// As for [`RawHeap::deallocate`]; besides, `record`'s span holds `ptr`.
    #[inline(always)]
    unsafe fn free_in(&mut self, record: NonNull<RegionRecord>, ptr: NonNull<u8>, layout: Layout) -> bool {
        let size = block_bytes(layout);
        let Some(block) = self.allocated_in(record, ptr, size, layout.align() - 1) else { return false };
        // SAFETY: the caller gives up the allocated block just located (1, 2).
        unsafe { self.free_located(ptr, size, block) }
    }

    /// Unmarks the allocated block `[ptr, ptr + size)` found as `block` and returns it to the
    /// free lists (linking or merging out of line, reached by a jump); returns `true`.
    ///
    /// # Safety
    ///
    /// 1. `block` is what [`allocated_in`](Self::allocated_in) just found for `ptr` and `size`,
    ///    and the caller gives the block up (it is not used after this call).
    #[inline(always)]
    unsafe fn free_located(&mut self, ptr: NonNull<u8>, size: usize, block: Located) -> bool {
        let Located { record, first, last, head, tail } = block;
        // SAFETY: (1) the block `[ptr, ptr + size)` is allocated (marked at both boundaries),
        // in the span, outside the bookkeeping, and given up; once unmarked it is released,
        // with the marks read at its boundaries.
        unsafe {
            let r = self.record_mut(record);
            r.set_mark(first, STARTS, false);
            r.set_mark(last, ENDS, false);
            // `ENDS` at the head and `STARTS` at the tail: both neighbours allocated.
            if head & (tail >> 1) & 1 == 0 {
                self.free_merging(record, ptr, size, head | tail << 2)
            } else {
                self.free_linking(ptr, size)
            }
        }
    }

    /// The end of a free whose neighbours are both allocated: links the block. Out of line, as
    /// [`free_merging`](Self::free_merging), so that the checks before keep no stack frame.
    ///
    /// # Safety
    ///
    /// 1. As for [`link`](Self::link), with the block just unmarked.
    #[inline(never)]
    unsafe fn free_linking(&mut self, block: NonNull<u8>, size: usize) -> bool {
        // SAFETY: (1).
        unsafe { self.link(block, size) };
        self.free += size;
        true
    }

    /// Hardened: whether the free blocks touching the allocated block `[ptr, ptr + size)` of
    /// `record` (its boundaries' marks `head` and `tail`, read before anything changed) are
    /// sound, so that merging with them follows no damaged link. Out of line: hardened frees
    /// that merge only.
    #[cold]
    #[inline(never)]
    fn neighbours_sound(
        &self,
        record: NonNull<RegionRecord>,
        ptr: NonNull<u8>,
        size: usize,
        head: usize,
        tail: usize,
    ) -> Result<(), Damaged> {
        let r = self.record(record);
        let addr = ptr.as_ptr().addr();
        let (first, last) = (r.boundary(addr), r.boundary(addr + size));
        if tail & STARTS == 0 {
            // SAFETY: the block is allocated and nothing starts at its end, which is then
            // inside the span: a free block starts there.
            let after = unsafe { offset_within(ptr, size) };
            // SAFETY: as above.
            let after_size = unsafe { self.free_size_at(record, after, last) };
            if !self.block_sound_in(record, after.cast(), after_size, class_of(after_size >> GRANULE_SHIFT)) {
                return Err(Damaged { at: after });
            }
        }
        if head & ENDS == 0 {
            // SAFETY: nothing ends at the block's start, which is then not the span's start: a
            // free block ends there, keeping its size in its last word (or one granule long).
            let before_size = unsafe { self.free_size_before(record, ptr, first) };
            if before_size == 0 || before_size % GRANULE != 0 || before_size > addr - r.span.start_addr() {
                // The tag names no start inside the region: report the tag's own place.
                return Err(Damaged { at: with_addr(ptr, addr - WORD) });
            }
            // SAFETY: inside the span (checked just above).
            let before = unsafe { offset_back_within(ptr, before_size) };
            // The trailing tag led here: the bit map must agree that a free stretch starts here.
            if !r.starts_free_block(before.as_ptr().addr())
                || !self.block_sound_in(
                    record,
                    before.cast(),
                    before_size,
                    class_of(before_size >> GRANULE_SHIFT),
                )
            {
                return Err(Damaged { at: before });
            }
        }
        Ok(())
    }

    /// Marks `[start, start + size)`, carved from the block `[block, block + block_size)` just
    /// taken off its list, as allocated, and returns the pieces before and after it to the
    /// free lists.
    ///
    /// # Safety
    ///
    /// 1. The block was a free block inside `record`'s span and is off its list; the piece
    ///    (granule-aligned, at least a granule long) lies inside it.
    #[inline]
    unsafe fn carve(
        &mut self,
        record: NonNull<RegionRecord>,
        block: NonNull<u8>,
        block_size: usize,
        start: usize,
        size: usize,
    ) {
        let r = self.record_mut(record);
        let first = r.boundary(start);
        let last = first + (size >> GRANULE_SHIFT);
        // SAFETY: (1) both boundaries lie inside the block, inside the span.
        unsafe {
            r.set_mark(first, STARTS, true);
            r.set_mark(last, ENDS, true);
        }
        let block_start = block.as_ptr().addr();
        let gap = start - block_start;
        if gap > 0 {
            // SAFETY: the head of the block just unlinked: owned, unmarked, between a block
            // that is not free (free blocks never touch) and the new allocation.
            unsafe { self.link(block, gap) };
        }
        let rest = block_size - gap - size;
        if rest > 0 {
            // SAFETY: the tail of the same block, between the new allocation and a block that
            // is not free.
            unsafe { self.link(offset_within(block, gap + size), rest) };
        }
        self.free -= size;
    }

    /// The end of `allocate` for a block outside the first region: finds its region and
    /// carves `size` bytes from the block's start.
    ///
    /// # Safety
    ///
    /// 1. The block was a free block of `block_size` bytes (at least `size`) and is off its
    ///    list.
    #[inline(never)]
    unsafe fn carve_elsewhere(
        &mut self,
        block: NonNull<u8>,
        block_size: usize,
        size: usize,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let start = block.as_ptr().addr();
        let Some(record) = self.later_record_of(start) else {
            debug_assert!(false, "free block outside every region");
            return Err(AllocError);
        };
        // SAFETY: (1), in `record`'s span.
        unsafe { self.carve(record, block, block_size, start, size) };
        Ok(NonNull::slice_from_raw_parts(block, size))
    }

    /// `allocate` of `size` bytes (rounded) when the good fit found no list: the fallback scan.
    #[cold]
    #[inline(never)]
    fn allocate_fallback(&mut self, size: usize, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let found = self.fallback(size, GRANULE, size >> GRANULE_SHIFT);
        let (block, block_size, (fl, sl)) = self.sound(found, layout)?.ok_or(AllocError)?;
        let start = block.as_ptr().addr();
        let Some(record) = self.record_of(start) else {
            debug_assert!(false, "free block outside every region");
            return Err(AllocError);
        };
        // SAFETY: the fallback returned a block on list `(fl, sl)` that holds `size` bytes
        // at its start; once off its list, that piece is carved from it.
        unsafe {
            self.unlink_from(block, fl, sl);
            self.carve(record, block, block_size, start, size);
        }
        Ok(NonNull::slice_from_raw_parts(block, size))
    }

    /// `allocate` for an alignment beyond the granule: the block found may need a leading gap.
    #[inline(never)]
    fn allocate_aligned(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let (size, need) = needed_bytes(layout).ok_or(AllocError)?;
        let align = layout.align();
        let found = self.find(size, align, need);
        let (block, block_size, (fl, sl)) = self.sound(found, layout)?.ok_or(AllocError)?;
        let Some(record) = self.record_of(block.as_ptr().addr()) else {
            debug_assert!(false, "free block outside every region");
            return Err(AllocError);
        };
        let start = block.as_ptr().addr();
        let Some(aligned) = align_up_addr(start, align) else {
            debug_assert!(false, "a block found for an aligned request cannot be aligned");
            return Err(AllocError);
        };
        debug_assert!(aligned - start + size <= block_size, "the block found cannot hold the request");
        // SAFETY: `find` returned a block on list `(fl, sl)`; once off it, the aligned piece
        // lies inside it (`find` checked it fits), inside the span.
        unsafe {
            self.unlink_from(block, fl, sl);
            self.carve(record, block, block_size, aligned, size);
        }
        Ok(NonNull::slice_from_raw_parts(with_addr(block, aligned), size))
    }

    /// Joins `span` with the regions it touches (one on each side at most) if `span` can hold
    /// the joined bookkeeping and the union stays within `isize::MAX` bytes. Returns whether
    /// it did.
    fn join(&mut self, span: Span) -> bool {
        let left = self.records().find(|r| self.record(*r).span.end_addr() == span.start_addr());
        let right = self.records().find(|r| self.record(*r).span.start_addr() == span.end_addr());
        if left.is_none() && right.is_none() {
            return false;
        }
        let start = left.map_or(span.start, |l| self.record(l).span.start);
        let end = right.map_or(span.end_addr(), |r| self.record(r).span.end_addr());
        let union_len = end - start.as_ptr().addr();
        if union_len > isize::MAX as usize {
            return false;
        }
        let union = Span { start, len: union_len };
        let meta_len = RegionRecord::meta_bytes(union_len);
        if meta_len >= span.len {
            return false;
        }
        // The bookkeeping goes at the end of the new memory away from the left seam (or, with
        // only a right neighbour, away from the right seam), so blocks merge across it.
        let (meta, fresh) = span.split_bookkeeping(meta_len, left.is_some());
        let olds = [left, right];
        for old in olds.into_iter().flatten() {
            self.unlink_record(old);
        }
        // SAFETY: (1) `meta` lies inside `span` (new, owned memory) and so inside `union`, is
        // granule-aligned and `meta_bytes(union)` long.
        let new = unsafe { RegionRecord::write(union, meta, self.regions) };
        self.regions = Some(new);
        // Every piece keeps its marks (not its sentinels, which the seams no longer are); the
        // old bookkeeping and the fresh memory are marked allocated, so that each is released
        // in turn with correct neighbours.
        for old in olds.into_iter().flatten() {
            let (old_span, old_bits) = (self.record(old).span, self.record(old).bits);
            let last = old_span.len >> GRANULE_SHIFT;
            let new_record = self.record_mut(new);
            let base = new_record.boundary(old_span.start_addr());
            old_bits.for_each_nonzero_pair(0..last + 1, &mut |b, mut marks| {
                if b == 0 {
                    marks &= !ENDS;
                }
                if b == last {
                    marks &= !STARTS;
                }
                for which in [ENDS, STARTS] {
                    if marks & which != 0 {
                        // SAFETY: the old span lies inside the union.
                        unsafe { new_record.set_mark(base + b, which, true) };
                    }
                }
            });
        }
        let pieces = [left.map(|l| self.record(l).meta), right.map(|r| self.record(r).meta), Some(fresh)];
        for piece in pieces.iter().flatten() {
            let r = self.record_mut(new);
            let (first, last) = (r.boundary(piece.start_addr()), r.boundary(piece.end_addr()));
            // SAFETY: the piece lies inside the union.
            unsafe {
                r.set_mark(first, STARTS, true);
                r.set_mark(last, ENDS, true);
            }
        }
        for piece in pieces.into_iter().flatten() {
            let r = self.record_mut(new);
            let (first, last) = (r.boundary(piece.start_addr()), r.boundary(piece.end_addr()));
            // SAFETY: the piece lies inside the union, outside its bookkeeping (which is in the
            // new memory, apart from `fresh`); old bookkeeping is no longer read (its bits were
            // copied above); fresh memory is owned by nobody.
            unsafe {
                r.set_mark(first, STARTS, false);
                r.set_mark(last, ENDS, false);
                if !HARDENED {
                    self.release(new, piece.start, piece.len);
                }
            }
            self.total += piece.len;
        }
        if HARDENED {
            // Merging the pieces would follow the links of the free blocks at the seams
            // unchecked: the lists are rebuilt from the bit map instead.
            self.repair(None);
        }
        true
    }

    /// Takes `record` off the list of regions.
    fn unlink_record(&mut self, record: NonNull<RegionRecord>) {
        let next = self.record(record).next;
        if self.regions == Some(record) {
            self.regions = next;
            return;
        }
        let previous = self.records().find(|r| self.record(*r).next == Some(record));
        if let Some(previous) = previous {
            self.record_mut(previous).next = next;
        }
    }

    /// Bytes occupied by a block of layout `old`, and by the same block resized to `new_size`,
    /// with the block if the marks confirm it is allocated with `old`'s size.
    #[inline]
    fn resize_target(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(usize, usize, Located), AllocError> {
        // What `Layout::from_size_align(new_size, old.align())` would accept: the size rounded
        // up to the alignment stays within `isize::MAX`.
        if new_size > isize::MAX as usize - (old.align() - 1) {
            return Err(AllocError);
        }
        // `new_size <= isize::MAX`, so adding less than a granule cannot overflow.
        let new_bytes = (new_size.max(1) + (GRANULE - 1)) & !(GRANULE - 1);
        let old_bytes = block_bytes(old);
        let block = self.allocated_block(ptr, old_bytes, 0).ok_or(AllocError)?;
        Ok((old_bytes, new_bytes, block))
    }
}

// SAFETY: blocks handed out come off the free lists, which hold only disjoint free blocks
// inside regions and outside the bookkeeping (the field invariants, checked by
// `check_invariants`); the piece handed out starts at an address aligned to the layout and
// is followed by at least the rounded size inside the block; the heap writes only into free
// blocks and its bookkeeping; refused calls return before changing anything; nothing panics
// (internal invariants are `debug_assert!`s).
unsafe impl<const HARDENED: bool> RawHeap for TlsfHeap<HARDENED> {
    /// One granule of blocks after the smallest possible bookkeeping.
    const MIN_REGION: usize = (size_of::<RegionRecord>() + WORD).next_multiple_of(GRANULE) + GRANULE;

    unsafe fn add_region(&mut self, region: NonNull<[u8]>) -> Result<usize, RegionError> {
        let span = granule_span(region, Self::MIN_REGION)?;
        if self.records().any(|r| self.record(r).span.overlaps(&span)) {
            return Err(RegionError::Overlaps);
        }
        if HARDENED && self.secret == 0 {
            // No link is sealed yet: the secret is fixed from here on.
            self.secret = crate::secret::draw(self.seed, span.start_addr());
        }
        let before = self.total;
        if !self.join(span) {
            let meta_len = RegionRecord::meta_bytes(span.len);
            let minimum = meta_len + GRANULE;
            if region.len() < minimum {
                return Err(RegionError::TooSmall { size: region.len(), minimum });
            }
            if span.len < minimum {
                return Err(RegionError::MisalignedBeyondUse { usable: span.len, minimum });
            }
            // The bookkeeping goes at the end, so a region aligned as `region_layout_for` asks
            // holds its block at its start.
            let (meta, fresh) = span.split_bookkeeping(meta_len, true);
            // SAFETY: (1) `meta` is the end of `span`, granule-aligned, owned by the heap from
            // now on (obligations 1 and 2 of this function), and `meta_bytes(span)` long.
            let record = unsafe { RegionRecord::write(span, meta, self.regions) };
            self.regions = Some(record);
            // SAFETY: the rest of the new span is owned by nobody, unmarked and outside the
            // bookkeeping.
            unsafe { self.release(record, fresh.start, fresh.len) };
            self.total += fresh.len;
        }
        Ok(self.total - before)
    }

    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.align() > GRANULE {
            return self.allocate_aligned(layout);
        }
        // Up to the granule's alignment every block start will do: the good fit for the size
        // itself, the head of its list; the fallback (rarely) out of line.
        let size = block_bytes(layout);
        let n = size >> GRANULE_SHIFT;
        let Some((fl, sl)) = search_class(n).and_then(|(fl, sl)| self.first_nonempty(fl, sl)) else {
            return self.allocate_fallback(size, layout);
        };
        // SAFETY: `first_nonempty` returns classes in range, of non-empty lists.
        let Some(head) = (unsafe { self.head(fl, sl) }) else {
            debug_assert!(false, "a list marked non-empty is empty");
            return Err(AllocError);
        };
        // SAFETY: `head` heads list `(fl, sl)`: it holds a `FreeHead` and its size.
        let (block_size, next) = unsafe { (Self::listed_size(head, fl, sl), self.next_of(head)) };
        if HARDENED && !self.block_sound(head, block_size, (fl, sl)) {
            return Err(self.keep_and_repair(Damaged { at: head.cast() }, layout));
        }
        // SAFETY: the class is in range and `next` follows the head.
        unsafe { self.pop_head(fl, sl, next) };
        if let Some(next) = next {
            // SAFETY: list members hold `FreeHead`s the heap owns.
            unsafe { self.set_prev(next, None) };
        }
        let block = head.cast::<u8>();
        let start = block.as_ptr().addr();
        debug_assert!(size <= block_size, "the block found cannot hold the request");
        match self.regions {
            Some(first) if self.record(first).span.contains(start) => {
                // SAFETY: the block was on its list and is off it now, in the first region; the
                // piece is its start.
                unsafe { self.carve(first, block, block_size, start, size) };
                Ok(NonNull::slice_from_raw_parts(block, size))
            }
            // SAFETY: as above, in a later region.
            _ => unsafe { self.carve_elsewhere(block, block_size, size) },
        }
    }

    /// The whole allocation (a refusal changes nothing), unless hardened: a hardened heap sets
    /// damage aside when it finds it, which only `allocate` may do (the front then asks for the
    /// report).
    #[inline]
    fn allocate_fast(&mut self, layout: Layout) -> Option<NonNull<[u8]>> {
        if HARDENED {
            return None;
        }
        self.allocate(layout).ok()
    }

    /// The free, checked as `deallocate` checks it (unless hardened, as `allocate_fast`);
    /// every refusal is declined with nothing changed, for `deallocate` to diagnose. No report
    /// is built here, so the common free keeps no stack frame.
    #[inline]
    unsafe fn deallocate_fast(&mut self, ptr: NonNull<u8>, layout: Layout) -> bool {
        if HARDENED {
            return false;
        }
        match self.regions {
            // SAFETY: the caller's obligations, passed on; the first region holds `ptr`.
            Some(first) if self.record(first).span.contains(ptr.as_ptr().addr()) => unsafe {
                self.free_in(first, ptr, layout)
            },
            // SAFETY: the caller's obligations, passed on.
            _ => unsafe { self.free_elsewhere(ptr, layout) },
        }
    }

    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Misuse> {
        match self.regions {
            // SAFETY: the caller's obligations, passed on; the first region holds `ptr`.
            Some(first) if self.record(first).span.contains(ptr.as_ptr().addr()) => unsafe {
                self.deallocate_in(first, ptr, layout)
            },
            // SAFETY: the caller's obligations, passed on.
            _ => unsafe { self.deallocate_elsewhere(ptr, layout) },
        }
    }

    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError> {
        let (old_bytes, new_bytes, block) = self.resize_target(ptr, old, new_size)?;
        if new_bytes <= old_bytes {
            return Ok(());
        }
        let Located { record, last, tail, .. } = block;
        if tail & STARTS != 0 {
            return Err(AllocError);
        }
        // SAFETY: no block starts at the block's end, which is then inside the span (the
        // sentinel marks its end): a free block starts there.
        let after = unsafe { offset_within(ptr, old_bytes) };
        // SAFETY: as above.
        let after_size = unsafe { self.free_size_at(record, after, last) };
        let extra = new_bytes - old_bytes;
        if after_size < extra {
            return Err(AllocError);
        }
        if HARDENED && !self.block_sound(after.cast(), after_size, class_of(after_size >> GRANULE_SHIFT)) {
            return Err(self.keep_and_repair(Damaged { at: after }, old));
        }
        // SAFETY: the free block after is on its list; the grown block lies inside the span
        // (it ends inside that free block); the rest of the free block, if any, lies between the
        // grown block and a block that is not free.
        unsafe {
            self.unlink(after, after_size);
            let r = self.record_mut(record);
            r.set_mark(last, ENDS, false);
            r.set_mark(last + (extra >> GRANULE_SHIFT), ENDS, true);
            if after_size > extra {
                self.link(offset_within(ptr, new_bytes), after_size - extra);
            }
        }
        self.free -= extra;
        Ok(())
    }

    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError> {
        let (old_bytes, new_bytes, block) = self.resize_target(ptr, old, new_size)?;
        if new_bytes >= old_bytes {
            return Ok(());
        }
        let Located { record, first, last, tail, .. } = block;
        if HARDENED && tail & STARTS == 0 {
            // The tail merges with the free block after: checked while the marks are intact
            // (`ENDS` for the head: the block before is not merged with).
            if let Err(damaged) = self.neighbours_sound(record, ptr, old_bytes, ENDS, tail) {
                return Err(self.keep_and_repair(damaged, old));
            }
        }
        // SAFETY: both boundaries lie inside the block, inside the span; the tail, unmarked, is
        // given up by the caller (1-3) and released, merged with a free block after it.
        unsafe {
            let r = self.record_mut(record);
            r.set_mark(first + (new_bytes >> GRANULE_SHIFT), ENDS, true);
            r.set_mark(last, ENDS, false);
            self.release(record, offset_within(ptr, new_bytes), old_bytes - new_bytes);
        }
        Ok(())
    }

    fn region_layout_for(&self, layout: Layout) -> Option<Layout> {
        // A fresh region keeps its bookkeeping at its end, so its one free block holds `size`
        // bytes from the aligned point on if the bookkeeping leaves them: the fallback search
        // finds it whenever the good fit does not. The bookkeeping grows with the region, which
        // may start up to `align - 1` bytes before the aligned point and run past the length
        // asked: it is bounded by that of a region twice as long plus `align`, and a longer
        // tail pays for its own bookkeeping (a 64th of it, and a granule or two of rounding).
        let size = block_bytes(layout);
        let align = layout.align().max(GRANULE);
        let mut meta = RegionRecord::meta_bytes(size);
        for _ in 0..8 {
            let len = size.checked_add(meta)?;
            let bound = RegionRecord::meta_bytes(len.checked_mul(2)?.checked_add(align)?);
            if bound <= meta {
                return Layout::from_size_align(len, align).ok();
            }
            meta = bound;
        }
        None
    }

    /// Removes a region whose record spans exactly what `add_region` made of it (so not one
    /// joined with a neighbour) and whose blocks are all free: at most two free blocks, one on
    /// each side of the bookkeeping.
    fn remove_region(&mut self, region: NonNull<[u8]>) -> Result<usize, RegionError> {
        let wanted = granule_span(region, Self::MIN_REGION).map_err(|_| RegionError::NotRemovable)?;
        let record = self
            .records()
            .find(|r| {
                let span = self.record(*r).span;
                span.start_addr() == wanted.start_addr() && span.len == wanted.len
            })
            .ok_or(RegionError::NotRemovable)?;
        let (span, meta) = (self.record(record).span, self.record(record).meta);
        let before = Span { start: span.start, len: meta.start_addr() - span.start_addr() };
        let after = Span { start: offset(meta.start, meta.len), len: span.end_addr() - meta.end_addr() };
        for piece in [before, after] {
            let whole_free = piece.len == 0
                || (self.record(record).starts_free_block(piece.start_addr())
                    // SAFETY: a free block starts there (checked just before), inside the span.
                    && unsafe { self.free_size_at(record, piece.start, self.record(record).boundary(piece.start_addr())) }
                        == piece.len);
            if !whole_free {
                return Err(RegionError::NotRemovable);
            }
        }
        let damaged = [before, after].into_iter().find(|piece| {
            HARDENED
                && piece.len > 0
                && !self.block_sound(piece.start.cast(), piece.len, class_of(piece.len >> GRANULE_SHIFT))
        });
        if let Some(piece) = damaged {
            self.keep_and_repair(Damaged { at: piece.start }, Layout::new::<u8>());
            return Err(RegionError::NotRemovable);
        }
        for piece in [before, after] {
            if piece.len > 0 {
                // SAFETY: the piece is one whole free block (checked above), so it is on the
                // list of its class.
                unsafe { self.unlink(piece.start, piece.len) };
                self.free -= piece.len;
                self.total -= piece.len;
            }
        }
        self.unlink_record(record);
        Ok(before.len + after.len)
    }

    fn usage(&self) -> HeapUsage {
        HeapUsage { total_bytes: self.total, free_bytes: self.free, largest_free_block: self.largest_free() }
    }

    fn take_corruption(&mut self) -> Option<Misuse> {
        self.damage.take()
    }

    fn check_invariants(&self) -> Result<(), InvariantError> {
        let fail = |what, at: *const u8, value| Err(InvariantError::new(what, at, value));
        let null = core::ptr::null();
        // Regions: disjoint, bookkeeping inside and marked, sentinels set, marks well nested;
        // every stretch of unmarked granules is one free block whose size tags agree.
        let mut total = 0;
        let mut stretches = 0;
        let mut stretch_bytes = 0;
        for (i, r) in self.records().enumerate() {
            if i > self.total / GRANULE + 1 {
                return fail("region list has a cycle", null, i);
            }
            let record = self.record(r);
            let at = record.span.start.as_ptr().cast_const();
            if self.records().skip(i + 1).any(|o| self.record(o).span.overlaps(&record.span)) {
                return fail("two regions overlap", at, record.span.len);
            }
            if !record.span.contains_range(record.meta.start_addr(), record.meta.len)
                || !record.has(record.meta.start_addr(), STARTS)
                || !record.has(record.meta.end_addr(), ENDS)
            {
                return fail("region bookkeeping is outside its region or not marked", at, record.meta.len);
            }
            let last = record.granules();
            if !record.has(record.span.start_addr(), ENDS) || !record.has(record.span.end_addr(), STARTS) {
                return fail("region's sentinel marks are missing", at, record.span.len);
            }
            let mut result = Ok(());
            let mut open: Option<usize> = None;
            let mut free_from: Option<usize> = None;
            let mut stretch = |from: usize, to: usize, result: &mut Result<(), InvariantError>| {
                let block = with_addr(record.span.start, from);
                let len = to - from;
                if len > GRANULE {
                    // SAFETY: the stretch is unmarked memory inside the span: free memory the
                    // heap owns, at least two granules long.
                    let (head, foot) = unsafe {
                        (
                            offset(block, GRANULE).cast::<usize>().read(),
                            offset(block, len - WORD).cast::<usize>().read(),
                        )
                    };
                    if (head, foot) != (len, len) && result.is_ok() {
                        *result =
                            fail("free block's size tags disagree with its extent", block.as_ptr(), len);
                    }
                }
                stretches += 1;
                stretch_bytes += len;
            };
            record.bits.for_each_nonzero_pair(0..last + 1, &mut |b, marks| {
                let addr = record.boundary_addr(b);
                let here = with_addr(record.span.start, addr).as_ptr();
                if marks & ENDS != 0 {
                    // Boundary 0's is the sentinel: memory before the span counts as allocated.
                    if b != 0 && open.take().is_none() && result.is_ok() {
                        result = fail("allocated block ends without a start", here, b);
                    }
                    free_from = Some(addr);
                }
                if marks & STARTS != 0 {
                    if open.is_some() && result.is_ok() {
                        result = fail("allocated blocks overlap", here, b);
                    }
                    if let Some(from) = free_from.take() {
                        if from < addr {
                            stretch(from, addr, &mut result);
                        }
                    }
                    // Boundary `N`'s is the sentinel: nothing is open after it.
                    if b != last {
                        open = Some(addr);
                    }
                }
            });
            result?;
            if open.is_some() {
                return fail("allocated block runs past its region's end", at, record.span.len);
            }
            total += record.span.len - record.meta.len;
        }
        if total != self.total {
            return fail("region bytes disagree with the total", null, total);
        }
        // Lists: each member checked to be a free stretch before it is read.
        let mut listed = 0;
        let mut listed_bytes = 0;
        for fl in 0..FL_COUNT {
            if (self.fl_bitmap >> fl & 1 == 1) != (self.sl_bitmaps[fl] != 0) {
                return fail("first-level bit map disagrees with the second level", null, fl);
            }
            for sl in 0..SL_COUNT {
                if (self.sl_bitmaps[fl] >> sl & 1 == 1) != self.heads[fl][sl].is_some() {
                    return fail("second-level bit map disagrees with its list", null, fl * SL_COUNT + sl);
                }
                let mut prev = None;
                let mut cursor = self.heads[fl][sl];
                let mut on_list = 0;
                while let Some(node) = cursor {
                    let at = node.as_ptr().cast::<u8>().cast_const();
                    let addr = at.addr();
                    on_list += 1;
                    if on_list > self.total / GRANULE + 1 {
                        return fail("free list has a cycle", at, fl * SL_COUNT + sl);
                    }
                    let found = self.record_of(addr).filter(|&r| self.record(r).starts_free_block(addr));
                    let Some(r) = found else {
                        return fail(
                            "free list member is not a free block inside a region",
                            at,
                            fl * SL_COUNT + sl,
                        );
                    };
                    let record = self.record(r);
                    // SAFETY: a free block starts at `node`, at that boundary of the record's span.
                    let len = unsafe { self.free_size_at(r, node.cast(), record.boundary(addr)) };
                    let end = addr.checked_add(len).filter(|&end| {
                        len % GRANULE == 0 && end <= record.span.end_addr() && record.has(end, STARTS)
                    });
                    if end.is_none() {
                        return fail("free block's size does not reach the next allocated block", at, len);
                    }
                    if class_of(len >> GRANULE_SHIFT) != (fl, sl) {
                        return fail("free block is on the list of another class", at, len);
                    }
                    // SAFETY: the node starts a free stretch inside a region: it holds the
                    // `FreeHead` the heap wrote.
                    let (next, back) = unsafe { (self.next_of(node), self.prev_of(node)) };
                    if back != prev {
                        return fail("free list back link is wrong", at, fl * SL_COUNT + sl);
                    }
                    listed += 1;
                    listed_bytes += len;
                    prev = Some(node);
                    cursor = next;
                }
            }
        }
        if listed != stretches || listed_bytes != stretch_bytes {
            return fail("free lists and free memory disagree", null, listed);
        }
        if listed_bytes != self.free {
            return fail("free bytes on the lists disagree with the count", null, listed_bytes);
        }
        Ok(())
    }

    fn walk(&self, visit: &mut dyn FnMut(Part)) {
        for r in self.records() {
            let record = self.record(r);
            visit(Part { kind: PartKind::Region, start: record.span.start.as_ptr(), len: record.span.len });
            visit(Part {
                kind: PartKind::Bookkeeping,
                start: record.meta.start.as_ptr(),
                len: record.meta.len,
            });
        }
        for fl in 0..FL_COUNT {
            for sl in 0..SL_COUNT {
                let mut cursor = self.heads[fl][sl];
                while let Some(node) = cursor {
                    // SAFETY: `node` is on list `(fl, sl)`.
                    let len = unsafe { Self::listed_size(node, fl, sl) };
                    visit(Part { kind: PartKind::Free, start: node.as_ptr().cast::<u8>(), len });
                    // SAFETY: list members hold `FreeHead`s the heap owns.
                    cursor = unsafe { self.next_of(node) };
                    if HARDENED && !self.follows(node, cursor) {
                        break;
                    }
                }
            }
        }
    }
}

// SAFETY: `block_layout` returns a layout only for an address where an allocated block starts
// (a `STARTS` mark outside the bookkeeping, not the sentinel), with the length up to the first
// `ENDS` mark after it, which is that block's end (allocated blocks do not overlap);
// `deallocate` checks exactly those two marks for the rounded size of the layout returned, so
// it frees that block.
unsafe impl<const HARDENED: bool> BlockLookup for TlsfHeap<HARDENED> {
    /// O(block length / (32 granules)): the block's end is the next `ENDS` mark, found a word
    /// of the bit map at a time.
    fn block_layout(&self, ptr: NonNull<u8>) -> Result<Layout, Misuse> {
        let addr = ptr.as_ptr().addr();
        let record = self
            .record_of(addr)
            .map(|r| self.record(r))
            .filter(|r| addr % GRANULE == 0 && !r.meta.contains(addr) && r.has(addr, STARTS));
        let layout = record.and_then(|r| {
            let first = r.boundary(addr);
            let last = r.bits.find_pair(first + 1..r.granules() + 1, 0)?;
            Layout::from_size_align((last - first) << GRANULE_SHIFT, GRANULE).ok()
        });
        layout.ok_or_else(|| self.diagnose(ptr, Layout::new::<u8>()))
    }
}
