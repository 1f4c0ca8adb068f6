//! [`Session`]: a session record as the read-back methods return it.

use crate::error::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// A session record: a string `"id"` and every other key the writer gave,
/// kept in `extra` in the writer's order with its original values.
///
/// The store holds a session as the JSON object it was given
/// ([`crate::Store::put_session`] takes a `Session` or any JSON object with
/// a string `"id"`); reading one back builds this view of it. The original
/// server's sessions carry `taskId`, `tool`, `status` and `startedAt`, read
/// through the accessors below; anything else is in `extra`.
///
/// ```
/// # fn main() -> statewal::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use statewal::{Options, Session, Store};
/// let store = Store::open(Options::new(dir.path()))?;
/// store.put_session(serde_json::json!({
///     "id": "s1", "taskId": "t1", "status": "active",
///     "startedAt": "2024-01-01T10:00:00.000Z", "pid": 42,
/// }))?;
/// let s: Session = store.get_session("s1")?.unwrap();
/// assert_eq!((s.id.as_str(), s.task_id(), s.status()), ("s1", Some("t1"), Some("active")));
/// assert_eq!(s.started_at().unwrap().unix_timestamp(), 1_704_103_200);
/// assert_eq!(s.extra["pid"], 42);
///
/// let mut s = Session::new("s2");
/// s.extra.insert("pid".into(), 7.into());
/// store.put_session(s)?;
/// assert_eq!(store.list_sessions()?.len(), 2);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The session's id, checked by [`crate::validate_id`] when it is put.
    pub id: String,
    /// Every key but `"id"`, in the writer's order. Serialized beside `id`
    /// (flattened), as the record holds them.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Session {
    /// A session with only an id.
    pub fn new(id: impl Into<String>) -> Session {
        Session {
            id: id.into(),
            extra: Map::new(),
        }
    }

    /// A session from a JSON object with a string `"id"`;
    /// [`ErrorKind::InvalidInput`] otherwise.
    pub fn from_value(value: Value) -> Result<Session> {
        let Value::Object(mut extra) = value else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a session must be a JSON object",
            ));
        };
        match extra.shift_remove("id") {
            Some(Value::String(id)) => Ok(Session { id, extra }),
            _ => Err(Error::new(
                ErrorKind::InvalidInput,
                "a session needs a string \"id\"",
            )),
        }
    }

    /// The record as one JSON object: `"id"` first, then `extra`.
    pub fn to_value(&self) -> Value {
        self.clone().into()
    }

    /// A session as the store holds it, logged and left out if it is not
    /// one (which only a bug in statewal could cause: puts are checked).
    pub(crate) fn of_held(value: &Value) -> Option<Session> {
        Session::from_value(value.clone())
            .map_err(|e| tracing::error!(error = %e, "a held session is left out"))
            .ok()
    }

    /// A key of the record other than `"id"`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.extra.get(key)
    }

    /// The original server's `"taskId"`: the task the session runs.
    pub fn task_id(&self) -> Option<&str> {
        self.extra.get("taskId").and_then(Value::as_str)
    }

    /// The original server's `"tool"` (`"CLAUDECODE"`, ...).
    pub fn tool(&self) -> Option<&str> {
        self.extra.get("tool").and_then(Value::as_str)
    }

    /// The original server's `"status"` (`"active"`, ...), as written: the
    /// store gives session statuses no meaning.
    pub fn status(&self) -> Option<&str> {
        self.extra.get("status").and_then(Value::as_str)
    }

    /// `"startedAt"` exactly as written, if it is a string.
    pub fn started_at_str(&self) -> Option<&str> {
        self.extra.get("startedAt").and_then(Value::as_str)
    }

    /// When the session started: `"startedAt"` read as [`crate::Task::time`]
    /// reads a time (RFC 3339, with or without a fraction, or epoch ms).
    pub fn started_at(&self) -> Option<OffsetDateTime> {
        self.extra
            .get("startedAt")
            .and_then(crate::task::parse_time)
    }
}

impl From<Session> for Value {
    /// [`Session::to_value`].
    fn from(session: Session) -> Value {
        let Session { id, extra } = session;
        let mut map = Map::with_capacity(extra.len() + 1);
        map.insert("id".into(), Value::String(id));
        map.extend(extra);
        Value::Object(map)
    }
}

impl TryFrom<Value> for Session {
    type Error = Error;

    /// [`Session::from_value`].
    fn try_from(value: Value) -> Result<Session> {
        Session::from_value(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_keeps_its_keys_and_their_order() {
        let v = serde_json::json!({"z": 1, "id": "s", "a": [2]});
        let s = Session::from_value(v).unwrap();
        assert_eq!(s.extra.keys().collect::<Vec<_>>(), ["z", "a"]);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"id":"s","z":1,"a":[2]}"#
        );
        assert_eq!(Value::from(s.clone()), s.to_value());
        let back: Session = serde_json::from_str(r#"{"id":"s","z":1,"a":[2]}"#).unwrap();
        assert_eq!(back, s);
        for bad in [serde_json::json!([]), serde_json::json!({"id": 1})] {
            assert_eq!(
                Session::from_value(bad).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
        }
    }
}
