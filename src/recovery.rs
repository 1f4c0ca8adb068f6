//! Startup recovery: load the last checkpoint, then replay the journal past it.
//!
//! **Invariant:** recovery writes nothing but the truncation of a torn tail,
//! and a read-only recovery ([`recover_read_only`]) writes nothing at all.
//! (The store may checkpoint right after it returns, when it found damage
//! that a checkpoint should leave behind.)

use crate::error::{Error, ErrorKind, Result};
use crate::fs::{self, Fs, OpenMode};
use crate::journal::op::Op;
use crate::journal::reader::{Piece, SegmentScan, mark_durable, scan_segment};
use crate::journal::record::{Id128, SegmentHeader, id_hex, parse_id_hex};
use crate::journal::{
    JOURNAL_DIR, RecordSeal, Sealing, new_store_id, parse_segment_name, segment_name,
};
use crate::layout::{self, STATE_FILE, Skipped};
use crate::options::RecoveryMode;
use crate::snapshot::SnapshotUse;
use crate::state::State;
use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the starting state of a recovery came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadedFrom {
    /// Nothing was there: a new, empty store.
    Empty,
    /// `state.json`.
    StateFile,
    /// A backup, because `state.json` was missing or corrupt.
    Backup(String),
    /// `tasks/*.json` and `sessions/*.json`, because no state file was usable.
    LayoutFiles,
    /// The original server's state file (named) merged with `tasks/`, taken
    /// at the journal's first record because no checkpoint statewal sealed
    /// survives: that server had loaded statewal's last checkpoint, so its
    /// file holds what the removed segments held (see `crate::reconcile`).
    Foreign(String),
}

impl LoadedFrom {
    /// A snake_case word for where the state came from, for logs and JSON:
    /// `empty`, `state_file`, `backup`, `layout_files` or `foreign`.
    pub fn name(&self) -> &'static str {
        match self {
            LoadedFrom::Empty => "empty",
            LoadedFrom::StateFile => "state_file",
            LoadedFrom::Backup(_) => "backup",
            LoadedFrom::LayoutFiles => "layout_files",
            LoadedFrom::Foreign(_) => "foreign",
        }
    }

    /// The file a backup or foreign start was read from, if it names one.
    pub fn file(&self) -> Option<&str> {
        match self {
            LoadedFrom::Backup(f) | LoadedFrom::Foreign(f) => Some(f),
            _ => None,
        }
    }
}

impl std::fmt::Display for LoadedFrom {
    /// For a person: "state.json", "an empty state", "the backup
    /// state.backup.1.json", ...
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadedFrom::Empty => f.write_str("an empty state"),
            LoadedFrom::StateFile => f.write_str("state.json"),
            LoadedFrom::Backup(name) => write!(f, "the backup {name}"),
            LoadedFrom::LayoutFiles => f.write_str("tasks/ and sessions/"),
            LoadedFrom::Foreign(name) => {
                write!(f, "the original server's {name} with tasks/")
            }
        }
    }
}

/// Damage found in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The file, relative to the state directory.
    pub file: String,
    /// The byte offset where the damage starts.
    pub offset: u64,
    /// How many bytes are damaged.
    pub len: u64,
    /// What is wrong.
    pub reason: String,
    /// True for a torn tail: a damaged span that no later record proves had
    /// been synced (see `journal::reader::mark_durable`), the shape an
    /// interrupted write leaves. Gaps and undecodable records are never torn.
    pub torn_tail: bool,
}

/// What a recovery did, returned by [`crate::Store::open`] and logged.
#[derive(Debug, Clone)]
pub struct RecoveryReport {
    /// The recovery mode used.
    pub mode: RecoveryMode,
    /// Where the starting state came from.
    pub loaded_from: LoadedFrom,
    /// The journal position the starting state covers.
    pub checkpoint_seq: u64,
    /// Tasks in the starting state.
    pub tasks_loaded: usize,
    /// Journal records applied on top of it.
    pub records_replayed: u64,
    /// Journal segments read.
    pub segments_read: usize,
    /// Bytes cut off torn tails.
    pub bytes_truncated: u64,
    /// Damage found in the journal (whether tolerated or skipped).
    pub damage: Vec<Damage>,
    /// Layout files that could not be used, with why.
    pub skipped_files: Vec<Skipped>,
    /// The last sequence number after recovery.
    pub last_seq: u64,
    /// Each decision taken about a task at this open: the merge of a
    /// state file the original server wrote over statewal's history, and
    /// out-of-band edits of `tasks/<id>.json` (imported or set aside). A
    /// read-only open lists what an owner's open would do and applies it
    /// in memory only.
    pub decisions: Vec<crate::reconcile::Decision>,
    /// The merge of a state file the original server wrote over statewal's
    /// history, if this open ran (or, read-only, would run) one.
    pub merged: Option<crate::reconcile::Merged>,
    /// How long recovery took.
    pub duration: Duration,
    /// How much of it went to reading and replaying the journal.
    pub journal_duration: Duration,
    /// Whether the starting state was read from `state.snapshot` (the
    /// binary copy of `state.json`) and, if not, why.
    pub snapshot: SnapshotUse,
    /// How much of it went to loading the starting state (`state.snapshot`,
    /// `state.json`, a backup or the layout files), before the journal.
    pub base_duration: Duration,
}

