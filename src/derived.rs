//! The files a checkpoint derives from `state.json` and leaves beside it:
//! `state.snapshot` ([`crate::snapshot`]) and `.statewal-task-stats`
//! ([`crate::reconcile::live`]). Each is checksummed and bound to the
//! `state.json` it was written with, so a missing, stale or damaged one
//! only makes the next open slower.
//!
//! Writing them is therefore best effort (`docs/decisions.md`, "a derived
//! file that cannot be written is a warning, not a failed write"): the
//! checkpoint that meets a failure has already made its `state.json`
//! durable, so it succeeds, and the failure is a warning, logged once per
//! cause and kept as a problem for [`crate::Store::health`] until the file
//! is written again. A directory planted at one of their names (or at its
//! temp file's) blocks every write; statewal does not remove what it did
//! not write, so `health` and `verify` name it and say what to do.
//!
//! **Invariant:** a failure to write a derived file never fails a
//! checkpoint, and never changes what an open recovers.

use crate::error::Error;
use crate::fs::Fs;
use parking_lot::Mutex;
use std::collections::BTreeMap;

/// The derived files, by name in the state directory.
pub(crate) const DERIVED_FILES: [&str; 2] = [
    crate::snapshot::SNAPSHOT_FILE,
    crate::reconcile::live::STATS_FILE,
];

/// The last failure to write each derived file, until it is written again.
#[derive(Debug, Default)]
pub(crate) struct DerivedFailures(Mutex<BTreeMap<&'static str, String>>);

impl DerivedFailures {
    /// Records how writing `file` went: a failure is logged at `warn` (at
    /// `debug` when it repeats the last one, so an idle store whose every
    /// auto-save meets the same planted directory does not flood the log)
    /// and kept for `health`; a success forgets the last failure.
    pub fn record(&self, file: &'static str, outcome: std::result::Result<(), Error>) {
        let mut last = self.0.lock();
        let Err(e) = outcome else {
            last.remove(file);
            return;
        };
        let cause = e.to_string();
        if last.get(file) == Some(&cause) {
            tracing::debug!(file, error = %cause, "still cannot write a derived file");
            return;
        }
        tracing::warn!(
            file, error = %cause,
            "cannot write a derived file; state.json is durable and the checkpoint stands: \
             the next open reads state.json and the task files instead (slower, nothing is lost)"
        );
        last.insert(file, cause);
    }

    /// A problem for `health` per derived file whose last write failed.
    pub fn problems(&self) -> Vec<String> {
        self.0
            .lock()
            .iter()
            .map(|(file, cause)| {
                format!(
                    "{file} could not be written at the last checkpoint ({cause}); the \
                     checkpoint stands (state.json is durable), and every open {} until a \
                     checkpoint writes it: {}",
                    cost(file),
                    what_to_do(file)
                )
            })
            .collect()
    }
}

/// What an open does without `file`.
fn cost(file: &str) -> &'static str {
    match file {
        crate::snapshot::SNAPSHOT_FILE => "parses state.json",
        _ => "reads every task file",
    }
}

/// What an operator does about a derived file that cannot be written.
fn what_to_do(file: &str) -> String {
    format!(
        "if {file} or .{file}.tmp in the state directory is a directory, statewal does not \
         remove it (it did not make it): move it away or remove it by hand, and the next \
         checkpoint writes {file}; otherwise check free space and permissions"
    )
}

/// Each directory found at a derived file's name or at its temp file's,
/// with a message saying what it blocks and what to do. Reads only.
pub(crate) fn planted_dirs(fs: &dyn Fs) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for file in DERIVED_FILES {
        for name in [file.to_string(), format!(".{file}.tmp")] {
            // A failure to look is not a finding: the check says what it
            // can see, and the write reports the rest.
            if fs.is_dir(&name).unwrap_or(false) {
                let message = format!(
                    "{} is a directory, so statewal cannot write {file} (every checkpoint \
                     logs a warning, and every open {} instead: slower, nothing is lost); \
                     statewal does not remove what it did not make: move it away or remove \
                     it by hand, and the next checkpoint writes {file}",
                    fs.describe(&name),
                    cost(file)
                );
                out.push((name, message));
            }
        }
    }
    out
}
