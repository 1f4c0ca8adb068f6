//! The task representation (issue 8, part 2; CONTRACTS section 2): a task is
//! kept as its writer wrote it, key order and strings included, a repeated
//! key is refused at every door, and what the encoder writes the decoder
//! always reads back.

use crate::util::*;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use statewal::__internal::journal::op::{HeldTask, Op};
use statewal::report::LoadedFrom;
use statewal::{ErrorKind, LogEntry, Options, Store, Task, TaskStatus};
use std::collections::BTreeMap;
use std::path::Path;

/// The keys the task type gives a meaning to, which an arbitrary task must be
/// free to use (and to use again) without breaking the store.
const KNOWN: [&str; 11] = [
    "id",
    "description",
    "status",
    "tool",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "logs",
    "result",
    "metadata",
];

/// Checks that `got` is `want` key for key, in order, at every depth, and
/// that both encode to the same bytes.
#[track_caller]
fn check_same(got: &Task, want: &Task, where_: &str) {
    assert_eq!(
        String::from_utf8(got.to_json()).unwrap(),
        String::from_utf8(want.to_json()).unwrap(),
        "{where_}: the task came back changed"
    );
    assert_eq!(got, want, "{where_}");
}

/// The task as `tasks/<id>.json` holds it after a checkpoint.
fn task_file(dir: &Path, id: &str) -> Task {
    let bytes = std::fs::read(dir.join("tasks").join(format!("{id}.json"))).unwrap();
    Task::from_json(&bytes).unwrap()
}

/// The task as `state.json` holds it after a checkpoint.
fn state_file_task(dir: &Path, id: &str) -> Task {
    let bytes = std::fs::read(dir.join("state.json")).unwrap();
    let state = statewal::__internal::layout::parse_state(&bytes).unwrap();
    state.tasks.into_iter().find(|t| t.id() == id).unwrap()
}

// Regression: `Task.extra` (or `LogEntry.extra`) could hold a key the struct
// already knew ("id", "status", "type", ...). The put was acknowledged, its
// record held the key twice, and every later open failed to decode it
// ("duplicate field"): one put made the store unopenable for good. Keys that
// collide with the known ones are now the same key, set again.
#[test]
fn a_put_with_colliding_keys_reopens_in_the_default_mode() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Task::new("a");
    t.set_status(TaskStatus::InProgress);
    t.set("toolInvocations", json!([1])).unwrap();
    // Every known key set a second time, by the generic setter.
    t.set("id", "a").unwrap();
    t.set("status", "completed").unwrap();
    t.set("description", "first").unwrap();
    t.set("description", "second").unwrap();
    t.set("created_at", "2024-01-01T10:00:00.000Z").unwrap();
    t.set("created_at", "2024-01-01T10:00:00.500Z").unwrap();
    let mut entry = LogEntry::new("2024-01-01T10:00:00Z", "info", "system", "m");
    entry.set("type", "tool");
    entry.set("message", "again");
    t.push_log(entry);
    t.set("result", json!({"result": 1, "id": "inner"}))
        .unwrap();
    // A task built from a JSON object is held to the same rules.
    let from_map =
        Task::from_value(json!({"id": "b", "status": "failed", "extra": {"id": 1}})).unwrap();

    let store = open_crashy(dir.path());
    store.put_task(t.clone()).unwrap();
    store.put_task(from_map.clone()).unwrap();
    drop(store); // A crash: only the journal holds the two puts.

    let store = Store::open(Options::new(dir.path()).checkpoint_interval(None))
        .expect("the default open replays the puts");
    assert_eq!(store.recovery_report().unwrap().records_replayed, 2);
    check_same(&store.get_task("a").unwrap().unwrap(), &t, "replay");
    check_same(&store.get_task("b").unwrap().unwrap(), &from_map, "replay");
    let keys: Vec<&str> = t.as_map().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "id",
            "status",
            "toolInvocations",
            "description",
            "created_at",
            "logs",
            "result"
        ]
    );
    assert_eq!(t.status(), TaskStatus::Completed);
    assert_eq!(t.logs().next().unwrap().kind(), Some("tool"));
}