/// The result of recovery, consumed by the store.
pub(crate) struct Recovered {
    pub state: State,
    pub report: RecoveryReport,
    /// The next segment id to create.
    pub next_segment_id: u64,
    /// Segments with smaller ids are covered by the loaded checkpoint.
    pub first_needed_segment: u64,
    /// Segments with smaller ids may all go at the first checkpoint: set
    /// when point-in-time or salvage left damage behind in them.
    pub purge_segments_below: u64,
    /// The CRC of `state.json` as loaded, if it was.
    pub state_crc: Option<u32>,
    /// The position `state.json` covers, if it was loaded and nothing was
    /// replayed or dropped past it.
    pub covered_seq: Option<u64>,
    /// Recovery left damage or a fallback behind that a checkpoint should replace.
    pub checkpoint_now: bool,
    /// The store's identity: the loaded checkpoint's, else the first
    /// version-2 segment's, else a new one.
    pub store_id: Id128,
    /// The tasks of the loaded checkpoint, before replay: a task file equal
    /// to one of them is a copy statewal wrote, not an edit.
    pub base_tasks: crate::state::TaskMap,
    /// The session records of the loaded checkpoint, before replay.
    pub base_sessions: std::collections::BTreeMap<String, std::sync::Arc<serde_json::Value>>,
    /// A [`crate::reconcile::fingerprint`] of every task put replayed, for
    /// the same question about task files a checkpoint wrote before it was
    /// interrupted.
    pub replayed_puts: crate::reconcile::Prints,
    /// The tasks a replayed record deleted or archived: a checkpoint
    /// interrupted after it removed such a task's file leaves the file
    /// missing, and a later put brings the task back without it; that is
    /// not someone else deleting the file.
    pub replayed_removals: HashSet<String>,
}

/// How recovery chooses its starting state among the state files; the
/// open decides it ([`crate::reconcile::survey`]).
#[derive(Default)]
pub(crate) struct BaseRule {
    /// statewal has history here (journal segments or a sealed state file):
    /// a state file without a `version` is never the base, since it does not
    /// know the journal; without history one is migrated in memory.
    pub history: bool,
    /// The foreign view (its name, tasks, sessions), taken as the base at
    /// the journal's first record when no sealed checkpoint loads.
    pub foreign: Option<(String, Vec<crate::model::Task>, Vec<serde_json::Value>)>,
    /// What opens the records of encrypted segments, when the store is
    /// given a key. Without one, an encrypted segment is a key error.
    pub sealing: Option<Arc<dyn Sealing>>,
}

/// Recovers the state in `fs`, as the process that holds its lock.
pub(crate) fn recover(fs: &dyn Fs, mode: RecoveryMode, rule: &BaseRule) -> Result<Recovered> {
    match recover_once(fs, mode, Access::Owner, rule)? {
        Ok(r) => Ok(r),
        Err(_) => unreachable!("only a reader sees a writer's changes"),
    }
}

/// How many times a read-only open loads again when a writer beside it
/// changed the journal while it was being read.
const READER_ATTEMPTS: u32 = 8;

/// Recovers the state in `fs` for a read-only open, beside a writer that may
/// be appending and checkpointing: writes nothing, and treats a torn tail as
/// the end of what it reads. A writer's checkpoint may remove segments after
/// `state.json` was read, and an append may be half copied when a segment is
/// read; either shows as a gap, a vanished segment or damage, and the whole
/// load starts again (up to [`READER_ATTEMPTS`] times; the last attempt
/// reports what it finds, as an owner would).
pub(crate) fn recover_read_only(
    fs: &dyn Fs,
    mode: RecoveryMode,
    rule: &BaseRule,
) -> Result<Recovered> {
    let mut attempt = 1;
    loop {
        let retry = attempt < READER_ATTEMPTS;
        let outcome = recover_once(fs, mode, Access::Reader { retry }, rule);
        let why = match outcome {
            Ok(Ok(r)) => return Ok(r),
            Ok(Err(race)) => race,
            // A record half copied while a writer appends it reads as damage.
            Err(e) if retry && matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) => {
                e.to_string()
            }
            Err(e) => return Err(e),
        };
        tracing::debug!(attempt, %why, "the journal changed while it was read; loading again");
        std::thread::sleep(Duration::from_millis(u64::from(attempt)));
        attempt += 1;
    }
}

/// Who recovers: the lock holder, or a reader that must write nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Owner,
    /// `retry`: a sign of a writer's change ends this attempt (`Ok(Err)`).
    Reader {
        retry: bool,
    },
}

