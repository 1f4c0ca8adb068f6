//! Hand edits of `tasks/<id>.json` made while the store is open (issue 9,
//! part 2: "never overwritten unseen").
//!
//! Regression: the open looked at every task file, but once open, a
//! checkpoint replaced (or, for a task deleted or archived, removed) the
//! file of every task that changed without looking at it: a hand edit
//! made meanwhile (the seed design's troubleshooting says to `nano
//! tasks/task_123.json`) was gone without a trace. A checkpoint now sets
//! such a file aside as `tasks/<id>.json.edited-<ms>`, reports it (a
//! warning and a `state:reconciled` event) and only then writes or removes
//! the task's file. It never imports it (`docs/decisions.md`).

use crate::util::edited_copies;
use serde_json::{Value, json};
use statewal::__internal::fs::{Fs, OpenMode, SimFs};
use statewal::__internal::reconcile::{Action, Decision};
use statewal::sim::FaultKind;
use statewal::{Event, Options, Store, Task, TaskStatus};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn task(id: &str, what: &str) -> Task {
    let mut t = Task::new(id);
    t.set_description(what);
    t
}

/// A store on `dir` whose `state:reconciled` decisions land in the second
/// value.
fn open(dir: &Path) -> (Store, Arc<Mutex<Vec<Decision>>>) {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = heard.clone();
    let store = Store::open_with_subscriber(crate::util::opts(dir), move |e| {
        if let Event::Reconciled(d) = e {
            h.lock().unwrap().extend(d.iter().cloned());
        }
    })
    .unwrap();
    (store, heard)
}

/// Writes `tasks/<id>.json` as a person with an editor would.
fn hand_edit(dir: &Path, id: &str, what: &str) -> Vec<u8> {
    let bytes = serde_json::to_vec_pretty(&json!({"id": id, "description": what})).unwrap();
    std::fs::write(dir.join(format!("tasks/{id}.json")), &bytes).unwrap();
    bytes
}

fn description(path: &Path) -> Value {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["description"].clone()
}

/// The one decision about `id`: set aside, for `why`.
#[track_caller]
fn check_set_aside(heard: &[Decision], id: &str, why: &str) {
    let about: Vec<&Decision> = heard.iter().filter(|d| d.task == id).collect();
    assert_eq!(about.len(), 1, "{heard:?}");
    let d = about[0];
    assert_eq!(d.action, Action::SetAside, "{d}");
    assert!(
        d.other.as_deref().is_some_and(
            |o| o.starts_with(&format!("tasks/{id}.json, now tasks/{id}.json.edited-"))
        ),
        "{d}"
    );
    assert!(d.reason.contains(why), "{d}");
}

#[test]
fn the_checkpoint_of_a_delete_or_an_archive_sets_an_edited_file_aside_rather_than_removing_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (store, heard) = open(dir);
    store.put_task(task("gone", "statewal's")).unwrap();
    let mut old = task("old", "statewal's, finished");
    old.set_status(TaskStatus::Completed);
    old.set("completed_at", "2020-01-01T00:00:00Z").unwrap();
    store.put_task(old).unwrap();
    store.checkpoint().unwrap();
    let gone = hand_edit(dir, "gone", "edited before the delete");
    let archived = hand_edit(dir, "old", "edited before the archive");
    store.delete_task("gone").unwrap();
    let cleaned = store
        .clean(Duration::from_secs(86_400), &[], false)
        .unwrap();
    assert_eq!(cleaned.archived, ["old"]);
    store.checkpoint().unwrap();
    for (id, edit) in [("gone", &gone), ("old", &archived)] {
        assert!(!dir.join(format!("tasks/{id}.json")).exists(), "{id}");
        let kept = edited_copies(dir, id);
        assert_eq!(kept.len(), 1, "{id}: {kept:?}");
        assert_eq!(&std::fs::read(&kept[0]).unwrap(), edit, "{id}");
        check_set_aside(
            &heard.lock().unwrap(),
            id,
            "changed while the store was open",
        );
        check_set_aside(&heard.lock().unwrap(), id, "no longer in the store");
        let kept = heard
            .lock()
            .unwrap()
            .iter()
            .find(|d| d.task == id)
            .unwrap()
            .kept
            .clone();
        assert_eq!(kept, "nothing", "{id}");
    }
    store.shutdown().unwrap();
    // Not imported by the next open either: it is no task file any more.
    let (store, heard) = open(dir);
    assert!(store.recovery_report().unwrap().decisions.is_empty());
    assert!(heard.lock().unwrap().is_empty());
    assert!(store.get_task("gone").unwrap().is_none());
    assert!(store.get_task("old").unwrap().is_none());
}

