//! `statewal metrics`: the store's metrics in the Prometheus text format
//! (version 0.0.4) or as JSON.

use crate::Cli;
use crate::commands::open_readonly;
use statewal::Result;
use statewal::report::{ReplicaMetrics, StoreMetrics};
use std::fmt::Write;
use std::process::ExitCode;

/// Opens the store read-only and prints its metrics. The counters are this
/// process's own (one recovery, no checkpoint); the sizes are the directory's.
pub fn run(cli: &Cli, json: bool) -> Result<ExitCode> {
    let store = open_readonly(cli)?;
    let m = store.metrics()?;
    if json {
        crate::out::json_line(&m)?;
    } else {
        out!("{}", prometheus(&m));
    }
    Ok(ExitCode::SUCCESS)
}

/// The metrics as Prometheus text: `# HELP` and `# TYPE` before each family,
/// `statewal_` names with the unit last. Help texts and label values are
/// escaped as the format asks, so no value can end a line or a label early.
pub fn prometheus(m: &StoreMetrics) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP statewal_{name} {}", escape_help(help));
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
    if let Some(r) = &m.replica {
        replica_families(&mut family, r);
    }
    let _ = writeln!(out, "# HELP statewal_files Files per layout directory.");
    let _ = writeln!(out, "# TYPE statewal_files gauge");
    for (dir, n) in &m.files {
        let _ = writeln!(
            out,
            "statewal_files{{dir=\"{}\"}} {n}",
            escape_label_value(dir)
        );
    }
    out
}

/// The replica's families (`--replicate`), present only when the store
/// ships to a bucket.
fn replica_families(family: &mut impl FnMut(&str, &str, &str, f64), r: &ReplicaMetrics) {
    family(
        "replica_lag_records",
        "gauge",
        "Records journaled that the replica's bucket does not hold yet.",
        r.lag_records as f64,
    );
    if let Some(s) = r.lag_seconds {
        family(
            "replica_lag_seconds",
            "gauge",
            "0 when the bucket holds every record, else seconds since the last tick that shipped everything it found.",
            s,
        );
    }
    family(
        "replica_shipped_seq",
        "gauge",
        "The last journal record the bucket holds.",
        r.shipped_seq as f64,
    );
    family(
        "replica_objects_shipped_total",
        "counter",
        "Objects uploaded to the bucket since open.",
        r.objects_shipped as f64,
    );
    family(
        "replica_bytes_shipped_total",
        "counter",
        "Bytes uploaded to the bucket since open.",
        r.bytes_shipped as f64,
    );
    family(
        "replica_errors_total",
        "counter",
        "Shipping ticks that failed since open.",
        r.errors as f64,
    );
    family(
        "replica_failing",
        "gauge",
        "1 when the last shipping tick failed, else 0.",
        f64::from(u8::from(r.failing)),
    );
    if let Some(t) = r.last_success_unix_seconds() {
        family(
            "replica_last_success_timestamp_seconds",
            "gauge",
            "When a tick last shipped everything it found (Unix time).",
            t,
        );
    }
    family(
        "replica_backlog_bytes",
        "gauge",
        "Bytes of sealed journal segments not shipped yet.",
        r.backlog_bytes as f64,
    );
    family(
        "replica_budget_overruns_total",
        "counter",
        "Times since open that the disk budget let a checkpoint remove unshipped segments.",
        r.budget_overruns as f64,
    );
}

/// A `# HELP` text in the text format: backslash and line feed escaped.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A label value in the text format: backslash, double quote and line feed
/// escaped. The value is the name of a directory, which statewal chooses
/// today; the escaping keeps the output parseable whatever it becomes.
fn escape_label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use statewal::{Options, Store};

    // Bug: label values were written as they came, so a backslash, a double
    // quote or a line feed in one broke the line (a scraper rejects the
    // whole page) or forged a sample.
    #[test]
    fn hostile_label_values_are_escaped() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(Options::new(tmp.path())).unwrap();
        let mut m = store.metrics().unwrap();
        m.files.clear();
        m.files.insert("quote\"} 1\nstatewal_forged 9 #".into(), 1);
        m.files.insert("back\\slash".into(), 2);
        let text = prometheus(&m);
        assert!(
            text.contains("statewal_files{dir=\"quote\\\"} 1\\nstatewal_forged 9 #\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("statewal_files{dir=\"back\\\\slash\"} 2\n"),
            "{text}"
        );
        assert!(
            !text.lines().any(|l| l.starts_with("statewal_forged")),
            "{text}"
        );
        store.shutdown().unwrap();
    }

    /// A store that ships to a bucket shows its replica's families, each
    /// with its HELP and TYPE.
    #[cfg(feature = "replicate")]
    #[test]
    fn a_replica_adds_its_families() {
        let tmp = tempfile::tempdir().unwrap();
        let url = format!("file://{}/bucket", tmp.path().display());
        std::fs::create_dir(tmp.path().join("bucket")).unwrap();
        let opts = Options::new(tmp.path().join("store"))
            .replicate_to(&url)
            .replicate_interval(std::time::Duration::from_millis(10));
        let store = Store::open(opts).unwrap();
        store.put_task(statewal::Task::new("a")).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let text = loop {
            let text = prometheus(&store.metrics().unwrap());
            if text.contains("statewal_replica_lag_records 0\n") {
                break text;
            }
            assert!(std::time::Instant::now() < deadline, "{text}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        for family in [
            "replica_lag_seconds",
            "replica_bytes_shipped_total",
            "replica_errors_total",
            "replica_failing",
            "replica_last_success_timestamp_seconds",
            "replica_backlog_bytes",
            "replica_budget_overruns_total",
        ] {
            assert!(
                text.contains(&format!("# TYPE statewal_{family} ")),
                "{family}: {text}"
            );
        }
        assert!(
            !text.contains("statewal_replica_bytes_shipped_total 0\n"),
            "{text}"
        );
        let plain = Store::open(Options::new(tmp.path().join("plain"))).unwrap();
        assert!(!prometheus(&plain.metrics().unwrap()).contains("replica"));
    }

    #[test]
    fn help_texts_are_escaped() {
        assert_eq!(escape_help("a\\b\nc \"d\""), "a\\\\b\\nc \"d\"");
    }
}
