//! The journal engine: ties the journal, the in-memory state, recovery and
//! the checkpoint together, and runs the auto-save thread. [`crate::Store`]
//! is the public facade over it; the operations every engine offers are its
//! [`Engine`] implementation, the journal's own (checkpoints, [`Pending`],
//! the recovery report, backups, cleaning) its inherent methods.
//!
//! Lock order, always: log-offset lock, then the journal's ordering lock,
//! then the state lock, then the queue of task changes. Readers take only
//! the state lock.
//!
//! **Invariant:** a [`crate::Event::TaskChanged`] is handed to subscribers
//! only once its record is committed under the sync policy (when a caller's
//! [`Pending::wait`] or a checkpoint's rotation says so), and in sequence
//! order: changes are queued under the journal's ordering lock and released
//! from the front of that queue.

use super::Engine;
use crate::checkpoint::{self, CheckpointCtx, CheckpointStats, Snapshot};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Change, ChangeKind, Event, Subscriber, Subscribers, Subscription};
use crate::fs::{Fs, ReadOnlyFs, RealFs};
use crate::health::Health;
use crate::id::validate_id;
use crate::journal::op::{HeldTask, Op};
use crate::journal::{Journal, Sealing};
use crate::layout;
use crate::metrics::{self, CheckpointCounters, StoreMetrics};
use crate::model::{PersistedState, Task};
use crate::options::{Options, RecoveryMode, SyncPolicy};
use crate::query::TaskQuery;
use crate::readback::{self, LogInfo, ReportInfo};
use crate::reconcile;
use crate::recovery::{self, RecoveryReport};
use crate::session::Session;
use crate::state::{State, Undo};
use crate::store::{Mutation, StoreStats, Tasks};
use crate::transaction;
use parking_lot::{Condvar, Mutex, RwLock};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A journaled mutation whose durability has not been waited for yet.
#[must_use = "a mutation is acknowledged only by `wait`"]
pub struct Pending<'a> {
    store: &'a JournalEngine,
    seq: u64,
    /// For a batch: what it replaced in memory, put back if it fails.
    undo: Option<Undo>,
}

impl std::fmt::Debug for Pending<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("seq", &self.seq)
            .field("batch", &self.undo.is_some())
            .finish()
    }
}

impl Pending<'_> {
    /// The mutation's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Waits until the mutation is durable under the store's sync policy and
    /// returns its sequence number. Mutations submitted while a sync is under
    /// way are committed together by the next one.
    ///
    /// If a batch ([`crate::Store::submit_batch`]) fails here, it is taken back out
    /// of memory before the error is returned, so readers see the state as
    /// it was before it; the journal is poisoned and refuses later writes
    /// until the store is reopened. (A single mutation that fails stays
    /// applied in memory until then.) A batch whose record was made durable
    /// before a later flush failed is acknowledged.
    pub fn wait(self) -> Result<u64> {
        let durable = self.store.shared.opts.sync_policy == SyncPolicy::SyncBeforeAck;
        let journal = &self.store.shared.journal;
        if let Err(e) = journal.commit(self.seq, durable) {
            let Some(undo) = self.undo else {
                return Err(e);
            };
            // A later flush can fail (and poison the journal) after this
            // batch's own flush succeeded: then the batch is durable, and
            // taking it out of memory would hide what reopening shows.
            if journal.committed(self.seq, durable) {
                self.store.shared.release_changes(self.seq);
                return Ok(self.seq);
            }
            self.store.shared.state.write().undo(undo);
            return Err(e);
        }
        self.store.shared.release_changes(self.seq);
        Ok(self.seq)
    }
}

/// The journal engine: a write-ahead journal, the state in memory, and the
/// checkpoints that write the human-readable layout. `Send + Sync`.
pub(crate) struct JournalEngine {
    shared: Arc<Shared>,
    /// The auto-save thread and, under the interval policy, the sync
    /// thread; empty once shut down.
    workers: Vec<JoinHandle<()>>,
    report: RecoveryReport,
    /// The replica shipping this store, if `Options::replicate_to` asked
    /// for one; stopped after the last checkpoint, so that it ships it.
    #[cfg(feature = "replicate")]
    replica: Option<crate::replica::shipper::Replica>,
}

struct Shared {
    fs: Arc<dyn Fs>,
    opts: Options,
    journal: Journal,
    state: RwLock<State>,
    log_offsets: Mutex<()>,
    ckpt: Mutex<CheckpointCtx>,
    subscribers: Arc<Subscribers>,
    signal: Signal,
    ckpt_counters: CheckpointCounters,
    /// The same as `ckpt`'s `derived`, read by `health` without its lock.
    ckpt_derived: Arc<crate::derived::DerivedFailures>,
    /// This open's id, the origin of its [`Change`]s: random per open.
    instance: Arc<str>,
    /// Task changes journaled but not yet committed, in sequence order;
    /// filled only while someone subscribes.
    changes: Mutex<VecDeque<Change>>,
    /// Set once the open is done: what the open itself writes (imports of
    /// hand-edited task files, a merge) is reported by `state:loaded` and
    /// `state:reconciled`, not as task changes.
    announcing: AtomicBool,
    _lock: Box<dyn Send + Sync>,
}

#[derive(Default)]
struct Signal {
    flags: Mutex<(bool, bool)>, // (stop, kick)
    cv: Condvar,
    /// A writer found the journal past its size threshold and kicked the
    /// checkpointer; later writers do not kick again until the checkpointer
    /// clears it, so a deferred checkpoint is not woken by every put.
    size_kicked: AtomicBool,
}

/// A size-triggered checkpoint starts no sooner after the previous
/// checkpoint ended than this many times that checkpoint's duration, so
/// checkpoints take at most a quarter of the time from the writers they
/// share the cores with ...
const SIZE_CHECKPOINT_SPACING: u32 = 3;

/// ... unless the journal grows to this many times its threshold.
const SIZE_CHECKPOINT_HARD_FACTOR: u64 = 4;

/// The bucket `Options::replicate_to` names, opened (its settings
/// checked) before anything is written; `None` without one, and for a
/// reader, which ships nothing.
#[cfg(feature = "replicate")]
type ReplicaBucket = Option<crate::replica::runtime::Bucket>;
/// Without the feature there is never a bucket.
#[cfg(not(feature = "replicate"))]
type ReplicaBucket = Option<std::convert::Infallible>;

#[cfg(feature = "replicate")]
fn replica_bucket(opts: &Options) -> Result<ReplicaBucket> {
    match &opts.replica {
        // Settings without a URL (`replica_setting` alone) ship nowhere.
        Some(t) if !opts.read_only && !t.url.is_empty() => {
            opts.replica_retention_window()?;
            Ok(Some(crate::replica::runtime::Bucket::open(
                &t.url,
                &t.settings,
            )?))
        }
        _ => Ok(None),
    }
}

#[cfg(not(feature = "replicate"))]
fn replica_bucket(opts: &Options) -> Result<ReplicaBucket> {
    match opts.replica_url() {
        Some(url) => Err(Error::new(
            ErrorKind::Unsupported,
            format!("replication to {url} needs statewal built with the cargo feature `replicate`"),
        )),
        None => Ok(None),
    }
}

