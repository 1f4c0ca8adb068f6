//! The journal: append-only, checksummed segments with group commit.
//!
//! - [`record`]: the byte format (pure, no I/O).
//! - [`op`]: what a record's payload asks the state to do (pure, no I/O).
//! - [`reader`]: splitting a segment's bytes into records and damage (pure).
//! - this file: the writer. Records are encoded into a shared buffer under a
//!   short lock; whichever writer finds no flush under way becomes the leader,
//!   writes the whole buffer and syncs once for everyone in it.
//!
//! **Invariant:** a record is acknowledged durable only after a sync that
//! started after the record was written. After a failed write or sync the
//! journal is poisoned and refuses every later write until the store is
//! reopened: a failed fsync is never retried as if it had succeeded.

pub mod op;
pub mod reader;
pub mod record;

use crate::error::{Error, ErrorKind, Result};
use crate::fs::{self, Fs, FsFile, FsMap, OpenMode};
use parking_lot::{Condvar, Mutex};
use record::{
    Id128, Marker, RecordKind, SegmentCipher, SegmentHeader, encode_marker, encode_record,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The directory, relative to the state directory, holding the segments.
pub const JOURNAL_DIR: &str = "journal";
/// Segment files are named `<id, 20 decimal digits>.wal`.
pub const SEGMENT_SUFFIX: &str = ".wal";

/// The file name of segment `id`.
pub fn segment_name(id: u64) -> String {
    format!("{id:020}{SEGMENT_SUFFIX}")
}

/// The id in a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())?
}

/// Counters the journal keeps, for stats and tests.
#[derive(Debug, Default)]
pub struct JournalStats {
    /// Number of `sync_data` calls on segments.
    pub syncs: AtomicU64,
    /// Nanoseconds spent in those calls, for the mean sync latency.
    pub sync_nanos: AtomicU64,
    /// Number of records appended.
    pub records: AtomicU64,
    /// Bytes appended since the last checkpoint's rotation.
    pub bytes_since_rotation: AtomicU64,
    /// Sync markers written.
    pub markers: AtomicU64,
}

/// The segment being written: created lazily on the first flush so that
/// opening a store for reading writes nothing.
struct Active {
    header: SegmentHeader,
    file: Option<Box<dyn FsFile>>,
    /// A shared map of the file's first bytes (up to `allocated` when it was
    /// made), where the filesystem offers one, made at the first flush that
    /// does not sync: a record is then copied into the page cache without a
    /// system call.
    map: Option<Box<dyn FsMap>>,
    /// Where the next record goes.
    len: u64,
    /// The end of the zeros written ahead of the records: records are
    /// written only below it.
    allocated: u64,
}

impl Active {
    fn new(header: SegmentHeader) -> Active {
        Active {
            header,
            file: None,
            map: None,
            len: 0,
            allocated: 0,
        }
    }
}

/// Preallocation never grows a segment by more than this at once.
pub const PREALLOCATE_STEP_MAX_BYTES: u64 = 16 * 1024 * 1024;

struct Inner {
    buf: Vec<u8>,
    next_seq: u64,
    written_seq: u64,
    synced_seq: u64,
    flushing: bool,
    poisoned: Option<Error>,
    /// The last record of the flush that failed and poisoned the journal.
    failed_through: u64,
    salt: u64,
    /// Seals the payloads of the records going to the active segment, in
    /// an encrypted store; changes with `salt` at a rotation.
    seal: Option<Arc<dyn RecordSeal>>,
}

/// Seals the record payloads of the segments a journal writes, and opens
/// those of the segments recovery reads: encryption at rest, implemented
/// by `crate::crypto` (feature `encryption`). The journal knows only this
/// trait, and never a key.
pub trait Sealing: Send + Sync {
    /// A new segment's cipher header, and what seals its records.
    fn new_segment(&self) -> Result<(SegmentCipher, Arc<dyn RecordSeal>)>;
    /// What opens the records of existing segment `id` with cipher header
    /// `cipher`; an [`crate::ErrorKind::Key`] error, naming the key id,
    /// when the keys given cannot. `shown` names the segment.
    fn segment(&self, id: u64, cipher: &SegmentCipher, shown: &str) -> Result<Arc<dyn RecordSeal>>;
}

