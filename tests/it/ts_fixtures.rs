//! The fixtures of the original TypeScript server's directories (issue 9,
//! part 8) are what their READMEs say they are: `ts-server-v0-live/` (the
//! server killed mid-stream), `ts-server-v0-zero-state/` (killed mid-save)
//! and `ts-after-statewal/` (the server's turn on a statewal directory).
//!
//! These tests guard the fixtures, not statewal: a regenerated or hand-edited
//! fixture that lost the behaviour it exists for (a task file no longer newer
//! than `state.json`'s copy, a "truncated" backup that parses, a journal with
//! nothing past the checkpoint, a README table that no longer follows from
//! the files) fails here before any interop test can pass for the wrong
//! reason. The expected outcome per task is computed from the files with the
//! merge rule and compared with each README's table.

use crate::util::*;
use serde_json::{Map, Value};
use statewal::__internal::journal::reader::{Piece, scan_segment};
use statewal::__internal::journal::record::id_hex;
use statewal::__internal::migrate::map_status;
use statewal::Store;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The TS server's task keys, in the order it writes them; later fields follow.
pub const TS_TASK_KEYS: [&str; 11] = [
    "id",
    "description",
    "tool",
    "status",
    "created_at",
    "updated_at",
    "logs",
    "started_at",
    "completed_at",
    "result",
    "error",
];
/// The TS server's log-entry keys, in the order it writes them.
pub const TS_LOG_KEYS: [&str; 7] = [
    "timestamp",
    "level",
    "type",
    "prefix",
    "message",
    "metadata",
    "data",
];
/// The TS server's `PersistedState`, in its order.
const TS_STATE_KEYS: [&str; 4] = ["tasks", "sessions", "metrics", "last_saved"];
/// What statewal's `state.json` has and the TS server's never does.
const STATEWAL_ONLY: [&str; 5] = [
    "version",
    "journal_seq",
    "checksum",
    "store_id",
    "task_versions",
];

pub const LIVE: &str = "ts-server-v0-live";
const ZERO: &str = "ts-server-v0-zero-state";
const AFTER: &str = "ts-after-statewal";

pub fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A copy of a fixture in a temporary directory: tests never write into
/// `tests/fixtures/`.
pub fn fixture_copy(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir(name), tmp.path());
    tmp
}

/// Parses a JSON file as statewal's doors do (a repeated key is refused).
fn parse(path: &Path) -> Result<Value, serde_json::Error> {
    statewal::__internal::json::parse(&std::fs::read(path).unwrap())
}

fn object(path: &Path) -> Map<String, Value> {
    match parse(path) {
        Ok(Value::Object(m)) => m,
        other => panic!("{}: not a JSON object: {other:?}", path.display()),
    }
}

fn keys(m: &Map<String, Value>) -> Vec<&str> {
    m.keys().map(String::as_str).collect()
}

/// Every file under `dir`, relative to it.
fn files(dir: &Path) -> BTreeSet<String> {
    tree(dir)
        .into_iter()
        .filter(|p| dir.join(p).is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// The tasks in a state file, by id.
fn state_tasks(state: &Map<String, Value>) -> BTreeMap<String, Value> {
    state["tasks"]
        .as_array()
        .expect("a tasks array")
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_string(), t.clone()))
        .collect()
}

/// The task files in `dir/tasks/`, by id.
fn task_files(dir: &Path) -> BTreeMap<String, Value> {
    std::fs::read_dir(dir.join("tasks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let t = Value::Object(object(&p));
            let id = t["id"].as_str().unwrap().to_string();
            assert_eq!(
                p.file_name().unwrap().to_str().unwrap(),
                format!("{id}.json")
            );
            (id, t)
        })
        .collect()
}

/// Checks that the TS server's keys come first in `m`, in its order, and
/// the fields set later come after all of them.
#[track_caller]
pub fn check_ts_order(m: &Map<String, Value>, order: &[&str], what: &str) {
    let ks = keys(m);
    let known: Vec<&str> = ks.iter().copied().filter(|k| order.contains(k)).collect();
    let want: Vec<&str> = order.iter().copied().filter(|k| ks.contains(k)).collect();
    assert_eq!(known, want, "{what}: keys out of the TS order: {ks:?}");
    assert_eq!(
        &ks[..known.len()],
        &known[..],
        "{what}: a later field before one of the TS server's: {ks:?}"
    );
}

