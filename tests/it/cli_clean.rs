//! `statewal clean`: old finished tasks move to `archive/` as JSON lines,
//! through the journal, each exactly once even across a crash.

use crate::util::{copy_dir, open_crashy, opts};
use serde_json::{Value, json};
use statewal::{Store, Task};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

fn statewal(dir: &Path, args: &[&str]) -> Output {
    crate::util::run_statewal(dir, args, "", &[])
}

fn check_ok(dir: &Path, args: &[&str]) -> String {
    let out = statewal(dir, args);
    assert!(
        out.status.success(),
        "statewal {args:?} exited with {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

const OLD: &str = "2020-01-01T00:00:00.000Z";

/// Tasks covering every rule: old and recent, each status, and each of the
/// three timestamps as the one that counts. The ids say what clean should do.
fn seed(dir: &Path) -> Vec<Task> {
    let recent = statewal::now_rfc3339();
    let task = |id: &str, status: &str, times: &[(&str, &str)]| -> Task {
        let mut v = json!({
            "id": id,
            "status": status,
            "description": format!("task {id}"),
            "toolInvocations": [{"tool": "bash", "n": 1}],
            "claudeMetrics": {"tokens": 12},
            "logs": [{"timestamp": OLD, "level": "info", "type": "system", "message": "done"}],
        });
        for (field, at) in times {
            v[field] = json!(at);
        }
        serde_json::from_value(v).expect("a valid task")
    };
    let tasks = vec![
        task("old_completed", "completed", &[("completed_at", OLD)]),
        task(
            "old_failed",
            "failed",
            &[("updated_at", OLD), ("created_at", OLD)],
        ),
        task("old_cancelled", "cancelled", &[("created_at", OLD)]),
        // completed_at counts before the older created_at.
        task(
            "keep_recent_completed",
            "completed",
            &[("created_at", OLD), ("completed_at", &recent)],
        ),
        task("keep_old_pending", "pending", &[("created_at", OLD)]),
        task(
            "keep_old_in_progress",
            "in_progress",
            &[("updated_at", OLD)],
        ),
        task("keep_undated_completed", "completed", &[]),
    ];
    let store = Store::open(opts(dir)).unwrap();
    for t in &tasks {
        store.put_task(t.clone()).unwrap();
    }
    store.shutdown().unwrap();
    tasks
}

/// Every line of every archive file, parsed, with how often each id appears.
fn archived(dir: &Path) -> BTreeMap<String, (usize, Value)> {
    let mut out: BTreeMap<String, (usize, Value)> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir.join("archive")) else {
        return out;
    };
    for entry in entries {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "archive ends mid-line"
        );
        for line in text.lines() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("archive line {line:?} is not JSON: {e}"));
            let id = v["id"].as_str().unwrap().to_string();
            let slot = out.entry(id).or_insert((0, v.clone()));
            slot.0 += 1;
        }
    }
    out
}

