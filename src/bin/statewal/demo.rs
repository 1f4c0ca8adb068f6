//! `statewal demo`: the newcomer's tour. A child process writes tasks and
//! prints each acknowledgement; the parent kills it with SIGKILL mid-stream,
//! reopens the store, and checks that every acknowledged task came back.

use crate::Cli;
use statewal::{Error, ErrorKind, Result, Store, Task, TaskStatus};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitCode, Stdio};

pub fn run(cli: &Cli, acks_before_kill: usize) -> Result<ExitCode> {
    let run_id = format!("demo-{}", std::process::id());
    println!("statewal demo: state directory {}", cli.dir.display());
    let exe =
        std::env::current_exe().map_err(|e| Error::io("locate", "the statewal executable", e))?;
    let mut child = Command::new(exe)
        .arg("--dir")
        .arg(&cli.dir)
        .arg("--sync")
        .arg(sync_name(cli))
        .args(["demo-child", "--run", &run_id])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("start", "the demo child", e))?;
    println!(
        "child process {} writes tasks {run_id}-<n>, printing each acknowledgement",
        child.id()
    );
    let stdout = child.stdout.take().expect("stdout was piped");
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    let mut lines = BufReader::new(stdout).lines();
    let mut killed = false;
    for line in lines.by_ref() {
        let line = line.map_err(|e| Error::io("read", "the demo child's output", e))?;
        if let Some((id, desc)) = parse_ack(&line) {
            acked.insert(id, desc);
        }
        if acked.len() >= acks_before_kill && !killed {
            // SIGKILL: no destructor, no checkpoint, no flush of anything
            // the store has not already made durable.
            child
                .kill()
                .map_err(|e| Error::io("kill", "the demo child", e))?;
            killed = true;
            println!(
                "killed the child with SIGKILL after {} acknowledgements",
                acked.len()
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
    println!("acknowledged before the kill: {} tasks", acked.len());

    let store = Store::open(cli.options())?;
    let r = store.recovery_report();
    println!(
        "reopened: state from {:?}, {} journal records replayed, {} bytes of torn tail truncated, in {:.1} ms",
        r.loaded_from,
        r.records_replayed,
        r.bytes_truncated,
        r.duration.as_secs_f64() * 1e3
    );
    let recovered: BTreeMap<String, Task> = store
        .list_tasks()
        .into_iter()
        .filter(|t| t.id.starts_with(&run_id))
        .map(|t| (t.id.clone(), t))
        .collect();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|(id, desc)| recovered.get(*id).and_then(|t| t.description.as_ref()) != Some(*desc))
        .map(|(id, _)| id)
        .collect();
    let unacked = recovered
        .keys()
        .filter(|id| !acked.contains_key(*id))
        .count();
    println!(
        "recovered: {} tasks of this run ({} acknowledged, {} written but not yet acknowledged when the child died)",
        recovered.len(),
        recovered.len() - unacked,
        unacked
    );
    store.checkpoint()?;
    store.shutdown()?;
    if lost.is_empty() {
        println!(
            "nothing acknowledged was lost: all {} acknowledged tasks are back, intact",
            acked.len()
        );
        println!(
            "the checkpointed layout is in {} (state.json, tasks/, journal/)",
            cli.dir.display()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("LOST {} acknowledged tasks: {:?}", lost.len(), lost);
        Ok(ExitCode::from(1))
    }
}

/// The child: write tasks forever, printing `ack <id> <description>` after
/// each write is durable, until killed.
pub fn child(cli: &Cli, run_id: &str) -> Result<ExitCode> {
    let store = Store::open(cli.options().checkpoint_on_drop(false))?;
    let mut out = std::io::stdout().lock();
    for n in 0u64.. {
        let mut task = Task::new(format!("{run_id}-{n:06}"));
        let desc = format!("demo task {n}");
        task.description = Some(desc.clone());
        task.status = if n % 3 == 0 {
            TaskStatus::Completed
        } else {
            TaskStatus::InProgress
        };
        task.created_at = Some(statewal::now_rfc3339());
        task.extra.insert(
            "toolInvocations".into(),
            serde_json::json!([{"tool": "demo", "n": n}]),
        );
        let id = task.id.clone();
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

fn parse_ack(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("ack ")?;
    let (id, desc) = rest.split_once(' ')?;
    Some((id.to_string(), desc.to_string()))
}

fn sync_name(cli: &Cli) -> String {
    match cli.sync {
        statewal::SyncPolicy::SyncBeforeAck => "sync-before-ack".into(),
        statewal::SyncPolicy::SyncEveryInterval(d) => format!("interval:{}", d.as_millis()),
        statewal::SyncPolicy::OsBuffered => "os-buffered".into(),
    }
}
