//! Tasks: put, get, delete, list, versions, conditional puts, batches,
//! archiving, reopening, stats and health, read-only opens, and the
//! journal's own operations.

use super::{Backend, ids};
use crate::util::check_err;
use statewal::{ErrorKind, Mutation, Store, Task, TaskStatus};
use std::time::Duration;

/// A task with a description derived from its id, so a test can tell
/// which write came back.
fn task(id: &str) -> Task {
    let mut t = Task::new(id);
    t.set_description(format!("description of {id}"));
    t
}

pub fn put_then_get(b: &Backend) {
    let store = b.open();
    assert!(store.get_task("a").unwrap().is_none());
    store.put_task(task("b")).unwrap();
    store.put_task(task("a")).unwrap();
    assert_eq!(store.get_task("a").unwrap(), Some(task("a")));
    // A put replaces the whole task (last writer wins).
    store.put_task(Task::new("a")).unwrap();
    assert_eq!(store.get_task("a").unwrap(), Some(Task::new("a")));
    assert_eq!(ids(&store.list_tasks().unwrap()), ["a", "b"]);
    let loaded = store.load_tasks().unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(ids(&loaded.collect::<Vec<_>>()), ["a", "b"]);
    store.delete_task("a").unwrap();
    assert!(store.get_task("a").unwrap().is_none());
    assert_eq!(ids(&store.list_tasks().unwrap()), ["b"]);
}

/// `../shared/CONTRACTS.md` section 2: keys in the writer's order, the
/// original strings (timestamps), unicode and numbers as written, through
/// every read.
pub fn the_json_is_kept_byte_exact(b: &Backend) {
    let store = b.open();
    let json = r#"{"z":1,"id":"t1","updated_at":"2024-01-01T10:00:00.000Z","created_at":"2024-01-01T11:00:00+01:00","a":{"y":2,"b":[1,"x",null,true]},"status":"in_progress","note":"héllo ✓ 𝄞 \"q\" \\ \n","big":12345678901234567890,"f":1.5e-7}"#;
    let put = Task::from_json(json.as_bytes()).unwrap();
    store.put_task(put).unwrap();
    let text = |t: Task| String::from_utf8(t.to_json()).unwrap();
    assert_eq!(text(store.get_task("t1").unwrap().unwrap()), json);
    assert_eq!(text(store.list_tasks().unwrap().remove(0)), json);
    assert_eq!(text(store.load_tasks().unwrap().next().unwrap()), json);
    let queried = store.query_tasks(&Default::default()).unwrap();
    assert_eq!(text(queried.into_iter().next().unwrap()), json);
    let t = store.get_task("t1").unwrap().unwrap();
    assert_eq!(t.updated_at_str(), Some("2024-01-01T10:00:00.000Z"));
    assert_eq!(t.status(), TaskStatus::InProgress);
    drop((store, t));
    let store = b.open();
    assert_eq!(text(store.get_task("t1").unwrap().unwrap()), json);
}

pub fn versions_count_puts(b: &Backend) {
    let store = b.open();
    assert_eq!(store.task_version("v").unwrap(), None);
    store.put_task(task("v")).unwrap();
    assert_eq!(store.task_version("v").unwrap(), Some(1));
    store.put_task(task("v")).unwrap();
    assert_eq!(store.task_version("v").unwrap(), Some(2));
    store.put_task_if(task("v"), Some(2)).unwrap();
    assert_eq!(store.task_version("v").unwrap(), Some(3));
    // A batch's puts count one each.
    store
        .transaction(|tx| {
            tx.put_task(task("v"))
                .put_task(task("v"))
                .put_task(task("w"));
            Ok(())
        })
        .unwrap();
    assert_eq!(store.task_version("v").unwrap(), Some(5));
    assert_eq!(store.task_version("w").unwrap(), Some(1));
    // The version is metadata, never a key of the task.
    let v = store.get_task("v").unwrap().unwrap();
    assert_eq!(v, task("v"));
    let json = serde_json::to_value(v).unwrap();
    assert!(json.get("version").is_none() && json.get("task_version").is_none());
    // A delete forgets it: put again, a task starts over.
    store.delete_task("v").unwrap();
    assert_eq!(store.task_version("v").unwrap(), None);
    store.put_task(task("v")).unwrap();
    assert_eq!(store.task_version("v").unwrap(), Some(1));
    drop(store);
    let store = b.open();
    assert_eq!(store.task_version("v").unwrap(), Some(1));
    assert_eq!(store.task_version("w").unwrap(), Some(1));
}

