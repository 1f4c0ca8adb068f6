//! The model checker: operations, crashes and reopens on a store on a
//! [`SimFs`], checked against an in-memory model of what was acknowledged.
//!
//! [`check_model`] runs typed [`ModelOp`]s (the proptest state machine in
//! `tests/it/model.rs` generates and shrinks them); [`model`] decodes them
//! from bytes for the fuzzer.

use super::{IDS, Input, sim_options};
use crate::fs::Fs;
use crate::fs::sim::{Outcome, PendingKind, SimFs, TearFill};
use crate::layout::{LOGS_DIR, REPORTS_DIR, log_file, report_file};
use crate::{ErrorKind, RecoveryMode, Store, Task, TaskStatus};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A mutation (or checkpoint) on the store. Ids index [`IDS`] modulo its
/// length, so operations collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutate {
    /// Put a new version of a task (creating it if missing).
    Put {
        /// Index into [`IDS`].
        id: u8,
    },
    /// Read a task, change its status and description, and put it back (a
    /// put when it is missing).
    Update {
        /// Index into [`IDS`].
        id: u8,
    },
    /// Delete a task; the store must refuse with `NotFound` when it is missing.
    Delete {
        /// Index into [`IDS`].
        id: u8,
    },
    /// Append a line of `len` extra bytes to a session log.
    AppendLog {
        /// Index into [`IDS`], as the session id.
        session: u8,
        /// Extra bytes in the line.
        len: u8,
    },
    /// Save a report holding the step number.
    SaveReport {
        /// Index into [`IDS`], as the report id.
        id: u8,
    },
    /// Checkpoint.
    Checkpoint,
}

/// What power loss does to one pending item of the [`SimFs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Lost.
    Lost,
    /// Kept.
    Kept,
    /// Torn after `at` bytes (modulo the item's byte count plus one), the
    /// rest of the cut write left behind as `fill`.
    Torn {
        /// Where the tear is.
        at: u32,
        /// What the cut write leaves.
        fill: TearFill,
    },
}

/// One step of a model run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelOp {
    /// A mutation that must succeed (or be refused as the model says).
    Do(Mutate),
    /// The process dies, then power is lost, then the store is reopened.
    /// With `during`, the process dies inside that mutation after that many
    /// more I/O operations (it may still finish first); without, between
    /// operations. `choices[i]` decides pending item `i` (missing: lost).
    Crash {
        /// The mutation in flight, and after how many I/O operations the process dies.
        during: Option<(Mutate, u8)>,
        /// One choice per pending item.
        choices: Vec<Choice>,
    },
    /// Close the store (with `shutdown`, which checkpoints, else a plain
    /// drop, which does not) and reopen it; no power loss.
    Reopen {
        /// Whether to call `shutdown` rather than drop.
        shutdown: bool,
    },
}

/// Decodes [`ModelOp`]s from the bytes and runs [`check_model`], panicking
/// with the failing step on a violation. At most 64 steps are read.
pub fn model(data: &[u8]) {
    // Invariants checked:
    // - every acknowledged mutation survives any crash: the process dying
    //   at any I/O operation, then any power-loss outcome of the unsynced
    //   writes and directory entries (lost, kept, torn with any fill);
    // - nothing appears that was never written: after a crash the store
    //   holds the acknowledged state, or that plus the one mutation in flight;
    // - the store always reopens in the default recovery mode, and tasks,
    //   session logs and reports (as a checkpoint writes them) match the model;
    // - after every step, the read-back API (`read_log`, `get_report`)
    //   matches the model before any checkpoint, journal included;
    // - a delete of a missing task is refused with `NotFound` and changes nothing;
    // - a clean reopen (drop or shutdown) loses nothing, unsynced or not.
    let ops = decode_ops(&mut Input::new(data));
    if let Err(why) = check_model(&ops) {
        panic!("model violation: {why}\nops: {ops:?}");
    }
}

/// Runs `ops` on a fresh [`SimFs`] store and checks the store against the
/// model after each reopen; `Err` says which step broke what.
pub fn check_model(ops: &[ModelOp]) -> Result<(), String> {
    let fs = SimFs::new(0x5eed);
    let store = open(&fs).map_err(|e| format!("open of an empty store failed: {e}"))?;
    let mut run = Run {
        fs,
        store: Some(store),
        model: Model::default(),
        step: 0,
    };
    for (i, op) in ops.iter().enumerate() {
        run.step = i;
        run.op(op)
            .map_err(|why| format!("step {i} ({op:?}): {why}"))?;
    }
    Ok(())
}