/// One recovery; `Ok(Err(why))` when a reader saw a writer change the
/// journal under it and should load again.
fn recover_once(
    fs: &dyn Fs,
    mode: RecoveryMode,
    access: Access,
    rule: &BaseRule,
) -> Result<std::result::Result<Recovered, String>> {
    let reader_retries = access == Access::Reader { retry: true };
    let started = Instant::now();
    let journal_started = Instant::now();
    let ids: Vec<u64> = fs
        .list(JOURNAL_DIR)?
        .iter()
        .filter_map(|n| parse_segment_name(n))
        .collect();
    let next_segment_id = ids.last().map_or(1, |id| id.saturating_add(1));
    let mut segs = Vec::with_capacity(ids.len());
    for &id in &ids {
        let name = fs::join(JOURNAL_DIR, &segment_name(id));
        let Some(bytes) = fs.read(&name)? else {
            // A writer's checkpoint removed it after the listing.
            if reader_retries {
                return Ok(Err(format!("{name} vanished")));
            }
            return Err(Error::new(ErrorKind::Io, format!("{name} vanished")));
        };
        segs.push((id, name, bytes));
    }
    let headers: Vec<Option<SegmentHeader>> = segs
        .iter()
        .map(|(_, _, b)| SegmentHeader::decode(b).ok())
        .collect();
    let journal_id = agreed_store_id(headers.iter().flatten());
    let journal_start = headers.iter().flatten().next().map(|h| h.first_seq);
    // The checkpoint's load is not the journal's: timed apart.
    let journal_read = journal_started.elapsed();
    let base_started = Instant::now();
    let (mut state, loaded_from, ckpt_seq, state_crc, skipped, ckpt_id, snapshot) =
        load_checkpoint(fs, journal_id, rule, journal_start)?;
    let base_duration = base_started.elapsed();
    let replay_started = Instant::now();
    let base_tasks = state.tasks.clone();
    let base_sessions = state.sessions.clone();
    // The segments are listed before the state file (its store id is judged
    // against theirs); a writer's checkpoint in between may have rotated or
    // removed segments, so a reader lists again and retries on a change.
    if reader_retries {
        let again: Vec<u64> = fs
            .list(JOURNAL_DIR)?
            .iter()
            .filter_map(|n| parse_segment_name(n))
            .collect();
        if again != ids {
            return Ok(Err(
                "the journal changed while the state file was read".into()
            ));
        }
    }
    let store_id = ckpt_id
        .or_else(|| headers.iter().flatten().find_map(|h| h.store_id))
        .unwrap_or_else(new_store_id);
    let tasks_loaded = state.tasks.len();
    let mut report = RecoveryReport {
        mode,
        loaded_from,
        checkpoint_seq: ckpt_seq.unwrap_or(0),
        tasks_loaded,
        records_replayed: 0,
        segments_read: 0,
        bytes_truncated: 0,
        damage: Vec::new(),
        skipped_files: skipped,
        last_seq: 0,
        duration: Duration::ZERO,
        journal_duration: Duration::ZERO,
        decisions: Vec::new(),
        merged: None,
        snapshot,
        base_duration,
    };
    // Every checkpoint position is a rotation boundary: the segment holding
    // the records after it starts exactly there. So a segment that starts at
    // or before the position holds only records the checkpoint covers, and is
    // not read at all (damage in it cannot fail this open).
    // A segment that starts exactly at the position is where reading begins;
    // one that starts before it is covered, and so is every segment before
    // it, whatever its header says (so bit rot in a header kept only for
    // retention cannot fail the open).
    let first = match ckpt_seq {
        Some(s) => {
            let start = |b: &[u8]| SegmentHeader::decode(b).ok().map(|h| h.first_seq);
            match segs
                .iter()
                .rposition(|(_, _, b)| start(b).is_some_and(|f| f <= s.saturating_add(1)))
            {
                Some(k) if start(&segs[k].2) == Some(s.saturating_add(1)) => k,
                Some(k) => k + 1,
                None => 0,
            }
        }
        None => 0,
    };
    if reader_retries && let Some(why) = reader_gap(&segs, first, ckpt_seq) {
        return Ok(Err(why));
    }
    let first_needed_segment = segs.get(first).map_or(next_segment_id, |s| s.0);
    let mut replay = Replay {
        mode,
        floor: ckpt_seq.unwrap_or(0),
        expected: ckpt_seq.map(|s| s.saturating_add(1)),
        max_seq: ckpt_seq.unwrap_or(0),
        stop: false,
        left_damage: false,
        store_id,
        replayed_puts: Default::default(),
        replayed_removals: HashSet::new(),
    };
    let mut scans: Vec<_> = segs[first..]
        .iter()
        .map(|(_, _, b)| scan_segment(b))
        .collect();
    mark_durable(&mut scans, last_segment_same_boot(fs, &headers));
    let floor = ckpt_seq.unwrap_or(0);
    let names: Vec<&str> = segs[first..].iter().map(|(_, n, _)| n.as_str()).collect();
    let seals = segment_seals(&names, &scans, rule.sealing.as_deref(), floor)?;
    let (mut decoded, ranges) = decode_all(&scans, &seals, floor);
    // A replay that puts more than a few tasks for each one loaded applies
    // them to a hash index, ordered once at the end (`State::begin_replay`);
    // a few records over a large checkpoint are cheaper applied in place.
    let records = decoded.len();
    let indexed = records > 0 && records >= state.tasks.len() / REPLAY_INDEX_TASKS_PER_RECORD;
    if indexed {
        state.begin_replay(records);
    }
    // Torn tails are cut only once the whole replay succeeded (a failed open
    // changes nothing) and after the memory maps of the segments are gone.
    let mut truncations = Vec::new();
    for (i, ((id, name, bytes), scan)) in segs[first..].iter().zip(scans).enumerate() {
        report.segments_read += 1;
        let len = bytes.len() as u64;
        let ops = &mut decoded[ranges[i].clone()];
        let seg = Segment {
            id: *id,
            name,
            file_len: len,
            scan,
            ops,
        };
        let truncate_at = replay.segment(seg, &mut state, &mut report)?;
        // A reader cuts nothing: the torn tail is where its reading ends.
        if let (Some(at), Access::Owner) = (truncate_at, access) {
            truncations.push((name.clone(), at));
            report.bytes_truncated += len - at;
        }
        if replay.stop {
            // Point-in-time drops the records after the damage, but they used
            // their sequence numbers: take the highest, so that new records
            // never reuse one (as the comment below promises).
            for (_, _, rest) in &segs[first + i..] {
                for piece in scan_segment(rest).pieces {
                    if let Piece::Record { record, .. } = piece {
                        replay.max_seq = replay.max_seq.max(record.seq);
                    }
                }
            }
            break;
        }
    }
    drop(segs);
    for (name, at) in truncations {
        let mut file = fs.open(&name, OpenMode::Existing)?;
        file.set_len(at)?;
        // Sync the truncation so a later power loss cannot bring the torn
        // bytes back behind records written after them.
        file.sync_data()?;
    }
    // Sync every segment replayed: after a kill -9 its last records may sit
    // only in the page cache, and the new segment this process writes would
    // vouch for them (a later segment proves earlier ones durable) while
    // power loss could still take them.
    // (A reader syncs nothing: it writes no segment that would vouch.)
    if access == Access::Owner {
        let replayed: Vec<String> = ids
            .iter()
            .skip(first)
            .map(|id| fs::join(JOURNAL_DIR, &segment_name(*id)))
            .collect();
        fs.sync_files(&replayed)?;
    }
    match indexed {
        true => state.end_replay(),
        false => state.compact(),
    }
    // Records dropped by point-in-time or salvage still used their sequence
    // numbers; the state takes the highest so numbers only grow.
    state.applied_seq = state.applied_seq.max(replay.max_seq);
    report.last_seq = state.applied_seq;
    report.duration = started.elapsed();
    report.journal_duration = journal_read + replay_started.elapsed();
    // Recovery's temporary buffers (the parsed checkpoint, decoded records)
    // are freed by now; hand the pages back so a large open does not leave
    // its peak as the process's resident size for good.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; it has no
    // preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
    let covered_seq = (report.loaded_from == LoadedFrom::StateFile
        && state.applied_seq == report.checkpoint_seq
        && !replay.left_damage)
        .then_some(report.checkpoint_seq);
    // Damage that point-in-time or salvage dropped stays in its segment; were
    // the segment kept, the next open would meet the damage again and refuse.
    // The checkpoint the store writes at once covers everything recovered, so
    // let it remove every segment read here (and not skip itself as idle).
    let purge_segments_below = if replay.left_damage {
        next_segment_id
    } else {
        0
    };
    let fell_back = matches!(
        report.loaded_from,
        LoadedFrom::Backup(_) | LoadedFrom::LayoutFiles | LoadedFrom::Foreign(_)
    );
    Ok(Ok(Recovered {
        state,
        report,
        next_segment_id,
        first_needed_segment,
        purge_segments_below,
        state_crc,
        covered_seq,
        checkpoint_now: replay.left_damage || fell_back,
        store_id,
        base_tasks,
        base_sessions,
        replayed_puts: replay.replayed_puts,
        replayed_removals: replay.replayed_removals,
    }))
}

