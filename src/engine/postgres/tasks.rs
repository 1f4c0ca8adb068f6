//! Tasks as rows: puts (plain and conditional), deletes, archiving, reads
//! and [`TaskQuery`] translated to SQL.
//!
//! Every task write also writes its outbox row after it holds the task's
//! row lock, in the same transaction: a put in its own statement, a delete
//! through [`super::outbox::record`].
//!
//! **Invariant:** the `doc` column holds exactly the compact JSON the
//! journal engine would journal for the task (the held task's bytes), and
//! the other columns are derived from it, never the other way round.

use super::outbox::{self, ChangeKind};
use crate::error::{Error, ErrorKind, Result};
use crate::held::HeldTask;
use crate::model::Task;
use crate::query::TaskQuery;
use postgres::Transaction;
use postgres::types::{IsNull, ToSql, Type, accepts, to_sql_checked};
use time::OffsetDateTime;

/// A task's row: its document and the columns derived from it.
pub(crate) struct Row {
    id: String,
    doc: String,
    status: &'static str,
    tool: Option<String>,
    updated_at: Option<PgTime>,
    updated_ns: Option<i32>,
    created_at: Option<PgTime>,
}

/// The earliest time a `timestamptz` holds: 4713 BC. Statewal reads years
/// from 0000, so a time before this is refused rather than clamped.
const TIMESTAMPTZ_MIN_UNIX: i64 = -210_866_803_200;

impl Row {
    /// The columns of `task`, read before it is checked and held; `doc` is
    /// filled from the held bytes by [`Row::with_doc`].
    pub(crate) fn of(task: &Task) -> Result<Row> {
        let (updated_at, updated_ns) = match task.updated_at() {
            Some(t) => {
                let (micros, ns) = split_micros(t);
                let micros = check_range(task, "updatedAt", micros)?;
                (Some(PgTime::of(micros)), Some(ns))
            }
            None => (None, None),
        };
        let created_at = match task.created_at() {
            Some(t) => Some(PgTime::of(check_range(
                task,
                "createdAt",
                split_micros(t).0,
            )?)),
            None => None,
        };
        Ok(Row {
            id: task.id().to_string(),
            doc: String::new(),
            status: task.status().as_str(),
            tool: task.tool().map(tool_column),
            updated_at,
            updated_ns,
            created_at,
        })
    }

    /// The task's id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The row with the document as the held task's compact JSON.
    pub(crate) fn with_doc(mut self, held: &HeldTask) -> Row {
        debug_assert_eq!(held.id(), self.id);
        self.doc = String::from_utf8(held.json().to_vec())
            .expect("a held task's JSON is serde_json's output, so UTF-8");
        self
    }
}

/// `t` cut to its microsecond (rounded down, before 1970 too) and the
/// nanoseconds below it, 0..999.
///
/// The cut keeps `t`'s offset: `9999-12-31T23:59:59.5-23:59` is a valid
/// time whose UTC date is in year 10000, which `OffsetDateTime` cannot
/// build from a Unix timestamp (a round trip through one panicked; found
/// by the conformance suite). Going down by the nanoseconds of a time
/// that has them never leaves the range.
fn split_micros(t: OffsetDateTime) -> (OffsetDateTime, i32) {
    let ns = t.nanosecond() % 1000;
    let micros = t
        .checked_sub(time::Duration::nanoseconds(i64::from(ns)))
        .expect("rounding down by under a microsecond stays in range");
    (micros, ns as i32)
}

/// A time as a `timestamptz` holds it: microseconds since
/// 2000-01-01T00:00:00Z.
///
/// Computed as a difference, never through the UTC date: a valid time late
/// on 9999-12-31 with a negative offset is in year 10000 in UTC, which
/// `OffsetDateTime` cannot hold, and the `postgres` crate's own conversion
/// (`to_offset(UTC)`) panicked on it (found by the conformance suite).
#[derive(Debug, Clone, Copy)]
struct PgTime(i64);

impl PgTime {
    /// `t`, which [`split_micros`] cut to its microsecond.
    fn of(t: OffsetDateTime) -> PgTime {
        let since = t - time::macros::datetime!(2000-01-01 00:00:00 UTC);
        let micros = since.whole_microseconds();
        debug_assert_eq!(
            since.subsec_nanoseconds() % 1000,
            0,
            "cut to the microsecond"
        );
        PgTime(i64::try_from(micros).expect("±10000 years of microseconds fit an i64"))
    }
}

impl ToSql for PgTime {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        // The binary format of `timestamptz`: a big-endian i64.
        out.extend_from_slice(&self.0.to_be_bytes());
        Ok(IsNull::No)
    }

    accepts!(TIMESTAMPTZ);
    to_sql_checked!();
}

