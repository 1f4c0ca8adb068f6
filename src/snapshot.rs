//! `state.snapshot`: a binary copy of `state.json`, derived from it, so an
//! open need not parse 50 MB of pretty JSON.
//!
//! Every checkpoint writes the snapshot right after its `state.json` is
//! durable, without a sync (see [`write`]). It records the length and
//! CRC-32 of that exact `state.json`, and recovery uses it only when the
//! `state.json` on disk has both, when its own checksums verify, when its
//! store id agrees with the journal's, and when every task in it passes
//! the check a journal record's task passes ([`validate_task`]). In every other case recovery parses
//! `state.json` as it always did, and says why in
//! [`crate::report::RecoveryReport::snapshot`]. The byte layout is in
//! `docs/format.md`, "The snapshot"; the constants below state it again.
//!
//! **Invariant:** the snapshot is never the only copy of anything. It is
//! written after the `state.json` it derives from is durable, it is read
//! only in place of a `state.json` whose bytes it matches, and a missing or
//! damaged `state.json` is recovered exactly as it would be without a
//! snapshot (backups plus the journal). Nothing but a checkpoint writes it;
//! a read-only open never does.

use crate::error::Result;
use crate::fs::{self, Fs};
use crate::held::HeldTask;
use crate::journal::record::{Id128, RECORD_PAYLOAD_MAX, id_hex};
use crate::state::State;
use serde_json::Value;

/// The snapshot file, beside `state.json` in the store's root.
pub const SNAPSHOT_FILE: &str = "state.snapshot";
/// The first 8 bytes of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"STWALSNP";
/// The snapshot format this code writes and the only one it reads.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Offset of the magic (8 bytes).
pub const SNAP_MAGIC_OFFSET: usize = 0;
/// Offset of the format version (u32 LE).
pub const SNAP_VERSION_OFFSET: usize = SNAP_MAGIC_OFFSET + 8;
/// Offset of the header length (u32 LE), [`SNAPSHOT_HEADER_LEN`].
pub const SNAP_HEADER_LEN_OFFSET: usize = SNAP_VERSION_OFFSET + 4;
/// Offset of the whole file's length in bytes (u64 LE).
pub const SNAP_FILE_LEN_OFFSET: usize = SNAP_HEADER_LEN_OFFSET + 4;
/// Offset of the store id (16 bytes; all zero: none).
pub const SNAP_STORE_ID_OFFSET: usize = SNAP_FILE_LEN_OFFSET + 8;
/// Offset of the journal position the state covers (u64 LE): the
/// `journal_seq` of the `state.json` it derives from.
pub const SNAP_JOURNAL_SEQ_OFFSET: usize = SNAP_STORE_ID_OFFSET + 16;
/// Offset of that `state.json`'s length in bytes (u64 LE).
pub const SNAP_STATE_LEN_OFFSET: usize = SNAP_JOURNAL_SEQ_OFFSET + 8;
/// Offset of that `state.json`'s CRC-32 (u32 LE), over all its bytes.
pub const SNAP_STATE_CRC_OFFSET: usize = SNAP_STATE_LEN_OFFSET + 8;
/// Offset of the number of tasks (u32 LE).
pub const SNAP_TASK_COUNT_OFFSET: usize = SNAP_STATE_CRC_OFFSET + 4;
/// Offset of the number of session records (u32 LE).
pub const SNAP_SESSION_COUNT_OFFSET: usize = SNAP_TASK_COUNT_OFFSET + 4;
/// Offset of the header's CRC-32 (u32 LE), over bytes `0..SNAP_HEADER_CRC_OFFSET`.
pub const SNAP_HEADER_CRC_OFFSET: usize = SNAP_SESSION_COUNT_OFFSET + 4;
/// The header's length; the body starts here.
pub const SNAPSHOT_HEADER_LEN: usize = SNAP_HEADER_CRC_OFFSET + 4;
/// The trailer: the CRC-32 (u32 LE) of every byte before it.
pub const SNAPSHOT_TRAILER_LEN: usize = 4;

/// The longest `last_saved` string a snapshot holds (an RFC 3339 time is
/// about 30 bytes).
pub const LAST_SAVED_MAX: usize = 256;
/// The longest task or session JSON a snapshot holds: a journal record's
/// payload cap, which bounds every task the store accepts.
pub const ENTRY_JSON_MAX: u32 = RECORD_PAYLOAD_MAX;
/// The fewest bytes a task entry takes: id length (u16), a one-byte id,
/// version (u64), JSON length (u32).
const TASK_ENTRY_MIN: u64 = 2 + 1 + 8 + 4;
/// The fewest bytes a session entry takes: its JSON length (u32).
const SESSION_ENTRY_MIN: u64 = 4;

const _: () = assert!(SNAPSHOT_HEADER_LEN == 72);
const _: () = assert!(SNAP_HEADER_CRC_OFFSET + 4 == SNAPSHOT_HEADER_LEN);
const _: () = assert!(crate::id::ID_MAX_BYTES <= u16::MAX as usize);
const _: () = assert!(LAST_SAVED_MAX <= u16::MAX as usize);

