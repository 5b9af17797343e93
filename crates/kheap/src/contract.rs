//! The contract every heap algorithm and layer implements, and the types it speaks in.

pub(crate) mod error;
pub(crate) mod misuse;
pub(crate) mod raw_heap;
pub(crate) mod stats;
pub(crate) mod walk;