fn check_range(task: &Task, what: &str, t: OffsetDateTime) -> Result<OffsetDateTime> {
    if t.unix_timestamp() < TIMESTAMPTZ_MIN_UNIX {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "task {:?}: its {what} is before 4713 BC, which PostgreSQL cannot hold",
                task.id()
            ),
        ));
    }
    Ok(t)
}

/// A tool as the `tool` column holds it: a backslash doubled and a NUL
/// as `\0`, since `text` cannot hold NUL and a tool may (any JSON string
/// is one). The mapping is one to one, and the column is only compared
/// for equality with a tool mapped the same way, so `list --tool` matches
/// exactly (schema 3 rewrote the rows written before).
pub(crate) fn tool_column(tool: &str) -> String {
    if !tool.contains(['\\', '\0']) {
        return tool.to_string();
    }
    tool.replace('\\', "\\\\").replace('\0', "\\0")
}

/// How a put treats the version it finds.
#[derive(Clone, Copy)]
pub(crate) enum Expect {
    /// Last writer wins.
    Any,
    /// Only if there is no such task.
    Absent,
    /// Only if the task is at this version.
    Version(u64),
}

/// Writes `row` and its outbox row, and queues the wake-up, in one
/// statement (one round trip); returns the outbox id and the new version,
/// or `None` when `expect` did not hold (and then nothing was written).
///
/// The outbox row is inserted from the task write's `RETURNING`, so its id
/// is taken after the task's row lock is held ([`super::outbox`]'s order
/// rule). The statement is sent with its parameter types
/// (`query_typed`): no separate prepare round trip, and no per-connection
/// statement cache to keep (`docs/decisions.md`, "issue 12: round trips
/// per put").
pub(crate) fn put(
    tx: &mut Transaction<'_>,
    row: &Row,
    expect: Expect,
    origin: &str,
) -> Result<Option<(u64, u64)>> {
    let write = match expect {
        Expect::Any => format!(
            "{PUT_INSERT} ON CONFLICT (id) DO UPDATE SET version = t.version + 1, {PUT_COLS}"
        ),
        Expect::Absent => format!("{PUT_INSERT} ON CONFLICT (id) DO NOTHING"),
        Expect::Version(_) => format!(
            "UPDATE statewal_tasks AS t SET version = t.version + 1, {PUT_SET} \
             WHERE id = $1 AND version = $9"
        ),
    };
    let sql = format!(
        "WITH w AS ({write} RETURNING t.version), \
         c AS (INSERT INTO statewal_changes (task_id, kind, version, origin) \
               SELECT $1, 'put', w.version, $8 FROM w RETURNING id, version) \
         SELECT c.id, c.version FROM c, pg_notify('{}', '') AS n",
        outbox::CHANNEL
    );
    let expected = match expect {
        Expect::Version(v) => Some(to_i64(v)),
        _ => None,
    };
    let p: [(&(dyn ToSql + Sync), Type); 9] = [
        (&row.id, Type::TEXT),
        (&row.doc, Type::TEXT),
        (&row.status, Type::TEXT),
        (&row.tool, Type::TEXT),
        (&row.updated_at, Type::TIMESTAMPTZ),
        (&row.updated_ns, Type::INT4),
        (&row.created_at, Type::TIMESTAMPTZ),
        (&origin, Type::TEXT),
        (&expected, Type::INT8),
    ];
    let found = tx
        .query_typed_opt(&sql, &p)
        .map_err(|e| super::conn::pg_error(&format!("saving task {:?}", row.id), e))?;
    Ok(found.map(|r| (from_i64(r.get(0)), from_i64(r.get(1)))))
}

/// The insert of a task put, `t` the table's alias.
const PUT_INSERT: &str = "INSERT INTO statewal_tasks AS t \
    (id, doc, version, status, tool, updated_at, updated_ns, created_at) \
    VALUES ($1, $2, 1, $3, $4, $5, $6, $7)";

/// What a put replaces, from the conflicting insert's row.
const PUT_COLS: &str = "status = excluded.status, tool = excluded.tool, \
    updated_at = excluded.updated_at, updated_ns = excluded.updated_ns, \
    created_at = excluded.created_at, doc = excluded.doc";

/// What a conditional put replaces, from the parameters.
const PUT_SET: &str = "status = $3, tool = $4, updated_at = $5, updated_ns = $6, \
    created_at = $7, doc = $2";

