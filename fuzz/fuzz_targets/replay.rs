//! Invariants checked: opening a store on arbitrary journal segments and
//! `state.json` in a simulated filesystem never panics in any recovery mode;
//! a failed open is `Corrupt` (or `Io`) and names the file, while
//! point-in-time and salvage always open; a successful open is followed by a
//! successful checkpoint and a reopen with the same tasks and sessions; if
//! strict opens, every mode agrees with it. The body and its input layout
//! are `statewal::sim::fuzz::replay`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| statewal::sim::fuzz::replay(data));
