//! Drop-in replacements for other allocators' APIs, so existing kernels switch by changing a
//! `use` line.

pub mod buddy_system_allocator;