/// What a snapshot's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// The whole file's length in bytes.
    pub file_len: u64,
    /// The store the snapshot belongs to; `None` when it holds zeros.
    pub store_id: Option<Id128>,
    /// The journal position the state covers (`state.json`'s `journal_seq`).
    pub journal_seq: u64,
    /// The length of the `state.json` it derives from.
    pub state_len: u64,
    /// The CRC-32 of the `state.json` it derives from.
    pub state_crc: u32,
    /// How many tasks follow.
    pub task_count: u32,
    /// How many session records follow the tasks.
    pub session_count: u32,
}

/// One task in a snapshot, borrowed from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotTask<'a> {
    /// The task's id, as its JSON's `"id"` holds it.
    pub id: &'a str,
    /// The task's version (at least 1).
    pub version: u64,
    /// The task as compact JSON ([`crate::Task::to_json`]).
    pub json: &'a [u8],
}

/// A decoded snapshot, borrowed from its bytes. Decoding checks the layout
/// and both checksums, not the JSON (`validate_task` does that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedSnapshot<'a> {
    /// The header.
    pub header: SnapshotHeader,
    /// `state.json`'s `last_saved`.
    pub last_saved: &'a str,
    /// Every task, ids strictly increasing in byte order.
    pub tasks: Vec<SnapshotTask<'a>>,
    /// Every session record, as compact JSON.
    pub sessions: Vec<&'a [u8]>,
}

/// What goes into a snapshot, for [`encode`].
#[allow(missing_debug_implementations)] // Internal; reached only through `__internal`.
pub struct SnapshotContents<'a, T, S> {
    /// The store id (`None`: zeros).
    pub store_id: Option<Id128>,
    /// The `journal_seq` of the `state.json` it derives from.
    pub journal_seq: u64,
    /// That `state.json`'s bytes; only their length and CRC-32 are kept.
    pub state_json: &'a [u8],
    /// `state.json`'s `last_saved`.
    pub last_saved: &'a str,
    /// Each task as (id, version, compact JSON), ids strictly increasing.
    pub tasks: T,
    /// Each session record as compact JSON, in `state.json`'s order.
    pub sessions: S,
}

/// Encodes a snapshot. Panics (a bug, never input) when the tasks are not
/// in strictly increasing id order or a field is over its cap: the store
/// holds nothing of the kind.
pub fn encode<'t, T, S, J>(c: SnapshotContents<'_, T, S>) -> Vec<u8>
where
    T: ExactSizeIterator<Item = (&'t str, u64, J)>,
    S: ExactSizeIterator<Item = Vec<u8>>,
    J: AsRef<[u8]>,
{
    let mut out = Vec::with_capacity(c.state_json.len());
    out.extend_from_slice(&[0; SNAPSHOT_HEADER_LEN]);
    let task_count = u32::try_from(c.tasks.len()).expect("fewer than 2^32 tasks");
    let session_count = u32::try_from(c.sessions.len()).expect("fewer than 2^32 sessions");
    assert!(c.last_saved.len() <= LAST_SAVED_MAX, "last_saved is a time");
    out.extend_from_slice(&(c.last_saved.len() as u16).to_le_bytes());
    out.extend_from_slice(c.last_saved.as_bytes());
    let mut prev: Option<&str> = None;
    for (id, version, json) in c.tasks {
        let json = json.as_ref();
        assert!(
            prev.is_none_or(|p| p < id),
            "tasks in strictly increasing id order"
        );
        assert!(
            !id.is_empty() && id.len() <= crate::id::ID_MAX_BYTES,
            "a valid id"
        );
        assert!(version >= 1, "versions start at 1");
        prev = Some(id);
        out.extend_from_slice(&(id.len() as u16).to_le_bytes());
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&json_len(json).to_le_bytes());
        out.extend_from_slice(json);
    }
    for json in c.sessions {
        out.extend_from_slice(&json_len(&json).to_le_bytes());
        out.extend_from_slice(&json);
    }
    let file_len = (out.len() + SNAPSHOT_TRAILER_LEN) as u64;
    let h = &mut out[..SNAPSHOT_HEADER_LEN];
    h[SNAP_MAGIC_OFFSET..SNAP_MAGIC_OFFSET + 8].copy_from_slice(&SNAPSHOT_MAGIC);
    put_u32(h, SNAP_VERSION_OFFSET, SNAPSHOT_VERSION);
    put_u32(h, SNAP_HEADER_LEN_OFFSET, SNAPSHOT_HEADER_LEN as u32);
    put_u64(h, SNAP_FILE_LEN_OFFSET, file_len);
    h[SNAP_STORE_ID_OFFSET..SNAP_STORE_ID_OFFSET + 16]
        .copy_from_slice(&c.store_id.unwrap_or([0; 16]));
    put_u64(h, SNAP_JOURNAL_SEQ_OFFSET, c.journal_seq);
    put_u64(h, SNAP_STATE_LEN_OFFSET, c.state_json.len() as u64);
    put_u32(h, SNAP_STATE_CRC_OFFSET, crc32fast::hash(c.state_json));
    put_u32(h, SNAP_TASK_COUNT_OFFSET, task_count);
    put_u32(h, SNAP_SESSION_COUNT_OFFSET, session_count);
    let header_crc = crc32fast::hash(&h[..SNAP_HEADER_CRC_OFFSET]);
    put_u32(h, SNAP_HEADER_CRC_OFFSET, header_crc);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len() as u64, file_len);
    debug_assert!(decode(&out).is_ok(), "what encode writes, decode reads");
    out
}