/// `2025-06-10T09:12:05.000Z`: what `Date.prototype.toISOString` writes.
pub fn is_js_time(s: &str) -> bool {
    let pattern = b"dddd-dd-ddTdd:dd:dd.dddZ";
    s.len() == pattern.len()
        && s.bytes().zip(pattern).all(|(c, p)| match p {
            b'd' => c.is_ascii_digit(),
            p => c == *p,
        })
}

/// Checks a task as the TS server writes it: key order, log-entry key
/// order, JS timestamps, a status it maps.
#[track_caller]
fn check_ts_task(t: &Value, what: &str) {
    let m = t.as_object().unwrap();
    check_ts_order(m, &TS_TASK_KEYS, what);
    for k in ["created_at", "updated_at", "started_at", "completed_at"] {
        if let Some(v) = m.get(k) {
            assert!(is_js_time(v.as_str().unwrap()), "{what}: {k} {v}");
        }
    }
    let status = m["status"].as_str().unwrap();
    assert!(map_status(status).is_some(), "{what}: status {status}");
    for (i, e) in m["logs"].as_array().unwrap().iter().enumerate() {
        let e = e.as_object().unwrap();
        check_ts_order(e, &TS_LOG_KEYS, &format!("{what} log {i}"));
        assert!(
            is_js_time(e["timestamp"].as_str().unwrap()),
            "{what} log {i}"
        );
    }
}

fn updated(t: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(t.get("updated_at")?.as_str()?, &Rfc3339).ok()
}

fn logs_len(t: &Value) -> usize {
    t["logs"].as_array().map_or(0, Vec::len)
}

/// Issue 9's rule before its tie-break: the later `updated_at` (a time
/// beats none), then the longer `logs`.
fn newness(a: &Value, b: &Value) -> Ordering {
    updated(a)
        .cmp(&updated(b))
        .then(logs_len(a).cmp(&logs_len(b)))
}

/// Which of two copies of a task the rule keeps: `own` only if it is newer,
/// else `foreign` (the later writer wins a full tie). Returns the copy and
/// whether it is `own`.
fn pick<'a>(own: &'a Value, foreign: &'a Value) -> (&'a Value, bool) {
    match newness(own, foreign) {
        Ordering::Greater => (own, true),
        _ => (foreign, false),
    }
}

/// The merge of two sides by the rule, per task: the kept copy and its label
/// (`same` when both sides hold equal copies).
fn merge<'a>(
    own: &'a BTreeMap<String, Value>,
    foreign: &'a BTreeMap<String, Value>,
    labels: [&'static str; 3],
) -> BTreeMap<String, (&'static str, &'a Value)> {
    let [own_label, foreign_label, same] = labels;
    let ids: BTreeSet<&String> = own.keys().chain(foreign.keys()).collect();
    ids.into_iter()
        .map(|id| {
            let kept = match (own.get(id), foreign.get(id)) {
                (Some(o), Some(f)) if o == f => (same, f),
                (Some(o), Some(f)) => match pick(o, f) {
                    (t, true) => (own_label, t),
                    (t, false) => (foreign_label, t),
                },
                (Some(o), None) => (own_label, o),
                (None, Some(f)) => (foreign_label, f),
                (None, None) => unreachable!(),
            };
            (id.clone(), kept)
        })
        .collect()
}

/// The rows of a README table whose first cell is a task id in backquotes:
/// id → its cells.
fn readme_table(readme: &str) -> BTreeMap<String, Vec<String>> {
    readme
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<String> = l
                .trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            (cells[0].trim_matches('`').to_string(), cells)
        })
        .collect()
}

/// Checks a README table's "kept" (fourth) and "status" (fifth) columns
/// against the merge computed from the files.
#[track_caller]
fn check_readme_table(readme: &str, merged: &BTreeMap<String, (&str, &Value)>) {
    let table = readme_table(readme);
    assert_eq!(
        table.keys().collect::<Vec<_>>(),
        merged.keys().collect::<Vec<_>>(),
        "the README's table lists every task, and only those"
    );
    for (id, (label, t)) in merged {
        let row = &table[id];
        assert_eq!(row[3], *label, "{id}: the kept copy");
        let status = map_status(t["status"].as_str().unwrap()).unwrap();
        assert_eq!(row[4], status, "{id}: the status after the merge");
    }
}

