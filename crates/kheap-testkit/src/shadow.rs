//! A model of the heap's live allocations, checking every result the heap gives.

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::ptr::NonNull;

/// One live allocation as the model sees it.
#[derive(Clone, Copy, Debug)]
struct Live {
    ptr: NonNull<u8>,
    layout: Layout,
    pattern: u8,
}

/// The shadow of a heap: its regions and its live allocations by address.
///
/// Each block handed out, resized or moved is checked (aligned, inside the heap's memory,
/// overlapping no other live block), then filled with a pattern that is verified when the block
/// is freed or resized, so a heap that writes into a live block, or hands one out twice, is
/// caught.
#[derive(Default)]
pub struct Shadow {
    /// The memory given to the heap as disjoint `(start, end)` spans, touching ones merged
    /// (a heap may place a block across the seam of two touching regions).
    spans: Vec<(usize, usize)>,
    live: BTreeMap<usize, Live>,
    requested: usize,
    peak: usize,
    next_pattern: u8,
}

fn pattern_byte(pattern: u8, i: usize) -> u8 {
    pattern.wrapping_add((i as u8).wrapping_mul(31))
}

impl Shadow {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `region` was handed to the heap.
    pub fn add_region(&mut self, region: NonNull<[u8]>) {
        let start = region.cast::<u8>().as_ptr().addr();
        self.spans.push((start, start + region.len()));
        self.spans.sort();
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for &(start, end) in &self.spans {
            match merged.last_mut() {
                Some(last) if last.1 == start => last.1 = end,
                _ => merged.push((start, end)),
            }
        }
        self.spans = merged;
    }

    /// Number of live allocations.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether nothing is live.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Bytes requested by the live allocations.
    pub fn requested(&self) -> usize {
        self.requested
    }

    /// The most bytes ever requested at once.
    pub fn peak(&self) -> usize {
        self.peak
    }

    /// The live allocation at position `index` in address order.
    pub fn nth(&self, index: usize) -> Option<(NonNull<u8>, Layout)> {
        self.live.values().nth(index).map(|l| (l.ptr, l.layout))
    }

    /// All live allocations, in address order.
    pub fn all(&self) -> Vec<(NonNull<u8>, Layout)> {
        self.live.values().map(|l| (l.ptr, l.layout)).collect()
    }

    /// Verifies the pattern of every live block: panics, naming the block, if any byte changed.
    pub fn verify_all(&self) {
        for live in self.live.values() {
            verify(live, live.layout.size());
        }
    }

    /// Checks a block the heap just handed out for `layout`, fills it with a pattern and
    /// records it. Panics, naming the block, when the heap broke its contract.
    pub fn allocated(&mut self, ptr: NonNull<u8>, layout: Layout) {
        self.next_pattern = self.next_pattern.wrapping_add(37);
        let live = Live { ptr, layout, pattern: self.next_pattern };
        self.place(live);
        fill(&live, 0);
        self.count(0, layout.size());
    }

    /// Verifies and forgets the block at `ptr`; returns its layout.
    pub fn freed(&mut self, ptr: NonNull<u8>) -> Layout {
        let live = self.live.remove(&ptr.as_ptr().addr()).expect("freeing a block the model does not know");
        verify(&live, live.layout.size());
        self.count(live.layout.size(), 0);
        live.layout
    }

    /// Records that the block at `ptr` now has `new_size` bytes (it did not move): verifies the
    /// bytes kept, checks the new extent, and fills any new bytes.
    pub fn resized(&mut self, ptr: NonNull<u8>, new_size: usize) {
        let old = self.live.remove(&ptr.as_ptr().addr()).expect("resizing a block the model does not know");
        self.relocated(old, ptr, new_size);
    }

    /// Records that the block at `old` moved to `new` with `new_size` bytes (a `realloc`):
    /// verifies the bytes carried over and checks the new extent.
    pub fn moved(&mut self, old: NonNull<u8>, new: NonNull<u8>, new_size: usize) {
        let live = self.live.remove(&old.as_ptr().addr()).expect("moving a block the model does not know");
        self.relocated(live, new, new_size);
    }

    fn relocated(&mut self, old: Live, ptr: NonNull<u8>, new_size: usize) {
        let layout = Layout::from_size_align(new_size, old.layout.align()).expect("resized layout");
        let live = Live { ptr, layout, ..old };
        let kept = old.layout.size().min(new_size);
        verify(&live, kept);
        self.place(live);
        fill(&live, kept);
        self.count(old.layout.size(), new_size);
    }

    fn count(&mut self, freed: usize, taken: usize) {
        self.requested = self.requested - freed + taken;
        self.peak = self.peak.max(self.requested);
    }

    /// Checks that `live` is aligned, inside the heap's memory and clear of every other live
    /// block, then records it.
    fn place(&mut self, live: Live) {
        let (ptr, layout) = (live.ptr, live.layout);
        let addr = ptr.as_ptr().addr();
        let end = addr + layout.size().max(1);
        assert_eq!(addr % layout.align(), 0, "{ptr:p} for {layout:?} is misaligned");
        assert!(
            self.spans.iter().any(|&(start, stop)| addr >= start && end <= stop),
            "{ptr:p} for {layout:?} lies outside the heap's memory"
        );
        if let Some((&other, l)) = self.live.range(..end).next_back() {
            assert!(
                other + l.layout.size().max(1) <= addr,
                "{ptr:p} for {layout:?} overlaps live block {other:#x} ({:?})",
                l.layout
            );
        }
        self.live.insert(addr, live);
    }
}

fn fill(live: &Live, from: usize) {
    for i in from..live.layout.size() {
        // SAFETY: the heap handed out at least `layout.size()` bytes at `ptr` (checked to lie
        // in its memory and overlap no other live block).
        unsafe { live.ptr.as_ptr().add(i).write(pattern_byte(live.pattern, i)) };
    }
}

fn verify(live: &Live, len: usize) {
    for i in 0..len {
        // SAFETY: as in `fill`: the block is live and at least `len` bytes long.
        let byte = unsafe { live.ptr.as_ptr().add(i).read() };
        assert_eq!(
            byte,
            pattern_byte(live.pattern, i),
            "byte {i} of live block {:p} ({:?}) was changed by the heap",
            live.ptr,
            live.layout
        );
    }
}
