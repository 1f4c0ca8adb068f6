//! `statewal demo`: the newcomer's tour. A child process writes tasks and
//! prints each acknowledgement; the parent kills it with SIGKILL mid-stream,
//! reopens the store, and checks that every acknowledged task came back.
//!
//! The demo writes only into a directory it made: a fresh one under the
//! system temp dir, or the one `--dir` names on the command line if that is
//! missing, empty, or marked by an earlier demo with a [`DEMO_MARKER`] file.
//! It removes the directory at the end unless `--keep` is given (or the demo
//! failed, so the evidence stays).

use crate::Cli;
use crate::out::count;
use statewal::{Error, ErrorKind, Options, Result, Store, Task, TaskStatus};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// The file that marks a directory as made by the demo, which may write
/// into it and remove it.
pub const DEMO_MARKER: &str = ".statewal-demo";

pub fn run(cli: &Cli, acks_before_kill: usize, keep: bool) -> Result<ExitCode> {
    let dir = demo_dir(cli)?;
    let result =
        announce(&dir, acks_before_kill).and_then(|()| tour(cli, &dir, acks_before_kill, keep));
    // A reader that went away (`demo | head`) ends the tour early; the
    // directory goes as after a successful one, and nothing more is printed.
    let broken = result.as_ref().is_err_and(crate::out::is_broken_pipe);
    if keep || !(broken || matches!(result, Ok(ExitCode::SUCCESS))) {
        if !broken {
            outln!("kept {}", dir.display());
        }
    } else {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io("remove", &dir, e))?;
        if !broken {
            outln!("removed {} (--keep keeps it)", dir.display());
        }
    }
    result
}

/// The directory the demo runs in, made and marked if new.
fn demo_dir(cli: &Cli) -> Result<PathBuf> {
    if !cli.dir_on_command_line {
        // `STATE_PATH` and the default name the user's store: never write
        // there. A fresh directory is made exclusively (`create_dir` fails
        // if the name exists), so a directory planted under the name is
        // never taken for the demo's own.
        return fresh_demo_dir();
    }
    let dir = cli.dir.clone();
    // A symlink would leave the demo's files in its target when the link is
    // removed at the end (found by review).
    if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "refusing to run the demo in {}: it is a symlink; name a real directory",
                dir.display()
            ),
        )
        .with_path(&dir));
    }
    let marker = dir.join(DEMO_MARKER);
    match std::fs::read_dir(&dir) {
        Ok(mut entries) => {
            // Only a regular file counts as the mark, never a symlink to one.
            if std::fs::symlink_metadata(&marker).is_ok_and(|m| m.file_type().is_file()) {
                return Ok(dir); // Made by an earlier demo, kept with --keep.
            }
            if entries.next().is_some() {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "refusing to run the demo in {}: it is not empty and was not made by a demo \
                         (no {DEMO_MARKER} file); name a missing or empty directory, or leave out \
                         --dir for a fresh one",
                        dir.display()
                    ),
                )
                .with_path(&dir));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        }
        Err(e) => return Err(Error::io("open directory", &dir, e)),
    }
    mark(&dir)?;
    Ok(dir)
}

/// A new directory under the system temp dir, made by this call and marked.
fn fresh_demo_dir() -> Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    for attempt in 0..100u32 {
        let dir = std::env::temp_dir().join(format!(
            "statewal-demo-{}-{nanos}-{attempt}",
            std::process::id()
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                mark(&dir)?;
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("create directory", &dir, e)),
        }
    }
    Err(Error::new(
        ErrorKind::Io,
        "cannot make a fresh demo directory under the system temp dir: 100 names were taken",
    ))
}

/// Writes the demo's mark into `dir`, refusing to write through anything
/// already at its name.
fn mark(dir: &Path) -> Result<()> {
    use std::io::Write;
    let marker = dir.join(DEMO_MARKER);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&marker)
        .and_then(|mut f| {
            f.write_all(
                b"made by `statewal demo`, which may write here and remove this directory\n",
            )
        })
        .map_err(|e| Error::io("write", &marker, e))
}

/// Says what the demo is about to do, before it does any of it.
fn announce(dir: &Path, acks_before_kill: usize) -> Result<()> {
    outln!("statewal demo: state directory {}", dir.display());
    outln!(
        "a child process will write tasks into it, printing an acknowledgement once each is durable;"
    );
    outln!(
        "after {} this process kills the child with SIGKILL, reopens the store",
        count(acks_before_kill, "acknowledgement")
    );
    outln!("and checks that every acknowledged task came back intact.");
    outln!();
    Ok(())
}

