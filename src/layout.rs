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
/// Present while `statewal encrypt` or `decrypt` converts the store
/// (`docs/encryption.md`): which way, and the key id. Known to every build,
/// so that one without the `encryption` feature refuses such a store.
pub const CONVERT_MARKER: &str = ".statewal.converting";
/// Present while `statewal rekey` changes the key (`docs/encryption.md`):
/// the old key, sealed under the new one.
pub const KEYRING: &str = ".statewal-keyring";
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

/// Whether `name` (in the store's root) is a backup of `state.json`:
/// `state.backup.<stamp>.json` with a stamp statewal or the original
/// server writes, or `state.pre-migration.backup.json`.
#[cfg(feature = "encryption")]
pub(crate) fn is_backup_name(name: &str) -> bool {
    stamp_in(name).is_some() || name == crate::migrate::PRE_MIGRATION_BACKUP
}

/// The backup files, newest first: ordered by the instant their stamp
/// denotes, whichever of the two formats it is in (see [`backup_stamp`]).
pub fn list_backups(fs: &dyn Fs) -> Result<Vec<String>> {
    // Only names whose stamp statewal (or the original server) writes are
    // backups: a hand-made `state.backup.old.json` would otherwise sort as
    // the newest and, worse, `state.backup.json` has no stamp at all.
    let mut names: Vec<(i128, String)> = fs
        .list("")?
        .into_iter()
        .filter_map(|n| Some((stamp_in(&n).and_then(stamp_micros)?, n)))
        .collect();
    // Newest first; two stamps of the same instant (one in each format)
    // fall back to the name, so the order never depends on the listing.
    names.sort_by(|a, b| b.cmp(a));
    Ok(names.into_iter().map(|(_, n)| n).collect())
}

/// The last instant a backup stamp may denote, in milliseconds since the
/// epoch: 9999-12-31T23:59:59.999Z, the last one the older stamp format (and
/// the `time` crate) can show. A stamp past it is still read, but a new stamp
/// never follows it (see [`backup_stamp`]).
pub const BACKUP_STAMP_MS_MAX: u64 = 253_402_300_799_999;

fn stamp_in(name: &str) -> Option<&str> {
    name.strip_prefix(BACKUP_PREFIX)?.strip_suffix(".json")
}

/// Milliseconds since the epoch, as the original server and statewal now
/// stamp their backups: 1 to 20 ASCII digits.
fn is_millis(stamp: &str) -> bool {
    !stamp.is_empty() && stamp.len() <= 20 && stamp.bytes().all(|b| b.is_ascii_digit())
}

/// The stamp format statewal wrote before it switched to milliseconds.
const OLD_STAMP_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year][month][day]T[hour][minute][second].[subsecond digits:6]Z"
);

/// The instant a stamp denotes, in microseconds since the epoch, or `None`
/// when it is in neither format. Twenty digits of milliseconds fit an
/// `i128` a thousand times over.
fn stamp_micros(stamp: &str) -> Option<i128> {
    if is_millis(stamp) {
        return Some(stamp.parse::<i128>().ok()? * 1000);
    }
    let t = time::PrimitiveDateTime::parse(stamp, OLD_STAMP_FORMAT)
        .ok()?
        .assume_utc();
    Some(t.unix_timestamp_nanos() / 1000)
}

/// The time a backup stamp denotes: milliseconds since the epoch (the
/// original server's and statewal's since issue 9) or statewal's older
/// `YYYYMMDDTHHMMSS.ffffffZ`. `None` for anything else, and for a time past
/// the year 9999.
pub fn backup_stamp_time(stamp: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp_nanos(stamp_micros(stamp)?.checked_mul(1000)?).ok()
}

/// A backup stamp for now, later than `after` (the newest existing stamp):
/// milliseconds since the epoch, `max(now, after + 1 ms)`, so that backups
/// made in a row sort in the order they were made even if the clock steps
/// back. `after` may be in either format; an older-format stamp with a
/// fraction of a millisecond rounds down first, so the new stamp is still
/// strictly later.
///
/// The original server names its backups the same way and keeps "the newest
/// 10 by name"; until the year 2286 every such stamp has 13 digits, so the
/// names of both servers' backups sort by time as text too.
///
/// When `after + 1 ms` would pass [`BACKUP_STAMP_MS_MAX`] (a planted or
/// far-future stamp), the stamp for now is returned instead and a warning
/// is logged: the new backup sorts before that one, which stays "newest"
/// until it is removed by hand. Computed directly, never by stepping.
//
// Regression (issue 8, part 5): a planted backup stamped
// `99991231T235959.999999Z` made `after + 1 µs` overflow, so every
// checkpoint panicked and the auto-save thread died with it.
pub fn backup_stamp(after: Option<&str>) -> String {
    next_stamp_ms(after).to_string()
}

