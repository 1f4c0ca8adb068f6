//! Real processes killed with SIGKILL: a child `statewal serve --stdio`
//! journals puts, deletes and checkpoints that the parent writes to it; the
//! parent kills it at a random moment (mid-burst, mid-checkpoint, during
//! start-up), reopens the directory with the library and checks that
//! acknowledged ⊆ recovered ⊆ sent: every task holds the value of its latest
//! acknowledged mutation or of a later one that was sent, byte for byte,
//! unknown fields included, and the whole state is that of a prefix of the
//! requests sent.
//!
//! The directory is reused across kills, so state, checkpoints, backups and
//! segments accumulate as they would in a long-lived deployment.
//! `STATEWAL_KILLS=N` sets the number of kills (default 200),
//! `STATEWAL_KILL_SEED=S` the seed.

use crate::util::opts;
use serde_json::{Value, json};
// `SimFs`'s seedable generator: a failing run replays with `STATEWAL_KILL_SEED`.
use statewal::sim::SplitMix64;
use statewal::{Store, Task};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

const DEFAULT_KILLS: usize = 200;
/// Task ids are drawn from this many, so puts overwrite and deletes hit.
const IDS: u64 = 12;
/// `statewal verify` is run on the directory after every this many kills.
const VERIFY_EVERY: usize = 25;

/// True with probability `percent` / 100.
fn chance(rng: &mut SplitMix64, percent: u64) -> bool {
    rng.below(100) < percent
}

/// One request sent to the child.
#[derive(Clone)]
enum Op {
    Put { id: String, task: Box<Task> },
    Delete { id: String },
    Checkpoint,
}

impl Op {
    fn id(&self) -> Option<&str> {
        match self {
            Op::Put { id, .. } | Op::Delete { id } => Some(id),
            Op::Checkpoint => None,
        }
    }
}

/// What the parent knows: the state it last recovered, and this round's
/// requests with the answers that came back.
struct Round {
    base: BTreeMap<String, Task>,
    ops: Vec<Op>,
    /// `Some(true)` for an `ok: true` answer, `Some(false)` for an error
    /// (a delete of an absent task), `None` when no answer came.
    acks: Vec<Option<bool>>,
}

/// Totals over a run.
#[derive(Default)]
struct Tally {
    kills: usize,
    acknowledged_checked: usize,
    verify_runs: usize,
    torn_tails_seen: usize,
    /// Requests without an answer when the child died, and how many of
    /// those survived anyway (journaled, not yet acknowledged).
    in_flight: usize,
    in_flight_survived: usize,
    violations: Vec<String>,
}

// Guards: kill -9 at any moment never loses an acknowledged write, never
// invents one, and never leaves a directory that fails to open or that
// `verify` calls corrupt.
#[test]
fn sigkill_loses_nothing_acknowledged() {
    let kills: usize = env_number("STATEWAL_KILLS").unwrap_or(DEFAULT_KILLS as u64) as usize;
    let seed = env_number("STATEWAL_KILL_SEED").unwrap_or(0x5EED_0005);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = SplitMix64::new(seed);
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    let mut base = BTreeMap::new();
    let mut tally = Tally::default();
    let started = std::time::Instant::now();
    for k in 1..=kills {
        let mut round = Round {
            base: base.clone(),
            ops: Vec::new(),
            acks: Vec::new(),
        };
        run_and_kill(dir.path(), &mut rng, &mut versions, &mut round);
        tally.kills += 1;
        if k % VERIFY_EVERY == 0 || k <= 3 {
            tally.torn_tails_seen += check_verify(dir.path());
            tally.verify_runs += 1;
        }
        base = check_recovered(dir.path(), &round, &mut tally, k);
        assert!(
            tally.violations.is_empty(),
            "seed {seed:#x}, kill {k}: {:#?}",
            tally.violations
        );
    }
    println!(
        "kills: {}, acknowledged checked: {}, violations: {} (seed {seed:#x}, unanswered at the kill {} of which recovered {}, verify runs {}, torn tails reported {}, {:.1} s)",
        tally.kills,
        tally.acknowledged_checked,
        tally.violations.len(),
        tally.in_flight,
        tally.in_flight_survived,
        tally.verify_runs,
        tally.torn_tails_seen,
        started.elapsed().as_secs_f64()
    );
    assert!(
        tally.acknowledged_checked > kills,
        "too few acknowledgements"
    );
}

fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={v:?}: {e}")))
}

fn spawn_server(dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_statewal"))
        .arg("--dir")
        .arg(dir)
        .args(["serve", "--stdio"])
        .env_remove("STATE_PATH")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the statewal binary starts")
}

