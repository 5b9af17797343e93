//! Layers: heaps that wrap a heap and are one, so they stack (`Counted<BuddyHeap>`).

pub(crate) mod counted;
pub(crate) mod guarded;
pub(crate) mod size_class;
pub(crate) mod slab;
