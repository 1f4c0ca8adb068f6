//! Read-back: session logs, reports and session records as the store sees
//! them now, the files in the layout plus what was journaled but not yet
//! checkpointed. Statewal's own names and the original TypeScript server's
//! are read side by side:
//!
//! ```text
//! logs/session_<id>.log          statewal ([`Origin::Statewal`])
//! logs/session_<id>_<ms>.log     the original server; <ms> is Date.now(), 13 digits
//! reports/report_<id>.json       statewal
//! reports/<id>.json              the original server (an id not starting with report_)
//! ```
//!
//! A log name whose part after `session_` is a session the store knows (a
//! session record, or a log appended to since the store was opened) is
//! statewal's even if it ends in `_` and 13 digits. Statewal writes only its
//! own names; it never rewrites or removes the original server's files.
//!
//! **Consistency.** A log's pending appends carry the offset they land at
//! (see `checkpoint::apply_logs`), and a checkpoint takes them out of
//! `State::changes` into `State::writing`, which it clears only once the
//! file holds them. So a reader that copies, under the state lock, the
//! pending pieces overlapping its range and the log's length, and then
//! reads the file, finds every byte: each piece is either in its copy or
//! already in the file, and where both, they are the same bytes at the same
//! place. Nothing shows twice or goes missing, whatever the checkpoint does
//! meanwhile. Reports are copied under the lock the same way, and a report
//! no longer pending was in its file before it left memory.
//!
//! **Invariant:** a reader takes only the state lock, and does no I/O while
//! it holds it.

use crate::error::{Error, ErrorKind, Result};
use crate::fs::{Fs, join};
use crate::id::validate_id;
use crate::layout::{LOGS_DIR, REPORTS_DIR, log_file, report_file};
use crate::state::State;
use parking_lot::RwLock;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

/// Which server's naming a log or report file follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// statewal's own: `logs/session_<id>.log`, `reports/report_<id>.json`
    /// (the names of the original design, which the TypeScript server's
    /// early versions wrote too).
    Statewal,
    /// The original TypeScript server's: `logs/session_<id>_<ms>.log`,
    /// `reports/<id>.json`.
    TsServer,
}

impl Origin {
    /// A stable snake_case name, as the CLI and the stdio protocol print it:
    /// `statewal` or `ts_server`.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Statewal => "statewal",
            Origin::TsServer => "ts_server",
        }
    }
}

/// One report, as [`crate::Store::list_reports`] lists it.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportInfo {
    /// The report id.
    pub id: String,
    /// The file's name inside `reports/` (where a pending report will be
    /// written, when it is not there yet).
    pub file_name: String,
    /// Which server's naming the file follows.
    pub origin: Origin,
    /// Its size in bytes: the file's, or for a pending report the size the
    /// next checkpoint will write.
    pub size: u64,
    /// Whether the file exists (for a pending report: an older version).
    pub on_disk: bool,
    /// Whether a newer version is journaled but not yet checkpointed.
    pub pending: bool,
}

/// One session log, as [`crate::Store::list_logs`] lists it.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogInfo {
    /// The session id.
    pub session: String,
    /// The file's name inside `logs/`, as [`crate::Store::read_log`] takes it.
    pub file_name: String,
    /// Which server's naming the file follows.
    pub origin: Origin,
    /// The stamp in the name (milliseconds since the Unix epoch), where it
    /// has one: the original server's names do.
    pub stamp_ms: Option<u64>,
    /// Its length in bytes, journaled appends not yet checkpointed included.
    pub size: u64,
    /// Whether the file exists.
    pub on_disk: bool,
    /// Whether some of it is journaled but not yet in the file.
    pub pending: bool,
}

/// The digits of the original server's `Date.now()` stamp: 13 from
/// September 2001 to November 2286.
const TS_STAMP_DIGITS: usize = 13;

