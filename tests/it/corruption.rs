//! A bit flipped in the middle of the journal is never mistaken for a torn
//! tail: each recovery mode does what it promises with it.

use crate::util::*;
use statewal::__internal::fs::RealFs;
use statewal::__internal::journal::record::{
    REC_CRC_OFFSET, REC_KIND_OFFSET, REC_LEN_OFFSET, REC_SEQ_OFFSET, REC_SYNCED_DISTANCE_OFFSET,
    RECORD_HEADER_LEN,
};
use statewal::__internal::verify::{FindingClass, verify};
use statewal::report::LoadedFrom;
use statewal::{ErrorKind, RecoveryMode, Store};
use std::path::Path;

const TASKS: usize = 7;
const DAMAGED: usize = 3; // The index of the record (and task) that is damaged.

/// A journal of `TASKS` puts (no checkpoint) with one bit of record
/// `DAMAGED` flipped at `at` bytes into the record. Returns the directory,
/// the segment's file name and the record's offset.
fn damaged_journal(at: usize, bit: u8) -> (tempfile::TempDir, String, u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_crashy(dir.path());
    put_all(&store, &ids("t", TASKS));
    drop(store);
    let seg = only_segment(dir.path());
    let (start, end) = record_spans(&seg)[DAMAGED];
    let at = at as u64;
    assert!(start + at < end, "the flipped byte is inside the record");
    flip_bit(&seg, start + at, bit);
    let name = seg.file_name().unwrap().to_str().unwrap().to_string();
    (dir, name, start)
}

fn all_but_damaged() -> Vec<String> {
    ids("t", TASKS)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != DAMAGED)
        .map(|(_, id)| id)
        .collect()
}

/// Checks that opening `dir` in `mode` fails with a message a person can act on.
fn check_refused(dir: &Path, mode: RecoveryMode, segment: &str, offset: u64) {
    let msg = check_err(
        try_open(crash_opts(dir).recovery_mode(mode)),
        ErrorKind::Corrupt,
    );
    assert!(
        msg.contains(segment),
        "{mode:?}: message does not name the file: {msg}"
    );
    assert!(
        msg.contains(&format!("byte {offset}")),
        "{mode:?}: message does not name the offset: {msg}"
    );
    assert!(msg.contains("corrupt"), "{mode:?}: {msg}");
    assert!(
        msg.contains("statewal recover"),
        "{mode:?}: message does not say how to recover: {msg}"
    );
}

// Where in a record a bit is flipped: the checksum, the length (low bit, and
// high bit past the cap), the sequence number, the kind, the synced-before
// distance and the payload.
const FLIPS: [(usize, u8); 7] = [
    (REC_CRC_OFFSET, 3),
    (REC_LEN_OFFSET, 0),
    (REC_LEN_OFFSET + 3, 7),
    (REC_SEQ_OFFSET + 1, 1),
    (REC_KIND_OFFSET, 2),
    (REC_SYNCED_DISTANCE_OFFSET, 0),
    (RECORD_HEADER_LEN + 10, 5),
];

// Guards: damage before the end of the journal fails the open in the default
// mode and in strict mode, with an error naming the file, the offset and the
// way out; a failed open changes nothing on disk.
#[test]
fn middle_damage_is_refused_by_default_and_strict() {
    for (at, bit) in FLIPS {
        let (dir, segment, offset) = damaged_journal(at, bit);
        let seg = only_segment(dir.path());
        let before = std::fs::read(&seg).unwrap();
        check_refused(dir.path(), RecoveryMode::TolerateTornTail, &segment, offset);
        check_refused(dir.path(), RecoveryMode::Strict, &segment, offset);
        assert_eq!(
            std::fs::read(&seg).unwrap(),
            before,
            "a refused open must not change the journal"
        );
        assert!(!dir.path().join("state.json").exists());
    }
}

// Guards: salvage skips exactly the damaged record and keeps every other one.
#[test]
fn salvage_skips_only_the_damaged_record() {
    for (at, bit) in FLIPS {
        let (dir, _, offset) = damaged_journal(at, bit);
        let store =
            Store::open(crash_opts(dir.path()).recovery_mode(RecoveryMode::Salvage)).unwrap();
        let report = store.recovery_report().unwrap().clone();
        check_tasks(&store, &all_but_damaged());
        assert_eq!(report.records_replayed, (TASKS - 1) as u64, "flip at {at}");
        assert_eq!(report.damage.len(), 1, "{:?}", report.damage);
        assert_eq!(report.damage[0].offset, offset);
        assert!(!report.damage[0].torn_tail);
    }
}

// Guards: point-in-time keeps only the records before the damage.
#[test]
fn point_in_time_keeps_only_records_before_the_damage() {
    for (at, bit) in FLIPS {
        let (dir, _, _) = damaged_journal(at, bit);
        let store =
            Store::open(crash_opts(dir.path()).recovery_mode(RecoveryMode::PointInTime)).unwrap();
        check_tasks(&store, &ids("t", DAMAGED));
        assert_eq!(
            store.recovery_report().unwrap().records_replayed,
            DAMAGED as u64
        );
    }
}

