//! The checkpoint: materialize the journal into the human-readable layout.
//!
//! Order, each file written atomically (temp file, fsync, rename, directory
//! fsync):
//! 1. rotate the journal, so every record the checkpoint covers is synced in
//!    segments older than the new one, and snapshot the state;
//! 2. write archived tasks' lines into `archive/`, write changed `tasks/`,
//!    `sessions/`, `reports/` files, remove deleted and archived ones, and
//!    apply pending log appends; a task file edited by hand since this
//!    process last wrote or read it is first set aside, durably
//!    (`crate::reconcile::live`);
//! 3. rename the previous `state.json`, if it is valid (an unversioned one
//!    that migrates included), to a backup; an unversioned one that does
//!    not migrate (another writer's) is first copied to a pre-migration
//!    backup;
//! 4. write the new `state.json`, which records the journal position;
//! 5. prune backups past the configured count;
//! 6. remove journal segments covered by the *previous* checkpoint.
//!
//! **Invariant:** a journal segment is removed only after a durable
//! checkpoint covers it, and the segments since the newest backup are kept,
//! so a corrupt `state.json` costs nothing: its backup plus the journal
//! rebuild it.
//!
//! A crash anywhere in this sequence is safe: until step 4 lands, the old
//! `state.json` (or its backup) plus the journal describe the same state,
//! and replaying puts, deletes and offset-stamped log appends and archive
//! lines is idempotent.

use crate::error::Result;
use crate::fs::{self, FileStat, Fs, OpenMode};
use crate::layout::{
    self, ARCHIVE_DIR, LOGS_DIR, REPORTS_DIR, SESSIONS_DIR, STATE_FILE, TASKS_DIR,
};
use crate::model::{Metrics, STATE_VERSION};
use crate::reconcile::Decision;
use crate::reconcile::live::TaskFiles;
use crate::state::{Changes, Held, TaskMap};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a checkpoint did. A checkpoint with nothing new since the last one
/// writes nothing and reports `state_bytes == 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointStats {
    /// The journal position `state.json` now covers.
    pub seq: u64,
    /// Task files written or removed.
    pub task_files_changed: usize,
    /// Tasks in `state.json`.
    pub tasks_total: usize,
    /// Bytes of the new `state.json`.
    pub state_bytes: u64,
    /// Journal segments removed.
    pub segments_removed: usize,
    /// How long it took.
    pub duration: Duration,
}

/// Checkpoint bookkeeping that lives between checkpoints.
#[derive(Debug, Default)]
pub(crate) struct CheckpointCtx {
    /// Segments with smaller ids are covered by the current `state.json`.
    pub state_boundary: u64,
    /// Segments with smaller ids are covered by the newest valid backup too,
    /// and may go: a corrupt `state.json` then still costs nothing.
    pub removable_below: u64,
    /// The CRC of `state.json` as this process last wrote or loaded it.
    pub state_crc: Option<u32>,
    /// statewal's own backups known to parse: recovery can start from them.
    pub valid_backups: HashSet<String>,
    /// The journal position the durable `state.json` covers, when known to
    /// be valid: a checkpoint with nothing new since writes nothing, so an
    /// idle store's auto-save does not push its backups out.
    pub covered_seq: Option<u64>,
    /// The store's identity, written into `state.json` (32 lowercase hex digits).
    pub store_id: String,
    /// What each task file held when this process last wrote or read it.
    pub task_files: TaskFiles,
    /// Task files the checkpoints set aside (edited while the store was
    /// open), not yet reported to subscribers.
    pub set_aside: Vec<Decision>,
    /// What pruning found each backup to be, by name, with the file's stat
    /// when it was read: the same stat, the same verdict, without reading
    /// and parsing the file again (a backup of 100,000 tasks is some 58 MB).
    pub backup_kinds: HashMap<String, (FileStat, BackupKind)>,
    /// `state.snapshot` does not match the durable `state.json` (missing,
    /// stale, damaged, or its last write failed): a checkpoint with
    /// nothing new writes it all the same ([`refresh_snapshot`]).
    pub snapshot_due: bool,
    /// The last failure to write each derived file, for `health`; shared
    /// with the store, which reads it without taking this context's lock.
    pub derived: Arc<crate::derived::DerivedFailures>,
    /// Something outside the checkpoint that still reads old segments (a
    /// replica that has not shipped them), consulted before removing any.
    pub retention_gate: Option<Arc<dyn RetentionGate>>,
    /// Work that follows every checkpoint, under this context's lock (so
    /// no checkpoint writes a layout file meanwhile): a key change's
    /// sealing again of files under the old key (`crate::crypto`).
    pub after: Option<Arc<dyn AfterCheckpoint>>,
}

