//! Exhaustive crash enumeration on the simulated filesystem.
//!
//! Every workload of up to [`MAX_OPS`] operations drawn from put, update,
//! delete, log append, report and checkpoint is run on a [`SimFs`] that
//! "dies" after its n-th I/O operation, for every n. The power loss that
//! follows is enumerated: every subset of the pending items kept or lost
//! (all of them up to [`EXHAUSTIVE_ITEMS_MAX`] items, a seeded sample beyond)
//! and tears of each file's unsynced writes at a handful of byte and sector
//! boundaries, cut clean, zero-filled or garbage-filled. Each state is then
//! checked by [`check_state`]:
//!
//! - the store opens in the default recovery mode;
//! - its tasks are the model's: every acknowledged mutation with its latest
//!   value, nothing never written; only the one operation in flight when the
//!   process died may be in its pre- or post-state;
//! - after a checkpoint, `tasks/*.json`, `state.json`, the session log and
//!   the report file match the same model state;
//! - power loss right after that checkpoint loses nothing of it: the store
//!   reopens from `state.json` with nothing to replay and the same layout.
//!
//! Compound crashes: a sample of those crashed states is reopened, a task put
//! and a checkpoint taken, dying at every operation of that, and the power
//! loss enumerated and checked again.
//!
//! Outcomes that leave the same bytes behind are one crash state, checked
//! once ([`digest`]); the workloads are spread over every core.
//!
//! `STATEWAL_CRASH_LONG=1` adds one operation to every workload (5) and
//! gives ten times as many states the compound treatment;
//! `STATEWAL_CRASH_MAX_OPS=n` sets the workload length alone. The smoke size
//! fits in well under a minute of a debug build on 2 cores:
//!
//! ```text
//! cargo test --test it crash::every_crash_point -- --nocapture
//! ```

use statewal::__internal::fs::Fs;
use statewal::report::LoadedFrom;
use statewal::sim::{Outcome, PendingItem, PendingKind, SimFs, TearFill};
use statewal::{Options, PersistedState, Store, Task};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The longest workload (smoke size); `STATEWAL_CRASH_LONG` adds one.
const MAX_OPS: usize = 4;
/// Up to this many pending items, every subset is tried.
const EXHAUSTIVE_ITEMS_MAX: usize = 10;
/// Subsets sampled when there are more pending items.
const SAMPLED_SUBSETS: usize = 256;
/// One first-crash state in this many gets the compound treatment (smoke
/// size; the long mode takes ten times as many)...
const COMPOUND_EVERY: u64 = 600;
/// ...and one in this many of those a tear left zeros or garbage in.
const COMPOUND_EVERY_DAMAGED: u64 = 160;
const SEED: u64 = 0x57a7e;
/// Violations kept for the message; the enumeration stops after this many.
const VIOLATIONS_SHOWN: u64 = 20;
const TASK_IDS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
const SESSION: &str = "s";
const REPORT: &str = "r";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    Update,
    Delete,
    Log,
    Report,
    Checkpoint,
}

const OPS: [Op; 6] = [
    Op::Put,
    Op::Update,
    Op::Delete,
    Op::Log,
    Op::Report,
    Op::Checkpoint,
];

/// What the store should hold.
#[derive(Debug, Clone, PartialEq, Default)]
struct Model {
    /// Task id to description.
    tasks: BTreeMap<String, String>,
    /// The session log's contents.
    log: String,
    /// The report's `step`.
    report: Option<u64>,
}

impl Model {
    /// The model after `op`, the `step`-th operation; `None` if `op` makes no
    /// sense here (an update or delete with no task).
    fn after(&self, op: Op, step: usize) -> Option<Model> {
        let mut m = self.clone();
        let last = self.tasks.keys().next_back().cloned();
        match op {
            Op::Put => {
                let id = TASK_IDS.iter().find(|id| !self.tasks.contains_key(**id))?;
                m.tasks.insert(id.to_string(), format!("{id}@{step}"));
            }
            Op::Update => {
                let id = last?;
                m.tasks.insert(id.clone(), format!("{id}@{step}"));
            }
            Op::Delete => {
                m.tasks.remove(&last?);
            }
            Op::Log => m.log.push_str(&format!("line {step}\n")),
            Op::Report => m.report = Some(step as u64),
            Op::Checkpoint => {}
        }
        Some(m)
    }
}

