//! The PostgreSQL engine against a real server (see `pg.rs`), through the
//! doc-hidden handle until the public facade dispatches to it: the same
//! answers and the same error kinds as the journal engine, `list`'s query
//! in SQL, atomic batches, and the outbox's change delivery (a late
//! commit, a lost connection).

use crate::pg::{TestDb, database};
use crate::util::{check_err, scratch};
use serde_json::json;
use statewal::__internal::postgres::{Change, ChangeKind, Pg, open};
use statewal::{ErrorKind, Mutation, Options, Store, Task, TaskQuery, TaskStatus};
use std::sync::mpsc;
use std::time::Duration;

/// The limits of a default journal store; the directory is never used.
fn pg_opts() -> Options {
    Options::new("/nonexistent-statewal-pg-dir")
}

fn engine(db: &TestDb) -> Pg {
    open(&db.url, &pg_opts()).expect("open the PostgreSQL engine")
}

fn task_from(json: &str) -> Task {
    Task::from_json(json.as_bytes()).expect("a valid task")
}

/// Waits for changes until `n` have arrived, or fails after a while.
fn collect(rx: &mpsc::Receiver<Change>, n: usize) -> Vec<Change> {
    let mut got = Vec::new();
    while got.len() < n {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(c) => got.push(c),
            Err(_) => panic!("only {} of {n} changes arrived: {got:?}", got.len()),
        }
    }
    got
}

/// A watch that sends every change to a channel.
fn watch(pg: &mut Pg) -> mpsc::Receiver<Change> {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    pg.watch(move |changes| {
        for c in changes {
            let _ = tx.lock().unwrap().send(c.clone());
        }
    })
    .expect("watch");
    rx
}

#[test]
fn tasks_round_trip_with_key_order_versions_and_last_writer_wins() {
    let Some(db) = database() else { return };
    let pg = engine(&db);
    let json = r#"{"id":"t1","z":1,"updatedAt":"2024-01-01T10:00:00.000Z","a":{"y":2,"b":[1,"x"]},"status":"in_progress"}"#;
    let s1 = pg.put_task(task_from(json)).unwrap();
    let back = pg.get_task("t1").unwrap().unwrap();
    assert_eq!(String::from_utf8(back.to_json()).unwrap(), json);
    assert_eq!(pg.task_version("t1").unwrap(), Some(1));
    let s2 = pg.put_task(Task::new("t1")).unwrap();
    assert!(s2 > s1, "positions grow: {s1} then {s2}");
    assert_eq!(pg.task_version("t1").unwrap(), Some(2));
    assert_eq!(pg.get_task("t1").unwrap().unwrap(), Task::new("t1"));
    assert!(pg.get_task("t2").unwrap().is_none());
    pg.delete_task("t1").unwrap();
    check_err(pg.delete_task("t1"), ErrorKind::NotFound);
    assert_eq!(pg.task_version("t1").unwrap(), None);
    // A task put again after a delete starts over, as on the journal.
    pg.put_task(Task::new("t1")).unwrap();
    assert_eq!(pg.task_version("t1").unwrap(), Some(1));
    assert_eq!(pg.stats().unwrap().tasks, 1);
}

#[test]
fn put_task_if_conflicts_when_someone_else_wrote_first() {
    let Some(db) = database() else { return };
    let (a, b) = (engine(&db), engine(&db));
    a.put_task_if(Task::new("x"), None).unwrap();
    let msg = check_err(b.put_task_if(Task::new("x"), None), ErrorKind::Conflict);
    assert!(msg.contains("version 1"), "{msg}");
    b.put_task_if(Task::new("x"), Some(1)).unwrap();
    let mut stale = Task::new("x");
    stale.set_description("stale");
    check_err(a.put_task_if(stale, Some(1)), ErrorKind::Conflict);
    assert_eq!(a.task_version("x").unwrap(), Some(2));
    assert_eq!(a.get_task("x").unwrap().unwrap().description(), None);
    check_err(a.put_task_if(Task::new("y"), Some(1)), ErrorKind::Conflict);
}

