//! Bad input gets the same error kinds on every engine (issue 12, "Bad
//! input as on the journal backend"): invalid ids, oversized tasks and
//! malformed JSON, through the library and through `serve --stdio`.

use super::{Backend, ids};
use crate::util::{check_err, json_lines, run_with_stdin, without_statewal_env};
use serde_json::{Value, json};
use statewal::{ErrorKind, Store, Task};

/// Ids no store takes (`validate_id`), one per rule.
const INVALID_IDS: &[&str] = &[
    "", ".", "..", ".hidden", "a/b", "a\\b", "../x", "a:b", "a*b", "a?b", "a\"b", "a<b", "a>b",
    "a|b", "a\0b", "a\nb",
];

/// The longest id is 128 bytes; one more is refused.
fn too_long() -> String {
    "x".repeat(129)
}

pub fn invalid_ids_are_refused_everywhere(b: &Backend) {
    let store = b.open();
    let longest = "y".repeat(128);
    store.put_task(Task::new(&longest)).unwrap();
    let too_long = too_long();
    for &id in INVALID_IDS.iter().chain([too_long.as_str()].iter()) {
        let each = id_operations(&store, id);
        for (what, kind) in each {
            assert_eq!(
                kind,
                Some(ErrorKind::InvalidId),
                "{}: {what} of {id:?}",
                b.name
            );
        }
    }
    assert_eq!(store.stats().unwrap().tasks, 1, "nothing else was written");
    assert!(store.list_sessions().unwrap().is_empty());
    assert!(store.list_logs().unwrap().is_empty());
    assert!(store.list_reports().unwrap().is_empty());
}

/// Every operation that takes an id, given `id`, and the kind it failed with.
fn id_operations(store: &Store, id: &str) -> Vec<(&'static str, Option<ErrorKind>)> {
    let kind = |r: statewal::Result<()>| r.err().map(|e| e.kind());
    vec![
        ("put_task", kind(store.put_task(Task::new(id)).map(drop))),
        (
            "put_task_if",
            kind(store.put_task_if(Task::new(id), None).map(drop)),
        ),
        ("get_task", kind(store.get_task(id).map(drop))),
        ("task_version", kind(store.task_version(id).map(drop))),
        ("delete_task", kind(store.delete_task(id).map(drop))),
        ("archive_task", kind(store.archive_task(id).map(drop))),
        (
            "transaction",
            kind(
                store
                    .transaction(|tx| {
                        tx.put_task(Task::new("fine")).delete_task(id);
                        Ok(())
                    })
                    .map(drop),
            ),
        ),
        (
            "put_session",
            kind(store.put_session(json!({"id": id})).map(drop)),
        ),
        ("get_session", kind(store.get_session(id).map(drop))),
        ("delete_session", kind(store.delete_session(id).map(drop))),
        ("append_log", kind(store.append_log(id, "x").map(drop))),
        (
            "save_report",
            kind(store.save_report(id, json!({})).map(drop)),
        ),
        ("get_report", kind(store.get_report(id).map(drop))),
    ]
}

/// The size limit (`Options::task_bytes_max`) is on a task's compact JSON:
/// at the limit it is taken, one byte over it is `TooLarge`; sessions,
/// reports and log appends have the same limit; nesting too deep to read
/// back is `InvalidInput`.
pub fn oversized_input_is_too_large(b: &Backend) {
    let max = 300;
    let store = b.open_with(|o| o.task_bytes_max(max));
    let sized = |id: &str, len: usize| {
        let mut t = Task::new(id);
        t.set_description("");
        let pad = len - t.to_json().len();
        t.set_description("x".repeat(pad));
        assert_eq!(t.to_json().len(), len);
        t
    };
    store.put_task(sized("fits", max)).unwrap();
    let msg = check_err(store.put_task(sized("over", max + 1)), ErrorKind::TooLarge);
    assert!(msg.contains(&format!("{max}")), "{}: {msg}", b.name);
    check_err(
        store.put_task_if(sized("over", max + 1), None),
        ErrorKind::TooLarge,
    );
    check_err(
        store.transaction(|tx| {
            tx.put_task(Task::new("small"))
                .put_task(sized("over", max + 1));
            Ok(())
        }),
        ErrorKind::TooLarge,
    );
    let big = "x".repeat(max);
    check_err(
        store.put_session(json!({"id": "s", "note": big})),
        ErrorKind::TooLarge,
    );
    check_err(
        store.save_report("r", json!({"note": big})),
        ErrorKind::TooLarge,
    );
    store.append_log("s", &big).unwrap();
    check_err(
        store.append_log("s", &format!("{big}x")),
        ErrorKind::TooLarge,
    );
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!([deep]);
    }
    let mut too_deep = Task::new("deep");
    if too_deep.set("nested", deep.clone()).is_ok() {
        check_err(store.put_task(too_deep), ErrorKind::InvalidInput);
    }
    check_err(
        store.put_session(json!({"id": "deep", "n": deep})),
        ErrorKind::InvalidInput,
    );
    let listed = ids(&store.list_tasks().unwrap());
    assert_eq!(listed, ["fits"], "{}: nothing else was written", b.name);
    assert!(store.list_sessions().unwrap().is_empty());
    assert!(store.list_reports().unwrap().is_empty());
}

