//! The command-line tool and the stdio protocol, through the real binary.

use serde_json::{Value, json};
use std::path::Path;
use std::process::Output;

/// Runs `statewal --dir DIR args...` with `stdin` and returns its output.
fn run(dir: &Path, args: &[&str], stdin: &str) -> Output {
    crate::util::run_statewal(dir, args, stdin, &[])
}

/// Feeds `requests` to `serve --stdio` and returns the response lines.
fn serve(dir: &Path, requests: &[String]) -> Vec<Value> {
    let out = run(dir, &["serve", "--stdio"], &(requests.join("\n") + "\n"));
    assert!(
        out.status.success(),
        "serve exited with {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("response {l:?} is not JSON: {e}"))
        })
        .collect()
}

fn put_request(req: usize, id: &str) -> String {
    json!({"req": req, "op": "put_task", "task": {"id": id, "status": "pending", "claudeMetrics": {"n": req}}})
        .to_string()
}

// Guards: one response per request, in request order, with `req` echoed;
// bad lines get an error object and the server keeps serving.
#[test]
fn serve_answers_in_order_and_survives_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let requests = vec![
        put_request(1, "a"),
        "this is not json".to_string(),
        json!({"req": "x", "op": "no_such_op"}).to_string(),
        json!({"req": 3, "op": "put_task"}).to_string(),
        json!({"req": 4, "op": "put_task", "task": {"id": "../evil"}}).to_string(),
        json!({"req": 5, "op": "get_task", "id": "a"}).to_string(),
        json!({"req": {"nested": [1]}, "op": "delete_task", "id": "missing"}).to_string(),
        json!({"req": 7, "op": "append_log", "session": "s1", "text": "hello\n"}).to_string(),
        json!({"req": 8, "op": "save_report", "id": "r1", "report": {"ok": true}}).to_string(),
        json!({"req": 9, "op": "list_tasks"}).to_string(),
        json!({"req": 10, "op": "checkpoint"}).to_string(),
    ];
    let answers = serve(dir.path(), &requests);
    assert_eq!(answers.len(), requests.len(), "{answers:?}");
    let reqs: Vec<&Value> = answers.iter().map(|a| &a["req"]).collect();
    let want = [
        json!(1),
        Value::Null,
        json!("x"),
        json!(3),
        json!(4),
        json!(5),
        json!({"nested": [1]}),
        json!(7),
        json!(8),
        json!(9),
        json!(10),
    ];
    assert_eq!(reqs, want.iter().collect::<Vec<_>>());
    let ok: Vec<bool> = answers.iter().map(|a| a["ok"].as_bool().unwrap()).collect();
    assert_eq!(
        ok,
        [
            true, false, false, false, false, true, false, true, true, true, true
        ]
    );
    let kinds: Vec<&str> = answers
        .iter()
        .filter_map(|a| a["error"]["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "invalid_input",
            "invalid_input",
            "invalid_input",
            "invalid_id",
            "not_found"
        ]
    );
    assert!(answers[0]["seq"].as_u64().unwrap() >= 1);
    assert_eq!(
        answers[5]["task"]["claudeMetrics"]["n"], 1,
        "unknown fields come back"
    );
    assert_eq!(answers[9]["tasks"].as_array().unwrap().len(), 1);
    // End of input checkpointed: the layout is on disk.
    assert!(dir.path().join("tasks/a.json").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("logs/session_s1.log")).unwrap(),
        "hello\n"
    );
    assert!(dir.path().join("reports/report_r1.json").exists());
}

