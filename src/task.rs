//! A task and its log entries: JSON objects kept as their writer wrote them.
//!
//! A [`Task`] is an ordered JSON object behind accessors. Its keys keep the
//! writer's order and its strings stay byte for byte what was written (a
//! timestamp `2024-01-01T10:00:00.000Z` is never reformatted); typed views
//! such as [`Task::status`] and [`Task::updated_at`] read them without
//! rewriting them.
//!
//! **Invariant:** a `Task` always holds a string `"id"`, a `"status"` that is
//! absent or one of the six [`TaskStatus`] words, and `"logs"` that are absent
//! or an array of objects. Every door checks this (parsing, [`Task::set`],
//! [`Task::remove`]) and JSON text with a repeated key is refused at every
//! depth, so what the encoder writes is exactly what the decoder accepts.

use crate::error::{Error, ErrorKind, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use time::OffsetDateTime;

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
    /// Every status, in the order of the lifecycle.
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Pending,
        TaskStatus::InProgress,
        TaskStatus::Waiting,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];

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

    /// The status written `s` on disk, if it is one of the six; exactly
    /// the word, as the task's JSON must hold it. (`FromStr` also takes the
    /// hyphenated spelling and gives an error that lists the words.)
    pub fn parse(s: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for TaskStatus {
    /// [`TaskStatus::as_str`]: the word on disk and in JSON output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TaskStatus {
    type Err = Error;

    /// Parses a status's word (`in_progress`), or its hyphenated spelling
    /// (`in-progress`).
    ///
    /// ```
    /// use statewal::TaskStatus;
    /// assert_eq!("in_progress".parse::<TaskStatus>()?, TaskStatus::InProgress);
    /// assert_eq!(TaskStatus::InProgress.to_string(), "in_progress");
    /// assert!("done".parse::<TaskStatus>().is_err());
    /// # Ok::<(), statewal::Error>(())
    /// ```
    fn from_str(s: &str) -> Result<TaskStatus> {
        TaskStatus::parse(&s.replace('-', "_")).ok_or_else(|| {
            crate::options::unknown_word(
                "status",
                s,
                "pending, in_progress, waiting, completed, failed or cancelled",
            )
        })
    }
}

/// A task: an ordered JSON object with a string `"id"`.
///
/// ```
/// use statewal::{Task, TaskStatus};
/// let mut t = Task::from_json(br#"{"id":"t1","updated_at":"2024-01-01T10:00:00.000Z","z":1,"a":2}"#)?;
/// t.set_status(TaskStatus::Completed);
/// assert_eq!(t.updated_at_str(), Some("2024-01-01T10:00:00.000Z"));
/// assert_eq!(t.updated_at().unwrap().unix_timestamp(), 1_704_103_200);
/// assert_eq!(
///     String::from_utf8(t.to_json()).unwrap(),
///     r#"{"id":"t1","updated_at":"2024-01-01T10:00:00.000Z","z":1,"a":2,"status":"completed"}"#
/// );
/// assert!(Task::from_json(br#"{"id":"t1","status":"done","status":"pending"}"#).is_err());
/// # Ok::<(), statewal::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Task {
    fields: Map<String, Value>,
}

impl Task {
    /// A pending task with only an id. Whether the id may name a file is
    /// checked when the task is stored ([`crate::validate_id`]).
    pub fn new(id: impl Into<String>) -> Task {
        let mut fields = Map::new();
        fields.insert("id".into(), Value::String(id.into()));
        Task { fields }
    }

    /// Parses a task from JSON text, refusing a repeated key at any depth and
    /// naming what is wrong ([`ErrorKind::InvalidInput`]).
    pub fn from_json(bytes: &[u8]) -> Result<Task> {
        let task = Task::parse(bytes).map_err(invalid)?;
        task.check_depth().map_err(invalid)?;
        Ok(task)
    }

    /// A task from a JSON value, which must be an object that keeps the
    /// rules of the type (see the module docs).
    pub fn from_value(value: Value) -> Result<Task> {
        match value {
            Value::Object(fields) => Task::from_map(fields),
            other => Err(invalid(format!("{} is not an object", kind_of(&other)))),
        }
    }

