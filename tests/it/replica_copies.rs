//! Two live copies of one store on one prefix (issue 11,
//! `docs/replication.md`, "Two stores on one prefix"): the claim cannot
//! tell them apart (same store id), so each open takes the generation over
//! with an epoch object, and the copy whose epoch was overtaken stops
//! shipping with a clear error instead of interleaving its ranges with the
//! other's.

use crate::replica::{
    Bucket, file_bucket, objects, replicated, restore, restored_tasks, segment_ranges, tasks_of,
};
use crate::util::{ids, put_all, scratch};
use statewal::Store;
use statewal::replica::{self, RestoreTarget};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// A store shipped and closed, copied with its directory (`cp -r`), and
/// both copies opened on the same replica URL and written to: the copy
/// opened first reports the conflict within a few ticks and ships nothing
/// more; every generation in the bucket joins with no overlap, and a
/// restore gives the second copy's tasks.
#[test]
fn two_live_copies_of_one_store_are_caught() {
    let tmp = scratch();
    two_live_copies(tmp.path(), &file_bucket(tmp.path()));
}

/// The same against S3 (moto) and Azure (Azurite): the epochs rely on
/// their create-only put (`If-None-Match: *`) and on a GET of a missing
/// object.
#[test]
fn two_live_copies_are_caught_on_s3_and_azure() {
    for bucket in [crate::emulators::s3(), crate::emulators::azure()]
        .into_iter()
        .filter_map(crate::replica::emulated)
    {
        let tmp = scratch();
        two_live_copies(tmp.path(), &bucket);
    }
}

fn two_live_copies(tmp: &Path, bucket: &Bucket) {
    let original = tmp.join("original");
    let store = Store::open(replicated(&original, bucket)).unwrap();
    put_all(&store, &ids("before", 10));
    drop(store);
    let copy = tmp.join("copy");
    copy_dir(&original, &copy);
    let first = Store::open(replicated(&original, bucket)).unwrap();
    // The first copy resumed the generation before the second opens.
    let deadline = Instant::now() + Duration::from_secs(20);
    while first
        .replica_status()
        .unwrap()
        .unwrap()
        .generation
        .is_none()
    {
        assert!(Instant::now() < deadline, "the first copy never began");
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = Store::open(replicated(&copy, bucket)).unwrap();
    for round in 0..10 {
        put_all(&first, &ids(&format!("first{round}-"), 3));
        put_all(&second, &ids(&format!("second{round}-"), 3));
        std::thread::sleep(Duration::from_millis(30));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let s = first.replica_status().unwrap().unwrap();
        if s.last_error.is_some() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the first copy never noticed: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let error = status.last_error.unwrap();
    assert!(error.contains("another open of this store"), "{error}");
    assert!(error.contains("stopped shipping"), "{error}");
    let s = second.replica_status().unwrap().unwrap();
    assert!(s.last_error.is_none(), "{s:?}");
    let held = tasks_of(&second);
    drop(first);
    drop(second);
    // The second copy began a generation of its own (the first had shipped
    // past the copied journal) or resumed the first one's; either way no
    // generation interleaves the two copies' ranges.
    let names = match &bucket.root {
        Some(root) => objects(root),
        None => Vec::new(), // inspect below checks the joins
    };
    let mut by_segment: BTreeMap<(String, String), Vec<(u64, u64)>> = BTreeMap::new();
    for (generation, seg, start, end) in segment_ranges(&names) {
        by_segment
            .entry((generation, seg))
            .or_default()
            .push((start, end));
    }
    for (seg, mut spans) in by_segment {
        spans.sort();
        let mut at = 0;
        for (start, end) in spans {
            assert_eq!(start, at, "segment {seg:?} does not join: {names:#?}");
            at = end;
        }
    }
    for g in replica::inspect(&bucket.url, &bucket.settings).unwrap() {
        assert!(g.segments.iter().all(|s| s.gap_at.is_none()), "{g:?}");
    }
    let to = tmp.join("restored");
    let report = restore(bucket, &to, RestoreTarget::Latest);
    assert!(report.stopped_at.is_none(), "{report:?}");
    assert_eq!(restored_tasks(&to), held, "one history: the second copy's");
}
