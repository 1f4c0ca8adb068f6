//! The one-shot commands: put-task, get-task, delete-task, checkpoint,
//! verify, recover.

use crate::out::{count, json_line};
use crate::progress::Progress;
use crate::{Cli, Command};
use statewal::report::FindingClass;
use statewal::verify;
use statewal::{Error, ErrorKind, Result, Store, Task};
use std::io::Read;
use std::process::ExitCode;

pub fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::PutTask { file, json } => put_task(cli, file.as_deref(), *json),
        Command::GetTask { id, json } => {
            let store = open_readonly(cli)?;
            let task = store.get_task(id)?.ok_or_else(|| not_found(id))?;
            if *json {
                json_line(&task)?;
            } else {
                outln!("{}", pretty(&task));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::DeleteTask { id, json } => {
            let store = open_writer(cli)?;
            let seq = store.delete_task(id)?;
            store.shutdown()?;
            if *json {
                json_line(&serde_json::json!({"id": id, "seq": seq}))?;
            } else {
                outln!("deleted task {id} ({} {seq})", seq_name(cli));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Checkpoint { json } => {
            let store = Store::open(cli.options())?;
            print_recovery(store.recovery_report()?);
            let s = store.checkpoint()?;
            if *json {
                let out = serde_json::json!({
                    "recovery": recovery_json(store.recovery_report()?),
                    "checkpoint": {
                        "seq": s.seq,
                        "tasks_total": s.tasks_total,
                        "task_files_changed": s.task_files_changed,
                        "state_bytes": s.state_bytes,
                        "segments_removed": s.segments_removed,
                        "duration_ms": s.duration.as_secs_f64() * 1e3,
                    },
                });
                store.shutdown()?;
                json_line(&out)?;
                return Ok(ExitCode::SUCCESS);
            }
            outln!(
                "checkpoint: {} in state.json, {} changed, covers journal seq {}, {} removed, {:.1} ms",
                count(s.tasks_total, "task"),
                count(s.task_files_changed, "task file"),
                s.seq,
                count(s.segments_removed, "segment"),
                s.duration.as_secs_f64() * 1e3
            );
            store.shutdown()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { json } => verify_cmd(cli, *json),
        Command::Recover { mode, json } => {
            refuse_read_only(cli, "recover", false)?;
            let progress = Progress::spinner(format!("recovering in {mode} mode"));
            let store = Store::open(cli.options().recovery_mode(*mode))?;
            drop(progress);
            print_recovery(store.recovery_report()?);
            let store_report = Some(store.recovery_report()?.clone());
            let progress = Progress::spinner("checkpointing");
            store.shutdown()?;
            drop(progress);
            if *json {
                json_line(&recovery_json(store_report.as_ref().expect("kept above")))?;
            } else {
                outln!("recovered in {mode} mode; the state directory is checkpointed");
            }
            Ok(ExitCode::SUCCESS)
        }
        // Every other command has its own module, dispatched in main.
        _ => unreachable!("dispatched in main"),
    }
}

/// Opens a store for a command that only reads: read-only, so it takes no
/// lock, creates and writes nothing, and fails with "no statewal store at
/// DIR" where there is none.
pub fn open_readonly(cli: &Cli) -> Result<Store> {
    Store::open(cli.options().read_only(true))
}

/// Opens a store for a command that writes: it creates the store where
/// there is none. On a database that had no statewal tables it says on
/// stderr which database it created them in (the URL without its
/// password): a `DATABASE_URL` meant for another application must not be
/// written to unnoticed.
pub fn open_writer(cli: &Cli) -> Result<Store> {
    let store = Store::open(cli.options())?;
    if let Some(url) = cli.database_url()
        && statewal::__internal::created_storage(&store)
    {
        eprintln!(
            "statewal: created statewal's tables in {} (the first write to this database)",
            statewal::__internal::redacted(url)
        );
    }
    Ok(store)
}

/// What a write's number is called in the output, named by where it
/// comes from as the journal's is: the journal's sequence number, or the
/// position in the database's change order (its outbox row).
fn seq_name(cli: &Cli) -> &'static str {
    match cli.database_url() {
        Some(_) => "database seq",
        None => "journal seq",
    }
}

/// Fails with [`ErrorKind::ReadOnly`] when `--read-only` was given to a
/// command that writes other than through a store's mutations (which refuse
/// by themselves); `only_reads` lets its dry run through.
pub fn refuse_read_only(cli: &Cli, command: &str, only_reads: bool) -> Result<()> {
    if cli.read_only && !only_reads {
        return Err(Error::new(
            ErrorKind::ReadOnly,
            format!("`{command}` writes the store; it cannot run with --read-only"),
        ));
    }
    Ok(())
}

/// Fails with "no statewal store at DIR" unless `dir` holds a store, for
/// the commands that read the directory without opening it.
pub fn require_store(dir: &std::path::Path) -> Result<()> {
    if statewal::__internal::layout::is_store(dir)? {
        Ok(())
    } else {
        Err(statewal::__internal::layout::no_store(dir))
    }
}

fn put_task(cli: &Cli, file: Option<&std::path::Path>, json: bool) -> Result<ExitCode> {
    let mut bytes = Vec::new();
    let source = match file {
        None => "standard input".to_string(),
        Some(p) if p.as_os_str() == "-" => "standard input".to_string(),
        Some(p) => p.display().to_string(),
    };
    // Read no more than a task can take (4 times the limit: the file may be
    // pretty-printed); `put-task /dev/zero` used to read until memory ran out.
    let limit = (cli.options().task_limit_bytes() as u64).saturating_mul(4);
    match file {
        Some(p) if p.as_os_str() != "-" => {
            std::fs::File::open(p)
                .and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
                .map_err(|e| Error::io("read", p, e))?;
        }
        _ => {
            std::io::stdin()
                .take(limit + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| Error::io("read", "standard input", e))?;
        }
    }
    if bytes.len() as u64 > limit {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "{source} is more than {limit} bytes (4 times the task size limit); nothing was stored"
            ),
        ));
    }
    let task = Task::from_json(&bytes).map_err(|e| e.context(format!("in {source}")))?;
    let id = task.id().to_string();
    let store = open_writer(cli)?;
    let seq = store.put_task(task)?;
    store.shutdown()?;
    if json {
        json_line(&serde_json::json!({"id": id, "seq": seq}))?;
    } else {
        outln!("stored task {id} ({} {seq})", seq_name(cli));
    }
    Ok(ExitCode::SUCCESS)
}

