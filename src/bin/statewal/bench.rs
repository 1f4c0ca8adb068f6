//! `statewal bench`: statewal against direct file writes, side by side, in
//! about a minute. Every figure comes from this run on this machine; nothing
//! is hard-coded. See `docs/benchmarks.md` for what each row means.

#[path = "../../../benches/baselines.rs"]
mod baselines;

use crate::out::count;
use crate::progress::Progress;
use serde::Serialize;
use statewal::{Error, ErrorKind, Options, Result, Store, SyncPolicy, Task};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The size of the benchmark tasks, in bytes of JSON.
const TASK_BYTES: usize = 512;
/// Tasks each writer cycles through (so most writes are updates).
const IDS_PER_THREAD: usize = 1000;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    /// Whether each acknowledged operation is on stable storage.
    pub durable: bool,
    pub threads: usize,
    pub ops: u64,
    pub ops_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Throughput over `direct-atomic` with the same thread count.
    pub vs_direct_atomic: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

#[derive(Debug, Serialize)]
struct Report {
    scratch_dir: String,
    seconds_per_row: f64,
    rows: Vec<Row>,
    figures: Vec<Figure>,
}

pub fn run(
    seconds: f64,
    json: bool,
    scratch: Option<PathBuf>,
    large: usize,
    svg: Option<PathBuf>,
) -> Result<ExitCode> {
    let scratch = scratch.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("statewal-bench-{}", std::process::id()))
    });
    std::fs::create_dir_all(&scratch).map_err(|e| Error::io("create", &scratch, e))?;
    // Ctrl-C removes the scratch directory instead of leaving it behind.
    let _interrupt = crate::scratch::RemoveOnInterrupt::new(&scratch)?;
    let dur = Duration::from_secs_f64(seconds);
    let mut rows = Vec::new();
    let mut figures = Vec::new();
    // One step per progress(...) call below: seven rows for 1 and 16
    // threads, three more statewal rows, and the large-store figures.
    let bar = Progress::bar(11, "bench");
    let progress = |what: &str| bar.step(what.to_string());
    for threads in [1usize, 16] {
        progress(&format!("direct-atomic, {threads} thread(s)"));
        let dir = baselines::direct_dir(&scratch.join(format!("atomic-{threads}"))).map_err(io)?;
        rows.push(measure("direct-atomic", true, threads, dur, |t, i| {
            let id = format!("w{t}-{}", i % IDS_PER_THREAD);
            baselines::direct_atomic_put(
                &dir,
                &id,
                baselines::task_json(&id, TASK_BYTES).as_bytes(),
            )
            .map_err(io)
        })?);
        if threads == 1 {
            progress("direct-naive, 1 thread");
            let dir = baselines::direct_dir(&scratch.join("naive")).map_err(io)?;
            rows.push(measure("direct-naive", false, 1, dur, |t, i| {
                let id = format!("w{t}-{}", i % IDS_PER_THREAD);
                baselines::direct_naive_put(
                    &dir,
                    &id,
                    baselines::task_json(&id, TASK_BYTES).as_bytes(),
                )
                .map_err(io)
            })?);
        }
        progress(&format!("raw-append, {threads} thread(s)"));
        let raw =
            baselines::RawAppend::create(&scratch.join(format!("raw-{threads}.dat")), 256 << 20)
                .map_err(io)?;
        rows.push(measure("raw-append", true, threads, dur, |t, i| {
            let id = format!("w{t}-{}", i % IDS_PER_THREAD);
            raw.append(baselines::task_json(&id, TASK_BYTES).as_bytes())
                .map_err(io)
        })?);
        progress(&format!("statewal sync-before-ack, {threads} thread(s)"));
        rows.push(statewal_row(
            &scratch,
            "statewal sync-before-ack",
            SyncPolicy::SyncBeforeAck,
            threads,
            dur,
        )?);
    }
    progress("statewal os-buffered, 1 thread");
    rows.push(statewal_row(
        &scratch,
        "statewal os-buffered",
        SyncPolicy::OsBuffered,
        1,
        dur,
    )?);
    progress("statewal interval:100ms, 1 thread");
    rows.push(statewal_row(
        &scratch,
        "statewal interval:100ms",
        SyncPolicy::SyncEveryInterval(Duration::from_millis(100)),
        1,
        dur,
    )?);
    progress("serve --stdio, pipelined and one at a time");
    rows.extend(serve_rows(&scratch, dur)?);
    fill_ratios(&mut rows);

    progress(&format!(
        "recovery and checkpoint with {}",
        count(large, "task")
    ));
    figures.extend(large_store(&scratch, large, dur)?);
    drop(bar);

    let report = Report {
        scratch_dir: scratch.display().to_string(),
        seconds_per_row: seconds,
        rows,
        figures,
    };
    if let Some(path) = svg {
        std::fs::write(&path, chart(&report.rows)).map_err(|e| Error::io("write", &path, e))?;
    }
    // The scratch directory goes before printing, so a reader that stops
    // early (a closed pipe ends the command) leaves nothing behind.
    std::fs::remove_dir_all(&scratch).ok();
    if json {
        crate::out::json_line(&report)?;
    } else {
        print_table(&report)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn io(e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, e.to_string())
}

