//! Tests of the first-fit heap's own mechanics; the shared conformance suite lives in
//! `kheap-testkit`.
