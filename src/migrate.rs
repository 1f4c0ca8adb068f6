//! Versions of `state.json` and the registered steps between them.
//!
//! A migration reads `state.json` as plain JSON, finds its `version` (a file
//! without one was written by the original TypeScript server: version
//! [`UNVERSIONED`]), and applies the registered [`Step`]s one after another
//! up to [`STATE_VERSION`]. The result must parse with
//! [`layout::parse_state`], hold every task id of the input, and keep every
//! field of every task; only then is anything written:
//!
//! 1. `state.pre-migration.backup.json`: the input bytes, atomically;
//! 2. `state.json`: the migrated, sealed state, atomically;
//! 3. `state.migration-v<from>-to-v<to>.log`: what was done.
//!
//! **Invariant:** a migration writes nothing unless the result validates, and
//! never writes `state.json` before the pre-migration backup is durable.

use crate::error::{Error, ErrorKind, Result};
use crate::fs::{Fs, RealFs, write_atomic};
use crate::layout::{self, STATE_FILE};
use crate::model::{Metrics, STATE_VERSION, Task, now_rfc3339};
use serde::Serialize;
use serde_json::{Map, Value};
use std::path::Path;

/// The copy of `state.json` kept before a migration rewrites it.
pub const PRE_MIGRATION_BACKUP: &str = "state.pre-migration.backup.json";
/// The version of a `state.json` without a `version` member: the original
/// TypeScript server's layout.
pub const UNVERSIONED: &str = "0";
/// Where a migrated task keeps a status that statewal renamed.
pub const ORIGINAL_STATUS_FIELD: &str = "original_status";

/// One registered migration step, from one version to the next.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// The version the step reads.
    pub from: &'static str,
    /// The version the step writes.
    pub to: &'static str,
    /// A short name for logs.
    pub name: &'static str,
    /// Rewrites the whole state file in place, pushing one line per change
    /// onto the notes; an `Err` names what cannot be migrated.
    pub apply: fn(&mut Value, &mut Vec<String>) -> std::result::Result<(), String>,
}

/// Every step, in order. A new layout version adds one step here.
pub const STEPS: &[Step] = &[Step {
    from: UNVERSIONED,
    to: STATE_VERSION,
    name: "ts-server-to-statewal",
    apply: ts_server_to_v1,
}];

/// What a migration did, or with `dry_run` would do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MigrationReport {
    /// The version found, or `None` when there is no `state.json`.
    pub from: Option<String>,
    /// The version written (or that would be).
    pub to: String,
    /// The names of the steps applied, in order; empty when up to date.
    pub steps: Vec<String>,
    /// One line per change.
    pub changes: Vec<String>,
    /// Tasks in the state file.
    pub tasks: usize,
    /// Nothing was written.
    pub dry_run: bool,
    /// The pre-migration backup written, if any.
    pub backup: Option<String>,
    /// The log written, if any.
    pub log: Option<String>,
}

impl MigrationReport {
    /// Whether `state.json` needed (or needs) migrating.
    pub fn migrated(&self) -> bool {
        !self.steps.is_empty()
    }
}

/// What `rollback` restored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollbackReport {
    /// The file restored from.
    pub restored_from: String,
    /// The version of the `state.json` that was replaced, if it had one.
    pub replaced_version: Option<String>,
    /// The version restored.
    pub restored_version: String,
}

/// Migrates the `state.json` of a state directory that is not open: takes
/// the directory lock. With `dry_run` it only reports what would change, and
/// takes no lock: it reads one file that writers replace atomically, and the
/// lock would create `.statewal.lock` in a directory it only reads (the
/// original server's has none) and fail beside a running writer.
pub fn migrate(dir: &Path, dry_run: bool) -> Result<MigrationReport> {
    let fs = RealFs::existing(dir)?;
    if dry_run {
        return migrate_locked(&fs, true);
    }
    let _lock = fs.lock()?;
    migrate_locked(&fs, false)
}

