//! Versions of `state.json` and the registered steps between them.
//!
//! A migration reads `state.json` as plain JSON, finds its `version` (a file
//! without one was written by the original TypeScript server: version
//! [`UNVERSIONED`]), and applies the registered [`Step`]s one after another
//! up to [`STATE_VERSION`]. The original server writes `tasks/<id>.json`
//! first and `state.json` later, so each task is then merged with its task
//! file by [`crate::reconcile::newest`], and tasks found only in `tasks/` are
//! added (a `state.json` that is missing or unusable is replaced, as the
//! original server's own recovery does, by its newest valid backup). The
//! result must parse with [`layout::parse_state`], hold every task id of the
//! input, and keep every field of every task; only then is anything written:
//!
//! 1. `state.pre-migration.backup.json` (numbered `.1`, `.2`, ... when one
//!    is there already, never overwritten): the input bytes, atomically;
//! 2. `state.json`: the migrated, sealed state, atomically;
//! 3. `state.migration-v<from>-to-v<to>.log`: what was done, appended.
//!
//! A directory where statewal has history (a journal, a sealed state file)
//! is not migrated but merged: see [`crate::reconcile`]; [`migrate`] then
//! opens the store, whose open runs the merge.
//!
//! **Invariant:** a migration writes nothing unless the result validates, and
//! never writes `state.json` before the pre-migration backup is durable.

use crate::error::{Error, ErrorKind, Result};
use crate::fs::{Fs, RealFs, write_atomic};
use crate::layout::{self, STATE_FILE};
use crate::model::{Metrics, STATE_VERSION, Task, TaskStatus, now_rfc3339};
use serde::Serialize;
use serde_json::{Map, Value};
use std::path::Path;

/// The copy of `state.json` kept before a migration rewrites it; later ones
/// are `state.pre-migration.backup.<n>.json` ([`pre_migration_backup_name`]).
pub const PRE_MIGRATION_BACKUP: &str = "state.pre-migration.backup.json";

/// The name of the `n`th pre-migration backup: [`PRE_MIGRATION_BACKUP`] for
/// 0, `state.pre-migration.backup.<n>.json` after it.
pub fn pre_migration_backup_name(n: u64) -> String {
    if n == 0 {
        PRE_MIGRATION_BACKUP.into()
    } else {
        format!("state.pre-migration.backup.{n}.json")
    }
}