/// A reader's sign that a checkpoint removed segments after it read the
/// state file: the first segment to replay starts past the record after the
/// checkpoint. (An owner reports the same gap as damage.)
fn reader_gap(
    segs: &[(u64, String, fs::Bytes)],
    first: usize,
    ckpt_seq: Option<u64>,
) -> Option<String> {
    let (_, name, bytes) = segs.get(first)?;
    let start = crate::journal::record::SegmentHeader::decode(bytes)
        .ok()?
        .first_seq;
    let expected = ckpt_seq.unwrap_or(0).saturating_add(1);
    (start > expected).then(|| {
        format!(
            "{name} starts at record {start}, the state file covers up to {}",
            expected - 1
        )
    })
}

/// The store id every segment that carries one agrees on, if they do.
pub(crate) fn agreed_store_id<'h>(
    headers: impl Iterator<Item = &'h SegmentHeader>,
) -> Option<Id128> {
    let mut ids = headers.filter_map(|h| h.store_id);
    let first = ids.next()?;
    ids.all(|id| id == first).then_some(first)
}

/// Whether the last segment was created in the machine's current boot (both
/// boot ids known and equal): then the same-boot rule judges its damage
/// (docs/recovery.md, "Same boot, any policy").
pub(crate) fn last_segment_same_boot(fs: &dyn Fs, headers: &[Option<SegmentHeader>]) -> bool {
    let last = headers.last().copied().flatten().and_then(|h| h.boot_id);
    matches!((last, fs.boot_id()), (Some(a), Some(b)) if a == b)
}

/// Why a segment belongs to another store, if it does.
pub(crate) fn foreign_segment(
    name: &str,
    header: &SegmentHeader,
    store_id: &Id128,
) -> Option<String> {
    let theirs = header.store_id.filter(|id| id != store_id)?;
    Some(format!(
        "{name} belongs to another store (id {}; this store is {})",
        id_hex(&theirs),
        id_hex(store_id)
    ))
}