fn listed_ids(dir: &Path) -> Vec<String> {
    crate::util::json_lines(check_ok(dir, &["list", "--json"]).as_bytes())
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

/// Checks that exactly `ids` are archived, once each and with every field,
/// and are gone from `list --json` and from `tasks/`.
fn check_archived(dir: &Path, tasks: &[Task], ids: &[&str]) {
    let archive = archived(dir);
    assert_eq!(
        archive.keys().map(String::as_str).collect::<Vec<_>>(),
        {
            let mut sorted = ids.to_vec();
            sorted.sort();
            sorted
        },
        "archived ids"
    );
    let listed = listed_ids(dir);
    for t in tasks {
        let file = dir.join("tasks").join(format!("{}.json", t.id()));
        if let Some((count, line)) = archive.get(t.id()) {
            assert_eq!(*count, 1, "{} archived {count} times", t.id());
            assert_eq!(
                line,
                &serde_json::to_value(t).unwrap(),
                "{} lost a field",
                t.id()
            );
            assert!(
                !listed.contains(&t.id().to_string()),
                "{} still listed",
                t.id()
            );
            assert!(!file.exists(), "{} still in tasks/", t.id());
        } else {
            assert!(listed.contains(&t.id().to_string()), "{} was lost", t.id());
            assert!(file.exists(), "{} missing from tasks/", t.id());
        }
    }
}

#[test]
fn dry_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = seed(dir.path());
    let before = crate::util::tree(dir.path());
    let state_before = std::fs::read(dir.path().join("state.json")).unwrap();
    let out = check_ok(
        dir.path(),
        &["clean", "--older-than", "30d", "--dry-run", "--json"],
    );
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["archived"],
        json!(["old_cancelled", "old_completed", "old_failed"])
    );
    assert_eq!(report["dry_run"], json!(true));
    assert!(report["bytes"].as_u64().unwrap() > 0);
    assert!(archived(dir.path()).is_empty());
    assert_eq!(crate::util::tree(dir.path()), before);
    assert_eq!(
        std::fs::read(dir.path().join("state.json")).unwrap(),
        state_before
    );
    check_archived(dir.path(), &tasks, &[]);
}

#[test]
fn clean_archives_exactly_the_old_tasks_of_the_listed_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = seed(dir.path());
    let out = check_ok(dir.path(), &["clean", "--older-than", "30d", "--json"]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["archived"],
        json!(["old_cancelled", "old_completed", "old_failed"])
    );
    let expected_bytes: u64 = archived(dir.path())
        .values()
        .map(|(_, v)| serde_json::to_vec(v).unwrap().len() as u64 + 1)
        .sum();
    assert_eq!(report["bytes"].as_u64(), Some(expected_bytes));
    check_archived(
        dir.path(),
        &tasks,
        &["old_completed", "old_failed", "old_cancelled"],
    );

    // A second run, in a new process, appends after the lines already there
    // (its offsets come from the file's length) and honours --status.
    let out = check_ok(
        dir.path(),
        &[
            "clean",
            "--older-than",
            "12h",
            "--status",
            "pending,in_progress",
        ],
    );
    assert!(out.starts_with("archived 2 tasks"), "{out}");
    check_archived(
        dir.path(),
        &tasks,
        &[
            "old_completed",
            "old_failed",
            "old_cancelled",
            "keep_old_pending",
            "keep_old_in_progress",
        ],
    );
    // Nothing old is left for the default statuses.
    let out = check_ok(dir.path(), &["clean", "--older-than", "90m"]);
    assert!(out.starts_with("archived 0 tasks"), "{out}");
    assert!(
        statewal(dir.path(), &["clean", "--older-than", "30x"])
            .status
            .code()
            == Some(2)
    );
}

// Guards against a crash between journaling clean's records and the
// checkpoint that writes the archive: replay must archive each task once,
// also when the archive lines were already written by a checkpoint that did
// not get as far as state.json.
#[test]
fn a_crash_before_the_checkpoint_archives_each_task_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = seed(dir.path());
    let gone = ["old_completed", "old_failed", "old_cancelled"];
    {
        let store = open_crashy(dir.path());
        for id in gone {
            store.archive_task(id).unwrap();
        }
        // Dropped without a checkpoint: only the journal knows.
    }
    assert!(archived(dir.path()).is_empty());

    // The same crash, but the checkpoint after reopening got as far as the
    // archive lines and the task files before dying: the archive of `dir`
    // over the rest of `crashed`.
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crashed.path());
    {
        let store = open_crashy(dir.path());
        store.checkpoint().unwrap();
    }
    copy_dir(&dir.path().join("archive"), &crashed.path().join("archive"));
    assert_eq!(archived(crashed.path()).len(), 3);

    for d in [dir.path(), crashed.path()] {
        let store = open_crashy(d);
        store.checkpoint().unwrap();
        store.checkpoint().unwrap();
        for id in gone {
            assert_eq!(store.get_task(id).unwrap(), None);
        }
        drop(store);
        check_archived(d, &tasks, &gone);
    }
}
