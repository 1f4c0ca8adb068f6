//! The PostgreSQL engine (feature `postgres`): the store's data as rows of
//! one database, shared by every instance that opens it.
//!
//! - `conn.rs`: the connection pool, transactions and error mapping;
//! - `schema.rs`: the versioned migrations;
//! - `tasks.rs`: task rows and the SQL of [`TaskQuery`];
//! - `records.rs`: sessions, logs and reports;
//! - `outbox.rs`: the change outbox and the listener behind `subscribe`.
//!
//! Input is checked by the same code as the journal engine's
//! (`crate::transaction`), so an invalid id, an oversized task or a
//! session without an id gets the same [`ErrorKind`] on both. See
//! `docs/postgres.md` for the schema, the guarantees and the failure
//! behaviour.
//!
//! **Invariant:** this engine never touches the state directory, and every
//! write returns only after its transaction committed.

mod conn;
mod outbox;
mod records;
mod schema;
mod tasks;

pub use outbox::{Change, ChangeKind, Delivery};

use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Subscriber, Subscribers, Subscription};
use crate::health::Health;
use crate::journal::op::Op;
use crate::metrics::StoreMetrics;
use crate::model::Task;
use crate::options::Options;
use crate::query::TaskQuery;
use crate::readback::{LogInfo, ReportInfo};
use crate::session::Session;
use crate::store::{Mutation, StoreStats};
use crate::transaction;
use conn::{Pool, in_transaction, pg_error, pool_error};
use parking_lot::Mutex;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tasks::{Expect, Row};

/// A store's data in a PostgreSQL database.
pub(crate) struct PgEngine {
    pool: Pool,
    config: postgres::Config,
    /// The URL as given, its password hidden: for messages and `health`.
    shown: String,
    task_bytes_max: usize,
    read_only: bool,
    /// This instance's id, the origin of the changes it makes.
    origin: String,
    subscribers: Arc<Subscribers>,
    sinks: Arc<outbox::Sinks>,
    listener: Mutex<Option<outbox::Listener>>,
    /// The watch that turns the outbox's changes into events for
    /// [`Engine::subscribe`]'s subscribers, made by the first subscribe.
    forwarding: Mutex<Option<Watch>>,
    /// Transactions this instance committed.
    commits: AtomicU64,
    open_time: Duration,
    /// Whether this open created statewal's tables.
    created_storage: bool,
    /// The outbox horizon when the store opened: where the listener
    /// starts if the server cannot be asked when the first subscriber
    /// comes, so a subscriber added during an outage hears every change
    /// made since (some perhaps twice over) instead of none.
    opened_horizon: u64,
    /// How long outbox rows are kept ([`Options::changes_retention`]).
    changes_retention: Duration,
    /// When this instance last pruned the outbox; `None` before the first.
    pruned_at: Mutex<Option<Instant>>,
}

/// How often a writing instance prunes the outbox: after a commit, once
/// this long has passed since its last prune (and after its first commit).
const PRUNE_INTERVAL: Duration = Duration::from_secs(300);

impl PgEngine {
    /// Connects to the database `url` names and brings its schema up to
    /// date. `opts` gives the limits (`task_bytes_max`) and `read_only`;
    /// its directory is not used.
    pub(crate) fn open(url: &str, opts: &Options) -> Result<PgEngine> {
        let started = Instant::now();
        let shown = conn::redacted(url);
        let config = conn::parse_url(url)?;
        let pool = conn::pool(config.clone(), &shown)?;
        // A writer creates the tables where there are none; a reader never
        // does, so a read pointed at someone else's database (a stray
        // DATABASE_URL) leaves it as it found it.
        let created_storage = if opts.read_only {
            schema::require(&pool, &shown)?;
            false
        } else {
            schema::migrate(&pool).map_err(|e| e.context(format!("opening {shown}")))? == 0
        };
        let opened_horizon = outbox::horizon(
            &mut *pool
                .get()
                .map_err(|e| pool_error(&pool, "reading the outbox horizon", e))?,
        )?;
        Ok(PgEngine {
            pool,
            config,
            shown,
            task_bytes_max: opts.task_bytes_max,
            read_only: opts.read_only,
            origin: crate::journal::record::id_hex(&crate::journal::new_store_id()),
            subscribers: Arc::default(),
            sinks: Arc::default(),
            listener: Mutex::new(None),
            forwarding: Mutex::new(None),
            commits: AtomicU64::new(0),
            open_time: started.elapsed(),
            created_storage,
            opened_horizon,
            changes_retention: opts.changes_retention,
            pruned_at: Mutex::new(None),
        })
    }

