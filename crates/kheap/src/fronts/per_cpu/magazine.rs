//! A magazine: one CPU's small stack of free objects of one size class.

use core::ptr::NonNull;

use crate::SizeClass;

/// The most objects a magazine holds, whatever the class. When a CPU frees what another
/// allocates, a magazine's fill level wanders between its edges, and the transfers through the
/// depot fall faster than the room grows: 64 instead of 32 took the 2-thread workload from
/// 115,000-119,000 refills per 250 ms to 21,000-44,000 (ARCHITECTURE.md).
pub(crate) const MAGAZINE_OBJECTS: usize = 64;
/// The most bytes a magazine holds: large classes keep fewer objects, so the memory one CPU
/// can hold stays small (see [`capacity`]).
pub(crate) const MAGAZINE_BYTES: usize = 4096;

/// How many objects the magazine of `class` holds: 64, or fewer for classes above 64 bytes,
/// so that it holds at most [`MAGAZINE_BYTES`] (4 KiB) (at least 4 objects: a class is at most
/// 1 KiB). A table read: every free asks, and a division would cost more than the rest of the
/// free.
#[inline(always)]
pub(crate) const fn capacity(class: SizeClass) -> usize {
    CAPACITY[class.index()] as usize
}

/// [`computed_capacity`] of every class, by index.
const CAPACITY: [u8; SizeClass::COUNT] = {
    let mut table = [0; SizeClass::COUNT];
    let mut index = 0;
    while index < SizeClass::COUNT {
        if let Some(class) = SizeClass::from_index(index) {
            table[index] = computed_capacity(class) as u8;
        }
        index += 1;
    }
    table
};

/// The capacity of `class`'s magazine, computed: what [`CAPACITY`] is built from.
const fn computed_capacity(class: SizeClass) -> usize {
    let by_bytes = MAGAZINE_BYTES / class.size();
    if by_bytes < MAGAZINE_OBJECTS {
        by_bytes
    } else {
        MAGAZINE_OBJECTS
    }
}

/// The bytes one CPU's magazines hold at most: the sum over classes of capacity × size.
pub(crate) const fn max_cached_bytes_per_cpu() -> usize {
    let mut total = 0;
    let mut index = 0;
    while index < SizeClass::COUNT {
        let Some(class) = SizeClass::from_index(index) else { break };
        total += capacity(class) * class.size();
        index += 1;
    }
    total
}

/// Counters in a magazine's filter.
const FILTER_SLOTS: usize = 256;

/// The filter slot of `block`: a multiplicative hash of its address (objects are at least 8
/// bytes apart, so the low three bits say nothing).
#[inline(always)]
fn filter_slot(block: NonNull<u8>) -> usize {
    const GOLDEN: usize = 0x9E37_79B9_7F4A_7C15_u64 as usize;
    let hash = (block.as_ptr().addr() >> 3).wrapping_mul(GOLDEN);
    hash >> (usize::BITS - FILTER_SLOTS.trailing_zeros())
}

/// A stack of free objects of one class, all blocks the shared front handed out with the
/// class's layout.
///
/// A free must not push an object the magazine already holds (a double free would hand it out
/// twice), but scanning the stack on every free would cost more than the rest of the free. So
/// the magazine keeps a *filter*: for each hash of an address, how many of its objects have
/// that hash. A free whose count is zero cannot be a double free of an object here; only
/// otherwise is the stack scanned ([`holds`](Self::holds)): with 256 counters and at most 64
/// objects, about one free in eight or fewer. Nothing is written into the objects themselves,
/// so a free on another CPU than the allocation's touches no memory the other CPU used.
pub(crate) struct Magazine {
    /// Invariant: `len <= MAGAZINE_OBJECTS` (and `<= capacity(class)` for its class).
    len: usize,
    /// Invariant: `counts[h]` is the number of objects in `blocks[..len]` whose
    /// [`filter_slot`] is `h` (so at most `MAGAZINE_OBJECTS`, which fits a byte).
    counts: [u8; FILTER_SLOTS],
    /// Invariant: `blocks[..len]` are distinct blocks of the shared front, allocated with the
    /// class's layout, that no caller holds. Entries from `len` on mean nothing.
    blocks: [NonNull<u8>; MAGAZINE_OBJECTS],
}

