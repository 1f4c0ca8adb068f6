//! The outbox `statewal_changes` and the listener that turns it into
//! events on every instance.
//!
//! Each task change writes one outbox row in its own transaction, after it
//! took the task's row lock, and `pg_notify('statewal_changes')`, which
//! PostgreSQL delivers only when that transaction commits. Notifications
//! are only the wake-up: they are lost while a listener is disconnected.
//! What a listener delivers it reads from the table.
//!
//! **The horizon.** Row ids come from a sequence, taken before commit, so
//! a transaction that took id 10 can commit after one that took id 11; a
//! reader that remembered "everything up to 11" would skip 10 for ever. So
//! the listener's cursor is not an id but a transaction-id horizon: the
//! `xmin` of a snapshot (`pg_snapshot_xmin(pg_current_snapshot())`), below
//! which every transaction has finished, committed or aborted. Each poll
//! reads, in one statement, the new horizon and the rows whose writer's
//! `xid` lies between the old horizon and the new one: transactions that
//! had all finished when the statement's snapshot was taken, so every one
//! of their rows is visible to it. The horizon never moves backwards, so
//! each row is delivered once, none is skipped however late it commits.
//! The price: one long-running writing transaction anywhere in the
//! cluster holds delivery back until it ends. Its end wakes nobody, so a
//! poll that sees committed rows past the horizon polls again soon
//! ([`HELD_POLL_FIRST`], doubling), not after the full interval.
//!
//! **Order.** Within a poll the rows go out by id. A row's id is taken
//! after its writer holds the task's row lock, and a later writer of the
//! same task waits for that lock until the first commits, so for one task
//! id order is commit order, across polls too.
//!
//! **Pruning.** Rows older than the retention
//! ([`crate::Options::changes_retention`]) are deleted by writers from time
//! to time ([`prune`]), and the highest `xid` deleted is kept in
//! `statewal_changes_pruned`, in the same transaction. A listener reads it
//! in the statement that reads its changes: if it is at or above the
//! cursor, a row this listener had not delivered is gone, and the
//! listener says so ([`Delivery::Missed`]) before delivering what is
//! left, so a subscriber reloads instead of silently going without.
//!
//! **Invariant:** a change is delivered only after the transaction that
//! wrote it committed, and the cursor advances only past transactions
//! that had all ended; a change pruned before it was delivered is
//! reported as missed, never skipped in silence.

use super::conn::pg_error;
use crate::error::Result;
use parking_lot::Mutex;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::Type;
use postgres::{Client, Config, NoTls, Transaction};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The notification channel writers signal and listeners listen on.
pub(crate) const CHANNEL: &str = "statewal_changes";

/// How long a listener waits for a notification before it polls anyway:
/// the horizon may have moved without one (a transaction elsewhere in the
/// cluster ended), and a notification may have been lost.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The first wait before polling again when committed changes are held
/// back by the horizon (an older transaction still running somewhere): it
/// doubles up to [`POLL_INTERVAL`], since that transaction's end sends no
/// notification.
const HELD_POLL_FIRST: Duration = Duration::from_millis(2);

/// How long a listener waits before connecting again after a failure.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// What a change did to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Inserted or replaced.
    Put,
    /// Removed.
    Delete,
    /// Moved to the archive (and so removed from the tasks).
    Archive,
}

impl ChangeKind {
    /// The word in the outbox's `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Put => "put",
            ChangeKind::Delete => "delete",
            ChangeKind::Archive => "archive",
        }
    }

    fn parse(s: &str) -> Option<ChangeKind> {
        [ChangeKind::Put, ChangeKind::Delete, ChangeKind::Archive]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// One committed task change, as the outbox holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The outbox row's id: the write's position in the change order.
    pub seq: u64,
    /// The task's id.
    pub task_id: String,
    /// What the change did.
    pub kind: ChangeKind,
    /// The task's version after the change; `None` once it is gone.
    pub version: Option<u64>,
    /// The id of the engine instance that made the change.
    pub origin: String,
}

/// What a listener hands its sink.
#[derive(Debug, Clone, Copy)]
pub enum Delivery<'a> {
    /// The changes of one poll, in delivery order.
    Changes(&'a [Change]),
    /// Changes this listener had not delivered were pruned from the outbox
    /// (older than the retention): whoever follows the tasks must reload.
    Missed,
}