pub fn put_task_if_conflicts_and_writes_nothing(b: &Backend) {
    let store = b.open();
    store.put_task_if(task("x"), None).unwrap();
    assert_eq!(store.task_version("x").unwrap(), Some(1));
    let mut stale = Task::new("x");
    stale.set_description("stale");
    for expected in [None, Some(2), Some(0)] {
        let msg = check_err(
            store.put_task_if(stale.clone(), expected),
            ErrorKind::Conflict,
        );
        assert!(msg.contains("version 1"), "{}: {msg}", b.name);
        assert!(msg.contains("nothing was written"), "{}: {msg}", b.name);
    }
    check_err(store.put_task_if(task("y"), Some(1)), ErrorKind::Conflict);
    assert_eq!(store.task_version("x").unwrap(), Some(1));
    assert_eq!(store.get_task("x").unwrap(), Some(task("x")));
    assert!(store.get_task("y").unwrap().is_none());
    assert_eq!(store.stats().unwrap().tasks, 1);
    store.put_task_if(stale.clone(), Some(1)).unwrap();
    assert_eq!(store.get_task("x").unwrap(), Some(stale));
    assert_eq!(store.task_version("x").unwrap(), Some(2));
}

pub fn deleting_what_is_missing_is_not_found(b: &Backend) {
    let store = b.open();
    check_err(store.delete_task("nobody"), ErrorKind::NotFound);
    check_err(store.delete_session("nobody"), ErrorKind::NotFound);
    check_err(store.archive_task("nobody"), ErrorKind::NotFound);
    store.put_task(task("t")).unwrap();
    store.delete_task("t").unwrap();
    check_err(store.delete_task("t"), ErrorKind::NotFound);
    assert_eq!(store.stats().unwrap().tasks, 0);
}

/// A batch with one bad member writes none of it, whatever the member's
/// fault; a good batch writes all of it.
pub fn a_batch_is_all_or_nothing(b: &Backend) {
    let store = b.open_with(|o| o.task_bytes_max(300));
    store.put_task(task("draft")).unwrap();
    store.put_session(serde_json::json!({"id": "s0"})).unwrap();
    let mut big = Task::new("big");
    big.set_description("x".repeat(300));
    let bad_members = [
        (Mutation::DeleteTask("missing".into()), ErrorKind::NotFound),
        (
            Mutation::DeleteSession("missing".into()),
            ErrorKind::NotFound,
        ),
        (Mutation::PutTask(Task::new("a/b")), ErrorKind::InvalidId),
        (Mutation::PutTask(big), ErrorKind::TooLarge),
        (
            Mutation::PutSession(serde_json::json!({"pid": 1})),
            ErrorKind::InvalidInput,
        ),
        (
            Mutation::ArchiveTask("draft".into()),
            ErrorKind::InvalidInput,
        ),
    ];
    let before = store.stats().unwrap().last_seq;
    for (bad, kind) in bad_members {
        let r = store.transaction(|tx| {
            tx.put_task(task("final"))
                .delete_task("draft")
                .put_session(serde_json::json!({"id": "s1"}))
                .delete_session("s0");
            match bad.clone() {
                Mutation::PutTask(t) => tx.put_task(t),
                Mutation::DeleteTask(id) => tx.delete_task(id),
                Mutation::PutSession(s) => tx.put_session(s),
                Mutation::DeleteSession(id) => tx.delete_session(id),
                _ => return Err(statewal::Error::new(kind, "refused by the closure")),
            };
            Ok(())
        });
        let msg = check_err(r, kind);
        if kind == ErrorKind::NotFound {
            assert!(msg.contains("nothing in the batch was written"), "{msg}");
        }
        assert!(store.get_task("final").unwrap().is_none(), "{bad:?}");
        assert_eq!(store.get_task("draft").unwrap(), Some(task("draft")));
        assert!(store.get_session("s1").unwrap().is_none(), "{bad:?}");
        assert!(store.get_session("s0").unwrap().is_some(), "{bad:?}");
    }
    let after = store.stats().unwrap().last_seq;
    if b.failed_writes_take_positions {
        assert!(after >= before, "{}: positions went back", b.name);
    } else {
        assert_eq!(after, before, "{}: a refused batch took a position", b.name);
    }
    assert_eq!(store.task_version("draft").unwrap(), Some(1));
    // A delete of what the batch put earlier is fine.
    let seq = store
        .transaction(|tx| {
            tx.put_task(task("final"))
                .delete_task("draft")
                .put_task(task("tmp"))
                .delete_task("tmp");
            Ok(())
        })
        .unwrap();
    assert!(seq > before);
    assert_eq!(ids(&store.list_tasks().unwrap()), ["final"]);
    assert_eq!(
        store.transaction(|_| Ok(())).unwrap(),
        seq,
        "an empty batch writes nothing and returns the last position"
    );
}

