//! A compact picture of a heap: one character per slice of each region, `#` all used, `.` all
//! free, `+` partly used, `=` all the heap's own bookkeeping. Built from `RawHeap::walk` while
//! the heap is locked, without allocating.

use kheap::{PartKind, RawHeap};

/// Characters per console line.
const WIDTH: usize = 64;
/// Slices per region: four lines.
const CELLS: usize = WIDTH * 4;
/// Regions drawn at most (the static array, plus grown chunks; touching chunks merge).
const MAX_REGIONS: usize = 8;

/// One region's picture, computed under the lock and printed after.
struct RegionMap {
    start: usize,
    len: usize,
    cell: usize,
    /// Free bytes in each slice.
    free: [usize; CELLS],
    /// Bookkeeping bytes in each slice.
    bookkeeping: [usize; CELLS],
}

/// Prints the map of `heap`'s regions; `locked` runs a closure on the locked heap.
pub fn show<H: RawHeap>(locked: impl Fn(&mut dyn FnMut(&H))) {
    let mut regions = [(0usize, 0usize); MAX_REGIONS];
    let mut count = 0;
    locked(&mut |heap: &H| {
        heap.walk(&mut |part| {
            if part.kind != PartKind::Region {
                return;
            }
            if count < MAX_REGIONS {
                regions[count] = (part.start.addr(), part.len);
            }
            count += 1;
        });
    });
    if count > MAX_REGIONS {
        println!("    ({count} regions; showing the first {MAX_REGIONS})");
    }
    for &(start, len) in &regions[..count.min(MAX_REGIONS)] {
        let mut map = RegionMap {
            start,
            len,
            cell: len.div_ceil(CELLS).max(1),
            free: [0; CELLS],
            bookkeeping: [0; CELLS],
        };
        // One walk per region keeps a single map on the stack; the walk visits free blocks
        // and bookkeeping of every region, and `add` keeps only what lies in this one.
        locked(&mut |heap: &H| heap.walk(&mut |part| map.add(part.kind, part.start.addr(), part.len)));
        map.print();
    }
}

impl RegionMap {
    /// Credits the free block or bookkeeping `[addr, addr + size)` to the slices it overlaps;
    /// regions are not counted (what is neither free nor bookkeeping is used).
    fn add(&mut self, kind: PartKind, addr: usize, size: usize) {
        let counts = match kind {
            // A slab's free objects are free memory too (for their class only).
            PartKind::Free | PartKind::Cached => &mut self.free,
            PartKind::Bookkeeping => &mut self.bookkeeping,
            PartKind::Region => return,
        };
        let (low, high) = (addr.max(self.start), (addr + size).min(self.start + self.len));
        let mut at = low;
        while at < high {
            let index = (at - self.start) / self.cell;
            let cell_end = (self.start + (index + 1) * self.cell).min(high);
            counts[index] += cell_end - at;
            at = cell_end;
        }
    }

    fn print(&self) {
        let cells = self.len.div_ceil(self.cell);
        println!(
            "    region {:#x}..{:#x} ({} KiB), one char = {} bytes (# used, . free, + partly, = bookkeeping)",
            self.start,
            self.start + self.len,
            self.len / 1024,
            self.cell
        );
        let mut line = [b' '; WIDTH];
        for (index, (&free, &bookkeeping)) in self.free[..cells].iter().zip(&self.bookkeeping).enumerate() {
            let size = self.cell.min(self.len - index * self.cell);
            // A slice that is only partly bookkeeping counts its bookkeeping as used.
            line[index % WIDTH] = match free {
                _ if bookkeeping >= size => b'=',
                0 => b'#',
                f if f >= size => b'.',
                _ => b'+',
            };
            if index % WIDTH == WIDTH - 1 || index == cells - 1 {
                let used = index % WIDTH + 1;
                println!("    |{}|", core::str::from_utf8(&line[..used]).unwrap_or("?"));
            }
        }
    }
}
