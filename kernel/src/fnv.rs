//! A small FNV-1a `BuildHasher` for `hashbrown::HashMap`: hashbrown without default features
//! brings no hasher, and the kernel has no source of random keys anyway.

use core::hash::{BuildHasher, Hasher};

/// Builds [`FnvHasher`]s.
#[derive(Clone, Copy, Default)]
pub struct FnvBuildHasher;

/// 64-bit FNV-1a.
pub struct FnvHasher(u64);

impl BuildHasher for FnvBuildHasher {
    type Hasher = FnvHasher;

    fn build_hasher(&self) -> FnvHasher {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for FnvHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
