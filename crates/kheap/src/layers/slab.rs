//! `SlabHeap<B>`: small objects in slabs of one size class each, carved from a backing heap.
//!
//! A request of at most [`SLAB_MAX`] bytes (alignment folded in) takes an object of its
//! [`SizeClass`] from a *slab*: a block of the backing heap, a power of two in size and aligned
//! to it, cut into objects of that class. Larger requests go straight to the backing heap.
//!
//! Why this shape:
//! - **No per-object header, and nothing written into free objects.** A slab keeps its
//!   bookkeeping in one header at its end: a bitmap of the objects in use. Allocation takes the
//!   lowest clear bit, free clears it. A use-after-free write therefore cannot corrupt the
//!   heap's links (there are none in user memory), and every double free, interior free and
//!   wrong-class free is detected exactly from the bitmap.
//! - **Objects from the slab's start.** A slab of `S` bytes is aligned to `S` (4 KiB or more),
//!   so object `i` at `i × size` has the alignment of the class's size: every request of the
//!   class is aligned without padding.
//! - **Identity by address, confirmed by the backing heap.** The slab of an object is its
//!   address rounded down to the class's slab size; it is taken for a slab only if the backing
//!   heap says a live block of that size starts there ([`BlockLookup`]) and the header's tag,
//!   derived from the slab's address, matches. Direct blocks of small requests (made only when
//!   the backing heap cannot give a slab) are kept shorter than any slab, so they are never
//!   taken for one.
//! - **Hysteresis.** A slab that empties is kept as its class's *spare* (one per class), even
//!   when it held the layer's last object, so a free/alloc pair at a slab boundary never goes
//!   to the backing heap; a second empty slab goes back at once. Spares are handed back before
//!   any request is refused, and on [`trim`](RawHeap::trim).

use core::alloc::Layout;
use core::mem::size_of;
use core::ptr::NonNull;

use crate::contract::raw_heap::{allocate_each, deallocate_each};
use crate::{
    AllocError, BlockLookup, HeapUsage, InvariantError, Misuse, MisuseKind, Part, PartKind, RawHeap,
    RegionError, SizeClass,
};

/// The largest request (size rounded up to its alignment) served from a slab; larger ones go
/// to the backing heap.
pub const SLAB_MAX: usize = 512;

/// The region bytes from which [`Heap`](crate::Heap) makes slabs: 8 MiB. Below it, small
/// requests are the backing heap's blocks, as larger ones are.
///
/// A slab layer keeps, per class, a slab it is filling and free objects only that class can
/// use: measured at the first refused request of a random mix (the benchmark suite's
/// efficiency workloads), about 150-200 KiB whatever the heap's size, for 32 classes whose
/// slabs are 4 to 16 KiB. That is a fifth of a 1 MiB heap (the default heap then kept 65-80 %
/// of it for callers, TLSF alone 84-97 %) and a few hundredths of a 16 MiB one (where slabs
/// cost nothing measurable and are faster). So slabs start once the heap holds 16 times the
/// most all classes' slabs take at once (32 classes × 16 KiB); tutorial heaps (Blog OS:
/// 100 KiB, rCore: 3 MiB) stay TLSF and lose nothing to slabs. A heap that had a region below
/// it while it had no slab (a small first region; regions given back) serves small requests
/// from TLSF from then on, even past it: its small blocks from then are not counted, and slabs
/// beside them would make every small free take the slow identity check.
pub const SLABS_FROM: usize = 16 * SLAB_CLASSES * MAX_SLAB;

/// The number of size classes served from slabs: those up to [`SLAB_MAX`].
const SLAB_CLASSES: usize = match Layout::from_size_align(SLAB_MAX, 1) {
    Ok(layout) => match SizeClass::for_layout(layout) {
        Some(class) => class.index() + 1,
        None => panic!("SLAB_MAX has no size class"),
    },
    Err(_) => panic!("SLAB_MAX is not a size"),
};

/// Objects one slab can hold at most: the bitmap's length in bits.
const MAX_OBJECTS: usize = 512;
const WORD_BITS: usize = usize::BITS as usize;
const BITMAP_WORDS: usize = MAX_OBJECTS / WORD_BITS;

/// The smallest slab; every slab size is a power of two at least this large.
const MIN_SLAB: usize = 4096;

/// The largest slab (that of the largest class).
const MAX_SLAB: usize = slab_size(SLAB_MAX);

/// Buckets of the slab-start filter ([`SlabHeap`]'s `slab_starts`).
const SLAB_FILTER: usize = 1024;

/// The bucket of the slab-start filter for a slab starting at `base` (a multiple of
/// `MIN_SLAB`): consecutive slab-sized places get consecutive buckets, so in a heap of up to
/// `SLAB_FILTER * MIN_SLAB` bytes (4 MiB) no two places share one.
#[inline(always)]
fn filter_bucket(base: NonNull<u8>) -> usize {
    (base.as_ptr().addr() / MIN_SLAB) % SLAB_FILTER
}

/// Mixed into a slab's tag so that no plausible data (zeros, small integers, pointers) is one.
const TAG_KEY: usize = 0x6b68_6561_705f_736c_u64 as usize;

/// The tag a slab of class `class` at `base` carries in its header: the fast identity check
/// confirms the slab and its class with one comparison.
#[inline(always)]
const fn tag_for(base: usize, class: usize, secret: usize) -> usize {
    base.rotate_left(23) ^ TAG_KEY ^ secret ^ class
}

/// A secret for a heap whose first region starts at `start`.
fn new_secret(start: usize) -> usize {
    // The low byte clear, so tags keep the class bits to themselves; never zero, since zero
    // means "not chosen yet".
    (crate::secret::draw(TAG_KEY as u64, start) & !0xff) | 0x100
}

/// The class a tag read at `base` names, if it is a slab tag at all.
#[inline]
fn class_of_tag(tag: usize, base: usize, secret: usize) -> Option<usize> {
    let class = tag ^ tag_for(base, 0, secret);
    (class < SLAB_CLASSES).then_some(class)
}

/// The slab size of a class of `size`-byte objects: room for about 32 objects, at least 4 KiB.
const fn slab_size(size: usize) -> usize {
    let wanted = (32 * size).next_power_of_two();
    if wanted < MIN_SLAB {
        MIN_SLAB
    } else {
        wanted
    }
}

/// Which list of its class a slab is on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum List {
    /// Some objects free, some in use (or, after a refused hand-back, all free).
    Partial = 0,
    /// No object free.
    Full = 1,
    /// Every object free, kept for reuse.
    Spare = 2,
}

/// The bookkeeping at the end of every slab.
#[repr(C)]
struct SlabHeader {
    /// Invariant: `tag_for(slab base address, class, the heap's secret)`.
    tag: usize,
    /// Invariant: the neighbours on the class list `list` names (doubly linked, null-ended).
    prev: Option<NonNull<SlabHeader>>,
    next: Option<NonNull<SlabHeader>>,
    /// Invariant: the class's index, `< SLAB_CLASSES`.
    class: u8,
    /// Invariant: the list this slab is on.
    list: List,
    /// Invariant: the number of clear bits in `used` (free objects).
    free_count: u16,
    /// Invariant: every word of `used` before this index is all ones.
    hint: u16,
    /// Bit `i` is set when object `i` is in use; bits from the class's object count on are
    /// always set, so they are never handed out.
    used: [usize; BITMAP_WORDS],
}

/// Bytes a slab's header takes at its end.
const HEADER: usize = size_of::<SlabHeader>();

/// The shape of one class's slabs.
#[derive(Clone, Copy)]
struct Geometry {
    /// Object size in bytes.
    size: usize,
    /// Slab size: a power of two, also the slab's alignment.
    slab: usize,
    /// Objects per slab, at most `MAX_OBJECTS`.
    objects: usize,
    /// `ceil(2^32 / size)`: `offset / size` as a multiply and shift, exact for offsets below
    /// 2^16 (slabs are at most 16 KiB).
    reciprocal: u64,
}

impl Geometry {
    const fn of(index: usize) -> Geometry {
        let size = match SizeClass::from_index(index) {
            Some(class) => class.size(),
            None => panic!("no such class"),
        };
        let slab = slab_size(size);
        let by_room = (slab - HEADER) / size;
        let objects = if by_room < MAX_OBJECTS { by_room } else { MAX_OBJECTS };
        Geometry { size, slab, objects, reciprocal: (1u64 << 32).div_ceil(size as u64) }
    }

    /// The object index of byte offset `offset` into a slab, if an object starts there.
    #[inline(always)]
    fn object_at(&self, offset: usize) -> Option<usize> {
        let index = ((offset as u64 * self.reciprocal) >> 32) as usize;
        (index < self.objects && index * self.size == offset).then_some(index)
    }