/// One child's life: a few bursts answered in full, then a last burst during
/// which the child is killed, at a moment chosen by `rng`.
fn run_and_kill(
    dir: &Path,
    rng: &mut SplitMix64,
    versions: &mut BTreeMap<String, u64>,
    round: &mut Round,
) {
    let mut child = spawn_server(dir);
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    for _ in 0..rng.below(3) {
        let n = 1 + rng.below(20) as usize;
        send_burst(&mut stdin, rng, versions, round, n, None);
        read_answers(&mut out, round, n);
    }
    let n = 1 + rng.below(40) as usize;
    match rng.below(4) {
        // Mid-burst, after some answers have come back.
        0 => {
            send_burst(&mut stdin, rng, versions, round, n, None);
            read_answers(&mut out, round, rng.below(n as u64 + 1) as usize);
        }
        // Mid-burst, a random pause after the first answer, when the child
        // is busiest.
        1 => {
            send_burst(&mut stdin, rng, versions, round, n, None);
            read_answers(&mut out, round, 1);
            std::thread::sleep(Duration::from_micros(rng.below(2000)));
        }
        // Mid-checkpoint: read the answers up to a checkpoint request, then
        // kill while the child is (likely) writing the layout files.
        2 => {
            let at = rng.below(n as u64) as usize;
            send_burst(&mut stdin, rng, versions, round, n, Some(at));
            read_answers(&mut out, round, at);
        }
        // Right away: during start-up, recovery or the first writes.
        _ => send_burst(&mut stdin, rng, versions, round, n, None),
    }
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap the child");
    drop(stdin);
    // Answers the child wrote before it died were acknowledgements too.
    read_remaining(&mut out, round);
    if status.signal() != Some(libc::SIGKILL) {
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).ok();
        panic!("the child exited by itself ({status:?}) before the kill: {err}");
    }
}

/// Sends `n` random requests; `checkpoint_at` forces a checkpoint request at
/// that position in the burst. A write error means the child is already
/// gone, which is fine: the request was never sent.
fn send_burst(
    stdin: &mut impl Write,
    rng: &mut SplitMix64,
    versions: &mut BTreeMap<String, u64>,
    round: &mut Round,
    n: usize,
    checkpoint_at: Option<usize>,
) {
    let mut lines = String::new();
    let first = round.ops.len();
    for i in 0..n {
        let op = if checkpoint_at == Some(i) || chance(rng, 4) {
            Op::Checkpoint
        } else {
            let id = format!("k{}", rng.below(IDS));
            if chance(rng, 20) {
                Op::Delete { id }
            } else {
                let v = versions.entry(id.clone()).or_default();
                *v += 1;
                let task = random_task(rng, &id, *v);
                Op::Put {
                    id,
                    task: Box::new(task),
                }
            }
        };
        let req = first + i;
        let line = match &op {
            Op::Put { task, .. } => json!({"req": req, "op": "put_task", "task": task}),
            Op::Delete { id } => json!({"req": req, "op": "delete_task", "id": id}),
            Op::Checkpoint => json!({"req": req, "op": "checkpoint"}),
        };
        lines.push_str(&line.to_string());
        lines.push('\n');
        round.ops.push(op);
        round.acks.push(None);
    }
    if stdin.write_all(lines.as_bytes()).is_ok() {
        stdin.flush().ok();
    }
}

/// A task whose `ver` field counts the puts of its id, with unknown fields of
/// random shape and size that must come back unchanged.
fn random_task(rng: &mut SplitMix64, id: &str, ver: u64) -> Task {
    let statuses = ["pending", "in_progress", "completed", "failed", "waiting"];
    let status = statuses[rng.below(statuses.len() as u64) as usize];
    let pad = "x".repeat(rng.below(300) as usize);
    let value = json!({
        "id": id,
        "status": status,
        "description": format!("{id} version {ver}"),
        "ver": ver,
        "claudeMetrics": {"tokens": rng.below(1 << 20), "pad": pad},
        "toolInvocations": (0..rng.below(4)).map(|i| json!({"tool": "edit", "n": i})).collect::<Vec<_>>(),
    });
    serde_json::from_value(value).expect("a valid task")
}

/// Reads `n` answers (fewer if the child dies).
fn read_answers(out: &mut BufReader<ChildStdout>, round: &mut Round, n: usize) {
    for _ in 0..n {
        let mut line = String::new();
        match out.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => record_answer(round, &line, true),
        }
    }
}

fn read_remaining(out: &mut BufReader<ChildStdout>, round: &mut Round) {
    let mut rest = String::new();
    std::io::Read::read_to_string(out, &mut rest).ok();
    let lines: Vec<&str> = rest.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        // The kill may cut the last line short; only that one may be partial.
        record_answer(round, line, i + 1 < lines.len() || rest.ends_with('\n'));
    }
}

