//! A task as the store holds it: its validated compact JSON, shared, with
//! the few fields the store reads kept beside it.
//!
//! The store never needs a task's tree, only its bytes (for the journal,
//! the checkpoint and a reader who asks) and a small index: the id, the
//! status, and the completion duration the metrics average. So a put
//! serializes a [`Task`] once, and those bytes are both the journal payload
//! and the copy held in memory; replay admits a record's bytes with a
//! validating scan ([`crate::task_json::scan`]) instead of building a tree;
//! a checkpoint re-indents the bytes it holds; and a read parses them back
//! into a [`Task`]. See `docs/decisions.md`, "2026-12-02, issue 10: a task
//! is held as its compact JSON".
//!
//! **Invariant:** the bytes of a [`HeldTask`] are exactly
//! `Task::parse(bytes)?.to_json()`: canonical compact JSON of a task that
//! keeps the type's rules, whose id is valid.

use crate::error::{Error, ErrorKind, Result};
use crate::model::{Task, TaskStatus, completion_ms};
use crate::task_json::{self, Fields};
use serde_json::Value;
use std::sync::Arc;

/// A task's compact JSON, validated, shared, and indexed.
///
/// Built from a [`Task`] ([`HeldTask::from_task`]) or from the bytes of a
/// journal record; read back with [`HeldTask::to_task`].
#[derive(Clone, PartialEq, Eq)]
pub struct HeldTask {
    json: Arc<[u8]>,
    /// Where the id's bytes start in `json` (between its quotes: a valid
    /// id needs no escape).
    id_at: u32,
    /// The id's length; a valid id is at most 128 bytes.
    id_len: u8,
    status: TaskStatus,
    /// [`completion_ms`], or [`NO_COMPLETION`]: a duration is never negative.
    completion_ms: i64,
}

const NO_COMPLETION: i64 = -1;

thread_local! {
    /// Where [`HeldTask::from_task`] writes a task's JSON before it is
    /// copied, at its exact size, into the shared bytes: a put then makes
    /// one allocation for them, not a growing `Vec` and its copy.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A scratch buffer grown larger than this by a large task is let go.
const SCRATCH_KEPT_BYTES: usize = 64 * 1024;

/// Why bytes are not a task the store can hold.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The JSON does not parse, or breaks a rule of the [`Task`] type.
    Json(String),
    /// The task's id cannot name a file ([`crate::validate_id`]).
    Id(Error),
}

impl HeldTask {
    /// The task's compact JSON, held. Refuses an invalid id
    /// ([`ErrorKind::InvalidId`]).
    pub fn from_task(task: &Task) -> Result<HeldTask> {
        // The compact JSON as `Task::to_json` writes it (the object's
        // members in order, each key and value as serde_json writes them),
        // noting where the id's text lands and reading the status on the
        // way; the index comes from the task, so a put never scans its own
        // bytes, and looks no key up by hashing it.
        SCRATCH.with_borrow_mut(|json| {
            json.clear();
            let held = HeldTask::write(task, json);
            if json.capacity() > SCRATCH_KEPT_BYTES {
                *json = Vec::new(); // A large task's buffer is not kept.
            }
            held
        })
    }

