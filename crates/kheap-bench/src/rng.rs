//! The suite's seeded generator: the test kit's SplitMix64, with the unbiased draws the
//! workloads use (multiply-shift rather than the test kit's modulo), so every random sequence
//! in the suite comes from one generator.

#[derive(Clone, Debug)]
pub struct Rng(kheap_testkit::Rng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(kheap_testkit::Rng::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `lo..hi` (`hi > lo`).
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        debug_assert!(hi > lo);
        lo + ((self.next_u64() as u128 * (hi - lo) as u128) >> 64) as usize
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        self.between(0, n)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `true` with probability `percent / 100`.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < percent as usize
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}