fn json_len(json: &[u8]) -> u32 {
    u32::try_from(json.len())
        .ok()
        .filter(|&n| n <= ENTRY_JSON_MAX)
        .expect("the store holds no JSON over the record payload cap")
}

/// Reads a snapshot's header, checking its magic, version, length field and
/// CRC; the rest of the file is not looked at.
pub fn decode_header(bytes: &[u8]) -> std::result::Result<SnapshotHeader, String> {
    if bytes.len() < SNAPSHOT_HEADER_LEN {
        return Err(format!(
            "cut short: {} bytes, less than its {SNAPSHOT_HEADER_LEN}-byte header",
            bytes.len()
        ));
    }
    if bytes[SNAP_MAGIC_OFFSET..SNAP_MAGIC_OFFSET + 8] != SNAPSHOT_MAGIC {
        return Err("bad magic: not a statewal snapshot".into());
    }
    let version = get_u32(bytes, SNAP_VERSION_OFFSET);
    if version != SNAPSHOT_VERSION {
        return Err(format!("unsupported snapshot format version {version}"));
    }
    let stored = get_u32(bytes, SNAP_HEADER_CRC_OFFSET);
    let actual = crc32fast::hash(&bytes[..SNAP_HEADER_CRC_OFFSET]);
    if stored != actual {
        return Err(format!(
            "header checksum mismatch: it says {stored:08x}, the header hashes to {actual:08x}"
        ));
    }
    let header_len = get_u32(bytes, SNAP_HEADER_LEN_OFFSET);
    if header_len as usize != SNAPSHOT_HEADER_LEN {
        return Err(format!(
            "header length {header_len}, not {SNAPSHOT_HEADER_LEN}"
        ));
    }
    let id: Id128 = bytes[SNAP_STORE_ID_OFFSET..SNAP_STORE_ID_OFFSET + 16]
        .try_into()
        .expect("16 bytes");
    Ok(SnapshotHeader {
        file_len: get_u64(bytes, SNAP_FILE_LEN_OFFSET),
        store_id: (id != [0; 16]).then_some(id),
        journal_seq: get_u64(bytes, SNAP_JOURNAL_SEQ_OFFSET),
        state_len: get_u64(bytes, SNAP_STATE_LEN_OFFSET),
        state_crc: get_u32(bytes, SNAP_STATE_CRC_OFFSET),
        task_count: get_u32(bytes, SNAP_TASK_COUNT_OFFSET),
        session_count: get_u32(bytes, SNAP_SESSION_COUNT_OFFSET),
    })
}

/// Decodes a whole snapshot: the header, the file's length and CRC, then
/// every field, each length checked against its cap and against the bytes
/// left before anything is allocated or sliced. A crafted file with a good
/// CRC therefore reads no byte out of range and allocates at most in
/// proportion to its own length.
pub fn decode(bytes: &[u8]) -> std::result::Result<DecodedSnapshot<'_>, String> {
    let header = decode_header(bytes)?;
    if header.file_len != bytes.len() as u64 {
        return Err(format!(
            "{} bytes, but its header says {}{}",
            bytes.len(),
            header.file_len,
            if (bytes.len() as u64) < header.file_len {
                " (cut short)"
            } else {
                ""
            }
        ));
    }
    if bytes.len() < SNAPSHOT_HEADER_LEN + SNAPSHOT_TRAILER_LEN {
        return Err("cut short: no room for its checksum".into());
    }
    let body_end = bytes.len() - SNAPSHOT_TRAILER_LEN;
    let stored = get_u32(bytes, body_end);
    let actual = crc32fast::hash(&bytes[..body_end]);
    if stored != actual {
        return Err(format!(
            "checksum mismatch: it says {stored:08x}, its contents hash to {actual:08x}"
        ));
    }
    let mut r = Reader {
        bytes: &bytes[..body_end],
        at: SNAPSHOT_HEADER_LEN,
    };
    let last_saved_len = usize::from(r.u16("last_saved length")?);
    if last_saved_len > LAST_SAVED_MAX {
        return Err(format!(
            "last_saved is {last_saved_len} bytes, more than {LAST_SAVED_MAX}"
        ));
    }
    let last_saved = r.str(last_saved_len, "last_saved")?;
    // The counts come from the file: check them against what is left before
    // reserving room for them.
    let least = u64::from(header.task_count) * TASK_ENTRY_MIN
        + u64::from(header.session_count) * SESSION_ENTRY_MIN;
    if least > r.left() as u64 {
        return Err(format!(
            "{} tasks and {} sessions cannot fit in the {} bytes left",
            header.task_count,
            header.session_count,
            r.left()
        ));
    }
    let mut tasks = Vec::with_capacity(header.task_count as usize);
    for i in 0..header.task_count {
        let id_len = usize::from(r.u16("task id length")?);
        if id_len == 0 || id_len > crate::id::ID_MAX_BYTES {
            return Err(format!("task {i}: id length {id_len}"));
        }
        let id = r.str(id_len, "task id")?;
        if let Some(prev) = tasks.last().map(|t: &SnapshotTask<'_>| t.id)
            && prev >= id
        {
            return Err(format!("task {id:?} does not follow {prev:?} in id order"));
        }
        let version = r.u64("task version")?;
        if version == 0 {
            return Err(format!("task {id:?}: version 0"));
        }
        // The context is formatted only on error: 100k tasks, 100k strings.
        let json = r.json().map_err(|e| format!("task {id:?}: {e}"))?;
        tasks.push(SnapshotTask { id, version, json });
    }
    let mut sessions = Vec::with_capacity(header.session_count as usize);
    for i in 0..header.session_count {
        sessions.push(r.json().map_err(|e| format!("session {i}: {e}"))?);
    }
    if r.left() != 0 {
        return Err(format!(
            "{} bytes after the last session, before the checksum",
            r.left()
        ));
    }
    Ok(DecodedSnapshot {
        header,
        last_saved,
        tasks,
        sessions,
    })
}