/// The pre-migration backups in `fs`, oldest first, with their numbers.
pub fn pre_migration_backups(fs: &dyn Fs) -> Result<Vec<(u64, String)>> {
    let mut found: Vec<(u64, String)> = fs
        .list("")?
        .into_iter()
        .filter_map(|name| {
            if name == PRE_MIGRATION_BACKUP {
                return Some((0, name));
            }
            let n = name
                .strip_prefix("state.pre-migration.backup.")?
                .strip_suffix(".json")?;
            let ok = !n.is_empty() && n.len() <= 19 && n.bytes().all(|b| b.is_ascii_digit());
            let n: u64 = n.parse().ok().filter(|n| ok && *n > 0)?;
            (pre_migration_backup_name(n) == name).then_some((n, name))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// Keeps `bytes` as a pre-migration backup, durably, before anything
/// replaces `state.json`: the newest one if it holds these bytes already (a
/// migration or merge run again after a crash), else a new one numbered
/// after it. Never overwrites one. Returns its name.
pub(crate) fn keep_pre_migration(fs: &dyn Fs, bytes: &[u8]) -> Result<String> {
    let existing = pre_migration_backups(fs)?;
    if let Some((n, name)) = existing.last() {
        if fs.read(name)?.as_deref() == Some(bytes) {
            return Ok(name.clone());
        }
        let name = pre_migration_backup_name(n + 1);
        // write_atomic syncs the data and the directory: the copy is durable
        // before the caller replaces state.json.
        write_atomic(fs, "", &name, bytes)?;
        return Ok(name);
    }
    write_atomic(fs, "", PRE_MIGRATION_BACKUP, bytes)?;
    Ok(PRE_MIGRATION_BACKUP.into())
}

/// Appends `text` to the log `name`, atomically and durably (the whole
/// file is written again: logs are small and rare).
pub(crate) fn append_log(fs: &dyn Fs, name: &str, text: &str) -> Result<()> {
    let mut all = fs.read(name)?.map(|b| b.to_vec()).unwrap_or_default();
    if !all.is_empty() && !all.ends_with(b"\n") {
        all.push(b'\n');
    }
    all.extend_from_slice(text.as_bytes());
    write_atomic(fs, "", name, &all)
}
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
    /// Tasks in the result: the state file's merged with `tasks/`.
    pub tasks: usize,
    /// Nothing was written.
    pub dry_run: bool,
    /// The pre-migration backup written (or reused), if any.
    pub backup: Option<String>,
    /// The log written, if any.
    pub log: Option<String>,
    /// The state file migrated: `state.json`, or the newest valid backup
    /// when `state.json` was missing or unusable; `None` when nothing was
    /// migrated.
    pub source: Option<String>,
    /// True when the directory has statewal history, so the foreign state
    /// file was (or would be) merged with statewal's journal instead.
    pub merge: bool,
    /// Every decision about a task: each taken from `tasks/` and why, each
    /// kept from the state file over an older task file, and, for a merge,
    /// each side's copy kept.
    pub decisions: Vec<crate::reconcile::Decision>,
    /// Task files that are not tasks, with why (left as they are; an
    /// owner's open sets them aside).
    pub skipped: Vec<crate::layout::Skipped>,
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
    /// The file restored from: the newest pre-migration backup.
    pub restored_from: String,
    /// The version of the `state.json` that was replaced, if it had one.
    pub replaced_version: Option<String>,
    /// The version restored (`"unreadable"` when the file kept was not
    /// JSON: the original server had left `state.json` empty or cut short).
    pub restored_version: String,
}

/// Migrates the `state.json` of a state directory that is not open: takes
/// the directory lock. With `dry_run` it only reports what would change, and
/// takes no lock: it reads files that writers replace atomically, and the
/// lock would create `.statewal.lock` in a directory it only reads (the
/// original server's has none) and fail beside a running writer.
///
/// Where statewal has history (a journal, a sealed state file) and the
/// original server has written `state.json` since, this merges instead: it
/// opens the store, whose open runs the merge (with `dry_run`, read-only:
/// the decisions are computed and nothing is written).
pub fn migrate(dir: &Path, dry_run: bool) -> Result<MigrationReport> {
    let fs = RealFs::existing(dir)?;
    refuse_encrypted(&fs, dir)?;
    let survey = crate::reconcile::survey::survey(&fs)?;
    if survey.needs_merge() {
        drop(fs);
        return merge_by_opening(dir, dry_run);
    }
    if dry_run {
        return migrate_surveyed(&fs, true, &survey);
    }
    let _lock = fs.lock()?;
    // Again under the lock: a writer may have changed the directory.
    let survey = crate::reconcile::survey::survey(&fs)?;
    if survey.needs_merge() {
        drop(_lock);
        drop(fs);
        return merge_by_opening(dir, false);
    }
    migrate_surveyed(&fs, false, &survey)
}

/// An encrypted store is written in the current format, and was never
/// the original server's: there is nothing to migrate or roll back, and
/// its sealed files must not be read as damaged JSON.
fn refuse_encrypted(fs: &dyn Fs, dir: &Path) -> Result<()> {
    match layout::sealed_state(fs)? {
        Some(id) => Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} is encrypted (key id {id:08x}): it is written in the current format, so \
                 there is nothing to migrate or roll back (nothing was done)",
                dir.display()
            ),
        )),
        None => Ok(()),
    }
}

/// The merge of [`migrate`]: an owner's open runs it; a read-only open
/// computes the same decisions and writes nothing.
fn merge_by_opening(dir: &Path, dry_run: bool) -> Result<MigrationReport> {
    let opts = crate::Options::new(dir)
        .read_only(dry_run)
        .checkpoint_interval(None);
    let store = crate::Store::open(opts)?;
    let r = store.recovery_report()?.clone();
    let merged = r.merged.clone();
    let report = MigrationReport {
        from: Some(UNVERSIONED.into()),
        to: STATE_VERSION.into(),
        steps: vec!["merge-with-journal".into()],
        changes: Vec::new(),
        tasks: store.list_tasks()?.len(),
        dry_run,
        backup: merged.as_ref().and_then(|m| m.backup.clone()),
        log: merged.as_ref().and_then(|m| m.log.clone()),
        source: merged.map(|m| m.from),
        merge: true,
        decisions: r.decisions,
        skipped: r.skipped_files,
    };
    if !dry_run {
        store.shutdown()?;
    }
    Ok(report)
}

