//! Acknowledged writes survive a reopen, from the journal alone or from a
//! checkpoint.

use crate::util::*;
use statewal::Store;
use statewal::report::LoadedFrom;

// Guards: every acknowledged put and delete survives a crash (no checkpoint,
// so the journal is the only copy) and is replayed on the next open.
#[test]
fn puts_and_deletes_survive_crash_via_journal_replay() {
    let dir = tempfile::tempdir().unwrap();
    let all = ids("t", 20);
    let store = open_crashy(dir.path());
    put_all(&store, &all);
    store.delete_task("t3").unwrap();
    store.delete_task("t17").unwrap();
    // Overwrite one task so replay order matters.
    let mut t5 = task("t5");
    t5.set_description("second version");
    store.put_task(t5.clone()).unwrap();
    let last_seq = store.stats().unwrap().last_seq;
    drop(store);
    assert!(
        !dir.path().join("state.json").exists(),
        "a crash must not leave a checkpoint behind"
    );

    let store = open_crashy(dir.path());
    let report = store.recovery_report().unwrap();
    assert_eq!(report.loaded_from, LoadedFrom::Empty);
    assert_eq!(
        report.records_replayed, 23,
        "20 puts, 2 deletes, 1 overwrite"
    );
    assert_eq!(report.last_seq, last_seq);
    let expected: Vec<String> = all
        .iter()
        .filter(|id| *id != "t3" && *id != "t17")
        .cloned()
        .collect();
    assert_eq!(task_ids(&store), expected.iter().cloned().collect());
    assert_eq!(store.get_task("t5").unwrap(), Some(t5));
    assert_eq!(store.get_task("t3").unwrap(), None);
    // New writes continue the sequence rather than reuse numbers.
    let seq = store.put_task(task("after")).unwrap();
    assert!(
        seq > last_seq,
        "sequence numbers must grow across a reopen: {seq} <= {last_seq}"
    );
}

// Guards: after a checkpoint the next open reads the tasks from state.json
// and replays nothing, and state.json holds exactly the acknowledged tasks
// and the journal position it covers.
#[test]
fn reopen_after_checkpoint_reads_state_json() {
    let dir = tempfile::tempdir().unwrap();
    let all = ids("t", 12);
    let store = open_crashy(dir.path());
    put_all(&store, &all);
    store.delete_task("t0").unwrap();
    let stats = store.checkpoint().unwrap();
    let last_seq = store.stats().unwrap().last_seq;
    assert_eq!(stats.seq, last_seq);
    drop(store);

    let expected: Vec<String> = all[1..].to_vec();
    assert_eq!(
        state_file_task_ids(dir.path()),
        expected.iter().cloned().collect()
    );
    let state = read_json(dir.path().join("state.json"));
    assert_eq!(state["journal_seq"].as_u64(), Some(last_seq));
    assert_eq!(state["metrics"]["total_tasks"].as_u64(), Some(11));
    for id in &expected {
        let file = read_json(dir.path().join("tasks").join(format!("{id}.json")));
        assert_eq!(file["description"], format!("description of {id}"));
    }
    assert!(
        !dir.path().join("tasks/t0.json").exists(),
        "a deleted task's file must go"
    );

    let store = open_crashy(dir.path());
    let report = store.recovery_report().unwrap();
    assert_eq!(report.loaded_from, LoadedFrom::StateFile);
    assert_eq!(report.records_replayed, 0);
    assert_eq!(report.checkpoint_seq, last_seq);
    assert_eq!(report.tasks_loaded, 11);
    check_tasks(&store, &expected);
}

// Guards: writes after a checkpoint are replayed on top of it, and a clean
// shutdown (checkpoint on drop, the default) leaves nothing to replay.
#[test]
fn writes_after_checkpoint_replay_on_top_and_shutdown_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_crashy(dir.path());
    put_all(&store, &ids("a", 5));
    store.checkpoint().unwrap();
    put_all(&store, &ids("b", 4));
    store.delete_task("a1").unwrap();
    drop(store);

    let mut expected: Vec<String> = ids("a", 5).into_iter().filter(|id| id != "a1").collect();
    expected.extend(ids("b", 4));
    let store = Store::open(opts(dir.path())).unwrap();
    assert_eq!(
        store.recovery_report().unwrap().loaded_from,
        LoadedFrom::StateFile
    );
    assert_eq!(store.recovery_report().unwrap().records_replayed, 5);
    check_tasks(&store, &expected);
    store.shutdown().unwrap();

    let store = open_crashy(dir.path());
    assert_eq!(store.recovery_report().unwrap().records_replayed, 0);
    check_tasks(&store, &expected);
    assert_eq!(
        state_file_task_ids(dir.path()),
        expected.iter().cloned().collect()
    );
}
