//! Give-back: the regions a [`LockedHeap`](crate::LockedHeap) grew from its memory source, kept
//! so that a wholly free one can go back to the source.
//!
//! The policy (in `LockedHeap`): when a free leaves the region holding the freed block wholly
//! free, and the heap's free bytes exceed the watermark by more than that region, the heap
//! removes the region ([`RawHeap::remove_region`](crate::RawHeap::remove_region)) under its
//! lock and the front hands it to [`MemorySource::release`](crate::MemorySource::release)
//! after releasing the lock. After a give-back at least the watermark stays free, so the heap
//! grows again only once callers have used all of that: an allocate/free pair near the
//! watermark cannot make it release and acquire in turn (hysteresis).

use core::ptr::NonNull;

/// How many grown regions a heap remembers; regions grown beyond that are kept for ever.
pub(crate) const MAX_GROWN: usize = 16;

/// The grown regions not yet given back, exactly as the source returned them.
pub(crate) struct GrownRegions {
    /// Invariant: each `Some` is a region `acquire` returned that the heap added and has not
    /// removed; no two are the same.
    regions: [Option<NonNull<[u8]>>; MAX_GROWN],
}

// SAFETY: the pointers are records of memory the heap owns; they are only compared and handed
// back to the (thread-safe) heap and source, under the front's lock.
unsafe impl Send for GrownRegions {}

impl GrownRegions {
    /// None yet.
    pub(crate) const EMPTY: GrownRegions = GrownRegions { regions: [None; MAX_GROWN] };

    /// Remembers a region just added; `false` (not remembered) when the list is full.
    pub(crate) fn record(&mut self, region: NonNull<[u8]>) -> bool {
        match self.regions.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => {
                *slot = Some(region);
                true
            }
            None => false,
        }
    }

    /// The position and region of the remembered region holding `addr`.
    pub(crate) fn containing(&self, addr: usize) -> Option<(usize, NonNull<[u8]>)> {
        self.regions.iter().enumerate().find_map(|(index, slot)| {
            let region = (*slot)?;
            let start = region.cast::<u8>().as_ptr().addr();
            (addr.wrapping_sub(start) < region.len()).then_some((index, region))
        })
    }

    /// Forgets the region at `index` (it went back).
    pub(crate) fn forget(&mut self, index: usize) {
        if let Some(slot) = self.regions.get_mut(index) {
            *slot = None;
        }
    }
}