pub fn archived_tasks_are_gone(b: &Backend) {
    let store = b.open();
    store.put_task(task("old")).unwrap();
    store.put_task(task("new")).unwrap();
    store.archive_task("old").unwrap();
    assert!(store.get_task("old").unwrap().is_none());
    assert_eq!(store.task_version("old").unwrap(), None);
    assert_eq!(ids(&store.list_tasks().unwrap()), ["new"]);
    check_err(store.archive_task("old"), ErrorKind::NotFound);
    check_err(store.delete_task("old"), ErrorKind::NotFound);
    drop(store);
    let store = b.open();
    assert!(store.get_task("old").unwrap().is_none());
    assert_eq!(store.stats().unwrap().tasks, 1);
}

pub fn data_survives_close_and_reopen(b: &Backend) {
    let store = b.open();
    store.put_task(task("a")).unwrap();
    store.put_task(task("b")).unwrap();
    store.delete_task("b").unwrap();
    store
        .put_session(serde_json::json!({"id": "s", "z": 1, "a": 2}))
        .unwrap();
    store.append_log("s", "line one\n").unwrap();
    store
        .save_report("r", serde_json::json!({"ok": true}))
        .unwrap();
    store.shutdown().unwrap();
    let store = b.open();
    assert_eq!(ids(&store.list_tasks().unwrap()), ["a"]);
    assert_eq!(store.get_task("a").unwrap(), Some(task("a")));
    assert_eq!(store.task_version("a").unwrap(), Some(1));
    let s = store.get_session("s").unwrap().unwrap();
    assert_eq!(s.extra.keys().collect::<Vec<_>>(), ["z", "a"]);
    assert_eq!(store.read_log("session_s.log", ..).unwrap(), b"line one\n");
    assert_eq!(
        store.get_report("r").unwrap(),
        Some(serde_json::json!({"ok": true}))
    );
    // Dropped without `shutdown` too.
    store.put_task(task("c")).unwrap();
    drop(store);
    assert_eq!(ids(&b.open().list_tasks().unwrap()), ["a", "c"]);
}

pub fn stats_and_health(b: &Backend) {
    let store = b.open();
    let fresh = store.stats().unwrap();
    assert_eq!((fresh.tasks, fresh.records), (0, 0));
    let s1 = store.put_task(task("a")).unwrap();
    let s2 = store.put_task(task("b")).unwrap();
    let s3 = store.delete_task("a").unwrap();
    assert!(s1 < s2 && s2 < s3, "positions grow: {s1} {s2} {s3}");
    let stats = store.stats().unwrap();
    assert_eq!(stats.tasks, 1);
    assert_eq!(stats.records, 3);
    assert_eq!(stats.last_seq, s3);
    let metrics = store.metrics().unwrap();
    assert_eq!(metrics.journal_records, stats.records);
    assert_eq!(metrics.fsyncs, stats.journal_syncs, "{}", b.name);
    assert_eq!(metrics.tasks, 1);
    if b.offers_journal_operations {
        // Sync before ack, one writer at a time: a sync per write.
        assert_eq!(stats.journal_syncs, 3);
    } else {
        assert_eq!(stats.journal_syncs, 0, "{}: StoreStats says 0", b.name);
    }
    let health = store.health();
    assert!(health.healthy, "{}: {health:?}", b.name);
    assert!(!store.instance_id().is_empty());
    assert_ne!(
        store.instance_id(),
        b.open_with(|o| o.read_only(true)).instance_id()
    );
}