/// Runs `op(thread, i)` on `threads` threads for `dur` and summarizes.
fn measure(
    name: &str,
    durable: bool,
    threads: usize,
    dur: Duration,
    op: impl Fn(usize, usize) -> Result<()> + Sync,
) -> Result<Row> {
    let started = Instant::now();
    let deadline = started + dur;
    let per_thread: Vec<Result<Vec<u32>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let op = &op;
                s.spawn(move || {
                    let mut lat = Vec::with_capacity(1 << 16);
                    let mut i = 0;
                    loop {
                        let t0 = Instant::now();
                        if t0 >= deadline {
                            break;
                        }
                        op(t, i)?;
                        lat.push(t0.elapsed().as_nanos().min(u32::MAX as u128) as u32);
                        i += 1;
                    }
                    Ok(lat)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench threads do not panic"))
            .collect()
    });
    let secs = started.elapsed().as_secs_f64();
    let mut lat = Vec::new();
    for r in per_thread {
        lat.extend(r?);
    }
    Ok(summarize(name, durable, threads, secs, lat))
}

fn summarize(name: &str, durable: bool, threads: usize, secs: f64, mut lat_ns: Vec<u32>) -> Row {
    lat_ns.sort_unstable();
    let pct = |p: f64| {
        if lat_ns.is_empty() {
            0.0
        } else {
            lat_ns[((lat_ns.len() - 1) as f64 * p) as usize] as f64 / 1e3
        }
    };
    Row {
        name: name.to_string(),
        durable,
        threads,
        ops: lat_ns.len() as u64,
        ops_per_sec: lat_ns.len() as f64 / secs,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        vs_direct_atomic: None,
    }
}

fn statewal_row(
    scratch: &Path,
    name: &str,
    policy: SyncPolicy,
    threads: usize,
    dur: Duration,
) -> Result<Row> {
    let dir = scratch.join(name.replace([' ', ':'], "-"));
    let store = Store::open(
        Options::new(&dir)
            .sync_policy(policy)
            .checkpoint_interval(None)
            .checkpoint_on_drop(false),
    )?;
    let tasks: Vec<Vec<Task>> = (0..threads)
        .map(|t| {
            (0..IDS_PER_THREAD)
                .map(|i| {
                    let id = format!("w{t}-{i}");
                    Task::from_json(baselines::task_json(&id, TASK_BYTES).as_bytes())
                        .expect("the bench task parses")
                })
                .collect()
        })
        .collect();
    let row = measure(
        name,
        policy == SyncPolicy::SyncBeforeAck,
        threads,
        dur,
        |t, i| {
            store
                .put_task(tasks[t][i % IDS_PER_THREAD].clone())
                .map(|_| ())
        },
    )?;
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
    Ok(row)
}

