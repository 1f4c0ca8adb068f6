//! Invariants checked: `scan_segment`, `mark_durable` and `Op::decode` never
//! panic on arbitrary (or built-then-damaged) segments; the pieces tile each
//! segment in order without gap or overlap and only zeros follow the last;
//! a damaged span is marked durable exactly when a later record vouches for
//! it; a decoded op re-encodes to one with the same kind and id. The body
//! and its input layout are `statewal::sim::fuzz::segment_reader`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| statewal::sim::fuzz::segment_reader(data));