/// The acknowledged state, and the state with the in-flight operation.
#[derive(Debug, Clone)]
struct Expect {
    acked: Model,
    inflight: Option<Model>,
}

impl Expect {
    fn candidates(&self) -> impl Iterator<Item = &Model> {
        std::iter::once(&self.acked).chain(self.inflight.as_ref())
    }
}

fn opts() -> Options {
    // A small preallocation so that segments grow (and zero-fill) within a
    // workload; the default 1 MiB only makes every state slower to check.
    Options::new("sim")
        .checkpoint_interval(None)
        .checkpoint_on_drop(false)
        .journal_preallocate_bytes(1024)
}

fn open(fs: &SimFs) -> statewal::Result<Store> {
    Store::open_with_fs(opts(), Arc::new(fs.clone()), None)
}

/// Runs `ops` (numbered from `step0`) against `base`, opening a store on
/// `fs` first, until an operation fails: the process died there.
fn run(fs: &SimFs, base: &Model, ops: &[Op], step0: usize) -> Expect {
    let Ok(store) = open(fs) else {
        return Expect {
            acked: base.clone(),
            inflight: None,
        };
    };
    let mut m = base.clone();
    for (i, &op) in ops.iter().enumerate() {
        let step = step0 + i;
        let next = m.after(op, step).expect("workloads are valid");
        if apply(&store, op, &next, step).is_err() {
            return Expect {
                acked: m,
                inflight: Some(next),
            };
        }
        m = next;
    }
    Expect {
        acked: m,
        inflight: None,
    }
}

fn apply(store: &Store, op: Op, next: &Model, step: usize) -> statewal::Result<()> {
    match op {
        Op::Put | Op::Update => {
            let (id, value) = next
                .tasks
                .iter()
                .find(|(_, v)| v.ends_with(&format!("@{step}")))
                .expect("just put");
            let mut t = Task::new(id.clone());
            t.set_description(value.clone());
            store.put_task(t).map(drop)
        }
        Op::Delete => {
            let gone = store
                .list_tasks()
                .unwrap()
                .into_iter()
                .find(|t| !next.tasks.contains_key(t.id()))
                .expect("one goes");
            store.delete_task(gone.id()).map(drop)
        }
        Op::Log => store
            .append_log(SESSION, &format!("line {step}\n"))
            .map(drop),
        Op::Report => store
            .save_report(REPORT, serde_json::json!({ "step": step }))
            .map(drop),
        Op::Checkpoint => store.checkpoint().map(drop),
    }
}