/// Restores `state.pre-migration.backup.json` as `state.json`, atomically,
/// in a state directory that is not open. Writes made since the migration
/// are not in that file and are gone from `state.json` afterwards.
pub fn rollback(dir: &Path) -> Result<RollbackReport> {
    let fs = RealFs::existing(dir)?;
    let _lock = fs.lock()?;
    let Some(bytes) = fs.read(PRE_MIGRATION_BACKUP)? else {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "no {}: nothing to roll back",
                fs.describe(PRE_MIGRATION_BACKUP)
            ),
        )
        .with_path(PRE_MIGRATION_BACKUP));
    };
    let restored = parse_json(&fs, PRE_MIGRATION_BACKUP, &bytes)?;
    let restored_version =
        version_of(&restored).map_err(|e| layout::corrupt_state(&fs, PRE_MIGRATION_BACKUP, &e))?;
    let replaced_version = match fs.read(STATE_FILE)? {
        Some(cur) => serde_json::from_slice::<Value>(&cur)
            .ok()
            .and_then(|v| version_of(&v).ok()),
        None => None,
    };
    // The backup is kept: rolling back twice, or migrating again, stays possible.
    write_atomic(&fs, "", STATE_FILE, &bytes)?;
    Ok(RollbackReport {
        restored_from: PRE_MIGRATION_BACKUP.into(),
        replaced_version,
        restored_version,
    })
}

/// The version of a state file: its `version` string, or [`UNVERSIONED`].
pub fn version_of(state: &Value) -> std::result::Result<String, String> {
    match state.get("version") {
        None => Ok(UNVERSIONED.into()),
        Some(Value::String(v)) => Ok(v.clone()),
        Some(other) => Err(format!("\"version\" is not a string: {other}")),
    }
}

/// The steps from `from` to [`STATE_VERSION`], or why there are none.
pub fn plan(from: &str) -> std::result::Result<Vec<&'static Step>, String> {
    let mut steps = Vec::new();
    let mut at = from;
    while at != STATE_VERSION {
        let Some(step) = STEPS.iter().find(|s| s.from == at) else {
            return Err(format!(
                "no migration from version {at:?} to {STATE_VERSION:?} (known: {})",
                known_versions()
            ));
        };
        assert!(steps.len() < STEPS.len(), "the steps form no cycle");
        steps.push(step);
        at = step.to;
    }
    Ok(steps)
}

fn known_versions() -> String {
    let mut v: Vec<&str> = STEPS.iter().map(|s| s.from).collect();
    v.push(STATE_VERSION);
    v.join(", ")
}