/// Work that follows every successful checkpoint, with the checkpoint's
/// lock held, on the store's filesystem. A failure is logged; the next
/// checkpoint tries again.
pub(crate) trait AfterCheckpoint: Send + Sync + std::fmt::Debug {
    fn after(&self, fs: &dyn Fs) -> Result<()>;
}

/// A say in when covered journal segments may be removed, for a reader of
/// the segments that the checkpoint knows nothing about. The checkpoint
/// removes a covered segment only if its id is below both its own bound
/// and [`RetentionGate::keep_from`].
pub(crate) trait RetentionGate: Send + Sync + std::fmt::Debug {
    /// Segments with this id or a greater one must stay; `u64::MAX`: no
    /// constraint.
    fn keep_from(&self) -> u64;
}

/// The state as of one journal position, taken under the ordering lock.
pub(crate) struct Snapshot {
    pub seq: u64,
    /// Shared with `State::writing` until the checkpoint ends.
    pub changes: Arc<Changes>,
    /// Each task, held, with its version.
    pub tasks: TaskMap,
    pub sessions: BTreeMap<String, Arc<Value>>,
}

/// The members of `state.json` after `"tasks"`, in the order written.
#[derive(Serialize)]
struct StateRest<'a> {
    sessions: Vec<&'a Value>,
    metrics: Metrics,
    last_saved: &'a str,
    journal_seq: u64,
    /// The store's identity.
    store_id: &'a str,
    /// Each task's version, so a checkpoint does not reset them; the last
    /// member before the checksum seal.
    task_versions: BTreeMap<&'a str, u64>,
}

/// Steps 2 to 6. On error the caller puts `snap.changes` back.
pub(crate) fn write(
    fs: &dyn Fs,
    ctx: &mut CheckpointCtx,
    snap: &Snapshot,
    backups_kept: usize,
    new_segment: u64,
    now: &str,
) -> Result<CheckpointStats> {
    let started = Instant::now();
    let changes = &snap.changes;
    // Archive lines first: a task file is removed only once its line is durable.
    apply_archives(fs, changes)?;
    let task_files_changed = write_task_files(fs, ctx, snap)?;
    let session_files = changes
        .sessions
        .iter()
        .map(|id| (id, snap.sessions.get(id).map(|s| to_json(&**s))));
    write_files(fs, SESSIONS_DIR, session_files, layout::session_file)?;
    let reports = changes
        .reports
        .iter()
        .map(|(id, r)| (id, Some(to_json(&**r))));
    write_files(fs, REPORTS_DIR, reports, layout::report_file)?;
    apply_logs(fs, changes)?;

    if backup_state(fs, ctx)? {
        // The state.json just kept as a backup covers everything before its
        // boundary. A corrupt one was not kept, so the older backup still
        // needs the segments it needed.
        ctx.removable_below = ctx.removable_below.max(ctx.state_boundary);
    }
    let bytes = layout::seal_state(state_json(snap, now, &ctx.store_id));
    fs::write_atomic(fs, "", STATE_FILE, &bytes)?;
    ctx.state_crc = Some(crc32fast::hash(&bytes));
    ctx.covered_seq = Some(snap.seq);

    prune_backups(fs, ctx, backups_kept)?;
    let keep_from = ctx
        .retention_gate
        .as_ref()
        .map_or(u64::MAX, |g| g.keep_from());
    let segments_removed = remove_segments(fs, ctx.removable_below.min(keep_from))?;
    ctx.state_boundary = new_segment;
    // Only now that state.json is durable (neither is ever the only copy of
    // anything), and last. Best effort: a failure is a warning, never the
    // checkpoint's (`crate::derived`).
    save_task_stats(fs, ctx);
    let last_saved = now;
    write_snapshot(fs, ctx, &SnapshotOf { snap, last_saved }, &bytes);
    Ok(CheckpointStats {
        seq: snap.seq,
        task_files_changed,
        tasks_total: snap.tasks.len(),
        state_bytes: bytes.len() as u64,
        segments_removed,
        duration: started.elapsed(),
    })
}

