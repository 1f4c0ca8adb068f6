//! The replica's figures in `docs/replication.md` ("Figures"):
//!
//! ```text
//! cargo build --release --features replicate --example replica_bench
//! replica_bench lag      URL [SECONDS] [RATE] [WRITERS] [TICK_MS]
//! replica_bench restore  URL [RECORDS] [RUNS] [journal]
//! replica_bench overhead URL [SLICES] [SLICE_SECONDS]
//! ```
//!
//! URL is a replica URL (`file:///tmp/r`, `s3://bucket/prefix`); each run
//! ships under a fresh prefix below it. Endpoints and credentials come from
//! the environment (`AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, ...), as for
//! `Options::replicate_to`. State directories are made under `$TMPDIR`.
//!
//! - `lag`: WRITERS threads (default 4) put 512-byte tasks at RATE puts/s
//!   in all (default 1000), paced, for SECONDS (default 20). Every 100 ms
//!   it samples `Store::replica_status()`: `lag_records`, and the age of
//!   the oldest record the bucket does not hold yet. A record's ship delay
//!   is the time from its put returning to the first sample that finds it
//!   shipped. The first 2 s (the first tick's claim and listing) are left
//!   out. TICK_MS is `Options::replicate_interval` (default 1000).
//! - `restore`: puts RECORDS tasks (default 100,000, ids all distinct,
//!   `OsBuffered` for a fast fill), closes (which ships the rest), then
//!   restores RUNS times (default 3) into fresh directories and opens each:
//!   the median restore and open times. The close's checkpoint covers every
//!   record, so the restore fetches one `state.json`; with `journal`, the
//!   store never checkpoints, so it fetches the segments and the open
//!   replays every record.
//! - `overhead`: 1 writer, `SyncBeforeAck` and default options, puts as
//!   fast as it can in SLICES slices (default 20) of SLICE_SECONDS
//!   (default 2), alternately with the replica on and off (two
//!   directories, each store opened and closed around its slice so no
//!   shipper runs in an off slice): the median puts/s of each, their
//!   ratio, and the median of each adjacent pair's ratio.
//!
//! Not a timed assertion: a probe, like `pg_bench.rs`, kept in the
//! repository and not packaged.

use statewal::replica::{self, RestoreTarget};
use statewal::{Options, Store, SyncPolicy, Task};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

#[path = "common/mod.rs"]
mod common;
use common::{median, task};
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
const WARMUP: Duration = Duration::from_secs(2);

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: f64| -> Res<f64> {
        Ok(args.get(i).map_or(Ok(default), |s| s.parse())?)
    };
    let scratch = tempfile::Builder::new().prefix("replica-bench").tempdir()?;
    match (args.first().map(String::as_str), args.get(1)) {
        (Some("lag"), Some(url)) => lag(
            &fresh(url),
            scratch.path(),
            Duration::from_secs_f64(arg(2, 20.0)?),
            arg(3, 1000.0)?,
            arg(4, 4.0)? as usize,
            Duration::from_millis(arg(5, 1000.0)? as u64),
        ),
        (Some("restore"), Some(url)) => restore(
            &fresh(url),
            scratch.path(),
            arg(2, 100_000.0)? as usize,
            arg(3, 3.0)? as usize,
            args.get(4).is_some_and(|m| m == "journal"),
        ),
        (Some("overhead"), Some(url)) => overhead(
            &fresh(url),
            scratch.path(),
            arg(2, 20.0)? as usize,
            Duration::from_secs_f64(arg(3, 2.0)?),
        ),
        _ => {
            eprintln!("usage: replica_bench lag|restore|overhead URL [ARGS] (see the source)");
            std::process::exit(2);
        }
    }
}

fn lag(url: &str, dir: &Path, dur: Duration, rate: f64, writers: usize, tick: Duration) -> Res<()> {
    let opts = Options::new(dir.join("lag"))
        .replicate_to(url)
        .replicate_interval(tick);
    let store = Store::open(opts)?;
    let put_at = Mutex::new(BTreeMap::<u64, Instant>::new());
    let done = AtomicBool::new(false);
    let t0 = Instant::now();
    let (mut lag_records, mut age_ms, mut delay_ms) = (Vec::new(), Vec::new(), Vec::new());
    std::thread::scope(|s| -> Res<()> {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (store, put_at, done) = (&store, &put_at, &done);
                s.spawn(move || -> statewal::Result<u64> {
                    let every = Duration::from_secs_f64(writers as f64 / rate);
                    let mut n = 0u32;
                    while t0.elapsed() < dur {
                        let due = t0 + every * n;
                        std::thread::sleep(due.saturating_duration_since(Instant::now()));
                        let seq = store.put_task(task(&format!("w{w}-{}", n % 1000)))?;
                        put_at
                            .lock()
                            .expect("no panics")
                            .insert(seq, Instant::now());
                        n += 1;
                    }
                    done.store(true, Ordering::Relaxed);
                    Ok(u64::from(n))
                })
            })
            .collect();
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(SAMPLE_EVERY);
            let status = store.replica_status()?.ok_or("no replica")?;
            let shipped = status.shipped_seq.max(status.checkpoint_seq.unwrap_or(0));
            let now = Instant::now();
            let mut pending = put_at.lock().expect("no panics");
            let rest = pending.split_off(&(shipped + 1));
            let landed = std::mem::replace(&mut *pending, rest);
            if now - t0 < WARMUP {
                continue;
            }
            lag_records.push(status.lag_records);
            age_ms.push(pending.values().next().map_or(0, |&t| ms(now - t)));
            delay_ms.extend(landed.values().map(|&t| ms(now - t)));
        }
        let puts: u64 = handles
            .into_iter()
            .map(|h| h.join().expect("a writer panicked"))
            .sum::<statewal::Result<u64>>()?;
        println!(
            "{url}: {puts} puts in {:.1} s ({:.0}/s, {writers} writers), tick {tick:?}, {} samples",
            dur.as_secs_f64(),
            puts as f64 / dur.as_secs_f64(),
            lag_records.len()
        );
        Ok(())
    })?;
    report("lag_records", &mut lag_records, "");
    report("oldest unshipped record's age", &mut age_ms, " ms");
    report("ship delay per record", &mut delay_ms, " ms");
    Ok(())
}