/// Runs pending migrations for [`crate::Store::open`], which holds the lock.
/// A `state.json` that is missing, not JSON, current, or of a version no
/// step reads is left to recovery; so is one whose migration fails
/// validation (recovery then falls back as it always did, and the warning
/// says why).
pub(crate) fn migrate_on_open(fs: &dyn Fs) -> Result<Option<MigrationReport>> {
    let bytes = match fs.read(STATE_FILE) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        // Not a regular file (a planted FIFO): recovery treats it as damage.
        Err(e) if e.kind() == ErrorKind::InvalidInput => return Ok(None),
        Err(e) => return Err(e),
    };
    let pending = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| version_of(&v).ok())
        .is_some_and(|from| from != STATE_VERSION && plan(&from).is_ok());
    if !pending {
        return Ok(None);
    }
    match migrate_locked(fs, false) {
        Ok(report) => {
            tracing::info!(
                from = ?report.from, to = %report.to, tasks = report.tasks,
                "migrated state.json; the original is in {PRE_MIGRATION_BACKUP}"
            );
            Ok(Some(report))
        }
        Err(e) if e.kind() == ErrorKind::Corrupt => {
            tracing::warn!("state.json was not migrated: {e}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The migrated, sealed bytes of a `state.json` that `migrate_on_open`
/// would migrate, computed in memory for a read-only open (which writes
/// nothing). `None` when it needs no migration, or when its migration fails
/// validation: recovery then meets the file as it is, as after
/// `migrate_on_open`'s warning.
pub(crate) fn migrated_in_memory(bytes: &[u8]) -> Option<Vec<u8>> {
    match migrate_in_memory(bytes) {
        Ok(sealed) => sealed,
        Err(e) => {
            tracing::warn!("state.json was not migrated in memory: {e}");
            None
        }
    }
}

/// [`migrated_in_memory`], saying why not: `Ok(None)` when the file needs
/// no migration (or is not JSON, or has a version no step reads), `Err`
/// naming the step or the check that failed. Backups are read with it
/// (`layout::parse_state_any_version`), which name the failure and must not
/// log it as `state.json`'s.
pub(crate) fn migrate_in_memory(bytes: &[u8]) -> std::result::Result<Option<Vec<u8>>, String> {
    let Some(input) = serde_json::from_slice::<Value>(bytes).ok() else {
        return Ok(None);
    };
    let Ok(from) = version_of(&input) else {
        return Ok(None);
    };
    if from == STATE_VERSION {
        return Ok(None);
    }
    if from == UNVERSIONED {
        layout::not_sealed_by_statewal(bytes)?;
    }
    let Ok(steps) = plan(&from) else {
        return Ok(None);
    };
    let mut state = input.clone();
    let mut notes = Vec::new();
    for step in &steps {
        (step.apply)(&mut state, &mut notes).map_err(|e| format!("{}: {e}", step.name))?;
    }
    validate(&input, &state).map(Some)
}

/// Migrates `state.json` in `fs`, whose lock the caller holds.
pub(crate) fn migrate_locked(fs: &dyn Fs, dry_run: bool) -> Result<MigrationReport> {
    let mut report = MigrationReport {
        from: None,
        to: STATE_VERSION.into(),
        steps: Vec::new(),
        changes: Vec::new(),
        tasks: 0,
        dry_run,
        backup: None,
        log: None,
    };
    let Some(bytes) = fs.read(STATE_FILE)? else {
        return Ok(report);
    };
    let input = parse_json(fs, STATE_FILE, &bytes)?;
    let from = version_of(&input).map_err(|e| layout::corrupt_state(fs, STATE_FILE, &e))?;
    if from == UNVERSIONED {
        layout::not_sealed_by_statewal(&bytes)
            .map_err(|e| layout::corrupt_state(fs, STATE_FILE, &e))?;
    }
    report.tasks = input["tasks"].as_array().map_or(0, Vec::len);
    report.from = Some(from.clone());
    let steps = plan(&from).map_err(|e| Error::new(ErrorKind::InvalidInput, e))?;
    if steps.is_empty() {
        return Ok(report);
    }
    let mut state = input.clone();
    for step in &steps {
        (step.apply)(&mut state, &mut report.changes).map_err(|e| unmigratable(fs, step, &e))?;
        report.steps.push(step.name.into());
    }
    let sealed = validate(&input, &state).map_err(|e| unmigratable(fs, steps[0], &e))?;
    if dry_run {
        return Ok(report);
    }
    // Keep the original first: rollback restores it, and nothing below may
    // replace state.json before it is durable (write_atomic syncs the file
    // and the directory).
    write_atomic(fs, "", PRE_MIGRATION_BACKUP, &bytes)?;
    report.backup = Some(PRE_MIGRATION_BACKUP.into());
    // Atomic, with the data and the directory synced: a crash leaves either
    // the original state.json (migrated again at the next open) or this one.
    write_atomic(fs, "", STATE_FILE, &sealed)?;
    let log = log_name(&from, STATE_VERSION);
    write_atomic(fs, "", &log, log_text(&report).as_bytes())?;
    report.log = Some(log);
    Ok(report)
}

/// `state.migration-v<from>-to-v<to>.log`.
pub fn log_name(from: &str, to: &str) -> String {
    format!("state.migration-v{from}-to-v{to}.log")
}

fn log_text(report: &MigrationReport) -> String {
    let mut out = format!(
        "{} migrated state.json from version {} to {} ({} tasks)\n",
        now_rfc3339(),
        report.from.as_deref().unwrap_or(UNVERSIONED),
        report.to,
        report.tasks
    );
    out += &format!("steps: {}\n", report.steps.join(", "));
    out += &format!("original kept in {PRE_MIGRATION_BACKUP}\n");
    for c in &report.changes {
        out += &format!("- {c}\n");
    }
    out
}

/// Parses a state file to migrate. A repeated key is refused here too: the
/// migration must not pick one of two values for the writer.
fn parse_json(fs: &dyn Fs, name: &str, bytes: &[u8]) -> Result<Value> {
    crate::json::parse(bytes).map_err(|e| layout::corrupt_state(fs, name, &e.to_string()))
}

fn unmigratable(fs: &dyn Fs, step: &Step, why: &str) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!(
            "cannot migrate {} ({} to {}, step {}): {why}; nothing was written",
            fs.describe(STATE_FILE),
            step.from,
            step.to,
            step.name
        ),
    )
    .with_path(STATE_FILE)
}

/// Seals the migrated state and checks it: it parses as a statewal state
/// file, holds every task id of the input, and the typed model keeps every
/// field of every migrated task and the same number of sessions.
fn validate(input: &Value, migrated: &Value) -> std::result::Result<Vec<u8>, String> {
    let mut body = migrated.clone();
    if let Some(m) = body.as_object_mut() {
        m.shift_remove("checksum");
    }
    let json = serde_json::to_vec_pretty(&body).map_err(|e| e.to_string())?;
    let sealed = layout::seal_state(json);
    let parsed =
        layout::parse_state(&sealed).map_err(|e| format!("the result does not load: {e}"))?;
    let ids: std::collections::HashSet<&str> = parsed.tasks.iter().map(|t| t.id()).collect();
    for t in input["tasks"].as_array().into_iter().flatten() {
        let id = t["id"].as_str().unwrap_or_default();
        if !ids.contains(id) {
            return Err(format!("task {id:?} is missing from the result"));
        }
    }
    for (before, after) in migrated["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .zip(&parsed.tasks)
    {
        let after = serde_json::to_value(after).map_err(|e| e.to_string())?;
        if let Some(path) = first_loss(before, &after, "") {
            return Err(format!("task {:?} would lose {path}", after["id"]));
        }
    }
    let sessions_in = migrated["sessions"].as_array().map_or(0, Vec::len);
    if parsed.sessions.len() != sessions_in {
        return Err(format!(
            "{} sessions in, {} out",
            sessions_in,
            parsed.sessions.len()
        ));
    }
    Ok(sealed)
}

/// The first place where `after` does not hold everything `before` holds:
/// objects may gain members, arrays and scalars must be equal (arrays
/// element by element, with the same rule).
pub fn first_loss(before: &Value, after: &Value, path: &str) -> Option<String> {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => b.iter().find_map(|(k, v)| match a.get(k) {
            None => Some(format!("{path}/{k}")),
            Some(av) => first_loss(v, av, &format!("{path}/{k}")),
        }),
        (Value::Array(b), Value::Array(a)) if b.len() == a.len() => b
            .iter()
            .zip(a)
            .enumerate()
            .find_map(|(i, (bv, av))| first_loss(bv, av, &format!("{path}/{i}"))),
        (b, a) if b == a => None,
        _ => Some(if path.is_empty() {
            "/".into()
        } else {
            path.into()
        }),
    }
}

/// The original server's statuses that statewal names differently. Matched
/// without regard to case, `-` or `_`; statewal's own six pass unchanged.
const STATUS_ALIASES: &[(&str, &str)] = &[
    ("running", "in_progress"),
    ("inprogress", "in_progress"),
    ("started", "in_progress"),
    ("active", "in_progress"),
    ("queued", "pending"),
    ("created", "pending"),
    ("new", "pending"),
    ("todo", "pending"),
    ("paused", "waiting"),
    ("blocked", "waiting"),
    ("canceled", "cancelled"),
    ("aborted", "cancelled"),
    ("stopped", "cancelled"),
    ("done", "completed"),
    ("success", "completed"),
    ("succeeded", "completed"),
    ("error", "failed"),
    ("errored", "failed"),
];

/// Maps a status to one of statewal's six, or `None` when it is unknown.
pub fn map_status(status: &str) -> Option<&'static str> {
    const OWN: [&str; 6] = [
        "pending",
        "in_progress",
        "waiting",
        "completed",
        "failed",
        "cancelled",
    ];
    if let Some(own) = OWN.iter().find(|s| **s == status) {
        return Some(own);
    }
    let key: String = status
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    OWN.iter()
        .find(|s| s.replace('_', "") == key)
        .copied()
        .or_else(|| {
            STATUS_ALIASES
                .iter()
                .find(|(a, _)| *a == key)
                .map(|(_, s)| *s)
        })
}

