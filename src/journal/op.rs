//! Record payloads: what each journal record asks the state to do.
//!
//! Pure bytes, no I/O. Task, session and report bodies are JSON so unknown
//! fields pass through untouched; the rest is specified byte by byte in
//! `docs/format.md`.

use super::record::RecordKind;
use crate::layout::is_archive_file_name;
use crate::model::Task;
use serde_json::Value;

pub use crate::held::HeldTask;

/// One mutation, as journaled.
// Ops are short-lived values on their way into the state; boxing the task
// would cost an allocation per put for no memory saved.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Insert or replace a task, held as its compact JSON (the payload).
    PutTask(HeldTask),
    /// Remove a task (a missing task is not an error).
    DeleteTask(String),
    /// Insert or replace a session record; `id` is its `"id"` field.
    PutSession {
        /// The session id.
        id: String,
        /// The record.
        session: Value,
    },
    /// Remove a session record.
    DeleteSession(String),
    /// Append `text` to `logs/session_<session>.log` at byte `offset`.
    AppendLog {
        /// The session id.
        session: String,
        /// Where in the log file the text starts; makes replay idempotent.
        offset: u64,
        /// The bytes appended.
        text: Vec<u8>,
    },
    /// Write `reports/report_<id>.json`.
    SaveReport {
        /// The report id.
        id: String,
        /// The report.
        report: Value,
    },
    /// Move a task to `archive/<file>`: write `line` there at byte `offset`
    /// and remove the task, unless it changed since `line` was taken.
    ArchiveTask {
        /// The task, as `line` holds it.
        task: Task,
        /// The archive file's name inside `archive/`.
        file: String,
        /// Where in the archive file the line starts; makes replay idempotent.
        offset: u64,
        /// The task's JSON on one line, ending with a newline: the bytes written.
        line: Vec<u8>,
    },
    /// Several task and session puts and deletes in one record, applied in
    /// order, all or none: a batch holds only [`Op::PutTask`],
    /// [`Op::DeleteTask`], [`Op::PutSession`] and [`Op::DeleteSession`]
    /// (see [`Op::may_join_batch`]), at least one of them.
    Batch(Vec<Op>),
}

/// Length of a batch payload's op count (u32 LE), which comes first.
pub const BATCH_COUNT_LEN: usize = 4;
/// Offset, in an op's frame inside a batch, of its record kind (u8).
pub const BATCH_OP_KIND_OFFSET: usize = 0;
/// Offset, in an op's frame inside a batch, of its payload length (u32 LE).
pub const BATCH_OP_LEN_OFFSET: usize = BATCH_OP_KIND_OFFSET + 1;
/// Length of an op's frame header inside a batch; its payload follows.
pub const BATCH_OP_HEADER_LEN: usize = BATCH_OP_LEN_OFFSET + 4;
const _: () = assert!(BATCH_OP_HEADER_LEN == 5);

impl Op {
    /// The record kind that carries this op.
    pub fn kind(&self) -> RecordKind {
        match self {
            Op::PutTask(_) => RecordKind::PutTask,
            Op::DeleteTask(_) => RecordKind::DeleteTask,
            Op::PutSession { .. } => RecordKind::PutSession,
            Op::DeleteSession(_) => RecordKind::DeleteSession,
            Op::AppendLog { .. } => RecordKind::AppendLog,
            Op::SaveReport { .. } => RecordKind::SaveReport,
            Op::ArchiveTask { .. } => RecordKind::ArchiveTask,
            Op::Batch(_) => RecordKind::Batch,
        }
    }

    /// Whether the op may be part of an [`Op::Batch`]. Log appends and
    /// archive lines carry a file offset chosen under the store's log-offset
    /// lock, and reports are files of their own; keeping them out keeps a
    /// batch to state the checkpoint writes as one snapshot. A batch never
    /// nests. (See docs/decisions.md, "The batch record".)
    pub fn may_join_batch(&self) -> bool {
        matches!(
            self,
            Op::PutTask(_) | Op::DeleteTask(_) | Op::PutSession { .. } | Op::DeleteSession(_)
        )
    }

    /// The id of the task, session or report the op is about; empty for a
    /// batch, whose ops each have their own.
    pub fn id(&self) -> &str {
        match self {
            Op::Batch(_) => "",
            Op::PutTask(t) => t.id(),
            Op::ArchiveTask { task: t, .. } => t.id(),
            Op::DeleteTask(id) | Op::DeleteSession(id) => id,
            Op::PutSession { id, .. } | Op::SaveReport { id, .. } => id,
            Op::AppendLog { session, .. } => session,
        }
    }