/// `state.json`'s text before its seal: serde_json's pretty form of the
/// persisted state, the tasks written from the bytes held (re-indented,
/// never parsed) and the other members serialized around them.
fn state_json(snap: &Snapshot, now: &str, store_id: &str) -> Vec<u8> {
    let rest = StateRest {
        sessions: snap.sessions.values().map(|s| &**s).collect(),
        metrics: crate::state::metrics_of(&snap.tasks),
        last_saved: now,
        journal_seq: snap.seq,
        store_id,
        task_versions: snap
            .tasks
            .iter()
            .map(|(id, h)| (id.as_str(), h.version))
            .collect(),
    };
    let rest = serde_json::to_vec_pretty(&rest).expect("serializing the state cannot fail");
    let held: usize = snap.tasks.values().map(|h| h.task.json().len()).sum();
    let mut out = Vec::with_capacity(held + held / 2 + rest.len() + 64);
    out.extend_from_slice(b"{\n  \"version\": ");
    serde_json::to_writer(&mut out, STATE_VERSION).expect("writing to a Vec cannot fail");
    out.extend_from_slice(b",\n  \"tasks\": ");
    if snap.tasks.is_empty() {
        out.extend_from_slice(b"[]");
    } else {
        out.push(b'[');
        for (i, h) in snap.tasks.values().enumerate() {
            out.extend_from_slice(if i == 0 { b"\n    " } else { b",\n    " });
            // Each task sits two levels down: in the top object's "tasks".
            crate::task_json::write_pretty(&mut out, h.task.json(), 2);
        }
        out.extend_from_slice(b"\n  ]");
    }
    // The other members follow as `rest` wrote them, at the same level.
    debug_assert!(rest.starts_with(b"{\n  "));
    out.extend_from_slice(b",\n");
    out.extend_from_slice(&rest[2..]);
    out
}

/// A task's file, as the checkpoint writes it: serde_json's pretty form of
/// the held bytes, and a newline.
pub(crate) fn task_file_json(held: &Held) -> Vec<u8> {
    let json = held.task.json();
    let mut out = Vec::with_capacity(json.len() + json.len() / 2);
    crate::task_json::write_pretty(&mut out, json, 0);
    out.push(b'\n');
    out
}

/// A session or report file's bytes, as the checkpoint writes them.
pub(crate) fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out =
        serde_json::to_vec_pretty(v).expect("serializing a task or JSON value cannot fail");
    out.push(b'\n');
    out
}

/// Writes the changed tasks' files, and removes those of tasks gone, as one
/// batch, once every file edited since this process last wrote or read it
/// is set aside (`crate::reconcile::live`).
fn write_task_files(fs: &dyn Fs, ctx: &mut CheckpointCtx, snap: &Snapshot) -> Result<usize> {
    let files: Vec<(String, Option<Vec<u8>>)> = snap
        .changes
        .tasks
        .iter()
        .map(|id| {
            (
                layout::task_file(id),
                snap.tasks.get(id.as_str()).map(task_file_json),
            )
        })
        .collect();
    ctx.task_files.guard(fs, &files, &mut ctx.set_aside)?;
    let stamp = crate::reconcile::live::stamp(fs);
    let written = fs::write_atomic_batch_stamped(fs, TASKS_DIR, &files, Some(stamp));
    let stats = written.as_deref().unwrap_or_default();
    ctx.task_files
        .written(&files, stats, written.is_ok(), fs.now());
    written?;
    Ok(files.len())
}

/// Writes (`Some`) or removes (`None`) files in `dir` as one batch.
fn write_files<'a>(
    fs: &dyn Fs,
    dir: &str,
    files: impl Iterator<Item = (&'a String, Option<Vec<u8>>)>,
    name: fn(&str) -> String,
) -> Result<usize> {
    let files: Vec<(String, Option<Vec<u8>>)> = files.map(|(id, body)| (name(id), body)).collect();
    fs::write_atomic_batch(fs, dir, &files)?;
    Ok(files.len())
}