/// A bounded cursor over a snapshot's body.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize, what: &str) -> std::result::Result<&'a [u8], String> {
        if n > self.left() {
            return Err(format!(
                "{what} at byte {} runs {} bytes past the end",
                self.at,
                n - self.left()
            ));
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn u16(&mut self, what: &str) -> std::result::Result<u16, String> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes(b.try_into().expect("2 bytes")))
    }

    fn u32(&mut self, what: &str) -> std::result::Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    fn u64(&mut self, what: &str) -> std::result::Result<u64, String> {
        let b = self.take(8, what)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn str(&mut self, n: usize, what: &str) -> std::result::Result<&'a str, String> {
        let b = self.take(n, what)?;
        std::str::from_utf8(b).map_err(|_| format!("{what} is not UTF-8"))
    }

    /// A length-prefixed JSON text (not parsed here).
    fn json(&mut self) -> std::result::Result<&'a [u8], String> {
        let len = self.u32("JSON length")?;
        if len > ENTRY_JSON_MAX {
            return Err(format!("JSON length {len} over the cap"));
        }
        self.take(len as usize, "JSON")
    }
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Checks one task of a snapshot as replay checks a journal record's task
/// (through the same door, `HeldTask::from_json`: `Task::parse`'s verdict,
/// then the id's), and that its JSON's `"id"` is the id the entry names;
/// the task is then held as those bytes, with `version`. The one place the
/// snapshot's task check lives.
pub(crate) fn validate_task(
    id: &str,
    version: u64,
    json: &[u8],
) -> std::result::Result<(HeldTask, u64), String> {
    State::base_task(id, version, json).map_err(|e| e.to_string())
}

/// Checks one session record of a snapshot as replay checks a journal
/// record's session: JSON with a valid string `"id"`.
fn validate_session(json: &[u8]) -> std::result::Result<Value, String> {
    let v: Value = serde_json::from_slice(json).map_err(|e| format!("session JSON: {e}"))?;
    match crate::journal::op::session_id(&v) {
        Some(id) if crate::id::validate_id(id).is_ok() => Ok(v),
        _ => Err("a session record without a valid \"id\"".into()),
    }
}

/// Whether the open's starting state came from `state.snapshot`, and if not,
/// why (see `docs/recovery.md`, "The snapshot").
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SnapshotUse {
    /// Not looked at: the open did not start from a `state.json` it could
    /// read (missing, or not a regular file).
    #[default]
    NotConsidered,
    /// The starting state was read from `state.snapshot`, which matched
    /// `state.json` byte for byte (length and CRC-32).
    Used,
    /// No `state.snapshot`: `state.json` was parsed.
    Missing,
    /// `state.snapshot` derives from another `state.json` (one written by
    /// hand, by the original server, or before a crash between the two
    /// writes): `state.json` was parsed.
    Stale(String),
    /// `state.snapshot` is damaged, or holds a task or session that fails the
    /// journal's checks: `state.json` was parsed.
    Damaged(String),
    /// `state.snapshot` carries another store's id: `state.json` was parsed.
    Foreign(String),
}

