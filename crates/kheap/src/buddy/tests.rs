//! Tests of the buddy heap's own mechanics; the shared conformance suite lives in
//! `kheap-testkit`.
