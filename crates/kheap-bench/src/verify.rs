//! Verify mode: every block a subject hands out is checked (alignment, bounds inside the
//! arena, no overlap with any live block) and, where the workload owns the bytes, filled with a
//! per-block pattern that is checked on free and after realloc.
//!
//! A subject that fails a check is reported as FAILED for that workload and is not timed.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Mutex;

/// A live block as the checker knows it.
#[derive(Clone, Copy, Debug)]
struct Block {
    size: usize,
    align: usize,
    tag: u64,
}

/// The byte at `index` of the block tagged `tag`: depends on the tag, not the address, so it
/// survives a realloc that moves the block.
fn pattern(tag: u64, index: usize) -> u8 {
    (tag.wrapping_mul(0x9E37_79B9).wrapping_add(index as u64 * 7) >> 3) as u8 ^ 0xA5
}

/// The bookkeeping of verify mode.
pub struct Checker {
    live: BTreeMap<usize, Block>,
    /// Address range every block must lie in (`None`: any address, the hosted reference).
    bounds: Option<Range<usize>>,
    /// Whether blocks get and keep a byte pattern (off when the workload writes the blocks
    /// itself, as `Vec` and `BTreeMap` do).
    patterns: bool,
    next_tag: u64,
}

impl Checker {
    pub fn new(bounds: Option<Range<usize>>, patterns: bool) -> Self {
        Checker { live: BTreeMap::new(), bounds, patterns, next_tag: 1 }
    }

    fn check_place(&self, addr: usize, layout: Layout) -> Result<(), String> {
        if !addr.is_multiple_of(layout.align()) {
            return Err(format!("block {addr:#x} for {layout:?} is misaligned"));
        }
        let end = addr.checked_add(layout.size()).ok_or_else(|| format!("block {addr:#x} wraps around"))?;
        if let Some(bounds) = &self.bounds {
            if addr < bounds.start || end > bounds.end {
                return Err(format!(
                    "block {addr:#x}..{end:#x} for {layout:?} is outside the arena {:#x}..{:#x}",
                    bounds.start, bounds.end
                ));
            }
        }
        if let Some((&before, block)) = self.live.range(..end).next_back() {
            if before + block.size.max(1) > addr {
                return Err(format!(
                    "block {addr:#x}..{end:#x} for {layout:?} overlaps live block {before:#x}..{:#x}",
                    before + block.size
                ));
            }
        }
        Ok(())
    }

    fn fill(&self, addr: *mut u8, tag: u64, from: usize, to: usize) {
        if self.patterns {
            for i in from..to {
                // SAFETY: the block is live, owned by the workload and at least `to` long.
                unsafe { addr.add(i).write(pattern(tag, i)) };
            }
        }
    }

    fn check_pattern(&self, addr: *mut u8, tag: u64, len: usize, when: &str) -> Result<(), String> {
        if !self.patterns {
            return Ok(());
        }
        for i in 0..len {
            // SAFETY: the block is live and at least `len` long.
            let byte = unsafe { addr.add(i).read() };
            if byte != pattern(tag, i) {
                return Err(format!(
                    "block {:#x} corrupted {when}: byte {i} is {byte:#04x}, expected {:#04x}",
                    addr.addr(),
                    pattern(tag, i)
                ));
            }
        }
        Ok(())
    }

    /// A successful allocation of `layout` at `ptr`.
    pub fn on_alloc(&mut self, ptr: *mut u8, layout: Layout) -> Result<(), String> {
        self.check_place(ptr.addr(), layout)?;
        let tag = self.next_tag;
        self.next_tag += 1;
        self.live.insert(ptr.addr(), Block { size: layout.size(), align: layout.align(), tag });
        self.fill(ptr, tag, 0, layout.size());
        Ok(())
    }

    fn take(&mut self, ptr: *mut u8, layout: Layout, what: &str) -> Result<Block, String> {
        let block = self
            .live
            .remove(&ptr.addr())
            .ok_or_else(|| format!("{what} of {:#x}, which is not live", ptr.addr()))?;
        if block.size != layout.size() || block.align != layout.align() {
            return Err(format!("{what} of {:#x} with {layout:?}, allocated as {block:?}", ptr.addr()));
        }
        Ok(block)
    }

    /// Before freeing `ptr` (its pattern is checked while the bytes are still ours).
    pub fn on_free(&mut self, ptr: *mut u8, layout: Layout) -> Result<(), String> {
        let block = self.take(ptr, layout, "free")?;
        self.check_pattern(ptr, block.tag, block.size, "before free")
    }

