//! The human-readable layout: file names, and loading what a checkpoint wrote.
//!
//! ```text
//! state.json                  the checkpoint
//! state.backup.<stamp>.json   earlier state.json files
//! tasks/<id>.json             one file per task
//! sessions/<id>.json          one file per session record
//! logs/session_<id>.log       session logs
//! reports/report_<id>.json    reports
//! journal/<id>.wal            journal segments
//! .statewal.lock              the directory lock
//! ```

use crate::error::{Error, ErrorKind, Result};
use crate::fs::Fs;
use crate::model::{PersistedState, Task};
use serde_json::Value;

/// The checkpoint file.
pub const STATE_FILE: &str = "state.json";
/// Backups are `state.backup.<stamp>.json`.
pub const BACKUP_PREFIX: &str = "state.backup.";
/// Task files.
pub const TASKS_DIR: &str = "tasks";
/// Session record files.
pub const SESSIONS_DIR: &str = "sessions";
/// Session logs.
pub const LOGS_DIR: &str = "logs";
/// Reports.
pub const REPORTS_DIR: &str = "reports";
/// Archived tasks, as JSON lines (`statewal clean`).
pub const ARCHIVE_DIR: &str = "archive";
/// The lock file, held with `File::try_lock` while a store is open.
pub const LOCK_FILE: &str = ".statewal.lock";
/// Every directory the store creates.
pub const DIRS: [&str; 6] = [
    TASKS_DIR,
    SESSIONS_DIR,
    LOGS_DIR,
    REPORTS_DIR,
    ARCHIVE_DIR,
    crate::journal::JOURNAL_DIR,
];

/// Whether the directory holds a store: any of `state.json`, a
/// `state.backup.*.json`, `tasks/` or `journal/` (so the original server's
/// directories count). A missing or empty directory does not.
pub fn holds_store(fs: &dyn Fs) -> Result<bool> {
    if fs.is_dir(TASKS_DIR)? || fs.is_dir(crate::journal::JOURNAL_DIR)? {
        return Ok(true);
    }
    Ok(fs
        .list("")?
        .iter()
        .any(|n| n == STATE_FILE || (n.starts_with(BACKUP_PREFIX) && n.ends_with(".json"))))
}

/// Whether `dir` holds a store, by [`holds_store`]; a missing directory
/// does not. Reads only.
pub fn is_store(dir: &std::path::Path) -> Result<bool> {
    match crate::fs::RealFs::existing(dir) {
        Ok(fs) => holds_store(&fs),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The error of a read that found no store at `dir`: it creates none.
pub fn no_store(dir: &std::path::Path) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("no statewal store at {}", dir.display()),
    )
    .with_path(dir)
}

/// `tasks/<id>.json`'s file name.
pub fn task_file(id: &str) -> String {
    format!("{id}.json")
}
/// `sessions/<id>.json`'s file name.
pub fn session_file(id: &str) -> String {
    format!("{id}.json")
}
/// `logs/session_<id>.log`'s file name.
pub fn log_file(session: &str) -> String {
    format!("session_{session}.log")
}
/// `reports/report_<id>.json`'s file name.
pub fn report_file(id: &str) -> String {
    format!("report_{id}.json")
}
/// The name of the archive file inside `archive/` that tasks archived in
/// `year`-`month` go to: `tasks-<YYYY>-<MM>.jsonl`.
pub fn archive_file(year: i32, month: u8) -> String {
    format!("tasks-{year:04}-{month:02}.jsonl")
}
/// Whether `name` may name a file inside `archive/`: what [`archive_file`]
/// writes, or any short name of ASCII letters, digits, `-`, `_` and `.`
/// that does not start with a dot. A journal record naming anything else is
/// damage, so a record can never write outside `archive/`.
pub fn is_archive_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The backup files, newest first. Stamps sort in time order as text; the
/// original server's numeric millisecond stamps sort among themselves by
/// number and before ours.
pub fn list_backups(fs: &dyn Fs) -> Result<Vec<String>> {
    // Only names whose stamp statewal (or the original server) writes are
    // backups: a hand-made `state.backup.old.json` would otherwise sort as
    // the newest and, worse, `state.backup.json` has no stamp at all.
    let mut names: Vec<String> = fs
        .list("")?
        .into_iter()
        .filter(|n| stamp_in(n).is_some_and(|s| parse_stamp(s).is_some() || is_millis(s)))
        .collect();
    names.sort_by_key(|n| std::cmp::Reverse(backup_key(n)));
    Ok(names)
}

fn stamp_in(name: &str) -> Option<&str> {
    name.strip_prefix(BACKUP_PREFIX)?.strip_suffix(".json")
}

fn is_millis(stamp: &str) -> bool {
    !stamp.is_empty() && stamp.len() <= 20 && stamp.bytes().all(|b| b.is_ascii_digit())
}

const STAMP_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year][month][day]T[hour][minute][second].[subsecond digits:6]Z"
);

