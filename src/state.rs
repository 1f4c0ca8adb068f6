//! The in-memory state: what the journal and the checkpoint describe.
//!
//! Applying an op is pure (no I/O). Recovery applies only the records past
//! the checkpoint's `journal_seq`, once each, in order: the task versions
//! count puts, so a put applied twice would count twice.

use crate::error::{Error, ErrorKind, Result};
use crate::held::IdKey;
use crate::journal::op::{HeldTask, Op, session_id};
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
    pub tasks: BTreeSet<IdKey>,
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

/// The tasks by id, in id order.
pub(crate) type TaskMap = BTreeMap<IdKey, Held>;

/// A task in the state: its held JSON and its version.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Held {
    pub task: HeldTask,
    /// 1 at the task's first put, one more at each put since. Metadata of
    /// the store, never a key of the task's JSON; `state.json` keeps it as
    /// `task_versions`, replay re-derives it.
    pub version: u64,
}

/// What a batch replaced, to take it back out of memory when its record
/// could not be made durable (see [`State::undo`]).
#[derive(Debug, Default)]
pub(crate) struct Undo {
    /// Each task the batch touched, as it was before the batch.
    tasks: Vec<(String, Option<Held>)>,
    /// Each session record the batch touched, as it was before.
    sessions: Vec<(String, Option<Arc<Value>>)>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    /// Each task, by id, with its version: one entry (and one id string)
    /// per task.
    pub tasks: TaskMap,
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
    /// Set while a recovery replays the journal ([`State::begin_replay`]):
    /// the tasks, and which changed, held in a hash index instead of
    /// `tasks` and `changes.tasks`.
    replaying: Option<Box<Replaying>>,
}

/// The tasks while a replay applies records, in the order each id was
/// first met, with a hash index: a put costs one hash lookup instead of
/// three searches of ordered maps (the task map, the change set, and the
/// insert), and the ordered maps are built once at the end, from a sort
/// that is a single pass when the ids came in order (a checkpoint's
/// tasks, then ids a writer made in order). Measured: the searches'
/// comparisons were a third of a replay of 100,000 puts (`docs/decisions.md`,
/// "2026-12-02, issue 10: replay into a hash index").
#[derive(Debug, Default)]
struct Replaying {
    /// Where each id's slot is. foldhash, randomly seeded per process: a
    /// few nanoseconds for a short id where SipHash took tens, and ids
    /// crafted to collide cannot be computed ahead.
    at: HashMap<IdKey, usize, foldhash::fast::RandomState>,
    slots: Vec<Slot>,
}

#[derive(Debug)]
struct Slot {
    id: IdKey,
    /// `None`: deleted (or archived) by a replayed record.
    held: Option<Held>,
    /// A replayed record put or removed the task.
    changed: bool,
}

impl Replaying {
    fn get(&self, id: &str) -> Option<&Held> {
        self.at.get(id).and_then(|&i| self.slots[i].held.as_ref())
    }

