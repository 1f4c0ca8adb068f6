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

/// One compact JSON value on a line of its own. Every `--json` output is
/// made of these: one line for a command that answers with an object, one
/// per item for a list (JSON Lines); the README's reference has each schema.
pub fn json_line<T: serde::Serialize>(v: &T) -> Result<()> {
    let line = serde_json::to_string(v).expect("serializing JSON values cannot fail");
    write(format_args!("{line}"), true)
}

/// A count and its noun for a person: "1 task", "2 tasks", "0 tasks".
pub fn count<T: std::fmt::Display + PartialEq + From<u8>>(n: T, one: &str) -> String {
    if n == T::from(1) {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// [`count`] for a noun whose plural is not made with an `s`.
pub fn count_as<T: std::fmt::Display + PartialEq + From<u8>>(
    n: T,
    one: &str,
    many: &str,
) -> String {
    if n == T::from(1) {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_agree_with_their_nouns() {
        assert_eq!(count(0usize, "task"), "0 tasks");
        assert_eq!(count(1usize, "task"), "1 task");
        assert_eq!(count(2u64, "task"), "2 tasks");
        assert_eq!(count_as(1u64, "entry", "entries"), "1 entry");
        assert_eq!(count_as(3u64, "entry", "entries"), "3 entries");
    }
}
