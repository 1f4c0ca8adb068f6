//! Taking turns (part 3): the foreign view merged per task with statewal's
//! view, its newest sealed checkpoint plus the journal. Pure: it reads the
//! two views and says what to journal.

use super::foreign::ForeignView;
use super::{Action, Candidate, Decision, Winner, newest};
use crate::model::Task;
use crate::state::State;
use serde_json::Value;
use std::cmp::Ordering;

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

/// Merges `view` (the foreign side) into `state` (statewal's, recovered):
/// per task, [`newest`] between statewal's copy and the foreign one, which
/// wins a full tie since it wrote last; a task either side lacks is kept.
pub(crate) fn plan(state: &State, view: &ForeignView) -> MergePlan {
    let mut p = MergePlan::default();
    for (id, (theirs, source)) in &view.tasks {
        let Some(ours) = state.tasks.get(id) else {
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
        if **ours == *theirs {
            continue;
        }
        let (winner, reason) = newest(
            Candidate {
                task: ours,
                source: STATEWAL,
            },
            Candidate {
                task: theirs,
                source,
            },
        );
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
        if !view.tasks.contains_key(id) {
            p.decisions.push(Decision {
                task: id.clone(),
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
    plan_sessions(state, view, &mut p);
    p
}

/// Session records have no `logs`: the later `updated_at` wins, else the
/// foreign copy (written last); one only the foreign side has is kept.
fn plan_sessions(state: &State, view: &ForeignView, p: &mut MergePlan) {
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