/// "0" → "1.0.0": the original TypeScript server's `state.json` becomes
/// statewal's. Adds `version`, `journal_seq: 0`, missing `tasks`, `sessions`
/// and `last_saved`; recomputes `metrics`; renames statuses statewal spells
/// differently (keeping the original in `original_status`); gives sessions
/// that carry only `sessionId` an `id`. Removes nothing.
fn ts_server_to_v1(state: &mut Value, notes: &mut Vec<String>) -> std::result::Result<(), String> {
    let Value::Object(old) = std::mem::take(state) else {
        return Err("the state file is not a JSON object".into());
    };
    let mut old = old;
    let mut tasks = old.shift_remove("tasks").unwrap_or_else(|| {
        notes.push("added an empty \"tasks\"".into());
        Value::Array(Vec::new())
    });
    let Value::Array(list) = &mut tasks else {
        return Err("\"tasks\" is not an array".into());
    };
    for t in list.iter_mut() {
        map_task_status(t, notes)?;
    }
    let typed: Vec<Task> =
        serde_json::from_value(tasks.clone()).map_err(|e| format!("a task does not load: {e}"))?;
    let mut sessions = old.shift_remove("sessions").unwrap_or_else(|| {
        notes.push("added an empty \"sessions\"".into());
        Value::Array(Vec::new())
    });
    let Value::Array(slist) = &mut sessions else {
        return Err("\"sessions\" is not an array".into());
    };
    for (i, s) in slist.iter_mut().enumerate() {
        give_session_id(i, s, notes)?;
    }
    let metrics = Metrics::of(&typed);
    match old.shift_remove("metrics") {
        Some(m) if m != serde_json::to_value(metrics).expect("metrics serialize") => {
            notes.push(format!("recomputed \"metrics\" (was {m})"))
        }
        Some(_) => {}
        None => notes.push("added \"metrics\"".into()),
    }
    let last_saved = old.shift_remove("last_saved").unwrap_or_else(|| {
        notes.push("added \"last_saved\"".into());
        Value::String(now_rfc3339())
    });
    let journal_seq = old.shift_remove("journal_seq").unwrap_or_else(|| {
        notes.push("added \"journal_seq\": 0".into());
        Value::from(0u64)
    });
    old.shift_remove("version");
    notes.push(format!("set \"version\" to {STATE_VERSION:?}"));
    let mut new = Map::new();
    new.insert("version".into(), STATE_VERSION.into());
    new.insert("tasks".into(), tasks);
    new.insert("sessions".into(), sessions);
    new.insert(
        "metrics".into(),
        serde_json::to_value(metrics).expect("metrics serialize"),
    );
    new.insert("last_saved".into(), last_saved);
    new.insert("journal_seq".into(), journal_seq);
    for (k, v) in old {
        notes.push(format!(
            "top-level member {k:?} is kept in this state.json but not by later checkpoints; \
             it stays in {PRE_MIGRATION_BACKUP}"
        ));
        new.insert(k, v);
    }
    *state = Value::Object(new);
    Ok(())
}