    /// This instance's id: the `origin` of the changes it makes.
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// Calls `f` with every task change committed from now on, by any
    /// instance, in commit order per task, and with [`Delivery::Missed`]
    /// when changes were pruned before they were read, until the returned
    /// guard is dropped.
    pub(crate) fn watch(&self, f: impl Fn(Delivery<'_>) + Send + Sync + 'static) -> Result<Watch> {
        self.listen()?;
        Ok(Watch {
            id: self.sinks.add(Arc::new(f)),
            sinks: Arc::downgrade(&self.sinks),
        })
    }

    /// Starts the listener if it is not running.
    fn listen(&self) -> Result<()> {
        let mut listener = self.listener.lock();
        if listener.is_none() {
            // Start from now; unreachable now, start from the open instead
            // of refusing: the listener's thread connects when it can and
            // catches up, and an earlier start costs repeats, never gaps.
            let now = self
                .conn("reading the outbox horizon")
                .and_then(|mut c| outbox::horizon(&mut *c));
            let cursor = match now {
                Ok(cursor) => cursor,
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "the outbox horizon cannot be read; change events start from the store's open"
                    );
                    self.opened_horizon
                }
            };
            let sinks = self.sinks.clone();
            let sink: outbox::Sink = Arc::new(move |delivery| sinks.deliver(delivery));
            *listener = Some(outbox::Listener::start(self.config.clone(), cursor, sink)?);
        }
        Ok(())
    }

    /// [`Engine::put_task`], running `before_commit` inside the transaction
    /// after the outbox row is written: for tests of a late commit.
    pub(crate) fn put_task_before_commit(
        &self,
        task: Task,
        before_commit: &dyn Fn(u64),
    ) -> Result<u64> {
        let row = self.checked_task(task)?;
        self.write("saving a task", |tx| {
            let (seq, _) = tasks::put(tx, &row, Expect::Any, &self.origin)?
                .expect("a plain put always writes");
            before_commit(seq);
            Ok(seq)
        })
    }

    fn conn(&self, what: &str) -> Result<conn::Conn> {
        self.pool.get().map_err(|e| pool_error(&self.pool, what, e))
    }

    /// Runs a writing transaction, counted once committed.
    fn write<T>(
        &self,
        what: &str,
        body: impl FnMut(&mut postgres::Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        if self.read_only {
            return Err(Error::new(
                ErrorKind::ReadOnly,
                format!("the store on {} was opened read-only", self.shown),
            ));
        }
        let out = in_transaction(&self.pool, what, body)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.maybe_prune();
        Ok(out)
    }

    /// Deletes the outbox rows older than `retention`; how many went.
    /// Listeners that had not read them are told ([`Delivery::Missed`]).
    pub(crate) fn prune_changes(&self, retention: Duration) -> Result<u64> {
        outbox::prune(&mut *self.conn("pruning the outbox")?, retention)
    }

    /// Prunes the outbox if [`PRUNE_INTERVAL`] has passed since this
    /// instance last did. A failure is logged, never returned: the write
    /// that called it has committed.
    fn maybe_prune(&self) {
        // One writer prunes at a time; the others go on.
        let Some(mut last) = self.pruned_at.try_lock() else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < PRUNE_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        match self.prune_changes(self.changes_retention) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "pruned the outbox"),
            Err(e) => tracing::warn!(error = %e, "pruning the outbox failed; tried again later"),
        }
    }

    /// Checks `task` as the journal engine does; its row.
    fn checked_task(&self, task: Task) -> Result<Row> {
        let row = Row::of(&task)?;
        match transaction::validate(Mutation::PutTask(task), self.task_bytes_max)?.0 {
            Op::PutTask(held) => Ok(row.with_doc(&held)),
            _ => unreachable!("validating a task put gives a task put"),
        }
    }
}