fn decode_ops(input: &mut Input<'_>) -> Vec<ModelOp> {
    let mut ops = Vec::new();
    while !input.is_empty() && ops.len() < 64 {
        let op = match input.u8() % 16 {
            0..=9 => ModelOp::Do(decode_mutate(input)),
            10..=12 => {
                let during = input.bool().then(|| (decode_mutate(input), input.u8()));
                let choices = (0..input.below(16))
                    .map(|_| match input.u8() % 4 {
                        0 => Choice::Lost,
                        1 => Choice::Kept,
                        fill => Choice::Torn {
                            at: u32::from(input.u16()),
                            fill: [TearFill::Nothing, TearFill::Zeros, TearFill::Garbage]
                                [(usize::from(fill) + usize::from(input.u8())) % 3],
                        },
                    })
                    .collect();
                ModelOp::Crash { during, choices }
            }
            _ => ModelOp::Reopen {
                shutdown: input.bool(),
            },
        };
        ops.push(op);
    }
    ops
}

fn decode_mutate(input: &mut Input<'_>) -> Mutate {
    let b = input.u8();
    let id = b >> 4;
    match b % 8 {
        0 | 1 => Mutate::Put { id },
        2 => Mutate::Update { id },
        3 => Mutate::Delete { id },
        4 => Mutate::AppendLog {
            session: id,
            len: input.u8() % 32,
        },
        5 => Mutate::SaveReport { id },
        _ => Mutate::Checkpoint,
    }
}

/// What the store should hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Model {
    /// Task id to description.
    tasks: BTreeMap<String, String>,
    /// Session id to log contents.
    logs: BTreeMap<String, String>,
    /// Report id to the step that saved it.
    reports: BTreeMap<String, u64>,
}

fn id(i: u8) -> &'static str {
    IDS[usize::from(i) % IDS.len()]
}

impl Model {
    /// The model after `m` at `step`, and whether the store must refuse it
    /// with `NotFound`.
    fn after(&self, m: Mutate, step: usize) -> (Model, bool) {
        let mut next = self.clone();
        match m {
            Mutate::Put { id: i } => {
                next.tasks.insert(id(i).into(), format!("put@{step}"));
            }
            Mutate::Update { id: i } => {
                next.tasks.insert(id(i).into(), format!("update@{step}"));
            }
            Mutate::Delete { id: i } => {
                if next.tasks.remove(id(i)).is_none() {
                    return (next, true);
                }
            }
            Mutate::AppendLog { session, len } => {
                let line = log_line(step, len);
                next.logs
                    .entry(id(session).into())
                    .or_default()
                    .push_str(&line);
            }
            Mutate::SaveReport { id: i } => {
                next.reports.insert(id(i).into(), step as u64);
            }
            Mutate::Checkpoint => {}
        }
        (next, false)
    }
}

fn log_line(step: usize, len: u8) -> String {
    format!("step {step} {}\n", "x".repeat(usize::from(len)))
}

fn open(fs: &SimFs) -> crate::Result<Store> {
    Store::open_with_fs(
        sim_options(RecoveryMode::TolerateTornTail),
        Arc::new(fs.clone()),
        None,
    )
}

/// Session logs and reports by id, as a checkpoint writes them.
type Files = (BTreeMap<String, String>, BTreeMap<String, u64>);

struct Run {
    fs: SimFs,
    store: Option<Store>,
    model: Model,
    step: usize,
}

impl Run {
    fn op(&mut self, op: &ModelOp) -> Result<(), String> {
        match op {
            ModelOp::Do(m) => {
                let (next, refused) = self.model.after(*m, self.step);
                match (self.apply(*m), refused) {
                    (Ok(()), false) => self.model = next,
                    (Err(e), true) if e.kind() == ErrorKind::NotFound => {}
                    (result, _) => {
                        return Err(format!("expected refused={refused}, got {result:?}"));
                    }
                }
                self.check_read_back()
            }
            ModelOp::Crash { during, choices } => self.crash(*during, choices),
            ModelOp::Reopen { shutdown } => {
                let store = self.store.take().expect("a store is open between steps");
                if *shutdown {
                    store
                        .shutdown()
                        .map_err(|e| format!("shutdown failed: {e}"))?;
                } else {
                    drop(store);
                }
                let expect = [self.model.clone()];
                self.reopen(&expect)
            }
        }
    }

    fn crash(&mut self, during: Option<(Mutate, u8)>, choices: &[Choice]) -> Result<(), String> {
        let mut candidates = vec![self.model.clone()];
        if let Some((m, after_ops)) = during {
            self.fs
                .crash_after_ops(self.fs.ops() + u64::from(after_ops));
            let (next, refused) = self.model.after(m, self.step);
            match self.apply(m) {
                Ok(()) if !refused => candidates = vec![next],
                Err(e) if refused && e.kind() == ErrorKind::NotFound => {}
                Ok(()) => return Err("a delete of a missing task succeeded".into()),
                // The process died inside the mutation: it may or may not
                // have reached the disk.
                Err(_) if self.fs.crashed() => candidates.push(next),
                Err(e) => return Err(format!("failed before the crash point: {e}")),
            }
        }
        // The process dies now: nothing after this point reaches the disk.
        self.fs.crash_after_ops(self.fs.ops());
        drop(self.store.take());
        self.fs = self.fs.crash_with(|item| {
            let choice = choices.get(item.index).copied().unwrap_or(Choice::Lost);
            match (choice, &item.kind) {
                (Choice::Lost, _) => Outcome::Lost,
                (Choice::Kept, _) => Outcome::Kept,
                (Choice::Torn { at, fill }, PendingKind::FileData { bytes, .. }) => {
                    let at = u64::from(at) % (bytes + 1);
                    Outcome::Torn { at, fill }
                }
                (Choice::Torn { .. }, PendingKind::DirEntry) => Outcome::Kept,
            }
        });
        self.reopen(&candidates)
    }

