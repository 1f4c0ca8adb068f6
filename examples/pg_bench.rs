//! Puts per second on the PostgreSQL engine, for the figures in
//! `docs/postgres.md` ("Performance"):
//!
//! ```text
//! cargo run --release --features postgres --example pg_bench -- URL [WRITERS] [SECONDS] [RUNS]
//! ```
//!
//! WRITERS threads (default 1) share one `Store` opened on URL and put
//! 512-byte tasks, each cycling through 1000 ids of its own (so most puts
//! update a row), for SECONDS (default 5) per run, RUNS times (default 5).
//! It prints each run's puts per second and latency, the median run, and
//! the server settings the figures depend on (`synchronous_commit`,
//! `fsync`), read from the server rather than assumed. The tables are
//! emptied before each run. Not a timed assertion: a probe, like
//! `put_loop.rs`, kept in the repository and not packaged.

use statewal::{Options, Store, Task};
use std::time::{Duration, Instant};

#[path = "common/mod.rs"]
mod common;
use common::task;
const IDS_PER_WRITER: usize = 1000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let Some(url) = args.get(1) else {
        eprintln!("usage: pg_bench URL [WRITERS] [SECONDS] [RUNS]");
        std::process::exit(2);
    };
    let writers: usize = args.get(2).map_or(Ok(1), |s| s.parse())?;
    let seconds: f64 = args.get(3).map_or(Ok(5.0), |s| s.parse())?;
    let runs: usize = args.get(4).map_or(Ok(5), |s| s.parse())?;

    let mut admin = postgres::Client::connect(url, postgres::NoTls)?;
    for setting in [
        "server_version",
        "synchronous_commit",
        "fsync",
        "wal_sync_method",
    ] {
        let v: String = admin.query_one(&format!("SHOW {setting}"), &[])?.get(0);
        println!("{setting} = {v}");
    }
    let store = Store::open(Options::new("unused").database(url.as_str()))?;
    let tasks: Vec<Vec<Task>> = (0..writers)
        .map(|w| {
            (0..IDS_PER_WRITER)
                .map(|i| task(&format!("w{w}-{i}")))
                .collect()
        })
        .collect();

    let mut rates = Vec::new();
    for run in 1..=runs {
        admin.batch_execute("TRUNCATE statewal_tasks, statewal_changes")?;
        let (puts, secs, mut lat_us) = measure(&store, &tasks, Duration::from_secs_f64(seconds))?;
        lat_us.sort_unstable();
        let rate = puts as f64 / secs;
        println!(
            "run {run}: {writers} writer(s), {puts} puts in {secs:.2} s: {rate:.0} puts/s, \
             p50 {} us, p99 {} us",
            pct(&lat_us, 0.50),
            pct(&lat_us, 0.99)
        );
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "median of {runs} runs, {writers} writer(s): {:.0} puts/s",
        rates[rates.len() / 2]
    );
    Ok(())
}

/// Runs every writer for `dur`; the puts made, the seconds taken, and each
/// put's latency in microseconds.
fn measure(
    store: &Store,
    tasks: &[Vec<Task>],
    dur: Duration,
) -> statewal::Result<(u64, f64, Vec<u64>)> {
    let t0 = Instant::now();
    let per_writer = std::thread::scope(|s| {
        let handles: Vec<_> = tasks
            .iter()
            .map(|mine| {
                s.spawn(move || -> statewal::Result<Vec<u64>> {
                    let mut lat = Vec::new();
                    let mut i = 0;
                    while t0.elapsed() < dur {
                        let t = Instant::now();
                        store.put_task(mine[i % mine.len()].clone())?;
                        lat.push(t.elapsed().as_micros() as u64);
                        i += 1;
                    }
                    Ok(lat)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a writer thread panicked"))
            .collect::<statewal::Result<Vec<_>>>()
    })?;
    let secs = t0.elapsed().as_secs_f64();
    let lat: Vec<u64> = per_writer.into_iter().flatten().collect();
    Ok((lat.len() as u64, secs, lat))
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}
