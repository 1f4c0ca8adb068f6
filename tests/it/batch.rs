//! The atomic batch record (kind 9), `Store::transaction`, and the per-task
//! version counter.

use crate::util::*;
use serde_json::json;
use statewal::__internal::fs::Fs;
use statewal::__internal::journal::op::encode_batch_parts;
use statewal::__internal::journal::record::{RecordKind, SegmentHeader, encode_record};
use statewal::sim::SimFs;
use statewal::{ErrorKind, Mutation, Options, RecoveryMode, Store, Task};
use std::sync::Arc;

fn sim_opts() -> Options {
    Options::new("sim")
        .checkpoint_interval(None)
        .checkpoint_on_drop(false)
        .journal_preallocate_bytes(0)
}

fn described(id: &str, description: &str) -> Task {
    let mut t = Task::new(id);
    t.set_description(description);
    t
}

#[test]
fn a_transaction_is_one_record_and_replays_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_crashy(dir.path());
    put_all(&store, &ids("old", 2));
    store.put_session(json!({"id": "s1"})).unwrap();
    let records = store.stats().unwrap().records;
    let seq = store
        .transaction(|tx| {
            tx.put_task(task("n0"))
                .put_task(task("n1"))
                .delete_task("old0")
                // A delete of a task put earlier in the same batch is fine.
                .put_task(task("tmp"))
                .delete_task("tmp")
                .put_session(json!({"id": "s2"}))
                .delete_session("s1");
            Ok(())
        })
        .unwrap();
    assert_eq!(store.stats().unwrap().records, records + 1, "one record");
    assert_eq!(store.stats().unwrap().last_seq, seq);
    let expected = ["n0", "n1", "old1"].map(String::from);
    check_tasks(&store, &expected);
    drop(store); // A crash: no checkpoint, the journal holds the batch.
    let store = open_crashy(dir.path());
    check_tasks(&store, &expected);
    assert_eq!(
        store.list_sessions().unwrap(),
        vec![statewal::Session::new("s2")]
    );
    // Two puts, a session put and the batch: one record however many ops.
    assert_eq!(store.recovery_report().unwrap().records_replayed, 4);
}

#[test]
fn a_refused_batch_journals_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(crash_opts(dir.path()).task_bytes_max(1024)).unwrap();
    store.put_task(task("a")).unwrap();
    let before = (store.stats().unwrap().records, store.list_tasks().unwrap());
    let check = |result: statewal::Result<u64>, kind: ErrorKind| {
        check_err(result, kind);
        assert_eq!(
            (store.stats().unwrap().records, store.list_tasks().unwrap()),
            before
        );
    };
    // A delete of a missing task, after valid puts.
    check(
        store.transaction(|tx| {
            tx.put_task(task("b")).delete_task("missing");
            Ok(())
        }),
        ErrorKind::NotFound,
    );
    // The same task deleted twice.
    check(
        store.transaction(|tx| {
            tx.delete_task("a").delete_task("a");
            Ok(())
        }),
        ErrorKind::NotFound,
    );
    check(
        store.transaction(|tx| {
            tx.put_task(task("b")).put_task(Task::new("../escape"));
            Ok(())
        }),
        ErrorKind::InvalidId,
    );
    check(
        store.transaction(|tx| {
            tx.put_task(task("b"))
                .put_task(described("big", &"x".repeat(2048)));
            Ok(())
        }),
        ErrorKind::TooLarge,
    );
    check(
        store.transaction(|tx| {
            tx.put_task(task("b")).put_session(json!({"no": "id"}));
            Ok(())
        }),
        ErrorKind::InvalidInput,
    );
    // The closure's own error.
    check(
        store.transaction(|tx| {
            tx.put_task(task("b"));
            Err(statewal::Error::new(
                ErrorKind::InvalidInput,
                "changed my mind",
            ))
        }),
        ErrorKind::InvalidInput,
    );
    // Log appends, reports and archiving cannot join a batch.
    let log = Mutation::AppendLog {
        session: "s".into(),
        text: "x".into(),
    };
    check(
        store
            .submit_batch(vec![Mutation::PutTask(task("b")), log])
            .map(|p| p.seq()),
        ErrorKind::InvalidInput,
    );
    // An empty transaction journals nothing.
    assert_eq!(
        store.transaction(|_| Ok(())).unwrap(),
        store.stats().unwrap().last_seq
    );
    assert_eq!(
        (store.stats().unwrap().records, store.list_tasks().unwrap()),
        before
    );
}

