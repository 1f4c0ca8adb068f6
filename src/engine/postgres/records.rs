//! Sessions, session logs and reports as rows.
//!
//! A session record and a report keep their JSON as `text`, in the
//! writer's key order. A log is its length (`statewal_logs`) and the
//! pieces appended to it, each at the offset it starts at
//! (`statewal_log_pieces`); an append takes the log's row lock to choose
//! its offset, so concurrent appends to one log never overlap.
//!
//! These writes have no outbox row; each takes the next number of the
//! outbox's sequence, so that its `u64` is a position in the same change
//! order as the task writes'.

use super::conn::pg_error;
use super::tasks::{from_i64, to_i64};
use crate::error::{Error, ErrorKind, Result};
use crate::layout::{log_file, report_file};
use crate::readback::{LogInfo, Origin, ReportInfo};
use crate::session::Session;
use postgres::GenericClient;
use serde_json::Value;

/// The next position in the change order, for a write with no outbox row.
const NEXT_SEQ: &str = "nextval('statewal_changes_id_seq')";

/// Inserts or replaces session `id`; its position.
pub(crate) fn put_session(c: &mut impl GenericClient, id: &str, session: &Value) -> Result<u64> {
    let doc = serde_json::to_string(session).expect("serializing a JSON value cannot fail");
    let row = c
        .query_one(
            &format!(
                "INSERT INTO statewal_sessions (id, doc) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET doc = excluded.doc RETURNING {NEXT_SEQ}"
            ),
            &[&id, &doc],
        )
        .map_err(|e| pg_error(&format!("saving session {id:?}"), e))?;
    Ok(from_i64(row.get(0)))
}

/// Deletes session `id`; its position, or `None` if there is none.
pub(crate) fn delete_session(c: &mut impl GenericClient, id: &str) -> Result<Option<u64>> {
    let row = c
        .query_opt(
            &format!("DELETE FROM statewal_sessions WHERE id = $1 RETURNING {NEXT_SEQ}"),
            &[&id],
        )
        .map_err(|e| pg_error(&format!("deleting session {id:?}"), e))?;
    Ok(row.map(|r| from_i64(r.get(0))))
}

/// Session `id`'s record.
pub(crate) fn get_session(c: &mut impl GenericClient, id: &str) -> Result<Option<Session>> {
    let row = c
        .query_opt("SELECT doc FROM statewal_sessions WHERE id = $1", &[&id])
        .map_err(|e| pg_error(&format!("reading session {id:?}"), e))?;
    Ok(row
        .map(|r| parse("session", r.get(0)))
        .transpose()?
        .as_ref()
        .and_then(Session::of_held))
}

/// Every session record, by id.
pub(crate) fn list_sessions(c: &mut impl GenericClient) -> Result<Vec<Session>> {
    Ok(session_records(c)?
        .iter()
        .filter_map(Session::of_held)
        .collect())
}

/// Every session record as written (its keys in the writer's order), by id.
pub(crate) fn session_records(c: &mut impl GenericClient) -> Result<Vec<Value>> {
    let rows = c
        .query("SELECT doc FROM statewal_sessions ORDER BY id", &[])
        .map_err(|e| pg_error("listing sessions", e))?;
    rows.iter().map(|r| parse("session", r.get(0))).collect()
}

/// Appends `text` to session `session`'s log; its position.
pub(crate) fn append_log(c: &mut impl GenericClient, session: &str, text: &str) -> Result<u64> {
    let what = || format!("appending to the log of session {session:?}");
    let n = to_i64(text.len() as u64);
    // The upsert takes the log's row lock until commit: the next append
    // to this log waits, and then starts where this one ended.
    let end: i64 = c
        .query_one(
            "INSERT INTO statewal_logs AS l (session, len) VALUES ($1, $2) \
             ON CONFLICT (session) DO UPDATE SET len = l.len + excluded.len RETURNING len",
            &[&session, &n],
        )
        .map_err(|e| pg_error(&what(), e))?
        .get(0);
    let row = c
        .query_one(
            &format!(
                "INSERT INTO statewal_log_pieces (session, start_at, bytes) \
                 VALUES ($1, $2, $3) RETURNING {NEXT_SEQ}"
            ),
            &[&session, &(end - n), &text.as_bytes()],
        )
        .map_err(|e| pg_error(&what(), e))?;
    Ok(from_i64(row.get(0)))
}