impl JournalEngine {
    /// Opens (creating if needed) the state directory in `opts` on the real
    /// filesystem; `subscriber` also sees `state:loaded`.
    pub(crate) fn open(opts: Options, subscriber: Option<Subscriber>) -> Result<JournalEngine> {
        // Before the directory is made: a mistyped replica URL or a bad
        // setting (a missing credentials file) leaves nothing behind.
        let bucket = replica_bucket(&opts)?;
        let fs = real_fs(&opts)?;
        JournalEngine::open_with_bucket(opts, fs, subscriber, bucket)
    }

    /// The open on any [`Fs`]: recovery, reconciliation, the workers.
    pub(crate) fn open_on(
        opts: Options,
        fs: Arc<dyn Fs>,
        subscriber: Option<Subscriber>,
    ) -> Result<JournalEngine> {
        let bucket = replica_bucket(&opts)?;
        JournalEngine::open_with_bucket(opts, fs, subscriber, bucket)
    }

    fn open_with_bucket(
        opts: Options,
        fs: Arc<dyn Fs>,
        subscriber: Option<Subscriber>,
        #[cfg_attr(not(feature = "replicate"), allow(unused_variables))] bucket: ReplicaBucket,
    ) -> Result<JournalEngine> {
        let SealedOpen {
            fs,
            sealing,
            after_checkpoint,
        } = seal_fs(&opts, fs)?;
        let (fs, lock, mut rec, prepared) = if opts.read_only {
            open_read_only(&opts, fs, sealing.clone())?
        } else {
            open_owner(&opts, fs, sealing.clone())?
        };
        // What the original server's files and hand edits of tasks/ ask for
        // (crate::reconcile): a reader applies it in memory only.
        let mut plan = reconcile::plan(&*fs, &rec, prepared.view.as_ref())?;
        rec.report.decisions = plan.decisions();
        rec.report.merged = plan.merged_from().map(|from| reconcile::Merged {
            from: from.to_string(),
            backup: None,
            log: None,
            superseded: None,
        });
        if opts.read_only {
            reconcile::apply_in_memory(&mut rec.state, &plan, opts.task_bytes_max);
        }
        let segments_read_below = rec.next_segment_id;
        let checkpoint_now = rec.checkpoint_now;
        let journal = Journal::new(
            fs.clone(),
            rec.state.applied_seq + 1,
            rec.next_segment_id,
            opts.journal_preallocate_bytes,
            rec.store_id,
            sealing,
        )?;
        let ctx = CheckpointCtx {
            state_boundary: rec.first_needed_segment,
            removable_below: rec.purge_segments_below,
            state_crc: rec.state_crc,
            valid_backups: Default::default(),
            covered_seq: rec.covered_seq,
            store_id: crate::journal::record::id_hex(&rec.store_id),
            // A reader never checkpoints: it keeps no fingerprints.
            task_files: match opts.read_only {
                false => plan.take_task_files(),
                true => Default::default(),
            },
            set_aside: Vec::new(),
            backup_kinds: Default::default(),
            // A reader never writes it; an owner rebuilds one it could not use.
            snapshot_due: !opts.read_only && rec.report.snapshot.wants_rebuild(),
            derived: Default::default(),
            retention_gate: None,
            after: after_checkpoint,
        };
        let report = rec.report;
        // The checkpoint's copies were kept for the plan only: the held
        // tasks replay replaced go now, not when the open returns.
        drop((rec.base_tasks, rec.base_sessions, rec.replayed_puts));
        let derived = ctx.derived.clone();
        let shared = Arc::new(Shared {
            fs,
            opts,
            journal,
            state: RwLock::new(rec.state),
            log_offsets: Mutex::new(()),
            ckpt: Mutex::new(ctx),
            subscribers: Arc::default(),
            signal: Signal::default(),
            ckpt_counters: CheckpointCounters::default(),
            ckpt_derived: derived,
            instance: crate::journal::record::id_hex(&crate::journal::new_store_id()).into(),
            changes: Mutex::default(),
            announcing: AtomicBool::new(false),
            _lock: lock,
        });
        if let Some(f) = subscriber {
            // For the store's lifetime: no guard.
            shared.subscribers.add(f);
        }
        let mut store = JournalEngine {
            shared,
            workers: Vec::new(),
            report,
            #[cfg(feature = "replicate")]
            replica: None,
        };
        let mut checkpointed = false;
        // Before the open's own checkpoints (a merge, recovered damage), so
        // that none removes a segment the replica has not shipped.
        #[cfg(feature = "replicate")]
        if let Some(bucket) = bucket {
            store.attach_replica(bucket)?;
        }
        if !store.shared.opts.read_only {
            let done = reconcile::apply_owner(&store, plan, &prepared, segments_read_below)?;
            store.report.decisions = done.decisions;
            store.report.merged = done.merged;
            checkpointed = done.checkpointed;
        }
        drop(prepared);
        log_report(&store.report);
        store
            .shared
            .subscribers
            .emit(Event::StateLoaded(Box::new(store.report.clone())));
        if !store.report.decisions.is_empty() {
            store
                .shared
                .subscribers
                .emit(Event::Reconciled(store.report.decisions.clone()));
        }
        store.shared.subscribers.deliver();
        store.shared.announcing.store(true, Ordering::Relaxed);
        if checkpoint_now && !checkpointed && !store.shared.opts.read_only {
            tracing::info!("checkpointing now to leave recovered damage or a fallback behind");
            store.shared.checkpoint()?;
        }
        // The open's temporary memory (the checkpoint as parsed, the copies
        // replay replaced, the task files the plan read) is free by now:
        // hand its pages back, so the open's peak does not stay resident.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free heap memory; it has no
        // preconditions.
        unsafe {
            libc::malloc_trim(0);
        }
        if store.shared.opts.read_only {
            return Ok(store); // Nothing to save or sync.
        }
        store.spawn("statewal-autosave", |s| s.checkpointer())?;
        if let SyncPolicy::SyncEveryInterval(every) = store.shared.opts.sync_policy {
            let every = every.max(Duration::from_millis(1));
            store.spawn("statewal-sync", move |s| s.syncer(every))?;
        }
        Ok(store)
    }

    /// Starts the replica `Options::replicate_to` asks for, and hands its
    /// retention gate to the checkpoint.
    #[cfg(feature = "replicate")]
    fn attach_replica(&mut self, bucket: crate::replica::runtime::Bucket) -> Result<()> {
        let store_id = self.shared.ckpt.lock().store_id.clone();
        let replica = crate::replica::shipper::Replica::start(
            bucket,
            self.shared.fs.clone(),
            Arc::new(ReplicaView(Arc::downgrade(&self.shared))),
            store_id,
            self.shared.subscribers.clone(),
            crate::replica::shipper::Pace {
                interval: self.shared.opts.replicate_interval,
                backlog_bytes_max: self.shared.opts.replica_backlog_bytes_max,
                retention: self.shared.opts.replica_retention_window()?,
            },
        )?;
        self.shared.ckpt.lock().retention_gate = Some(replica.gate());
        self.replica = Some(replica);
        Ok(())
    }