    /// Before a realloc of `ptr`: checks and forgets the old block; returns its tag.
    pub fn before_realloc(&mut self, ptr: *mut u8, layout: Layout) -> Result<u64, String> {
        let block = self.take(ptr, layout, "realloc")?;
        self.check_pattern(ptr, block.tag, block.size, "before realloc")?;
        Ok(block.tag)
    }

    /// After a realloc: `new` is null (failed: the old block stays live) or the new block.
    pub fn after_realloc(
        &mut self,
        old: *mut u8,
        layout: Layout,
        tag: u64,
        new: *mut u8,
        new_size: usize,
    ) -> Result<(), String> {
        if new.is_null() {
            self.live.insert(old.addr(), Block { size: layout.size(), align: layout.align(), tag });
            return Ok(());
        }
        let new_layout = Layout::from_size_align(new_size, layout.align()).map_err(|e| e.to_string())?;
        self.check_place(new.addr(), new_layout)?;
        self.check_pattern(new, tag, layout.size().min(new_size), "by realloc (contents not kept)")?;
        self.live.insert(new.addr(), Block { size: new_size, align: layout.align(), tag });
        self.fill(new, tag, layout.size().min(new_size), new_size);
        Ok(())
    }

    #[cfg(test)]
    pub fn live_blocks(&self) -> usize {
        self.live.len()
    }
}

/// Stops the job: a subject that fails a check is not measured.
pub fn exit_failed(message: &str) -> ! {
    let seed = crate::job::SEED.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("VERIFY FAILED: {message} (seed {seed})");
    std::process::exit(crate::job::EXIT_VERIFY_FAILED)
}

/// A subject with every call checked.
pub struct Verified {
    inner: Box<dyn GlobalAlloc + Sync>,
    checker: Mutex<Checker>,
    /// What happens on a failed check: [`exit_failed`] in jobs; tests panic.
    fail: fn(&str) -> !,
}

impl Verified {
    pub fn new(inner: Box<dyn GlobalAlloc + Sync>, checker: Checker, fail: fn(&str) -> !) -> Self {
        Verified { inner, checker: Mutex::new(checker), fail }
    }

    fn checker(&self) -> std::sync::MutexGuard<'_, Checker> {
        self.checker.lock().unwrap_or_else(|p| p.into_inner())
    }
}

// SAFETY: forwards every call to the inner heap unchanged; only adds checks.
unsafe impl GlobalAlloc for Verified {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's obligations are passed on.
        let block = unsafe { self.inner.alloc(layout) };
        if !block.is_null() {
            self.checker().on_alloc(block, layout).unwrap_or_else(|e| (self.fail)(&e));
        }
        block
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.checker().on_free(ptr, layout).unwrap_or_else(|e| (self.fail)(&e));
        // SAFETY: the caller's obligations are passed on.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let mut checker = self.checker();
        let tag = checker.before_realloc(ptr, layout).unwrap_or_else(|e| (self.fail)(&e));
        // SAFETY: the caller's obligations are passed on.
        let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
        checker.after_realloc(ptr, layout, tag, new, new_size).unwrap_or_else(|e| (self.fail)(&e));
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    /// Memory for the fake heaps below.
    struct Buffer(Vec<u64>);

    impl Buffer {
        fn new() -> Self {
            Buffer(vec![0; 1024])
        }
        fn base(&mut self) -> *mut u8 {
            self.0.as_mut_ptr().cast()
        }
        fn bounds(&mut self) -> Range<usize> {
            let start = self.base().addr();
            start..start + 8 * 1024
        }
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn a_correct_heap_passes() {
        let mut checker = Checker::new(None, true);
        let l = layout(100, 16);
        // SAFETY: non-zero size; every block is freed with its layout.
        unsafe {
            let a = System.alloc(l);
            let b = System.alloc(l);
            checker.on_alloc(a, l).unwrap();
            checker.on_alloc(b, l).unwrap();
            let tag = checker.before_realloc(a, l).unwrap();
            let a2 = System.realloc(a, l, 300);
            checker.after_realloc(a, l, tag, a2, 300).unwrap();
            checker.on_free(b, l).unwrap();
            System.dealloc(b, l);
            checker.on_free(a2, layout(300, 16)).unwrap();
            System.dealloc(a2, layout(300, 16));
        }
        assert_eq!(checker.live_blocks(), 0);
    }

