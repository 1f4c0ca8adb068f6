//! The schema, as numbered migrations statewal applies itself, and the
//! table `statewal_schema_versions` that records which ones a database has.
//!
//! Opening applies every migration the database lacks, in order, in one
//! transaction under an advisory lock, so two instances starting together
//! do not both apply one; a database whose schema is newer than this
//! statewal knows is refused rather than written by old code.
//!
//! **Invariant:** a migration, once released, is never edited: a change
//! is a new migration with the next number.

use super::conn::{Pool, in_transaction, pg_error};
use crate::error::{Error, ErrorKind, Result};

/// Each migration: its number, a name for `statewal_schema_versions`, and
/// its SQL. Numbers start at 1 and have no gaps.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "tasks, sessions, logs, reports, outbox", V1),
    (2, "outbox pruning horizon", V2),
    (3, "tool column escaped", V3),
];

/// The schema's version after every migration: the last number.
pub(crate) const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The advisory lock key migrations run under ("statewal" in ASCII).
const MIGRATION_LOCK: i64 = 0x7374_6174_6577_616c;

/// Version 1. Tasks keep their document as `text`, never `jsonb`, which
/// would sort the keys and drop duplicates (CONTRACTS section 2); the
/// columns beside it are copies of what `list` filters and orders by.
/// Text that compares ids is `COLLATE "C"`: byte order, as in Rust.
const V1: &str = r#"
CREATE TABLE statewal_tasks (
    id text COLLATE "C" PRIMARY KEY,
    doc text NOT NULL,
    version bigint NOT NULL CHECK (version >= 1),
    status text NOT NULL,
    tool text,
    updated_at timestamptz,
    -- The nanoseconds below updated_at's microsecond, 0..999: with it the
    -- order and bounds are as exact as Task::updated_at.
    updated_ns integer CHECK (updated_ns BETWEEN 0 AND 999),
    created_at timestamptz
);
CREATE INDEX statewal_tasks_status ON statewal_tasks (status);
CREATE INDEX statewal_tasks_tool ON statewal_tasks (tool);
CREATE INDEX statewal_tasks_order ON statewal_tasks ((updated_at IS NULL), updated_at, updated_ns, id);
CREATE INDEX statewal_tasks_created ON statewal_tasks (created_at);

CREATE TABLE statewal_sessions (
    id text COLLATE "C" PRIMARY KEY,
    doc text NOT NULL
);

CREATE TABLE statewal_logs (
    session text COLLATE "C" PRIMARY KEY,
    len bigint NOT NULL
);
CREATE TABLE statewal_log_pieces (
    session text COLLATE "C" NOT NULL,
    start_at bigint NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (session, start_at)
);

