//! The kheap test kit: what every heap algorithm is checked against.
//!
//! - [`Arena`]: aligned host memory to hand to a heap.
//! - [`Shadow`]: a model of the live allocations, checking each result of the heap and the
//!   byte pattern written into every block.
//! - [`conformance`]: one suite of checks, generic over [`kheap::RawHeap`];
//!   [`conformance_suite!`] instantiates it as `#[test]`s for one heap configuration.
//! - [`fuzz_script`]: operation scripts decoded from arbitrary bytes and run with every check
//!   after every step, for the `fuzz/` targets and their seeded stable-Rust twin.
//! - [`Rng`]: a seeded generator; [`SeedReport`] prints the seed when a test fails.
//! - [`ThreadCpu`]: host threads standing for CPUs, for [`kheap::PerCpu`].
//! - [`stress`]: threads with cross-thread frees over a shared front, for a number of
//!   operations or a time budget.

mod arena;
pub mod conformance;
pub mod fuzz_script;
mod rng;
mod shadow;
pub mod stress;
mod thread_cpu;

pub use arena::Arena;
pub use rng::{Rng, SeedReport};
pub use shadow::Shadow;
pub use thread_cpu::ThreadCpu;

/// Instantiates the conformance suite as a module of `#[test]` functions for one heap.
///
/// `$make` is an expression building an empty heap (called once per test). A layer that
/// guards its blocks (a debug layer) adds `guards: expr`, a [`conformance::Guards`] saying what
/// the suite must allow for.
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $heap:ty, $make:expr) => {
        $crate::conformance_suite!($name, $heap, $make, guards: $crate::conformance::Guards::none());
    };
    ($name:ident, $heap:ty, $make:expr, guards: $guards:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::conformance as c;

            fn make() -> $heap {
                $make
            }

            fn guards() -> c::Guards<$heap> {
                $guards
            }

            #[test]
            fn every_alignment_from_1_byte_to_64_kib_is_honoured() {
                c::every_alignment_is_honoured_with(make, &guards());
            }
            #[test]
            fn every_size_up_to_the_whole_heap_succeeds_iff_a_free_block_holds_it() {
                c::every_size_up_to_the_whole_heap_with(make, &guards());
            }
            #[test]
            fn exhausting_then_freeing_everything_restores_the_initial_heap() {
                c::exhaust_then_free_everything_with(make, &guards());
            }
            #[test]
            fn random_scripts_agree_with_the_shadow_model() {
                c::random_scripts_with(make, &guards());
            }
            #[test]
            fn batches_agree_with_the_shadow_model() {
                c::batches_agree_with_the_shadow_model_with(make, &guards());
            }
            #[test]
            fn fast_frees_decline_misuse() {
                c::fast_frees_decline_misuse(make);
            }
            #[test]
            fn grow_and_shrink_in_place_keep_contents_and_counts() {
                c::resize_in_place(make);
            }
            #[test]
            fn realloc_through_locked_heap_preserves_contents() {
                c::realloc_preserves_contents(make);
            }
            #[test]
            fn refused_regions_and_layouts_leave_the_heap_untouched() {
                c::bad_input_is_refused_with(make, &guards());
            }
            #[test]
            fn touching_regions_added_separately_merge() {
                c::touching_regions_merge(make);
            }
            #[test]
            fn statistics_track_requested_peak_and_fragmentation() {
                c::statistics_are_exact_with(make, &guards());
            }
            #[test]
            fn alloc_zeroed_returns_zeroed_memory() {
                c::alloc_zeroed_returns_zeroes(make);
            }
            #[test]
            fn the_heap_grows_from_its_source_only_for_requests_that_can_fit() {
                c::growth_from_a_memory_source(make);
            }
            #[test]
            fn extreme_layouts_are_refused_without_panicking() {
                c::extreme_layouts_are_refused_without_panicking_with(make, &guards());
            }
            #[test]
            fn growth_never_fails_while_a_touching_source_has_memory() {
                c::growth_never_fails_while_the_source_has_memory_with(make, &guards());
            }
        }
    };
}