fn store_tasks(store: &Store) -> BTreeMap<String, String> {
    store
        .list_tasks()
        .unwrap()
        .into_iter()
        .map(|t| {
            (
                t.id().to_string(),
                t.description().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The model state the layout files describe, if they agree with each other.
fn layout(fs: &SimFs) -> Result<Model, String> {
    let read = |rel: &str| {
        fs.read(rel)
            .map_err(|e| e.to_string())
            .map(|b| b.map(|b| b.to_vec()))
    };
    let mut files = BTreeMap::new();
    for name in fs.list("tasks").map_err(|e| e.to_string())? {
        if name.starts_with('.') {
            continue; // A temp file an interrupted checkpoint left: never loaded.
        }
        let bytes = read(&format!("tasks/{name}"))?.ok_or("listed file vanished")?;
        let t = Task::from_json(&bytes).map_err(|e| format!("tasks/{name}: {e}"))?;
        files.insert(
            t.id().to_string(),
            t.description().unwrap_or_default().to_string(),
        );
    }
    let state = read("state.json")?.ok_or("no state.json")?;
    let state: PersistedState =
        serde_json::from_slice(&state).map_err(|e| format!("state.json: {e}"))?;
    let in_state: BTreeMap<_, _> = state
        .tasks
        .into_iter()
        .map(|t| {
            (
                t.id().to_string(),
                t.description().unwrap_or_default().to_string(),
            )
        })
        .collect();
    if in_state != files {
        return Err(format!(
            "state.json holds {in_state:?} but tasks/ holds {files:?}"
        ));
    }
    let log = read(&format!("logs/session_{SESSION}.log"))?.unwrap_or_default();
    let log = String::from_utf8(log).map_err(|e| format!("log is not UTF-8: {e}"))?;
    let report = match read(&format!("reports/report_{REPORT}.json"))? {
        None => None,
        Some(b) => {
            let v: serde_json::Value =
                serde_json::from_slice(&b).map_err(|e| format!("report: {e}"))?;
            Some(v["step"].as_u64().ok_or("report without step")?)
        }
    };
    Ok(Model {
        tasks: files,
        log,
        report,
    })
}

/// Checks one crashed filesystem against `exp`; returns the model state it
/// recovered to.
fn check_state(fs: &SimFs, exp: &Expect) -> Result<Model, String> {
    let store = open(fs).map_err(|e| format!("open failed: {e}"))?;
    let tasks = store_tasks(&store);
    if !exp.candidates().any(|m| m.tasks == tasks) {
        return Err(format!("recovered tasks {tasks:?}, expected {exp:?}"));
    }
    // Nobody edits tasks/ by hand here: every task file a crash leaves is
    // one statewal wrote, never taken for an edit (imported or set aside).
    let decisions = &store.recovery_report().unwrap().decisions;
    if !decisions.is_empty() {
        return Err(format!(
            "task files statewal wrote taken for edits: {decisions:?}"
        ));
    }
    store
        .checkpoint()
        .map_err(|e| format!("checkpoint after recovery failed: {e}"))?;
    drop(store);
    let files = layout(fs).map_err(|e| format!("after a checkpoint: {e}"))?;
    let chosen = exp
        .candidates()
        .find(|m| **m == files && m.tasks == tasks)
        .cloned();
    let chosen = chosen
        .ok_or_else(|| format!("after a checkpoint the layout is {files:?}, expected {exp:?}"))?;
    // Power loss right after the checkpoint returned must keep all of it.
    let after = fs.crash_with(|_| Outcome::Lost);
    let store =
        open(&after).map_err(|e| format!("open after a checkpoint and power loss failed: {e}"))?;
    let r = store.recovery_report().unwrap();
    if r.loaded_from != LoadedFrom::StateFile || r.records_replayed != 0 || !r.damage.is_empty() {
        return Err(format!("a checkpoint did not survive power loss: {r:?}"));
    }
    if store_tasks(&store) != chosen.tasks || layout(&after).as_ref() != Ok(&chosen) {
        return Err(format!(
            "after a checkpoint and power loss: {:?}, expected {chosen:?}",
            layout(&after)
        ));
    }
    Ok(chosen)
}

/// Every power-loss outcome to try for `items`.
fn outcomes(items: &[PendingItem], long: bool, rng: &mut u64) -> Vec<Vec<Outcome>> {
    let n = items.len();
    let mut all = Vec::new();
    let subset = |mask: u64| {
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
    if n <= EXHAUSTIVE_ITEMS_MAX {
        all.extend((0..1u64 << n).map(subset));
    } else {
        all.push(subset(u64::MAX));
        all.push(subset(0));
        all.extend((0..SAMPLED_SUBSETS).map(|_| subset(next_rand(rng))));
    }
    for item in items {
        let PendingKind::FileData { bytes, tear_points } = &item.kind else {
            continue;
        };
        let _ = (bytes, long);
        for &at in tear_points {
            for fill in [TearFill::Nothing, TearFill::Zeros, TearFill::Garbage] {
                let torn = Outcome::Torn { at, fill };
                let others = if n > 1 {
                    &[Outcome::Kept, Outcome::Lost][..]
                } else {
                    &[Outcome::Kept][..]
                };
                for &other in others {
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

/// A hash of everything a store could read in `fs`: each directory's
/// existence, and each file's name and bytes.
pub(crate) fn digest(fs: &SimFs) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for dir in std::iter::once("").chain(LAYOUT_DIRS) {
        let exists = fs.is_dir(dir).expect("a fork has no faults");
        (dir, exists).hash(&mut h);
        for name in fs.list(dir).expect("a fork has no faults") {
            let rel = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            name.hash(&mut h);
            fs.read(&rel)
                .expect("listed")
                .map(|b| b.to_vec())
                .hash(&mut h);
        }
        // Segments a merge kept aside (`journal/superseded-<ms>/`).
        let subs = match dir {
            "journal" => fs.list_dirs(dir).expect("a fork has no faults"),
            _ => Vec::new(),
        };
        for sub in subs {
            let sub = format!("{dir}/{sub}");
            sub.hash(&mut h);
            for name in fs.list(&sub).expect("a fork has no faults") {
                name.hash(&mut h);
                fs.read(&format!("{sub}/{name}"))
                    .expect("listed")
                    .map(|b| b.to_vec())
                    .hash(&mut h);
            }
        }
    }
    h.finish()
}

/// The store's directories (`layout::DIRS`, which is private).
const LAYOUT_DIRS: [&str; 6] = ["tasks", "sessions", "logs", "reports", "archive", "journal"];

#[derive(Default)]
struct Tally {
    /// Power-loss outcomes enumerated...
    outcomes: AtomicU64,
    /// ...and the distinct crashed states among them, each checked.
    states: AtomicU64,
    compound: AtomicU64,
    violations: Mutex<Vec<String>>,
    violation_count: AtomicU64,
}

impl Tally {
    fn violation(&self, what: String) {
        self.violation_count.fetch_add(1, Ordering::Relaxed);
        let mut v = self.violations.lock().unwrap();
        if v.len() < VIOLATIONS_SHOWN as usize {
            v.push(what);
        }
    }
}

/// A workload run from a starting filesystem and model.
struct Scenario<'a> {
    label: String,
    start: &'a dyn Fn() -> SimFs,
    base: &'a Model,
    ops: &'a [Op],
    step0: usize,
}

impl Scenario<'_> {
    /// The operation count after running the workload to completion.
    fn ops_count(&self) -> u64 {
        let fs = (self.start)();
        let exp = run(&fs, self.base, self.ops, self.step0);
        assert!(
            exp.inflight.is_none(),
            "{} failed without a fault",
            self.label
        );
        fs.ops()
    }

    /// Kills the workload after every operation index in `points`,
    /// enumerates power loss at each, and checks. Calls `then` with each
    /// crashed state that passed, as it was before the check reopened it.
    fn crash_points(
        &self,
        points: std::ops::RangeInclusive<u64>,
        tally: &Tally,
        then: &mut dyn FnMut(&SimFs, &Model, bool),
    ) {
        let long = long_mode();
        for n in points {
            if tally.violation_count.load(Ordering::Relaxed) >= VIOLATIONS_SHOWN {
                return; // Enough to go on; stop early.
            }
            let fs = (self.start)();
            fs.crash_after_ops(n);
            let exp = run(&fs, self.base, self.ops, self.step0);
            let items = fs.pending();
            let mut rng = SEED ^ n;
            // Outcomes that leave the same bytes behind (a rename kept with or
            // without the creation before it, a tear at 0 and a loss, ...)
            // are one state: it is checked once.
            let mut seen = std::collections::HashSet::new();
            for (k, outcome) in outcomes(&items, long, &mut rng).into_iter().enumerate() {
                let after = fs.crash_with(|i| outcome[i.index]);
                tally.outcomes.fetch_add(1, Ordering::Relaxed);
                if !seen.insert(digest(&after)) {
                    continue;
                }
                tally.states.fetch_add(1, Ordering::Relaxed);
                match check_state(&after.fork(), &exp) {
                    Ok(model) => {
                        let damaged = outcome.iter().any(|o| {
                            matches!(
                                o,
                                Outcome::Torn {
                                    fill: TearFill::Zeros | TearFill::Garbage,
                                    ..
                                }
                            )
                        });
                        then(&after, &model, damaged)
                    }
                    Err(why) => {
                        let items: Vec<_> = items
                            .iter()
                            .map(|i| (&i.description, outcome[i.index]))
                            .collect();
                        let label = &self.label;
                        tally.violation(format!(
                            "{label}, died after op {n}, outcome #{k} {items:?}: {why}"
                        ));
                    }
                }
            }
        }
    }
}

fn label_hash(label: &str) -> u64 {
    label
        .bytes()
        .fold(SEED, |h, b| next_rand(&mut (h ^ b as u64)))
}

fn long_mode() -> bool {
    std::env::var_os("STATEWAL_CRASH_LONG").is_some_and(|v| v != "0")
}

/// Reopens a crashed state, puts a task and checkpoints, dying at every
/// operation of that and losing power again.
fn compound(label: &str, first: &SimFs, model: &Model, tally: &Tally) {
    const PHASE2: [Op; 2] = [Op::Put, Op::Checkpoint];
    let start = || first.fork();
    let s = Scenario {
        label: format!("{label}, recovered, then"),
        start: &start,
        base: model,
        ops: &PHASE2,
        step0: 100,
    };
    let total = s.ops_count();
    tally.compound.fetch_add(1, Ordering::Relaxed);
    s.crash_points(0..=total, tally, &mut |_, _, _| {});
}

/// Every valid workload of 1 to `max` operations, each prefix before the
/// workloads that extend it.
fn workloads(prefix: &[Op], model: &Model, max: usize, out: &mut Vec<Vec<Op>>) {
    if prefix.len() == max {
        return;
    }
    for op in OPS {
        let Some(next) = model.after(op, prefix.len()) else {
            continue;
        };
        let mut ops = prefix.to_vec();
        ops.push(op);
        out.push(ops.clone());
        workloads(&ops, &next, max, out);
    }
}

/// Kills `ops` at every operation of its last step (the earlier crash
/// points are its prefix's, checked as a workload of their own), and gives a
/// deterministic sample of the crashed states the compound treatment.
fn check_workload(ops: &[Op], opened: u64, tally: &Tally) {
    let start = || SimFs::new(SEED);
    let empty = Model::default();
    let scenario = |ops| Scenario {
        label: format!("{ops:?}"),
        start: &start,
        base: &empty,
        ops,
        step0: 0,
    };
    let prefix_ops = match ops.len() {
        1 => opened,
        n => scenario(&ops[..n - 1]).ops_count(),
    };
    let s = scenario(ops);
    let total = s.ops_count();
    let mut seen = [label_hash(&s.label); 2];
    let scale = if long_mode() { 10 } else { 1 };
    s.crash_points(prefix_ops + 1..=total, tally, &mut |fs, m, damaged| {
        let every = if damaged {
            COMPOUND_EVERY_DAMAGED
        } else {
            COMPOUND_EVERY
        } / scale;
        seen[damaged as usize] += 1;
        if seen[damaged as usize] % every == 0 {
            compound(&s.label, fs, m, tally);
        }
    });
}

/// Runs `job(i)` for every `i` in `0..n` on every core, each worker taking
/// the next index as it becomes free.
fn on_all_cores(n: usize, job: &(dyn Fn(usize) + Sync)) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    job(i);
                }
            });
        }
    });
}