    /// The op's payload bytes.
    pub fn encode(&self) -> Vec<u8> {
        let json = |v: &dyn erased::Ser| v.to_vec();
        match self {
            Op::PutTask(t) => t.json().to_vec(),
            Op::DeleteTask(id) | Op::DeleteSession(id) => id.as_bytes().to_vec(),
            Op::PutSession { session, .. } => json(session),
            Op::AppendLog {
                session,
                offset,
                text,
            } => {
                let mut out = with_id(session, 8 + text.len());
                out.extend_from_slice(&offset.to_le_bytes());
                out.extend_from_slice(text);
                out
            }
            Op::SaveReport { id, report } => {
                let body = json(report);
                let mut out = with_id(id, body.len());
                out.extend_from_slice(&body);
                out
            }
            Op::ArchiveTask {
                file, offset, line, ..
            } => {
                let mut out = with_id(file, 8 + line.len());
                out.extend_from_slice(&offset.to_le_bytes());
                out.extend_from_slice(line);
                out
            }
            Op::Batch(ops) => encode_batch(ops),
        }
    }

    /// Decodes a payload of `kind`, saying what is wrong if it does not parse.
    pub fn decode(kind: u8, payload: &[u8]) -> Result<Op, String> {
        let kind =
            RecordKind::from_u8(kind).ok_or_else(|| format!("unknown record kind {kind}"))?;
        let utf8 =
            |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| "id is not UTF-8".to_string());
        let op = match kind {
            // Admitted by a scan, not built: the same verdicts as
            // `Task::parse`, then the id's (see `crate::held`).
            RecordKind::PutTask => match HeldTask::from_json(payload) {
                Ok(t) => Op::PutTask(t),
                Err(crate::held::Refused::Json(e)) => return Err(format!("task JSON: {e}")),
                Err(crate::held::Refused::Id(e)) => return Err(e.to_string()),
            },
            RecordKind::DeleteTask => Op::DeleteTask(utf8(payload)?),
            RecordKind::PutSession => {
                let session: Value =
                    serde_json::from_slice(payload).map_err(|e| format!("session JSON: {e}"))?;
                let id = session_id(&session)
                    .ok_or("session has no string id")?
                    .to_string();
                Op::PutSession { id, session }
            }
            RecordKind::DeleteSession => Op::DeleteSession(utf8(payload)?),
            RecordKind::AppendLog => {
                let (id, rest) = split_id(payload)?;
                if rest.len() < 8 {
                    return Err("log record too short".into());
                }
                let offset = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
                Op::AppendLog {
                    session: utf8(id)?,
                    offset,
                    text: rest[8..].to_vec(),
                }
            }
            RecordKind::SaveReport => {
                let (id, rest) = split_id(payload)?;
                let report =
                    serde_json::from_slice(rest).map_err(|e| format!("report JSON: {e}"))?;
                Op::SaveReport {
                    id: utf8(id)?,
                    report,
                }
            }
            RecordKind::ArchiveTask => decode_archive(payload)?,
            // Each inner op is decoded, and its id checked, by the recursion.
            RecordKind::Batch => return decode_batch(payload),
        };
        // Every id names a file in the layout: one the store itself would
        // refuse is damage, never a path (a crafted record cannot write
        // outside the directory, and salvage can skip it). A put's was
        // checked by `HeldTask::from_json` already.
        if !matches!(op, Op::PutTask(_)) {
            crate::id::validate_id(op.id()).map_err(|e| e.to_string())?;
        }
        Ok(op)
    }

    /// The op that archives `task` as one JSON line at `offset` of
    /// `archive/<file>`.
    pub fn archive_task(task: Task, file: String, offset: u64) -> Op {
        debug_assert!(is_archive_file_name(&file), "archive file {file:?}");
        let mut line = task.to_json();
        // Compact JSON escapes newlines inside strings, so the line is one line.
        debug_assert!(!line.contains(&b'\n'));
        line.push(b'\n');
        Op::ArchiveTask {
            task,
            file,
            offset,
            line,
        }
    }
}

/// A batch's payload: the op count, then each op framed with its kind and
/// payload length (docs/format.md, "Batch record").
fn encode_batch(ops: &[Op]) -> Vec<u8> {
    assert!(
        ops.iter().all(Op::may_join_batch),
        "the store builds batches of puts and deletes only"
    );
    let payloads: Vec<Vec<u8>> = ops.iter().map(Op::encode).collect();
    encode_batch_parts(
        ops.iter()
            .map(Op::kind)
            .zip(payloads.iter().map(Vec::as_slice)),
    )
}