/// Seals and opens the record payloads of one segment. A record is bound
/// to its sequence number and kind: moved or renumbered, it does not open.
pub trait RecordSeal: Send + Sync {
    /// The sealed payload of record `seq` of `kind`.
    fn seal(&self, seq: u64, kind: u8, payload: &[u8]) -> Result<Vec<u8>>;
    /// The plain payload; `None` when it does not authenticate.
    fn open(&self, seq: u64, kind: u8, sealed: &[u8]) -> Option<Vec<u8>>;
}

/// The journal writer.
#[allow(missing_debug_implementations)] // Internal; reached only through `__internal`.
pub struct Journal {
    fs: Arc<dyn Fs>,
    inner: Mutex<Inner>,
    flushed: Condvar,
    active: Mutex<Active>,
    preallocate_bytes: u64,
    next_segment_id: AtomicU64,
    /// Written into every segment header.
    store_id: Id128,
    /// The boot id of this machine, if known: in every segment header and marker.
    boot_id: Option<Id128>,
    /// Encryption of the records, if the store is encrypted.
    sealing: Option<Arc<dyn Sealing>>,
    /// Where the synced records end: see [`Journal::synced_end`].
    synced_end: Mutex<SyncedEnd>,
    /// Counters.
    pub stats: JournalStats,
}

/// The end of the records a sync has made durable: every byte of segment
/// `segment` below `end` is on stable storage and never changes again
/// (what a reader outside the write path, such as a replica, may copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncedEnd {
    /// The segment id.
    pub segment: u64,
    /// The byte offset just past the last synced record (0: none yet).
    pub end: u64,
}

impl Journal {
    /// A journal whose next record gets `next_seq` and whose next segment is
    /// `next_segment_id`. Segments are created with `preallocate_bytes` of
    /// zeros after the header and grown ahead of the records (0: no
    /// preallocation), and carry `store_id` and the filesystem's boot id.
    pub fn new(
        fs: Arc<dyn Fs>,
        next_seq: u64,
        next_segment_id: u64,
        preallocate_bytes: u64,
        store_id: Id128,
        sealing: Option<Arc<dyn Sealing>>,
    ) -> Result<Journal> {
        let boot_id = fs.boot_id();
        let (header, seal) = segment_header(
            next_segment_id,
            next_seq,
            store_id,
            boot_id,
            sealing.as_deref(),
        )?;
        Ok(Journal {
            fs,
            inner: Mutex::new(Inner {
                buf: Vec::new(),
                next_seq,
                written_seq: next_seq - 1,
                synced_seq: next_seq - 1,
                flushing: false,
                poisoned: None,
                failed_through: 0,
                salt: header.salt,
                seal,
            }),
            flushed: Condvar::new(),
            active: Mutex::new(Active::new(header)),
            preallocate_bytes,
            next_segment_id: AtomicU64::new(next_segment_id + 1),
            store_id,
            boot_id,
            sealing,
            synced_end: Mutex::new(SyncedEnd::default()),
            stats: JournalStats::default(),
        })
    }

    /// The end of the synced records in the newest segment that has any:
    /// bytes below `end` in that segment are durable and final. Segments before
    /// it are sealed (synced whole at their rotation); a segment after it
    /// has no synced record yet.
    pub fn synced_end(&self) -> SyncedEnd {
        *self.synced_end.lock()
    }

    /// Appends a record and runs `apply(seq)` while still holding the lock
    /// that orders records, so state is applied in sequence order. The record
    /// is neither written nor durable yet: call [`Journal::commit`].
    pub fn append<T>(
        &self,
        kind: RecordKind,
        payload: &[u8],
        apply: impl FnOnce(u64) -> T,
    ) -> Result<(u64, T)> {
        self.append_checked(kind, payload, || Ok(()), |seq, ()| apply(seq))
    }

