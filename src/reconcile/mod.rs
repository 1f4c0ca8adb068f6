//! Reconciling copies of a task that statewal did not write itself: the
//! original TypeScript server's `state.json` and `tasks/<id>.json`, and hand
//! edits of task files.
//!
//! Three situations meet here (issue 9, `docs/decisions.md`):
//!
//! - **A directory without statewal history** (part 1): the foreign view is
//!   `state.json` (else its newest valid backup) merged per task with
//!   `tasks/<id>.json`; the migration writes it ([`crate::migrate`]).
//! - **A foreign `state.json` over statewal history** (part 3, "taking
//!   turns"): the foreign view is merged per task with statewal's view (its
//!   newest sealed checkpoint plus the journal); the foreign copies that win
//!   are journaled, then a checkpoint replaces the foreign file (`merge.rs`).
//! - **Out-of-band edits** (part 2): at every owner open, a task file that
//!   differs from every copy statewal itself wrote of that task is an edit;
//!   it is imported when it is newer, else set aside (`edits.rs`).
//!
//! Everywhere, between two copies of a task, [`newest`] decides.
//!
//! **Invariant:** a copy of a task that loses is never dropped unseen: it is
//! reported (the migration log, the recovery report, an event, a warning),
//! and a task file that loses is renamed aside, not overwritten.

mod apply;
mod aside;
pub(crate) mod edits;
pub(crate) mod foreign;
pub(crate) mod live;
pub(crate) mod merge;
pub(crate) mod survey;

pub use apply::Merged;
pub(crate) use apply::{
    Prepared, SUPERSEDED_PREFIX, apply_in_memory, apply_owner, plan, prepare_owner, prepare_reader,
    task_file_decisions,
};

use crate::model::Task;
use serde::Serialize;
use std::cmp::Ordering;

/// Which of two copies [`newest`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Winner {
    /// The first copy given: statewal's own, or `state.json`'s.
    Ours,
    /// The second copy given: the one written last (the foreign writer's,
    /// a hand edit, or `tasks/<id>.json` over `state.json`'s copy).
    Theirs,
}

/// One copy of a task and where it came from, for [`newest`].
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The copy.
    pub task: &'a Task,
    /// Where it came from, for the reason: `"tasks/a.json"`, `"state.json"`,
    /// `"statewal"`, ...
    pub source: &'a str,
}

/// The merge rule: between two copies of one task, the one with the later
/// `updated_at` wins (read leniently by [`Task::updated_at`]; a copy whose
/// time parses beats one whose time does not), then the one with more
/// `logs`, then, on a full tie, `theirs`: the copy written last.
///
/// Returns the winner and the reason, worded for the migration log
/// ("tasks/a.json has updated_at X > Y", "same updated_at, 7 logs > 5",
/// "full tie: tasks/a.json, written last").
pub fn newest(ours: Candidate<'_>, theirs: Candidate<'_>) -> (Winner, String) {
    let (order, reason) = compare(ours, theirs);
    let winner = if order == Ordering::Greater {
        Winner::Ours
    } else {
        Winner::Theirs
    };
    (winner, reason)
}

/// [`newest`] without its tie-break: `Greater` when `ours` is newer,
/// `Less` when `theirs` is, `Equal` on a full tie (same `updated_at`, as
/// far as both parse, and as many `logs`), with the reason in words.
pub fn compare(ours: Candidate<'_>, theirs: Candidate<'_>) -> (Ordering, String) {
    let (a, b) = (ours.task, theirs.task);
    let time = |t: &Task| t.updated_at_str().unwrap_or("none").to_string();
    let by_time = match (a.updated_at(), b.updated_at()) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => Ordering::Equal,
    };
    let winner = |o: Ordering| {
        if o == Ordering::Greater {
            (o, ours, theirs)
        } else {
            (o, theirs, ours)
        }
    };
    if by_time != Ordering::Equal {
        let (w, win, lose) = winner(by_time);
        let lose_time = match lose.task.updated_at() {
            Some(_) => time(lose.task),
            None if lose.task.updated_at_str().is_some() => {
                format!("{} (not a time)", time(lose.task))
            }
            None => "none".to_string(),
        };
        return (
            w,
            format!(
                "{} has updated_at {} > {} ({})",
                win.source,
                time(win.task),
                lose_time,
                lose.source
            ),
        );
    }
    let same = match a.updated_at() {
        Some(_) => "same updated_at".to_string(),
        None => "no updated_at on either".to_string(),
    };
    let by_logs = a.logs().len().cmp(&b.logs().len());
    if by_logs != Ordering::Equal {
        let (w, win, lose) = winner(by_logs);
        return (
            w,
            format!(
                "{same}, {} logs > {} ({} over {})",
                win.task.logs().len(),
                lose.task.logs().len(),
                win.source,
                lose.source
            ),
        );
    }
    (
        Ordering::Equal,
        format!(
            "full tie ({same}, {} logs): {}, written last",
            b.logs().len(),
            theirs.source
        ),
    )
}