fn readme(name: &str) -> String {
    std::fs::read_to_string(fixture_dir(name).join("README.md")).unwrap()
}

/// The text of the README's list item that names `name`.
fn readme_item<'a>(readme: &'a str, name: &str) -> &'a str {
    let at = readme
        .find(name)
        .unwrap_or_else(|| panic!("the README does not name {name}"));
    let rest = &readme[at..];
    let end = ["\n  - ", "\n- ", "\n\n"]
        .iter()
        .filter_map(|m| rest.find(m))
        .min()
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The `state.backup.<ms>.json` files of a directory, by name, and the
/// backups whose stamp is not 13 digits (statewal's own naming).
fn ts_backups(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    backups(dir).into_iter().partition(|p| {
        let name = p.file_name().unwrap().to_str().unwrap();
        let stamp = &name["state.backup.".len()..name.len() - ".json".len()];
        stamp.len() == 13 && stamp.bytes().all(|b| b.is_ascii_digit())
    })
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| {
            g.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        })
}

#[test]
fn every_fixture_file_is_in_its_readme() {
    for name in [LIVE, ZERO, AFTER] {
        let dir = fixture_dir(name);
        let docs =
            readme(name) + &std::fs::read_to_string(dir.join("GENERATE.md")).unwrap_or_default();
        for f in files(&dir) {
            if f != "README.md" && f != "GENERATE.md" {
                assert!(docs.contains(&f), "{name}/README.md does not name {f}");
            }
        }
    }
}

#[test]
fn live_state_and_backups_are_the_ts_servers_unversioned_files() {
    let dir = fixture_dir(LIVE);
    let state = object(&dir.join("state.json"));
    assert_eq!(keys(&state), TS_STATE_KEYS);
    let saved = OffsetDateTime::parse(state["last_saved"].as_str().unwrap(), &Rfc3339).unwrap();
    let current = state_tasks(&state);

    let (backups, other) = ts_backups(&dir);
    assert!(other.is_empty(), "only the TS naming: {other:?}");
    assert!(backups.len() <= 10, "the TS server keeps 10");
    let readme = readme(LIVE);
    let (mut empty, mut truncated, mut valid) = (0, 0, 0);
    for b in &backups {
        let name = b.file_name().unwrap().to_str().unwrap();
        let bytes = std::fs::read(b).unwrap();
        let said = readme_item(&readme, name);
        let class = match statewal::__internal::json::parse(&bytes) {
            _ if bytes.is_empty() => {
                empty += 1;
                "0 bytes"
            }
            Err(e) => {
                assert!(e.is_eof(), "{name}: cut mid-JSON, not malformed: {e}");
                assert_eq!(bytes[0], b'{', "{name}");
                truncated += 1;
                "truncated"
            }
            Ok(Value::Object(old)) => {
                valid += 1;
                assert_eq!(keys(&old), TS_STATE_KEYS, "{name}: unversioned");
                let at = OffsetDateTime::parse(old["last_saved"].as_str().unwrap(), &Rfc3339);
                assert!(at.unwrap() < saved, "{name} is older than state.json");
                // An older state: no copy in it is newer than state.json's.
                for (id, t) in state_tasks(&old) {
                    check_ts_task(&t, &format!("{name}: {id}"));
                    if let Some(now) = current.get(&id) {
                        assert_ne!(newness(&t, now), Ordering::Greater, "{name}: {id}");
                    }
                }
                "valid"
            }
            Ok(other) => panic!("{name}: {other}"),
        };
        assert!(
            said.contains(class),
            "the README calls {name} {said:?}, it is {class}"
        );
    }
    assert!(
        empty >= 1 && truncated >= 1 && valid >= 2,
        "{empty} {truncated} {valid}"
    );
}