    /// Like [`Journal::append`], but runs `check` first under the same
    /// ordering lock: if it fails, nothing is appended; what it returns is
    /// handed to `apply`. A check made there cannot be overtaken by another
    /// writer between it and the record (conditional puts, deletes inside a
    /// batch).
    pub fn append_checked<C, T>(
        &self,
        kind: RecordKind,
        payload: &[u8],
        check: impl FnOnce() -> Result<C>,
        apply: impl FnOnce(u64, C) -> T,
    ) -> Result<(u64, T)> {
        let mut g = self.inner.lock();
        if let Some(e) = &g.poisoned {
            return Err(poisoned(e));
        }
        let checked = check()?;
        let seq = g.next_seq;
        // Sealed under the lock: the sequence number is bound into it.
        let sealed = match &g.seal {
            Some(seal) => Some(seal_payload(seal.as_ref(), seq, kind, payload)?),
            None => None,
        };
        let payload = sealed.as_deref().unwrap_or(payload);
        g.next_seq += 1;
        let salt = g.salt;
        let before = g.buf.len();
        let synced = g.synced_seq;
        encode_record(&mut g.buf, salt, seq, synced, kind, payload);
        let n = (g.buf.len() - before) as u64;
        self.stats.records.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_since_rotation
            .fetch_add(n, Ordering::Relaxed);
        let out = apply(seq, checked);
        Ok((seq, out))
    }

    /// The sequence number of the last record appended.
    pub fn last_seq(&self) -> u64 {
        self.inner.lock().next_seq - 1
    }

    /// Returns once record `seq` is written to the operating system and, if
    /// `durable`, synced to stable storage. Concurrent callers share one
    /// write and one sync.
    pub fn commit(&self, seq: u64, durable: bool) -> Result<()> {
        let mut g = self.inner.lock();
        loop {
            if let Some(e) = &g.poisoned {
                // A writer whose record was in the failed write gets that
                // failure's own kind (StorageFull for ENOSPC), so a caller
                // can tell a full disk; later writers get Poisoned. (Found
                // by tests/it/os_faults.rs: every put on a full disk used to
                // fail as Poisoned, hiding ENOSPC.)
                return Err(if seq <= g.failed_through {
                    e.clone()
                } else {
                    poisoned(e)
                });
            }
            let done = if durable { g.synced_seq } else { g.written_seq };
            if done >= seq {
                return Ok(());
            }
            if g.flushing {
                self.flushed.wait(&mut g);
                continue;
            }
            g.flushing = true;
            let mut buf = std::mem::take(&mut g.buf);
            let last = g.next_seq - 1;
            // After a sync, a marker vouches for everything through `last`.
            // A flush that does not sync ends its own write with a marker
            // saying what is known synced: in the same boot the last
            // acknowledged record then never sits at the very end, where a
            // flipped bit could pass for an unfinished write (found by
            // review: a last `append_log` ending in zero bytes, flipped,
            // was cut under OsBuffered). It rides in the same write, so it
            // costs no system call; a kill cuts a prefix of that write,
            // and records before the cut were not acknowledged yet.
            let marker_through = if durable {
                Some(last)
            } else {
                if !buf.is_empty() {
                    let now = unix_ms();
                    let marker = Marker {
                        synced_through: g.synced_seq,
                        unix_ms: now,
                        boot_id: self.boot_id,
                    };
                    encode_marker(&mut buf, g.salt, &marker);
                    self.stats.markers.fetch_add(1, Ordering::Relaxed);
                }
                None
            };
            drop(g);
            let leader = LeaderGuard::new(self, last);
            let result = self.write_and_sync(&buf, durable, marker_through, None);
            leader.finished();
            g = self.inner.lock();
            self.finish_flush(&mut g, result, last, durable, buf);
        }
    }

    /// Whether record `seq` is written to the operating system and, if
    /// `durable`, synced: what [`Journal::commit`] waits for. After a failed
    /// commit, it tells a record that had made it before the failure (a
    /// later flush failed) from one that was lost with it.
    pub fn committed(&self, seq: u64, durable: bool) -> bool {
        let g = self.inner.lock();
        seq <= if durable { g.synced_seq } else { g.written_seq }
    }

    /// Syncs everything appended so far (for the interval policy).
    pub fn sync_all_appended(&self) -> Result<()> {
        let seq = self.last_seq();
        self.commit(seq, true)
    }

