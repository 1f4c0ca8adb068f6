//! Rebuilding a state directory from a replica: the newest checkpoint at
//! or before the target, then the segment objects after it in order, each
//! checked against the CRC in its name, cut after the target record. The
//! directory it writes is an ordinary one: `Store::open` recovers it as it
//! would after a clean shutdown.

use super::layout::{self, Checkpoint, Generation, Inventory};
use super::runtime::Bucket;
use super::shipper::OBJECT_BYTES_MAX;
use crate::error::{Error, ErrorKind, Result};
use crate::fs::{self, Fs, RealFs};
use crate::journal::reader::{Piece, scan_segment};
use crate::journal::record::{
    RECORD_HEADER_LEN, RECORD_PAYLOAD_MAX, SEGMENT_HEADER_LEN, SegmentHeader,
};
use crate::journal::{JOURNAL_DIR, segment_name};
use std::path::Path;
use std::sync::Arc;

/// How far a restore goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreTarget {
    /// Every record shipped.
    Latest,
    /// Every record up to and including this sequence number.
    Seq(u64),
    /// The records written at or before this wall-clock time, placed by
    /// the record time of format v2: the sync markers' clock
    /// (`docs/replication.md`, "Restore"). A time before the replica's
    /// first record time is refused (`ErrorKind::NotFound`); a time after
    /// its last one restores through the last record that has a time.
    Time(time::OffsetDateTime),
}

/// What a restore wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreReport {
    /// The generation restored from.
    pub generation: String,
    /// The `journal_seq` of the checkpoint restored, if one was.
    pub checkpoint_seq: Option<u64>,
    /// The last record the directory holds (the checkpoint's when no
    /// record follows it).
    pub last_seq: u64,
    /// Records of the journal restored after the checkpoint (the ones
    /// the directory replays when it opens).
    pub records: u64,
    /// Segment files written.
    pub segments: usize,
    /// Objects read.
    pub objects: usize,
    /// The object a restore stopped before, and why: a corrupt object, or
    /// one that does not join the one before. Every record before it is
    /// restored.
    pub stopped_at: Option<String>,
    /// Checkpoint objects skipped as corrupt, with why.
    pub skipped_checkpoints: Vec<String>,
    /// Segment objects that were corrupt or did not join, with why, but
    /// held only records the restored checkpoint already covers (the next
    /// segment follows on from it), so the restore went past them.
    pub skipped_objects: Vec<String>,
    /// For [`RestoreTarget::Time`]: the record time (Unix milliseconds) of
    /// the sync marker the time was placed at, whose records the restore
    /// ends with; `None` for the other targets.
    pub record_time_ms: Option<u64>,
}

/// Rebuilds the store shipped to `url` in `dir`, which must not hold a
/// store, up to `target`. `settings` are the bucket's, as for
/// [`crate::Options::replica_setting`].
pub fn restore_with(
    url: &str,
    settings: &[(String, String)],
    dir: &Path,
    target: RestoreTarget,
    key: Unseal,
) -> Result<RestoreReport> {
    // Refuse a directory that holds a store before the bucket is reached,
    // and without creating anything.
    if crate::layout::is_store(dir)? {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} already holds a store; restore into a new directory (nothing was written)",
                dir.display()
            ),
        ));
    }
    restore_on(url, settings, target, &key, &|| {
        RealFs::new(dir).map(|fs| Arc::new(fs) as Arc<dyn Fs>)
    })
}

/// [`restore_with`] into the root of `fs`, which must be empty: for
/// crash tests on a simulated filesystem.
#[cfg(feature = "sim")]
pub fn restore_to_fs(
    url: &str,
    settings: &[(String, String)],
    fs: Arc<dyn Fs>,
    target: RestoreTarget,
) -> Result<RestoreReport> {
    if !fs.list("")?.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "the filesystem to restore into is not empty (nothing was written)",
        ));
    }
    restore_on(
        url,
        settings,
        target,
        &Unseal::default(),
        &|| Ok(fs.clone()),
    )
}

