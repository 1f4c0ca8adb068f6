//! Fields this version does not know belong to the application: they pass
//! through the journal, checkpoints and reloads unchanged.

use crate::util::*;
use serde_json::{Value, json};
use statewal::Task;
use statewal::report::LoadedFrom;

fn foreign_task() -> Value {
    json!({
        "id": "task_1",
        "description": "Implement authentication",
        "status": "in_progress",
        "toolInvocations": [{"tool": "bash", "args": ["ls", "-la"], "exit": 0}],
        "claudeMetrics": {"tokens": {"input": 1200, "output": 345}, "cost": 0.0123, "model": null},
        "filesAffected": ["src/auth.rs", "src/lib.rs"],
        "assigned_to": "agent-7",
        "nested": {"deep": {"deeper": [1, {"x": true}, "s"]}},
        "logs": [{"timestamp": "2024-01-01T00:00:00Z", "level": "info", "type": "system", "message": "m", "spanId": "abc"}]
    })
}

/// Checks that every field of `want` is in `got` with the same value.
fn check_fields(got: &Value, want: &Value, where_: &str) {
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(
            got.get(k),
            Some(v),
            "{where_}: field {k:?} changed or missing in {got}"
        );
    }
}

// Guards: unknown task fields (top level and inside log entries) survive
// journal replay, a checkpoint, tasks/<id>.json, state.json and a reload from
// state.json.
#[test]
fn unknown_task_fields_survive_replay_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let want = foreign_task();
    let store = open_crashy(dir.path());
    store
        .put_task(Task::from_json(want.to_string().as_bytes()).unwrap())
        .unwrap();
    drop(store);

    // Journal replay only.
    let store = open_crashy(dir.path());
    assert_eq!(store.recovery_report().unwrap().records_replayed, 1);
    let got = serde_json::to_value(store.get_task("task_1").unwrap().unwrap()).unwrap();
    check_fields(&got, &want, "after replay");

    // Checkpoint: both files on disk.
    store.checkpoint().unwrap();
    check_fields(
        &read_json(dir.path().join("tasks/task_1.json")),
        &want,
        "tasks/task_1.json",
    );
    let state = read_json(dir.path().join("state.json"));
    check_fields(&state["tasks"][0], &want, "state.json");
    drop(store);

    // Reload from state.json.
    let store = open_crashy(dir.path());
    assert_eq!(
        store.recovery_report().unwrap().loaded_from,
        LoadedFrom::StateFile
    );
    let got = serde_json::to_value(store.get_task("task_1").unwrap().unwrap()).unwrap();
    check_fields(&got, &want, "after reload from state.json");
}

// Guards: unknown fields also survive the fallback that loads tasks/*.json.
#[test]
fn unknown_task_fields_survive_load_from_task_files() {
    let dir = tempfile::tempdir().unwrap();
    let want = foreign_task();
    let store = open_crashy(dir.path());
    store
        .put_task(Task::from_json(want.to_string().as_bytes()).unwrap())
        .unwrap();
    store.checkpoint().unwrap();
    drop(store);
    std::fs::remove_file(dir.path().join("state.json")).unwrap();

    let store = open_crashy(dir.path());
    assert_eq!(
        store.recovery_report().unwrap().loaded_from,
        LoadedFrom::LayoutFiles
    );
    let got = serde_json::to_value(store.get_task("task_1").unwrap().unwrap()).unwrap();
    check_fields(&got, &want, "after load from tasks/");
}
