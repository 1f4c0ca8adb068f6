//! `statewal migrate [--dry-run] [--json]` and `statewal migrate --rollback`.

use crate::progress::Progress;
use statewal::Result;
use statewal::report::MigrationReport;
use std::path::Path;
use std::process::ExitCode;

/// Migrates (or with `dry_run` describes migrating) `dir`'s `state.json`;
/// with `rollback`, restores the pre-migration backup instead.
pub fn run(dir: &Path, dry_run: bool, rollback: bool, json: bool) -> Result<ExitCode> {
    // Nothing to migrate where there is no store; taking the lock would
    // create `.statewal.lock` in it.
    crate::commands::require_store(dir)?;
    if rollback {
        let report = statewal::rollback(dir)?;
        if json {
            outln!(
                "{}",
                serde_json::to_string(&report).expect("a report serializes")
            );
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
    let report = statewal::migrate(dir, dry_run)?;
    drop(progress);
    if json {
        // One compact object; the decisions are an array in it.
        outln!(
            "{}",
            serde_json::to_string(&report).expect("a report serializes")
        );
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
    let source = r.source.as_deref().unwrap_or("state.json");
    if r.merge {
        let verb = if r.dry_run { "would merge" } else { "merged" };
        outln!(
            "{verb} {source} (written by the original server after statewal) with statewal's \
             checkpoint and journal ({} after the merge)",
            crate::out::count(r.tasks, "task")
        );
    } else {
        let verb = if r.dry_run {
            "would migrate"
        } else {
            "migrated"
        };
        outln!(
            "{verb} {source} from version {from} to {} ({}; steps: {})",
            r.to,
            crate::out::count(r.tasks, "task"),
            r.steps.join(", ")
        );
    }
    for c in &r.changes {
        outln!("  {c}");
    }
    for d in &r.decisions {
        outln!("  {d}");
    }
    for s in &r.skipped {
        outln!("  {} is not a task ({}): left as it is", s.file, s.reason);
    }
    match (&r.backup, &r.log) {
        (Some(b), Some(l)) => outln!("original kept in {b}; log in {l}"),
        _ if r.dry_run => outln!("dry run: nothing was written"),
        _ => {}
    }
    Ok(())
}