/// Writes each pending log append at its recorded offset. Replaying an
/// append writes the same bytes at the same place again, so it is idempotent.
fn apply_logs(fs: &dyn Fs, changes: &Changes) -> Result<()> {
    let mut by_session: BTreeMap<&str, Vec<&crate::state::PendingLog>> = BTreeMap::new();
    for log in &changes.logs {
        by_session.entry(&log.session).or_default().push(log);
    }
    for (session, logs) in &by_session {
        let mut file = fs.open(
            &fs::join(LOGS_DIR, &layout::log_file(session)),
            OpenMode::CreateOrOpen,
        )?;
        for log in logs {
            // Always write, even where the file is already long enough: power
            // loss during an earlier, unsynced write of these bytes can leave
            // the file at full length with zeros or garbage where the text
            // belongs (found by the crash tests on `SimFs`).
            file.write_all_at(log.offset, &log.text)?;
        }
        // Sync the log before state.json claims to cover its appends.
        file.sync_data()?;
    }
    if !by_session.is_empty() {
        // Sync the directory so newly created logs survive power loss.
        fs.sync_dir(LOGS_DIR)?;
    }
    Ok(())
}

/// Writes each archived task's line at its recorded offset, as
/// [`apply_logs`] does for log text, so replaying an archive record writes
/// the same line at the same place and never a second copy.
fn apply_archives(fs: &dyn Fs, changes: &Changes) -> Result<()> {
    let mut by_file: BTreeMap<&str, Vec<&crate::state::PendingArchive>> = BTreeMap::new();
    for a in &changes.archives {
        by_file.entry(&a.file).or_default().push(a);
    }
    for (name, lines) in &by_file {
        let mut file = fs.open(&fs::join(ARCHIVE_DIR, name), OpenMode::CreateOrOpen)?;
        for a in lines {
            // Always write, even over bytes already there: an earlier,
            // unsynced write of the same line may have left zeros behind.
            file.write_all_at(a.offset, &a.line)?;
        }
        // Sync the archive before state.json stops holding its tasks.
        file.sync_data()?;
    }
    if !by_file.is_empty() {
        // Sync the directory so a newly created archive file survives power loss.
        fs.sync_dir(ARCHIVE_DIR)?;
    }
    Ok(())
}