/// Decodes the payload of every record past `floor`, on all cores: parsing
/// JSON is most of replay's cost, and it is independent per record. The
/// result holds one entry per such record, in journal order, and the range
/// of them each scan holds (the decoded ops are written in place by the
/// threads and taken in place by the replay: ~100 bytes a record, never
/// copied).
fn decode_all(
    scans: &[SegmentScan<'_>],
    seals: &[Option<Arc<dyn RecordSeal>>],
    floor: u64,
) -> (Vec<Option<DecodeResult>>, Vec<Range<usize>>) {
    let mut jobs: Vec<Job<'_>> = Vec::new();
    let mut ranges = Vec::with_capacity(scans.len());
    for (scan, seal) in scans.iter().zip(seals) {
        let start = jobs.len();
        for piece in &scan.pieces {
            if let Piece::Record { record, .. } = piece
                && record.seq > floor
            {
                jobs.push(Job {
                    kind: record.kind,
                    seq: record.seq,
                    payload: record.payload,
                    seal: seal.as_deref(),
                });
            }
        }
        ranges.push(start..jobs.len());
    }
    let mut out: Vec<Option<DecodeResult>> = Vec::with_capacity(jobs.len());
    out.resize_with(jobs.len(), || None);
    // A small replay decodes inline: asking for the core count reads cgroup
    // files, and a thread costs more than decoding a chunk's worth of records.
    if jobs.len() <= DECODE_CHUNK_MIN {
        decode_into(&jobs, &mut out);
    } else {
        decode_parallel(&jobs, &mut out);
    }
    (out, ranges)
}

/// One record to decode: its payload, opened first when its segment is
/// encrypted.
struct Job<'a> {
    kind: u8,
    seq: u64,
    payload: &'a [u8],
    seal: Option<&'a dyn RecordSeal>,
}

/// What opens each scanned segment's records: `None` for a plain one. An
/// encrypted segment without a key, or under a key not given, is a key
/// error; a plain segment holding records past the checkpoint, in a store
/// opened with a key, is refused (records planted in clear, or a plain
/// store opened with a key: `statewal encrypt` converts one).
fn segment_seals(
    names: &[&str],
    scans: &[SegmentScan<'_>],
    sealing: Option<&dyn Sealing>,
    floor: u64,
) -> Result<Vec<Option<Arc<dyn RecordSeal>>>> {
    let mut seals = Vec::with_capacity(scans.len());
    for (name, scan) in names.iter().zip(scans) {
        let Ok(header) = &scan.header else {
            seals.push(None);
            continue;
        };
        let past_floor = || {
            scan.pieces
                .iter()
                .any(|p| matches!(p, Piece::Record { record, .. } if record.seq > floor))
        };
        seals.push(match (&header.cipher, sealing) {
            (Some(c), Some(s)) => Some(s.segment(header.id, c, name)?),
            (Some(c), None) if past_floor() => {
                return Err(Error::new(
                    ErrorKind::Key,
                    format!(
                        "{name} is encrypted with key id {:08x}: a key is needed to read it \
                         (--key-file, --key-command or STATEWAL_KEY)",
                        c.key_id
                    ),
                ));
            }
            (None, Some(_)) if past_floor() => {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "{name} is not encrypted, in a store opened with a key: its records \
                         were not written by this encrypted store (a plain store is \
                         converted by `statewal encrypt`)"
                    ),
                ));
            }
            _ => None,
        });
    }
    Ok(seals)
}

type DecodeResult = Result<Decoded, String>;

