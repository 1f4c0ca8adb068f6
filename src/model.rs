//! The data the store keeps: tasks, sessions and the persisted state.
//!
//! A task is a JSON object kept as written (see [`crate::task`]), so a task
//! written by another program (`toolInvocations`, `claudeMetrics`, ...) comes
//! back with all of its fields, in their order, through every write,
//! checkpoint and replay.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

pub use crate::task::{LogEntry, Task, TaskStatus};

/// The version this code writes into `state.json`.
pub const STATE_VERSION: &str = "1.0.0";

/// The counters kept in `state.json`, derived from the tasks at each checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Metrics {
    /// Number of tasks.
    pub total_tasks: u64,
    /// Number of tasks whose status is `completed`.
    pub completed_tasks: u64,
    /// Number of tasks whose status is `failed`.
    pub failed_tasks: u64,
    /// Mean of `completed_at - started_at`, in milliseconds, over completed
    /// tasks that carry both timestamps (`created_at` stands in for a missing
    /// `started_at`); 0 when there are none. Unparsable timestamps and
    /// negative durations are left out.
    pub average_completion_time: f64,
}

impl Metrics {
    /// Computes the metrics of a set of tasks.
    pub fn of<'a>(tasks: impl IntoIterator<Item = &'a Task>) -> Metrics {
        Metrics::of_index(tasks.into_iter().map(|t| (t.status(), completion_ms_of(t))))
    }

    /// The metrics from each task's status and completion duration (see
    /// [`completion_ms`]), in the order the tasks are summed.
    pub(crate) fn of_index(tasks: impl IntoIterator<Item = (TaskStatus, Option<i64>)>) -> Metrics {
        let mut m = Metrics::default();
        let (mut sum_ms, mut n) = (0f64, 0u64);
        for (status, completion) in tasks {
            m.total_tasks += 1;
            match status {
                TaskStatus::Completed => {
                    m.completed_tasks += 1;
                    if let Some(d) = completion {
                        sum_ms += d as f64;
                        n += 1;
                    }
                }
                TaskStatus::Failed => m.failed_tasks += 1,
                _ => {}
            }
        }
        if n > 0 {
            m.average_completion_time = sum_ms / n as f64;
        }
        m
    }
}

/// [`completion_ms`] of a task.
pub(crate) fn completion_ms_of(t: &Task) -> Option<i64> {
    completion_ms(
        t.status(),
        t.get("started_at"),
        t.get("created_at"),
        t.get("completed_at"),
    )
}

/// How long a completed task took, in milliseconds, as
/// [`Metrics::average_completion_time`] counts it: `completed_at -
/// started_at` (`created_at` standing in for a missing `started_at`), when
/// both are times [`Task::time`] reads and the difference is not negative.
/// `None` for a task that is not completed.
pub(crate) fn completion_ms(
    status: TaskStatus,
    started_at: Option<&Value>,
    created_at: Option<&Value>,
    completed_at: Option<&Value>,
) -> Option<i64> {
    if status != TaskStatus::Completed {
        return None;
    }
    // A present `started_at` counts even when it does not parse; only a
    // missing one gives way to `created_at`.
    let start = match started_at {
        Some(v) if !v.is_null() => v,
        _ => created_at?,
    };
    let (s, c) = (
        ms(crate::task::parse_time(start)?),
        ms(crate::task::parse_time(completed_at?)?),
    );
    // Both are within the years `time` represents, so the difference fits.
    (c >= s).then(|| i64::try_from(c - s).unwrap_or(i64::MAX))
}

fn ms(t: time::OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos() / 1_000_000
}

/// The application state as `load_state` returns it and `state.json` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistedState {
    /// The layout version ("1.0.0").
    pub version: String,
    /// All tasks, sorted by id.
    pub tasks: Vec<Task>,
    /// All session records, sorted by id.
    pub sessions: Vec<Value>,
    /// Counters derived from the tasks.
    pub metrics: Metrics,
    /// When this state was written (RFC 3339, UTC).
    pub last_saved: String,
    /// The last journal sequence number this state includes.
    #[serde(default)]
    pub journal_seq: u64,
    /// Each task's version (see [`crate::Store::task_version`]), by id:
    /// store metadata kept beside the tasks, never inside their JSON.
    /// Optional on read: a task missing here has version 1.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub task_versions: BTreeMap<String, u64>,
    /// The store's identity (32 lowercase hex digits), the same as in its
    /// journal segments; absent in files written before format v2 and by
    /// the original server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_id: Option<String>,
}

/// The current time as RFC 3339, UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formatting the current UTC time cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_completion_time_formula() {
        let mut a = Task::new("a");
        a.set_status(TaskStatus::Completed);
        a.set("started_at", "2024-01-01T10:00:00Z").unwrap();
        a.set("completed_at", "2024-01-01T10:00:02Z").unwrap();
        let mut b = a.clone();
        b.set("id", "b").unwrap();
        b.remove("started_at").unwrap();
        b.set("created_at", "2024-01-01T10:00:00Z").unwrap();
        b.set("completed_at", "2024-01-01T10:00:04Z").unwrap();
        let mut c = Task::new("c");
        c.set_status(TaskStatus::Failed);
        let m = Metrics::of([&a, &b, &c]);
        assert_eq!(
            (m.total_tasks, m.completed_tasks, m.failed_tasks),
            (3, 2, 1)
        );
        assert_eq!(m.average_completion_time, 3000.0);
    }

    #[test]
    fn unknown_fields_round_trip() {
        let json = r#"{"id":"x","toolInvocations":[1,2],"claudeMetrics":{"t":1},"logs":[{"timestamp":"t","level":"info","type":"system","message":"m","extra":true}]}"#;
        let t = Task::from_json(json.as_bytes()).unwrap();
        let back: Value = serde_json::to_value(&t).unwrap();
        assert_eq!(back["toolInvocations"], serde_json::json!([1, 2]));
        assert_eq!(back["claudeMetrics"]["t"], 1);
        assert_eq!(back["logs"][0]["extra"], true);
    }
}