/// JSON that is no task or no session: the same kind whatever the engine
/// (a task is parsed before any engine sees it; a session is checked by
/// the code both engines share).
pub fn malformed_json_is_refused(b: &Backend) {
    let store = b.open();
    for (json, kind) in [
        (&br#"{"id":"a""#[..], ErrorKind::InvalidInput),
        (b"[1]", ErrorKind::InvalidInput),
        (b"\"a\"", ErrorKind::InvalidInput),
        (b"{}", ErrorKind::InvalidInput),
        (br#"{"id":7}"#, ErrorKind::InvalidInput),
        (br#"{"id":"a","id":"b"}"#, ErrorKind::InvalidInput),
        (br#"{"id":"a","n":{"k":1,"k":2}}"#, ErrorKind::InvalidInput),
        (
            br#"{"id":"a","status":"sleeping"}"#,
            ErrorKind::InvalidInput,
        ),
        (br#"{"id":"a","logs":{}}"#, ErrorKind::InvalidInput),
    ] {
        let text = String::from_utf8_lossy(json);
        let e = Task::from_json(json).expect_err(&text);
        assert_eq!(e.kind(), kind, "{text}: {e}");
    }
    for session in [
        json!([1]),
        json!("s"),
        json!({}),
        json!({"id": 7}),
        json!({"id": null}),
    ] {
        check_err(store.put_session(session.clone()), ErrorKind::InvalidInput);
        let in_batch = store.transaction(|tx| {
            tx.put_session(session);
            Ok(())
        });
        check_err(in_batch, ErrorKind::InvalidInput);
    }
    assert!(store.list_sessions().unwrap().is_empty());
    assert_eq!(store.stats().unwrap().tasks, 0);
}

/// `serve --stdio` runs on every engine: the same bad requests get the
/// same error kinds, and nothing of them is stored.
pub fn the_cli_refuses_bad_input_alike(b: &Backend) {
    let long = too_long();
    let requests: Vec<(String, &str)> = vec![
        ("{\"op\":\"put_task\",".into(), "invalid_input"),
        ("[1]".into(), "invalid_input"),
        (r#"{"op":"put_task","task":[1]}"#.into(), "invalid_input"),
        (r#"{"op":"put_task","task":{}}"#.into(), "invalid_input"),
        (
            r#"{"op":"put_task","task":{"id":7}}"#.into(),
            "invalid_input",
        ),
        (
            r#"{"op":"put_task","task":{"id":"a","id":"b"}}"#.into(),
            "invalid_input",
        ),
        (
            r#"{"op":"put_task","task":{"id":"a/b"}}"#.into(),
            "invalid_id",
        ),
        (
            format!(r#"{{"op":"put_task","task":{{"id":"{long}"}}}}"#),
            "invalid_id",
        ),
        (r#"{"op":"get_task","id":".."}"#.into(), "invalid_id"),
        (r#"{"op":"get_task","id":"nobody"}"#.into(), "not_found"),
        (r#"{"op":"delete_task","id":"nobody"}"#.into(), "not_found"),
        (
            r#"{"op":"put_session","session":{"pid":1}}"#.into(),
            "invalid_input",
        ),
        (
            r#"{"op":"read_log","file_name":"../state.json"}"#.into(),
            "invalid_input",
        ),
        (
            r#"{"op":"save_report","id":"r:1","report":{}}"#.into(),
            "invalid_id",
        ),
        (r#"{"op":"fly"}"#.into(), "invalid_input"),
        (r#"{"op":"put_task","task":{"id":"ok"}}"#.into(), ""),
    ];
    let stdin: String = requests
        .iter()
        .map(|(line, _)| format!("{line}\n"))
        .collect();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_statewal"));
    without_statewal_env(&mut cmd);
    cmd.args(&b.cli_args).args(["serve", "--stdio"]);
    let out = run_with_stdin(cmd, &stdin);
    assert!(out.status.success(), "{}: {out:?}", b.name);
    let answers = json_lines(&out.stdout);
    assert_eq!(answers.len(), requests.len(), "{}: {answers:?}", b.name);
    for ((line, kind), answer) in requests.iter().zip(&answers) {
        let got = answer["error"]["kind"].as_str().unwrap_or("");
        assert_eq!(got, *kind, "{}: {line} answered {answer}", b.name);
        assert_eq!(answer["ok"], Value::Bool(kind.is_empty()), "{answer}");
    }
    let store = b.open();
    let listed = ids(&store.list_tasks().unwrap());
    assert_eq!(listed, ["ok"], "{}", b.name);
}
