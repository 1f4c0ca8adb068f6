//! [`health`]: is a state directory fit to run a store on? For operators and
//! `statewal health`.
//!
//! **Invariant:** a health check writes nothing and takes no lock, so it can
//! look at a directory another process has open (see `docs/decisions.md`).

use crate::fs::{Fs, RealFs};
use crate::journal::{JOURNAL_DIR, parse_segment_name};
use crate::layout::{self, LOCK_FILE, STATE_FILE};
use serde::Serialize;
use std::path::Path;

/// Less free space than this on the state directory's filesystem is a
/// problem: one default-sized journal (`checkpoint_journal_bytes`) must fit.
pub const HEALTH_FREE_BYTES_MIN: u64 = 64 * 1024 * 1024;

/// What [`health`] found. (`PartialEq` only: [`Health::replica`] holds a
/// lag in fractional seconds.)
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// The state directory, as given.
    pub dir: String,
    /// True when nothing in `problems`.
    pub healthy: bool,
    /// The directory exists.
    pub exists: bool,
    /// This user may create files in it.
    pub writable: bool,
    /// Bytes available to this user on its filesystem (`statvfs`).
    pub free_bytes: Option<u64>,
    /// `last_saved` of `state.json`: when the last checkpoint was written.
    pub last_checkpoint: Option<String>,
    /// `state.backup.*.json` files.
    pub backups: usize,
    /// Backups that parse and pass their checksum, the original server's
    /// unversioned ones that migrate included.
    pub backups_valid: usize,
    /// Backups that do not load and that statewal did not write: the
    /// original server's empty and cut-short leftovers, each named in
    /// `warnings`. They do not make the directory unhealthy.
    pub backups_leftover: usize,
    /// Journal segment files.
    pub journal_segments: usize,
    /// Bytes of the journal segment files (preallocated zeros included).
    pub journal_bytes: u64,
    /// The pid of the process holding `.statewal.lock`, if one does. Known on
    /// Linux (from `/proc/locks`); elsewhere always `None`.
    pub lock_holder_pid: Option<u32>,
    /// Each thing that is wrong, said for a person.
    pub problems: Vec<String>,
    /// Each thing worth knowing that does not make the directory unhealthy,
    /// said for a person: the unusable backups statewal did not write (the
    /// original server leaves empty and cut-short ones behind).
    pub warnings: Vec<String>,
    /// The replica of an open store that ships to a bucket
    /// ([`crate::Store::health`] of a store opened with
    /// `Options::replicate_to`): its lag, what it shipped, its errors. A
    /// replica whose last tick failed, or that went past its disk budget
    /// and has not shipped since, is a problem; an overrun it has
    /// recovered from is a warning. `None` from [`health`], which opens no
    /// store, and for a store that ships nowhere.
    pub replica: Option<crate::metrics::ReplicaMetrics>,
}

/// Checks the state directory `dir` without opening a store: existence and
/// write permission, free space, the last checkpoint, backups, the journal's
/// size and the lock holder. Never fails: what cannot be read is a problem.
/// A backup that does not load and that statewal did not write (the
/// original server's empty and cut-short leftovers) is a warning, not a
/// problem; a damaged backup of statewal's own is a problem.
pub fn health(dir: &Path) -> Health {
    let mut h = Health {
        exists: dir.is_dir(),
        ..Health::nothing_found(dir.display().to_string())
    };
    if !h.exists {
        h.problems
            .push(format!("state directory {} does not exist", h.dir));
        return h;
    }
    h.writable = writable(dir);
    if !h.writable {
        h.problems.push(format!(
            "state directory {} is not writable by this user",
            h.dir
        ));
    }
    match free_bytes(dir) {
        Ok(n) => {
            h.free_bytes = Some(n);
            if n < HEALTH_FREE_BYTES_MIN {
                h.problems.push(format!(
                    "only {n} bytes free on the filesystem of {}, less than the {HEALTH_FREE_BYTES_MIN} a journal needs",
                    h.dir
                ));
            }
        }
        Err(e) => h
            .problems
            .push(format!("cannot read the free space of {}: {e}", h.dir)),
    }
    match RealFs::existing(dir) {
        Ok(fs) => check_files(&fs, &mut h),
        Err(e) => h.problems.push(e.to_string()),
    }
    h.lock_holder_pid = lock_holder(&dir.join(LOCK_FILE));
    h.healthy = h.problems.is_empty();
    h
}

