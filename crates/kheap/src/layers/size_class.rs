//! Size classes: the rounding shared by the slab layer and the per-CPU caches.
//!
//! A small request is served from the class whose size is the request's size rounded up to its
//! alignment, then up to the next class. The classes are spaced 8 bytes apart up to 128 bytes,
//! then 8 per doubling (144, 160, ..., 256, 288, ..., 1024): a request loses less than 8 bytes
//! up to 128 bytes and less than one eighth of its size above (the bound of
//! [`SizeClass::size`]). That spacing keeps the class count small (40) while the rounding waste
//! stays below what a boundary-tag heap spends on its tags.
//!
//! Alignment needs no class of its own: a class's size is a multiple of every alignment whose
//! requests land in it (see [`SizeClass::for_layout`]), so objects laid end to end from a
//! sufficiently aligned start are all aligned.

use core::alloc::Layout;

/// Class sizes step by this many bytes up to [`LINEAR_LIMIT`].
const LINEAR_STEP: usize = 8;
/// The largest size of the evenly spaced classes.
const LINEAR_LIMIT: usize = 128;
/// `log2(LINEAR_LIMIT)`.
const LINEAR_LIMIT_SHIFT: u32 = LINEAR_LIMIT.trailing_zeros();
/// Classes per doubling above [`LINEAR_LIMIT`], as a power of two.
const SUBCLASS_SHIFT: u32 = 3;
/// The number of evenly spaced classes.
const LINEAR_CLASSES: usize = LINEAR_LIMIT / LINEAR_STEP;

/// The class index of every size up to [`SizeClass::MAX_SIZE`] by eighths: entry `i` serves the
/// sizes `8i - 7 ..= 8i` (entry 0 the empty size). Class sizes are multiples of 8, so the sizes
/// of one eighth share a class.
const BY_EIGHTHS: [u8; SizeClass::MAX_SIZE / LINEAR_STEP + 1] = {
    let mut table = [0; SizeClass::MAX_SIZE / LINEAR_STEP + 1];
    let mut i = 0;
    while i < table.len() {
        table[i] = SizeClass::computed_index(i * LINEAR_STEP);
        i += 1;
    }
    table
};

// Every class `for_layout` builds from the table keeps `SizeClass`'s invariant, on which
// `index()` relies.
const _: () = {
    let mut i = 0;
    while i < BY_EIGHTHS.len() {
        assert!((BY_EIGHTHS[i] as usize) < SizeClass::COUNT, "a class index beyond the table");
        i += 1;
    }
};

/// The size of every class, by index: read on every allocate and free, so a table rather than
/// the shifts of [`SizeClass::computed_size`].
const SIZES: [u16; SizeClass::COUNT] = {
    let mut table = [0; SizeClass::COUNT];
    let mut i = 0;
    while i < table.len() {
        table[i] = SizeClass::computed_size(i) as u16;
        i += 1;
    }
    table
};

/// One size class: an index into the table of class sizes.
///
/// ```
/// use core::alloc::Layout;
/// use kheap::SizeClass;
///
/// let class = SizeClass::for_layout(Layout::from_size_align(100, 8).unwrap()).unwrap();
/// assert_eq!(class.size(), 104);
/// // A 24-byte request aligned to 16 lands in a class whose size 16 divides.
/// let aligned = SizeClass::for_layout(Layout::from_size_align(24, 16).unwrap()).unwrap();
/// assert_eq!(aligned.size(), 32);
/// assert!(SizeClass::for_layout(Layout::from_size_align(2000, 8).unwrap()).is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SizeClass {
    /// Invariant: `index < SizeClass::COUNT`.
    index: u8,
}

impl SizeClass {
    /// The largest size a class holds, in bytes; larger requests have no class.
    pub const MAX_SIZE: usize = 1024;

    /// The number of classes.
    pub const COUNT: usize =
        LINEAR_CLASSES + ((Self::MAX_SIZE.trailing_zeros() - LINEAR_LIMIT_SHIFT) << SUBCLASS_SHIFT) as usize;

    /// The class of a request of `size` bytes (alignment already folded into the size): one
    /// table read, since every class boundary is a multiple of 8 bytes.
    #[inline(always)]
    const fn for_size(size: usize) -> Option<Self> {
        if size > Self::MAX_SIZE {
            return None;
        }
        Some(SizeClass { index: BY_EIGHTHS[size.div_ceil(LINEAR_STEP)] })
    }

    /// The class index of a request of `size` bytes, computed: what [`BY_EIGHTHS`] is built
    /// from. `size <= MAX_SIZE`.
    const fn computed_index(size: usize) -> u8 {
        // Zero-sized requests share the smallest class.
        let last = if size == 0 { 0 } else { size - 1 };
        let index = if last < LINEAR_LIMIT {
            last / LINEAR_STEP
        } else {
            // `last` lies in [2^k, 2^(k+1)); the class is its k-th doubling, then the eighth.
            let k = usize::BITS - 1 - last.leading_zeros();
            let sub = (last >> (k - SUBCLASS_SHIFT)) & ((1 << SUBCLASS_SHIFT) - 1);
            LINEAR_CLASSES + (((k - LINEAR_LIMIT_SHIFT) as usize) << SUBCLASS_SHIFT) + sub
        };
        index as u8
    }

