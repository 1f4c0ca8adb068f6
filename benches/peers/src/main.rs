//! statewal beside the storage engines people would pick instead (issue
//! 10): SQLite, redb, fjall, LMDB and okaywal, with the same 512-byte JSON
//! task per put, in the same directory, in one process. See `README.md`.
//!
//! ```text
//! statewal-peers [--quick] [--scratch DIR] [--json FILE] [--markdown FILE] [--svg FILE]
//!                [--rounds N] [--slices N] [--slice-ms MS] [--w4-records N]
//!                [--workloads w1,w2,w3,w4] [--engines NAME,...]
//!                [--statewal-bench FILE]
//! statewal-peers syncs [--scratch DIR] [--puts N] [--json FILE]
//! statewal-peers blocks [--scratch DIR] [--puts N] [--rounds N] [--modes MODE,...]
//! statewal-peers render RUN.json [--statewal-bench FILE] [--json FILE] [--markdown FILE] [--svg FILE]
//! ```
//!
//! `--statewal-bench` takes the output of `statewal bench --json` and adds
//! the targets it measures to the targets table; `render` rebuilds every
//! output of a saved run, e.g. to add that file afterwards.

#[path = "../../baselines.rs"]
mod baselines;
mod blocks;
mod cpu;
mod engines;
mod reopen;
mod report;
mod rotate;
mod syncs;
mod targets;
mod tasks;

