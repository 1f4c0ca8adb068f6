//! Operating commands through the real binary: health, metrics,
//! dump-journal, show, `list --status`, and the `DEBUG=persistence:*` alias.

use serde_json::Value;
use statewal::{Options, Store, Task};
use std::path::Path;
use std::process::Output;

/// Runs `statewal --dir DIR args...` with `stdin` and extra environment.
fn run_env(dir: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    crate::util::run_statewal(dir, args, stdin, env)
}

fn run(dir: &Path, args: &[&str], stdin: &str) -> Output {
    run_env(dir, args, stdin, &[])
}

use crate::util::check_statewal as check;

fn put(dir: &Path, task: &str) {
    check(dir, &["put-task", "-"], task, 0);
}

/// A store that neither checkpoints nor preallocates, so the journal holds
/// exactly the records written.
fn journal_only(dir: &Path) -> Store {
    Store::open(
        Options::new(dir)
            .checkpoint_interval(None)
            .checkpoint_on_drop(false)
            .journal_preallocate_bytes(0),
    )
    .unwrap()
}

// Guards: `health` reads a directory without opening it, reports the last
// checkpoint, backups and journal, and names the pid holding the lock.
#[test]
fn health_reports_the_directory_and_its_lock_holder() {
    let dir = tempfile::tempdir().unwrap();
    put(dir.path(), r#"{"id":"t1"}"#);
    put(dir.path(), r#"{"id":"t2"}"#);
    let h: Value = serde_json::from_str(&check(dir.path(), &["health", "--json"], "", 0)).unwrap();
    assert_eq!(h["healthy"], true, "{h}");
    assert_eq!(h["exists"], true);
    assert_eq!(h["writable"], true);
    assert!(h["free_bytes"].as_u64().unwrap() > 0);
    assert!(h["last_checkpoint"].as_str().unwrap().starts_with("20"));
    assert!(h["backups"].as_u64().unwrap() >= 1, "{h}");
    assert_eq!(h["backups"], h["backups_valid"]);
    assert!(h["journal_bytes"].as_u64().unwrap() > 0);
    assert_eq!(h["lock_holder_pid"], Value::Null);
    assert!(h["problems"].as_array().unwrap().is_empty());

    let store = Store::open(Options::new(dir.path())).unwrap();
    let h: Value = serde_json::from_str(&check(dir.path(), &["health", "--json"], "", 0)).unwrap();
    assert_eq!(h["lock_holder_pid"], std::process::id(), "{h}");
    assert_eq!(store.health().lock_holder_pid, Some(std::process::id()));
    let text = check(dir.path(), &["health"], "", 0);
    assert!(
        text.contains(&format!("pid {}", std::process::id())) && text.contains("healthy"),
        "{text}"
    );
}

// Guards: an unhealthy directory exits 1 and says why.
#[test]
fn health_exits_1_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let text = check(&missing, &["health"], "", 1);
    assert!(
        text.contains("UNHEALTHY") && text.contains("does not exist"),
        "{text}"
    );

    put(dir.path(), r#"{"id":"t1"}"#);
    std::fs::write(dir.path().join("state.json"), "{ not json").unwrap();
    let h: Value = serde_json::from_str(&check(dir.path(), &["health", "--json"], "", 1)).unwrap();
    assert_eq!(h["healthy"], false);
    let problems = h["problems"].to_string();
    assert!(problems.contains("state.json is unusable"), "{problems}");
}

// Guards: `metrics` prints valid-looking Prometheus text (HELP and TYPE for
// each family, statewal_ names) and the same figures as JSON; the library's
// counters count checkpoints and journal syncs with their latency.
#[test]
fn metrics_print_prometheus_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    put(dir.path(), r#"{"id":"t1"}"#);
    put(dir.path(), r#"{"id":"t2"}"#);
    let text = check(dir.path(), &["metrics"], "", 0);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        } else if !line.starts_with("# HELP ") {
            assert!(line.starts_with("statewal_"), "{line}");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
    assert!(text.contains("statewal_tasks 2\n"), "{text}");
    assert!(text.contains("statewal_files{dir=\"tasks\"} 2\n"), "{text}");
    assert!(text.contains("# TYPE statewal_fsyncs_total counter"));

    let m: Value = serde_json::from_str(&check(dir.path(), &["metrics", "--json"], "", 0)).unwrap();
    assert_eq!(m["tasks"], 2);
    assert_eq!(m["files"]["tasks"], 2);
    assert!(m["disk_usage_bytes"].as_u64().unwrap() > 0);
    assert!(m["load_seconds"].as_f64().unwrap() > 0.0);

    let store = Store::open(Options::new(dir.path()).checkpoint_interval(None)).unwrap();
    for i in 0..3 {
        store.put_task(Task::new(format!("u{i}"))).unwrap();
    }
    store.checkpoint().unwrap();
    let m = store.metrics().unwrap();
    assert_eq!(m.checkpoints, 1);
    assert!(m.checkpoint_total_seconds > 0.0);
    assert_eq!(m.checkpoint_last_seconds, m.checkpoint_total_seconds);
    assert!(m.fsyncs >= 3, "{m:?}");
    assert!(m.fsync_total_seconds > 0.0);
    assert_eq!(m.save_failures, 0);
    assert_eq!(m.journal_records, 3);
    assert!(m.journal_bytes > 0);
}

// Guards: `dump-journal` prints one line per record with segment, offset,
// seq, kind, id, size and checksum, and a damaged span as a line of its own.
#[test]
fn dump_journal_lists_records_and_damage() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = journal_only(dir.path());
        for id in ["a", "b", "c"] {
            store.put_task(Task::new(id)).unwrap();
        }
        store.delete_task("b").unwrap();
    }
    let text = check(dir.path(), &["dump-journal"], "", 0);
    // Each synced put is followed by its sync marker, shown with its time.
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9, "{text}");
    assert!(
        lines[1].contains("sync_marker")
            && lines[1].contains("synced<=1")
            && lines[1].contains("time=20"),
        "{text}"
    );
    let lines: Vec<&str> = lines
        .into_iter()
        .filter(|l| !l.contains("sync_marker"))
        .collect();
    assert!(
        lines[0].contains("offset=104")
            && lines[0].contains("seq=1")
            && lines[0].contains("put_task")
            && lines[0].contains("id=a")
            && lines[0].contains("checksum=ok"),
        "{text}"
    );
    assert!(lines[3].contains("delete_task") && lines[3].contains("id=b"));
    assert!(
        lines[4].contains("4 records, 4 sync markers, 0 damaged spans in 1 segment"),
        "{text}"
    );
    assert!(!lines[4].contains("1 segments"), "{text}");

    let json = check(dir.path(), &["dump-journal", "--json"], "", 0);
    let records: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["kind"] != "sync_marker")
        .collect();
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert!(records.iter().all(|r| r["checksum_ok"] == true));
    assert_eq!(records[1]["id"], "b");
    assert!(records[1]["size_bytes"].as_u64().unwrap() > 24);

    // Flip a byte inside record 2's payload.
    let segment = std::fs::read_dir(dir.path().join("journal"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = records[1]["offset"].as_u64().unwrap() as usize + 30;
    bytes[at] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();
    let text = check(dir.path(), &["dump-journal"], "", 0);
    assert!(
        text.contains("DAMAGED") && text.contains("checksum=BAD"),
        "{text}"
    );
    assert!(
        text.contains("3 records, 4 sync markers, 1 damaged span in 1 segment"),
        "{text}"
    );
    let json = check(dir.path(), &["dump-journal", "--json"], "", 0);
    let bad: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["checksum_ok"] == false)
        .collect();
    assert_eq!(bad.len(), 1, "{json}");
    assert_eq!(bad[0]["kind"], "damaged");
    assert_eq!(
        bad[0]["class"], "corrupt",
        "record 3 proves record 2 was durable"
    );
}

