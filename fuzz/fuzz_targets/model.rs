//! Invariants checked: over any sequence of puts, updates, deletes, log
//! appends, reports, checkpoints, clean reopens and crashes (the process
//! dying at any I/O operation, then any power-loss outcome chosen by the
//! input), every acknowledged mutation survives, nothing is invented (only
//! the mutation in flight may be present or not), the store always reopens,
//! and tasks, logs and reports match the in-memory model. The body and its
//! input layout are `statewal::sim::fuzz::model`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| statewal::sim::fuzz::model(data));