    /// A task from a JSON object, checked as [`Task::from_value`] checks it.
    pub fn from_map(fields: Map<String, Value>) -> Result<Task> {
        check_task(&fields).map_err(invalid)?;
        let task = Task { fields };
        task.check_depth().map_err(invalid)?;
        Ok(task)
    }

    /// Refuses a task nested deeper than [`crate::json::MAX_DEPTH`], which the
    /// store could not read back from its journal or `state.json`. Checked by
    /// the doors a caller builds a task through, and by the store before it
    /// journals one (a [`LogEntry`] can grow deep after it was pushed); not
    /// by replay, which reads whatever an older writer stored.
    pub(crate) fn check_depth(&self) -> std::result::Result<(), String> {
        match self
            .fields
            .values()
            .all(|v| crate::json::within_depth(v, 2))
        {
            true => Ok(()),
            false => Err(format!(
                "it nests arrays and objects more than {} levels deep",
                crate::json::MAX_DEPTH
            )),
        }
    }

    /// The parse every door uses, with the reason as a plain string.
    pub(crate) fn parse(bytes: &[u8]) -> std::result::Result<Task, String> {
        let value = crate::json::parse(bytes).map_err(|e| e.to_string())?;
        match value {
            Value::Object(fields) => {
                check_task(&fields)?;
                Ok(Task { fields })
            }
            other => Err(format!("{} is not an object", kind_of(&other))),
        }
    }