/// [`crate::Store::get_report`].
pub(crate) fn get_report(fs: &dyn Fs, state: &RwLock<State>, id: &str) -> Result<Option<Value>> {
    validate_id(id)?;
    if let Some(report) = pending_report(&state.read(), id) {
        return Ok(Some((*report).clone()));
    }
    // Not pending now: a version saved earlier was in its file before it
    // left memory. Statewal's own first, then the original server's.
    let mut names = vec![report_file(id)];
    if !id.starts_with(STATEWAL_REPORT_PREFIX) {
        names.push(ts_report_file(id));
    }
    for name in names {
        let path = join(REPORTS_DIR, &name);
        if let Some(bytes) = fs.read_unmapped(&path)? {
            let report = crate::json::parse(&bytes).map_err(|e| {
                Error::new(
                    ErrorKind::Corrupt,
                    format!("report {} is not valid JSON: {e}", fs.describe(&path)),
                )
                .with_path(&path)
            })?;
            return Ok(Some(report));
        }
    }
    Ok(None)
}

/// [`crate::Store::list_reports`].
pub(crate) fn list_reports(fs: &dyn Fs, state: &RwLock<State>) -> Result<Vec<ReportInfo>> {
    // Memory first, then the files: a report that leaves memory after this
    // copy was in its file before, so the listing below finds it.
    let pending: BTreeMap<String, Arc<Value>> = {
        let st = state.read();
        let older = st.writing.iter().flat_map(|w| w.reports.iter());
        // The newer changes last, so they win.
        older
            .chain(st.changes.reports.iter())
            .map(|(id, r)| (id.clone(), r.clone()))
            .collect()
    };
    let mut out: BTreeMap<(String, Origin), ReportInfo> = BTreeMap::new();
    for name in fs.list(REPORTS_DIR)? {
        let Some((id, origin)) = parse_report_name(&name) else {
            continue;
        };
        let Some(size) = fs.file_len(&join(REPORTS_DIR, &name))? else {
            continue; // Removed since the listing (by hand: statewal never does).
        };
        let info = ReportInfo {
            id: id.to_string(),
            file_name: name.clone(),
            origin,
            size,
            on_disk: true,
            pending: false,
        };
        out.insert((info.id.clone(), origin), info);
    }
    for (id, report) in pending {
        let size = crate::checkpoint::to_json(&*report).len() as u64;
        let info = out
            .entry((id.clone(), Origin::Statewal))
            .or_insert_with(|| ReportInfo {
                file_name: report_file(&id),
                id,
                origin: Origin::Statewal,
                size,
                on_disk: false,
                pending: true,
            });
        info.size = size;
        info.pending = true;
    }
    // Sorted by id, statewal's before the original server's.
    Ok(out.into_values().collect())
}

/// [`crate::Store::list_logs`].
pub(crate) fn list_logs(fs: &dyn Fs, state: &RwLock<State>) -> Result<Vec<LogInfo>> {
    // The files first, then memory: a log appended to since the store was
    // opened keeps its length in `log_lens` for good, so one whose file a
    // checkpoint creates after this listing is still found below.
    let mut files = Vec::new();
    for name in fs.list(LOGS_DIR)? {
        if log_name_rest(&name).is_err() {
            continue;
        }
        if let Some(len) = fs.file_len(&join(LOGS_DIR, &name))? {
            files.push((name, len));
        }
    }
    let st = state.read();
    let writing = st.writing.iter().flat_map(|w| w.logs.iter());
    let pending: HashSet<&str> = st
        .changes
        .logs
        .iter()
        .chain(writing)
        .map(|p| p.session.as_str())
        .collect();
    let known = |s: &str| st.log_lens.contains_key(s) || st.sessions.contains_key(s);
    let mut out = Vec::new();
    for (name, len) in files {
        let rest = log_name_rest(&name).expect("checked above");
        let (session, origin, stamp_ms) = classify(rest, known);
        out.push(LogInfo {
            session: session.to_string(),
            // A statewal log appended to since open: its length is the one
            // its appends reach, the file's until the checkpoint writes them.
            size: st.log_lens.get(rest).copied().unwrap_or(len),
            pending: pending.contains(rest),
            origin,
            stamp_ms,
            on_disk: true,
            file_name: name,
        });
    }
    let listed: HashSet<String> = out.iter().map(|l| l.file_name.clone()).collect();
    for (session, len) in &st.log_lens {
        let name = log_file(session);
        if !listed.contains(&name) {
            out.push(LogInfo {
                session: session.clone(),
                file_name: name,
                origin: Origin::Statewal,
                stamp_ms: None,
                size: *len,
                on_disk: false,
                pending: pending.contains(session.as_str()),
            });
        }
    }
    drop(st);
    out.sort_by(|a, b| {
        (&a.session, a.stamp_ms, &a.file_name).cmp(&(&b.session, b.stamp_ms, &b.file_name))
    });
    Ok(out)
}

