//! A tight put loop for profiling:
//! `cargo run --profile profiling --example put_loop -- DIR N [sync|buffered] [IDS] [CHECKPOINT_BYTES]`
//! (IDS distinct task ids, cycled; default 1000; CHECKPOINT_BYTES the
//! size-triggered checkpoint's threshold, default the store's).
//! Used with `valgrind --tool=callgrind` and `perf` (see docs/benchmarks.md).

use statewal::{Options, Store, SyncPolicy, Task};

fn main() -> statewal::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map(String::as_str).unwrap_or("put-loop-state");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let policy = match args.get(3).map(String::as_str) {
        Some("sync") => SyncPolicy::SyncBeforeAck,
        _ => SyncPolicy::OsBuffered,
    };
    let mut opts = Options::new(dir)
        .sync_policy(policy)
        .checkpoint_interval(None)
        .checkpoint_on_drop(false);
    if let Some(bytes) = args.get(5).and_then(|s| s.parse().ok()) {
        opts = opts.checkpoint_journal_bytes(bytes);
    }
    let store = Store::open(opts)?;
    let ids: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let tasks: Vec<Task> = (0..ids)
        .map(|i| {
            let json = format!(
                r#"{{"id":"t{i}","description":"{}","status":"in_progress","tool":"CLAUDECODE"}}"#,
                "x".repeat(430)
            );
            Task::from_json(json.as_bytes()).expect("parses")
        })
        .collect();
    let t0 = std::time::Instant::now();
    for i in 0..n {
        store.put_task(tasks[i % tasks.len()].clone())?;
    }
    let secs = t0.elapsed().as_secs_f64();
    println!("{n} puts in {secs:.3} s: {:.0} puts/s", n as f64 / secs);
    Ok(())
}
