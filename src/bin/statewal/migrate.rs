//! `statewal migrate [--dry-run] [--json]` and `statewal migrate --rollback`.

use crate::commands::pretty;
use crate::progress::Progress;
use statewal::Result;
use statewal::migrate::{self, MigrationReport};
use std::path::Path;
use std::process::ExitCode;

/// Migrates (or with `dry_run` describes migrating) `dir`'s `state.json`;
/// with `rollback`, restores the pre-migration backup instead.
pub fn run(dir: &Path, dry_run: bool, rollback: bool, json: bool) -> Result<ExitCode> {
    // Nothing to migrate where there is no store; taking the lock would
    // create `.statewal.lock` in it.
    crate::commands::require_store(dir)?;
    if rollback {
        let report = migrate::rollback(dir)?;
        if json {
            println!("{}", pretty(&report));
        } else {
            println!(
                "restored {} (version {}) as state.json, replacing version {}",
                report.restored_from,
                report.restored_version,
                report.replaced_version.as_deref().unwrap_or("unknown")
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let progress = Progress::spinner("migrating state.json");
    let report = migrate::migrate(dir, dry_run)?;
    drop(progress);
    if json {
        println!("{}", pretty(&report));
    } else {
        print_human(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_human(r: &MigrationReport) {
    let Some(from) = &r.from else {
        println!("no state.json: nothing to migrate");
        return;
    };
    if !r.migrated() {
        println!("state.json is at version {from}: nothing to migrate");
        return;
    }
    let verb = if r.dry_run {
        "would migrate"
    } else {
        "migrated"
    };
    println!(
        "{verb} state.json from version {from} to {} ({} tasks; steps: {})",
        r.to,
        r.tasks,
        r.steps.join(", ")
    );
    for c in &r.changes {
        println!("  {c}");
    }
    match (&r.backup, &r.log) {
        (Some(b), Some(l)) => println!("original kept in {b}; log in {l}"),
        _ => println!("dry run: nothing was written"),
    }
}