/// Restores into the filesystem `open_fs` makes, once the bucket has said
/// what to restore.
fn restore_on(
    url: &str,
    settings: &[(String, String)],
    target: RestoreTarget,
    key: &Unseal,
    open_fs: &dyn Fn() -> Result<Arc<dyn Fs>>,
) -> Result<RestoreReport> {
    let bucket = Bucket::open(url, settings)?;
    let names = bucket.list()?;
    let inv = Inventory::of(names.iter().map(|(n, _)| n.as_str()));
    let listed: Listed = names.iter().map(|(n, size)| (n.as_str(), *size)).collect();
    let (generation, g, upto, record_time_ms) = match target {
        RestoreTarget::Latest => {
            let newest = inv.newest().ok_or_else(|| no_generation(url))?;
            (newest.0, newest.1, u64::MAX, None)
        }
        RestoreTarget::Seq(s) => {
            let (id, g) = choose_generation(&bucket, &inv, s)?.ok_or_else(|| no_generation(url))?;
            (id, g, s, None)
        }
        RestoreTarget::Time(t) => {
            let placed = seq_at_time(&bucket, &inv, &listed, t)?;
            let g = &inv.generations[placed.generation];
            (placed.generation, g, placed.seq, placed.record_time_ms)
        }
    };
    let mut report = RestoreReport {
        generation: generation.to_string(),
        record_time_ms,
        ..RestoreReport::default()
    };
    // The store every object must belong to: the claim's, else the
    // checkpoint's, else the first segment's.
    let mut store_id = claimed_store(&bucket)?;
    // Fetched (and opened, in an encrypted replica) before anything is
    // written: a missing or wrong key leaves nothing behind.
    let base = fetch_checkpoint(&bucket, g, upto, store_id.as_deref(), &mut report, key)?;
    key.refuse_plain(bucket.url(), base.is_some())?;
    let fs = key.target(open_fs()?)?;
    let fs = &*fs;
    fs.create_dir(JOURNAL_DIR)?;
    if let Some((seq, bytes, id)) = &base {
        report.checkpoint_seq = Some(*seq);
        report.last_seq = *seq;
        store_id = store_id.or_else(|| id.clone());
        fs::write_atomic(fs, "", crate::layout::STATE_FILE, bytes)?;
        write_task_files(fs, bytes)?;
    }
    let base_seq = base.as_ref().map_or(0, |(s, _, _)| *s);
    // A corrupt or non-joining object in a segment whose intact part held
    // nothing past the checkpoint: whether the records it cut off were
    // needed is known at the next segment.
    let mut passed: Option<String> = None;
    for &segment in g.segments.keys() {
        if report.last_seq >= upto {
            break;
        }
        let (bytes, stop) = fetch_segment(&bucket, g, &listed, segment, &mut report)?;
        if base.is_none() && report.segments == 0 {
            older_than_kept(bucket.url(), generation, g, &bytes, upto)?;
        }
        let cut_here = if stop { report.stopped_at.take() } else { None };
        let first = SegmentHeader::decode(&bytes).map(|h| h.first_seq);
        if let Some(cut) = passed.take() {
            // A segment cut short held no record past what is restored
            // only if this one starts right after it.
            if first.as_ref().is_ok_and(|&f| f <= report.last_seq + 1) {
                report.skipped_objects.push(cut);
            } else {
                report.stopped_at = Some(cut);
                break;
            }
        }
        // A segment that starts past the next record needed: the ones
        // between are missing from the bucket, so a record on the way to
        // the target cannot be restored (even when every record of this
        // one is past the target).
        if let Ok(f) = first
            && f > report.last_seq + 1
        {
            report.stopped_at = Some(format!(
                "{}: its first record is {f}, but the records before it end at {} \
                 (the segment holding the next record is missing)",
                object_at(g, segment, 0),
                report.last_seq
            ));
            break;
        }
        let expect = Expect {
            segment,
            base: base_seq,
            upto,
            prev: report.last_seq,
        };
        let kept = keep_records(&bytes, &expect, &mut store_id);
        if kept.last.is_some()
            && let Ok(header) = SegmentHeader::decode(&bytes)
        {
            key.check_segment(&object_at(g, segment, 0), header.cipher.as_ref())?;
        }
        if let Some(last) = kept.last {
            fs::write_atomic(fs, JOURNAL_DIR, &segment_name(segment), &bytes[..kept.len])?;
            report.segments += 1;
            report.records += kept.records;
            report.last_seq = last;
        }
        if let Some((offset, why)) = kept.refused {
            // What comes after a refused frame cannot be placed: stop here,
            // naming the object that holds it.
            let name = object_at(g, segment, offset);
            tracing::warn!(object = %name, why, "restore: stopping before an object");
            report.stopped_at = Some(format!("{name}: {why}"));
            break;
        }
        if let Some(cut) = cut_here {
            if kept.last.is_some() {
                report.stopped_at = Some(cut);
                break;
            }
            // Nothing of it was needed so far; the next segment says
            // whether what was cut off was.
            passed = Some(cut);
            continue;
        }
        if kept.last.is_some_and(|l| l >= upto) {
            break;
        }
    }
    if let Some(cut) = passed {
        match report.last_seq >= upto {
            true => report.skipped_objects.push(cut),
            false => report.stopped_at = Some(cut),
        }
    }
    // Sync the journal directory so the segments' names survive power
    // loss (each segment's write synced it, but there may be none), then
    // the store's own, so the names `journal/` and `tasks/` do: without a
    // checkpoint, nothing else syncs it.
    fs.sync_dir(JOURNAL_DIR)?;
    fs.sync_dir("")?;
    Ok(report)
}