    /// Ends the active segment at the current sequence number `S`: every
    /// record up to `S` is written and synced to it, and later records go to
    /// a new segment. `snapshot(S)` runs under the ordering lock, so it sees
    /// exactly the state after record `S`. Returns `S`, the id of the new
    /// segment, and the snapshot.
    pub fn rotate<T>(&self, snapshot: impl FnOnce(u64) -> T) -> Result<(u64, u64, T)> {
        let new_id = self.next_segment_id.fetch_add(1, Ordering::Relaxed);
        let mut g = self.inner.lock();
        loop {
            if let Some(e) = &g.poisoned {
                return Err(poisoned(e));
            }
            if !g.flushing {
                break;
            }
            self.flushed.wait(&mut g);
        }
        let last = g.next_seq - 1;
        // The snapshot comes first: if it panics, the journal's bookkeeping
        // is untouched and the lock is released by the unwind.
        let snap = snapshot(last);
        g.flushing = true;
        let buf = std::mem::take(&mut g.buf);
        let (next, seal) = match segment_header(
            new_id,
            last + 1,
            self.store_id,
            self.boot_id,
            self.sealing.as_deref(),
        ) {
            Ok(made) => made,
            Err(e) => {
                g.buf = buf;
                g.flushing = false;
                self.flushed.notify_all();
                return Err(e);
            }
        };
        g.salt = next.salt;
        g.seal = seal;
        self.stats.bytes_since_rotation.store(0, Ordering::Relaxed);
        drop(g);
        let leader = LeaderGuard::new(self, last);
        // No marker at a rotation: the old segment is synced whole before
        // the new one exists, and an unsynced marker after its last record
        // would be bytes a later segment vouches for.
        let result = self.write_and_sync(&buf, true, None, Some(next));
        leader.finished();
        g = self.inner.lock();
        let failed = result.as_ref().err().cloned();
        self.finish_flush(&mut g, result, last, true, buf);
        match failed {
            Some(e) => Err(e),
            None => Ok((last, new_id, snap)),
        }
    }

    /// The id of the segment records are being written to (or will be).
    pub fn active_segment_id(&self) -> u64 {
        self.active.lock().header.id
    }

    /// Whether an earlier failure poisoned the journal.
    pub fn poisoned(&self) -> Option<Error> {
        self.inner.lock().poisoned.as_ref().map(poisoned)
    }

    fn finish_flush(
        &self,
        g: &mut Inner,
        result: Result<()>,
        last: u64,
        durable: bool,
        mut buf: Vec<u8>,
    ) {
        g.flushing = false;
        match result {
            Ok(()) => {
                g.written_seq = g.written_seq.max(last);
                if durable {
                    g.synced_seq = g.synced_seq.max(last);
                }
                // Give the buffer's allocation back for the next flush.
                if g.buf.is_empty() {
                    buf.clear();
                    g.buf = buf;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "journal write failed; refusing further writes until reopened");
                g.poisoned = Some(e);
                g.failed_through = last;
            }
        }
        self.flushed.notify_all();
    }

    /// The store id every segment of this journal carries.
    pub fn store_id(&self) -> Id128 {
        self.store_id
    }