#[test]
fn live_task_files_lead_state_json_as_the_readme_says() {
    let dir = fixture_dir(LIVE);
    let state = state_tasks(&object(&dir.join("state.json")));
    let files = task_files(&dir);
    // The behaviours the fixture exists for, found in the files.
    let only_files = files.keys().filter(|id| !state.contains_key(*id)).count();
    let only_state = state.keys().filter(|id| !files.contains_key(*id)).count();
    let both: Vec<(&Value, &Value)> = state
        .iter()
        .filter_map(|(id, s)| Some((s, files.get(id)?)))
        .collect();
    let later_and_longer = both
        .iter()
        .filter(|(s, f)| updated(f) > updated(s) && logs_len(f) > logs_len(s))
        .count();
    let same_time_longer = both
        .iter()
        .filter(|(s, f)| updated(f) == updated(s) && logs_len(f) > logs_len(s))
        .count();
    assert!(
        only_files >= 1 && only_state >= 1,
        "{only_files} {only_state}"
    );
    assert!(later_and_longer >= 1 && same_time_longer >= 1);
    assert!(
        both.iter().all(|(s, f)| newness(s, f) != Ordering::Greater),
        "state.json lags: it never holds the newer copy"
    );
    let merged = merge(&state, &files, ["state.json", "tasks/", "both (same)"]);
    check_readme_table(&readme(LIVE), &merged);
}

#[test]
fn live_files_keep_the_ts_servers_key_order_times_and_statuses() {
    let dir = fixture_dir(LIVE);
    let state = object(&dir.join("state.json"));
    let mut statuses = BTreeSet::new();
    let mut log_keys = BTreeSet::new();
    let mut task_keys = BTreeSet::new();
    let tasks = state_tasks(&state).into_values().map(|t| ("state.json", t));
    let files = task_files(&dir).into_values().map(|t| ("tasks/", t));
    for (from, t) in tasks.chain(files) {
        check_ts_task(&t, &format!("{from} {}", t["id"]));
        assert!(is_uuid(t["id"].as_str().unwrap()), "{}", t["id"]);
        statuses.insert(t["status"].as_str().unwrap().to_string());
        task_keys.extend(t.as_object().unwrap().keys().cloned());
        for e in t["logs"].as_array().unwrap() {
            log_keys.extend(e.as_object().unwrap().keys().cloned());
        }
    }
    for s in ["pending", "running", "completed", "failed", "cancelled"] {
        assert!(statuses.contains(s), "no task is {s}: {statuses:?}");
    }
    assert_eq!(map_status("running"), Some("in_progress"));
    for k in ["toolInvocations", "progress", "result", "error"] {
        assert!(task_keys.contains(k), "no task has {k}");
    }
    for k in TS_LOG_KEYS {
        assert!(log_keys.contains(k), "no log entry has {k}");
    }
    // Sessions as the TS server keeps them: `sessionId`, no `id`.
    let sessions = state["sessions"].as_array().unwrap();
    assert!(!sessions.is_empty());
    for s in sessions {
        assert!(s.get("id").is_none() && s["sessionId"].is_string(), "{s}");
    }
    // Its task files are `JSON.stringify(task, null, 2)`: two-space indent,
    // no newline at the end (what serde_json's pretty printer writes too).
    for (id, t) in task_files(&dir) {
        let text = std::fs::read_to_string(dir.join("tasks").join(format!("{id}.json"))).unwrap();
        assert_eq!(text, serde_json::to_string_pretty(&t).unwrap(), "{id}");
    }
}

#[test]
fn live_logs_and_reports_have_the_ts_servers_names() {
    let dir = fixture_dir(LIVE);
    let mut stamps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in std::fs::read_dir(dir.join("logs")).unwrap() {
        let name = f.unwrap().file_name().into_string().unwrap();
        let inner = name
            .strip_prefix("session_")
            .and_then(|n| n.strip_suffix(".log"))
            .unwrap_or_else(|| panic!("{name}"));
        let (session, ms) = inner.rsplit_once('_').unwrap();
        assert!(is_uuid(session), "{name}");
        assert!(
            ms.len() == 13 && ms.bytes().all(|b| b.is_ascii_digit()),
            "{name}"
        );
        stamps.entry(session.into()).or_default().insert(ms.into());
    }
    assert!(stamps.len() >= 2, "two sessions");
    assert!(stamps.values().any(|s| s.len() >= 2), "one with two files");
    let state = state_tasks(&object(&dir.join("state.json")));
    let tasks = task_files(&dir);
    let mut n = 0;
    for f in std::fs::read_dir(dir.join("reports")).unwrap() {
        let p = f.unwrap().path();
        let stem = p.file_stem().unwrap().to_str().unwrap().to_string();
        assert!(
            is_uuid(&stem),
            "reports/<uuid>.json, not report_<uuid>.json: {stem}"
        );
        let r = object(&p);
        let task = r["taskId"].as_str().unwrap();
        assert!(
            state.contains_key(task) || tasks.contains_key(task),
            "{stem}"
        );
        n += 1;
    }
    assert!(n >= 1);
}