    /// The task as compact JSON, keys in the order they are held.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.fields).expect("serializing a JSON object cannot fail")
    }

    /// The task's id.
    pub fn id(&self) -> &str {
        self.fields
            .get("id")
            .and_then(Value::as_str)
            .expect("a task always holds a string id")
    }

    /// Where the task stands; [`TaskStatus::Pending`] when it has no status.
    pub fn status(&self) -> TaskStatus {
        self.fields
            .get("status")
            .and_then(Value::as_str)
            .and_then(TaskStatus::parse)
            .unwrap_or_default()
    }

    /// Sets the status. A task without one gains the key at the end.
    pub fn set_status(&mut self, status: TaskStatus) {
        self.fields
            .insert("status".into(), Value::String(status.as_str().into()));
    }

    /// The value of `key`, as written.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }

    /// Sets `key` to `value`. An existing key keeps its place; a new one
    /// goes last. Refuses (with [`ErrorKind::InvalidInput`]) a value that
    /// would break the type's rules: an `"id"` that is not a string, a
    /// `"status"` that is not one of the six words, `"logs"` that are not an
    /// array of objects, a value nested deeper than [`crate::json::MAX_DEPTH`]
    /// (counting the task as level 1).
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<Value>) -> Result<()> {
        let (key, value) = (key.into(), value.into());
        check_field(&key, &value).map_err(invalid)?;
        if !crate::json::within_depth(&value, 2) {
            return Err(invalid(format!(
                "{key:?} nests arrays and objects more than {} levels deep",
                crate::json::MAX_DEPTH
            )));
        }
        self.fields.insert(key, value);
        Ok(())
    }

    /// Removes `key`, keeping the order of the others, and returns its value.
    /// The id cannot be removed ([`ErrorKind::InvalidInput`]).
    pub fn remove(&mut self, key: &str) -> Result<Option<Value>> {
        if key == "id" {
            return Err(invalid("a task cannot lose its \"id\"".to_string()));
        }
        Ok(self.fields.shift_remove(key))
    }

    /// The task as the JSON object it is.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// The JSON object, for the caller to keep.
    pub fn into_map(self) -> Map<String, Value> {
        self.fields
    }

    /// What the task is about, if it has a string `"description"`.
    pub fn description(&self) -> Option<&str> {
        self.str_field("description")
    }

    /// Sets the description.
    pub fn set_description(&mut self, description: impl Into<String>) {
        self.fields
            .insert("description".into(), Value::String(description.into()));
    }

    /// The tool that runs the task, if it has a string `"tool"`.
    pub fn tool(&self) -> Option<&str> {
        self.str_field("tool")
    }

    /// What the task produced: its `"result"`, free JSON.
    pub fn result(&self) -> Option<&Value> {
        self.fields.get("result")
    }

    /// `"created_at"` exactly as written, if it is a string.
    pub fn created_at_str(&self) -> Option<&str> {
        self.str_field("created_at")
    }

    /// `"updated_at"` exactly as written, if it is a string.
    pub fn updated_at_str(&self) -> Option<&str> {
        self.str_field("updated_at")
    }

    /// `"started_at"` exactly as written, if it is a string.
    pub fn started_at_str(&self) -> Option<&str> {
        self.str_field("started_at")
    }

    /// `"completed_at"` exactly as written, if it is a string.
    pub fn completed_at_str(&self) -> Option<&str> {
        self.str_field("completed_at")
    }

    /// When the task was created; see [`Task::time`] for what is read.
    pub fn created_at(&self) -> Option<OffsetDateTime> {
        self.time("created_at")
    }

    /// When the task last changed; see [`Task::time`] for what is read.
    pub fn updated_at(&self) -> Option<OffsetDateTime> {
        self.time("updated_at")
    }

    /// When the task started running; see [`Task::time`] for what is read.
    pub fn started_at(&self) -> Option<OffsetDateTime> {
        self.time("started_at")
    }

    /// When the task finished; see [`Task::time`] for what is read.
    pub fn completed_at(&self) -> Option<OffsetDateTime> {
        self.time("completed_at")
    }

    /// The time held by `key`: an RFC 3339 string (with or without a
    /// fraction of a second, `Z` or an offset) or a number of milliseconds
    /// since the Unix epoch. `None` when the key is absent or holds anything
    /// else. The stored value is left as it is.
    pub fn time(&self, key: &str) -> Option<OffsetDateTime> {
        self.fields.get(key).and_then(parse_time)
    }

    /// The task's log entries, in order.
    pub fn logs(&self) -> impl ExactSizeIterator<Item = &LogEntry> + DoubleEndedIterator {
        let entries: &[Value] = match self.fields.get("logs") {
            Some(Value::Array(a)) => a,
            _ => &[],
        };
        entries.iter().map(|v| match v {
            Value::Object(m) => LogEntry::from_map_ref(m),
            _ => unreachable!("a task's logs are checked to be objects"),
        })
    }

    /// Appends a log entry; a task without `"logs"` gains the key at the end.
    pub fn push_log(&mut self, entry: LogEntry) {
        let logs = self
            .fields
            .entry("logs")
            .or_insert_with(|| Value::Array(Vec::new()));
        match logs {
            Value::Array(a) => a.push(Value::Object(entry.fields)),
            _ => unreachable!("a task's logs are checked to be an array"),
        }
    }

    /// Sets `created_at` (when absent) and `updated_at` to `now`, which should
    /// be RFC 3339 ([`crate::now_rfc3339`]).
    /// Used by the store when [`crate::Options::stamp_times`] is on.
    pub fn stamp(&mut self, now: &str) {
        if !self.fields.contains_key("created_at") {
            self.fields
                .insert("created_at".into(), Value::String(now.into()));
        }
        self.fields
            .insert("updated_at".into(), Value::String(now.into()));
    }

    fn str_field(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }
}

/// Two tasks are equal when they hold the same keys in the same order with
/// equal values (objects inside compared in order too): equal tasks encode to
/// the same bytes.
impl PartialEq for Task {
    fn eq(&self, other: &Task) -> bool {
        same_object(&self.fields, &other.fields)
    }
}

