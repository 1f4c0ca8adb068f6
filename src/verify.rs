//! A read-only integrity check of a state directory: journal segments,
//! `state.json`, backups, task and session files.
//!
//! An unversioned `state.json` or backup (the original TypeScript server's,
//! version 0) that migrates is valid. A backup that does not load and was
//! not written by statewal (the original server's overlapping saves leave
//! empty and cut-short ones) is a warning, not damage; a damaged backup of
//! statewal's own is damage (see `docs/decisions.md`).
//!
//! **Invariant:** verification never writes, and needs no lock.

use crate::error::Result;
use crate::fs::{self, Fs};
use crate::journal::op::Op;
use crate::journal::reader::{Piece, mark_durable, scan_segment};
use crate::journal::record::{Id128, SegmentHeader, parse_id_hex};
use crate::journal::{JOURNAL_DIR, parse_segment_name};
use crate::layout::{self, SESSIONS_DIR, STATE_FILE, TASKS_DIR};
use crate::recovery::{agreed_store_id, foreign_segment, foreign_state, last_segment_same_boot};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingClass {
    /// A damaged span that no later record proves had been synced (an
    /// interrupted write): the next open in the default mode truncates it.
    TornTail,
    /// Damage anywhere else: the default open refuses it.
    Corrupt,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file, relative to the state directory.
    pub file: String,
    /// The byte offset of the damage.
    pub offset: u64,
    /// Torn tail or damage.
    pub class: FindingClass,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let class = match self.class {
            FindingClass::TornTail => "torn tail",
            FindingClass::Corrupt => "corrupt",
        };
        write!(
            f,
            "{}: byte {}: {class}: {}",
            self.file, self.offset, self.message
        )
    }
}

/// Something [`verify`] names that is not damage to the store: a backup
/// the original server left empty, cut short or otherwise unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The file, relative to the state directory.
    pub file: String,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: warning: {}", self.file, self.message)
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Files read.
    pub files_checked: usize,
    /// Journal records whose checksum and payload checked out.
    pub records_checked: u64,
    /// Sync markers whose checksum and fields checked out.
    pub markers_checked: u64,
    /// Problems, in the order found.
    pub findings: Vec<Finding>,
    /// Unusable backups that statewal did not write, in the order found.
    /// They do not make the report unclean.
    pub warnings: Vec<Warning>,
    /// What repairs the findings, for a person: one sentence each.
    pub hints: Vec<String>,
}