#[test]
fn every_crash_point_and_power_loss_outcome_keeps_acknowledged_writes() {
    let started = std::time::Instant::now();
    let max = std::env::var("STATEWAL_CRASH_MAX_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if long_mode() { MAX_OPS + 1 } else { MAX_OPS });
    let tally = Tally::default();
    // Dying while the first store opens, then every workload, spread over
    // the cores.
    let start = || SimFs::new(SEED);
    let empty = Model::default();
    let open_only = Scenario {
        label: "open".into(),
        start: &start,
        base: &empty,
        ops: &[],
        step0: 0,
    };
    let opened = open_only.ops_count();
    open_only.crash_points(0..=opened, &tally, &mut |_, _, _| {});
    let mut all = Vec::new();
    workloads(&[], &Model::default(), max, &mut all);
    on_all_cores(all.len(), &|i| check_workload(&all[i], opened, &tally));
    let states = tally.states.load(Ordering::Relaxed);
    let violations = tally.violation_count.load(Ordering::Relaxed);
    eprintln!(
        "crash states checked: {states}, violations: {violations} ({} workloads, {} power-loss \
         outcomes, {} compound runs, {:.1}s)",
        all.len(),
        tally.outcomes.load(Ordering::Relaxed),
        tally.compound.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    let v = tally.violations.lock().unwrap();
    assert!(
        v.is_empty(),
        "{violations} violations, the first ones:\n{}",
        v.join("\n")
    );
}

// Regression: `Store::open_with_fs` created `journal/`, `tasks/`, ... but
// never synced the state directory, so power loss after the first
// acknowledged put could take the whole `journal/` directory, and the put
// with it.
#[test]
fn acknowledged_put_survives_losing_every_unsynced_directory_entry() {
    let fs = SimFs::new(1);
    let store = open(&fs).unwrap();
    let mut t = Task::new("a");
    t.set_description("kept");
    store.put_task(t).unwrap();
    let after = fs.crash_with(|_| Outcome::Lost);
    drop(store);
    let store = open(&after).unwrap();
    assert_eq!(
        store
            .get_task("a")
            .unwrap()
            .and_then(|t| t.description().map(str::to_string))
            .as_deref(),
        Some("kept")
    );
}

// Regression: the checkpoint skipped a pending log append when the log file
// was already long enough, so a log write torn by power loss (the file at full
// length, zeros or garbage where the text belongs) was never repaired.
#[test]
fn torn_log_write_is_repaired_by_the_next_checkpoint() {
    let start = || SimFs::new(SEED);
    let empty = Model::default();
    let ops = [Op::Log, Op::Checkpoint];
    let s = Scenario {
        label: "log".into(),
        start: &start,
        base: &empty,
        ops: &ops,
        step0: 0,
    };
    let mut torn = 0;
    for n in 0..=s.ops_count() {
        let fs = start();
        fs.crash_after_ops(n);
        let exp = run(&fs, &empty, &ops, 0);
        let log = fs
            .pending()
            .into_iter()
            .find(|i| i.description.starts_with("write logs/"));
        let Some(log) = log else { continue };
        for fill in [TearFill::Zeros, TearFill::Garbage] {
            let torn_at = Outcome::Torn { at: 0, fill };
            let after = fs.crash_with(|i| {
                if i.index == log.index {
                    torn_at
                } else {
                    Outcome::Kept
                }
            });
            check_state(&after, &exp).unwrap();
            torn += 1;
        }
    }
    assert!(torn > 0, "the workload never left a log write unsynced");
}

/// A corrupt `state.json` (bit rot, not a crash: the crash tests never tear
/// it) together with a corrupt task file costs nothing: the backup the
/// checkpoint made plus the journal segments it kept rebuild the state. This
/// is what the checkpoint's rename of `state.json` to a backup is for.
#[test]
fn corrupt_state_json_and_task_file_are_rebuilt_from_the_backup() {
    let fs = SimFs::new(SEED);
    let ops = [Op::Put, Op::Put, Op::Checkpoint, Op::Update, Op::Checkpoint];
    let exp = run(&fs, &Model::default(), &ops, 0);
    assert!(exp.inflight.is_none());
    assert!(fs.corrupt("state.json", |b| b.truncate(b.len() / 2)));
    assert!(fs.corrupt("tasks/a.json", |b| b[0] = b'!'));
    let store = open(&fs).expect("a corrupt state.json does not stop the open");
    assert_eq!(store_tasks(&store), exp.acked.tasks);
}

/// Replays longer than the inline limit (1,024 records) decode on several
/// threads; the records must still apply in journal order.
#[test]
fn a_replay_decoded_on_several_threads_applies_records_in_order() {
    let fs = SimFs::new(SEED);
    let store = open(&fs).unwrap();
    for i in 0..1_500 {
        let mut t = Task::new(format!("t{}", i % 700));
        t.set_description(format!("v{i}"));
        store.put_task(t).unwrap();
    }
    drop(store);
    let store = open(&fs.crash_with(|_| Outcome::Lost)).unwrap();
    assert_eq!(store.recovery_report().unwrap().records_replayed, 1_500);
    let tasks = store_tasks(&store);
    assert_eq!(tasks.len(), 700);
    for (i, id) in (800..1_500).map(|i| (i, format!("t{}", i % 700))) {
        assert_eq!(tasks[&id], format!("v{i}"), "{id}");
    }
}
