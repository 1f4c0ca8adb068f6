//! Ids name files, so a hostile id must never reach the filesystem, and a
//! planted symlink must never be followed.

use crate::util::*;
use serde_json::json;
use statewal::{ErrorKind, Mutation, Store, Task};

const HOSTILE: [&str; 9] = [
    "../x",
    "/etc/passwd",
    "a\0b",
    "..",
    ".",
    "a/b",
    "C:x",
    "..\\x",
    "",
];

fn hostile_ids() -> Vec<String> {
    let mut out: Vec<String> = HOSTILE.iter().map(|s| s.to_string()).collect();
    out.push("x".repeat(200));
    out
}

// Guards: every entry point that takes an id refuses a hostile one with
// InvalidId, journals nothing, and creates nothing outside the directory.
#[test]
fn hostile_ids_are_refused_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let store = Store::open(crash_opts(&dir)).unwrap();
    store.put_task(task("victim")).unwrap();
    store.put_session(json!({"id": "s1"})).unwrap();
    store.checkpoint().unwrap();
    let outside_before = tree(tmp.path())
        .into_iter()
        .filter(|p| !p.starts_with("state"))
        .collect::<Vec<_>>();
    let inside_before = tree(&dir);
    let records_before = store.stats().unwrap().records;

    for id in hostile_ids() {
        let what = format!("id {id:?}");
        check_err(store.put_task(Task::new(id.clone())), ErrorKind::InvalidId);
        check_err(store.delete_task(&id), ErrorKind::InvalidId);
        check_err(store.get_task(&id), ErrorKind::InvalidId);
        check_err(store.append_log(&id, "text"), ErrorKind::InvalidId);
        check_err(
            store.save_report(&id, json!({"r": 1})),
            ErrorKind::InvalidId,
        );
        check_err(store.put_session(json!({"id": id})), ErrorKind::InvalidId);
        check_err(store.delete_session(&id), ErrorKind::InvalidId);
        check_err(
            store
                .submit(Mutation::PutTask(Task::new(id.clone())))
                .map(|p| p.seq()),
            ErrorKind::InvalidId,
        );
        assert_eq!(
            store.stats().unwrap().records,
            records_before,
            "{what} was journaled"
        );
    }
    store.checkpoint().unwrap();
    drop(store);

    let outside_after = tree(tmp.path())
        .into_iter()
        .filter(|p| !p.starts_with("state"))
        .collect::<Vec<_>>();
    assert_eq!(
        outside_after, outside_before,
        "files appeared outside the state directory"
    );
    // Inside, only checkpoint bookkeeping may change: a new state.json backup
    // and journal segments, never a file named after a hostile id.
    let new_inside: Vec<_> = tree(&dir).difference(&inside_before).cloned().collect();
    for p in &new_inside {
        let s = p.to_string_lossy();
        assert!(
            s.starts_with("state.backup.") || s.starts_with("journal"),
            "unexpected new file {s}"
        );
    }
    let store = Store::open(crash_opts(&dir)).unwrap();
    assert_eq!(task_ids(&store), ["victim".to_string()].into());
}

// Guards: ids at the edges of what is allowed still work (the check is not
// simply "refuse anything unusual").
#[test]
fn longest_and_unicode_ids_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let ok = [
        "x".repeat(128),
        "é-ünïcode".to_string(),
        "a.b".to_string(),
        "550e8400-e29b-41d4".to_string(),
    ];
    let store = open_crashy(dir.path());
    put_all(&store, &ok);
    store.checkpoint().unwrap();
    drop(store);
    let store = open_crashy(dir.path());
    check_tasks(&store, &ok);
    for id in &ok {
        assert!(
            dir.path()
                .join("tasks")
                .join(format!("{id}.json"))
                .is_file(),
            "{id}"
        );
    }
}

#[cfg(unix)]
mod symlinks {
    use super::*;
    use std::os::unix::fs::symlink;

    // Guards: a symlink planted as tasks/<id>.json pointing outside the
    // directory is replaced, not followed: the target is unchanged after a
    // put and a checkpoint, and after a delete and a checkpoint.
    #[test]
    fn planted_task_symlink_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let victim = tmp.path().join("victim.json");
        std::fs::write(&victim, b"ORIGINAL").unwrap();

        let store = Store::open(crash_opts(&dir)).unwrap();
        symlink(&victim, dir.join("tasks/t1.json")).unwrap();
        symlink(&victim, dir.join("tasks/t2.json")).unwrap();
        store.put_task(task("t1")).unwrap();
        store.put_task(task("t2")).unwrap();
        store.checkpoint().unwrap();
        assert_eq!(
            std::fs::read(&victim).unwrap(),
            b"ORIGINAL",
            "the checkpoint wrote through a symlink"
        );
        assert!(
            !std::fs::symlink_metadata(dir.join("tasks/t1.json"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(read_json(dir.join("tasks/t1.json"))["id"], "t1");

        // Plant again, then delete: the link goes, the target stays.
        std::fs::remove_file(dir.join("tasks/t2.json")).unwrap();
        symlink(&victim, dir.join("tasks/t2.json")).unwrap();
        store.delete_task("t2").unwrap();
        store.checkpoint().unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"ORIGINAL");
        assert!(victim.exists());
    }

    // Guards: symlinks planted as a temp file, a report and a session log are
    // not followed either; a checkpoint may fail on them but never writes the
    // target.
    #[test]
    fn planted_symlinks_elsewhere_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let victim = tmp.path().join("victim.txt");
        std::fs::write(&victim, b"ORIGINAL").unwrap();

        let store = Store::open(crash_opts(&dir)).unwrap();
        symlink(&victim, dir.join("tasks/.t1.json.tmp")).unwrap();
        symlink(&victim, dir.join("reports/report_r1.json")).unwrap();
        store.put_task(task("t1")).unwrap();
        store.save_report("r1", json!({"ok": true})).unwrap();
        store.checkpoint().unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"ORIGINAL");
        assert_eq!(read_json(dir.join("reports/report_r1.json"))["ok"], true);

        symlink(&victim, dir.join("logs/session_s1.log")).unwrap();
        let _ = store.append_log("s1", "INJECTED");
        let _ = store.checkpoint();
        assert_eq!(
            std::fs::read(&victim).unwrap(),
            b"ORIGINAL",
            "a log append wrote through a symlink"
        );
    }

    // Guards: a state directory whose tasks/ is a symlink to elsewhere is
    // refused at open rather than written through.
    #[test]
    fn symlinked_subdirectory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        symlink(&elsewhere, dir.join("tasks")).unwrap();
        assert!(
            try_open(crash_opts(&dir)).is_err(),
            "opened a store whose tasks/ is a symlink"
        );
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    // Regression (review of issue 8): the read-only open (and `list`,
    // `verify`, `metrics` with it) followed a tasks/ that is a symlink to
    // elsewhere and loaded the task files found there as the store's own,
    // where the writable open refuses the same directory.
    #[test]
    fn read_only_open_refuses_a_symlinked_subdirectory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("evil.json"), r#"{"id":"evil"}"#).unwrap();
        std::fs::create_dir(dir.join("journal")).unwrap(); // It holds a store.
        symlink(&elsewhere, dir.join("tasks")).unwrap();
        match Store::open(crash_opts(&dir).read_only(true)) {
            Ok(store) => assert!(
                store.list_tasks().unwrap().is_empty(),
                "loaded a task from outside the directory: {:?}",
                store.list_tasks().unwrap()
            ),
            Err(e) => assert!(e.to_string().contains("symlink"), "{e}"),
        }
    }
}
