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
/// Each block handed out is checked (aligned, inside a region, overlapping no other live block),
/// then filled with a pattern that is verified when the block is freed or resized, so a heap
/// that writes into a live block, or hands one out twice, is caught.
#[derive(Default)]
pub struct Shadow {
    regions: Vec<(usize, usize)>,
    live: BTreeMap<usize, Live>,
    requested: usize,
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
        self.regions.push((region.cast::<u8>().as_ptr().addr(), region.len()));
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

    /// The live allocation at position `index` in address order.
    pub fn nth(&self, index: usize) -> Option<(NonNull<u8>, Layout)> {
        self.live.values().nth(index).map(|l| (l.ptr, l.layout))
    }

    /// All live allocations, in address order.
    pub fn all(&self) -> Vec<(NonNull<u8>, Layout)> {
        self.live.values().map(|l| (l.ptr, l.layout)).collect()
    }

    /// Checks a block the heap just handed out for `layout`, fills it with a pattern and
    /// records it. Panics, naming the block, when the heap broke its contract.
    pub fn allocated(&mut self, ptr: NonNull<u8>, layout: Layout) {
        let addr = ptr.as_ptr().addr();
        let size = layout.size().max(1);
        assert_eq!(addr % layout.align(), 0, "{ptr:p} for {layout:?} is misaligned");
        assert!(
            self.regions.iter().any(|&(start, len)| addr >= start && addr + size <= start + len),
            "{ptr:p} for {layout:?} lies outside every region"
        );
        if let Some((&other, l)) = self.live.range(..addr + size).next_back() {
            assert!(
                other + l.layout.size().max(1) <= addr,
                "{ptr:p} for {layout:?} overlaps live block {other:#x} ({:?})",
                l.layout
            );
        }
        self.next_pattern = self.next_pattern.wrapping_add(37);
        let live = Live { ptr, layout, pattern: self.next_pattern };
        fill(&live, 0);
        self.requested += layout.size();
        self.live.insert(addr, live);
    }

    /// Verifies and forgets the block at `ptr`; returns its layout.
    pub fn freed(&mut self, ptr: NonNull<u8>) -> Layout {
        let live = self.live.remove(&ptr.as_ptr().addr()).expect("freeing a block the model does not know");
        verify(&live, live.layout.size());
        self.requested -= live.layout.size();
        live.layout
    }

    /// Records that the block at `ptr` now has `new_size` bytes (it did not move): verifies the
    /// bytes kept, and fills any new ones.
    pub fn resized(&mut self, ptr: NonNull<u8>, new_size: usize) {
        let live = self.live.get_mut(&ptr.as_ptr().addr()).expect("resizing a block the model does not know");
        let old = live.layout.size();
        verify(live, old.min(new_size));
        live.layout = Layout::from_size_align(new_size, live.layout.align()).expect("resized layout");
        fill(live, old.min(new_size));
        self.requested = self.requested - old + new_size;
    }

    /// Records that the block at `old` moved to `new` with `new_size` bytes (a `realloc`):
    /// verifies the bytes carried over.
    pub fn moved(&mut self, old: NonNull<u8>, new: NonNull<u8>, new_size: usize) {
        let live = self.live.remove(&old.as_ptr().addr()).expect("moving a block the model does not know");
        let kept = live.layout.size().min(new_size);
        let moved = Live {
            ptr: new,
            layout: Layout::from_size_align(new_size, live.layout.align()).expect("layout"),
            pattern: live.pattern,
        };
        verify(&moved, kept);
        fill(&moved, kept);
        self.requested = self.requested - live.layout.size() + new_size;
        self.allocated_again(moved);
    }

    fn allocated_again(&mut self, live: Live) {
        let addr = live.ptr.as_ptr().addr();
        if let Some((&other, l)) = self.live.range(..addr + live.layout.size().max(1)).next_back() {
            assert!(other + l.layout.size().max(1) <= addr, "moved block {:p} overlaps {other:#x}", live.ptr);
        }
        self.live.insert(addr, live);
    }
}

fn fill(live: &Live, from: usize) {
    for i in from..live.layout.size() {
        // SAFETY: the heap handed out at least `layout.size()` bytes at `ptr` (checked to lie
        // in a region and overlap no other live block).
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