/// What happened to one task when copies were reconciled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A migration took `tasks/<id>.json`'s copy (newer, or the only one).
    TaskFile,
    /// A migration kept the state file's copy over an older task file.
    StateFile,
    /// A migration kept a task only the state file has (no task file: the
    /// original server deleted it after its last save, or never wrote it).
    StateFileOnly,
    /// A merge journaled the foreign copy: it won over statewal's.
    Foreign,
    /// A merge journaled a task only the foreign side has (created by the
    /// original server, or deleted by statewal after the original server
    /// last loaded it): kept.
    ForeignOnly,
    /// A merge kept statewal's copy: it won over the foreign one.
    Statewal,
    /// A merge kept a task only statewal has (created by statewal after the
    /// original server last loaded it, or deleted by the original server):
    /// kept.
    StatewalOnly,
    /// An out-of-band edit of `tasks/<id>.json` was journaled.
    Imported,
    /// A task file that lost, or does not parse, was renamed aside.
    SetAside,
    /// A copy that should have been journaled could not be (too large, an
    /// invalid id); the file it came from is left as it is.
    NotImported,
}

impl Action {
    /// The word used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::TaskFile => "task_file",
            Action::StateFile => "state_file",
            Action::StateFileOnly => "state_file_only",
            Action::Foreign => "foreign",
            Action::ForeignOnly => "foreign_only",
            Action::Statewal => "statewal",
            Action::StatewalOnly => "statewal_only",
            Action::Imported => "imported",
            Action::SetAside => "set_aside",
            Action::NotImported => "not_imported",
        }
    }
}

/// Whether a decision deserves a warning rather than a note: a copy lost,
/// set aside, or kept on one side only.
pub(crate) fn needs_attention(action: Action) -> bool {
    matches!(
        action,
        Action::SetAside
            | Action::NotImported
            | Action::ForeignOnly
            | Action::StatewalOnly
            | Action::StateFile
            | Action::StateFileOnly
    )
}

