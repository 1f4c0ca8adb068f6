//! The data the store keeps: tasks, sessions and the persisted state.
//!
//! Every struct here keeps the fields it does not know in `extra`, so a task
//! written by another program (`toolInvocations`, `claudeMetrics`, ...) comes
//! back with all of its fields through every write, checkpoint and replay.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The version this code writes into `state.json`.
pub const STATE_VERSION: &str = "1.0.0";

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Not started. The status of a task written without one.
    #[default]
    Pending,
    /// Running.
    InProgress,
    /// Blocked on something outside it.
    Waiting,
    /// Finished successfully.
    Completed,
    /// Finished unsuccessfully.
    Failed,
    /// Stopped before finishing.
    Cancelled,
}

impl TaskStatus {
    /// The status as written on disk.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::Waiting => "waiting",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }
}

/// One entry of a task's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// When it was written (RFC 3339).
    #[serde(default)]
    pub timestamp: String,
    /// `info`, `warn`, `error`, ...
    #[serde(default)]
    pub level: String,
    /// What produced it (`system`, `tool`, ...).
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The text.
    #[serde(default)]
    pub message: String,
    /// Free-form details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Fields this version does not know, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A task. Only `id` is required on input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// The task's id; see [`crate::validate_id`] for what is accepted.
    pub id: String,
    /// What the task is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where it stands.
    #[serde(default)]
    pub status: TaskStatus,
    /// The tool that runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// When it was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When it last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// When it started running (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// Its log.
    #[serde(default)]
    pub logs: Vec<LogEntry>,
    /// What it produced: free JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Fields this version does not know, kept with their values.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Task {
    /// A pending task with only an id.
    pub fn new(id: impl Into<String>) -> Task {
        Task {
            id: id.into(),
            description: None,
            status: TaskStatus::Pending,
            tool: None,
            created_at: None,
            updated_at: None,
            started_at: None,
            completed_at: None,
            logs: Vec::new(),
            result: None,
            extra: Map::new(),
        }
    }

    /// Parses a task from JSON, naming what is wrong.
    pub fn from_json(bytes: &[u8]) -> crate::Result<Task> {
        serde_json::from_slice(bytes).map_err(|e| {
            crate::Error::new(
                crate::ErrorKind::InvalidInput,
                format!("not a valid task: {e}"),
            )
        })
    }
}

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
        let mut m = Metrics::default();
        let (mut sum_ms, mut n) = (0f64, 0u64);
        for t in tasks {
            m.total_tasks += 1;
            match t.status {
                TaskStatus::Completed => {
                    m.completed_tasks += 1;
                    let start = t.started_at.as_deref().or(t.created_at.as_deref());
                    let end = t.completed_at.as_deref().and_then(parse_ms);
                    if let (Some(s), Some(c)) = (start.and_then(parse_ms), end)
                        && c >= s
                    {
                        sum_ms += (c - s) as f64;
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

fn parse_ms(s: &str) -> Option<i128> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos() / 1_000_000)
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
        a.status = TaskStatus::Completed;
        a.started_at = Some("2024-01-01T10:00:00Z".into());
        a.completed_at = Some("2024-01-01T10:00:02Z".into());
        let mut b = a.clone();
        b.id = "b".into();
        b.started_at = None;
        b.created_at = Some("2024-01-01T10:00:00Z".into());
        b.completed_at = Some("2024-01-01T10:00:04Z".into());
        let mut c = Task::new("c");
        c.status = TaskStatus::Failed;
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