    /// What the replica has shipped, if the store has one.
    #[cfg(feature = "replicate")]
    pub(crate) fn replica_status(&self) -> Option<crate::replica::ReplicaStatus> {
        let last = self.shared.journal.last_seq();
        self.replica.as_ref().map(|r| r.status(last))
    }

    /// The replica's figures for metrics and health, if the store has one.
    fn replica_metrics(&self) -> Option<crate::metrics::ReplicaMetrics> {
        #[cfg(feature = "replicate")]
        if let Some(r) = &self.replica {
            return Some(r.metrics(self.shared.journal.last_seq()));
        }
        None
    }

    /// Stops the replica after a last tick (it ships the last checkpoint),
    /// then removes the covered segments that tick shipped: a store that
    /// closes before the replica's first tick kept them all at its last
    /// checkpoint, and would keep them for ever.
    fn stop_replica(&mut self) {
        #[cfg(feature = "replicate")]
        if let Some(mut r) = self.replica.take() {
            // The last tick ships only synced bytes: without a last
            // checkpoint, under `SyncEveryInterval` or `OsBuffered`, the
            // records after the last sync would stay local until the next
            // open. A poisoned journal syncs nothing; the tick ships what
            // was synced before.
            if let Err(e) = self.shared.journal.sync_all_appended() {
                tracing::debug!(error = %e, "replica: no sync before the last tick");
            }
            r.stop();
            let ctx = self.shared.ckpt.lock();
            match crate::checkpoint::remove_released_segments(&*self.shared.fs, &ctx) {
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "removing shipped journal segments at close failed; the next checkpoint does")
                }
            }
        }
    }

    fn spawn(&mut self, name: &str, body: impl FnOnce(&Shared) + Send + 'static) -> Result<()> {
        let shared = self.shared.clone();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(&shared))
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("cannot start the {name} thread: {e}"),
                )
            })?;
        self.workers.push(handle);
        Ok(())
    }

    /// What recovery did when this store was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Journals a mutation as given (stamping is the facade's) without
    /// waiting for it to be durable.
    pub(crate) fn submit_as_is(&self, m: Mutation) -> Result<Pending<'_>> {
        let seq = self.shared.submit(m)?;
        Ok(Pending {
            store: self,
            seq,
            undo: None,
        })
    }

    /// Journals a batch as given without waiting for it to be durable.
    pub(crate) fn submit_batch_as_is(&self, mutations: Vec<Mutation>) -> Result<Pending<'_>> {
        let (seq, undo) = self.shared.submit_batch(mutations)?;
        Ok(Pending {
            store: self,
            seq,
            undo,
        })
    }

    /// All tasks, sorted by id: a reference to each held task taken under
    /// the read lock, parsed only when the iterator reaches it.
    pub(crate) fn load_tasks(&self) -> Tasks {
        let held: Vec<HeldTask> = {
            let st = self.shared.state.read();
            st.tasks.values().map(|h| h.task.clone()).collect()
        };
        Tasks::held(held)
    }

    /// The held session records, sorted by id, taken under the read lock
    /// and converted after it is released.
    fn held_sessions(&self) -> Vec<Arc<Value>> {
        self.shared
            .state
            .read()
            .sessions
            .values()
            .cloned()
            .collect()
    }

    /// The session records as the store holds them, sorted by id.
    pub(crate) fn session_values(&self) -> Vec<Value> {
        self.held_sessions().iter().map(|s| (**s).clone()).collect()
    }

    /// Journals an archive record without waiting; returns it and the
    /// archived line's length in bytes.
    pub(crate) fn submit_archive(&self, id: &str) -> Result<(Pending<'_>, u64)> {
        validate_id(id)?;
        let (seq, bytes) = self.shared.archive_task(id.to_string())?;
        Ok((
            Pending {
                store: self,
                seq,
                undo: None,
            },
            bytes,
        ))
    }

    /// The whole state, as `state.json` would hold it now.
    pub(crate) fn load_state(&self) -> PersistedState {
        let mut state = self.shared.state.read().persisted();
        state.store_id = Some(crate::journal::record::id_hex(
            &self.shared.journal.store_id(),
        ));
        state
    }

    /// Checkpoints now.
    pub(crate) fn checkpoint(&self) -> Result<CheckpointStats> {
        self.shared.checkpoint()
    }

    /// The options the store was opened with.
    pub(crate) fn options(&self) -> &Options {
        &self.shared.opts
    }

    /// The filesystem the store runs on, for the modules that read the
    /// layout beside it (backups).
    pub(crate) fn fs(&self) -> &dyn Fs {
        &*self.shared.fs
    }

    /// Makes the next checkpoint write these tasks' files again (or remove
    /// them), even if nothing else changed: a task file set aside, or one a
    /// checkpoint left stale.
    pub(crate) fn mark_tasks_changed(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let mut ckpt = self.shared.ckpt.lock();
        let mut state = self.shared.state.write();
        let changed = &mut state.changes.tasks;
        if ids.len() < changed.len() / 16 {
            changed.extend(ids.iter().map(|id| crate::held::IdKey::from(id.as_str())));
        } else {
            // Many (every task of an open that replayed the journal and
            // found no task files): one merge of two sorted runs instead of
            // a search per id. The sort is one pass when the ids came in
            // order, as the plan lists them.
            let mut add: Vec<crate::held::IdKey> = ids
                .iter()
                .map(|id| crate::held::IdKey::from(id.as_str()))
                .collect();
            add.sort();
            // Often every one is there already (each was replayed): one
            // walk of both in order says so, and nothing is rebuilt.
            let mut have = changed.iter().peekable();
            let all_there = add.iter().all(|id| {
                while have.next_if(|h| *h < id).is_some() {}
                have.peek() == Some(&id)
            });
            if !all_there {
                *changed = std::mem::take(changed).into_iter().chain(add).collect();
            }
        }
        drop(state);
        // Not idle any more, though no record was journaled.
        ckpt.covered_seq = None;
    }

    fn stop_worker(&mut self) {
        *self.shared.signal.flags.lock() = (true, false);
        self.shared.signal.cv.notify_all();
        for worker in self.workers.drain(..) {
            // A subscriber may hold the last reference to the store, so the
            // store can be dropped on its own auto-save thread. That thread
            // cannot join itself; it sees the stop flag and ends on its own
            // once the subscriber returns.
            if worker.thread().id() == std::thread::current().id() {
                continue;
            }
            if worker.join().is_err() {
                tracing::error!("a statewal background thread panicked");
            }
        }
    }
}

/// The operations every engine offers. Tasks arrive stamped by the facade
/// when stamping is on; the public docs are on [`crate::Store`].
impl Engine for JournalEngine {
    fn put_task(&self, task: Task) -> Result<u64> {
        self.submit_as_is(Mutation::PutTask(task))?.wait()
    }

    fn put_task_if(&self, task: Task, expected: Option<u64>) -> Result<u64> {
        let seq = self.shared.put_task_if(task, expected)?;
        Pending {
            store: self,
            seq,
            undo: None,
        }
        .wait()
    }

