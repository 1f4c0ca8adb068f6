//! Crash enumeration for the workloads `crash.rs` leaves out: sessions,
//! `clean`, `restore`, migration on open, the `SyncEveryInterval` and
//! `OsBuffered` policies, and the checkpoint that follows a recovery.
//!
//! Each workload is a list of steps run against a store on a [`SimFs`]. A
//! reference run without faults records what the store holds after each step
//! ([`observe`]). Then the process is killed after every filesystem operation
//! of the workload, power loss is enumerated (every subset of the pending
//! items up to [`EXHAUSTIVE_ITEMS_MAX`], a seeded sample beyond, and tears at
//! each write's tear points, cut clean, zero- or garbage-filled), identical
//! crashed states are checked once, and each is held to what
//! `docs/recovery.md` promises for the workload's sync policy:
//!
//! - `SyncBeforeAck`: the store opens and holds the state after the last
//!   acknowledged step, or after the one in flight;
//! - `SyncEveryInterval`: it holds the state after some step between the last
//!   one an interval sync (or checkpoint) covered and the one in flight: a
//!   prefix, never less than what was synced;
//! - `OsBuffered`: the same with only checkpoints as syncs;
//!
//! and, under every policy, a checkpoint taken on the recovered store
//! survives a second power loss whole. Each test also asserts that its
//! enumeration reached the states that make its check bite (an acknowledged
//! write lost where the policy allows it, a kill inside the step under test).

use super::crash::digest;
use serde_json::{Value, json};
use statewal::__internal::fs::{Fs, OpenMode};
use statewal::sim::{Outcome, PendingItem, PendingKind, SimFs, TearFill};
use statewal::{Options, Store, SyncPolicy, Task, TaskStatus};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Up to this many pending items, every subset is tried.
const EXHAUSTIVE_ITEMS_MAX: usize = 8;
/// Subsets sampled when there are more pending items.
const SAMPLED_SUBSETS: u64 = 48;
const SEED: u64 = 0x000c_4a54;

type Step = Box<dyn Fn(&Store, &SimFs) -> statewal::Result<()>>;
/// Checks one crashed state, given what was acknowledged and the reference.
type Check<'a> = &'a dyn Fn(&SimFs, Killed, &[Value]) -> Result<(), String>;

fn opts(policy: SyncPolicy) -> Options {
    Options::new("sim")
        .checkpoint_interval(None)
        .checkpoint_on_drop(false)
        .journal_preallocate_bytes(1024)
        .sync_policy(policy)
}

fn open(fs: &SimFs, policy: SyncPolicy) -> statewal::Result<Store> {
    Store::open_with_fs(opts(policy), Arc::new(fs.clone()), None)
}

/// What a store on `fs` holds, as one JSON value: task descriptions,
/// sessions, and, after a checkpoint, the log, report and archive files.
/// Opens (and checkpoints) `fs` itself: pass a fork or a crashed copy.
fn observe(fs: &SimFs, policy: SyncPolicy) -> Result<Value, String> {
    let store = open(fs, policy).map_err(|e| format!("open failed: {e}"))?;
    let tasks: BTreeMap<String, Value> = store
        .list_tasks()
        .unwrap()
        .into_iter()
        .map(|t| (t.id().to_string(), json!(t.description())))
        .collect();
    let sessions: Vec<Value> = store
        .list_sessions()
        .unwrap()
        .into_iter()
        .map(|s| json!([s.id, s.get("v")]))
        .collect();
    store
        .checkpoint()
        .map_err(|e| format!("checkpoint after recovery failed: {e}"))?;
    drop(store);
    let mut files = BTreeMap::new();
    for dir in ["logs", "reports", "archive"] {
        for name in fs.list(dir).map_err(|e| e.to_string())? {
            let rel = format!("{dir}/{name}");
            let bytes = fs.read(&rel).map_err(|e| e.to_string())?;
            let text = bytes.map(|b| String::from_utf8_lossy(&b).into_owned());
            files.insert(rel, text);
        }
    }
    Ok(json!({ "tasks": tasks, "sessions": sessions, "files": files }))
}

/// A workload: how to build the filesystem it starts from, its steps, and
/// which steps make everything before them durable under a lax policy.
struct Workload {
    label: &'static str,
    policy: SyncPolicy,
    start: Box<dyn Fn() -> SimFs>,
    steps: Vec<Step>,
    /// `syncs[i]`: step `i` returning Ok means every earlier step is durable
    /// (a checkpoint, or a wait for an interval sync).
    syncs: Vec<bool>,
}

/// What one kill left: the steps acknowledged, whether one was in flight,
/// and the last acknowledged step a sync covered (0: none).
#[derive(Debug, Clone, Copy)]
struct Killed {
    acked: usize,
    inflight: bool,
    synced: usize,
    /// The workload ran to its end without being killed.
    finished: bool,
}

#[derive(Debug, Default)]
struct Figures {
    states: u64,
    /// States in which a lax policy lost an acknowledged step.
    lost_acked: u64,
    /// Kills inside each step (index: step).
    killed_in: Vec<u64>,
    violations: Vec<String>,
}