fn next_stamp_ms(after: Option<&str>) -> u64 {
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    // A clock before 1970 stamps 0 rather than a name that is no stamp.
    let now = u64::try_from(now).unwrap_or(0).min(BACKUP_STAMP_MS_MAX);
    let Some(prev) = after.and_then(stamp_micros) else {
        return now;
    };
    let next = prev.div_euclid(1000) + 1;
    if next <= i128::from(now) {
        return now;
    }
    match u64::try_from(next) {
        Ok(next) if next <= BACKUP_STAMP_MS_MAX => next,
        _ => {
            tracing::warn!(
                newest = after.unwrap_or_default(),
                "the newest backup's stamp is past the last one statewal writes; \
                 stamping the new backup with the time now"
            );
            now
        }
    }
}

/// The name for a new backup, given the backups there are (newest first, as
/// [`list_backups`] returns them): [`backup_stamp`] after the newest stamp
/// that a later one can follow, moved on by a millisecond while the name is
/// taken, so a backup is never renamed over another.
///
/// Stamps too late to follow (past [`BACKUP_STAMP_MS_MAX`], planted or the
/// older format's last one) are passed over, with a warning, rather than
/// stamping the new backup with the time now: after a clock stepped back,
/// the time now would sort the backup of the newest `state.json` below
/// statewal's previous one, and recovery's fallback (the newest backup
/// first) would start from the older one, whose segments are gone.
pub fn new_backup_name(existing: &[String]) -> String {
    let followable = |stamp: &&str| {
        stamp_micros(stamp).is_some_and(|us| us.div_euclid(1000) < i128::from(BACKUP_STAMP_MS_MAX))
    };
    let mut stamps = existing.iter().map(|n| backup_stamp_of(n));
    let newest = stamps.clone().find(followable);
    if let Some(late) = stamps.next().filter(|s| !followable(s)) {
        tracing::warn!(
            newest = late,
            "a backup's stamp is past the last one statewal writes; \
             the new backup follows the newest stamp before it"
        );
    }
    let mut ms = next_stamp_ms(newest);
    loop {
        let name = format!("{BACKUP_PREFIX}{ms}.json");
        // Each step passes one taken name, so this ends within
        // `existing.len()` steps.
        if !existing.contains(&name) {
            return name;
        }
        ms += 1;
    }
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

/// Parses a state file of any version, saying what is wrong: a file
/// [`parse_state`] reads, or an unversioned one (the original TypeScript
/// server's, version [`crate::migrate::UNVERSIONED`]) migrated in memory by
/// the same steps `statewal migrate` applies. Returns the state (migrated)
/// and the version the file was written at.
///
/// Backups are read with this (`backups`, `restore`, `verify`, `health`,
/// pruning). Recovery is not: it starts only from a file [`parse_state`]
/// reads, since an unversioned file has no journal position
/// ([`read_state_file_any_version`] is the reader to use to start from one).
pub fn parse_state_any_version(
    bytes: &[u8],
) -> std::result::Result<(PersistedState, String), String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("empty file".into());
    }
    // Parsed with duplicate keys refused, as `migrate` parses: a key twice
    // is ambiguous, and serde_json alone would keep the last silently.
    let value = crate::json::parse(bytes).map_err(|e| json_problem(bytes, &e))?;
    if !value.is_object() || value.get("version").is_some() {
        let state = parse_state(bytes)?;
        let version = state.version.clone();
        return Ok((state, version));
    }
    not_sealed_by_statewal(bytes)?;
    let migrated = crate::migrate::migrate_in_memory(bytes)
        .map_err(|why| format!("unversioned, and it cannot be migrated: {why}"))?
        .expect("a JSON object without \"version\" is version 0, which has a step");
    let state = parse_state(&migrated)
        .map_err(|why| format!("unversioned, and its migration does not load: {why}"))?;
    Ok((state, crate::migrate::UNVERSIONED.to_string()))
}

