//! `Guarded<H>`: the debug layer, in the spirit of Linux's `slub_debug`: in front of any heap
//! that can look a block up by its address, it finds the caller's memory bugs and reports them
//! as [`Misuse`] values.
//!
//! # What a guarded block looks like
//!
//! ```text
//!  inner block (from H)
//!  | padding to the alignment | header | front red zone | the caller's bytes | back red zone |
//!                                                       ^ the pointer handed out
//! ```
//!
//! - The **header** (two words, just before the front red zone, so at a fixed distance from
//!   the pointer whatever the alignment) holds the size and alignment the block was allocated
//!   with and its state (*live*, *in quarantine*, *released*), sealed with a per-heap secret:
//!   the size word is XORed with a key derived from the secret and the header's own address,
//!   and the state word carries a check of both under the same key. A header that was
//!   overwritten, or copied from elsewhere, fails the check (all but one in 2^48 on 64-bit
//!   targets, 2^16 on 32-bit ones). Every use checks it.
//! - The **red zones** (16 bytes of `0xCC` each side, from [`GuardLevel::RedZones`] on) are
//!   checked when the block is freed (and resized): a write past the end or before the start is
//!   an [`Overrun`](crate::MisuseKind::Overrun) naming the offset of the first changed byte.
//! - **Poison** ([`GuardLevel::Poison`]): a freed block is filled with `0x6B` and held in a
//!   bounded FIFO quarantine ([`QUARANTINE_BLOCKS`] blocks, [`QUARANTINE_BYTES`] bytes) instead
//!   of going back to `H`; when it leaves (pushed out by later frees, or by
//!   [`Guarded::drain_quarantine`]) its poison and red zones are checked, so a write after free
//!   is a [`UseAfterFree`](crate::MisuseKind::UseAfterFree).
//!
//! When the header does not check out, the layer asks `H` (through [`BlockLookup`]) what is at
//! the address the block would start at: `H`'s exact checks then say *foreign*, *not a block
//! start* or *double free*; if `H` says a live block starts there, the header was overwritten
//! ([`CorruptedHeader`](crate::MisuseKind::CorruptedHeader)). That is why `H` must be a
//! [`BlockLookup`] (every kheap algorithm but first fit is).
//!
//! # Levels at run time
//!
//! The level is a value chosen at construction ([`GuardLevel`]), not a type parameter: one type
//! (`Guarded<TlsfHeap>`) for every level keeps `static` declarations and the switch through the
//! `debug-heap` feature ([`DebugHeap`], [`debug_heap`]) simple, and the level's branches are
//! predictable (the cost is measured in `BENCHMARKS.md`).

use core::alloc::Layout;
use core::mem::size_of;
use core::ptr::NonNull;

use crate::algorithms::pointer::{offset, with_addr};
use crate::{
    AllocError, BlockLookup, HeapUsage, InvariantError, Misuse, MisuseKind, Part, PartKind, RawHeap,
    RegionError,
};

#[cfg(test)]
mod tests;

/// How much a [`Guarded`] heap checks; each level includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardLevel {
    /// A sealed header per block: exact double, foreign, interior and wrong-layout frees, and
    /// overwritten headers. Costs two words per block.
    Checks,
    /// Also red zones of 16 bytes before and after every block, checked on free and resize.
    RedZones,
    /// Also freed blocks poisoned and quarantined, checked when they leave the quarantine.
    Poison,
}

/// How many freed blocks the quarantine holds at most ([`GuardLevel::Poison`]).
pub const QUARANTINE_BLOCKS: usize = 32;
/// How many bytes (the callers' sizes) the quarantine holds at most; a larger freed block
/// goes back to the heap at once.
pub const QUARANTINE_BYTES: usize = 256 * 1024;

const WORD: usize = size_of::<usize>();
/// The header: the size word and the state word.
const HEADER: usize = 2 * WORD;
/// The bytes of each red zone, from [`GuardLevel::RedZones`] on.
const RED_ZONE: usize = 16;
/// What a red zone holds (Linux's `SLUB_RED_ACTIVE`).
const RED_ZONE_BYTE: u8 = 0xCC;
/// What a freed block holds while in quarantine (Linux's `POISON_FREE`).
const POISON_BYTE: u8 = 0x6B;

