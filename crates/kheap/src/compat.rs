//! Drop-in replacements for other allocators' APIs, so existing kernels switch by changing a
//! `use` line. Each keeps its original's type names and generic parameters, in the original's
//! order, with kheap's lock as an extra, defaulted last parameter.

pub mod buddy_system_allocator;
pub mod linked_list_allocator;