/// Checks that a state file without `version` does not carry statewal's
/// checksum seal. One that does was written by statewal and its `"version"`
/// key is damaged (a flipped bit): migrating it as the original server's
/// would skip the checksum and take any other damage in it for data. The
/// error says what is wrong (the checksum mismatch, when there is one).
pub(crate) fn not_sealed_by_statewal(bytes: &[u8]) -> std::result::Result<(), String> {
    if !bytes.windows(SEAL_PREFIX.len()).any(|w| w == SEAL_PREFIX) {
        return Ok(());
    }
    check_seal(bytes)?;
    Err("it carries statewal's checksum seal but no \"version\" member: damaged".into())
}

/// What is wrong with bytes that are not JSON, said for a person.
fn json_problem(bytes: &[u8], e: &serde_json::Error) -> String {
    if e.is_eof() {
        format!("truncated JSON at byte {}", bytes.len())
    } else if e.is_syntax() {
        format!("not JSON at byte {}: {e}", json_offset(bytes, e))
    } else {
        e.to_string()
    }
}

/// The byte offset of a JSON error's line and column.
pub(crate) fn json_offset(bytes: &[u8], e: &serde_json::Error) -> u64 {
    let mut line = 1;
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if line == e.line() {
            break;
        }
        if *b == b'\n' {
            line += 1;
            start = i + 1;
        }
    }
    (start + e.column().saturating_sub(1)).min(bytes.len()) as u64
}

/// Whether a state file, however damaged, was written by statewal: it
/// carries the checksum member [`seal_state`] writes, or its first member is
/// `"version"`, as in every file statewal writes. The original server's
/// files start with `"tasks"` and have no checksum, and neither has a file
/// its overlapping saves left empty or cut short. `verify` and `health`
/// tell damage to statewal's own backups (a failure) from the original
/// server's leftovers (a warning) with this.
pub fn written_by_statewal(bytes: &[u8]) -> bool {
    let first_member = bytes
        .strip_prefix(b"{")
        .map(|rest| rest.trim_ascii_start())
        .is_some_and(|rest| rest.starts_with(b"\"version\""));
    first_member || bytes.windows(SEAL_PREFIX.len()).any(|w| w == SEAL_PREFIX)
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    let (sessions, bad) = load_layout_sessions(fs)?;
    skipped.extend(bad);
    Ok((tasks, sessions, skipped))
}

