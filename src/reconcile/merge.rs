//! Taking turns (part 3): the foreign view merged per task with statewal's
//! view, its newest sealed checkpoint plus the journal. Pure: it reads the
//! two views and says what to journal.

use super::foreign::ForeignView;
use super::{Action, Candidate, Decision, Winner, newest};
use crate::error::Result;
use crate::model::Task;
use crate::state::{State, TaskMap};
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a merge journals, and why.
#[derive(Default)]
pub(crate) struct MergePlan {
    /// Foreign copies that won, and tasks only the foreign side has.
    pub puts: Vec<Task>,
    /// Foreign session records that won, and those only it has.
    pub sessions: Vec<Value>,
    /// Every decision, tasks first.
    pub decisions: Vec<Decision>,
}

/// Where statewal's copies come from, in the reasons.
pub(crate) const STATEWAL: &str = "statewal";

/// What statewal itself wrote before the original server's turn: the
/// sealed checkpoint recovery loaded (the one that server loaded in turn)
/// and every task put replayed from the journal.
pub(crate) struct Written<'a> {
    /// The loaded checkpoint's tasks, when it is one statewal sealed.
    pub tasks: Option<&'a TaskMap>,
    /// Its session records, likewise.
    pub sessions: Option<&'a BTreeMap<String, Arc<Value>>>,
    /// Fingerprints of the task puts replayed.
    pub puts: &'a super::Prints,
}

impl Written<'_> {
    /// Whether `t` is a copy statewal wrote: the original server then
    /// loaded it and left it as it was.
    fn task(&self, t: &Task) -> bool {
        let json = t.to_json();
        self.tasks
            .and_then(|b| b.get(t.id()))
            .is_some_and(|b| b.task.same_as(t, &json))
            || self.puts.contains(&super::fingerprint(t.id(), &json))
    }
}

/// Merges `view` (the foreign side) into `state` (statewal's, recovered):
/// per task, [`newest`] between statewal's copy and the foreign one, which
/// wins a full tie since it wrote last; a task either side lacks is kept.
/// A foreign copy that is one statewal wrote (`written`) is not the
/// original server's change: it loaded that copy and left it alone, so
/// statewal's later copy is kept whatever the rule would say (without an
/// `updated_at`, a stale copy would win the tie and undo an acknowledged
/// put).
pub(crate) fn plan(state: &State, view: &ForeignView, written: &Written<'_>) -> Result<MergePlan> {
    let mut p = MergePlan::default();
    for (id, (theirs, source)) in &view.tasks {
        let Some(ours) = state.tasks.get(id.as_str()) else {
            p.decisions.push(Decision {
                task: id.clone(),
                action: Action::ForeignOnly,
                kept: source.clone(),
                other: None,
                reason: "not in statewal's checkpoint or journal (created by the original server, \
                         or deleted by statewal after that server last loaded): kept"
                    .into(),
            });
            p.puts.push(theirs.clone());
            continue;
        };
        if ours.task.same_as(theirs, &theirs.to_json()) {
            continue;
        }
        let ours = ours.task.to_task()?;
        let (mut winner, mut reason) = newest(
            Candidate {
                task: &ours,
                source: STATEWAL,
            },
            Candidate {
                task: theirs,
                source,
            },
        );
        if winner == Winner::Theirs && written.task(theirs) {
            winner = Winner::Ours;
            reason = format!(
                "{source} holds a copy statewal wrote before the original server's turn (that \
                 server did not change it), so statewal's later copy is kept ({reason})"
            );
        }
        let (action, kept, other) = match winner {
            Winner::Theirs => (Action::Foreign, source.clone(), STATEWAL.to_string()),
            Winner::Ours => (Action::Statewal, STATEWAL.to_string(), source.clone()),
        };
        p.decisions.push(Decision {
            task: id.clone(),
            action,
            kept,
            other: Some(other),
            reason,
        });
        if winner == Winner::Theirs {
            p.puts.push(theirs.clone());
        }
    }
    for id in state.tasks.keys() {
        if !view.tasks.contains_key(id.as_str()) {
            p.decisions.push(Decision {
                task: id.to_string(),
                action: Action::StatewalOnly,
                kept: STATEWAL.into(),
                other: None,
                reason: format!(
                    "not in {} nor tasks/ (created by statewal after the original server last \
                     loaded, or deleted by that server): kept",
                    view.base
                ),
            });
        }
    }
    plan_sessions(state, view, written, &mut p);
    Ok(p)
}

/// Session records have no `logs`: the later `updated_at` wins, else the
/// foreign copy (written last); one only the foreign side has is kept.
fn plan_sessions(state: &State, view: &ForeignView, written: &Written<'_>, p: &mut MergePlan) {
    for theirs in &view.sessions {
        let Some(id) = crate::journal::op::session_id(theirs) else {
            continue;
        };
        let label = format!("session {id}");
        match state.sessions.get(id) {
            None => {
                p.decisions.push(Decision {
                    task: label,
                    action: Action::ForeignOnly,
                    kept: view.base.clone(),
                    other: None,
                    reason: "a session record statewal does not have: kept".into(),
                });
                p.sessions.push(theirs.clone());
            }
            Some(ours) if **ours == *theirs => {}
            Some(_)
                if written
                    .sessions
                    .and_then(|b| b.get(id))
                    .is_some_and(|b| **b == *theirs) =>
            {
                p.decisions.push(Decision {
                    task: label,
                    action: Action::Statewal,
                    kept: STATEWAL.into(),
                    other: Some(view.base.clone()),
                    reason: "the foreign session record is the one statewal checkpointed before \
                             the original server's turn (that server did not change it)"
                        .into(),
                });
            }
            Some(ours) => {
                let time = |v: &Value| v.get("updated_at").and_then(crate::task::parse_time);
                let ours_newer = match (time(ours), time(theirs)) {
                    (Some(a), Some(b)) => a.cmp(&b) == Ordering::Greater,
                    (Some(_), None) => true,
                    _ => false,
                };
                let (action, kept, other, reason) = if ours_newer {
                    (
                        Action::Statewal,
                        STATEWAL.to_string(),
                        view.base.clone(),
                        "statewal's session record has the later updated_at",
                    )
                } else {
                    (
                        Action::Foreign,
                        view.base.clone(),
                        STATEWAL.to_string(),
                        "the foreign session record is not older by updated_at: written last",
                    )
                };
                p.decisions.push(Decision {
                    task: label,
                    action,
                    kept,
                    other: Some(other),
                    reason: reason.into(),
                });
                if !ours_newer {
                    p.sessions.push(theirs.clone());
                }
            }
        }
    }
}
