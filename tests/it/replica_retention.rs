//! Retention in the bucket (issue 11, `docs/replication.md`, "Retention in
//! the bucket"): a prune deletes what is older than the window, and a
//! restore to any sequence number inside the window still gives exactly
//! what the store held then, after a full prune and after a prune stopped
//! after any number of deletes (a crash mid-prune), which the next prune
//! finishes. Time is the bucket's `last_modified`; the tests move the
//! clock with `replica::prune`'s `now` instead of waiting days.

use crate::replica::{Bucket, file_bucket, objects, replicated, restore, restored_tasks, tasks_of};
use crate::util::{ids, put_all, scratch, task};
use statewal::Store;
use statewal::replica::{self, RestoreTarget};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

type State = BTreeMap<String, Vec<u8>>;

/// One record: its sequence number, when it was acknowledged, and the
/// store's tasks just after it.
struct Written {
    seq: u64,
    at: SystemTime,
    state: State,
}

/// A history shipped to a bucket in two generations, and when each round
/// of it was in the bucket whole.
struct History {
    bucket: Bucket,
    /// The records of the store's history as a restore sees it: the first
    /// generation up to the fork, then the second.
    timeline: Vec<Written>,
    /// After each round: the time by which its checkpoint and records were
    /// in the bucket, and that checkpoint's `journal_seq`.
    marks: Vec<(SystemTime, u64)>,
    /// The first round of the second generation.
    second_from: usize,
}

const WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// Waits until the replica holds every record of `store` and a checkpoint
/// at `seq`.
fn wait_shipped(store: &Store, bucket: &Bucket, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let checkpoint = format!("/checkpoints/{seq:020}-");
    loop {
        let s = store.replica_status().unwrap().unwrap();
        let names = objects(bucket.root.as_ref().unwrap());
        if s.shipped_seq >= seq && names.iter().any(|n| n.contains(&checkpoint)) {
            return;
        }
        assert!(Instant::now() < deadline, "never shipped: {s:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Six puts over five ids (the first three shipped before the others), a checkpoint, and a mark once the bucket holds
/// them all.
fn round(store: &Store, h: &mut History, r: usize) {
    let mut last = 0;
    for i in 0..6 {
        let mut t = task(&format!("t{}", (i + r) % 5));
        t.set_description(format!("round {r}, put {i}"));
        last = store.put_task(t).unwrap();
        let state = tasks_of(store);
        h.timeline.push(Written {
            seq: last,
            at: SystemTime::now(),
            state,
        });
        if i == 2 {
            // Shipped before the rest: each segment has two objects or
            // more, so a prune stopped inside a segment is tested too.
            let deadline = Instant::now() + Duration::from_secs(20);
            while store.replica_status().unwrap().unwrap().shipped_seq < last {
                assert!(Instant::now() < deadline, "never shipped");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    store.checkpoint().unwrap();
    wait_shipped(store, &h.bucket, last);
    h.marks.push((SystemTime::now(), last));
    // Objects shipped from here on are strictly newer than the mark.
    std::thread::sleep(Duration::from_millis(30));
}

/// Three rounds in a first generation; then the store is restored to a
/// record of its last round and goes on in a second generation (the
/// records after the fork are no longer part of its history) for three
/// more.
fn history(tmp: &Path) -> History {
    let bucket = file_bucket(tmp);
    let mut h = History {
        bucket,
        timeline: Vec::new(),
        marks: Vec::new(),
        second_from: 3,
    };
    let first = tmp.join("first");
    let store =
        Store::open(replicated(&first, &h.bucket).replica_retention(Duration::MAX)).unwrap();
    for r in 0..3 {
        round(&store, &mut h, r);
    }
    drop(store);
    let fork = h.timeline[h.timeline.len() - 3].seq;
    h.timeline.retain(|w| w.seq <= fork);
    let second = tmp.join("second");
    restore(&h.bucket, &second, RestoreTarget::Seq(fork));
    let opts = replicated(&second, &h.bucket).replica_retention(Duration::MAX);
    let store = Store::open(opts).unwrap();
    // The new generation's first checkpoint (the restored state.json) is
    // what a restore to the records after the fork starts from; one that a
    // checkpoint replaced before the replica's first tick is never shipped
    // (docs/replication.md, "What is shipped when").
    let deadline = Instant::now() + Duration::from_secs(20);
    while checkpoints(&h).values().nth(1).is_none_or(|c| c.is_empty()) {
        assert!(
            Instant::now() < deadline,
            "the second generation never began"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for r in 3..6 {
        round(&store, &mut h, r);
    }
    drop(store);
    let generations = replica::inspect(&h.bucket.url, &[]).unwrap();
    assert_eq!(generations.len(), 2, "{generations:?}");
    h
}

/// Every restore inside a window that begins at `cutoff`: to each record
/// acknowledged since, and to the state at the cutoff itself (the last
/// record before it), gives exactly what the store held then.
fn check_window(h: &History, tmp: &Path, cutoff: SystemTime, what: &str) {
    let at_cutoff = h.timeline.iter().rposition(|w| w.at < cutoff);
    let from = at_cutoff.unwrap_or(0);
    for w in &h.timeline[from..] {
        let to = tmp.join("check");
        let report = replica::restore_with(&h.bucket.url, &[], &to, RestoreTarget::Seq(w.seq))
            .unwrap_or_else(|e| panic!("{what}: restore to {} failed: {e}", w.seq));
        assert_eq!(report.last_seq, w.seq, "{what}: {report:?}");
        assert!(report.stopped_at.is_none(), "{what}: {report:?}");
        assert_eq!(restored_tasks(&to), w.state, "{what}: at seq {}", w.seq);
        std::fs::remove_dir_all(&to).unwrap();
    }
}

fn prune(h: &History, cutoff: SystemTime, max: usize) -> replica::PruneReport {
    replica::prune(&h.bucket.url, &[], WINDOW, cutoff + WINDOW, max).expect("prune")
}

/// The generations and checkpoints a listing holds.
fn checkpoints(h: &History) -> BTreeMap<String, Vec<u64>> {
    replica::inspect(&h.bucket.url, &[])
        .unwrap()
        .into_iter()
        .map(|g| (g.id, g.checkpoints))
        .collect()
}

/// A window beginning after each round: a full prune leaves every restore
/// inside it working, deletes what is outside, and a second prune finds
/// nothing more to do.
#[test]
fn restores_inside_the_window_survive_a_prune() {
    for r in 0..6 {
        let tmp = scratch();
        let h = history(tmp.path());
        let (cutoff, base) = h.marks[r];
        let before = checkpoints(&h);
        let report = prune(&h, cutoff, usize::MAX);
        assert!(!report.deleted.is_empty(), "window after round {r}");
        assert_eq!(report.left, 0);
        check_window(&h, tmp.path(), cutoff, &format!("window after round {r}"));
        // Outside the window: the first generation once the second began
        // before the window, and in the generation of the cutoff every
        // checkpoint before the one the window starts from.
        let after = checkpoints(&h);
        let gone_whole = r >= h.second_from;
        assert_eq!(after.len(), if gone_whole { 1 } else { 2 }, "{after:?}");
        let (newest, _) = before.iter().next_back().unwrap();
        if gone_whole {
            assert!(after.contains_key(newest), "{after:?}");
        }
        let kept = if r >= h.second_from {
            newest
        } else {
            before.keys().next().unwrap()
        };
        assert_eq!(after[kept].first(), Some(&base), "round {r}: {after:?}");
        // The records before the window are gone with it: a restore to the
        // first one fails rather than give something else.
        let to = tmp.path().join("outside");
        let outside = replica::restore_with(&h.bucket.url, &[], &to, RestoreTarget::Seq(1));
        assert!(outside.is_err(), "round {r}: {outside:?}");
        assert!(prune(&h, cutoff, usize::MAX).deleted.is_empty());
    }
}

/// A prune stopped after each of its deletes (as a crash would stop it)
/// leaves a bucket every restore inside the window reads; the next prune
/// goes on from there, and deletes what the whole plan would have.
#[test]
fn a_prune_stopped_after_any_delete_keeps_the_window() {
    for r in [0, 4] {
        let tmp = scratch();
        let h = history(tmp.path());
        let (cutoff, _) = h.marks[r];
        let due = prune(&h, cutoff, 0).left;
        assert!(due >= 2, "window after round {r}: {due} objects due");
        let mut deleted = BTreeSet::new();
        for k in 1..=due {
            let report = prune(&h, cutoff, 1);
            check_window(
                &h,
                tmp.path(),
                cutoff,
                &format!("window after round {r}, stopped after {k} of {due} deletes"),
            );
            assert_eq!(report.deleted.len(), 1, "step {k}: {report:?}");
            assert_eq!(report.left, due - k, "step {k}: {report:?}");
            deleted.extend(report.deleted);
        }
        assert_eq!(deleted.len(), due);
        assert!(prune(&h, cutoff, usize::MAX).deleted.is_empty());
    }
}

/// A store with a short window prunes its own bucket as it ships (once per
/// window at most) down to its newest checkpoint, and after a restart does
/// not ship again what it pruned: here the local journal still holds the
/// segment before that checkpoint (a checkpoint removes only what the one
/// before it covers, and the store closes without one).
#[test]
fn the_live_replica_prunes_behind_the_window() {
    let tmp = scratch();
    let bucket = file_bucket(tmp.path());
    let dir = tmp.path().join("store");
    let window = Duration::from_millis(300);
    let opts = || {
        replicated(&dir, &bucket)
            .replica_retention(window)
            .checkpoint_on_drop(false)
    };
    let store = Store::open(opts()).unwrap();
    for r in 0..3 {
        put_all(&store, &ids(&format!("r{r}-"), 5));
        store.checkpoint().unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    // A record after the last checkpoint: its segment's header, in the
    // bucket, proves the segment before it is covered.
    store.put_task(task("tail")).unwrap();
    let held = tasks_of(&store);
    let root = bucket.root.as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let last_checkpoint_only = loop {
        let names = objects(root);
        let checkpoints: Vec<&String> = names
            .iter()
            .filter(|n| n.contains("/checkpoints/"))
            .collect();
        if checkpoints.len() == 1 && checkpoints[0].contains(&format!("/{:020}-", 15)) {
            break names;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never pruned: {names:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(store.replica_status().unwrap().unwrap().objects_pruned > 0);
    drop(store);
    let lowest = |names: &[String]| {
        crate::replica::segment_ranges(names)
            .into_iter()
            .map(|r| r.1)
            .min()
            .unwrap()
    };
    let pruned_below = lowest(&last_checkpoint_only);
    let local_lowest = crate::util::segments(&dir)[0]
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        local_lowest < pruned_below,
        "the local journal holds a segment the bucket pruned: {local_lowest} vs {pruned_below}"
    );
    // A restart resumes the generation and ships only what is new.
    let store = Store::open(opts().replica_retention(Duration::MAX)).unwrap();
    put_all(&store, &ids("after", 3));
    let held_after = tasks_of(&store);
    drop(store);
    let names = objects(root);
    let generations: BTreeSet<String> = crate::replica::segment_ranges(&names)
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(generations.len(), 1, "{names:#?}");
    assert_eq!(
        lowest(&names),
        pruned_below,
        "a pruned segment was shipped again: {names:#?}"
    );
    assert_ne!(held, held_after);
    let to = tmp.path().join("restored");
    restore(&bucket, &to, RestoreTarget::Latest);
    assert_eq!(restored_tasks(&to), held_after);
}

/// The window from the environment: a value that does not parse stops the
/// open with exit 2, naming the variable and the value, before anything is
/// written; good ones (and `forever`) open and ship.
#[test]
fn a_bad_retention_variable_is_refused_naming_it() {
    let tmp = scratch();
    let bucket = file_bucket(tmp.path());
    let dir = tmp.path().join("store");
    let args = ["--replicate", bucket.url.as_str(), "put-task", "-"];
    for bad in ["7x", "", "0d", "d", "-1d", "99999999999999999w"] {
        let env = [("STATEWAL_REPLICA_RETENTION", bad)];
        let out = crate::util::run_statewal(&dir, &args, r#"{"id":"a"}"#, &env);
        let (_, err) = crate::util::expect_exit(out, 2, &args);
        assert!(
            err.contains(&format!("STATEWAL_REPLICA_RETENTION={bad:?}")),
            "{bad:?}: {err}"
        );
        assert!(!dir.exists(), "{bad:?}: the directory was created");
    }
    for good in ["7d", "1d12h", "90m", "forever"] {
        let env = [("STATEWAL_REPLICA_RETENTION", good)];
        let out = crate::util::run_statewal(&dir, &args, r#"{"id":"a"}"#, &env);
        crate::util::expect_exit(out, 0, &args);
    }
}

/// Pruning against S3 (moto) and Azure (Azurite): their `last_modified`
/// (whole seconds on some), ranged GETs of segment headers and deletes.
/// The rounds are more than a second apart.
#[test]
fn a_prune_on_s3_and_azure_keeps_the_window() {
    for bucket in [crate::emulators::s3(), crate::emulators::azure()]
        .into_iter()
        .filter_map(crate::replica::emulated)
    {
        let tmp = scratch();
        let dir = tmp.path().join("store");
        let opts = replicated(&dir, &bucket).replica_retention(Duration::MAX);
        let store = Store::open(opts).unwrap();
        let mut states = Vec::new();
        let mut write = |store: &Store, tag: &str| {
            for i in 0..5 {
                let seq = store.put_task(task(&format!("{tag}{i}"))).unwrap();
                states.push((seq, tasks_of(store)));
            }
        };
        write(&store, "a");
        store.checkpoint().unwrap();
        write(&store, "b");
        let deadline = Instant::now() + Duration::from_secs(20);
        while store.replica_status().unwrap().unwrap().lag_records > 0 {
            assert!(Instant::now() < deadline, "never shipped");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(1100));
        let cutoff = SystemTime::now();
        std::thread::sleep(Duration::from_millis(1100));
        write(&store, "c");
        drop(store);
        let report = replica::prune(&bucket.url, &bucket.settings, WINDOW, cutoff + WINDOW, 100)
            .expect("prune");
        assert!(
            report.deleted.iter().any(|n| n.contains("/segments/")),
            "{} {report:?}",
            bucket.url
        );
        // The window begins after record 10: the checkpoint at 5 and the
        // segments after it are what a restore to 10 and on needs.
        for (seq, want) in states.iter().filter(|(seq, _)| *seq >= 10) {
            let to = tmp.path().join(format!("at{seq}"));
            let r = restore(&bucket, &to, RestoreTarget::Seq(*seq));
            assert_eq!(r.last_seq, *seq, "{r:?}");
            assert_eq!(&restored_tasks(&to), want, "{} at {seq}", bucket.url);
        }
    }
}
