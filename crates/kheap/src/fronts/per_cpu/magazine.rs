//! A magazine: one CPU's small stack of free objects of one size class.

use core::ptr::NonNull;

use crate::SizeClass;

/// The most objects a magazine holds, whatever the class.
pub(crate) const MAGAZINE_OBJECTS: usize = 32;
/// The most bytes a magazine holds: large classes keep fewer objects, so the memory one CPU
/// can hold stays small (see [`capacity`]).
pub(crate) const MAGAZINE_BYTES: usize = 4096;

/// How many objects the magazine of `class` holds: 32, or fewer for classes above 128 bytes,
/// so that it holds at most [`MAGAZINE_BYTES`] (4 KiB) (at least 4 objects: a class is at most
/// 1 KiB).
#[inline]
pub(crate) const fn capacity(class: SizeClass) -> usize {
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

/// A stack of free objects of one class, all blocks the shared front handed out with the
/// class's layout.
pub(crate) struct Magazine {
    /// Invariant: `len <= MAGAZINE_OBJECTS` (and `<= capacity(class)` for its class).
    len: usize,
    /// Invariant: `blocks[..len]` are distinct blocks of the shared front, allocated with the
    /// class's layout, that no caller holds. Entries from `len` on mean nothing.
    blocks: [NonNull<u8>; MAGAZINE_OBJECTS],
}

impl Magazine {
    /// An empty magazine.
    pub(crate) const EMPTY: Magazine = Magazine { len: 0, blocks: [NonNull::dangling(); MAGAZINE_OBJECTS] };

    /// How many objects it holds.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The newest object, taken out.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<NonNull<u8>> {
        self.len = self.len.checked_sub(1)?;
        Some(self.blocks[self.len])
    }

    /// Puts `block` on top; the caller has made room (`len < capacity`).
    #[inline]
    pub(crate) fn push(&mut self, block: NonNull<u8>) {
        self.blocks[self.len] = block;
        self.len += 1;
    }

    /// Whether `block` is in the magazine (a double free while it is cached here).
    #[inline]
    pub(crate) fn holds(&self, block: NonNull<u8>) -> bool {
        self.blocks[..self.len].contains(&block)
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
        self.len = (self.len + count).min(MAGAZINE_OBJECTS);
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
        self.blocks.copy_within(count..self.len, 0);
        self.len -= count;
    }
}