    /// The layout of a slab of this class, as asked of the backing heap.
    #[inline(always)]
    fn slab_layout(&self) -> Layout {
        // SAFETY: `slab` is a power of two no larger than `MAX_SLAB`, so the layout is valid.
        unsafe { Layout::from_size_align_unchecked(self.slab, self.slab) }
    }
}

const GEOMETRY: [Geometry; SLAB_CLASSES] = {
    let mut table = [Geometry { size: 0, slab: 0, objects: 0, reciprocal: 0 }; SLAB_CLASSES];
    let mut index = 0;
    while index < SLAB_CLASSES {
        table[index] = Geometry::of(index);
        index += 1;
    }
    table
};

/// Whether a block of the backing heap has a slab's shape: a slab size long and aligned to it.
/// Only such blocks are ever read for a tag (`slab_at`), and every one of them has an
/// initialised tag word: a slab's own, or the mark `SlabHeap::mark_not_slab` wrote.
#[inline(always)]
fn slab_shaped(ptr: NonNull<u8>, len: usize) -> bool {
    len.is_power_of_two() && (MIN_SLAB..=MAX_SLAB).contains(&len) && ptr.as_ptr().addr() & (len - 1) == 0
}

/// Writes a value that is no slab's tag where a slab of the block's length would keep its tag,
/// in a block of the backing heap about to be handed out directly that has a slab's shape:
/// `slab_at` then reads initialised bytes that name no class, whatever the caller later writes
/// or leaves unwritten.
///
/// # Safety
///
/// 1. `block` is a block of the backing heap not yet handed out, `len` bytes long, with
///    [`slab_shaped`].
#[cold]
#[inline(never)]
unsafe fn mark_not_slab(block: NonNull<u8>, len: usize, secret: usize) {
    // Names class `usize::MAX` under any secret (secrets differ only above the low byte).
    let not_a_tag = tag_for(block.as_ptr().addr(), 0, secret) ^ usize::MAX;
    // SAFETY: (1) the place lies inside the block (`len >= MIN_SLAB > HEADER`), aligned (`block`
    // is aligned to `len`, `len - HEADER` is a multiple of the header's alignment), and nobody
    // else uses the block yet.
    unsafe { block.add(len - HEADER).cast::<usize>().write(not_a_tag) };
}

/// Whether a block at `ptr` resized to `new_size` bytes could have a slab's shape with some of
/// its first `new_size` bytes where a slab keeps its tag: a slab size `s` that `ptr` is aligned
/// to with `s - HEADER < new_size <= s`.
#[inline]
fn tag_place_would_hold_kept_bytes(ptr: NonNull<u8>, new_size: usize) -> bool {
    let mut slab = MIN_SLAB;
    while slab <= MAX_SLAB && ptr.as_ptr().addr() % slab == 0 {
        if slab - HEADER < new_size && new_size <= slab {
            return true;
        }
        slab *= 2;
    }
    false
}

/// The heads of one class's three lists.
#[derive(Clone, Copy)]
struct ClassLists {
    partial: Option<NonNull<SlabHeader>>,
    full: Option<NonNull<SlabHeader>>,
    /// At most one slab: the class's spare.
    spare: Option<NonNull<SlabHeader>>,
}

impl ClassLists {
    const EMPTY: ClassLists = ClassLists { partial: None, full: None, spare: None };

    fn head(&mut self, list: List) -> &mut Option<NonNull<SlabHeader>> {
        match list {
            List::Partial => &mut self.partial,
            List::Full => &mut self.full,
            List::Spare => &mut self.spare,
        }
    }
}

/// A slab layer in front of a backing heap `B`: small requests (at most [`SLAB_MAX`] bytes)
/// from per-class slabs, larger ones from `B`.
///
/// - **Speed**: allocate and free of a small object touch one slab header: a bitmap word and
///   two counters, O(1) (the bitmap has at most eight words, and a hint skips the full ones).
///   A free also asks the backing heap to confirm the slab ([`BlockLookup::block_layout`]).
/// - **Memory**: an object wastes less than 8 bytes up to 128 bytes and less than 1/8 of its
///   size above (the [`SizeClass`] bound); a slab's header and tail take under 5 % of it; at
///   most one empty slab per class is kept (16 KiB at most for the largest class, about
///   256 KiB over all 32 classes), and given back before any request is refused.
/// - **Refusals**: a request is refused only when its class has no free object and the
///   backing heap refuses both a slab and the request itself. A free object serves its own
///   class only, so the walk reports it as [`PartKind::Cached`] and
///   [`HeapUsage::largest_free_block`] is the backing heap's: a request of another class may be
///   refused while objects of this one are free (as in every slab allocator), never while the
///   backing heap has a block that could hold it.
/// - **Misuse**: double, interior and wrong-class frees of slab objects are detected exactly
///   and change nothing; everything else is passed to the backing heap, which reports what it
///   detects.
///
/// ```
/// use core::alloc::Layout;
/// use kheap::{RawHeap, SlabHeap, TlsfHeap};
///
/// let memory = Box::leak(vec![0u8; 256 * 1024].into_boxed_slice());
/// let mut heap = SlabHeap::new(TlsfHeap::new());
/// // SAFETY: the leaked buffer lives for ever and only the heap uses it.
/// unsafe { heap.add_region(core::ptr::NonNull::from(memory)) }.unwrap();
/// let small = heap.allocate(Layout::new::<[u8; 20]>()).unwrap();
/// assert_eq!(small.len(), 24); // its size class
/// // SAFETY: `small` is live with this layout.
/// unsafe { heap.deallocate(small.cast(), Layout::new::<[u8; 20]>()) }.unwrap();
/// // A second free of the same object is refused, and changes nothing.
/// // SAFETY: a double free, which the slab's bitmap detects.
/// assert!(unsafe { heap.deallocate(small.cast(), Layout::new::<[u8; 20]>()) }.is_err());
/// heap.check_invariants().unwrap();
/// ```
pub struct SlabHeap<B> {
    backing: B,
    /// Invariant: every slab of class `c` is on exactly one of `classes[c]`'s lists, the one
    /// its header names; every slab is a live block of `backing` of at least its slab size.
    classes: [ClassLists; SLAB_CLASSES],
    /// Invariant: the sum over all slabs of free objects times their size.
    free_bytes: usize,
    /// Invariant: the sum over all slabs of what holds no object (header and tail): the
    /// layer's bookkeeping, left out of `usage().total_bytes`.
    overhead: usize,
    /// Invariant: the number of classes with a spare slab.
    spares: usize,
    /// Per bucket (`filter_bucket`), how many live slabs start at an address of it. Saturates
    /// at `u16::MAX` and then stays, so a zero is exact: no slab starts in that bucket. A free
    /// with a layout too large for a slab needs the slow check that it does not free a slab
    /// (`slab_at`, which asks the backing heap for the block's length: O(length) in TLSF) only
    /// when its bucket is not zero: a kernel's page-sized buffers are slab-shaped, and without
    /// the filter each of their frees paid it. Invariant: below `u16::MAX`, exact.
    slab_starts: [u16; SLAB_FILTER],
    /// Small blocks taken straight from the backing heap (when it had no room for a slab) and
    /// not yet freed. While there are none, every correct free of a small layout is a slab
    /// object's, and the fast identity check (`tagged_slab`) may be used.
    direct_small: usize,
    /// The regions given to the heap, as address ranges (touching ones joined), for the fast
    /// identity check: it reads a slab's tag only where memory is sure to be readable.
    /// Invariant: `spans[..span_count]` are regions the backing heap accepted.
    spans: [(usize, usize); MAX_SPANS],
    span_count: usize,
    /// More regions than `spans` holds: the fast check is off, every free asks the backing heap.
    spans_overflowed: bool,
    /// How many spans the fast check may use: `span_count` while no direct small block is
    /// live and the spans did not overflow, else 0 (the check is off). One field for the
    /// free's fast path to read. Invariant: kept so by `refresh_fast_check`.
    fast_spans: usize,
    /// Mixed into every slab tag; chosen when the first slab is made (zero until then).
    secret: usize,
    /// Bytes of the regions the backing heap accepted (what it said each made usable).
    region_bytes: usize,
    /// Slabs are made only once `region_bytes` reaches this ([`with_slabs_from`](Self::with_slabs_from)).
    slabs_from: usize,
    /// The classes served from slabs: `SLAB_CLASSES`, or 0 in *direct mode*, where small
    /// requests go to the backing heap as larger ones do, on the same path (one comparison
    /// with this field in place of a constant). Invariant: 0 exactly when `slabless() &&
    /// slabs_refused()`, kept so by `refresh_mode`.
    slab_classes: usize,
    /// Set once the layer has had a region while in direct mode: small blocks of the backing
    /// heap's may then be live, uncounted (direct mode counts nothing), so slabs are never
    /// made (a free could not tell such a block from a slab object by its tag alone).
    direct_era: bool,
}