impl Serialize for Task {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.fields.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Task {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Task, D::Error> {
        let crate::json::Unique(value) = crate::json::Unique::deserialize(d)?;
        match value {
            Value::Object(fields) => {
                check_task(&fields).map_err(serde::de::Error::custom)?;
                Ok(Task { fields })
            }
            other => Err(serde::de::Error::custom(format_args!(
                "a task must be an object, not {}",
                kind_of(&other)
            ))),
        }
    }
}

/// One entry of a task's log: an ordered JSON object, usually with
/// `timestamp`, `level`, `type` and `message`.
#[derive(Debug, Clone)]
// The layout lets a task lend its log entries out of the JSON it holds.
#[repr(transparent)]
pub struct LogEntry {
    fields: Map<String, Value>,
}

impl LogEntry {
    /// An entry with the four usual keys, in the usual order.
    pub fn new(
        timestamp: impl Into<String>,
        level: impl Into<String>,
        kind: impl Into<String>,
        message: impl Into<String>,
    ) -> LogEntry {
        let mut fields = Map::new();
        fields.insert("timestamp".into(), Value::String(timestamp.into()));
        fields.insert("level".into(), Value::String(level.into()));
        fields.insert("type".into(), Value::String(kind.into()));
        fields.insert("message".into(), Value::String(message.into()));
        LogEntry { fields }
    }

    /// An entry from a JSON value, which must be an object.
    pub fn from_value(value: Value) -> Result<LogEntry> {
        match value {
            Value::Object(fields) => Ok(LogEntry { fields }),
            other => Err(invalid(format!(
                "a log entry must be an object, not {}",
                kind_of(&other)
            ))),
        }
    }

    fn from_map_ref(fields: &Map<String, Value>) -> &LogEntry {
        // SAFETY: LogEntry is `repr(transparent)` over `Map<String, Value>`,
        // so the two references have the same layout and validity.
        unsafe { &*(fields as *const Map<String, Value> as *const LogEntry) }
    }

    /// `"timestamp"` as written, if it is a string.
    pub fn timestamp(&self) -> Option<&str> {
        self.fields.get("timestamp").and_then(Value::as_str)
    }

    /// `"timestamp"` read as a time, as [`Task::time`] reads one.
    pub fn time(&self) -> Option<OffsetDateTime> {
        self.fields.get("timestamp").and_then(parse_time)
    }

    /// `"level"` (`info`, `warn`, `error`, ...), if it is a string.
    pub fn level(&self) -> Option<&str> {
        self.fields.get("level").and_then(Value::as_str)
    }

    /// `"type"`, what produced the entry (`system`, `tool`, ...).
    pub fn kind(&self) -> Option<&str> {
        self.fields.get("type").and_then(Value::as_str)
    }

    /// `"message"`, the text, if it is a string.
    pub fn message(&self) -> Option<&str> {
        self.fields.get("message").and_then(Value::as_str)
    }

    /// `"metadata"`: free-form details.
    pub fn metadata(&self) -> Option<&Value> {
        self.fields.get("metadata")
    }

    /// The value of `key`, as written.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }

    /// Sets `key` to `value`: an existing key keeps its place, a new one goes last.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.fields.insert(key.into(), value.into());
    }

    /// The entry as the JSON object it is.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// The JSON object, for the caller to keep.
    pub fn into_map(self) -> Map<String, Value> {
        self.fields
    }
}

impl PartialEq for LogEntry {
    fn eq(&self, other: &LogEntry) -> bool {
        same_object(&self.fields, &other.fields)
    }
}

impl Serialize for LogEntry {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.fields.serialize(s)
    }
}

impl<'de> Deserialize<'de> for LogEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<LogEntry, D::Error> {
        let crate::json::Unique(value) = crate::json::Unique::deserialize(d)?;
        LogEntry::from_value(value).map_err(serde::de::Error::custom)
    }
}

/// The rules a task's object keeps, checked at every door.
fn check_task(fields: &Map<String, Value>) -> std::result::Result<(), String> {
    if !fields.contains_key("id") {
        return Err("the task has no \"id\"".into());
    }
    fields.iter().try_for_each(|(k, v)| check_field(k, v))
}

fn check_field(key: &str, value: &Value) -> std::result::Result<(), String> {
    match (key, value) {
        ("id", Value::String(_)) => Ok(()),
        ("id", other) => Err(format!("\"id\" must be a string, not {}", kind_of(other))),
        ("status", Value::String(s)) if TaskStatus::parse(s).is_some() => Ok(()),
        ("status", other) => Err(format!(
            "\"status\" {other} is not one of {}",
            TaskStatus::ALL.map(TaskStatus::as_str).join(", ")
        )),
        ("logs", Value::Array(a)) => match a.iter().position(|e| !e.is_object()) {
            None => Ok(()),
            Some(i) => Err(format!("\"logs\"[{i}] must be an object")),
        },
        ("logs", other) => Err(format!("\"logs\" must be an array, not {}", kind_of(other))),
        _ => Ok(()),
    }
}

