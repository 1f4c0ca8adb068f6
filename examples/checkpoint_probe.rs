//! Times a checkpoint of N tasks with K changed, for profiling:
//! `cargo run --profile profiling --example checkpoint_probe -- DIR N K`.

use statewal::{Options, Store, SyncPolicy, Task};
use std::time::Instant;

fn main() -> statewal::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("checkpoint-probe-state");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let k: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1_000);
    let opts = Options::new(dir)
        .sync_policy(SyncPolicy::OsBuffered)
        .checkpoint_interval(None);
    let store = Store::open(opts.checkpoint_journal_bytes(u64::MAX))?;
    let task = |i: usize, round: usize| {
        let json = format!(
            r#"{{"id":"task-{i:07}","description":"{}","status":"in_progress","round":{round}}}"#,
            "x".repeat(430)
        );
        Task::from_json(json.as_bytes()).expect("parses")
    };
    if store.list_tasks().unwrap().len() < n {
        for i in 0..n {
            store.put_task(task(i, 0))?;
        }
        let t0 = Instant::now();
        store.checkpoint()?;
        println!(
            "full checkpoint of {n}: {:.1} ms",
            t0.elapsed().as_secs_f64() * 1e3
        );
    }
    for round in 1..=3 {
        for j in 0..k {
            store.put_task(task((j * 97 + round) % n, round))?;
        }
        let t0 = Instant::now();
        let s = store.checkpoint()?;
        println!(
            "checkpoint of {n} with {k} changed: {:.1} ms ({} files)",
            t0.elapsed().as_secs_f64() * 1e3,
            s.task_files_changed
        );
    }
    Ok(())
}