/// Regions the fast identity check keeps track of; a heap grown more often than this asks the
/// backing heap on every free of a small object.
const MAX_SPANS: usize = 8;

// SAFETY: the layer owns its slabs (blocks of its own backing heap) and shares them with no
// one; moving it to another thread moves that ownership with it, as for `B`.
unsafe impl<B: Send> Send for SlabHeap<B> {}

impl<B> SlabHeap<B> {
    /// A slab layer in front of `backing`, with no slab yet; `const`, so it can initialise a
    /// `static`.
    pub const fn new(backing: B) -> Self {
        SlabHeap {
            backing,
            classes: [ClassLists::EMPTY; SLAB_CLASSES],
            free_bytes: 0,
            overhead: 0,
            spares: 0,
            slab_starts: [0; SLAB_FILTER],
            direct_small: 0,
            spans: [(0, 0); MAX_SPANS],
            span_count: 0,
            spans_overflowed: false,
            fast_spans: 0,
            secret: 0,
            region_bytes: 0,
            slabs_from: 0,
            slab_classes: SLAB_CLASSES,
            direct_era: false,
        }
    }

    /// The same layer, making slabs only once its regions total at least `bytes` (until then,
    /// small requests are the backing heap's blocks); `const`. [`SlabHeap::new`] makes slabs
    /// from the first region; [`Heap`](crate::Heap) from [`SLABS_FROM`].
    pub const fn with_slabs_from(mut self, bytes: usize) -> Self {
        self.slabs_from = bytes;
        self.choose_mode();
        self
    }

    /// The backing heap.
    pub fn backing(&self) -> &B {
        &self.backing
    }
}

impl<B: Default> Default for SlabHeap<B> {
    fn default() -> Self {
        Self::new(B::default())
    }
}

/// The start of the slab whose header is `header`, with the header's provenance.
///
/// # Safety
///
/// 1. `header` is the header of a slab of class `class`.
#[inline(always)]
unsafe fn slab_base(header: NonNull<SlabHeader>, class: usize) -> NonNull<u8> {
    // SAFETY: (1) the header lies `slab - HEADER` bytes after the slab's start, inside the
    // same block of the backing heap.
    unsafe { header.cast::<u8>().sub(GEOMETRY[class].slab - HEADER) }
}

impl<B> SlabHeap<B> {
    /// Recomputes `fast_spans` after a change to the spans or to `direct_small`.
    fn refresh_fast_check(&mut self) {
        let on = self.direct_small == 0 && !self.spans_overflowed;
        self.fast_spans = if on { self.span_count } else { 0 };
    }

    /// Whether no slab may be made: below [`with_slabs_from`](Self::with_slabs_from)'s size,
    /// or ever after a region was had in direct mode (`direct_era`). A heap that starts
    /// small and grows keeps serving small requests from the backing heap: slabs made then
    /// would have to take the slow identity check on every small free while any early small
    /// block lives, slower than the backing heap's own small path.
    const fn slabs_refused(&self) -> bool {
        self.region_bytes < self.slabs_from || self.direct_era
    }

    /// The slab class serving `layout` now: none in direct mode, or for a request too large
    /// for a slab.
    #[inline(always)]
    fn serving_class(&self, layout: Layout) -> Option<usize> {
        // Classes grow with their index, so the slab classes are the first `SLAB_CLASSES`; a
        // request aligned to more than `SLAB_MAX` rounds up past them, or has no class at all.
        let class = SizeClass::for_layout(layout)?.index();
        (class < self.slab_classes).then_some(class)
    }

    /// Whether the layer has no slab at all: every small block is then the backing heap's.
    #[inline(always)]
    const fn slabless(&self) -> bool {
        self.overhead == 0
    }

    /// Sets `slab_classes` for the mode the layer is in now (direct mode: no slab, and none
    /// may be made); returns whether that is direct mode.
    const fn choose_mode(&mut self) -> bool {
        let direct = self.slabless() && self.slabs_refused();
        self.slab_classes = if direct { 0 } else { SLAB_CLASSES };
        direct
    }

    /// Recomputes `slab_classes` (direct mode), `direct_era` and `fast_spans` after a change to
    /// what they depend on: the regions, the slabs, the direct small blocks.
    fn refresh_mode(&mut self) {
        let direct = self.choose_mode();
        self.direct_era |= direct && self.region_bytes > 0;
        self.refresh_fast_check();
    }
}

impl<B: BlockLookup> SlabHeap<B> {
    /// Remembers a region the backing heap accepted, joined to one it touches.
    fn record_span(&mut self, start: usize, end: usize) {
        for span in &mut self.spans[..self.span_count] {
            if span.1 == start {
                span.1 = end;
                return;
            }
            if span.0 == end {
                span.0 = start;
                return;
            }
        }
        if self.span_count < MAX_SPANS {
            self.spans[self.span_count] = (start, end);
            self.span_count += 1;
        } else {
            self.spans_overflowed = true;
        }
        self.refresh_fast_check();
    }

    /// Takes `[start, end)`, a region just removed, out of the spans: the span holding it is
    /// dropped, cut at one end, or split in two (with no slot left for the second piece, the
    /// fast check is turned off, as when regions overflow the spans).
    fn forget_span(&mut self, start: usize, end: usize) {
        let Some(index) = self.spans[..self.span_count].iter().position(|&(s, e)| s <= start && end <= e)
        else {
            return;
        };
        let (s, e) = self.spans[index];
        match (s == start, e == end) {
            (true, true) => {
                self.span_count -= 1;
                self.spans[index] = self.spans[self.span_count];
            }
            (true, false) => self.spans[index].0 = end,
            (false, true) => self.spans[index].1 = start,
            (false, false) => {
                self.spans[index].1 = start;
                if self.span_count < MAX_SPANS {
                    self.spans[self.span_count] = (end, e);
                    self.span_count += 1;
                } else {
                    self.spans_overflowed = true;
                }
            }
        }
        self.refresh_fast_check();
    }

    /// The fast identity check: the header of the slab of class `class` holding `ptr` if its tag
    /// matches, read only when the whole slab lies in a region (so the read cannot fault) and
    /// no direct small block is live (so, in correct use, the pointer lies in one of our slabs and
    /// the read is of our own header). A free with the wrong class's layout reads region memory
    /// that may be another block's or free: harmless on hardware, but memory nobody wrote is
    /// uninitialised to Miri, so tests of that misuse give the heap initialised memory.
    #[inline(always)]
    fn tagged_slab(&self, ptr: NonNull<u8>, class: usize) -> Option<NonNull<SlabHeader>> {
        let slab = GEOMETRY[class].slab;
        let into = ptr.as_ptr().addr() & (slab - 1);
        let start = ptr.as_ptr().addr() - into;
        // SAFETY: `fast_spans <= span_count <= MAX_SPANS` (the fields' invariants). None while
        // the check is off.
        let spans = unsafe { self.spans.get_unchecked(..self.fast_spans) };
        // The slab `[start, start + slab)` lies in `[s, e)`; `e >= slab` for any real region
        // (and a span ending lower holds no slab: its saturated bound admits only address 0).
        if !spans.iter().any(|&(s, e)| s <= start && start <= e.saturating_sub(slab)) {
            return None;
        }
        // SAFETY: the slab, `into` bytes before `ptr`, lies inside a region (valid for reads for
        // as long as the heap is used), so its header's place `slab - HEADER` bytes further is
        // not null, and it is aligned (`start` is aligned to `slab`, `slab - HEADER` is a
        // multiple of the header's alignment).
        let header = unsafe {
            NonNull::new_unchecked(ptr.as_ptr().wrapping_sub(into).wrapping_add(slab - HEADER))
                .cast::<SlabHeader>()
        };
        // SAFETY: as above; any value is a valid `usize`.
        let tag = unsafe { header.cast::<usize>().read() };
        (tag == tag_for(start, class, self.secret)).then_some(header)
    }

