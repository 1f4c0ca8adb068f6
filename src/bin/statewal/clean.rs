//! `statewal clean --older-than AGE`: archive old finished tasks.

use crate::Cli;
use crate::out::{count, json_line};
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
        json_line(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if dry_run { "would archive" } else { "archived" };
    outln!(
        "{verb} {} ({}) to {}",
        count(report.archived.len(), "task"),
        count(report.bytes, "byte"),
        report.archive_file
    );
    for id in &report.archived {
        outln!("  {id}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses `--older-than` with `humantime`: `30d`, `12h`, `90m`, `45s`, `2w`,
/// several at once (`1d 12h`) or a fraction (`1.5d`). The error says in
/// words what was wrong and what is allowed, naming the flag; humantime's
/// own message lists every unit it knows "(and few variations)", which is
/// more than a user of `--older-than` needs.
pub fn parse_age(s: &str) -> std::result::Result<Duration, String> {
    use humantime::DurationError as E;
    const ALLOWED: &str = "--older-than takes numbers with units (s, m, h, d, w), \
                           such as 45s, 90m, 12h, 30d, 2w or 1d 12h";
    let age = humantime::parse_duration(s.trim()).map_err(|e| match e {
        E::Empty => format!("{ALLOWED}; it was given nothing"),
        E::UnknownUnit { unit, .. } if unit.is_empty() => {
            format!("{ALLOWED}; a number in {s:?} has no unit")
        }
        E::UnknownUnit { unit, .. } => format!("{ALLOWED}; {unit:?} is not a unit"),
        E::NumberOverflow => format!("{ALLOWED}; {s:?} is too large"),
        E::InvalidCharacter(_) | E::NumberExpected(_) => {
            format!("{ALLOWED}; {s:?} is not one")
        }
    })?;
    // Regression (issue 8, part 5): `--older-than 1000000w` panicked.
    if !statewal::__internal::age_in_range(age) {
        return Err(format!(
            "--older-than {s:?} reaches back before year 0000, the earliest time a task can carry"
        ));
    }
    Ok(age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse() {
        let day = 86_400;
        for (s, secs) in [
            ("30d", 30 * day),
            ("12h", 12 * 3600),
            ("90m", 90 * 60),
            ("0s", 0),
            ("2w", 14 * day),
            ("1d 12h", day + 12 * 3600),
            ("1.5d", day + 12 * 3600),
        ] {
            assert_eq!(parse_age(s), Ok(Duration::from_secs(secs)), "{s:?}");
        }
        for bad in ["", "30", "d", "30x", "-1d", "1d-"] {
            let err = parse_age(bad).unwrap_err();
            assert!(err.starts_with("--older-than takes"), "{bad:?}: {err}");
            assert!(!err.contains("variations"), "{bad:?}: {err}");
        }
        let err = parse_age("1000000w").unwrap_err();
        assert!(err.contains("before year 0000"), "{err}");
    }
}
