//! The atomics the locks are built on: `core`'s, or, when built with `--cfg loom` (`cargo xtask
//! loom`), loom's, so that the loom models in `tests/loom.rs` explore every interleaving and
//! memory ordering of the locks' own code.
//!
//! A lock must be `const`-constructible (`RawMutex::INIT`, `LockedHeap::new` in a `static`),
//! and loom's atomics are not: under loom each atomic is created on its first use, inside the
//! model run that uses it, from the value it was `const`-constructed with. loom sees that
//! creation as a write by the thread that first uses the atomic, so a model touches a lock
//! (`is_locked()`) before sharing it with other threads, as a real program's `static` lock
//! exists before any thread runs.

#[cfg(not(loom))]
pub(crate) use core::hint::spin_loop;
#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use loom_atomics::{spin_loop, AtomicBool, AtomicUsize, Ordering};

#[cfg(loom)]
mod loom_atomics {
    extern crate std;

    use std::sync::OnceLock;

    pub(crate) use loom::sync::atomic::Ordering;

    /// A spinning thread lets loom run the others (a plain spin would never end under loom).
    pub(crate) fn spin_loop() {
        loom::thread::yield_now();
    }

    macro_rules! lazy_atomic {
        ($name:ident, $loom:ty, $value:ty) => {
            /// A loom atomic created on first use from the `const` initial value.
            pub(crate) struct $name {
                initial: $value,
                atomic: OnceLock<$loom>,
            }

            // Not every atomic uses every method.
            #[allow(dead_code)]
            impl $name {
                pub(crate) const fn new(initial: $value) -> Self {
                    $name { initial, atomic: OnceLock::new() }
                }

                fn get(&self) -> &$loom {
                    self.atomic.get_or_init(|| <$loom>::new(self.initial))
                }

                pub(crate) fn load(&self, order: Ordering) -> $value {
                    self.get().load(order)
                }

                pub(crate) fn store(&self, value: $value, order: Ordering) {
                    self.get().store(value, order)
                }

                pub(crate) fn compare_exchange(
                    &self,
                    current: $value,
                    new: $value,
                    success: Ordering,
                    failure: Ordering,
                ) -> Result<$value, $value> {
                    self.get().compare_exchange(current, new, success, failure)
                }
            }

            impl Default for $name {
                fn default() -> Self {
                    Self::new(<$value>::default())
                }
            }

            impl core::fmt::Debug for $name {
                fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                    f.debug_struct(stringify!($name)).finish_non_exhaustive()
                }
            }
        };
    }

    lazy_atomic!(AtomicBool, loom::sync::atomic::AtomicBool, bool);
    lazy_atomic!(AtomicUsize, loom::sync::atomic::AtomicUsize, usize);

    impl AtomicUsize {
        pub(crate) fn fetch_add(&self, value: usize, order: Ordering) -> usize {
            self.get().fetch_add(value, order)
        }

        pub(crate) fn fetch_sub(&self, value: usize, order: Ordering) -> usize {
            self.get().fetch_sub(value, order)
        }
    }
}