/// Writes `tasks/<id>.json` for each task of the restored `state.json`, as
/// its checkpoint wrote them (task files are not shipped). Without them,
/// the first open would take every task's file as removed by hand, and say
/// so once per task; with them, it finds each file equal to the
/// checkpoint's copy. Their stats are not vouched for (no stats file), so
/// that open reads them once.
fn write_task_files(fs: &dyn Fs, state: &[u8]) -> Result<()> {
    let state = crate::layout::parse_state(state)
        .map_err(|e| Error::new(ErrorKind::Corrupt, format!("restored state.json: {e}")))?;
    let files: Vec<(String, Option<Vec<u8>>)> = state
        .tasks
        .iter()
        .map(|task| {
            let mut out = Vec::new();
            crate::task_json::write_pretty(&mut out, &task.to_json(), 0);
            out.push(b'\n');
            (crate::layout::task_file(task.id()), Some(out))
        })
        .collect();
    fs.create_dir(crate::layout::TASKS_DIR)?;
    fs::write_atomic_batch(fs, crate::layout::TASKS_DIR, &files)
}

/// The generation that holds record `upto` (the newest for the latest
/// record): the newest with a checkpoint at or before it, or whose journal
/// begins with the store's first record (a generation begins with the
/// checkpoint its first segments continue, or with record 1, and holds
/// nothing before); else the oldest, whose restore then says what it
/// lacks.
fn choose_generation<'a>(
    bucket: &Bucket,
    inv: &'a Inventory,
    upto: u64,
) -> Result<Option<(&'a str, &'a Generation)>> {
    if upto == u64::MAX {
        return Ok(inv.newest());
    }
    let mut headers = super::prune::HeaderCache::new();
    for (id, g) in inv.generations.iter().rev() {
        if g.checkpoints.first().is_some_and(|c| c.seq <= upto) {
            return Ok(Some((id.as_str(), g)));
        }
        let first = g.segments.values().next().and_then(|r| r.first());
        if let Some(r) = first.filter(|r| r.start == 0)
            && super::prune::first_seq(bucket, r, &mut headers)?.is_some_and(|s| s <= 1)
        {
            return Ok(Some((id.as_str(), g)));
        }
    }
    Ok(inv
        .generations
        .iter()
        .next()
        .map(|(id, g)| (id.as_str(), g)))
}

/// The size of each object in the listing a restore works from.
type Listed<'a> = std::collections::HashMap<&'a str, u64>;

/// The most a segment object can hold: [`OBJECT_BYTES_MAX`], or one frame
/// of the largest record with its segment's header.
const SEGMENT_OBJECT_BYTES_MAX: u64 = {
    let frame = (RECORD_HEADER_LEN + SEGMENT_HEADER_LEN) as u64 + RECORD_PAYLOAD_MAX as u64;
    if frame > OBJECT_BYTES_MAX {
        frame
    } else {
        OBJECT_BYTES_MAX
    }
};

