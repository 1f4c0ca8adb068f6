//! What only the PostgreSQL engine does, against a real server (see
//! `pg.rs`), through its doc-hidden handle: the outbox's change delivery
//! across instances (a late commit, a lost connection), the schema's
//! versions, an unreachable server. What every engine does alike is in
//! `conformance/`.

use crate::pg::{TestDb, database};
use statewal::__internal::postgres::{Change, ChangeKind, Pg, open};
use statewal::{ErrorKind, Options, Task};
use std::sync::mpsc;
use std::time::Duration;

/// The limits of a default journal store; the directory is never used.
fn pg_opts() -> Options {
    Options::new("/nonexistent-statewal-pg-dir")
}

fn engine(db: &TestDb) -> Pg {
    open(&db.url, &pg_opts()).expect("open the PostgreSQL engine")
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
    assert_eq!(versions, [1, 2, 3]);
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

// A password given as the URL's `password` query parameter (libpq's
// `?password=`, which the client accepts) was not hidden: `redacted` only
// elided the `user:password@` part, so the connection error, `health` and
// every message naming the database repeated it in the clear.
#[test]
fn a_password_in_the_query_is_never_shown() {
    for url in [
        "postgres://me@127.0.0.1:1/nodb?password=hunter2&connect_timeout=1",
        "postgres://me@127.0.0.1:1/nodb?connect_timeout=1&password=hunter2",
        "postgresql://127.0.0.1:1/nodb?user=me&password=hunter2&connect_timeout=1",
    ] {
        let e = open(url, &pg_opts())
            .err()
            .expect("nothing listens on port 1");
        assert_eq!(e.kind(), ErrorKind::Io, "{e}");
        assert!(e.to_string().contains("127.0.0.1"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{url}: {e}");
    }
}

// docs/postgres.md tells a user whose copy failed halfway to remove
// statewal's tables with a `DROP TABLE` list, which missed
// `statewal_changes_pruned` (schema 2). After running it, the next open
// found no applied version, ran migration 2 again and failed on the
// table left behind: the database could not be used until the user
// found and dropped it by hand. The statement is read from the doc.
#[test]
fn the_documented_drop_table_leaves_a_database_statewal_can_use_again() {
    let Some(db) = database() else { return };
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/postgres.md")).unwrap();
    let start = doc.find("`DROP TABLE").expect("the doc gives a DROP TABLE") + 1;
    let drop_sql = &doc[start..start + doc[start..].find('`').unwrap()];
    let drop_sql = drop_sql.split_whitespace().collect::<Vec<_>>().join(" ");
    engine(&db).put_task(Task::new("a")).unwrap();
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    c.batch_execute(&drop_sql).unwrap();
    let left: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'statewal%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "{drop_sql} left statewal tables behind");
    let again = open(&db.url, &pg_opts()).unwrap_or_else(|e| panic!("after {drop_sql}: {e}"));
    assert!(again.get_task("a").unwrap().is_none());
}

// Schema 3 escapes the `tool` column (a NUL cannot be in `text`); a task
// written before it, whose tool holds a backslash, must still be found by
// `--tool` after the migration.
#[test]
fn a_tool_written_before_schema_3_is_still_found() {
    let Some(db) = database() else { return };
    let opts = || pg_opts().database(&db.url);
    let mut t = Task::new("old");
    t.set("tool", "C:\\bin\\tool").unwrap();
    statewal::Store::open(opts()).unwrap().put_task(t).unwrap();
    // Back to schema 2: the column as it held the tool then.
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    c.batch_execute(
        "UPDATE statewal_tasks SET tool = 'C:' || chr(92) || 'bin' || chr(92) || 'tool';
         DELETE FROM statewal_schema_versions WHERE version = 3",
    )
    .unwrap();
    let store = statewal::Store::open(opts()).unwrap();
    let found = store
        .query_tasks(&statewal::TaskQuery::new().tool("C:\\bin\\tool"))
        .unwrap();
    assert_eq!(found.len(), 1, "the old row is found after migrating");
}

// A writing open ran `CREATE TABLE IF NOT EXISTS statewal_schema_versions`
// every time, even on an up-to-date schema, and PostgreSQL checks the
// CREATE privilege on the schema before it sees the table exists. So an
// application role granted only reads and writes on statewal's tables
// (migrations run by the owner, the usual least-privilege setup, and
// PostgreSQL 15's default for `public`) could not open the store to
// write at all: "permission denied for schema public".
#[test]
fn a_role_without_create_opens_an_up_to_date_schema_to_write() {
    let Some(db) = database() else { return };
    engine(&db).put_task(Task::new("a")).unwrap();
    let role = format!("statewal_app_{}", std::process::id());
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    c.batch_execute(&format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN;
         REVOKE CREATE ON SCHEMA public FROM PUBLIC;
         GRANT USAGE ON SCHEMA public TO {role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role};"
    ))
    .unwrap();
    let url = db.url.replacen("://postgres@", &format!("://{role}@"), 1);
    assert_ne!(url, db.url, "the test URL names user postgres: {}", db.url);
    let app = open(&url, &pg_opts()).unwrap_or_else(|e| panic!("open as {role}: {e}"));
    app.put_task(Task::new("b")).unwrap();
    assert!(app.get_task("a").unwrap().is_some());
    drop(app);
    drop(c);
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    // The role owns nothing; dropping the database first frees it.
    let _ = c.batch_execute(&format!(
        "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role};
         REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role};
         REVOKE ALL ON SCHEMA public FROM {role}"
    ));
}

// In a `key=value` connection string a quoted password may hold spaces
// (`password='my secret'`, as libpq and the client read it); `redacted`
// cut the string at every space, hid `password='my` and showed the rest
// of the password in every message naming the database.
#[test]
fn a_quoted_password_with_spaces_is_never_shown() {
    let e = open(
        "host=127.0.0.1 port=1 user=me password='hunter two\\' x' connect_timeout=1",
        &pg_opts(),
    )
    .err()
    .expect("nothing listens on port 1");
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(e.to_string().contains("127.0.0.1"), "{e}");
    assert!(!e.to_string().contains("two"), "{e}");
    assert!(!e.to_string().contains(" x'"), "{e}");
}