// Guards: key order and the original strings survive put → journal replay →
// checkpoint (tasks/<id>.json and state.json) → reopen, byte for byte.
#[test]
fn key_order_and_timestamp_strings_survive_checkpoint_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"{"zeta":1,"updated_at":"2024-01-01T10:00:00.000Z","id":"ordered","created_at":"2024-01-01T11:00:00+01:00","logs":[{"message":"m","timestamp":"2024-01-01T10:00:00.000Z","level":"info"}],"status":"completed","description":null,"completed_at":"2024-01-01T10:00:01.250Z","alpha":{"z":[1,{"b":2,"a":1}],"a":"2024-01-01T10:00:00.000Z"}}"#;
    let t = Task::from_json(text.as_bytes()).unwrap();
    assert_eq!(t.to_json(), text.as_bytes());
    assert_eq!(t.updated_at_str(), Some("2024-01-01T10:00:00.000Z"));
    assert_eq!(t.created_at(), t.updated_at(), "11:00+01:00 is 10:00Z");

    let store = open_crashy(dir.path());
    store.put_task(t.clone()).unwrap();
    drop(store);
    let store = open_crashy(dir.path());
    assert_eq!(
        store.get_task("ordered").unwrap().unwrap().to_json(),
        text.as_bytes()
    );
    store.checkpoint().unwrap();
    drop(store);
    // The files on disk are pretty-printed; their keys are in the same order.
    check_same(&task_file(dir.path(), "ordered"), &t, "tasks/ordered.json");
    check_same(&state_file_task(dir.path(), "ordered"), &t, "state.json");

    let store = open_crashy(dir.path());
    assert_eq!(
        store.recovery_report().unwrap().loaded_from,
        LoadedFrom::StateFile
    );
    assert_eq!(
        store.get_task("ordered").unwrap().unwrap().to_json(),
        text.as_bytes()
    );
}