/// `serve --stdio` in a child process: a pipelined burst, then one request at a time.
fn serve_rows(scratch: &Path, dur: Duration) -> Result<Vec<Row>> {
    let exe = std::env::current_exe().map_err(io)?;
    let mut rows = Vec::new();
    for pipelined in [true, false] {
        let dir = scratch.join(if pipelined {
            "serve-pipelined"
        } else {
            "serve-serial"
        });
        let mut child = Command::new(&exe)
            .arg("--dir")
            .arg(&dir)
            .args(["serve", "--stdio"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(io)?;
        let mut stdin = child.stdin.take().expect("piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let request = |n: usize| {
            let id = format!("s-{}", n % IDS_PER_THREAD);
            format!(
                "{{\"req\":{n},\"op\":\"put_task\",\"task\":{}}}\n",
                baselines::task_json(&id, TASK_BYTES)
            )
        };
        let mut line = String::new();
        let row = if pipelined {
            // Send for `dur`, then count how long until every answer is
            // back. The clock stops at the last answer: the server's
            // checkpoint on shutdown, after it, is no request's cost (it
            // made a 1-second row half shutdown once the server stopped
            // reading far ahead; docs/decisions.md, "2026-12-02, issue 10:
            // serve --stdio pipelined").
            let started = Instant::now();
            let mut last_answer = Duration::ZERO;
            let sent = std::thread::scope(|s| -> Result<usize> {
                let writer = s.spawn(move || -> std::io::Result<usize> {
                    let mut n = 0;
                    let mut out = std::io::BufWriter::new(&mut stdin);
                    while started.elapsed() < dur {
                        out.write_all(request(n).as_bytes())?;
                        n += 1;
                    }
                    out.flush()?;
                    drop(out);
                    drop(stdin);
                    Ok(n)
                });
                let mut got = 0;
                loop {
                    line.clear();
                    if stdout.read_line(&mut line).map_err(io)? == 0 {
                        break;
                    }
                    if !line.contains("\"ok\":true") {
                        return Err(Error::new(ErrorKind::Io, format!("serve answered {line}")));
                    }
                    got += 1;
                    last_answer = started.elapsed();
                }
                let sent = writer
                    .join()
                    .expect("the writer does not panic")
                    .map_err(io)?;
                if got != sent {
                    return Err(Error::new(
                        ErrorKind::Io,
                        format!("sent {sent} requests, got {got} answers"),
                    ));
                }
                Ok(sent)
            })?;
            let secs = last_answer.as_secs_f64().max(1e-9);
            let mut r = summarize("serve --stdio pipelined", true, 1, secs, Vec::new());
            r.ops = sent as u64;
            r.ops_per_sec = sent as f64 / secs;
            r
        } else {
            let mut lat = Vec::new();
            let started = Instant::now();
            let mut n = 0;
            while started.elapsed() < dur {
                let t0 = Instant::now();
                stdin.write_all(request(n).as_bytes()).map_err(io)?;
                stdin.flush().map_err(io)?;
                line.clear();
                stdout.read_line(&mut line).map_err(io)?;
                if !line.contains("\"ok\":true") {
                    return Err(Error::new(ErrorKind::Io, format!("serve answered {line}")));
                }
                lat.push(t0.elapsed().as_nanos() as u32);
                n += 1;
            }
            let secs = started.elapsed().as_secs_f64();
            drop(stdin);
            summarize("serve --stdio one at a time", true, 1, secs, lat)
        };
        child.wait().map_err(io)?;
        std::fs::remove_dir_all(&dir).ok();
        rows.push(row);
    }
    Ok(rows)
}

fn fill_ratios(rows: &mut [Row]) {
    let base: Vec<(usize, f64)> = rows
        .iter()
        .filter(|r| r.name == "direct-atomic")
        .map(|r| (r.threads, r.ops_per_sec))
        .collect();
    for r in rows.iter_mut() {
        r.vs_direct_atomic = base
            .iter()
            .find(|(t, _)| *t == r.threads)
            .map(|(_, ops)| r.ops_per_sec / ops);
    }
}

/// Recovery, checkpoint and memory figures on a store of `n` tasks.
fn large_store(scratch: &Path, n: usize, dur: Duration) -> Result<Vec<Figure>> {
    let dir = scratch.join("large");
    let fig = |name: &str, value: f64, unit: &str| Figure {
        name: name.into(),
        value,
        unit: unit.into(),
    };
    let mut figures = Vec::new();
    let task = |i: usize, generation: usize| {
        let id = format!("task-{i:07}");
        let mut t =
            Task::from_json(baselines::task_json(&id, TASK_BYTES).as_bytes()).expect("parses");
        t.set("generation", generation)
            .expect("a key other than id and status takes any value");
        t
    };
    let json_bytes: usize = (0..n)
        .map(|i| serde_json::to_vec(&task(i, 0)).expect("serializes").len())
        .sum();
    {
        let opts = Options::new(&dir)
            .sync_policy(SyncPolicy::OsBuffered)
            .checkpoint_interval(None)
            .checkpoint_on_drop(false);
        let store = Store::open(opts.clone().checkpoint_journal_bytes(u64::MAX))?;
        for i in 0..n {
            store.put_task(task(i, 0))?;
        }
        let t0 = Instant::now();
        let stats = store.checkpoint()?;
        figures.push(fig(
            &format!("full checkpoint of {}", count(n, "task")),
            t0.elapsed().as_secs_f64() * 1e3,
            "ms",
        ));
        figures.push(fig(
            "state.json size",
            stats.state_bytes as f64 / (1 << 20) as f64,
            "MiB",
        ));
        for i in 0..n {
            store.put_task(task(i, 1))?;
        }
        store
            .submit(statewal::Mutation::PutTask(task(0, 2)))?
            .wait()?;
    }
    // Memory: resident set of a fresh process holding the store
    // (measured before this process opens it: the directory lock is exclusive).
    if let Some(rss) = rss_of_fresh_open(&dir)? {
        figures.push(fig(
            "resident memory / tasks' JSON size, open replaying the journal",
            rss as f64 / json_bytes as f64,
            "x",
        ));
        figures.push(fig(
            "resident memory of the open store",
            rss as f64 / (1 << 20) as f64,
            "MiB",
        ));
    }
    // Open: state.json plus n journal records.
    let t0 = Instant::now();
    let store = Store::open(
        Options::new(&dir)
            .checkpoint_interval(None)
            .checkpoint_on_drop(false),
    )?;
    let open_ms = t0.elapsed().as_secs_f64() * 1e3;
    let r = store.recovery_report()?.clone();
    figures.push(fig(
        &format!(
            "open: {} checkpointed tasks + {} journal records",
            r.tasks_loaded, r.records_replayed
        ),
        open_ms,
        "ms",
    ));
    figures.push(fig(
        "journal replay rate",
        r.records_replayed as f64 / r.journal_duration.as_secs_f64().max(1e-9),
        "records/s",
    ));
    // A checkpoint of ~1k changed tasks with no writers running.
    let mut quiet_ms = Vec::new();
    for round in 0..3 {
        for i in 0..1000 {
            store.put_task(task((i * 97 + round) % n, 100 + round))?;
        }
        let t0 = Instant::now();
        store.checkpoint()?;
        quiet_ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    quiet_ms.sort_by(f64::total_cmp);
    figures.push(fig(
        &format!(
            "checkpoint of {} with 1k changed, no writers (median of 3)",
            count(n, "task")
        ),
        quiet_ms[1],
        "ms",
    ));
    // Writers' p99 with and without a checkpoint of ~1k changed tasks running.
    let writer = |during_checkpoints: bool| -> Result<(Row, Vec<f64>)> {
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let ckpt = s.spawn(|| -> Result<Vec<f64>> {
                let mut ms = Vec::new();
                let mut round = 0;
                while during_checkpoints && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    round += 1;
                    let mut last = None;
                    for i in 0..1000 {
                        last = Some(store.submit(statewal::Mutation::PutTask(task(
                            (i * 97 + round) % n,
                            3 + round,
                        )))?);
                    }
                    if let Some(p) = last {
                        p.wait()?;
                    }
                    let t0 = Instant::now();
                    store.checkpoint()?;
                    ms.push(t0.elapsed().as_secs_f64() * 1e3);
                }
                Ok(ms)
            });
            let row = measure(
                if during_checkpoints {
                    "writer during checkpoints"
                } else {
                    "writer without checkpoints"
                },
                true,
                1,
                dur,
                |_, i| store.put_task(task(i % 1000, 9)).map(|_| ()),
            );
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let ms = ckpt.join().expect("does not panic")?;
            Ok((row?, ms))
        })
    };
    let (quiet, _) = writer(false)?;
    let (busy, ckpt_ms) = writer(true)?;
    figures.push(fig("writer p99 without checkpoints", quiet.p99_us, "us"));
    figures.push(fig("writer p99 during checkpoints", busy.p99_us, "us"));
    figures.push(fig(
        "writer p99 ratio (during / without)",
        busy.p99_us / quiet.p99_us.max(1e-9),
        "x",
    ));
    let mut ckpt_ms = ckpt_ms;
    ckpt_ms.sort_by(f64::total_cmp);
    if let Some(median) = ckpt_ms.get(ckpt_ms.len() / 2) {
        figures.push(fig(
            &format!(
                "checkpoint of {} with ~1k changed, during writer load (median of {})",
                count(n, "task"),
                ckpt_ms.len()
            ),
            *median,
            "ms",
        ));
    }
    // Memory again, of a store whose journal is fully checkpointed.
    store.checkpoint()?;
    drop(store);
    if let Some(rss) = rss_of_fresh_open(&dir)? {
        figures.push(fig(
            "resident memory / tasks' JSON size, checkpointed store",
            rss as f64 / json_bytes as f64,
            "x",
        ));
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(figures)
}

/// Opens the store in a fresh child process and returns its resident-memory
/// growth, in bytes (Linux only; `None` elsewhere).
fn rss_of_fresh_open(dir: &Path) -> Result<Option<u64>> {
    if !Path::new("/proc/self/status").exists() {
        return Ok(None);
    }
    let exe = std::env::current_exe().map_err(io)?;
    let out = Command::new(exe)
        .arg("--dir")
        .arg(dir)
        .arg("bench-rss")
        .output()
        .map_err(io)?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.trim().parse().ok())
}

