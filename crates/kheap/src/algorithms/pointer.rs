//! Pointer arithmetic that keeps provenance (strict-provenance clean: addresses are only read,
//! never turned back into pointers).

use core::mem::size_of;
use core::ptr::NonNull;

/// The unit every heap rounds to: room for two pointers, so any free block can hold the links
/// of a doubly linked list.
pub(crate) const GRANULE: usize = 2 * size_of::<usize>();
/// `log2(GRANULE)`.
pub(crate) const GRANULE_SHIFT: u32 = GRANULE.trailing_zeros();

/// Rounds `addr` up to a multiple of `align` (a power of two); `None` on overflow.
pub(crate) const fn align_up_addr(addr: usize, align: usize) -> Option<usize> {
    match addr.checked_add(align - 1) {
        Some(bumped) => Some(bumped & !(align - 1)),
        None => None,
    }
}

/// Rounds `addr` down to a multiple of `align` (a power of two).
pub(crate) const fn align_down_addr(addr: usize, align: usize) -> usize {
    addr & !(align - 1)
}

/// `ptr` moved forward by `bytes`, keeping its provenance.
///
/// Callers only use it for offsets that stay within a region (or one past its end), which is
/// what `wrapping_add` needs to produce a usable pointer.
#[inline]
pub(crate) fn offset(ptr: NonNull<u8>, bytes: usize) -> NonNull<u8> {
    let moved = ptr.as_ptr().wrapping_add(bytes);
    // A region never wraps the address space (checked when it is added), so a pointer moved
    // within or one past it is never null.
    NonNull::new(moved).unwrap_or(ptr)
}

/// `ptr` moved forward by `bytes`, keeping its provenance, without [`offset`]'s null check: for
/// the hot paths, where the result is known to lie inside a region.
///
/// # Safety
///
/// 1. `ptr + bytes` lies inside the region `ptr` lies in, or one past its end (so it neither
///    wraps nor is null).
#[inline]
pub(crate) unsafe fn offset_within(ptr: NonNull<u8>, bytes: usize) -> NonNull<u8> {
    // SAFETY: (1) a region starts above address 0 and does not wrap, so an address inside it
    // or one past its end is not null.
    unsafe { NonNull::new_unchecked(ptr.as_ptr().wrapping_add(bytes)) }
}

/// `ptr` moved back by `bytes`, keeping its provenance, without a null check.
///
/// # Safety
///
/// 1. `ptr - bytes` lies inside the region `ptr` lies in (so it neither wraps nor is null).
#[inline]
pub(crate) unsafe fn offset_back_within(ptr: NonNull<u8>, bytes: usize) -> NonNull<u8> {
    // SAFETY: (1) an address inside a region is not null.
    unsafe { NonNull::new_unchecked(ptr.as_ptr().wrapping_sub(bytes)) }
}

/// `ptr` with its address replaced, keeping its provenance.
#[inline]
pub(crate) fn with_addr(ptr: NonNull<u8>, addr: usize) -> NonNull<u8> {
    offset(ptr, addr.wrapping_sub(ptr.as_ptr().addr()))
}
