//! The public facade on PostgreSQL where it differs from a directory:
//! `Store::open` with `Options::database` (see `pg.rs` for the server),
//! task changes across instances, and a read-only open that finds no
//! statewal store and creates none. The operations every engine offers are
//! tested once, on every engine, in `conformance/`.

use crate::pg::{TestDb, database};
use crate::util::check_err;
use statewal::{ChangeKind, ErrorKind, Event, Options, Store, Task};
use std::sync::mpsc;
use std::time::Duration;

/// A store on `db`; the directory is never used.
fn open(db: &TestDb) -> Store {
    Store::open(opts(db)).expect("open the store on PostgreSQL")
}

fn opts(db: &TestDb) -> Options {
    Options::new("/nonexistent-statewal-pg-dir").database(&db.url)
}

/// Whether the database has any of statewal's tables.
fn has_tables(db: &TestDb) -> bool {
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'statewal%'",
            &[],
        )
        .unwrap()
        .get(0);
    n > 0
}

/// Changes from two stores on one database reach a subscriber of each, in
/// commit order per task, each with the origin of the store that made it.
#[test]
fn subscribers_hear_every_instances_changes_with_their_origin() {
    let Some(db) = database() else { return };
    let (a, b) = (open(&db), open(&db));
    assert_ne!(a.instance_id(), b.instance_id());
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let _sub = a.subscribe(move |e| {
        if let Event::TaskChanged(c) = e {
            let _ = tx.lock().unwrap().send(c.clone());
        }
    });
    a.put_task(Task::new("t")).unwrap();
    b.put_task(Task::new("t")).unwrap();
    b.transaction(|tx| {
        tx.delete_task("t");
        Ok(())
    })
    .unwrap();
    a.put_task(Task::new("u")).unwrap();
    a.archive_task("u").unwrap();
    let mut got = Vec::new();
    while got.len() < 5 {
        got.push(
            rx.recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("only {got:?} arrived")),
        );
    }
    let seen: Vec<_> = got
        .iter()
        .map(|c| {
            (
                c.id.as_str(),
                c.kind,
                c.version,
                c.origin == a.instance_id(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("t", ChangeKind::Put, Some(1), true),
            ("t", ChangeKind::Put, Some(2), false),
            ("t", ChangeKind::Delete, None, false),
            ("u", ChangeKind::Put, Some(1), true),
            ("u", ChangeKind::Delete, None, true),
        ]
    );
    assert!(
        got.iter()
            .all(|c| c.origin == a.instance_id() || c.origin == b.instance_id())
    );
    assert!(got.windows(2).all(|w| w[0].seq < w[1].seq), "{got:?}");
}

/// A subscriber given at open hears changes made from then on.
#[test]
fn a_subscriber_given_at_open_hears_changes() {
    let Some(db) = database() else { return };
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let store = Store::open_with_subscriber(opts(&db), move |e| {
        if let Event::TaskChanged(c) = e {
            let _ = tx.lock().unwrap().send(c.id.clone());
        }
    })
    .unwrap();
    open(&db).put_task(Task::new("x")).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), "x");
    drop(store);
}

/// Regression guard for the DATABASE_URL decision: a read-only open of a
/// database without statewal's tables fails with "no statewal store" and
/// creates nothing; a writing open creates them.
#[test]
fn a_read_only_open_creates_nothing() {
    let Some(db) = database() else { return };
    let e = Store::open(opts(&db).read_only(true)).expect_err("no store");
    // Nor does any open touch the directory the options name.
    assert!(!std::path::Path::new("/nonexistent-statewal-pg-dir").exists());
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("no statewal store in"), "{e}");
    assert!(!has_tables(&db));
    let store = open(&db);
    assert!(statewal::__internal::created_storage(&store));
    assert!(has_tables(&db));
    store.put_task(Task::new("a")).unwrap();
    let again = open(&db);
    assert!(!statewal::__internal::created_storage(&again));
    let reader = Store::open(opts(&db).read_only(true)).unwrap();
    assert_eq!(reader.get_task("a").unwrap().unwrap().id(), "a");
    check_err(reader.put_task(Task::new("b")), ErrorKind::ReadOnly);
}

