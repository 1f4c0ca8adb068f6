//! Key order and original strings, through the binary (issue 9, part 7;
//! CONTRACTS section 2). A task's and a log entry's keys come back, and are
//! written, in the order their writer gave them, and strings keep their text
//! (`2025-06-10T09:12:05.000Z` stays exactly that).
//!
//! The original TypeScript server writes task keys as `id, description,
//! tool, status, created_at, updated_at, logs, started_at, ...` and log
//! entries as `timestamp, level, type, prefix, message, metadata, data`.
//! Before issue 8 statewal moved its known fields to the front; a migration
//! step that renames a status could also move `status` (it must rename it in
//! place and put `original_status` last). These tests open a copy of
//! `tests/fixtures/ts-server-v0-live/` with `get-task`, `show`, `list`,
//! `checkpoint` and `put-task`, and put tasks in an arbitrary key order
//! through `put-task` and `serve --stdio`.

use crate::ts_fixtures::{
    LIVE, TS_LOG_KEYS, TS_TASK_KEYS, check_ts_order, fixture_copy, fixture_dir,
};
use crate::util::*;
use serde_json::Value;
use statewal::__internal::migrate::{ORIGINAL_STATUS_FIELD, map_status};
use std::path::Path;

/// The live fixture's task whose README says it is the same in `state.json`
/// and `tasks/`, with every log-entry key and the later task keys.
const T1: &str = "a5f7255c-5494-4d7d-8b70-99da06087685";