fn restore(url: &str, dir: &Path, records: usize, runs: usize, journal: bool) -> Res<()> {
    let t = Instant::now();
    let mut opts = Options::new(dir.join("source"))
        .sync_policy(SyncPolicy::OsBuffered)
        .replicate_to(url);
    if journal {
        // Every record stays in the journal: the restore fetches segments
        // and the open replays them all.
        opts = opts
            .sync_policy(SyncPolicy::SyncEveryInterval(Duration::from_millis(10)))
            .checkpoint_interval(None)
            .checkpoint_journal_bytes(u64::MAX)
            .checkpoint_on_drop(false);
    }
    let store = Store::open(opts)?;
    for i in 0..records {
        store.put_task(task(&format!("t{i}")))?;
    }
    drop(store); // The close checkpoints, then ships what is left.
    println!(
        "{url}: {records} puts shipped in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let (mut restore_ms, mut open_ms) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let to = dir.join(format!("restored-{run}"));
        let t = Instant::now();
        let got = replica::restore(url, &to, RestoreTarget::Latest)?;
        restore_ms.push(ms(t.elapsed()));
        let t = Instant::now();
        let store = Store::open(Options::new(&to).checkpoint_on_drop(false))?;
        open_ms.push(ms(t.elapsed()));
        let tasks = store.stats()?.tasks;
        println!(
            "run {run}: restore {} ms ({} objects, checkpoint {:?}, last seq {}), \
             open {} ms, {tasks} tasks",
            restore_ms[run - 1],
            got.objects,
            got.checkpoint_seq,
            got.last_seq,
            open_ms[run - 1]
        );
        if tasks != records {
            return Err(format!("restored {tasks} tasks, not {records}").into());
        }
    }
    report("restore", &mut restore_ms, " ms");
    report("open after restore", &mut open_ms, " ms");
    Ok(())
}

fn overhead(url: &str, dir: &Path, slices: usize, each: Duration) -> Res<()> {
    let ids: Vec<Task> = (0..1000).map(|i| task(&format!("t{i}"))).collect();
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for slice in 0..slices {
        let replicated = slice % 2 == 0;
        let mut opts = Options::new(dir.join(if replicated { "on" } else { "off" }));
        if replicated {
            opts = opts.replicate_to(url);
        }
        let store = Store::open(opts)?;
        let t = Instant::now();
        let mut puts = 0;
        while t.elapsed() < each {
            store.put_task(ids[puts % ids.len()].clone())?;
            puts += 1;
        }
        let rate = puts as f64 / t.elapsed().as_secs_f64();
        drop(store);
        println!(
            "slice {slice}: replica {}: {rate:.0} puts/s",
            if replicated { "on" } else { "off" }
        );
        if replicated { &mut on } else { &mut off }.push(rate);
    }
    // Adjacent slices share the machine's conditions (other load, the
    // disk's mood): the median of each pair's ratio is the steadier figure.
    let mut pairs: Vec<f64> = on.iter().zip(&off).map(|(a, b)| a / b).collect();
    let pair = median(&mut pairs);
    let (on, off) = (median(&mut on), median(&mut off));
    println!("median of the {} pairs' on/off: {pair:.3}", pairs.len());
    println!(
        "{url}: median on {on:.0} puts/s, off {off:.0} puts/s: on/off {:.3} ({:+.1}%)",
        on / off,
        (on / off - 1.0) * 100.0
    );
    Ok(())
}

/// `url` with a prefix of this run's own below it.
fn fresh(url: &str) -> String {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{}/bench-{stamp}", url.trim_end_matches('/'))
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn report(what: &str, values: &mut [u64], unit: &str) {
    values.sort_unstable();
    let at = |p: f64| values.get(((values.len().max(1) - 1) as f64 * p) as usize);
    println!(
        "{what}: median {}{unit}, p99 {}{unit}, max {}{unit} (n={})",
        at(0.5).copied().unwrap_or(0),
        at(0.99).copied().unwrap_or(0),
        values.last().copied().unwrap_or(0),
        values.len()
    );
}