/// A checkpoint to restore: its `journal_seq`, its bytes and the store id
/// it names.
type Base = (u64, Vec<u8>, Option<String>);

/// The newest checkpoint at or before `upto` whose bytes match the CRC in
/// its name and parse; corrupt ones are skipped and named in the report.
fn fetch_checkpoint(
    bucket: &Bucket,
    g: &Generation,
    upto: u64,
    store_id: Option<&str>,
    report: &mut RestoreReport,
    key: &Unseal,
) -> Result<Option<Base>> {
    let candidates: Vec<&Checkpoint> = g.checkpoints.iter().filter(|c| c.seq <= upto).collect();
    for c in candidates.into_iter().rev() {
        report.objects += 1;
        let raw = bucket.get(&c.name)?.unwrap_or_default();
        let bytes = match crc32fast::hash(&raw) == c.crc {
            true => key.checkpoint(&c.name, raw)?,
            false => Err("its CRC-32 does not match its name"),
        };
        let why = match bytes {
            Err(why) => why,
            Ok(bytes) => match crate::layout::parse_state(&bytes) {
                Ok(s) if s.journal_seq != c.seq => "its journal_seq does not match its name",
                Ok(s)
                    if store_id.is_some()
                        && s.store_id.is_some()
                        && s.store_id.as_deref() != store_id =>
                {
                    "it belongs to another store than the replica's claim names"
                }
                Ok(s) => return Ok(Some((c.seq, bytes, s.store_id))),
                Err(_) => "it does not parse as state.json",
            },
        };
        tracing::warn!(object = %c.name, why, "restore: skipping a corrupt checkpoint");
        report
            .skipped_checkpoints
            .push(format!("{}: {why}", c.name));
    }
    Ok(None)
}

/// The joined bytes of `segment` from offset 0, and whether the restore
/// must stop after them (an object was corrupt or did not join).
fn fetch_segment(
    bucket: &Bucket,
    g: &Generation,
    listed: &Listed,
    segment: u64,
    report: &mut RestoreReport,
) -> Result<(Vec<u8>, bool)> {
    let (joined, gap) = g.joined(segment);
    let mut bytes = Vec::new();
    for r in &joined {
        report.objects += 1;
        // Checked before the read: a planted object is never read past the
        // size its name gives, nor one whose name claims more than the
        // shipper ever puts in one object.
        let len = r.end - r.start;
        let size = listed.get(r.name.as_str()).copied().unwrap_or(0);
        if size != len || len > SEGMENT_OBJECT_BYTES_MAX {
            report.stopped_at = Some(format!(
                "{}: the bucket lists it as {size} bytes; its name says {len} \
                 (at most {SEGMENT_OBJECT_BYTES_MAX})",
                r.name
            ));
            return Ok((bytes, true));
        }
        let got = bucket.get_range(&r.name, 0..len)?.unwrap_or_default();
        if got.len() as u64 != r.end - r.start || crc32fast::hash(&got) != r.crc {
            report.stopped_at = Some(format!(
                "{}: its bytes do not match the length and CRC-32 in its name",
                r.name
            ));
            return Ok((bytes, true));
        }
        bytes.extend_from_slice(&got);
    }
    if let Some(r) = gap {
        report.stopped_at = Some(format!(
            "{}: it does not start where the object before it ends ({})",
            r.name,
            joined.last().map_or(0, |j| j.end)
        ));
        return Ok((bytes, true));
    }
    Ok((bytes, false))
}

/// Where a wall-clock time falls in a replica.
struct Placed<'a> {
    generation: &'a str,
    seq: u64,
    record_time_ms: Option<u64>,
}

