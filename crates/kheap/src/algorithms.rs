//! Heap algorithms: single-threaded, lock-free, owning nothing but the regions handed to them.

pub(crate) mod bitmap;
pub(crate) mod buddy;
pub(crate) mod first_fit;
pub(crate) mod pointer;
pub(crate) mod region;
pub(crate) mod tlsf;