/// Restores the newest pre-migration backup as `state.json`, atomically,
/// in a state directory that is not open. The backup is kept: rolling back
/// twice, or migrating again, stays possible. The next open of statewal
/// finds a `state.json` without a version over its own history and merges
/// the two per task (see `crate::reconcile`), so the writes statewal
/// journaled since the migration are kept where they are newer.
pub fn rollback(dir: &Path) -> Result<RollbackReport> {
    let fs = RealFs::existing(dir)?;
    refuse_encrypted(&fs, dir)?;
    let _lock = fs.lock()?;
    let Some((_, name)) = pre_migration_backups(&fs)?.pop() else {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "no {}: nothing to roll back",
                fs.describe(PRE_MIGRATION_BACKUP)
            ),
        )
        .with_path(PRE_MIGRATION_BACKUP));
    };
    let bytes = fs.read(&name)?.map(|b| b.to_vec()).unwrap_or_default();
    // A state.json the original server (or a hand) wrote since the last
    // migration is its layout already, and newer than every pre-migration
    // backup: replacing it would drop what only it holds.
    if let Some(cur) = fs.read(STATE_FILE)?
        && *cur != bytes[..]
        && !layout::written_by_statewal(&cur)
        && crate::reconcile::survey::has_version(&cur) == Some(false)
    {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} was written without a version (by the original server, or by hand) since \
                 {name} was kept: it is already the original server's layout, and rolling back \
                 would drop it; nothing was written (move it aside first to roll back anyway)",
                fs.describe(STATE_FILE)
            ),
        )
        .with_path(STATE_FILE));
    }
    // The original server may have left state.json empty or cut short; its
    // bytes were kept as they were, and go back as they were.
    let restored_version = match parse_json(&fs, &name, &bytes) {
        Ok(v) => version_of(&v).map_err(|e| layout::corrupt_state(&fs, &name, &e))?,
        Err(_) => "unreadable".into(),
    };
    let replaced_version = match fs.read(STATE_FILE)? {
        Some(cur) => serde_json::from_slice::<Value>(&cur)
            .ok()
            .and_then(|v| version_of(&v).ok()),
        None => None,
    };
    write_atomic(&fs, "", STATE_FILE, &bytes)?;
    Ok(RollbackReport {
        restored_from: name,
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

/// Runs the migration of part 1 for [`crate::Store::open`], which holds
/// the lock and has found a foreign state file and no statewal history. A
/// migration that fails validation is left to recovery (which then falls
/// back as it always did, and the warning says why).
pub(crate) fn migrate_on_open(
    fs: &dyn Fs,
    survey: &crate::reconcile::survey::Survey,
) -> Result<Option<MigrationReport>> {
    match migrate_surveyed(fs, false, survey) {
        Ok(report) => {
            tracing::info!(
                from = ?report.from, to = %report.to, tasks = report.tasks,
                source = ?report.source, backup = ?report.backup,
                "migrated the original server's state"
            );
            for d in &report.decisions {
                tracing::info!("migration: {d}");
            }
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
    // A repeated key is refused, as `migrate` refuses it: recovery loads
    // what this returns, and must not pick one of two values either.
    let input = match crate::json::parse(bytes) {
        Ok(v) => v,
        Err(e) if e.is_data() => return Err(e.to_string()),
        Err(_) => return Ok(None),
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

/// Migrates what `survey` found: the foreign state file (`state.json`, or
/// the newest valid backup when `state.json` is missing or unusable) merged
/// with `tasks/`; a current or newer-versioned `state.json` is reported and
/// left alone.
fn migrate_surveyed(
    fs: &dyn Fs,
    dry_run: bool,
    survey: &crate::reconcile::survey::Survey,
) -> Result<MigrationReport> {
    let mut report = MigrationReport {
        from: None,
        to: STATE_VERSION.into(),
        steps: Vec::new(),
        changes: Vec::new(),
        tasks: 0,
        dry_run,
        backup: None,
        log: None,
        source: None,
        merge: false,
        decisions: Vec::new(),
        skipped: Vec::new(),
    };
    let foreign = match &survey.foreign {
        Some(f) => f.clone(),
        None => {
            // Nothing foreign: a current state.json (or none), or one this
            // build cannot read or migrate, which is named.
            let Some(bytes) = fs.read(STATE_FILE)? else {
                return Ok(report);
            };
            let input = parse_json(fs, STATE_FILE, &bytes)?;
            let from = version_of(&input).map_err(|e| layout::corrupt_state(fs, STATE_FILE, &e))?;
            if from == UNVERSIONED {
                // A flipped bit in statewal's own `version` key: damage, not
                // the original server's file.
                layout::not_sealed_by_statewal(&bytes)
                    .map_err(|e| layout::corrupt_state(fs, STATE_FILE, &e))?;
            }
            report.tasks = input["tasks"].as_array().map_or(0, Vec::len);
            report.from = Some(from.clone());
            let steps = plan(&from).map_err(|e| Error::new(ErrorKind::InvalidInput, e))?;
            if steps.is_empty() {
                return Ok(report);
            }
            // An unversioned state.json that the survey found unusable:
            // say why, as the steps do.
            crate::reconcile::survey::ForeignFile {
                name: STATE_FILE.into(),
                bytes: bytes.to_vec(),
                unusable_state: None,
            }
        }
    };
    let input = parse_json(fs, &foreign.name, &foreign.bytes)?;
    let from = version_of(&input).map_err(|e| layout::corrupt_state(fs, &foreign.name, &e))?;
    if from == UNVERSIONED {
        layout::not_sealed_by_statewal(&foreign.bytes)
            .map_err(|e| layout::corrupt_state(fs, &foreign.name, &e))?;
    }
    report.from = Some(from.clone());
    report.source = Some(foreign.name.clone());
    let steps = plan(&from).map_err(|e| Error::new(ErrorKind::InvalidInput, e))?;
    let view = crate::reconcile::foreign::view(fs, &foreign.name, &foreign.bytes)?
        .map_err(|e| unmigratable(fs, &foreign.name, steps.first().copied(), &e))?;
    report.steps = view.steps.clone();
    report.changes = view.notes.clone();
    report.decisions = view.decisions.clone();
    report.skipped = view.skipped.clone();
    report.tasks = view.tasks.len();
    let sealed = validate(&input, &view.state)
        .map_err(|e| unmigratable(fs, &foreign.name, steps.first().copied(), &e))?;
    if dry_run {
        return Ok(report);
    }
    // Keep the original first: rollback restores it, and nothing below may
    // replace state.json before it is durable. When state.json was there
    // but unusable, its own bytes are kept (a rollback puts back exactly
    // what was there); when it was missing, the backup migrated.
    let original = foreign.unusable_state.as_deref().unwrap_or(&foreign.bytes);
    report.backup = Some(keep_pre_migration(fs, original)?);
    // Atomic, with the data and the directory synced: a crash leaves either
    // the original state.json (migrated again at the next open) or this one.
    write_atomic(fs, "", STATE_FILE, &sealed)?;
    let log = log_name(&from, STATE_VERSION);
    append_log(fs, &log, &log_text(&report))?;
    report.log = Some(log);
    Ok(report)
}

/// `state.migration-v<from>-to-v<to>.log`.
pub fn log_name(from: &str, to: &str) -> String {
    format!("state.migration-v{from}-to-v{to}.log")
}

fn log_text(report: &MigrationReport) -> String {
    let source = report.source.as_deref().unwrap_or(STATE_FILE);
    let mut out = format!(
        "{} migrated {source} from version {} to {} ({} task{})\n",
        now_rfc3339(),
        report.from.as_deref().unwrap_or(UNVERSIONED),
        report.to,
        report.tasks,
        if report.tasks == 1 { "" } else { "s" }
    );
    out += &format!("steps: {}\n", report.steps.join(", "));
    if let Some(b) = &report.backup {
        out += &format!("original kept in {b}\n");
    }
    for c in &report.changes {
        out += &format!("- {c}\n");
    }
    for d in &report.decisions {
        out += &format!("- {d}\n");
    }
    for s in &report.skipped {
        out += &format!("- {} is not a task ({}): left as it is\n", s.file, s.reason);
    }
    out
}

/// Parses a state file to migrate. A repeated key is refused here too: the
/// migration must not pick one of two values for the writer.
fn parse_json(fs: &dyn Fs, name: &str, bytes: &[u8]) -> Result<Value> {
    crate::json::parse(bytes).map_err(|e| layout::corrupt_state(fs, name, &e.to_string()))
}

fn unmigratable(fs: &dyn Fs, name: &str, step: Option<&Step>, why: &str) -> Error {
    let step = step.map_or(String::new(), |s| {
        format!(" ({} to {}, step {})", s.from, s.to, s.name)
    });
    Error::new(
        ErrorKind::Corrupt,
        format!(
            "cannot migrate {}{step}: {why}; nothing was written",
            fs.describe(name),
        ),
    )
    .with_path(name)
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
    if let Some(own) = TaskStatus::ALL.iter().find(|s| s.as_str() == status) {
        return Some(own.as_str());
    }
    let key: String = status
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    TaskStatus::ALL
        .iter()
        .map(|s| s.as_str())
        .find(|s| s.replace('_', "") == key)
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

pub(crate) fn map_task_status(
    task: &mut Value,
    notes: &mut Vec<String>,
) -> std::result::Result<(), String> {
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
