//! The foreign view: a state file the original server wrote (migrated in
//! memory) merged per task with `tasks/<id>.json`, the way that server
//! itself writes them: task files first, `state.json` later, in the
//! background, so `state.json` lags.

use super::{Action, Candidate, Decision, Winner, newest};
use crate::error::{ErrorKind, Result};
use crate::fs::{self, Fs};
use crate::layout::{Skipped, TASKS_DIR};
use crate::model::Task;
use serde_json::Value;
use std::collections::BTreeMap;

/// One `tasks/*.json` file as read.
pub(crate) struct TaskFile {
    /// `tasks/<name>`.
    pub path: String,
    /// The file name.
    pub name: String,
    /// The task, with the original server's statuses mapped to statewal's
    /// (as the migration maps them), or why the file is not a task.
    pub task: std::result::Result<Task, String>,
    /// The fingerprint of the bytes read, when the file was read whole:
    /// a checkpoint replaces the file only while it still holds them
    /// ([`super::live`]).
    pub print: Option<super::live::Print>,
    /// The file's stat, taken before the read, when it is settled
    /// ([`crate::fs::FileStat::settled`]): then it vouches for the bytes
    /// read as long as it stays the same (`super::live`).
    pub stat: Option<crate::fs::FileStat>,
}

/// The largest task file read: twice the journal's record limit, which
/// bounds every task statewal journals (its file is that task,
/// pretty-printed, which adds little but for pathological nesting).
pub(crate) const TASK_FILE_BYTES_MAX: u64 = 2 * crate::journal::record::RECORD_PAYLOAD_MAX as u64;

/// Reads every `tasks/*.json` (temp files of an interrupted atomic write,
/// which start with a dot, and set-aside `*.edited-<ms>` files are not
/// task files). A file is a task if it parses, its statuses map, its id is
/// valid and it is the file's name.
pub(crate) fn task_files(fs: &dyn Fs) -> Result<Vec<TaskFile>> {
    let mut out = Vec::new();
    for name in fs.list(TASKS_DIR)? {
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        out.extend(read_task_file(fs, name)?);
    }
    Ok(out)
}

/// Reads and parses one `tasks/<name>`; `None` when it is gone.
pub(crate) fn read_task_file(fs: &dyn Fs, name: String) -> Result<Option<TaskFile>> {
    let path = fs::join(TASKS_DIR, &name);
    // Taken before the stat, which comes before the read: see `stat`.
    let now = fs.now();
    // At most one byte past the largest task file statewal reads: a
    // planted file the size of a disk must not be read whole.
    let mut print = None;
    let mut stat = None;
    let task = match fs.read_at_stat(&path, 0, TASK_FILE_BYTES_MAX + 1) {
        Ok(Some((bytes, _))) if bytes.len() as u64 > TASK_FILE_BYTES_MAX => Err(format!(
            "larger than {TASK_FILE_BYTES_MAX} bytes (twice the largest record statewal \
             journals): not read"
        )),
        Ok(Some((bytes, seen))) => {
            print = Some(super::live::Print::of(&bytes));
            stat = seen.filter(|s| s.settled(now));
            parse_task_file(&bytes, &name)
        }
        Ok(None) => return Ok(None), // Removed since the listing.
        // Corrupt, Key: in an encrypted store, a file that does not open
        // (put there in clear, altered, moved from another name, or sealed
        // under a key the store does not take: the store's own key is
        // checked against state.json and the journal before this).
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::InvalidInput | ErrorKind::TooLarge | ErrorKind::Corrupt | ErrorKind::Key
            ) =>
        {
            Err(e.to_string())
        }
        Err(e) => return Err(e),
    };
    Ok(Some(TaskFile {
        path,
        name,
        task,
        print,
        stat,
    }))
}

fn parse_task_file(bytes: &[u8], name: &str) -> std::result::Result<Task, String> {
    let task = parse_task(bytes)?;
    crate::id::validate_id(task.id()).map_err(|e| e.to_string())?;
    let stem = &name[..name.len() - ".json".len()];
    if task.id() != stem {
        return Err(format!("holds id {:?}, not {stem:?}", task.id()));
    }
    Ok(task)
}

/// A task file's task, the original server's status names mapped to
/// statewal's (the original kept in `original_status`, as the migration
/// does).
pub(crate) fn parse_task(bytes: &[u8]) -> std::result::Result<Task, String> {
    let mut value = crate::json::parse(bytes).map_err(|e| e.to_string())?;
    if !value.is_object() {
        return Err("not a JSON object".into());
    }
    crate::migrate::map_task_status(&mut value, &mut Vec::new())?;
    Task::from_value(value).map_err(|e| e.to_string())
}