fn decode_into(jobs: &[Job<'_>], out: &mut [Option<DecodeResult>]) {
    for (job, slot) in jobs.iter().zip(out) {
        *slot = Some(match job.seal {
            None => decode(job.kind, job.payload),
            Some(seal) => match seal.open(job.seq, job.kind, job.payload) {
                Some(plain) => decode(job.kind, &plain),
                None => Err(
                    "its sealed payload does not authenticate: it was altered after \
                             it was written"
                        .into(),
                ),
            },
        });
    }
}

/// A record's op, with the fingerprint of the task a lone put puts
/// (computed where the record is decoded, on all cores, rather than in the
/// serial apply).
struct Decoded {
    op: Op,
    print: Option<u64>,
}

fn decode(kind: u8, payload: &[u8]) -> Result<Decoded, String> {
    let op = Op::decode(kind, payload)?;
    // A lone put's payload is the task's compact JSON as its writer sent
    // it; a batch's puts are fingerprinted when applied (batches are few).
    let print = match &op {
        Op::PutTask(t) => Some(crate::reconcile::fingerprint(t.id(), payload)),
        _ => None,
    };
    Ok(Decoded { op, print })
}

/// A replay uses the hash index when it has at least one record for this
/// many tasks loaded: the index costs a hash insert per task loaded and
/// saves about three ordered-map searches (some 50 key comparisons at
/// 100,000 tasks) per record.
const REPLAY_INDEX_TASKS_PER_RECORD: usize = 16;

/// Below this many records, decoding runs on the calling thread; above it,
/// each thread takes at least this many.
const DECODE_CHUNK_MIN: usize = 1024;

/// Decodes `jobs` on all cores (up to 8) into `out`, each thread a
/// contiguous part.
fn decode_parallel(jobs: &[Job<'_>], out: &mut [Option<DecodeResult>]) {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = jobs.len().div_ceil(threads).max(DECODE_CHUNK_MIN);
    std::thread::scope(|scope| {
        for (part, slots) in jobs.chunks(chunk).zip(out.chunks_mut(chunk)) {
            scope.spawn(move || decode_into(part, slots));
        }
    });
}

/// One segment's input to [`Replay::segment`].
struct Segment<'s, 'b> {
    id: u64,
    name: &'s str,
    file_len: u64,
    scan: SegmentScan<'b>,
    /// Decoded payloads, one per record past the checkpoint, in order
    /// (see [`decode_all`]), taken as they are applied.
    ops: &'s mut [Option<DecodeResult>],
}

struct Replay {
    mode: RecoveryMode,
    /// Records up to this one are in the checkpoint.
    floor: u64,
    /// The sequence number the next replayed record must carry, if known.
    expected: Option<u64>,
    max_seq: u64,
    stop: bool,
    left_damage: bool,
    /// Segments carrying another id are foreign.
    store_id: Id128,
    /// Fingerprints of the task puts applied (see [`Recovered::replayed_puts`]).
    replayed_puts: crate::reconcile::Prints,
    /// See [`Recovered::replayed_removals`].
    replayed_removals: HashSet<String>,
}

impl Replay {
    /// Replays one segment; returns where to truncate a torn tail.
    fn segment(
        &mut self,
        seg: Segment<'_, '_>,
        state: &mut State,
        report: &mut RecoveryReport,
    ) -> Result<Option<u64>> {
        let Segment {
            id,
            name,
            file_len,
            scan,
            ops,
        } = seg;
        // For each piece, how many valid records follow it in this segment.
        let mut records_after = vec![0u64; scan.pieces.len()];
        let mut n = 0;
        for (i, piece) in scan.pieces.iter().enumerate().rev() {
            records_after[i] = n;
            n += u64::from(matches!(piece, Piece::Record { .. }));
        }
        let header = match scan.header {
            Ok(h) if let Some(why) = foreign_segment(name, &h, &self.store_id) => {
                return self
                    .damage(name, 0, file_len, &why, false, report)
                    .map(|_| None);
            }
            Ok(h) if h.id == id => h,
            Ok(h) => {
                return self
                    .damage(
                        name,
                        0,
                        file_len,
                        &format!("header names segment {}", h.id),
                        false,
                        report,
                    )
                    .map(|_| None);
            }
            Err(why) => {
                return self
                    .damage(name, 0, file_len, &why, false, report)
                    .map(|_| None);
            }
        };
        // A valid header says records before `first_seq` were written, even
        // when the segment holds none (a torn tail cut it to its header):
        // new records must continue after them, and a checkpoint must not
        // claim less, or the next open sees a gap before this segment and
        // refuses (found by `fuzzing::replay`).
        self.max_seq = self.max_seq.max(header.first_seq.saturating_sub(1));
        if let Some(e) = self.expected.filter(|&e| header.first_seq > e) {
            let why = format!(
                "records {e} to {} are missing (segment starts at {})",
                header.first_seq - 1,
                header.first_seq
            );
            self.damage(name, 0, 0, &why, false, report)?;
            if self.stop {
                return Ok(None);
            }
        }
        self.expected = Some(
            self.expected
                .map_or(header.first_seq, |e| e.max(header.first_seq)),
        );
        let mut ops = ops.iter_mut();
        for (i, piece) in scan.pieces.into_iter().enumerate() {
            match piece {
                // A marker holds no operation and takes no sequence number;
                // mark_durable has already counted what it vouches for.
                Piece::Marker { .. } => {}
                Piece::Record { offset, record } => {
                    self.max_seq = self.max_seq.max(record.seq);
                    if record.seq <= self.floor {
                        continue; // Covered by the checkpoint.
                    }
                    let expected = self.expected.unwrap_or(record.seq);
                    if record.seq != expected {
                        let why = format!(
                            "record {} follows record {}",
                            record.seq,
                            expected.saturating_sub(1)
                        );
                        self.damage(name, offset, 0, &why, false, report)?;
                        if self.stop {
                            return Ok(None);
                        }
                    }
                    let op = ops.next().and_then(Option::take);
                    debug_assert!(
                        op.is_some(),
                        "decode_all decoded every record past the floor"
                    );
                    match op.unwrap_or_else(|| decode(record.kind, record.payload)) {
                        Ok(Decoded { op, print }) => {
                            self.note_puts(&op, print);
                            state.apply(record.seq, op);
                            report.records_replayed += 1;
                        }
                        Err(why) => {
                            let len = (crate::journal::record::RECORD_HEADER_LEN
                                + record.payload.len())
                                as u64;
                            self.damage(
                                name,
                                offset,
                                len,
                                &format!("record {}: {why}", record.seq),
                                false,
                                report,
                            )?;
                            if self.stop {
                                return Ok(None);
                            }
                        }
                    }
                    self.expected = Some(record.seq.saturating_add(1));
                }
                Piece::Damaged {
                    offset,
                    end,
                    reason,
                    durable,
                    ..
                } => {
                    // Damage no later record vouches for is the unsynced tail
                    // a crash may tear: nothing in it was acknowledged durable
                    // under SyncBeforeAck (see journal::reader).
                    let torn = !durable;
                    let dropped = if torn { records_after[i] } else { 0 };
                    let reason = if dropped > 0 {
                        tracing::warn!(
                            file = name,
                            offset,
                            dropped,
                            "a torn tail hides valid records written in the same unsynced batch; \
                             they are cut with it (see docs/recovery.md)"
                        );
                        format!(
                            "{reason}; {dropped} valid records after it were written in the same unsynced batch and are cut with it"
                        )
                    } else {
                        reason.to_string()
                    };
                    self.damage(name, offset, end - offset, &reason, torn, report)?;
                    if torn && self.mode != RecoveryMode::Strict {
                        return Ok(Some(offset));
                    }
                    // The damaged span hid some sequence numbers; the next
                    // valid record is not a second, separate gap.
                    self.expected = None;
                    if self.stop {
                        return Ok(None);
                    }
                }
            }
        }
        Ok(None)
    }

    /// Remembers a fingerprint of each task a record puts: a lone put's
    /// came with it (`print`, of its payload); a batch's puts are
    /// fingerprinted from the bytes held. Notes its removals too.
    fn note_puts(&mut self, op: &Op, print: Option<u64>) {
        self.note_removals(op);
        match op {
            Op::PutTask(_) => {
                self.replayed_puts.extend(print);
            }
            Op::Batch(ops) => {
                for op in ops {
                    if let Op::PutTask(t) = op {
                        self.replayed_puts
                            .insert(crate::reconcile::fingerprint(t.id(), t.json()));
                    }
                }
            }
            _ => {}
        }
    }

    /// Remembers each task a record deletes or archives: a checkpoint of
    /// it removes the task's file, so a file missing later is statewal's
    /// own doing (see [`Recovered::replayed_removals`]).
    fn note_removals(&mut self, op: &Op) {
        match op {
            Op::DeleteTask(id) => {
                self.replayed_removals.insert(id.clone());
            }
            Op::ArchiveTask { task, .. } => {
                self.replayed_removals.insert(task.id().to_string());
            }
            Op::Batch(ops) => ops.iter().for_each(|op| self.note_removals(op)),
            _ => {}
        }
    }

    /// Records damage and decides, by mode, whether the open goes on.
    fn damage(
        &mut self,
        file: &str,
        offset: u64,
        len: u64,
        reason: &str,
        torn_tail: bool,
        report: &mut RecoveryReport,
    ) -> Result<()> {
        report.damage.push(Damage {
            file: file.to_string(),
            offset,
            len,
            reason: reason.to_string(),
            torn_tail,
        });
        let fail = |hint: &str| {
            let mut e = Error::corrupt(file, offset, reason);
            e = e.context(hint);
            Err(e)
        };
        match self.mode {
            // Name the way out, as the default mode does.
            RecoveryMode::Strict if torn_tail => fail(
                "strict recovery refuses even a torn tail; run `statewal recover --mode tolerate-torn-tail` \
                 to cut it off",
            ),
            RecoveryMode::Strict => fail(
                "strict recovery refuses any damage; inspect with `statewal verify`, then run \
                 `statewal recover --mode point-in-time` or `--mode salvage`",
            ),
            RecoveryMode::TolerateTornTail if torn_tail => Ok(()),
            RecoveryMode::TolerateTornTail => fail(
                "journal damage before its end is not a torn write; inspect with `statewal verify`, then \
                 run `statewal recover --mode point-in-time` or `--mode salvage`",
            ),
            RecoveryMode::PointInTime => {
                if !torn_tail {
                    self.stop = true;
                    self.left_damage = true;
                }
                Ok(())
            }
            RecoveryMode::Salvage => {
                self.left_damage |= !torn_tail;
                Ok(())
            }
        }
    }
}

type Checkpoint = (
    State,
    LoadedFrom,
    Option<u64>,
    Option<u32>,
    Vec<Skipped>,
    Option<Id128>,
    SnapshotUse,
);

/// `state.json`, else the newest valid backup, else (with statewal history
/// and a foreign view) the foreign view at the journal's first record, else
/// the layout files. A state file whose store id differs from `journal_id`
/// (the one id every journal segment agrees on) belongs to another store and
/// is skipped; so is one without a `version` when statewal has history
/// (`rule`). `journal_start` is the first sequence number of the first
/// segment whose header reads.
fn load_checkpoint(
    fs: &dyn Fs,
    journal_id: Option<Id128>,
    rule: &BaseRule,
    journal_start: Option<u64>,
) -> Result<Checkpoint> {
    let mut skipped = Vec::new();
    let mut saw_state = false;
    let mut snapshot = SnapshotUse::NotConsidered;
    let state_json = match fs.read(STATE_FILE) {
        Ok(None) => Err("missing".to_string()),
        Ok(Some(bytes)) => Ok(bytes),
        // Corrupt: in an encrypted store, a file that does not open; the
        // damage a plain file's parse finds.
        Err(e) if matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::Corrupt) => {
            Err(e.to_string())
        }
        Err(e) => return Err(e),
    };
    let state_json = state_json.map(|bytes| {
        let crc = crc32fast::hash(&bytes);
        (bytes, crc)
    });
    if let Ok((bytes, crc)) = &state_json {
        let crc = *crc;
        match crate::snapshot::load(fs, bytes, crc, journal_id)? {
            Ok(base) => {
                let id = base.store_id;
                let seq = base.journal_seq;
                let mut state =
                    State::from_checkpoint(Vec::new(), base.sessions, seq, &Default::default())?;
                state.load_base_tasks(base.tasks);
                state.last_saved = Some(base.last_saved);
                let from = LoadedFrom::StateFile;
                return Ok((
                    state,
                    from,
                    Some(seq),
                    Some(crc),
                    skipped,
                    id,
                    SnapshotUse::Used,
                ));
            }
            Err(why) => {
                match &why {
                    SnapshotUse::Missing => {
                        tracing::info!("no state.snapshot; parsing state.json")
                    }
                    other => tracing::warn!(
                        outcome = other.name(),
                        why = ?other,
                        "state.snapshot cannot stand in for state.json; parsing state.json"
                    ),
                }
                snapshot = why;
            }
        }
    }
    let mut state_json = Some(state_json);
    let mut candidates = vec![STATE_FILE.to_string()];
    candidates.extend(layout::list_backups(fs)?);
    for (i, name) in candidates.iter().enumerate() {
        let read = match state_json.take() {
            Some(Ok((bytes, crc))) => Ok(candidate_of(&bytes, crc, rule.history)),
            Some(Err(why)) => Ok(Err(why)),
            None => read_candidate(fs, name, rule.history),
        };
        let loaded = read?.and_then(|(ps, crc)| {
            let id = ps.store_id.as_deref().and_then(parse_id_hex);
            match (id, journal_id) {
                (Some(theirs), Some(ours)) if theirs != ours => Err(foreign_state(&theirs, &ours)),
                _ => Ok((ps, crc, id)),
            }
        });
        match loaded {
            Ok((ps, crc, id)) => {
                let from = if i == 0 {
                    LoadedFrom::StateFile
                } else {
                    LoadedFrom::Backup(name.clone())
                };
                let mut state = State::from_checkpoint(
                    ps.tasks,
                    ps.sessions,
                    ps.journal_seq,
                    &ps.task_versions,
                )?;
                state.last_saved = Some(ps.last_saved);
                return Ok((
                    state,
                    from,
                    Some(ps.journal_seq),
                    (i == 0).then_some(crc),
                    skipped,
                    id,
                    snapshot,
                ));
            }
            Err(why) if why == "missing" => {}
            Err(why) => {
                saw_state = true;
                if why.starts_with(UNVERSIONED_SKIPPED) {
                    tracing::info!(file = %fs.describe(name), %why, "not a base for the journal; trying the next one");
                } else {
                    tracing::warn!(file = %fs.describe(name), %why, "state file is corrupt or foreign; trying the next one");
                }
                skipped.push(Skipped {
                    file: name.clone(),
                    reason: why,
                });
            }
        }
    }
    if let Some((name, tasks, sessions)) = rule.foreign.as_ref().filter(|_| rule.history) {
        // No checkpoint statewal sealed survives (the original server's
        // cleanup may have removed them): the foreign file, which that
        // server loaded from statewal's last checkpoint, stands in for it
        // where the journal starts.
        let at = journal_start.map_or(0, |s| s.saturating_sub(1));
        // The original server keeps statewal's task files (the view holds
        // them) but has no `sessions/`: the session records statewal
        // checkpointed are there only. (After `migrate --rollback` that
        // server loaded the pre-migration state, without any of them.)
        let mut sessions = sessions.clone();
        let known: std::collections::HashSet<String> = sessions
            .iter()
            .filter_map(|s| crate::journal::op::session_id(s).map(str::to_string))
            .collect();
        let (files, bad) = layout::load_layout_sessions(fs)?;
        skipped.extend(bad);
        sessions.extend(
            files.into_iter().filter(|s| {
                crate::journal::op::session_id(s).is_some_and(|id| !known.contains(id))
            }),
        );
        let state = State::from_checkpoint(tasks.clone(), sessions, at, &Default::default())?;
        return Ok((
            state,
            LoadedFrom::Foreign(name.clone()),
            Some(at),
            None,
            skipped,
            None,
            snapshot,
        ));
    }
    let (tasks, sessions, bad) = layout::load_layout_files(fs)?;
    for s in &bad {
        tracing::warn!(file = %fs.describe(&s.file), reason = %s.reason, "skipping a file that does not parse");
    }
    skipped.extend(bad);
    let from = if tasks.is_empty() && sessions.is_empty() && !saw_state {
        LoadedFrom::Empty
    } else {
        LoadedFrom::LayoutFiles
    };
    Ok((
        State::from_checkpoint(tasks, sessions, 0, &Default::default())?,
        from,
        None,
        None,
        skipped,
        None,
        snapshot,
    ))
}

/// How the reason for skipping an unversioned state file starts.
const UNVERSIONED_SKIPPED: &str = "written without a version";

/// Loads one candidate state file, or says why it cannot be the base. A
/// file without a `version` (the original server's) is migrated in memory
/// when statewal has no history here, and skipped when it has: it does not
/// know the journal (the open merges it; see `crate::reconcile`).
fn read_candidate(
    fs: &dyn Fs,
    name: &str,
    history: bool,
) -> Result<std::result::Result<(crate::model::PersistedState, u32), String>> {
    let bytes = match fs.read(name) {
        Ok(None) => return Ok(Err("missing".into())),
        Ok(Some(bytes)) => bytes,
        Err(e) if matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::Corrupt) => {
            return Ok(Err(e.to_string()));
        }
        Err(e) => return Err(e),
    };
    Ok(candidate_of(&bytes, crc32fast::hash(&bytes), history))
}

