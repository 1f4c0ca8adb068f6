//! Cleanup after salvage and point-in-time is durable (issue 8, part 3).
//!
//! Regression: the checkpoint that `recover --mode salvage` or
//! `--mode point-in-time` writes at once removed the damaged journal
//! segments without syncing `journal/`. After power loss a removed segment
//! came back; with its header damaged, recovery cannot tell that
//! `state.json` covers it, reads it, and the default open failed with "bad
//! segment magic". The checkpoint now syncs `journal/` after removing
//! segments.

use statewal::__internal::fs::Fs;
use statewal::sim::{Outcome, SimFs};
use statewal::{Options, RecoveryMode, Store, Task};
use std::sync::Arc;

fn opts() -> Options {
    Options::new("sim")
        .checkpoint_interval(None)
        .checkpoint_on_drop(false)
}

fn segments(fs: &SimFs) -> Vec<String> {
    fs.list("journal").unwrap()
}

#[test]
fn power_loss_after_a_salvage_or_point_in_time_cleanup_keeps_the_store_openable() {
    for mode in [RecoveryMode::Salvage, RecoveryMode::PointInTime] {
        let fs = SimFs::new(7);
        let store = Store::open_with_fs(opts(), Arc::new(fs.clone()), None).unwrap();
        for id in ["a", "b", "c"] {
            store.put_task(Task::new(id)).unwrap();
        }
        drop(store);
        let damaged = format!("journal/{}", segments(&fs)[0]);
        assert!(fs.corrupt(&damaged, |b| b[0] ^= 0xff), "damage {damaged}");
        let ctx = format!("{mode:?}");
        // The default open refuses the damage; the chosen mode recovers
        // past it and checkpoints, removing the damaged segment.
        assert!(Store::open_with_fs(opts(), Arc::new(fs.fork()), None).is_err());
        let store =
            Store::open_with_fs(opts().recovery_mode(mode), Arc::new(fs.clone()), None).unwrap();
        drop(store);
        assert!(
            !segments(&fs).iter().any(|s| damaged.ends_with(s.as_str())),
            "{ctx}: the recovery checkpoint removes the damaged segment"
        );
        // Power loss now: whatever was not synced is lost.
        let after = fs.crash_with(|_| Outcome::Lost);
        Store::open_with_fs(opts(), Arc::new(after.fork()), None)
            .unwrap_or_else(|e| panic!("{ctx}: default open after power loss failed: {e}"));
        assert!(
            !segments(&after)
                .iter()
                .any(|s| damaged.ends_with(s.as_str())),
            "{ctx}: the removed segment came back after power loss"
        );
    }
}
