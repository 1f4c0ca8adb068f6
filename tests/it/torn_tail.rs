//! A write interrupted at any byte of the last record leaves a journal that
//! opens with everything before it.

use crate::util::*;
use statewal::__internal::fs::RealFs;
use statewal::__internal::verify::{FindingClass, verify};
use statewal::{ErrorKind, Options, RecoveryMode, Store};

const TASKS: usize = 6;

/// Builds a journal of `TASKS` puts with no checkpoint and returns the
/// directory and the byte span of its last record.
fn journal_of_puts() -> (tempfile::TempDir, (u64, u64)) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_crashy(dir.path());
    put_all(&store, &ids("t", TASKS));
    drop(store);
    let spans = record_spans(&only_segment(dir.path()));
    assert_eq!(spans.len(), TASKS);
    (dir, *spans.last().unwrap())
}

/// How a torn write leaves the last record. The write was interrupted, so
/// the sync marker that follows a synced record was never written either:
/// nothing after the cut survives.
#[derive(Debug, Clone, Copy)]
enum Tear {
    /// The file ends inside the record (no preallocation, or the size was
    /// updated before the data).
    Truncated,
    /// The file keeps its length and everything from the cut on reads as
    /// zeros (a preallocated segment, or a size updated before the data).
    Zeroed,
}

fn tear(seg: &std::path::Path, how: Tear, cut: u64) {
    match how {
        Tear::Truncated => std::fs::OpenOptions::new()
            .write(true)
            .open(seg)
            .unwrap()
            .set_len(cut)
            .unwrap(),
        Tear::Zeroed => {
            let mut bytes = std::fs::read(seg).unwrap();
            bytes[cut as usize..].fill(0);
            std::fs::write(seg, bytes).unwrap();
        }
    }
}

// Guards: a journal torn at every byte offset inside its last record opens in
// the default mode with all earlier records, reports the bytes it cut off,
// and truncates so that later writes and another (strict) reopen work: the
// torn bytes must not end up in the middle of the journal.
#[test]
fn cut_at_every_offset_of_last_record_opens_with_earlier_records() {
    let (src, (start, end)) = journal_of_puts();
    let src_seg = only_segment(src.path());
    let original = std::fs::read(&src_seg).unwrap();
    let all = ids("t", TASKS);
    let earlier = &all[..TASKS - 1];
    for how in [Tear::Truncated, Tear::Zeroed] {
        for cut in start..end {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("copy");
            copy_dir(src.path(), &dir);
            let seg = only_segment(&dir);
            tear(&seg, how, cut);
            let len_before = std::fs::metadata(&seg).unwrap().len();

            let store = open_crashy(&dir);
            let report = store.recovery_report().unwrap().clone();
            let what = format!("{how:?} at {cut} (record {start}..{end})");
            check_tasks(&store, earlier);
            assert_eq!(report.records_replayed, (TASKS - 1) as u64, "{what}");
            // Only zeros left of the record is a clean end under
            // preallocation; anything else is a torn tail to cut off.
            let clean = original[start as usize..cut as usize]
                .iter()
                .all(|&b| b == 0);
            if matches!(how, Tear::Truncated) && cut == start {
                assert_eq!(
                    report.bytes_truncated, 0,
                    "{what}: a cut on the record boundary is not damage"
                );
                assert!(report.damage.is_empty(), "{what}: {:?}", report.damage);
            } else if !clean {
                assert_eq!(report.bytes_truncated, len_before - start, "{what}");
                assert!(!report.damage.is_empty(), "{what}: damage not reported");
                assert!(
                    report.damage.iter().all(|d| d.torn_tail),
                    "{what}: {:?}",
                    report.damage
                );
                assert_eq!(
                    std::fs::metadata(&seg).unwrap().len(),
                    start,
                    "{what}: torn tail not truncated"
                );
            }

            store.put_task(task("after")).unwrap();
            drop(store);
            let store = Store::open(crash_opts(&dir).recovery_mode(RecoveryMode::Strict))
                .unwrap_or_else(|e| panic!("{what}: reopen after writing past a torn tail: {e}"));
            let mut expected = earlier.to_vec();
            expected.push("after".into());
            check_tasks(&store, &expected);
        }
    }
}

// Guards: strict mode refuses even a torn tail, and verify classifies a cut
// last record as a torn tail, not as corruption.
#[test]
fn torn_tail_is_refused_by_strict_and_reported_by_verify() {
    let (dir, (start, end)) = journal_of_puts();
    let seg = only_segment(dir.path());
    let cut = start + (end - start) / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(cut)
        .unwrap();

    let report = verify(&RealFs::existing(dir.path()).unwrap()).unwrap();
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    assert_eq!(report.findings[0].class, FindingClass::TornTail);
    assert_eq!(report.findings[0].offset, start);
    assert_eq!(report.records_checked, (TASKS - 1) as u64);

    let msg = check_err(
        try_open(crash_opts(dir.path()).recovery_mode(RecoveryMode::Strict)),
        ErrorKind::Corrupt,
    );
    assert!(msg.contains(&format!("byte {start}")), "{msg}");
    assert!(
        msg.contains("statewal recover"),
        "strict mode should name the way out: {msg}"
    );
    // A refused open must not have truncated anything.
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), cut);

    let store = Store::open(Options::new(dir.path()).checkpoint_interval(None)).unwrap();
    check_tasks(&store, &ids("t", TASKS - 1));
    drop(store);
    assert!(
        verify(&RealFs::existing(dir.path()).unwrap())
            .unwrap()
            .is_clean()
    );
}
