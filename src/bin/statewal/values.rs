//! Parsers for the flags whose values are not free text: the words of
//! `--sync`, `recover --mode` and `--status` (offered by `--help`, the
//! completion scripts and the man page), and the numbers with a range,
//! whose errors say in words what is allowed and name the flag.
//!
//! The words are parsed by the library's `FromStr` (which also takes the
//! other spelling, hyphens or underscores); clap only learns which words to
//! show. The library itself knows nothing of clap.

use clap::builder::{PossibleValue, TypedValueParser};
use clap::error::ErrorKind;
use std::ffi::OsStr;
use std::marker::PhantomData;
use std::str::FromStr;

/// A value parsed by `T`'s `FromStr`, with `words` as the possible values
/// clap shows (a word may be a hint such as `interval:<ms>`, which no value
/// equals: clap does not check values against them, `FromStr` does).
#[derive(Clone)]
pub struct Words<T> {
    words: Vec<String>,
    of: PhantomData<fn() -> T>,
}

/// The words of `--sync`, as `--help` spells them.
pub fn sync() -> Words<statewal::SyncPolicy> {
    Words::new(["sync-before-ack", "os-buffered", "interval:<ms>"].map(String::from))
}

/// The words of `recover --mode`, hyphenated as flags usually are.
pub fn mode() -> Words<statewal::RecoveryMode> {
    Words::new(statewal::RecoveryMode::ALL.map(|m| m.as_str().replace('_', "-")))
}

/// The words of `--status`: the statuses as tasks store them.
pub fn status() -> Words<statewal::TaskStatus> {
    Words::new(statewal::TaskStatus::ALL.map(|s| s.as_str().to_string()))
}

impl<T> Words<T> {
    fn new(words: impl IntoIterator<Item = String>) -> Self {
        Words {
            words: words.into_iter().collect(),
            of: PhantomData,
        }
    }
}

impl<T> TypedValueParser for Words<T>
where
    T: FromStr<Err = statewal::Error> + Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let text = value.to_string_lossy();
        text.trim()
            .parse()
            .map_err(|e: statewal::Error| invalid(cmd, arg, &text, &e.to_string()))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            self.words.iter().map(|w| PossibleValue::new(w.clone())),
        ))
    }
}

/// clap's "invalid value" error, with `why` in words.
fn invalid(cmd: &clap::Command, arg: Option<&clap::Arg>, value: &str, why: &str) -> clap::Error {
    let flag = arg.map_or_else(|| "...".to_string(), |a| a.to_string());
    clap::Error::raw(
        ErrorKind::ValueValidation,
        format!("invalid value '{value}' for '{flag}': {why}\n"),
    )
    .with_cmd(cmd)
}

/// A whole number of at least `min`, at most `max`; below or above, the
/// error says `"{flag} must be {what}"`.
pub fn count(flag: &'static str, min: u64, max: u64, what: &'static str) -> Count {
    Count {
        flag,
        min,
        max,
        what,
    }
}

/// See [`count`].
#[derive(Clone)]
pub struct Count {
    flag: &'static str,
    min: u64,
    max: u64,
    what: &'static str,
}

impl TypedValueParser for Count {
    type Value = u64;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<u64, clap::Error> {
        let text = value.to_string_lossy();
        let why = match text.trim().parse::<u64>() {
            Ok(n) if (self.min..=self.max).contains(&n) => return Ok(n),
            Ok(_) => format!("{} must be {}", self.flag, self.what),
            Err(_) => format!("{} takes a whole number: {}", self.flag, self.what),
        };
        Err(invalid(cmd, arg, &text, &why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shown_word_parses_but_the_interval_hint() {
        for w in sync().words.iter().filter(|w| !w.contains('<')) {
            assert!(w.parse::<statewal::SyncPolicy>().is_ok(), "{w}");
        }
        assert!("interval:100".parse::<statewal::SyncPolicy>().is_ok());
        for w in &mode().words {
            assert!(w.parse::<statewal::RecoveryMode>().is_ok(), "{w}");
        }
        for w in &status().words {
            assert!(w.parse::<statewal::TaskStatus>().is_ok(), "{w}");
        }
        assert_eq!(status().words.len(), statewal::TaskStatus::ALL.len());
        assert_eq!(mode().words.len(), statewal::RecoveryMode::ALL.len());
    }
}
