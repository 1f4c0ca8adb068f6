//! Regression: a process killed after writing a journal record but before
//! syncing it, then restarted in the same boot, replayed that record from the
//! page cache and wrote a new segment, which vouched for the unsynced record
//! (a later segment proves earlier ones durable). Power loss then took the
//! record and kept the new segment: the default open refused ("records 4 to
//! 4 are missing"), and writes acknowledged after the restart were at risk.
//! Recovery now syncs every segment it replays. (Found by review.)

use statewal::__internal::fs::SimFs;
use statewal::sim::Outcome;
use statewal::{Options, Store, Task};
use std::sync::Arc;

fn opts() -> Options {
    Options::new("sim")
        .checkpoint_interval(None)
        .checkpoint_on_drop(false)
        .journal_preallocate_bytes(1024)
}

#[test]
fn kill_restart_then_power_loss_keeps_what_the_restart_acknowledged() {
    let mut failures = Vec::new();
    for k in 0..12u64 {
        let base = SimFs::new(1);
        {
            let store = Store::open_with_fs(opts(), Arc::new(base.clone()), None).unwrap();
            for i in 0..3 {
                store.put_task(Task::new(format!("a{i}"))).unwrap();
            }
            base.crash_after_ops(base.ops() + k);
            let _ = store.put_task(Task::new("unacknowledged"));
            std::mem::forget(store); // The process dies: no destructor runs.
        }
        // The same boot: a new process on what the kernel still holds.
        let restarted = base.fork();
        restarted.clear_faults();
        let acked = {
            let store = Store::open_with_fs(opts(), Arc::new(restarted.clone()), None).unwrap();
            let ok = store.put_task(Task::new("after-restart")).is_ok();
            std::mem::forget(store);
            ok
        };
        assert!(acked, "k={k}: the restarted process could write");
        let after_power_loss = restarted.crash_with(|_| Outcome::Lost);
        match Store::open_with_fs(opts(), Arc::new(after_power_loss), None) {
            Ok(store) => {
                for id in ["a0", "a1", "a2", "after-restart"] {
                    if store.get_task(id).unwrap().is_none() {
                        failures.push(format!("k={k}: acknowledged {id} lost"));
                    }
                }
            }
            Err(e) => failures.push(format!("k={k}: the default open failed: {e}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