/// The hidden `bench-rss` command: prints how much resident memory opening the store added.
pub fn rss_probe(dir: &Path) -> Result<ExitCode> {
    let before = rss_bytes();
    let store = Store::open(
        Options::new(dir)
            .checkpoint_interval(None)
            .checkpoint_on_drop(false),
    )?;
    let after = rss_bytes();
    outln!("{}", after.saturating_sub(before));
    drop(store);
    Ok(ExitCode::SUCCESS)
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn print_table(report: &Report) -> statewal::Result<()> {
    outln!(
        "statewal bench: {TASK_BYTES}-byte tasks, {:.1} s per row, scratch {}",
        report.seconds_per_row,
        report.scratch_dir
    );
    outln!();
    outln!(
        "{:<30} {:>7} {:>8} {:>12} {:>10} {:>10} {:>10}",
        "",
        "durable",
        "threads",
        "ops/s",
        "p50 us",
        "p99 us",
        "x atomic"
    );
    for r in &report.rows {
        let ratio = r.vs_direct_atomic.map_or("-".into(), |x| format!("{x:.2}"));
        outln!(
            "{:<30} {:>7} {:>8} {:>12.0} {:>10.1} {:>10.1} {:>10}",
            r.name,
            if r.durable { "yes" } else { "no" },
            r.threads,
            r.ops_per_sec,
            r.p50_us,
            r.p99_us,
            ratio
        );
    }
    outln!();
    for f in &report.figures {
        outln!("{:<62} {:>14.1} {}", f.name, f.value, f.unit);
    }
    Ok(())
}

/// A horizontal bar chart of throughput, log scale, as SVG. Durable rows are
/// dark, non-durable rows light.
fn chart(rows: &[Row]) -> String {
    let (w, bar_h, left, top) = (900.0, 22.0, 290.0, 40.0);
    let h = top + rows.len() as f64 * (bar_h + 8.0) + 40.0;
    let max = rows.iter().map(|r| r.ops_per_sec).fold(1.0, f64::max);
    let (lo, hi) = (100f64.log10(), (max * 1.5).log10());
    let x = |v: f64| left + (v.max(100.0).log10() - lo) / (hi - lo) * (w - left - 120.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"13\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"15\">statewal bench: operations per second ({TASK_BYTES}-byte tasks, log scale; dark = durable)</text>\n"
    );
    for (i, r) in rows.iter().enumerate() {
        let y = top + i as f64 * (bar_h + 8.0);
        let fill = if r.durable { "#1f4e79" } else { "#9dc3e6" };
        let label = format!("{} x{}", r.name, r.threads);
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{label}</text>\n\
             <rect x=\"{left}\" y=\"{y}\" width=\"{}\" height=\"{bar_h}\" fill=\"{fill}\"/>\n\
             <text x=\"{}\" y=\"{}\">{:.0}/s</text>\n",
            left - 8.0,
            y + 16.0,
            (x(r.ops_per_sec) - left).max(1.0),
            x(r.ops_per_sec) + 6.0,
            y + 16.0,
            r.ops_per_sec
        );
    }
    for decade in (lo.ceil() as i32)..=(hi.floor() as i32) {
        let v = 10f64.powi(decade);
        let gx = x(v);
        svg += &format!(
            "<line x1=\"{gx}\" y1=\"{top}\" x2=\"{gx}\" y2=\"{}\" stroke=\"#ccc\"/>\n<text x=\"{gx}\" y=\"{}\" text-anchor=\"middle\" fill=\"#666\">{v:.0}</text>\n",
            h - 30.0,
            h - 14.0
        );
    }
    svg + "</svg>\n"
}