#[test]
fn a_file_removed_by_hand_is_written_again_and_one_made_by_hand_is_set_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (store, heard) = open(dir);
    store.put_task(task("x", "statewal's")).unwrap();
    store.checkpoint().unwrap();
    // Removed by hand: nothing to keep; the store's copy is written.
    std::fs::remove_file(dir.join("tasks/x.json")).unwrap();
    store.put_task(task("x", "statewal's, later")).unwrap();
    // A task statewal has not written a file for yet, whose file a person
    // made meanwhile.
    store.put_task(task("n", "statewal's new")).unwrap();
    let made = hand_edit(dir, "n", "made by hand");
    store.checkpoint().unwrap();
    assert_eq!(description(&dir.join("tasks/x.json")), "statewal's, later");
    assert!(edited_copies(dir, "x").is_empty());
    assert_eq!(description(&dir.join("tasks/n.json")), "statewal's new");
    let kept = edited_copies(dir, "n");
    assert_eq!(kept.len(), 1);
    assert_eq!(std::fs::read(&kept[0]).unwrap(), made);
    let heard = heard.lock().unwrap().clone();
    assert_eq!(heard.len(), 1, "{heard:?}");
    check_set_aside(&heard, "n", "appeared while the store was open");
    check_set_aside(&heard, "n", "the store's copy is written in its place");
}

#[cfg(unix)]
#[test]
fn a_directory_symlink_or_fifo_put_in_a_task_files_place_while_open_is_set_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let outside = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(outside.path(), b"not statewal's").unwrap();
    let (store, heard) = open(dir);
    for id in ["d", "l", "f"] {
        store.put_task(task(id, "statewal's")).unwrap();
    }
    store.checkpoint().unwrap();
    let file = |id: &str| dir.join(format!("tasks/{id}.json"));
    std::fs::remove_file(file("d")).unwrap();
    std::fs::create_dir(file("d")).unwrap();
    std::fs::remove_file(file("l")).unwrap();
    std::os::unix::fs::symlink(outside.path(), file("l")).unwrap();
    std::fs::remove_file(file("f")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(file("f"))
        .status()
        .unwrap();
    assert!(status.success());
    for id in ["d", "l", "f"] {
        store.put_task(task(id, "statewal's, later")).unwrap();
    }
    // Before: a directory failed every checkpoint from here on, a symlink or
    // FIFO was replaced unseen.
    store.checkpoint().unwrap();
    for id in ["d", "l", "f"] {
        assert_eq!(description(&file(id)), "statewal's, later", "{id}");
        assert_eq!(edited_copies(dir, id).len(), 1, "{id}");
        check_set_aside(&heard.lock().unwrap(), id, "not a regular file");
    }
    assert!(edited_copies(dir, "d")[0].is_dir());
    assert!(
        std::fs::symlink_metadata(&edited_copies(dir, "l")[0])
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read(outside.path()).unwrap(), b"not statewal's");
    store.put_task(task("d", "again")).unwrap();
    store.checkpoint().unwrap();
    assert_eq!(heard.lock().unwrap().len(), 3, "nothing more set aside");
}

fn sim_opts() -> Options {
    Options::new("sim")
        .checkpoint_interval(None)
        .checkpoint_on_drop(false)
        .journal_preallocate_bytes(1024)
}

/// Writes `rel` on a `SimFs`, durably, as an editor would.
fn sim_edit(fs: &SimFs, rel: &str, bytes: &[u8]) {
    fs.remove(rel).unwrap();
    let mut f = fs.open(rel, OpenMode::CreateNew).unwrap();
    f.write_all_at(0, bytes).unwrap();
    f.sync_data().unwrap();
    fs.sync_dir("tasks").unwrap();
}