// Guards: `show` prints a task's fields, logs and result for a person and
// the task itself with --json; a missing id is an error that names it.
#[test]
fn show_prints_fields_logs_and_result() {
    let dir = tempfile::tempdir().unwrap();
    put(
        dir.path(),
        r#"{"id":"t1","status":"completed","description":"build it","tool":"shell",
            "logs":[{"timestamp":"2026-01-01T00:00:00Z","level":"info","type":"tool","message":"ran make"}],
            "result":{"exitCode":0},"toolInvocations":[1]}"#,
    );
    let text = check(dir.path(), &["show", "t1"], "", 0);
    for want in [
        "task t1",
        "completed",
        "build it",
        "shell",
        "toolInvocations",
        "1 log entry:",
        "ran make",
        "result:",
        "\"exitCode\": 0",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    let t =
        crate::util::json_object(check(dir.path(), &["show", "t1", "--json"], "", 0).as_bytes());
    assert_eq!(t["id"], "t1");
    assert_eq!(t["result"]["exitCode"], 0);

    let out = run(dir.path(), &["show", "nope"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no task with id \"nope\""));
}

// Guards: `list --status a,b` filters both the table and --json, and an
// unknown status is refused with the list of valid ones.
#[test]
fn list_filters_by_status() {
    let dir = tempfile::tempdir().unwrap();
    put(dir.path(), r#"{"id":"t1","status":"completed"}"#);
    put(dir.path(), r#"{"id":"t2","status":"failed"}"#);
    put(dir.path(), r#"{"id":"t3","status":"pending"}"#);
    let table = check(dir.path(), &["list", "--status", "completed,failed"], "", 0);
    assert!(
        table.contains("t1") && table.contains("t2") && !table.contains("t3"),
        "{table}"
    );
    assert!(table.contains("2 tasks"), "{table}");
    let json = check(
        dir.path(),
        &["list", "--json", "--status", "pending"],
        "",
        0,
    );
    let tasks = crate::util::json_lines(json.as_bytes());
    let ids: Vec<&str> = tasks.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["t3"]);
    let out = run(dir.path(), &["list", "--status", "done"], "");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown status \"done\"") && err.contains("completed"),
        "{err}"
    );
}

// Guards: the original server's `DEBUG=persistence:*` turns on debug logs
// like `RUST_LOG=statewal=debug`, and RUST_LOG wins when both are set.
#[test]
fn debug_persistence_is_an_alias_for_rust_log() {
    let dir = tempfile::tempdir().unwrap();
    put(dir.path(), r#"{"id":"t1"}"#);
    let logs = |env: &[(&str, &str)]| {
        let out = run_env(dir.path(), &["list"], "", env);
        assert!(out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    // Recovery logs "recovered" at info level, hidden by the default filter.
    assert!(!logs(&[]).contains("recovered"));
    assert!(logs(&[("DEBUG", "persistence:*")]).contains("recovered"));
    assert!(logs(&[("DEBUG", "*")]).contains("recovered"));
    assert!(logs(&[("RUST_LOG", "statewal=debug")]).contains("recovered"));
    assert!(!logs(&[("DEBUG", "http:*")]).contains("recovered"));
    assert!(!logs(&[("DEBUG", "*,-persistence:*")]).contains("recovered"));
    assert!(!logs(&[("DEBUG", "persistence:*"), ("RUST_LOG", "warn")]).contains("recovered"));
}