#[test]
fn zero_state_is_the_live_fixture_killed_mid_save() {
    let (live, zero) = (fixture_dir(LIVE), fixture_dir(ZERO));
    assert_eq!(std::fs::metadata(zero.join("state.json")).unwrap().len(), 0);
    let (backups, _) = ts_backups(&zero);
    let newest = backups.last().unwrap();
    let state = object(newest);
    assert_eq!(keys(&state), TS_STATE_KEYS, "valid and unversioned");
    assert_eq!(
        std::fs::read(newest).unwrap(),
        std::fs::read(live.join("state.json")).unwrap()
    );
    let newest = newest.file_name().unwrap().to_str().unwrap();
    for f in files(&zero) {
        if !["README.md", "state.json", newest].contains(&f.as_str()) {
            assert_eq!(
                std::fs::read(zero.join(&f)).unwrap(),
                std::fs::read(live.join(&f)).unwrap(),
                "{f} as in the live fixture"
            );
        }
    }
    assert_eq!(files(&zero).len(), files(&live).len() + 1);
    // With state.json empty, the newest valid backup stands in for it: the
    // outcome is the live fixture's table.
    let (backup, files) = (state_tasks(&state), task_files(&zero));
    let merged = merge(&backup, &files, ["state.json", "tasks/", "both (same)"]);
    check_readme_table(&readme(LIVE), &merged);
}

/// `ts-after-statewal`: the TS server's `state.json`, the base checkpoint
/// (the one `state.backup.<ms>.json`, statewal's `state.json` as the TS
/// server backed it up) and its name.
fn after_files() -> (Map<String, Value>, Map<String, Value>, PathBuf) {
    let dir = fixture_dir(AFTER);
    let (ts, _) = ts_backups(&dir);
    assert_eq!(ts.len(), 1, "one TS-named backup: {ts:?}");
    (
        object(&dir.join("state.json")),
        object(&ts[0]),
        ts[0].clone(),
    )
}

#[test]
fn ts_after_statewal_state_json_is_the_ts_servers_and_its_backup_statewals() {
    let dir = fixture_dir(AFTER);
    let (state, base, _) = after_files();
    assert_eq!(keys(&state), TS_STATE_KEYS);
    for k in STATEWAL_ONLY {
        assert!(base.contains_key(k), "the base checkpoint has {k}");
    }
    let base_seq = base["journal_seq"].as_u64().unwrap();
    let (_, own) = ts_backups(&dir);
    assert!(!own.is_empty(), "statewal's own backups are there too");
    for b in own {
        let old = object(&b);
        assert_eq!(old["store_id"], base["store_id"], "{}", b.display());
        assert!(
            old["journal_seq"].as_u64().unwrap() < base_seq,
            "{}",
            b.display()
        );
    }
    // The TS server's files end without a newline, statewal's with one, and
    // statewal's are its checkpoint's copies.
    let base_tasks = state_tasks(&base);
    for (id, t) in task_files(&dir) {
        let text = std::fs::read_to_string(dir.join("tasks").join(format!("{id}.json"))).unwrap();
        if text.ends_with('\n') {
            assert_eq!(Some(&t), base_tasks.get(&id), "{id}: statewal's file");
        } else {
            assert_ne!(Some(&t), base_tasks.get(&id), "{id}: the TS server's file");
        }
        check_ts_task(&t, &id);
    }
    for (id, t) in state_tasks(&state) {
        check_ts_task(&t, &format!("state.json {id}"));
    }
}

