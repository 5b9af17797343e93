//! Which requests the per-CPU caches serve, and the layout their objects have in the shared
//! front.
//!
//! Every object of a class must suit every request of that class, so the objects of a class are
//! aligned to what the largest such request needs. For classes up to [`SLAB_MAX`] that is the
//! class's own alignment ([`SizeClass::align`]), which the slab layer gives for free (objects
//! sit at multiples of their size in an aligned slab). Larger classes (up to 1 KiB) come from
//! the backing heap, where a class's own alignment (up to 1 KiB for the 1 KiB class) costs an
//! aligned search and a leading gap on every refill: replaying a JSON parser's trace, a third
//! of the per-CPU front's time went there. Their objects are asked for with
//! [`LARGE_OBJECT_ALIGN`] instead, and a request that needs more goes to the shared front
//! directly, as a request above 1 KiB does.

use core::alloc::Layout;

use crate::{SizeClass, SLAB_MAX};

/// The alignment of the objects of a class larger than [`SLAB_MAX`]: two words, what every
/// kheap heap gives any block anyway.
pub(super) const LARGE_OBJECT_ALIGN: usize = 2 * core::mem::size_of::<usize>();

/// The class of the caches that serves `layout`, if any.
#[inline(always)]
pub(super) fn cached_class(layout: Layout) -> Option<SizeClass> {
    let class = SizeClass::for_layout(layout)?;
    (layout.align() <= LARGE_OBJECT_ALIGN || class.size() <= SLAB_MAX).then_some(class)
}

/// The alignment of every object of `class` (a power of two).
#[inline(always)]
pub(super) const fn object_align(class: SizeClass) -> usize {
    if class.size() <= SLAB_MAX {
        class.align()
    } else {
        LARGE_OBJECT_ALIGN
    }
}

/// `object_align(class) - 1` for every class, by index: the free's alignment check is then
/// one load and one test.
const ALIGN_MASKS: [u16; SizeClass::COUNT] = {
    let mut masks = [0; SizeClass::COUNT];
    let mut index = 0;
    while index < SizeClass::COUNT {
        if let Some(class) = SizeClass::from_index(index) {
            masks[index] = (object_align(class) - 1) as u16;
        }
        index += 1;
    }
    masks
};

/// Whether `ptr` is aligned as every object of `class` is.
#[inline(always)]
pub(super) fn object_aligned(ptr: core::ptr::NonNull<u8>, class: SizeClass) -> bool {
    ptr.as_ptr().addr() & usize::from(ALIGN_MASKS[class.index()]) == 0
}

/// The layout every object of `class` was allocated with in the shared front.
#[inline]
pub(super) const fn object_layout(class: SizeClass) -> Layout {
    // Cannot fail: the alignment is a power of two, and the size at most 1 KiB.
    match Layout::from_size_align(class.size(), object_align(class)) {
        Ok(layout) => layout,
        Err(_) => unreachable!(),
    }
}