    /// Frees a block freed with a layout too large for a slab: the backing heap's, unless it is
    /// a slab's first object freed as the whole slab would be (the backing heap would take
    /// the slab back while its objects are in use).
    ///
    /// # Safety
    ///
    /// As [`RawHeap::deallocate`].
    #[inline(never)]
    unsafe fn deallocate_large(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Misuse> {
        if ptr.as_ptr().addr() % MIN_SLAB == 0
            && layout.size() < 2 * MAX_SLAB
            && self.slab_starts[filter_bucket(ptr)] != 0
        {
            if let Some((header, _)) = self.slab_at(ptr) {
                // SAFETY: `slab_at` found a live slab.
                let class = usize::from(unsafe { (*header.as_ptr()).class });
                return Err(
                    Misuse::new(MisuseKind::WrongLayout, ptr.as_ptr(), layout).found(geometry_layout(class))
                );
            }
        }
        // SAFETY: the caller's obligations are passed on.
        unsafe { self.backing.deallocate(ptr, layout) }
    }

    /// The header of the slab that starts at `base`, if `base` starts one: the backing heap has
    /// a live block there, a slab size long, and the tag at that size's header matches.
    #[inline(never)]
    fn slab_at(&self, base: NonNull<u8>) -> Option<(NonNull<SlabHeader>, usize)> {
        let slab = self.backing.block_layout(base).ok()?.size();
        // Slabs are made only from blocks exactly their size (`new_slab`).
        if !slab_shaped(base, slab) {
            return None;
        }
        // SAFETY: the backing heap has a live block of `slab` bytes at `base`, so the header's
        // place lies inside it and is aligned (slab - HEADER is a multiple of the header's
        // alignment, base is aligned to the slab). It is initialised: a slab-shaped block is
        // either a slab (its header written by `new_slab`) or a direct block whose place
        // `mark_not_slab` wrote before it was handed out (and `resize` never gives a block
        // this shape).
        let header = unsafe { base.add(slab - HEADER) }.cast::<SlabHeader>();
        // SAFETY: as above, `header` is readable; only the first word is read, any value is
        // valid for a `usize`.
        let tag = unsafe { header.cast::<usize>().read() };
        let class = class_of_tag(tag, base.as_ptr().addr(), self.secret)?;
        // SAFETY: the tag is ours, so the whole header is: initialised, and read only here.
        let own = usize::from(unsafe { (*header.as_ptr()).class });
        (GEOMETRY[class].slab == slab && own == class).then_some((header, slab))
    }

    /// The slab of class `class` that would hold `ptr`: `Ok(Some)` when `ptr` lies in a slab of
    /// that class, `Ok(None)` when in none, `Err` when in a slab of another size (a free with
    /// the wrong layout).
    #[inline]
    fn slab_of(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        class: usize,
    ) -> Result<Option<NonNull<SlabHeader>>, Misuse> {
        let slab = GEOMETRY[class].slab;
        if let Some(header) = self.tagged_slab(ptr, class) {
            return Ok(Some(header));
        }
        let base = round_down(ptr, slab);
        match self.slab_at(base) {
            Some((header, size)) if size == slab => Ok(Some(header)),
            Some((header, size)) if ptr.as_ptr().addr() - base.as_ptr().addr() < size => {
                // SAFETY: `slab_at` found a live slab.
                let own = usize::from(unsafe { (*header.as_ptr()).class });
                Err(Misuse::new(MisuseKind::WrongLayout, ptr.as_ptr(), layout).found(geometry_layout(own)))
            }
            _ => Ok(None),
        }
    }

    /// A small free whose slab the tag did not confirm: a slab found by the span walk, a block
    /// of the backing heap's own, or a mistake.
    ///
    /// # Safety
    ///
    /// As [`RawHeap::deallocate`], for a layout of class `class`.
    #[cold]
    #[inline(never)]
    unsafe fn deallocate_small_slow(
        &mut self,
        ptr: NonNull<u8>,
        layout: Layout,
        class: usize,
    ) -> Result<(), Misuse> {
        if let Some(header) = self.slab_of(ptr, layout, class)? {
            // SAFETY: `slab_of` found a live slab.
            return unsafe { self.free_object(header, ptr, layout, class) };
        }
        // A small block of the backing heap's own (or a mistake it will report).
        // SAFETY: the caller's obligations are passed on; `slab_of` found no slab holding `ptr`.
        unsafe { self.deallocate_small_direct(ptr, layout) }
    }

    /// Frees object `ptr` of the slab `header`, freed with a layout of class `class`.
    ///
    /// # Safety
    ///
    /// 1. `header` is the header of a live slab of this layer (`slab_at` said so).
    #[inline(always)]
    unsafe fn free_object(
        &mut self,
        header: NonNull<SlabHeader>,
        ptr: NonNull<u8>,
        layout: Layout,
        class: usize,
    ) -> Result<(), Misuse> {
        let h = header.as_ptr();
        // SAFETY: (1) passed on.
        let Some((word, bit)) = (unsafe { self.object_bit(header, ptr, class) }) else {
            // SAFETY: (1) the slab starts `slab - HEADER` bytes before its header, which is ours
            // and initialised.
            let (base, own_class) = unsafe { (slab_base(header, class), usize::from((*h).class)) };
            let offset = ptr.as_ptr().addr() - base.as_ptr().addr();
            return Err(diagnose_free(ptr, layout, offset, own_class, class));
        };
        // SAFETY: (1) as above; `object_bit` found the object's bit in the bitmap.
        if unsafe { *(*h).used.get_unchecked(word) } & bit == 0 {
            return Err(double_free(ptr, layout, class));
        }
        // SAFETY: (1), and the object is in use (just checked).
        unsafe { self.put_back(header, class, word, bit, 1) };
        // SAFETY: (1) as above.
        if usize::from(unsafe { (*h).free_count }) == GEOMETRY[class].objects {
            // SAFETY: (1) the slab is live and now empty.
            unsafe { self.emptied(header, class) };
        }
        Ok(())
    }

    /// The bitmap word and bit of object `ptr` of the slab `header`, freed with a layout of
    /// class `class`; `None` if `ptr` is no object's start or the slab is of another class.
    ///
    /// # Safety
    ///
    /// 1. `header` is the header of a live slab of this layer.
    #[inline(always)]
    unsafe fn object_bit(
        &self,
        header: NonNull<SlabHeader>,
        ptr: NonNull<u8>,
        class: usize,
    ) -> Option<(usize, usize)> {
        // SAFETY: (1) the slab starts `slab - HEADER` bytes before its header.
        let base = unsafe { slab_base(header, class) };
        let offset = ptr.as_ptr().addr().wrapping_sub(base.as_ptr().addr());
        // SAFETY: (1) the header is ours and initialised.
        let own_class = usize::from(unsafe { (*header.as_ptr()).class });
        let index = GEOMETRY[class].object_at(offset).filter(|_| own_class == class)?;
        Some((index / WORD_BITS, 1usize << (index % WORD_BITS)))
    }

    /// Gives back the objects of a run gathered by `deallocate_batch`: clears them, counts them,
    /// moves a full slab to the partial list and hands on a slab this leaves empty.
    ///
    /// # Safety
    ///
    /// 1. The run's slab is a live slab of class `class` whose objects in `run.mask` (of word
    ///    `run.word`, `run.count` of them) are in use.
    #[inline(always)]
    unsafe fn put_back_run(&mut self, run: Run, class: usize) {
        // SAFETY: (1).
        unsafe { self.put_back(run.header, class, run.word, run.mask, run.count) };
        // SAFETY: (1) the header is ours, live and initialised.
        if usize::from(unsafe { (*run.header.as_ptr()).free_count }) == GEOMETRY[class].objects {
            // SAFETY: (1) the slab is live and now empty.
            unsafe { self.emptied(run.header, class) };
        }
    }

    /// Marks the `count` objects in `mask` of bitmap word `word` of slab `header` free and counts
    /// them, moving a full slab to the partial list; the caller handles a slab this leaves empty.
    ///
    /// # Safety
    ///
    /// 1. `header` is a live slab of class `class` whose objects in `mask` (of word `word`,
    ///    `count` of them) are in use; `word < BITMAP_WORDS`.
    #[inline(always)]
    unsafe fn put_back(
        &mut self,
        header: NonNull<SlabHeader>,
        class: usize,
        word: usize,
        mask: usize,
        count: u16,
    ) {
        let h = header.as_ptr();
        // SAFETY: (1) the header is ours, live and initialised; the heap is borrowed mutably.
        unsafe {
            *(*h).used.get_unchecked_mut(word) &= !mask;
            (*h).hint = (*h).hint.min(word as u16);
            (*h).free_count += count;
        }
        self.free_bytes += usize::from(count) * GEOMETRY[class].size;
        // SAFETY: (1) as above.
        if unsafe { (*h).list } == List::Full {
            // SAFETY: (1) the slab is on its class's full list.
            unsafe { self.move_to(header, class, List::Partial) };
        }
    }
}

/// Objects of one bitmap word of one slab that a batch free gives back together.
struct Run {
    /// The slab's start and header (a live slab, confirmed by its tag).
    base: NonNull<u8>,
    header: NonNull<SlabHeader>,
    /// The bitmap word, as it was when the run began, and the objects of it in the run.
    word: usize,
    used: usize,
    mask: usize,
    count: u16,
}

/// A free of object `ptr`, already free, with `layout` (class `class`).
#[cold]
#[inline(never)]
fn double_free(ptr: NonNull<u8>, layout: Layout, class: usize) -> Misuse {
    Misuse::new(MisuseKind::DoubleFree, ptr.as_ptr(), layout).found(geometry_layout(class))
}

/// Why a free of `ptr` (at `offset` into a slab of class `own`) with `layout` (class `class`)
/// was refused.
#[cold]
#[inline(never)]
fn diagnose_free(ptr: NonNull<u8>, layout: Layout, offset: usize, own: usize, class: usize) -> Misuse {
    // A class out of range means a damaged header: bookkeeping either way.
    if offset >= GEOMETRY.get(own).map_or(0, |g| g.slab - HEADER) {
        Misuse::new(MisuseKind::Bookkeeping, ptr.as_ptr(), layout)
    } else if own != class {
        Misuse::new(MisuseKind::WrongLayout, ptr.as_ptr(), layout).found(geometry_layout(own))
    } else {
        Misuse::new(MisuseKind::NotBlockStart, ptr.as_ptr(), layout)
    }
}

/// `ptr` rounded down to a multiple of `slab` (a power of two), with its provenance. An address
/// below `slab` (which no heap hands out) is kept as it is.
#[inline(always)]
fn round_down(ptr: NonNull<u8>, slab: usize) -> NonNull<u8> {
    ptr.map_addr(|a| core::num::NonZeroUsize::new(a.get() & !(slab - 1)).unwrap_or(a))
}

/// The layout of one object of slab class `class`.
fn geometry_layout(class: usize) -> Layout {
    SizeClass::from_index(class).map_or(Layout::new::<u8>(), SizeClass::layout)
}

impl<B: RawHeap> SlabHeap<B> {
    /// Unlinks slab `header` from its list.
    ///
    /// # Safety
    ///
    /// 1. `header` is a live slab of class `class`, on the list its header names.
    #[inline]
    unsafe fn unlink(&mut self, header: NonNull<SlabHeader>, class: usize) {
        let h = header.as_ptr();
        // SAFETY: (1) the header and its neighbours are live slab headers of this class.
        unsafe {
            let (prev, next, list) = ((*h).prev, (*h).next, (*h).list);
            match prev {
                Some(p) => (*p.as_ptr()).next = next,
                None => *self.classes[class].head(list) = next,
            }
            if let Some(n) = next {
                (*n.as_ptr()).prev = prev;
            }
            (*h).prev = None;
            (*h).next = None;
        }
    }