    fn delete_task(&self, id: &str) -> Result<u64> {
        self.submit_as_is(Mutation::DeleteTask(id.to_string()))?
            .wait()
    }

    fn task_version(&self, id: &str) -> Result<Option<u64>> {
        validate_id(id)?;
        Ok(self.shared.state.read().task_version(id))
    }

    fn get_task(&self, id: &str) -> Result<Option<Task>> {
        validate_id(id)?;
        // Parsed after the lock is released: writers wait for no parse.
        let held = self
            .shared
            .state
            .read()
            .tasks
            .get(id)
            .map(|h| h.task.clone());
        held.map(|t| t.to_task()).transpose()
    }

    fn list_tasks(&self) -> Result<Vec<Task>> {
        Ok(self.load_tasks().collect())
    }

    fn query_tasks(&self, query: &TaskQuery) -> Result<Vec<Task>> {
        // Tasks whose status the query excludes are never parsed: the held
        // index knows each status.
        let held: Vec<HeldTask> = {
            let st = self.shared.state.read();
            let wanted =
                |h: &&HeldTask| query.statuses.is_empty() || query.statuses.contains(&h.status());
            st.tasks
                .values()
                .map(|h| &h.task)
                .filter(wanted)
                .cloned()
                .collect()
        };
        let tasks = held
            .iter()
            .map(HeldTask::to_task)
            .collect::<Result<Vec<_>>>()?;
        Ok(query.select(tasks))
    }

    fn apply_batch(&self, mutations: Vec<Mutation>) -> Result<u64> {
        self.submit_batch_as_is(mutations)?.wait()
    }

    fn put_session(&self, session: Value) -> Result<u64> {
        self.submit_as_is(Mutation::PutSession(session))?.wait()
    }

    fn delete_session(&self, id: &str) -> Result<u64> {
        self.submit_as_is(Mutation::DeleteSession(id.to_string()))?
            .wait()
    }

    fn get_session(&self, id: &str) -> Result<Option<Session>> {
        Ok(readback::get_session(&self.shared.state, id)?
            .as_ref()
            .and_then(Session::of_held))
    }

    fn list_sessions(&self) -> Result<Vec<Session>> {
        Ok(self
            .held_sessions()
            .iter()
            .filter_map(|s| Session::of_held(s))
            .collect())
    }

    fn session_records(&self) -> Result<Vec<Value>> {
        Ok(self.held_sessions().iter().map(|s| (**s).clone()).collect())
    }

    fn append_log(&self, session: &str, text: &str) -> Result<u64> {
        let m = Mutation::AppendLog {
            session: session.to_string(),
            text: text.to_string(),
        };
        self.submit_as_is(m)?.wait()
    }

    fn list_logs(&self) -> Result<Vec<LogInfo>> {
        readback::list_logs(&*self.shared.fs, &self.shared.state)
    }

    fn read_log(&self, file_name: &str, start: u64, end: Option<u64>) -> Result<Vec<u8>> {
        readback::read_log(&*self.shared.fs, &self.shared.state, file_name, start, end)
    }

    fn save_report(&self, id: &str, report: Value) -> Result<u64> {
        self.submit_as_is(Mutation::SaveReport {
            id: id.to_string(),
            report,
        })?
        .wait()
    }

    fn get_report(&self, id: &str) -> Result<Option<Value>> {
        readback::get_report(&*self.shared.fs, &self.shared.state, id)
    }

    fn list_reports(&self) -> Result<Vec<ReportInfo>> {
        readback::list_reports(&*self.shared.fs, &self.shared.state)
    }

    fn archive_task(&self, id: &str) -> Result<u64> {
        self.submit_as_is(Mutation::ArchiveTask(id.to_string()))?
            .wait()
    }

    fn subscribe(&self, f: Subscriber) -> Subscription {
        self.shared.subscribers.subscribe(f)
    }

    fn origin(&self) -> &str {
        &self.shared.instance
    }

    fn stats(&self) -> Result<StoreStats> {
        let j = &self.shared.journal;
        Ok(StoreStats {
            records: j.stats.records.load(Ordering::Relaxed),
            journal_syncs: j.stats.syncs.load(Ordering::Relaxed),
            last_seq: j.last_seq(),
            tasks: self.shared.state.read().tasks.len(),
        })
    }

    fn metrics(&self) -> Result<StoreMetrics> {
        let j = &self.shared.journal.stats;
        let mut m = StoreMetrics::empty();
        m.load_seconds = self.report.duration.as_secs_f64();
        m.journal_records = j.records.load(Ordering::Relaxed);
        m.fsyncs = j.syncs.load(Ordering::Relaxed);
        m.fsync_total_seconds = metrics::seconds(j.sync_nanos.load(Ordering::Relaxed));
        m.tasks = self.shared.state.read().tasks.len() as u64;
        m.replica = self.replica_metrics();
        metrics::collect(&*self.shared.fs, &self.shared.ckpt_counters, m)
    }

    /// [`crate::health`] of the directory in the options, read from the
    /// real filesystem (whatever [`Fs`] the store was opened on), plus a
    /// problem for each derived file this store's last checkpoint could
    /// not write (`crate::derived`).
    fn health(&self) -> Health {
        let derived = self.shared.ckpt_derived.problems();
        let mut h = crate::health(&self.shared.opts.dir);
        if let Some(r) = self.replica_metrics() {
            // Pushed as they are: `with_problems` drops a problem whose
            // first word another one names, and both of these begin
            // "replica".
            let (problems, warnings) = crate::health::replica_findings(&r);
            h.problems.extend(problems);
            h.warnings.extend(warnings);
            h.replica = Some(r);
        }
        crate::health::with_problems(h, derived)
    }

    fn shutdown(&mut self) -> Result<()> {
        self.stop_worker();
        // Drop does not checkpoint again: the worker is gone, which it checks.
        let done = match self.shared.opts.checkpoint_on_drop && !self.shared.opts.read_only {
            true => self.shared.checkpoint().map(drop),
            false => Ok(()),
        };
        // After the last checkpoint, so that the replica ships it.
        self.stop_replica();
        done
    }
}

impl Drop for JournalEngine {
    fn drop(&mut self) {
        if self.workers.is_empty() {
            return; // Already shut down, or read-only.
        }
        self.stop_worker();
        if self.shared.opts.checkpoint_on_drop
            && self.shared.journal.poisoned().is_none()
            && let Err(e) = self.shared.checkpoint()
        {
            tracing::error!(error = %e, "checkpoint on drop failed; the journal still holds every acknowledged write");
        }
        self.stop_replica();
    }
}

/// The journal as the replica sees it: where its synced bytes end. Weak:
/// a replica whose last tick outlives the store (a bucket that does not
/// answer at close) must not keep the store, and its directory lock, alive.
#[cfg(feature = "replicate")]
struct ReplicaView(std::sync::Weak<Shared>);