impl SnapshotUse {
    /// A snake_case word for the outcome, for logs and JSON.
    pub fn name(&self) -> &'static str {
        match self {
            SnapshotUse::NotConsidered => "not_considered",
            SnapshotUse::Used => "used",
            SnapshotUse::Missing => "missing",
            SnapshotUse::Stale(_) => "stale",
            SnapshotUse::Damaged(_) => "damaged",
            SnapshotUse::Foreign(_) => "foreign",
        }
    }

    /// Whether a checkpoint should write the snapshot again even when
    /// nothing changed: it is missing, stale or damaged.
    pub(crate) fn wants_rebuild(&self) -> bool {
        !matches!(self, SnapshotUse::Used | SnapshotUse::NotConsidered)
    }
}

/// A starting state read from a snapshot.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// Each task, held, with its version, in id order.
    pub tasks: Vec<(HeldTask, u64)>,
    pub sessions: Vec<Value>,
    pub journal_seq: u64,
    pub last_saved: String,
    pub store_id: Option<Id128>,
}

/// Reads `state.snapshot` in place of `state_json` (the bytes of the
/// `state.json` on disk, whose CRC-32 is `state_crc`), when it matches them
/// and `journal_id` (the id the journal's segments agree on). `Ok(Err(why))`
/// when it cannot stand in for them.
pub(crate) fn load(
    fs: &dyn Fs,
    state_json: &[u8],
    state_crc: u32,
    journal_id: Option<Id128>,
) -> Result<std::result::Result<Loaded, SnapshotUse>> {
    // Checked before reading: a planted sparse file of many gigabytes must
    // not fail or stall the open. A snapshot holds the same tasks as
    // `state.json` in compact form plus a few bytes per entry, so it is
    // never twice its size (found by a hostile review).
    let most = (state_json.len() as u64)
        .saturating_mul(2)
        .saturating_add(1 << 20);
    match fs.file_len(SNAPSHOT_FILE) {
        Ok(Some(len)) if len > most => {
            return Ok(Err(SnapshotUse::Damaged(format!(
                "{len} bytes, more than a snapshot of a {}-byte state.json can hold",
                state_json.len()
            ))));
        }
        _ => {}
    }
    let bytes = match fs.read(SNAPSHOT_FILE) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(Err(SnapshotUse::Missing)),
        // Not a regular file: damage, never a reason to fail the open.
        Err(e) if e.kind() == crate::error::ErrorKind::InvalidInput => {
            return Ok(Err(SnapshotUse::Damaged(e.to_string())));
        }
        Err(e) => return Err(e),
    };
    Ok(from_bytes(&bytes, state_json, state_crc, journal_id))
}

fn from_bytes(
    bytes: &[u8],
    state_json: &[u8],
    state_crc: u32,
    journal_id: Option<Id128>,
) -> std::result::Result<Loaded, SnapshotUse> {
    let header = decode_header(bytes).map_err(SnapshotUse::Damaged)?;
    if (header.state_len, header.state_crc) != (state_json.len() as u64, state_crc) {
        return Err(SnapshotUse::Stale(format!(
            "it derives from a state.json of {} bytes with CRC {:08x}; the one on disk has {} bytes and CRC {state_crc:08x}",
            header.state_len,
            header.state_crc,
            state_json.len()
        )));
    }
    let snap = decode(bytes).map_err(SnapshotUse::Damaged)?;
    if let (Some(theirs), Some(ours)) = (header.store_id, journal_id)
        && theirs != ours
    {
        return Err(SnapshotUse::Foreign(format!(
            "belongs to another store (id {}; the journal's segments carry {})",
            id_hex(&theirs),
            id_hex(&ours)
        )));
    }
    let tasks = validate_tasks(&snap.tasks).map_err(SnapshotUse::Damaged)?;
    let sessions = snap
        .sessions
        .iter()
        .map(|j| validate_session(j))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(SnapshotUse::Damaged)?;
    Ok(Loaded {
        tasks,
        sessions,
        journal_seq: header.journal_seq,
        last_saved: snap.last_saved.to_string(),
        store_id: header.store_id,
    })
}

/// Below this many tasks, validation runs on the calling thread.
const VALIDATE_CHUNK_MIN: usize = 4096;