impl Workload {
    /// Runs the steps on `fs` until one fails (the process died there).
    fn run(&self, fs: &SimFs, mut each: impl FnMut(usize)) -> Killed {
        let mut k = Killed {
            acked: 0,
            inflight: false,
            synced: 0,
            finished: false,
        };
        let Ok(store) = open(fs, self.policy) else {
            k.inflight = true;
            return k;
        };
        each(0);
        for (i, step) in self.steps.iter().enumerate() {
            if step(&store, fs).is_err() {
                k.inflight = true;
                break;
            }
            k.acked = i + 1;
            if self.syncs[i] {
                k.synced = k.acked;
            }
            each(i + 1);
        }
        // The process dies here: stop the filesystem before the destructor
        // (which stops the store's threads) so it changes nothing.
        k.finished = !fs.crashed();
        fs.crash_after_ops(fs.ops());
        drop(store);
        k
    }

    /// What the store holds after each step of a run without faults.
    fn reference(&self) -> Vec<Value> {
        let fs = (self.start)();
        let mut seen = Vec::new();
        let k = self.run(&fs, |_| {
            seen.push(observe(&fs.fork(), self.policy).unwrap())
        });
        assert!(k.finished, "{}: the reference run failed", self.label);
        seen
    }

    /// Kills the workload after every operation and checks every power-loss
    /// outcome with `check` (most use [`Workload::check_prefix`]); keeps the
    /// first ten violations.
    fn enumerate(&self, check: Check<'_>) -> Figures {
        let reference = self.reference();
        let mut f = Figures {
            killed_in: vec![0; self.steps.len() + 1],
            ..Figures::default()
        };
        let mut n = 0;
        loop {
            let fs = (self.start)();
            fs.crash_after_ops(fs.ops() + n);
            let k = self.run(&fs, |_| {});
            if k.inflight {
                f.killed_in[k.acked] += 1;
            }
            let items = fs.pending();
            let mut seen = HashSet::new();
            for outcome in outcomes(&items, SEED ^ n) {
                let after = fs.crash_with(|i| outcome[i.index]);
                if !seen.insert(digest(&after)) {
                    continue;
                }
                f.states += 1;
                match check(&after, k, &reference) {
                    Ok(()) => {}
                    Err(why) if f.violations.len() < 10 => f.violations.push(format!(
                        "{}: killed after op {n} ({k:?}), outcome {:?}: {why}",
                        self.label,
                        items
                            .iter()
                            .map(|i| (&i.description, outcome[i.index]))
                            .collect::<Vec<_>>()
                    )),
                    Err(_) => {}
                }
            }
            if k.finished {
                break;
            }
            n += 1;
        }
        f
    }

    /// The policy's promise: the recovered state is the state after some
    /// step from the last synced one (the last acknowledged one under
    /// `SyncBeforeAck`) to the one in flight, and a checkpoint of it survives
    /// power loss. Returns which step it was.
    fn check_prefix(&self, fs: &SimFs, k: Killed, reference: &[Value]) -> Result<usize, String> {
        let floor = match self.policy {
            SyncPolicy::SyncBeforeAck => k.acked,
            _ => k.synced,
        };
        let top = (k.acked + k.inflight as usize).min(reference.len() - 1);
        let got = observe(fs, self.policy)?;
        let Some(at) = (floor..=top).rev().find(|&i| reference[i] == got) else {
            return Err(format!(
                "recovered {got}, which is no state from step {floor} to {top}: {:?}",
                &reference[floor..=top]
            ));
        };
        let again = observe(&fs.crash_with(|_| Outcome::Lost), self.policy)
            .map_err(|e| format!("after a checkpoint and power loss: {e}"))?;
        if again != got {
            return Err(format!(
                "a checkpoint did not survive power loss: {again}, expected {got}"
            ));
        }
        Ok(at)
    }
}

/// Every power-loss outcome to try for `items`.
fn outcomes(items: &[PendingItem], seed: u64) -> Vec<Vec<Outcome>> {
    let n = items.len();
    let subset = |mask: u64| -> Vec<Outcome> {
        (0..n)
            .map(|i| {
                if mask >> i & 1 == 1 {
                    Outcome::Kept
                } else {
                    Outcome::Lost
                }
            })
            .collect()
    };
    let mut all: Vec<Vec<Outcome>> = if n <= EXHAUSTIVE_ITEMS_MAX {
        (0..1u64 << n).map(subset).collect()
    } else {
        let mut rng = seed;
        let mut v = vec![subset(u64::MAX), subset(0)];
        v.extend((0..SAMPLED_SUBSETS).map(|_| subset(next_rand(&mut rng))));
        v
    };
    for item in items {
        let PendingKind::FileData { tear_points, .. } = &item.kind else {
            continue;
        };
        for &at in tear_points {
            for fill in [TearFill::Nothing, TearFill::Zeros, TearFill::Garbage] {
                for other in [Outcome::Kept, Outcome::Lost] {
                    let torn = Outcome::Torn { at, fill };
                    all.push(
                        (0..n)
                            .map(|i| if i == item.index { torn } else { other })
                            .collect(),
                    );
                }
            }
        }
    }
    all
}