fn invalid(reason: String) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("not a valid task: {reason}"),
    )
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads a time leniently: RFC 3339 text as the original server and statewal
/// write it, or epoch milliseconds as a number.
pub(crate) fn parse_time(v: &Value) -> Option<OffsetDateTime> {
    match v {
        Value::String(s) => {
            OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
        }
        Value::Number(n) => {
            let ms = n.as_i64()?;
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
        }
        _ => None,
    }
}

/// Equality of two objects that also asks for the same key order.
fn same_object(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && same_value(va, vb))
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => same_object(a, b),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_value(x, y))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_door_keeps_the_rules() {
        for (json, why) in [
            (r#"{"status":"pending"}"#, "no \"id\""),
            (r#"{"id":7}"#, "\"id\" must be a string"),
            (r#"{"id":"a","status":"done"}"#, "is not one of"),
            (r#"{"id":"a","status":null}"#, "is not one of"),
            (r#"{"id":"a","logs":{}}"#, "\"logs\" must be an array"),
            (
                r#"{"id":"a","logs":[{}, 1]}"#,
                "\"logs\"[1] must be an object",
            ),
            (r#"{"id":"a","id":"a"}"#, "duplicate key \"id\""),
            (
                r#"{"id":"a","x":[{"y":{"k":1,"k":2}}]}"#,
                "duplicate key \"k\"",
            ),
            (r#"[]"#, "an array is not an object"),
        ] {
            let e = Task::from_json(json.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(why), "{json}: {e}");
        }
        let mut t = Task::new("a");
        assert!(t.set("id", 1).is_err());
        assert!(t.set("status", "nope").is_err());
        assert!(t.set("logs", serde_json::json!([1])).is_err());
        assert!(t.remove("id").is_err());
        assert_eq!(t.to_json(), br#"{"id":"a"}"#);
    }

    #[test]
    fn order_and_strings_are_kept() {
        let json = r#"{"updated_at":"2024-01-01T10:00:00.000Z","id":"x","status":"failed","logs":[{"message":"m","timestamp":"t"}],"b":1,"a":{"z":1,"y":2}}"#;
        let mut t = Task::from_json(json.as_bytes()).unwrap();
        assert_eq!(t.to_json(), json.as_bytes());
        assert_eq!(t.status(), TaskStatus::Failed);
        assert_eq!(t.logs().next().unwrap().message(), Some("m"));
        t.remove("b").unwrap();
        t.set("b", 2).unwrap();
        t.set_status(TaskStatus::Completed);
        let keys: Vec<&str> = t.as_map().keys().map(String::as_str).collect();
        assert_eq!(keys, ["updated_at", "id", "status", "logs", "a", "b"]);
        t.push_log(LogEntry::new("t2", "info", "system", "n"));
        assert_eq!(t.logs().len(), 2);
    }

    #[test]
    fn times_are_read_leniently() {
        let t = Task::from_json(
            br#"{"id":"a","created_at":"2024-01-01T10:00:00Z","updated_at":"2024-01-01T11:00:00.5+01:00","started_at":1704103200000,"completed_at":"soon"}"#,
        )
        .unwrap();
        assert_eq!(t.created_at().unwrap().unix_timestamp(), 1_704_103_200);
        assert_eq!(t.updated_at().unwrap().unix_timestamp(), 1_704_103_200);
        assert_eq!(t.started_at(), t.created_at());
        assert_eq!(t.completed_at(), None);
        assert_eq!(t.completed_at_str(), Some("soon"));
    }

    #[test]
    fn equality_asks_for_the_same_order() {
        let a = Task::from_json(br#"{"id":"a","x":{"p":1,"q":2}}"#).unwrap();
        let b = Task::from_json(br#"{"id":"a","x":{"q":2,"p":1}}"#).unwrap();
        assert_ne!(a, b);
        assert_eq!(a, a.clone());
    }
}
