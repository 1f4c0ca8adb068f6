//! The run's results: a JSON document, markdown tables and an SVG chart,
//! all from the same [`Report`].

use crate::engines::Kind;
use crate::reopen::Reopened;
use crate::rotate::{Measured, Plan, median, percentile_us};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub date: String,
    pub commit: String,
    pub machine: Machine,
    pub plan: Plan,
    pub task_bytes: usize,
    pub workloads: Vec<Workload>,
    pub w4: Option<W4>,
    /// Issue 10's targets, as far as this run (and `statewal bench`'s
    /// JSON, if given) measures them.
    #[serde(default)]
    pub targets: Vec<crate::targets::Target>,
    /// `statewal bench --json`'s output, if given.
    #[serde(default)]
    pub statewal_bench: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Machine {
    pub cpus: usize,
    pub kernel: String,
    pub scratch: String,
    pub scratch_fs: String,
    /// `/proc/loadavg` when the run started and when it ended.
    pub load_before: String,
    pub load_after: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Workload {
    pub id: String,
    pub title: String,
    pub writers: usize,
    pub durable: bool,
    pub rows: Vec<Row>,
    /// Cores' worth of CPU other processes used meanwhile (`crate::cpu`).
    #[serde(default)]
    pub others_cpu_cores: f64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Row {
    pub engine: String,
    pub setup: String,
    pub baseline: bool,
    /// Median over rounds.
    pub ops_per_sec: f64,
    pub rounds_ops_per_sec: Vec<f64>,
    pub puts: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Median over rounds of this engine's puts/s over statewal's in the
    /// same round.
    pub vs_statewal: f64,
    pub vs_statewal_rounds: Vec<f64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct W4 {
    pub records: usize,
    pub rounds: usize,
    pub rows: Vec<W4Row>,
    /// Cores' worth of CPU other processes used meanwhile (`crate::cpu`).
    #[serde(default)]
    pub others_cpu_cores: f64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct W4Row {
    pub engine: String,
    /// Medians over rounds.
    pub ready_ms: f64,
    pub read_all_ms: f64,
    /// Records over the time to serve the first get, for the engines that
    /// replay a log on open (statewal, okaywal, fjall).
    pub replay_per_sec: Option<f64>,
    /// statewal's own figure: records over its journal replay time only.
    pub journal_replay_per_sec: Option<f64>,
    pub read_all_per_sec: f64,
    pub rss_ready_mib: f64,
    pub rss_read_all_mib: f64,
    pub rounds: Vec<Reopened>,
}

/// Builds a workload's rows from what [`crate::rotate::rotate`] measured.
pub fn workload(
    id: &'static str,
    title: &'static str,
    writers: usize,
    durable: bool,
    measured: Vec<Measured>,
) -> Workload {
    let mode = if durable {
        crate::engines::Mode::Durable
    } else {
        crate::engines::Mode::Buffered
    };
    let base = measured
        .iter()
        .find(|m| m.kind == Kind::Statewal)
        .map(|m| m.rounds_ops_per_sec.clone());
    let mut rows: Vec<Row> = measured
        .into_iter()
        .map(|mut m| {
            let ratios: Vec<f64> = match &base {
                Some(b) => m
                    .rounds_ops_per_sec
                    .iter()
                    .zip(b)
                    .map(|(x, s)| x / s)
                    .collect(),
                None => Vec::new(),
            };
            Row {
                engine: m.kind.name().to_string(),
                setup: m.kind.setup(mode).unwrap_or("").to_string(),
                baseline: m.kind.is_baseline(),
                ops_per_sec: median(&m.rounds_ops_per_sec),
                p50_us: percentile_us(&mut m.lat_ns, 0.50),
                p99_us: percentile_us(&mut m.lat_ns, 0.99),
                puts: m.puts,
                rounds_ops_per_sec: m.rounds_ops_per_sec,
                vs_statewal: median(&ratios),
                vs_statewal_rounds: ratios,
            }
        })
        .collect();
    // statewal first, then the rest by throughput.
    rows.sort_by(|a, b| {
        (b.engine == "statewal")
            .cmp(&(a.engine == "statewal"))
            .then(b.ops_per_sec.total_cmp(&a.ops_per_sec))
    });
    Workload {
        id: id.to_string(),
        title: title.to_string(),
        writers,
        durable,
        rows,
        others_cpu_cores: 0.0,
    }
}

/// Builds W4's rows from each engine's rounds.
pub fn w4(records: usize, per_engine: Vec<(Kind, Vec<Reopened>)>) -> W4 {
    let rounds = per_engine.first().map_or(0, |(_, r)| r.len());
    let rows = per_engine
        .into_iter()
        .map(|(kind, rs)| {
            let med = |f: &dyn Fn(&Reopened) -> f64| median(&rs.iter().map(f).collect::<Vec<_>>());
            let ready_ms = med(&|r| r.ready_ms);
            let read_all_ms = med(&|r| r.read_all_ms);
            let replays = matches!(kind, Kind::Statewal | Kind::Okaywal | Kind::Fjall);
            W4Row {
                engine: kind.name().to_string(),
                ready_ms,
                read_all_ms,
                replay_per_sec: replays.then(|| records as f64 / (ready_ms / 1e3)),
                journal_replay_per_sec: rs.iter().all(|r| r.journal_ms.is_some()).then(|| {
                    med(&|r| r.replayed.unwrap_or(0) as f64 / (r.journal_ms.unwrap_or(0.0) / 1e3))
                }),
                read_all_per_sec: records as f64 / (read_all_ms / 1e3),
                rss_ready_mib: med(&|r| r.rss_ready_bytes as f64) / (1 << 20) as f64,
                rss_read_all_mib: med(&|r| r.rss_read_all_bytes as f64) / (1 << 20) as f64,
                rounds: rs,
            }
        })
        .collect();
    W4 {
        records,
        rounds,
        rows,
        others_cpu_cores: 0.0,
    }
}

/// The report as markdown: a summary in the shape of issue 10's table,
/// then every workload in full.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let p = r.plan;
    let _ = writeln!(
        s,
        "Run of {} at commit {}: {} CPUs, Linux {}, scratch on {} ({}); load {} → {}.",
        r.date,
        r.commit,
        r.machine.cpus,
        r.machine.kernel,
        r.machine.scratch_fs,
        r.machine.scratch,
        r.machine.load_before,
        r.machine.load_after
    );
    let _ = writeln!(
        s,
        "W1–W3: {} rounds, each {} slices of {} ms per engine, rotated; figures are medians over rounds, ratios are to statewal within each round.\n",
        p.rounds, p.slices, p.slice_ms
    );
    s += &summary(r);
    for w in &r.workloads {
        let _ = writeln!(
            s,
            "\n#### {}: {}\n\nOther processes used {:.2} of the machine's cores meanwhile.\n",
            w.id, w.title, w.others_cpu_cores
        );
        s += "| engine | setup | puts/s | p50 µs | p99 µs | × statewal | rounds (puts/s) |\n";
        s += "|---|---|---:|---:|---:|---:|---|\n";
        for row in &w.rows {
            let rounds: Vec<String> = row
                .rounds_ops_per_sec
                .iter()
                .map(|x| thousands(*x))
                .collect();
            let name = if row.engine == "statewal" {
                format!("**{}**", row.engine)
            } else if row.baseline {
                format!("*{}*", row.engine)
            } else {
                row.engine.to_string()
            };
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {:.0} | {:.0} | {:.2} | {} |",
                row.setup,
                thousands(row.ops_per_sec),
                row.p50_us,
                row.p99_us,
                row.vs_statewal,
                rounds.join(" / ")
            );
        }
    }
    if let Some(w4) = &r.w4 {
        let _ = writeln!(
            s,
            "\n#### W4: reopen after {} un-checkpointed puts (median of {} rounds)\n\nOther processes used {:.2} of the machine's cores meanwhile.\n",
            thousands(w4.records as f64),
            w4.rounds,
            w4.others_cpu_cores
        );
        s += "| engine | ready to serve a get | replay records/s | read all back | read all records/s | RSS after open | RSS after reading all |\n";
        s += "|---|---:|---:|---:|---:|---:|---:|\n";
        for row in &w4.rows {
            let replay = match (row.replay_per_sec, row.journal_replay_per_sec) {
                (Some(x), Some(j)) => format!("{} ({} journal only)", thousands(x), thousands(j)),
                (Some(x), None) => thousands(x),
                _ => "–".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {:.1} ms | {} | {:.1} ms | {} | {:.0} MiB | {:.0} MiB |",
                row.engine,
                row.ready_ms,
                replay,
                row.read_all_ms,
                thousands(row.read_all_per_sec),
                row.rss_ready_mib,
                row.rss_read_all_mib
            );
        }
    }
    if !r.targets.is_empty() {
        s += "\n#### Issue 10's targets\n\n| # | target | measured | met? |\n|---|---|---|---|\n";
        for t in &r.targets {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                t.id,
                t.target,
                t.measured,
                if t.met { "yes" } else { "**no**" }
            );
        }
    }
    s
}

/// Issue 10's table: statewal, the best peer and the others, per workload.
fn summary(r: &Report) -> String {
    let mut s = String::from("| workload | statewal | best peer | others |\n|---|---|---|---|\n");
    for w in &r.workloads {
        let Some(sw) = w.rows.iter().find(|x| x.engine == "statewal") else {
            continue;
        };
        let peers: Vec<&Row> = w
            .rows
            .iter()
            .filter(|x| x.engine != "statewal" && !x.baseline)
            .collect();
        let baselines: Vec<String> = w
            .rows
            .iter()
            .filter(|x| x.baseline)
            .map(|x| format!("{} {:.2}×", x.engine, x.vs_statewal))
            .collect();
        let best = peers
            .iter()
            .max_by(|a, b| a.vs_statewal.total_cmp(&b.vs_statewal));
        let others: Vec<String> = peers
            .iter()
            .skip(usize::from(best.is_some()))
            .map(|x| format!("{} {:.2}×", x.engine, x.vs_statewal))
            .chain(baselines)
            .collect();
        let _ = writeln!(
            s,
            "| {}: {} | {}/s | {} | {} |",
            w.id,
            w.title,
            thousands(sw.ops_per_sec),
            best.map_or("–".into(), |b| format!(
                "{} **{:.2}×**",
                b.engine, b.vs_statewal
            )),
            others.join(", ")
        );
    }
    if let Some(w4) = &r.w4
        && let Some(sw) = w4.rows.iter().find(|x| x.engine == "statewal")
    {
        let others: Vec<String> = w4
            .rows
            .iter()
            .filter(|x| x.engine != "statewal")
            .map(|x| match x.replay_per_sec {
                Some(rate) => format!(
                    "{} {:.2}× ({:.0} ms)",
                    x.engine,
                    rate / sw.replay_per_sec.unwrap_or(f64::NAN),
                    x.ready_ms
                ),
                None => format!(
                    "{} open {:.1} ms, reads all at {}/s",
                    x.engine,
                    x.ready_ms,
                    thousands(x.read_all_per_sec)
                ),
            })
            .collect();
        let _ = writeln!(
            s,
            "| W4: reopen after {} un-checkpointed puts | {} records/s ({:.0} ms) | | {} |",
            thousands(w4.records as f64),
            thousands(sw.replay_per_sec.unwrap_or(f64::NAN)),
            sw.ready_ms,
            others.join(", ")
        );
    }
    s
}

/// `12345.6` as `12,346`.
pub fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 { format!("-{out}") } else { out }
}