#[test]
fn a_batch_over_the_record_payload_cap_is_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_crashy(dir.path());
    let body = "x".repeat(14 * 1024 * 1024);
    let e = store
        .transaction(|tx| {
            for i in 0..5 {
                tx.put_task(described(&format!("t{i}"), &body));
            }
            Ok(())
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    assert!(e.to_string().contains("journal record"), "{e}");
    assert_eq!(store.stats().unwrap().records, 0);
}

// Readers never see half a batch: a batch is applied under the journal's
// ordering lock in one step of the state lock.
#[test]
fn readers_never_see_half_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::open(opts(dir.path()).sync_policy(statewal::SyncPolicy::OsBuffered)).unwrap();
    store
        .transaction(|tx| {
            tx.put_task(described("a", "0"))
                .put_task(described("b", "0"));
            Ok(())
        })
        .unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 1..300 {
                let v = i.to_string();
                store
                    .transaction(|tx| {
                        tx.put_task(described("a", &v)).put_task(described("b", &v));
                        Ok(())
                    })
                    .unwrap();
            }
        });
        for _ in 0..2000 {
            let tasks = store.list_tasks().unwrap();
            assert_eq!(
                tasks[0].description(),
                tasks[1].description(),
                "half a batch"
            );
        }
    });
}

// A batch whose inner op does not decode is damage as a whole: the default
// open refuses it, and salvage skips all of it, never part of it.
#[test]
fn a_batch_with_an_undecodable_op_is_damage_as_a_whole() {
    let fs = SimFs::new(3);
    let store = Store::open_with_fs(sim_opts(), Arc::new(fs.clone()), None).unwrap();
    store.put_task(task("z")).unwrap();
    drop(store);
    let seg = format!("journal/{}", fs.list("journal").unwrap()[0]);
    let bytes = fs.read(&seg).unwrap().unwrap();
    let header = SegmentHeader::decode(&bytes).unwrap();
    let good = serde_json::to_vec(&task("a")).unwrap();
    // A crafted record with a valid checksum: the second op's id is invalid.
    let payload = encode_batch_parts(
        [
            (RecordKind::PutTask, &good[..]),
            (RecordKind::DeleteTask, &b"../z"[..]),
        ]
        .into_iter(),
    );
    let mut record = Vec::new();
    encode_record(&mut record, header.salt, 2, 1, RecordKind::Batch, &payload);
    assert!(fs.corrupt(&seg, |b| b.extend_from_slice(&record)));

    let Err(e) = Store::open_with_fs(sim_opts(), Arc::new(fs.fork()), None) else {
        panic!("the default open took a batch with an undecodable op");
    };
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("batch op 1"), "{e}");
    let store = Store::open_with_fs(
        sim_opts().recovery_mode(RecoveryMode::Salvage),
        Arc::new(fs.clone()),
        None,
    )
    .unwrap();
    check_tasks(&store, &["z".to_string()]);
}