/// The session records of `sessions/*.json`, and the files skipped.
pub(crate) fn load_layout_sessions(fs: &dyn Fs) -> Result<(Vec<Value>, Vec<Skipped>)> {
    let mut skipped = Vec::new();
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
    Ok((sessions, skipped))
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

/// Loads a state file of any version with [`parse_state_any_version`], or
/// says why it cannot be used: the state and the version it was written at.
pub fn read_state_file_any_version(
    fs: &dyn Fs,
    name: &str,
) -> Result<std::result::Result<(PersistedState, String), String>> {
    match fs.read(name) {
        Ok(None) => Ok(Err("missing".into())),
        Ok(Some(bytes)) => Ok(parse_state_any_version(&bytes)),
        // Not a regular file: damage, as in `read_state_file`.
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

/// The first 8 bytes of a file sealed by an encrypted store
/// (`docs/encryption.md`, "Layout files"), known to every build so that
/// one without the `encryption` feature says a store is encrypted rather
/// than corrupt.
pub(crate) const SEALED_MAGIC: [u8; 8] = *b"SWSEALED";

/// The length of a sealed file's envelope header.
pub(crate) const SEALED_HEADER_LEN: usize = 36;
/// The envelope version this build writes and reads.
pub(crate) const SEALED_VERSION: u8 = 1;

/// CRC-32 of a sealed file's first 32 bytes and of its body: what
/// `verify` checks without the key.
pub(crate) fn sealed_checksum(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[..32]);
    h.update(&bytes[SEALED_HEADER_LEN..]);
    h.finalize()
}

/// Checks a sealed file's envelope without the key: its version, cipher
/// code, reserved bytes and checksum. Returns the cipher code and key id.
pub(crate) fn check_sealed(bytes: &[u8]) -> std::result::Result<(u8, u32), String> {
    if bytes.len() < SEALED_HEADER_LEN || bytes[..8] != SEALED_MAGIC {
        return Err(format!(
            "not a sealed file ({} bytes, without the {SEALED_HEADER_LEN}-byte envelope header)",
            bytes.len()
        ));
    }
    if bytes[8] != SEALED_VERSION {
        return Err(format!("unknown envelope version {}", bytes[8]));
    }
    let code = bytes[9];
    if code == 0 || code > crate::journal::record::CIPHER_CODE_MAX {
        return Err(format!("unknown cipher code {code}"));
    }
    if bytes[10..12] != [0, 0] {
        return Err("reserved envelope bytes are not zero".into());
    }
    let stored = u32::from_le_bytes(bytes[32..36].try_into().expect("4 bytes"));
    if stored != sealed_checksum(bytes) {
        return Err("envelope checksum mismatch".into());
    }
    let key_id = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    Ok((code, key_id))
}

/// Whether a store is encrypted, as its files say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sealing {
    /// Nothing says: no state file and no journal segment (a new store).
    New,
    /// Plain.
    Plain,
    /// Encrypted, with this key id and cipher code (the newest file that
    /// says).
    Sealed(u32, u8),
}

/// Whether the store in `fs` is encrypted: sealed if the newest journal
/// segment whose header decodes is, or else `state.json` or a backup
/// whose envelope checks whole (a checkpoint cut between renaming
/// `state.json` to a backup and writing the new one leaves none); plain if
/// that segment, or else one of those files, is plain. Evidence of sealing
/// wins: a plain file planted over a sealed store's `state.json` is damage
/// (recovery passes over it), not a plain store.
pub(crate) fn store_sealing(fs: &dyn Fs) -> Result<Sealing> {
    // The newest segment whose header decodes: its header has a CRC of its
    // own, so its cipher and key id are what was written. A sealed one
    // settles it.
    let mut ids: Vec<u64> = fs
        .list(crate::journal::JOURNAL_DIR)?
        .iter()
        .filter_map(|n| crate::journal::parse_segment_name(n))
        .collect();
    ids.sort_unstable();
    let mut journal = None;
    for id in ids.into_iter().rev() {
        let rel = crate::fs::join(
            crate::journal::JOURNAL_DIR,
            &crate::journal::segment_name(id),
        );
        let head = fs
            .read_at(&rel, 0, crate::journal::record::SEGMENT_HEADER_LEN as u64)?
            .unwrap_or_default();
        if let Ok(h) = crate::journal::record::SegmentHeader::decode(&head) {
            journal = Some(match h.cipher {
                Some(c) => return Ok(Sealing::Sealed(c.key_id, c.code)),
                None => Sealing::Plain,
            });
            break;
        }
    }
    // Then state.json and the backups, newest first: a sealed one counts
    // only if its envelope checks whole (a flipped key id is damage, not
    // another key); one that looks like plain JSON says plain unless a
    // sealed one follows; anything else (cut short, garbage) says nothing.
    let mut files = vec![STATE_FILE.to_string()];
    let mut backups = list_backups(fs)?;
    backups.reverse();
    files.extend(backups);
    let mut plain = false;
    for name in files {
        let head = match fs.read_at(&name, 0, 16) {
            Ok(head) => head.unwrap_or_default(),
            // Not a regular file (a planted FIFO): says nothing here, and
            // recovery treats it as the damage it is.
            Err(e) if e.kind() == ErrorKind::InvalidInput => continue,
            Err(e) => return Err(e),
        };
        if head.len() == 16 && head[..8] == SEALED_MAGIC {
            let whole = fs.read_unmapped(&name)?.unwrap_or_default();
            if let Ok((code, id)) = check_sealed(&whole) {
                return Ok(Sealing::Sealed(id, code));
            }
            continue;
        }
        let text = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&head);
        plain |= text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    }
    Ok(match (journal, plain) {
        (Some(s), _) => s,
        (None, true) => Sealing::Plain,
        (None, false) => Sealing::New,
    })
}

/// The layout files a key seals, as (directory, name): every file of the
/// root and of [`DIRS`] but the journal, the lock, the conversion marker,
/// the keyring and temp files.
pub(crate) fn sealable_files(fs: &dyn Fs) -> Result<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    for dir in std::iter::once("").chain(DIRS) {
        if dir == crate::journal::JOURNAL_DIR {
            continue;
        }
        for name in fs.list(dir)? {
            if ![LOCK_FILE, CONVERT_MARKER, KEYRING].contains(&name.as_str())
                && !name.ends_with(".tmp")
            {
                out.push((dir, name));
            }
        }
    }
    Ok(out)
}