// Guards: an oversized task is refused with `too_large` and nothing is stored.
// Guards: `put_task_if` checks the version (a refusal is `conflict`),
// `task_version` reads it, and `subscribe` on the journal engine streams
// a `task_changed` line for each committed change after its answer, in
// order, with this server's own origin.
#[test]
fn serve_put_task_if_task_version_and_subscribe() {
    let dir = tempfile::tempdir().unwrap();
    let requests: Vec<String> = [
        json!({"req": 1, "op": "subscribe"}),
        json!({"req": 2, "op": "put_task_if", "task": {"id": "a"}, "expected_version": null}),
        json!({"req": 3, "op": "put_task_if", "task": {"id": "a"}, "expected_version": null}),
        json!({"req": 4, "op": "put_task_if", "task": {"id": "a"}, "expected_version": 1}),
        json!({"req": 5, "op": "task_version", "id": "a"}),
        json!({"req": 6, "op": "delete_task", "id": "a"}),
        json!({"req": 7, "op": "task_version", "id": "a"}),
        json!({"req": 8, "op": "put_task_if", "task": {"id": "a"}}),
        json!({"req": 9, "op": "put_task_if", "task": {"id": "a"}, "expected_version": -1}),
    ]
    .iter()
    .map(Value::to_string)
    .collect();
    let lines = serve(dir.path(), &requests);
    let (events, answers): (Vec<&Value>, Vec<&Value>) =
        lines.iter().partition(|l| l.get("event").is_some());
    let reqs: Vec<u64> = answers.iter().map(|a| a["req"].as_u64().unwrap()).collect();
    assert_eq!(reqs, (1..=9).collect::<Vec<_>>(), "{lines:?}");
    // Nothing comes before the subscribe answer.
    assert_eq!(lines[0]["req"], json!(1), "{lines:?}");
    let origin = answers[0]["origin"].as_str().unwrap();
    assert_eq!(origin.len(), 32);
    assert_eq!(answers[1]["version"], json!(1));
    assert_eq!(
        answers[2]["error"]["kind"],
        json!("conflict"),
        "{}",
        answers[2]
    );
    assert_eq!(answers[3]["version"], json!(2));
    assert_eq!(answers[4]["version"], json!(2));
    assert_eq!(answers[6]["version"], json!(null));
    for bad in [7, 8] {
        assert_eq!(
            answers[bad]["error"]["kind"],
            json!("invalid_input"),
            "{}",
            answers[bad]
        );
    }
    let seen: Vec<(&str, &str, Value)> = events
        .iter()
        .map(|e| {
            assert_eq!(e["event"], json!("task_changed"), "{e}");
            assert_eq!(e["origin"], json!(origin), "{e}");
            (
                e["id"].as_str().unwrap(),
                e["kind"].as_str().unwrap(),
                e["version"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("a", "put", json!(1)),
            ("a", "put", json!(2)),
            ("a", "delete", json!(null))
        ]
    );
}

#[test]
fn serve_refuses_an_oversized_task() {
    let dir = tempfile::tempdir().unwrap();
    let big = "x".repeat(17 * 1024 * 1024);
    let requests = vec![
        json!({"req": 1, "op": "put_task", "task": {"id": "big", "description": big}}).to_string(),
        json!({"req": 2, "op": "get_task", "id": "big"}).to_string(),
    ];
    let answers = serve(dir.path(), &requests);
    assert_eq!(answers[0]["error"]["kind"], "too_large", "{}", answers[0]);
    assert_eq!(answers[1]["error"]["kind"], "not_found");
}

// Guards: requests pipelined by one client share fsyncs (group commit), and
// every acknowledged one is there after the server exits.
#[test]
fn serve_commits_pipelined_requests_with_fewer_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    const N: usize = 300;
    let mut requests: Vec<String> = (0..N).map(|i| put_request(i, &format!("t{i}"))).collect();
    requests.push(json!({"req": "stats", "op": "stats"}).to_string());
    // `stats` is computed at its turn in the answer stream, after every
    // earlier mutation was acknowledged, so it counts all their syncs.
    let answers = serve(dir.path(), &requests);
    assert!(
        answers[..N].iter().all(|a| a["ok"] == true),
        "{:?}",
        &answers[..3]
    );
    let seqs: Vec<u64> = answers[..N]
        .iter()
        .map(|a| a["seq"].as_u64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "sequence numbers grow in request order"
    );
    let stats = &answers[N];
    let syncs = stats["journal_syncs"].as_u64().unwrap();
    assert_eq!(stats["records"], N as u64);
    assert!(
        syncs < N as u64,
        "{N} pipelined puts took {syncs} journal syncs"
    );
    let out = run(dir.path(), &["list", "--json"], "");
    let tasks = crate::util::json_lines(&out.stdout);
    assert_eq!(tasks.len(), N);
}

// Guards: put-task, get-task, list --json, delete-task and checkpoint work
// through the binary and print what the README says.
#[test]
fn one_shot_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &["put-task", "-"],
        r#"{"id":"t1","description":"d","toolInvocations":[1]}"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = dir.path().join("in.json");
    std::fs::write(&file, r#"{"id":"t2","status":"completed"}"#).unwrap();
    assert!(
        run(dir.path(), &["put-task", file.to_str().unwrap()], "")
            .status
            .success()
    );

    let out = run(dir.path(), &["get-task", "t1"], "");
    let t: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(t["toolInvocations"], json!([1]));

    let out = run(dir.path(), &["list", "--json"], "");
    let list = crate::util::json_lines(&out.stdout);
    assert_eq!(
        list.iter()
            .map(|t| t["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["t1", "t2"]
    );
    let table = String::from_utf8(run(dir.path(), &["list"], "").stdout).unwrap();
    assert!(
        table.contains("t2") && table.contains("completed"),
        "{table}"
    );
    // Bug: a line feed in a description split its row in two.
    let out = run(
        dir.path(),
        &["put-task", "-"],
        r#"{"id":"t3","description":"one\ntwo\tthree"}"#,
    );
    assert!(out.status.success());
    let table = String::from_utf8(run(dir.path(), &["list"], "").stdout).unwrap();
    let row = table.lines().find(|l| l.starts_with("t3 ")).unwrap();
    assert!(row.ends_with(r"one\ntwo\tthree"), "{table}");
    assert!(run(dir.path(), &["delete-task", "t3"], "").status.success());

    assert!(run(dir.path(), &["delete-task", "t1"], "").status.success());
    let out = run(dir.path(), &["get-task", "t1"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no task with id"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(dir.path(), &["put-task", "-"], "{not json");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("standard input"));

    assert!(run(dir.path(), &["checkpoint"], "").status.success());
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state.json")).unwrap()).unwrap();
    assert_eq!(state["tasks"].as_array().unwrap().len(), 1);
}

// Guards: verify exits 0 on a clean directory and 1 with file and offset on
// damage; recover repairs it.
#[test]
fn verify_and_recover_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let requests: Vec<String> = (0..5).map(|i| put_request(i, &format!("t{i}"))).collect();
    // Write without a checkpoint at the end: the server checkpoints at end
    // of input, so put a few more records after that through the library.
    serve(dir.path(), &requests);
    {
        let store = statewal::Store::open(
            statewal::Options::new(dir.path())
                .checkpoint_interval(None)
                .checkpoint_on_drop(false)
                .journal_preallocate_bytes(0),
        )
        .unwrap();
        for i in 0..5 {
            store
                .put_task(statewal::Task::new(format!("u{i}")))
                .unwrap();
        }
    }
    let out = run(dir.path(), &["verify"], "");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Flip a byte inside the second record of the newest segment.
    let journal = dir.path().join("journal");
    let newest = std::fs::read_dir(&journal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    let at = statewal::__internal::journal::record::SEGMENT_HEADER_LEN + 100;
    bytes[at] ^= 0x40;
    std::fs::write(&newest, &bytes).unwrap();
    let out = run(dir.path(), &["verify"], "");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(newest.file_name().unwrap().to_str().unwrap()) && text.contains("byte"),
        "{text}"
    );
    assert!(
        text.contains(
            "hint: `statewal recover --mode point-in-time` or `--mode salvage` repairs journal damage"
        ),
        "{text}"
    );

    let out = run(dir.path(), &["list"], "");
    assert_eq!(
        out.status.code(),
        Some(2),
        "the default open refuses middle damage"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("statewal recover"));
    let out = run(dir.path(), &["recover", "--mode", "salvage"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(run(dir.path(), &["list"], "").status.success());
}

// Guards: every command that prints data has --json (issue 5, part 6).
#[test]
fn json_output_of_put_delete_checkpoint_recover() {
    let dir = tempfile::tempdir().unwrap();
    let object = crate::util::json_object;
    let out = run(dir.path(), &["put-task", "--json", "-"], r#"{"id":"j1"}"#);
    let v = object(&out.stdout);
    assert_eq!(v["id"], "j1");
    assert!(v["seq"].as_u64().unwrap() >= 1);
    let out = run(dir.path(), &["checkpoint", "--json"], "");
    let v = object(&out.stdout);
    assert_eq!(v["checkpoint"]["tasks_total"], 1, "{v}");
    // Words in snake_case, never a Rust Debug name (issue 14).
    assert_eq!(v["recovery"]["mode"], "tolerate_torn_tail");
    assert_eq!(v["recovery"]["loaded_from"], "state_file", "{v}");
    let out = run(dir.path(), &["delete-task", "--json", "j1"], "");
    let v = object(&out.stdout);
    assert_eq!(v["id"], "j1");
    let out = run(
        dir.path(),
        &["recover", "--json", "--mode", "point-in-time"],
        "",
    );
    let v = object(&out.stdout);
    assert_eq!(v["mode"], "point_in_time", "{v}");
    assert_eq!(v["loaded_from"], "state_file", "{v}");
    assert_eq!(v["loaded_from_file"], Value::Null, "{v}");
    assert_eq!(v["damage"], json!([]));
}