// Versions survive put -> checkpoint -> more puts -> crash -> reopen: the
// checkpoint keeps them in state.json's `task_versions`, replay counts on.
#[test]
fn versions_survive_a_checkpoint_and_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_crashy(dir.path());
    for _ in 0..3 {
        store.put_task(task("a")).unwrap();
    }
    store.put_task(task("b")).unwrap();
    store.checkpoint().unwrap();
    let state = read_json(dir.path().join("state.json"));
    assert_eq!(state["task_versions"], json!({"a": 3, "b": 1}), "{state}");
    let keys: Vec<&String> = state.as_object().unwrap().keys().collect();
    let at = |k: &str| keys.iter().position(|x| *x == k).unwrap();
    assert_eq!(
        at("task_versions") + 1,
        at("checksum"),
        "before the checksum"
    );
    let task_file = std::fs::read_to_string(dir.path().join("tasks/a.json")).unwrap();
    assert!(!task_file.contains("version"), "{task_file}");
    store.put_task(task("a")).unwrap();
    store
        .transaction(|tx| {
            tx.put_task(task("b")).put_task(task("c"));
            Ok(())
        })
        .unwrap();
    drop(store); // A crash: no checkpoint on drop.
    let store = open_crashy(dir.path());
    let versions = ["a", "b", "c"].map(|id| store.task_version(id).unwrap());
    assert_eq!(versions, [Some(4), Some(2), Some(1)]);
    // Again, from state.json alone.
    store.checkpoint().unwrap();
    drop(store);
    let store = open_crashy(dir.path());
    assert_eq!(store.recovery_report().unwrap().records_replayed, 0);
    let versions = ["a", "b", "c"].map(|id| store.task_version(id).unwrap());
    assert_eq!(versions, [Some(4), Some(2), Some(1)]);
}

// A state.json written before versions (no `task_versions`) loads with
// every task at version 1.
#[test]
fn a_state_file_without_versions_starts_them_at_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_crashy(dir.path());
    store.put_task(task("a")).unwrap();
    store.put_task(task("a")).unwrap();
    store.checkpoint().unwrap();
    drop(store);
    let path = dir.path().join("state.json");
    let mut state = read_json(&path);
    let map = state.as_object_mut().unwrap();
    map.remove("task_versions");
    map.remove("checksum"); // Edited by hand: no seal.
    std::fs::write(&path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    let store = open_crashy(dir.path());
    assert_eq!(store.task_version("a").unwrap(), Some(1));
    store.put_task(task("a")).unwrap();
    assert_eq!(store.task_version("a").unwrap(), Some(2));
}

#[test]
fn put_task_if_checks_the_version_under_the_ordering_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_crashy(dir.path());
    store.put_task_if(task("a"), None).unwrap();
    let records = store.stats().unwrap().records;
    check_err(store.put_task_if(task("a"), None), ErrorKind::Conflict);
    check_err(store.put_task_if(task("a"), Some(2)), ErrorKind::Conflict);
    check_err(store.put_task_if(task("new"), Some(1)), ErrorKind::Conflict);
    assert_eq!(
        store.stats().unwrap().records,
        records,
        "a conflict journals nothing"
    );
    store.put_task_if(task("a"), Some(1)).unwrap();
    assert_eq!(store.task_version("a").unwrap(), Some(2));
    // Two writers racing on the same expected version: exactly one wins.
    let wins: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| store.put_task_if(task("a"), Some(2)).is_ok()))
            .collect();
        handles
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum()
    });
    assert_eq!(wins, 1);
    assert_eq!(store.task_version("a").unwrap(), Some(3));
}

