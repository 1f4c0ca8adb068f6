//! Out-of-band edits of `tasks/<id>.json` (part 2): a hand edit, or the
//! original server's `saveTask` after it crashed before writing
//! `state.json`. Pure: it compares files already read with what statewal
//! wrote and says what to do.
//!
//! A task file that equals a copy statewal wrote of that task (the loaded
//! checkpoint's, one replayed from the journal, or the recovered one) is
//! not an edit: the journal moved on since a checkpoint wrote it, or a
//! checkpoint was interrupted between writing task files and `state.json`.
//! Anything else is an edit: imported when it is newer than the recovered
//! copy by [`compare`] (or the store has no such task), else set aside; a
//! full tie is not newer, so it is set aside too (unlike a merge with the
//! original server's state, where the foreign copy wins a tie). A file
//! that is not a task is set aside too.

use super::aside::Aside;
use super::foreign::TaskFile;
use super::{Action, Candidate, Decision, compare, fingerprint};
use crate::error::Result;
use crate::journal::op::HeldTask;
use crate::model::Task;
use crate::state::TaskMap;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashSet;

/// The store's copy of a task at the open: a merge's put, or the one the
/// state holds.
#[derive(Clone, Copy)]
pub(crate) enum Current<'a> {
    Put(&'a Task),
    Held(&'a HeldTask),
}

impl Current<'_> {
    /// Whether this copy is `held` (the same allocation, or equal bytes).
    pub(crate) fn is_held(self, held: &HeldTask) -> bool {
        match self {
            Current::Put(t) => held.same_as(t, &t.to_json()),
            Current::Held(h) => std::ptr::eq(h, held) || h == held,
        }
    }

    /// Whether `task` (whose compact JSON is `json`) is this copy.
    pub(crate) fn same_as(self, task: &Task, json: &[u8]) -> bool {
        match self {
            Current::Put(t) => t == task,
            Current::Held(h) => h.same_as(task, json),
        }
    }

    fn task(&self) -> Result<Cow<'_, Task>> {
        match self {
            Current::Put(t) => Ok(Cow::Borrowed(t)),
            Current::Held(h) => h.to_task().map(Cow::Owned),
        }
    }
}

/// What to do about the task files.
#[derive(Default)]
pub(crate) struct EditPlan {
    /// Edits to journal.
    pub imports: Vec<Task>,
    /// Files to rename to `<path>.edited-<ms>`, with why.
    pub set_aside: Vec<Aside>,
    /// Tasks whose file the next checkpoint must write again (set aside,
    /// or stale), whether or not anything else changed.
    pub rewrite: Vec<String>,
    /// One per edit, imported or set aside.
    pub decisions: Vec<Decision>,
}

