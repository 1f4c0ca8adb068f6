//! The shipper: a thread of the store's own that copies what the journal
//! has already synced into the bucket, on a tick (`replicate_interval`).
//! It reads segment files and `state.json` through the store's `Fs`, never
//! takes a lock of the write path, and waits on the bucket only on its own
//! thread: a slow or dead bucket delays shipping, never a put.
//!
//! Each tick: claim the prefix and pick the generation (once), ship the
//! current `state.json` if it changed, then each local segment from where
//! the generation's objects end: a sealed segment to the end of its last
//! valid frame, the active one to the journal's synced end. What it has
//! shipped whole is what the retention gate lets the checkpoint remove.

use super::layout::{self, Inventory};
use super::prune::{self, HeaderCache};
use super::runtime::{Bucket, Put};
use crate::checkpoint::RetentionGate;
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Subscribers};
use crate::fs::{self, FileStat, Fs};
use crate::journal::{JOURNAL_DIR, SyncedEnd, parse_segment_name};
use crate::metrics::ReplicaMetrics;
use parking_lot::{Condvar, Mutex};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// What the shipper needs to know of the journal, without importing it:
/// the engine implements it over its journal.
pub(crate) trait JournalView: Send + Sync {
    /// Where the synced records end; `None` once the store is gone.
    fn synced_end(&self) -> Option<SyncedEnd>;
    /// The id of the segment records are being written to; `None` once
    /// the store is gone.
    fn active_segment(&self) -> Option<u64>;
    /// The CRC-32 of the `state.json` the store last wrote or loaded, and
    /// the `journal_seq` it holds, when known without waiting for a
    /// checkpoint under way: the shipper then need not parse a file with
    /// that CRC to name its object.
    fn checkpoint(&self) -> Option<(u32, u64)>;
}

/// How long closing a store waits for the replica's last tick. Past it,
/// the thread is left to finish (or fail) on its own: a bucket that does
/// not answer never holds a close for object_store's minutes of retries.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// The most bytes of a segment one object holds, unless a single frame is
/// larger (a record may be up to 64 MiB): a longer range is shipped as
/// several objects, each ending at a frame. A sealed segment grows to four
/// times `checkpoint_journal_bytes` before a deferred checkpoint must run
/// (256 MiB by default, more if that is raised), and the shipper holds one
/// object in memory at a time; 8 MiB pieces keep that small, and keep every
/// put a single request well under each backend's single-put limit (5 GiB
/// on S3), so no multipart upload is needed (`docs/decisions.md`).
pub(crate) const OBJECT_BYTES_MAX: u64 = 8 * 1024 * 1024;

/// How much of a segment is read at a time while walking its frames.
const SCAN_CHUNK_BYTES: u64 = 1024 * 1024;

/// How long an open waits for the bucket's answer to the claim. Past it,
/// the open goes on and the shipper checks the claim before its first
/// upload: a bucket that hangs never holds an open for a request's
/// timeout.
const CLAIM_WAIT: Duration = Duration::from_secs(3);

/// What a replica has done, for health, metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaStatus {
    /// The generation being shipped to, once chosen.
    pub generation: Option<String>,
    /// The newest segment shipped to, and where its shipped bytes end.
    pub shipped_segment: u64,
    /// Where the shipped bytes of `shipped_segment` end.
    pub shipped_end: u64,
    /// The last record shipped in a segment object (0: none yet).
    pub shipped_seq: u64,
    /// Records the store has journaled that the bucket does not hold yet
    /// (in a segment object or under a checkpoint object): the lag in
    /// records.
    pub lag_records: u64,
    /// The `journal_seq` of the newest checkpoint shipped.
    pub checkpoint_seq: Option<u64>,
    /// Objects written.
    pub objects_shipped: u64,
    /// Bytes written.
    pub bytes_shipped: u64,
    /// Ticks that failed.
    pub errors: u64,
    /// The last failure, if the last tick failed.
    pub last_error: Option<String>,
    /// When a tick last shipped everything it found.
    pub last_success: Option<SystemTime>,
    /// Bytes of sealed segments not shipped yet.
    pub backlog_bytes: u64,
    /// Times the disk budget let a checkpoint remove unshipped segments.
    pub budget_overruns: u64,
    /// True from a budget overrun until a tick that began after it has
    /// shipped everything it found (the new generation's base included).
    pub past_budget: bool,
    /// Objects deleted from the bucket as older than the retention window.
    pub objects_pruned: u64,
}

