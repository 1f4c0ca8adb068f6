//! Crash-testing your own use of statewal on the simulated filesystem
//! (feature `sim`): run a workload, cut the power at every point of it,
//! reopen what power loss left, and check that every acknowledged write is
//! there. Applications do the same with their own workloads and invariants.
//!
//! Run it with `cargo run --example crash_test --features sim`.

use statewal::sim::SimFs;
use statewal::{Options, Store, Task};
use std::sync::Arc;

fn options() -> Options {
    // The directory is a name inside the simulated filesystem.
    Options::new("state")
        .checkpoint_interval(None)
        .checkpoint_on_drop(false)
}

/// Puts tasks until one fails (the power went out); returns the ids that
/// were acknowledged.
fn workload(fs: &SimFs) -> Vec<String> {
    let Ok(store) = Store::open_with_fs(options(), Arc::new(fs.clone()), None) else {
        return Vec::new();
    };
    let mut acked = Vec::new();
    for i in 0..5 {
        let id = format!("task_{i}");
        if store.put_task(Task::new(id.as_str())).is_err() {
            break;
        }
        acked.push(id);
        if i == 2 && store.checkpoint().is_err() {
            break;
        }
    }
    acked
}

fn main() {
    // How many filesystem operations the whole workload makes.
    let full = SimFs::new(7);
    workload(&full);
    let total = full.ops();

    let mut checked = 0;
    for n in 0..=total {
        let fs = SimFs::new(7);
        fs.crash_after_ops(n); // The power goes out after n operations.
        let acked = workload(&fs);
        // What the disk holds after power loss: unsynced writes are lost,
        // kept or torn, as the seed decides.
        let after = fs.crash();
        let store = Store::open_with_fs(options(), Arc::new(after), None)
            .unwrap_or_else(|e| panic!("crash after {n} operations: the store does not open: {e}"));
        for id in &acked {
            assert!(
                store.get_task(id).expect("a valid id").is_some(),
                "crash after {n} operations lost the acknowledged {id}"
            );
        }
        checked += 1;
    }
    println!("{checked} crash points checked: no acknowledged write was lost");
}