/// Block states in the header.
const LIVE: usize = 0x4C;
const QUARANTINED: usize = 0x51;
const RELEASED: usize = 0x52;
/// The bits of the state word that hold the alignment's log2 and the state.
const PACKED: usize = 0xFFFF;
/// Odd multipliers for the keys and the check (from SplitMix64; truncated on 32-bit).
const MIX_KEY: usize = 0x9E37_79B9_7F4A_7C15_u64 as usize;
const MIX_CHECK: usize = 0xBF58_476D_1CE4_E5B9_u64 as usize;

/// What a header says, once it checks out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sealed {
    size: usize,
    align_log2: u32,
    state: usize,
}

impl Sealed {
    /// Whether the block was allocated with `layout`.
    fn has(&self, layout: Layout) -> bool {
        self.size == layout.size() && self.align_log2 == layout.align().trailing_zeros()
    }

    /// The layout the block was allocated with (`None` if the header names none: it cannot
    /// have checked out then, but a report must not panic).
    fn layout(&self) -> Option<Layout> {
        Layout::from_size_align(self.size, 1usize.checked_shl(self.align_log2)?).ok()
    }
}

/// Freed blocks held back, oldest first ([`GuardLevel::Poison`]).
struct Quarantine {
    /// Invariant: slots `head .. head + len` (mod the capacity) hold the quarantined blocks,
    /// oldest first, each with the layout it was allocated with; the others are `None`.
    slots: [Option<(NonNull<u8>, Layout)>; QUARANTINE_BLOCKS],
    head: usize,
    len: usize,
    /// Invariant: the sum of the sizes of the blocks held, at most [`QUARANTINE_BYTES`].
    bytes: usize,
}

// SAFETY: the pointers name blocks of the heap that owns the quarantine, which lie in its
// regions; whoever has the heap has them (the heap below is `Send` on the same grounds).
unsafe impl Send for Quarantine {}

impl Quarantine {
    const fn new() -> Self {
        Quarantine { slots: [None; QUARANTINE_BLOCKS], head: 0, len: 0, bytes: 0 }
    }

    fn push(&mut self, block: (NonNull<u8>, Layout)) {
        let slot = (self.head + self.len) % QUARANTINE_BLOCKS;
        self.slots[slot] = Some(block);
        self.len += 1;
        self.bytes += block.1.size();
    }

    fn pop(&mut self) -> Option<(NonNull<u8>, Layout)> {
        let block = self.slots[self.head].take()?;
        self.head = (self.head + 1) % QUARANTINE_BLOCKS;
        self.len -= 1;
        self.bytes -= block.1.size();
        Some(block)
    }

    fn iter(&self) -> impl Iterator<Item = (NonNull<u8>, Layout)> + '_ {
        (0..self.len).filter_map(move |i| self.slots[(self.head + i) % QUARANTINE_BLOCKS])
    }
}

/// A heap that guards every block of the heap `H` it wraps: the debug mode.
///
/// ```
/// use core::alloc::Layout;
/// use kheap::{GuardLevel, Guarded, MisuseKind, RawHeap, TlsfHeap};
///
/// let memory = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
/// let mut heap = Guarded::new(TlsfHeap::new(), GuardLevel::RedZones);
/// // SAFETY: the leaked buffer lives for ever and only the heap uses it.
/// unsafe { heap.add_region(core::ptr::NonNull::from(memory)) }.unwrap();
/// let layout = Layout::new::<[u8; 48]>();
/// let block = heap.allocate(layout).unwrap().cast::<u8>();
/// // A bug: one byte past the end.
/// // SAFETY: deliberately out of bounds, but inside the block's red zone, which the layer owns.
/// unsafe { block.as_ptr().add(48).write(0) };
/// // SAFETY: live, with its layout; the layer refuses the free and names the byte.
/// let misuse = unsafe { heap.deallocate(block, layout) }.unwrap_err();
/// assert_eq!((misuse.kind, misuse.at, misuse.found), (MisuseKind::Overrun, Some(48), Some(layout)));
/// assert!(misuse.to_string().contains("first bad byte at offset 48"));
/// ```
pub struct Guarded<H> {
    heap: H,
    level: GuardLevel,
    /// Invariant: the bytes of each red zone at `level` (kept, not matched on every call).
    zone: usize,
    /// The seed the secret is derived from (with the first region's address).
    seed: u64,
    /// Invariant: fixed from the first region on (every header is sealed with it).
    secret: usize,
    /// Invariant: every region given to the heap lies in `[low, high)` (empty before the first).
    low: usize,
    high: usize,
    quarantine: Quarantine,
}