    /// [`HeldTask::from_task`] with `json` as the scratch buffer it writes in.
    fn write(task: &Task, json: &mut Vec<u8>) -> Result<HeldTask> {
        let mut id = None;
        let mut status = TaskStatus::default();
        json.push(b'{');
        for (i, (key, value)) in task.as_map().iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            write_str(json, key);
            json.push(b':');
            match key.as_str() {
                "id" => {
                    let text = value.as_str().expect("a task always holds a string id");
                    crate::id::validate_id(text)?;
                    // A valid id needs no escape: its text follows the quote.
                    id = Some((json.len() + 1, text.len()));
                }
                "status" => {
                    status = value
                        .as_str()
                        .and_then(TaskStatus::parse)
                        .unwrap_or_default();
                }
                _ => {}
            }
            write_value(json, value);
        }
        json.push(b'}');
        debug_assert_eq!(*json, task.to_json());
        debug_assert_eq!(status, task.status());
        let (id_at, id_len) = id.expect("a task always holds a string id");
        debug_assert_eq!(json.get(id_at..id_at + id_len), Some(task.id().as_bytes()));
        let (Ok(id_at), Ok(id_len)) = (u32::try_from(id_at), u8::try_from(id_len)) else {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("task {:?} is too large to hold", task.id()),
            ));
        };
        // Only a completed task has a duration; the others skip its lookups.
        let completion_ms = match status {
            TaskStatus::Completed => crate::model::completion_ms_of(task),
            _ => None,
        };
        Ok(HeldTask {
            // One allocation of the exact size; the scratch buffer stays.
            json: Arc::from(&json[..]),
            id_at,
            id_len,
            status,
            completion_ms: completion_ms.unwrap_or(NO_COMPLETION),
        })
    }

    /// The door for bytes read back (a journal record, a snapshot): the
    /// verdict is [`Task::parse`]'s, then the id must be valid. Canonical
    /// bytes are held as they are after a scan; anything else (whitespace,
    /// another spelling of a string or number, or bytes the parse refuses)
    /// goes through the parse, which names the fault or writes the task's
    /// canonical bytes.
    pub(crate) fn from_json(bytes: &[u8]) -> std::result::Result<HeldTask, Refused> {
        if let Some(fields) = task_json::scan(bytes, crate::json::MAX_DEPTH) {
            let id = &bytes[fields.id.0..fields.id.1];
            return match std::str::from_utf8(id) {
                Ok(id) if !id.contains('\\') => {
                    crate::id::validate_id(id).map_err(Refused::Id)?;
                    HeldTask::indexed(bytes.into(), fields).map_err(Refused::Id)
                }
                // An escape in an id spells a character no id may hold;
                // the parse decodes it for the error.
                _ => HeldTask::parsed(bytes),
            };
        }
        HeldTask::parsed(bytes)
    }

    fn parsed(bytes: &[u8]) -> std::result::Result<HeldTask, Refused> {
        let task = Task::parse(bytes).map_err(Refused::Json)?;
        crate::id::validate_id(task.id()).map_err(Refused::Id)?;
        HeldTask::from_task(&task).map_err(Refused::Id)
    }

    fn indexed(json: Arc<[u8]>, f: Fields) -> Result<HeldTask> {
        let value = |span: Option<(usize, usize)>| {
            span.and_then(|(a, z)| serde_json::from_slice::<Value>(&json[a..z]).ok())
        };
        // Only a completed task has a duration; the others skip the parse.
        let completion = match f.status {
            TaskStatus::Completed => completion_ms(
                f.status,
                value(f.started_at).as_ref(),
                value(f.created_at).as_ref(),
                value(f.completed_at).as_ref(),
            ),
            _ => None,
        };
        let (id_at, id_len) = match (u32::try_from(f.id.0), u8::try_from(f.id.1 - f.id.0)) {
            (Ok(at), Ok(len)) => (at, len),
            _ => {
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    "a task is too large to hold (its id starts past 4 GiB)",
                ));
            }
        };
        Ok(HeldTask {
            json,
            id_at,
            id_len,
            status: f.status,
            completion_ms: completion.unwrap_or(NO_COMPLETION),
        })
    }

    /// The task's id.
    pub fn id(&self) -> &str {
        let at = self.id_at as usize;
        std::str::from_utf8(&self.json[at..at + usize::from(self.id_len)])
            .expect("a held id is a valid id, spelled without escapes")
    }

    /// The task's compact JSON.
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// The compact JSON, shared.
    pub(crate) fn shared_json(&self) -> Arc<[u8]> {
        self.json.clone()
    }

    /// The task's status.
    pub fn status(&self) -> TaskStatus {
        self.status
    }

    /// How long the task took, for the metrics ([`completion_ms`]).
    pub(crate) fn completion_ms(&self) -> Option<i64> {
        (self.completion_ms != NO_COMPLETION).then_some(self.completion_ms)
    }

    /// The task, parsed back. The bytes were validated when they were
    /// admitted, so an error here is a bug, reported rather than a panic.
    pub fn to_task(&self) -> Result<Task> {
        Task::parse(&self.json).map_err(|why| {
            debug_assert!(false, "held task JSON does not parse: {why}");
            Error::new(
                ErrorKind::Corrupt,
                format!(
                    "task {:?} as held in memory does not parse ({why}); this is a bug in statewal",
                    self.id()
                ),
            )
        })
    }

    /// [`HeldTask::to_task`] for a caller that cannot return an error: a
    /// task that does not parse back (a bug) is logged and left out.
    pub(crate) fn to_task_logged(&self) -> Option<Task> {
        self.to_task()
            .map_err(|e| tracing::error!(error = %e, "a held task is left out"))
            .ok()
    }

    /// Whether `task` is this task: equal as [`Task`]s are equal. Equal
    /// bytes say so at once; different bytes may still be equal tasks
    /// (`0.0` and `-0.0` are equal numbers), so those are parsed.
    pub(crate) fn same_as(&self, task: &Task, task_json: &[u8]) -> bool {
        *self.json == *task_json || self.to_task().is_ok_and(|t| t == *task)
    }
}

