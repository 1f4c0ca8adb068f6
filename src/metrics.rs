//! [`StoreMetrics`]: what an open store has done and what it occupies on
//! disk, for operators and `statewal metrics`.

use crate::error::Result;
use crate::fs::{self, Fs};
use crate::journal::{JOURNAL_DIR, parse_segment_name};
use crate::layout::DIRS;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A store's counters since it was opened, and its directory's size now.
/// Durations are in seconds (`f64`), as Prometheus expects.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StoreMetrics {
    /// Checkpoints written since open (ones with nothing to do not counted).
    pub checkpoints: u64,
    /// How long the last checkpoint took.
    pub checkpoint_last_seconds: f64,
    /// How long all checkpoints since open took together.
    pub checkpoint_total_seconds: f64,
    /// How long opening (recovery) took.
    pub load_seconds: f64,
    /// Checkpoints that failed since open.
    pub save_failures: u64,
    /// Journal records appended since open.
    pub journal_records: u64,
    /// Journal syncs (`fdatasync`) since open.
    pub fsyncs: u64,
    /// Time spent in those syncs; divided by `fsyncs`, the mean latency.
    pub fsync_total_seconds: f64,
    /// Bytes of the journal segment files (preallocated zeros included).
    pub journal_bytes: u64,
    /// Bytes of every file in the state directory and its layout
    /// directories, the journal segments a merge kept aside included.
    pub disk_usage_bytes: u64,
    /// Bytes of the journal segments merges kept aside in
    /// `journal/superseded-<ms>/` (never read by the store; delete them by
    /// hand once they are no longer wanted).
    pub superseded_journal_bytes: u64,
    /// Files per layout directory; `"."` is the state directory itself.
    pub files: BTreeMap<String, u64>,
    /// Tasks in the store.
    pub tasks: u64,
    /// The replica shipping this store (`Options::replicate_to`), if it has
    /// one. Always present in the type, with or without the cargo feature
    /// `replicate`: `None` when the store ships nowhere, which is always
    /// the case without the feature, on PostgreSQL and in a read-only open.
    pub replica: Option<ReplicaMetrics>,
}

/// What a store's replica has shipped since the store was opened, and how
/// far behind the bucket is (`docs/replication.md`, "Lag and
/// observability"). Part of [`StoreMetrics`] and of
/// [`crate::report::Health`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ReplicaMetrics {
    /// The replica's URL, as given to `Options::replicate_to`.
    pub url: String,
    /// The generation being shipped to, once the first tick chose one.
    pub generation: Option<String>,
    /// The last record the bucket holds in a segment object (0: none yet).
    pub shipped_seq: u64,
    /// The `journal_seq` of the newest checkpoint shipped since open.
    pub checkpoint_seq: Option<u64>,
    /// Records journaled that the bucket does not hold yet: the lag in
    /// records.
    pub lag_records: u64,
    /// The lag in seconds: 0 when `lag_records` is 0, else the seconds
    /// since the last tick that shipped everything it found (the records
    /// the bucket lacks were synced after it, give or take the sync
    /// interval). `None` while no tick has succeeded since open.
    pub lag_seconds: Option<f64>,
    /// Objects uploaded since open.
    pub objects_shipped: u64,
    /// Bytes uploaded since open.
    pub bytes_shipped: u64,
    /// Ticks that failed since open.
    pub errors: u64,
    /// True when the last tick failed; `last_error` then says why.
    pub failing: bool,
    /// The error of the last tick, if it failed.
    pub last_error: Option<String>,
    /// When a tick last shipped everything it found (RFC 3339, UTC).
    pub last_success: Option<String>,
    /// Bytes of sealed journal segments not shipped yet.
    pub backlog_bytes: u64,
    /// `Options::replica_backlog_bytes_max`: past it, checkpoints remove
    /// unshipped segments and the replica starts a new generation.
    pub backlog_bytes_max: u64,
    /// Times since open that the budget let a checkpoint remove segments
    /// the replica had not shipped (each a gap in point-in-time restore).
    pub budget_overruns: u64,
    /// True from a budget overrun until a tick has shipped the new
    /// generation's base: the bucket cannot yet restore past the gap.
    pub past_budget: bool,
}