/// Bad input gets the kind the journal engine gives for it.
#[test]
fn bad_input_gets_the_journal_engines_error_kinds() {
    let Some(db) = database() else { return };
    let dir = scratch();
    let small = 200;
    let journal = Store::open(Options::new(dir.path()).task_bytes_max(small)).unwrap();
    let pg = open(&db.url, &pg_opts().task_bytes_max(small)).unwrap();
    let mut big = Task::new("big");
    big.set_description("x".repeat(small));
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!([deep]);
    }
    let mut too_deep = Task::new("deep");
    let deep_ok = too_deep.set("nested", deep).is_ok();
    let cases = [
        ("invalid id", Mutation::PutTask(Task::new("a/b"))),
        ("dot id", Mutation::DeleteTask("..".into())),
        ("too large", Mutation::PutTask(big)),
        ("no session id", Mutation::PutSession(json!({"pid": 1}))),
        ("session id", Mutation::PutSession(json!({"id": "a:b"}))),
        ("no task", Mutation::DeleteTask("nobody".into())),
        ("no session", Mutation::DeleteSession("nobody".into())),
    ];
    for (what, m) in cases {
        let j = journal.transaction(|tx| {
            match m.clone() {
                Mutation::PutTask(t) => tx.put_task(t),
                Mutation::DeleteTask(id) => tx.delete_task(id),
                Mutation::PutSession(s) => tx.put_session(s),
                Mutation::DeleteSession(id) => tx.delete_session(id),
                _ => unreachable!(),
            };
            Ok(())
        });
        let p = pg.apply_batch(vec![m]);
        let jk = j.as_ref().map_err(|e| e.kind());
        let pk = p.as_ref().map_err(|e| e.kind());
        assert!(jk.is_err(), "{what}: the journal took it");
        assert_eq!(
            jk.map(|_| ()),
            pk.map(|_| ()),
            "{what}: journal {j:?}, pg {p:?}"
        );
    }
    if deep_ok {
        check_err(pg.put_task(too_deep), ErrorKind::InvalidInput);
    }
    check_err(pg.get_task("a\\b"), ErrorKind::InvalidId);
    check_err(
        pg.append_log("s", &"x".repeat(small + 1)),
        ErrorKind::TooLarge,
    );
    check_err(pg.save_report("r/1", json!({})), ErrorKind::InvalidId);
    assert_eq!(pg.stats().unwrap().tasks, 0, "nothing was written");
}

#[test]
fn a_batch_is_all_or_nothing() {
    let Some(db) = database() else { return };
    let pg = engine(&db);
    pg.put_task(Task::new("draft")).unwrap();
    let failed = pg.apply_batch(vec![
        Mutation::PutTask(Task::new("final")),
        Mutation::DeleteTask("draft".into()),
        Mutation::DeleteTask("missing".into()),
    ]);
    let msg = check_err(failed, ErrorKind::NotFound);
    assert!(msg.contains("nothing in the batch was written"), "{msg}");
    assert!(pg.get_task("final").unwrap().is_none());
    assert!(pg.get_task("draft").unwrap().is_some());
    let seq = pg
        .apply_batch(vec![
            Mutation::PutTask(Task::new("final")),
            Mutation::DeleteTask("draft".into()),
            Mutation::PutTask(Task::new("final")),
            Mutation::PutSession(json!({"id": "s1", "pid": 4})),
        ])
        .unwrap();
    assert_eq!(pg.task_version("final").unwrap(), Some(2));
    assert!(pg.get_task("draft").unwrap().is_none());
    assert_eq!(pg.get_session("s1").unwrap().unwrap().extra["pid"], 4);
    assert_eq!(
        pg.apply_batch(vec![]).unwrap(),
        seq,
        "an empty batch writes nothing"
    );
}