    /// Writes `buf` to the active segment, syncs it if `durable`, writes a
    /// sync marker vouching for everything through `marker_through` if
    /// given (not synced), and then, if `rotate_to` is given, makes that
    /// the active segment.
    fn write_and_sync(
        &self,
        buf: &[u8],
        durable: bool,
        marker_through: Option<u64>,
        rotate_to: Option<SegmentHeader>,
    ) -> Result<()> {
        let mut active = self.active.lock();
        let active = &mut *active;
        if !buf.is_empty() {
            self.write_at_end(active, buf, !durable)?;
        }
        if durable && let Some(file) = active.file.as_mut() {
            // Sync the segment so the records are acknowledged only once they
            // survive power loss.
            let started = std::time::Instant::now();
            file.sync_data()?;
            // Published only after the sync returned: a reader copying
            // these bytes copies what survives power loss, and nothing
            // after them (the marker below is not synced).
            *self.synced_end.lock() = SyncedEnd {
                segment: active.header.id,
                end: active.len,
            };
            let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.stats.sync_nanos.fetch_add(nanos, Ordering::Relaxed);
            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(synced_through) = marker_through
            && active.file.is_some()
        {
            // The marker goes out before the writers are released, and is
            // not synced: after a kill it is whole in the page cache, so
            // damage before it can only be corruption. Power loss may take
            // it; then the rules without markers judge the damage
            // (docs/recovery.md, "Sync markers").
            let now = unix_ms();
            let mut frame = Vec::with_capacity(record::MARKER_FRAME_LEN);
            let marker = Marker {
                synced_through,
                unix_ms: now,
                boot_id: self.boot_id,
            };
            encode_marker(&mut frame, active.header.salt, &marker);
            self.write_at_end(active, &frame, false)?;
            self.stats.markers.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(next) = rotate_to {
            *active = Active::new(next);
        }
        Ok(())
    }

    /// Writes `bytes` at the end of the active segment (creating it first),
    /// into zeros written ahead of them. With `mapped` (a flush that does
    /// not sync: `OsBuffered`, and `SyncEveryInterval` between its syncs),
    /// the bytes are copied through a shared map of the segment, where the
    /// filesystem offers one: no system call. Otherwise, and for a flush
    /// that syncs anyway, a `pwrite`, which reports a failing disk as an
    /// error rather than a fault.
    fn write_at_end(&self, active: &mut Active, bytes: &[u8], mapped: bool) -> Result<()> {
        if active.file.is_none() {
            let header_len = active.header.len() as u64;
            let size = header_len + self.preallocate_bytes;
            active.file = Some(create_segment(&*self.fs, &active.header, size)?);
            active.len = header_len;
            active.allocated = size;
        }
        let end = active.len + bytes.len() as u64;
        if self.preallocate_bytes > 0 {
            self.make_room(active, end, mapped)?;
            if mapped
                && active
                    .map
                    .as_ref()
                    .is_none_or(|m| m.len() < active.allocated)
            {
                self.remap(active)?;
            }
        }
        match active.map.as_mut() {
            Some(map) if mapped && end <= map.len() => map.write_at(active.len, bytes)?,
            _ => active
                .file
                .as_mut()
                .expect("created above")
                .write_all_at(active.len, bytes)?,
        }
        active.len = end;
        Ok(())
    }

    /// Makes the zeros reach at least `end`, adding more ahead of the
    /// records when they do not: the same amount again as the segment
    /// holds, at least `preallocate_bytes`, at most 16 MiB. For a flush
    /// that syncs they are written as zeros, so that the syncs after it
    /// flush only data into written blocks, not the conversion of
    /// allocated-but-unwritten extents (on a journaled ext4, a journal
    /// commit per sync; on the benchmark machine's ext4, which has no
    /// journal, the two measured the same: `docs/decisions.md`, "segment
    /// recycling, measured and not done"); they go out with this flush's
    /// records, and its sync
    /// flushes both. For a flush through the map (`mapped`), which does not
    /// sync, the space is only allocated (`fallocate`): copying megabytes
    /// of zeros into the page cache was a sixth of a buffered put's time
    /// (perf, `examples/put_loop.rs`). (Growing on a thread of the
    /// journal's own was measured and rejected: `docs/decisions.md`,
    /// "2026-12-02, issue 10: the journal's write path".)
    fn make_room(&self, active: &mut Active, end: u64, mapped: bool) -> Result<()> {
        if end > active.allocated {
            let step = active
                .allocated
                .max(self.preallocate_bytes)
                .min(PREALLOCATE_STEP_MAX_BYTES);
            let new_size = end.max(active.allocated + step);
            let file = active.file.as_mut().expect("created before");
            if mapped {
                file.allocate(new_size)?;
            } else {
                let zeros = vec![0u8; (new_size - active.allocated) as usize];
                file.write_all_at(active.allocated, &zeros)?;
            }
            active.allocated = new_size;
        }
        Ok(())
    }

    /// Maps the segment up to the end of the zeros written ahead, where
    /// the filesystem offers a map. The old map goes first: a segment is
    /// mapped once at a time.
    fn remap(&self, active: &mut Active) -> Result<()> {
        active.map = None;
        let file = active.file.as_mut().expect("created before it is mapped");
        active.map = file.map(active.allocated)?;
        Ok(())
    }
}

/// The header of a new segment: the current format, a fresh salt, and in
/// an encrypted store its cipher header with what seals its records.
fn segment_header(
    id: u64,
    first_seq: u64,
    store_id: Id128,
    boot_id: Option<Id128>,
    sealing: Option<&dyn Sealing>,
) -> Result<(SegmentHeader, Option<Arc<dyn RecordSeal>>)> {
    let mut h = SegmentHeader::new(id, new_salt(), first_seq);
    h.store_id = Some(store_id);
    h.boot_id = boot_id;
    let seal = match sealing {
        Some(s) => {
            let (cipher, seal) = s.new_segment()?;
            h.cipher = Some(cipher);
            Some(seal)
        }
        None => None,
    };
    Ok((h, seal))
}

/// `payload` sealed as record `seq` of `kind`, refused if sealing takes it
/// past the largest payload a record may hold.
fn seal_payload(
    seal: &dyn RecordSeal,
    seq: u64,
    kind: RecordKind,
    payload: &[u8],
) -> Result<Vec<u8>> {
    let sealed = seal.seal(seq, kind as u8, payload)?;
    if sealed.len() > record::RECORD_PAYLOAD_MAX as usize {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "a record of {} bytes is over the limit of {} once sealed",
                payload.len(),
                record::RECORD_PAYLOAD_MAX
            ),
        ));
    }
    Ok(sealed)
}