/// Decides about every file in `files`, and about the files of
/// `unread` (task ids): files a stat vouched for, left unread, each
/// holding `base`'s copy of its task (`super::live`). `base` is the loaded
/// checkpoint's tasks, `replayed` the fingerprints of the puts replayed
/// after it, `removed` the tasks a replayed record deleted or archived,
/// `current(id)` the store's copy of a task now, and `ids` every task the
/// store holds now: one without a file gets its file written again (the
/// original server deleted it, or a crash came between setting a file
/// aside and the checkpoint that writes the store's copy).
pub(crate) fn plan<'a>(
    files: Vec<TaskFile>,
    unread: &[String],
    base: &TaskMap,
    replayed: &super::Prints,
    removed: &HashSet<String>,
    current: impl Fn(&str) -> Option<Current<'a>>,
    ids: impl Iterator<Item = &'a str>,
) -> Result<EditPlan> {
    let mut p = EditPlan::default();
    let on_disk: HashSet<String, foldhash::fast::RandomState> = files
        .iter()
        .map(|f| f.name[..f.name.len() - ".json".len()].to_string())
        .chain(unread.iter().cloned())
        .collect();
    for id in ids.filter(|id| !on_disk.contains(*id)) {
        // In the loaded checkpoint, whose file a checkpoint wrote: someone
        // removed it (the original server's `deleteTask` removes the file
        // at once and saves state.json later). Kept, and said so.
        // (Unless a replayed record deleted or archived it since: then a
        // checkpoint of statewal's own removed the file, and a later put
        // brought the task back before the next one wrote it again.)
        if base.contains_key(id) && !removed.contains(id) {
            p.decisions.push(Decision {
                task: id.to_string(),
                action: Action::StatewalOnly,
                kept: super::merge::STATEWAL.into(),
                other: None,
                reason: format!(
                    "tasks/{id}.json is missing (deleted by the original server, or by hand): \
                     kept, and its file written again"
                ),
            });
        }
        p.rewrite.push(id.to_string());
    }
    // What a file read below equal to the base copy gets: nothing when the
    // store still holds that copy, else written again (stale).
    for id in unread {
        let holds_current = match (base.get(id.as_str()), current(id)) {
            (Some(b), Some(c)) => c.is_held(&b.task),
            _ => false,
        };
        if !holds_current {
            p.rewrite.push(id.clone());
        }
    }
    for f in files {
        let stem = f.name[..f.name.len() - ".json".len()].to_string();
        let file = match f.task {
            Ok(t) => t,
            Err(why) => {
                p.decisions.push(Decision {
                    task: stem.clone(),
                    action: Action::SetAside,
                    kept: if current(&stem).is_some() {
                        super::merge::STATEWAL.into()
                    } else {
                        "nothing".into()
                    },
                    other: Some(f.path.clone()),
                    reason: format!("not a task: {why}"),
                });
                p.set_aside.push(Aside {
                    path: f.path,
                    why: format!("is not a task ({why})"),
                });
                p.rewrite.push(stem);
                continue;
            }
        };
        let id = file.id().to_string();
        let json = file.to_json();
        let cur = current(&id);
        if cur.is_some_and(|c| c.same_as(&file, &json)) {
            continue;
        }
        let stale = base
            .get(id.as_str())
            .is_some_and(|b| b.task.same_as(&file, &json))
            || replayed.contains(&fingerprint(&id, &json));
        if stale {
            p.rewrite.push(id);
            continue;
        }
        let Some(cur) = cur else {
            p.decisions.push(Decision {
                task: id.clone(),
                action: Action::Imported,
                kept: f.path.clone(),
                other: None,
                reason: "an edit of a task the store does not have".into(),
            });
            p.imports.push(file);
            continue;
        };
        let cur = cur.task()?;
        let (order, reason) = compare(
            Candidate {
                task: &cur,
                source: super::merge::STATEWAL,
            },
            Candidate {
                task: &file,
                source: &f.path,
            },
        );
        // Only a newer edit is imported. On a full tie the file is set
        // aside: it is not newer, and bit rot in a stale task file, or an
        // edit that changed neither updated_at nor logs, must not undo an
        // acknowledged put (found by the JSON bit-flip sweep).
        let reason = match order {
            Ordering::Equal => format!(
                "{}; not newer, so the store's copy is kept",
                reason.replace(", written last", "")
            ),
            _ => reason,
        };
        match order {
            Ordering::Less => {
                p.decisions.push(Decision {
                    task: id,
                    action: Action::Imported,
                    kept: f.path.clone(),
                    other: Some(super::merge::STATEWAL.into()),
                    reason,
                });
                p.imports.push(file);
            }
            Ordering::Equal | Ordering::Greater => {
                p.decisions.push(Decision {
                    task: id.clone(),
                    action: Action::SetAside,
                    kept: super::merge::STATEWAL.into(),
                    other: Some(f.path.clone()),
                    reason: reason.clone(),
                });
                p.set_aside.push(Aside {
                    path: f.path,
                    why: format!(
                        "differs from the store's copy of the task and is not newer ({reason})"
                    ),
                });
                p.rewrite.push(id);
            }
        }
    }
    Ok(p)
}