/// A batch's payload from ops already encoded (kind and payload each), so
/// a caller that measured each op's payload does not encode it twice.
pub fn encode_batch_parts<'a>(
    parts: impl ExactSizeIterator<Item = (RecordKind, &'a [u8])>,
) -> Vec<u8> {
    assert!(parts.len() > 0, "a batch holds at least one op");
    let count = u32::try_from(parts.len()).expect("a batch under the payload cap has few ops");
    let mut out = count.to_le_bytes().to_vec();
    for (kind, payload) in parts {
        debug_assert!(!matches!(kind, RecordKind::Batch), "a batch never nests");
        let len = u32::try_from(payload.len()).expect("an op under the payload cap");
        out.push(kind as u8);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(payload);
    }
    out
}

/// Decodes a batch: any op that does not decode makes the whole record
/// damage, so a batch is replayed all or none.
fn decode_batch(payload: &[u8]) -> Result<Op, String> {
    if payload.len() < BATCH_COUNT_LEN {
        return Err("batch record too short for its op count".into());
    }
    let count = u32::from_le_bytes(payload[..4].try_into().expect("4 bytes")) as usize;
    let mut rest = &payload[BATCH_COUNT_LEN..];
    // Checked against the bytes before anything is allocated: each op takes
    // at least its frame header.
    if count == 0 || count > rest.len() / BATCH_OP_HEADER_LEN {
        return Err(format!("batch claims {count} ops in {} bytes", rest.len()));
    }
    let mut ops = Vec::with_capacity(count);
    for i in 0..count {
        if rest.len() < BATCH_OP_HEADER_LEN {
            return Err(format!("batch op {i} runs past the record"));
        }
        let kind = rest[BATCH_OP_KIND_OFFSET];
        let len = u32::from_le_bytes(
            rest[BATCH_OP_LEN_OFFSET..BATCH_OP_HEADER_LEN]
                .try_into()
                .expect("4 bytes"),
        ) as usize;
        let body = rest[BATCH_OP_HEADER_LEN..]
            .get(..len)
            .ok_or_else(|| format!("batch op {i} runs past the record"))?;
        if kind == RecordKind::Batch as u8 {
            return Err(format!("batch op {i} is a nested batch"));
        }
        let op = Op::decode(kind, body).map_err(|e| format!("batch op {i}: {e}"))?;
        if !op.may_join_batch() {
            return Err(format!(
                "batch op {i}: a {} cannot be part of a batch",
                op.kind().name()
            ));
        }
        ops.push(op);
        rest = &rest[BATCH_OP_HEADER_LEN + len..];
    }
    if !rest.is_empty() {
        return Err(format!("{} bytes after the batch's last op", rest.len()));
    }
    Ok(Op::Batch(ops))
}

fn decode_archive(payload: &[u8]) -> Result<Op, String> {
    let (file, rest) = split_id(payload)?;
    let file = String::from_utf8(file.to_vec()).map_err(|_| "archive file name is not UTF-8")?;
    if !is_archive_file_name(&file) {
        return Err(format!("{file:?} is not an archive file name"));
    }
    if rest.len() < 8 {
        return Err("archive record too short".into());
    }
    let offset = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
    let line = rest[8..].to_vec();
    if offset.checked_add(line.len() as u64).is_none() {
        return Err("archive line ends past the largest offset".into());
    }
    let body = match line.split_last() {
        Some((b'\n', body)) if !body.contains(&b'\n') => body,
        _ => return Err("archive line is not one line ending with a newline".into()),
    };
    let task = Task::parse(body).map_err(|e| format!("archived task JSON: {e}"))?;
    // The id names the task file the checkpoint removes.
    crate::id::validate_id(task.id()).map_err(|e| format!("archived task: {e}"))?;
    Ok(Op::ArchiveTask {
        task,
        file,
        offset,
        line,
    })
}

/// The `"id"` of a session record.
pub fn session_id(session: &Value) -> Option<&str> {
    session.get("id").and_then(Value::as_str)
}

fn with_id(id: &str, more: usize) -> Vec<u8> {
    let len = u16::try_from(id.len()).expect("ids are validated to at most 128 bytes");
    let mut out = Vec::with_capacity(2 + id.len() + more);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(id.as_bytes());
    out
}