    /// Pushes slab `header` (on no list) at the head of `list`.
    ///
    /// # Safety
    ///
    /// 1. `header` is a live slab of class `class`, on no list.
    #[inline]
    unsafe fn push(&mut self, header: NonNull<SlabHeader>, class: usize, list: List) {
        let head = self.classes[class].head(list);
        let old = head.replace(header);
        // SAFETY: (1) the header is live; `old` is the live head of the same list.
        unsafe {
            (*header.as_ptr()).list = list;
            (*header.as_ptr()).prev = None;
            (*header.as_ptr()).next = old;
            if let Some(old) = old {
                (*old.as_ptr()).prev = Some(header);
            }
        }
    }

    /// Moves slab `header` from its list to `list`.
    ///
    /// # Safety
    ///
    /// 1. `header` is a live slab of class `class`, on the list its header names.
    #[inline]
    unsafe fn move_to(&mut self, header: NonNull<SlabHeader>, class: usize, list: List) {
        // SAFETY: (1) passed on; after `unlink` the slab is on no list.
        unsafe {
            self.unlink(header, class);
            self.push(header, class, list);
        }
    }

    /// Takes the lowest free object of slab `header`.
    ///
    /// # Safety
    ///
    /// 1. `header` is a live slab of class `class` on its partial list (so it has a free
    ///    object).
    #[inline(always)]
    unsafe fn pop(&mut self, header: NonNull<SlabHeader>, class: usize) -> NonNull<[u8]> {
        let geometry = &GEOMETRY[class];
        let h = header.as_ptr();
        // SAFETY: (1) the header is live; a partial slab has a clear bit at or after `hint`
        // (the words before it are full), among its objects (bits past them are set).
        let index = unsafe {
            let mut word = usize::from((*h).hint);
            while *(*h).used.get_unchecked(word) == usize::MAX {
                word += 1;
            }
            let used = (*h).used.get_unchecked_mut(word);
            let bit = (!*used).trailing_zeros() as usize;
            *used |= 1 << bit;
            (*h).hint = word as u16;
            (*h).free_count -= 1;
            word * WORD_BITS + bit
        };
        self.free_bytes -= geometry.size;
        // SAFETY: (1) as above.
        if unsafe { (*h).free_count } == 0 {
            // SAFETY: (1) the slab is on its partial list.
            unsafe { self.move_to(header, class, List::Full) };
        }
        // SAFETY: (1) object `index < objects` lies inside the slab, before its header.
        let object = unsafe { slab_base(header, class).add(index * geometry.size) };
        NonNull::slice_from_raw_parts(object, geometry.size)
    }

    /// Takes up to `out.len()` free objects of slab `header`, lowest first, writing them to the
    /// front of `out`; returns how many (at least one when `out` is not empty). A bitmap word's
    /// free objects are taken together: one read and one write of the word for all of them.
    ///
    /// # Safety
    ///
    /// 1. `header` is a live slab of class `class` on its partial list (so it has a free
    ///    object).
    #[inline]
    unsafe fn pop_many(
        &mut self,
        header: NonNull<SlabHeader>,
        class: usize,
        out: &mut [NonNull<u8>],
    ) -> usize {
        let geometry = &GEOMETRY[class];
        let h = header.as_ptr();
        // SAFETY: (1) the header is live and ours; the heap is borrowed mutably.
        let (mut word, free) = unsafe { (usize::from((*h).hint), usize::from((*h).free_count)) };
        // SAFETY: (1).
        let base = unsafe { slab_base(header, class) };
        let wanted = out.len().min(free);
        let mut taken = 0;
        while taken < wanted {
            // SAFETY: (1) the header is live. `word < BITMAP_WORDS`: the slab's free objects are
            // clear bits at or after `hint` (the words before it are full), taken in order, and
            // `wanted` is at most their number, so one is left at or after `word`.
            let used = unsafe { (*h).used.get_unchecked_mut(word) };
            let mut clear = !*used;
            while clear != 0 && taken < wanted {
                let index = word * WORD_BITS + clear.trailing_zeros() as usize;
                clear &= clear - 1;
                // SAFETY: a clear bit is an object, `index < objects`: it lies inside the slab,
                // before its header. `taken < wanted <= out.len()`.
                unsafe { *out.get_unchecked_mut(taken) = base.add(index * geometry.size) };
                taken += 1;
            }
            // The bits still clear are the objects left free in this word.
            *used = !clear;
            if taken < wanted {
                word += 1;
            }
        }
        // SAFETY: (1) as above; `taken <= free_count`. Every word before `word` is full.
        unsafe {
            (*h).hint = word as u16;
            (*h).free_count -= taken as u16;
        }
        self.free_bytes -= taken * geometry.size;
        if taken == free {
            // SAFETY: (1) the slab is on its partial list, and now full.
            unsafe { self.move_to(header, class, List::Full) };
        }
        taken
    }

    /// A slab that just became empty: kept as the class's spare, or given back.
    ///
    /// # Safety
    ///
    /// 1. `header` is a live slab of class `class` with every object free, on its partial list.
    unsafe fn emptied(&mut self, header: NonNull<SlabHeader>, class: usize) {
        // Even the layer's last object keeps its slab as the spare: giving everything back
        // there made an allocate/free pair on an idle heap make and unmake a slab each time
        // (41 % of the default heap's instructions on the markdown trace). `trim` gives it back.
        if self.classes[class].spare.is_none() {
            // SAFETY: (1) the slab is on its partial list.
            unsafe { self.move_to(header, class, List::Spare) };
            self.spares += 1;
        } else {
            // SAFETY: (1) as above.
            unsafe { self.give_back(header, class) };
        }
    }