/// Deletes task `id` (moving it to the archive table when `kind` is
/// [`ChangeKind::Archive`]); its outbox id, or `None` if there is no such
/// task.
pub(crate) fn delete(
    tx: &mut Transaction<'_>,
    id: &str,
    kind: ChangeKind,
    origin: &str,
) -> Result<Option<u64>> {
    let sql = match kind {
        ChangeKind::Archive => {
            "WITH d AS (DELETE FROM statewal_tasks WHERE id = $1 RETURNING id, doc) \
             INSERT INTO statewal_archive (id, doc) SELECT id, doc FROM d RETURNING id"
        }
        _ => "DELETE FROM statewal_tasks WHERE id = $1 RETURNING id",
    };
    let gone = tx
        .query_opt(sql, &[&id])
        .map_err(|e| super::conn::pg_error(&format!("deleting task {id:?}"), e))?;
    if gone.is_none() {
        return Ok(None);
    }
    outbox::record(tx, id, kind, None, origin).map(Some)
}

/// Task `id`'s version, `None` if there is none.
pub(crate) fn version(client: &mut impl postgres::GenericClient, id: &str) -> Result<Option<u64>> {
    let row = client
        .query_typed_opt(
            "SELECT version FROM statewal_tasks WHERE id = $1",
            &[(&id, Type::TEXT)],
        )
        .map_err(|e| super::conn::pg_error(&format!("reading task {id:?}'s version"), e))?;
    Ok(row.map(|r| from_i64(r.get(0))))
}

/// Task `id`, parsed from its document.
pub(crate) fn get(client: &mut impl postgres::GenericClient, id: &str) -> Result<Option<Task>> {
    let row = client
        .query_typed_opt(
            "SELECT doc FROM statewal_tasks WHERE id = $1",
            &[(&id, Type::TEXT)],
        )
        .map_err(|e| super::conn::pg_error(&format!("reading task {id:?}"), e))?;
    row.map(|r| parse_doc(r.get(0))).transpose()
}

/// The tasks `q` selects, in its order: the same rows
/// [`TaskQuery::matches`] keeps, sorted as [`TaskQuery::order_key`] sorts.
pub(crate) fn query(client: &mut impl postgres::GenericClient, q: &TaskQuery) -> Result<Vec<Task>> {
    let statuses: Vec<&str> = q.statuses.iter().map(|s| s.as_str()).collect();
    let bounds = [q.updated_after, q.updated_before].map(|b| b.map(split_micros));
    let (after, after_ns) = (bounds[0].map(|b| PgTime::of(b.0)), bounds[0].map(|b| b.1));
    let (before, before_ns) = (bounds[1].map(|b| PgTime::of(b.0)), bounds[1].map(|b| b.1));
    let limit = q.limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let offset = i64::try_from(q.offset).unwrap_or(i64::MAX);
    let tool = q.tool.as_deref().map(tool_column);
    // Each filter is off when its parameter is NULL, so one statement
    // serves every query. A bound compares (updated_at, updated_ns) as a
    // pair: exact to the nanosecond, as `matches` is.
    let rows = client
        .query(
            "SELECT doc FROM statewal_tasks \
             WHERE (cardinality($1::text[]) = 0 OR status = ANY($1)) \
               AND ($2::text IS NULL OR tool = $2) \
               AND ($3::timestamptz IS NULL OR (updated_at, updated_ns) > ($3, $4::integer)) \
               AND ($5::timestamptz IS NULL OR (updated_at, updated_ns) < ($5, $6::integer)) \
             ORDER BY (updated_at IS NULL), updated_at, updated_ns, id \
             LIMIT $7 OFFSET $8",
            &[
                &statuses, &tool, &after, &after_ns, &before, &before_ns, &limit, &offset,
            ],
        )
        .map_err(|e| super::conn::pg_error("listing tasks", e))?;
    rows.iter().map(|r| parse_doc(r.get(0))).collect()
}

/// How many tasks there are.
pub(crate) fn count(client: &mut impl postgres::GenericClient) -> Result<u64> {
    let row = client
        .query_one("SELECT count(*) FROM statewal_tasks", &[])
        .map_err(|e| super::conn::pg_error("counting tasks", e))?;
    Ok(from_i64(row.get(0)))
}

fn parse_doc(doc: &str) -> Result<Task> {
    Task::parse(doc.as_bytes()).map_err(|why| {
        Error::new(
            ErrorKind::Corrupt,
            format!("a task document in statewal_tasks does not parse: {why}"),
        )
    })
}

/// A count or version as PostgreSQL's `bigint`.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A `bigint` the schema keeps non-negative, as a count or version.
pub(crate) fn from_i64(v: i64) -> u64 {
    u64::try_from(v).expect("versions, counts and ids are never negative")
}
