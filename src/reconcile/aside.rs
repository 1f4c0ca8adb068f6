//! Setting a task file aside: renaming `tasks/<id>.json` to a free
//! `tasks/<id>.json.edited-<ms>`, so that the store's copy can be written
//! under the old name without the file being lost. The open does it for
//! edits that lose and files that are not tasks ([`super::apply`]); a
//! checkpoint does it for edits made while the store is open
//! ([`super::live`]).
//!
//! Every rename is followed by a sync of `tasks/` before the store's copy
//! replaces the old name: without it, power loss could keep the new file's
//! rename and lose this one, and the edit would be gone.

use super::now_ms;
use crate::error::{ErrorKind, Result};
use crate::fs::{self, Fs};

/// One file to set aside, and why, for the warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Aside {
    /// `tasks/<name>`.
    pub path: String,
    /// What the file is, as a predicate of its path: "is not a task (...)",
    /// "differs from the store's copy and is not newer (...)".
    pub why: String,
}

/// The longest file name most file systems take.
const NAME_MAX_BYTES: usize = 255;
/// `.edited-` and the digits of a millisecond stamp (13 until 2286; room
/// for more).
const EDITED_SUFFIX_MAX_BYTES: usize = ".edited-".len() + 20;

/// Renames each file to `<path>.edited-<ms>` (a free name), then syncs
/// `tasks/` once. Returns (old, new) names.
pub(crate) fn set_aside(fs: &dyn Fs, files: &[Aside]) -> Result<Vec<(String, String)>> {
    let mut done = Vec::new();
    let mut ms = now_ms();
    for a in files {
        let to = rename_aside(fs, a, &mut ms)?;
        done.push((a.path.clone(), to));
    }
    if !done.is_empty() {
        // Sync the directory so the renames survive power loss before the
        // next checkpoint writes the store's copy under the old name.
        fs.sync_dir(crate::layout::TASKS_DIR)?;
    }
    Ok(done)
}

/// Renames one file to a free `<path>.edited-<ms>` (trying later stamps
/// from `ms` on, which it leaves at the one used), and warns, saying why.
/// The caller syncs `tasks/` before anything takes the old name.
pub(crate) fn rename_aside(fs: &dyn Fs, a: &Aside, ms: &mut u128) -> Result<String> {
    let to = free_name(fs, &a.path, ms)?;
    // The rename moves the entry itself: a symlink is never followed, a
    // FIFO never opened, a directory moved whole.
    fs.rename(&a.path, &to)?;
    tracing::warn!(file = %a.path, now = %to, "{} {}; set aside as {to}", a.path, a.why);
    Ok(to)
}

/// A name `<path>.edited-<ms>` that nothing has taken.
fn free_name(fs: &dyn Fs, path: &str, ms: &mut u128) -> Result<String> {
    // A name near the file system's limit (255 bytes; only a file that is
    // no task, as an id has at most 128) is shortened so that
    // `.edited-<ms>` fits.
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let mut keep = name.len().min(NAME_MAX_BYTES - EDITED_SUFFIX_MAX_BYTES);
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    let base = fs::join(dir, &name[..keep]);
    loop {
        let to = format!("{base}.edited-{ms}");
        match fs.file_len(&to) {
            Ok(None) => return Ok(to),
            // Taken, by a file or by a directory, symlink or FIFO.
            Ok(Some(_)) => {}
            Err(e) if e.kind() == ErrorKind::InvalidInput => {}
            Err(e) => return Err(e),
        }
        *ms += 1;
    }
}