#[cfg(feature = "replicate")]
impl crate::replica::shipper::JournalView for ReplicaView {
    fn synced_end(&self) -> Option<crate::journal::SyncedEnd> {
        Some(self.0.upgrade()?.journal.synced_end())
    }

    fn active_segment(&self) -> Option<u64> {
        Some(self.0.upgrade()?.journal.active_segment_id())
    }

    fn checkpoint(&self) -> Option<(u32, u64)> {
        let shared = self.0.upgrade()?;
        // Never waits for a checkpoint under way: the shipper parses instead.
        let ctx = shared.ckpt.try_lock()?;
        Some((ctx.state_crc?, ctx.covered_seq?))
    }
}

impl Shared {
    fn submit(&self, m: Mutation) -> Result<u64> {
        self.writable()?;
        // What the journal cannot read back is refused before it is written
        // (an acknowledged put must never make the store unopenable), by
        // the checks every engine shares (`crate::transaction`).
        let max = self.opts.task_bytes_max;
        let (op, payload) = match m {
            // The same checks as a batch's members: ids, depth, size.
            m @ (Mutation::PutTask(_)
            | Mutation::DeleteTask(_)
            | Mutation::PutSession(_)
            | Mutation::DeleteSession(_)) => {
                let (op, payload) = crate::transaction::validate(m, max)?;
                let missing = match &op {
                    Op::DeleteTask(id) if !self.state.read().tasks.contains_key(id.as_str()) => {
                        Some(("task", id))
                    }
                    Op::DeleteSession(id) if !self.state.read().sessions.contains_key(id) => {
                        Some(("session", id))
                    }
                    _ => None,
                };
                if let Some((what, id)) = missing {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("no {what} with id {id:?}"),
                    ));
                }
                (op, payload)
            }
            Mutation::AppendLog { session, text } => {
                transaction::validate_log_append(&session, &text, max)?;
                return self.append_log(session, text.into_bytes());
            }
            Mutation::ArchiveTask(id) => {
                validate_id(&id)?;
                return self.archive_task(id).map(|(seq, _)| seq);
            }
            Mutation::SaveReport { id, report } => transaction::validate_report(id, report, max)?,
        };
        self.journal_op(op, &payload)
    }

    /// Log appends carry the offset they land at, so they are serialized by
    /// their own lock while the offset is chosen and the record appended.
    fn append_log(&self, session: String, text: Vec<u8>) -> Result<u64> {
        let _serial = self.log_offsets.lock();
        let known = self.state.read().log_lens.get(&session).copied();
        let offset = match known {
            Some(len) => len,
            None => self
                .fs
                .file_len(&crate::fs::join(
                    layout::LOGS_DIR,
                    &layout::log_file(&session),
                ))?
                .unwrap_or(0),
        };
        let op = Op::AppendLog {
            session,
            offset,
            text,
        };
        let payload = op.encode();
        self.journal_op(op, &payload)
    }

    /// Archive records carry the offset their line lands at in the archive
    /// file, chosen under the log-offset lock as for log appends. Returns the
    /// sequence number and the line's length.
    fn archive_task(&self, id: String) -> Result<(u64, u64)> {
        self.writable()?;
        let now = time::OffsetDateTime::now_utc();
        let file = layout::archive_file(now.year(), now.month() as u8);
        let _serial = self.log_offsets.lock();
        let (task, known) = {
            let st = self.state.read();
            let task = st
                .tasks
                .get(id.as_str())
                .map(|h| h.task.to_task())
                .transpose()?;
            (task, st.archive_lens.get(&file).copied())
        };
        let task =
            task.ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no task with id {id:?}")))?;
        let offset = match known {
            Some(len) => len,
            None => self
                .fs
                .file_len(&crate::fs::join(layout::ARCHIVE_DIR, &file))?
                .unwrap_or(0),
        };
        let op = Op::archive_task(task, file, offset);
        let payload = op.encode();
        if payload.len() > crate::journal::record::RECORD_PAYLOAD_MAX as usize {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("task {id:?} is too large to archive in one journal record"),
            ));
        }
        let line_bytes = match &op {
            Op::ArchiveTask { line, .. } => line.len() as u64,
            _ => unreachable!("Op::archive_task builds an archive op"),
        };
        Ok((self.journal_op(op, &payload)?, line_bytes))
    }

    /// Journals `mutations` as one batch record, validated whole first so a
    /// bad batch journals nothing, and applies it in one step.
    fn submit_batch(&self, mutations: Vec<Mutation>) -> Result<(u64, Option<Undo>)> {
        // Before anything is applied: a read-only store's journal would
        // fail the flush, poison itself, and readers would have seen the
        // batch in the meantime.
        self.writable()?;
        let Some((op, payload)) = transaction::prepare(mutations, self.opts.task_bytes_max)? else {
            return Ok((self.journal.last_seq(), None));
        };
        self.journal_op_checked(op, &payload, |op| {
            transaction::check_deletes(&self.state.read(), op)
        })
    }

    fn put_task_if(&self, task: Task, expected: Option<u64>) -> Result<u64> {
        self.writable()?;
        let (op, payload) =
            transaction::validate(Mutation::PutTask(task), self.opts.task_bytes_max)?;
        let check = |op: &Op| transaction::check_version(&self.state.read(), op.id(), expected);
        self.journal_op_checked(op, &payload, check)
            .map(|(seq, _)| seq)
    }

    fn journal_op(&self, op: Op, payload: &[u8]) -> Result<u64> {
        self.journal_op_checked(op, payload, |_| Ok(()))
            .map(|(seq, _)| seq)
    }

    /// Appends `op` if `check` passes under the journal's ordering lock, and
    /// applies it to the state under that lock, in one step. For a batch,
    /// also returns what it replaced.
    fn journal_op_checked(
        &self,
        op: Op,
        payload: &[u8],
        check: impl FnOnce(&Op) -> Result<()>,
    ) -> Result<(u64, Option<Undo>)> {
        let kind = op.kind();
        // Read before the ordering lock: a subscriber added meanwhile sees
        // the changes from its first release on.
        let watched = self.announcing.load(Ordering::Relaxed) && self.subscribers.any();
        let check = move || check(&op).map(|()| op);
        let (seq, undo) = self
            .journal
            .append_checked(kind, payload, check, |seq, op| {
                let mut st = self.state.write();
                let undo = match &op {
                    Op::Batch(ops) => Some(st.undo_of(ops)),
                    _ => None,
                };
                let touched = match watched {
                    true => touched_tasks(&op),
                    false => Vec::new(),
                };
                st.apply(seq, op);
                if !touched.is_empty() {
                    self.queue_changes(&st, seq, touched);
                }
                undo
            })?;
        if self.journal_past_threshold(1)
            && !self.signal.size_kicked.load(Ordering::Relaxed)
            && !self.signal.size_kicked.swap(true, Ordering::Relaxed)
        {
            self.signal.flags.lock().1 = true;
            self.signal.cv.notify_all();
        }
        Ok((seq, undo))
    }

    /// Queues a [`Change`] for each task `touched` by record `seq`, from
    /// the state just after it was applied; under the journal's ordering
    /// lock, so the queue is in sequence order.
    fn queue_changes(&self, st: &State, seq: u64, touched: Vec<(String, bool)>) {
        let mut queue = self.changes.lock();
        for (id, archived) in touched {
            let version = st.task_version(&id);
            if archived && version.is_some() {
                continue; // Changed since the line was taken: not archived.
            }
            let kind = match version {
                Some(_) => ChangeKind::Put,
                None => ChangeKind::Delete,
            };
            queue.push_back(Change {
                id,
                kind,
                version,
                seq,
                origin: self.instance.to_string(),
            });
        }
    }

    /// Hands the changes of every record through `seq` to the subscribers'
    /// queue and delivers them; for a caller holding none of the locks.
    fn release_changes(&self, seq: u64) {
        self.release_changes_queued(seq);
        self.subscribers.deliver();
    }

    /// Moves the changes of every record through `seq`, committed by now,
    /// to the subscribers' queue, in order; the caller delivers them.
    fn release_changes_queued(&self, seq: u64) {
        let mut queue = self.changes.lock();
        while queue.front().is_some_and(|c| c.seq <= seq) {
            let change = queue.pop_front().expect("the front was just seen");
            self.subscribers.emit(Event::TaskChanged(change));
        }
    }

    /// [`ErrorKind::ReadOnly`] when the store was opened read-only.
    fn writable(&self) -> Result<()> {
        if self.opts.read_only {
            return Err(Error::new(
                ErrorKind::ReadOnly,
                format!(
                    "the store at {} is open read-only; open it without --read-only to change it",
                    self.opts.dir.display()
                ),
            ));
        }
        Ok(())
    }

    /// Checkpoints, then hands the events it queued to the subscribers,
    /// with the checkpoint's lock released.
    fn checkpoint(&self) -> Result<CheckpointStats> {
        let result = self.checkpoint_locked();
        if result.is_ok() {
            let ctx = self.ckpt.lock();
            if let Some(after) = ctx.after.clone()
                && let Err(e) = after.after(&*self.fs)
            {
                tracing::warn!(error = %e, "after the checkpoint; the next one tries again");
            }
        }
        self.subscribers.deliver();
        result
    }

    fn checkpoint_locked(&self) -> Result<CheckpointStats> {
        self.writable()?;
        let mut ctx = self.ckpt.lock();
        if let Some(e) = self.journal.poisoned() {
            return Err(e);
        }
        let last = self.journal.last_seq();
        if ctx.covered_seq == Some(last) {
            if ctx.snapshot_due {
                self.refresh_snapshot(&mut ctx, last);
            }
            let tasks_total = self.state.read().tasks.len();
            return Ok(CheckpointStats {
                seq: last,
                task_files_changed: 0,
                tasks_total,
                state_bytes: 0,
                segments_removed: 0,
                duration: Duration::ZERO,
            });
        }
        let now = crate::model::now_rfc3339();
        let rotated = self.journal.rotate(|seq| {
            let mut st = self.state.write();
            // Readers of logs and reports go on seeing these changes through
            // `writing` until the files hold them.
            let changes = Arc::new(std::mem::take(&mut st.changes));
            st.writing = Some(changes.clone());
            Snapshot {
                seq,
                changes,
                tasks: st.tasks.clone(),
                sessions: st.sessions.clone(),
            }
        });
        let (_, new_segment, mut snap) = match rotated {
            Ok((rotated_seq, new_segment, snap)) => {
                // Every record through the rotation is synced now.
                self.release_changes_queued(rotated_seq);
                (rotated_seq, new_segment, snap)
            }
            Err(e) => {
                // The snapshot is gone with the error: its changes go back,
                // so that readers still see every pending log piece and
                // report of the (now poisoned) store.
                let mut st = self.state.write();
                if let Some(writing) = st.writing.take() {
                    st.changes.merge_older(Arc::unwrap_or_clone(writing));
                }
                drop(st);
                self.ckpt_counters.failed();
                self.subscribers.emit(Event::StateSaveError(e.clone()));
                return Err(e);
            }
        };
        // A panic while writing the layout (a bug, or hostile input that
        // slipped past a check) becomes an error like any other: the changes
        // go back for the next checkpoint and the auto-save thread lives on.
        // (Issue 8, part 5: a backup stamped 99991231T235959.999999Z made
        // every checkpoint panic, and the auto-save thread died with it.)
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            checkpoint::write(
                &*self.fs,
                &mut ctx,
                &snap,
                self.opts.backups_kept,
                new_segment,
                &now,
            )
        }))
        .unwrap_or_else(|panic| Err(panicked("the checkpoint", &*panic)));
        let set_aside = std::mem::take(&mut ctx.set_aside);
        if !set_aside.is_empty() {
            self.subscribers.emit(Event::Reconciled(set_aside));
        }
        match written {
            Ok(stats) => {
                self.ckpt_counters.succeeded(stats.duration);
                {
                    // In one step: the files now hold what `writing` held.
                    let mut st = self.state.write();
                    st.last_saved = Some(now);
                    st.writing = None;
                }
                tracing::info!(
                    seq = stats.seq,
                    files = stats.task_files_changed,
                    ms = stats.duration.as_millis() as u64,
                    "checkpoint written"
                );
                self.subscribers.emit(Event::StateSaved(stats.clone()));
                Ok(stats)
            }
            Err(e) => {
                // In one step, so readers never see the changes in neither
                // place. Readers copy out of `writing` under the lock and
                // never keep it, so the snapshot now holds it alone.
                let mut st = self.state.write();
                st.writing = None;
                let changes = Arc::unwrap_or_clone(std::mem::take(&mut snap.changes));
                st.changes.merge_older(changes);
                drop(st);
                self.ckpt_counters.failed();
                tracing::error!(error = %e, "checkpoint failed; the journal still holds every acknowledged write");
                self.subscribers.emit(Event::StateSaveError(e.clone()));
                Err(e)
            }
        }
    }

    /// Writes `state.snapshot` for a `state.json` that covers everything
    /// (`last`), from a copy of the state taken under the read lock.
    fn refresh_snapshot(&self, ctx: &mut CheckpointCtx, last: u64) {
        let (snap, last_saved) = {
            let st = self.state.read();
            // A record journaled since `last` was read may be applied
            // already: then the state is newer than state.json, and the
            // next checkpoint writes both. (No record applies while this
            // lock is held, so the copy below is state.json's contents.)
            if st.applied_seq != last || ctx.covered_seq != Some(last) {
                return;
            }
            let snap = Snapshot {
                seq: last,
                changes: Arc::default(),
                tasks: st.tasks.clone(),
                sessions: st.sessions.clone(),
            };
            (snap, st.last_saved.clone().unwrap_or_default())
        };
        let of = checkpoint::SnapshotOf {
            snap: &snap,
            last_saved: &last_saved,
        };
        checkpoint::refresh_snapshot(&*self.fs, ctx, &of)
    }

    /// Whether the journal holds more than `factor` times its size
    /// threshold since the last rotation.
    fn journal_past_threshold(&self, factor: u64) -> bool {
        self.journal
            .stats
            .bytes_since_rotation
            .load(Ordering::Relaxed)
            > self.opts.checkpoint_journal_bytes.saturating_mul(factor)
    }

    /// The auto-save thread: checkpoints on the timer and when the journal
    /// passes its size threshold, spaced after the previous checkpoint
    /// ([`SIZE_CHECKPOINT_SPACING`]; `docs/decisions.md`, "2026-12-02,
    /// issue 10: the size-triggered checkpoint waits its turn").
    fn checkpointer(&self) {
        // At least a millisecond, as for the sync thread: a zero interval
        // made this loop spin without ever waiting (review of issue 8).
        let every = self
            .opts
            .checkpoint_interval
            .map(|d| d.max(Duration::from_millis(1)));
        let mut last = Instant::now();
        // A size-triggered checkpoint waiting for `not_before`.
        let mut size_pending = false;
        let mut not_before = Instant::now();
        loop {
            let kicked = {
                let mut flags = self.signal.flags.lock();
                if !flags.0 && !flags.1 {
                    let mut wait = every.map_or(Duration::from_secs(3600), |d| {
                        d.saturating_sub(last.elapsed())
                    });
                    if size_pending {
                        // Polled, so the hard limit is seen in time.
                        let spaced = not_before.saturating_duration_since(Instant::now());
                        wait = wait.min(spaced).min(Duration::from_millis(10));
                    }
                    self.signal.cv.wait_for(&mut flags, wait);
                }
                if flags.0 {
                    return;
                }
                std::mem::take(&mut flags.1)
            };
            if kicked {
                size_pending = true;
            }
            let mut size_due = false;
            if size_pending {
                // Cleared before the journal is looked at: a writer that
                // passes the threshold after this kicks again.
                self.signal.size_kicked.store(false, Ordering::Relaxed);
                if !self.journal_past_threshold(1) {
                    size_pending = false; // Another checkpoint rotated it.
                } else if Instant::now() >= not_before
                    || self.journal_past_threshold(SIZE_CHECKPOINT_HARD_FACTOR)
                {
                    size_due = true;
                } else {
                    // Deferred: no writer kicks again meanwhile.
                    self.signal.size_kicked.store(true, Ordering::Relaxed);
                }
            }
            let timer_due = every.is_some_and(|d| last.elapsed() >= d);
            if timer_due {
                self.subscribers.emit(Event::AutosaveTriggered);
                self.subscribers.deliver();
            }
            if timer_due || size_due {
                size_pending = false;
                self.signal.size_kicked.store(false, Ordering::Relaxed);
                last = Instant::now();
                // Errors are reported to subscribers and the log by
                // checkpoint(). A panic outside the part it catches (the
                // journal's rotation) must not end this thread either.
                let run = std::panic::AssertUnwindSafe(|| self.checkpoint());
                if let Err(panic) = std::panic::catch_unwind(run) {
                    let e = panicked("the auto-save checkpoint", &*panic);
                    tracing::error!(error = %e, "auto-save checkpoint failed");
                }
                not_before = Instant::now() + last.elapsed() * SIZE_CHECKPOINT_SPACING;
            }
        }
    }

    /// The interval policy's sync thread, apart from the checkpointer so a
    /// long checkpoint never stretches the window of unsynced writes.
    fn syncer(&self, every: Duration) {
        let mut last = Instant::now();
        loop {
            {
                let mut flags = self.signal.flags.lock();
                if !flags.0 {
                    self.signal
                        .cv
                        .wait_for(&mut flags, every.saturating_sub(last.elapsed()));
                }
                if flags.0 {
                    return;
                }
            }
            if last.elapsed() >= every {
                last = Instant::now();
                if let Err(e) = self.journal.sync_all_appended() {
                    tracing::error!(error = %e, "interval sync failed");
                }
            }
        }
    }
}