fn tour(cli: &Cli, dir: &Path, acks_before_kill: usize, keep: bool) -> Result<ExitCode> {
    let run_id = format!("demo-{}", std::process::id());
    let exe =
        std::env::current_exe().map_err(|e| Error::io("locate", "the statewal executable", e))?;
    let child = Command::new(exe)
        .arg("--dir")
        .arg(dir)
        .arg("--sync")
        .arg(cli.sync.to_string())
        .args(["demo-child", "--run", &run_id])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("start", "the demo child", e))?;
    // Killed if this function returns early (a closed pipe on our output).
    let mut child = KillOnDrop(child);
    outln!(
        "child process {} is writing tasks {run_id}-<n>; each line below is one acknowledgement:",
        child.id()
    );
    let stdout = child.stdout.take().expect("stdout was piped");
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    let mut lines = BufReader::new(stdout).lines();
    let mut killed = false;
    for line in lines.by_ref() {
        let line = line.map_err(|e| Error::io("read", "the demo child's output", e))?;
        if let Some((id, desc)) = parse_ack(&line) {
            // Printed as the child gives them: the ones read after the kill
            // were acknowledged before it, and count the same.
            let late = if killed {
                "  (sent before the kill, read after it)"
            } else {
                ""
            };
            outln!("  ack {:>4}  {id}  durable{late}", acked.len() + 1);
            acked.insert(id, desc);
        }
        if acked.len() >= acks_before_kill && !killed {
            // SIGKILL: no destructor, no checkpoint, no flush of anything
            // the store has not already made durable.
            child
                .kill()
                .map_err(|e| Error::io("kill", "the demo child", e))?;
            killed = true;
            outln!(
                "killed the child with SIGKILL after {}",
                count(acked.len(), "acknowledgement")
            );
        }
    }
    // Acknowledgements printed before the kill but read after it still count.
    let status = child
        .wait()
        .map_err(|e| Error::io("wait for", "the demo child", e))?;
    if !killed {
        return Err(Error::new(
            ErrorKind::Io,
            format!("the demo child exited on its own ({status}) before the kill"),
        ));
    }
    outln!();
    outln!(
        "acknowledged before the kill: {}",
        count(acked.len(), "task")
    );

    let store = Store::open(Options::new(dir).sync_policy(cli.sync))?;
    let r = store.recovery_report()?;
    outln!(
        "reopened: started from {}, {} replayed, {} of torn tail truncated, in {:.1} ms",
        r.loaded_from,
        count(r.records_replayed, "journal record"),
        count(r.bytes_truncated, "byte"),
        r.duration.as_secs_f64() * 1e3
    );
    let recovered: BTreeMap<String, Task> = store
        .list_tasks()?
        .into_iter()
        .filter(|t| t.id().starts_with(&run_id))
        .map(|t| (t.id().to_string(), t))
        .collect();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|(id, desc)| {
            recovered.get(*id).and_then(|t| t.description()) != Some(desc.as_str())
        })
        .map(|(id, _)| id)
        .collect();
    let unacked = recovered
        .keys()
        .filter(|id| !acked.contains_key(*id))
        .count();
    outln!(
        "recovered: {} of this run ({} acknowledged, {} written but not yet acknowledged when the child died)",
        count(recovered.len(), "task"),
        recovered.len() - unacked,
        unacked
    );
    store.checkpoint()?;
    store.shutdown()?;
    if lost.is_empty() {
        outln!(
            "nothing acknowledged was lost: {} back, intact",
            match acked.len() {
                1 => "the 1 acknowledged task is".to_string(),
                n => format!("all {n} acknowledged tasks are"),
            }
        );
        // Without --keep the directory is removed on the next line: saying
        // the layout "is in" it would send the reader to look (found by
        // review).
        if keep {
            outln!(
                "the checkpointed layout is in {} (state.json, tasks/, journal/)",
                dir.display()
            );
        } else {
            outln!("the reopened store checkpointed its layout (state.json, tasks/, journal/)");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        let names: Vec<&str> = lost.iter().map(|id| id.as_str()).collect();
        outln!(
            "LOST {}: {}",
            count(lost.len(), "acknowledged task"),
            names.join(", ")
        );
        Ok(ExitCode::from(1))
    }
}

/// The child: write tasks forever, printing `ack <id> <description>` after
/// each write is durable, until killed.
pub fn child(cli: &Cli, run_id: &str) -> Result<ExitCode> {
    if !std::fs::symlink_metadata(cli.dir.join(DEMO_MARKER)).is_ok_and(|m| m.file_type().is_file())
    {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "the demo child writes only into a directory the demo made ({} has no {DEMO_MARKER})",
                cli.dir.display()
            ),
        ));
    }
    let store = Store::open(cli.options().checkpoint_on_drop(false))?;
    let mut out = std::io::stdout().lock();
    for n in 0u64.. {
        let mut task = Task::new(format!("{run_id}-{n:06}"));
        let desc = format!("demo task {n}");
        task.set_description(desc.clone());
        task.set_status(if n % 3 == 0 {
            TaskStatus::Completed
        } else {
            TaskStatus::InProgress
        });
        // The store stamps nothing by default; the demo stamps its own
        // tasks, in the original server's format (milliseconds, `Z`).
        task.stamp(&now_ms_rfc3339());
        task.set(
            "toolInvocations",
            serde_json::json!([{"tool": "demo", "n": n}]),
        )?;
        let id = task.id().to_string();
        store.put_task(task)?;
        if writeln!(out, "ack {id} {desc}")
            .and_then(|()| out.flush())
            .is_err()
        {
            break; // The parent went away.
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The demo child, killed and reaped when dropped; a no-op once it exited.
struct KillOnDrop(std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The current UTC time as RFC 3339 with milliseconds, as JavaScript's
/// `Date.toISOString()` writes it: `2026-12-02T10:00:00.123Z`.
fn now_ms_rfc3339() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .expect("formatting the current UTC time cannot fail")
}

fn parse_ack(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("ack ")?;
    let (id, desc) = rest.split_once(' ')?;
    Some((id.to_string(), desc.to_string()))
}