/// Where a listener hands what it reads.
pub(crate) type Sink = Arc<dyn Fn(Delivery<'_>) + Send + Sync>;

/// Writes the outbox row of a task change in `tx` and queues the wake-up;
/// returns the row's id.
pub(crate) fn record(
    tx: &mut Transaction<'_>,
    task_id: &str,
    kind: ChangeKind,
    version: Option<u64>,
    origin: &str,
) -> Result<u64> {
    let version = version.map(super::tasks::to_i64);
    // Sent with its types: one round trip, no separate prepare.
    let row = tx
        .query_typed_one(
            "WITH c AS (INSERT INTO statewal_changes (task_id, kind, version, origin) \
                        VALUES ($1, $2, $3, $4) RETURNING id) \
             SELECT c.id FROM c, pg_notify($5, '') AS n",
            &[
                (&task_id, Type::TEXT),
                (&kind.as_str(), Type::TEXT),
                (&version, Type::INT8),
                (&origin, Type::TEXT),
                (&CHANNEL, Type::TEXT),
            ],
        )
        .map_err(|e| pg_error(&format!("recording the change of task {task_id:?}"), e))?;
    Ok(super::tasks::from_i64(row.get(0)))
}

/// The horizon now: every transaction below it has ended.
pub(crate) fn horizon(client: &mut impl postgres::GenericClient) -> Result<u64> {
    let row = client
        .query_one(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
            &[],
        )
        .map_err(|e| pg_error("reading the outbox horizon", e))?;
    Ok(super::tasks::from_i64(row.get(0)))
}

/// Deletes the outbox rows written more than `retention` ago and raises
/// the pruned horizon to the highest `xid` deleted, in one statement (so
/// one transaction); returns how many rows went.
pub(crate) fn prune(
    client: &mut impl postgres::GenericClient,
    retention: std::time::Duration,
) -> Result<u64> {
    let row = client
        .query_typed_one(
            "WITH d AS (DELETE FROM statewal_changes \
                        WHERE at < now() - $1 * interval '1 second' RETURNING xid), \
                  u AS (UPDATE statewal_changes_pruned p \
                        SET xid = greatest(p.xid, m.x), prunes = p.prunes + 1 \
                        FROM (SELECT max(xid) AS x FROM d) m WHERE m.x IS NOT NULL) \
             SELECT count(*) FROM d",
            &[(&retention.as_secs_f64(), Type::FLOAT8)],
        )
        .map_err(|e| pg_error("pruning the outbox", e))?;
    Ok(super::tasks::from_i64(row.get(0)))
}

/// What one poll of the outbox read.
pub(crate) struct Poll {
    /// The changes of the transactions that ended between the cursor and
    /// the horizon, by id.
    pub(crate) changes: Vec<Change>,
    /// The horizon: the next cursor.
    pub(crate) next: u64,
    /// Whether committed changes at or past the horizon wait for an older
    /// transaction to end.
    pub(crate) held: bool,
    /// The pruned horizon and the count of prunes so far.
    pub(crate) pruned: Pruned,
}

/// The pruned horizon as a poll read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pruned {
    /// The highest writer `xid` among the rows pruned so far.
    xid: u64,
    /// How many prunes deleted rows.
    prunes: i64,
}

impl Pruned {
    /// Whether a listener whose cursor was `cursor`, and which last
    /// reported `reported`, missed changes it has not yet been told about:
    /// a row at or past the cursor is gone, and a prune ran since the last
    /// report (without one, nothing more can have gone). Never false when
    /// a row past the cursor was pruned unreported; at worst true once for
    /// a prune that deleted only rows already delivered.
    pub(crate) fn missed(self, cursor: u64, reported: Option<Pruned>) -> bool {
        self.xid >= cursor && reported.is_none_or(|r| r.prunes != self.prunes)
    }
}

/// The changes of the transactions that ended between `cursor` and the
/// horizon now, by id, that horizon, whether committed changes wait
/// behind it, and the pruned horizon, read in one statement so that all
/// come from one snapshot. `pruning`: whether the database has schema 2's
/// `statewal_changes_pruned`; a schema-1 database (a reader opened it
/// before any writer of this version migrated it) has never been pruned.
pub(crate) fn changes_since(
    client: &mut impl postgres::GenericClient,
    cursor: u64,
    pruning: bool,
) -> Result<Poll> {
    let pruned_columns = if pruning {
        "(SELECT p.xid FROM statewal_changes_pruned p) AS pruned, \
         (SELECT p.prunes FROM statewal_changes_pruned p) AS prunes"
    } else {
        "NULL::xid8 AS pruned, NULL::bigint AS prunes"
    };
    let sql = format!(
        "WITH h AS (SELECT x, \
                           EXISTS (SELECT 1 FROM statewal_changes WHERE xid >= x) AS held, \
                           {pruned_columns} \
                    FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS x) s) \
         SELECT h.x::text::bigint, h.held, h.pruned::text::bigint, h.prunes, \
                c.id, c.task_id, c.kind, c.version, c.origin \
         FROM h LEFT JOIN statewal_changes c \
           ON c.xid >= $1::text::xid8 AND c.xid < h.x \
         ORDER BY c.id"
    );
    let rows = client
        .query(&sql, &[&cursor.to_string()])
        .map_err(|e| pg_error("reading the outbox", e))?;
    let next = rows
        .first()
        .map(|r| super::tasks::from_i64(r.get(0)))
        .unwrap_or(cursor);
    let pruned = rows.first().map_or(Pruned::default(), |r| Pruned {
        xid: r.get::<_, Option<i64>>(2).map_or(0, super::tasks::from_i64),
        prunes: r.get::<_, Option<i64>>(3).unwrap_or(0),
    });
    // Never backwards, whatever the server says.
    let next = next.max(cursor);
    let held = rows.first().is_some_and(|r| r.get::<_, bool>(1));
    let mut changes = Vec::with_capacity(rows.len());
    for r in &rows {
        let Some(seq) = r.get::<_, Option<i64>>(4) else {
            continue; // The horizon's row when there is no change.
        };
        let kind: String = r.get(6);
        let Some(kind) = ChangeKind::parse(&kind) else {
            tracing::error!(kind, seq, "an outbox row of an unknown kind is skipped");
            continue;
        };
        changes.push(Change {
            seq: super::tasks::from_i64(seq),
            task_id: r.get(5),
            kind,
            version: r.get::<_, Option<i64>>(7).map(super::tasks::from_i64),
            origin: r.get(8),
        });
    }
    Ok(Poll {
        changes,
        next,
        held,
        pruned,
    })
}