/// Regression: a subscriber added while the server was down used to be
/// answered as if subscribed, and then hear nothing, ever: the listener
/// read its starting point from the server, failed, and did not start.
/// Now it starts from the horizon read at open and catches up once the
/// server is back, so the change made after the outage reaches it.
#[test]
fn a_subscriber_added_during_an_outage_hears_the_changes_after_it() {
    let Some(server) = crate::pg::private_server() else {
        return;
    };
    let url = format!("{}?connect_timeout=2", server.url);
    let open = || Store::open(Options::new("/nonexistent-statewal-pg-dir").database(&url));
    let writer = open().expect("open the writer");
    let listener = open().expect("open the subscriber");
    server.stop();
    let (tx, rx) = mpsc::channel();
    let _subscription = listener.subscribe(move |e: &Event| {
        if let Event::TaskChanged(c) = e {
            let _ = tx.send((c.id.clone(), c.kind, c.version));
        }
    });
    server.start();
    // The pool hands out a fresh connection once the server is back; the
    // first try may still meet a connection the stop cut.
    let task = Task::from_json(br#"{"id":"after-outage","status":"pending"}"#).unwrap();
    let mut tries = 0;
    while let Err(e) = writer.put_task(task.clone()) {
        tries += 1;
        assert!(tries < 20, "the writer never got back: {e}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let got = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the change made after the outage never reached the subscriber");
    assert_eq!(got, ("after-outage".to_string(), ChangeKind::Put, Some(1)));
}

/// Pruning the outbox must never make a subscriber skip changes in
/// silence. A listener held back (here by an open transaction that pins
/// the horizon) while rows it had not read are pruned hears
/// `Event::ChangesMissed`, then the changes after the gap; a prune of rows
/// it had already delivered raises no such alarm.
#[test]
fn a_subscriber_behind_the_pruned_outbox_hears_that_it_missed_changes() {
    let Some(db) = database() else { return };
    let watcher = open(&db);
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let _sub = watcher.subscribe(move |e| {
        let heard = match e {
            Event::TaskChanged(c) => c.id.clone(),
            Event::ChangesMissed => "<missed>".to_string(),
            _ => return,
        };
        let _ = tx.lock().unwrap().send(heard);
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("an event within 20 s")
    };
    let writer = statewal::__internal::postgres::open(&db.url, &opts(&db)).unwrap();

    writer.put_task(Task::new("seen")).unwrap();
    assert_eq!(next(), "seen");
    assert_eq!(writer.prune_changes(Duration::ZERO).unwrap(), 1);

    // An open transaction with an id holds every listener's horizon below
    // the puts that follow, so none of them is read before the prune.
    let mut holder = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let mut held = holder.transaction().unwrap();
    held.query_one("SELECT pg_current_xact_id()", &[]).unwrap();
    writer.put_task(Task::new("lost")).unwrap();
    assert_eq!(writer.prune_changes(Duration::ZERO).unwrap(), 1);
    writer.put_task(Task::new("after")).unwrap();
    held.rollback().unwrap();

    assert_eq!(next(), "<missed>", "the pruned change is reported missed");
    assert_eq!(next(), "after");
    assert!(
        rx.recv_timeout(Duration::from_millis(800)).is_err(),
        "nothing else: one report per prune"
    );
}

/// A URL that asks for TLS is refused with the reason, before any
/// connection is tried (nothing listens on port 1: an attempt would be an
/// `Io` error), never served over plaintext: the engine has no TLS.
#[test]
fn a_url_that_demands_tls_is_refused_not_downgraded() {
    for mode in ["require", "verify-ca", "verify-full"] {
        let url = format!("postgres://me@127.0.0.1:1/app?sslmode={mode}");
        let opened = Store::open(Options::new("/nonexistent-statewal-pg-dir").database(url));
        let msg = check_err(opened.map(|_| ()), ErrorKind::InvalidInput);
        assert!(msg.contains(&format!("TLS (sslmode={mode})")), "{msg}");
    }
}

/// Writers prune the outbox by themselves (the first commit of an
/// instance, then every few minutes): without it `statewal_changes` grew
/// for ever. With a retention of zero, the rows of the first put are gone
/// once it returns; with the default (24 hours), nothing is.
#[test]
fn writers_prune_the_outbox_past_its_retention() {
    let Some(db) = database() else { return };
    let outbox_rows = || -> i64 {
        let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
        c.query_one("SELECT count(*) FROM statewal_changes", &[])
            .unwrap()
            .get(0)
    };
    let kept = open(&db);
    kept.put_task(Task::new("a")).unwrap();
    kept.put_task(Task::new("b")).unwrap();
    assert_eq!(outbox_rows(), 2, "the default retention keeps them");
    let pruning = Store::open(opts(&db).changes_retention(Duration::ZERO)).unwrap();
    pruning.put_task(Task::new("c")).unwrap();
    assert_eq!(outbox_rows(), 0, "the first commit pruned every older row");
}

/// Regression: a read-only instance on a schema-1 database (written by the
/// previous statewal, not yet migrated by a writer of this one) polled the
/// outbox with a query naming schema 2's pruning table, failed every poll,
/// and delivered nothing. Schema 1 has never been pruned, so it now reads
/// the outbox without that table. The change below is the outbox row a
/// version-1 writer makes, written by hand so nothing migrates the schema.
#[test]
fn a_reader_on_a_schema_1_database_hears_changes() {
    let Some(db) = database() else { return };
    drop(open(&db));
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    c.batch_execute(
        "DROP TABLE statewal_changes_pruned; DROP INDEX statewal_changes_at; \
         DELETE FROM statewal_schema_versions WHERE version >= 2",
    )
    .unwrap();
    let reader = Store::open(opts(&db).read_only(true)).expect("a read-only open of schema 1");
    let (tx, rx) = mpsc::channel();
    let _subscription = reader.subscribe(move |e: &Event| {
        if let Event::TaskChanged(ch) = e {
            let _ = tx.send((ch.id.clone(), ch.version));
        }
    });
    // Let the listener take its starting point before the change commits.
    std::thread::sleep(Duration::from_millis(300));
    c.batch_execute(
        "INSERT INTO statewal_changes (task_id, kind, version, origin) \
         VALUES ('from-v1', 'put', 1, 'an old writer'); NOTIFY statewal_changes",
    )
    .unwrap();
    let got = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a schema-1 change never reached the reader");
    assert_eq!(got, ("from-v1".to_string(), Some(1)));
}

/// PostgreSQL has replication of its own, and the journal replica ships
/// segments this engine does not have: a replica URL beside a database is
/// refused at open (`Unsupported`, naming both), before a table is made or
/// anything is shipped, never ignored in silence.
#[cfg(feature = "replicate")]
#[test]
fn a_replica_url_is_refused() {
    let Some(db) = database() else { return };
    let bucket = tempfile::tempdir().unwrap();
    let url = format!("file://{}/r", bucket.path().display());
    let message = check_err(
        Store::open(opts(&db).replicate_to(&url)),
        ErrorKind::Unsupported,
    );
    assert!(message.contains(&url), "{message}");
    assert!(message.contains("PostgreSQL"), "{message}");
    assert!(!has_tables(&db), "the refused open made tables");
    let shipped = std::fs::read_dir(bucket.path()).unwrap().count();
    assert_eq!(shipped, 0, "the refused open shipped something");
}
