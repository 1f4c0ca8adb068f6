//! `statewal metrics`: the store's metrics in the Prometheus text format
//! (version 0.0.4) or as JSON.

use crate::Cli;
use crate::commands::{open_readonly, pretty};
use statewal::{Result, StoreMetrics};
use std::fmt::Write;
use std::process::ExitCode;

/// Opens the store read-only and prints its metrics. The counters are this
/// process's own (one recovery, no checkpoint); the sizes are the directory's.
pub fn run(cli: &Cli, json: bool) -> Result<ExitCode> {
    let store = open_readonly(cli)?;
    let m = store.metrics()?;
    if json {
        outln!("{}", pretty(&m));
    } else {
        out!("{}", prometheus(&m));
    }
    Ok(ExitCode::SUCCESS)
}

/// The metrics as Prometheus text: `# HELP` and `# TYPE` before each family,
/// `statewal_` names with the unit last.
pub fn prometheus(m: &StoreMetrics) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP statewal_{name} {help}");
        let _ = writeln!(out, "# TYPE statewal_{name} {kind}");
        let _ = writeln!(out, "statewal_{name} {value}");
    };
    family(
        "checkpoints_total",
        "counter",
        "Checkpoints written since open.",
        m.checkpoints as f64,
    );
    family(
        "checkpoint_last_duration_seconds",
        "gauge",
        "How long the last checkpoint took.",
        m.checkpoint_last_seconds,
    );
    family(
        "checkpoint_duration_seconds_total",
        "counter",
        "Time spent in checkpoints since open.",
        m.checkpoint_total_seconds,
    );
    family(
        "load_duration_seconds",
        "gauge",
        "How long opening (recovery) took.",
        m.load_seconds,
    );
    family(
        "save_failures_total",
        "counter",
        "Checkpoints that failed since open.",
        m.save_failures as f64,
    );
    family(
        "journal_records_total",
        "counter",
        "Journal records appended since open.",
        m.journal_records as f64,
    );
    family(
        "fsyncs_total",
        "counter",
        "Journal syncs (fdatasync) since open.",
        m.fsyncs as f64,
    );
    family(
        "fsync_duration_seconds_total",
        "counter",
        "Time spent in journal syncs since open; divide by statewal_fsyncs_total for the mean latency.",
        m.fsync_total_seconds,
    );
    family(
        "journal_bytes",
        "gauge",
        "Bytes of the journal segment files.",
        m.journal_bytes as f64,
    );
    family(
        "disk_usage_bytes",
        "gauge",
        "Bytes of every file in the state directory and its layout directories.",
        m.disk_usage_bytes as f64,
    );
    family(
        "superseded_journal_bytes",
        "gauge",
        "Bytes of the journal segments merges kept aside in journal/superseded-<ms>/.",
        m.superseded_journal_bytes as f64,
    );
    family("tasks", "gauge", "Tasks in the store.", m.tasks as f64);
    let _ = writeln!(out, "# HELP statewal_files Files per layout directory.");
    let _ = writeln!(out, "# TYPE statewal_files gauge");
    for (dir, n) in &m.files {
        let _ = writeln!(out, "statewal_files{{dir=\"{dir}\"}} {n}");
    }
    out
}