// Guards: once salvage or point-in-time has checkpointed the recovered state,
// the damage is behind the store: the next default open succeeds with what
// was recovered (even if nothing was written in between), dropped records do
// not come back, new records never reuse a sequence number the journal had
// used, and verify finds nothing left to complain about.
//
// Regression for two bugs in src/recovery.rs:
// - the recovery checkpoint left the damaged segment in place and, when
//   nothing was written before the next open, that open replayed the same
//   segment, hit the same damage and refused to open;
// - point-in-time stopped reading at the damage, so the sequence numbers of
//   the dropped records after it were handed out again to new records.
#[test]
fn recovery_modes_leave_the_damage_behind() {
    for (mode, kept) in [
        (RecoveryMode::Salvage, all_but_damaged()),
        (RecoveryMode::PointInTime, ids("t", DAMAGED)),
    ] {
        let (dir, _, _) = damaged_journal(REC_KIND_OFFSET, 2);
        let store = Store::open(crash_opts(dir.path()).recovery_mode(mode)).unwrap();
        assert!(
            dir.path().join("state.json").exists(),
            "{mode:?} checkpoints at once"
        );
        drop(store);

        let store = Store::open(crash_opts(dir.path()))
            .unwrap_or_else(|e| panic!("{mode:?}: default open right after recovery failed: {e}"));
        assert_eq!(
            store.recovery_report().unwrap().loaded_from,
            LoadedFrom::StateFile
        );
        check_tasks(&store, &kept);
        let seq = store.put_task(task("later")).unwrap();
        assert!(
            seq > TASKS as u64,
            "{mode:?}: sequence number {seq} reused after recovery"
        );
        drop(store);

        let store = Store::open(crash_opts(dir.path())).unwrap_or_else(|e| {
            panic!("{mode:?}: default open after recovery and a write failed: {e}")
        });
        let mut expected = kept.clone();
        expected.push("later".into());
        check_tasks(&store, &expected);
        drop(store);
        let report = verify(&RealFs::existing(dir.path()).unwrap()).unwrap();
        assert!(report.is_clean(), "{mode:?}: {:?}", report.findings);
    }
}

// Guards: verify reports middle damage as corruption at the record's offset.
#[test]
fn verify_reports_middle_damage_as_corrupt() {
    let (dir, segment, offset) = damaged_journal(RECORD_HEADER_LEN + 10, 5);
    let report = verify(&RealFs::existing(dir.path()).unwrap()).unwrap();
    assert!(!report.is_clean());
    let finding = report
        .findings
        .iter()
        .find(|f| f.class == FindingClass::Corrupt)
        .unwrap_or_else(|| panic!("no corrupt finding: {:?}", report.findings));
    assert!(finding.file.ends_with(&segment), "{finding}");
    assert_eq!(finding.offset, offset);
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.class != FindingClass::TornTail),
        "{:?}",
        report.findings
    );
    assert_eq!(report.records_checked, (TASKS - 1) as u64);
}

// Guards: damage in a record that state.json already covers is also left
// behind by salvage. The journal keeps such a segment until the next
// checkpoint, so bit rot there is the common case of middle damage.
//
// Regression (src/recovery.rs): every later default open refused the same
// damage again. Recovery now does not read segments that start at or before
// state.json's position: every record in them is covered.
#[test]
fn salvage_leaves_damage_in_checkpointed_records_behind() {
    let dir = tempfile::tempdir().unwrap();
    let all = ids("t", TASKS);
    let store = open_crashy(dir.path());
    put_all(&store, &all);
    store.checkpoint().unwrap();
    drop(store);
    let seg = only_segment(dir.path());
    let (start, _) = record_spans(&seg)[DAMAGED];
    flip_bit(&seg, start + RECORD_HEADER_LEN as u64 + 10, 5);

    let store = Store::open(crash_opts(dir.path()).recovery_mode(RecoveryMode::Salvage)).unwrap();
    check_tasks(&store, &all);
    // The segment starts before state.json's position, so every record in it
    // is covered: recovery does not read it, and its damage costs nothing.
    assert_eq!(store.recovery_report().unwrap().damage.len(), 0);
    assert_eq!(store.recovery_report().unwrap().segments_read, 0);
    drop(store);

    let store = Store::open(crash_opts(dir.path()))
        .unwrap_or_else(|e| panic!("default open after salvage failed: {e}"));
    check_tasks(&store, &all);
    drop(store);
    // verify still reports the damaged bytes: they are damage, if harmless
    // ones, until checkpoints retire the segment.
    let report = verify(&RealFs::existing(dir.path()).unwrap()).unwrap();
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    assert_eq!(report.findings[0].class, FindingClass::Corrupt);
}