/// A background thread that listens for the wake-up and delivers the
/// outbox's changes to a sink, reconnecting after a failure and catching
/// up from its cursor.
pub(crate) struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Starts listening; changes of transactions that end after `cursor`
    /// (a [`horizon`]) are delivered.
    pub(crate) fn start(mut config: Config, cursor: u64, sink: Sink) -> Result<Listener> {
        // Named apart from the pool's connections, for operators (and tests)
        // looking at pg_stat_activity.
        config.application_name("statewal-listener");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("statewal-pg-listen".into())
            .spawn(move || listen(&config, cursor, &sink, &flag))
            .map_err(|e| crate::Error::io("starting the listener thread for", "PostgreSQL", e))?;
        Ok(Listener {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it (at most a poll interval, or a
    /// connection attempt).
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the statewal PostgreSQL listener panicked");
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop();
    }
}

fn listen(config: &Config, mut cursor: u64, sink: &Sink, stop: &AtomicBool) {
    // The pruned horizon last reported as missed, kept across connections
    // with the cursor.
    let mut reported = None;
    while !stop.load(Ordering::Relaxed) {
        let mut client = match config.connect(NoTls) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "the statewal listener cannot connect; retrying");
                std::thread::sleep(RECONNECT_PAUSE);
                continue;
            }
        };
        if let Err(e) = serve(&mut client, &mut cursor, &mut reported, sink, stop) {
            tracing::warn!(error = %e, cursor, "the statewal listener lost its connection; catching up after reconnecting");
            std::thread::sleep(RECONNECT_PAUSE);
        }
    }
}

/// Listens on one connection until it fails or `stop` is set. The cursor
/// survives the connection: the next one catches up from it.
fn serve(
    client: &mut Client,
    cursor: &mut u64,
    reported: &mut Option<Pruned>,
    sink: &Sink,
    stop: &AtomicBool,
) -> Result<()> {
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .map_err(|e| pg_error("listening for changes", e))?;
    let mut held_wait = HELD_POLL_FIRST;
    // Asked again each poll until a writer's migration adds the table.
    let mut pruning = false;
    while !stop.load(Ordering::Relaxed) {
        if !pruning {
            pruning = client
                .query_one(
                    "SELECT to_regclass('statewal_changes_pruned') IS NOT NULL",
                    &[],
                )
                .map_err(|e| pg_error("reading the schema", e))?
                .get(0);
        }
        // Listening first, then reading: a commit after the read still
        // wakes the wait below.
        let poll = changes_since(client, *cursor, pruning)?;
        if poll.pruned.missed(*cursor, *reported) {
            *reported = Some(poll.pruned);
            tracing::warn!(
                cursor,
                "task changes were pruned from the outbox before this instance read them"
            );
            sink(Delivery::Missed);
        }
        if !poll.changes.is_empty() {
            sink(Delivery::Changes(&poll.changes));
        }
        *cursor = poll.next;
        // Changes held back by an older transaction go out when it ends,
        // which nothing announces: poll again soon, then less often.
        let wait = match poll.held {
            true => {
                let now = held_wait;
                held_wait = (held_wait * 2).min(POLL_INTERVAL);
                now
            }
            false => {
                held_wait = HELD_POLL_FIRST;
                POLL_INTERVAL
            }
        };
        let waited = client.notifications().timeout_iter(wait).next();
        waited.map_err(|e| pg_error("waiting for changes", e))?;
        // Drain what else arrived: one poll covers them all.
        let mut notes = client.notifications();
        while notes
            .iter()
            .next()
            .map_err(|e| pg_error("waiting for changes", e))?
            .is_some()
        {}
    }
    Ok(())
}

/// Changes handed to the sinks added so far, behind one listener.
#[derive(Default)]
pub(crate) struct Sinks {
    list: Mutex<Vec<(u64, Sink)>>,
    next: std::sync::atomic::AtomicU64,
}

impl Sinks {
    pub(crate) fn add(&self, sink: Sink) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.list.lock().push((id, sink));
        id
    }

    pub(crate) fn remove(&self, id: u64) {
        self.list.lock().retain(|(i, _)| *i != id);
    }

    pub(crate) fn deliver(&self, delivery: Delivery<'_>) {
        let sinks: Vec<Sink> = self.list.lock().iter().map(|(_, s)| s.clone()).collect();
        for s in sinks {
            s(delivery);
        }
    }
}