#[test]
fn ts_after_statewal_journal_runs_past_the_backed_up_checkpoint() {
    let dir = fixture_dir(AFTER);
    let (_, base, _) = after_files();
    let base_seq = base["journal_seq"].as_u64().unwrap();
    let mut seqs = Vec::new();
    for seg in segments(&dir) {
        let bytes = std::fs::read(&seg).unwrap();
        let scan = scan_segment(&bytes);
        let header = scan.header.as_ref().expect("a valid header");
        assert_eq!(
            header.store_id.map(|i| id_hex(&i)).as_deref(),
            base["store_id"].as_str(),
            "{}",
            seg.display()
        );
        for p in &scan.pieces {
            match p {
                Piece::Record { record, .. } => seqs.push(record.seq),
                Piece::Marker { .. } => {}
                other => panic!("{}: {other:?}", seg.display()),
            }
        }
        assert_ne!(
            bytes.last(),
            Some(&0),
            "the zeros after the last marker are cut"
        );
    }
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(
        seqs[0] <= base_seq + 1,
        "no gap after the checkpoint: {seqs:?}"
    );
    let past = seqs.iter().filter(|s| **s > base_seq).count();
    assert_eq!(
        past, 6,
        "acknowledged records past the checkpoint: {seqs:?}"
    );
}

/// statewal's side alone: the base checkpoint put back as `state.json`,
/// with every file the TS server wrote taken away, opened read-only.
fn statewal_side() -> BTreeMap<String, Value> {
    let (_, base, base_path) = after_files();
    let tmp = fixture_copy(AFTER);
    let dir = tmp.path();
    std::fs::rename(
        dir.join(base_path.file_name().unwrap()),
        dir.join("state.json"),
    )
    .unwrap();
    std::fs::remove_dir_all(dir.join("tasks")).unwrap();
    let store = Store::open(opts(dir).read_only(true)).unwrap();
    let rec = store.recovery_report().unwrap();
    assert!(rec.damage.is_empty(), "{:?}", rec.damage);
    assert_eq!(rec.checkpoint_seq, base["journal_seq"].as_u64().unwrap());
    assert_eq!(rec.records_replayed, 6);
    store
        .list_tasks()
        .unwrap()
        .into_iter()
        .map(|t| (t.id().to_string(), serde_json::to_value(&t).unwrap()))
        .collect()
}

#[test]
fn ts_after_statewal_outcome_per_task_is_the_readmes() {
    let dir = fixture_dir(AFTER);
    let (state, base, _) = after_files();
    let base = state_tasks(&base);
    let own = statewal_side();
    // The TS side: its state.json and tasks/, the later files winning ties.
    let ts_state = state_tasks(&state);
    let ts_files = task_files(&dir);
    let foreign: BTreeMap<String, Value> = merge(&ts_state, &ts_files, ["", "", ""])
        .into_iter()
        .map(|(id, (_, t))| (id, t.clone()))
        .collect();
    assert!(
        ts_state
            .iter()
            .any(|(id, t)| newness(&ts_files[id], t) == Ordering::Greater),
        "a TS task file is ahead of its state.json"
    );

    // What each side did since the checkpoint, found in the files.
    let changed = |side: &BTreeMap<String, Value>, id: &str| side.get(id) != base.get(id);
    let status_changes = base
        .iter()
        .filter(|(id, b)| {
            foreign
                .get(*id)
                .is_some_and(|f| f["status"] != b["status"] && newness(f, b) == Ordering::Greater)
        })
        .count();
    assert_eq!(status_changes, 5, "the TS server's 5 status changes");
    let statewal_only_newer = base.keys().any(|id| {
        !changed(&foreign, id)
            && own
                .get(id)
                .is_some_and(|o| changed(&own, id) && updated(o) > updated(&base[id]))
    });
    assert!(statewal_only_newer, "a task only statewal changed, later");
    let both = base
        .keys()
        .filter(|id| changed(&foreign, id) && changed(&own, id) && own.contains_key(*id))
        .collect::<Vec<_>>();
    assert!(!both.is_empty(), "a task both changed");
    for id in both {
        assert_ne!(
            updated(&own[id]),
            updated(&foreign[id]),
            "{id}: both changed it; updated_at decides"
        );
    }
    for side in [&own, &foreign] {
        assert!(
            base.keys().any(|id| !side.contains_key(id)),
            "each side deleted one"
        );
        assert!(
            side.keys().any(|id| !base.contains_key(id)),
            "each side created one"
        );
    }

    let merged = merge(&own, &foreign, ["statewal", "TS", "both (same)"]);
    check_readme_table(&readme(AFTER), &merged);
}
