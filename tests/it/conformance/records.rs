//! Sessions, session logs and reports.

use super::Backend;
use crate::util::check_err;
use serde_json::json;
use statewal::{ErrorKind, Origin};

pub fn sessions_round_trip(b: &Backend) {
    let store = b.open();
    assert!(store.get_session("s1").unwrap().is_none());
    assert!(store.list_sessions().unwrap().is_empty());
    let s2 = r#"{"id":"s2","z":1,"a":"2024-01-01T10:00:00.000Z","n":{"y":[1,2],"b":"é"}}"#;
    let s2: serde_json::Value = serde_json::from_str(s2).unwrap();
    store.put_session(s2.clone()).unwrap();
    store.put_session(json!({"id": "s1", "pid": 4})).unwrap();
    let ids: Vec<String> = store
        .list_sessions()
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["s1", "s2"]);
    let back = store.get_session("s2").unwrap().unwrap();
    assert_eq!(
        serde_json::to_string(&back.to_value()).unwrap(),
        serde_json::to_string(&s2).unwrap(),
        "{}: key order and strings kept",
        b.name
    );
    // A put replaces the record.
    store.put_session(json!({"id": "s1"})).unwrap();
    assert!(store.get_session("s1").unwrap().unwrap().extra.is_empty());
    store.delete_session("s2").unwrap();
    assert!(store.get_session("s2").unwrap().is_none());
    check_err(store.delete_session("s2"), ErrorKind::NotFound);
    drop(store);
    let store = b.open();
    assert_eq!(store.list_sessions().unwrap().len(), 1);
}

pub fn logs_append_list_and_read(b: &Backend) {
    let store = b.open();
    assert!(store.list_logs().unwrap().is_empty());
    store.append_log("s1", "hello ").unwrap();
    store.append_log("s1", "wörld\n").unwrap();
    store.append_log("s0", "").unwrap();
    store.append_log("s2", "x").unwrap();
    let logs: Vec<_> = store
        .list_logs()
        .unwrap()
        .into_iter()
        .map(|l| (l.session, l.file_name, l.origin, l.stamp_ms, l.size))
        .collect();
    let log = |s: &str, size| {
        let name = format!("session_{s}.log");
        (s.to_string(), name, Origin::Statewal, None, size)
    };
    // An empty append makes an empty log.
    let want = [log("s0", 0), log("s1", 13), log("s2", 1)];
    assert_eq!(logs, want, "{}", b.name);
    assert_eq!(store.read_log("session_s0.log", ..).unwrap(), b"");
    let name = "session_s1.log";
    assert_eq!(
        store.read_log(name, ..).unwrap(),
        "hello wörld\n".as_bytes()
    );
    assert_eq!(store.read_log(name, 3..9).unwrap(), b"lo w\xc3\xb6");
    assert_eq!(store.read_log(name, 3..=8).unwrap(), b"lo w\xc3\xb6");
    assert_eq!(store.read_log(name, 10..100).unwrap(), b"ld\n");
    assert_eq!(store.read_log(name, 12..).unwrap(), b"\n");
    assert_eq!(store.read_log(name, 13..).unwrap(), b"");
    assert_eq!(store.read_log(name, 50..60).unwrap(), b"");
    assert_eq!(store.read_log(name, 4..4).unwrap(), b"");
    // A range that ends before it starts (built from variables, as a
    // caller's would be).
    let (start, end) = (5, 3);
    check_err(store.read_log(name, start..end), ErrorKind::InvalidInput);
    assert_eq!(store.read_log(name, u64::MAX - 1..u64::MAX).unwrap(), b"");
    assert_eq!(store.read_log(name, 1 << 63..).unwrap(), b"");
    assert_eq!(store.read_log(name, 12..u64::MAX).unwrap(), b"\n");
    check_err(store.read_log("session_nope.log", ..), ErrorKind::NotFound);
    for bad in [
        "../state.json",
        "session_../x.log",
        "session_a/b.log",
        "/etc/passwd",
        "session_.log",
        "session_.hidden.log",
        "notes.txt",
        "",
    ] {
        check_err(store.read_log(bad, ..), ErrorKind::InvalidInput);
    }
    drop(store);
    let store = b.open();
    assert_eq!(store.read_log(name, 6..).unwrap(), "wörld\n".as_bytes());
    // `on_disk` and `pending` say where a journal store's log is: in
    // `logs/`, or journaled and not yet there. Another engine has no
    // files: both false (`docs/postgres.md`).
    for l in store.list_logs().unwrap() {
        if !b.offers_journal_operations {
            assert!(!l.on_disk && !l.pending, "{}: {l:?}", b.name);
        } else if l.size > 0 {
            assert!(l.on_disk != l.pending, "{l:?}");
        }
    }
}

pub fn reports_save_get_and_list(b: &Backend) {
    let store = b.open();
    assert!(store.get_report("weekly").unwrap().is_none());
    assert!(store.list_reports().unwrap().is_empty());
    let weekly: serde_json::Value =
        serde_json::from_str(r#"{"passed":12,"a":1,"at":"2024-01-01T10:00:00.000Z"}"#).unwrap();
    store.save_report("weekly", weekly.clone()).unwrap();
    store.save_report("daily", json!({"passed": 1})).unwrap();
    store.save_report("daily", json!({"passed": 2})).unwrap();
    let got = store.get_report("weekly").unwrap().unwrap();
    assert_eq!(
        serde_json::to_string(&got).unwrap(),
        serde_json::to_string(&weekly).unwrap(),
        "{}: key order kept",
        b.name
    );
    assert_eq!(
        store.get_report("daily").unwrap(),
        Some(json!({"passed": 2}))
    );
    let listed: Vec<_> = store
        .list_reports()
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.file_name, r.origin))
        .collect();
    let report = |id: &str| {
        (
            id.to_string(),
            format!("report_{id}.json"),
            Origin::Statewal,
        )
    };
    assert_eq!(listed, [report("daily"), report("weekly")], "{}", b.name);
    drop(store);
    let store = b.open();
    assert_eq!(
        store.get_report("daily").unwrap(),
        Some(json!({"passed": 2}))
    );
    report_sizes_and_places(b, &store);
}

/// A report's size and place, where the engines differ as documented: on
/// the journal the size of `reports/report_<id>.json` (pretty JSON and a
/// newline), in the file or pending; on PostgreSQL the stored compact
/// document's, never in a file (`docs/postgres.md`).
fn report_sizes_and_places(b: &Backend, store: &statewal::Store) {
    let reports = store.list_reports().unwrap();
    assert_eq!(reports.len(), 2);
    for r in reports {
        let report = store.get_report(&r.id).unwrap().unwrap();
        if b.offers_journal_operations {
            let file = serde_json::to_vec_pretty(&report).unwrap().len() + 1;
            assert_eq!(r.size, file as u64, "{r:?}");
            assert!(r.on_disk != r.pending, "{r:?}");
        } else {
            let doc = serde_json::to_vec(&report).unwrap().len();
            assert_eq!(r.size, doc as u64, "{}: {r:?}", b.name);
            assert!(!r.on_disk && !r.pending, "{}: {r:?}", b.name);
        }
    }
}