/// The key id in the envelope of layout file `rel`, from its header alone;
/// `None` when it is not sealed (or gone).
pub(crate) fn file_key_id(fs: &dyn Fs, rel: &str) -> Result<Option<u32>> {
    let head = fs.read_at(rel, 0, 16)?.unwrap_or_default();
    Ok((head.len() == 16 && head[..8] == SEALED_MAGIC)
        .then(|| u32::from_le_bytes(head[12..16].try_into().expect("4 bytes"))))
}

/// How many journal segments are sealed under a key other than `id`.
pub(crate) fn segments_sealed_otherwise(fs: &dyn Fs, id: u32) -> Result<usize> {
    let mut n = 0;
    for name in fs.list(crate::journal::JOURNAL_DIR)? {
        if crate::journal::parse_segment_name(&name).is_none() {
            continue;
        }
        let rel = crate::fs::join(crate::journal::JOURNAL_DIR, &name);
        let head = fs
            .read_at(&rel, 0, crate::journal::record::SEGMENT_HEADER_LEN as u64)?
            .unwrap_or_default();
        let other = crate::journal::record::SegmentHeader::decode(&head)
            .ok()
            .and_then(|h| h.cipher)
            .is_some_and(|c| c.key_id != id);
        n += usize::from(other);
    }
    Ok(n)
}