fn parse_stamp(stamp: &str) -> Option<time::OffsetDateTime> {
    time::PrimitiveDateTime::parse(stamp, STAMP_FORMAT)
        .ok()
        .map(|t| t.assume_utc())
}

fn backup_key(name: &str) -> (bool, u128, String) {
    let stamp = stamp_in(name).unwrap_or_default();
    match stamp.parse::<u128>() {
        Ok(ms) => (false, ms, String::new()),
        Err(_) => (true, 0, stamp.to_string()),
    }
}

/// A backup stamp for now, later than `after` (the newest existing stamp), so
/// that names sort in the order backups were made even if the clock steps
/// back: `max(now, after + 1 µs)`.
///
/// When `after` is the last stamp there is (`99991231T235959.999999Z`),
/// nothing later can be written: the stamp for now is returned instead, and
/// the new backup sorts before that one.
//
// Regression (issue 8, part 5): a planted backup stamped
// `99991231T235959.999999Z` made `after + 1 µs` overflow, so every
// checkpoint panicked and the auto-save thread died with it.
pub fn backup_stamp(after: Option<&str>) -> String {
    let now = time::OffsetDateTime::now_utc();
    let mut at = now;
    if let Some(prev) = after.and_then(parse_stamp)
        && at <= prev
    {
        at = prev
            .checked_add(time::Duration::microseconds(1))
            .filter(|t| t.year() <= 9999)
            .unwrap_or_else(|| {
                tracing::warn!(
                    newest = %prev,
                    "the newest backup's stamp is the last one there is; \
                     stamping the new backup with the time now"
                );
                now
            });
    }
    at.format(STAMP_FORMAT)
        .expect("formatting a UTC time of year 9999 or earlier cannot fail")
}

/// The stamp in a backup file name (as listed by [`list_backups`]).
pub fn backup_stamp_of(name: &str) -> &str {
    stamp_in(name).unwrap_or_default()
}

/// Parses a `state.json` or backup, saying what is wrong.
pub fn parse_state(bytes: &[u8]) -> std::result::Result<PersistedState, String> {
    /// `state.json` as read: the persisted state plus its checksum member.
    #[derive(serde::Deserialize)]
    struct StateFile {
        version: String,
        tasks: Vec<crate::Task>,
        sessions: Vec<Value>,
        metrics: crate::Metrics,
        last_saved: String,
        #[serde(default)]
        journal_seq: u64,
        #[serde(default)]
        task_versions: std::collections::BTreeMap<String, u64>,
        store_id: Option<String>,
        checksum: Option<String>,
    }
    let file: StateFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    // A file without the member is taken as written by hand; one with it
    // must carry an intact seal (a flipped bit in the seal itself included).
    if file.checksum.is_some() {
        check_seal(bytes)?;
    }
    let state = PersistedState {
        version: file.version,
        tasks: file.tasks,
        sessions: file.sessions,
        metrics: file.metrics,
        last_saved: file.last_saved,
        journal_seq: file.journal_seq,
        task_versions: file.task_versions,
        store_id: file.store_id,
    };
    if let Some(id) = &state.store_id
        && crate::journal::record::parse_id_hex(id).is_none()
    {
        return Err(format!("store_id {id:?} is not 32 lowercase hex digits"));
    }
    for t in &state.tasks {
        crate::id::validate_id(t.id()).map_err(|e| e.to_string())?;
    }
    Ok(state)
}

/// What `seal_state` puts before the checksum: the last top-level member.
const SEAL_PREFIX: &[u8] = b",\n  \"checksum\": \"crc32:";
/// What follows the eight hex digits.
const SEAL_SUFFIX: &[u8] = b"\"\n}\n";

/// Appends a `"checksum": "crc32:XXXXXXXX"` member to pretty-printed state
/// JSON. The CRC covers every byte before the member's comma, so a flipped
/// bit that still leaves valid JSON (a digit of `journal_seq`, a letter in a
/// task) is caught, and the file falls back to its backup and the journal.
pub fn seal_state(mut json: Vec<u8>) -> Vec<u8> {
    assert!(json.ends_with(b"\n}"), "pretty-printed JSON object");
    json.truncate(json.len() - 2);
    let crc = crc32fast::hash(&json);
    json.extend_from_slice(SEAL_PREFIX);
    json.extend_from_slice(format!("{crc:08x}").as_bytes());
    json.extend_from_slice(SEAL_SUFFIX);
    debug_assert_eq!(check_seal(&json), Ok(()));
    json
}

