//! `statewal backups` and `statewal restore BACKUP`.

use crate::Cli;
use crate::health::human_bytes;
use crate::out::{count, json_line};
use statewal::report::BackupInfo;
use statewal::{Result, Store};
use std::process::ExitCode;

/// Lists the backups of `dir`, newest first, without opening the store.
pub fn list(cli: &Cli, json: bool) -> Result<ExitCode> {
    let dir = &cli.dir;
    crate::commands::require_store(dir)?;
    // With the key, each sealed backup is opened and checked whole, through
    // a reader (which takes no lock); without it, an encrypted store's
    // backups are listed with their envelopes checked only.
    #[cfg(feature = "encryption")]
    let backups = match cli.key.is_some() {
        true => Store::open(cli.options().read_only(true))?.backups()?,
        false => statewal::backups(dir)?,
    };
    #[cfg(not(feature = "encryption"))]
    let backups = statewal::backups(dir)?;
    if json {
        // JSON Lines: one backup per line.
        for b in &backups {
            json_line(b)?;
        }
    } else {
        print_table(&backups)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Restores a backup through the journal and says what changed.
pub fn restore(cli: &Cli, backup: &str, json: bool) -> Result<ExitCode> {
    let store = Store::open(cli.options())?;
    let report = store.restore_backup(backup)?;
    store.shutdown()?;
    if json {
        json_line(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let ids = |v: &[String]| {
        if v.is_empty() {
            String::new()
        } else {
            format!(": {}", v.join(", "))
        }
    };
    outln!("restored {}", report.backup);
    outln!(
        "put {}{}",
        count(report.tasks_put.len(), "task"),
        ids(&report.tasks_put)
    );
    outln!(
        "deleted {}{}",
        count(report.tasks_deleted.len(), "task"),
        ids(&report.tasks_deleted)
    );
    outln!(
        "put {}, deleted {}",
        count(report.sessions_put.len(), "session"),
        count(report.sessions_deleted.len(), "session")
    );
    match &report.undo_backup {
        Some(undo) => outln!("undo with: statewal restore {undo}"),
        None if !report.changed() => outln!("nothing changed: the state already matched"),
        None => outln!("no backup of the previous state was kept (backups_kept is 0)"),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(backups: &[BackupInfo]) -> statewal::Result<()> {
    let w = backups
        .iter()
        .map(|b| b.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    outln!(
        "{:<w$}  {:>10}  {:>10}  {:<5}  TASKS",
        "NAME",
        "AGE",
        "SIZE",
        "VALID"
    );
    for b in backups {
        let age = b.age_seconds.map_or_else(|| "?".to_string(), human_age);
        let valid = if b.valid { "yes" } else { "NO" };
        let tasks = match (b.tasks, &b.problem) {
            (Some(n), _) => n.to_string(),
            (None, Some(why)) => format!("- ({why})"),
            (None, None) => "-".to_string(),
        };
        outln!(
            "{:<w$}  {:>10}  {:>10}  {:<5}  {}",
            b.name,
            age,
            human_bytes(b.size_bytes),
            valid,
            tasks
        );
    }
    let valid = backups.iter().filter(|b| b.valid).count();
    outln!("{}, {valid} valid", count(backups.len(), "backup"));
    Ok(())
}

/// An age for a person: "42s", "5m", "3h", "2d".
fn human_age(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