    /// The slot of `id`, made empty when the id is new.
    fn slot(&mut self, id: &str) -> &mut Slot {
        // One hash: the key is built first (a copy, for an id held inline).
        let i = match self.at.entry(IdKey::from(id)) {
            std::collections::hash_map::Entry::Occupied(e) => *e.get(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let i = self.slots.len();
                self.slots.push(Slot {
                    id: e.key().clone(),
                    held: None,
                    changed: false,
                });
                e.insert(i);
                i
            }
        };
        &mut self.slots[i]
    }
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
    ) -> Result<State> {
        let mut s = State {
            applied_seq: seq,
            ..State::default()
        };
        // Every task's compact JSON goes into one buffer first, and the
        // parsed trees are gone before a held copy is allocated: the held
        // copies then sit together instead of in the holes the trees
        // leave, which the process could not hand back.
        let mut buf = Vec::new();
        let mut ends = Vec::with_capacity(tasks.len());
        for t in tasks {
            serde_json::to_writer(&mut buf, &t).expect("serializing a task cannot fail");
            ends.push(buf.len());
        }
        let mut held = Vec::with_capacity(ends.len());
        let mut start = 0;
        for end in ends {
            let bytes = &buf[start..end];
            start = end;
            let task = HeldTask::from_json(bytes).map_err(|e| match e {
                crate::held::Refused::Id(e) => e,
                crate::held::Refused::Json(why) => Error::new(
                    ErrorKind::Corrupt,
                    format!("a checkpointed task does not load again: {why}"),
                ),
            })?;
            let version = versions.get(task.id()).copied().unwrap_or(1);
            held.push((task, version));
        }
        drop(buf);
        s.load_base_tasks(held);
        for v in sessions {
            if let Some(id) = session_id(&v) {
                s.sessions.insert(id.to_string(), Arc::new(v));
            }
        }
        Ok(s)
    }

    /// One task of the base a recovery starts from, from its id, version
    /// and compact JSON (a checkpoint's, a snapshot's): the bytes pass the
    /// door replay uses ([`HeldTask`]'s), and must hold that id.
    #[allow(dead_code)] // The entry point for a derived snapshot's load.
    pub fn base_task(id: &str, version: u64, bytes: &[u8]) -> Result<(HeldTask, u64)> {
        let task = HeldTask::from_json(bytes).map_err(|e| match e {
            crate::held::Refused::Id(e) => e,
            crate::held::Refused::Json(why) => Error::new(
                ErrorKind::Corrupt,
                format!("task {id:?} does not load: {why}"),
            ),
        })?;
        if task.id() != id {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("task {id:?} holds the id {:?}", task.id()),
            ));
        }
        Ok((task, version))
    }

    /// Puts the tasks of the base a recovery starts from, each at its
    /// version (at least 1), replacing any held. Built in one pass, so the
    /// map's nodes are full and allocated together; a later task with the
    /// same id replaces an earlier one.
    pub fn load_base_tasks(&mut self, mut tasks: Vec<(HeldTask, u64)>) {
        // Stable, so tasks with one id keep their order; the last of each
        // run is kept, as one insert after another would keep it. (A
        // checkpoint's tasks come sorted, and the sort then only checks.)
        tasks.sort_by(|a, b| a.0.id().cmp(b.0.id()));
        let mut entries: Vec<(IdKey, Held)> = Vec::with_capacity(tasks.len());
        for (task, version) in tasks {
            let held = Held {
                task,
                version: version.max(1),
            };
            match entries.last_mut() {
                Some((id, last)) if id.as_str() == held.task.id() => *last = held,
                _ => entries.push((IdKey::from(held.task.id()), held)),
            }
        }
        self.tasks = entries.into_iter().collect();
    }

    /// Rebuilds the maps a replay grew one insert at a time, so that their
    /// nodes are full: a replayed store holds as little as a loaded one.
    pub fn compact(&mut self) {
        self.tasks = std::mem::take(&mut self.tasks).into_iter().collect();
        self.changes.tasks = std::mem::take(&mut self.changes.tasks)
            .into_iter()
            .collect();
    }

    /// Moves the tasks into the hash index a replay applies records to
    /// ([`Replaying`]) until [`State::end_replay`]. Only [`State::apply`]
    /// may run in between; nothing else reads the tasks meanwhile.
    /// `records`: how many records the replay applies (room is made for
    /// as many new ids).
    pub fn begin_replay(&mut self, records: usize) {
        debug_assert!(self.replaying.is_none(), "one replay at a time");
        let tasks = std::mem::take(&mut self.tasks);
        let room = tasks.len().saturating_add(records);
        let mut r = Replaying {
            at: HashMap::with_capacity_and_hasher(room, Default::default()),
            slots: Vec::with_capacity(room),
        };
        for (id, held) in tasks {
            r.at.insert(id.clone(), r.slots.len());
            r.slots.push(Slot {
                id,
                held: Some(held),
                changed: false,
            });
        }
        self.replaying = Some(Box::new(r));
    }

    /// Builds the ordered maps from the replay's index, in one pass each,
    /// so that their nodes are full: a replayed store holds as little as a
    /// loaded one.
    pub fn end_replay(&mut self) {
        let Some(r) = self.replaying.take() else {
            return;
        };
        let Replaying { at, mut slots } = *r;
        drop(at);
        // Stable and adaptive: the slots are ids in the order first met,
        // often sorted already, and each id is in one slot.
        slots.sort_by(|a, b| a.id.cmp(&b.id));
        let changed: Vec<IdKey> = slots
            .iter()
            .filter(|s| s.changed)
            .map(|s| s.id.clone())
            .collect();
        self.tasks = slots
            .into_iter()
            .filter_map(|s| s.held.map(|h| (s.id, h)))
            .collect();
        let earlier = std::mem::take(&mut self.changes.tasks);
        self.changes.tasks = earlier.into_iter().chain(changed).collect();
    }

    /// Task `id`'s version, if the task is held.
    pub fn task_version(&self, id: &str) -> Option<u64> {
        self.tasks.get(id).map(|h| h.version)
    }

    /// Task `id` as held, during a replay too.
    fn held(&self, id: &str) -> Option<&Held> {
        match &self.replaying {
            Some(r) => r.get(id),
            None => self.tasks.get(id),
        }
    }

    /// Puts `task`, one version past the one held (1 for a new task), and
    /// marks it changed.
    fn put_held(&mut self, task: HeldTask) {
        if let Some(r) = self.replaying.as_deref_mut() {
            let slot = r.slot(task.id());
            slot.changed = true;
            match &mut slot.held {
                Some(held) => {
                    held.version = held.version.saturating_add(1);
                    held.task = task;
                }
                None => slot.held = Some(Held { task, version: 1 }),
            }
            return;
        }
        // One search of the changes, then one of the tasks.
        self.changes.tasks.insert(IdKey::from(task.id()));
        match self.tasks.get_mut(task.id()) {
            Some(held) => {
                held.version = held.version.saturating_add(1);
                held.task = task;
            }
            None => {
                let id = IdKey::from(task.id());
                self.tasks.insert(id, Held { task, version: 1 });
            }
        }
    }

    /// Removes task `id`, if held, and marks it changed.
    fn remove_held(&mut self, id: &str) {
        if let Some(r) = self.replaying.as_deref_mut() {
            let slot = r.slot(id);
            slot.changed = true;
            slot.held = None;
            return;
        }
        self.tasks.remove(id);
        self.changes.tasks.insert(IdKey::from(id));
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
                Op::PutTask(_) | Op::DeleteTask(_) => {
                    let id = op.id();
                    if tasks.insert(id) {
                        undo.tasks
                            .push((id.to_string(), self.tasks.get(id).cloned()));
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
        for (id, held) in undo.tasks {
            match held {
                Some(h) => self.tasks.insert(IdKey::from(id.as_str()), h),
                None => self.tasks.remove(id.as_str()),
            };
            self.changes.tasks.insert(IdKey::from(id));
        }
        for (id, session) in undo.sessions {
            match session {
                Some(s) => self.sessions.insert(id.clone(), s),
                None => self.sessions.remove(&id),
            };
            self.changes.sessions.insert(id);
        }
    }

    fn apply_op(&mut self, op: Op) {
        match op {
            Op::PutTask(task) => self.put_held(task),
            Op::DeleteTask(id) => self.remove_held(&id),
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
                let json = &line[..line.len().saturating_sub(1)];
                if self
                    .held(task.id())
                    .is_some_and(|h| h.task.same_as(&task, json))
                {
                    self.remove_held(task.id());
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

    /// The state as `load_state` returns it: every task parsed back (see
    /// [`HeldTask::to_task_logged`]).
    pub fn persisted(&self) -> PersistedState {
        PersistedState {
            version: STATE_VERSION.to_string(),
            tasks: self
                .tasks
                .values()
                .filter_map(|h| h.task.to_task_logged())
                .collect(),
            sessions: self.sessions.values().map(|s| (**s).clone()).collect(),
            metrics: self.metrics(),
            last_saved: self.last_saved.clone().unwrap_or_default(),
            journal_seq: self.applied_seq,
            task_versions: self
                .tasks
                .iter()
                .map(|(id, h)| (id.to_string(), h.version))
                .collect(),
            store_id: None,
        }
    }

    /// The metrics of the tasks held, from their index.
    pub fn metrics(&self) -> Metrics {
        metrics_of(&self.tasks)
    }
}

/// The metrics of `tasks`, from their index, summed in id order.
pub(crate) fn metrics_of(tasks: &TaskMap) -> Metrics {
    Metrics::of_index(
        tasks
            .values()
            .map(|h| (h.task.status(), h.task.completion_ms())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A base with one id twice (a hand-edited `state.json`) keeps the
    /// later copy and its version, as inserting one after the other did.
    #[test]
    fn a_base_keeps_the_last_copy_of_an_id() {
        let held = |id: &str, x: u64| {
            let mut t = Task::new(id);
            t.set("x", x).unwrap();
            HeldTask::from_task(&t).unwrap()
        };
        let mut s = State::default();
        s.load_base_tasks(vec![
            (held("b", 1), 3),
            (held("a", 1), 0),
            (held("b", 2), 5),
        ]);
        let got: Vec<(&str, &[u8], u64)> = s
            .tasks
            .iter()
            .map(|(id, h)| (id.as_str(), h.task.json(), h.version))
            .collect();
        assert_eq!(
            got,
            [
                ("a", &br#"{"id":"a","x":1}"#[..], 1),
                ("b", &br#"{"id":"b","x":2}"#[..], 5)
            ]
        );
    }
}