fn map_task_status(task: &mut Value, notes: &mut Vec<String>) -> std::result::Result<(), String> {
    let id = task["id"].as_str().unwrap_or("<no id>").to_string();
    let Some(Value::String(status)) = task.get("status") else {
        return Ok(());
    };
    let status = status.clone();
    let mapped = map_status(&status).ok_or_else(|| {
        format!("task {id:?} has status {status:?}, which statewal does not know")
    })?;
    if mapped != status {
        let obj = task
            .as_object_mut()
            .expect("a task with a status is an object");
        obj.insert("status".into(), mapped.into());
        obj.entry(ORIGINAL_STATUS_FIELD)
            .or_insert(status.clone().into());
        notes.push(format!(
            "task {id:?}: status {status:?} is now {mapped:?} (the original kept in {ORIGINAL_STATUS_FIELD:?})"
        ));
    }
    Ok(())
}

fn give_session_id(
    i: usize,
    s: &mut Value,
    notes: &mut Vec<String>,
) -> std::result::Result<(), String> {
    let Value::Object(obj) = s else {
        return Err(format!("session {i} is not an object"));
    };
    if obj.get("id").is_some_and(Value::is_string) {
        return Ok(());
    }
    let alias = ["sessionId", "session_id"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str).map(str::to_string));
    match (obj.contains_key("id"), alias) {
        (false, Some(id)) => {
            notes.push(format!("session {id:?}: added \"id\" from its session id"));
            obj.insert("id".into(), id.into());
            Ok(())
        }
        _ => Err(format!(
            "session {i} has no string \"id\" (nor \"sessionId\")"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_map_to_statewals_six() {
        assert_eq!(map_status("completed"), Some("completed"));
        assert_eq!(map_status("in-progress"), Some("in_progress"));
        assert_eq!(map_status("inProgress"), Some("in_progress"));
        assert_eq!(map_status("Running"), Some("in_progress"));
        assert_eq!(map_status("canceled"), Some("cancelled"));
        assert_eq!(map_status("exploded"), None);
    }

    #[test]
    fn v0_gains_what_statewal_requires_and_keeps_the_rest() {
        let input = json!({
            "tasks": [{"id": "3f2b", "status": "running", "toolInvocations": [1]}],
            "sessions": [{"sessionId": "s1"}],
            "uiPrefs": {"dark": true},
        });
        let mut state = input.clone();
        let mut notes = Vec::new();
        ts_server_to_v1(&mut state, &mut notes).unwrap();
        assert_eq!(state["version"], STATE_VERSION);
        assert_eq!(state["journal_seq"], 0);
        assert_eq!(state["tasks"][0]["status"], "in_progress");
        assert_eq!(state["tasks"][0][ORIGINAL_STATUS_FIELD], "running");
        assert_eq!(state["sessions"][0]["id"], "s1");
        assert_eq!(state["uiPrefs"], input["uiPrefs"]);
        validate(&input, &state).unwrap();
    }

    #[test]
    fn unknown_status_refuses() {
        let mut state = json!({"tasks": [{"id": "a", "status": "exploded"}]});
        assert!(ts_server_to_v1(&mut state, &mut Vec::new()).is_err());
    }

    #[test]
    fn plan_finds_the_chain_or_says_why_not() {
        assert_eq!(plan(UNVERSIONED).unwrap().len(), 1);
        assert!(plan(STATE_VERSION).unwrap().is_empty());
        assert!(plan("9.9.9").unwrap_err().contains("no migration"));
    }
}
