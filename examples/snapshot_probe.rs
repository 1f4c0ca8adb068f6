//! Times the open `statewal bench` measures ("open: N checkpointed tasks +
//! N journal records") on a store built once, for profiling the base load:
//! `cargo run --profile profiling --example snapshot_probe -- DIR [TASKS] [OPENS]`.
//!
//! The first run builds DIR as the bench does (N puts, a full checkpoint,
//! N more puts, one more), which takes a while; later runs only open it.
//! Remove `DIR/state.snapshot` to time the open that parses `state.json`.

use statewal::{Options, Store, SyncPolicy, Task};
use std::time::Instant;

fn task(i: usize, generation: usize) -> Task {
    let id = format!("task-{i:07}");
    let head = format!(
        r#"{{"id":"{id}","description":"","status":"in_progress","tool":"CLAUDECODE","logs":[]}}"#
    );
    let pad = 512usize.saturating_sub(head.len());
    let json = format!(
        r#"{{"id":"{id}","description":"{}","status":"in_progress","tool":"CLAUDECODE","logs":[]}}"#,
        "x".repeat(pad)
    );
    let mut t = Task::from_json(json.as_bytes()).expect("parses");
    t.set("generation", generation).expect("not id or status");
    t
}

fn main() -> statewal::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "snapshot-probe-state".into());
    let n: usize = args.next().map_or(100_000, |s| s.parse().expect("a count"));
    let opens: usize = args.next().map_or(3, |s| s.parse().expect("a count"));
    let quiet = || {
        Options::new(&dir)
            .checkpoint_interval(None)
            .checkpoint_on_drop(false)
    };
    if !std::path::Path::new(&dir).join("state.json").exists() {
        let t0 = Instant::now();
        let store = Store::open(
            quiet()
                .sync_policy(SyncPolicy::OsBuffered)
                .checkpoint_journal_bytes(u64::MAX),
        )?;
        for i in 0..n {
            store.put_task(task(i, 0))?;
        }
        store.checkpoint()?;
        for i in 0..n {
            store.put_task(task(i, 1))?;
        }
        store
            .submit(statewal::Mutation::PutTask(task(0, 2)))?
            .wait()?;
        println!("built {dir} in {:.1} s", t0.elapsed().as_secs_f64());
    }
    for _ in 0..opens {
        let t0 = Instant::now();
        let store = Store::open(quiet())?;
        let open_ms = t0.elapsed().as_secs_f64() * 1e3;
        let r = store.recovery_report().unwrap();
        println!(
            "open {open_ms:.1} ms (recovery {:.1} ms, base {:.1} ms): {} tasks loaded, {} records replayed; snapshot: {:?}",
            r.duration.as_secs_f64() * 1e3,
            r.base_duration.as_secs_f64() * 1e3,
            r.tasks_loaded,
            r.records_replayed,
            r.snapshot,
        );
        let t1 = Instant::now();
        drop(store);
        println!("  drop {:.1} ms", t1.elapsed().as_secs_f64() * 1e3);
    }
    Ok(())
}