    /// Hands empty slab `header` back to the backing heap; if the backing heap refuses (it
    /// never should: the block is its own), the slab stays on its partial list, still usable.
    ///
    /// # Safety
    ///
    /// 1. `header` is a live slab of class `class` with every object free, on the list its
    ///    header names.
    unsafe fn give_back(&mut self, header: NonNull<SlabHeader>, class: usize) {
        let geometry = GEOMETRY[class];
        // SAFETY: (1) passed on.
        let list = unsafe { (*header.as_ptr()).list };
        // SAFETY: (1) passed on.
        unsafe { self.unlink(header, class) };
        if list == List::Spare {
            self.spares -= 1;
        }
        // A stale header would make the block look like a slab again once the backing heap
        // hands the memory out as a larger block: wipe the tag first.
        // SAFETY: (1) the header is live and ours.
        unsafe { (*header.as_ptr()).tag = 0 };
        // SAFETY: (1) the header is live.
        let base = unsafe { slab_base(header, class) };
        // SAFETY: (1) the slab is a live block of the backing heap allocated with this layout,
        // and no object of it is in use.
        let given = unsafe { self.backing.deallocate(base, geometry.slab_layout()) };
        match given {
            Ok(()) => {
                self.free_bytes -= geometry.objects * geometry.size;
                self.overhead -= geometry.slab - geometry.objects * geometry.size;
                self.refresh_mode();
                let starts = &mut self.slab_starts[filter_bucket(base)];
                if *starts != u16::MAX {
                    *starts -= 1;
                }
            }
            Err(_) => {
                // SAFETY: (1) the slab stays live: restore its tag and list.
                unsafe {
                    (*header.as_ptr()).tag = tag_for(base.as_ptr().addr(), class, self.secret);
                    self.push(header, class, List::Partial);
                }
            }
        }
    }

    /// Hands every spare slab back to the backing heap.
    #[cold]
    fn release_spares(&mut self) {
        for class in 0..SLAB_CLASSES {
            if let Some(spare) = self.classes[class].spare {
                // SAFETY: the spare is a live, empty slab of this class on its spare list.
                unsafe { self.give_back(spare, class) };
            }
        }
    }

    /// A new slab of class `class` from the backing heap, on its partial list.
    #[cold]
    fn new_slab(&mut self, class: usize) -> Option<NonNull<SlabHeader>> {
        if self.slabs_refused() {
            return None;
        }
        let geometry = GEOMETRY[class];
        let layout = geometry.slab_layout();
        let block = match self.backing.allocate(layout) {
            Ok(block) => block,
            Err(AllocError) if self.spares > 0 => {
                self.release_spares();
                self.backing.allocate(layout).ok()?
            }
            Err(AllocError) => return None,
        };
        let base = block.cast::<u8>();
        if block.len() != geometry.slab {
            // A slab must be told by its length (`slab_at`); a backing heap that rounds a
            // slab's layout up cannot hold slabs. Give it back and serve the request directly.
            // SAFETY: just allocated with `layout`.
            let _ = unsafe { self.backing.deallocate(base, layout) };
            return None;
        }
        if self.secret == 0 {
            self.secret = new_secret(base.as_ptr().addr());
        }
        // Bits from `objects` on are set, a word at a time.
        let mut used = [usize::MAX; BITMAP_WORDS];
        let (whole_words, rest) = (geometry.objects / WORD_BITS, geometry.objects % WORD_BITS);
        for word in &mut used[..whole_words] {
            *word = 0;
        }
        if rest != 0 {
            used[whole_words] = usize::MAX << rest;
        }
        // SAFETY: the block is `slab` bytes at least and aligned to `slab`; the header's place
        // at its end is in bounds and aligned (`slab - HEADER` is a multiple of its alignment).
        let header = unsafe { base.add(geometry.slab - HEADER) }.cast::<SlabHeader>();
        // SAFETY: as above; the memory is ours, nothing else refers to it.
        unsafe {
            header.write(SlabHeader {
                tag: tag_for(base.as_ptr().addr(), class, self.secret),
                prev: None,
                next: None,
                class: class as u8,
                list: List::Partial,
                free_count: geometry.objects as u16,
                hint: 0,
                used,
            });
        }
        self.free_bytes += geometry.objects * geometry.size;
        self.overhead += geometry.slab - geometry.objects * geometry.size;
        self.refresh_mode();
        let starts = &mut self.slab_starts[filter_bucket(base)];
        *starts = starts.saturating_add(1);
        // SAFETY: the slab is live, of this class and on no list.
        unsafe { self.push(header, class, List::Partial) };
        Some(header)
    }

    /// A block straight from the backing heap, handing the spares back first if it refuses.
    /// Out of line, so the small path that `allocate` inlines stays short.
    #[inline(never)]
    fn allocate_direct(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = match self.backing.allocate(layout) {
            Ok(block) => block,
            Err(AllocError) if self.spares > 0 => {
                self.release_spares();
                self.backing.allocate(layout)?
            }
            Err(AllocError) => return Err(AllocError),
        };
        if slab_shaped(block.cast(), block.len()) {
            // SAFETY: a block just allocated, slab-shaped.
            unsafe { mark_not_slab(block.cast(), block.len(), self.secret) };
        }
        Ok(block)
    }

    /// A small block of the backing heap's own freed there (which reports a misuse), and
    /// counted gone.
    ///
    /// # Safety
    ///
    /// As [`RawHeap::deallocate`]; besides, `ptr` is in no slab.
    unsafe fn deallocate_small_direct(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Misuse> {
        // SAFETY: the caller's obligations are passed on.
        unsafe { self.backing.deallocate(ptr, layout) }?;
        // Saturating: a misuse the backing heap cannot detect must not make it wrap.
        self.direct_small = self.direct_small.saturating_sub(1);
        self.refresh_mode();
        Ok(())
    }

    /// A small request whose class has no partial slab: the spare, a new slab, or, when the
    /// backing heap has no room for a slab, a block of its own.
    #[cold]
    fn allocate_small_slow(&mut self, layout: Layout, class: usize) -> Result<NonNull<[u8]>, AllocError> {
        let slab = match self.classes[class].spare {
            Some(spare) => {
                // SAFETY: the spare is a live slab of this class on its spare list.
                unsafe { self.move_to(spare, class, List::Partial) };
                self.spares -= 1;
                Some(spare)
            }
            None => self.new_slab(class),
        };
        if let Some(slab) = slab {
            // SAFETY: the slab is live, of this class, on its partial list with free objects.
            return Ok(unsafe { self.pop(slab, class) });
        }
        let block = self.allocate_direct(layout)?;
        if block.len() >= MIN_SLAB {
            // Too long to be told from a slab; no backing heap of kheap's rounds a small
            // request this far, but a foreign one might.
            // SAFETY: just allocated with `layout`.
            let _ = unsafe { self.backing.deallocate(block.cast(), layout) };
            return Err(AllocError);
        }
        self.direct_small += 1;
        self.refresh_mode();
        Ok(block)
    }

    /// Every slab of class `class` with the list it is on, for the walk and the checker.
    fn each_slab(&self, class: usize, mut visit: impl FnMut(NonNull<SlabHeader>, List) -> bool) {
        let lists = self.classes[class];
        for (list, head) in
            [(List::Partial, lists.partial), (List::Full, lists.full), (List::Spare, lists.spare)]
        {
            let mut at = head;
            while let Some(header) = at {
                if !visit(header, list) {
                    return;
                }
                // SAFETY: every slab on a list is live and its header initialised (the
                // lists' invariant); the checker bounds the walk against cycles.
                at = unsafe { (*header.as_ptr()).next };
            }
        }
    }
}

// SAFETY: (1) a slab object lies inside a live block of the backing heap (its slab), aligned
// to its class's alignment (the slab is aligned to its size, objects start at multiples of the
// class size), at most `SLAB_MAX` bytes and before the header; the bitmap hands each object to
// one allocation at a time; other requests get the backing heap's blocks, which keeps promise
// 1 for them. (2) the layer reads and writes only slab headers, never objects. (3) in-place
// resizes of a slab object stay within its class; the others are the backing heap's. (4)
// every refused call returns before changing anything (a spare handed back is free memory
// either way). (5) no method panics: arithmetic is bounded by the slab geometry.
unsafe impl<B: BlockLookup> RawHeap for SlabHeap<B> {
    const MIN_REGION: usize = B::MIN_REGION;

    unsafe fn add_region(&mut self, region: NonNull<[u8]>) -> Result<usize, RegionError> {
        // SAFETY: the caller's obligations are passed on unchanged.
        let usable = unsafe { self.backing.add_region(region) }?;
        self.region_bytes = self.region_bytes.saturating_add(usable);
        self.refresh_mode();
        let start = region.cast::<u8>().as_ptr().addr();
        // Accepted, so it does not wrap the address space.
        self.record_span(start, start + region.len());
        Ok(usable)
    }

    #[inline(always)]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if let Some(class) = self.serving_class(layout) {
            if let Some(slab) = self.classes[class].partial {
                // SAFETY: a slab on its class's partial list is live and has a free object.
                return Ok(unsafe { self.pop(slab, class) });
            }
            return self.allocate_small_slow(layout, class);
        }
        self.allocate_direct(layout)
    }

