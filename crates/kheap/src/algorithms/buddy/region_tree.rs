//! The region records of a [`BuddyHeap`](super::BuddyHeap), in a treap keyed by address, so
//! that finding the record of a block costs O(log R) expected for R separate regions rather
//! than a scan (a kernel whose heap grew from scattered frames has many).
//!
//! A treap is a binary search tree by address whose nodes are also a heap by a priority; with
//! priorities that look random (a hash of the record's address) its depth is O(log R) expected,
//! and insertion and removal are a split and two merges. The links live in the records, inside
//! the regions, so the tree needs no memory of its own.

use core::ptr::NonNull;

use super::RegionRecord;

pub(super) type Link<const MAX_ORDER: usize> = Option<NonNull<RegionRecord<MAX_ORDER>>>;

/// A priority for the record at `record`: its address, mixed (a multiplicative hash).
pub(super) fn priority<const MAX_ORDER: usize>(record: NonNull<RegionRecord<MAX_ORDER>>) -> u32 {
    ((record.as_ptr().addr() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
}

/// The record whose span contains `addr`.
///
/// # Safety
///
/// 1. `root` is a tree of records the heap owns (written by `RegionRecord::write`), with no
///    other borrow of them live.
#[inline]
pub(super) unsafe fn find<const MAX_ORDER: usize>(root: Link<MAX_ORDER>, addr: usize) -> Link<MAX_ORDER> {
    // SAFETY: (1) passed on.
    unsafe { find_from(root?, addr) }
}

/// [`find`] in a tree known not to be empty (one test fewer on the allocation path).
///
/// # Safety
///
/// As for [`find`].
#[inline]
pub(super) unsafe fn find_from<const MAX_ORDER: usize>(
    root: NonNull<RegionRecord<MAX_ORDER>>,
    addr: usize,
) -> Link<MAX_ORDER> {
    let mut node = root;
    loop {
        // SAFETY: (1) nodes of the tree are records the heap owns.
        let record = unsafe { node.as_ref() };
        // One subtraction answers both questions (a register fewer on the allocation path):
        // whether the span starts above `addr` (it borrows), and whether it holds `addr`.
        let (past_start, below) = addr.overflowing_sub(record.span.start_addr());
        if below {
            node = record.left?;
        } else if past_start < record.span.len {
            return Some(node);
        } else {
            node = record.right?;
        }
    }
}

/// The record with the lowest start at or above `addr`.
///
/// # Safety
///
/// As for [`find`].
pub(super) unsafe fn first_at_or_after<const MAX_ORDER: usize>(
    mut root: Link<MAX_ORDER>,
    addr: usize,
) -> Link<MAX_ORDER> {
    let mut best = None;
    while let Some(node) = root {
        // SAFETY: (1) nodes of the tree are records the heap owns.
        let record = unsafe { node.as_ref() };
        if record.span.start_addr() >= addr {
            best = Some(node);
            root = record.left;
        } else {
            root = record.right;
        }
    }
    best
}

/// Splits `root` into the records starting below `key` and those starting at or above it.
///
/// # Safety
///
/// 1. `root` is a tree of records the heap owns, with no other borrow of them live.
unsafe fn split<const MAX_ORDER: usize>(
    root: Link<MAX_ORDER>,
    key: usize,
) -> (Link<MAX_ORDER>, Link<MAX_ORDER>) {
    let Some(mut node) = root else { return (None, None) };
    // SAFETY: (1) the node is a record the heap owns, borrowed by nothing else.
    let record = unsafe { node.as_mut() };
    if record.span.start_addr() < key {
        // SAFETY: (1) holds for the subtree.
        let (low, high) = unsafe { split(record.right, key) };
        record.right = low;
        (Some(node), high)
    } else {
        // SAFETY: (1) holds for the subtree.
        let (low, high) = unsafe { split(record.left, key) };
        record.left = high;
        (low, Some(node))
    }
}

/// Joins two trees, every record of `low` starting below every record of `high`.
///
/// # Safety
///
/// 1. Both are trees of records the heap owns, disjoint, with no other borrow live.
unsafe fn merge<const MAX_ORDER: usize>(low: Link<MAX_ORDER>, high: Link<MAX_ORDER>) -> Link<MAX_ORDER> {
    match (low, high) {
        (None, tree) | (tree, None) => tree,
        (Some(mut a), Some(mut b)) => {
            // SAFETY: (1) the two roots are distinct records the heap owns.
            let (ra, rb) = unsafe { (a.as_mut(), b.as_mut()) };
            if ra.priority >= rb.priority {
                // SAFETY: (1) holds for the subtrees.
                ra.right = unsafe { merge(ra.right, high) };
                Some(a)
            } else {
                // SAFETY: (1) holds for the subtrees.
                rb.left = unsafe { merge(low, rb.left) };
                Some(b)
            }
        }
    }
}

/// `root` with `record` added.
///
/// # Safety
///
/// 1. `root` is a tree of records the heap owns, with no other borrow live.
/// 2. `record` is such a record, not in the tree, its span overlapping none of theirs, and
///    its links empty.
pub(super) unsafe fn insert<const MAX_ORDER: usize>(
    root: Link<MAX_ORDER>,
    record: NonNull<RegionRecord<MAX_ORDER>>,
) -> Link<MAX_ORDER> {
    // SAFETY: (2) the record is owned and not borrowed.
    let start = unsafe { record.as_ref().span.start_addr() };
    // SAFETY: (1) and (2): disjoint trees of owned records, ordered by start.
    unsafe {
        let (low, high) = split(root, start);
        merge(merge(low, Some(record)), high)
    }
}

/// `root` without `record`.
///
/// # Safety
///
/// 1. `root` is a tree of records the heap owns, with no other borrow live, and `record` is
///    in it.
pub(super) unsafe fn remove<const MAX_ORDER: usize>(
    root: Link<MAX_ORDER>,
    record: NonNull<RegionRecord<MAX_ORDER>>,
) -> Link<MAX_ORDER> {
    // SAFETY: (1) the record is owned and not borrowed.
    let start = unsafe { record.as_ref().span.start_addr() };
    // SAFETY: (1); spans do not overlap, so exactly `record` starts in `[start, start + 1)`.
    unsafe {
        let (low, rest) = split(root, start);
        let (_, high) = split(rest, start + 1);
        merge(low, high)
    }
}

/// Calls `visit` for every record, in address order.
///
/// # Safety
///
/// As for [`find`].
pub(super) unsafe fn for_each<const MAX_ORDER: usize>(
    root: Link<MAX_ORDER>,
    visit: &mut dyn FnMut(NonNull<RegionRecord<MAX_ORDER>>),
) {
    if let Some(node) = root {
        // SAFETY: (1) nodes of the tree are records the heap owns.
        let (left, right) = unsafe { (node.as_ref().left, node.as_ref().right) };
        // SAFETY: (1) holds for the subtrees.
        unsafe { for_each(left, visit) };
        visit(node);
        // SAFETY: (1) holds for the subtrees.
        unsafe { for_each(right, visit) };
    }
}
