//! [`Store`]: the public facade over the storage engines (`crate::engine`).
//!
//! The facade owns what every engine shares: stamping tasks
//! ([`Options::stamp_times`]), the public documentation, and refusing what
//! an engine cannot do. It holds no storage logic: the journal engine
//! (`engine/journal.rs`) does the journal's work, and any other engine is
//! reached through the [`Engine`] trait.
//!
//! **Invariant:** an operation only the journal engine offers returns
//! [`ErrorKind::Unsupported`] on any other engine, before that engine is
//! asked anything; the facade never pretends.

use crate::archive::CleanReport;
use crate::backup::{BackupInfo, RestoreReport};
use crate::checkpoint::CheckpointStats;
use crate::engine::Engine;
use crate::engine::journal::{JournalEngine, Pending};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Subscriber, Subscription};
use crate::fs::Fs;
use crate::health::Health;
use crate::held::HeldTask;
use crate::metrics::StoreMetrics;
use crate::model::{PersistedState, Task, TaskStatus};
use crate::options::Options;
use crate::query::TaskQuery;
use crate::readback::{LogInfo, ReportInfo};
use crate::recovery::RecoveryReport;
use crate::session::Session;
use crate::transaction::Transaction;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// One mutation, for [`Store::submit`].
#[allow(clippy::large_enum_variant)] // Short-lived; see `Op`.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// Insert or replace a task.
    PutTask(Task),
    /// Remove a task; fails with [`ErrorKind::NotFound`] if there is none.
    DeleteTask(String),
    /// Insert or replace a session record (a JSON object with a string `"id"`).
    PutSession(Value),
    /// Remove a session record.
    DeleteSession(String),
    /// Append text to `logs/session_<session>.log`.
    AppendLog {
        /// The session id.
        session: String,
        /// The text, appended as is.
        text: String,
    },
    /// Save `reports/report_<id>.json`.
    SaveReport {
        /// The report id.
        id: String,
        /// The report.
        report: Value,
    },
    /// Move a task to this month's `archive/tasks-<YYYY>-<MM>.jsonl` as one
    /// JSON line and remove it; fails with [`ErrorKind::NotFound`] if there
    /// is no such task. See [`Store::archive_task`].
    ArchiveTask(String),
}

/// Counters for tests, benchmarks and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Journal records appended since open (on another engine: its writes
    /// since open).
    pub records: u64,
    /// Journal syncs (`fdatasync`) since open; 0 on another engine.
    pub journal_syncs: u64,
    /// The last sequence number (the engine's change order).
    pub last_seq: u64,
    /// Tasks in the store.
    pub tasks: usize,
}

/// The tasks of [`Store::load_tasks`], each parsed when it is reached.
///
/// A task whose held JSON does not parse back, which only a bug in statewal
/// could cause, is logged as an error and skipped; only then does the
/// iterator yield fewer tasks than its `len` said.
#[derive(Clone)]
pub struct Tasks {
    inner: TasksInner,
}

#[derive(Clone)]
enum TasksInner {
    /// The journal engine's tasks, shared JSON bytes parsed one by one.
    Held(std::vec::IntoIter<HeldTask>),
    /// Another engine's, parsed already.
    Parsed(std::vec::IntoIter<Task>),
}

impl Tasks {
    pub(crate) fn held(held: Vec<HeldTask>) -> Tasks {
        Tasks {
            inner: TasksInner::Held(held.into_iter()),
        }
    }

    fn parsed(tasks: Vec<Task>) -> Tasks {
        Tasks {
            inner: TasksInner::Parsed(tasks.into_iter()),
        }
    }
}

impl Iterator for Tasks {
    type Item = Task;

    fn next(&mut self) -> Option<Task> {
        match &mut self.inner {
            TasksInner::Held(held) => held.by_ref().find_map(|h| h.to_task_logged()),
            TasksInner::Parsed(tasks) => tasks.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.inner {
            TasksInner::Held(held) => held.size_hint(),
            TasksInner::Parsed(tasks) => tasks.size_hint(),
        }
    }
}

impl ExactSizeIterator for Tasks {}

impl DoubleEndedIterator for Tasks {
    fn next_back(&mut self) -> Option<Task> {
        match &mut self.inner {
            TasksInner::Held(held) => {
                while let Some(h) = held.next_back() {
                    if let Some(task) = h.to_task_logged() {
                        return Some(task);
                    }
                }
                None
            }
            TasksInner::Parsed(tasks) => tasks.next_back(),
        }
    }
}

impl std::fmt::Debug for Tasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks").field("left", &self.len()).finish()
    }
}

/// A crash-proof store of tasks, sessions, session logs and reports.
///
/// Every mutation is appended to the journal and acknowledged once durable
/// under the [`crate::SyncPolicy`]; checkpoints write the human-readable
/// layout. `Store` is `Send + Sync`: share it between threads with `Arc` or
/// by reference.
///
/// `Store` is a facade over a storage engine: the journal in a state
/// directory, which everything here offers, or (issue 12) another engine
/// such as PostgreSQL, on which the journal's own operations (checkpoints,
/// [`Store::submit`] and [`Pending`], the recovery report, backups,
/// cleaning, [`Store::load_state`]) fail with [`ErrorKind::Unsupported`].
pub struct Store {
    backend: Backend,
}

