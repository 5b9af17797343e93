//! A small seeded xorshift generator: every random workload is reproducible from the seed the
//! kernel prints at boot.

/// xorshift64* (Vigna): fast, and good enough to vary sizes and orders.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` mixed with `salt` (such as a test name), never stuck at zero.
    pub fn new(seed: u64, salt: &str) -> Self {
        // FNV-1a over the salt, so different tests draw different streams from one seed.
        let mut state = seed ^ 0xcbf2_9ce4_8422_2325;
        for byte in salt.bytes() {
            state = (state ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        Rng(if state == 0 { 1 } else { state })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..bound` (`bound > 0`).
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }

    /// A number in `low..high` (`low < high`).
    pub fn range(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low)
    }

    /// `true` with probability `percent` / 100.
    pub fn percent(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}
