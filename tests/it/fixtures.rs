//! A committed store of each segment format version opens, with every task
//! as written (`tests/fixtures/format-v1/`, `tests/fixtures/format-v2/`; each
//! has a README saying how it was made).

use crate::util::*;
use statewal::__internal::fs::RealFs;
use statewal::__internal::journal::record::{
    FORMAT_VERSION, FORMAT_VERSION_1, SegmentHeader, id_hex,
};
use statewal::__internal::verify::verify;
use statewal::{Store, TaskStatus};
use std::path::Path;

fn fixture(version: u32) -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("format-v{version}"));
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&src, tmp.path());
    tmp
}

/// Opens a copy of the fixture and checks every task; returns the store id
/// the open settled on.
fn check_fixture(version: u32) -> String {
    let dir = fixture(version);
    for seg in segments(dir.path()) {
        let h = SegmentHeader::decode(&std::fs::read(&seg).unwrap()).unwrap();
        assert_eq!(h.version, version, "{}", seg.display());
    }
    let report = verify(&RealFs::existing(dir.path()).unwrap()).unwrap();
    assert!(report.is_clean(), "{:?}", report.findings);
    assert_eq!(report.records_checked, 6);

    let store = Store::open(opts(dir.path())).unwrap();
    let tasks = check_fixture_tasks(&store);
    for t in &tasks {
        let title = t.get("title").and_then(|v| v.as_str()).unwrap_or_default();
        let n = &t.id()["task-".len()..];
        assert!(title.contains(n), "{}: {title}", t.id());
        if n != "1" && n != "2" {
            assert_eq!(t.get("extra_field"), Some(&serde_json::json!([1, 2])));
        }
    }
    let id = store.load_state().unwrap().store_id.expect("a store id");
    // Writing goes on in the current format, with the same id.
    store.put_task(task("new")).unwrap();
    store.checkpoint().unwrap();
    drop(store);
    let last = segments(dir.path()).pop().unwrap();
    let h = SegmentHeader::decode(&std::fs::read(&last).unwrap()).unwrap();
    assert_eq!(h.version, FORMAT_VERSION);
    assert_eq!(h.store_id.map(|i| id_hex(&i)), Some(id.clone()));
    assert_eq!(
        read_json(dir.path().join("state.json"))["store_id"],
        id.as_str()
    );
    let store = Store::open(opts(dir.path())).unwrap();
    assert_eq!(store.list_tasks().unwrap().len(), 6);
    id
}

/// What every fixture holds once opened: the checkpoint at seq 3, five
/// records replayed after it, no damage, and the tasks its README lists.
fn check_fixture_tasks(store: &Store) -> Vec<statewal::Task> {
    let rec = store.recovery_report().unwrap().clone();
    assert!(rec.damage.is_empty(), "{:?}", rec.damage);
    assert_eq!(
        (rec.checkpoint_seq, rec.records_replayed, rec.last_seq),
        (3, 5, 8)
    );
    let tasks = store.list_tasks().unwrap();
    let got: Vec<(&str, TaskStatus)> = tasks.iter().map(|t| (t.id(), t.status())).collect();
    assert_eq!(
        got,
        [
            ("task-1", TaskStatus::Pending),
            ("task-2", TaskStatus::Completed),
            ("task-4", TaskStatus::InProgress),
            ("task-5", TaskStatus::InProgress),
            ("task-6", TaskStatus::InProgress),
        ]
    );
    tasks
}

#[test]
fn format_v1_fixture_opens() {
    check_fixture(FORMAT_VERSION_1);
}

#[test]
fn format_v2_fixture_opens_with_its_store_id() {
    let state = read_json(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v2/state.json"),
    );
    assert_eq!(
        check_fixture(FORMAT_VERSION),
        state["store_id"].as_str().unwrap()
    );
}

/// The encrypted store of format v2 (`tests/fixtures/format-v2-encrypted/`)
/// opens with its key, as written, and never without it.
#[cfg(feature = "encryption")]
#[test]
fn format_v2_encrypted_fixture_opens_with_its_key() {
    use statewal::ErrorKind;
    use statewal::crypto::Key;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let text = std::fs::read_to_string(root.join("format-v2-encrypted.key")).unwrap();
    let key = Key::parse(&text, "the fixture's key").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&root.join("format-v2-encrypted"), tmp.path());
    let dir = tmp.path();
    // Not part of the store: in an encrypted one, verify names every
    // layout file that is not sealed.
    std::fs::remove_file(dir.join("README.md")).unwrap();
    for f in files_under(dir) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(6).any(|w| w == b"secret"),
            "{} holds a title in clear",
            f.display()
        );
    }
    let report = verify(&RealFs::existing(dir).unwrap()).unwrap();
    assert!(report.is_clean(), "{:?}", report.findings);
    let e = Store::open(opts(dir)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Key, "{e}");
    assert!(e.to_string().contains(&key.id().to_string()), "{e}");
    let store = Store::open(opts(dir).encryption_key(key.clone())).unwrap();
    let tasks = check_fixture_tasks(&store);
    for t in &tasks {
        let title = t.get("title").and_then(|v| v.as_str()).unwrap_or_default();
        assert_eq!(title, format!("secret title {}", &t.id()["task-".len()..]));
    }
    store.put_task(task("new")).unwrap();
    store.checkpoint().unwrap();
    drop(store);
    let store = Store::open(opts(dir).encryption_key(key)).unwrap();
    assert_eq!(store.list_tasks().unwrap().len(), 6);
}
