//! The library's one error type.
//!
//! Every error carries a [`ErrorKind`] that callers can match on, and a message
//! written for a person that names the file and, where it matters, the byte
//! offset involved ("checksum mismatch in journal/00000000000000000003.wal at
//! byte 4096").

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A specialised `Result` for statewal operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, for callers that want to react to a class of failure.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The operating system refused an I/O operation (see `source()`).
    Io,
    /// The disk is full (ENOSPC). Free space and retry.
    StorageFull,
    /// A file on disk failed its integrity check: checksum, framing or JSON.
    Corrupt,
    /// Another process holds the state directory's lock.
    Locked,
    /// An id was refused by [`crate::validate_id`].
    InvalidId,
    /// Input that is not what the operation expects (bad JSON, missing field).
    InvalidInput,
    /// A value is larger than the configured limit.
    TooLarge,
    /// The named task, session or file does not exist.
    NotFound,
    /// An earlier durability failure (a failed fsync) left the store unable to
    /// promise durability; it refuses writes until it is reopened.
    Poisoned,
    /// The store was opened read-only ([`crate::Options::read_only`]) and
    /// refuses every mutation and checkpoint.
    ReadOnly,
    /// A conditional write found another version than the one it expected
    /// ([`crate::Store::put_task_if`]); nothing was written.
    Conflict,
    /// The store's engine cannot do this: an operation only the journal
    /// engine offers (a checkpoint, a recovery report, an unwaited
    /// [`crate::Pending`], ...) asked of another engine. Nothing was done.
    Unsupported,
    /// A bug in statewal: a panic inside a checkpoint was caught and turned
    /// into this error, so that a background thread survives it. The
    /// journal still holds every acknowledged write.
    Internal,
    /// An encryption key is needed and none was given, or the key given is
    /// not the one the data was sealed with; the message names the key id
    /// needed. Never a verdict on the data: it may well be intact.
    Key,
}

impl ErrorKind {
    /// A stable, lowercase name, used by the stdio protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Io => "io",
            ErrorKind::StorageFull => "storage_full",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Locked => "locked",
            ErrorKind::InvalidId => "invalid_id",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Poisoned => "poisoned",
            ErrorKind::ReadOnly => "read_only",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Internal => "internal",
            ErrorKind::Key => "key",
        }
    }

    /// Every kind.
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::Io,
        ErrorKind::StorageFull,
        ErrorKind::Corrupt,
        ErrorKind::Locked,
        ErrorKind::InvalidId,
        ErrorKind::InvalidInput,
        ErrorKind::TooLarge,
        ErrorKind::NotFound,
        ErrorKind::Poisoned,
        ErrorKind::ReadOnly,
        ErrorKind::Conflict,
        ErrorKind::Unsupported,
        ErrorKind::Internal,
        ErrorKind::Key,
    ];
}

impl fmt::Display for ErrorKind {
    /// [`ErrorKind::as_str`]: the word the stdio protocol and `--json` use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ErrorKind {
    type Err = Error;

    /// Parses [`ErrorKind::as_str`]'s word, as a protocol client receives it.
    ///
    /// ```
    /// use statewal::ErrorKind;
    /// assert_eq!("not_found".parse::<ErrorKind>()?, ErrorKind::NotFound);
    /// assert_eq!(ErrorKind::StorageFull.to_string(), "storage_full");
    /// # Ok::<(), statewal::Error>(())
    /// ```
    fn from_str(s: &str) -> Result<ErrorKind> {
        ErrorKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                crate::options::unknown_word("error kind", s, "a word of ErrorKind::as_str")
            })
    }
}

/// The error returned by every fallible statewal operation.
pub struct Error {
    kind: ErrorKind,
    message: String,
    path: Option<PathBuf>,
    offset: Option<u64>,
    /// Shared, so that a clone (one fsync failure handed to every writer
    /// of a group commit, or to subscribers) keeps the source itself.
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A new error of `kind` with a message for a person.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            path: None,
            offset: None,
            source: None,
        }
    }

    /// An error of `kind` caused by `source` (a database client's error,
    /// say), which [`std::error::Error::source`] returns.
    #[cfg(any(feature = "postgres", feature = "replicate", feature = "encryption"))]
    pub(crate) fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error {
            source: Some(Arc::new(source)),
            ..Error::new(kind, message)
        }
    }

    /// An I/O error while doing `what` on `path`. ENOSPC becomes
    /// [`ErrorKind::StorageFull`].
    pub fn io(what: &str, path: impl AsRef<Path>, err: std::io::Error) -> Error {
        let path = path.as_ref();
        let kind = if err.raw_os_error() == Some(libc::ENOSPC)
            || err.kind() == std::io::ErrorKind::StorageFull
        {
            ErrorKind::StorageFull
        } else if err.kind() == std::io::ErrorKind::NotFound {
            ErrorKind::NotFound
        } else {
            ErrorKind::Io
        };
        Error {
            kind,
            message: format!("{what} {} failed: {err}", path.display()),
            path: Some(path.to_path_buf()),
            offset: None,
            source: Some(Arc::new(err)),
        }
    }

    /// Damage found in `path` at byte `offset`.
    pub fn corrupt(path: impl AsRef<Path>, offset: u64, what: impl fmt::Display) -> Error {
        let path = path.as_ref();
        Error {
            kind: ErrorKind::Corrupt,
            message: format!("corrupt {} at byte {offset}: {what}", path.display()),
            path: Some(path.to_path_buf()),
            offset: Some(offset),
            source: None,
        }
    }

    /// Attaches the path the error is about.
    pub fn with_path(mut self, path: impl Into<PathBuf>) -> Error {
        self.path = Some(path.into());
        self
    }

    /// Prefixes the message with context, keeping kind, path and offset.
    pub fn context(mut self, what: impl fmt::Display) -> Error {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The file the error is about, relative to the state directory where the
    /// store produced it.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The byte offset in [`Error::path`] where damage was found.
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    /// The message without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({}: {})", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Clone for Error {
    /// Clones everything, the source shared: used to hand one fsync failure
    /// to every writer of a group commit, and a failed checkpoint's error
    /// to subscribers ([`crate::Event::StateSaveError`]).
    fn clone(&self) -> Error {
        Error {
            kind: self.kind,
            message: self.message.clone(),
            path: self.path.clone(),
            offset: self.offset,
            source: self.source.clone(),
        }
    }
}