CREATE TABLE statewal_reports (
    id text COLLATE "C" PRIMARY KEY,
    doc text NOT NULL,
    saved_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE statewal_archive (
    seq bigserial PRIMARY KEY,
    id text COLLATE "C" NOT NULL,
    doc text NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now()
);

-- The outbox: one row per task change, written in the change's own
-- transaction. xid is the writer's transaction id, which the subscribers'
-- commit-ordered horizon compares (see outbox.rs).
CREATE TABLE statewal_changes (
    id bigserial PRIMARY KEY,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    task_id text COLLATE "C" NOT NULL,
    kind text NOT NULL CHECK (kind IN ('put', 'delete', 'archive')),
    version bigint,
    origin text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX statewal_changes_xid ON statewal_changes (xid);
"#;

/// Version 2: pruning the outbox. `statewal_changes_pruned` holds one row:
/// the highest writer `xid` among the outbox rows pruned so far, which a
/// listener compares with its cursor to learn that it missed changes, and
/// how many prunes deleted rows (outbox.rs); the index on `at` finds the
/// rows past their retention.
const V2: &str = r#"
CREATE TABLE statewal_changes_pruned (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    xid xid8 NOT NULL,
    prunes bigint NOT NULL
);
INSERT INTO statewal_changes_pruned (xid, prunes) VALUES ('0', 0);
CREATE INDEX statewal_changes_at ON statewal_changes (at);
"#;

/// Version 3: the `tool` column holds the tool escaped (a backslash
/// doubled, a NUL as `\0`: `tasks::tool_column`), so a tool holding NUL,
/// which `text` cannot, has a row too. Rows written before hold no NUL, so
/// only their backslashes are doubled. `chr(92)` is a backslash, whatever
/// `standard_conforming_strings` says.
const V3: &str = r#"
UPDATE statewal_tasks SET tool = replace(tool, chr(92), chr(92) || chr(92))
WHERE strpos(tool, chr(92)) > 0;
"#;

/// Brings the database's schema to [`SCHEMA_VERSION`]. Returns the version
/// it found (0 for a database statewal never used).
pub(crate) fn migrate(pool: &Pool) -> Result<i32> {
    // An up-to-date schema is left alone without the lock or any CREATE:
    // PostgreSQL checks the CREATE privilege on the schema before it sees
    // that a table exists, and an application's role may have none.
    match applied(pool)? {
        Some(found) if found == SCHEMA_VERSION => return Ok(found),
        Some(found) if found > SCHEMA_VERSION => return Err(newer(found)),
        _ => {}
    }
    in_transaction(pool, "migrating the schema", |tx| {
        let q = |e| pg_error("migrating the schema", e);
        // Held to the end of the transaction: one migrator at a time.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(q)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS statewal_schema_versions (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .map_err(q)?;
        let found: i32 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM statewal_schema_versions",
                &[],
            )
            .map_err(q)?
            .get(0);
        if found > SCHEMA_VERSION {
            return Err(newer(found));
        }
        for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > found) {
            tx.batch_execute(sql)
                .map_err(|e| pg_error(&format!("schema migration {version} ({name})"), e))?;
            tx.execute(
                "INSERT INTO statewal_schema_versions (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .map_err(q)?;
        }
        Ok(found)
    })
}

/// The highest migration applied, or `None` when the database has no
/// `statewal_schema_versions`. Creates nothing.
fn applied(pool: &Pool) -> Result<Option<i32>> {
    let q = |e| pg_error("reading the schema version", e);
    let mut c = pool
        .get()
        .map_err(|e| super::conn::pool_error(pool, "reading the schema version", e))?;
    let exists: bool = c
        .query_one(
            "SELECT to_regclass('statewal_schema_versions') IS NOT NULL",
            &[],
        )
        .map_err(q)?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let found: i32 = c
        .query_one(
            "SELECT coalesce(max(version), 0) FROM statewal_schema_versions",
            &[],
        )
        .map_err(q)?
        .get(0);
    Ok(Some(found))
}

/// Fails with [`ErrorKind::NotFound`] ("no statewal store in ...") unless
/// the database holds statewal's tables, and refuses a schema newer than
/// this statewal knows; creates nothing. For read-only opens: a read must
/// never create tables in a database that is not statewal's.
pub(crate) fn require(pool: &Pool, shown: &str) -> Result<()> {
    let found = applied(pool)?.unwrap_or(0);
    if found == 0 {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "no statewal store in {shown} (statewal's tables are created by the first write, \
                 never by a read)"
            ),
        ));
    }
    if found > SCHEMA_VERSION {
        return Err(newer(found));
    }
    Ok(())
}

fn newer(found: i32) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!(
            "the database's statewal schema is version {found}, newer than this \
             statewal knows ({SCHEMA_VERSION}); upgrade statewal"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_without_gaps() {
        for (i, (version, _, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version as usize, i + 1);
        }
        assert!(
            !V1.contains("jsonb") && !V2.contains("jsonb") && !V3.contains("jsonb"),
            "documents are text (CONTRACTS section 2)"
        );
    }
}
