//! `clean` archives through the journal: a crash (power loss included) at
//! any moment of it leaves each task either still a task or archived
//! exactly once, never lost from both and never archived twice; and once
//! `clean` has returned, power loss cannot undo it. This is the crash test
//! for the archive file's data sync and the `archive/` directory sync.

use statewal::__internal::fs::{Fs, SimFs};
use statewal::sim::Outcome;
use statewal::{Options, Store, Task, TaskStatus};
use std::sync::Arc;
use std::time::Duration;

const IDS: [&str; 2] = ["old-a", "old-b"];

fn opts() -> Options {
    Options::new("sim")
        .checkpoint_interval(None)
        .checkpoint_on_drop(false)
        .journal_preallocate_bytes(1024)
}

fn old_task(id: &str) -> Task {
    let mut t = Task::new(id);
    t.set_status(TaskStatus::Completed);
    t.set("completed_at", "2020-01-01T00:00:00Z").unwrap();
    t.set_description(format!("archived {id}"));
    t
}

/// How many times each id appears in the archive files.
fn archived_counts(fs: &SimFs) -> Vec<usize> {
    let mut text = String::new();
    for name in fs.list("archive").unwrap() {
        let bytes = fs.read(&format!("archive/{name}")).unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&bytes));
    }
    IDS.iter()
        .map(|id| text.matches(&format!("\"id\":\"{id}\"")).count())
        .collect()
}

fn check(fs: SimFs, acked: bool, ctx: &str) {
    let store = Store::open_with_fs(opts(), Arc::new(fs.clone()), None)
        .unwrap_or_else(|e| panic!("{ctx}: the default open failed: {e}"));
    store
        .checkpoint()
        .unwrap_or_else(|e| panic!("{ctx}: checkpoint: {e}"));
    let counts = archived_counts(&fs);
    for (id, n) in IDS.iter().zip(counts) {
        let is_task = store.get_task(id).unwrap().is_some();
        assert!(n <= 1, "{ctx}: {id} archived {n} times");
        assert!(
            is_task ^ (n == 1),
            "{ctx}: {id} is a task: {is_task}, archived {n} times"
        );
        if acked {
            assert!(
                !is_task && n == 1,
                "{ctx}: clean returned, yet {id} is not archived"
            );
        }
    }
}

#[test]
fn a_crash_anywhere_in_clean_archives_each_task_at_most_once_and_loses_none() {
    let mut states = 0;
    for k in 0.. {
        let fs = SimFs::new(11);
        let store = Store::open_with_fs(opts(), Arc::new(fs.clone()), None).unwrap();
        for id in IDS {
            store.put_task(old_task(id)).unwrap();
        }
        store.checkpoint().unwrap();
        fs.crash_after_ops(fs.ops() + k);
        let acked = store.clean(Duration::from_secs(86_400), &[], false).is_ok();
        let reached_end = !fs.crashed();
        std::mem::forget(store);
        let ctx = format!("crash after {k} ops of clean (acknowledged: {acked})");
        check(
            fs.crash_with(|_| Outcome::Lost),
            acked,
            &format!("{ctx}, unsynced lost"),
        );
        check(
            fs.crash_with(|_| Outcome::Kept),
            acked,
            &format!("{ctx}, unsynced kept"),
        );
        for sample in 0..4 {
            // Each call draws new outcomes from the filesystem's seeded RNG.
            check(
                fs.crash(),
                acked,
                &format!("{ctx}, random outcome {sample}"),
            );
        }
        states += 6;
        if reached_end {
            assert!(
                acked,
                "clean ran to the end without a crash, so it returned Ok"
            );
            break;
        }
    }
    println!("archive crash states checked: {states}, violations: 0");
}
