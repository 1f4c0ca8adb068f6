//! Connections: the pool every operation borrows from, the transaction
//! helper that retries what PostgreSQL asks to be retried, and the mapping
//! of the client's errors to statewal's [`ErrorKind`]s.
//!
//! **Invariant:** a write is acknowledged only after `COMMIT` returned
//! success on its connection; a connection that breaks during `COMMIT` is
//! reported as an error that says the outcome is unknown, never as success.

use crate::error::{Error, ErrorKind, Result};
use postgres::error::SqlState;
use postgres::{Config, NoTls, Transaction};
use r2d2_postgres::PostgresConnectionManager;
use std::time::Duration;

/// The pool of connections to one database.
pub(crate) type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// A connection borrowed from the pool.
pub(crate) type Conn = r2d2::PooledConnection<PostgresConnectionManager<NoTls>>;

/// Connections the pool keeps at most: enough for 16 writers.
const POOL_SIZE_MAX: u32 = 16;

/// How long connecting, and borrowing a connection (a free one, or a new
/// one the server accepts), may take before the operation fails, unless the
/// URL's `connect_timeout` says otherwise.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a transaction PostgreSQL aborted for a deadlock or a
/// serialization failure is run again before the error is returned.
const TX_ATTEMPTS_MAX: usize = 5;

/// The connection settings of a `postgres://` URL (or a `key=value`
/// connection string), refused with [`ErrorKind::InvalidInput`] naming
/// what is wrong. The error never repeats a password.
pub(crate) fn parse_url(url: &str) -> Result<Config> {
    refuse_tls(url)?;
    let mut config: Config = url.parse().map_err(|e| {
        Error::with_source(
            ErrorKind::InvalidInput,
            format!("the database URL {} is not valid: {e}", redacted(url)),
            e,
        )
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("statewal");
    }
    Ok(config)
}

pub(crate) use crate::options::redacted;

/// The `sslmode` values that demand TLS.
const TLS_MODES: [&str; 3] = ["require", "verify-ca", "verify-full"];

/// Refuses a URL whose `sslmode` (or, where it names none, libpq's
/// `PGSSLMODE` in the environment) demands TLS: the engine connects without
/// TLS (`NoTls`), and a URL that asks for an encrypted, perhaps verified,
/// connection must never get a plaintext one, nor an obscure failure. See
/// `docs/decisions.md`, "issue 12: TLS".
fn refuse_tls(url: &str) -> Result<()> {
    // `sslmode=X` in a URL's query (`?a=b&sslmode=X`) or a `key=value`
    // string (`host=db sslmode = X` is not accepted by the parser anyway).
    let mode = url
        .split(['?', '&', ' '])
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.trim() == "sslmode")
        .map(|(_, v)| v.trim().trim_matches('\''));
    // libpq's PGSSLMODE applies where the URL names no sslmode; the
    // client does not read it, so a demand for TLS there is refused too.
    let env_mode = std::env::var("PGSSLMODE").ok();
    if mode.is_none()
        && let Some(m) = env_mode.as_deref().map(str::trim)
        && TLS_MODES.contains(&m)
    {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "the environment's PGSSLMODE={m} asks for TLS to {}, which this statewal \
                 does not support: it connects without TLS. Connect over a Unix socket, a \
                 private network or a tunnel, and unset PGSSLMODE or put sslmode=disable \
                 in the URL",
                redacted(url)
            ),
        ));
    }
    match mode {
        Some(m) if TLS_MODES.contains(&m) => Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "the database URL {} asks for TLS (sslmode={m}), which this statewal does \
                 not support: it connects without TLS. Connect over a Unix socket, a \
                 private network or a tunnel, and drop sslmode or set sslmode=disable",
                redacted(url)
            ),
        )),
        _ => Ok(()),
    }
}

/// A pool of connections to the database `config` names. It opens one
/// connection now, so a server that cannot be reached fails here.
pub(crate) fn pool(config: Config, shown: &str) -> Result<Pool> {
    // One connection first: the pool would retry until its timeout, and
    // then say less about why.
    config.connect(NoTls).map_err(|e| {
        Error::with_source(
            ErrorKind::Io,
            format!("cannot connect to PostgreSQL at {shown}: {e}"),
            e,
        )
    })?;
    // The URL's connect_timeout bounds the wait for the pool too: while the
    // server is down, an operation fails after it rather than after a fixed
    // 10 s the user cannot change.
    let timeout = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(CONNECT_TIMEOUT);
    let manager = PostgresConnectionManager::new(config, NoTls);
    r2d2::Pool::builder()
        .max_size(POOL_SIZE_MAX)
        .min_idle(Some(1))
        .connection_timeout(timeout)
        // Check each connection as it is borrowed: after a server restart
        // the pool's old connections are dead, and a write must not be
        // the one that finds out.
        .test_on_check_out(true)
        .error_handler(Box::new(r2d2::NopErrorHandler))
        .build(manager)
        .map_err(|e| {
            Error::with_source(
                ErrorKind::Io,
                format!("cannot connect to PostgreSQL at {shown}: {e}"),
                e,
            )
        })
}

