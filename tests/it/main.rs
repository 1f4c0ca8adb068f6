//! Integration tests: the store against real temporary directories.

mod basics;
