//! Issue 10's W4 open outside the peer benchmark, for profiling and A/B runs
//! of the open path:
//!
//! ```sh
//! cargo run --profile profiling --example w4_probe -- fill DIR N        # N puts, no checkpoint
//! cargo run --profile profiling --example w4_probe -- fill-ckpt DIR N   # N puts, a checkpoint, N updates
//! cargo run --profile profiling --example w4_probe -- open DIR N        # open, then get the last task
//! ```
//!
//! `fill` is the peer benchmark's W4 fill (the same 512-byte tasks and
//! ids, OS-buffered, closed without a checkpoint); `fill-ckpt` is
//! `statewal bench`'s large store (every task checkpointed, then each put
//! again). `open` prints one JSON line: the time until a `get_task` of the
//! last task returned it, and the recovery report's journal figures.

#[path = "../benches/baselines.rs"]
mod baselines;

use statewal::{Options, Store, SyncPolicy, Task};
use std::time::Instant;

fn id(i: usize) -> String {
    format!("task-{i:07}")
}

fn task(i: usize) -> statewal::Result<Task> {
    Task::from_json(baselines::task_json(&id(i), 512).as_bytes())
}

fn options(dir: &str) -> Options {
    Options::new(dir)
        .checkpoint_interval(None)
        .checkpoint_on_drop(false)
        .checkpoint_journal_bytes(u64::MAX)
}

fn main() -> statewal::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, dir, n) = match args.as_slice() {
        [c, d, n] => (c.as_str(), d.as_str(), n.parse::<usize>().expect("N")),
        _ => {
            eprintln!("usage: w4_probe fill|fill-ckpt|open DIR N");
            std::process::exit(2);
        }
    };
    match cmd {
        "fill" | "fill-ckpt" => {
            let store = Store::open(options(dir).sync_policy(SyncPolicy::OsBuffered))?;
            for i in 0..n {
                store.put_task(task(i)?)?;
            }
            if cmd == "fill-ckpt" {
                store.checkpoint()?;
                for i in 0..n {
                    let mut t = task(i)?;
                    t.set("generation", 1).expect("not id or status");
                    store.put_task(t)?;
                }
            }
            store.shutdown()?;
        }
        "open" => {
            let t0 = Instant::now();
            let store = Store::open(options(dir).sync_policy(SyncPolicy::SyncBeforeAck))?;
            let found = store.get_task(&id(n - 1))?.is_some();
            let ready_ms = t0.elapsed().as_secs_f64() * 1e3;
            let cpu_ms = cpu_ms();
            assert!(found, "the last task is there");
            let r = store.recovery_report().unwrap();
            let journal_ms = r.journal_duration.as_secs_f64() * 1e3;
            println!(
                "{{\"ready_ms\":{ready_ms:.1},\"cpu_ms\":{cpu_ms:.1},\"journal_ms\":{journal_ms:.1},\"base_ms\":{:.1},\
                 \"tasks_loaded\":{},\"replayed\":{},\"replay_per_s\":{:.0}}}",
                r.base_duration.as_secs_f64() * 1e3,
                r.tasks_loaded,
                r.records_replayed,
                r.records_replayed as f64 / r.journal_duration.as_secs_f64().max(1e-9)
            );
        }
        _ => {
            eprintln!("unknown command {cmd}");
            std::process::exit(2);
        }
    }
    Ok(())
}

/// CPU time (user and system, every thread) this process used so far: on a
/// shared machine a steadier figure than the time on the clock.
fn cpu_ms() -> f64 {
    // SAFETY: an all-zero `rusage` is a valid value for getrusage to fill.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid place to write for the whole call.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(u.ru_utime) + ms(u.ru_stime)
}
