//! Session logs and reports reach their files at checkpoints, exactly once.

use crate::util::*;
use serde_json::json;
use statewal::Store;
use std::path::Path;

fn log_text(dir: &Path, session: &str) -> String {
    std::fs::read_to_string(dir.join("logs").join(format!("session_{session}.log"))).unwrap()
}

fn check_once(text: &str, parts: &[&str]) {
    for p in parts {
        assert_eq!(
            text.matches(p).count(),
            1,
            "{p:?} should appear exactly once in {text:?}"
        );
    }
    assert_eq!(text, parts.concat(), "log out of order or padded");
}

// Guards: log appends replayed after a crash are written once: checkpoint,
// crash, reopen and checkpoint again leaves each text exactly once, in order.
#[test]
fn log_appends_are_written_exactly_once_across_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_crashy(dir.path());
    store.append_log("s1", "one\n").unwrap();
    store.append_log("s1", "two\n").unwrap();
    store.append_log("s2", "other\n").unwrap();
    store.checkpoint().unwrap();
    check_once(&log_text(dir.path(), "s1"), &["one\n", "two\n"]);
    store.append_log("s1", "three\n").unwrap();
    drop(store); // Crash: "three" is only in the journal.

    let store = open_crashy(dir.path());
    store.checkpoint().unwrap();
    check_once(&log_text(dir.path(), "s1"), &["one\n", "two\n", "three\n"]);
    store.append_log("s1", "four\n").unwrap();
    drop(store);

    // Two crash-reopen-checkpoint cycles in a row replay nothing twice.
    for _ in 0..2 {
        let store = open_crashy(dir.path());
        store.checkpoint().unwrap();
        drop(store);
    }
    check_once(
        &log_text(dir.path(), "s1"),
        &["one\n", "two\n", "three\n", "four\n"],
    );
    check_once(&log_text(dir.path(), "s2"), &["other\n"]);
}

// Guards: when state.json is lost, the backup plus journal replay re-applies
// log appends the log file already holds; they must not be written twice.
#[test]
fn log_appends_replayed_from_a_backup_are_not_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_crashy(dir.path());
    store.append_log("s", "a\n").unwrap();
    store.checkpoint().unwrap();
    store.append_log("s", "b\n").unwrap();
    store.checkpoint().unwrap();
    store.append_log("s", "c\n").unwrap();
    drop(store);
    std::fs::write(dir.path().join("state.json"), b"not json").unwrap();

    let store = open_crashy(dir.path());
    store.checkpoint().unwrap();
    drop(store);
    check_once(&log_text(dir.path(), "s"), &["a\n", "b\n", "c\n"]);
}

// Guards: a saved report lands in reports/report_<id>.json at the next
// checkpoint, including after a crash before that checkpoint.
#[test]
fn reports_land_after_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_crashy(dir.path());
    let seq = store
        .save_report("r1", json!({"summary": "ok", "n": [1, 2]}))
        .unwrap();
    assert_eq!(seq, store.stats().unwrap().last_seq);
    let path = dir.path().join("reports/report_r1.json");
    assert!(!path.exists(), "written at the checkpoint, not before");
    store.checkpoint().unwrap();
    assert_eq!(read_json(&path), json!({"summary": "ok", "n": [1, 2]}));

    store.save_report("r2", json!({"late": true})).unwrap();
    drop(store); // Crash before r2 is written.
    let store = Store::open(crash_opts(dir.path())).unwrap();
    store.checkpoint().unwrap();
    assert_eq!(
        read_json(dir.path().join("reports/report_r2.json")),
        json!({"late": true})
    );
    assert_eq!(read_json(&path), json!({"summary": "ok", "n": [1, 2]}));
}
