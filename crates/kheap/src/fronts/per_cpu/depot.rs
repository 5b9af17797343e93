//! The depot: batches of free objects passed between CPUs without the shared front.
//!
//! When one CPU allocates what another frees (a producer and a consumer), the consumer's
//! magazines fill and the producer's empty, so objects flow from one CPU to the other through
//! flushes and refills. Through the shared front, each such move costs a free or an allocate
//! per object under the front's lock; through the depot it costs a copy of half a magazine
//! (at most 32 pointers) under a lock held for a few dozen instructions. The shorter the hold,
//! the rarer a holder preempted while it holds the lock (host threads outnumbering cores), and
//! the less the CPUs wait for each other.

use core::ptr::NonNull;

use super::magazine::{capacity, Magazine, MAGAZINE_OBJECTS};
use crate::SizeClass;

/// Batches the depot holds at most, over all classes.
pub(crate) const DEPOT_BATCHES: usize = 32;
/// Objects in one batch at most: half a magazine, what a flush moves and a refill wants.
const BATCH_OBJECTS: usize = MAGAZINE_OBJECTS / 2;
/// The end of a list of batches.
const NONE: u8 = u8::MAX;

/// The objects a batch of `class` holds: half its magazine.
#[inline]
fn batch_len(class: SizeClass) -> usize {
    capacity(class) / 2
}

/// The most bytes the depot holds: every batch full of a class whose half magazine is largest.
pub(crate) const fn max_depot_bytes() -> usize {
    let mut largest = 0;
    let mut index = 0;
    while index < SizeClass::COUNT {
        if let Some(class) = SizeClass::from_index(index) {
            let bytes = capacity(class) / 2 * class.size();
            if bytes > largest {
                largest = bytes;
            }
        }
        index += 1;
    }
    DEPOT_BATCHES * largest
}

/// One batch: a slot of the depot, on a class's list or on the free list.
#[derive(Clone, Copy)]
struct Batch {
    /// The next batch on the same list, or `NONE`.
    next: u8,
    /// Invariant: on the list of class `c`, `objects[..batch_len(c)]` are distinct blocks of
    /// the shared front allocated with `c`'s layout, held by no caller, no magazine and no
    /// other batch. On the free list, nothing.
    objects: [NonNull<u8>; BATCH_OBJECTS],
}

/// Full batches of free objects by class, in a fixed pool of [`DEPOT_BATCHES`] slots.
pub(crate) struct Depot {
    /// Invariant: `heads[c]` starts the list of class `c`'s batches (linked by `next`), or is
    /// `NONE`; every slot is on exactly one list, a class's or `free`.
    heads: [u8; SizeClass::COUNT],
    /// The first unused slot, or `NONE`.
    free: u8,
    batches: [Batch; DEPOT_BATCHES],
}

// SAFETY: the pointers are blocks of the shared front that no caller holds; they are data the
// depot owns, and whoever holds its lock may hand them out or return them to the
// (thread-safe) shared front.
unsafe impl Send for Depot {}

const _: () = assert!(DEPOT_BATCHES < NONE as usize, "slot indices fit a byte");

impl Depot {
    /// An empty depot: every slot on the free list.
    pub(crate) const EMPTY: Depot = {
        let mut batches =
            [Batch { next: NONE, objects: [NonNull::dangling(); BATCH_OBJECTS] }; DEPOT_BATCHES];
        let mut slot = 0;
        while slot + 1 < DEPOT_BATCHES {
            batches[slot].next = (slot + 1) as u8;
            slot += 1;
        }
        Depot { heads: [NONE; SizeClass::COUNT], free: 0, batches }
    };

    /// Moves one batch of `class` into `magazine`, which must be empty; returns how many
    /// objects it moved (none when the depot has no batch of the class).
    pub(crate) fn refill(&mut self, class: SizeClass, magazine: &mut Magazine) -> usize {
        if magazine.len() != 0 {
            // Not called so; refusing keeps every object somewhere.
            return 0;
        }
        let Some(objects) = self.pop(class) else { return 0 };
        let len = batch_len(class);
        magazine.room(len).copy_from_slice(&objects[..len]);
        magazine.filled(len);
        len
    }

    /// Moves the oldest half of `class`'s full `magazine` into a free slot; returns whether
    /// there was one.
    pub(crate) fn store(&mut self, class: SizeClass, magazine: &mut Magazine) -> bool {
        let slot = self.free;
        let Some(batch) = self.batches.get_mut(usize::from(slot)) else { return false };
        let len = batch_len(class);
        if magazine.len() < len {
            // Not called so; a batch holds exactly `len` objects.
            return false;
        }
        batch.objects[..len].copy_from_slice(magazine.oldest(len));
        magazine.forget_oldest(len);
        self.free = batch.next;
        batch.next = self.heads[class.index()];
        self.heads[class.index()] = slot;
        true
    }

    /// Takes one batch of `class` out, for its objects to go back to the shared front.
    pub(crate) fn take(&mut self, class: SizeClass) -> Option<([NonNull<u8>; BATCH_OBJECTS], usize)> {
        Some((self.pop(class)?, batch_len(class)))
    }

    /// Unlinks the first batch of `class` and puts its slot on the free list; returns its
    /// objects (the first `batch_len(class)` of them are the batch's).
    fn pop(&mut self, class: SizeClass) -> Option<[NonNull<u8>; BATCH_OBJECTS]> {
        let head = self.heads[class.index()];
        let Batch { next, objects } = *self.batches.get(usize::from(head))?;
        self.heads[class.index()] = next;
        self.batches[usize::from(head)].next = self.free;
        self.free = head;
        Some(objects)
    }

    /// How many batches of `class` the depot holds.
    pub(crate) fn batches_of(&self, class: SizeClass) -> usize {
        let mut count = 0;
        let mut slot = self.heads[class.index()];
        while let Some(batch) = self.batches.get(usize::from(slot)) {
            count += 1;
            slot = batch.next;
        }
        count
    }

    /// The objects and bytes (class sizes) the depot holds.
    pub(crate) fn held(&self) -> (usize, usize) {
        (0..SizeClass::COUNT).filter_map(SizeClass::from_index).fold((0, 0), |(objects, bytes), class| {
            let count = self.batches_of(class) * batch_len(class);
            (objects + count, bytes + count * class.size())
        })
    }

    /// The largest class the depot holds a batch of.
    pub(crate) fn largest_class(&self) -> Option<SizeClass> {
        (0..SizeClass::COUNT)
            .rev()
            .filter_map(SizeClass::from_index)
            .find(|&class| self.batches_of(class) > 0)
    }
}