/// One panel per workload: horizontal bars of puts/s (W4: milliseconds to
/// open and read all records back), statewal dark, peers mid, baselines light.
pub fn svg(r: &Report) -> String {
    let (w, bar_h, gap, left, right) = (860.0, 18.0, 5.0, 150.0, 190.0);
    let mut panels: Vec<(String, Vec<Bar>)> = Vec::new();
    for wl in &r.workloads {
        let bars = wl
            .rows
            .iter()
            .map(|row| {
                (
                    row.engine.to_string(),
                    row.ops_per_sec,
                    format!("{}/s  {:.2}×", thousands(row.ops_per_sec), row.vs_statewal),
                    colour(&row.engine, row.baseline),
                )
            })
            .collect();
        panels.push((
            format!(
                "{}: {} — puts/s, × statewal (median of per-round ratios)",
                wl.id, wl.title
            ),
            bars,
        ));
    }
    if let Some(w4) = &r.w4 {
        let bars = w4
            .rows
            .iter()
            .map(|row| {
                let ms = row.ready_ms + row.read_all_ms;
                (
                    row.engine.to_string(),
                    ms,
                    format!("{ms:.0} ms ({:.0} to a get)", row.ready_ms),
                    colour(&row.engine, false),
                )
            })
            .collect();
        panels.push((
            format!(
                "W4: open after {} puts and read all back — ms (shorter is better)",
                thousands(w4.records as f64)
            ),
            bars,
        ));
    }
    let height: f64 = panels
        .iter()
        .map(|(_, b)| 34.0 + b.len() as f64 * (bar_h + gap) + 12.0)
        .sum::<f64>()
        + 40.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"14\">statewal and its peers, {} at {} ({}-byte tasks; dark = statewal, light = baselines)</text>\n",
        r.date, r.commit, r.task_bytes
    );
    let mut y = 40.0;
    for (title, bars) in &panels {
        let _ = writeln!(
            s,
            "<text x=\"10\" y=\"{}\" font-weight=\"bold\">{}</text>",
            y + 16.0,
            escape(title)
        );
        y += 26.0;
        let max = bars.iter().map(|b| b.1).fold(f64::MIN_POSITIVE, f64::max);
        for (name, value, label, fill) in bars {
            let len = (value / max * (w - left - right)).max(1.0);
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
                 <rect x=\"{left}\" y=\"{y}\" width=\"{len:.1}\" height=\"{bar_h}\" fill=\"{fill}\"/>\
                 <text x=\"{:.1}\" y=\"{}\">{}</text>",
                left - 6.0,
                y + 13.0,
                escape(name),
                left + len + 6.0,
                y + 13.0,
                escape(label)
            );
            y += bar_h + gap;
        }
        y += 20.0;
    }
    s + "</svg>\n"
}

/// One bar: the engine, its value, its label and its colour.
type Bar = (String, f64, String, &'static str);

fn colour(engine: &str, baseline: bool) -> &'static str {
    if engine == "statewal" {
        "#1f4e79"
    } else if baseline {
        "#c9c9c9"
    } else {
        "#6fa8dc"
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
