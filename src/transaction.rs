//! Atomic batches: [`Transaction`], the mutations of one `batch` record,
//! and the checks a batch passes before it is journaled.
//!
//! Pure: no I/O and no locks. The store runs [`prepare`] before it touches
//! the journal, and [`check_deletes`] / [`check_version`] under the
//! journal's ordering lock, so a check cannot be overtaken by another
//! writer. See `docs/decisions.md`, "The batch record and
//! `Store::transaction`".
//!
//! **Invariant:** a batch that fails any check journals nothing.

use crate::error::{Error, ErrorKind, Result};
use crate::id::validate_id;
use crate::journal::op::{HeldTask, Op, encode_batch_parts, session_id};
use crate::journal::record::RECORD_PAYLOAD_MAX;
use crate::model::Task;
use crate::state::State;
use crate::store::Mutation;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// An op's record payload. A task put's is the task's held JSON, shared
/// with the op: the task is serialized once, for the journal and for the
/// state alike.
pub(crate) enum Payload {
    Shared(Arc<[u8]>),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Payload::Shared(b) => b,
            Payload::Owned(b) => b,
        }
    }
}

/// The mutations of one atomic batch, built by the closure given to
/// [`crate::Store::transaction`]. Only task and session puts and deletes may join
/// a batch; nothing is journaled until the closure returns `Ok`.
#[derive(Debug, Default)]
pub struct Transaction {
    mutations: Vec<Mutation>,
}

impl Transaction {
    /// Inserts or replaces a task.
    pub fn put_task(&mut self, task: Task) -> &mut Transaction {
        self.mutations.push(Mutation::PutTask(task));
        self
    }

    /// Removes a task. The batch fails with [`ErrorKind::NotFound`] if the
    /// task is neither in the store nor put earlier in this batch.
    pub fn delete_task(&mut self, id: impl Into<String>) -> &mut Transaction {
        self.mutations.push(Mutation::DeleteTask(id.into()));
        self
    }

    /// Inserts or replaces a session record (a JSON object with a string `"id"`).
    pub fn put_session(&mut self, session: Value) -> &mut Transaction {
        self.mutations.push(Mutation::PutSession(session));
        self
    }

    /// Removes a session record, with the same rule as [`Transaction::delete_task`].
    pub fn delete_session(&mut self, id: impl Into<String>) -> &mut Transaction {
        self.mutations.push(Mutation::DeleteSession(id.into()));
        self
    }

    /// The mutations so far, in order.
    pub fn mutations(&self) -> &[Mutation] {
        &self.mutations
    }

    /// The mutations, for [`crate::Store::submit_batch`].
    pub fn into_mutations(self) -> Vec<Mutation> {
        self.mutations
    }
}

/// Validates `mutations` as a batch and encodes its record payload; `None`
/// for an empty batch, which journals nothing. Refuses (and so journals
/// nothing for) an invalid id, a put over `task_bytes_max`, a mutation that
/// cannot join a batch, and a batch over the record payload cap.
pub(crate) fn prepare(
    mutations: Vec<Mutation>,
    task_bytes_max: usize,
) -> Result<Option<(Op, Vec<u8>)>> {
    if mutations.is_empty() {
        return Ok(None);
    }
    let mut ops = Vec::with_capacity(mutations.len());
    let mut payloads = Vec::with_capacity(mutations.len());
    for m in mutations {
        let (op, payload) = validate(m, task_bytes_max)?;
        ops.push(op);
        payloads.push(payload);
    }
    let payload = encode_batch_parts(ops.iter().map(Op::kind).zip(payloads.iter().map(|p| &**p)));
    let cap = RECORD_PAYLOAD_MAX as usize;
    if payload.len() > cap {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "the batch of {} mutations is {} bytes, more than a journal record holds ({cap} bytes); nothing was written",
                ops.len(),
                payload.len()
            ),
        ));
    }
    Ok(Some((Op::Batch(ops), payload)))
}

fn too_deep(what: &str, why: String) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("{what} cannot be stored: {why}"),
    )
}

