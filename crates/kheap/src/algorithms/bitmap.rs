//! A bit array stored in memory the heap owns (inside one of its regions).

use core::ptr::NonNull;

const WORD_BITS: usize = usize::BITS as usize;

/// `len_words` words of bits starting at `words`.
///
/// Invariant: `words` points to `len_words` initialised `usize`s inside the heap's own
/// bookkeeping, which nothing but the owning heap reads or writes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bitmap {
    words: NonNull<usize>,
    len_words: usize,
}

impl Bitmap {
    /// Number of words needed for `bits` bits.
    pub(crate) const fn words_for(bits: usize) -> usize {
        bits.div_ceil(WORD_BITS)
    }

    /// Zeroes `len_words` words at `words` and takes them as a bitmap.
    ///
    /// # Safety
    ///
    /// 1. `words` is valid for writes of `len_words` `usize`s and aligned for `usize`.
    /// 2. Only this bitmap (and copies of it held by the same owner) uses that memory from now on.
    pub(crate) unsafe fn new_zeroed(words: NonNull<usize>, len_words: usize) -> Self {
        // SAFETY: (1) the memory is valid and aligned for `len_words` words.
        unsafe { words.as_ptr().write_bytes(0, len_words) };
        Bitmap { words, len_words }
    }

    /// The word holding `bit`.
    ///
    /// # Safety
    ///
    /// 1. `bit < len_words * usize::BITS`.
    #[inline]
    unsafe fn word(&self, bit: usize) -> *mut usize {
        debug_assert!(bit / WORD_BITS < self.len_words, "kheap: bitmap index {bit} out of range");
        // SAFETY: (1) keeps the word inside the bitmap's memory.
        unsafe { self.words.as_ptr().add(bit / WORD_BITS) }
    }

    /// Bits `bit` and `bit + 1` as a number 0..=3 (`bit` in the low place).
    ///
    /// # Safety
    ///
    /// 1. `bit` is even and `bit + 1 < len_words * usize::BITS`.
    #[inline]
    pub(crate) unsafe fn get_pair(&self, bit: usize) -> usize {
        // SAFETY: (1) the index is in range; the type invariant makes the word valid and ours.
        // An even `bit` and `bit + 1` share a word.
        let word = unsafe { self.word(bit).read() };
        (word >> (bit % WORD_BITS)) & 0b11
    }

    /// # Safety
    ///
    /// 1. `bit < len_words * usize::BITS`.
    #[inline]
    pub(crate) unsafe fn set(&mut self, bit: usize, value: bool) {
        let mask = 1 << (bit % WORD_BITS);
        // SAFETY: (1) the index is in range; the type invariant makes the word valid and ours,
        // and `&mut self` means no other access is in progress.
        unsafe {
            let word = self.word(bit);
            let old = word.read();
            word.write(if value { old | mask } else { old & !mask });
        }
    }

    /// Flips the bits of `pattern` (0..=3) in the pair at `bit`: one read and one write for a
    /// change of state whose old value the caller knows.
    ///
    /// # Safety
    ///
    /// 1. `bit` is even and `bit + 1 < len_words * usize::BITS`.
    #[inline]
    pub(crate) unsafe fn flip_pair(&mut self, bit: usize, pattern: usize) {
        debug_assert!(pattern <= 0b11 && bit % 2 == 0);
        // SAFETY: (1) the index is in range and an even `bit` and `bit + 1` share a word; the
        // type invariant makes the word valid and ours, and `&mut self` means no other access
        // is in progress.
        unsafe {
            let word = self.word(bit);
            word.write(word.read() ^ pattern << (bit % WORD_BITS));
        }
    }

    /// The whole word holding `bit`: for a caller that tests several pairs of one word and
    /// then writes it back once with [`store_word`](Self::store_word).
    ///
    /// # Safety
    ///
    /// 1. `bit < len_words * usize::BITS`.
    #[inline]
    pub(crate) unsafe fn load_word(&self, bit: usize) -> usize {
        // SAFETY: (1) the index is in range; the type invariant makes the word valid and ours.
        unsafe { self.word(bit).read() }
    }

    /// Replaces the word holding `bit` (see [`load_word`](Self::load_word)).
    ///
    /// # Safety
    ///
    /// 1. `bit < len_words * usize::BITS`.
    #[inline]
    pub(crate) unsafe fn store_word(&mut self, bit: usize, value: usize) {
        // SAFETY: (1) the index is in range; the type invariant makes the word valid and ours,
        // and `&mut self` means no other access is in progress.
        unsafe { self.word(bit).write(value) }
    }

    /// Sets `bit`.
    ///
    /// # Safety
    ///
    /// 1. `bit < len_words * usize::BITS`.
    #[inline]
    pub(crate) unsafe fn insert(&mut self, bit: usize) {
        // SAFETY: (1) the index is in range; the type invariant makes the word valid and ours,
        // and `&mut self` means no other access is in progress.
        unsafe {
            let word = self.word(bit);
            word.write(word.read() | 1 << (bit % WORD_BITS));
        }
    }

    /// Clears `bit`.
    ///
    /// # Safety
    ///
    /// 1. `bit < len_words * usize::BITS`.
    #[inline]
    pub(crate) unsafe fn remove(&mut self, bit: usize) {
        // SAFETY: as in `insert`.
        unsafe {
            let word = self.word(bit);
            word.write(word.read() & !(1 << (bit % WORD_BITS)));
        }
    }

    /// The first pair in `pairs` whose bit `which` (0 for the low bit, 1 for the high one) is
    /// set, reading a word at a time.
    pub(crate) fn find_pair(&self, pairs: core::ops::Range<usize>, which: usize) -> Option<usize> {
        let (mut bit, to) = (2 * pairs.start, (2 * pairs.end).min(self.len_words * WORD_BITS));
        // `0b0101…` shifted to the chosen bit of every pair.
        let lanes = (usize::MAX / 3) << which;
        while bit < to {
            let shift = bit % WORD_BITS;
            // SAFETY: `bit < len_words * WORD_BITS`; the type invariant makes the word valid.
            let word = (unsafe { self.word(bit).read() } & lanes) >> shift;
            if word != 0 {
                let found = (bit + word.trailing_zeros() as usize) / 2;
                return (found < pairs.end).then_some(found);
            }
            bit += WORD_BITS - shift;
        }
        None
    }

    /// Calls `visit(pair, value)` for every pair of bits `2 * pair`, `2 * pair + 1` with
    /// `pair` in `pairs` and either bit set (`value` as in [`get_pair`](Self::get_pair)),
    /// skipping words that are zero.
    pub(crate) fn for_each_nonzero_pair(
        &self,
        pairs: core::ops::Range<usize>,
        visit: &mut dyn FnMut(usize, usize),
    ) {
        let (from, to) = (2 * pairs.start, (2 * pairs.end).min(self.len_words * WORD_BITS));
        let mut bit = from;
        while bit < to {
            // SAFETY: `bit < len_words * WORD_BITS`; the type invariant makes the word valid.
            let word = unsafe { self.word(bit).read() } >> (bit % WORD_BITS);
            let in_word = (WORD_BITS - bit % WORD_BITS).min(to - bit);
            let mut rest = if in_word == WORD_BITS { word } else { word & ((1 << in_word) - 1) };
            while rest != 0 {
                let offset = rest.trailing_zeros() as usize & !1;
                visit((bit + offset) / 2, (rest >> offset) & 0b11);
                rest &= !(0b11 << offset);
            }
            bit += in_word;
        }
    }
}