// Guards: JSON text that repeats a key, at any depth, is refused through the
// library with an error naming the key, and nothing is stored.
#[test]
fn duplicate_keys_are_refused_by_the_library() {
    for (text, key) in [
        (
            r#"{"id":"a","status":"pending","status":"completed"}"#,
            "status",
        ),
        (r#"{"id":"a","id":"b"}"#, "id"),
        (r#"{"id":"a","x":{"deep":[{"k":1,"k":1}]}}"#, "k"),
        (r#"{"id":"a","logs":[{"type":"a","type":"b"}]}"#, "type"),
    ] {
        let msg = check_err(Task::from_json(text.as_bytes()), ErrorKind::InvalidInput);
        assert!(
            msg.contains(&format!("duplicate key \"{key}\"")),
            "{text}: {msg}"
        );
        assert!(serde_json::from_str::<Task>(text).is_err(), "{text}");
    }
    let e = serde_json::from_str::<LogEntry>(r#"{"level":"a","level":"b"}"#).unwrap_err();
    assert!(e.to_string().contains("duplicate key \"level\""), "{e}");
}

// Guards: `statewal put-task` refuses a task whose JSON repeats a key (exit 2,
// the key named) and stores nothing.
#[test]
fn duplicate_keys_are_refused_by_put_task() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_statewal(
        dir.path(),
        &["put-task", "-"],
        r#"{"id":"a","status":"pending","nested":{"n":1,"n":2}}"#,
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr.contains("duplicate key \"n\""), "{stderr}");
    let store = Store::open(opts(dir.path())).unwrap();
    assert!(store.list_tasks().unwrap().is_empty());
}

// Guards: `serve --stdio` answers a request whose JSON repeats a key (in the
// task or in the request itself) with `invalid_input` naming the key, stores
// nothing, and keeps serving.
#[test]
fn duplicate_keys_are_refused_by_serve() {
    let dir = tempfile::tempdir().unwrap();
    let requests = [
        r#"{"req":1,"op":"put_task","task":{"id":"a","status":"failed","status":"pending"}}"#,
        r#"{"req":2,"op":"put_task","op":"delete_task","task":{"id":"a"}}"#,
        r#"{"req":3,"op":"put_task","task":{"id":"ok"}}"#,
    ];
    let out = run_statewal(
        dir.path(),
        &["serve", "--stdio"],
        &(requests.join("\n") + "\n"),
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let answers: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 3, "{answers:?}");
    for (a, key) in answers[..2].iter().zip(["status", "op"]) {
        assert_eq!(a["ok"], false, "{a}");
        assert_eq!(a["error"]["kind"], "invalid_input", "{a}");
        let msg = a["error"]["message"].as_str().unwrap();
        assert!(msg.contains(&format!("duplicate key \"{key}\"")), "{msg}");
    }
    assert_eq!(answers[2]["ok"], true, "{}", answers[2]);
    let store = Store::open(opts(dir.path())).unwrap();
    assert_eq!(task_ids(&store), ["ok".to_string()].into());
}

// Guards: the store stamps nothing unless asked; `stamp_times` sets
// `updated_at` and a missing `created_at`, keeping an existing one as written.
#[test]
fn stamping_is_off_by_default_and_an_option() {
    let dir = tempfile::tempdir().unwrap();
    let t = Task::from_json(br#"{"id":"a","created_at":"2020-01-01T00:00:00.000Z"}"#).unwrap();
    let store = Store::open(opts(dir.path())).unwrap();
    store.put_task(t.clone()).unwrap();
    check_same(&store.get_task("a").unwrap().unwrap(), &t, "unstamped");
    drop(store);

    let store = Store::open(opts(dir.path()).stamp_times(true)).unwrap();
    store.put_task(t.clone()).unwrap();
    store.put_task(Task::new("b")).unwrap();
    let a = store.get_task("a").unwrap().unwrap();
    assert_eq!(a.created_at_str(), Some("2020-01-01T00:00:00.000Z"));
    let b = store.get_task("b").unwrap().unwrap();
    let keys: Vec<&str> = b.as_map().keys().map(String::as_str).collect();
    assert_eq!(keys, ["id", "created_at", "updated_at"]);
    for stamped in [a.updated_at(), b.created_at(), b.updated_at()] {
        let age = time::OffsetDateTime::now_utc() - stamped.expect("stamped with a time");
        assert!(age.whole_seconds().abs() < 600, "{age}");
    }
}

/// Any JSON value, objects nested a few levels deep, their keys often the
/// task type's own.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        any_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((any_key(), inner), 0..4).prop_map(|pairs| {
                Value::Object(pairs.into_iter().collect::<Map<String, Value>>())
            }),
        ]
    })
}

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,12}",
        Just("2024-01-01T10:00:00.000Z".to_string()),
        Just("2024-01-01T11:00:00+01:00".to_string()),
        Just(String::new()),
        Just("line\nbreak \"quoted\" \\ \u{0}".to_string()),
    ]
}

fn any_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(KNOWN.to_vec()).prop_map(str::to_string),
        any_string(),
    ]
}

/// A value for `key` that keeps the task's rules most of the time and breaks
/// them now and then, so both the accepting and the refusing `set` are tried.
fn value_for(key: &str) -> BoxedStrategy<Value> {
    let is_id = key == "id";
    let valid = match key {
        "id" => "[a-zA-Z0-9_-]{1,8}".prop_map(Value::String).boxed(),
        "status" => prop::sample::select(TaskStatus::ALL.to_vec())
            .prop_map(|s| Value::from(s.as_str()))
            .boxed(),
        "logs" => prop::collection::vec(
            prop::collection::vec((any_key(), any_value()), 0..4)
                .prop_map(|p| Value::Object(p.into_iter().collect())),
            0..3,
        )
        .prop_map(Value::Array)
        .boxed(),
        _ => return any_value().boxed(),
    };
    // An id that is a string but may not name a file is the store's to
    // refuse (`validate_id`), not the type's; leave those out here.
    let invalid = any_value().prop_filter("not a string id", move |v| !(v.is_string() && is_id));
    prop_oneof![4 => valid, 1 => invalid].boxed()
}