/// Renames a valid `state.json` to a new backup; a corrupt one is left to be
/// replaced and never becomes a backup. An unversioned one that migrates
/// (the original server rewrote `state.json` while this store ran) is kept
/// as a version-0 backup, so its contents are not dropped unseen.
/// Returns whether it made a backup recovery can start from: only then do
/// the segments before the old `state.json` stop being needed.
fn backup_state(fs: &dyn Fs, ctx: &mut CheckpointCtx) -> Result<bool> {
    let bytes = match fs.read(STATE_FILE) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(false),
        // Not a regular file (a planted FIFO): never a backup; the rename
        // of the new state.json replaces it.
        Err(e) if e.kind() == crate::error::ErrorKind::InvalidInput => {
            tracing::warn!(error = %e, "state.json is not a regular file; not keeping it as a backup");
            return Ok(false);
        }
        // In an encrypted store, one that does not open: damaged, as a
        // plain one that does not parse.
        Err(e) if e.kind() == crate::error::ErrorKind::Corrupt => {
            tracing::warn!(error = %e, "state.json is corrupt; not keeping it as a backup");
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    let recoverable =
        ctx.state_crc == Some(crc32fast::hash(&bytes)) || layout::parse_state(&bytes).is_ok();
    let unversioned = !recoverable && layout::parse_state_any_version(&bytes).is_ok();
    if !recoverable
        && !unversioned
        && !layout::written_by_statewal(&bytes)
        && crate::reconcile::survey::has_version(&bytes) == Some(false)
    {
        // A JSON object without a version that does not migrate (a status
        // statewal does not know, a session that is not an object): another
        // writer's, the original server's, and what it holds is nowhere
        // else. Kept as a pre-migration backup (numbered, never pruned;
        // `migrate --rollback` puts it back) before it is replaced.
        let kept = crate::migrate::keep_pre_migration(fs, &bytes)?;
        tracing::warn!(
            file = %fs.describe(STATE_FILE), kept = %kept,
            "state.json was written without a version and does not migrate; kept before it is replaced"
        );
        return Ok(false);
    }
    drop(bytes);
    if !recoverable && !unversioned {
        tracing::warn!(file = %fs.describe(STATE_FILE), "state.json is corrupt; not keeping it as a backup");
        return Ok(false);
    }
    let name = layout::new_backup_name(&layout::list_backups(fs)?);
    // No directory sync here: the one after state.json's rename covers both,
    // and any subset of the two renames surviving leaves a loadable state.
    fs.rename(STATE_FILE, &name)?;
    if unversioned {
        // It covers no journal position: recovery never starts from it, so
        // the older backup still needs the segments it needed.
        tracing::warn!(
            backup = %name,
            "state.json was rewritten without a version by another writer since the last checkpoint; kept as a backup and replaced"
        );
        return Ok(false);
    }
    ctx.valid_backups.insert(name);
    Ok(true)
}

/// Keeps the newest `kept` valid backups and removes every backup older
/// than the last of them, except the newest one recovery can start from.
///
/// A valid backup is statewal's own or the original server's (version 0,
/// one that migrates), so the original server's backups go at the same pace
/// as statewal's. An invalid backup newer than the last one kept stays (it
/// pushes no valid one out); one older goes, the original server's empty
/// and cut-short leftovers included: they hold nothing to restore.
///
/// The newest backup recovery can start from (statewal's own, versioned)
/// is never removed while `kept` is at least 1, even when newer backups of
/// the original server fill the count: the journal segments are retained
/// back to it, and a corrupt `state.json` falls back to it.
fn prune_backups(fs: &dyn Fs, ctx: &mut CheckpointCtx, kept: usize) -> Result<()> {
    let mut valid = 0;
    // Whether a backup recovery can start from has been kept.
    let mut recoverable_kept = false;
    let names = layout::list_backups(fs)?;
    // Verdicts of backups gone (pruned, or removed by hand) are forgotten.
    ctx.backup_kinds.retain(|name, _| names.contains(name));
    for name in names {
        let full = valid >= kept;
        if full && (recoverable_kept || kept == 0) {
            fs.remove(&name)?;
            ctx.valid_backups.remove(&name);
            ctx.backup_kinds.remove(&name);
            continue;
        }
        let kind = if ctx.valid_backups.contains(&name) {
            BackupKind::Recoverable
        } else {
            cached_backup_kind(fs, &mut ctx.backup_kinds, &name)?
        };
        if kind == BackupKind::Recoverable {
            ctx.valid_backups.insert(name.clone());
            recoverable_kept = true;
        } else if full {
            // Past the count and not the one recovery needs.
            fs.remove(&name)?;
            ctx.backup_kinds.remove(&name);
            continue;
        }
        if kind != BackupKind::Invalid {
            valid += 1;
        }
    }
    // No directory sync: a pruned backup that power loss brings back is a
    // valid older state, harmless, and pruned again by the next checkpoint.
    Ok(())
}

/// [`backup_kind`], remembered by the file's stat: a backup whose stat is
/// the one it had when it was last read (same inode, length and
/// modification time) holds the same bytes and gets the same verdict. A
/// stat is remembered only when it is [`FileStat::settled`], so a write in
/// the same clock tick cannot hide behind it.
fn cached_backup_kind(
    fs: &dyn Fs,
    cache: &mut HashMap<String, (FileStat, BackupKind)>,
    name: &str,
) -> Result<BackupKind> {
    let now = fs.now();
    let stat = match fs.stat(name) {
        Ok(stat) => stat,
        // Not a regular file: backup_kind says what it is.
        Err(e) if e.kind() == crate::error::ErrorKind::InvalidInput => None,
        Err(e) => return Err(e),
    };
    if let (Some(stat), Some((seen, kind))) = (stat, cache.get(name))
        && stat == *seen
    {
        return Ok(*kind);
    }
    // The stat was taken before the read: a write after it changes the next
    // stat, so the verdict is never kept for bytes it did not see.
    let kind = backup_kind(fs, name)?;
    match stat.filter(|s| s.settled(now)) {
        Some(stat) => cache.insert(name.to_string(), (stat, kind)),
        None => cache.remove(name),
    };
    Ok(kind)
}

/// Leaves the task files' stats for the next open's stat-only look at
/// `tasks/` (`crate::reconcile::live`). A cache: a failure is a warning
/// (`crate::derived`), and the stats left belong to the previous
/// `state.json`, so the next open reads every task file.
fn save_task_stats(fs: &dyn Fs, ctx: &CheckpointCtx) {
    if let Some(crc) = ctx.state_crc {
        let saved = ctx.task_files.save(fs, crc);
        ctx.derived
            .record(crate::reconcile::live::STATS_FILE, saved);
    }
}

/// What a backup is to pruning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackupKind {
    /// statewal's own: recovery can start from it.
    Recoverable,
    /// The original server's, version 0: valid and restorable, but recovery
    /// does not start from it.
    Unversioned,
    /// Empty, cut short, not JSON, or does not load.
    Invalid,
}

