//! The in-memory state: what the journal and the checkpoint describe.
//!
//! Applying an op is pure (no I/O) and idempotent for puts and deletes, so
//! replaying records a checkpoint already holds changes nothing.

use crate::journal::op::{Op, session_id};
use crate::model::{Metrics, PersistedState, STATE_VERSION, Task};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// A log append not yet written to its file.
#[derive(Debug, Clone)]
pub(crate) struct PendingLog {
    pub session: String,
    pub offset: u64,
    pub text: Vec<u8>,
}

/// An archived task's line not yet written to its archive file.
#[derive(Debug, Clone)]
pub(crate) struct PendingArchive {
    pub file: String,
    pub offset: u64,
    pub line: Vec<u8>,
}

/// What changed since the last checkpoint, taken by the next one.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub tasks: BTreeSet<String>,
    pub sessions: BTreeSet<String>,
    pub logs: Vec<PendingLog>,
    pub archives: Vec<PendingArchive>,
    pub reports: BTreeMap<String, Arc<Value>>,
}

impl Changes {
    /// Puts back changes a failed checkpoint did not write, under newer ones.
    pub fn merge_older(&mut self, older: Changes) {
        self.tasks.extend(older.tasks);
        self.sessions.extend(older.sessions);
        let newer_logs = std::mem::replace(&mut self.logs, older.logs);
        self.logs.extend(newer_logs);
        let newer_archives = std::mem::replace(&mut self.archives, older.archives);
        self.archives.extend(newer_archives);
        for (id, r) in older.reports {
            self.reports.entry(id).or_insert(r);
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub tasks: BTreeMap<String, Arc<Task>>,
    pub sessions: BTreeMap<String, Arc<Value>>,
    pub changes: Changes,
    /// The logical length of each session log known so far.
    pub log_lens: HashMap<String, u64>,
    /// The logical length of each archive file known so far.
    pub archive_lens: HashMap<String, u64>,
    /// The last sequence number applied.
    pub applied_seq: u64,
    /// When the last checkpoint was written (RFC 3339).
    pub last_saved: Option<String>,
}

impl State {
    /// The state a checkpoint describes.
    pub fn from_checkpoint(tasks: Vec<Task>, sessions: Vec<Value>, seq: u64) -> State {
        let mut s = State {
            applied_seq: seq,
            ..State::default()
        };
        for t in tasks {
            s.tasks.insert(t.id().to_string(), Arc::new(t));
        }
        for v in sessions {
            if let Some(id) = session_id(&v) {
                s.sessions.insert(id.to_string(), Arc::new(v));
            }
        }
        s
    }

    pub fn apply(&mut self, seq: u64, op: Op) {
        debug_assert!(
            seq > self.applied_seq || self.applied_seq == 0,
            "records apply in order"
        );
        self.applied_seq = seq;
        match op {
            Op::PutTask(t) => {
                self.changes.tasks.insert(t.id().to_string());
                self.tasks.insert(t.id().to_string(), Arc::new(t));
            }
            Op::DeleteTask(id) => {
                self.tasks.remove(&id);
                self.changes.tasks.insert(id);
            }
            Op::PutSession { id, session } => {
                self.changes.sessions.insert(id.clone());
                self.sessions.insert(id, Arc::new(session));
            }
            Op::DeleteSession(id) => {
                self.sessions.remove(&id);
                self.changes.sessions.insert(id);
            }
            Op::AppendLog {
                session,
                offset,
                text,
            } => {
                let end = offset.saturating_add(text.len() as u64);
                let len = self.log_lens.entry(session.clone()).or_insert(0);
                *len = (*len).max(end);
                self.changes.logs.push(PendingLog {
                    session,
                    offset,
                    text,
                });
            }
            Op::SaveReport { id, report } => {
                self.changes.reports.insert(id, Arc::new(report));
            }
            Op::ArchiveTask {
                task,
                file,
                offset,
                line,
            } => {
                // A task changed after its line was taken (a put raced the
                // archiving) stays: it is then both archived, as it was, and
                // current, which loses nothing. The line is written either
                // way, so the archive file has no hole at its offset.
                if self.tasks.get(task.id()).is_some_and(|t| **t == task) {
                    self.tasks.remove(task.id());
                    self.changes.tasks.insert(task.id().to_string());
                }
                let end = offset + line.len() as u64;
                let len = self.archive_lens.entry(file.clone()).or_insert(0);
                *len = (*len).max(end);
                self.changes
                    .archives
                    .push(PendingArchive { file, offset, line });
            }
        }
    }

    pub fn persisted(&self) -> PersistedState {
        PersistedState {
            version: STATE_VERSION.to_string(),
            tasks: self.tasks.values().map(|t| (**t).clone()).collect(),
            sessions: self.sessions.values().map(|s| (**s).clone()).collect(),
            metrics: Metrics::of(self.tasks.values().map(|t| &**t)),
            last_saved: self.last_saved.clone().unwrap_or_default(),
            journal_seq: self.applied_seq,
        }
    }
}