/// A task built by `set` calls, with the object the calls should leave.
fn any_task() -> impl Strategy<Value = (Task, Vec<(String, Value)>)> {
    let step = any_key().prop_flat_map(|k| (Just(k.clone()), value_for(&k)));
    ("[a-z0-9]{1,6}", prop::collection::vec(step, 0..12)).prop_map(|(id, steps)| {
        let mut task = Task::new(id.clone());
        let mut want: Vec<(String, Value)> = vec![("id".into(), Value::String(id))];
        for (k, v) in steps {
            let keeps_rules = match k.as_str() {
                "id" => v.is_string(),
                "status" => v.as_str().and_then(TaskStatus::parse).is_some(),
                "logs" => v.as_array().is_some_and(|a| a.iter().all(Value::is_object)),
                _ => true,
            };
            let set = task.set(k.clone(), v.clone());
            assert_eq!(set.is_ok(), keeps_rules, "set({k:?}, {v}) -> {set:?}");
            if set.is_ok() {
                match want.iter_mut().find(|(key, _)| *key == k) {
                    Some(slot) => slot.1 = v,
                    None => want.push((k, v)),
                }
            }
        }
        (task, want)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    // Guards: an arbitrary task (known keys set again, nested objects,
    // odd strings, floats) comes back identical, in order, through the
    // journal codec, replay after a crash, a checkpoint's tasks/<id>.json
    // and state.json, and a reopen from the checkpoint.
    #[test]
    fn arbitrary_tasks_round_trip_losslessly(tasks in prop::collection::vec(any_task(), 1..4)) {
        let mut latest: BTreeMap<String, Task> = BTreeMap::new();
        for (task, want) in &tasks {
            let keys: Vec<&str> = task.as_map().keys().map(String::as_str).collect();
            let want_keys: Vec<&str> = want.iter().map(|(k, _)| k.as_str()).collect();
            prop_assert_eq!(keys, want_keys);
            let op = Op::PutTask(HeldTask::from_task(task).unwrap());
            let decoded = Op::decode(op.kind() as u8, &op.encode());
            prop_assert_eq!(decoded.as_ref(), Ok(&op));
            prop_assert_eq!(&HeldTask::from_task(task).unwrap().to_task().unwrap(), task);
            prop_assert_eq!(Op::decode(op.kind() as u8, &op.encode()).unwrap().encode(), op.encode());
            latest.insert(task.id().to_string(), task.clone());
        }

        let dir = tempfile::tempdir().unwrap();
        let store = open_crashy(dir.path());
        for (task, _) in &tasks {
            store.put_task(task.clone()).unwrap();
        }
        drop(store);
        let store = open_crashy(dir.path());
        for (id, want) in &latest {
            check_same(&store.get_task(id).unwrap().unwrap(), want, "replay");
        }
        store.checkpoint().unwrap();
        drop(store);
        for (id, want) in &latest {
            check_same(&task_file(dir.path(), id), want, "tasks/<id>.json");
            check_same(&state_file_task(dir.path(), id), want, "state.json");
        }
        let store = open_crashy(dir.path());
        for (id, want) in &latest {
            check_same(&store.get_task(id).unwrap().unwrap(), want, "reopen");
        }
    }
}

/// `levels` arrays nested in one another around a number.
fn nested(levels: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..levels {
        v = json!([v]);
    }
    v
}

// Regression (found by review): a value built in memory has no depth limit,
// but serde_json reads at most 128 levels. A library caller could put a task
// (or a session, or a report) nested 127 levels deep through `Task::set`,
// `LogEntry::set` or a plain `Value`: the put was acknowledged, its record
// read back as "recursion limit exceeded", and the default open failed for
// good. At 125 levels the record still read, but the next `state.json` (which
// holds the task two levels down) did not, and the store fell back to its
// task files. Such values are now refused before they are journaled.
#[test]
fn a_put_nested_too_deep_is_refused_and_never_breaks_a_reopen() {
    let max = statewal::__internal::json::MAX_DEPTH;
    for levels in [max - 3, max - 2, max - 1, max, max + 10, 124, 126, 130, 200] {
        let dir = tempfile::tempdir().unwrap();
        let mut acked = Vec::new();
        {
            let store = Store::open(crash_opts(dir.path())).unwrap();
            // The task's own setter refuses what the store cannot read back.
            let mut t = Task::new("set");
            match t.set("x", nested(levels)) {
                Ok(()) => {
                    store.put_task(t).unwrap();
                    acked.push("set");
                }
                Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}"),
            }
            // A log entry has no rules of its own; the store checks the put.
            let mut t = Task::new("log");
            let mut entry = LogEntry::new("t", "info", "system", "m");
            entry.set("metadata", nested(levels));
            t.push_log(entry);
            match store.put_task(t) {
                Ok(_) => acked.push("log"),
                Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}"),
            }
            match store.put_session(json!({"id": "s", "x": nested(levels)})) {
                Ok(_) => acked.push("session"),
                Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}"),
            }
            match store.save_report("r", json!({"x": nested(levels)})) {
                Ok(_) => acked.push("report"),
                Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}"),
            }
        }
        // Levels over the nested arrays: the object itself, and for the log
        // entry the task and its "logs" array too.
        let mut fits = vec![];
        fits.extend((levels < max).then_some("set"));
        fits.extend((levels + 3 <= max).then_some("log"));
        fits.extend((levels < max).then_some("session"));
        fits.extend((levels < max).then_some("report"));
        assert_eq!(acked, fits, "{levels} levels");
        // Replay reads every acknowledged record back.
        let store = Store::open(opts(dir.path()))
            .unwrap_or_else(|e| panic!("{levels} levels: reopen after {acked:?}: {e}"));
        assert_eq!(
            store.list_tasks().unwrap().len(),
            acked.iter().filter(|a| a.len() == 3).count()
        );
        store.checkpoint().unwrap();
        drop(store);
        // And so does the state file the checkpoint wrote.
        let store = Store::open(opts(dir.path())).unwrap();
        assert_eq!(
            store.recovery_report().unwrap().loaded_from,
            LoadedFrom::StateFile,
            "{levels} levels"
        );
    }
    // A batch and a conditional put check the same (they validate apart
    // from `put_task`).
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(crash_opts(dir.path())).unwrap();
    let deep_task = || {
        let mut t = Task::new("deep");
        let mut entry = LogEntry::new("t", "info", "system", "m");
        entry.set("metadata", nested(max));
        t.push_log(entry);
        t
    };
    let e = store
        .submit_batch(vec![statewal::Mutation::PutTask(deep_task())])
        .expect_err("a deep task in a batch is refused");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = store
        .submit_batch(vec![statewal::Mutation::PutSession(
            json!({"id": "s", "x": nested(max)}),
        )])
        .expect_err("a deep session in a batch is refused");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = store.put_task_if(deep_task(), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    drop(store);
    Store::open(opts(dir.path())).unwrap();
    // The text doors agree with the setter.
    let text = |levels| format!(r#"{{"id":"a","x":{}}}"#, nested(levels));
    assert!(Task::from_json(text(max - 1).as_bytes()).is_ok());
    let e = Task::from_json(text(max).as_bytes()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("levels deep"), "{e}");
}