    // Always inlined, for the fast path of the common case (an object of a slab whose tag
    // checks out); every other case is out of line.
    #[inline(always)]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Misuse> {
        let Some(class) = self.serving_class(layout) else {
            // SAFETY: the caller's obligations are passed on.
            return unsafe { self.deallocate_large(ptr, layout) };
        };
        if let Some(header) = self.tagged_slab(ptr, class) {
            // SAFETY: the tag says this is a live slab of this class.
            return unsafe { self.free_object(header, ptr, layout, class) };
        }
        // SAFETY: the caller's obligations are passed on.
        unsafe { self.deallocate_small_slow(ptr, layout, class) }
    }

    /// An object of a partial slab (no call); a larger request through the backing heap's fast
    /// path (when it declines, `allocate` tries its whole path, then again after giving the
    /// spare slabs back).
    #[inline(always)]
    fn allocate_fast(&mut self, layout: Layout) -> Option<NonNull<[u8]>> {
        let Some(class) = self.serving_class(layout) else {
            let block = self.backing.allocate_fast(layout)?;
            if slab_shaped(block.cast(), block.len()) {
                // SAFETY: a block just allocated, slab-shaped.
                unsafe { mark_not_slab(block.cast(), block.len(), self.secret) };
            }
            return Some(block);
        };
        let slab = self.classes[class].partial?;
        // SAFETY: a slab on its class's partial list is live and has a free object.
        Some(unsafe { self.pop(slab, class) })
    }

    /// An object back into a slab whose tag checks out (a slab it empties becomes the spare or
    /// goes back), unless it is a misuse; a larger block through the backing heap's fast path,
    /// unless it may be a slab.
    #[inline(always)]
    unsafe fn deallocate_fast(&mut self, ptr: NonNull<u8>, layout: Layout) -> bool {
        let Some(class) = self.serving_class(layout) else {
            // A block that may be a slab freed with a large layout goes to `deallocate_large`,
            // which tells; any other through the backing heap's fast path (in direct mode,
            // small blocks too).
            let may_be_slab = ptr.as_ptr().addr() % MIN_SLAB == 0
                && layout.size() < 2 * MAX_SLAB
                && self.slab_starts[filter_bucket(ptr)] != 0;
            // SAFETY: the caller's obligations are passed on.
            return !may_be_slab && unsafe { self.backing.deallocate_fast(ptr, layout) };
        };
        let Some(header) = self.tagged_slab(ptr, class) else { return false };
        // SAFETY: the tag says this is a live slab of this class.
        let Some((word, bit)) = (unsafe { self.object_bit(header, ptr, class) }) else { return false };
        // SAFETY: as above; `object_bit` found the object's bit in the slab's bitmap.
        let (used, free_count) =
            unsafe { (*(*header.as_ptr()).used.get_unchecked(word), (*header.as_ptr()).free_count) };
        if used & bit == 0 {
            return false;
        }
        // SAFETY: as above; the object is in use.
        unsafe { self.put_back(header, class, word, bit, 1) };
        if usize::from(free_count) + 1 == GEOMETRY[class].objects {
            // SAFETY: as above; the slab is now empty.
            unsafe { self.emptied(header, class) };
        }
        true
    }

    /// Small objects a bitmap word at a time (every free object a word shows, in one read and
    /// one write of the word), from partial slabs first, then the spare or new slabs as
    /// `allocate` would take them.
    fn allocate_batch(&mut self, layout: Layout, out: &mut [NonNull<u8>]) -> usize {
        let Some(class) = self.serving_class(layout) else {
            return allocate_each(out, || self.allocate_direct(layout));
        };
        let mut count = 0;
        while count < out.len() {
            if let Some(slab) = self.classes[class].partial {
                // SAFETY: a slab on its class's partial list is live and has a free object.
                count += unsafe { self.pop_many(slab, class, &mut out[count..]) };
                continue;
            }
            let Ok(block) = self.allocate_small_slow(layout, class) else { break };
            out[count] = block.cast();
            count += 1;
        }
        count
    }

    /// Each object checked as `deallocate` checks it, and given back in runs: the objects that
    /// follow one another in one bitmap word of one slab (a magazine's objects often do) are
    /// confirmed against the slab found for the first of them and the word as it was, then
    /// cleared, counted and their slab moved between lists once for the whole run.
    unsafe fn deallocate_batch(&mut self, blocks: &[NonNull<u8>], layout: Layout) -> (usize, Option<Misuse>) {
        let Some(class) = self.serving_class(layout) else {
            // SAFETY: the caller's obligations are passed on, for each block.
            return deallocate_each(blocks, |ptr| unsafe { self.deallocate_large(ptr, layout) });
        };
        let geometry = &GEOMETRY[class];
        let slab = geometry.slab;
        let mut run: Option<Run> = None;
        let outcome = deallocate_each(blocks, |ptr| {
            if let Some(r) = &mut run {
                // An object of the run's slab (live: confirmed by its tag, and not emptied since,
                // as its objects are given back only when the run ends), of the run's word, in
                // use before the run and not already in it (a double free in the batch).
                let offset = ptr.as_ptr().addr().wrapping_sub(r.base.as_ptr().addr());
                let index = if offset < slab - HEADER { geometry.object_at(offset) } else { None };
                let bit = index.filter(|&i| i / WORD_BITS == r.word).map_or(0, |i| 1usize << (i % WORD_BITS));
                if r.used & !r.mask & bit != 0 {
                    r.mask |= bit;
                    r.count += 1;
                    return Ok(());
                }
                // SAFETY: `run` is `Some` (matched just above); its objects are in use in its
                // live slab, each once (the put-back's obligation 1).
                unsafe { self.put_back_run(run.take().unwrap_unchecked(), class) };
            }
            // The first object of a run: confirmed and checked as `deallocate` does.
            let Some(header) = self.tagged_slab(ptr, class) else {
                // SAFETY: the caller's obligations are passed on.
                return unsafe { self.deallocate_small_slow(ptr, layout, class) };
            };
            // SAFETY: the tag says this is a live slab of this class.
            let object = unsafe { self.object_bit(header, ptr, class) };
            // SAFETY: as above; `object_bit` found the word in the slab's bitmap.
            let in_use = object
                .map(|(word, bit)| (word, bit, unsafe { *(*header.as_ptr()).used.get_unchecked(word) }));
            match in_use {
                Some((word, bit, used)) if used & bit != 0 => {
                    // SAFETY: a live slab's header.
                    let base = unsafe { slab_base(header, class) };
                    run = Some(Run { base, header, word, used, mask: bit, count: 1 });
                    Ok(())
                }
                // Not an object's start, another class's slab or a double free: reported as
                // `deallocate` reports it, with nothing changed.
                // SAFETY: the tag says this is a live slab of this class.
                _ => unsafe { self.free_object(header, ptr, layout, class) },
            }
        });
        if let Some(r) = run {
            // SAFETY: as above.
            unsafe { self.put_back_run(r, class) };
        }
        outcome
    }

    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError> {
        // SAFETY: the caller's obligations are passed on.
        unsafe { self.resize(ptr, old, new_size, true) }
    }

    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError> {
        // SAFETY: the caller's obligations are passed on.
        unsafe { self.resize(ptr, old, new_size, false) }
    }

    fn trim(&mut self) {
        self.release_spares();
        self.backing.trim();
    }

    fn take_corruption(&mut self) -> Option<Misuse> {
        self.backing.take_corruption()
    }

    /// The backing heap's removal: it succeeds only when nothing in the region is allocated,
    /// so no slab lives there (a front trims the spares first); the region then leaves the
    /// spans the fast free check may read in.
    fn remove_region(&mut self, region: NonNull<[u8]>) -> Result<usize, RegionError> {
        let removed = self.backing.remove_region(region)?;
        self.region_bytes = self.region_bytes.saturating_sub(removed);
        self.refresh_mode();
        let start = region.cast::<u8>().as_ptr().addr();
        // Accepted when it was added, so it does not wrap the address space.
        self.forget_span(start, start + region.len());
        Ok(removed)
    }

    fn region_layout_for(&self, layout: Layout) -> Option<Layout> {
        match self.serving_class(layout) {
            // Room for a slab, so that the next requests of the class find one too.
            Some(class) => self.backing.region_layout_for(GEOMETRY[class].slab_layout()),
            None => self.backing.region_layout_for(layout),
        }
    }

    fn usage(&self) -> HeapUsage {
        let backing = self.backing.usage();
        HeapUsage {
            total_bytes: backing.total_bytes - self.overhead,
            free_bytes: backing.free_bytes + self.free_bytes,
            // Free objects serve only their class: they are `PartKind::Cached`, not free blocks.
            largest_free_block: backing.largest_free_block,
        }
    }

    fn check_invariants(&self) -> Result<(), InvariantError> {
        self.backing.check_invariants()?;
        let (mut free_bytes, mut spares, mut overhead) = (0usize, 0usize, 0usize);
        // A walk longer than the heap has slabs has met a cycle.
        let bound = self.backing.usage().total_bytes / MIN_SLAB + 1;
        let mut broken = None;
        let mut starts = [0u16; SLAB_FILTER];
        for (class, &geometry) in GEOMETRY.iter().enumerate() {
            let mut seen = 0;
            let mut prev: Option<NonNull<SlabHeader>> = None;
            let mut last_list = None;
            self.each_slab(class, |header, list| {
                if last_list != Some(list) {
                    prev = None;
                    last_list = Some(list);
                }
                seen += 1;
                // SAFETY: the slab is on a list, so (by the lists' invariant, which this walk
                // checks link by link) a live slab of this class.
                let base = unsafe { slab_base(header, class) };
                let fail = |what| Some(InvariantError::new(what, base.as_ptr(), class));
                if seen > bound {
                    broken = fail("slab list has a cycle");
                    return false;
                }
                match self.backing.block_layout(base) {
                    Ok(block) if block.size() >= geometry.slab && block.size() < 2 * geometry.slab => {}
                    _ => {
                        broken = fail("slab is not a live block of the backing heap");
                        return false;
                    }
                }
                // SAFETY: the backing heap confirmed a live block of at least the slab size.
                let h = unsafe { &*header.as_ptr() };
                let used: usize = (0..geometry.objects)
                    .filter(|&i| h.used[i / WORD_BITS] & (1 << (i % WORD_BITS)) != 0)
                    .count();
                let tail_set = (geometry.objects..MAX_OBJECTS)
                    .all(|i| h.used[i / WORD_BITS] & (1 << (i % WORD_BITS)) != 0);
                let hint_ok = usize::from(h.hint) < BITMAP_WORDS
                    && h.used[..usize::from(h.hint)].iter().all(|w| *w == usize::MAX);
                broken = if h.tag != tag_for(base.as_ptr().addr(), class, self.secret) {
                    fail("slab tag does not match its address")
                } else if usize::from(h.class) != class || h.list != list {
                    fail("slab on the wrong list")
                } else if h.prev != prev {
                    fail("slab list back link broken")
                } else if !tail_set || !hint_ok {
                    fail("slab bitmap tail or hint broken")
                } else if used + usize::from(h.free_count) != geometry.objects {
                    fail("slab free count disagrees with its bitmap")
                } else if match list {
                    List::Partial => h.free_count == 0,
                    List::Full => h.free_count != 0,
                    List::Spare => usize::from(h.free_count) != geometry.objects,
                } {
                    fail("slab's fill disagrees with its list")
                } else {
                    None
                };
                free_bytes += usize::from(h.free_count) * geometry.size;
                overhead += geometry.slab - geometry.objects * geometry.size;
                let bucket = &mut starts[filter_bucket(base)];
                *bucket = bucket.saturating_add(1);
                spares += usize::from(list == List::Spare);
                prev = Some(header);
                broken.is_none()
            });
            if broken.is_some() {
                break;
            }
        }
        if let Some(error) = broken {
            return Err(error);
        }
        if let Some(bucket) =
            (0..SLAB_FILTER).find(|&b| self.slab_starts[b] != u16::MAX && self.slab_starts[b] != starts[b])
        {
            return Err(InvariantError::new(
                "slab-start filter disagrees with the slabs",
                core::ptr::null(),
                bucket,
            ));
        }
        if free_bytes != self.free_bytes {
            return Err(InvariantError::new(
                "slab free bytes disagree with the slabs",
                core::ptr::null(),
                free_bytes,
            ));
        }
        if overhead != self.overhead {
            return Err(InvariantError::new(
                "slab overhead disagrees with the slabs",
                core::ptr::null(),
                overhead,
            ));
        }
        if spares != self.spares {
            return Err(InvariantError::new(
                "spare slab count disagrees with the lists",
                core::ptr::null(),
                spares,
            ));
        }
        Ok(())
    }

    fn walk(&self, visit: &mut dyn FnMut(Part)) {
        self.backing.walk(visit);
        for (class, &geometry) in GEOMETRY.iter().enumerate() {
            self.each_slab(class, |header, _| {
                // SAFETY: a slab on a list is live, its header initialised.
                let (base, h) = unsafe { (slab_base(header, class), &*header.as_ptr()) };
                let start = base.as_ptr().cast_const();
                for i in 0..geometry.objects {
                    if h.used[i / WORD_BITS] & (1 << (i % WORD_BITS)) == 0 {
                        let at = start.wrapping_add(i * geometry.size);
                        visit(Part { kind: PartKind::Cached, start: at, len: geometry.size });
                    }
                }
                let tail = geometry.objects * geometry.size;
                visit(Part {
                    kind: PartKind::Bookkeeping,
                    start: start.wrapping_add(tail),
                    len: geometry.slab - tail,
                });
                true
            });
        }
    }
}