// One per open store, never in a collection: the journal engine inline
// saves an indirection on every call.
#[allow(clippy::large_enum_variant)]
enum Backend {
    Journal(JournalEngine),
    // Built by the engines behind features (PostgreSQL) and the crate's
    // tests; a build with neither never constructs it.
    #[cfg_attr(not(any(test, feature = "postgres")), allow(dead_code))]
    Other {
        engine: Box<dyn Engine>,
        opts: Options,
        /// The subscriber given at open ([`Store::open_with_subscriber`]),
        /// kept for the store's life.
        _subscription: Option<Subscription>,
    },
}

/// Which engine, and the options it was opened with; so an application
/// can `#[derive(Debug)]` a struct that holds a store.
impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (engine, opts) = match &self.backend {
            Backend::Journal(j) => ("journal", j.options()),
            Backend::Other { opts, .. } => ("other", opts),
        };
        f.debug_struct("Store")
            .field("engine", &engine)
            .field("options", opts)
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the state directory in `opts`, recovers,
    /// and starts the auto-save thread.
    ///
    /// With [`Options::database`], opens the PostgreSQL engine instead
    /// (cargo feature `postgres`; without it, [`ErrorKind::Unsupported`]):
    /// it connects, and a writing open creates or migrates statewal's
    /// tables, while a read-only one ([`Options::read_only`]) creates
    /// nothing and fails with [`ErrorKind::NotFound`] where the database
    /// has no statewal store. The directory is not used then.
    pub fn open(opts: Options) -> Result<Store> {
        if opts.database_url().is_some() {
            return Store::open_database(opts, None);
        }
        Ok(Store::journal(JournalEngine::open(opts, None)?))
    }

    /// Like [`Store::open`], with a subscriber that also sees `state:loaded`
    /// (on PostgreSQL, which recovers nothing, it sees the task changes
    /// from the moment the store is open).
    pub fn open_with_subscriber(
        opts: Options,
        f: impl Fn(&Event) + Send + Sync + 'static,
    ) -> Result<Store> {
        if opts.database_url().is_some() {
            return Store::open_database(opts, Some(Box::new(f)));
        }
        Ok(Store::journal(JournalEngine::open(
            opts,
            Some(Box::new(f)),
        )?))
    }

    /// The PostgreSQL engine on the database in `opts`.
    #[cfg(feature = "postgres")]
    fn open_database(opts: Options, subscriber: Option<Subscriber>) -> Result<Store> {
        let url = opts.database_url().expect("called with a database");
        // Encryption seals the journal engine's files; a database given a
        // key would store in clear what the caller asked to have sealed.
        #[cfg(feature = "encryption")]
        if let Some(key) = &opts.encryption_key {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "encryption at rest (key id {}) seals the journal engine's files; the \
                     PostgreSQL engine stores in clear (use PostgreSQL's own encryption), so a \
                     key and a database together are refused",
                    key.id()
                ),
            ));
        }
        if let Some(replica) = opts.replica_url() {
            // PostgreSQL has its own replication and backups; a journal
            // replica of a database would be a silent difference.
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "replication to {replica} ships the journal engine's segments; the \
                     PostgreSQL engine has none (use PostgreSQL's own replication)"
                ),
            ));
        }
        let engine = crate::engine::postgres::PgEngine::open(url, &opts)?;
        let subscription = subscriber.map(|f| engine.subscribe(f));
        Ok(Store {
            backend: Backend::Other {
                engine: Box::new(engine),
                opts,
                _subscription: subscription,
            },
        })
    }

    /// Without the `postgres` feature: the error that says so.
    #[cfg(not(feature = "postgres"))]
    fn open_database(opts: Options, _: Option<Subscriber>) -> Result<Store> {
        let url = opts.database_url().expect("called with a database");
        Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "the options name a database ({}), but this statewal was built without \
                 PostgreSQL support (the cargo feature `postgres`); rebuild with \
                 `--features postgres`",
                crate::options::redacted(url)
            ),
        ))
    }

    /// Opens a store on any [`Fs`](crate::sim::Fs), such as a
    /// [`SimFs`](crate::sim::SimFs) (feature `sim`). `opts.dir` is used only
    /// in messages. With [`Options::read_only`], `fs` is only read.
    #[cfg(feature = "sim")]
    pub fn open_with_fs(
        opts: Options,
        fs: Arc<dyn Fs>,
        subscriber: Option<Subscriber>,
    ) -> Result<Store> {
        Store::open_on(opts, fs, subscriber)
    }

    /// The journal engine on any [`Fs`].
    pub(crate) fn open_on(
        opts: Options,
        fs: Arc<dyn Fs>,
        subscriber: Option<Subscriber>,
    ) -> Result<Store> {
        Ok(Store::journal(JournalEngine::open_on(
            opts, fs, subscriber,
        )?))
    }

    fn journal(engine: JournalEngine) -> Store {
        Store {
            backend: Backend::Journal(engine),
        }
    }

    /// A store over another engine, its options those it was opened with.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn on_engine(engine: Box<dyn Engine>, opts: Options) -> Store {
        Store {
            backend: Backend::Other {
                engine,
                opts,
                _subscription: None,
            },
        }
    }

    /// The engine, for the operations every engine offers.
    fn engine(&self) -> &dyn Engine {
        match &self.backend {
            Backend::Journal(j) => j,
            Backend::Other { engine, .. } => &**engine,
        }
    }

    /// The journal engine, or [`ErrorKind::Unsupported`] naming `what`.
    fn journal_only(&self, what: &str) -> Result<&JournalEngine> {
        match &self.backend {
            Backend::Journal(j) => Ok(j),
            Backend::Other { .. } => Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{what} needs the journal engine (a state directory); this store's engine does not offer it"
                ),
            )),
        }
    }

    /// `task`, stamped when [`Options::stamp_times`] is on.
    fn stamped(&self, mut task: Task) -> Task {
        if self.options().stamp_times {
            task.stamp(&crate::model::now_rfc3339());
        }
        task
    }

    /// `m` with its task stamped, when [`Options::stamp_times`] is on.
    fn stamped_mutation(&self, m: Mutation) -> Mutation {
        match m {
            Mutation::PutTask(task) => Mutation::PutTask(self.stamped(task)),
            m => m,
        }
    }

    /// What recovery did when this store was opened.
    ///
    /// [`ErrorKind::Unsupported`] on an engine other than the journal's,
    /// which recovers nothing when it opens.
    pub fn recovery_report(&self) -> Result<&RecoveryReport> {
        Ok(self.journal_only("the recovery report")?.recovery_report())
    }

    /// What the replica ([`Options::replicate_to`]) has shipped: the
    /// generation, the shipped position, bytes, errors, the backlog and the
    /// time of the last success. `None` when the store has no replica.
    /// Journal engine only ([`ErrorKind::Unsupported`] elsewhere).
    #[cfg(feature = "replicate")]
    pub fn replica_status(&self) -> Result<Option<crate::replica::ReplicaStatus>> {
        Ok(self.journal_only("replication")?.replica_status())
    }

    /// Journals a mutation without waiting for it to be durable; call
    /// [`Pending::wait`] to get the acknowledgement.
    /// Journal engine only ([`ErrorKind::Unsupported`] elsewhere).
    pub fn submit(&self, m: Mutation) -> Result<Pending<'_>> {
        let journal = self.journal_only("submit (an unwaited mutation)")?;
        journal.submit_as_is(self.stamped_mutation(m))
    }

    /// Saves (inserts or replaces) a task; returns its sequence number once
    /// durable.
    pub fn put_task(&self, task: Task) -> Result<u64> {
        self.engine().put_task(self.stamped(task))
    }

    /// Deletes a task; [`ErrorKind::NotFound`] if there is none.
    pub fn delete_task(&self, id: &str) -> Result<u64> {
        self.engine().delete_task(id)
    }

    /// Applies several task and session puts and deletes atomically: the
    /// closure adds them to a [`Transaction`], and if it returns `Ok`, they
    /// are validated as a whole, journaled as one batch record and applied
    /// in one step. Returns the record's sequence number once durable, like
    /// [`Store::put_task`]; readers never see half a batch, and after a crash
    /// recovery replays all of it or none.
    ///
    /// Nothing is journaled if the closure fails or if any mutation is
    /// refused: an invalid id ([`ErrorKind::InvalidId`]), a task or session
    /// over `task_bytes_max` or a batch over the journal's record payload
    /// cap ([`ErrorKind::TooLarge`]), a delete of a task or session that is
    /// neither stored nor put earlier in the batch ([`ErrorKind::NotFound`]).
    /// An empty transaction journals nothing and returns the last sequence
    /// number.
    ///
    /// ```
    /// # fn main() -> statewal::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use statewal::{Options, Store, Task};
    /// let store = Store::open(Options::new(dir.path()))?;
    /// store.put_task(Task::new("draft"))?;
    /// store.transaction(|tx| {
    ///     tx.put_task(Task::new("final"));
    ///     tx.delete_task("draft");
    ///     Ok(())
    /// })?;
    /// assert!(store.get_task("draft")?.is_none());
    /// assert_eq!(store.task_version("final")?, Some(1));
    /// # Ok(())
    /// # }
    /// ```
    pub fn transaction(&self, f: impl FnOnce(&mut Transaction) -> Result<()>) -> Result<u64> {
        let mut tx = Transaction::default();
        f(&mut tx)?;
        let mutations = tx.into_mutations();
        let mutations = mutations.into_iter().map(|m| self.stamped_mutation(m));
        self.engine().apply_batch(mutations.collect())
    }

    /// The batch of [`Store::transaction`], without waiting for it to be
    /// durable; call [`Pending::wait`] for the acknowledgement. Log appends,
    /// reports and archiving cannot join a batch ([`ErrorKind::InvalidInput`]).
    /// Journal engine only ([`ErrorKind::Unsupported`] elsewhere).
    pub fn submit_batch(&self, mutations: Vec<Mutation>) -> Result<Pending<'_>> {
        let journal = self.journal_only("submit_batch (an unwaited batch)")?;
        let mutations = mutations.into_iter().map(|m| self.stamped_mutation(m));
        journal.submit_batch_as_is(mutations.collect())
    }

    /// The version of a task: 1 after its first put, one more after each
    /// put since (alone or in a batch); `None` if there is no such task.
    /// A delete forgets it, so a task put again starts over at 1. The
    /// version is the store's metadata, never a key in the task's JSON; it
    /// survives checkpoints (`task_versions` in `state.json`) and recovery.
    pub fn task_version(&self, id: &str) -> Result<Option<u64>> {
        self.engine().task_version(id)
    }

    /// Saves a task only if its current version is `expected` (`None`: only
    /// if there is no such task), checked under the lock that orders the
    /// journal, so no other write slips in between. Returns the sequence
    /// number once durable; [`ErrorKind::Conflict`] if the version differs,
    /// and then nothing is written.
    pub fn put_task_if(&self, task: Task, expected: Option<u64>) -> Result<u64> {
        self.engine().put_task_if(self.stamped(task), expected)
    }

    /// A task by id, parsed from the JSON the store holds.
    pub fn get_task(&self, id: &str) -> Result<Option<Task>> {
        self.engine().get_task(id)
    }

    /// All tasks, sorted by id, each parsed from the JSON the store holds.
    /// (A task whose held JSON does not parse back, which only a bug in
    /// statewal could cause, is left out and logged as an error.)
    /// [`Store::load_tasks`] parses one at a time instead.
    pub fn list_tasks(&self) -> Result<Vec<Task>> {
        self.engine().list_tasks()
    }

    /// All tasks, sorted by id (the original design's `loadTasks`), as an
    /// iterator that parses each task when it is reached. The store holds
    /// tasks as shared JSON bytes: this takes a reference to each under the
    /// read lock, without copying or parsing, and releases the lock before
    /// the first task is parsed. So it sees the tasks of one moment, writers
    /// never wait for it, and only the task in hand is ever parsed.
    ///
    /// ```
    /// # fn main() -> statewal::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use statewal::{Options, Store, Task, TaskStatus};
    /// let store = Store::open(Options::new(dir.path()))?;
    /// store.put_task(Task::new("b"))?;
    /// store.put_task(Task::new("a"))?;
    /// let tasks = store.load_tasks()?;
    /// assert_eq!(tasks.len(), 2);
    /// let pending = tasks.filter(|t| t.status() == TaskStatus::Pending).count();
    /// assert_eq!(pending, 2);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// On an engine other than the journal's, the tasks are read (and
    /// parsed) when this is called.
    pub fn load_tasks(&self) -> Result<Tasks> {
        match &self.backend {
            Backend::Journal(j) => Ok(j.load_tasks()),
            Backend::Other { engine, .. } => Ok(Tasks::parsed(engine.list_tasks()?)),
        }
    }

    /// The tasks a [`TaskQuery`] selects, in its order
    /// (`updated_at` ascending, tasks without one last, then id), paged by
    /// its `offset` and `limit`. On the journal engine, like
    /// [`Store::load_tasks`], it sees the tasks of one moment and parses after
    /// releasing the lock; tasks whose status the query excludes are never
    /// parsed.
    ///
    /// ```
    /// # fn main() -> statewal::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use statewal::{Options, Store, Task, TaskQuery, TaskStatus};
    /// let store = Store::open(Options::new(dir.path()))?;
    /// for (id, at) in [("a", "2026-12-02T10:00:00Z"), ("b", "2026-12-01T10:00:00Z")] {
    ///     let mut task = Task::new(id);
    ///     task.set("updated_at", at)?;
    ///     store.put_task(task)?;
    /// }
    /// store.put_task(Task::new("c"))?; // No `updated_at`: after the others.
    /// let query = TaskQuery::new().status(TaskStatus::Pending).limit(2);
    /// let ids: Vec<String> = store.query_tasks(&query)?.iter().map(|t| t.id().into()).collect();
    /// assert_eq!(ids, ["b", "a"]);
    /// let next = store.query_tasks(&query.offset(2))?;
    /// assert_eq!(next[0].id(), "c");
    /// # Ok(())
    /// # }
    /// ```
    pub fn query_tasks(&self, query: &TaskQuery) -> Result<Vec<Task>> {
        self.engine().query_tasks(query)
    }

    /// Saves a session record: a [`Session`], or a JSON object with a
    /// string `"id"`, kept as given (its keys in the writer's order).
    pub fn put_session(&self, session: impl Into<Value>) -> Result<u64> {
        self.engine().put_session(session.into())
    }

    /// Deletes a session record; [`ErrorKind::NotFound`] if there is none.
    pub fn delete_session(&self, id: &str) -> Result<u64> {
        self.engine().delete_session(id)
    }

    /// All session records, sorted by id.
    pub fn list_sessions(&self) -> Result<Vec<Session>> {
        self.engine().list_sessions()
    }

    /// Every session record as the engine holds it, sorted by id: each
    /// JSON object with its keys in the writer's order, `"id"` included
    /// where the writer put it (a [`Session`] puts it first).
    pub(crate) fn session_records(&self) -> Result<Vec<Value>> {
        self.engine().session_records()
    }

    /// A session record by id, with every change journaled so far.
    ///
    /// ```
    /// # fn main() -> statewal::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use statewal::{Options, Store};
    /// let store = Store::open(Options::new(dir.path()))?;
    /// store.put_session(serde_json::json!({"id": "s1", "pid": 42}))?;
    /// let session = store.get_session("s1")?.unwrap();
    /// assert_eq!((session.id.as_str(), &session.extra["pid"]), ("s1", &42.into()));
    /// assert!(store.get_session("s2")?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_session(&self, id: &str) -> Result<Option<Session>> {
        self.engine().get_session(id)
    }

    /// A report by id: the version journaled last if it is not checkpointed
    /// yet, else `reports/report_<id>.json`, else the original TypeScript
    /// server's `reports/<id>.json`. `None` if there is none;
    /// [`ErrorKind::Corrupt`] if its file is not JSON.
    ///
    /// ```
    /// # fn main() -> statewal::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use statewal::{Options, Store};
    /// let store = Store::open(Options::new(dir.path()))?;
    /// store.save_report("weekly", serde_json::json!({"passed": 12}))?;
    /// // Journaled, not yet in reports/: read back all the same.
    /// assert_eq!(store.get_report("weekly")?.unwrap()["passed"], 12);
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_report(&self, id: &str) -> Result<Option<Value>> {
        self.engine().get_report(id)
    }

    /// Every report, sorted by id: statewal's (`reports/report_<id>.json`,
    /// and those journaled but not yet written) and the original TypeScript
    /// server's (`reports/<id>.json`). When both name the same id, both are
    /// listed, statewal's first; [`Store::get_report`] returns statewal's.
    ///
    /// ```
    /// # fn main() -> statewal::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use statewal::{Options, Origin, Store};
    /// let store = Store::open(Options::new(dir.path()))?;
    /// store.save_report("weekly", serde_json::json!({"passed": 12}))?;
    /// let reports = store.list_reports()?;
    /// assert_eq!(reports[0].file_name, "report_weekly.json");
    /// assert_eq!(reports[0].origin, Origin::Statewal);
    /// assert!(reports[0].pending && !reports[0].on_disk);
    /// # Ok(())
    /// # }
    /// ```
    pub fn list_reports(&self) -> Result<Vec<ReportInfo>> {
        self.engine().list_reports()
    }

    /// Every session log, sorted by session and stamp: statewal's
    /// `logs/session_<id>.log` (with appends journaled but not yet written)
    /// and the original TypeScript server's `logs/session_<id>_<ms>.log`,
    /// whose stamp is the `<ms>` (13 digits). A name that could be either
    /// is statewal's when the store knows its whole `<id>_<ms>` part as a
    /// session; see `docs/decisions.md`.
    ///
    /// ```
    /// # fn main() -> statewal::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use statewal::{Options, Store};
    /// let store = Store::open(Options::new(dir.path()))?;
    /// store.append_log("s1", "started\n")?;
    /// let logs = store.list_logs()?;
    /// assert_eq!((logs[0].session.as_str(), logs[0].size), ("s1", 8));
    /// assert_eq!(logs[0].file_name, "session_s1.log");
    /// assert_eq!(logs[0].stamp_ms, None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn list_logs(&self) -> Result<Vec<LogInfo>> {
        self.engine().list_logs()
    }

    /// The bytes of a session log in `range` (`..` for all of it), with the
    /// appends journaled but not yet written to the file. `file_name` is a
    /// name as [`Store::list_logs`] gives it (`session_<id>.log` or
    /// `session_<id>_<ms>.log`); anything else, a path or a name with `..`,
    /// `/` or a NUL included, is refused with [`ErrorKind::InvalidInput`],
    /// and a symlink in `logs/` is never followed. The range is cut to the
    /// log's length, so one past the end gives fewer bytes or none; a range
    /// that ends before it starts is [`ErrorKind::InvalidInput`]. A log that
    /// is neither on disk nor journaled is [`ErrorKind::NotFound`]; a range
    /// of the file more than fits in memory is [`ErrorKind::TooLarge`] (read
    /// a smaller one).
    ///
    /// Each call sees one moment of the log, even while a checkpoint writes
    /// it: never a piece twice, never one missing. Logs only grow, so a
    /// reader can page through one range after another.
    ///
    /// ```
    /// # fn main() -> statewal::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use statewal::{Options, Store};
    /// let store = Store::open(Options::new(dir.path()))?;
    /// store.append_log("s1", "started\n")?;
    /// store.checkpoint()?; // logs/session_s1.log holds the first line...
    /// store.append_log("s1", "done\n")?; // ...and the journal the second.
    /// assert_eq!(store.read_log("session_s1.log", ..)?, b"started\ndone\n");
    /// assert_eq!(store.read_log("session_s1.log", 8..)?, b"done\n");
    /// assert!(store.read_log("../state.json", ..).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn read_log(
        &self,
        file_name: &str,
        range: impl std::ops::RangeBounds<u64>,
    ) -> Result<Vec<u8>> {
        let (start, end) = crate::readback::byte_range(&range);
        self.engine().read_log(file_name, start, end)
    }

    /// Appends `text` to `logs/session_<session>.log` (the file is written
    /// at the next checkpoint; the journal makes it durable now).
    pub fn append_log(&self, session: &str, text: &str) -> Result<u64> {
        self.engine().append_log(session, text)
    }

    /// Saves a report: journals it and returns the record's sequence number
    /// once durable, as the stdio protocol's `save_report` does.
    ///
    /// The file `reports/report_<id>.json` appears at the next checkpoint
    /// (the auto-save timer, the journal size threshold, an explicit
    /// [`Store::checkpoint`], or [`Store::shutdown`]); until then
    /// [`Store::get_report`] and [`Store::list_reports`] read the report
    /// from the journal. A later save of the same id replaces it.
    ///
    /// ```
    /// # fn main() -> statewal::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use statewal::{Options, Store};
    /// let store = Store::open(Options::new(dir.path()))?;
    /// let seq = store.save_report("weekly", serde_json::json!({"passed": 12}))?;
    /// assert!(seq >= 1);
    /// assert!(!dir.path().join("reports/report_weekly.json").exists());
    /// store.checkpoint()?;
    /// assert!(dir.path().join("reports/report_weekly.json").exists());
    /// # Ok(())
    /// # }
    /// ```
    pub fn save_report(&self, id: &str, report: Value) -> Result<u64> {
        self.engine().save_report(id, report)
    }

    /// Moves a task to the archive: journals one record that removes it from
    /// the state and holds its JSON line, and returns the record's sequence
    /// number once durable. The next checkpoint writes the line into
    /// `archive/tasks-<YYYY>-<MM>.jsonl` (this month, UTC) at the offset the
    /// record carries, then removes `tasks/<id>.json`; replaying the record
    /// after a crash writes the same line at the same place, never twice.
    /// [`ErrorKind::NotFound`] if there is no such task.
    pub fn archive_task(&self, id: &str) -> Result<u64> {
        self.engine().archive_task(id)
    }

    /// The whole state, as `state.json` would hold it now.
    /// Journal engine only ([`ErrorKind::Unsupported`] elsewhere).
    pub fn load_state(&self) -> Result<PersistedState> {
        Ok(self
            .journal_only("load_state (the state file)")?
            .load_state())
    }

    /// Checkpoints now (the original design's `saveState`).
    /// Journal engine only ([`ErrorKind::Unsupported`] elsewhere).
    pub fn save_state(&self) -> Result<CheckpointStats> {
        self.checkpoint()
    }

    /// Checkpoints now; an alias of [`Store::save_state`].
    /// Journal engine only ([`ErrorKind::Unsupported`] elsewhere).
    pub fn checkpoint(&self) -> Result<CheckpointStats> {
        self.journal_only("a checkpoint")?.checkpoint()
    }

    /// Archives every task whose status is in `statuses` (the
    /// [`crate::CLEAN_STATUSES_DEFAULT`] when empty) and whose
    /// [`crate::task_age_reference`] is more than `older_than` ago.
    ///
    /// Journals one [`Store::archive_task`] record per task, waits for them
    /// all as one group commit, and checkpoints, which writes the lines into
    /// the archive and removes the tasks' files. A crash at any point loses
    /// no task and archives none twice; running `clean` again finishes the
    /// job. With `dry_run` nothing is written. A task deleted concurrently is
    /// skipped.
    ///
    /// Journal engine only ([`ErrorKind::Unsupported`] elsewhere).
    pub fn clean(
        &self,
        older_than: Duration,
        statuses: &[TaskStatus],
        dry_run: bool,
    ) -> Result<CleanReport> {
        self.journal_only("clean (archiving into archive/)")?
            .clean(older_than, statuses, dry_run)
    }

    /// The backups in the state directory `dir`, newest first, read without
    /// opening a store (no lock is taken, nothing is written).
    /// Journal engine only ([`ErrorKind::Unsupported`] elsewhere).
    pub fn backups(&self) -> Result<Vec<BackupInfo>> {
        self.journal_only("listing backups")?.backups()
    }

    /// Restores the tasks and session records of a valid backup (by file
    /// name, or by its stamp alone) through the journal, and returns what
    /// changed and the backup that undoes it. The original server's
    /// unversioned backups are restored as `statewal migrate` would migrate
    /// them (statuses mapped to statewal's six, the original kept in
    /// `original_status`).
    ///
    /// Validates the whole backup first (it parses, its checksum seal
    /// matches or it migrates, every task and session id is valid),
    /// checkpoints, then
    /// journals ONE batch record holding a put for every task of the backup
    /// that differs from the current one and a delete for every current task
    /// the backup lacks (the same for sessions), waits for it, and
    /// checkpoints again. That last checkpoint turns the pre-restore
    /// `state.json` into the newest backup, named in
    /// [`RestoreReport::undo_backup`].
    ///
    /// All or nothing, power loss included: the batch is one record with one
    /// checksum, applied to memory in one step and replayed all or none, so
    /// a crash or an I/O failure at any point leaves the whole old state or
    /// the whole backup. If the restore fails before the batch is written
    /// (validation, the first checkpoint) nothing changed. If writing or
    /// syncing the batch fails, it is taken back out of memory, the journal
    /// is poisoned as after any failed sync, and reopening shows the old
    /// state or, if the record reached the disk anyway, the whole backup. An
    /// error after the batch is durable (the checkpoint after it) says "the
    /// restore is applied and durable". Concurrent writers on the same store
    /// are not held off: the batch is computed against the state after the
    /// first checkpoint, and their writes land wholly before or after it.
    ///
    /// A missing backup is [`ErrorKind::NotFound`], an invalid one
    /// [`ErrorKind::Corrupt`], one too large for a journal record
    /// [`ErrorKind::TooLarge`]; all of them change nothing.
    ///
    /// Journal engine only ([`ErrorKind::Unsupported`] elsewhere).
    pub fn restore_backup(&self, name: &str) -> Result<RestoreReport> {
        self.journal_only("restoring a backup")?
            .restore_backup(name)
    }

    /// Adds a subscriber for [`Event`]s, until the returned guard is
    /// dropped. The subscriber runs after the store has released its locks,
    /// so it may call back into the store; see [`Subscriber`].
    ///
    /// ```
    /// # fn main() -> statewal::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use statewal::{Event, Options, Store};
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// let store = Store::open(Options::new(dir.path()))?;
    /// let saved = Arc::new(AtomicUsize::new(0));
    /// let count = saved.clone();
    /// let subscription = store.subscribe(move |e| {
    ///     if let Event::StateSaved(_) = e {
    ///         count.fetch_add(1, Ordering::Relaxed);
    ///     }
    /// });
    /// store.checkpoint()?;
    /// drop(subscription); // Or subscription.unsubscribe().
    /// store.checkpoint()?;
    /// assert_eq!(saved.load(Ordering::Relaxed), 1);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Besides the checkpoint events, every committed change of a task
    /// arrives as an [`Event::TaskChanged`], once it is durable under the
    /// sync policy and in commit order per task:
    ///
    /// ```
    /// # fn main() -> statewal::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use statewal::{ChangeKind, Event, Options, Store, Task};
    /// use std::sync::{Arc, Mutex};
    /// let store = Store::open(Options::new(dir.path()))?;
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// let _subscription = store.subscribe(move |e| {
    ///     if let Event::TaskChanged(c) = e {
    ///         log.lock().unwrap().push((c.id.clone(), c.kind, c.version));
    ///     }
    /// });
    /// store.put_task(Task::new("a"))?;
    /// store.put_task(Task::new("a"))?;
    /// store.delete_task("a")?;
    /// assert_eq!(*seen.lock().unwrap(), [
    ///     ("a".to_string(), ChangeKind::Put, Some(1)),
    ///     ("a".to_string(), ChangeKind::Put, Some(2)),
    ///     ("a".to_string(), ChangeKind::Delete, None),
    /// ]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn subscribe(&self, f: impl Fn(&Event) + Send + Sync + 'static) -> Subscription {
        self.engine().subscribe(Box::new(f))
    }

    /// This open store's id: a random 128-bit id in hex, made when it was
    /// opened, and the [`crate::Change::origin`] of every change it makes.
    /// A subscriber compares it with each change's origin to tell its own
    /// changes from those of other instances (on PostgreSQL, every process
    /// that opened the same database).
    ///
    /// ```
    /// # fn main() -> statewal::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use statewal::{Options, Store};
    /// let store = Store::open(Options::new(dir.path()))?;
    /// assert_eq!(store.instance_id().len(), 32);
    /// # Ok(())
    /// # }
    /// ```
    pub fn instance_id(&self) -> &str {
        self.engine().origin()
    }

    /// Whether opening created the engine's storage (statewal's tables in a
    /// database), for the CLI to say where.
    pub(crate) fn created_storage(&self) -> bool {
        self.engine().created_storage()
    }

    /// Counters.
    pub fn stats(&self) -> Result<StoreStats> {
        self.engine().stats()
    }

    /// [`StoreStats::last_seq`] alone, without the counts (one query on
    /// PostgreSQL instead of three): for `serve --stdio`'s answers.
    pub(crate) fn last_seq(&self) -> Result<u64> {
        self.engine().last_seq()
    }

    /// Counters since open (checkpoints, saves that failed, journal syncs
    /// and their latency, load time) and the directory's size now.
    pub fn metrics(&self) -> Result<StoreMetrics> {
        self.engine().metrics()
    }

    /// [`crate::health`] of the directory in the options, read from the
    /// real filesystem (whatever [`Fs`] the store was opened on), plus a
    /// problem for each derived file this store's last checkpoint could
    /// not write (`crate::derived`).
    pub fn health(&self) -> Health {
        self.engine().health()
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &Options {
        match &self.backend {
            Backend::Journal(j) => j.options(),
            Backend::Other { opts, .. } => opts,
        }
    }

    /// Stops the auto-save thread, checkpoints (unless turned off in the
    /// options) and releases the directory lock.
    pub fn shutdown(mut self) -> Result<()> {
        match &mut self.backend {
            Backend::Journal(j) => j.shutdown(),
            Backend::Other { engine, .. } => engine.shutdown(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// An engine that records being asked anything and answers `Io`.
    #[derive(Default)]
    struct Asked(Arc<AtomicBool>);

    impl Asked {
        fn no<T>(&self) -> Result<T> {
            self.0.store(true, Ordering::Relaxed);
            Err(Error::new(ErrorKind::Io, "the engine was asked"))
        }
    }

    impl Engine for Asked {
        fn put_task(&self, _: Task) -> Result<u64> {
            self.no()
        }
        fn put_task_if(&self, _: Task, _: Option<u64>) -> Result<u64> {
            self.no()
        }
        fn delete_task(&self, _: &str) -> Result<u64> {
            self.no()
        }
        fn task_version(&self, _: &str) -> Result<Option<u64>> {
            self.no()
        }
        fn get_task(&self, _: &str) -> Result<Option<Task>> {
            self.no()
        }
        fn query_tasks(&self, _: &TaskQuery) -> Result<Vec<Task>> {
            self.no()
        }
        fn apply_batch(&self, _: Vec<Mutation>) -> Result<u64> {
            self.no()
        }
        fn put_session(&self, _: Value) -> Result<u64> {
            self.no()
        }
        fn delete_session(&self, _: &str) -> Result<u64> {
            self.no()
        }
        fn get_session(&self, _: &str) -> Result<Option<Session>> {
            self.no()
        }
        fn list_sessions(&self) -> Result<Vec<Session>> {
            self.no()
        }
        fn append_log(&self, _: &str, _: &str) -> Result<u64> {
            self.no()
        }
        fn list_logs(&self) -> Result<Vec<LogInfo>> {
            self.no()
        }
        fn read_log(&self, _: &str, _: u64, _: Option<u64>) -> Result<Vec<u8>> {
            self.no()
        }
        fn save_report(&self, _: &str, _: Value) -> Result<u64> {
            self.no()
        }
        fn get_report(&self, _: &str) -> Result<Option<Value>> {
            self.no()
        }
        fn list_reports(&self) -> Result<Vec<ReportInfo>> {
            self.no()
        }
        fn archive_task(&self, _: &str) -> Result<u64> {
            self.no()
        }
        fn subscribe(&self, _: Subscriber) -> Subscription {
            unreachable!("not asked by these tests")
        }
        fn origin(&self) -> &str {
            "asked"
        }
        fn stats(&self) -> Result<StoreStats> {
            self.no()
        }
        fn metrics(&self) -> Result<StoreMetrics> {
            self.no()
        }
        fn health(&self) -> Health {
            unreachable!("not asked by these tests")
        }
        fn shutdown(&mut self) -> Result<()> {
            self.no()
        }
    }

    fn other() -> (Store, Arc<AtomicBool>) {
        let engine = Asked::default();
        let asked = engine.0.clone();
        let store = Store::on_engine(Box::new(engine), Options::new("/nonexistent"));
        (store, asked)
    }

    #[test]
    fn journal_only_operations_are_refused_before_the_engine_is_asked() {
        let (store, asked) = other();
        let kinds = [
            store
                .submit(Mutation::DeleteTask("a".into()))
                .err()
                .map(|e| e.kind()),
            store.submit_batch(Vec::new()).err().map(|e| e.kind()),
            store.recovery_report().err().map(|e| e.kind()),
            store.load_state().err().map(|e| e.kind()),
            store.save_state().err().map(|e| e.kind()),
            store.checkpoint().err().map(|e| e.kind()),
            store
                .clean(Duration::ZERO, &[], true)
                .err()
                .map(|e| e.kind()),
            store.backups().err().map(|e| e.kind()),
            store.restore_backup("x").err().map(|e| e.kind()),
        ];
        assert_eq!(kinds, [Some(ErrorKind::Unsupported); 9]);
        assert!(!asked.load(Ordering::Relaxed));
        let e = store.checkpoint().unwrap_err();
        assert!(e.to_string().contains("journal engine"), "{e}");
    }

    #[test]
    fn shared_operations_reach_the_engine_and_its_errors_come_back() {
        let (store, asked) = other();
        assert_eq!(store.list_tasks().unwrap_err().kind(), ErrorKind::Io);
        assert!(asked.load(Ordering::Relaxed));
        for kind in [
            store.load_tasks().err().map(|e| e.kind()),
            store.list_sessions().err().map(|e| e.kind()),
            store.stats().err().map(|e| e.kind()),
            store.put_task(Task::new("a")).err().map(|e| e.kind()),
            store.transaction(|_| Ok(())).err().map(|e| e.kind()),
        ] {
            assert_eq!(kind, Some(ErrorKind::Io));
        }
        assert_eq!(store.options().dir, std::path::Path::new("/nonexistent"));
        assert_eq!(store.shutdown().unwrap_err().kind(), ErrorKind::Io);
    }
}

/// Runs only in a build without `replicate` (`cargo test --lib`): the
/// suite is built with every feature, where this refusal cannot happen.
#[cfg(all(test, not(feature = "replicate")))]
mod without_replicate {
    use super::*;

    /// A lean build must refuse a replica URL, not ignore it: ignoring it
    /// would let a user believe the store is backed up when nothing ships.
    #[test]
    fn replicate_to_is_unsupported() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = Options::new(tmp.path().join("store")).replicate_to("file:///tmp/replica");
        let e = Store::open(opts).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        assert!(e.to_string().contains("file:///tmp/replica"), "{e}");
        assert!(e.to_string().contains("`replicate`"), "{e}");
    }
}