/// `state.json`, backups and the journal.
fn check_files(fs: &dyn Fs, h: &mut Health) {
    if let Ok(Some(marker)) = fs.read_unmapped(layout::CONVERT_MARKER) {
        let key = match layout::check_sealed(&marker) {
            Ok((_, id)) => format!("key id {id:08x}"),
            Err(why) => format!("a marker that is not valid: {why}"),
        };
        h.problems.push(format!(
            "an encrypt or decrypt stopped before it finished ({}, {key}): the \
             store opens only for writing with that key, which finishes it",
            layout::CONVERT_MARKER
        ));
    }
    if let Ok(Some(ring)) = fs.read_unmapped(layout::KEYRING) {
        key_change(fs, &ring, h);
    }
    match layout::sealed_state(fs) {
        Ok(Some(key_id)) => return check_sealed_files(fs, key_id, h),
        Ok(None) => {}
        Err(e) => h.problems.push(e.to_string()),
    }
    // An unversioned state.json (the original server's) that migrates is
    // what an open migrates and loads.
    match layout::read_state_file_any_version(fs, STATE_FILE) {
        Ok(Ok((state, _))) => h.last_checkpoint = Some(state.last_saved),
        // A store that has not checkpointed yet has only its journal.
        Ok(Err(why)) if why == "missing" => {}
        Ok(Err(why)) => h.problems.push(format!("{STATE_FILE} is unusable: {why}")),
        Err(e) => h.problems.push(e.to_string()),
    }
    match layout::list_backups(fs) {
        Ok(names) => {
            for name in names {
                h.backups += 1;
                check_backup(fs, &name, h);
            }
        }
        Err(e) => h.problems.push(e.to_string()),
    }
    for (_, message) in crate::derived::planted_dirs(fs) {
        h.problems.push(message);
    }
    match fs.list(JOURNAL_DIR) {
        Ok(names) => {
            for name in names.iter().filter(|n| parse_segment_name(n).is_some()) {
                h.journal_segments += 1;
                match fs.file_len(&crate::fs::join(JOURNAL_DIR, name)) {
                    Ok(len) => h.journal_bytes += len.unwrap_or(0),
                    Err(e) => h.problems.push(e.to_string()),
                }
            }
        }
        Err(e) => h.problems.push(e.to_string()),
    }
}

/// An encrypted store's state file and backups, without the key: their
/// envelopes and checksums (`docs/encryption.md`), and the journal's size.
/// A key change under way (`statewal rekey`): what is still sealed under
/// the old key, which the store keeps until nothing is. Read from the
/// envelopes' and segment headers' key ids alone: no key is needed.
fn key_change(fs: &dyn Fs, ring: &[u8], h: &mut Health) {
    let new_id = match layout::check_sealed(ring) {
        Ok((_, id)) => id,
        Err(why) => {
            h.problems.push(format!("{}: {why}", layout::KEYRING));
            return;
        }
    };
    let files = layout::sealable_files(fs).map(|files| {
        files
            .iter()
            .filter(|(dir, name)| {
                layout::file_key_id(fs, &crate::fs::join(dir, name))
                    .ok()
                    .flatten()
                    .is_some_and(|id| id != new_id)
            })
            .count()
    });
    match (files, layout::segments_sealed_otherwise(fs, new_id)) {
        (Ok(files), Ok(segments)) => h.warnings.push(format!(
            "a key change to key id {new_id:08x} is under way (statewal rekey): {files} files \
             and {segments} journal segments are still sealed under the old key, which the \
             store keeps in {} (sealed under the new one) until checkpoints have sealed the \
             files again and removed the segments; it opens only with the new key",
            layout::KEYRING
        )),
        (Err(e), _) | (_, Err(e)) => h.problems.push(e.to_string()),
    }
}

fn check_sealed_files(fs: &dyn Fs, key_id: u32, h: &mut Health) {
    h.warnings.push(format!(
        "the store is encrypted (key id {key_id:08x}): health read no file's content, only \
         checksums; the last checkpoint's time needs the key"
    ));
    let mut names = vec![STATE_FILE.to_string()];
    match layout::list_backups(fs) {
        Ok(backups) => {
            h.backups = backups.len();
            names.extend(backups);
        }
        Err(e) => h.problems.push(e.to_string()),
    }
    for (i, name) in names.iter().enumerate() {
        match fs.read(name) {
            Ok(Some(bytes)) => match layout::check_sealed(&bytes) {
                Ok(_) => h.backups_valid += usize::from(i > 0),
                Err(why) => h.problems.push(format!("{name} is unusable: {why}")),
            },
            Ok(None) => {}
            Err(e) => h.problems.push(e.to_string()),
        }
    }
    match fs.list(JOURNAL_DIR) {
        Ok(names) => {
            for name in names.iter().filter(|n| parse_segment_name(n).is_some()) {
                h.journal_segments += 1;
                if let Ok(Some(len)) = fs.file_len(&crate::fs::join(JOURNAL_DIR, name)) {
                    h.journal_bytes += len;
                }
            }
        }
        Err(e) => h.problems.push(e.to_string()),
    }
}

