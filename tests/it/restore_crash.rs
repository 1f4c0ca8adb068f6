//! `restore` is all or nothing (issue 8, part 5, last bullet).
//!
//! Regression: `Store::restore_backup` journaled each put and delete of the
//! restore as a record of its own. A restore that failed or was cut by power
//! loss halfway left some of them applied (in memory, and on disk after a
//! tear of the group commit's write) and unacknowledged: a mix of the old
//! state and the backup. The restore is now one `batch` record, validated
//! whole before anything is written.
//!
//! Both tests run a restore on `SimFs` and stop it at every operation: by a
//! crash with every power-loss outcome that matters (all unsynced data lost,
//! all kept, each tear point of each unsynced file, random draws), and by an
//! injected I/O error (EIO, ENOSPC, a short write). Every state reached, in
//! memory and reopened, is the whole old state or the whole backup.

use serde_json::{Value, json};
use statewal::sim::{FaultKind, Outcome, PendingKind, SimFs, TearFill};
use statewal::{ErrorKind, Options, Store, Task};
use std::collections::BTreeMap;
use std::sync::Arc;

fn opts() -> Options {
    Options::new("sim")
        .checkpoint_interval(None)
        .checkpoint_on_drop(false)
        .journal_preallocate_bytes(1024)
}

/// Task id to description, and session records by id.
type View = (BTreeMap<String, String>, BTreeMap<String, Value>);

