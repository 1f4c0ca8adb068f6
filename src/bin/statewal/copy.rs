//! `statewal copy --from SRC --to DST`: a whole store into an empty one,
//! each side a state directory or a PostgreSQL URL, verified by a count
//! and a checksum per kind (`statewal::copy`). The global `--dir` and
//! `--database` are not used: `--from` and `--to` name the stores.

use crate::out::{count, count_as, json_line};
use crate::{Cli, is_database_url};
use serde_json::json;
use statewal::report::{CopyReport, StoreDigest};
use statewal::{Error, ErrorKind, Options, Result, Store};
use std::path::Path;
use std::process::ExitCode;

pub fn run(cli: &Cli, from: &str, to: &str, json: bool) -> Result<ExitCode> {
    crate::commands::refuse_read_only(cli, "copy", false)?;
    check_names(from, to)?;
    // The source only reads: no lock, nothing created or written, and a
    // database without statewal's tables is "no statewal store".
    let source = Store::open(options(cli, from).read_only(true))
        .map_err(|e| e.context(format!("opening the source {}", shown(from))))?;
    check_destination_dir(to)?;
    check_destination_empty(to)?;
    let destination = Store::open(options(cli, to))
        .map_err(|e| e.context(format!("opening the destination {}", shown(to))))?;
    if is_database_url(to) && statewal::__internal::created_storage(&destination) {
        eprintln!("statewal: created statewal's tables in {}", shown(to));
    }
    let report = statewal::copy(&source, &destination)?;
    // Checkpoints a destination directory, so its layout holds the copy.
    destination.shutdown()?;
    drop(source);
    if json {
        json_line(&report_json(from, to, &report))?;
    } else {
        print_report(from, to, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `statewal export --to DIR`: the store `--dir` names (an encrypted one
/// with its key) copied into a new, plain state directory: every file of
/// its layout human-readable JSON again (`docs/encryption.md`). The same
/// copy and verification as `copy`, with the source opened read-only
/// through the global options.
pub fn export(cli: &Cli, to: &Path, json: bool) -> Result<ExitCode> {
    let to_name = to.display().to_string();
    check_names(&cli.dir.display().to_string(), &to_name)?;
    let source = Store::open(cli.options().read_only(true))?;
    check_destination_dir(&to_name)?;
    check_destination_empty(&to_name)?;
    let destination = Store::open(Options::new(to).sync_policy(cli.sync))
        .map_err(|e| e.context(format!("opening the destination {to_name}")))?;
    let report = statewal::copy(&source, &destination)?;
    destination.shutdown()?;
    drop(source);
    let from = cli.dir.display().to_string();
    if json {
        json_line(&report_json(&from, &to_name, &report))?;
    } else {
        print_report(&from, &to_name, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The options of one side: a database, or a directory with `--sync`.
fn options(cli: &Cli, side: &str) -> Options {
    if is_database_url(side) {
        // The directory is not used on a database.
        Options::new(statewal::DEFAULT_DIR).database(side)
    } else {
        Options::new(side).sync_policy(cli.sync)
    }
}

/// A side for messages: a URL with its password hidden, or the path.
fn shown(side: &str) -> String {
    if is_database_url(side) {
        statewal::__internal::redacted(side)
    } else {
        side.to_string()
    }
}

/// Refuses a URL of another kind (it would be taken as a directory name)
/// and a copy of a store onto itself.
fn check_names(from: &str, to: &str) -> Result<()> {
    for (flag, side) in [("--from", from), ("--to", to)] {
        if side.is_empty() || (side.contains("://") && !is_database_url(side)) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{flag} {:?} is neither a state directory nor a postgres:// or \
                     postgresql:// URL; nothing was done",
                    shown(side)
                ),
            ));
        }
    }
    let same = from == to
        || (!is_database_url(from)
            && !is_database_url(to)
            && matches!(
                (Path::new(from).canonicalize(), Path::new(to).canonicalize()),
                (Ok(a), Ok(b)) if a == b
            ));
    if same {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "--from and --to name the same store ({}); nothing was done",
                shown(from)
            ),
        ));
    }
    Ok(())
}

/// Refuses a destination directory that holds files but no store: a
/// mistyped `--to` must not fill someone's home directory with a store.
fn check_destination_dir(to: &str) -> Result<()> {
    if is_database_url(to) {
        return Ok(());
    }
    let dir = Path::new(to);
    let has_files = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io("read", dir, e)),
    };
    if has_files && !statewal::__internal::layout::is_store(dir)? {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "the destination {} holds files but no statewal store; copy writes into a \
                 new or empty directory (or an empty store); nothing was done",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// Refuses a destination that holds anything before it is opened to be
/// written (an open for writing may itself write: a lock, a checkpoint), so
/// a refused destination is left exactly as it was. A directory or a
/// database with no statewal store is empty. `statewal::copy` checks again
/// on the store it writes.
fn check_destination_empty(to: &str) -> Result<()> {
    if !is_database_url(to) && !statewal::__internal::layout::is_store(Path::new(to))? {
        return Ok(());
    }
    let opts = match is_database_url(to) {
        true => Options::new(statewal::DEFAULT_DIR).database(to),
        false => Options::new(to),
    };
    match Store::open(opts.read_only(true)) {
        Ok(store) => statewal::__internal::refuse_non_empty(&store),
        // No statewal tables in the database: nothing to overwrite.
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.context(format!("opening the destination {}", shown(to)))),
    }
}

fn digest_json(d: &StoreDigest) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (name, k) in d.kinds() {
        out.insert(
            name.into(),
            json!({"count": k.count, "bytes": k.bytes, "crc32": format!("{:08x}", k.crc32)}),
        );
    }
    out.into()
}

fn report_json(from: &str, to: &str, r: &CopyReport) -> serde_json::Value {
    json!({
        "from": shown(from),
        "to": shown(to),
        "verified": r.source == r.destination,
        "source": digest_json(&r.source),
        "destination": digest_json(&r.destination),
        "batches": r.batches,
        "log_appends": r.log_appends,
        "shadowed_reports": r.shadowed_reports,
        "duration_ms": r.duration.as_secs_f64() * 1e3,
    })
}

fn print_report(from: &str, to: &str, r: &CopyReport) -> Result<()> {
    outln!(
        "copied {} to {} ({} of tasks and sessions, {}, {:.1} ms)",
        shown(from),
        shown(to),
        count_as(r.batches, "batch", "batches"),
        count(r.log_appends, "log append"),
        r.duration.as_secs_f64() * 1e3
    );
    outln!(
        "{:<10} {:>10} {:>12} {:>10} {:>10}",
        "KIND",
        "COUNT",
        "BYTES",
        "SOURCE",
        "COPY"
    );
    for ((name, s), (_, d)) in r.source.kinds().iter().zip(r.destination.kinds()) {
        outln!(
            "{:<10} {:>10} {:>12} {:>10} {:>10}",
            name,
            s.count,
            s.bytes,
            format!("{:08x}", s.crc32),
            format!("{:08x}", d.crc32)
        );
    }
    for name in &r.shadowed_reports {
        outln!(
            "not copied: reports/{name} (the original server's; statewal's report of the same id \
             was copied, as get-report returns it)"
        );
    }
    outln!("verified: counts and CRC-32 checksums of both sides are equal");
    Ok(())
}