/// One backup: valid, gone since the listing, the original server's
/// leftover (a warning), or a damaged one of statewal's own (a problem).
fn check_backup(fs: &dyn Fs, name: &str, h: &mut Health) {
    let bytes = match fs.read(name) {
        Ok(Some(bytes)) => bytes,
        // Pruned by a running writer's checkpoint since the listing: rotated
        // away, not broken.
        Ok(None) => {
            h.backups -= 1;
            return;
        }
        // Not a regular file (a planted FIFO): damage.
        Err(e) if e.kind() == crate::error::ErrorKind::InvalidInput => {
            h.problems.push(format!("backup {name} is invalid: {e}"));
            return;
        }
        Err(e) => {
            h.problems.push(e.to_string());
            return;
        }
    };
    match layout::parse_state_any_version(&bytes) {
        Ok(_) => h.backups_valid += 1,
        Err(why) if !layout::written_by_statewal(&bytes) => {
            h.backups_leftover += 1;
            h.warnings.push(format!(
                "backup {name} is unusable and statewal did not write it: {why}"
            ));
        }
        Err(why) => h.problems.push(format!("backup {name} is invalid: {why}")),
    }
}

impl Health {
    /// A report on `dir` (a directory, or a database's URL) before anything
    /// was looked at: every count 0, nothing found, not yet healthy. Each
    /// engine's `health` starts from it, so a new field has one default.
    pub(crate) fn nothing_found(dir: String) -> Health {
        Health {
            dir,
            healthy: false,
            exists: false,
            writable: false,
            free_bytes: None,
            last_checkpoint: None,
            backups: 0,
            backups_valid: 0,
            backups_leftover: 0,
            journal_segments: 0,
            journal_bytes: 0,
            lock_holder_pid: None,
            problems: Vec::new(),
            warnings: Vec::new(),
            replica: None,
        }
    }
}

/// What a replica's figures make a problem (shipping failing now; past
/// the disk budget and not yet shipping the new generation) and a warning
/// (budget overruns since open it has recovered from), each naming the
/// replica's URL.
pub(crate) fn replica_findings(r: &crate::metrics::ReplicaMetrics) -> (Vec<String>, Vec<String>) {
    let (mut problems, mut warnings) = (Vec::new(), Vec::new());
    if let Some(e) = r.last_error.as_deref().filter(|_| r.failing) {
        problems.push(format!(
            "replica {} is failing ({} failed ticks since open, {} records not shipped; last success {}): {e}",
            r.url,
            r.errors,
            r.lag_records,
            r.last_success.as_deref().unwrap_or("none since open"),
        ));
    }
    let overrun = format!(
        "replica {} went past its disk budget of {} bytes of unshipped journal {} since open: \
         checkpoints removed segments it had not shipped, so point-in-time restore has a gap",
        r.url,
        r.backlog_bytes_max,
        match r.budget_overruns {
            1 => "once".to_string(),
            n => format!("{n} times"),
        }
    );
    if r.past_budget {
        problems.push(format!(
            "{overrun}; a new generation begins at the next tick that succeeds"
        ));
    } else if r.budget_overruns > 0 {
        warnings.push(overrun);
    }
    (problems, warnings)
}

/// `h` with `problems` added (each unless one already names the same
/// file, as a planted directory's does), and `healthy` again.
pub(crate) fn with_problems(mut h: Health, problems: Vec<String>) -> Health {
    for p in problems {
        let file = p.split_whitespace().next().unwrap_or_default();
        if !h.problems.iter().any(|q| q.contains(file)) {
            h.problems.push(p);
        }
    }
    h.healthy = h.problems.is_empty();
    h
}

/// Whether this user may create files in `dir`, asked of the kernel with
/// `access(2)` rather than by writing a probe file.
fn writable(dir: &Path) -> bool {
    use rustix::fs::Access;
    rustix::fs::access(dir, Access::WRITE_OK | Access::EXEC_OK).is_ok()
}

/// Bytes available to an unprivileged user on `dir`'s filesystem.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The pid holding a `flock` on `lock_file`, read from `/proc/locks` so that
/// checking takes no lock itself (a probe lock could make a concurrent
/// `Store::open` fail). The pid written into the file is not used: it stays
/// behind after its process closes the store.
#[cfg(target_os = "linux")]
fn lock_holder(lock_file: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(lock_file).ok()?;
    let dev = format!(
        "{:02x}:{:02x}:{}",
        rustix::fs::major(meta.dev()),
        rustix::fs::minor(meta.dev()),
        meta.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    // "1: FLOCK  ADVISORY  WRITE 1234 08:02:131 0 EOF"; a waiter's line has
    // "->" after the number and is skipped.
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, "FLOCK", _, _, pid, file, ..] if *file == dev => pid.parse().ok(),
            _ => None,
        }
    })
}

#[cfg(not(target_os = "linux"))]
fn lock_holder(_lock_file: &Path) -> Option<u32> {
    None
}