fn view(store: &Store) -> View {
    let tasks = store
        .list_tasks()
        .unwrap()
        .into_iter()
        .map(|t| {
            (
                t.id().to_string(),
                t.description().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let sessions = store
        .list_sessions()
        .unwrap()
        .into_iter()
        .map(|s| (s.id.clone(), s.to_value()))
        .collect();
    (tasks, sessions)
}

fn described(id: &str, description: &str) -> Task {
    let mut t = Task::new(id);
    t.set_description(description);
    t
}

/// A store whose backup holds state `X` and whose current state is `Y`;
/// returns the filesystem, the store, the backup's name, `Y` and `X`.
fn setup(seed: u64) -> (SimFs, Store, String, View, View) {
    let fs = SimFs::new(seed);
    let store = Store::open_with_fs(opts(), Arc::new(fs.clone()), None).unwrap();
    for id in ["a", "b", "c", "d"] {
        store.put_task(described(id, "x")).unwrap();
    }
    store.put_session(json!({"id": "s", "v": "x"})).unwrap();
    let x_seq = store.checkpoint().unwrap().seq;
    let x = view(&store);
    // Y: an update, two deletes, a new task, a session changed and one added.
    store.put_task(described("a", "y")).unwrap();
    store.delete_task("b").unwrap();
    store.delete_task("c").unwrap();
    store.put_task(described("e", "y")).unwrap();
    store.put_session(json!({"id": "s", "v": "y"})).unwrap();
    store.put_session(json!({"id": "t", "v": "y"})).unwrap();
    store.checkpoint().unwrap();
    let y = view(&store);
    let backup = store
        .backups()
        .unwrap()
        .into_iter()
        .find(|b| b.journal_seq == Some(x_seq))
        .expect("the checkpoint of X became a backup")
        .name;
    (fs, store, backup, y, x)
}

fn reopened(fs: SimFs, ctx: &str) -> View {
    let store = Store::open_with_fs(opts(), Arc::new(fs), None)
        .unwrap_or_else(|e| panic!("{ctx}: the default open failed: {e}"));
    view(&store)
}

fn check_whole(got: &View, old: &View, new: &View, ctx: &str) {
    assert!(
        got == old || got == new,
        "{ctx}: a mix of the old state and the backup\n got: {got:?}\n old: {old:?}\n new: {new:?}"
    );
}

/// The power-loss outcomes tried for one crash point: everything unsynced
/// lost, everything kept, each tear point of each unsynced file cut clean
/// and garbage-filled (the rest lost), and a few random draws.
fn crashes(fs: &SimFs) -> Vec<(String, SimFs)> {
    let mut out = vec![
        (
            "unsynced lost".to_string(),
            fs.crash_with(|_| Outcome::Lost),
        ),
        (
            "unsynced kept".to_string(),
            fs.crash_with(|_| Outcome::Kept),
        ),
    ];
    for item in fs.pending() {
        let PendingKind::FileData { tear_points, .. } = &item.kind else {
            continue;
        };
        for &at in tear_points {
            for fill in [TearFill::Nothing, TearFill::Garbage] {
                let after = fs.crash_with(|other| {
                    if other.index == item.index {
                        Outcome::Torn { at, fill }
                    } else {
                        Outcome::Lost
                    }
                });
                out.push((
                    format!("{} torn at {at} ({fill:?})", item.description),
                    after,
                ));
            }
        }
    }
    for sample in 0..3 {
        out.push((format!("random outcome {sample}"), fs.crash()));
    }
    out
}

#[test]
fn a_restore_cut_by_power_loss_at_any_operation_is_all_or_nothing() {
    let mut states = 0;
    for k in 0.. {
        let (fs, store, backup, old, new) = setup(5);
        fs.crash_after_ops(fs.ops() + k);
        let acked = store.restore_backup(&backup).is_ok();
        let reached_end = !fs.crashed();
        std::mem::forget(store);
        for (how, after) in crashes(&fs) {
            let ctx = format!("crash after {k} ops of restore (acknowledged: {acked}), {how}");
            let got = reopened(after, &ctx);
            check_whole(&got, &old, &new, &ctx);
            if acked {
                assert_eq!(got, new, "{ctx}: the restore returned, yet was undone");
            }
            states += 1;
        }
        if reached_end {
            assert!(
                acked,
                "restore ran to the end without a crash, so it returned Ok"
            );
            break;
        }
    }
    println!("restore crash states checked: {states}, violations: 0");
}

#[test]
fn an_io_failure_at_any_operation_of_a_restore_is_all_or_nothing() {
    let mut cases = 0;
    for kind in [FaultKind::Eio, FaultKind::Enospc, FaultKind::ShortWrite] {
        for k in 1.. {
            let (fs, store, backup, old, new) = setup(9);
            fs.fail_at(fs.ops() + k, kind, false);
            let result = store.restore_backup(&backup);
            let reached = fs.ops();
            let ctx = format!("{kind:?} at op {k} of restore ({result:?})");
            let in_memory = view(&store);
            check_whole(&in_memory, &old, &new, &format!("{ctx}, in memory"));
            // A failure before the batch record is written changes nothing,
            // in memory or on disk. A failure writing or syncing it leaves
            // memory as it was too: the batch is taken back before the
            // error is returned. Only the checkpoint after a durable batch
            // can fail with the restore applied, and it says so.
            let applied = match &result {
                Ok(_) => true,
                Err(e) => e.to_string().contains("the restore is applied and durable"),
            };
            let expected = if applied { &new } else { &old };
            assert_eq!(&in_memory, expected, "{ctx}: memory");
            std::mem::forget(store);
            fs.clear_faults();
            for (how, after) in [
                ("unsynced lost", fs.crash_with(|_| Outcome::Lost)),
                ("unsynced kept", fs.crash_with(|_| Outcome::Kept)),
            ] {
                let ctx = format!("{ctx}, reopened with {how}");
                let got = reopened(after, &ctx);
                check_whole(&got, &old, &new, &ctx);
                if applied {
                    assert_eq!(got, new, "{ctx}: the applied restore was undone");
                }
            }
            cases += 1;
            if k > reached {
                break; // The fault was never reached: the whole restore ran.
            }
        }
    }
    println!("restore I/O failure cases checked: {cases}");
}

// A backup too large for one journal record is refused before anything is
// written, and a restore of a missing or invalid backup changes nothing.
#[test]
fn a_refused_restore_changes_nothing() {
    let (fs, store, _backup, old, _new) = setup(3);
    let before = fs.ops();
    let e = store.restore_backup("20990101T000000.000000Z").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert_eq!(view(&store), old);
    assert!(fs.ops() - before < 10, "a missing backup writes nothing");
}