/// The foreign view of a directory.
pub(crate) struct ForeignView {
    /// The state file it starts from: `state.json` or a backup.
    pub base: String,
    /// The migrated state file, its `tasks` replaced by the merged list
    /// (not sealed).
    pub state: Value,
    /// The merged tasks by id, each with where its copy came from.
    pub tasks: BTreeMap<String, (Task, String)>,
    /// The state file's sessions, migrated.
    pub sessions: Vec<Value>,
    /// The migration steps applied to the state file.
    pub steps: Vec<String>,
    /// One line per change the migration steps made.
    pub notes: Vec<String>,
    /// Each task taken from `tasks/`, each kept from the state file over an
    /// older task file, each only in the state file.
    pub decisions: Vec<Decision>,
    /// Task files that are not tasks, with why.
    pub skipped: Vec<Skipped>,
}

/// Builds the foreign view from the state file `base` (its bytes) and
/// `tasks/`; `Ok(Err(why))` when the state file does not migrate.
pub(crate) fn view(
    fs: &dyn Fs,
    base: &str,
    bytes: &[u8],
) -> Result<std::result::Result<ForeignView, String>> {
    let mut state = match crate::json::parse(bytes) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let from = match crate::migrate::version_of(&state) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let mut steps = Vec::new();
    let mut notes = Vec::new();
    for step in crate::migrate::plan(&from).unwrap_or_default() {
        if let Err(e) = (step.apply)(&mut state, &mut notes) {
            return Ok(Err(format!("{}: {e}", step.name)));
        }
        steps.push(step.name.to_string());
    }
    let listed: Vec<Task> = match serde_json::from_value(state["tasks"].clone()) {
        Ok(t) => t,
        Err(e) => return Ok(Err(format!("a task does not load: {e}"))),
    };
    let sessions = state["sessions"].as_array().cloned().unwrap_or_default();
    let files = task_files(fs)?;
    let (tasks, order, decisions, skipped) = merge_files(base, listed, files);
    let list: Vec<Value> = order
        .iter()
        .map(|id| serde_json::to_value(&tasks[id].0).expect("a task serializes"))
        .collect();
    state["tasks"] = Value::Array(list);
    Ok(Ok(ForeignView {
        base: base.to_string(),
        state,
        tasks,
        sessions,
        steps,
        notes,
        decisions,
        skipped,
    }))
}

type Merged = (
    BTreeMap<String, (Task, String)>,
    Vec<String>,
    Vec<Decision>,
    Vec<Skipped>,
);

/// The state file's tasks merged with the task files by [`newest`] (a full
/// tie takes the task file: the original server writes it first and the
/// state file's copy is a later copy of it, so they are normally equal).
/// Returns the tasks, their order (the state file's, then tasks found only
/// in `tasks/`, by id), the decisions and the files skipped.
fn merge_files(base: &str, listed: Vec<Task>, files: Vec<TaskFile>) -> Merged {
    let mut tasks: BTreeMap<String, (Task, String)> = BTreeMap::new();
    let mut order = Vec::new();
    for t in listed {
        let id = t.id().to_string();
        if tasks.insert(id.clone(), (t, base.to_string())).is_none() {
            order.push(id);
        }
    }
    let mut decisions = Vec::new();
    let mut skipped = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for f in files {
        let file = match f.task {
            Ok(t) => t,
            Err(reason) => {
                skipped.push(Skipped {
                    file: f.path,
                    reason,
                });
                continue;
            }
        };
        let id = file.id().to_string();
        seen.insert(id.clone());
        let Some((listed, _)) = tasks.get(&id) else {
            decisions.push(Decision {
                task: id.clone(),
                action: Action::TaskFile,
                kept: f.path.clone(),
                other: None,
                reason: format!("only in tasks/ (not in {base}: created after its last save)"),
            });
            tasks.insert(id.clone(), (file, f.path));
            order.push(id);
            continue;
        };
        if *listed == file {
            continue;
        }
        let (winner, reason) = newest(
            Candidate {
                task: listed,
                source: base,
            },
            Candidate {
                task: &file,
                source: &f.path,
            },
        );
        let (action, kept, other) = match winner {
            Winner::Theirs => (Action::TaskFile, f.path.clone(), base.to_string()),
            Winner::Ours => (Action::StateFile, base.to_string(), f.path.clone()),
        };
        decisions.push(Decision {
            task: id.clone(),
            action,
            kept: kept.clone(),
            other: Some(other),
            reason,
        });
        if winner == Winner::Theirs {
            tasks.insert(id, (file, kept));
        }
    }
    for id in &order {
        if !seen.contains(id) {
            decisions.push(Decision {
                task: id.clone(),
                action: Action::StateFileOnly,
                kept: base.to_string(),
                other: None,
                reason: format!(
                    "no tasks/{id}.json (the original server deleted it after its last save, \
                     or never wrote it): kept"
                ),
            });
        }
    }
    (tasks, order, decisions, skipped)
}