pub fn a_read_only_open_refuses_writes(b: &Backend) {
    let store = b.open();
    store.put_task(task("a")).unwrap();
    store.put_session(serde_json::json!({"id": "s"})).unwrap();
    drop(store);
    let reader = b.open_with(|o| o.read_only(true));
    assert_eq!(reader.get_task("a").unwrap(), Some(task("a")));
    assert_eq!(reader.list_sessions().unwrap().len(), 1);
    check_err(reader.put_task(task("b")), ErrorKind::ReadOnly);
    check_err(reader.put_task_if(task("b"), None), ErrorKind::ReadOnly);
    check_err(reader.delete_task("a"), ErrorKind::ReadOnly);
    check_err(
        reader.transaction(|tx| {
            tx.put_task(task("b"));
            Ok(())
        }),
        ErrorKind::ReadOnly,
    );
    check_err(
        reader.put_session(serde_json::json!({"id": "t"})),
        ErrorKind::ReadOnly,
    );
    check_err(reader.delete_session("s"), ErrorKind::ReadOnly);
    check_err(reader.append_log("s", "x"), ErrorKind::ReadOnly);
    check_err(
        reader.save_report("r", serde_json::json!({})),
        ErrorKind::ReadOnly,
    );
    check_err(reader.archive_task("a"), ErrorKind::ReadOnly);
    assert_eq!(ids(&reader.list_tasks().unwrap()), ["a"]);
}

/// The documented difference: a journal directory has one writer at a
/// time, PostgreSQL any number, each seeing the others' writes at once.
pub fn a_second_writer_shares_or_is_locked_out(b: &Backend) {
    let first = b.open();
    first.put_task(task("a")).unwrap();
    let second = Store::open(b.options());
    if !b.shared_by_instances {
        let msg = check_err(second.map(drop), ErrorKind::Locked);
        assert!(!msg.is_empty());
        return;
    }
    let second = second.unwrap();
    assert_eq!(second.get_task("a").unwrap(), Some(task("a")));
    second.put_task_if(task("a"), Some(1)).unwrap();
    check_err(first.put_task_if(task("a"), Some(1)), ErrorKind::Conflict);
    assert_eq!(first.task_version("a").unwrap(), Some(2));
}

/// The journal's own operations work on the journal engine and are
/// refused with `Unsupported` on every other (`docs/postgres.md`, "What
/// the journal engine has and this one does not").
pub fn journal_operations_are_the_journals_own(b: &Backend) {
    let store = b.open();
    store.put_task(task("a")).unwrap();
    let kinds = journal_operations(&store);
    for (what, kind) in kinds {
        if b.offers_journal_operations {
            assert_ne!(kind, Some(ErrorKind::Unsupported), "{what}");
        } else {
            assert_eq!(kind, Some(ErrorKind::Unsupported), "{}: {what}", b.name);
        }
    }
    // The shared operations still work afterwards.
    assert_eq!(store.get_task("a").unwrap(), Some(task("a")));
}

/// Each of the journal's own operations and the error kind it gave, if any.
fn journal_operations(store: &Store) -> Vec<(&'static str, Option<ErrorKind>)> {
    let kind = |r: statewal::Result<()>| r.err().map(|e| e.kind());
    vec![
        (
            "submit",
            kind(
                store
                    .submit(Mutation::PutTask(task("s")))
                    .and_then(|p| p.wait().map(drop)),
            ),
        ),
        (
            "submit_batch",
            kind(
                store
                    .submit_batch(Vec::new())
                    .and_then(|p| p.wait().map(drop)),
            ),
        ),
        ("recovery_report", kind(store.recovery_report().map(drop))),
        ("load_state", kind(store.load_state().map(drop))),
        ("save_state", kind(store.save_state().map(drop))),
        ("checkpoint", kind(store.checkpoint().map(drop))),
        (
            "clean",
            kind(
                store
                    .clean(Duration::ZERO, &[TaskStatus::Failed], true)
                    .map(drop),
            ),
        ),
        ("backups", kind(store.backups().map(drop))),
        (
            "restore_backup",
            kind(match store.restore_backup("state.backup.none.json") {
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                r => r.map(drop),
            }),
        ),
    ]
}