/// The part shared between the shipper thread, the store and the
/// checkpoint (as its retention gate).
#[derive(Debug)]
pub(crate) struct Shared {
    /// Segments with this id or a greater one are not shipped whole.
    keep_from: AtomicU64,
    backlog_bytes: AtomicU64,
    backlog_bytes_max: u64,
    /// Set when the budget let segments go unshipped: the generation has a
    /// hole, and the next tick starts a new one.
    overrun: AtomicBool,
    status: Mutex<ReplicaStatus>,
    /// The store's subscribers, for the replica's events.
    subscribers: Arc<Subscribers>,
    /// (stop, kick)
    flags: Mutex<(bool, bool)>,
    wake: Condvar,
}

impl RetentionGate for Shared {
    fn keep_from(&self) -> u64 {
        let keep = self.keep_from.load(Ordering::Acquire);
        let backlog = self.backlog_bytes.load(Ordering::Acquire);
        if backlog <= self.backlog_bytes_max {
            return keep;
        }
        // The local disk comes first: past the budget, covered segments go
        // whether shipped or not, and the replica says so loudly.
        tracing::error!(
            backlog_bytes = backlog,
            budget = self.backlog_bytes_max,
            "replica backlog past its budget: removing unshipped journal segments; \
             the replica starts a new generation from the next checkpoint"
        );
        self.overrun.store(true, Ordering::Release);
        {
            let mut s = self.status.lock();
            s.budget_overruns += 1;
            s.past_budget = true;
        }
        // Queued only: the checkpoint calling this holds the store's locks,
        // and delivers once it has released them.
        self.subscribers.emit(Event::ReplicaGap {
            backlog_bytes: backlog,
            backlog_bytes_max: self.backlog_bytes_max,
        });
        u64::MAX
    }
}

/// A running replica: the shipper thread and its shared state.
#[derive(Debug)]
pub(crate) struct Replica {
    shared: Arc<Shared>,
    url: String,
    thread: Option<JoinHandle<()>>,
    /// Closed by the thread when it returns.
    finished: Mutex<mpsc::Receiver<()>>,
}

/// How a replica paces itself, from `Options`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// `replicate_interval`.
    pub(crate) interval: Duration,
    /// `replica_backlog_bytes_max`.
    pub(crate) backlog_bytes_max: u64,
    /// The retention window in the bucket.
    pub(crate) retention: Duration,
}

