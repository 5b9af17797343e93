//! The fuzz targets' scripts (`fuzz/fuzz_targets/`), fed with seeded random byte strings on
//! stable Rust, and the inputs fuzzing found, kept as regressions.
//!
//! `KHEAP_FUZZ_SCRIPTS=N` runs N byte strings per target instead of the default.

use kheap::{BuddyHeap, Counted, FirstFitHeap, FitPolicy, Heap, SlabHeap, TlsfHeap};
use kheap_testkit::fuzz_script::{c_style, lookup, run_default_heap, run_locked, run_raw};
use kheap_testkit::{Rng, SeedReport};

/// Random byte strings of random lengths (up to 2 KiB), one seed each.
fn scripts(label: &'static str, run: impl Fn(&[u8])) {
    let count: u64 = std::env::var("KHEAP_FUZZ_SCRIPTS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    for seed in 0..count {
        let _report = SeedReport { label, seed };
        let mut rng = Rng::new(seed ^ 0xF022);
        let len = rng.range(0..=2048);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        run(&bytes);
    }
}

#[test]
fn buddy_scripts() {
    scripts("buddy_scripts", |bytes| match bytes.first().map(|b| b % 2) {
        Some(0) => run_raw(BuddyHeap::<16>::with_orders, Some(lookup()), &bytes[1..]),
        _ => run_raw(BuddyHeap::new, Some(lookup()), bytes.get(1..).unwrap_or(&[])),
    });
}

#[test]
fn first_fit_scripts() {
    scripts("first_fit_scripts", |bytes| {
        let policy = [FitPolicy::First, FitPolicy::Next, FitPolicy::Best, FitPolicy::Worst]
            [usize::from(bytes.first().copied().unwrap_or(0) % 4)];
        let make = match policy {
            FitPolicy::First => || FirstFitHeap::new(FitPolicy::First),
            FitPolicy::Next => || FirstFitHeap::new(FitPolicy::Next),
            FitPolicy::Best => || FirstFitHeap::new(FitPolicy::Best),
            FitPolicy::Worst => || FirstFitHeap::new(FitPolicy::Worst),
        };
        run_raw(make, None, bytes.get(1..).unwrap_or(&[]));
    });
}

#[test]
fn tlsf_scripts() {
    scripts("tlsf_scripts", |bytes| run_raw(TlsfHeap::new, Some(lookup()), bytes));
}

#[test]
fn hardened_tlsf_scripts() {
    scripts("hardened_tlsf_scripts", |bytes| match bytes.first().map(|b| b % 3) {
        Some(0) => run_raw(TlsfHeap::hardened, Some(lookup()), &bytes[1..]),
        Some(1) => run_raw(|| SlabHeap::new(TlsfHeap::hardened()), Some(lookup()), &bytes[1..]),
        _ => run_locked(TlsfHeap::hardened, Some(c_style()), bytes.get(1..).unwrap_or(&[])),
    });
}

#[test]
fn default_heap_scripts() {
    scripts("default_heap_scripts", run_default_heap);
}

#[test]
fn locked_scripts() {
    scripts("locked_scripts", |bytes| {
        let rest = bytes.get(1..).unwrap_or(&[]);
        match bytes.first().copied().unwrap_or(0) % 5 {
            0 => run_locked(BuddyHeap::new, Some(c_style()), rest),
            1 => run_locked(TlsfHeap::new, Some(c_style()), rest),
            2 => run_locked(|| FirstFitHeap::new(FitPolicy::Best), None, rest),
            3 => run_locked(|| Counted::new(TlsfHeap::new()), Some(c_style()), rest),
            _ => run_locked(|| Heap::new().with_slabs_from(0), Some(c_style()), rest),
        }
    });
}

/// Found by `cargo xtask fuzz --target heap`: with the backing heap nearly full (32 bytes free,
/// the largest block 16), a 32-byte request was refused while the slab layer counted a free
/// 192-byte object (which serves only its class) as the largest free block.
#[test]
fn default_heap_refusal_beside_a_free_object_of_another_class() {
    let input: [u8; 62] = [
        0x0a, 0x2a, 0xbc, 0x00, 0x2b, 0x80, 0xaf, 0xd9, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xd9,
        0x06, 0x00, 0x2f, 0x08, 0x00, 0x00, 0x00, 0x60, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xd9, 0x06,
        0x00, 0x2f, 0x08, 0x00, 0x00, 0x00, 0x60, 0x06, 0x00, 0x00, 0xfc, 0x5d, 0x00, 0x20, 0x00, 0x45, 0x00,
        0x00, 0xfc, 0x5d, 0x00, 0x20, 0x00, 0x45, 0x00, 0x00, 0x00, 0x00,
    ];
    run_raw(|| Heap::new().with_slabs_from(0), Some(lookup()), &input);
}