    /// Reopens the store and checks it against `candidates`; the model
    /// becomes the one it matches.
    fn reopen(&mut self, candidates: &[Model]) -> Result<(), String> {
        let store = open(&self.fs).map_err(|e| format!("reopen failed: {e}"))?;
        let tasks: BTreeMap<String, String> = store
            .list_tasks()
            .map_err(|e| format!("list_tasks failed: {e}"))?
            .into_iter()
            .map(|t| {
                (
                    t.id().to_string(),
                    t.description().unwrap_or_default().to_string(),
                )
            })
            .collect();
        self.store = Some(store);
        let (logs, reports) = self.checkpointed_files()?;
        let found = Model {
            tasks,
            logs,
            reports,
        };
        match candidates.iter().find(|m| **m == found) {
            Some(m) => {
                self.model = m.clone();
                self.check_read_back()
            }
            None => Err(format!(
                "after reopening the store holds {found:?}, expected one of {candidates:?}"
            )),
        }
    }

    /// Checks that the read-back API of the open store, which overlays the
    /// journal on the files, gives the model's logs and reports.
    fn check_read_back(&self) -> Result<(), String> {
        let store = self.store.as_ref().expect("a store is open between steps");
        for i in IDS {
            let log = match store.read_log(&log_file(i), ..) {
                Ok(b) => Some(String::from_utf8(b).map_err(|_| format!("log {i} is not UTF-8"))?),
                Err(e) if e.kind() == ErrorKind::NotFound => None,
                Err(e) => return Err(format!("read_log {i}: {e}")),
            };
            if log.as_ref() != self.model.logs.get(i) {
                return Err(format!(
                    "read_log {i} gives {log:?}, the model {:?}",
                    self.model.logs.get(i)
                ));
            }
            let report = store
                .get_report(i)
                .map_err(|e| format!("get_report {i}: {e}"))?
                .map(|v| v["step"].as_u64());
            if report != self.model.reports.get(i).map(|s| Some(*s)) {
                return Err(format!(
                    "get_report {i} gives step {report:?}, the model {:?}",
                    self.model.reports.get(i)
                ));
            }
        }
        Ok(())
    }

    /// The session logs and reports as a checkpoint writes them, read from
    /// a copy of the filesystem so the run itself is not checkpointed.
    fn checkpointed_files(&self) -> Result<Files, String> {
        let copy = self.fs.fork();
        let store = open(&copy).map_err(|e| format!("open of a copy failed: {e}"))?;
        store
            .checkpoint()
            .map_err(|e| format!("checkpoint of a copy failed: {e}"))?;
        drop(store);
        let read = |rel: String| -> Result<Option<Vec<u8>>, String> {
            Ok(copy
                .read(&rel)
                .map_err(|e| e.to_string())?
                .map(|b| b.to_vec()))
        };
        let (mut logs, mut reports) = (BTreeMap::new(), BTreeMap::new());
        for i in IDS {
            if let Some(b) = read(format!("{LOGS_DIR}/{}", log_file(i)))? {
                let text = String::from_utf8(b).map_err(|_| format!("log {i} is not UTF-8"))?;
                logs.insert(i.to_string(), text);
            }
            if let Some(b) = read(format!("{REPORTS_DIR}/{}", report_file(i)))? {
                let v: serde_json::Value =
                    serde_json::from_slice(&b).map_err(|e| format!("report {i}: {e}"))?;
                let step = v["step"]
                    .as_u64()
                    .ok_or(format!("report {i} has no step"))?;
                reports.insert(i.to_string(), step);
            }
        }
        Ok((logs, reports))
    }

    fn apply(&self, m: Mutate) -> crate::Result<()> {
        let store = self.store.as_ref().expect("a store is open between steps");
        let step = self.step;
        match m {
            Mutate::Put { id: i } => {
                let mut t = Task::new(id(i));
                t.set_description(format!("put@{step}"));
                store.put_task(t).map(drop)
            }
            Mutate::Update { id: i } => {
                let mut t = store.get_task(id(i))?.unwrap_or_else(|| Task::new(id(i)));
                t.set_description(format!("update@{step}"));
                t.set_status(TaskStatus::InProgress);
                store.put_task(t).map(drop)
            }
            Mutate::Delete { id: i } => store.delete_task(id(i)).map(drop),
            Mutate::AppendLog { session, len } => store
                .append_log(id(session), &log_line(step, len))
                .map(drop),
            Mutate::SaveReport { id: i } => store
                .save_report(id(i), serde_json::json!({ "step": step }))
                .map(drop),
            Mutate::Checkpoint => store.checkpoint().map(drop),
        }
    }
}