#[cfg(feature = "metrics")]
impl StoreMetrics {
    /// Hands every figure to the `metrics` facade's recorder (feature
    /// `metrics`), under the names `statewal metrics` prints: counts as
    /// counters (`absolute`), sizes and durations as gauges, files per
    /// directory as `statewal_files` with a `dir` label. Call it from the
    /// application's scrape or timer, e.g. `store.metrics()?.publish()`.
    pub fn publish(&self) {
        use ::metrics::{counter, gauge};
        counter!("statewal_checkpoints_total").absolute(self.checkpoints);
        gauge!("statewal_checkpoint_last_duration_seconds").set(self.checkpoint_last_seconds);
        // The facade's counters are integers; time totals are gauges.
        gauge!("statewal_checkpoint_duration_seconds_total").set(self.checkpoint_total_seconds);
        gauge!("statewal_load_duration_seconds").set(self.load_seconds);
        counter!("statewal_save_failures_total").absolute(self.save_failures);
        counter!("statewal_journal_records_total").absolute(self.journal_records);
        counter!("statewal_fsyncs_total").absolute(self.fsyncs);
        gauge!("statewal_fsync_duration_seconds_total").set(self.fsync_total_seconds);
        gauge!("statewal_journal_bytes").set(self.journal_bytes as f64);
        gauge!("statewal_disk_usage_bytes").set(self.disk_usage_bytes as f64);
        gauge!("statewal_superseded_journal_bytes").set(self.superseded_journal_bytes as f64);
        gauge!("statewal_tasks").set(self.tasks as f64);
        for (dir, n) in &self.files {
            gauge!("statewal_files", "dir" => dir.clone()).set(*n as f64);
        }
        if let Some(r) = &self.replica {
            gauge!("statewal_replica_lag_records").set(r.lag_records as f64);
            if let Some(s) = r.lag_seconds {
                gauge!("statewal_replica_lag_seconds").set(s);
            }
            gauge!("statewal_replica_shipped_seq").set(r.shipped_seq as f64);
            counter!("statewal_replica_objects_shipped_total").absolute(r.objects_shipped);
            counter!("statewal_replica_bytes_shipped_total").absolute(r.bytes_shipped);
            counter!("statewal_replica_errors_total").absolute(r.errors);
            gauge!("statewal_replica_failing").set(f64::from(u8::from(r.failing)));
            if let Some(t) = r.last_success_unix_seconds() {
                gauge!("statewal_replica_last_success_timestamp_seconds").set(t);
            }
            gauge!("statewal_replica_backlog_bytes").set(r.backlog_bytes as f64);
            counter!("statewal_replica_budget_overruns_total").absolute(r.budget_overruns);
        }
    }
}

/// Checkpoint counters kept by the store.
#[derive(Debug, Default)]
pub(crate) struct CheckpointCounters {
    count: AtomicU64,
    last_nanos: AtomicU64,
    total_nanos: AtomicU64,
    failures: AtomicU64,
}