    /// The class that serves `layout`, or `None` when it is larger than [`MAX_SIZE`](Self::MAX_SIZE)
    /// once rounded up to its alignment.
    ///
    /// The class's size is a multiple of `layout.align()`: rounding the size up to the alignment
    /// first makes it a multiple of it, and a class step that is smaller than the alignment
    /// divides it, so the class size is that rounded size itself.
    #[inline(always)]
    pub const fn for_layout(layout: Layout) -> Option<Self> {
        let align = layout.align();
        if align <= LINEAR_STEP {
            // Every class size is a multiple of 8, so of `align`: the size alone decides, and
            // the empty size already reads the smallest class.
            return Self::for_size(layout.size());
        }
        if align > Self::MAX_SIZE {
            return None;
        }
        // A zero-sized request takes one byte, so it gets an aligned object of its own. Cannot
        // overflow: size <= isize::MAX and align <= MAX_SIZE.
        let size = if layout.size() == 0 { 1 } else { layout.size() };
        Self::for_size((size + align - 1) & !(align - 1))
    }

    /// The class with this index (`index < COUNT`), for tables indexed by class.
    #[inline]
    pub const fn from_index(index: usize) -> Option<Self> {
        if index < Self::COUNT {
            Some(SizeClass { index: index as u8 })
        } else {
            None
        }
    }

    /// The position of the class in the table, `0..COUNT`, smallest first.
    #[inline(always)]
    pub const fn index(self) -> usize {
        // SAFETY: the field's invariant. Told to the compiler, so that tables indexed by class
        // need no bounds check on the hot paths.
        unsafe { core::hint::assert_unchecked((self.index as usize) < Self::COUNT) };
        self.index as usize
    }

    /// The class's object size in bytes. Every request of the class is at most this size and,
    /// for a request of `n` bytes, more than `n - 8` when `n <= 128` and more than `7n / 8`
    /// above.
    #[inline(always)]
    pub const fn size(self) -> usize {
        SIZES[self.index as usize] as usize
    }

    /// The size of the class with index `index < COUNT`, computed: what [`SIZES`] is built
    /// from.
    const fn computed_size(index: usize) -> usize {
        if index < LINEAR_CLASSES {
            (index + 1) * LINEAR_STEP
        } else {
            let above = index - LINEAR_CLASSES;
            let k = LINEAR_LIMIT_SHIFT as usize + (above >> SUBCLASS_SHIFT);
            let sub = above & ((1 << SUBCLASS_SHIFT) - 1);
            (1 << k) + ((sub + 1) << (k - SUBCLASS_SHIFT as usize))
        }
    }

    /// The largest power of two that divides the class's size: the alignment every object of
    /// the class has when objects are laid end to end from a start aligned to it.
    #[inline]
    pub const fn align(self) -> usize {
        1 << self.size().trailing_zeros()
    }

    /// The layout a cache or slab asks for one object of the class: every request of the class
    /// *fits* a block of this layout.
    #[inline]
    pub const fn layout(self) -> Layout {
        // Cannot fail: the alignment is a power of two dividing a size of at most MAX_SIZE.
        match Layout::from_size_align(self.size(), self.align()) {
            Ok(layout) => layout,
            Err(_) => unreachable!(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn class_sizes_increase_and_end_at_max_size() {
        let sizes: Vec<usize> =
            (0..SizeClass::COUNT).map(|i| SizeClass::from_index(i).unwrap().size()).collect();
        assert_eq!(SizeClass::COUNT, 40);
        assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
        assert_eq!(sizes[0], 8);
        assert!((0..SizeClass::COUNT).all(|i| sizes[i] == SizeClass::computed_size(i)), "table");
        assert_eq!(*sizes.last().unwrap(), SizeClass::MAX_SIZE);
        assert!(SizeClass::from_index(SizeClass::COUNT).is_none());
    }

    #[test]
    fn every_size_lands_in_the_smallest_class_that_holds_it_within_the_waste_bound() {
        for size in 1..=SizeClass::MAX_SIZE {
            let class = SizeClass::for_size(size).unwrap();
            assert_eq!(class.index(), usize::from(SizeClass::computed_index(size)), "size {size}: table");
            assert!(class.size() >= size, "size {size}");
            if class.index() > 0 {
                let below = SizeClass::from_index(class.index() - 1).unwrap();
                assert!(below.size() < size, "size {size} could use {}", below.size());
            }
            let waste = class.size() - size;
            if size <= LINEAR_LIMIT {
                assert!(waste < LINEAR_STEP, "size {size}");
            } else {
                assert!(waste * 8 < size, "size {size}: waste {waste}");
            }
        }
        assert!(SizeClass::for_size(SizeClass::MAX_SIZE + 1).is_none());
    }

    #[test]
    fn every_aligned_request_lands_in_a_class_its_alignment_divides() {
        for align_shift in 0..=10 {
            let align = 1usize << align_shift;
            for size in 0..=SizeClass::MAX_SIZE + 1 {
                let layout = Layout::from_size_align(size, align).unwrap();
                match SizeClass::for_layout(layout) {
                    Some(class) => {
                        assert_eq!(class.size() % align, 0, "{layout:?}");
                        assert!(class.align() >= align && class.size() >= size, "{layout:?}");
                        let canonical = class.layout();
                        assert_eq!(SizeClass::for_layout(canonical), Some(class), "{layout:?}");
                    }
                    None => assert!(size.next_multiple_of(align) > SizeClass::MAX_SIZE, "{layout:?}"),
                }
            }
        }
        assert!(SizeClass::for_layout(Layout::from_size_align(8, 2048).unwrap()).is_none());
    }
}