fn next_rand(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn put(id: &'static str, what: &'static str) -> Step {
    Box::new(move |s, _| {
        let mut t = Task::new(id);
        t.set_description(what);
        s.put_task(t).map(drop)
    })
}

fn checkpoint() -> Step {
    Box::new(|s, _| s.checkpoint().map(drop))
}

fn empty() -> Box<dyn Fn() -> SimFs> {
    Box::new(|| SimFs::new(SEED))
}

fn assert_clean(label: &str, f: &Figures) {
    eprintln!(
        "{label}: crash states checked: {}, violations: {}, kills per step {:?}, acknowledged steps lost (allowed): {}",
        f.states,
        f.violations.len(),
        f.killed_in,
        f.lost_acked
    );
    assert!(f.violations.is_empty(), "{}", f.violations.join("\n"));
    assert!(f.states > 0);
}

/// Checks `w` against its policy's promise; returns the figures.
fn check_policy(w: &Workload) -> Figures {
    let lost = std::cell::Cell::new(0);
    let mut f = w.enumerate(&|fs, k, reference| {
        let at = w.check_prefix(fs, k, reference)?;
        if at < k.acked {
            lost.set(lost.get() + 1);
        }
        Ok(())
    });
    f.lost_acked = lost.get();
    f
}

#[test]
fn sessions_logs_and_reports_survive_a_crash_at_every_operation() {
    let session = |v: u64| -> Step {
        Box::new(move |s, _| s.put_session(json!({"id": "s", "v": v})).map(drop))
    };
    let w = Workload {
        label: "sessions",
        policy: SyncPolicy::SyncBeforeAck,
        start: empty(),
        steps: vec![
            session(1),
            Box::new(|s, _| s.append_log("s", "line 1\n").map(drop)),
            checkpoint(),
            session(2),
            Box::new(|s, _| s.save_report("r", json!({"step": 4})).map(drop)),
            Box::new(|s, _| s.append_log("s", "line 2\n").map(drop)),
            Box::new(|s, _| s.delete_session("s").map(drop)),
            checkpoint(),
        ],
        syncs: vec![false, false, true, false, false, false, false, true],
    };
    let f = check_policy(&w);
    assert_clean(w.label, &f);
    assert!(
        f.killed_in[..w.steps.len()].iter().all(|&n| n > 0),
        "a step was never killed: {:?}",
        f.killed_in
    );
}

#[test]
fn os_buffered_keeps_a_prefix_and_everything_before_the_last_checkpoint() {
    let w = Workload {
        label: "os-buffered",
        policy: SyncPolicy::OsBuffered,
        start: empty(),
        steps: vec![
            put("a", "1"),
            put("b", "2"),
            checkpoint(),
            put("a", "4"),
            put("c", "5"),
        ],
        syncs: vec![false, false, true, false, false],
    };
    let f = check_policy(&w);
    assert_clean(w.label, &f);
    // The promise is weaker than sync-before-ack's, and the enumeration
    // reaches states that use the difference: else the check proves nothing
    // the default policy's does not.
    assert!(f.lost_acked > 0, "no state lost an acknowledged write");
}

/// Waits until the interval sync has made every journal write durable (the
/// journal has no unsynced bytes left); an error if the process died first.
fn interval_sync() -> Step {
    Box::new(|_, fs| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            // After a sync the journal writes one sync marker, unsynced by
            // design (docs/format.md); a journal whose only unsynced bytes
            // are that one marker has every record durable. This workload's
            // records are never exactly a marker's length.
            let marker = statewal::__internal::journal::record::MARKER_FRAME_LEN as u64;
            let unsynced = fs.pending().iter().any(|i| {
                matches!(i.kind, PendingKind::FileData { bytes, .. } if bytes != marker)
                    && i.description.starts_with("write journal/")
            });
            if fs.crashed() {
                return Err(statewal::Error::new(statewal::ErrorKind::Io, "died"));
            }
            if !unsynced {
                return Ok(());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no interval sync in 10 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

#[test]
fn sync_every_interval_loses_at_most_what_followed_the_last_interval_sync() {
    let w = Workload {
        label: "sync-every-interval",
        // Short, so the test waits little for it; the syncer's operations
        // interleave with the workload's, so a kill lands at a slightly
        // different place from run to run, and every run is still checked.
        policy: SyncPolicy::SyncEveryInterval(Duration::from_millis(5)),
        start: empty(),
        steps: vec![
            put("a", "1"),
            put("b", "2"),
            interval_sync(),
            put("a", "4"),
            put("c", "5"),
        ],
        syncs: vec![false, false, true, false, false],
    };
    let f = check_policy(&w);
    assert_clean(w.label, &f);
    assert!(f.lost_acked > 0, "no state lost an acknowledged write");
}

/// `fs` with the workload `prefix` run to its end and the store closed.
fn prepared(prefix: Vec<Step>) -> SimFs {
    let fs = SimFs::new(SEED);
    let store = open(&fs, SyncPolicy::SyncBeforeAck).unwrap();
    for step in prefix {
        step(&store, &fs).unwrap();
    }
    drop(store);
    fs
}

fn old_task(id: &'static str) -> Step {
    Box::new(move |s, _| {
        let mut t = Task::new(id);
        t.set_status(TaskStatus::Completed);
        t.set("completed_at", "2020-01-01T00:00:00Z")
            .expect("not the id");
        t.set_description(format!("archived {id}"));
        s.put_task(t).map(drop)
    })
}

// Extends archive_crash.rs (a crash after every operation of `clean`, power
// loss with everything lost, kept or drawn at random) to every subset of the
// pending items and every tear, and to a task `clean` must leave alone.
#[test]
fn clean_archives_each_task_exactly_once_under_every_power_loss_outcome() {
    const OLD: [&str; 2] = ["old-a", "old-b"];
    let w = Workload {
        label: "clean",
        policy: SyncPolicy::SyncBeforeAck,
        start: Box::new(|| {
            prepared(vec![
                old_task("old-a"),
                old_task("old-b"),
                put("new", "kept"),
                checkpoint(),
            ])
        }),
        steps: vec![Box::new(|s, _| {
            s.clean(Duration::from_secs(86_400), &[], false).map(drop)
        })],
        syncs: vec![true],
    };
    let f = w.enumerate(&|fs, k, _| {
        let got = observe(fs, w.policy)?;
        let archived: String = got["files"]
            .as_object()
            .expect("an object")
            .iter()
            .filter(|(name, _)| name.starts_with("archive/"))
            .filter_map(|(_, text)| text.as_str())
            .collect();
        for id in OLD {
            let n = archived.matches(&format!("\"id\":\"{id}\"")).count();
            let is_task = got["tasks"].get(id).is_some();
            if n > 1 || is_task == (n == 1) {
                return Err(format!("{id}: a task: {is_task}, archived {n} times"));
            }
            if k.acked == 1 && is_task {
                return Err(format!("clean returned, yet {id} is not archived"));
            }
        }
        if got["tasks"]["new"] != json!("kept") || archived.contains("\"id\":\"new\"") {
            return Err(format!("clean touched a task it must keep: {got}"));
        }
        let again = observe(&fs.crash_with(|_| Outcome::Lost), w.policy)?;
        if again != got {
            return Err(format!(
                "a checkpoint did not survive power loss: {again}, expected {got}"
            ));
        }
        Ok(())
    });
    assert_clean(w.label, &f);
    assert!(f.killed_in[0] > 0);
}

/// Restores the newest backup, as `statewal restore` would pick it by name.
fn restore_newest() -> Step {
    Box::new(|s, _| {
        let newest = s.backups()?.into_iter().next().expect("a backup");
        s.restore_backup(&newest.name).map(drop)
    })
}

fn restore_workload() -> Workload {
    Workload {
        label: "restore",
        policy: SyncPolicy::SyncBeforeAck,
        start: empty(),
        steps: vec![
            put("a", "1"),
            put("b", "2"),
            checkpoint(),
            put("c", "3"),
            put("a", "4"),
            Box::new(|s, _| s.delete_task("b").map(drop)),
            // This checkpoint turns the state of the first one, {a: 1, b: 2},
            // into the newest backup.
            checkpoint(),
            restore_newest(),
        ],
        syncs: vec![false, false, true, false, false, false, true, true],
    }
}

// Regression: `restore_backup` journaled one put or delete per changed task
// and synced them as one group commit, so power loss during that sync could
// keep a prefix of them. Killed after op 99, the restore's journal write torn
// at byte 64 of 129 recovered {a: "1", c: "3"}: neither the old state
// {a: "4", c: "3"} nor the backup {a: "1", b: "2"}. Restore is now one atomic
// batch record (issue 8, part 5). The workload uses the public API only
// (`backups`, `restore_backup`), so it held before that change as it does now.
#[test]
fn a_crash_inside_restore_leaves_the_whole_old_state_or_the_whole_backup() {
    let w = restore_workload();
    let f = w.enumerate(&|fs, k, reference| w.check_prefix(fs, k, reference).map(drop));
    assert_clean(w.label, &f);
    assert!(
        f.killed_in[w.steps.len() - 1] > 0,
        "never killed inside the restore"
    );
}

/// `fs` with the original server's directory copied in, durably.
fn ts_server_v0() -> SimFs {
    let fs = SimFs::new(SEED);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ts-server-v0");
    copy_in(&fs, &root, "");
    fs
}

fn copy_in(fs: &SimFs, from: &std::path::Path, rel: &str) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let to = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if entry.file_type().unwrap().is_dir() {
            fs.create_dir(&to).unwrap();
            copy_in(fs, &entry.path(), &to);
        } else {
            let mut f = fs.open(&to, OpenMode::CreateNew).unwrap();
            f.write_all_at(0, &std::fs::read(entry.path()).unwrap())
                .unwrap();
            f.sync_data().unwrap();
        }
    }
    fs.sync_dir(rel).unwrap();
}

#[test]
fn migration_on_open_never_loses_a_task_and_backs_up_before_it_replaces() {
    let original = ts_server_v0().read("state.json").unwrap().unwrap().to_vec();
    let ids: Vec<String> = serde_json::from_slice::<Value>(&original).unwrap()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    let w = Workload {
        label: "migration",
        policy: SyncPolicy::SyncBeforeAck,
        start: Box::new(ts_server_v0),
        steps: vec![put("after-migration", "new")],
        syncs: vec![true],
    };
    let replaced = std::cell::Cell::new(0);
    let f = w.enumerate(&|fs, k, reference| {
        // Before anything reopens it: a state.json that is no longer the
        // original has a durable copy of the original beside it.
        let state = fs
            .read("state.json")
            .map_err(|e| e.to_string())?
            .map(|b| b.to_vec());
        if state.as_deref() != Some(&original[..]) {
            replaced.set(replaced.get() + 1);
            let backup = fs
                .read(statewal::__internal::migrate::PRE_MIGRATION_BACKUP)
                .map_err(|e| e.to_string())?;
            if backup.as_deref() != Some(&original[..]) {
                return Err("state.json replaced without the pre-migration backup".into());
            }
        }
        let got = observe(&fs.fork(), w.policy)?;
        for id in &ids {
            if got["tasks"].get(id).is_none() {
                return Err(format!("task {id} lost: {got}"));
            }
        }
        w.check_prefix(fs, k, reference).map(drop)
    });
    assert_clean(w.label, &f);
    assert!(
        f.killed_in[0] > 0 && replaced.get() > 0,
        "no kill inside the migration"
    );
}

// A recovery that fell back (a corrupt `state.json`, rebuilt from the backup
// and the journal) checkpoints at once, inside the open; and one that cut a
// torn tail is followed by a checkpoint. A kill at every operation of that
// checkpoint, then power loss, must still open with every acknowledged task.
#[test]
fn a_crash_in_the_checkpoint_after_a_fallback_loses_nothing() {
    let start = || {
        let fs = prepared(vec![
            put("a", "1"),
            put("b", "2"),
            checkpoint(),
            put("a", "3"),
            checkpoint(),
            put("c", "4"),
        ]);
        assert!(fs.corrupt("state.json", |b| b.truncate(b.len() / 2)));
        fs
    };
    let probe = open(&start(), SyncPolicy::SyncBeforeAck).unwrap();
    assert!(
        matches!(
            probe.recovery_report().unwrap().loaded_from,
            statewal::report::LoadedFrom::Backup(_)
        ),
        "the setup did not make recovery fall back: {:?}",
        probe.recovery_report().unwrap()
    );
    drop(probe);
    let w = Workload {
        label: "checkpoint after a fallback",
        policy: SyncPolicy::SyncBeforeAck,
        start: Box::new(start),
        steps: vec![put("d", "5")],
        syncs: vec![true],
    };
    let f = w.enumerate(&|fs, k, reference| w.check_prefix(fs, k, reference).map(drop));
    assert_clean(w.label, &f);
    assert!(f.killed_in[0] > 0);
}

#[test]
fn a_crash_in_the_checkpoint_after_a_torn_tail_loses_nothing() {
    let start = || {
        // Killed between writing the record of c and syncing it...
        let fs = (1..)
            .map(|k| {
                let fs = prepared(vec![put("a", "1"), checkpoint(), put("b", "2")]);
                let store = open(&fs, SyncPolicy::SyncBeforeAck).unwrap();
                fs.crash_after_ops(fs.ops() + k);
                let mut t = Task::new("c");
                t.set_description("never acknowledged");
                assert!(store.put_task(t).is_err(), "the put was killed");
                drop(store);
                fs
            })
            .find(|fs| {
                fs.pending().iter().any(|i| {
                    i.description.starts_with("write journal/0")
                        && matches!(i.kind, PendingKind::FileData { .. })
                })
            })
            .unwrap();
        // ...and power loss tore that record, leaving garbage.
        fs.crash_with(|i| match i.kind {
            PendingKind::FileData { .. } if !i.description.starts_with("write journal/0") => {
                Outcome::Kept
            }
            PendingKind::FileData { bytes, .. } => Outcome::Torn {
                at: bytes / 2,
                fill: TearFill::Garbage,
            },
            PendingKind::DirEntry => Outcome::Kept,
        })
    };
    let probe = open(&start(), SyncPolicy::SyncBeforeAck).unwrap();
    assert!(
        probe.recovery_report().unwrap().bytes_truncated > 0,
        "the setup left no torn tail: {:?}",
        probe.recovery_report().unwrap()
    );
    drop(probe);
    let w = Workload {
        label: "checkpoint after a torn tail",
        policy: SyncPolicy::SyncBeforeAck,
        start: Box::new(start),
        steps: vec![checkpoint(), put("d", "5")],
        syncs: vec![true, true],
    };
    let f = w.enumerate(&|fs, k, reference| w.check_prefix(fs, k, reference).map(drop));
    assert_clean(w.label, &f);
    assert!(f.killed_in[1] > 0, "never killed inside the checkpoint");
}

/// Writes `bytes` to `rel` in `fs` durably (the setup of a workload, as the
/// original server or an editor left it; an existing file is replaced).
fn put_file(fs: &SimFs, rel: &str, bytes: &[u8]) {
    fs.remove(rel).unwrap();
    let mut f = fs.open(rel, OpenMode::CreateNew).unwrap();
    f.write_all_at(0, bytes).unwrap();
    f.sync_data().unwrap();
    let dir = rel.rsplit_once('/').map_or("", |(d, _)| d);
    fs.sync_dir(dir).unwrap();
}

fn timed(id: &str, updated_at: &str, what: &str) -> Task {
    let mut t = Task::new(id);
    t.set("updated_at", updated_at).expect("not the id");
    t.set_description(what);
    t
}

/// statewal's turn, then the original server's, on a `SimFs`: statewal
/// checkpoints `t1`..`t4` (10:00) and journals `t1` (10:05) and `s-new`
/// after it; the original server loads that checkpoint, changes `t2` and
/// `t3` (11:00), creates `ts-new`, deletes `t4`, and saves (its backup of
/// statewal's `state.json`, then its own, without a version).
/// The merge at open of a directory `start` makes, then one put, synced
/// before it is acknowledged; checked to merge as it should (each side's
/// last write of t1..t4 and both new tasks) before it is crashed anywhere.
#[track_caller]
fn merge_at_open(label: &'static str, start: Box<dyn Fn() -> SimFs>) -> Workload {
    let w = Workload {
        label,
        policy: SyncPolicy::SyncBeforeAck,
        start,
        steps: vec![put("after", "after the merge")],
        syncs: vec![true],
    };
    let reference = w.reference();
    let want = json!({
        "t1": "statewal, later", "t2": "the original server's", "t3": "the original server's",
        "t4": "statewal", "s-new": "statewal's", "ts-new": "the original server's new task",
    });
    assert_eq!(reference[0]["tasks"], want, "the merge itself");
    w
}

fn taking_turns() -> SimFs {
    taking_turns_with("2030-01-01T10:05:00Z")
}

/// [`taking_turns`], with statewal's later put of `t1` at `t1_later`.
fn taking_turns_with(t1_later: &'static str) -> SimFs {
    let fs = prepared(vec![
        Box::new(|s, _| {
            for i in 1..=4 {
                s.put_task(timed(&format!("t{i}"), "2030-01-01T10:00:00Z", "statewal"))?;
            }
            Ok(())
        }),
        checkpoint(),
        Box::new(|s, _| {
            s.put_task(timed("t1", t1_later, "statewal, later"))
                .map(drop)
        }),
        Box::new(|s, _| {
            s.put_task(timed("s-new", "2030-01-01T10:05:00Z", "statewal's"))
                .map(drop)
        }),
    ]);
    let sealed = fs.read("state.json").unwrap().unwrap().to_vec();
    let state: Value = serde_json::from_slice(&sealed).unwrap();
    let mut tasks: Vec<Value> = state["tasks"].as_array().unwrap().clone();
    for t in &mut tasks {
        if t["id"] == "t2" || t["id"] == "t3" {
            t["description"] = json!("the original server's");
            t["status"] = json!("completed");
            t["updated_at"] = json!("2030-01-01T11:00:00.000Z");
            let id = t["id"].as_str().unwrap();
            put_file(
                &fs,
                &format!("tasks/{id}.json"),
                &serde_json::to_vec_pretty(t).unwrap(),
            );
        }
    }
    let new = json!({"id": "ts-new", "description": "the original server's new task",
                     "status": "pending", "updated_at": "2030-01-01T11:00:00.000Z"});
    put_file(
        &fs,
        "tasks/ts-new.json",
        &serde_json::to_vec_pretty(&new).unwrap(),
    );
    tasks.push(new);
    tasks.retain(|t| t["id"] != "t4");
    fs.remove("tasks/t4.json").unwrap();
    fs.sync_dir("tasks").unwrap();
    put_file(&fs, "state.backup.1893456000000.json", &sealed);
    let foreign = json!({"tasks": tasks, "sessions": [], "last_saved": "2030-01-01T11:00:00.000Z",
                         "metrics": {"total_tasks": 5, "completed_tasks": 2, "failed_tasks": 0,
                                     "average_completion_time": 0}});
    put_file(
        &fs,
        "state.json",
        &serde_json::to_vec_pretty(&foreign).unwrap(),
    );
    fs
}

/// Every file in `journal/superseded-*/`, by name.
fn superseded(fs: &SimFs) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for dir in fs.list_dirs("journal").unwrap() {
        for name in fs.list(&format!("journal/{dir}")).unwrap() {
            let bytes = fs.read(&format!("journal/{dir}/{name}")).unwrap().unwrap();
            out.insert(name, bytes.to_vec());
        }
    }
    out
}

// Issue 9, part 3: the merge at open journals the foreign copies that win,
// keeps the foreign file as a pre-migration backup, copies the segments it
// read aside and checkpoints. Killed after every operation of it, under
// every power-loss outcome, the next open must converge on the same merged
// state (every task the expected winner, nothing of either side lost), the
// foreign bytes must never be replaced unless a pre-migration backup holds
// them, and once the merge's checkpoint is durable, the segments it read
// must be whole in `journal/superseded-*/`.
#[test]
fn a_crash_anywhere_in_the_merge_at_open_converges() {
    let start = taking_turns();
    let foreign = start.read("state.json").unwrap().unwrap().to_vec();
    // The names are the same in every run; the bytes are not (each run's
    // store has its own id), so a copy is compared with its original.
    let segments = start.list("journal").unwrap();
    assert!(!segments.is_empty());
    let w = merge_at_open("merge at open", Box::new(taking_turns));
    let (backed_up, copied, merged) = (
        std::cell::Cell::new(0),
        std::cell::Cell::new(0),
        std::cell::Cell::new(0),
    );
    let f = w.enumerate(&|fs, k, reference| {
        let state = fs
            .read("state.json")
            .map_err(|e| e.to_string())?
            .map(|b| b.to_vec());
        let backup = fs
            .read(statewal::__internal::migrate::PRE_MIGRATION_BACKUP)
            .map_err(|e| e.to_string())?;
        if state.as_deref() == Some(&foreign[..]) {
            backed_up.set(backed_up.get() + u64::from(backup.is_some()));
            copied.set(copied.get() + u64::from(!superseded(fs).is_empty()));
        } else {
            merged.set(merged.get() + 1);
            if backup.as_deref() != Some(&foreign[..]) {
                return Err(
                    "the foreign state.json replaced without a pre-migration backup".into(),
                );
            }
            let kept = superseded(fs);
            for name in &segments {
                let original = fs
                    .read(&format!("journal/{name}"))
                    .map_err(|e| e.to_string())?
                    .map(|b| b.to_vec());
                let whole = kept
                    .get(name)
                    .is_some_and(|copy| original.as_ref().is_none_or(|o| o == copy));
                if !whole {
                    return Err(format!(
                        "merged, but {name} is not whole in journal/superseded-*/"
                    ));
                }
            }
        }
        w.check_prefix(fs, k, reference).map(drop)
    });
    assert_clean(w.label, &f);
    eprintln!(
        "merge at open: states with the backup only {}, with the segments copied {}, merged {}",
        backed_up.get(),
        copied.get(),
        merged.get()
    );
    assert!(f.killed_in[0] > 0, "never killed inside the open");
    assert!(backed_up.get() > 0 && copied.get() > 0 && merged.get() > 0);
}

// Issue 9, part 2: an older hand edit of a task file is renamed aside at
// open, and the next checkpoint writes the store's copy under the old name.
// Killed after every operation, under every power-loss outcome, the edit's
// bytes are always somewhere: the file itself or a `.edited-<ms>` copy.
#[test]
fn a_crash_while_setting_an_edit_aside_never_loses_it() {
    let edit = serde_json::to_vec_pretty(&json!({
        "id": "y", "status": "pending", "updated_at": "2030-01-01T09:00:00Z", "description": "an old edit",
    }))
    .unwrap();
    let start = {
        let edit = edit.clone();
        move || {
            let fs = prepared(vec![
                Box::new(|s, _| {
                    s.put_task(timed("y", "2030-01-01T10:00:00Z", "statewal's"))
                        .map(drop)
                }),
                checkpoint(),
            ]);
            put_file(&fs, "tasks/y.json", &edit);
            fs
        }
    };
    let w = Workload {
        label: "set aside at open",
        policy: SyncPolicy::SyncBeforeAck,
        start: Box::new(start),
        steps: vec![checkpoint()],
        syncs: vec![true],
    };
    let aside = std::cell::Cell::new(0);
    let f = w.enumerate(&|fs, k, reference| {
        let mut found = false;
        for name in fs.list("tasks").map_err(|e| e.to_string())? {
            if name == "y.json" || name.starts_with("y.json.edited-") {
                let bytes = fs
                    .read(&format!("tasks/{name}"))
                    .map_err(|e| e.to_string())?;
                found |= bytes.as_deref() == Some(&edit[..]);
                aside.set(aside.get() + u64::from(name != "y.json"));
            }
        }
        if !found {
            return Err("the hand edit of tasks/y.json is gone".into());
        }
        w.check_prefix(fs, k, reference).map(drop)
    });
    assert_clean(w.label, &f);
    assert!(f.killed_in[0] > 0 && aside.get() > 0);
}

// Review (issue 9): as above, but statewal's later put of `t1` keeps its
// `updated_at`, so the original server's untouched copy ties with it; the
// copy is one statewal wrote (the checkpoint that server loaded), so the
// later put stands, at the first open and at every rerun after a crash.
#[test]
fn a_crash_anywhere_in_the_merge_keeps_a_later_put_an_untouched_copy_ties_with() {
    let w = merge_at_open(
        "merge at open, a tie",
        Box::new(|| taking_turns_with("2030-01-01T10:00:00Z")),
    );
    let f = w.enumerate(&|fs, k, reference| w.check_prefix(fs, k, reference).map(drop));
    assert_clean(w.label, &f);
    assert!(f.killed_in[0] > 0, "never killed inside the open");
}

/// A step: a person rewrites `rel` with an editor while the store is open
/// (remove, create, write, and the editor's syncs).
fn hand_edit(rel: &'static str, bytes: Vec<u8>) -> Step {
    Box::new(move |_, fs| {
        fs.remove(rel)?;
        let mut f = fs.open(rel, OpenMode::CreateNew)?;
        f.write_all_at(0, &bytes)?;
        f.sync_data()?;
        fs.sync_dir("tasks")
    })
}

/// An edit of `y` older than every copy statewal writes of it, so that an
/// open never imports it, whatever a crash left: the store's state follows
/// statewal's steps alone, and the edit must only never be lost.
fn old_edit_of_y() -> Vec<u8> {
    serde_json::to_vec_pretty(&json!({
        "id": "y", "status": "pending", "updated_at": "2030-01-01T09:00:00Z",
        "description": "edited by hand while the store was open",
    }))
    .unwrap()
}

/// `y` checkpointed by statewal, the store closed.
fn y_checkpointed() -> SimFs {
    prepared(vec![
        Box::new(|s, _| {
            s.put_task(timed("y", "2030-01-01T10:00:00Z", "statewal's"))
                .map(drop)
        }),
        checkpoint(),
    ])
}

fn put_y_later() -> Step {
    Box::new(|s, _| {
        s.put_task(timed("y", "2030-01-01T10:05:00Z", "statewal, later"))
            .map(drop)
    })
}

/// Checks that the edit is in `tasks/y.json` or a `tasks/y.json.edited-*`
/// once its step was acknowledged; returns whether a copy was set aside.
fn edit_kept(fs: &SimFs, k: Killed, edit: &[u8]) -> Result<bool, String> {
    let mut found = false;
    let mut aside = false;
    for name in fs.list("tasks").map_err(|e| e.to_string())? {
        if name == "y.json" || name.starts_with("y.json.edited-") {
            let bytes = fs
                .read(&format!("tasks/{name}"))
                .map_err(|e| e.to_string())?;
            let here = bytes.as_deref() == Some(edit);
            found |= here;
            aside |= here && name != "y.json";
        }
    }
    if k.acked >= 1 && !found {
        return Err("the hand edit of tasks/y.json made while the store was open is gone".into());
    }
    Ok(aside)
}

// Issue 9, part 2: a hand edit of `tasks/y.json` made while the store is
// open is set aside by the next checkpoint that writes `y` (renamed to
// `y.json.edited-<ms>`, `tasks/` synced), then the store's copy replaces
// the old name. Killed after every operation, under every power-loss
// outcome, the edit is always somewhere. Without the sync of `tasks/`
// after the rename aside, power loss can keep the rename of the store's
// copy over `y.json` and lose the rename aside: the edit is gone.
#[test]
fn a_crash_while_a_checkpoint_sets_a_live_edit_aside_never_loses_it() {
    let edit = old_edit_of_y();
    let w = Workload {
        label: "live edit set aside by a checkpoint",
        policy: SyncPolicy::SyncBeforeAck,
        start: Box::new(y_checkpointed),
        steps: vec![
            hand_edit("tasks/y.json", edit.clone()),
            put_y_later(),
            checkpoint(),
        ],
        syncs: vec![false, false, true],
    };
    let in_checkpoint = std::cell::Cell::new(0);
    let f = w.enumerate(&|fs, k, reference| {
        let aside = edit_kept(fs, k, &edit)?;
        in_checkpoint.set(in_checkpoint.get() + u64::from(aside && k.acked == 2));
        w.check_prefix(fs, k, reference).map(drop)
    });
    assert_clean(w.label, &f);
    eprintln!(
        "{}: states with the edit set aside by the checkpoint killed: {}",
        w.label,
        in_checkpoint.get()
    );
    assert!(f.killed_in[2] > 0 && in_checkpoint.get() > 0);
}

// As above, but the sync of `tasks/` after the rename aside fails (EIO),
// so the checkpoint fails with the rename made and not yet durable. The
// next checkpoint finds no file under the old name and writes the store's
// copy there: it must make the earlier rename durable first, or power loss
// during it can lose the edit just the same.
#[test]
fn a_crash_after_a_failed_sync_of_a_rename_aside_never_loses_the_edit() {
    use statewal::sim::FaultKind;
    let edit = old_edit_of_y();
    let before_checkpoint = || -> (SimFs, Store) {
        let fs = y_checkpointed();
        let store = open(&fs, SyncPolicy::SyncBeforeAck).unwrap();
        hand_edit("tasks/y.json", old_edit_of_y())(&store, &fs).unwrap();
        put_y_later()(&store, &fs).unwrap();
        (fs, store)
    };
    // The operation that syncs tasks/ after the rename aside: the first one
    // whose failure leaves that rename made and pending.
    let sync_op = (1..200)
        .find_map(|k| {
            let (fs, store) = before_checkpoint();
            let at = fs.ops() + k;
            fs.fail_at(at, FaultKind::Eio, false);
            let failed = store.checkpoint().is_err();
            let pending = fs.pending().iter().any(|i| {
                i.description
                    .starts_with("rename tasks/y.json -> tasks/y.json.edited-")
            });
            (failed && pending).then_some(at)
        })
        .expect("a checkpoint that sets y.json aside");
    let w = Workload {
        label: "live edit, the sync of the rename aside failed",
        policy: SyncPolicy::SyncBeforeAck,
        start: Box::new(y_checkpointed),
        steps: vec![
            hand_edit("tasks/y.json", edit.clone()),
            put_y_later(),
            Box::new(move |s, fs| {
                fs.fail_at(sync_op, FaultKind::Eio, false);
                match s.checkpoint() {
                    Err(_) if !fs.crashed() => Ok(()),
                    Err(e) => Err(e),
                    Ok(_) => panic!("the sync of tasks/ at operation {sync_op} did not fail"),
                }
            }),
            checkpoint(),
        ],
        syncs: vec![false, false, false, true],
    };
    let f = w.enumerate(&|fs, k, reference| {
        edit_kept(fs, k, &edit)?;
        w.check_prefix(fs, k, reference).map(drop)
    });
    assert_clean(w.label, &f);
    assert!(f.killed_in[3] > 0, "never killed in the checkpoint after");
}