/// [`read_candidate`] of bytes already read, whose CRC-32 is `crc`.
fn candidate_of(
    bytes: &[u8],
    crc: u32,
    history: bool,
) -> std::result::Result<(crate::model::PersistedState, u32), String> {
    // statewal's own (its seal is checked), or not a JSON object at all.
    if layout::written_by_statewal(bytes)
        || crate::reconcile::survey::has_version(bytes) != Some(false)
    {
        return layout::parse_state(bytes).map(|s| (s, crc));
    }
    if history {
        return Err(format!(
            "{UNVERSIONED_SKIPPED} (by the original server or by hand) over statewal's journal, \
             which it does not know: merged at an owner's open, never loaded as the base"
        ));
    }
    let Some(sealed) = crate::migrate::migrated_in_memory(bytes) else {
        return Err(format!(
            "{UNVERSIONED_SKIPPED}, and it does not migrate (`statewal migrate --dry-run` says why)"
        ));
    };
    layout::parse_state(&sealed).map(|s| (s, crc))
}

/// Why a state file with store id `theirs` is foreign to a journal whose
/// segments all carry `ours`.
pub(crate) fn foreign_state(theirs: &Id128, ours: &Id128) -> String {
    format!(
        "belongs to another store (id {}; the journal's segments carry {})",
        id_hex(theirs),
        id_hex(ours)
    )
}