fn ok(dir: &Path, args: &[&str], stdin: &str) -> String {
    let out = run_statewal(dir, args, stdin, &[]);
    assert!(
        out.status.success(),
        "statewal {args:?} exited with {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `list --json`: one JSON array, or JSON Lines.
fn list(dir: &Path) -> Vec<Value> {
    let out = ok(dir, &["list", "--json"], "");
    match serde_json::from_str(&out) {
        Ok(Value::Array(tasks)) => tasks,
        _ => out
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(json)
            .collect(),
    }
}

/// Every key of `v` with its path, depth first, in the order they are held.
fn key_paths(v: &Value) -> Vec<String> {
    fn walk(v: &Value, at: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let here = format!("{at}/{k}");
                    out.push(here.clone());
                    walk(v, &here, out);
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(v, &format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out
}

/// Checks that `got` is `want` with the same keys in the same order at every
/// depth and the same strings: the same compact text.
#[track_caller]
fn check_same(got: &Value, want: &Value, what: &str) {
    assert_eq!(key_paths(got), key_paths(want), "{what}: keys moved");
    assert_eq!(text(got), text(want), "{what}: not the same text");
}

/// The compact JSON text of `v`, keys in the order held: two values with
/// the same text have the same keys in the same order (`==` on values does
/// not look at the order).
fn text(v: &Value) -> String {
    v.to_string()
}

fn read(path: &Path) -> Value {
    read_json(path)
}

fn state_tasks(dir: &Path) -> Vec<Value> {
    read(&dir.join("state.json"))["tasks"]
        .as_array()
        .unwrap()
        .clone()
}

/// A copy as statewal's migration must leave it: a status statewal spells
/// differently renamed in place, the original in `original_status` at the end.
fn migrated(copy: &Value) -> Value {
    let mut t = copy.clone();
    let status = t["status"].as_str().unwrap().to_string();
    let mapped = map_status(&status).unwrap();
    if mapped != status {
        let m = t.as_object_mut().unwrap();
        m.insert("status".into(), mapped.into());
        m.insert(ORIGINAL_STATUS_FIELD.into(), status.into());
    }
    t
}

/// Every copy of a task the live fixture holds (`state.json` and `tasks/`),
/// as statewal's migration must leave it.
fn fixture_copies() -> Vec<Value> {
    let dir = fixture_dir(LIVE);
    let mut copies = state_tasks(&dir);
    for f in std::fs::read_dir(dir.join("tasks")).unwrap() {
        copies.push(read(&f.unwrap().path()));
    }
    copies.iter().map(migrated).collect()
}

/// Checks that `got` is one of the fixture's copies of its task, key for key
/// and string for string, whichever copy statewal chose.
#[track_caller]
fn check_is_a_fixture_copy(got: &Value, what: &str) {
    let copies = fixture_copies();
    let same_id: Vec<&Value> = copies.iter().filter(|c| c["id"] == got["id"]).collect();
    assert!(
        !same_id.is_empty(),
        "{what}: {} is not in the fixture",
        got["id"]
    );
    if !same_id.iter().any(|c| text(c) == text(got)) {
        check_same(got, same_id[0], what);
    }
    let m = got.as_object().unwrap();
    check_ts_order(m, &TS_TASK_KEYS, what);
    for e in m["logs"].as_array().unwrap() {
        check_ts_order(e.as_object().unwrap(), &TS_LOG_KEYS, what);
    }
}

/// The live fixture's tasks that are the same in `state.json` and `tasks/`
/// and whose status statewal spells the same: what every command must give
/// back unchanged. T1 is one, with all seven log-entry keys.
fn unchanged_tasks() -> Vec<Value> {
    let dir = fixture_dir(LIVE);
    let tasks: Vec<Value> = state_tasks(&dir)
        .into_iter()
        .filter(|t| {
            let file = dir
                .join("tasks")
                .join(format!("{}.json", t["id"].as_str().unwrap()));
            file.exists() && text(&read(&file)) == text(t) && migrated(t) == *t
        })
        .collect();
    let t1 = tasks
        .iter()
        .find(|t| t["id"] == T1)
        .expect("T1 is unchanged");
    let all_keys = t1["logs"].as_array().unwrap().iter().any(|e| {
        let ks: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        TS_LOG_KEYS.iter().all(|k| ks.contains(k))
    });
    assert!(all_keys, "T1 has a log entry with every key");
    tasks
}

#[test]
fn reading_commands_give_back_the_ts_servers_keys_and_strings() {
    let dir = fixture_copy(LIVE);
    let d = dir.path();
    let listed = list(d);
    for want in unchanged_tasks() {
        let id = want["id"].as_str().unwrap();
        check_same(&json(&ok(d, &["get-task", id], "")), &want, "get-task");
        check_same(
            &json(&ok(d, &["show", id, "--json"], "")),
            &want,
            "show --json",
        );
        let got = listed.iter().find(|t| t["id"] == id).expect("listed");
        check_same(got, &want, "list --json");
    }
    // Every listed task, whichever copy statewal took, renamed statuses
    // included (two of them are `running`).
    assert!(
        listed
            .iter()
            .any(|t| t.get(ORIGINAL_STATUS_FIELD).is_some())
    );
    for t in &listed {
        check_is_a_fixture_copy(t, &format!("list --json {}", t["id"]));
    }
    // The person's view shows the times as written.
    let show = ok(d, &["show", T1], "");
    let t1 = read(&fixture_dir(LIVE).join("tasks").join(format!("{T1}.json")));
    for k in ["created_at", "updated_at", "completed_at"] {
        let at = t1[k].as_str().unwrap();
        assert!(at.ends_with(".000Z") || at.ends_with('Z'));
        assert!(show.contains(at), "show: {k} {at} is not there:\n{show}");
    }
}

#[test]
fn checkpoint_and_puts_write_the_same_keys_and_strings() {
    let dir = fixture_copy(LIVE);
    let d = dir.path();
    let unchanged = unchanged_tasks();
    ok(d, &["checkpoint"], "");
    let state = state_tasks(d);
    for t in &state {
        check_is_a_fixture_copy(t, &format!("state.json after checkpoint: {}", t["id"]));
    }
    for want in &unchanged {
        let id = want["id"].as_str().unwrap();
        let got = state.iter().find(|t| t["id"] == id).expect("in state.json");
        check_same(got, want, "state.json after checkpoint");
        check_same(
            &read(&d.join(format!("tasks/{id}.json"))),
            want,
            "tasks/ after checkpoint",
        );
    }

    // A put of another task: its own order is kept, with the status changed
    // in place and a new key last, and the others stay as they were.
    let other = unchanged
        .iter()
        .find(|t| t["id"] != T1)
        .expect("another task");
    let id = other["id"].as_str().unwrap().to_string();
    let mut changed = other.clone();
    let m = changed.as_object_mut().unwrap();
    m.insert("status".into(), "completed".into());
    m.insert("updated_at".into(), "2025-06-10T09:20:00.000Z".into());
    m.insert("completed_at".into(), "2025-06-10T09:20:00.000Z".into());
    ok(
        d,
        &["put-task", "-"],
        &serde_json::to_string_pretty(&changed).unwrap(),
    );
    check_same(
        &read(&d.join(format!("tasks/{id}.json"))),
        &changed,
        "tasks/ after a put",
    );
    let after = state_tasks(d);
    assert_eq!(after.len(), state.len());
    for before in &state {
        let now = after
            .iter()
            .find(|t| t["id"] == before["id"])
            .expect("kept");
        if now["id"] == id.as_str() {
            check_same(now, &changed, "state.json: the task put");
        } else {
            check_same(now, before, "state.json: a task not put");
        }
    }

    // A put of T1's file as the TS server wrote it: statewal rewrites
    // tasks/T1.json with the same bytes, but for its final newline.
    let file = fixture_dir(LIVE).join(format!("tasks/{T1}.json"));
    let original = std::fs::read_to_string(&file).unwrap();
    ok(d, &["put-task", file.to_str().unwrap()], "");
    let rewritten = std::fs::read_to_string(d.join(format!("tasks/{T1}.json"))).unwrap();
    assert_eq!(rewritten.trim_end(), original.trim_end(), "tasks/{T1}.json");
    let t1 = state_tasks(d).into_iter().find(|t| t["id"] == T1).unwrap();
    check_same(&t1, &json(&original), "state.json: T1 put again");
}

/// A task whose keys follow no known order, at every depth, with times in
/// spellings a parser would normalize.
fn custom(id: &str) -> (String, Value) {
    let text = format!(
        r#"{{"zeta": {{"b": 1, "a": [{{"y": 1, "x": 2}}]}}, "status": "in_progress", "id": "{id}",
           "updated_at": "2024-01-01T10:00:00.000Z", "created_at": "2024-01-01T12:00:00+02:00",
           "logs": [{{"message": "m", "data": {{"k": 1}}, "timestamp": "2024-01-01T10:00:00.000Z",
                      "level": "info", "prefix": "[x]"}}],
           "alpha": null, "description": "keys in no known order"}}"#
    );
    let value = json(&text);
    (text, value)
}

#[test]
fn a_custom_key_order_survives_put_task_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let (text, want) = custom("custom-order-cli");
    ok(d, &["put-task", "-"], &text);
    check_same(
        &json(&ok(d, &["get-task", "custom-order-cli"], "")),
        &want,
        "get-task",
    );
    check_same(
        &read(&d.join("tasks/custom-order-cli.json")),
        &want,
        "tasks/",
    );
    check_same(&state_tasks(d)[0], &want, "state.json");

    let (_, want) = custom("custom-order-stdio");
    let requests = [
        serde_json::json!({"req": 1, "op": "put_task", "task": want}),
        serde_json::json!({"req": 2, "op": "get_task", "id": "custom-order-stdio"}),
        serde_json::json!({"req": 3, "op": "list_tasks"}),
    ];
    let input: String = requests.iter().map(|r| format!("{r}\n")).collect();
    let answers: Vec<Value> = ok(d, &["serve", "--stdio"], &input)
        .lines()
        .map(json)
        .collect();
    assert_eq!(answers.len(), 3, "{answers:?}");
    assert!(answers.iter().all(|a| a["ok"] == true), "{answers:?}");
    check_same(&answers[1]["task"], &want, "serve get_task");
    let listed = answers[2]["tasks"].as_array().unwrap();
    let got = listed
        .iter()
        .find(|t| t["id"] == "custom-order-stdio")
        .unwrap();
    check_same(got, &want, "serve list_tasks");
    // The end of input checkpointed.
    check_same(
        &read(&d.join("tasks/custom-order-stdio.json")),
        &want,
        "tasks/",
    );
    let state = state_tasks(d);
    let got = state
        .iter()
        .find(|t| t["id"] == "custom-order-stdio")
        .unwrap();
    check_same(got, &want, "state.json");
}