impl<B: BlockLookup> SlabHeap<B> {
    /// Grows or shrinks in place: a slab object within its class; a block of the backing heap
    /// if its class does not change (a small one) or it stays large.
    ///
    /// # Safety
    ///
    /// The obligations of [`RawHeap::grow_in_place`] (`grow`) or [`RawHeap::shrink_in_place`].
    unsafe fn resize(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
        grow: bool,
    ) -> Result<(), AllocError> {
        let new = Layout::from_size_align(new_size, old.align()).map_err(|_| AllocError)?;
        let (old_class, new_class) = (self.serving_class(old), self.serving_class(new));
        if old_class != new_class {
            // Crossing a class (or the slab limit) moves the block: the front copies it.
            return Err(AllocError);
        }
        if let Some(class) = old_class {
            if let Ok(Some(_)) = self.slab_of(ptr, old, class) {
                // The object already has its class's full size.
                return Ok(());
            }
        }
        // In direct mode no slab is ever made (`direct_era`): no block needs telling from one.
        let aligned = ptr.as_ptr().addr() % MIN_SLAB == 0 && self.slab_classes != 0;
        if aligned && tag_place_would_hold_kept_bytes(ptr, new_size) {
            // The block could take a slab's shape with the caller's bytes where a slab keeps
            // its tag, which then could not be marked: the front moves it instead.
            return Err(AllocError);
        }
        // SAFETY: the caller's obligations are passed on.
        unsafe {
            if grow {
                self.backing.grow_in_place(ptr, old, new_size)
            } else {
                self.backing.shrink_in_place(ptr, old, new_size)
            }
        }?;
        // A block at least `new_size` long can be slab-shaped only if that is at most the
        // largest slab: a large buffer resized is not looked up (an O(length) walk in TLSF).
        if aligned && new_size <= MAX_SLAB {
            if let Ok(block) = self.backing.block_layout(ptr) {
                if slab_shaped(ptr, block.size()) {
                    // SAFETY: slab-shaped, and the tag's place lies past the `new_size` bytes
                    // the caller keeps (checked above), so it is the layer's to write.
                    unsafe { mark_not_slab(ptr, block.size(), self.secret) };
                }
            }
        }
        Ok(())
    }
}

// SAFETY: a slab object's layout is its class's (size = the usable size `allocate` returned,
// alignment = the class's), which `deallocate` maps back to the same class and object; other
// blocks are the backing heap's, whose promise it is.
unsafe impl<B: BlockLookup> BlockLookup for SlabHeap<B> {
    fn block_layout(&self, ptr: NonNull<u8>) -> Result<Layout, Misuse> {
        let mut slab = MIN_SLAB;
        while slab <= MAX_SLAB {
            let base = round_down(ptr, slab);
            if let Some((header, size)) = self.slab_at(base) {
                if size == slab {
                    // SAFETY: `slab_at` found a live slab.
                    let h = unsafe { &*header.as_ptr() };
                    let class = usize::from(h.class);
                    let offset = ptr.as_ptr().addr() - base.as_ptr().addr();
                    return match GEOMETRY[class].object_at(offset) {
                        Some(i) if h.used[i / WORD_BITS] & (1 << (i % WORD_BITS)) != 0 => {
                            Ok(geometry_layout(class))
                        }
                        Some(_) => {
                            Err(Misuse::new(MisuseKind::DoubleFree, ptr.as_ptr(), Layout::new::<u8>()))
                        }
                        None => {
                            Err(Misuse::new(MisuseKind::NotBlockStart, ptr.as_ptr(), Layout::new::<u8>()))
                        }
                    };
                }
            }
            slab *= 2;
        }
        self.backing.block_layout(ptr)
    }
}

#[cfg(test)]
mod tests;
