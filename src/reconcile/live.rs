//! Edits of `tasks/<id>.json` made while the store is open (part 2).
//!
//! The open looks at every task file ([`super::edits`]). After it, a person
//! may still edit a task file by hand (the seed design's troubleshooting
//! says to), and a checkpoint, which writes the files of the tasks that
//! changed, would replace the edit unseen. So each checkpoint, before it
//! replaces or removes a task file, checks that the file still holds what
//! this process last wrote there, or what the open read there:
//! [`TaskFiles`] keeps a fingerprint of each (its CRC32 and length). A file
//! that differs, one where no file was known, or an entry that is not a
//! regular file is set aside as `tasks/<id>.json.edited-<ms>` and reported,
//! and only then replaced or removed. It is not imported: see
//! `docs/decisions.md`, "Hand edits while the store is open".
//!
//! The check reads only the files the checkpoint writes or removes, once
//! each, so its cost follows the changes, not the number of tasks.
//!
//! **Invariant:** a task file is replaced or removed by a checkpoint only
//! when it holds what this process last wrote or read there, or after it
//! was set aside and that rename made durable.

use super::aside::{self, Aside};
use super::{Action, Decision, now_ms};
use crate::error::{ErrorKind, Result};
use crate::fs::{self, Fs};
use crate::layout::TASKS_DIR;
use std::collections::HashMap;

/// From this many names without a known file in one checkpoint, `tasks/`
/// is listed once rather than each name looked up (`TaskFiles::listing`).
const UNKNOWN_LISTED_MIN: usize = 256;

/// A fingerprint of a task file's bytes: 8 bytes per file, so 100,000
/// tasks cost about 5 MB with their names and the map around them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Print {
    crc: u32,
    len: u32,
}

impl Print {
    pub fn of(bytes: &[u8]) -> Print {
        Print {
            crc: crc32fast::hash(bytes),
            // A task file is far below 4 GiB (statewal reads at most 128
            // MiB of one); a longer one saturates and still differs.
            len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
        }
    }
}

/// What this process last wrote to, or read from, each task file.
#[derive(Debug, Default)]
pub(crate) struct TaskFiles {
    /// By file name (`<id>.json`). A name not here: no file known.
    known: HashMap<Box<str>, Print>,
    /// Bytes a failed checkpoint may have left in a file (its batch failed
    /// part way through the renames): accepted as well as `known` until the
    /// next checkpoint writes that task.
    maybe: HashMap<Box<str>, Print>,
    /// A file was set aside and `tasks/` not yet synced since (the sync
    /// failed, or a later rename did): synced before anything is written
    /// under the old name.
    unsynced: bool,
}

impl TaskFiles {
    /// What the open read: each task file's name and fingerprint.
    pub fn from_scan(files: impl Iterator<Item = (String, Print)>) -> TaskFiles {
        TaskFiles {
            known: files.map(|(name, p)| (name.into_boxed_str(), p)).collect(),
            ..TaskFiles::default()
        }
    }

    /// Forgets a file the open set aside.
    pub fn forget(&mut self, name: &str) {
        self.known.remove(name);
    }

    /// Checks each file about to be written (`Some`) or removed (`None`),
    /// by name in `tasks/`, and sets aside every one that changed since
    /// this process last wrote or read it; `tasks/` is synced before this
    /// returns, so the renames (and any an earlier, failed checkpoint left
    /// unsynced) are durable before the files are replaced. Each file set
    /// aside is added to `out`, even when a later one fails.
    pub fn guard(
        &mut self,
        fs: &dyn Fs,
        files: &[(String, Option<Vec<u8>>)],
        out: &mut Vec<Decision>,
    ) -> Result<()> {
        let mut ms = now_ms();
        let present = self.listing(fs, files)?;
        for (name, body) in files {
            if present
                .as_ref()
                .is_some_and(|p| !p.contains(name.as_str()) && !self.is_known(name))
            {
                continue; // No file where none was known: nothing to keep.
            }
            let Some(why) = self.changed(fs, name)? else {
                continue;
            };
            let path = fs::join(TASKS_DIR, name);
            self.unsynced = true;
            let to = aside::rename_aside(
                fs,
                &Aside {
                    path: path.clone(),
                    why: why.clone(),
                },
                &mut ms,
            )?;
            self.known.remove(name.as_str());
            self.maybe.remove(name.as_str());
            let (kept, then) = match body {
                Some(_) => (
                    super::merge::STATEWAL,
                    "the store's copy is written in its place",
                ),
                None => (
                    "nothing",
                    "the task is no longer in the store (deleted or archived)",
                ),
            };
            out.push(Decision {
                task: name[..name.len() - ".json".len()].to_string(),
                action: Action::SetAside,
                kept: kept.into(),
                other: Some(format!("{path}, now {to}")),
                reason: format!(
                    "{why}; {then}. Not imported while the store is open: to apply it, \
                     stop the store and rename it back; the next open imports it if newer"
                ),
            });
        }
        self.sync(fs)
    }