/// The key id the store is sealed with, if it is encrypted
/// ([`store_sealing`]).
pub(crate) fn sealed_state(fs: &dyn Fs) -> Result<Option<u32>> {
    Ok(match store_sealing(fs)? {
        Sealing::Sealed(id, _) => Some(id),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(stamp: &str) -> i128 {
        stamp_micros(stamp).expect("a stamp") / 1000
    }

    fn now_ms() -> i128 {
        time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000
    }

    // Regression (found by review): a stamp far in the future, or a clock
    // stepped back, made `backup_stamp` loop a microsecond at a time, and
    // `state.backup.json` (no stamp) panicked the sort.
    #[test]
    fn stamps_never_loop_and_odd_names_are_not_backups() {
        for far in ["29991231T235959.999999Z", "32503680000000"] {
            let next = backup_stamp(Some(far));
            assert!(is_millis(&next), "{next}");
            assert_eq!(ms(&next), ms(far) + 1, "{far} -> {next}");
        }
        let now = backup_stamp(None);
        assert!(is_millis(&now) && now.len() == 13, "{now}");
        assert!((ms(&now) - now_ms()).abs() < 60_000, "{now}");
        assert_eq!(stamp_in("state.backup.json"), None);
        assert!(stamp_in("state.backup.old.json").is_some_and(|s| stamp_micros(s).is_none()));
        assert!(is_millis("1704103200000"));
        assert!(!is_millis("123456789012345678901"));
    }

    // Regression (issue 8, part 5): the last representable stamp made the
    // next one overflow, a panic in every checkpoint. Each of these is past
    // the last stamp statewal writes: the next one is the time now.
    #[test]
    fn the_last_stamp_there_is_does_not_panic() {
        let last_ms = BACKUP_STAMP_MS_MAX.to_string();
        for last in [
            "99991231T235959.999999Z",
            last_ms.as_str(),
            "99999999999999999999",
        ] {
            let next = backup_stamp(Some(last));
            assert_ne!(next, last);
            assert!((ms(&next) - now_ms()).abs() < 60_000, "{last} -> {next}");
        }
        // One millisecond before the last: the next is the last.
        let before = (BACKUP_STAMP_MS_MAX - 1).to_string();
        assert_eq!(backup_stamp(Some(&before)), last_ms);
    }

    // Guards: a clock stepped back still gives a later stamp, and an
    // older-format stamp with a fraction of a millisecond is passed too.
    #[test]
    fn a_new_stamp_is_later_than_the_newest_in_either_format() {
        let ahead = (now_ms() + 3_600_000).to_string();
        assert_eq!(ms(&backup_stamp(Some(&ahead))), ms(&ahead) + 1);
        let old = "21000101T000000.000500Z";
        let next = backup_stamp(Some(old));
        assert!(stamp_micros(&next).unwrap() > stamp_micros(old).unwrap());
        assert_eq!(ms(&next), ms(old) + 1);
    }

    // Guards: when the newest stamp is the last one there is and the time
    // now is taken, a backup already named with that millisecond is not
    // renamed over.
    #[test]
    fn a_new_backup_name_is_never_taken() {
        let now = now_ms();
        // Whatever millisecond the call lands on, the next few are taken.
        let mut existing = vec![format!("{BACKUP_PREFIX}{BACKUP_STAMP_MS_MAX}.json")];
        existing.extend((now..now + 5000).map(|ms| format!("{BACKUP_PREFIX}{ms}.json")));
        let name = new_backup_name(&existing);
        assert!(!existing.contains(&name), "{name}");
        assert!(stamp_in(&name).is_some_and(is_millis), "{name}");
    }

    #[test]
    fn stamps_of_both_formats_denote_their_instants() {
        let ours = backup_stamp_time("20260101T120000.000001Z").unwrap();
        assert_eq!(ours.unix_timestamp(), 1_767_268_800);
        let ms = backup_stamp_time("1767268800000").unwrap();
        assert_eq!(ms.unix_timestamp(), 1_767_268_800);
        assert!(ours > ms);
        assert!(backup_stamp_time("garbage").is_none());
        assert!(backup_stamp_time("99999999999999999999").is_none());
    }

    const V0: &str = r#"{
  "tasks": [
    {"id": "t1", "description": "d", "status": "running"},
    {"id": "t2", "status": "done"}
  ],
  "sessions": [{"sessionId": "s1"}],
  "metrics": {"total_tasks": 2},
  "last_saved": "2024-01-01T10:00:00.000Z"
}
"#;

    // Guards: an unversioned state file that migrates is a valid version-0
    // file, migrated as `migrate` migrates; what is not is named.
    #[test]
    fn any_version_reads_the_original_servers_files_and_names_what_is_wrong() {
        let (state, version) = parse_state_any_version(V0.as_bytes()).unwrap();
        assert_eq!(version, "0");
        assert_eq!(state.version, crate::STATE_VERSION);
        assert_eq!(state.tasks.len(), 2);
        assert_eq!(state.tasks[0].status(), crate::TaskStatus::InProgress);
        assert_eq!(state.tasks[1].status(), crate::TaskStatus::Completed);
        assert_eq!(state.sessions.len(), 1);
        assert!(
            parse_state(V0.as_bytes()).is_err(),
            "recovery's reader is unchanged"
        );

        let err = |b: &[u8]| parse_state_any_version(b).unwrap_err();
        assert_eq!(err(b""), "empty file");
        assert_eq!(err(b" \n"), "empty file");
        let cut = &V0.as_bytes()[..100];
        assert_eq!(err(cut), "truncated JSON at byte 100");
        assert!(
            err(b"{\"tasks\": ]").starts_with("not JSON at byte 10"),
            "{}",
            err(b"{\"tasks\": ]")
        );
        let odd = V0.replace("\"done\"", "\"exploded\"");
        let why = err(odd.as_bytes());
        assert!(
            why.contains("cannot be migrated") && why.contains("exploded"),
            "{why}"
        );
        let twice = V0.replace("\"d\",", "\"d\", \"description\": \"e\",");
        assert!(
            err(twice.as_bytes()).contains("duplicate key"),
            "{}",
            err(twice.as_bytes())
        );
        assert!(!written_by_statewal(V0.as_bytes()));
        assert!(!written_by_statewal(cut));
        assert!(!written_by_statewal(b""));
    }

    // Guards: statewal's own files read as before, and are told from the
    // original server's even when cut short or bit-flipped.
    #[test]
    fn any_version_reads_statewals_own_as_parse_state_does() {
        let sealed = crate::migrate::migrate_in_memory(V0.as_bytes())
            .unwrap()
            .unwrap();
        let (state, version) = parse_state_any_version(&sealed).unwrap();
        assert_eq!(version, crate::STATE_VERSION);
        assert_eq!(state, parse_state(&sealed).unwrap());
        assert!(written_by_statewal(&sealed));
        assert!(
            written_by_statewal(&sealed[..40]),
            "cut short: version first"
        );
        let mut flipped = sealed.clone();
        let at = flipped.windows(2).position(|w| w == b"t1").unwrap();
        flipped[at + 1] = b'2';
        assert!(
            parse_state_any_version(&flipped)
                .unwrap_err()
                .contains("checksum mismatch")
        );
        assert!(written_by_statewal(&flipped));
    }
}
