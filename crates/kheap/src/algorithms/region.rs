//! Checking a region handed to a heap and rounding it to the granule.

use core::ptr::NonNull;

use crate::algorithms::pointer::{align_down_addr, align_up_addr, offset, with_addr, GRANULE};
use crate::RegionError;

/// A span of memory whose both ends are multiples of [`GRANULE`].
///
/// Invariant: `start <= end`, both granule-aligned, `end` does not wrap, and `start` carries
/// the provenance of the whole span.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    pub(crate) start: NonNull<u8>,
    pub(crate) len: usize,
}

impl Span {
    pub(crate) fn start_addr(&self) -> usize {
        self.start.as_ptr().addr()
    }

    pub(crate) fn end_addr(&self) -> usize {
        self.start_addr() + self.len
    }

    /// Whether `addr` lies inside this span: one subtraction and one comparison.
    #[inline]
    pub(crate) fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.start_addr()) < self.len
    }

    /// Whether `[addr, addr + len)` lies inside this span.
    pub(crate) fn contains_range(&self, addr: usize, len: usize) -> bool {
        addr >= self.start_addr() && addr.checked_add(len).is_some_and(|end| end <= self.end_addr())
    }

    /// Cuts `len` bytes of bookkeeping off one end of this span: `(bookkeeping, the rest)`. At
    /// the end (`at_end`) a region keeps its start for blocks (aligned as asked) and a join
    /// with a left neighbour keeps the seam free; at the start, a join with only a right
    /// neighbour keeps that seam free.
    ///
    /// Requires `len <= self.len`; both pieces keep this span's provenance.
    pub(crate) fn split_bookkeeping(&self, len: usize, at_end: bool) -> (Span, Span) {
        debug_assert!(len <= self.len);
        let rest = self.len - len;
        if at_end {
            (Span { start: offset(self.start, rest), len }, Span { start: self.start, len: rest })
        } else {
            (Span { start: self.start, len }, Span { start: offset(self.start, len), len: rest })
        }
    }

    /// Whether this span and `other` share a byte.
    pub(crate) fn overlaps(&self, other: &Span) -> bool {
        self.start_addr() < other.end_addr() && other.start_addr() < self.end_addr()
    }
}

/// Checks a region and rounds its ends inward to the granule.
///
/// `minimum` is the smallest length the caller accepts, before and after rounding.
pub(crate) fn granule_span(region: NonNull<[u8]>, minimum: usize) -> Result<Span, RegionError> {
    let len = region.len();
    let start = region.cast::<u8>();
    let addr = start.as_ptr().addr();
    let end = addr.checked_add(len).ok_or(RegionError::TooLarge)?;
    if len > isize::MAX as usize {
        return Err(RegionError::TooLarge);
    }
    if len < minimum {
        return Err(RegionError::TooSmall { size: len, minimum });
    }
    let first = align_up_addr(addr, GRANULE).ok_or(RegionError::TooLarge)?;
    let last = align_down_addr(end, GRANULE);
    let usable = last.saturating_sub(first);
    if usable < minimum {
        return Err(RegionError::MisalignedBeyondUse { usable, minimum });
    }
    Ok(Span { start: with_addr(start, first), len: usable })
}