/// The generation and the last record written at or before `t`, by the
/// sync markers alone: a marker's time is after every record it says was
/// synced, so the records through the `synced_through` of the last marker
/// at or before `t` were all written by then (records between two markers
/// are placed at the later one). The generation is the newest begun at or
/// before `t` that has such a marker (the oldest whatever its start, since
/// its first segments hold records written before its first tick): a
/// generation begun later may hold copies of older history (a restored
/// directory's journal), but not what the store held at `t`. A checkpoint
/// object carries no time, so it never places `t` by itself. Reads each
/// segment until the first marker after `t`.
fn seq_at_time<'a>(
    bucket: &Bucket,
    inv: &'a Inventory,
    listed: &Listed,
    t: time::OffsetDateTime,
) -> Result<Placed<'a>> {
    let t_ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
    let oldest = inv.generations.keys().next();
    let mut first_time: Option<u64> = None;
    for (id, g) in inv.generations.iter().rev() {
        let began = layout::generation_unix_ms(id).map_or(i128::MAX, i128::from);
        if began > t_ms && Some(id) != oldest {
            continue;
        }
        let mut best: Option<(u64, u64)> = None;
        'segments: for &segment in g.segments.keys() {
            // Read as the restore reads it; what it counts is not reported.
            let mut scratch = RestoreReport::default();
            let (bytes, stop) = fetch_segment(bucket, g, listed, segment, &mut scratch)?;
            for piece in scan_segment(&bytes).pieces {
                match piece {
                    Piece::Marker { marker, .. } => {
                        first_time =
                            Some(first_time.map_or(marker.unix_ms, |f| f.min(marker.unix_ms)));
                        if i128::from(marker.unix_ms) > t_ms {
                            break 'segments;
                        }
                        if best.is_none_or(|(s, _)| marker.synced_through >= s) {
                            best = Some((marker.synced_through, marker.unix_ms));
                        }
                    }
                    Piece::Damaged { .. } => break 'segments,
                    Piece::Record { .. } => {}
                }
            }
            if stop {
                break;
            }
        }
        let placed = best.map(|(seq, ms)| (seq, Some(ms)));
        if let Some((seq, record_time_ms)) = placed.filter(|(seq, _)| *seq > 0) {
            return Ok(Placed {
                generation: id,
                seq,
                record_time_ms,
            });
        }
    }
    let asked = t
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string());
    Err(Error::new(
        ErrorKind::NotFound,
        match first_time.and_then(rfc3339_of_ms) {
            Some(first) => format!(
                "{asked} is before the first record time in the replica ({first}); \
                 restore to {first} or later"
            ),
            None => format!(
                "{asked} cannot be placed: the replica holds no record time (sync marker) \
                 at or before it"
            ),
        },
    ))
}

/// `ms` (Unix milliseconds) as RFC 3339 in UTC.
fn rfc3339_of_ms(ms: u64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn no_generation(url: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("replica {url} holds no generation to restore"),
    )
}

/// What a segment's bytes must be: segment `segment`, following record
/// `prev` (the last one restored), of which records after `base` (the
/// checkpoint's) and through `upto` are kept.
struct Expect {
    segment: u64,
    base: u64,
    upto: u64,
    prev: u64,
}

/// Of a segment's bytes, what to keep.
#[derive(Debug, Default)]
struct Kept {
    /// The length to write.
    len: usize,
    /// The last record kept; `None` when no record after the checkpoint is
    /// (nothing to write).
    last: Option<u64>,
    /// Records kept after the checkpoint.
    records: u64,
    /// The offset of the first frame that cannot be restored, and why:
    /// the restore stops there.
    refused: Option<(u64, String)>,
}