/// The tasks a record changes, each once, in the order of their last
/// mention, with whether it is an archive (which changes nothing when the
/// task changed since its line was taken).
fn touched_tasks(op: &Op) -> Vec<(String, bool)> {
    match op {
        Op::PutTask(_) | Op::DeleteTask(_) => vec![(op.id().to_string(), false)],
        Op::ArchiveTask { task, .. } => vec![(task.id().to_string(), true)],
        Op::Batch(ops) => {
            let mut seen = std::collections::HashSet::new();
            let mut out: Vec<(String, bool)> = ops
                .iter()
                .rev()
                .filter(|op| matches!(op, Op::PutTask(_) | Op::DeleteTask(_)))
                .filter(|op| seen.insert(op.id()))
                .map(|op| (op.id().to_string(), false))
                .collect();
            out.reverse();
            out
        }
        _ => Vec::new(),
    }
}

type Opened = (
    Arc<dyn Fs>,
    Box<dyn Send + Sync>,
    recovery::Recovered,
    reconcile::Prepared,
);

/// The real filesystem for `opts`: created if missing, unless read-only.
fn real_fs(opts: &Options) -> Result<Arc<dyn Fs>> {
    if !opts.read_only {
        return Ok(Arc::new(RealFs::new(opts.dir.clone())?));
    }
    match RealFs::existing(opts.dir.clone()) {
        Ok(fs) => Ok(Arc::new(fs)),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(layout::no_store(&opts.dir)),
        Err(e) => Err(e),
    }
}

