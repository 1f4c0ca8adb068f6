//! `statewal copy --from SRC --to DST` and `statewal::copy` (issue 12,
//! "Moving between backends"): a whole store into an empty one, between a
//! state directory and PostgreSQL either way, every task's bytes, every
//! session record, log and report kept, verified by a count and a checksum
//! of both sides; a destination that holds anything refused untouched; a
//! source never written; a verification that fails when the copy differs.

#[cfg(feature = "postgres")]
use crate::util::copy_dir;
use crate::util::{crash_opts, opts, run_statewal, scratch};
use serde_json::{Value, json};
use statewal::report::StoreDigest;
use statewal::{CopyOptions, ErrorKind, Options, Store, Task};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Tasks whose bytes a re-serializing copy would change: keys out of
/// order, unicode and escapes, timestamps in several spellings, numbers.
const TASKS: [&str; 4] = [
    r#"{"zeta":1,"id":"t1","status":"completed","alpha":{"b":2,"a":1},"updated_at":"2024-01-01T10:00:00.000Z","created_at":"2023-12-31T23:59:59.999999999+02:00"}"#,
    r#"{"id":"t2","description":"héllo wörld ✓ 日本 🚀","tool":"claude","updated_at":"2026-12-02T10:00:00Z","n":-0.5,"big":12345678901234567,"e":"\"quoted\"\n\\"}"#,
    r#"{"status":"in_progress","id":"t3","logs":[{"timestamp":"2024-06-01T00:00:00.1Z","message":"ünïcode"}],"z":null,"a":[true,false]}"#,
    r#"{"id":"t4"}"#,
];

/// Session records, `"id"` not always first.
fn sessions() -> [Value; 2] {
    [
        json!({"taskId": "t1", "id": "s1", "tool": "CLAUDECODE", "startedAt": "2024-01-01T10:00:00.000Z", "pid": 42}),
        json!({"id": "s2", "status": "active", "ünï": "✓"}),
    ]
}

/// A store in `dir` with everything a copy must keep. What is written
/// after its checkpoint (t4, the second line of s1's log, report r2) is
/// only in the journal: the store is dropped without checkpointing.
fn source(dir: &Path) {
    let store = Store::open(crash_opts(dir)).unwrap();
    for t in &TASKS[..3] {
        store
            .put_task(Task::from_json(t.as_bytes()).unwrap())
            .unwrap();
    }
    for s in sessions() {
        store.put_session(s).unwrap();
    }
    store.append_log("s1", "started ✓\n").unwrap();
    store.append_log("s2", &"x".repeat(3000)).unwrap();
    store
        .save_report(
            "r1",
            json!({"z": 1, "a": "b", "at": "2024-01-01T10:00:00.000Z"}),
        )
        .unwrap();
    store.checkpoint().unwrap();
    store
        .put_task(Task::from_json(TASKS[3].as_bytes()).unwrap())
        .unwrap();
    store.append_log("s1", "done\n").unwrap();
    store.save_report("r2", json!({"passed": 12})).unwrap();
    drop(store);
}

/// Every file under `dir`, with its length and the CRC-32 of its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, (usize, u32)> {
    crate::util::tree(dir)
        .into_iter()
        .filter(|p| dir.join(p).is_file())
        .map(|p| {
            let bytes = std::fs::read(dir.join(&p)).unwrap();
            (p, (bytes.len(), crc32fast::hash(&bytes)))
        })
        .collect()
}