/// Of a segment's bytes, the records through `expect.upto`, up to the
/// first thing that cannot be restored: a header that is not this
/// segment's or not this store's (`store_id`, set from the first segment
/// when nothing named it before), a first record that does not follow
/// the last one restored (a segment missing), or damage.
fn keep_records(bytes: &[u8], expect: &Expect, store_id: &mut Option<String>) -> Kept {
    let refuse = |offset: u64, why: String| Kept {
        refused: Some((offset, why)),
        ..Kept::default()
    };
    if bytes.is_empty() {
        return Kept::default();
    }
    let scan = scan_segment(bytes);
    let header = match &scan.header {
        Ok(h) => *h,
        Err(e) => return refuse(0, format!("its segment header does not decode: {e}")),
    };
    if header.id != expect.segment {
        return refuse(
            0,
            format!("it holds segment {}, not {}", header.id, expect.segment),
        );
    }
    if let Some(id) = header.store_id.as_ref().map(crate::journal::record::id_hex) {
        match store_id {
            Some(ours) if *ours != id => {
                return refuse(
                    0,
                    format!("it belongs to another store (id {id}; the replica's is {ours})"),
                );
            }
            Some(_) => {}
            None => *store_id = Some(id),
        }
    }
    let mut kept = Kept {
        len: header.len(),
        ..Kept::default()
    };
    let mut last = None;
    for piece in &scan.pieces {
        match piece {
            Piece::Record { offset, record } => {
                if record.seq > expect.upto {
                    break;
                }
                kept.len = *offset as usize
                    + crate::journal::record::RECORD_HEADER_LEN
                    + record.payload.len();
                last = Some(record.seq);
                kept.records += u64::from(record.seq > expect.base);
            }
            Piece::Marker { offset, .. } => {
                kept.len = *offset as usize + crate::journal::record::MARKER_FRAME_LEN;
            }
            Piece::Damaged { offset, reason, .. } => {
                kept.refused = Some((*offset, format!("damaged at byte {offset}: {reason}")));
                break;
            }
        }
    }
    match last {
        Some(last) if last > expect.base => {
            if header.first_seq > expect.prev + 1 {
                return refuse(
                    0,
                    format!(
                        "it starts at record {} but the records before it end at {} \
                         (a segment is missing)",
                        header.first_seq, expect.prev
                    ),
                );
            }
            kept.last = Some(last);
        }
        _ => {}
    }
    kept
}

/// The name of the object of `segment` that holds byte `offset` (its
/// first object for 0; its last when none does).
fn object_at(g: &Generation, segment: u64, offset: u64) -> String {
    let (joined, _) = g.joined(segment);
    joined
        .iter()
        .find(|r| r.start <= offset && offset < r.end)
        .or(joined.last())
        .map_or_else(|| format!("segment {segment}"), |r| r.name.clone())
}

/// The store id the replica's claim names, if it has a claim that says.
fn claimed_store(bucket: &Bucket) -> Result<Option<String>> {
    let Some(bytes) = bucket.get(layout::CLAIM)? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("store_id")?.as_str().map(str::to_string)))
}

/// With no checkpoint at or before the target, a restore replays from the
/// generation's first segment, which must then begin at the store's first
/// record. One that begins later lost its start (retention pruned it, or
/// the generation began from a checkpoint after the target): an error
/// rather than a store that silently lacks the records before.
fn older_than_kept(
    url: &str,
    generation: &str,
    g: &Generation,
    first_segment: &[u8],
    upto: u64,
) -> Result<()> {
    use crate::journal::record::SegmentHeader;
    let Ok(header) = SegmentHeader::decode(first_segment) else {
        return Ok(()); // Said by the scan, with the object's name.
    };
    if header.first_seq <= 1 {
        return Ok(());
    }
    let oldest = g.checkpoints.first().map_or(header.first_seq, |c| c.seq);
    Err(Error::new(
        ErrorKind::NotFound,
        format!(
            "replica {url} no longer holds record {upto} (generation {generation} \
             restores from record {oldest} on; older records were pruned by its \
             retention window or were never shipped)"
        ),
    ))
}

/// The key a restore opens an encrypted replica with, if one was given
/// (`docs/encryption.md`, "Replicas"). Checkpoint objects are opened
/// with it and the restored files sealed again under it; segment objects
/// are copied as they are, their records sealed already. A replica and a
/// key that do not match are refused before anything of theirs is
/// written: a sealed replica without the key (or with another), and a
/// plain one with a key (it would restore a plain store that the key
/// then refuses to open).
#[derive(Default)]
pub(crate) struct Unseal {
    #[cfg(feature = "encryption")]
    key: Option<crate::crypto::Key>,
    /// The cipher of the checkpoint restored, for the files sealed again.
    #[cfg(feature = "encryption")]
    cipher: std::sync::Mutex<Option<crate::crypto::Algorithm>>,
    /// A plain checkpoint object was passed over (with a key given).
    #[cfg(feature = "encryption")]
    plain_seen: std::sync::atomic::AtomicBool,
}

impl Unseal {
    /// Opens with `key`.
    #[cfg(feature = "encryption")]
    pub(crate) fn with_key(key: crate::crypto::Key) -> Unseal {
        Unseal {
            key: Some(key),
            cipher: Default::default(),
            plain_seen: Default::default(),
        }
    }

