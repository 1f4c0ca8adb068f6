//! Backups for operators: [`backups`] lists `state.backup.*.json` with their
//! validity, and [`crate::Store::restore_backup`] brings one back through the
//! journal.
//!
//! **Invariant:** a restore writes nothing but one journal `batch` record
//! (its task and session puts and deletes) and checkpoints; no file is
//! copied over `state.json`. The backup is validated whole before anything
//! is written, and the batch is replayed all or none, so a crash or a
//! failure at any point leaves the whole old state or the whole backup,
//! never a mix (see `docs/decisions.md`, "Restore as one batch").

use crate::engine::Engine;
use crate::engine::journal::JournalEngine;
use crate::error::{Error, ErrorKind, Result};
use crate::fs::{Fs, RealFs};
use crate::journal::op::session_id;
use crate::layout::{self, BACKUP_PREFIX};
use crate::model::PersistedState;
use crate::store::Mutation;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// One `state.backup.<stamp>.json`, as [`backups`] found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BackupInfo {
    /// The file name, e.g. `state.backup.1767268800000.json`.
    pub name: String,
    /// The stamp inside the name: milliseconds since the epoch, or
    /// statewal's older `YYYYMMDDTHHMMSS.ffffffZ`.
    pub stamp: String,
    /// Seconds since the time the stamp denotes.
    pub age_seconds: Option<u64>,
    /// The file's size.
    pub size_bytes: u64,
    /// The file parses, its task ids are valid and its checksum seal (if it
    /// has one) matches; an unversioned one (the original server's) must
    /// also migrate, in memory, as `statewal migrate` would migrate it.
    pub valid: bool,
    /// The version a valid backup was written at: statewal's `"1.0.0"`, or
    /// `"0"` for the original server's (no `version` member).
    pub version: Option<String>,
    /// Why it is not valid, e.g. `empty file`, `truncated JSON at byte
    /// 812`, a checksum mismatch, or why an unversioned one cannot be
    /// migrated.
    pub problem: Option<String>,
    /// Tasks in a valid backup.
    pub tasks: Option<usize>,
    /// Session records in a valid backup.
    pub sessions: Option<usize>,
    /// The journal position a valid backup covers (0 for the original
    /// server's, which has no journal).
    pub journal_seq: Option<u64>,
}

/// What [`crate::Store::restore_backup`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RestoreReport {
    /// The backup restored.
    pub backup: String,
    /// Tasks written because the backup's version differs or is missing now.
    pub tasks_put: Vec<String>,
    /// Tasks deleted because the backup does not hold them.
    pub tasks_deleted: Vec<String>,
    /// Session records written.
    pub sessions_put: Vec<String>,
    /// Session records deleted.
    pub sessions_deleted: Vec<String>,
    /// The backup holding the state just before the restore: restoring it
    /// undoes this one. `None` when nothing changed (nothing to undo), or
    /// when `backups_kept` is 0 and it was pruned at once.
    pub undo_backup: Option<String>,
}

impl RestoreReport {
    /// Whether the restore changed anything.
    pub fn changed(&self) -> bool {
        !(self.tasks_put.is_empty()
            && self.tasks_deleted.is_empty()
            && self.sessions_put.is_empty()
            && self.sessions_deleted.is_empty())
    }
}

/// The backups in the state directory `dir`, newest first, read without
/// opening a store (no lock is taken, nothing is written).
pub fn backups(dir: &Path) -> Result<Vec<BackupInfo>> {
    list(&RealFs::existing(dir)?)
}

impl JournalEngine {
    /// [`crate::Store::backups`] on the journal engine.
    pub(crate) fn backups(&self) -> Result<Vec<BackupInfo>> {
        list(self.fs())
    }

    /// [`crate::Store::restore_backup`] on the journal engine.
    pub(crate) fn restore_backup(&self, name: &str) -> Result<RestoreReport> {
        let name = backup_name(name);
        let wanted = read_backup(self.fs(), &name)?;
        let before = self.checkpoint()?;
        let mut report = RestoreReport {
            backup: name,
            tasks_put: Vec::new(),
            tasks_deleted: Vec::new(),
            sessions_put: Vec::new(),
            sessions_deleted: Vec::new(),
            undo_backup: None,
        };
        let diff = self.diff(wanted, &mut report)?;
        // One batch record (issue 8, part 5): separate records let a restore
        // that failed halfway leave some of its mutations applied and
        // unacknowledged, a mix of the two states.
        self.submit_batch_as_is(diff)?.wait()?;
        if report.changed() {
            self.checkpoint().map_err(|e| {
                e.context(
                    "the restore is applied and durable, but the checkpoint after it failed, \
                     so no undo backup was made",
                )
            })?;
            report.undo_backup = find_backup_at(self.fs(), before.seq).map_err(|e| {
                e.context(
                    "the restore is applied and durable, but listing the backups to name \
                     its undo backup failed",
                )
            })?;
        }
        Ok(report)
    }