impl CheckpointCounters {
    pub(crate) fn succeeded(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.last_nanos.store(nanos, Ordering::Relaxed);
        self.total_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// Nanoseconds as seconds.
pub(crate) fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// Fills in the checkpoint counters and the directory's sizes; the caller
/// supplies the rest.
pub(crate) fn collect(
    fs: &dyn Fs,
    ckpt: &CheckpointCounters,
    mut m: StoreMetrics,
) -> Result<StoreMetrics> {
    m.checkpoints = ckpt.count.load(Ordering::Relaxed);
    m.checkpoint_last_seconds = seconds(ckpt.last_nanos.load(Ordering::Relaxed));
    m.checkpoint_total_seconds = seconds(ckpt.total_nanos.load(Ordering::Relaxed));
    m.save_failures = ckpt.failures.load(Ordering::Relaxed);
    for dir in std::iter::once("").chain(DIRS) {
        let names = fs.list(dir)?;
        m.files.insert(
            if dir.is_empty() { "." } else { dir }.to_string(),
            names.len() as u64,
        );
        for name in names {
            // A file removed between list and stat (a checkpoint's cleanup)
            // simply no longer counts.
            let len = fs.file_len(&fs::join(dir, &name))?.unwrap_or(0);
            m.disk_usage_bytes += len;
            if dir == JOURNAL_DIR && parse_segment_name(&name).is_some() {
                m.journal_bytes += len;
            }
        }
    }
    for sub in fs.list_dirs(JOURNAL_DIR)? {
        if !sub.starts_with(crate::reconcile::SUPERSEDED_PREFIX) {
            continue;
        }
        let sub = fs::join(JOURNAL_DIR, &sub);
        for name in fs.list(&sub)? {
            let len = fs.file_len(&fs::join(&sub, &name))?.unwrap_or(0);
            m.superseded_journal_bytes += len;
            m.disk_usage_bytes += len;
        }
    }
    Ok(m)
}

impl StoreMetrics {
    /// All zeros, for [`collect`] to fill in.
    pub(crate) fn empty() -> StoreMetrics {
        StoreMetrics {
            checkpoints: 0,
            checkpoint_last_seconds: 0.0,
            checkpoint_total_seconds: 0.0,
            load_seconds: 0.0,
            save_failures: 0,
            journal_records: 0,
            fsyncs: 0,
            fsync_total_seconds: 0.0,
            journal_bytes: 0,
            disk_usage_bytes: 0,
            files: BTreeMap::new(),
            tasks: 0,
            superseded_journal_bytes: 0,
            replica: None,
        }
    }
}

impl ReplicaMetrics {
    /// `last_success` as seconds since the Unix epoch, as Prometheus's
    /// `_timestamp_seconds` gauges take it.
    pub fn last_success_unix_seconds(&self) -> Option<f64> {
        let t = self.last_success.as_deref()?;
        let t =
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()?;
        Some(t.unix_timestamp_nanos() as f64 / 1e9)
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::*;
    use ::metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder,
        SharedString, Unit,
    };
    use std::sync::{Arc, Mutex};

    /// A recorder that remembers the last value of each metric by its
    /// rendered key.
    #[derive(Default)]
    struct Capture(Arc<Mutex<BTreeMap<String, f64>>>);

    struct Cell(String, Arc<Mutex<BTreeMap<String, f64>>>);

    impl CounterFn for Cell {
        fn increment(&self, v: u64) {
            *self.1.lock().unwrap().entry(self.0.clone()).or_default() += v as f64;
        }
        fn absolute(&self, v: u64) {
            self.1.lock().unwrap().insert(self.0.clone(), v as f64);
        }
    }

    impl GaugeFn for Cell {
        fn increment(&self, v: f64) {
            *self.1.lock().unwrap().entry(self.0.clone()).or_default() += v;
        }
        fn decrement(&self, v: f64) {
            GaugeFn::increment(self, -v);
        }
        fn set(&self, v: f64) {
            self.1.lock().unwrap().insert(self.0.clone(), v);
        }
    }

    impl Capture {
        fn cell(&self, key: &Key) -> Arc<Cell> {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            Arc::new(Cell(name, self.0.clone()))
        }
    }

    impl Recorder for Capture {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.cell(key))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.cell(key))
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn publish_hands_every_figure_to_the_recorder() {
        let mut m = StoreMetrics::empty();
        m.checkpoints = 3;
        m.fsyncs = 7;
        m.fsync_total_seconds = 0.25;
        m.journal_bytes = 4096;
        m.superseded_journal_bytes = 512;
        m.files.insert("tasks".into(), 2);
        let capture = Capture::default();
        ::metrics::with_local_recorder(&capture, || m.publish());
        let seen = capture.0.lock().unwrap();
        assert_eq!(seen["statewal_checkpoints_total{}"], 3.0);
        assert_eq!(seen["statewal_fsyncs_total{}"], 7.0);
        assert_eq!(seen["statewal_fsync_duration_seconds_total{}"], 0.25);
        assert_eq!(seen["statewal_journal_bytes{}"], 4096.0);
        assert_eq!(seen["statewal_files{dir=tasks}"], 2.0);
        assert_eq!(seen["statewal_superseded_journal_bytes{}"], 512.0);
        assert_eq!(seen.len(), 13, "{seen:?}");
    }

    #[test]
    fn publish_hands_the_replica_figures_to_the_recorder() {
        let mut m = StoreMetrics::empty();
        m.replica = Some(ReplicaMetrics {
            url: "file:///b".into(),
            generation: None,
            shipped_seq: 9,
            checkpoint_seq: None,
            lag_records: 4,
            lag_seconds: Some(1.5),
            objects_shipped: 2,
            bytes_shipped: 300,
            errors: 1,
            failing: true,
            last_error: Some("down".into()),
            last_success: Some("1970-01-01T00:00:10Z".into()),
            backlog_bytes: 77,
            backlog_bytes_max: 100,
            budget_overruns: 3,
            past_budget: false,
        });
        let capture = Capture::default();
        ::metrics::with_local_recorder(&capture, || m.publish());
        let seen = capture.0.lock().unwrap();
        assert_eq!(seen["statewal_replica_lag_records{}"], 4.0);
        assert_eq!(seen["statewal_replica_lag_seconds{}"], 1.5);
        assert_eq!(seen["statewal_replica_bytes_shipped_total{}"], 300.0);
        assert_eq!(seen["statewal_replica_errors_total{}"], 1.0);
        assert_eq!(seen["statewal_replica_failing{}"], 1.0);
        assert_eq!(
            seen["statewal_replica_last_success_timestamp_seconds{}"],
            10.0
        );
        assert_eq!(seen["statewal_replica_budget_overruns_total{}"], 3.0);
        assert_eq!(seen.len(), 12 + 10, "{seen:?}");
    }
}