impl Replica {
    /// Starts shipping the store in `fs` (whose identity is `store_id`,
    /// 32 hex digits) to `bucket`.
    pub(crate) fn start(
        bucket: Bucket,
        fs: Arc<dyn Fs>,
        journal: Arc<dyn JournalView>,
        store_id: String,
        subscribers: Arc<Subscribers>,
        pace: Pace,
    ) -> Result<Replica> {
        let Pace {
            interval,
            backlog_bytes_max,
            retention,
        } = pace;
        let shared = Arc::new(Shared {
            // Nothing is known to be shipped until the first tick says so.
            keep_from: AtomicU64::new(0),
            backlog_bytes: AtomicU64::new(0),
            backlog_bytes_max,
            overrun: AtomicBool::new(false),
            status: Mutex::default(),
            subscribers,
            flags: Mutex::default(),
            wake: Condvar::new(),
        });
        let url = bucket.url().to_string();
        // Read before the open's own checkpoints can replace it: the state
        // the local journal's oldest segments continue.
        // The store's own record of its journal_seq is read now too, while
        // it still describes this file.
        // Its bytes as they are on disk: sealed in an encrypted store.
        let base = fs
            .read_raw(crate::layout::STATE_FILE)?
            .map(|bytes| (bytes, journal.checkpoint()));
        let mut shipper = Shipper {
            bucket,
            fs,
            journal,
            store_id,
            shared: shared.clone(),
            generation: None,
            shipped: BTreeMap::new(),
            sealed_end: BTreeMap::new(),
            salts: BTreeMap::new(),
            checkpoint_stat: None,
            base,
            pending: None,
            floor: 0,
            retention,
            last_prune: None,
            headers: HeaderCache::new(),
            open_id: crate::journal::new_store_id()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            epoch: None,
            superseded: None,
        };
        // The claim is checked before the open returns, so that a second
        // store on the prefix is an error its caller sees; any other
        // failure (the bucket unreachable), or no answer within
        // CLAIM_WAIT (a bucket that hangs), only delays shipping: the
        // shipper checks the claim again before its first upload.
        let (claimed, claim) = mpsc::sync_channel::<Result<()>>(1);
        let (done, finished) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("statewal-replica".into())
            .spawn(move || {
                let _ = claimed.send(shipper.claim());
                shipper.run(interval);
                drop(done);
            })
            .map_err(|e| Error::with_source(ErrorKind::Io, "cannot start the replica thread", e))?;
        let replica = Replica {
            shared,
            url,
            thread: Some(thread),
            finished: Mutex::new(finished),
        };
        match claim.recv_timeout(CLAIM_WAIT) {
            // Dropping the replica stops its thread (after one more tick,
            // whose claim fails the same way).
            Ok(Err(e)) if e.kind() == ErrorKind::Conflict => return Err(e),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "replica: cannot reach the bucket yet; retrying")
            }
            Err(_) => tracing::warn!(
                "replica: the bucket did not answer within {CLAIM_WAIT:?}; \
                 opening without waiting (shipping checks the claim first)"
            ),
            Ok(Ok(())) => {}
        }
        Ok(replica)
    }

    /// The gate the checkpoint consults before removing segments.
    pub(crate) fn gate(&self) -> Arc<dyn RetentionGate> {
        self.shared.clone()
    }

    /// What has been shipped, for a store whose last journaled record
    /// is `last_seq`.
    pub(crate) fn status(&self, last_seq: u64) -> ReplicaStatus {
        let mut s = self.shared.status.lock().clone();
        s.backlog_bytes = self.shared.backlog_bytes.load(Ordering::Acquire);
        let shipped = s.shipped_seq.max(s.checkpoint_seq.unwrap_or(0));
        s.lag_records = last_seq.saturating_sub(shipped);
        s
    }

    /// [`Replica::status`] as the store's metrics and health show it.
    pub(crate) fn metrics(&self, last_seq: u64) -> ReplicaMetrics {
        let s = self.status(last_seq);
        let lag_seconds = match (s.lag_records, s.last_success) {
            (0, _) => Some(0.0),
            (_, Some(t)) => Some(t.elapsed().map_or(0.0, |d| d.as_secs_f64())),
            (_, None) => None,
        };
        ReplicaMetrics {
            url: self.url.clone(),
            generation: s.generation,
            shipped_seq: s.shipped_seq,
            checkpoint_seq: s.checkpoint_seq,
            lag_records: s.lag_records,
            lag_seconds,
            objects_shipped: s.objects_shipped,
            bytes_shipped: s.bytes_shipped,
            errors: s.errors,
            failing: s.last_error.is_some(),
            last_error: s.last_error,
            last_success: s.last_success.map(rfc3339),
            backlog_bytes: s.backlog_bytes,
            backlog_bytes_max: self.shared.backlog_bytes_max,
            budget_overruns: s.budget_overruns,
            past_budget: s.past_budget,
        }
    }

    /// Ships what there is once more, then stops the thread; waits for
    /// that at most [`STOP_WAIT`].
    pub(crate) fn stop(&mut self) {
        *self.shared.flags.lock() = (true, true);
        self.shared.wake.notify_all();
        let Some(t) = self.thread.take() else {
            return;
        };
        match self.finished.lock().recv_timeout(STOP_WAIT) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!(
                    "replica: the last shipment did not finish within {STOP_WAIT:?}; \
                     closing without waiting (the next open resumes from the bucket)"
                );
            }
            _ => {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The CRC-32 and `journal_seq` of a `state.json` the store wrote or
/// loaded.
type Vouched = (u32, u64);

struct Shipper {
    bucket: Bucket,
    fs: Arc<dyn Fs>,
    journal: Arc<dyn JournalView>,
    store_id: String,
    shared: Arc<Shared>,
    /// The generation shipped to, once chosen.
    generation: Option<String>,
    /// Per segment: where the generation's joined objects end.
    shipped: BTreeMap<u64, u64>,
    /// Per sealed segment: where its last valid frame ends.
    sealed_end: BTreeMap<u64, u64>,
    /// Per segment: the salt of its record checksums, from its header.
    salts: BTreeMap<u64, u64>,
    /// The stat of the `state.json` last shipped.
    checkpoint_stat: Option<FileStat>,
    /// The `state.json` the store opened with, read before its open's own
    /// checkpoints ran, until the first tick has shipped it. A generation
    /// begun at the first tick ships every local segment, some of them
    /// older than the `state.json` of that moment, which checkpoints may
    /// have replaced since the open (between the open and the first tick,
    /// or while the bucket could not be reached): this is the checkpoint
    /// those segments continue, without which a restore to a record
    /// between it and the next shipped checkpoint has no base.
    /// With it, the store's (CRC-32, journal_seq) of the `state.json` it
    /// loaded, as at the open.
    base: Option<(Vec<u8>, Option<Vouched>)>,
    /// The range (segment, start, end) whose put failed last: it may have
    /// landed all the same (an answer lost, a request that timed out after
    /// the bucket stored it), so it is put again as it was, never as a
    /// longer range from the same start, which would overlap it.
    pending: Option<(u64, u64, u64)>,
    /// Local segments below this id were shipped, and the generation's
    /// objects of them pruned from the bucket: they are not shipped again.
    floor: u64,
    /// The bucket's retention window.
    retention: Duration,
    /// When the shipper last pruned the bucket.
    last_prune: Option<Instant>,
    /// Segment headers read by the prune.
    headers: HeaderCache,
    /// This open's random id, in its epoch objects.
    open_id: String,
    /// This open's epoch, once written.
    epoch: Option<u64>,
    /// Set when another open of the store ships to the prefix: the
    /// error every tick reports from then on.
    superseded: Option<String>,
}

impl Shipper {
    fn run(&mut self, interval: Duration) {
        loop {
            let stop = {
                let mut f = self.shared.flags.lock();
                if !f.1 {
                    self.shared.wake.wait_for(&mut f, interval);
                }
                f.1 = false;
                f.0
            };
            // An overrun after this point is not resolved by this tick.
            let overruns_before = self.shared.status.lock().budget_overruns;
            let result = self.tick();
            let shipped = result.is_ok();
            let mut s = self.shared.status.lock();
            let event = match result {
                Ok(()) => {
                    let recovered = s.last_error.take().is_some();
                    if recovered {
                        tracing::info!("replica: shipping again");
                    }
                    s.last_success = Some(SystemTime::now());
                    if s.budget_overruns == overruns_before {
                        s.past_budget = false;
                    }
                    recovered.then_some(Event::ReplicaRecovered)
                }
                Err(e) => {
                    let message = e.to_string();
                    let started = s.last_error.is_none();
                    // Once per cause, not once a second while a bucket is down.
                    if s.last_error.as_deref() != Some(message.as_str()) {
                        tracing::warn!(error = %e, "replica: shipping failed; retrying every tick");
                    }
                    s.errors += 1;
                    s.last_error = Some(message.clone());
                    started.then_some(Event::ReplicaFailing(message))
                }
            };
            drop(s);
            // This thread holds none of the store's locks: it delivers its
            // own events (and any a checkpoint left queued).
            if let Some(event) = event {
                self.shared.subscribers.emit(event);
            }
            self.shared.subscribers.deliver();
            if stop {
                return;
            }
            // After the tick's outcome is published, and never on the last
            // tick: a close does not wait for a prune.
            if shipped {
                self.prune_if_due();
            }
        }
    }

    /// Deletes what is older than the retention window from the bucket, at
    /// most once per [`prune::interval`]; the first time after the first
    /// tick that shipped. A failure is logged and tried again next time:
    /// the bucket keeps more than it must meanwhile, never less.
    fn prune_if_due(&mut self) {
        let every = prune::interval(self.retention);
        if self.last_prune.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        self.last_prune = Some(Instant::now());
        let now = SystemTime::now();
        match prune::run(
            &self.bucket,
            self.retention,
            now,
            usize::MAX,
            &mut self.headers,
        ) {
            Ok(report) if !report.deleted.is_empty() => {
                tracing::info!(
                    deleted = report.deleted.len(),
                    "replica: pruned objects older than the retention window"
                );
                self.shared.status.lock().objects_pruned += report.deleted.len() as u64;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "replica: pruning the bucket failed; retrying later")
            }
        }
    }

    /// Writes the claim, or checks that the one there is this store's.
    fn claim(&self) -> Result<()> {
        let body = format!(
            "{{\"statewal_replica\":{},\"store_id\":\"{}\"}}\n",
            layout::CLAIM_VERSION,
            self.store_id
        );
        if self.bucket.put_new(layout::CLAIM, body.into_bytes())? == Put::Created {
            return Ok(());
        }
        let bytes = self.bucket.get(layout::CLAIM)?.unwrap_or_default();
        let owner = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("store_id")?.as_str().map(str::to_string));
        match owner {
            Some(id) if id == self.store_id => Ok(()),
            other => Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "replica {} belongs to another store ({}; this store is {}): \
                     give each store a prefix of its own",
                    self.bucket.url(),
                    other.as_deref().unwrap_or("its claim does not parse"),
                    self.store_id
                ),
            )),
        }
    }

    fn tick(&mut self) -> Result<()> {
        // The backlog is the local disk's business: it is counted even
        // while the bucket cannot be reached.
        let Some(active) = self.journal.active_segment() else {
            return Ok(()); // The store is gone.
        };
        let ids = self.local_segments()?;
        for &id in ids.iter().filter(|&&id| id < active) {
            self.sealed_end_of(id)?;
        }
        self.publish_backlog(&ids, active);
        if let Some(message) = &self.superseded {
            return Err(Error::new(ErrorKind::Conflict, message.clone()));
        }
        if self.generation.is_none() {
            self.claim()?;
            self.choose_generation()?;
        }
        if self.shared.overrun.swap(false, Ordering::AcqRel) {
            // Segments after the opening checkpoint are gone unshipped: the
            // new generation begins at the current one.
            self.base = None;
            self.new_generation();
        }
        self.check_epoch()?;
        self.ship_checkpoint()?;
        self.ship_segments()
    }

    /// Takes the prefix over (a new epoch), then resumes the bucket's
    /// newest generation if the local journal continues it, else begins a
    /// new one. A resumed generation is read again after the epoch is
    /// written: a copy of this store that shipped to it meanwhile is seen,
    /// and one still shipping finds the new epoch and stops.
    fn choose_generation(&mut self) -> Result<()> {
        let names = self.bucket.list()?;
        let inv = Inventory::of(names.iter().map(|(n, _)| n.as_str()));
        if let Some((id, g)) = inv.newest()
            && self.continues(g)?
        {
            let id = id.to_string();
            self.take_epoch(inv.epochs.last().map_or(1, |e| e + 1))?;
            let names = self.bucket.list()?;
            let inv = Inventory::of(names.iter().map(|(n, _)| n.as_str()));
            if let Some(g) = inv.generations.get(&id)
                && self.continues(g)?
            {
                self.shipped = g.segments.keys().map(|&s| (s, g.shipped_end(s))).collect();
                // A generation ships every local segment from its first, so
                // a local segment below its lowest one was shipped and
                // pruned.
                self.floor = g.segments.keys().next().copied().unwrap_or(0);
                tracing::info!(
                    generation = %id,
                    "replica: resuming the generation in the bucket"
                );
                self.shared.status.lock().generation = Some(id.clone());
                self.generation = Some(id);
                return Ok(());
            }
        }
        if self.epoch.is_none() {
            self.take_epoch(inv.epochs.last().map_or(1, |e| e + 1))?;
        }
        self.new_generation();
        Ok(())
    }

    /// Writes this open's epoch `epoch`, create-only, before it ships
    /// anything. Found there already: another open took the same epoch at
    /// the same moment, and this one stops.
    fn take_epoch(&mut self, epoch: u64) -> Result<()> {
        let body = format!(
            "{{\"store_id\":\"{}\",\"open_id\":\"{}\"}}\n",
            self.store_id, self.open_id
        );
        let name = layout::epoch_object(epoch);
        if self.bucket.put_new(&name, body.into_bytes())? == Put::Exists {
            return Err(self.supersede(epoch));
        }
        self.epoch = Some(epoch);
        Ok(())
    }

    /// Fails, now and at every later tick, because another open of this
    /// store ships to the prefix as its `epoch`-th shipper.
    fn supersede(&mut self, epoch: u64) -> Error {
        let message = format!(
            "replica {}: another open of this store (epoch {epoch}) ships there too; \
             this one stopped shipping. Two live copies of \
             one store (the original and a restored or copied directory) must not share a \
             prefix: close one, or give it a prefix of its own",
            self.bucket.url()
        );
        tracing::error!("{message}");
        self.superseded = Some(message.clone());
        Error::new(ErrorKind::Conflict, message)
    }

    /// Whether another open of this store ships to the prefix since this
    /// one began: the epoch after this one's exists.
    fn check_epoch(&mut self) -> Result<()> {
        let Some(epoch) = self.epoch else {
            return Ok(());
        };
        if self
            .bucket
            .get_range(&layout::epoch_object(epoch + 1), 0..1)?
            .is_some()
        {
            return Err(self.supersede(epoch + 1));
        }
        Ok(())
    }

    /// Whether the local journal holds, byte for byte, the end of what
    /// generation `g` shipped last: its newest segment's last joined
    /// object.
    fn continues(&self, g: &layout::Generation) -> Result<bool> {
        let Some((&segment, _)) = g.segments.iter().next_back() else {
            return Ok(false);
        };
        let (joined, gap) = g.joined(segment);
        let Some(last) = joined.last() else {
            return Ok(false);
        };
        if gap.is_some() {
            return Ok(false);
        }
        let rel = fs::join(JOURNAL_DIR, &crate::journal::segment_name(segment));
        let bytes = self.fs.read_at(&rel, last.start, last.end - last.start)?;
        Ok(bytes.is_some_and(|b| {
            b.len() as u64 == last.end - last.start && crc32fast::hash(&b) == last.crc
        }))
    }

    fn new_generation(&mut self) {
        let id = layout::generation_id(unix_ms(), random_u32());
        tracing::info!(generation = %id, "replica: beginning a new generation");
        self.shipped.clear();
        self.floor = 0;
        // Nothing of the new generation is shipped: every local segment is
        // kept until a tick says otherwise (not the old generation's bound).
        self.shared.keep_from.store(0, Ordering::Release);
        self.checkpoint_stat = None;
        self.pending = None;
        self.shared.status.lock().generation = Some(id.clone());
        self.generation = Some(id);
    }

    /// Ships the opening `state.json` if not yet done, then `state.json` if
    /// it changed since it was last shipped.
    fn ship_checkpoint(&mut self) -> Result<()> {
        if let Some((bytes, known)) = &self.base {
            // Once per open; an object already there (a resumed generation)
            // counts as shipped.
            self.ship_state(bytes.clone(), *known)?;
            self.base = None;
        }
        let Some(stat) = self.fs.stat(crate::layout::STATE_FILE)? else {
            return Ok(());
        };
        if self.checkpoint_stat == Some(stat) {
            return Ok(());
        }
        let Some(bytes) = self.fs.read_raw(crate::layout::STATE_FILE)? else {
            return Ok(());
        };
        // Read again after: a checkpoint that replaced the file meanwhile
        // is shipped on the next tick.
        if let Some(journal_seq) = self.ship_state(bytes, self.journal.checkpoint())? {
            self.shared.status.lock().checkpoint_seq = Some(journal_seq);
        }
        self.checkpoint_stat = Some(stat);
        Ok(())
    }

    /// Puts the bytes of a `state.json` (as they are on disk: sealed in an
    /// encrypted store, and shipped so) as a checkpoint object of the
    /// generation; returns its `journal_seq` (`None` if it does not open
    /// or parse: not shipped). `store` is the store's (CRC-32, journal_seq)
    /// of the plain `state.json` it last wrote or loaded.
    fn ship_state(&mut self, bytes: Vec<u8>, store: Option<Vouched>) -> Result<Option<u64>> {
        let crc = crc32fast::hash(&bytes);
        let plain = match self.fs.unseal(crate::layout::STATE_FILE, &bytes) {
            Ok(plain) => plain,
            Err(e) => {
                // Replaced meanwhile by a file this store did not seal:
                // its open says so; the next checkpoint writes anew.
                tracing::warn!(reason = %e, "replica: state.json does not open; not shipped");
                return Ok(None);
            }
        };
        let plain_crc = match &plain {
            std::borrow::Cow::Borrowed(_) => crc,
            std::borrow::Cow::Owned(p) => crc32fast::hash(p),
        };
        // The bytes the store itself wrote: their journal_seq is known, and
        // parsing them (about 1 s for 100k tasks) is not needed.
        let known = store.and_then(|(c, seq)| (c == plain_crc).then_some(seq));
        let journal_seq = match known {
            Some(seq) => Some(seq),
            None => self.parsed_journal_seq(&plain)?,
        };
        drop(plain);
        let Some(journal_seq) = journal_seq else {
            return Ok(None);
        };
        let generation = self.generation.as_deref().expect("chosen before shipping");
        let name = layout::checkpoint_object(generation, journal_seq, crc);
        self.put(&name, bytes)?;
        Ok(Some(journal_seq))
    }

    /// The `journal_seq` of a `state.json` the store did not vouch for;
    /// `None` (with a warning) if it does not parse.
    fn parsed_journal_seq(&self, bytes: &[u8]) -> Result<Option<u64>> {
        let state = match crate::layout::parse_state(bytes) {
            Ok(s) => s,
            Err(e) => {
                // A file being replaced, or damaged: the journal still
                // holds its records, and the next checkpoint writes anew.
                tracing::warn!(reason = %e, "replica: state.json does not parse; not shipped");
                return Ok(None);
            }
        };
        Ok(Some(state.journal_seq))
    }

    fn ship_segments(&mut self) -> Result<()> {
        let (Some(synced), Some(active)) =
            (self.journal.synced_end(), self.journal.active_segment())
        else {
            return Ok(());
        };
        let ids = self.local_segments()?;
        let floor = self.floor;
        for &id in ids.iter().filter(|&&id| id >= floor) {
            let end = if id < active {
                self.sealed_end_of(id)?
            } else if id == synced.segment {
                synced.end
            } else {
                continue; // The active segment, nothing synced in it yet.
            };
            let mut from = self.shipped.get(&id).copied().unwrap_or(0);
            if let Some((_, _, retry)) = self
                .pending
                .filter(|&(s, start, e)| s == id && start == from && e <= end)
            {
                self.ship_range(id, from, retry)?;
                from = retry;
            }
            if end > from {
                self.ship_pieces(id, from, end)?;
            } else if end < from {
                // The local segment is shorter than what was shipped of it
                // (cut by a salvage): the generation no longer describes
                // this journal.
                tracing::warn!(
                    segment = id,
                    "replica: local journal diverged; new generation"
                );
                self.new_generation();
                return Ok(());
            }
            self.publish_backlog(&ids, active);
        }
        Ok(())
    }

    /// The ids of the local segments, ascending; forgets the ones gone.
    fn local_segments(&mut self) -> Result<Vec<u64>> {
        let mut ids: Vec<u64> = self
            .fs
            .list(JOURNAL_DIR)?
            .iter()
            .filter_map(|n| parse_segment_name(n))
            .collect();
        ids.sort_unstable();
        self.sealed_end
            .retain(|id, _| ids.binary_search(id).is_ok());
        self.salts.retain(|id, _| ids.binary_search(id).is_ok());
        Ok(ids)
    }

    /// Where the frames of sealed segment `id` end: the end of its last
    /// record or marker before any damage (zeros written ahead included).
    fn sealed_end_of(&mut self, id: u64) -> Result<u64> {
        if let Some(&end) = self.sealed_end.get(&id) {
            return Ok(end);
        }
        let end = self.walk_frames(id, 0, u64::MAX, u64::MAX)?;
        self.sealed_end.insert(id, end);
        Ok(end)
    }

    /// Ships bytes `from..end` of segment `id` (both at frames) as objects
    /// of at most [`OBJECT_BYTES_MAX`] each, unless one frame is larger.
    fn ship_pieces(&mut self, id: u64, from: u64, end: u64) -> Result<()> {
        let mut at = from;
        while at < end {
            let cut = match end - at <= OBJECT_BYTES_MAX {
                true => end,
                false => self.walk_frames(id, at, end, OBJECT_BYTES_MAX)?,
            };
            // No whole frame found from `at` (the file changed under us):
            // the rest in one object, as the range was decided.
            let cut = if cut > at { cut } else { end };
            self.ship_range(id, at, cut)?;
            at = cut;
        }
        Ok(())
    }

    /// The salt of segment `id`'s record checksums and where its records
    /// start, from its header; `None` if it has no valid header.
    fn header_of(&mut self, id: u64) -> Result<Option<(u64, u64)>> {
        use crate::journal::record::{SEGMENT_HEADER_LEN, SegmentHeader};
        let rel = fs::join(JOURNAL_DIR, &crate::journal::segment_name(id));
        let head = self
            .fs
            .read_at(&rel, 0, SEGMENT_HEADER_LEN as u64)?
            .unwrap_or_default();
        let Ok(header) = SegmentHeader::decode(&head) else {
            return Ok(None);
        };
        self.salts.insert(id, header.salt);
        Ok(Some((header.salt, header.len() as u64)))
    }

    /// Walks the frames of segment `id` from `from` (0: past its header;
    /// else the start of a frame), reading [`SCAN_CHUNK_BYTES`] (or one
    /// frame) at a time, never the whole file. Returns the end of the last
    /// whole valid frame before damage, the file's end or `limit`, and
    /// before the first frame that would end more than `span_max` past
    /// `from` (one frame at least).
    fn walk_frames(&mut self, id: u64, from: u64, limit: u64, span_max: u64) -> Result<u64> {
        use crate::journal::record::{Decoded, decode_record};
        let Some((salt, header_len)) = self.header_of(id)? else {
            return Ok(0);
        };
        let rel = fs::join(JOURNAL_DIR, &crate::journal::segment_name(id));
        let first = from.max(header_len);
        let mut pos = first; // The file offset of `buf[at]`.
        let mut buf = Vec::new();
        let mut at = 0;
        let mut eof = false;
        loop {
            match decode_record(&buf[at..], salt) {
                Decoded::Record(_, len) => {
                    let next = pos + len as u64;
                    if next > limit || (pos > first && next - from > span_max) {
                        return Ok(pos);
                    }
                    at += len;
                    pos = next;
                }
                Decoded::Incomplete if !eof => {
                    buf.drain(..at);
                    at = 0;
                    let at_file = pos + buf.len() as u64;
                    let more = self
                        .fs
                        .read_at(&rel, at_file, SCAN_CHUNK_BYTES)?
                        .unwrap_or_default();
                    eof = (more.len() as u64) < SCAN_CHUNK_BYTES;
                    buf.extend_from_slice(&more);
                }
                // Damage, zeros written ahead, or the file's end.
                _ => return Ok(pos),
            }
        }
    }

    fn ship_range(&mut self, id: u64, from: u64, end: u64) -> Result<()> {
        let rel = fs::join(JOURNAL_DIR, &crate::journal::segment_name(id));
        let Some(bytes) = self.fs.read_at(&rel, from, end - from)? else {
            return Ok(()); // Removed meanwhile: the next tick sees it gone.
        };
        if bytes.len() as u64 != end - from {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("{rel} is shorter than its synced end {end}"),
            ));
        }
        let generation = self.generation.as_deref().expect("chosen before shipping");
        let name = layout::segment_object(generation, id, from, end, crc32fast::hash(&bytes));
        let last = self.last_seq_in(id, from, &bytes)?;
        self.pending = Some((id, from, end));
        self.put(&name, bytes)?;
        self.pending = None;
        self.shipped.insert(id, end);
        let mut s = self.shared.status.lock();
        s.shipped_segment = id;
        s.shipped_end = end;
        s.shipped_seq = s.shipped_seq.max(last.unwrap_or(0));
        Ok(())
    }

    /// The sequence number of the last record in `bytes`, which start at
    /// offset `from` of segment `id`, at a frame (a marker's frame carries
    /// a number no greater than the record before it).
    fn last_seq_in(&mut self, id: u64, from: u64, bytes: &[u8]) -> Result<Option<u64>> {
        use crate::journal::record::{Decoded, SEGMENT_HEADER_LEN, SegmentHeader, decode_record};
        let mut pos = 0;
        let salt = match self.salts.get(&id) {
            Some(&salt) => salt,
            None => {
                let rel = fs::join(JOURNAL_DIR, &crate::journal::segment_name(id));
                let head = match from {
                    0 => bytes.to_vec(),
                    _ => self
                        .fs
                        .read_at(&rel, 0, SEGMENT_HEADER_LEN as u64)?
                        .unwrap_or_default(),
                };
                let Ok(header) = SegmentHeader::decode(&head) else {
                    return Ok(None);
                };
                self.salts.insert(id, header.salt);
                header.salt
            }
        };
        if from == 0 {
            pos = SegmentHeader::decode(bytes).map_or(bytes.len(), |h| h.len());
        }
        let mut last = None;
        while let Decoded::Record(r, len) = decode_record(&bytes[pos.min(bytes.len())..], salt) {
            last = last.max(Some(r.seq));
            pos += len;
        }
        Ok(last)
    }

    /// A create-only put; an object already there under the same name holds
    /// the same bytes (the name carries the range and its CRC), so it
    /// counts as shipped.
    fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        let len = bytes.len() as u64;
        if self.bucket.put_new(name, bytes)? == Put::Created {
            let mut s = self.shared.status.lock();
            s.objects_shipped += 1;
            s.bytes_shipped += len;
        }
        Ok(())
    }

    /// Tells the gate which segments are shipped whole, and how many
    /// bytes of sealed ones are not.
    fn publish_backlog(&self, ids: &[u64], active: u64) {
        let mut keep_from = active;
        let mut backlog = 0;
        for &id in ids.iter().filter(|&&id| id < active && id >= self.floor) {
            let shipped = self.shipped.get(&id).copied().unwrap_or(0);
            match self.sealed_end.get(&id) {
                Some(&end) if shipped >= end => {}
                end => {
                    keep_from = keep_from.min(id);
                    backlog += end.map_or(1, |e| e - shipped);
                }
            }
        }
        self.shared.keep_from.store(keep_from, Ordering::Release);
        self.shared.backlog_bytes.store(backlog, Ordering::Release);
    }
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn random_u32() -> u32 {
    let id = crate::journal::new_store_id();
    u32::from_le_bytes([id[0], id[1], id[2], id[3]])
}