    /// The mutations that turn the current tasks and sessions into
    /// `wanted`'s, recording their ids in `report`.
    fn diff(&self, wanted: PersistedState, report: &mut RestoreReport) -> Result<Vec<Mutation>> {
        let mut out = Vec::new();
        let mut current: BTreeMap<String, crate::Task> = Engine::list_tasks(self)?
            .into_iter()
            .map(|t| (t.id().to_string(), t))
            .collect();
        for task in wanted.tasks {
            if current.remove(task.id()).as_ref() != Some(&task) {
                report.tasks_put.push(task.id().to_string());
                out.push(Mutation::PutTask(task));
            }
        }
        for id in current.into_keys() {
            report.tasks_deleted.push(id.clone());
            out.push(Mutation::DeleteTask(id));
        }
        let mut current: BTreeMap<String, Value> = self
            .session_values()
            .into_iter()
            .filter_map(|s| Some((session_id(&s)?.to_string(), s)))
            .collect();
        for session in wanted.sessions {
            let id = session_id(&session)
                .expect("read_backup checked every session id")
                .to_string();
            if current.remove(&id).as_ref() != Some(&session) {
                report.sessions_put.push(id);
                out.push(Mutation::PutSession(session));
            }
        }
        for id in current.into_keys() {
            report.sessions_deleted.push(id.clone());
            out.push(Mutation::DeleteSession(id));
        }
        Ok(out)
    }
}

/// Accepts a backup's file name or just its stamp.
fn backup_name(arg: &str) -> String {
    if arg.starts_with(BACKUP_PREFIX) && arg.ends_with(".json") {
        arg.to_string()
    } else {
        format!("{BACKUP_PREFIX}{arg}.json")
    }
}

/// Reads a backup for restoring: it must exist, be a backup, and be valid
/// down to every session record's id, so a restore that starts can finish.
fn read_backup(fs: &dyn Fs, name: &str) -> Result<PersistedState> {
    if name.contains('/') || name.len() <= BACKUP_PREFIX.len() + ".json".len() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{name:?} is not a backup name (state.backup.<stamp>.json); nothing was changed"
            ),
        ));
    }
    let refuse = |why: String| {
        Error::new(
            ErrorKind::Corrupt,
            format!(
                "backup {} is invalid, nothing was changed: {why}",
                fs.describe(name)
            ),
        )
        .with_path(name)
    };
    let state = match layout::read_state_file_any_version(fs, name)? {
        Ok((state, _)) => state,
        Err(why) if why == "missing" => {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "no backup {}; `statewal backups` lists them; nothing was changed",
                    fs.describe(name)
                ),
            )
            .with_path(name));
        }
        Err(why) => return Err(refuse(why)),
    };
    for s in &state.sessions {
        match session_id(s) {
            Some(id) if crate::id::validate_id(id).is_ok() => {}
            _ => return Err(refuse("a session record without a valid \"id\"".into())),
        }
    }
    Ok(state)
}

/// The newest backup covering journal position `seq`: the `state.json` of
/// the checkpoint before a restore, once the checkpoint after it renamed it.
/// Only statewal's own backups are looked at: an unversioned one says
/// `journal_seq` 0 without covering anything.
fn find_backup_at(fs: &dyn Fs, seq: u64) -> Result<Option<String>> {
    for name in layout::list_backups(fs)? {
        if let Ok((state, _)) = layout::read_state_file(fs, &name)?
            && state.journal_seq == seq
        {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

fn list(fs: &dyn Fs) -> Result<Vec<BackupInfo>> {
    let now = time::OffsetDateTime::now_utc();
    let mut out = Vec::new();
    for name in layout::list_backups(fs)? {
        let stamp = layout::backup_stamp_of(&name).to_string();
        let age_seconds =
            layout::backup_stamp_time(&stamp).map(|t| (now - t).whole_seconds().max(0) as u64);
        let mut info = BackupInfo {
            name,
            stamp,
            age_seconds,
            size_bytes: 0,
            valid: false,
            version: None,
            problem: None,
            tasks: None,
            sessions: None,
            journal_seq: None,
        };
        let read = match fs.read(&info.name) {
            // A sealed backup that does not open (altered, or another
            // key's): listed as invalid, saying why; the others still are.
            Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Key) => {
                info.size_bytes = fs.file_len(&info.name)?.unwrap_or(0);
                info.problem = Some(e.to_string());
                out.push(info);
                continue;
            }
            read => read?,
        };
        match read {
            // Pruned by a concurrent checkpoint since the listing.
            None => continue,
            // Sealed, read without the key: only its envelope is checked.
            Some(bytes) if bytes.starts_with(&layout::SEALED_MAGIC) => {
                info.size_bytes = bytes.len() as u64;
                info.problem = Some(match layout::check_sealed(&bytes) {
                    Ok((_, key_id)) => format!(
                        "encrypted with key id {key_id:08x}: give the key to check what it \
                         holds (its envelope and checksum are intact)"
                    ),
                    Err(why) => why,
                });
            }
            Some(bytes) => {
                info.size_bytes = bytes.len() as u64;
                match layout::parse_state_any_version(&bytes) {
                    Ok((state, version)) => {
                        info.valid = true;
                        info.version = Some(version);
                        info.tasks = Some(state.tasks.len());
                        info.sessions = Some(state.sessions.len());
                        info.journal_seq = Some(state.journal_seq);
                    }
                    Err(why) => info.problem = Some(why),
                }
            }
        }
        out.push(info);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_and_stamps_are_both_accepted() {
        assert_eq!(backup_name("x"), "state.backup.x.json");
        assert_eq!(backup_name("state.backup.x.json"), "state.backup.x.json");
    }
}