fn backup_kind(fs: &dyn Fs, name: &str) -> Result<BackupKind> {
    let Some(bytes) = (match fs.read(name) {
        Ok(bytes) => bytes,
        // Not a regular file: damage, never a backup to count.
        Err(e) if e.kind() == crate::error::ErrorKind::InvalidInput => None,
        Err(e) => return Err(e),
    }) else {
        return Ok(BackupKind::Invalid);
    };
    Ok(if layout::parse_state(&bytes).is_ok() {
        BackupKind::Recoverable
    } else if layout::parse_state_any_version(&bytes).is_ok() {
        BackupKind::Unversioned
    } else {
        BackupKind::Invalid
    })
}

/// Removes the covered segments that the retention gate held back at the
/// last checkpoint and has let go since (a replica that shipped them after
/// it, as at a close): the checkpoint's own bound, the gate read anew.
/// Only a replica releases segments after a checkpoint.
#[cfg(feature = "replicate")]
pub(crate) fn remove_released_segments(fs: &dyn Fs, ctx: &CheckpointCtx) -> Result<usize> {
    let Some(gate) = &ctx.retention_gate else {
        return Ok(0);
    };
    remove_segments(fs, ctx.removable_below.min(gate.keep_from()))
}

fn remove_segments(fs: &dyn Fs, below: u64) -> Result<usize> {
    let mut n = 0;
    for name in fs.list(crate::journal::JOURNAL_DIR)? {
        if crate::journal::parse_segment_name(&name).is_some_and(|id| id < below) {
            fs.remove(&fs::join(crate::journal::JOURNAL_DIR, &name))?;
            n += 1;
        }
    }
    if n > 0 {
        // Sync the directory so the removals survive power loss (issue 8,
        // part 3). A segment that comes back usually holds only records
        // state.json covers, but the ones that salvage or point-in-time
        // purge hold damage: back after power loss, a damaged header ("bad
        // segment magic") hides where the segment starts, recovery reads it,
        // and the default open fails.
        fs.sync_dir(crate::journal::JOURNAL_DIR)?;
    }
    Ok(n)
}

/// What a snapshot is written from: a checkpoint's view of the state and
/// the `last_saved` its `state.json` carries.
pub(crate) struct SnapshotOf<'a> {
    pub snap: &'a Snapshot,
    pub last_saved: &'a str,
}

/// Writes `state.snapshot` for `state_json`, the bytes of the durable
/// `state.json` written from `of`. On failure (a warning, `crate::derived`)
/// the old snapshot, if any, stays: it records another `state.json`, so no
/// open uses it, and the next checkpoint writes the snapshot again, even
/// one with nothing new.
fn write_snapshot(fs: &dyn Fs, ctx: &mut CheckpointCtx, of: &SnapshotOf<'_>, state_json: &[u8]) {
    let started = Instant::now();
    let snap = of.snap;
    let contents = crate::snapshot::SnapshotContents {
        store_id: crate::journal::record::parse_id_hex(&ctx.store_id),
        journal_seq: snap.seq,
        state_json,
        last_saved: of.last_saved,
        tasks: snap
            .tasks
            .iter()
            .map(|(id, h)| (id.as_str(), h.version, h.task.json())),
        sessions: snap
            .sessions
            .values()
            .map(|s| serde_json::to_vec(&**s).expect("serializing a JSON value cannot fail")),
    };
    let written = crate::snapshot::write(fs, contents);
    ctx.snapshot_due = written.is_err();
    ctx.derived.record(crate::snapshot::SNAPSHOT_FILE, written);
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        due = ctx.snapshot_due,
        "state.snapshot written"
    );
}