    /// The plain bytes of checkpoint object `name` (its CRC checked), or
    /// why it is skipped as corrupt; an error when the key and it disagree.
    fn checkpoint(
        &self,
        name: &str,
        raw: Vec<u8>,
    ) -> Result<std::result::Result<Vec<u8>, &'static str>> {
        #[cfg(feature = "encryption")]
        {
            use crate::crypto::fs::{inspect, open_file, wrong_key};
            match (inspect(&raw), &self.key) {
                (None, None) => Ok(Ok(raw)),
                // Not written by this store's sealing shipper: passed over
                // as corrupt (an older sealed checkpoint may follow). A
                // replica with no sealed checkpoint at all is refused
                // after (`refuse_plain`).
                (None, Some(_)) => {
                    self.plain_seen
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    Ok(Err("it is not encrypted, and a key was given"))
                }
                (Some(Err(_)), _) => Ok(Err("its encryption envelope is damaged")),
                (Some(Ok(env)), None) => Err(wrong_key(name, env.key_id, &[])),
                (Some(Ok(env)), Some(key)) => {
                    match open_file(
                        std::slice::from_ref(key),
                        &raw,
                        crate::layout::STATE_FILE,
                        name,
                    ) {
                        Ok(plain) => {
                            *self.cipher.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(env.algorithm);
                            Ok(Ok(plain))
                        }
                        Err(e) if e.kind() == ErrorKind::Key => Err(e),
                        Err(_) => Ok(Err("it does not authenticate under the key")),
                    }
                }
            }
        }
        #[cfg(not(feature = "encryption"))]
        match raw.starts_with(&crate::layout::SEALED_MAGIC) {
            true => Err(unbuilt(name)),
            false => Ok(Ok(raw)),
        }
    }

    /// After the checkpoints were tried: refuses a restore with a key of a
    /// replica whose checkpoints were all plain (a plain replica, or one
    /// whose sealed checkpoints are gone).
    fn refuse_plain(&self, url: &str, found: bool) -> Result<()> {
        #[cfg(feature = "encryption")]
        if !found && self.plain_seen.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(
                plain_with_key(&format!("the replica at {url}")).context("nothing was written")
            );
        }
        let _ = (url, found);
        Ok(())
    }

    /// Refuses segment object `name`, whose header's cipher is `cipher`,
    /// when the key does not open it (or a key was given and it is plain).
    fn check_segment(
        &self,
        name: &str,
        cipher: Option<&crate::journal::record::SegmentCipher>,
    ) -> Result<()> {
        #[cfg(feature = "encryption")]
        match (cipher, &self.key) {
            (None, None) => Ok(()),
            (None, Some(_)) => Err(plain_with_key(name)),
            (Some(c), key) => match key.as_ref().is_some_and(|k| k.id().0 == c.key_id) {
                true => Ok(()),
                false => Err(crate::crypto::fs::wrong_key(
                    name,
                    crate::crypto::KeyId(c.key_id),
                    key.as_slice(),
                )),
            },
        }
        #[cfg(not(feature = "encryption"))]
        match cipher {
            Some(_) => Err(unbuilt(name)),
            None => Ok(()),
        }
    }

    /// The filesystem the restore writes through: `fs`, sealed under the
    /// key if one was given.
    fn target(&self, fs: Arc<dyn Fs>) -> Result<Arc<dyn Fs>> {
        #[cfg(feature = "encryption")]
        if let Some(key) = &self.key {
            use crate::crypto::fs::{Keys, SealedFs};
            let cipher = self
                .cipher
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or_default();
            let keys = Keys::new(key.clone(), Vec::new(), cipher);
            return Ok(Arc::new(SealedFs::with_keys(fs, Arc::new(keys))));
        }
        Ok(fs)
    }
}

#[cfg(feature = "encryption")]
fn plain_with_key(name: &str) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!(
            "{name} is not encrypted, and a key was given: if the store was never \
             encrypted, restore it without a key; if it was, what is plain there was not \
             written by statewal"
        ),
    )
}

#[cfg(not(feature = "encryption"))]
fn unbuilt(name: &str) -> Error {
    Error::new(
        ErrorKind::Key,
        format!(
            "{name} is encrypted: restoring it needs its key and statewal built with the cargo \
             feature `encryption`"
        ),
    )
}
