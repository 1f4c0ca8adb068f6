//! A corrupt `state.json` costs nothing: the newest valid backup plus the
//! journal rebuild the state, and failing that, the per-task files.

use crate::util::*;
use statewal::Store;
use statewal::report::LoadedFrom;
use std::path::Path;

const GARBAGE: &[u8] = b"{\"version\": \"1.0.0\", \"tasks\": [ this is not json";

/// Two checkpoints and writes after each, then a crash: `state.json` covers
/// the second checkpoint, one backup the first, and the journal the rest.
/// Returns the ids that were acknowledged, in the store at the crash.
fn two_checkpoints_then_crash(dir: &Path) -> Vec<String> {
    let store = open_crashy(dir);
    put_all(&store, &ids("a", 3));
    store.checkpoint().unwrap();
    put_all(&store, &ids("b", 3));
    store.delete_task("a0").unwrap();
    store.checkpoint().unwrap();
    put_all(&store, &ids("c", 3));
    store.delete_task("b1").unwrap();
    drop(store);
    assert_eq!(backups(dir).len(), 1);
    vec!["a1", "a2", "b0", "b2", "c0", "c1", "c2"]
        .into_iter()
        .map(String::from)
        .collect()
}

// Guards: with state.json corrupt, the store loads the newest valid backup
// and replays the journal past it, so no acknowledged write is lost; the
// corrupt file is reported and replaced by a good checkpoint at once.
#[test]
fn corrupt_state_json_falls_back_to_backup_and_journal() {
    let dir = tempfile::tempdir().unwrap();
    let expected = two_checkpoints_then_crash(dir.path());
    let backup = backups(dir.path()).pop().unwrap();
    std::fs::write(dir.path().join("state.json"), GARBAGE).unwrap();

    let store = open_crashy(dir.path());
    let report = store.recovery_report().unwrap().clone();
    let backup_name = backup.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(report.loaded_from, LoadedFrom::Backup(backup_name));
    assert!(
        report.skipped_files.iter().any(|s| s.file == "state.json"),
        "{:?}",
        report.skipped_files
    );
    check_tasks(&store, &expected);
    drop(store);

    // The fallback checkpointed: state.json is valid again and the garbage
    // never became a backup.
    assert_eq!(
        state_file_task_ids(dir.path()),
        expected.iter().cloned().collect()
    );
    for b in backups(dir.path()) {
        assert_ne!(
            std::fs::read(&b).unwrap(),
            GARBAGE,
            "corrupt state.json copied to {}",
            b.display()
        );
        read_json(&b);
    }
    let store = open_crashy(dir.path());
    assert_eq!(
        store.recovery_report().unwrap().loaded_from,
        LoadedFrom::StateFile
    );
    check_tasks(&store, &expected);
}

// Guards: with state.json and every backup corrupt, the store loads the
// per-task files and replays the journal on top of them.
#[test]
fn all_state_files_corrupt_falls_back_to_task_files() {
    let dir = tempfile::tempdir().unwrap();
    let expected = two_checkpoints_then_crash(dir.path());
    std::fs::write(dir.path().join("state.json"), GARBAGE).unwrap();
    for b in backups(dir.path()) {
        std::fs::write(b, b"[]").unwrap();
    }

    let store = open_crashy(dir.path());
    let report = store.recovery_report().unwrap().clone();
    assert_eq!(report.loaded_from, LoadedFrom::LayoutFiles);
    assert!(
        report.skipped_files.len() >= 2,
        "{:?}",
        report.skipped_files
    );
    check_tasks(&store, &expected);
}

// Guards: 13 checkpoints leave at most 10 backups (the default), each of them
// a valid state file.
#[test]
fn backups_are_pruned_to_the_configured_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_crashy(dir.path());
    for i in 0..13 {
        store.put_task(task(&format!("t{i}"))).unwrap();
        store.checkpoint().unwrap();
    }
    drop(store);
    let found = backups(dir.path());
    assert!(
        !found.is_empty() && found.len() <= 10,
        "{} backups: {found:?}",
        found.len()
    );
    for b in &found {
        let state = read_json(b);
        assert!(
            state["tasks"].is_array(),
            "{} is not a state file",
            b.display()
        );
    }
    // The newest backup is the checkpoint before the last: 12 tasks.
    let newest = read_json(found.last().unwrap());
    assert_eq!(newest["tasks"].as_array().unwrap().len(), 12);
}

// Guards: a checkpoint taken while state.json is corrupt does not rename the
// corrupt file into a backup (it would push a good backup out).
#[test]
fn checkpoint_does_not_back_up_a_corrupt_state_json() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_crashy(dir.path());
    store.put_task(task("a")).unwrap();
    store.checkpoint().unwrap();
    store.put_task(task("b")).unwrap();
    store.checkpoint().unwrap();
    let before = backups(dir.path());
    assert_eq!(before.len(), 1);

    std::fs::write(dir.path().join("state.json"), GARBAGE).unwrap();
    store.put_task(task("c")).unwrap();
    store.checkpoint().unwrap();
    assert_eq!(
        backups(dir.path()),
        before,
        "the corrupt state.json became a backup"
    );
    for b in backups(dir.path()) {
        assert_ne!(std::fs::read(&b).unwrap(), GARBAGE);
    }
    assert_eq!(
        state_file_task_ids(dir.path()),
        ["a", "b", "c"].map(String::from).into()
    );
    drop(store);

    let store = Store::open(crash_opts(dir.path())).unwrap();
    assert_eq!(
        store.recovery_report().unwrap().loaded_from,
        LoadedFrom::StateFile
    );
    check_tasks(&store, &["a", "b", "c"].map(String::from));
}