/// Runs `body` in a transaction on a borrowed connection and commits it.
/// A deadlock or serialization failure rolls back and runs `body` again
/// (so `body` must do nothing outside the transaction); any other error
/// rolls back and is returned.
pub(crate) fn in_transaction<T>(
    pool: &Pool,
    what: &str,
    mut body: impl FnMut(&mut Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let mut attempt = 1;
    loop {
        let mut conn = pool.get().map_err(|e| pool_error(pool, what, e))?;
        let mut tx = conn.transaction().map_err(|e| pg_error(what, e))?;
        let out = match body(&mut tx) {
            Ok(out) => out,
            Err(e) if attempt < TX_ATTEMPTS_MAX && retryable(&e) => {
                attempt += 1;
                continue;
            }
            // Dropping the transaction rolls it back.
            Err(e) => return Err(e),
        };
        return match tx.commit() {
            Ok(()) => Ok(out),
            Err(e) if attempt < TX_ATTEMPTS_MAX && serialization(&e) => {
                attempt += 1;
                continue;
            }
            Err(e) if e.as_db_error().is_none() => Err(Error::with_source(
                ErrorKind::Io,
                format!(
                    "PostgreSQL: the connection failed while committing ({what}): {e}; \
                     the write may or may not have been committed"
                ),
                e,
            )),
            Err(e) => Err(pg_error(what, e)),
        };
    }
}

/// Whether `e` came from a PostgreSQL deadlock or serialization failure,
/// which a retry can get past.
fn retryable(e: &Error) -> bool {
    use std::error::Error as _;
    e.source()
        .and_then(|s| s.downcast_ref::<postgres::Error>())
        .is_some_and(serialization)
}

fn serialization(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(&SqlState::T_R_DEADLOCK_DETECTED) | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
    )
}

/// A client error while doing `what`, as a statewal [`Error`] that keeps it
/// as its source.
pub(crate) fn pg_error(what: &str, e: postgres::Error) -> Error {
    let Some(db) = e.as_db_error() else {
        return Error::with_source(ErrorKind::Io, format!("PostgreSQL: {what} failed: {e}"), e);
    };
    let code = db.code().clone();
    let kind = if code == SqlState::DISK_FULL {
        ErrorKind::StorageFull
    } else if code == SqlState::READ_ONLY_SQL_TRANSACTION {
        ErrorKind::ReadOnly
    } else if code.code().starts_with("22") {
        // Class 22, data exception: a value the server refused.
        ErrorKind::InvalidInput
    } else {
        ErrorKind::Io
    };
    let message = format!(
        "PostgreSQL: {what} failed: {} (SQLSTATE {})",
        db.message(),
        code.code()
    );
    Error::with_source(kind, message, e)
}

/// The pool could not lend a connection in time.
pub(crate) fn pool_error(pool: &Pool, what: &str, e: r2d2::Error) -> Error {
    Error::with_source(
        ErrorKind::Io,
        format!(
            "PostgreSQL: no connection for {what} within {:?} (the server is down or \
             refuses connections; the URL's connect_timeout sets the wait): {e}",
            pool.connection_timeout()
        ),
        e,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(
            redacted("postgres://me:secret@db:5432/app"),
            "postgres://me:***@db:5432/app"
        );
        assert_eq!(redacted("postgres://me@db/app"), "postgres://me@db/app");
        assert_eq!(
            redacted("postgres://me@db/app?password=pw&connect_timeout=1"),
            "postgres://me@db/app?password=***&connect_timeout=1"
        );
        assert_eq!(
            redacted("postgres://db?user=me&password=pw"),
            "postgres://db?user=me&password=***"
        );
        assert_eq!(redacted("host=db user=me"), "host=db user=me");
        assert_eq!(redacted("host=db password=pw"), "host=db password=***");
        assert_eq!(
            redacted("host=db password = 'a b\\' c' user=me"),
            "host=db password = *** user=me"
        );
        assert_eq!(redacted("host  =db   x"), "host  =db   x");
        let e = parse_url("postgres://me:secret@db:notaport/app").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = parse_url("postgres://me:secret@db/app?sslmode=verify-full").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    /// A URL that demands TLS is refused before any connection is tried:
    /// the engine has no TLS, and must not connect in plaintext instead.
    #[test]
    fn tls_modes_are_refused_and_the_others_pass() {
        for url in [
            "postgres://me@db/app?sslmode=require",
            "postgres://me@db/app?application_name=x&sslmode=verify-ca",
            "postgres://me@db/app?sslmode=verify-full",
            "host=db user=me sslmode=require",
            "host=db sslmode='verify-full' user=me",
        ] {
            let e = parse_url(url).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}");
            assert!(e.to_string().contains("TLS"), "{url}: {e}");
        }
        for url in [
            "postgres://me@db/app",
            "postgres://me@db/app?sslmode=disable",
            "postgres://me@db/app?sslmode=prefer",
            "host=db user=me sslmode=disable",
        ] {
            parse_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }
}