impl<H> Guarded<H> {
    /// Wraps `heap`, guarding at `level`; `const`, so it can initialise a `static`.
    pub const fn new(heap: H, level: GuardLevel) -> Self {
        let zone = match level {
            GuardLevel::Checks => 0,
            GuardLevel::RedZones | GuardLevel::Poison => RED_ZONE,
        };
        Guarded {
            heap,
            level,
            zone,
            seed: 0x6B68_6561_705F_6775,
            secret: 0,
            low: usize::MAX,
            high: 0,
            quarantine: Quarantine::new(),
        }
    }

    /// The same heap with another seed for its secret (a kernel may pass a boot-time random
    /// number, so that a stray write cannot forge a header); before any region is added.
    pub const fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The level this heap guards at.
    pub const fn level(&self) -> GuardLevel {
        self.level
    }

    /// The wrapped heap.
    pub fn inner(&self) -> &H {
        &self.heap
    }

    /// Bytes of red zone on each side of a block.
    #[inline(always)]
    const fn red_zone(&self) -> usize {
        self.zone
    }

    /// Distance from a block's pointer back to its header.
    #[inline(always)]
    const fn header_offset(&self) -> usize {
        HEADER + self.red_zone()
    }

    /// Bytes from the inner block's start to the caller's pointer, for `align` (a power of
    /// two: the header offset rounded up to it cannot overflow, being at most 32 + align - 1).
    #[inline(always)]
    fn front(&self, align: usize) -> Option<usize> {
        let align = align.max(WORD);
        Some((self.header_offset() + (align - 1)) & !(align - 1))
    }

    /// The inner block a guarded `layout` needs, and where the caller's bytes start in it.
    fn inner_layout(&self, layout: Layout) -> Option<(Layout, usize)> {
        let front = self.front(layout.align())?;
        let size = front.checked_add(layout.size())?.checked_add(self.red_zone())?;
        Some((Layout::from_size_align(size, layout.align().max(WORD)).ok()?, front))
    }

    /// The bytes a block for `layout` takes from the heap below beyond `layout.size()` (header,
    /// red zones, padding to the alignment), or `None` if no block can have `layout`: what a
    /// test allows for when it compares requests with free blocks.
    pub fn guard_bytes(&self, layout: Layout) -> Option<usize> {
        self.inner_layout(layout).map(|(inner, _)| inner.size() - layout.size())
    }

    /// The key sealing the header at `header_addr`.
    fn key(&self, header_addr: usize) -> usize {
        self.secret ^ header_addr.wrapping_mul(MIX_KEY)
    }

    /// The check bits of a header's state word.
    fn check(size: usize, packed: usize, key: usize) -> usize {
        (size.wrapping_add(packed) ^ key).wrapping_mul(MIX_CHECK) & !PACKED
    }

    /// Writes the sealed header of the block at `ptr`.
    ///
    /// # Safety
    ///
    /// 1. The `header_offset()` bytes before `ptr` belong to a block of this layer (they are
    ///    its header and front red zone), valid for writes and word-aligned.
    unsafe fn seal(&self, ptr: NonNull<u8>, layout: Layout, state: usize) {
        let header = ptr.as_ptr().wrapping_sub(self.header_offset()).cast::<usize>();
        let key = self.key(header.addr());
        let packed = layout.align().trailing_zeros() as usize | state << 8;
        let state_word =
            (packed | Self::check(layout.size(), packed, key)) ^ key.rotate_left(usize::BITS / 2);
        // SAFETY: (1): the two words are the block's header, aligned (the block's pointer and
        // the header offset are multiples of the word).
        unsafe {
            header.write(layout.size() ^ key);
            header.add(1).write(state_word);
        }
    }