/// A task id as the key of the state's maps: held inline up to
/// [`IdKey::INLINE_MAX`] bytes (a UUID fits), so that a search compares
/// bytes inside the map's nodes instead of following a pointer per key,
/// and a short id costs no allocation of its own. Ordered, and borrowed
/// as a `str`, exactly as a `String` is.
#[derive(Clone)]
pub(crate) struct IdKey(KeyRepr);

#[derive(Clone)]
enum KeyRepr {
    Inline {
        len: u8,
        bytes: [u8; IdKey::INLINE_MAX],
    },
    Heap(Box<str>),
}

impl IdKey {
    /// The longest id kept inline.
    pub const INLINE_MAX: usize = 38;

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // SAFETY: the bytes were copied whole from a `str` (`From<&str>`),
            // so they are UTF-8. Checking them again on every comparison of
            // a map search would cost more than the search.
            KeyRepr::Inline { len, bytes } => unsafe {
                std::str::from_utf8_unchecked(&bytes[..usize::from(*len)])
            },
            KeyRepr::Heap(s) => s,
        }
    }
}

impl From<&str> for IdKey {
    fn from(id: &str) -> IdKey {
        IdKey(match u8::try_from(id.len()) {
            Ok(len) if id.len() <= IdKey::INLINE_MAX => {
                let mut bytes = [0; IdKey::INLINE_MAX];
                bytes[..id.len()].copy_from_slice(id.as_bytes());
                KeyRepr::Inline { len, bytes }
            }
            _ => KeyRepr::Heap(id.into()),
        })
    }
}

impl From<String> for IdKey {
    fn from(id: String) -> IdKey {
        if id.len() <= IdKey::INLINE_MAX {
            IdKey::from(id.as_str())
        } else {
            IdKey(KeyRepr::Heap(id.into_boxed_str()))
        }
    }
}

impl std::borrow::Borrow<str> for IdKey {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl std::ops::Deref for IdKey {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for IdKey {
    fn eq(&self, other: &IdKey) -> bool {
        self.as_str().as_bytes() == other.as_str().as_bytes()
    }
}

impl Eq for IdKey {}

impl PartialOrd for IdKey {
    fn partial_cmp(&self, other: &IdKey) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IdKey {
    fn cmp(&self, other: &IdKey) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for IdKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl std::fmt::Debug for IdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Debug for HeldTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HeldTask({}, {:?}, completion {:?})",
            String::from_utf8_lossy(&self.json),
            self.status,
            self.completion_ms()
        )
    }
}

/// Writes `v` as serde_json's compact writer does, byte for byte, with
/// strings that need no escape copied whole ([`write_str`]): a task's
/// serialization was its put's largest cost (`format_escaped_str`, 12% of
/// a buffered put's CPU in `perf`), spent checking each byte of a long
/// description one at a time.
fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key);
                out.push(b':');
                write_value(out, item);
            }
            out.push(b'}');
        }
        // Null, booleans and numbers: serde_json's own spelling.
        other => serde_json::to_writer(&mut *out, other).expect("writing to a Vec cannot fail"),
    }
}