/// The wall clock in unix milliseconds (0 before 1970).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A fresh random 128-bit store id (never all zero, which means "none").
pub fn new_store_id() -> Id128 {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&new_salt().to_le_bytes());
    id[8..].copy_from_slice(&new_salt().to_le_bytes());
    if id == [0; 16] {
        id[0] = 1;
    }
    id
}

/// Held by the group-commit leader while it flushes without the lock. If
/// the flush unwinds (a panic in the filesystem layer), dropping the guard
/// poisons the journal and wakes every waiting writer, who then gets an
/// error instead of waiting for ever on a `flushing` that never clears.
//
// Regression (issue 8, part 5): a panic between taking `flushing` and
// `finish_flush` left `flushing` set, and every later writer hung.
struct LeaderGuard<'a> {
    journal: &'a Journal,
    last: u64,
}

impl<'a> LeaderGuard<'a> {
    /// Call only without `inner` locked: the guard's drop takes it.
    fn new(journal: &'a Journal, last: u64) -> LeaderGuard<'a> {
        LeaderGuard { journal, last }
    }

    /// The flush returned (successfully or not); `finish_flush` does the rest.
    fn finished(self) {
        std::mem::forget(self);
    }
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        let cause = Error::new(
            ErrorKind::Poisoned,
            "a journal flush panicked mid-write; what it wrote is unknown",
        );
        tracing::error!(error = %cause, "refusing further writes until reopened");
        let mut g = self.journal.inner.lock();
        g.flushing = false;
        g.poisoned = Some(cause);
        g.failed_through = self.last;
        self.journal.flushed.notify_all();
    }
}

/// Creates a segment atomically: its header is written to a temp file,
/// synced, renamed into place and the directory synced, so a segment file
/// never exists with a torn header.
fn create_segment(fs: &dyn Fs, header: &SegmentHeader, size: u64) -> Result<Box<dyn FsFile>> {
    let name = segment_name(header.id);
    let mut bytes = vec![0u8; size as usize];
    let encoded = header.encode();
    bytes[..encoded.len()].copy_from_slice(&encoded);
    fs::write_atomic(fs, JOURNAL_DIR, &name, &bytes)?;
    fs.open(&fs::join(JOURNAL_DIR, &name), OpenMode::Existing)
}

fn poisoned(cause: &Error) -> Error {
    Error::new(
        ErrorKind::Poisoned,
        format!(
            "the journal refuses writes after an earlier write or sync failed ({cause}); \
             reopen the store to recover what is durable"
        ),
    )
}

/// A fresh random salt. std's `RandomState` is seeded from the OS per process;
/// the counter keeps salts of one process distinct.
fn new_salt() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}