// A batch whose record a flush made durable is acknowledged even when a
// later flush fails and poisons the journal before its writer waits; it is
// never taken back out of memory while reopening would show it.
// Regression for the first version of the in-memory undo: it undid any batch
// whose wait returned an error, and the journal reports the poisoning to
// every waiter, durable or not.
#[test]
fn a_durable_batch_is_not_undone_by_a_later_failure() {
    use statewal::sim::{FaultKind, Outcome};
    let fs = SimFs::new(5);
    let store = Store::open_with_fs(sim_opts(), Arc::new(fs.clone()), None).unwrap();
    let pending = store
        .submit_batch(vec![
            Mutation::PutTask(task("a")),
            Mutation::PutTask(task("b")),
        ])
        .unwrap();
    // This put's group commit writes and syncs the batch too.
    store.put_task(task("c")).unwrap();
    fs.fail_at(fs.ops() + 1, FaultKind::Eio, true);
    assert!(
        store.put_task(task("d")).is_err(),
        "the injected fault poisons"
    );
    pending
        .wait()
        .expect("the batch was durable before the failure");
    assert!(store.get_task("a").unwrap().is_some(), "in memory");
    std::mem::forget(store);
    let after = fs.crash_with(|_| Outcome::Lost);
    let store = Store::open_with_fs(sim_opts(), Arc::new(after), None).unwrap();
    check_tasks(&store, &["a", "b", "c"].map(String::from));
}

// A transaction's puts were not stamped under `Options::stamp_times(true)`
// while a plain put was (found when merging the batch and task work); and a
// restore must still put tasks back exactly as the backup holds them.
#[test]
fn transactions_are_stamped_like_puts_and_restores_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        Options::new(dir.path())
            .checkpoint_interval(None)
            .stamp_times(true),
    )
    .unwrap();
    store
        .transaction(|tx| {
            tx.put_task(Task::new("a"));
            Ok(())
        })
        .unwrap();
    let a = store.get_task("a").unwrap().unwrap();
    assert!(
        a.updated_at().is_some() && a.created_at().is_some(),
        "{a:?}"
    );
    store.checkpoint().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2));
    store.put_task(Task::new("a")).unwrap();
    store.checkpoint().unwrap();
    // The second checkpoint turned the first state.json into the newest backup.
    let backup = store.backups().unwrap().into_iter().next().map(|b| b.name);
    let before = store.get_task("a").unwrap().unwrap();
    if let Some(name) = backup {
        store.restore_backup(&name).unwrap();
        assert_eq!(
            store.get_task("a").unwrap().unwrap(),
            a,
            "restored exactly as backed up, not stamped again"
        );
        assert_ne!(before, a);
    } else {
        panic!("the second checkpoint made a backup");
    }
}

// Regression (review of issue 8): on a store opened read-only,
// `transaction` and `put_task_if` skipped the read-only check that every
// other mutation makes. The batch was applied in memory (readers saw it),
// the flush then failed inside the read-only filesystem and poisoned the
// journal, and `put_task_if` left its task in memory with a `Poisoned`
// error, where `Options::read_only` promises `ReadOnly` and no change.
#[test]
fn a_read_only_store_refuses_batches_and_conditional_puts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(opts(dir.path())).unwrap();
    store.put_task(task("a")).unwrap();
    store.shutdown().unwrap();
    let ro = Store::open(opts(dir.path()).read_only(true)).unwrap();
    check_err(
        ro.transaction(|tx| {
            tx.put_task(task("b")).delete_task("a");
            Ok(())
        }),
        ErrorKind::ReadOnly,
    );
    check_err(ro.put_task_if(task("c"), None), ErrorKind::ReadOnly);
    check_err(ro.put_task_if(task("a"), Some(1)), ErrorKind::ReadOnly);
    check_tasks(&ro, &["a".to_string()]);
    assert_eq!(ro.task_version("a").unwrap(), Some(1));
    // Nothing poisoned: the ordinary refusal still names read-only.
    check_err(ro.put_task(task("d")), ErrorKind::ReadOnly);
}

// Regression (review of issue 8): `put_task_if` stored its task unstamped
// under `Options::stamp_times(true)`, unlike `put_task` and transactions.
#[test]
fn put_task_if_is_stamped_like_a_put() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        Options::new(dir.path())
            .checkpoint_interval(None)
            .stamp_times(true),
    )
    .unwrap();
    store.put_task_if(Task::new("a"), None).unwrap();
    let a = store.get_task("a").unwrap().unwrap();
    assert!(
        a.updated_at().is_some() && a.created_at().is_some(),
        "{a:?}"
    );
}