#[test]
fn sessions_logs_and_reports_read_back() {
    let Some(db) = database() else { return };
    let pg = engine(&db);
    pg.put_session(json!({"id": "s2", "z": 1, "a": 2})).unwrap();
    pg.put_session(json!({"id": "s1"})).unwrap();
    let ids: Vec<String> = pg
        .list_sessions()
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["s1", "s2"]);
    let s2 = pg.get_session("s2").unwrap().unwrap();
    assert_eq!(
        s2.extra.keys().collect::<Vec<_>>(),
        ["z", "a"],
        "key order kept"
    );
    pg.delete_session("s2").unwrap();
    check_err(pg.delete_session("s2"), ErrorKind::NotFound);

    pg.append_log("s1", "hello ").unwrap();
    pg.append_log("s1", "world\n").unwrap();
    let logs = pg.list_logs().unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(
        (logs[0].file_name.as_str(), logs[0].size),
        ("session_s1.log", 12)
    );
    let name = &logs[0].file_name;
    assert_eq!(pg.read_log(name, 0, None).unwrap(), b"hello world\n");
    assert_eq!(pg.read_log(name, 3, Some(9)).unwrap(), b"lo wor");
    assert_eq!(pg.read_log(name, 10, Some(100)).unwrap(), b"d\n");
    check_err(
        pg.read_log("session_nope.log", 0, None),
        ErrorKind::NotFound,
    );
    check_err(
        pg.read_log("../etc/passwd", 0, None),
        ErrorKind::InvalidInput,
    );

    pg.save_report("weekly", json!({"passed": 12, "a": 1}))
        .unwrap();
    assert_eq!(pg.get_report("weekly").unwrap().unwrap()["passed"], 12);
    assert!(pg.get_report("daily").unwrap().is_none());
    let reports = pg.list_reports().unwrap();
    assert_eq!(reports[0].id, "weekly");
    assert_eq!(reports[0].file_name, "report_weekly.json");

    pg.put_task(Task::new("old")).unwrap();
    pg.archive_task("old").unwrap();
    assert!(pg.get_task("old").unwrap().is_none());
    check_err(pg.archive_task("old"), ErrorKind::NotFound);
    assert!(pg.health().healthy, "{:?}", pg.health());
}

