//! The in-memory state: what the journal and the checkpoint describe.
//!
//! Applying an op is pure (no I/O). Recovery applies only the records past
//! the checkpoint's `journal_seq`, once each, in order: the task versions
//! count puts, so a put applied twice would count twice.

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
#[derive(Debug, Default, Clone)]
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

/// What a batch replaced, to take it back out of memory when its record
/// could not be made durable (see [`State::undo`]).
#[derive(Debug, Default)]
pub(crate) struct Undo {
    /// Each task the batch touched: its value and version before the batch.
    tasks: Vec<(String, Option<Arc<Task>>, Option<u64>)>,
    /// Each session record the batch touched, as it was before.
    sessions: Vec<(String, Option<Arc<Value>>)>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub tasks: BTreeMap<String, Arc<Task>>,
    /// Each task's version: 1 at its first put, one more at each put since,
    /// gone with the task. Metadata of the store, never a key of the task's
    /// JSON; `state.json` keeps it as `task_versions`, replay re-derives it.
    pub task_versions: BTreeMap<String, u64>,
    pub sessions: BTreeMap<String, Arc<Value>>,
    pub changes: Changes,
    /// The changes a running checkpoint took and has not finished writing
    /// yet. Readers of logs and reports see them until the files hold them
    /// (see `readback.rs`): taken out of `changes` but not yet in the
    /// files, they would otherwise be in neither.
    pub writing: Option<Arc<Changes>>,
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
    /// The state a checkpoint describes. `versions` is its `task_versions`:
    /// a loaded task it does not list (a file written before versions, or
    /// by the original server) starts at version 1, and an entry for a task
    /// the checkpoint does not hold is dropped.
    pub fn from_checkpoint(
        tasks: Vec<Task>,
        sessions: Vec<Value>,
        seq: u64,
        versions: &BTreeMap<String, u64>,
    ) -> State {
        let mut s = State {
            applied_seq: seq,
            ..State::default()
        };
        for t in tasks {
            let version = versions.get(t.id()).copied().unwrap_or(1).max(1);
            s.task_versions.insert(t.id().to_string(), version);
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
        self.apply_op(op);
    }

    /// Applies `op` without a sequence number: a read-only open's view of
    /// what an owner's open would journal (`crate::reconcile`).
    pub fn apply_unjournaled(&mut self, op: Op) {
        self.apply_op(op);
    }

    /// What `ops` (about to be applied) will replace.
    pub fn undo_of(&self, ops: &[Op]) -> Undo {
        let mut undo = Undo::default();
        let mut tasks = BTreeSet::new();
        let mut sessions = BTreeSet::new();
        for op in ops {
            match op {
                Op::PutTask(Task { .. }) | Op::DeleteTask(_) => {
                    let id = op.id();
                    if tasks.insert(id) {
                        let task = self.tasks.get(id).cloned();
                        let version = self.task_versions.get(id).copied();
                        undo.tasks.push((id.to_string(), task, version));
                    }
                }
                Op::PutSession { id, .. } | Op::DeleteSession(id) => {
                    if sessions.insert(id.as_str()) {
                        undo.sessions
                            .push((id.clone(), self.sessions.get(id).cloned()));
                    }
                }
                _ => debug_assert!(false, "only puts and deletes join a batch"),
            }
        }
        undo
    }

    /// Puts back what a batch replaced. Only for a batch whose record the
    /// journal failed to make durable: the journal is then poisoned, every
    /// later record failed too, and the store refuses writes until reopened.
    pub fn undo(&mut self, undo: Undo) {
        for (id, task, version) in undo.tasks {
            match (task, version) {
                (Some(t), Some(v)) => {
                    self.tasks.insert(id.clone(), t);
                    self.task_versions.insert(id.clone(), v);
                }
                _ => {
                    self.tasks.remove(&id);
                    self.task_versions.remove(&id);
                }
            }
            self.changes.tasks.insert(id);
        }
        for (id, session) in undo.sessions {
            match session {
                Some(s) => self.sessions.insert(id.clone(), s),
                None => self.sessions.remove(&id),
            };
            self.changes.sessions.insert(id);
        }
    }

    /// The version the next put of task `id` gets.
    pub fn next_version(&self, id: &str) -> u64 {
        self.task_versions
            .get(id)
            .map_or(1, |v| v.saturating_add(1))
    }

    fn apply_op(&mut self, op: Op) {
        match op {
            Op::PutTask(t) => {
                let version = self.next_version(t.id());
                self.task_versions.insert(t.id().to_string(), version);
                self.changes.tasks.insert(t.id().to_string());
                self.tasks.insert(t.id().to_string(), Arc::new(t));
            }
            Op::DeleteTask(id) => {
                self.tasks.remove(&id);
                self.task_versions.remove(&id);
                self.changes.tasks.insert(id);
            }
            // One sequence number, applied in one step by the caller that
            // holds the state lock: no reader sees half of it.
            Op::Batch(ops) => {
                for op in ops {
                    debug_assert!(op.may_join_batch(), "decode and the store refuse others");
                    self.apply_op(op);
                }
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
                    self.task_versions.remove(task.id());
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
            task_versions: self.task_versions.clone(),
            store_id: None,
        }
    }
}