use engines::{Kind, Mode, Result};
use rotate::Plan;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("statewal-peers: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The command line, parsed.
struct Args {
    quick: bool,
    scratch: PathBuf,
    json: Option<PathBuf>,
    markdown: Option<PathBuf>,
    svg: Option<PathBuf>,
    statewal_bench: Option<PathBuf>,
    plan: Plan,
    w4_records: usize,
    workloads: Vec<String>,
    engines: Vec<Kind>,
    puts: u64,
}

fn run(argv: Vec<String>) -> Result<()> {
    // The children: one engine, one job, in a fresh process.
    if let Some(cmd @ ("puts" | "w4-fill" | "w4-reopen")) = argv.first().map(String::as_str) {
        let [_, engine, dir, n] = argv.as_slice() else {
            return Err(format!("usage: {cmd} ENGINE DIR N").into());
        };
        let kind = Kind::parse(engine).ok_or_else(|| format!("no engine {engine}"))?;
        let (dir, n) = (Path::new(dir), n.parse::<usize>()?);
        return match cmd {
            "puts" => syncs::puts(kind, dir, n),
            "w4-fill" => reopen::fill(kind, dir, n),
            _ => {
                let r = reopen::reopen(kind, dir, n)?;
                println!("{}", serde_json::to_string(&r)?);
                Ok(())
            }
        };
    }
    if argv.first().map(String::as_str) == Some("render") {
        let from = argv.get(1).ok_or("usage: render RUN.json [flags]")?;
        let args = parse(&argv[2..])?;
        let mut report: report::Report = serde_json::from_slice(&std::fs::read(from)?)?;
        if let Some(bench) = read_bench(&args)? {
            report.statewal_bench = Some(bench);
        }
        report.targets = targets::targets(&report, report.statewal_bench.as_ref());
        return write_outputs(&args, &report);
    }
    if argv.first().map(String::as_str) == Some("blocks") {
        return run_blocks(&argv[1..]);
    }
    let syncs_only = argv.first().map(String::as_str) == Some("syncs");
    let args = parse(if syncs_only { &argv[1..] } else { &argv })?;
    check_scratch(&args.scratch)?;
    let scratch = args.scratch.join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let result = if syncs_only {
        run_syncs(&args, &scratch)
    } else {
        run_bench(&args, &scratch)
    };
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn parse(argv: &[String]) -> Result<Args> {
    let mut a = Args {
        quick: false,
        // Under the crate's own target directory: on the disk the
        // repository is on, never /tmp (which may be tmpfs).
        scratch: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/scratch"),
        json: None,
        markdown: None,
        svg: None,
        statewal_bench: None,
        plan: Plan {
            rounds: 3,
            slices: 8,
            slice_ms: 500,
        },
        w4_records: 100_000,
        workloads: ["w1", "w2", "w3", "w4"].map(String::from).to_vec(),
        engines: Kind::ALL.to_vec(),
        puts: 2000,
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--quick" => {
                a.quick = true;
                a.plan = Plan {
                    rounds: 3,
                    slices: 2,
                    slice_ms: 50,
                };
                a.w4_records = 5_000;
                a.puts = 200;
            }
            "--scratch" => a.scratch = value()?.into(),
            "--json" => a.json = Some(value()?.into()),
            "--markdown" => a.markdown = Some(value()?.into()),
            "--svg" => a.svg = Some(value()?.into()),
            "--statewal-bench" => a.statewal_bench = Some(value()?.into()),
            "--rounds" => a.plan.rounds = value()?.parse()?,
            "--slices" => a.plan.slices = value()?.parse()?,
            "--slice-ms" => a.plan.slice_ms = value()?.parse()?,
            "--w4-records" => a.w4_records = value()?.parse()?,
            "--puts" => a.puts = value()?.parse()?,
            "--workloads" => a.workloads = value()?.split(',').map(String::from).collect(),
            "--engines" => {
                a.engines = value()?
                    .split(',')
                    .map(|n| Kind::parse(n).ok_or_else(|| format!("no engine {n}")))
                    .collect::<std::result::Result<_, _>>()?;
                if !a.engines.contains(&Kind::Statewal) {
                    a.engines.insert(0, Kind::Statewal); // Every ratio is to statewal.
                }
            }
            "-h" | "--help" => {
                println!("{}", include_str!("../README.md"));
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (see --help)").into()),
        }
    }
    if a.plan.rounds == 0 || a.plan.slices == 0 || a.w4_records == 0 || a.puts == 0 {
        return Err("--rounds, --slices, --w4-records and --puts must be at least 1".into());
    }
    Ok(a)
}

/// `blocks`: one durable put's cost by the state of the blocks it lands in.
fn run_blocks(argv: &[String]) -> Result<()> {
    let mut modes: Vec<String> = blocks::MODES.map(String::from).to_vec();
    let mut rest = Vec::new();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        if flag == "--modes" {
            let v = it.next().ok_or("--modes needs a value")?;
            modes = v.split(',').map(String::from).collect();
        } else {
            rest.push(flag.clone());
        }
    }
    let args = parse(&rest)?;
    check_scratch(&args.scratch)?;
    let scratch = args.scratch.join(format!("blocks-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let result = blocks::run(&scratch, &modes, args.puts as usize, args.plan.rounds);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// Refuses a scratch directory on tmpfs, where a sync costs nothing.
fn check_scratch(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    if fs_type(dir).contains("tmpfs") {
        return Err(format!("{} is on tmpfs: pick a directory on a disk", dir.display()).into());
    }
    Ok(())
}

fn fs_type(dir: &Path) -> String {
    command_line("stat", &["-f", "-c", "%T", &dir.display().to_string()])
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn run_syncs(args: &Args, scratch: &Path) -> Result<()> {
    let counts = syncs::count_all(scratch, &args.engines, args.puts)?;
    println!(
        "| engine | fdatasync / put | fsync / put | other syncs / put | write calls / put | KiB to disk / put |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for c in &counts {
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.2} | {:.1} |",
            c.engine, c.fdatasync, c.fsync, c.other_syncs, c.write_calls, c.disk_kib
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&counts)? + "\n")?;
    }
    Ok(())
}

/// W1 to W3 as (id, title, writers, mode).
const ROTATED: [(&str, &str, usize, Mode); 3] = [
    ("W1", "1 writer, each put durable", 1, Mode::Durable),
    ("W2", "16 writers, each put durable", 16, Mode::Durable),
    ("W3", "1 writer, OS-buffered", 1, Mode::Buffered),
];

fn run_bench(args: &Args, scratch: &Path) -> Result<()> {
    let machine = report::Machine {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel: command_line("uname", &["-r"]),
        scratch: args.scratch.display().to_string(),
        scratch_fs: fs_type(scratch),
        load_before: load(),
        load_after: String::new(),
    };
    let mut workloads = Vec::new();
    for (id, title, writers, mode) in ROTATED {
        if !args.workloads.iter().any(|w| w.eq_ignore_ascii_case(id)) {
            continue;
        }
        let kinds: Vec<Kind> = args
            .engines
            .iter()
            .copied()
            .filter(|k| k.setup(mode).is_some())
            .collect();
        eprintln!(
            "{id}: {} engines × {} rounds × {} slices of {} ms",
            kinds.len(),
            args.plan.rounds,
            args.plan.slices,
            args.plan.slice_ms
        );
        let dir = scratch.join(id);
        let tasks = tasks::TaskSet::new(writers)?;
        let cpu = cpu::CpuMeter::start();
        let engines = kinds
            .iter()
            .map(|&k| Ok((k, engines::open(k, mode, &dir.join(k.name()))?)))
            .collect::<Result<Vec<_>>>()?;
        let measured = rotate::rotate(&engines, &tasks, writers, args.plan, |round| {
            eprintln!("{id}: round {round} of {} done", args.plan.rounds)
        })?;
        drop(engines);
        std::fs::remove_dir_all(&dir)?;
        let mut w = report::workload(id, title, writers, mode == Mode::Durable, measured);
        w.others_cpu_cores = cpu.others_cores();
        workloads.push(w);
    }
    let w4 = if args.workloads.iter().any(|w| w.eq_ignore_ascii_case("w4")) {
        Some(run_w4(args, scratch)?)
    } else {
        None
    };
    let statewal_bench = read_bench(args)?;
    let mut report = report::Report {
        date: time::OffsetDateTime::now_utc()
            .format(&time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .unwrap_or_default(),
        commit: command_line(
            "git",
            &[
                "-C",
                env!("CARGO_MANIFEST_DIR"),
                "rev-parse",
                "--short",
                "HEAD",
            ],
        ),
        machine: report::Machine {
            load_after: load(),
            ..machine
        },
        plan: args.plan,
        task_bytes: tasks::TASK_BYTES,
        workloads,
        w4,
        targets: Vec::new(),
        statewal_bench,
    };
    report.targets = targets::targets(&report, report.statewal_bench.as_ref());
    write_outputs(args, &report)?;
    if args.quick {
        eprintln!("(--quick: a smoke run; its figures are not measurements)");
    }
    Ok(())
}

fn read_bench(args: &Args) -> Result<Option<serde_json::Value>> {
    Ok(match &args.statewal_bench {
        Some(path) => Some(serde_json::from_slice(&std::fs::read(path)?)?),
        None => None,
    })
}

/// Prints the markdown and writes each output the flags ask for.
fn write_outputs(args: &Args, report: &report::Report) -> Result<()> {
    let md = report::markdown(report);
    print!("{md}");
    if let Some(path) = &args.markdown {
        std::fs::write(path, &md)?;
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(report)? + "\n")?;
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, report::svg(report))?;
    }
    Ok(())
}