/// Writes `state.snapshot` when it is due and the durable `state.json` is
/// still the one this process wrote or loaded (`ctx.state_crc`) and covers
/// `of` (`ctx.covered_seq`): for a checkpoint that has nothing new to
/// write. Anything else waits for the next checkpoint that writes
/// `state.json`. Best effort, as [`write_snapshot`] is: a failure to read
/// `state.json` here is the snapshot's warning too.
pub(crate) fn refresh_snapshot(fs: &dyn Fs, ctx: &mut CheckpointCtx, of: &SnapshotOf<'_>) {
    if !ctx.snapshot_due || ctx.covered_seq != Some(of.snap.seq) {
        return;
    }
    match fs.read(STATE_FILE) {
        Ok(Some(bytes)) if Some(crc32fast::hash(&bytes)) == ctx.state_crc => {
            write_snapshot(fs, ctx, of, &bytes)
        }
        Ok(_) => tracing::debug!(
            "state.json changed since this process wrote or loaded it; the snapshot waits"
        ),
        Err(e) => {
            let e = e.context("reading state.json to write state.snapshot from it");
            ctx.derived.record(crate::snapshot::SNAPSHOT_FILE, Err(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::op::HeldTask;
    use crate::model::Task;
    use proptest::prelude::*;

    /// `state.json` as it was written before tasks were held as bytes: the
    /// whole state through serde_json's pretty printer.
    #[derive(Serialize)]
    struct Whole<'a> {
        version: &'a str,
        tasks: Vec<Task>,
        sessions: Vec<&'a Value>,
        metrics: Metrics,
        last_saved: &'a str,
        journal_seq: u64,
        store_id: &'a str,
        task_versions: BTreeMap<String, u64>,
    }

    fn snapshot(tasks: &[(Task, u64)], sessions: &[Value]) -> Snapshot {
        Snapshot {
            seq: 42,
            changes: Arc::default(),
            tasks: tasks
                .iter()
                .map(|(t, v)| {
                    let held = Held {
                        task: HeldTask::from_task(t).unwrap(),
                        version: *v,
                    };
                    (crate::held::IdKey::from(t.id()), held)
                })
                .collect(),
            sessions: sessions
                .iter()
                .map(|s| (s["id"].as_str().unwrap().to_string(), Arc::new(s.clone())))
                .collect(),
        }
    }

    fn task(id: &str, extra: Value, status: &str) -> Task {
        let mut t = Task::new(id);
        t.set("status", status).unwrap();
        t.set("x", extra).unwrap();
        t.set("completed_at", "2024-01-01T10:00:02Z").unwrap();
        t.set("started_at", "2024-01-01T10:00:00.5Z").unwrap();
        t.set("created_at", "2024-01-01T09:00:00Z").unwrap();
        t
    }

    fn extra() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z\"\\\\\u{0}-\u{1f}\u{e9}]{0,5}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[a-z]{0,3}", inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// The checkpoint writes `state.json` and each `tasks/<id>.json`
        /// byte for byte as serde_json's pretty printer wrote them from the
        /// parsed tasks, though it never parses a task.
        #[test]
        fn written_bytes_are_serde_json_pretty(
            tasks in prop::collection::btree_map("[a-z]{1,4}", (extra(), 1u64..5, prop::sample::select(vec!["completed", "failed", "pending"])), 0..6),
            sessions in prop::collection::btree_map("[a-z]{1,3}", extra(), 0..3),
        ) {
            let tasks: Vec<(Task, u64)> = tasks
                .into_iter()
                .map(|(id, (x, v, s))| (task(&id, x, s), v))
                .collect();
            let sessions: Vec<Value> = sessions
                .into_iter()
                .map(|(id, x)| serde_json::json!({"id": id, "x": x}))
                .collect();
            let snap = snapshot(&tasks, &sessions);
            let whole = Whole {
                version: STATE_VERSION,
                tasks: tasks.iter().map(|(t, _)| t.clone()).collect(),
                sessions: sessions.iter().collect(),
                metrics: Metrics::of(tasks.iter().map(|(t, _)| t)),
                last_saved: "2026-12-02T07:00:00Z",
                journal_seq: 42,
                store_id: "00112233445566778899aabbccddeeff",
                task_versions: tasks.iter().map(|(t, v)| (t.id().to_string(), *v)).collect(),
            };
            let want = serde_json::to_vec_pretty(&whole).unwrap();
            let got = state_json(&snap, whole.last_saved, whole.store_id);
            prop_assert_eq!(String::from_utf8(got).unwrap(), String::from_utf8(want).unwrap());
            for (t, _) in &tasks {
                let held = snap.tasks.get(t.id()).unwrap();
                prop_assert_eq!(task_file_json(held), to_json(t));
            }
        }
    }
}