/// Every session log, by session id.
pub(crate) fn list_logs(c: &mut impl GenericClient) -> Result<Vec<LogInfo>> {
    let rows = c
        .query(
            "SELECT session, len FROM statewal_logs ORDER BY session",
            &[],
        )
        .map_err(|e| pg_error("listing logs", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let session: String = r.get(0);
            LogInfo {
                file_name: log_file(&session),
                session,
                origin: Origin::Statewal,
                stamp_ms: None,
                size: from_i64(r.get(1)),
                on_disk: false,
                pending: false,
            }
        })
        .collect())
}

/// Bytes `start..end` of the log `file_name` names (`session_<id>.log`).
pub(crate) fn read_log(
    c: &mut impl GenericClient,
    file_name: &str,
    start: u64,
    end: Option<u64>,
) -> Result<Vec<u8>> {
    let session = crate::readback::log_session(file_name, start, end)?;
    let what = || format!("reading log {file_name:?}");
    let Some(len) = c
        .query_opt(
            "SELECT len FROM statewal_logs WHERE session = $1",
            &[&session],
        )
        .map_err(|e| pg_error(&what(), e))?
        .map(|r| from_i64(r.get(0)))
    else {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("no log {file_name:?} (statewal list-logs lists them)"),
        ));
    };
    let to = end.unwrap_or(len).min(len);
    let from = start.min(to);
    // The pieces that overlap the range: those starting before its end,
    // from the last one starting at or before its start.
    let pieces = c
        .query(
            "SELECT start_at, bytes FROM statewal_log_pieces \
             WHERE session = $1 AND start_at < $3 AND start_at + length(bytes) > $2 \
             ORDER BY start_at",
            &[&session, &to_i64(from), &to_i64(to)],
        )
        .map_err(|e| pg_error(&what(), e))?;
    let mut out = vec![0u8; usize::try_from(to - from).expect("a range of bytes in memory")];
    for p in pieces {
        let at = from_i64(p.get(0));
        let bytes: &[u8] = p.get(1);
        let lo = from.max(at);
        let hi = to.min(at + bytes.len() as u64);
        out[(lo - from) as usize..(hi - from) as usize]
            .copy_from_slice(&bytes[(lo - at) as usize..(hi - at) as usize]);
    }
    Ok(out)
}

/// Saves report `id`; its position.
pub(crate) fn save_report(c: &mut impl GenericClient, id: &str, report: &Value) -> Result<u64> {
    let doc = serde_json::to_string(report).expect("serializing a JSON value cannot fail");
    let row = c
        .query_one(
            &format!(
                "INSERT INTO statewal_reports (id, doc) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, saved_at = now() \
                 RETURNING {NEXT_SEQ}"
            ),
            &[&id, &doc],
        )
        .map_err(|e| pg_error(&format!("saving report {id:?}"), e))?;
    Ok(from_i64(row.get(0)))
}

/// Report `id`.
pub(crate) fn get_report(c: &mut impl GenericClient, id: &str) -> Result<Option<Value>> {
    let row = c
        .query_opt("SELECT doc FROM statewal_reports WHERE id = $1", &[&id])
        .map_err(|e| pg_error(&format!("reading report {id:?}"), e))?;
    row.map(|r| parse("report", r.get(0))).transpose()
}

/// Every report, by id.
pub(crate) fn list_reports(c: &mut impl GenericClient) -> Result<Vec<ReportInfo>> {
    let rows = c
        .query(
            "SELECT id, octet_length(doc) FROM statewal_reports ORDER BY id",
            &[],
        )
        .map_err(|e| pg_error("listing reports", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let id: String = r.get(0);
            ReportInfo {
                file_name: report_file(&id),
                id,
                origin: Origin::Statewal,
                size: u64::try_from(r.get::<_, i32>(1)).unwrap_or(0),
                on_disk: false,
                pending: false,
            }
        })
        .collect())
}

fn parse(what: &str, doc: &str) -> Result<Value> {
    crate::json::parse_str(doc).map_err(|e| {
        Error::new(
            ErrorKind::Corrupt,
            format!("a {what} document in PostgreSQL does not parse: {e}"),
        )
    })
}