/// W4: each round fills a fresh directory per engine in one child process
/// and reopens it in another.
fn run_w4(args: &Args, scratch: &Path) -> Result<report::W4> {
    let exe = std::env::current_exe()?;
    let n = args.w4_records.to_string();
    let kinds: Vec<Kind> = reopen::KINDS
        .into_iter()
        .filter(|k| args.engines.contains(k))
        .collect();
    let cpu = cpu::CpuMeter::start();
    let mut per_engine: Vec<(Kind, Vec<reopen::Reopened>)> =
        kinds.iter().map(|&k| (k, Vec::new())).collect();
    for round in 0..args.plan.rounds {
        for (kind, rounds) in per_engine.iter_mut() {
            eprintln!(
                "W4: round {} of {}, {} ({n} puts, then a reopen)",
                round + 1,
                args.plan.rounds,
                kind.name()
            );
            let dir = scratch.join(format!("W4-{}-{round}", kind.name()));
            child(&exe, "w4-fill", *kind, &dir, &n)?;
            let out = child(&exe, "w4-reopen", *kind, &dir, &n)?;
            rounds.push(serde_json::from_str(out.trim())?);
            std::fs::remove_dir_all(&dir)?;
        }
    }
    let mut w4 = report::w4(args.w4_records, per_engine);
    w4.others_cpu_cores = cpu.others_cores();
    Ok(w4)
}

fn child(exe: &Path, cmd: &str, kind: Kind, dir: &Path, n: &str) -> Result<String> {
    let out = Command::new(exe)
        .args([cmd, kind.name()])
        .arg(dir)
        .arg(n)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {} failed: {}",
            kind.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