impl Magazine {
    /// An empty magazine.
    pub(crate) const EMPTY: Magazine =
        Magazine { len: 0, counts: [0; FILTER_SLOTS], blocks: [NonNull::dangling(); MAGAZINE_OBJECTS] };

    /// How many objects it holds.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The newest object, taken out.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<NonNull<u8>> {
        self.len = self.len.checked_sub(1)?;
        // SAFETY: the new `len` is below the old, which is at most `MAGAZINE_OBJECTS` (the
        // field's invariant).
        let block = unsafe { *self.blocks.get_unchecked(self.len) };
        self.counts[filter_slot(block)] -= 1;
        Some(block)
    }

    /// Puts `block` on top; the caller has checked that the magazine does not hold it
    /// ([`holds`](Self::holds)).
    ///
    /// # Safety
    ///
    /// 1. There is room: `len() < capacity(class)` for the magazine's class (so below
    ///    [`MAGAZINE_OBJECTS`]). The free's fast path has just compared the two; a bounds
    ///    check here would test it again.
    #[inline]
    pub(crate) unsafe fn push(&mut self, block: NonNull<u8>) {
        debug_assert!(self.len < MAGAZINE_OBJECTS);
        // SAFETY: (1) `len < MAGAZINE_OBJECTS`.
        unsafe { *self.blocks.get_unchecked_mut(self.len) = block };
        self.len += 1;
        self.counts[filter_slot(block)] += 1;
    }

    /// Whether `block` is in the magazine (a double free while it is cached here): the filter
    /// answers most frees at once; the stack is scanned only when another object shares
    /// `block`'s hash.
    #[inline]
    pub(crate) fn holds(&self, block: NonNull<u8>) -> bool {
        self.may_hold(block) && self.scan(block)
    }

    /// Whether the magazine may hold `block`: `false` is exact (no object here shares its
    /// filter slot); `true` asks for [`holds`](Self::holds).
    #[inline]
    pub(crate) fn may_hold(&self, block: NonNull<u8>) -> bool {
        self.counts[filter_slot(block)] != 0
    }

    /// Scans the stack for `block`: every slot compared, without an early exit, so the
    /// compiler compares several at a time (a filter collision costs a fraction of an
    /// element-by-element search).
    #[cold]
    #[inline(never)]
    fn scan(&self, block: NonNull<u8>) -> bool {
        let wanted = block.as_ptr().addr();
        self.blocks[..self.len].iter().fold(false, |found, held| found | (held.as_ptr().addr() == wanted))
    }

    /// Whether the filter counts exactly the objects held (its invariant).
    #[cfg(test)]
    pub(crate) fn filter_is_exact(&self) -> bool {
        let mut counts = [0u8; FILTER_SLOTS];
        for &block in &self.blocks[..self.len] {
            counts[filter_slot(block)] += 1;
        }
        counts == self.counts
    }

    /// The empty room above the objects, at most `room` slots, for a refill to write into.
    #[inline]
    pub(crate) fn room(&mut self, room: usize) -> &mut [NonNull<u8>] {
        let end = (self.len + room).min(MAGAZINE_OBJECTS);
        &mut self.blocks[self.len..end]
    }

    /// Counts `count` objects a refill wrote into [`room`](Self::room).
    #[inline]
    pub(crate) fn filled(&mut self, count: usize) {
        let end = (self.len + count).min(MAGAZINE_OBJECTS);
        for &block in &self.blocks[self.len..end] {
            self.counts[filter_slot(block)] += 1;
        }
        self.len = end;
    }

    /// The oldest `count` objects (at most all), for a flush; remove them with
    /// [`forget_oldest`](Self::forget_oldest) once they are returned.
    #[inline]
    pub(crate) fn oldest(&self, count: usize) -> &[NonNull<u8>] {
        &self.blocks[..count.min(self.len)]
    }

    /// Forgets the oldest `count` objects, keeping the newest (the ones likeliest in cache).
    #[inline]
    pub(crate) fn forget_oldest(&mut self, count: usize) {
        let count = count.min(self.len);
        for &block in &self.blocks[..count] {
            self.counts[filter_slot(block)] -= 1;
        }
        self.blocks.copy_within(count..self.len, 0);
        self.len -= count;
    }
}
