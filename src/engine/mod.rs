//! The backend seam: what every storage engine behind [`crate::Store`] does.
//!
//! [`crate::Store`] is a thin facade. It validates what it can without the
//! engine's help, then dispatches to one engine: the journal engine
//! (`engine/journal.rs`: the write-ahead journal, checkpoints and the
//! directory layout) or, with the `postgres` feature, the PostgreSQL engine
//! (`engine/postgres/`). Operations only one engine can offer (a checkpoint,
//! a recovery report, an unwaited [`crate::Pending`]) are the facade's to
//! refuse with [`crate::ErrorKind::Unsupported`]; they are not in this trait.
//!
//! **Invariant:** the journal engine's modules never import the PostgreSQL
//! engine, and the PostgreSQL engine never touches the state directory.
//!
//! **Invariant:** every method returns only once what it wrote is durable
//! by the engine's own rule (the journal's sync policy; a committed
//! PostgreSQL transaction), and its `u64` is the write's position in that
//! engine's change order (the journal sequence number; the outbox id).

pub(crate) mod journal;

use crate::error::Result;
use crate::events::{Subscriber, Subscription};
use crate::health::Health;
use crate::metrics::StoreMetrics;
use crate::model::Task;
use crate::query::TaskQuery;
use crate::readback::{LogInfo, ReportInfo};
use crate::session::Session;
use crate::store::{Mutation, StoreStats};
use serde_json::Value;

#[cfg(feature = "postgres")]
pub(crate) mod postgres;

/// One storage engine. Object safe: the facade holds a `Box<dyn Engine>`
/// for every engine but the journal, whose extra operations it calls
/// directly.
pub trait Engine: Send + Sync {
    /// Inserts or replaces a task (last writer wins), already stamped by
    /// the facade when stamping is on.
    fn put_task(&self, task: Task) -> Result<u64>;
    /// Saves a task only if its version is `expected` (`None`: only if there
    /// is no such task); `Conflict` otherwise, writing nothing.
    fn put_task_if(&self, task: Task, expected: Option<u64>) -> Result<u64>;
    /// Removes a task; `NotFound` if there is none.
    fn delete_task(&self, id: &str) -> Result<u64>;
    /// The task's version: 1 after its first put, one more per put since.
    fn task_version(&self, id: &str) -> Result<Option<u64>>;
    /// One task.
    fn get_task(&self, id: &str) -> Result<Option<Task>>;
    /// The tasks a query selects, in its order (see [`TaskQuery`]).
    fn query_tasks(&self, query: &TaskQuery) -> Result<Vec<Task>>;
    /// Every task, sorted by id (byte order). By default the query of
    /// every task, sorted again; an engine that can do better overrides it.
    fn list_tasks(&self) -> Result<Vec<Task>> {
        let mut tasks = self.query_tasks(&TaskQuery::new())?;
        tasks.sort_by(|a, b| a.id().cmp(b.id()));
        Ok(tasks)
    }
    /// Task and session puts and deletes, all applied or none.
    fn apply_batch(&self, mutations: Vec<Mutation>) -> Result<u64>;
    /// Inserts or replaces a session record (a JSON object with a string id).
    fn put_session(&self, session: Value) -> Result<u64>;
    /// Removes a session record.
    fn delete_session(&self, id: &str) -> Result<u64>;
    /// One session record.
    fn get_session(&self, id: &str) -> Result<Option<Session>>;
    /// Every session record, sorted by id.
    fn list_sessions(&self) -> Result<Vec<Session>>;
    /// Every session record as the engine holds it (its keys in the
    /// writer's order, `"id"` where the writer put it), sorted by id: for
    /// `copy`, which keeps each record as it was written. By default the
    /// [`Session`] view, which puts `"id"` first.
    fn session_records(&self) -> Result<Vec<Value>> {
        Ok(self
            .list_sessions()?
            .iter()
            .map(Session::to_value)
            .collect())
    }
    /// Appends text to a session's log.
    fn append_log(&self, session: &str, text: &str) -> Result<u64>;
    /// Every session log.
    fn list_logs(&self) -> Result<Vec<LogInfo>>;
    /// Bytes `start..end` of a session log (`end` `None`: to its end).
    fn read_log(&self, file_name: &str, start: u64, end: Option<u64>) -> Result<Vec<u8>>;
    /// Saves a report.
    fn save_report(&self, id: &str, report: Value) -> Result<u64>;
    /// One report.
    fn get_report(&self, id: &str) -> Result<Option<Value>>;
    /// Every report.
    fn list_reports(&self) -> Result<Vec<ReportInfo>>;
    /// Moves a task to the archive: on the journal engine it leaves the
    /// store (`get_task` no longer finds it) for `archive/`; its change
    /// event is a delete.
    fn archive_task(&self, id: &str) -> Result<u64>;
    /// Adds a subscriber for this engine's events, changes made by other
    /// instances included where the engine has other instances. Each
    /// committed task change is an [`crate::Event::TaskChanged`], delivered
    /// after it is durable and in commit order per task.
    fn subscribe(&self, f: Subscriber) -> Subscription;
    /// This instance's id: the `origin` of every [`crate::Change`] it
    /// makes, random per open.
    fn origin(&self) -> &str;
    /// Whether opening created the engine's storage (on PostgreSQL,
    /// statewal's tables), for the CLI to say so. False by default.
    fn created_storage(&self) -> bool {
        false
    }
    /// Counts.
    fn stats(&self) -> Result<StoreStats>;
    /// The last position taken in the change order ([`StoreStats::last_seq`])
    /// alone: what `serve --stdio` puts in every answer, so an engine
    /// whose counts cost a query answers it more cheaply.
    fn last_seq(&self) -> Result<u64> {
        self.stats().map(|s| s.last_seq)
    }
    /// Metrics.
    fn metrics(&self) -> Result<StoreMetrics>;
    /// Whether the engine can take writes, and every problem it sees.
    fn health(&self) -> Health;
    /// Stops background work and releases the engine.
    fn shutdown(&mut self) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The seam's invariant, checked on the source: no module of the
    /// journal engine names the PostgreSQL engine or its client crate.
    #[test]
    fn the_journal_engine_never_imports_postgres() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let journal_side = [
            "engine/journal.rs",
            "journal",
            "checkpoint.rs",
            "recovery.rs",
            "state.rs",
            "fs",
            "layout.rs",
            "snapshot.rs",
            "reconcile",
            "archive.rs",
            "backup.rs",
            "derived.rs",
            "migrate.rs",
            "verify.rs",
        ];
        let mut files = Vec::new();
        for part in journal_side {
            collect(&src.join(part), &mut files);
        }
        assert!(files.len() > 20, "found {} files", files.len());
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(
                !text.contains("postgres"),
                "{} names PostgreSQL code; the journal engine must not",
                f.display()
            );
        }
    }

    fn collect(path: &Path, out: &mut Vec<std::path::PathBuf>) {
        if path.is_dir() {
            for e in std::fs::read_dir(path).unwrap() {
                collect(&e.unwrap().path(), out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.to_path_buf());
        }
    }
}