/// What [`seal_fs`] gives.
struct SealedOpen {
    /// The filesystem the store works through.
    fs: Arc<dyn Fs>,
    /// The journal's record sealing.
    sealing: Option<Arc<dyn Sealing>>,
    /// A key change's work after each checkpoint.
    after_checkpoint: Option<Arc<dyn crate::checkpoint::AfterCheckpoint>>,
}

/// The filesystem the store works through, and the journal's sealing: in
/// an encrypted store (`Options::encryption_key`), the sealed layer over
/// `fs` and the record sealing. Says clearly when the key and the store
/// disagree: a plain store given a key, an encrypted one given none or
/// another (`docs/encryption.md`).
fn seal_fs(opts: &Options, fs: Arc<dyn Fs>) -> Result<SealedOpen> {
    // An interrupted `encrypt`, `decrypt` or `rekey` is finished first,
    // with its key and under the store's lock (`crate::crypto::convert`);
    // `Some((false, _))`: the store is plain now.
    #[cfg(feature = "encryption")]
    let converted = match opts.read_only || fs.file_len(layout::CONVERT_MARKER)?.is_none() {
        false => {
            let _lock = fs.lock()?;
            crate::crypto::finish_at_open(&*fs, opts.encryption_key.as_ref(), &opts.dir)?
        }
        true => None,
    };
    if fs.file_len(layout::CONVERT_MARKER)?.is_some() {
        #[cfg(feature = "encryption")]
        let finished = converted.is_some();
        #[cfg(not(feature = "encryption"))]
        let finished = false;
        if !finished {
            return Err(Error::new(
                ErrorKind::Key,
                format!(
                    "{} is being converted by `statewal encrypt` or `decrypt`, which stopped \
                     before it finished: open it for writing with the key named in {} to \
                     finish{}",
                    opts.dir.display(),
                    layout::CONVERT_MARKER,
                    match cfg!(feature = "encryption") {
                        true => "",
                        false => " (with statewal built with the cargo feature `encryption`)",
                    }
                ),
            ));
        }
    }
    let sealing = layout::store_sealing(&*fs)?;
    let sealed_by = match sealing {
        layout::Sealing::Sealed(id, _) => Some(id),
        _ => None,
    };
    #[cfg(feature = "encryption")]
    if let Some(key) = &opts.encryption_key
        && !matches!(converted, Some((false, _)))
    {
        use crate::crypto::fs::{Keys, SealedFs, wrong_key};
        // The store's own cipher unless one was asked for: an AES-256-GCM
        // store stays one.
        let cipher = opts
            .cipher
            .or(converted.map(|c| c.1))
            .unwrap_or(match sealing {
                layout::Sealing::Sealed(_, code) => {
                    crate::crypto::Algorithm::from_code(code).unwrap_or_default()
                }
                _ => Default::default(),
            });
        // During a key change (statewal rekey), the old key too, from the
        // keyring that only the new one opens.
        // Layout files under the old key are read only until every one was
        // sealed again; segments under it only below the keyring's bound.
        let ring = crate::crypto::rotate::keys_at_open(&*fs, key, &opts.dir)?;
        let (file_older, journal_older, older_below) = match &ring {
            Some(r) if r.files_done => (Vec::new(), vec![r.old.clone()], r.segments_below),
            Some(r) => (vec![r.old.clone()], vec![r.old.clone()], r.segments_below),
            None => (Vec::new(), Vec::new(), 0),
        };
        let keys = Keys::new(key.clone(), file_older, cipher);
        let journal_keys = Keys::new(key.clone(), journal_older, cipher);
        match sealed_by {
            None if sealing == layout::Sealing::Plain => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{} is not encrypted, and a key was given: `statewal encrypt` \
                         converts a plain store (nothing was changed)",
                        opts.dir.display()
                    ),
                ));
            }
            Some(id) if !journal_keys.all.iter().any(|k| k.id().0 == id) => {
                let shown = fs.describe(layout::STATE_FILE);
                return Err(wrong_key(&shown, crate::crypto::KeyId(id), &keys.all));
            }
            _ => {}
        }
        let keys = Arc::new(keys);
        let sealing: Arc<dyn Sealing> = Arc::new(crate::crypto::journal::JournalSealing::new(
            Arc::new(journal_keys),
            older_below,
        ));
        let after_checkpoint = ring.filter(|_| !opts.read_only).map(|ring| {
            Arc::new(crate::crypto::rotate::Rotation::new(
                fs.clone(),
                key.clone(),
                cipher,
                ring,
            )) as Arc<dyn crate::checkpoint::AfterCheckpoint>
        });
        return Ok(SealedOpen {
            fs: Arc::new(SealedFs::with_keys(fs, keys)),
            sealing: Some(sealing),
            after_checkpoint,
        });
    }
    #[cfg(feature = "encryption")]
    if matches!(converted, Some((false, _))) {
        tracing::warn!(
            "the store was decrypted by an interrupted `statewal decrypt`: it is plain now"
        );
    }
    if let Some(id) = sealed_by {
        return Err(Error::new(
            ErrorKind::Key,
            format!(
                "{} is encrypted with key id {id:08x}: a key is needed to open it \
                 (--key-file, --key-command or STATEWAL_KEY{})",
                opts.dir.display(),
                match cfg!(feature = "encryption") {
                    true => "",
                    false =>
                        "; this build has no encryption: build statewal with the \
                              cargo feature `encryption`",
                }
            ),
        ));
    }
    Ok(SealedOpen {
        fs,
        sealing: None,
        after_checkpoint: None,
    })
}