/// [`crate::Store::read_log`], with the range as `start..end` (`None`: to
/// the end of the log).
pub(crate) fn read_log(
    fs: &dyn Fs,
    state: &RwLock<State>,
    file_name: &str,
    start: u64,
    end: Option<u64>,
) -> Result<Vec<u8>> {
    // Every statewal append of the session whose name this is lands in this
    // file, whoever's naming it follows: its pieces apply whatever the
    // classification.
    let session = log_session(file_name, start, end)?;
    let path = join(LOGS_DIR, file_name);
    // Stat before the snapshot: while memory has no length for the log, no
    // statewal write to it has happened since the store was opened, so the
    // file's length is the log's as of the snapshot.
    let on_disk = fs.file_len(&path)?;
    let (from, to, pieces) = {
        let st = state.read();
        let Some(len) = st.log_lens.get(session).copied().or(on_disk) else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "no log {} (statewal list-logs lists them)",
                    fs.describe(&path)
                ),
            )
            .with_path(&path));
        };
        let to = end.unwrap_or(len).min(len);
        let from = start.min(to);
        (from, to, pending_pieces(&st, session, from, to))
    };
    let want = to - from;
    // Read the file even when the stat found none: a checkpoint may have
    // created it since, and taken its pieces out of memory before the
    // snapshot above. (Skipping the read gave zeros for those bytes.)
    let mut bytes = fs.read_at(&path, from, want)?.unwrap_or_default();
    // Bytes only pending are not in the file yet: their pieces fill them in.
    bytes.resize(
        usize::try_from(want).expect("a range of bytes in memory"),
        0,
    );
    for (offset, text) in pieces {
        let at = (offset - from) as usize;
        bytes[at..at + text.len()].copy_from_slice(&text);
    }
    Ok(bytes)
}

/// `range` as `start..end`, `None` for no end.
pub(crate) fn byte_range(range: &impl RangeBounds<u64>) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => Some(e.saturating_add(1)),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    (start, end)
}

/// [`crate::Store::get_session`].
pub(crate) fn get_session(state: &RwLock<State>, id: &str) -> Result<Option<Value>> {
    validate_id(id)?;
    Ok(state.read().sessions.get(id).map(|s| (**s).clone()))
}

/// What statewal's report names start with.
const STATEWAL_REPORT_PREFIX: &str = "report_";

/// The original server's `reports/<id>.json` name.
fn ts_report_file(id: &str) -> String {
    format!("{id}.json")
}

/// The newest pending version of report `id`: journaled since the last
/// checkpoint, else taken by the running one.
fn pending_report(st: &State, id: &str) -> Option<Arc<Value>> {
    st.changes
        .reports
        .get(id)
        .or_else(|| st.writing.as_ref()?.reports.get(id))
        .cloned()
}