/// `query_tasks` in SQL selects and orders exactly as `TaskQuery::matches`
/// and `order_key` do in memory: untimed tasks last, ties by id in byte
/// order, bounds exclusive and exact to the nanosecond, paging without
/// overlap; and the journal engine's `Store::query_tasks` agrees.
#[test]
fn query_tasks_in_sql_matches_the_in_memory_definition() {
    let Some(db) = database() else { return };
    let pg = engine(&db);
    let dir = scratch();
    let journal = Store::open(Options::new(dir.path())).unwrap();
    let times = [
        json!("2024-01-01T10:00:00.000Z"),
        json!("2024-01-01T11:00:00.000+01:00"), // The same instant.
        json!("2024-01-01T10:00:00.000000001Z"),
        json!("2024-01-01T10:00:00.000000999Z"),
        json!("1969-12-31T23:59:59.999999999Z"),
        json!(1_704_103_200_000_i64), // Epoch milliseconds: 10:00 again.
        json!("not a time"),
        json!(null),
    ];
    let statuses = [
        TaskStatus::Pending,
        TaskStatus::InProgress,
        TaskStatus::Completed,
    ];
    let mut all = Vec::new();
    for i in 0..48 {
        // Ids whose byte order differs from a natural or locale order.
        let id = format!("{}{i}", ["B", "a", "_", "Z", "é"][i % 5]);
        let mut t = Task::new(id);
        t.set_status(statuses[i % 3]);
        if i % 4 != 3 {
            t.set("tool", ["claude", "codex"][i % 2]).unwrap();
        }
        if i % 9 != 8 {
            t.set("updatedAt", times[i % times.len()].clone()).unwrap();
        }
        pg.put_task(t.clone()).unwrap();
        journal.put_task(t.clone()).unwrap();
        all.push(t);
    }
    let at = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
    };
    let queries = [
        TaskQuery::new(),
        TaskQuery::new()
            .status(TaskStatus::Pending)
            .status(TaskStatus::Completed),
        TaskQuery::new().tool("claude"),
        TaskQuery::new().updated_after(at("2024-01-01T10:00:00Z")),
        TaskQuery::new().updated_before(at("2024-01-01T10:00:00.000000999Z")),
        TaskQuery::new()
            .updated_after(at("1969-01-01T00:00:00Z"))
            .updated_before(at("2024-01-01T10:00:00.000000001Z"))
            .tool("codex"),
        TaskQuery::new().offset(5).limit(7),
        TaskQuery::new().status(TaskStatus::InProgress).offset(100),
        TaskQuery::new().limit(0),
    ];
    for q in &queries {
        let mut want: Vec<&Task> = all.iter().filter(|t| q.matches(t)).collect();
        want.sort_by(|a, b| TaskQuery::order_key(a).cmp(&TaskQuery::order_key(b)));
        let want: Vec<&str> = want
            .into_iter()
            .skip(q.offset)
            .take(q.limit.unwrap_or(usize::MAX))
            .map(|t| t.id())
            .collect();
        let got = pg.query_tasks(q).unwrap();
        let got: Vec<&str> = got.iter().map(|t| t.id()).collect();
        assert_eq!(got, want, "query {q:?}");
        let on_journal = journal.query_tasks(q).unwrap();
        let on_journal: Vec<&str> = on_journal.iter().map(|t| t.id()).collect();
        assert_eq!(
            got, on_journal,
            "query {q:?}: PostgreSQL and the journal differ"
        );
    }
    // Pages of 5 cover the whole order once.
    let mut paged = Vec::new();
    for page in 0.. {
        let got = pg
            .query_tasks(&TaskQuery::new().offset(page * 5).limit(5))
            .unwrap();
        if got.is_empty() {
            break;
        }
        paged.extend(got.into_iter().map(|t| t.id().to_string()));
    }
    let whole: Vec<String> = pg
        .query_tasks(&TaskQuery::new())
        .unwrap()
        .iter()
        .map(|t| t.id().to_string())
        .collect();
    assert_eq!(paged, whole);
}