/// A watch made by [`PgEngine::watch`]; dropping it removes the callback.
pub(crate) struct Watch {
    id: u64,
    sinks: std::sync::Weak<outbox::Sinks>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(s) = self.sinks.upgrade() {
            s.remove(self.id);
        }
    }
}

fn missing(what: &str, id: &str, in_batch: bool) -> Error {
    let tail = if in_batch {
        "; nothing in the batch was written"
    } else {
        ""
    };
    Error::new(
        ErrorKind::NotFound,
        format!("no {what} with id {id:?}{tail}"),
    )
}

impl Engine for PgEngine {
    fn put_task(&self, task: Task) -> Result<u64> {
        self.put_task_before_commit(task, &|_| {})
    }

    fn put_task_if(&self, task: Task, expected: Option<u64>) -> Result<u64> {
        let row = self.checked_task(task)?;
        let expect = expected.map_or(Expect::Absent, Expect::Version);
        self.write("saving a task", |tx| {
            match tasks::put(tx, &row, expect, &self.origin)? {
                Some((seq, _)) => Ok(seq),
                None => {
                    let id = row.id();
                    let found = tasks::version(tx, id)?;
                    Err(transaction::version_conflict(id, found, expected))
                }
            }
        })
    }

    fn delete_task(&self, id: &str) -> Result<u64> {
        crate::id::validate_id(id)?;
        self.write("deleting a task", |tx| {
            tasks::delete(tx, id, ChangeKind::Delete, &self.origin)?
                .ok_or_else(|| missing("task", id, false))
        })
    }

    fn task_version(&self, id: &str) -> Result<Option<u64>> {
        crate::id::validate_id(id)?;
        tasks::version(&mut *self.conn("reading a task's version")?, id)
    }

    fn get_task(&self, id: &str) -> Result<Option<Task>> {
        crate::id::validate_id(id)?;
        tasks::get(&mut *self.conn("reading a task")?, id)
    }

    fn query_tasks(&self, query: &TaskQuery) -> Result<Vec<Task>> {
        tasks::query(&mut *self.conn("listing tasks")?, query)
    }

    fn apply_batch(&self, mutations: Vec<Mutation>) -> Result<u64> {
        // The rows' columns are read from the tasks before the journal's
        // checks consume them.
        let mut rows = Vec::new();
        for m in &mutations {
            if let Mutation::PutTask(t) = m {
                rows.push(Row::of(t)?);
            }
        }
        let Some((Op::Batch(ops), _)) = transaction::prepare(mutations, self.task_bytes_max)?
        else {
            let mut c = self.conn("reading the change order")?;
            return last_seq(&mut *c);
        };
        let mut rows = rows.into_iter();
        let ops: Vec<(Op, Option<Row>)> = ops
            .into_iter()
            .map(|op| match &op {
                Op::PutTask(held) => {
                    let row = rows.next().expect("one row per task put").with_doc(held);
                    (op, Some(row))
                }
                _ => (op, None),
            })
            .collect();
        self.write("applying a batch", |tx| {
            let mut last = 0;
            for (op, row) in &ops {
                last = match (op, row) {
                    (Op::PutTask(_), Some(row)) => {
                        tasks::put(tx, row, Expect::Any, &self.origin)?
                            .expect("a plain put always writes")
                            .0
                    }
                    (Op::DeleteTask(id), _) => {
                        tasks::delete(tx, id, ChangeKind::Delete, &self.origin)?
                            .ok_or_else(|| missing("task", id, true))?
                    }
                    (Op::PutSession { id, session }, _) => records::put_session(tx, id, session)?,
                    (Op::DeleteSession(id), _) => records::delete_session(tx, id)?
                        .ok_or_else(|| missing("session", id, true))?,
                    _ => unreachable!("a batch holds task and session puts and deletes"),
                };
            }
            Ok(last)
        })
    }