/// `statewal ARGS`, checked for exit code `code`; (stdout, stderr). The
/// `--dir` the helper gives points at an empty scratch directory that
/// copy ignores.
#[track_caller]
fn statewal(args: &[&str], code: i32) -> (String, String) {
    let unused = scratch();
    let out = run_statewal(unused.path(), args, "", &[]);
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert_eq!(
        out.status.code(),
        Some(code),
        "statewal {args:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    (stdout, stderr)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Everything a store holds, as raw as the public API gives it: each
/// task's JSON bytes, each session record, each log's bytes by file name,
/// each report.
/// Each task's bytes, session records, (log name, bytes), reports.
type Content = (Vec<Vec<u8>>, Vec<Value>, Vec<(String, Vec<u8>)>, Vec<Value>);

fn content(store: &Store) -> Content {
    let tasks = store
        .list_tasks()
        .unwrap()
        .iter()
        .map(Task::to_json)
        .collect();
    let sessions = store
        .list_sessions()
        .unwrap()
        .iter()
        .map(|s| s.to_value())
        .collect();
    let mut logs: Vec<(String, Vec<u8>)> = store
        .list_logs()
        .unwrap()
        .into_iter()
        .map(|l| {
            let bytes = store.read_log(&l.file_name, ..).unwrap();
            (l.file_name, bytes)
        })
        .collect();
    logs.sort();
    let reports = store
        .list_reports()
        .unwrap()
        .iter()
        .map(|r| store.get_report(&r.id).unwrap().unwrap())
        .collect();
    (tasks, sessions, logs, reports)
}

fn read_only(dir: &Path) -> Store {
    Store::open(Options::new(dir).read_only(true)).unwrap()
}

/// The JSON digest `--json` prints for one side, as a [`StoreDigest`]'s
/// counts, for comparing with the library's.
#[cfg(feature = "postgres")]
fn counts(side: &Value) -> [u64; 4] {
    ["tasks", "sessions", "logs", "reports"].map(|k| side[k]["count"].as_u64().unwrap())
}

#[cfg(feature = "postgres")]
#[test]
fn dir_to_postgres_and_back_keeps_every_byte() {
    let Some(db) = crate::pg::database() else {
        return;
    };
    let base = scratch();
    let (src, back) = (base.path().join("src"), base.path().join("back"));
    source(&src);
    let before = files(&src);
    // The journal-only writes are not in the layout: the copy must replay.
    assert!(!src.join("tasks/t4.json").exists());

    let (out, err) = statewal(&["copy", "--from", s(&src), "--to", &db.url, "--json"], 0);
    let there: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(there["verified"], true, "{out}");
    assert_eq!(counts(&there["source"]), [4, 2, 2, 2], "{out}");
    assert_eq!(there["source"], there["destination"], "{out}");
    assert!(err.contains("created statewal's tables"), "{err}");
    assert_eq!(files(&src), before, "the source directory was written");

    // The database holds each task's bytes exactly as the source held them.
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let docs: Vec<String> = c
        .query("SELECT doc FROM statewal_tasks ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(docs, TASKS);
    let session_docs: Vec<String> = c
        .query("SELECT doc FROM statewal_sessions ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let written: Vec<String> = sessions().iter().map(Value::to_string).collect();
    assert_eq!(
        session_docs, written,
        "session records keep their key order"
    );

    let (out, _) = statewal(&["copy", "--from", &db.url, "--to", s(&back), "--json"], 0);
    let back_json: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(back_json["destination"], there["source"], "{out}");

    let (a, b) = (read_only(&src), read_only(&back));
    assert_eq!(content(&a), content(&b));
    assert_eq!(statewal::digest(&a).unwrap(), statewal::digest(&b).unwrap());
    for t in TASKS {
        let id = Task::from_json(t.as_bytes()).unwrap().id().to_string();
        assert_eq!(b.get_task(&id).unwrap().unwrap().to_json(), t.as_bytes());
    }
    assert_eq!(
        b.read_log("session_s1.log", ..).unwrap(),
        "started ✓\ndone\n".as_bytes()
    );
    // The copy back was checkpointed: its layout holds every task.
    assert!(back.join("tasks/t4.json").exists());
}

#[cfg(feature = "postgres")]
#[test]
fn the_original_servers_files_round_trip_through_postgres() {
    let Some(db) = crate::pg::database() else {
        return;
    };
    let base = scratch();
    let (src, back) = (base.path().join("ts"), base.path().join("back"));
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ts-server-v0"),
        &src,
    );
    statewal(&["copy", "--from", s(&src), "--to", &db.url], 0);
    statewal(&["copy", "--from", &db.url, "--to", s(&back)], 0);
    let (a, b) = (read_only(&src), read_only(&back));
    assert_eq!(statewal::digest(&a).unwrap(), statewal::digest(&b).unwrap());
    // The original server's stamped log keeps its name and bytes.
    let ts_log = "session_b61c0a52-1e3d-4f7a-9c88-2a4d5e6f7081_1704103500000.log";
    assert_eq!(
        b.read_log(ts_log, ..).unwrap(),
        std::fs::read(src.join("logs").join(ts_log)).unwrap()
    );
    assert!(back.join("logs").join(ts_log).exists());
}

#[test]
fn dir_to_dir_copies_what_is_only_in_the_journal_and_leaves_the_source_as_it_was() {
    let base = scratch();
    let (src, dst) = (base.path().join("src"), base.path().join("dst"));
    source(&src);
    let before = files(&src);
    let (out, _) = statewal(&["copy", "--from", s(&src), "--to", s(&dst)], 0);
    assert!(out.contains("verified"), "{out}");
    assert!(out.contains("tasks") && out.contains("reports"), "{out}");
    assert_eq!(files(&src), before, "the source directory was written");
    let (a, b) = (read_only(&src), read_only(&dst));
    assert_eq!(content(&a), content(&b));
    assert_eq!(b.list_tasks().unwrap().len(), 4);
    assert_eq!(b.get_report("r2").unwrap(), Some(json!({"passed": 12})));
    // Versions start again at 1 in the destination.
    assert_eq!(b.task_version("t1").unwrap(), Some(1));
}

#[test]
fn a_destination_that_holds_anything_is_refused_and_left_untouched() {
    let base = scratch();
    let (src, dst) = (base.path().join("src"), base.path().join("dst"));
    source(&src);
    let store = Store::open(opts(&dst)).unwrap();
    store.put_session(json!({"id": "mine"})).unwrap();
    store.shutdown().unwrap();
    let before = files(&dst);
    let (_, err) = statewal(&["copy", "--from", s(&src), "--to", s(&dst)], 2);
    assert!(
        err.contains("is not empty") && err.contains("1 session record"),
        "{err}"
    );
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(files(&dst), before);

    // A directory of other files is no destination either.
    let other = base.path().join("home");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let (_, err) = statewal(&["copy", "--from", s(&src), "--to", s(&other)], 2);
    assert!(err.contains("holds files but no statewal store"), "{err}");
    assert_eq!(crate::util::tree(&other).len(), 1);
}

#[cfg(feature = "postgres")]
#[test]
fn a_database_that_holds_anything_is_refused_and_left_untouched() {
    let Some(db) = crate::pg::database() else {
        return;
    };
    let base = scratch();
    let src = base.path().join("src");
    source(&src);
    let pg = Store::open(Options::new("unused").database(&db.url)).unwrap();
    pg.save_report("mine", json!({"a": 1})).unwrap();
    let (_, err) = statewal(&["copy", "--from", s(&src), "--to", &db.url], 2);
    assert!(
        err.contains("is not empty") && err.contains("1 report"),
        "{err}"
    );
    assert_eq!(pg.list_tasks().unwrap().len(), 0);
    assert_eq!(pg.list_reports().unwrap().len(), 1);
}

#[test]
fn a_missing_source_and_bad_names_are_refused_creating_nothing() {
    let base = scratch();
    let dst = base.path().join("dst");
    let missing = base.path().join("missing");
    let (_, err) = statewal(&["copy", "--from", s(&missing), "--to", s(&dst)], 2);
    assert!(
        err.contains("opening the source") && err.contains("no statewal store"),
        "{err}"
    );
    assert!(!dst.exists() && !missing.exists());

    let src = base.path().join("src");
    source(&src);
    for (from, to, want) in [
        (
            "mysql://db/app",
            s(&dst),
            "neither a state directory nor a postgres://",
        ),
        (
            s(&src),
            "s3://bucket/x",
            "neither a state directory nor a postgres://",
        ),
        (s(&src), s(&src), "the same store"),
        // Port 1 takes no connections: the destination cannot be reached.
        (
            s(&src),
            "postgres://app:sekrit@127.0.0.1:1/app",
            "opening the destination",
        ),
        (
            s(&src),
            "postgres://app@[::1/app",
            "opening the destination",
        ),
    ] {
        let (_, err) = statewal(&["copy", "--from", from, "--to", to], 2);
        assert!(err.contains(want), "copy {from} {to}: {err}");
        assert!(!err.contains("sekrit"), "{err}");
    }
    assert!(!dst.exists());
}

#[cfg(feature = "postgres")]
#[test]
fn a_source_database_without_statewal_tables_is_not_a_store_and_is_not_written() {
    let Some(db) = crate::pg::database() else {
        return;
    };
    let base = scratch();
    let dst = base.path().join("dst");
    let (_, err) = statewal(&["copy", "--from", &db.url, "--to", s(&dst)], 2);
    assert!(err.contains("no statewal store in"), "{err}");
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let tables: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'statewal%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 0);
}

/// Two directories' stores, for the library tests.
fn pair() -> (tempfile::TempDir, Store, Store) {
    let base = scratch();
    source(&base.path().join("a"));
    let from = read_only(&base.path().join("a"));
    let to = Store::open(opts(&base.path().join("b"))).unwrap();
    (base, from, to)
}

// A verification that cannot fail is no verification: the destination is
// changed after every write and before the digests are read, one kind at a
// time, and each change must fail the copy naming that kind.
#[test]
fn verification_fails_when_the_destination_differs_from_the_source() {
    type Change = fn(&Store) -> statewal::Result<()>;
    let changes: [(&str, Change); 5] = [
        ("tasks:", |to| {
            // Same fields, another order: only the raw bytes differ.
            let t = Task::from_json(br#"{"id":"t4","status":"pending"}"#)?;
            to.put_task(t).map(drop)
        }),
        ("tasks:", |to| to.delete_task("t2").map(drop)),
        ("sessions:", |to| {
            to.put_session(json!({"id": "s1", "taskId": "t1", "tool": "CLAUDECODE", "startedAt": "2024-01-01T10:00:00.000Z", "pid": 42}))
                .map(drop)
        }),
        ("logs:", |to| to.append_log("s2", "x").map(drop)),
        ("reports:", |to| {
            to.save_report("r1", json!({"z": 1})).map(drop)
        }),
    ];
    for (kind, change) in changes {
        let (_base, from, to) = pair();
        let e = statewal::__internal::copy_checked(&from, &to, &CopyOptions::default(), &change)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{kind} {e}");
        let msg = e.to_string();
        assert!(
            msg.contains("does not match its source") && msg.contains(kind),
            "{msg}"
        );
        let others = ["tasks:", "sessions:", "logs:", "reports:"];
        for other in others.iter().filter(|o| **o != kind) {
            assert!(!msg.contains(other), "{kind} named {other}: {msg}");
        }
    }
    // And unchanged, the same copy verifies.
    let (_base, from, to) = pair();
    let r = statewal::__internal::copy_checked(&from, &to, &CopyOptions::default(), &|_| Ok(()))
        .unwrap();
    assert_eq!(r.source, r.destination);
}

#[test]
fn the_digest_sees_a_byte_of_any_kind_and_nothing_else() {
    let base = scratch();
    let digest_of = |name: &str, f: &dyn Fn(&Store)| -> StoreDigest {
        let store = Store::open(opts(&base.path().join(name))).unwrap();
        store
            .put_task(Task::from_json(br#"{"id":"a","x":1,"y":2}"#).unwrap())
            .unwrap();
        store.put_session(json!({"id": "s", "k": 1})).unwrap();
        store.append_log("s", "abc").unwrap();
        store.save_report("r", json!({"k": 1})).unwrap();
        f(&store);
        statewal::digest(&store).unwrap()
    };
    let plain = digest_of("plain", &|_| {});
    assert_eq!(plain.tasks.count, 1);
    assert_eq!(plain.tasks.bytes, br#"{"id":"a","x":1,"y":2}"#.len() as u64);
    // The same content written in another way (checkpointed, then read from
    // files) has the same digest.
    assert_eq!(
        digest_of("checkpointed", &|s| {
            s.checkpoint().unwrap();
        }),
        plain
    );
    type Change<'a> = (&'a str, &'a dyn Fn(&Store));
    let changed: [Change; 4] = [
        ("tasks", &|s| {
            let t = Task::from_json(br#"{"id":"a","y":2,"x":1}"#).unwrap();
            s.put_task(t).map(drop).unwrap()
        }),
        ("sessions", &|s| {
            s.put_session(json!({"k": 1, "id": "s"})).map(drop).unwrap()
        }),
        ("logs", &|s| s.append_log("s", "d").map(drop).unwrap()),
        ("reports", &|s| {
            s.save_report("r", json!({"k": 2})).map(drop).unwrap()
        }),
    ];
    for (i, (kind, f)) in changed.into_iter().enumerate() {
        let d = digest_of(&format!("c{i}"), f);
        for (name, k) in d.kinds() {
            let same = plain
                .kinds()
                .into_iter()
                .find(|(n, _)| *n == name)
                .unwrap()
                .1
                == k;
            assert_eq!(
                same,
                name != kind,
                "change {i} ({kind}) in {name}: {k:?} vs {plain:?}"
            );
        }
    }
}

// A copy that fails halfway says what it wrote and what to do; a retry into
// the half-filled destination is refused as not empty.
#[test]
fn a_copy_that_fails_halfway_says_so_and_a_retry_is_refused() {
    let base = scratch();
    let src = Store::open(opts(&base.path().join("a"))).unwrap();
    src.put_task(Task::new("small")).unwrap();
    let mut big = Task::new("tall");
    big.set_description("x".repeat(4096));
    src.put_task(big).unwrap();
    // The destination takes smaller tasks than the source holds.
    let to = Store::open(opts(&base.path().join("b")).task_bytes_max(1024)).unwrap();
    let e = statewal::copy_with(&src, &to, &CopyOptions::default().batch_items(1)).unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{msg}");
    assert!(msg.contains("stopped after writing 1 task,"), "{msg}");
    assert!(msg.contains("remove it"), "{msg}");
    let e = statewal::copy(&src, &to).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("not empty"), "{e}");
}

#[test]
fn batches_hold_at_most_the_items_asked() {
    let base = scratch();
    let src = Store::open(opts(&base.path().join("a"))).unwrap();
    for i in 0..5 {
        src.put_task(Task::new(format!("t{i}"))).unwrap();
    }
    src.put_session(json!({"id": "s"})).unwrap();
    let to = Store::open(opts(&base.path().join("b"))).unwrap();
    let r = statewal::copy_with(&src, &to, &CopyOptions::default().batch_items(2)).unwrap();
    assert_eq!(r.batches, 3);
    assert_eq!(r.destination.tasks.count, 5);
    assert_eq!(r.destination.sessions.count, 1);
}

// A log is copied in 1 MiB reads, each appended as text: a character cut
// by a read's end goes with the next piece, and a log that is not UTF-8
// (only the original server could write one) is refused naming the byte.
#[test]
fn logs_are_cut_between_characters_and_bytes_that_are_not_text_are_refused() {
    let base = scratch();
    let src = Store::open(opts(&base.path().join("a"))).unwrap();
    let text = format!("{}é{}", "a".repeat(1024 * 1024 - 1), "✓".repeat(10));
    src.append_log("s", &text).unwrap();
    src.checkpoint().unwrap();
    let to = Store::open(opts(&base.path().join("b"))).unwrap();
    let r = statewal::copy(&src, &to).unwrap();
    assert_eq!(r.log_appends, 2);
    assert_eq!(to.read_log("session_s.log", ..).unwrap(), text.as_bytes());
    drop(src);

    let ts_log = base.path().join("a/logs/session_old_1704103500000.log");
    std::fs::write(&ts_log, b"fine\n\xff\xfe").unwrap();
    let src = read_only(&base.path().join("a"));
    let to = Store::open(opts(&base.path().join("c"))).unwrap();
    let e = statewal::copy(&src, &to).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("is not UTF-8 text at byte 5"), "{e}");
}

// The digest's key counts: the same bytes under another name differ.
#[test]
fn the_digest_counts_each_items_name() {
    let base = scratch();
    let digest_with_log = |name: &str| {
        let store = Store::open(opts(&base.path().join(name))).unwrap();
        store.append_log(name, "same bytes").unwrap();
        statewal::digest(&store).unwrap().logs
    };
    let (a, b) = (digest_with_log("a"), digest_with_log("b"));
    assert_eq!((a.count, a.bytes), (b.count, b.bytes));
    assert_ne!(a.crc32, b.crc32);
}