#[test]
fn changes_reach_every_instance_in_commit_order_with_their_origin() {
    let Some(db) = database() else { return };
    let mut watcher = engine(&db);
    let rx = watch(&mut watcher);
    let writer = engine(&db);
    writer.put_task(Task::new("a")).unwrap();
    writer.put_task(Task::new("a")).unwrap();
    writer.delete_task("a").unwrap();
    watcher.put_task(Task::new("b")).unwrap();
    watcher.put_task(Task::new("c")).unwrap();
    watcher.archive_task("c").unwrap();
    let got = collect(&rx, 6);
    let seen: Vec<(&str, ChangeKind, Option<u64>, bool)> = got
        .iter()
        .map(|c| {
            (
                c.task_id.as_str(),
                c.kind,
                c.version,
                c.origin == writer.origin(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("a", ChangeKind::Put, Some(1), true),
            ("a", ChangeKind::Put, Some(2), true),
            ("a", ChangeKind::Delete, None, true),
            ("b", ChangeKind::Put, Some(1), false),
            ("c", ChangeKind::Put, Some(1), false),
            ("c", ChangeKind::Archive, None, false),
        ]
    );
    assert!(got.windows(2).all(|w| w[0].seq < w[1].seq));
}

/// Sequence ids are taken before commit. Writer A takes its outbox id,
/// writer B takes a later one and commits first; a reader that kept "the
/// highest id seen" as its cursor would deliver B and skip A for ever.
/// The horizon must hold B back until A has ended, then deliver both.
#[test]
fn a_late_commit_is_never_skipped() {
    let Some(db) = database() else { return };
    let mut watcher = engine(&db);
    let rx = watch(&mut watcher);
    let a = engine(&db);
    let b = engine(&db);
    let (took_id, commit_now) = (mpsc::channel(), mpsc::channel::<()>());
    let (took_tx, took_rx) = took_id;
    let (go_tx, go_rx) = commit_now;
    let go_rx = std::sync::Mutex::new(go_rx);
    std::thread::scope(|s| {
        let late = s.spawn(|| {
            a.put_task_before_commit(Task::new("late"), &|seq| {
                took_tx.send(seq).unwrap();
                go_rx.lock().unwrap().recv().unwrap();
            })
        });
        let a_seq = took_rx.recv().unwrap();
        let b_seq = b.put_task(Task::new("early")).unwrap();
        assert!(b_seq > a_seq, "B's id {b_seq} follows A's {a_seq}");
        // Give the listener time to wake and poll with B committed and A not.
        std::thread::sleep(Duration::from_millis(800));
        let early = rx.try_recv();
        // A commits before anything is asserted, so a failure cannot hang.
        go_tx.send(()).unwrap();
        assert_eq!(late.join().unwrap().unwrap(), a_seq);
        assert!(
            early.is_err(),
            "nothing is delivered past a transaction still running: {early:?}"
        );
    });
    let got = collect(&rx, 2);
    let ids: Vec<&str> = got.iter().map(|c| c.task_id.as_str()).collect();
    assert_eq!(ids, ["late", "early"], "both delivered, by id: {got:?}");
    assert!(
        rx.recv_timeout(Duration::from_millis(600)).is_err(),
        "none twice"
    );
}

/// Notifications are lost while the listener is disconnected; the changes
/// committed meanwhile are still delivered, from its cursor.
#[test]
fn a_listener_that_lost_its_connection_catches_up() {
    let Some(db) = database() else { return };
    let mut watcher = engine(&db);
    let rx = watch(&mut watcher);
    let writer = engine(&db);
    writer.put_task(Task::new("before")).unwrap();
    collect(&rx, 1);
    let mut admin = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'statewal-listener' AND datname = current_database()",
            &[],
        )
        .unwrap();
    assert_eq!(killed.len(), 1, "one listener connection");
    for i in 0..5 {
        writer.put_task(Task::new(format!("during{i}"))).unwrap();
    }
    let got = collect(&rx, 5);
    let ids: Vec<&str> = got.iter().map(|c| c.task_id.as_str()).collect();
    assert_eq!(ids, ["during0", "during1", "during2", "during3", "during4"]);
}

#[test]
fn the_schema_is_versioned_and_opening_twice_migrates_once() {
    let Some(db) = database() else { return };
    let first = engine(&db);
    first.put_task(Task::new("kept")).unwrap();
    drop(first);
    let again = engine(&db);
    assert!(again.get_task("kept").unwrap().is_some());
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let versions: Vec<i32> = c
        .query(
            "SELECT version FROM statewal_schema_versions ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1]);
    let types: Vec<String> = c
        .query(
            "SELECT data_type FROM information_schema.columns \
             WHERE table_name = 'statewal_tasks' AND column_name = 'doc'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(types, ["text"], "never jsonb");
    // A schema from a newer statewal is refused, not written by old code.
    c.batch_execute("INSERT INTO statewal_schema_versions (version, name) VALUES (99, 'future')")
        .unwrap();
    let e = open(&db.url, &pg_opts()).err().expect("refused");
    assert!(e.to_string().contains("newer"), "{e}");
}

#[test]
fn an_unreachable_server_is_an_io_error_naming_it_without_the_password() {
    let e = open(
        "postgres://me:hunter2@127.0.0.1:1/nodb?connect_timeout=1",
        &pg_opts(),
    )
    .err()
    .expect("nothing listens on port 1");
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(e.to_string().contains("127.0.0.1"), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
}
