//! Fronts: what a program installs as its allocator, over any heap and any lock.

#[cfg(feature = "allocator-api2")]
mod allocator_api;
pub(crate) mod cpu_id;
pub(crate) mod front;
mod give_back;
pub(crate) mod locked_heap;
pub(crate) mod misuse_hook;
pub(crate) mod per_cpu;