fn split_id(payload: &[u8]) -> Result<(&[u8], &[u8]), String> {
    if payload.len() < 2 {
        return Err("record too short for its id".into());
    }
    let len = u16::from_le_bytes([payload[0], payload[1]]) as usize;
    if payload.len() < 2 + len {
        return Err("id length runs past the record".into());
    }
    Ok((&payload[2..2 + len], &payload[2 + len..]))
}

mod erased {
    /// Serializes to JSON; a serde_json value cannot fail.
    pub trait Ser {
        fn to_vec(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn to_vec(&self) -> Vec<u8> {
            serde_json::to_vec(self).expect("serializing a JSON value cannot fail")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(id: &str) -> HeldTask {
        HeldTask::from_task(&Task::new(id)).unwrap()
    }

    #[test]
    fn ops_round_trip() {
        let ops = [
            Op::PutTask(held("a")),
            Op::DeleteTask("a".into()),
            Op::PutSession {
                id: "s".into(),
                session: serde_json::json!({"id": "s", "x": 1}),
            },
            Op::DeleteSession("s".into()),
            Op::AppendLog {
                session: "s".into(),
                offset: 9,
                text: b"hello\n".to_vec(),
            },
            Op::SaveReport {
                id: "r".into(),
                report: serde_json::json!({"ok": true}),
            },
            Op::archive_task(Task::new("a"), "tasks-2026-01.jsonl".into(), 12),
            Op::Batch(vec![
                Op::PutTask(held("a")),
                Op::DeleteTask("b".into()),
                Op::PutSession {
                    id: "s".into(),
                    session: serde_json::json!({"id": "s"}),
                },
                Op::DeleteSession("t".into()),
            ]),
        ];
        for op in ops {
            assert_eq!(Op::decode(op.kind() as u8, &op.encode()), Ok(op));
        }
        assert!(Op::decode(99, b"").is_err());
        // A task record that repeats a key says two things: damage, never a
        // guess at which one was meant.
        let twice = br#"{"id":"a","status":"failed","status":"pending"}"#;
        let e = Op::decode(RecordKind::PutTask as u8, twice).unwrap_err();
        assert!(e.contains("duplicate key \"status\""), "{e}");
        assert!(Op::decode(RecordKind::AppendLog as u8, &[5, 0, b'a']).is_err());
        // An archive file name that would leave `archive/` never decodes.
        let mut escaping = with_id("../state.json", 8);
        escaping.extend_from_slice(&[0; 8]);
        escaping.extend_from_slice(b"{\"id\":\"a\"}\n");
        assert!(Op::decode(RecordKind::ArchiveTask as u8, &escaping).is_err());
    }

    #[test]
    fn the_batch_example_in_format_md_decodes() {
        let bytes = [
            &[2, 0, 0, 0, 1, 10, 0, 0, 0][..],
            b"{\"id\":\"a\"}",
            &[2, 1, 0, 0, 0, b'b'],
        ]
        .concat();
        let op = Op::decode(RecordKind::Batch as u8, &bytes).unwrap();
        assert_eq!(
            op,
            Op::Batch(vec![Op::PutTask(held("a")), Op::DeleteTask("b".into())])
        );
    }

    #[test]
    fn a_batch_is_damage_as_a_whole() {
        let good = Op::Batch(vec![Op::PutTask(held("a")), Op::DeleteTask("b".into())]);
        let bytes = good.encode();
        let kind = RecordKind::Batch as u8;
        // An inner op that does not decode (an invalid id) fails the batch.
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] = b'/';
        assert!(Op::decode(kind, &bad).unwrap_err().contains("batch op 1"));
        // Truncated, padded, empty, or claiming more ops than fit.
        assert!(Op::decode(kind, &bytes[..bytes.len() - 1]).is_err());
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(Op::decode(kind, &padded).is_err());
        assert!(Op::decode(kind, &0u32.to_le_bytes()).is_err());
        let mut huge = u32::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(&bytes[4..]);
        assert!(Op::decode(kind, &huge).is_err());
        // No nesting, and no log appends, reports or archive lines inside.
        let frame = |op: &Op| {
            let p = op.encode();
            let mut out = 1u32.to_le_bytes().to_vec();
            out.push(op.kind() as u8);
            out.extend_from_slice(&(p.len() as u32).to_le_bytes());
            out.extend_from_slice(&p);
            out
        };
        assert!(
            Op::decode(kind, &frame(&good))
                .unwrap_err()
                .contains("nested")
        );
        let report = Op::SaveReport {
            id: "r".into(),
            report: serde_json::json!({}),
        };
        assert!(Op::decode(kind, &frame(&report)).is_err());
    }
}
