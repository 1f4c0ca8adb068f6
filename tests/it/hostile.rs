//! Issue 8, part 5: no panics and no silent stops on hostile input.
//!
//! Each test names the bug it guards against.

use crate::util::{opts, run_statewal, state_file_task_ids, task};
use statewal::Store;
use std::time::{Duration, Instant};

/// Puts a completed task last changed in 2020, old enough for any sane age.
fn seed_old_task(store: &Store, id: &str) {
    let t = serde_json::from_value(serde_json::json!({
        "id": id, "status": "completed", "completed_at": "2020-01-01T00:00:00.000Z",
    }))
    .unwrap();
    store.put_task(t).unwrap();
}

/// Waits up to 20 s for `cond`.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// Bug: a backup named `state.backup.99991231T235959.999999Z.json` made the
// next backup stamp overflow, so every checkpoint panicked and the auto-save
// thread died: nothing was checkpointed again until a restart.
#[test]
fn the_last_backup_stamp_there_is_neither_panics_nor_stops_auto_save() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = Store::open(opts(&dir)).unwrap();
    store.put_task(task("a")).unwrap();
    store.checkpoint().unwrap();
    drop(store);
    let planted = dir.join("state.backup.99991231T235959.999999Z.json");
    std::fs::copy(dir.join("state.json"), &planted).unwrap();

    let store =
        Store::open(opts(&dir).checkpoint_interval(Some(Duration::from_millis(20)))).unwrap();
    for id in ["b", "c"] {
        store.put_task(task(id)).unwrap();
        // The auto-save thread checkpoints each put: it is still alive after
        // the first checkpoint that had to back up past the last stamp.
        eventually(&format!("auto-save to checkpoint task {id}"), || {
            state_file_task_ids(&dir).contains(id)
        });
    }
    store.put_task(task("d")).unwrap();
    store.checkpoint().unwrap();
    store.shutdown().unwrap();
    assert!(planted.exists());
    let backups = crate::util::backups(&dir);
    assert!(backups.len() >= 2, "{backups:?}");
}

// Bug: `Store::clean` with a huge `Duration` panicked on `now - older_than`,
// and so did `statewal clean --older-than 1000000w`.
#[test]
fn huge_clean_ages_neither_panic_nor_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = Store::open(opts(&dir)).unwrap();
    seed_old_task(&store, "old");
    let report = store.clean(Duration::MAX, &[], false).unwrap();
    assert!(report.archived.is_empty(), "{report:?}");
    let report = store
        .clean(Duration::from_secs(1_000_000 * 7 * 86_400), &[], false)
        .unwrap();
    assert!(report.archived.is_empty(), "{report:?}");
    store.shutdown().unwrap();

    let out = run_statewal(&dir, &["clean", "--older-than", "1000000w"], "", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("1000000w") && stderr.contains("out of range"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let out = run_statewal(
        &dir,
        &["clean", "--older-than", "52w", "--dry-run"],
        "",
        &[],
    );
    assert!(out.status.success(), "{out:?}");
}