    /// Reads and checks the header before `ptr`; `Err(plausible)` when it does not check out,
    /// `plausible` when its state bits still look like a header's (a real header, damaged).
    ///
    /// # Safety
    ///
    /// 1. The `header_offset()` bytes before `ptr` are valid for reads and word-aligned.
    unsafe fn unseal(&self, ptr: NonNull<u8>) -> Result<Sealed, bool> {
        let header = ptr.as_ptr().wrapping_sub(self.header_offset()).cast::<usize>();
        let key = self.key(header.addr());
        // SAFETY: (1).
        let (size_word, state_word) = unsafe { (header.read(), header.add(1).read()) };
        let size = size_word ^ key;
        let state_word = state_word ^ key.rotate_left(usize::BITS / 2);
        let packed = state_word & PACKED;
        let (align_log2, state) = (packed & 0xFF, packed >> 8);
        let plausible = align_log2 < usize::BITS as usize && matches!(state, LIVE | QUARANTINED | RELEASED);
        if state_word & !PACKED != Self::check(size, packed, key) || !plausible {
            return Err(plausible);
        }
        Ok(Sealed { size, align_log2: align_log2 as u32, state })
    }

    /// Whether the header of a pointer can be read: inside the span of the regions, aligned.
    fn header_readable(&self, ptr: NonNull<u8>) -> bool {
        let addr = ptr.as_ptr().addr();
        addr % WORD == 0 && addr >= self.low.saturating_add(self.header_offset()) && addr <= self.high
    }

    /// The first byte of the block's red zones that is not the pattern, as an offset from `ptr`.
    ///
    /// # Safety
    ///
    /// 1. `ptr` is a block of this layer allocated with `layout` (live or in quarantine).
    unsafe fn red_zone_damage(&self, ptr: NonNull<u8>, layout: Layout) -> Option<isize> {
        let zone = self.red_zone();
        if zone == 0 {
            return None;
        }
        // SAFETY: (1): the red zones are the `zone` bytes each side of the caller's bytes,
        // inside the inner block, owned by this layer.
        let (front, back) = unsafe {
            (
                core::slice::from_raw_parts(ptr.as_ptr().sub(zone), zone),
                core::slice::from_raw_parts(ptr.as_ptr().add(layout.size()), zone),
            )
        };
        if let Some(i) = first_other_byte(front, RED_ZONE_BYTE) {
            return Some(i as isize - zone as isize);
        }
        first_other_byte(back, RED_ZONE_BYTE).map(|i| (layout.size() + i) as isize)
    }

    /// Paints the red zones of a block.
    ///
    /// # Safety
    ///
    /// 1. `ptr` is a block of this layer with `size` bytes (live).
    unsafe fn paint_red_zones(&self, ptr: NonNull<u8>, size: usize) {
        let zone = self.red_zone();
        // SAFETY: (1): both zones are inside the inner block, owned by this layer.
        unsafe {
            ptr.as_ptr().sub(zone).write_bytes(RED_ZONE_BYTE, zone);
            ptr.as_ptr().add(size).write_bytes(RED_ZONE_BYTE, zone);
        }
    }

    /// The first byte of a quarantined block that is not poison, as an offset from `ptr`.
    ///
    /// # Safety
    ///
    /// 1. `ptr` is a block of this layer in quarantine, allocated with `layout`.
    unsafe fn poison_damage(ptr: NonNull<u8>, layout: Layout) -> Option<isize> {
        // SAFETY: (1): the block's bytes belong to this layer while it is in quarantine.
        let bytes = unsafe { core::slice::from_raw_parts(ptr.as_ptr(), layout.size()) };
        first_other_byte(bytes, POISON_BYTE).map(|i| i as isize)
    }
}