/// Validates a mutation that may join a batch (ids, sizes) and encodes its
/// payload. Whether a deleted task or session exists is checked later, by
/// [`check_deletes`] under the ordering lock.
pub(crate) fn validate(m: Mutation, task_bytes_max: usize) -> Result<(Op, Payload)> {
    let op = match m {
        Mutation::PutTask(task) => {
            validate_id(task.id())?;
            // What replay could not read back must never be journaled.
            task.check_depth()
                .map_err(|why| too_deep(&format!("task {:?}", task.id()), why))?;
            Op::PutTask(HeldTask::from_task(&task)?)
        }
        Mutation::DeleteTask(id) => {
            validate_id(&id)?;
            Op::DeleteTask(id)
        }
        Mutation::PutSession(session) => {
            let id = session_id(&session)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidInput,
                        "a session record needs a string \"id\"",
                    )
                })?
                .to_string();
            validate_id(&id)?;
            crate::json::check_depth(&session, "it")
                .map_err(|why| too_deep(&format!("session {id:?}"), why))?;
            Op::PutSession { id, session }
        }
        Mutation::DeleteSession(id) => {
            validate_id(&id)?;
            Op::DeleteSession(id)
        }
        Mutation::AppendLog { .. } | Mutation::SaveReport { .. } | Mutation::ArchiveTask(_) => {
            let what = match m {
                Mutation::AppendLog { .. } => "a log append",
                Mutation::SaveReport { .. } => "a report",
                _ => "archiving a task",
            };
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "only task and session puts and deletes can join a batch, not {what}; \
                     nothing in the batch was written"
                ),
            ));
        }
    };
    let payload = match &op {
        Op::PutTask(t) => Payload::Shared(t.shared_json()),
        op => Payload::Owned(op.encode()),
    };
    if payload.len() > task_bytes_max {
        // Named only on refusal: a `String` per put was a measurable part
        // of a buffered put.
        let what = match &op {
            Op::PutTask(t) => format!("task {:?}", t.id()),
            Op::PutSession { id, .. } => format!("session record {id:?}"),
            _ => return Ok((op, payload)),
        };
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "{what} is {} bytes, more than the limit of {task_bytes_max} bytes",
                payload.len()
            ),
        ));
    }
    Ok((op, payload))
}

/// Checks a report as every engine takes it: a valid id, a depth the
/// journal can read back, and its record payload within `task_bytes_max`.
/// Returns the op and that payload.
pub(crate) fn validate_report(
    id: String,
    report: Value,
    task_bytes_max: usize,
) -> Result<(Op, Payload)> {
    validate_id(&id)?;
    crate::json::check_depth(&report, "it")
        .map_err(|why| too_deep(&format!("report {id:?}"), why))?;
    let op = Op::SaveReport { id, report };
    let payload = op.encode();
    if payload.len() > task_bytes_max {
        return Err(too_large("report", payload.len(), task_bytes_max));
    }
    Ok((op, Payload::Owned(payload)))
}

/// Checks a log append as every engine takes it: a valid session id and
/// text within `task_bytes_max`.
pub(crate) fn validate_log_append(session: &str, text: &str, task_bytes_max: usize) -> Result<()> {
    validate_id(session)?;
    if text.len() > task_bytes_max {
        return Err(too_large("log text", text.len(), task_bytes_max));
    }
    Ok(())
}

fn too_large(what: &str, n: usize, max: usize) -> Error {
    Error::new(
        ErrorKind::TooLarge,
        format!("{what} is {n} bytes, more than the limit of {max} bytes"),
    )
}

/// Every delete in a batch names a task or session that exists at that
/// point of the batch: in `state`, or put by an earlier op of the batch.
pub(crate) fn check_deletes(state: &State, batch: &Op) -> Result<()> {
    let Op::Batch(ops) = batch else {
        unreachable!("called with the batch `prepare` built")
    };
    let mut tasks: HashMap<&str, bool> = HashMap::new();
    let mut sessions: HashMap<&str, bool> = HashMap::new();
    let missing = |what: &str, id: &str| {
        Error::new(
            ErrorKind::NotFound,
            format!("no {what} with id {id:?}; nothing in the batch was written"),
        )
    };
    for op in ops {
        match op {
            Op::PutTask(t) => {
                tasks.insert(t.id(), true);
            }
            Op::PutSession { id, .. } => {
                sessions.insert(id, true);
            }
            Op::DeleteTask(id) => {
                let there = tasks.insert(id, false);
                if !there.unwrap_or_else(|| state.tasks.contains_key(id.as_str())) {
                    return Err(missing("task", id));
                }
            }
            Op::DeleteSession(id) => {
                let there = sessions.insert(id, false);
                if !there.unwrap_or_else(|| state.sessions.contains_key(id)) {
                    return Err(missing("session", id));
                }
            }
            _ => unreachable!("`validate` admits puts and deletes only"),
        }
    }
    Ok(())
}

/// Task `id` is at version `expected` (`None`: there is no such task), for
/// [`crate::Store::put_task_if`].
pub(crate) fn check_version(state: &State, id: &str, expected: Option<u64>) -> Result<()> {
    let found = state.task_version(id);
    if found == expected {
        return Ok(());
    }
    Err(version_conflict(id, found, expected))
}

/// The [`ErrorKind::Conflict`] of a conditional put that found task `id`
/// at version `found` instead of `expected`, worded alike on every engine.
pub(crate) fn version_conflict(id: &str, found: Option<u64>, expected: Option<u64>) -> Error {
    let show = |v: Option<u64>| v.map_or("none (no such task)".to_string(), |v| v.to_string());
    Error::new(
        ErrorKind::Conflict,
        format!(
            "task {id:?} is at version {}, not the expected {}; nothing was written",
            show(found),
            show(expected)
        ),
    )
}
