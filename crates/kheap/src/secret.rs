//! Per-heap secrets: what the slab layer's tags, the debug layer's headers and a hardened
//! TLSF heap's links are sealed with, so that a stray value (zeros, small integers, a pointer,
//! a stale record of an earlier heap over the same memory) is never taken for the heap's own.

/// Heaps that have drawn a secret so far in this program: a new heap over memory an earlier one
/// used (an arena reused, a nested heap inside a block) gets another secret, so it does not
/// take the earlier heap's stale records for its own.
#[cfg(target_has_atomic = "ptr")]
static SECRETS_DRAWN: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// A secret for a heap whose first region starts at `start`, from `seed` (a kernel may pass a
/// boot-time random number, so that the secret cannot be guessed from the heap's address):
/// SplitMix64's finaliser over the seed, the address and the number of secrets drawn before.
/// Never zero.
pub(crate) fn draw(seed: u64, start: usize) -> usize {
    #[cfg(target_has_atomic = "ptr")]
    let count = SECRETS_DRAWN.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    #[cfg(not(target_has_atomic = "ptr"))]
    let count = 0;
    let mut z = seed ^ (start as u64) ^ (count as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    // Truncated on 32-bit targets; the top bit keeps it from being zero.
    (z ^ (z >> 31)) as usize | 1 << (usize::BITS - 1)
}