/// Writes `s` as a JSON string as serde_json does: quoted, whole when no
/// byte needs an escape (a control character, `"` or `\\`, the only bytes
/// serde_json escapes), else through serde_json.
fn write_str(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Whether any byte is one serde_json escapes. Checked 32 bytes at a time
/// without an early exit inside a chunk, which the compiler vectorizes.
fn needs_escape(bytes: &[u8]) -> bool {
    let escaped = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
    let mut chunks = bytes.chunks_exact(32);
    for chunk in &mut chunks {
        if chunk.iter().fold(false, |any, &b| any | escaped(b)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| escaped(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compact_writer_spells_strings_as_serde_json_does() {
        let mut cases: Vec<String> = vec![
            String::new(),
            "plain".into(),
            "a\"quote".into(),
            "back\\slash".into(),
            "tab\there".into(),
            "\u{0}\u{1f}\u{7f}".into(),
            "é — 日本 🚀".into(),
            "</script>".into(),
        ];
        // An escape at every place in and around a 32-byte chunk.
        for at in 0..70 {
            for c in ['"', '\\', '\n', '\u{1}', '\u{1f}', ' ', '\u{7f}', 'é'] {
                let mut text = "x".repeat(70);
                text.replace_range(at..at + 1, &c.to_string());
                cases.push(text);
            }
        }
        for text in cases {
            let v = Value::String(text.clone());
            let mut ours = Vec::new();
            write_value(&mut ours, &v);
            assert_eq!(ours, serde_json::to_vec(&v).unwrap(), "{text:?}");
        }
        let nested: Value = serde_json::from_str(
            r#"{"a":[1,-2.5,1e300,true,null,{"b\n":"c\u0000"}],"d":{},"e":[],"f":12345678901234567890}"#,
        )
        .unwrap();
        let mut ours = Vec::new();
        write_value(&mut ours, &nested);
        assert_eq!(ours, serde_json::to_vec(&nested).unwrap());
    }

    #[test]
    fn id_keys_order_as_strings() {
        let ids = [
            "",
            "a",
            "b",
            "ab",
            "é",
            &"x".repeat(38),
            &"x".repeat(39),
            &"y".repeat(128),
        ];
        for a in ids {
            assert_eq!(IdKey::from(a).as_str(), a);
            assert_eq!(IdKey::from(a.to_string()).as_str(), a);
            for b in ids {
                assert_eq!(IdKey::from(a).cmp(&IdKey::from(b)), a.cmp(b));
            }
        }
        assert_eq!(std::mem::size_of::<IdKey>(), 40);
    }

    #[test]
    fn the_index_is_the_tasks() {
        let mut t = Task::new("a");
        t.set_status(TaskStatus::Completed);
        t.set("started_at", "2024-01-01T10:00:00Z").unwrap();
        t.set("completed_at", "2024-01-01T10:00:02Z").unwrap();
        let h = HeldTask::from_task(&t).unwrap();
        assert_eq!(h.id(), "a");
        assert_eq!(h.status(), TaskStatus::Completed);
        assert_eq!(h.completion_ms(), Some(2000));
        assert_eq!(h.json(), t.to_json());
        assert_eq!(h.to_task().unwrap(), t);
        let again = HeldTask::from_json(&t.to_json()).unwrap();
        assert_eq!(again, h);
        // `started_at` wins over `created_at`; a null one gives way to it.
        t.set("created_at", "2024-01-01T09:59:59Z").unwrap();
        t.set("started_at", "2024-01-01T10:00:01Z").unwrap();
        for json in [t.to_json(), serde_json::to_vec_pretty(&t).unwrap()] {
            assert_eq!(
                HeldTask::from_json(&json).unwrap().completion_ms(),
                Some(1000)
            );
        }
        t.set("started_at", Value::Null).unwrap();
        assert_eq!(HeldTask::from_task(&t).unwrap().completion_ms(), Some(3000));
        t.set_status(TaskStatus::Failed);
        assert_eq!(HeldTask::from_task(&t).unwrap().completion_ms(), None);
        // Not canonical: parsed, and held canonical.
        let spaced = HeldTask::from_json(br#"{"id": "a", "x": 1.50}"#).unwrap();
        assert_eq!(spaced.json(), br#"{"id":"a","x":1.5}"#);
        assert!(matches!(
            HeldTask::from_json(br#"{"id":"a\u002fb"}"#),
            Err(Refused::Id(_))
        ));
        assert!(matches!(
            HeldTask::from_json(br#"{"id":"a/b"}"#),
            Err(Refused::Id(_))
        ));
        assert!(matches!(
            HeldTask::from_json(br#"{"id":"a","id":"b"}"#),
            Err(Refused::Json(_))
        ));
    }
}