/// Validates every task, on all cores (up to 8) when there are many.
fn validate_tasks(tasks: &[SnapshotTask<'_>]) -> std::result::Result<Vec<(HeldTask, u64)>, String> {
    let one = |part: &[SnapshotTask<'_>]| {
        part.iter()
            .map(|t| validate_task(t.id, t.version, t.json))
            .collect::<std::result::Result<Vec<_>, _>>()
    };
    if tasks.len() <= VALIDATE_CHUNK_MIN {
        return one(tasks);
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = tasks.len().div_ceil(threads).max(VALIDATE_CHUNK_MIN);
    let parts = std::thread::scope(|scope| {
        let handles: Vec<_> = tasks
            .chunks(chunk)
            .map(|part| scope.spawn(move || one(part)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("validating does not panic"))
            .collect::<Vec<_>>()
    });
    let mut out = Vec::with_capacity(tasks.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

/// Writes `state.snapshot` for the `state.json` whose bytes are
/// `state_json`: a temp file renamed over the old snapshot, with no data
/// or directory sync. Call it only once that `state.json` is durable.
///
/// No sync, on purpose (`docs/decisions.md`, "the snapshot is written
/// without a sync"): power loss may leave the old snapshot (bound to the
/// old `state.json`'s CRC: stale), none, or this one empty or torn (its
/// checksums fail: damaged), and [`load`] uses none of those; the open
/// parses `state.json` instead. Losing it costs one slower open, never a
/// write; the two syncs cost 100 to 150 ms per checkpoint of 100k tasks.
pub(crate) fn write<'t, T, S, J>(fs: &dyn Fs, contents: SnapshotContents<'_, T, S>) -> Result<()>
where
    T: ExactSizeIterator<Item = (&'t str, u64, J)>,
    S: ExactSizeIterator<Item = Vec<u8>>,
    J: AsRef<[u8]>,
{
    let bytes = encode(contents);
    fs::write_replace_unsynced(fs, "", SNAPSHOT_FILE, &bytes)
}

/// What `verify` finds of `state.snapshot`: `None` when there is none (or
/// a directory is there, which `verify` reports apart),
/// `Some(None)` when the next open would use it, `Some(Some(why))` when it
/// would not. A snapshot that is stale, damaged or another store's is a
/// warning, never damage: it is derived, the next open parses `state.json`
/// instead, and the next checkpoint writes it again. Reads only.
pub(crate) fn verify_note(
    fs: &dyn Fs,
    journal_id: Option<Id128>,
) -> Result<Option<Option<String>>> {
    match fs.file_len(SNAPSHOT_FILE) {
        Ok(None) => return Ok(None),
        Ok(Some(_)) => {}
        // A directory: no checkpoint can write the snapshot there, and
        // `crate::derived::planted_dirs` says what to do about it.
        Err(_) if fs.is_dir(SNAPSHOT_FILE)? => return Ok(None),
        // Not a regular file: `load` names it.
        Err(e) if e.kind() == crate::error::ErrorKind::InvalidInput => {}
        Err(e) => return Err(e),
    }
    let state_json = match fs.read(crate::layout::STATE_FILE) {
        Ok(Some(bytes)) => bytes,
        Ok(None) | Err(_) => {
            return Ok(Some(Some(
                "there is no readable state.json for it to stand in for: not used".into(),
            )));
        }
    };
    let crc = crc32fast::hash(&state_json);
    let why = match load(fs, &state_json, crc, journal_id)? {
        Ok(_) | Err(SnapshotUse::Missing) => return Ok(Some(None)),
        Err(SnapshotUse::Stale(why)) => format!("stale: {why}"),
        Err(SnapshotUse::Damaged(why)) => format!("damaged: {why}"),
        Err(SnapshotUse::Foreign(why)) => format!("foreign: {why}"),
        Err(other) => other.name().to_string(),
    };
    Ok(Some(Some(format!(
        "{why}; it is derived from state.json, which the next open parses instead, and the \
         next checkpoint writes it again (not damage: nothing is lost)"
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: Id128 = [7; 16];
    const STATE_JSON: &[u8] = b"{\n  \"version\": \"1.0.0\"\n}";

    fn tasks() -> Vec<(String, u64, Vec<u8>)> {
        ["a", "b-2", "c\u{e9}"]
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let json = format!(r#"{{"id":"{id}","status":"pending","n":{i},"logs":[]}}"#);
                (id.to_string(), i as u64 + 1, json.into_bytes())
            })
            .collect()
    }

    fn sample_with(tasks: &[(String, u64, Vec<u8>)]) -> Vec<u8> {
        encode(SnapshotContents {
            store_id: Some(STORE),
            journal_seq: 42,
            state_json: STATE_JSON,
            last_saved: "2026-12-02T07:00:00.123456789Z",
            tasks: tasks
                .iter()
                .map(|(id, v, j)| (id.as_str(), *v, j.as_slice())),
            sessions: vec![br#"{"id":"s1","x":[1,2]}"#.to_vec()].into_iter(),
        })
    }

    fn sample() -> Vec<u8> {
        sample_with(&tasks())
    }

    /// Writes both checksums again after a test changed `bytes`, as a
    /// crafted file would carry them.
    fn reseal(bytes: &mut [u8]) {
        let crc = crc32fast::hash(&bytes[..SNAP_HEADER_CRC_OFFSET]);
        put_u32(bytes, SNAP_HEADER_CRC_OFFSET, crc);
        let end = bytes.len() - SNAPSHOT_TRAILER_LEN;
        let crc = crc32fast::hash(&bytes[..end]);
        put_u32(bytes, end, crc);
    }

    fn load_bytes(bytes: &[u8]) -> std::result::Result<Loaded, SnapshotUse> {
        from_bytes(bytes, STATE_JSON, crc32fast::hash(STATE_JSON), Some(STORE))
    }

    /// Where the first task's entry starts: after the header and last_saved.
    fn first_task_at(bytes: &[u8]) -> usize {
        SNAPSHOT_HEADER_LEN
            + 2
            + usize::from(u16::from_le_bytes([
                bytes[SNAPSHOT_HEADER_LEN],
                bytes[SNAPSHOT_HEADER_LEN + 1],
            ]))
    }

    // Guards: what encode writes, decode reads back field for field, and
    // load turns into the tasks, versions and sessions it was given.
    #[test]
    fn round_trip() {
        let bytes = sample();
        let d = decode(&bytes).expect("decodes");
        assert_eq!(d.header.file_len, bytes.len() as u64);
        assert_eq!(d.header.store_id, Some(STORE));
        assert_eq!(d.header.journal_seq, 42);
        assert_eq!(d.header.state_len, STATE_JSON.len() as u64);
        assert_eq!(d.header.state_crc, crc32fast::hash(STATE_JSON));
        assert_eq!((d.header.task_count, d.header.session_count), (3, 1));
        assert_eq!(d.last_saved, "2026-12-02T07:00:00.123456789Z");
        let want = tasks();
        assert_eq!(d.tasks.len(), want.len());
        for (t, (id, v, j)) in d.tasks.iter().zip(&want) {
            assert_eq!((t.id, t.version, t.json), (id.as_str(), *v, j.as_slice()));
        }
        assert_eq!(d.sessions, vec![&br#"{"id":"s1","x":[1,2]}"#[..]]);
        let loaded = load_bytes(&bytes).expect("loads");
        assert_eq!(loaded.tasks.len(), 3);
        assert_eq!(loaded.tasks[1].0.json(), want[1].2);
        assert_eq!((loaded.tasks[2].0.id(), loaded.tasks[2].1), ("c\u{e9}", 3));
        assert_eq!(loaded.sessions[0]["x"][1], 2);
        assert_eq!((loaded.journal_seq, loaded.store_id), (42, Some(STORE)));
        // An empty state round-trips too.
        let empty = sample_with(&[]);
        assert_eq!(decode(&empty).expect("decodes").tasks, vec![]);
    }

    // Guards: a snapshot cut short anywhere (a torn write, a full disk) is
    // refused, never read as a smaller state.
    #[test]
    fn every_truncation_is_refused() {
        let bytes = sample();
        for n in 0..bytes.len() {
            assert!(
                decode(&bytes[..n]).is_err(),
                "cut at {n} of {}",
                bytes.len()
            );
            assert!(
                matches!(load_bytes(&bytes[..n]), Err(SnapshotUse::Damaged(_))),
                "cut at {n}"
            );
        }
        // Bytes added after the end are refused as well.
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }

    // Guards: every single flipped bit is caught (by the header CRC, the
    // whole file's CRC, or the magic and version before them).
    #[test]
    fn every_bit_flip_is_refused() {
        let bytes = sample();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(decode(&b).is_err(), "bit {bit} of byte {i}");
                assert!(load_bytes(&b).is_err(), "bit {bit} of byte {i}");
            }
        }
    }

    // Guards: counts and lengths come from the file, and a crafted file
    // carries good checksums. Each is checked against what is left before
    // anything is reserved or sliced: without the check, a count of 2^32 - 1
    // tasks reserves over 100 GB and aborts the process.
    #[test]
    fn crafted_lengths_are_refused_without_allocating() {
        let bytes = sample();
        let craft = |at: usize, value: &[u8]| {
            let mut b = bytes.clone();
            b[at..at + value.len()].copy_from_slice(value);
            reseal(&mut b);
            decode(&b).map(|_| ()).unwrap_err()
        };
        let why = craft(SNAP_TASK_COUNT_OFFSET, &u32::MAX.to_le_bytes());
        assert!(why.contains("cannot fit"), "{why}");
        let why = craft(SNAP_SESSION_COUNT_OFFSET, &u32::MAX.to_le_bytes());
        assert!(why.contains("cannot fit"), "{why}");
        let why = craft(SNAPSHOT_HEADER_LEN, &u16::MAX.to_le_bytes());
        assert!(why.contains("last_saved"), "{why}");
        let task = first_task_at(&bytes);
        let why = craft(task, &u16::MAX.to_le_bytes());
        assert!(why.contains("id length"), "{why}");
        let why = craft(task, &0u16.to_le_bytes());
        assert!(why.contains("id length"), "{why}");
        let json_len_at = task + 2 + 1 + 8; // id "a", version
        let why = craft(json_len_at, &u32::MAX.to_le_bytes());
        assert!(why.contains("over the cap"), "{why}");
        let why = craft(json_len_at, &ENTRY_JSON_MAX.to_le_bytes());
        assert!(why.contains("past the end"), "{why}");
        let why = craft(json_len_at, &1u32.to_le_bytes());
        assert!(!why.is_empty());
        let why = craft(SNAP_FILE_LEN_OFFSET, &u64::MAX.to_le_bytes());
        assert!(why.contains("header says"), "{why}");
        let why = craft(SNAP_HEADER_LEN_OFFSET, &73u32.to_le_bytes());
        assert!(why.contains("header length"), "{why}");
        let why = craft(SNAP_VERSION_OFFSET, &2u32.to_le_bytes());
        assert!(why.contains("version 2"), "{why}");
    }

    // Guards: ids in order with no repeats, and versions from 1: the map
    // the loader builds cannot take two entries for one id.
    #[test]
    fn order_and_versions_are_checked() {
        let mut b = sample();
        // The first entry's id "a" becomes "c": "b-2" then follows it out
        // of order.
        let at = first_task_at(&b) + 2;
        b[at] = b'c';
        reseal(&mut b);
        assert!(decode(&b).unwrap_err().contains("id order"));
        let mut b = sample();
        let version_at = first_task_at(&b) + 2 + 1;
        b[version_at..version_at + 8].copy_from_slice(&0u64.to_le_bytes());
        reseal(&mut b);
        assert!(decode(&b).unwrap_err().contains("version 0"));
    }

    fn with_task_json(json: &str) -> Vec<u8> {
        let mut t = tasks();
        t[0].2 = json.as_bytes().to_vec();
        sample_with(&t)
    }

    // Guards: a crafted snapshot with good checksums is still not trusted
    // to hold valid tasks: each one passes the journal's task check, and
    // its JSON's id is the id of its entry.
    #[test]
    fn tasks_are_validated_as_the_journal_validates_them() {
        for (json, why) in [
            (r#"{"id":"a","status":"exploded"}"#, "status"),
            (r#"{"id":"a","n":1,"n":2}"#, "duplicate"),
            (r#"{"id":"a""#, "EOF"),
            (r#"["a"]"#, "not an object"),
            (r#"{"id":"a","logs":[1]}"#, "logs"),
            (r#"{"id":"zz"}"#, "\"zz\""),
            (r#"{"status":"pending"}"#, "id"),
        ] {
            match load_bytes(&with_task_json(json)) {
                Err(SnapshotUse::Damaged(msg)) => assert!(msg.contains(why), "{json}: {msg}"),
                Err(other) => panic!("{json}: {other:?}"),
                Ok(_) => panic!("{json} was accepted"),
            }
        }
        let mut b = sample();
        let at = b.windows(4).position(|w| w == b"\"s1\"").unwrap();
        b[at + 1] = b'.'; // ".1": an id that may not name a file
        reseal(&mut b);
        assert!(matches!(load_bytes(&b), Err(SnapshotUse::Damaged(_))));
        assert!(load_bytes(&with_task_json(r#"{"id":"a"}"#)).is_ok());
    }

    // Guards: a snapshot of another state.json is stale, one of another
    // store is foreign; neither is used.
    #[test]
    fn stale_and_foreign_are_told_apart() {
        let bytes = sample();
        let other = b"{\n  \"version\": \"1.0.1\"\n}";
        let crc = crc32fast::hash(other);
        assert!(matches!(
            from_bytes(&bytes, other, crc, Some(STORE)),
            Err(SnapshotUse::Stale(_))
        ));
        assert!(matches!(
            from_bytes(
                &bytes,
                STATE_JSON,
                crc32fast::hash(STATE_JSON),
                Some([8; 16])
            ),
            Err(SnapshotUse::Foreign(_))
        ));
        // A journal with no id (version 1, or none yet) takes the snapshot's.
        assert!(from_bytes(&bytes, STATE_JSON, crc32fast::hash(STATE_JSON), None).is_ok());
    }

    // Guards: a large snapshot validates on several threads and gives the
    // same tasks, in order, as on one.
    #[test]
    fn many_tasks_validate_in_order() {
        let many: Vec<_> = (0..VALIDATE_CHUNK_MIN * 2 + 7)
            .map(|i| {
                let id = format!("t{i:06}");
                let json = format!(r#"{{"id":"{id}"}}"#).into_bytes();
                (id, 1, json)
            })
            .collect();
        let bytes = sample_with(&many);
        let loaded = load_bytes(&bytes).expect("loads");
        assert!(
            loaded
                .tasks
                .iter()
                .map(|t| t.0.id())
                .eq(many.iter().map(|t| t.0.as_str()))
        );
        let mut bad = many.clone();
        let last = bad.len() - 1;
        bad[last].2 = b"{\"id\":1}".to_vec();
        assert!(load_bytes(&sample_with(&bad)).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        // Guards: whatever bytes a damaged or crafted snapshot holds,
        // decoding returns (never panics, never reads out of range).
        #[test]
        fn decode_never_panics(
            flips in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 0..8),
            cut in 0usize..4096,
            resealed in proptest::prelude::any::<bool>(),
        ) {
            let mut b = sample();
            for (at, x) in flips {
                let n = b.len();
                b[at % n] ^= x;
            }
            if resealed && b.len() >= SNAPSHOT_HEADER_LEN + SNAPSHOT_TRAILER_LEN {
                reseal(&mut b);
            }
            b.truncate(cut.max(b.len() / 2));
            let _ = decode(&b);
            let _ = load_bytes(&b);
        }
    }
}