fn verify_cmd(cli: &Cli, json: bool) -> Result<ExitCode> {
    require_store(&cli.dir)?;
    let progress = Progress::spinner(format!("verifying {}", cli.dir.display()));
    let report = verify(&cli.dir)?;
    drop(progress);
    if json {
        let findings: Vec<_> = report
            .findings
            .iter()
            .map(|f| {
                serde_json::json!({
                    "file": f.file,
                    "offset": f.offset,
                    "class": match f.class { FindingClass::TornTail => "torn_tail", FindingClass::Corrupt => "corrupt" },
                    "message": f.message,
                })
            })
            .collect();
        let warnings: Vec<_> = report
            .warnings
            .iter()
            .map(|w| serde_json::json!({"file": w.file, "message": w.message}))
            .collect();
        let out = serde_json::json!({
            "ok": report.is_clean(),
            "files_checked": report.files_checked,
            "records_checked": report.records_checked,
            "findings": findings,
            "warnings": warnings,
            "hints": report.hints,
        });
        json_line(&out)?;
    } else {
        for f in &report.findings {
            outln!("{f}");
        }
        for w in &report.warnings {
            outln!("{w}");
        }
        let verdict = if report.is_clean() {
            "everything checks out"
        } else {
            "DAMAGE FOUND"
        };
        outln!(
            "verified {} and {}: {} ({}, {})",
            count(report.files_checked, "file"),
            count(report.records_checked, "journal record"),
            verdict,
            count(report.findings.len(), "finding"),
            count(report.warnings.len(), "warning")
        );
        for h in &report.hints {
            outln!("hint: {h}");
        }
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn print_recovery(r: &statewal::report::RecoveryReport) {
    eprintln!(
        "recovered from {} (seq {}): {} loaded, {} replayed from {}, {} of torn tail truncated, {:.1} ms",
        r.loaded_from,
        r.checkpoint_seq,
        count(r.tasks_loaded, "task"),
        count(r.records_replayed, "journal record"),
        count(r.segments_read, "segment"),
        count(r.bytes_truncated, "byte"),
        r.duration.as_secs_f64() * 1e3
    );
    for d in &r.damage {
        let class = if d.torn_tail { "torn tail" } else { "damage" };
        eprintln!("  {class} in {} at byte {}: {}", d.file, d.offset, d.reason);
    }
    for s in &r.skipped_files {
        eprintln!("  skipped {}: {}", s.file, s.reason);
    }
    match &r.snapshot {
        statewal::report::SnapshotUse::Stale(why)
        | statewal::report::SnapshotUse::Damaged(why)
        | statewal::report::SnapshotUse::Foreign(why) => {
            eprintln!("  state.snapshot not used ({}): {why}", r.snapshot.name())
        }
        _ => {}
    }
}

pub fn not_found(id: &str) -> Error {
    Error::new(ErrorKind::NotFound, format!("no task with id {id:?}"))
}

pub fn pretty<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("serializing JSON values cannot fail")
}

/// The recovery report as JSON, for `--json` output.
pub fn recovery_json(r: &statewal::report::RecoveryReport) -> serde_json::Value {
    serde_json::json!({
        // snake_case, as every word in JSON; `--mode` takes the same
        // words with hyphens.
        "mode": r.mode.as_str(),
        "loaded_from": r.loaded_from.name(),
        "loaded_from_file": r.loaded_from.file(),
        "checkpoint_seq": r.checkpoint_seq,
        "tasks_loaded": r.tasks_loaded,
        "records_replayed": r.records_replayed,
        "segments_read": r.segments_read,
        "bytes_truncated": r.bytes_truncated,
        "damage": r.damage.iter().map(|d| serde_json::json!({
            "file": d.file, "offset": d.offset, "len": d.len, "reason": d.reason, "torn_tail": d.torn_tail,
        })).collect::<Vec<_>>(),
        "skipped_files": r.skipped_files.iter().map(|s| serde_json::json!({"file": s.file, "reason": s.reason})).collect::<Vec<_>>(),
        "last_seq": r.last_seq,
        "snapshot": r.snapshot.name(),
        "duration_ms": r.duration.as_secs_f64() * 1e3,
        "merged": r.merged,
        "decisions": r.decisions,
    })
}