fn record_answer(round: &mut Round, line: &str, complete: bool) {
    let v: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(_) if !complete => return,
        Err(e) => panic!("answer {line:?} is not JSON: {e}"),
    };
    let req = v["req"].as_u64().expect("the answer echoes req") as usize;
    let ok = v["ok"].as_bool().expect("the answer has ok");
    if !ok {
        // The only request that may fail is a delete of an absent task.
        assert!(
            matches!(round.ops[req], Op::Delete { .. }) && v["error"]["kind"] == "not_found",
            "unexpected failure: {v}"
        );
    }
    round.acks[req] = Some(ok);
}

/// Runs `statewal verify --json` and checks that it found nothing, or only
/// torn tails (a kill can interrupt a write; nothing else). Returns the
/// number of torn tails.
fn check_verify(dir: &Path) -> usize {
    let out = Command::new(env!("CARGO_BIN_EXE_statewal"))
        .arg("--dir")
        .arg(dir)
        .args(["verify", "--json"])
        .env_remove("RUST_LOG")
        .output()
        .expect("statewal verify runs");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings = report["findings"].as_array().expect("findings").clone();
    let code = out.status.code();
    assert!(
        (findings.is_empty() && code == Some(0)) || (!findings.is_empty() && code == Some(1)),
        "verify exit code {code:?} with findings {findings:?}"
    );
    for f in &findings {
        assert_eq!(f["class"], "torn_tail", "a kill left damage: {f}");
    }
    findings.len()
}

/// Reopens the directory with the library and checks the recovered tasks
/// against what was sent and acknowledged. Returns the recovered tasks, the
/// next round's starting point.
fn check_recovered(
    dir: &Path,
    round: &Round,
    tally: &mut Tally,
    kill: usize,
) -> BTreeMap<String, Task> {
    let store = Store::open(opts(dir).checkpoint_on_drop(false))
        .unwrap_or_else(|e| panic!("kill {kill}: reopening failed: {e}"));
    let recovered: BTreeMap<String, Task> = store
        .list_tasks()
        .unwrap()
        .into_iter()
        .map(|t| (t.id().to_string(), t))
        .collect();
    drop(store);
    let mut ids: Vec<&str> = round.ops.iter().filter_map(Op::id).collect();
    ids.extend(round.base.keys().map(String::as_str));
    ids.extend(recovered.keys().map(String::as_str));
    ids.sort();
    ids.dedup();
    for id in ids {
        check_task(id, round, recovered.get(id), tally, kill);
    }
    check_prefix(round, &recovered, tally, kill);
    recovered
}

/// acknowledged ⊆ recovered ⊆ sent, for one id: the recovered value is the
/// value after its latest acknowledged mutation or after a later one that
/// was sent (or the round's starting value, if nothing was acknowledged).
fn check_task(id: &str, round: &Round, got: Option<&Task>, tally: &mut Tally, kill: usize) {
    let mine: Vec<usize> = (0..round.ops.len())
        .filter(|&i| round.ops[i].id() == Some(id))
        .collect();
    let last_acked = mine
        .iter()
        .copied()
        .filter(|&i| round.acks[i].is_some())
        .max();
    tally.acknowledged_checked += mine
        .iter()
        .filter(|&&i| round.acks[i] == Some(true))
        .count();
    let mut allowed: Vec<Option<&Task>> = Vec::new();
    if last_acked.is_none() {
        allowed.push(round.base.get(id));
    }
    for &i in &mine {
        if last_acked.is_none_or(|a| i >= a) {
            allowed.push(match &round.ops[i] {
                Op::Put { task, .. } => Some(task),
                _ => None,
            });
        }
    }
    if !allowed.contains(&got) {
        let version = |t: Option<&Task>| t.map(|t| t.get("ver").cloned().unwrap_or_default());
        tally.violations.push(format!(
            "kill {kill}: task {id}: recovered version {:?}, allowed {:?} (latest acknowledged request {last_acked:?})",
            version(got),
            allowed.iter().map(|t| version(*t)).collect::<Vec<_>>(),
        ));
    }
}

/// The whole recovered state is the state after some prefix of the requests
/// that is at least as long as the last acknowledged one: a single writer's
/// journal keeps order, so no later write survives an earlier lost one.
fn check_prefix(round: &Round, recovered: &BTreeMap<String, Task>, tally: &mut Tally, kill: usize) {
    let min = round
        .acks
        .iter()
        .rposition(|a| a.is_some())
        .map_or(0, |i| i + 1);
    let mut state = round.base.clone();
    for n in 0..=round.ops.len() {
        if n >= min && &state == recovered {
            tally.in_flight += round.ops.len() - min;
            tally.in_flight_survived += n - min;
            return;
        }
        if let Some(op) = round.ops.get(n) {
            match op {
                Op::Put { id, task } => {
                    state.insert(id.clone(), (**task).clone());
                }
                Op::Delete { id } => {
                    state.remove(id);
                }
                Op::Checkpoint => {}
            }
        }
    }
    tally.violations.push(format!(
        "kill {kill}: the recovered state is not that of any prefix of at least {min} of the {} requests",
        round.ops.len()
    ));
}
