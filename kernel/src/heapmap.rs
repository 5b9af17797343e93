//! A compact picture of a heap: one character per slice of each region, `#` all used, `.` all
//! free, `+` partly used. Built from `for_each_region` and `for_each_free_block` while the
//! heap is locked, without allocating.

use kheap::RawHeap;

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
    free: [usize; CELLS],
}

/// Prints the map of `heap`'s regions; `locked` runs a closure on the locked heap.
pub fn show<H: RawHeap>(locked: impl Fn(&mut dyn FnMut(&H))) {
    let mut regions = [(0usize, 0usize); MAX_REGIONS];
    let mut count = 0;
    locked(&mut |heap: &H| {
        heap.for_each_region(&mut |start, len| {
            if count < MAX_REGIONS {
                regions[count] = (start.addr(), len);
            }
            count += 1;
        });
    });
    if count > MAX_REGIONS {
        println!("    ({count} regions; showing the first {MAX_REGIONS})");
    }
    for &(start, len) in &regions[..count.min(MAX_REGIONS)] {
        let mut map = RegionMap { start, len, cell: len.div_ceil(CELLS).max(1), free: [0; CELLS] };
        locked(&mut |heap: &H| heap.for_each_free_block(&mut |block, size| map.add_free(block.addr(), size)));
        map.print();
    }
}

impl RegionMap {
    /// Credits the free block `[addr, addr + size)` to the slices it overlaps.
    fn add_free(&mut self, addr: usize, size: usize) {
        let (low, high) = (addr.max(self.start), (addr + size).min(self.start + self.len));
        let mut at = low;
        while at < high {
            let index = (at - self.start) / self.cell;
            let cell_end = (self.start + (index + 1) * self.cell).min(high);
            self.free[index] += cell_end - at;
            at = cell_end;
        }
    }

    fn print(&self) {
        let cells = self.len.div_ceil(self.cell);
        println!(
            "    region {:#x}..{:#x} ({} KiB), one char = {} bytes (# used, . free, + partly)",
            self.start,
            self.start + self.len,
            self.len / 1024,
            self.cell
        );
        let mut line = [b' '; WIDTH];
        for (index, &free) in self.free[..cells].iter().enumerate() {
            let size = self.cell.min(self.len - index * self.cell);
            line[index % WIDTH] = match free {
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