    fn put_session(&self, session: Value) -> Result<u64> {
        let (op, _) = transaction::validate(Mutation::PutSession(session), self.task_bytes_max)?;
        let Op::PutSession { id, session } = op else {
            unreachable!("validating a session put gives a session put")
        };
        self.write("saving a session", |tx| {
            records::put_session(tx, &id, &session)
        })
    }

    fn delete_session(&self, id: &str) -> Result<u64> {
        crate::id::validate_id(id)?;
        self.write("deleting a session", |tx| {
            records::delete_session(tx, id)?.ok_or_else(|| missing("session", id, false))
        })
    }

    fn get_session(&self, id: &str) -> Result<Option<Session>> {
        crate::id::validate_id(id)?;
        records::get_session(&mut *self.conn("reading a session")?, id)
    }

    fn list_sessions(&self) -> Result<Vec<Session>> {
        records::list_sessions(&mut *self.conn("listing sessions")?)
    }

    fn session_records(&self) -> Result<Vec<Value>> {
        records::session_records(&mut *self.conn("listing sessions")?)
    }

    fn append_log(&self, session: &str, text: &str) -> Result<u64> {
        transaction::validate_log_append(session, text, self.task_bytes_max)?;
        self.write("appending to a log", |tx| {
            records::append_log(tx, session, text)
        })
    }

    fn list_logs(&self) -> Result<Vec<LogInfo>> {
        records::list_logs(&mut *self.conn("listing logs")?)
    }

    fn read_log(&self, file_name: &str, start: u64, end: Option<u64>) -> Result<Vec<u8>> {
        // One snapshot for the length and the pieces.
        let mut c = self.conn("reading a log")?;
        let mut tx = c
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(|e| pg_error("reading a log", e))?;
        records::read_log(&mut tx, file_name, start, end)
    }

    fn save_report(&self, id: &str, report: Value) -> Result<u64> {
        let (op, _) = transaction::validate_report(id.to_string(), report, self.task_bytes_max)?;
        let Op::SaveReport { id, report } = op else {
            unreachable!("validating a report gives a report")
        };
        self.write("saving a report", |tx| {
            records::save_report(tx, &id, &report)
        })
    }

    fn get_report(&self, id: &str) -> Result<Option<Value>> {
        crate::id::validate_id(id)?;
        records::get_report(&mut *self.conn("reading a report")?, id)
    }

    fn list_reports(&self) -> Result<Vec<ReportInfo>> {
        records::list_reports(&mut *self.conn("listing reports")?)
    }

    fn archive_task(&self, id: &str) -> Result<u64> {
        crate::id::validate_id(id)?;
        self.write("archiving a task", |tx| {
            tasks::delete(tx, id, ChangeKind::Archive, &self.origin)?
                .ok_or_else(|| missing("task", id, false))
        })
    }

    fn subscribe(&self, f: Subscriber) -> Subscription {
        let subscription = self.subscribers.subscribe(f);
        let mut forwarding = self.forwarding.lock();
        if forwarding.is_none() {
            // Every subscriber hears the changes of every instance, this
            // one's included, from the listener's thread, once committed.
            let subscribers = Arc::downgrade(&self.subscribers);
            match self.watch(move |delivery| {
                if let Some(subs) = subscribers.upgrade() {
                    match delivery {
                        Delivery::Missed => subs.emit(Event::ChangesMissed),
                        Delivery::Changes(changes) => {
                            for c in changes {
                                subs.emit(Event::TaskChanged(event_change(c)));
                            }
                        }
                    }
                    subs.deliver();
                }
            }) {
                Ok(w) => *forwarding = Some(w),
                // Only a thread that cannot be started ends here (an
                // unreachable server does not: see `listen`); the next
                // subscribe tries again.
                Err(e) => tracing::error!(
                    error = %e,
                    "task changes cannot be delivered: the listener did not start"
                ),
            }
        }
        subscription
    }