/// The index of the first byte of `bytes` that is not `value`. A word at a time over the
/// aligned middle: a quarantined block is checked whole when it leaves, and byte by byte that
/// was eight times the loop (and, under Miri, most of the debug layer's test time).
fn first_other_byte(bytes: &[u8], value: u8) -> Option<usize> {
    let pattern = usize::from_ne_bytes([value; WORD]);
    // SAFETY: every bit pattern is a valid `usize`; `align_to` only reinterprets the aligned
    // middle of the slice.
    let (head, words, _) = unsafe { bytes.align_to::<usize>() };
    if let Some(i) = head.iter().position(|&b| b != value) {
        return Some(i);
    }
    // The first word that differs (or the tail after the last one), then its bytes.
    let from = head.len() + WORD * words.iter().position(|&w| w != pattern).unwrap_or(words.len());
    bytes[from..].iter().position(|&b| b != value).map(|i| from + i)
}

impl<H: BlockLookup> Guarded<H> {
    /// What is wrong with freeing `ptr` with `layout` when its header cannot be read or does
    /// not check out: `H`'s own exact checks, at the inner block the pointer would have.
    #[cold]
    #[inline(never)]
    fn diagnose(&self, ptr: NonNull<u8>, layout: Layout) -> Misuse {
        let start = self.front(layout.align()).and_then(|front| ptr.as_ptr().addr().checked_sub(front));
        let kind = match start {
            None => MisuseKind::Foreign,
            Some(start) => match self.heap.block_layout(with_addr(ptr, start)) {
                Err(below) => below.kind,
                Ok(_) => MisuseKind::CorruptedHeader,
            },
        };
        Misuse::new(kind, ptr.as_ptr(), layout)
    }

