//! Standard output that ends the command quietly when the reader goes away.
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe fails with EPIPE, and
//! `println!` panics on that failure (exit 101, a backtrace under
//! `RUST_BACKTRACE`): `statewal list | head -1` did exactly that. The
//! [`outln!`] and [`out!`] macros return the error instead, and `main` turns
//! a broken pipe into a quiet exit with code 0, as ripgrep does: the reader
//! has all it asked for.
//!
//! [`outln!`]: crate::outln
//! [`out!`]: crate::out

use statewal::{Error, Result};
use std::io::Write;

/// Writes to standard output, naming it in the error.
pub fn write(args: std::fmt::Arguments<'_>, newline: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| {
            if newline {
                out.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .map_err(|e| Error::io("write", "standard output", e))
}

/// Whether `e` is a write to a pipe whose reader has gone.
pub fn is_broken_pipe(e: &Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