    fn origin(&self) -> &str {
        &self.origin
    }

    fn created_storage(&self) -> bool {
        self.created_storage
    }

    fn stats(&self) -> Result<StoreStats> {
        let mut c = self.conn("reading counts")?;
        let commits = self.commits.load(Ordering::Relaxed);
        Ok(StoreStats {
            records: commits,
            // statewal syncs nothing itself here (the server flushes its
            // WAL at commit), as `StoreStats` documents and `metrics`
            // already said: `fsyncs` 0.
            journal_syncs: 0,
            last_seq: last_seq(&mut *c)?,
            tasks: usize::try_from(tasks::count(&mut *c)?).unwrap_or(usize::MAX),
        })
    }

    fn last_seq(&self) -> Result<u64> {
        last_seq(&mut *self.conn("reading the change order")?)
    }

    fn metrics(&self) -> Result<StoreMetrics> {
        let mut m = StoreMetrics::empty();
        m.load_seconds = self.open_time.as_secs_f64();
        m.journal_records = self.commits.load(Ordering::Relaxed);
        m.tasks = tasks::count(&mut *self.conn("counting tasks")?)?;
        Ok(m)
    }

    fn health(&self) -> Health {
        health(&self.pool, &self.shown)
    }

    fn shutdown(&mut self) -> Result<()> {
        self.forwarding.lock().take();
        if let Some(mut l) = self.listener.lock().take() {
            l.stop();
        }
        Ok(())
    }
}

/// An outbox row as the event every engine sends: an archive is a delete,
/// as on the journal engine (the task has left the store).
fn event_change(c: &Change) -> crate::events::Change {
    crate::events::Change {
        id: c.task_id.clone(),
        kind: match c.kind {
            ChangeKind::Put => crate::events::ChangeKind::Put,
            ChangeKind::Delete | ChangeKind::Archive => crate::events::ChangeKind::Delete,
        },
        version: c.version,
        seq: c.seq,
        origin: c.origin.clone(),
    }
}

/// The last position taken in the change order (0 before the first).
fn last_seq(c: &mut impl postgres::GenericClient) -> Result<u64> {
    // Typed, so one round trip: no separate prepare.
    let row = c
        .query_typed_one(
            "SELECT coalesce(pg_sequence_last_value('statewal_changes_id_seq'), 0)",
            &[],
        )
        .map_err(|e| pg_error("reading the change order", e))?;
    Ok(tasks::from_i64(row.get(0)))
}

/// Whether the database can be reached and written, and its schema is
/// this statewal's.
fn health(pool: &Pool, shown: &str) -> Health {
    let mut problems = Vec::new();
    let mut writable = false;
    match pool.get() {
        Err(e) => problems.push(format!("{shown} cannot be reached: {e}")),
        Ok(mut c) => {
            match c.query_one("SELECT pg_is_in_recovery()", &[]) {
                Ok(r) => {
                    writable = !r.get::<_, bool>(0);
                    if !writable {
                        problems.push(format!("{shown} is a standby and takes no writes"));
                    }
                }
                Err(e) => problems.push(format!("{shown}: {e}")),
            }
            match c.query_one(
                "SELECT coalesce(max(version), 0) FROM statewal_schema_versions",
                &[],
            ) {
                Ok(r) if r.get::<_, i32>(0) == schema::SCHEMA_VERSION => {}
                Ok(r) => problems.push(format!(
                    "{shown} has statewal schema version {}, not {}",
                    r.get::<_, i32>(0),
                    schema::SCHEMA_VERSION
                )),
                Err(e) => problems.push(format!("{shown} has no statewal schema: {e}")),
            }
        }
    }
    Health {
        healthy: problems.is_empty(),
        exists: writable || problems.is_empty(),
        writable,
        problems,
        ..Health::nothing_found(shown.to_string())
    }
}
