//! The recorded workloads: each drives one real crate through its public API
//! on an input generated here from a fixed seed.
//!
//! A workload is split in two: `prepare` builds the input (not recorded) and
//! returns the closure that does the work (recorded). The input is dropped
//! only after recording stops, so the trace is the crate's own allocations.

mod graph;
mod image;
mod json;
mod logscan;
mod markdown;
mod rust_parse;
mod script;
mod toml_config;

/// One recordable workload.
pub struct Workload {
    /// The trace's name: `traces/<name>.trace.gz`.
    pub name: &'static str,
    /// The crate under test, whose locked version goes in the header.
    pub krate: &'static str,
    /// What the workload does, for the header and the README.
    pub what: &'static str,
    /// Builds the input and returns the work to record.
    pub prepare: fn() -> Box<dyn FnMut()>,
}

pub const ALL: &[Workload] = &[
    markdown::WORKLOAD,
    toml_config::WORKLOAD,
    json::WORKLOAD,
    graph::WORKLOAD,
    script::WORKLOAD,
    image::WORKLOAD,
    logscan::WORKLOAD,
    rust_parse::WORKLOAD,
];

/// SplitMix64: a tiny, well-mixed generator so inputs are the same on every
/// machine and run (no dependency on a rand crate's algorithm choices).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }
}

/// Words for generated prose and identifiers.
pub const WORDS: &[&str] = &[
    "kernel",
    "heap",
    "block",
    "page",
    "frame",
    "buddy",
    "slab",
    "arena",
    "lock",
    "free",
    "list",
    "order",
    "split",
    "merge",
    "align",
    "size",
    "class",
    "cache",
    "region",
    "memory",
    "address",
    "virtual",
    "physical",
    "thread",
    "core",
    "interrupt",
    "timer",
    "device",
    "driver",
    "queue",
    "buffer",
    "packet",
    "socket",
    "file",
    "inode",
    "mount",
    "process",
    "signal",
    "stack",
    "guard",
    "canary",
    "vector",
    "table",
    "entry",
    "map",
    "tree",
    "node",
    "edge",
    "graph",
    "path",
    "weight",
    "cost",
    "score",
    "token",
    "parser",
    "render",
    "output",
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "with",
    "as",
    "on",
    "by",
    "from",
    "at",
    "which",
];

/// `n` random words joined by spaces.
pub fn words(rng: &mut Rng, n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(rng.pick(WORDS));
    }
    s
}
