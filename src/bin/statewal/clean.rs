//! `statewal clean --older-than AGE`: archive old finished tasks.

use crate::Cli;
use crate::commands::pretty;
use crate::progress::Progress;
use statewal::{Result, Store, TaskStatus};
use std::process::ExitCode;
use std::time::Duration;

/// Archives (or with `dry_run` lists) the tasks `Store::clean` picks.
pub fn run(
    cli: &Cli,
    older_than: Duration,
    statuses: &[TaskStatus],
    dry_run: bool,
    json: bool,
) -> Result<ExitCode> {
    crate::commands::refuse_read_only(cli, "clean", dry_run)?;
    let progress = Progress::spinner("cleaning: archiving old tasks through the journal");
    // A dry run only reads: it opens read-only, so it creates no store.
    let store = Store::open(cli.options().read_only(cli.read_only || dry_run))?;
    let report = store.clean(older_than, statuses, dry_run)?;
    store.shutdown()?;
    drop(progress);
    if json {
        outln!("{}", pretty(&report));
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if dry_run { "would archive" } else { "archived" };
    outln!(
        "{verb} {} task{} ({} bytes) to {}",
        report.archived.len(),
        if report.archived.len() == 1 { "" } else { "s" },
        report.bytes,
        report.archive_file
    );
    for id in &report.archived {
        outln!("  {id}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses `--older-than`: a whole number and a unit, `30d`, `12h`, `90m`.
pub fn parse_age(s: &str) -> std::result::Result<Duration, String> {
    let age = statewal::parse_age(s).ok_or_else(|| {
        format!("bad age {s:?}; expected a whole number and a unit: 45s, 90m, 12h, 30d or 2w")
    })?;
    // Regression (issue 8, part 5): `--older-than 1000000w` panicked.
    if !statewal::age_in_range(age) {
        return Err(format!(
            "age {s:?} is out of range: it reaches back before year 0000, the earliest time a task can carry"
        ));
    }
    Ok(age)
}