    /// Checks a free (or resize) of `ptr` with `layout`: the header must check out, the block
    /// be live with exactly this layout and its red zones be intact.
    ///
    /// # Safety
    ///
    /// 1. If `ptr` lies in a region of this heap, the memory before it is readable (a region
    ///    is all valid memory).
    unsafe fn check_live(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Misuse> {
        if !self.header_readable(ptr) {
            return Err(self.diagnose(ptr, layout));
        }
        // SAFETY: the header lies inside the regions' span and is aligned (checked above), and
        // region memory is readable (1).
        let sealed = match unsafe { self.unseal(ptr) } {
            Ok(sealed) => sealed,
            Err(_) => return Err(self.diagnose(ptr, layout)),
        };
        if sealed.state != LIVE || !sealed.has(layout) {
            return Err(Self::refusal(ptr, layout, sealed));
        }
        // SAFETY: the header checked out: `ptr` is a live block allocated with `layout`.
        if let Some(at) = unsafe { self.red_zone_damage(ptr, layout) } {
            return Err(Misuse { kind: MisuseKind::Overrun, ..Self::refusal(ptr, layout, sealed) }.at(at));
        }
        Ok(())
    }

    /// The report for a block whose header checked out but which is not live with `layout`.
    #[cold]
    #[inline(never)]
    fn refusal(ptr: NonNull<u8>, layout: Layout, sealed: Sealed) -> Misuse {
        let kind = match sealed.state {
            LIVE if sealed.has(layout) => MisuseKind::Overrun,
            LIVE => MisuseKind::WrongLayout,
            _ => MisuseKind::DoubleFree,
        };
        let misuse = Misuse::new(kind, ptr.as_ptr(), layout);
        match sealed.layout() {
            Some(allocated) => misuse.found(allocated),
            None => misuse,
        }
    }

    /// Gives a block (live or leaving quarantine, its checks done) back to `H`.
    ///
    /// # Safety
    ///
    /// 1. `ptr` is a block of this layer allocated with `layout`, not in quarantine, not used
    ///    by anyone after this call.
    unsafe fn release(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Misuse> {
        let Some((inner, front)) = self.inner_layout(layout) else {
            return Err(Misuse::new(MisuseKind::ImpossibleLayout, ptr.as_ptr(), layout));
        };
        let start = with_addr(ptr, ptr.as_ptr().addr() - front);
        // From the red zones on, the header is marked released, so that a later double free
        // finds it so even where `H` has reused the bytes at the block's start. With checks
        // only, that store is saved: the stale header still says live, and `H`'s own exact
        // check then refuses the second free.
        let marked = self.level != GuardLevel::Checks;
        if marked {
            // SAFETY: (1): the header is the block's.
            unsafe { self.seal(ptr, layout, RELEASED) };
        }
        // SAFETY: (1): the inner block was allocated with `inner` at `start`.
        let freed = unsafe { self.heap.deallocate(start, inner) };
        if freed.is_err() && marked {
            // SAFETY: as above; the block stays live, as the refused call leaves it.
            unsafe { self.seal(ptr, layout, LIVE) };
        }
        freed.map_err(|below| Misuse::new(below.kind, ptr.as_ptr(), layout).found(layout))
    }

    /// Takes the oldest block out of quarantine, checks its poison, red zones and header and
    /// gives it back to `H`. A damaged block is reported and kept out of the heap for ever.
    fn release_oldest(&mut self) -> Option<Result<(), Misuse>> {
        let (ptr, layout) = self.quarantine.pop()?;
        let report = |kind, at| Misuse::new(kind, ptr.as_ptr(), layout).found(layout).at(at);
        // SAFETY: the block was in quarantine: allocated with `layout`, owned by this layer.
        let damage = unsafe {
            match self.unseal(ptr) {
                Ok(sealed) if sealed.state == QUARANTINED && sealed.has(layout) => {
                    Self::poison_damage(ptr, layout).or_else(|| self.red_zone_damage(ptr, layout))
                }
                _ => Some(-(self.header_offset() as isize)),
            }
        };
        if let Some(at) = damage {
            return Some(Err(report(MisuseKind::UseAfterFree, at)));
        }
        // SAFETY: out of quarantine now, allocated with `layout`, and unused (its poison held).
        Some(unsafe { self.release(ptr, layout) })
    }

    /// Checks every block in quarantine and gives it back to the heap below (a test does this
    /// before it compares the heap with its initial state; a kernel may before it reports).
    ///
    /// # Errors
    ///
    /// The first block found written after its free ([`MisuseKind::UseAfterFree`]); the others
    /// are still checked and released, the damaged ones kept out of the heap.
    pub fn drain_quarantine(&mut self) -> Result<(), Misuse> {
        let mut first = Ok(());
        while let Some(released) = self.release_oldest() {
            if first.is_ok() {
                first = released;
            }
        }
        first
    }

    /// Shared by both in-place resizes: checks the block, resizes the inner block by the same
    /// amount and moves the back red zone.
    ///
    /// # Safety
    ///
    /// 1. `ptr` is a live allocation of this heap and `old` fits it.
    /// 2. `new_size` rounded up to `old.align()` does not exceed `isize::MAX`.
    unsafe fn resize(&mut self, ptr: NonNull<u8>, old: Layout, new_size: usize) -> Result<(), AllocError> {
        // SAFETY: (1): a live allocation lies in a region.
        unsafe { self.check_live(ptr, old) }.map_err(|_| AllocError)?;
        let (inner, front) = self.inner_layout(old).ok_or(AllocError)?;
        let new = Layout::from_size_align(new_size, old.align()).map_err(|_| AllocError)?;
        let (new_inner, _) = self.inner_layout(new).ok_or(AllocError)?;
        let start = with_addr(ptr, ptr.as_ptr().addr() - front);
        // SAFETY: (1): the inner block at `start` is live with `inner`; the new inner size
        // fits `isize` once rounded (checked by `inner_layout`), and its direction is the one
        // of `new_size`.
        unsafe { self.heap.resize_in_place(start, inner, new_inner.size()) }?;
        // SAFETY: the block (now `new_size` bytes) is this layer's, with its header and zones.
        unsafe {
            self.seal(ptr, new, LIVE);
            self.paint_red_zones(ptr, new_size);
        }
        Ok(())
    }
}

impl<H: Default> Default for Guarded<H> {
    /// The default heap, guarded at [`GuardLevel::Poison`].
    fn default() -> Self {
        Self::new(H::default(), GuardLevel::Poison)
    }
}

// SAFETY: every block handed out lies inside an inner block of `H` (promise 1 of `H`), after
// its header and front red zone and before its back red zone, so blocks are aligned (the
// inner block is aligned to the request and the front is a multiple of it), disjoint and clear
// of `H`'s bookkeeping. The layer reads and writes only headers, red zones and the bytes of
// blocks the caller has freed (poison, in quarantine), never a live allocation's bytes (2).
// Resizes keep the pointer and the bytes (3). A refused call writes nothing (4): checks come
// before any change, and a release `H` refuses restores the header. Nothing panics (5):
// arithmetic on caller values is checked.
unsafe impl<H: BlockLookup> RawHeap for Guarded<H> {
    const MIN_REGION: usize = H::MIN_REGION;

    unsafe fn add_region(&mut self, region: NonNull<[u8]>) -> Result<usize, RegionError> {
        // SAFETY: the caller's obligations are passed on unchanged.
        let usable = unsafe { self.heap.add_region(region) }?;
        let start = region.cast::<u8>().as_ptr().addr();
        if self.high == 0 {
            // Differs between heaps and boots (with a seed from the kernel).
            self.secret = crate::secret::draw(self.seed, start);
        }
        self.low = self.low.min(start);
        self.high = self.high.max(start.saturating_add(region.len()));
        Ok(usable)
    }

    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let (inner, front) = self.inner_layout(layout).ok_or(AllocError)?;
        let block = self.heap.allocate(inner)?.cast::<u8>();
        let ptr = offset(block, front);
        // SAFETY: the header and red zones lie inside the inner block just allocated, which
        // holds `front + size + red zone` bytes; the header is word-aligned.
        unsafe {
            self.seal(ptr, layout, LIVE);
            if self.level != GuardLevel::Checks {
                self.paint_red_zones(ptr, layout.size());
            }
        }
        Ok(NonNull::slice_from_raw_parts(ptr, layout.size()))
    }

    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Misuse> {
        // SAFETY: a pointer inside a region has readable memory before it (obligation 1 of the
        // caller is what makes it live; a wrong pointer outside the regions is not read).
        unsafe { self.check_live(ptr, layout) }?;
        if self.level != GuardLevel::Poison || layout.size() > QUARANTINE_BYTES {
            // SAFETY: checked live with `layout` just above; the caller gives it up (1, 2).
            return unsafe { self.release(ptr, layout) };
        }
        // Room first, so that a damaged block found there refuses this call unchanged.
        while self.quarantine.len == QUARANTINE_BLOCKS
            || self.quarantine.bytes + layout.size() > QUARANTINE_BYTES
        {
            if let Some(Err(misuse)) = self.release_oldest() {
                return Err(misuse);
            }
        }
        // SAFETY: the block is live with `layout` and the caller gives it up: its bytes are
        // this layer's from now on.
        unsafe {
            ptr.as_ptr().write_bytes(POISON_BYTE, layout.size());
            self.seal(ptr, layout, QUARANTINED);
        }
        self.quarantine.push((ptr, layout));
        Ok(())
    }

    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError> {
        // SAFETY: the caller's obligations 1-3 are `resize`'s 1-2.
        unsafe { self.resize(ptr, old, new_size) }
    }

    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<(), AllocError> {
        // SAFETY: the caller's obligations 1-3 are `resize`'s 1-2 (a smaller size fits).
        unsafe { self.resize(ptr, old, new_size) }
    }

    fn region_layout_for(&self, layout: Layout) -> Option<Layout> {
        self.heap.region_layout_for(self.inner_layout(layout)?.0)
    }

    /// The heap below's cache; the quarantine stays (`drain_quarantine` empties it, checking
    /// every block).
    fn trim(&mut self) {
        self.heap.trim()
    }

    fn take_corruption(&mut self) -> Option<Misuse> {
        self.heap.take_corruption()
    }

    /// The heap below's removal: it succeeds only when no block in the region is allocated,
    /// quarantined blocks included (they stay allocated below until they leave quarantine).
    fn remove_region(&mut self, region: NonNull<[u8]>) -> Result<usize, RegionError> {
        self.heap.remove_region(region)
    }

    /// The heap below's figures: guard bytes and quarantined blocks count as allocated.
    fn usage(&self) -> HeapUsage {
        self.heap.usage()
    }

    /// The heap below's invariants, then every quarantined block: its header, poison and red
    /// zones. (Live blocks are checked when they are freed or resized.)
    fn check_invariants(&self) -> Result<(), InvariantError> {
        self.heap.check_invariants()?;
        let mut bytes = 0;
        for (ptr, layout) in self.quarantine.iter() {
            bytes += layout.size();
            // SAFETY: a quarantined block is this layer's, allocated with `layout`.
            let sealed = unsafe { self.unseal(ptr) };
            if !sealed.is_ok_and(|sealed| sealed.state == QUARANTINED && sealed.has(layout)) {
                return Err(InvariantError::new("quarantined block's header overwritten", ptr.as_ptr(), 0));
            }
            // SAFETY: as above.
            let damage =
                unsafe { Self::poison_damage(ptr, layout).or_else(|| self.red_zone_damage(ptr, layout)) };
            if let Some(at) = damage {
                return Err(InvariantError::new(
                    "quarantined block written after free (value: offset + size)",
                    ptr.as_ptr(),
                    (at + layout.size() as isize) as usize,
                ));
            }
        }
        if bytes != self.quarantine.bytes || self.quarantine.len > QUARANTINE_BLOCKS {
            return Err(InvariantError::new("quarantine count off", core::ptr::null(), bytes));
        }
        Ok(())
    }

    /// The heap below's parts, and each quarantined block as bookkeeping (held by the layer).
    fn walk(&self, visit: &mut dyn FnMut(Part)) {
        self.heap.walk(visit);
        for (ptr, layout) in self.quarantine.iter() {
            if let Some((inner, front)) = self.inner_layout(layout) {
                let start = ptr.as_ptr().wrapping_sub(front).cast_const();
                visit(Part { kind: PartKind::Bookkeeping, start, len: inner.size() });
            }
        }
    }
}

// SAFETY: `Ok` only for a live block whose sealed header names its layout: the pointer is the
// start of a block this layer handed out, `size` is the usable size `allocate` returned, and
// `deallocate` with it passes every check and frees exactly that block.
unsafe impl<H: BlockLookup> BlockLookup for Guarded<H> {
    fn block_layout(&self, ptr: NonNull<u8>) -> Result<Layout, Misuse> {
        let byte = Layout::new::<u8>();
        if !self.header_readable(ptr) {
            return Err(self.diagnose(ptr, byte));
        }
        // SAFETY: inside the regions' span and aligned (checked above).
        match unsafe { self.unseal(ptr) } {
            Ok(sealed) if sealed.state == LIVE => sealed.layout().ok_or_else(|| self.diagnose(ptr, byte)),
            Ok(sealed) => Err(Self::refusal(ptr, byte, sealed)),
            Err(_) => Err(self.diagnose(ptr, byte)),
        }
    }
}

/// The heap the `debug-heap` feature switches on: [`Guarded<H>`] with the feature, `H` itself
/// without. Declare a heap as `DebugHeap<TlsfHeap>` built by [`debug_heap`], and
/// `--features kheap/debug-heap` turns the debug mode on with no other change.
#[cfg(feature = "debug-heap")]
pub type DebugHeap<H> = Guarded<H>;
/// The heap the `debug-heap` feature switches on: `H` itself, since the feature is off.
#[cfg(not(feature = "debug-heap"))]
pub type DebugHeap<H> = H;

/// Builds a [`DebugHeap`]: `heap` guarded at [`GuardLevel::Poison`] with the `debug-heap`
/// feature, `heap` unchanged without; `const`.
///
/// ```
/// use kheap::{debug_heap, DebugHeap, LockedHeap, RawSpinlock, TlsfHeap};
///
/// static HEAP: LockedHeap<RawSpinlock, DebugHeap<TlsfHeap>> = LockedHeap::new(debug_heap(TlsfHeap::new()));
/// ```
pub const fn debug_heap<H>(heap: H) -> DebugHeap<H> {
    #[cfg(feature = "debug-heap")]
    return Guarded::new(heap, GuardLevel::Poison);
    #[cfg(not(feature = "debug-heap"))]
    return heap;
}