/// The lock holder's open: lock, create the layout, migrate, recover.
fn open_owner(
    opts: &Options,
    fs: Arc<dyn Fs>,
    sealing: Option<Arc<dyn Sealing>>,
) -> Result<Opened> {
    let lock = fs.lock()?;
    for dir in layout::DIRS {
        fs.create_dir(dir)?;
    }
    // Sync the state directory so the subdirectories just created survive
    // power loss: without it, `journal/` and every acknowledged record in
    // it could vanish (found by the crash tests on `SimFs`).
    fs.sync_dir("")?;
    // Migrate the original server's state (no version) before recovery
    // would take it for a corrupt file, or, over statewal's history, keep it
    // for the merge; see docs/decisions.md, "Store::open migrates", and
    // crate::reconcile.
    let mut prepared = reconcile::prepare_owner(&*fs)?;
    prepared.rule.sealing = sealing;
    let rec = recovery::recover(&*fs, opts.recovery_mode, &prepared.rule)?;
    Ok((fs, lock, rec, prepared))
}

/// A reader's open: no lock, nothing created, written or synced; every
/// write the store might still attempt is refused by [`ReadOnlyFs`].
fn open_read_only(
    opts: &Options,
    fs: Arc<dyn Fs>,
    sealing: Option<Arc<dyn Sealing>>,
) -> Result<Opened> {
    let fs: Arc<dyn Fs> = Arc::new(ReadOnlyFs::new(fs));
    if !layout::holds_store(&*fs)? {
        return Err(layout::no_store(&opts.dir));
    }
    let mut prepared = reconcile::prepare_reader(&*fs)?;
    prepared.rule.sealing = sealing;
    let rec = recovery::recover_read_only(&*fs, opts.recovery_mode, &prepared.rule)?;
    Ok((fs, Box::new(()), rec, prepared))
}

/// An error for a caught panic, with its message when it has one.
fn panicked(what: &str, payload: &(dyn std::any::Any + Send)) -> Error {
    let why = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    Error::new(
        ErrorKind::Internal,
        format!(
            "{what} panicked ({why}); this is a bug in statewal. \
             The journal still holds every acknowledged write"
        ),
    )
}

fn log_report(r: &RecoveryReport) {
    tracing::info!(
        mode = %r.mode,
        loaded_from = r.loaded_from.name(),
        checkpoint_seq = r.checkpoint_seq,
        tasks = r.tasks_loaded,
        replayed = r.records_replayed,
        truncated_bytes = r.bytes_truncated,
        damage = r.damage.len(),
        ms = r.duration.as_millis() as u64,
        "recovered"
    );
    for d in &r.damage {
        tracing::warn!(file = %d.file, offset = d.offset, torn_tail = d.torn_tail, reason = %d.reason, "journal damage");
    }
    if let Some(m) = &r.merged {
        tracing::warn!(from = %m.from, backup = ?m.backup, log = ?m.log, "merged a state file the original server wrote over statewal's history");
    }
    for d in &r.decisions {
        if reconcile::needs_attention(d.action) {
            tracing::warn!(task = %d.task, action = d.action.as_str(), "{d}");
        } else {
            tracing::info!(task = %d.task, action = d.action.as_str(), "{d}");
        }
    }
    if r.mode != RecoveryMode::TolerateTornTail && !r.damage.is_empty() {
        tracing::warn!(
            "recovery in {} mode left damage behind; a checkpoint replaces it",
            r.mode
        );
    }
}
