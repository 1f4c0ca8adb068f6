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
            outln!("{}", pretty(&report));
        } else {
            outln!(
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
        outln!("{}", pretty(&report));
    } else {
        print_human(&report)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_human(r: &MigrationReport) -> statewal::Result<()> {
    let Some(from) = &r.from else {
        outln!("no state.json: nothing to migrate");
        return Ok(());
    };
    if !r.migrated() {
        outln!("state.json is at version {from}: nothing to migrate");
        return Ok(());
    }
    let verb = if r.dry_run {
        "would migrate"
    } else {
        "migrated"
    };
    outln!(
        "{verb} state.json from version {from} to {} ({} tasks; steps: {})",
        r.to,
        r.tasks,
        r.steps.join(", ")
    );
    for c in &r.changes {
        outln!("  {c}");
    }
    match (&r.backup, &r.log) {
        (Some(b), Some(l)) => outln!("original kept in {b}; log in {l}"),
        _ => outln!("dry run: nothing was written"),
    }
    Ok(())
}