/// One decision about one task (or one task file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The task id (for a task file that does not parse, its file name).
    pub task: String,
    /// What was done.
    pub action: Action,
    /// Where the copy kept came from (`"tasks/a.json"`, `"state.json"`,
    /// `"statewal"`, ...).
    pub kept: String,
    /// The other copy, if there was one: where it came from, or where it was
    /// set aside.
    pub other: Option<String>,
    /// Why, in words ([`newest`]'s reason, or what was missing).
    pub reason: String,
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "task {:?}: {}: kept {}",
            self.task,
            self.action.as_str(),
            self.kept
        )?;
        if let Some(o) = &self.other {
            write!(f, " over {o}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// A set of [`fingerprint`]s (already hashes: a cheap hasher will do).
pub(crate) type Prints = std::collections::HashSet<u64, foldhash::fast::RandomState>;

/// A cheap fingerprint of one copy of a task, as its journal record or
/// checkpoint writes it (the compact JSON), so a task file can be matched
/// with a version statewal itself wrote without keeping every version.
///
/// Compared only within one process (replay computes them, the open's
/// plan checks task files against them), so the hash is seeded at random
/// per process: foldhash's quality variant, about ten times SipHash's
/// speed over a 512-byte task (it was 5% of an open replaying 100,000
/// puts).
pub(crate) fn fingerprint(id: &str, compact_json: &[u8]) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    static SEED: std::sync::OnceLock<foldhash::quality::RandomState> = std::sync::OnceLock::new();
    let mut h = SEED.get_or_init(Default::default).build_hasher();
    id.hash(&mut h);
    compact_json.hash(&mut h);
    h.finish()
}

/// Milliseconds since the Unix epoch now, for `.edited-<ms>` and
/// `superseded-<ms>` names.
pub(crate) fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(v: serde_json::Value) -> Task {
        Task::from_value(v).unwrap()
    }

    fn pick(ours: &Task, theirs: &Task) -> (Winner, String) {
        newest(
            Candidate {
                task: ours,
                source: "statewal",
            },
            Candidate {
                task: theirs,
                source: "tasks/a.json",
            },
        )
    }

    #[test]
    fn the_later_updated_at_wins_whichever_side_it_is_on() {
        let old =
            task(json!({"id": "a", "updated_at": "2024-01-01T10:00:00.000Z", "logs": [{}, {}]}));
        let new = task(json!({"id": "a", "updated_at": "2024-01-01T10:00:01Z"}));
        let (w, why) = pick(&old, &new);
        assert_eq!(w, Winner::Theirs);
        assert_eq!(
            why,
            "tasks/a.json has updated_at 2024-01-01T10:00:01Z > 2024-01-01T10:00:00.000Z (statewal)"
        );
        assert_eq!(pick(&new, &old).0, Winner::Ours);
        // Epoch milliseconds and offsets compare by the instant they denote.
        let ms = task(json!({"id": "a", "updated_at": 1_704_103_202_000_i64}));
        let offset = task(json!({"id": "a", "updated_at": "2024-01-01T11:00:01+01:00"}));
        assert_eq!(pick(&ms, &offset).0, Winner::Ours, "10:00:02Z > 10:00:01Z");
    }

    #[test]
    fn a_parseable_time_beats_none_and_garbage() {
        let timed = task(json!({"id": "a", "updated_at": "2020-01-01T00:00:00Z"}));
        let none = task(json!({"id": "a", "logs": [{}, {}, {}]}));
        let garbage = task(json!({"id": "a", "updated_at": "yesterday"}));
        assert_eq!(pick(&timed, &none).0, Winner::Ours);
        assert_eq!(pick(&none, &timed).0, Winner::Theirs);
        let (w, why) = pick(&timed, &garbage);
        assert_eq!(w, Winner::Ours);
        assert!(why.contains("yesterday (not a time)"), "{why}");
    }

    #[test]
    fn same_time_then_more_logs_then_theirs() {
        let at = "2024-01-01T10:00:00.000Z";
        let five = task(json!({"id": "a", "updated_at": at, "logs": [{}, {}, {}, {}, {}]}));
        let seven =
            task(json!({"id": "a", "updated_at": at, "logs": [{}, {}, {}, {}, {}, {}, {}]}));
        let (w, why) = pick(&seven, &five);
        assert_eq!(w, Winner::Ours);
        assert_eq!(
            why,
            "same updated_at, 7 logs > 5 (statewal over tasks/a.json)"
        );
        assert_eq!(pick(&five, &seven).0, Winner::Theirs);
        let other =
            task(json!({"id": "a", "updated_at": at, "logs": [{}, {}, {}, {}, {}], "x": 1}));
        let (w, why) = pick(&five, &other);
        assert_eq!(
            w,
            Winner::Theirs,
            "a full tie goes to the copy written last"
        );
        assert!(why.starts_with("full tie"), "{why}");
        assert_eq!(
            compare(
                Candidate {
                    task: &five,
                    source: "statewal"
                },
                Candidate {
                    task: &other,
                    source: "tasks/a.json"
                }
            )
            .0,
            Ordering::Equal,
            "compare leaves the tie to the caller"
        );
        let bare = task(json!({"id": "a"}));
        let (w, why) = pick(&bare, &task(json!({"id": "a", "x": 2})));
        assert_eq!(w, Winner::Theirs);
        assert!(why.contains("no updated_at on either"), "{why}");
    }
}
