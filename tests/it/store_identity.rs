//! Issue 8, part 6: a segment or `state.json` from another store is refused.
//!
//! The bug: a journal segment copied from store B into store A, numbered so
//! that its sequence numbers continued A's, was replayed into A (B's tasks
//! appeared) and `verify` saw nothing. Every store now has an identity, in
//! each version-2 segment header and in `state.json`.

use crate::util::*;
use statewal::__internal::fs::RealFs;
use statewal::__internal::journal::segment_name;
use statewal::__internal::verify::{FindingClass, verify};
use statewal::report::LoadedFrom;
use statewal::{ErrorKind, Store};
use std::path::Path;

/// A store holding `a0..a3` in its checkpoint and `a3..a5` only in its
/// journal (sequence numbers 4 and 5, in segment `next_id`).
fn store(dir: &Path, prefix: &str) {
    let store = open_crashy(dir);
    put_all(&store, &ids(prefix, 3));
    store.checkpoint().unwrap();
    put_all(&store, &ids(prefix, 5)[3..]);
}

fn store_id_of(dir: &Path) -> String {
    read_json(dir.join("state.json"))["store_id"]
        .as_str()
        .expect("state.json carries a store_id")
        .to_string()
}

// Guards part 6: B's segment, copied into A as A's next segment with
// sequence numbers that continue A's, is refused by the default open as
// belonging to another store, and verify reports it.
#[test]
fn a_foreign_segment_with_continuing_numbers_is_refused() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    store(a.path(), "a");
    // B: a checkpoint at seq 5 in A's numbering (five puts), then records
    // 6 and 7 that A would take for its own next ones.
    let sb = open_crashy(b.path());
    put_all(&sb, &ids("b", 5));
    sb.checkpoint().unwrap();
    put_all(&sb, &ids("x", 2));
    drop(sb);
    let b_seg = segments(b.path()).pop().unwrap();
    let a_last = segments(a.path()).pop().unwrap();
    let next_id: u64 = a_last
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse::<u64>()
        .unwrap()
        + 1;
    let name = segment_name(next_id);
    std::fs::copy(&b_seg, a.path().join("journal").join(&name)).unwrap();

    let msg = check_err(try_open(opts(a.path())), ErrorKind::Corrupt);
    assert!(
        msg.contains(&format!("journal/{name} belongs to another store")),
        "{msg}"
    );
    assert!(
        msg.contains(&store_id_of(a.path())),
        "names this store's id: {msg}"
    );
    let report = verify(&RealFs::existing(a.path()).unwrap()).unwrap();
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.class == FindingClass::Corrupt
                && f.file.ends_with(&name)
                && f.message.contains("belongs to another store")),
        "{:?}",
        report.findings
    );
    // Without the copy, A opens with its own tasks only.
    std::fs::remove_file(a.path().join("journal").join(&name)).unwrap();
    let sa = Store::open(opts(a.path())).unwrap();
    check_tasks(&sa, &ids("a", 5));
}

// Guards part 6: B's state.json copied over A's is skipped as foreign (it
// would otherwise replace A's tasks with B's), and open falls back to A's
// newest backup plus A's journal.
#[test]
fn a_foreign_state_json_is_skipped() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let sa = open_crashy(a.path());
    put_all(&sa, &ids("a", 2));
    sa.checkpoint().unwrap();
    put_all(&sa, &ids("a", 4)[2..]);
    sa.checkpoint().unwrap();
    put_all(&sa, &ids("a", 6)[4..]);
    drop(sa);
    store(b.path(), "b");
    let a_id = store_id_of(a.path());
    std::fs::copy(b.path().join("state.json"), a.path().join("state.json")).unwrap();
    assert_ne!(store_id_of(a.path()), a_id);

    let report = verify(&RealFs::existing(a.path()).unwrap()).unwrap();
    assert!(
        report.findings.iter().any(|f| f.file == "state.json"
            && f.class == FindingClass::Corrupt
            && f.message.contains("belongs to another store")),
        "{:?}",
        report.findings
    );
    let sa = Store::open(opts(a.path())).unwrap();
    let rec = sa.recovery_report().unwrap().clone();
    assert!(matches!(rec.loaded_from, LoadedFrom::Backup(_)), "{rec:?}");
    assert!(
        rec.skipped_files
            .iter()
            .any(|s| s.file == "state.json" && s.reason.contains("belongs to another store")),
        "{:?}",
        rec.skipped_files
    );
    check_tasks(&sa, &ids("a", 6));
    // The checkpoint the fallback triggers writes A's id back.
    drop(sa);
    assert_eq!(store_id_of(a.path()), a_id);
}

// The id survives: new segments and every checkpoint carry the one made at
// creation; load_state reports it.
#[test]
fn the_store_id_is_kept_across_opens() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path(), "a");
    let s = Store::open(opts(dir.path())).unwrap();
    let id = s.load_state().unwrap().store_id.expect("an id");
    put_all(&s, &ids("c", 2));
    s.checkpoint().unwrap();
    drop(s);
    assert_eq!(store_id_of(dir.path()), id);
    assert_eq!(id.len(), 32);
    for seg in segments(dir.path()) {
        let bytes = std::fs::read(&seg).unwrap();
        let h = statewal::__internal::journal::record::SegmentHeader::decode(&bytes).unwrap();
        assert_eq!(
            h.store_id
                .map(|i| statewal::__internal::journal::record::id_hex(&i)),
            Some(id.clone()),
            "{}",
            seg.display()
        );
    }
}

// Review bug (part 6, verify agreeing with open): with state.json removed
// (the original design's way to force a rebuild), open loads A's newest
// backup and takes A's id from it, but verify took the id of the first
// segment that carries one. B's segment copied in as segment 1, below A's
// own, made verify call A's own segment "another store's" and say nothing
// of B's, pointing the user at the wrong file.
#[test]
fn without_state_json_verify_takes_the_store_id_open_takes() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let sa = open_crashy(a.path());
    put_all(&sa, &ids("a", 2));
    sa.checkpoint().unwrap();
    put_all(&sa, &ids("a", 4)[2..]);
    sa.checkpoint().unwrap();
    put_all(&sa, &ids("a", 6)[4..]);
    drop(sa);
    let a_id = store_id_of(a.path());
    store(b.path(), "b");
    let journal = a.path().join("journal");
    let first = segment_name(1);
    assert!(!journal.join(&first).exists(), "A's segment 1 is gone");
    std::fs::copy(b.path().join("journal").join(&first), journal.join(&first)).unwrap();
    std::fs::remove_file(a.path().join("state.json")).unwrap();

    let report = verify(&RealFs::existing(a.path()).unwrap()).unwrap();
    let foreign: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.message.contains("belongs to another store"))
        .map(|f| f.file.clone())
        .collect();
    assert_eq!(
        foreign,
        [format!("journal/{first}")],
        "{:?}",
        report.findings
    );

    let sa = Store::open(opts(a.path())).unwrap();
    assert!(matches!(
        sa.recovery_report().unwrap().loaded_from,
        LoadedFrom::Backup(_)
    ));
    check_tasks(&sa, &ids("a", 6));
    drop(sa);
    assert_eq!(store_id_of(a.path()), a_id, "open kept A's id");
}