    #[test]
    fn overlap_is_caught() {
        // A broken heap that hands out blocks 32 bytes apart whatever their size.
        let mut memory = Buffer::new();
        let mut checker = Checker::new(Some(memory.bounds()), true);
        let base = memory.base();
        checker.on_alloc(base, layout(64, 8)).unwrap();
        // SAFETY: in bounds of the buffer.
        let second = unsafe { base.add(32) };
        let error = checker.on_alloc(second, layout(64, 8)).unwrap_err();
        assert!(error.contains("overlaps"), "{error}");
    }

    #[test]
    fn misalignment_is_caught() {
        let mut memory = Buffer::new();
        let mut checker = Checker::new(Some(memory.bounds()), true);
        // SAFETY: in bounds of the buffer.
        let odd = unsafe { memory.base().add(8) };
        let error = checker.on_alloc(odd, layout(32, 64)).unwrap_err();
        assert!(error.contains("misaligned"), "{error}");
    }

    #[test]
    fn out_of_bounds_is_caught() {
        let mut memory = Buffer::new();
        let mut checker = Checker::new(Some(memory.bounds()), true);
        // SAFETY: 16 bytes before the end of the buffer, still inside it.
        let near_end = unsafe { memory.base().add(8 * 1024 - 16) };
        let error = checker.on_alloc(near_end, layout(32, 8)).unwrap_err();
        assert!(error.contains("outside the arena"), "{error}");
    }

    #[test]
    fn corruption_is_caught_on_free() {
        // A broken heap that writes its bookkeeping into the next live block.
        let mut memory = Buffer::new();
        let mut checker = Checker::new(Some(memory.bounds()), true);
        let base = memory.base();
        // SAFETY: in bounds of the buffer.
        let second = unsafe { base.add(64) };
        checker.on_alloc(base, layout(64, 8)).unwrap();
        checker.on_alloc(second, layout(64, 8)).unwrap();
        // SAFETY: in bounds; the "heap" scribbles a free-list link over the second block.
        unsafe { second.cast::<usize>().write(0xdead_beef) };
        checker.on_free(base, layout(64, 8)).unwrap();
        let error = checker.on_free(second, layout(64, 8)).unwrap_err();
        assert!(error.contains("corrupted"), "{error}");
    }

    #[test]
    fn realloc_that_loses_contents_is_caught() {
        let mut memory = Buffer::new();
        let mut checker = Checker::new(Some(memory.bounds()), true);
        let base = memory.base();
        // SAFETY: in bounds of the buffer.
        let moved = unsafe { base.add(256) };
        checker.on_alloc(base, layout(64, 8)).unwrap();
        let tag = checker.before_realloc(base, layout(64, 8)).unwrap();
        // The broken heap "moves" the block without copying it.
        let error = checker.after_realloc(base, layout(64, 8), tag, moved, 128).unwrap_err();
        assert!(error.contains("contents not kept"), "{error}");
    }

    fn panic_with(message: &str) -> ! {
        panic!("{message}")
    }

    /// A deliberately broken heap: every block starts at the same address.
    struct SameBlockHeap(*mut u8);

    // SAFETY: not sound, on purpose: it is the fake the checker must catch.
    unsafe impl GlobalAlloc for SameBlockHeap {
        unsafe fn alloc(&self, _: Layout) -> *mut u8 {
            self.0
        }
        unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
    }

    // SAFETY: only used on the test's thread.
    unsafe impl Sync for SameBlockHeap {}

    #[test]
    #[should_panic(expected = "overlaps")]
    fn verified_wrapper_stops_a_broken_heap() {
        let mut memory = Buffer::new();
        let bounds = memory.bounds();
        let heap = Verified::new(
            Box::new(SameBlockHeap(memory.base())),
            Checker::new(Some(bounds), true),
            panic_with,
        );
        // SAFETY: non-zero sizes; the second call is where the broken heap is caught.
        unsafe {
            heap.alloc(layout(16, 8));
            heap.alloc(layout(16, 8));
        }
    }

    #[test]
    fn double_free_and_wrong_layout_are_caught() {
        let mut memory = Buffer::new();
        let mut checker = Checker::new(Some(memory.bounds()), false);
        let base = memory.base();
        checker.on_alloc(base, layout(64, 8)).unwrap();
        assert!(checker.on_free(base, layout(32, 8)).unwrap_err().contains("allocated as"));
        let mut checker = Checker::new(Some(memory.bounds()), false);
        checker.on_alloc(base, layout(64, 8)).unwrap();
        checker.on_free(base, layout(64, 8)).unwrap();
        assert!(checker.on_free(base, layout(64, 8)).unwrap_err().contains("not live"));
    }
}