/// Checks the checksum `seal_state` wrote. (A state file without the member,
/// written by hand or by the original server, is not checked: whoever edits
/// `state.json` by hand removes the checksum line.)
fn check_seal(bytes: &[u8]) -> std::result::Result<(), String> {
    let Some(at) = bytes
        .windows(SEAL_PREFIX.len())
        .rposition(|w| w == SEAL_PREFIX)
    else {
        return Err("the checksum member is not where statewal writes it".into());
    };
    let rest = &bytes[at + SEAL_PREFIX.len()..];
    let (hex, tail) = rest.split_at(rest.len().min(8));
    let stored = std::str::from_utf8(hex)
        .ok()
        .and_then(|h| u32::from_str_radix(h, 16).ok());
    match stored {
        Some(crc) if tail == SEAL_SUFFIX && hex.len() == 8 => {
            let actual = crc32fast::hash(&bytes[..at]);
            if actual == crc {
                Ok(())
            } else {
                Err(format!(
                    "checksum mismatch: the file says {crc:08x}, its contents hash to {actual:08x}"
                ))
            }
        }
        _ => Err("damaged checksum member at the end of the file".into()),
    }
}

/// A file that could not be loaded and was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file, relative to the state directory.
    pub file: String,
    /// Why.
    pub reason: String,
}

/// Reads every `tasks/*.json` and `sessions/*.json`, skipping (and reporting)
/// files that do not parse.
pub fn load_layout_files(fs: &dyn Fs) -> Result<(Vec<Task>, Vec<Value>, Vec<Skipped>)> {
    let mut skipped = Vec::new();
    let mut tasks = Vec::new();
    for (path, bytes) in read_dir_json(fs, TASKS_DIR, &mut skipped)? {
        match serde_json::from_slice::<Task>(&bytes) {
            Ok(t) if crate::id::validate_id(t.id()).is_ok() => tasks.push(t),
            Ok(t) => skipped.push(Skipped {
                file: path,
                reason: format!("invalid id {:?}", t.id()),
            }),
            Err(e) => skipped.push(Skipped {
                file: path,
                reason: e.to_string(),
            }),
        }
    }
    let mut sessions = Vec::new();
    for (path, bytes) in read_dir_json(fs, SESSIONS_DIR, &mut skipped)? {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v)
                if crate::journal::op::session_id(&v)
                    .is_some_and(|id| crate::id::validate_id(id).is_ok()) =>
            {
                sessions.push(v)
            }
            Ok(_) => skipped.push(Skipped {
                file: path,
                reason: "session record without a valid \"id\"".into(),
            }),
            Err(e) => skipped.push(Skipped {
                file: path,
                reason: e.to_string(),
            }),
        }
    }
    Ok((tasks, sessions, skipped))
}

fn read_dir_json(
    fs: &dyn Fs,
    dir: &str,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in fs.list(dir)? {
        // Temp files of an interrupted atomic write start with a dot.
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        let path = crate::fs::join(dir, &name);
        match fs.read(&path) {
            Ok(Some(bytes)) => out.push((path, bytes.to_vec())),
            Ok(None) => {}
            Err(e) if e.kind() == ErrorKind::InvalidInput => skipped.push(Skipped {
                file: path,
                reason: e.to_string(),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Loads a state file, or says why it cannot be used.
pub fn read_state_file(
    fs: &dyn Fs,
    name: &str,
) -> Result<std::result::Result<(PersistedState, u32), String>> {
    match fs.read(name) {
        Ok(None) => Ok(Err("missing".into())),
        Ok(Some(bytes)) => Ok(parse_state(&bytes).map(|s| (s, crc32fast::hash(&bytes)))),
        // A FIFO, socket or device (or a symlink) in the place of a state
        // file is damage like a file that does not parse: the store falls
        // back to the backup and the journal rather than failing (or, before
        // the fs layer opened without blocking, hanging on a FIFO).
        Err(e) if e.kind() == ErrorKind::InvalidInput => Ok(Err(e.to_string())),
        Err(e) => Err(e),
    }
}

/// An error for a state file that does not parse.
pub fn corrupt_state(fs: &dyn Fs, name: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("corrupt {}: {why}", fs.describe(name)),
    )
    .with_path(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Regression (found by review): a stamp far in the future, or a clock
    // stepped back, made `backup_stamp` loop a microsecond at a time, and
    // `state.backup.json` (no stamp) panicked the sort.
    #[test]
    fn stamps_never_loop_and_odd_names_are_not_backups() {
        let far = "29991231T235959.999999Z";
        let next = backup_stamp(Some(far));
        assert!(next.as_str() > far, "{next}");
        assert!(parse_stamp(&backup_stamp(None)).is_some());
        assert_eq!(stamp_in("state.backup.json"), None);
        assert!(
            stamp_in("state.backup.old.json")
                .is_some_and(|s| parse_stamp(s).is_none() && !is_millis(s))
        );
        assert!(is_millis("1704103200000"));
    }

    // Regression (issue 8, part 5): the last representable stamp made the
    // next one overflow, a panic in every checkpoint.
    #[test]
    fn the_last_stamp_there_is_does_not_panic() {
        let last = "99991231T235959.999999Z";
        let next = backup_stamp(Some(last));
        assert!(parse_stamp(&next).is_some(), "{next}");
        assert_ne!(next, last);
    }
}