    /// Records what a checkpoint's batch for these files did: on success
    /// each file holds its body (or is gone); after a failure each may hold
    /// its old bytes or its new ones.
    pub fn written(&mut self, files: &[(String, Option<Vec<u8>>)], ok: bool) {
        for (name, body) in files {
            let name = name.as_str();
            match (body, ok) {
                (Some(b), true) => {
                    self.known.insert(name.into(), Print::of(b));
                    self.maybe.remove(name);
                }
                (None, true) => {
                    self.known.remove(name);
                    self.maybe.remove(name);
                }
                (Some(b), false) => {
                    self.maybe.insert(name.into(), Print::of(b));
                }
                // Removed or not: a missing file is never an edit.
                (None, false) => {}
            }
        }
    }

    /// Whether a file is known under `name` (written or read here).
    fn is_known(&self, name: &str) -> bool {
        self.known.contains_key(name) || self.maybe.contains_key(name)
    }

    /// Every entry name in `tasks/`, whatever it is, when `files` has at
    /// least [`UNKNOWN_LISTED_MIN`] names where no file is known (the first
    /// checkpoint after tasks were created): one listing instead of a
    /// `stat` per name (measured: the stats added about 0.5 s to the first
    /// checkpoint of 100,000 tasks). `None`: look each name up.
    fn listing(
        &self,
        fs: &dyn Fs,
        files: &[(String, Option<Vec<u8>>)],
    ) -> Result<Option<std::collections::HashSet<String>>> {
        let unknown = files.iter().filter(|(n, _)| !self.is_known(n)).count();
        if unknown < UNKNOWN_LISTED_MIN {
            return Ok(None);
        }
        Ok(fs
            .list_all(TASKS_DIR)?
            .map(|names| names.into_iter().collect()))
    }

    /// Why `tasks/<name>` is not what this process last saw there, if it is
    /// not. One read (or, where no file was known, one stat).
    fn changed(&self, fs: &dyn Fs, name: &str) -> Result<Option<String>> {
        let path = fs::join(TASKS_DIR, name);
        let seen: Vec<Print> = [self.known.get(name), self.maybe.get(name)]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        let not_regular = |e: crate::error::Error| -> Result<Option<String>> {
            match e.kind() {
                // A directory, symlink or FIFO: never followed, never
                // opened for long (the fs layer opens without blocking).
                ErrorKind::InvalidInput => Ok(Some(format!(
                    "was replaced by something that is not a regular file while the store was \
                     open ({e})"
                ))),
                _ => Err(e),
            }
        };
        let Some(longest) = seen.iter().map(|p| p.len).max() else {
            return match fs.file_len(&path) {
                Ok(None) => Ok(None),
                Ok(Some(n)) => Ok(Some(format!(
                    "appeared while the store was open ({n} bytes where this process knew of \
                     no file)"
                ))),
                Err(e) => not_regular(e),
            };
        };
        // One byte past the longest known: a longer file differs anyway.
        match fs.read_at(&path, 0, u64::from(longest) + 1) {
            // Removed by hand: nothing to keep.
            Ok(None) => Ok(None),
            Ok(Some(bytes)) if seen.contains(&Print::of(&bytes)) => Ok(None),
            Ok(Some(_)) => Ok(Some(
                "changed while the store was open (it differs from what this process last \
                 wrote or read there)"
                    .into(),
            )),
            Err(e) => not_regular(e),
        }
    }

    /// Makes the renames aside durable, if one is not yet.
    fn sync(&mut self, fs: &dyn Fs) -> Result<()> {
        if self.unsynced {
            // Sync the directory so the renames aside survive power loss
            // before the checkpoint writes the store's copy under the old
            // name: power loss could keep that write's rename and lose this
            // one, and the edit would be gone.
            fs.sync_dir(TASKS_DIR)?;
            self.unsynced = false;
        }
        Ok(())
    }
}
