//! Issue 10's targets, each with the figure this run measured and whether
//! it is met. W1 to W4 come from the run itself; the figures of a quiet,
//! single-process statewal (500k buffered puts/s, the open of a checkpointed
//! store, memory, checkpoints) come from `statewal bench --json`, passed
//! with `--statewal-bench FILE`.

use crate::report::{Report, thousands};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Serialize, Deserialize)]
pub struct Target {
    pub id: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
}

/// Every target that the run and `bench` (if given) can measure, in the
/// issue's order.
pub fn targets(r: &Report, bench: Option<&Value>) -> Vec<Target> {
    let mut out = collect(r, bench);
    out.sort_by(|a, b| a.id.cmp(&b.id)); // Stable: each target's rows keep their order.
    out
}

fn collect(r: &Report, bench: Option<&Value>) -> Vec<Target> {
    let mut out = Vec::new();
    let mut push = |id: &str, target: &str, measured: String, met| {
        out.push(Target {
            id: id.to_string(),
            target: target.to_string(),
            measured,
            met,
        })
    };
    // statewal over the best peer, and over one engine, in a workload.
    let vs_best = |w: &str| {
        let wl = r.workloads.iter().find(|x| x.id == w)?;
        let best = wl
            .rows
            .iter()
            .filter(|x| x.engine != "statewal" && !x.baseline)
            .max_by(|a, b| a.vs_statewal.total_cmp(&b.vs_statewal))?;
        Some((best.engine.as_str(), 1.0 / best.vs_statewal))
    };
    let vs = |w: &str, engine: &str| {
        let wl = r.workloads.iter().find(|x| x.id == w)?;
        Some(1.0 / wl.rows.iter().find(|x| x.engine == engine)?.vs_statewal)
    };
    for (w, id, want, target) in [
        ("W1", "1", 1.0, "W1: ≥ 1.0× the best peer"),
        ("W2", "2", 1.2, "W2: ≥ 1.2× the best peer"),
        ("W3", "3", 1.5, "W3: ≥ 1.5× the best peer"),
    ] {
        if let Some((engine, x)) = vs_best(w) {
            push(id, target, format!("{x:.2}× {engine}"), x >= want);
        }
        if w == "W1"
            && let Some(x) = vs("W1", "raw-append-wrap")
        {
            push(
                "1",
                "W1: ≥ 0.95× raw-append-wrap (the disk's limit)",
                format!("{x:.2}×"),
                x >= 0.95,
            );
        }
        if w == "W3"
            && let Some(ops) = bench_row(bench, "statewal os-buffered")
        {
            push(
                "3",
                "≥ 500k puts/s in `statewal bench`'s os-buffered row",
                format!("{}/s", thousands(ops)),
                ops >= 500_000.0,
            );
        }
    }
    if let Some(w4) = &r.w4 {
        let rate = |e: &str| w4.rows.iter().find(|x| x.engine == e)?.replay_per_sec;
        if let Some(sw) = w4.rows.iter().find(|x| x.engine == "statewal") {
            let replay = sw.replay_per_sec.unwrap_or(f64::NAN);
            push(
                "4",
                "W4: replay ≥ 1M records/s",
                format!(
                    "{}/s to the first get ({}/s journal only)",
                    thousands(replay),
                    thousands(sw.journal_replay_per_sec.unwrap_or(f64::NAN))
                ),
                replay >= 1e6,
            );
            if let Some(ok) = rate("okaywal") {
                push(
                    "4",
                    "W4: replay ≥ 1.5× okaywal",
                    format!("{:.2}×", replay / ok),
                    replay / ok >= 1.5,
                );
            }
            let json_mib = (w4.records * r.task_bytes) as f64 / (1 << 20) as f64;
            push(
                "5",
                "memory ≤ 1.5× the tasks' JSON, after a replay (W4)",
                format!(
                    "{:.1}× ({:.0} MiB for {:.0} MiB of JSON)",
                    sw.rss_ready_mib / json_mib,
                    sw.rss_ready_mib,
                    json_mib
                ),
                sw.rss_ready_mib / json_mib <= 1.5,
            );
        }
    }
    let Some(bench) = bench else {
        return out;
    };
    if let Some((name, ms)) = bench_figure(bench, "open:") {
        push(
            "4",
            "open of 100k checkpointed tasks + 100k journal records < 150 ms",
            format!("{ms:.0} ms ({name})"),
            ms < 150.0,
        );
    }
    for (prefix, what) in [
        (
            "resident memory / tasks' JSON size, open replaying",
            "memory ≤ 1.5× the tasks' JSON, after a replay (`statewal bench`)",
        ),
        (
            "resident memory / tasks' JSON size, checkpointed",
            "memory ≤ 1.5× the tasks' JSON, steady state (`statewal bench`)",
        ),
    ] {
        if let Some((_, x)) = bench_figure(bench, prefix) {
            push("5", what, format!("{x:.1}×"), x <= 1.5);
        }
    }
    if let Some((_, ms)) = bench_figure(bench, "full checkpoint of") {
        push(
            "6",
            "first checkpoint of 100k tasks < 3 s, `state.json` included",
            format!("{:.1} s", ms / 1e3),
            ms < 3000.0,
        );
    }
    if let Some((_, x)) = bench_figure(bench, "writer p99 ratio") {
        push(
            "6",
            "writers' p99 during a checkpoint ≤ 1.5× without",
            format!("{x:.2}×"),
            x <= 1.5,
        );
    }
    out
}

/// The ops/s of the single-threaded `statewal bench` row called `name`.
fn bench_row(bench: Option<&Value>, name: &str) -> Option<f64> {
    bench?["rows"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == name && r["threads"] == 1)?["ops_per_sec"]
        .as_f64()
}

/// The first `statewal bench` figure whose name starts with `prefix`.
fn bench_figure<'a>(bench: &'a Value, prefix: &str) -> Option<(&'a str, f64)> {
    bench["figures"].as_array()?.iter().find_map(|f| {
        let name = f["name"].as_str()?;
        name.starts_with(prefix)
            .then(|| Some((name, f["value"].as_f64()?)))?
    })
}