/// `tasks/` of a `SimFs`: each file's name and description.
fn sim_tasks(fs: &SimFs) -> Vec<(String, Value)> {
    fs.list("tasks")
        .unwrap()
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .map(|n| {
            let bytes = fs.read(&format!("tasks/{n}")).unwrap().unwrap();
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            (n, v["description"].clone())
        })
        .collect()
}

// A checkpoint that fails anywhere (the rename aside, the sync after it,
// any write, rename or sync of its batch), and is then run again: the
// edit is set aside exactly once, the store's copy is written, and no file
// this process wrote is ever taken for an edit (a batch that failed part
// way through its renames leaves new bytes in some files and old ones in
// others; both are the store's). The changes of a failed checkpoint go
// back to the next one, so it still writes the file that was set aside.
#[test]
fn a_checkpoint_that_fails_after_setting_an_edit_aside_is_finished_by_the_next() {
    let edit = serde_json::to_vec_pretty(&json!({"id": "x", "description": "by hand"})).unwrap();
    let setup = || {
        let fs = SimFs::new(7);
        let store = Store::open_with_fs(sim_opts(), Arc::new(fs.clone()), None).unwrap();
        for id in ["w", "x", "y"] {
            store.put_task(task(id, "statewal's")).unwrap();
        }
        store.checkpoint().unwrap();
        sim_edit(&fs, "tasks/x.json", &edit);
        for id in ["w", "x", "y"] {
            store.put_task(task(id, "statewal's, later")).unwrap();
        }
        (fs, store)
    };
    let (probe, store) = setup();
    let start = probe.ops();
    store.checkpoint().unwrap();
    let ops = probe.ops() - start;
    drop(store);
    let mut failed_after_aside = 0;
    for k in 1..=ops {
        for kind in [FaultKind::Eio, FaultKind::ShortWrite] {
            let (fs, store) = setup();
            fs.fail_at(fs.ops() + k, kind, false);
            let first = store.checkpoint();
            let set_aside_first = sim_tasks(&fs).iter().any(|(n, _)| n.contains(".edited-"));
            failed_after_aside += u64::from(first.is_err() && set_aside_first);
            if store.checkpoint().is_err() {
                // The failure poisoned the store (a journal write): a new
                // process opens it, and the open's own check takes over.
                drop(store);
                let again = Store::open_with_fs(sim_opts(), Arc::new(fs.clone()), None).unwrap();
                again.checkpoint().unwrap();
            } else {
                drop(store);
            }
            let got = sim_tasks(&fs);
            let ctx = format!("fault {kind:?} at op {k} of {ops}: {got:?}");
            let edited: Vec<&(String, Value)> =
                got.iter().filter(|(n, _)| n.contains(".edited-")).collect();
            assert_eq!(edited.len(), 1, "{ctx}");
            assert!(edited[0].0.starts_with("x.json.edited-"), "{ctx}");
            assert_eq!(edited[0].1, "by hand", "{ctx}");
            for id in ["w", "x", "y"] {
                let name = format!("{id}.json");
                assert!(
                    got.contains(&(name, json!("statewal's, later"))),
                    "{id}: {ctx}"
                );
            }
        }
    }
    assert!(
        failed_after_aside > 0,
        "no fault fell after the rename aside"
    );
}

// Nothing a process wrote itself is ever set aside, through puts, deletes,
// a restore, an archive and many checkpoints.
#[test]
fn no_checkpoint_sets_aside_a_file_the_store_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (store, heard) = open(dir);
    for round in 0..5 {
        for i in 0..6 {
            store
                .put_task(task(&format!("t{i}"), &format!("round {round}")))
                .unwrap();
        }
        store.delete_task(&format!("t{round}")).unwrap();
        store.checkpoint().unwrap();
    }
    let newest = store.backups().unwrap().into_iter().next().unwrap();
    store.restore_backup(&newest.name).unwrap();
    store.checkpoint().unwrap();
    store.shutdown().unwrap();
    let (store, heard_again) = open(dir);
    store.put_task(task("t5", "after a reopen")).unwrap();
    store.checkpoint().unwrap();
    assert!(
        heard.lock().unwrap().is_empty(),
        "{:?}",
        heard.lock().unwrap()
    );
    assert!(heard_again.lock().unwrap().is_empty());
    assert!(std::fs::read_dir(dir.join("tasks")).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_str()
            .unwrap()
            .contains(".edited-")
    }));
}