/// The parts of `session`'s pending appends that fall in `from..to`, each
/// with its offset.
fn pending_pieces(st: &State, session: &str, from: u64, to: u64) -> Vec<(u64, Vec<u8>)> {
    let writing = st.writing.iter().flat_map(|w| w.logs.iter());
    st.changes
        .logs
        .iter()
        .chain(writing)
        .filter(|p| p.session == session)
        .filter_map(|p| {
            let end = p.offset.saturating_add(p.text.len() as u64);
            let (a, b) = (p.offset.max(from), end.min(to));
            (a < b).then(|| {
                let text = &p.text[(a - p.offset) as usize..(b - p.offset) as usize];
                (a, text.to_vec())
            })
        })
        .collect()
}

/// The report id and naming of a file in `reports/`, or `None` for a file
/// that is no report (a temp file, another extension, an invalid id).
fn parse_report_name(name: &str) -> Option<(&str, Origin)> {
    let stem = name.strip_suffix(".json")?;
    let (id, origin) = match stem.strip_prefix(STATEWAL_REPORT_PREFIX) {
        Some(id) => (id, Origin::Statewal),
        None => (stem, Origin::TsServer),
    };
    validate_id(id).is_ok().then_some((id, origin))
}

/// The part of a log file name between `session_` and `.log`, or an error
/// saying which names are taken: only those [`list_logs`] can list, so never
/// a path (`/`, `..`), an absolute name, a NUL or a hidden file.
pub(crate) fn log_name_rest(name: &str) -> Result<&str> {
    let rest = name
        .strip_prefix("session_")
        .and_then(|n| n.strip_suffix(".log"));
    let why = match rest.map(validate_id) {
        Some(Ok(())) => return Ok(rest.expect("matched just above")),
        Some(Err(e)) => e.to_string(),
        None => "it is not session_<id>.log or session_<id>_<ms>.log".into(),
    };
    Err(Error::new(
        ErrorKind::InvalidInput,
        format!(
            "refusing the log file name {:?}: {why}; give a file name inside logs/ as \
             list-logs lists it",
            name.chars().take(80).collect::<String>()
        ),
    ))
}

/// The session, naming and stamp of a log file, from the part of its name
/// between `session_` and `.log`.
fn classify(rest: &str, known: impl Fn(&str) -> bool) -> (&str, Origin, Option<u64>) {
    if !known(rest)
        && let Some((id, ms)) = rest.rsplit_once('_')
        && ms.len() == TS_STAMP_DIGITS
        && ms.bytes().all(|b| b.is_ascii_digit())
        && validate_id(id).is_ok()
    {
        return (id, Origin::TsServer, ms.parse().ok());
    }
    (rest, Origin::Statewal, None)
}

/// The session whose log `file_name` names, once the name and the range
/// `start..end` are checked: the check both engines make before reading.
pub(crate) fn log_session(file_name: &str, start: u64, end: Option<u64>) -> Result<&str> {
    let session = log_name_rest(file_name)?;
    if end.is_some_and(|e| e < start) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "the range {start}..{} of {file_name:?} ends before it starts",
                end.unwrap_or(0)
            ),
        ));
    }
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_classified_and_hostile_ones_refused() {
        let none = |_: &str| false;
        assert_eq!(
            classify("abc_1704103500000", none),
            ("abc", Origin::TsServer, Some(1_704_103_500_000))
        );
        assert_eq!(
            classify("build_2", none),
            ("build_2", Origin::Statewal, None)
        );
        assert_eq!(
            classify("abc_1704103500000", |s| s == "abc_1704103500000"),
            ("abc_1704103500000", Origin::Statewal, None)
        );
        for bad in [
            "../state.json",
            "session_../x.log",
            "session_a/b.log",
            "/etc/passwd",
            "session_a\0.log",
            "session_.log",
            "session_.hidden.log",
            "notes.txt",
        ] {
            assert!(log_name_rest(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_report_name("report_x.json"),
            Some(("x", Origin::Statewal))
        );
        assert_eq!(parse_report_name("x.json"), Some(("x", Origin::TsServer)));
        assert_eq!(parse_report_name(".x.json.tmp"), None);
        assert_eq!(parse_report_name(".report_x.json"), None);
    }
}