impl VerifyReport {
    /// True when nothing is damaged (warnings aside).
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Checks everything in `fs` without changing anything.
pub fn verify(fs: &dyn Fs) -> Result<VerifyReport> {
    let mut r = VerifyReport::default();
    let journal_id = verify_journal(fs, &mut r)?;
    if let Some(key_id) = layout::sealed_state(fs)? {
        verify_sealed_files(fs, key_id, &mut r)?;
        return Ok(r);
    }
    let mut state_files = vec![STATE_FILE.to_string()];
    state_files.extend(layout::list_backups(fs)?);
    let survey = crate::reconcile::survey::survey(fs)?;
    for (i, name) in state_files.into_iter().enumerate() {
        let Some(bytes) = read_or_note(fs, &name, &mut r)? else {
            continue;
        };
        r.files_checked += 1;
        let is_backup = i > 0;
        if !is_backup && let Some(w) = foreign_state_note(&survey) {
            r.warnings.push(w);
            continue;
        }
        check_state_file(&name, &bytes, is_backup, journal_id, &mut r);
    }
    // The files derived from state.json: at worst a warning. A directory
    // at one's name blocks its writes, and only a person can move it.
    for (file, message) in crate::derived::planted_dirs(fs) {
        r.warnings.push(Warning { file, message });
    }
    if let Some(note) = crate::snapshot::verify_note(fs, journal_id)? {
        r.files_checked += 1;
        if let Some(message) = note {
            r.warnings.push(Warning {
                file: crate::snapshot::SNAPSHOT_FILE.into(),
                message,
            });
        }
    }
    for dir in [TASKS_DIR, SESSIONS_DIR] {
        for name in fs.list(dir)? {
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let path = fs::join(dir, &name);
            let Some(bytes) = read_or_note(fs, &path, &mut r)? else {
                continue;
            };
            r.files_checked += 1;
            let stem = &name[..name.len() - ".json".len()];
            let id = if dir == TASKS_DIR {
                // The original server's task files use its own status names
                // (`running`, ...), which an open maps as the migration does.
                match crate::reconcile::foreign::parse_task(&bytes) {
                    Ok(t) => Ok(t.id().to_string()),
                    Err(_) => {
                        serde_json::from_slice::<crate::Task>(&bytes).map(|t| t.id().to_string())
                    }
                }
            } else {
                serde_json::from_slice::<serde_json::Value>(&bytes).map(|v| {
                    crate::journal::op::session_id(&v)
                        .unwrap_or_default()
                        .to_string()
                })
            };
            match id {
                Err(e) => r.corrupt(&path, layout::json_offset(&bytes, &e), e.to_string()),
                Ok(id) if id != stem => {
                    r.corrupt(&path, 0, format!("holds id {id:?}, not {stem:?}"))
                }
                Ok(_) => {}
            }
        }
    }
    if r.is_clean() {
        check_task_files_against_the_store(fs, &mut r);
    }
    r.hints = hints(&r, &survey);
    Ok(r)
}

/// An encrypted store's layout files, without the key: each one's envelope
/// and checksum (`docs/encryption.md`); what they hold is for the key's
/// holder. A file that is not sealed is a finding: an encrypted store
/// writes none.
fn verify_sealed_files(fs: &dyn Fs, key_id: u32, r: &mut VerifyReport) -> Result<()> {
    let mut names = Vec::new();
    for dir in std::iter::once("").chain(layout::DIRS) {
        if dir == JOURNAL_DIR {
            continue;
        }
        for name in fs.list(dir)? {
            if name.starts_with('.') {
                continue; // The lock file, temp files.
            }
            names.push(fs::join(dir, &name));
        }
    }
    for name in names {
        let Some(bytes) = read_or_note(fs, &name, r)? else {
            continue;
        };
        r.files_checked += 1;
        if let Err(why) = layout::check_sealed(&bytes) {
            r.corrupt(&name, 0, why);
        }
    }
    r.warnings.push(Warning {
        file: STATE_FILE.into(),
        message: format!(
            "the store is encrypted (key id {key_id:08x}): verify checked every file's \
             checksum and envelope, not what the files hold, which needs the key"
        ),
    });
    Ok(())
}

/// Warns about each task file the next open would not take as a copy
/// statewal wrote: one that differs from the store's copy and from every
/// older copy statewal wrote is a hand edit, which the open imports when
/// newer and otherwise sets aside; a task file missing is written again.
/// Decided by the open's own rule (`reconcile::task_file_decisions`) after
/// a read-only recovery, with every file read: a clean store only, since
/// that recovery is what an open does, and damage is already a finding.
fn check_task_files_against_the_store(fs: &dyn Fs, r: &mut VerifyReport) {
    let decisions = match crate::reconcile::task_file_decisions(fs) {
        Ok(d) => d,
        Err(e) => {
            r.warnings.push(Warning {
                file: TASKS_DIR.into(),
                message: format!("could not compare the task files with the store: {e}"),
            });
            return;
        }
    };
    for d in decisions {
        let then = match d.action {
            crate::reconcile::Action::Imported => "the next open imports it (newer)",
            crate::reconcile::Action::SetAside => "the next open sets it aside",
            _ => "the next open writes it again",
        };
        r.warnings.push(Warning {
            file: fs::join(TASKS_DIR, &layout::task_file(&d.task)),
            message: format!("{}; {then}", d.reason),
        });
    }
}

/// What repairs the findings: journal damage needs a recovery mode that
/// accepts it; a damaged `state.json` is rebuilt by the next open, from
/// whatever it has besides.
//
// Review (issue 9): every damaged file got the hint for journal damage
// ("`statewal recover --mode point-in-time` or `--mode salvage`"), also an
// empty state.json beside valid backups and no journal at all.
fn hints(r: &VerifyReport, survey: &crate::reconcile::survey::Survey) -> Vec<String> {
    let damaged = |f: &Finding| f.class == FindingClass::Corrupt;
    let mut out = Vec::new();
    if r.findings
        .iter()
        .any(|f| damaged(f) && f.file.starts_with(JOURNAL_DIR))
    {
        out.push(
            "`statewal recover --mode point-in-time` or `--mode salvage` repairs journal damage"
                .to_string(),
        );
    }
    if !r
        .findings
        .iter()
        .any(|f| damaged(f) && f.file == STATE_FILE)
    {
        return out;
    }
    match &survey.foreign {
        // The migration's base when state.json is unusable: the original
        // server's own recovery ("try latest backup").
        Some(f) if !survey.history && f.name != STATE_FILE => out.push(format!(
            "there is no journal: the next open, or `statewal migrate`, rebuilds state.json \
             from the newest valid backup, {}, and the task files in tasks/ \
             (`statewal migrate --dry-run` shows which copy of each task it takes)",
            f.name
        )),
        _ if survey.history => out.push(
            "the next open rebuilds state.json from the newest valid backup and the journal \
             past it (failing that, from tasks/); `statewal checkpoint` does it now"
                .to_string(),
        ),
        _ => {}
    }
    out
}

/// What to say, instead of damage, about a `state.json` the original
/// server wrote over statewal's history: it is valid (version 0), but it
/// does not know the journal, and the next owner's open merges the two
/// (`crate::reconcile`). (An empty or cut-short `state.json` stays damage,
/// whoever wrote it: see `docs/decisions.md`.)
fn foreign_state_note(survey: &crate::reconcile::survey::Survey) -> Option<Warning> {
    let f = survey.foreign.as_ref()?;
    (f.name == STATE_FILE && survey.history).then(|| Warning {
        file: STATE_FILE.into(),
        message: "written by the original server (no version) over statewal's journal: not \
                  damage; it needs a merge at the next open, which keeps the newer copy of each \
                  task"
            .into(),
    })
}

/// Checks `state.json` or a backup.
fn check_state_file(
    name: &str,
    bytes: &[u8],
    is_backup: bool,
    journal_id: Option<Id128>,
    r: &mut VerifyReport,
) {
    // The original server's leftovers: empty, cut short, not JSON.
    let leftover = is_backup && !layout::written_by_statewal(bytes);
    let loaded = if leftover || is_unversioned(bytes) {
        layout::parse_state_any_version(bytes)
            .map(|(ps, _)| ps)
            .map_err(|why| (0, why))
    } else {
        // statewal's own (or not JSON): the checks and messages as before.
        serde_json::from_slice::<crate::PersistedState>(bytes)
            .map_err(|e| (layout::json_offset(bytes, &e), e.to_string()))
            .and_then(|_| layout::parse_state(bytes).map_err(|why| (0, why)))
    };
    match loaded {
        Ok(ps) => {
            let id = ps.store_id.as_deref().and_then(parse_id_hex);
            if let (Some(theirs), Some(ours)) = (id, journal_id)
                && theirs != ours
            {
                r.corrupt(name, 0, foreign_state(&theirs, &ours));
            }
        }
        // The original server's overlapping saves leave empty and cut-short
        // backups behind in normal operation: named, not damage.
        Err((_, why)) if leftover => r.warnings.push(Warning {
            file: name.to_string(),
            message: format!("unusable backup that statewal did not write: {why}"),
        }),
        Err((offset, why)) => r.corrupt(name, offset, why),
    }
}

/// A JSON object without a `version` member: the original server's layout.
fn is_unversioned(bytes: &[u8]) -> bool {
    crate::json::parse(bytes).is_ok_and(|v| v.is_object() && v.get("version").is_none())
}

/// Reads a layout file; one that is not a regular file (a planted FIFO,
/// socket or device, refused by the fs layer) is a finding, not an error
/// that would end the check.
fn read_or_note(fs: &dyn Fs, name: &str, r: &mut VerifyReport) -> Result<Option<crate::fs::Bytes>> {
    match fs.read(name) {
        // Not a regular file, or too large to read into memory (a planted
        // sparse file): a finding, not a failed verify.
        Err(e)
            if matches!(
                e.kind(),
                crate::error::ErrorKind::InvalidInput | crate::error::ErrorKind::TooLarge
            ) =>
        {
            r.files_checked += 1;
            r.corrupt(name, 0, e.to_string());
            Ok(None)
        }
        other => other,
    }
}

/// Checks the journal's segments; returns the store id they all agree on.
fn verify_journal(fs: &dyn Fs, r: &mut VerifyReport) -> Result<Option<Id128>> {
    let ids: Vec<u64> = fs
        .list(JOURNAL_DIR)?
        .iter()
        .filter_map(|n| parse_segment_name(n))
        .collect();
    let mut files = Vec::new();
    for id in &ids {
        let name = fs::join(JOURNAL_DIR, &crate::journal::segment_name(*id));
        if let Some(bytes) = read_or_note(fs, &name, r)? {
            files.push((*id, name, bytes));
        }
    }
    r.files_checked += files.len();
    let headers: Vec<Option<SegmentHeader>> = files
        .iter()
        .map(|(_, _, b)| SegmentHeader::decode(b).ok())
        .collect();
    let journal_id = agreed_store_id(headers.iter().flatten());
    // The store's own id, as open settles it: that of the state file open
    // would load (state.json, else the newest backup, each unless it is
    // unreadable or foreign), else the first segment that carries one.
    // (Found in review: with state.json removed, verify took the first
    // segment's id, so a foreign segment numbered below the store's own
    // made verify call the store's own segment foreign.)
    let mut state_id = None;
    let mut candidates = vec![STATE_FILE.to_string()];
    candidates.extend(layout::list_backups(fs)?);
    for name in candidates {
        if let Ok((ps, _)) = layout::read_state_file(fs, &name)? {
            let id = ps.store_id.as_deref().and_then(parse_id_hex);
            if id.is_some_and(|id| journal_id.is_some_and(|j| j != id)) {
                continue;
            }
            state_id = id;
            break;
        }
    }
    let store_id = state_id.or_else(|| headers.iter().flatten().find_map(|h| h.store_id));
    let mut scans: Vec<_> = files.iter().map(|(_, _, b)| scan_segment(b)).collect();
    mark_durable(&mut scans, last_segment_same_boot(fs, &headers));
    let mut expected: Option<u64> = None;
    for ((id, name, _), scan) in files.iter().zip(scans) {
        let name = name.clone();
        let header: SegmentHeader = match scan.header {
            Ok(h) => h,
            Err(why) => {
                r.corrupt(&name, 0, why);
                expected = None;
                continue;
            }
        };
        if header.id != *id {
            r.corrupt(&name, 0, format!("header names segment {}", header.id));
        }
        if let Some(why) = store_id.and_then(|s| foreign_segment(&name, &header, &s)) {
            r.corrupt(&name, 0, why);
            expected = None;
            continue;
        }
        // Older segments may be gone after a checkpoint, so only a segment
        // that starts *after* the previous one's end is a gap.
        if let Some(e) = expected.filter(|&e| header.first_seq > e) {
            r.corrupt(
                &name,
                0,
                format!("records {e} to {} are missing", header.first_seq - 1),
            );
        }
        expected = Some(header.first_seq);
        for piece in scan.pieces {
            match piece {
                Piece::Marker { .. } => r.markers_checked += 1,
                Piece::Record { offset, record } => {
                    if expected.is_some_and(|e| record.seq != e) {
                        r.corrupt(
                            &name,
                            offset,
                            format!("record {} out of sequence", record.seq),
                        );
                    }
                    expected = Some(record.seq.saturating_add(1));
                    // A sealed payload is checked by the frame's checksum
                    // here; what it holds needs the key.
                    if header.cipher.is_some() {
                        r.records_checked += 1;
                        continue;
                    }
                    match Op::decode(record.kind, record.payload) {
                        Ok(_) => r.records_checked += 1,
                        Err(why) => {
                            r.corrupt(&name, offset, format!("record {}: {why}", record.seq))
                        }
                    }
                }
                Piece::Damaged {
                    offset,
                    reason,
                    durable,
                    ..
                } => {
                    let class = if !durable {
                        FindingClass::TornTail
                    } else {
                        FindingClass::Corrupt
                    };
                    r.findings.push(Finding {
                        file: name.clone(),
                        offset,
                        class,
                        message: reason.to_string(),
                    });
                    expected = None;
                }
            }
        }
    }
    Ok(journal_id)
}

impl VerifyReport {
    fn corrupt(&mut self, file: &str, offset: u64, message: String) {
        self.findings.push(Finding {
            file: file.to_string(),
            offset,
            class: FindingClass::Corrupt,
            message,
        });
    }
}
