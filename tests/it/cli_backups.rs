//! `statewal backups` and `statewal restore` through the real binary.

use crate::util::expect_exit;
use serde_json::Value;
use std::path::Path;
use std::process::Output;

fn run(dir: &Path, args: &[&str], stdin: &str) -> Output {
    crate::util::run_statewal(dir, args, stdin, &[])
}

/// Runs and checks the exit code; returns stdout and stderr.
fn check(dir: &Path, args: &[&str], stdin: &str, code: i32) -> (String, String) {
    expect_exit(run(dir, args, stdin), code, args)
}

fn json(dir: &Path, args: &[&str]) -> Value {
    let (stdout, _) = check(dir, args, "", 0);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?} printed {stdout:?}: {e}"))
}

/// Each CLI write shuts the store down, which checkpoints: the previous
/// `state.json` becomes a backup every time.
fn put(dir: &Path, id: &str, description: &str) {
    let task = serde_json::json!({"id": id, "status": "pending", "description": description,
        "toolInvocations": [{"tool": "edit"}]});
    check(dir, &["put-task", "-"], &task.to_string(), 0);
}

fn task_ids(dir: &Path) -> Vec<String> {
    let (stdout, _) = check(dir, &["list", "--json"], "", 0);
    crate::util::json_lines(stdout.as_bytes())
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

fn backups(dir: &Path) -> Vec<Value> {
    let (stdout, _) = check(dir, &["backups", "--json"], "", 0);
    crate::util::json_lines(stdout.as_bytes())
}

/// Flips one letter inside a backup: still JSON, but its checksum seal no
/// longer matches.
fn corrupt(dir: &Path, name: &str) {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let at = text
        .find("\"description\": \"")
        .expect("a task in the backup")
        + 16;
    let mut bytes = text.into_bytes();
    bytes[at] = bytes[at].to_ascii_uppercase();
    std::fs::write(&path, bytes).unwrap();
}

/// Every file in the directory with its contents, to show nothing changed.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        let rel = entry.strip_prefix(dir).unwrap().display().to_string();
        if rel != ".statewal.lock" {
            out.push((rel, std::fs::read(&entry).unwrap()));
        }
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn backups_lists_valid_ones_and_a_corrupted_one_as_invalid() {
    let dir = tempfile::tempdir().unwrap();
    put(dir.path(), "a", "first");
    put(dir.path(), "b", "second");
    put(dir.path(), "c", "third");
    let list = backups(dir.path());
    assert_eq!(list.len(), 2, "{list:#?}");
    // Newest first: the state before `c`, then the one before `b`.
    assert_eq!(list[0]["tasks"], 2);
    assert_eq!(list[1]["tasks"], 1);
    for b in &list {
        assert_eq!(b["valid"], true);
        assert!(b["size_bytes"].as_u64().unwrap() > 0);
        assert!(b["age_seconds"].as_u64().unwrap() < 3600);
        assert!(b["journal_seq"].as_u64().is_some());
    }
    let oldest = list[1]["name"].as_str().unwrap().to_string();
    corrupt(dir.path(), &oldest);

    let list = backups(dir.path());
    assert_eq!(list[0]["valid"], true);
    assert_eq!(list[1]["name"], oldest.as_str());
    assert_eq!(list[1]["valid"], false);
    assert!(list[1]["tasks"].is_null());
    assert!(
        list[1]["problem"].as_str().unwrap().contains("checksum"),
        "{list:#?}"
    );
    let (table, _) = check(dir.path(), &["backups"], "", 0);
    let row = table.lines().find(|l| l.starts_with(&oldest)).unwrap();
    assert!(row.contains(" NO "), "{table}");
    assert!(table.contains("2 backups, 1 valid"), "{table}");
}

#[test]
fn restore_brings_back_an_older_state_and_its_undo_backup_reverses_it() {
    let dir = tempfile::tempdir().unwrap();
    put(dir.path(), "a", "deleted later");
    put(dir.path(), "b", "kept");
    check(dir.path(), &["delete-task", "a"], "", 0);
    put(dir.path(), "c", "newer");
    assert_eq!(task_ids(dir.path()), ["b", "c"]);
    // The one backup holding two tasks is the state {a, b}.
    let with_a = backups(dir.path())
        .into_iter()
        .find(|b| b["tasks"] == 2)
        .unwrap();
    let name = with_a["name"].as_str().unwrap();

    let report = json(dir.path(), &["restore", name, "--json"]);
    assert_eq!(report["backup"], name);
    assert_eq!(report["tasks_put"], serde_json::json!(["a"]));
    assert_eq!(report["tasks_deleted"], serde_json::json!(["c"]));
    assert_eq!(task_ids(dir.path()), ["a", "b"]);
    let a = json(dir.path(), &["get-task", "a"]);
    assert_eq!(a["description"], "deleted later");
    assert_eq!(
        a["toolInvocations"][0]["tool"], "edit",
        "unknown fields return"
    );
    check(dir.path(), &["verify"], "", 0);

    // Undo, through the human output this time.
    let undo = report["undo_backup"].as_str().unwrap();
    let (out, _) = check(dir.path(), &["restore", undo], "", 0);
    assert!(out.contains("put 1 task: c"), "{out}");
    assert!(out.contains("deleted 1 task: a"), "{out}");
    assert!(
        out.contains("undo with: statewal restore state.backup."),
        "{out}"
    );
    assert_eq!(task_ids(dir.path()), ["b", "c"]);

    // Restoring what already holds is a no-op: re-running a restore that a
    // crash interrupted finishes it and does nothing more.
    let again = json(dir.path(), &["restore", undo, "--json"]);
    assert_eq!(again["tasks_put"], serde_json::json!([]));
    assert_eq!(again["tasks_deleted"], serde_json::json!([]));
    assert!(again["undo_backup"].is_null());
}

// Guards the claim in docs/decisions.md: a crash partway through a restore
// leaves some of its records durable and not others; running the same
// restore again writes only what is missing.
#[test]
fn restore_finishes_a_restore_a_crash_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    put(dir.path(), "a", "old a");
    put(dir.path(), "b", "old b");
    put(dir.path(), "a", "new a");
    // The newest backup is the state before that: {a: "old a", b}.
    let name = backups(dir.path())[0]["name"].as_str().unwrap().to_string();
    put(dir.path(), "c", "new c");
    // Its restore got as far as putting `a` back and no further: `c` is
    // still there.
    put(dir.path(), "a", "old a");
    let report = json(dir.path(), &["restore", &name, "--json"]);
    assert_eq!(report["tasks_put"], serde_json::json!([]));
    assert_eq!(report["tasks_deleted"], serde_json::json!(["c"]));
    assert_eq!(task_ids(dir.path()), ["a", "b"]);
    assert_eq!(json(dir.path(), &["get-task", "a"])["description"], "old a");
}

#[test]
fn restore_of_a_corrupt_or_missing_backup_fails_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    put(dir.path(), "a", "first");
    put(dir.path(), "b", "second");
    let name = backups(dir.path())[0]["name"].as_str().unwrap().to_string();
    corrupt(dir.path(), &name);
    let before = snapshot(dir.path());

    let (_, err) = check(dir.path(), &["restore", &name], "", 2);
    assert!(err.contains(&name) && err.contains("invalid"), "{err}");
    assert!(err.contains("checksum"), "{err}");
    assert_eq!(
        snapshot(dir.path()),
        before,
        "a refused restore wrote nothing"
    );

    let (_, err) = check(
        dir.path(),
        &["restore", "state.backup.19990101T000000.000000Z.json"],
        "",
        2,
    );
    assert!(err.contains("no backup"), "{err}");
    assert_eq!(snapshot(dir.path()), before);
    assert_eq!(task_ids(dir.path()), ["a", "b"]);
}
