//! `statewal migrate` on a committed directory in the original TypeScript
//! server's layout (`tests/fixtures/ts-server-v0/`): no `version`, UUID ids,
//! camelCase fields, millisecond backups, `session_<id>_<ms>.log`, no
//! journal. Guards against a migration, or the checkpoints after it, that
//! drops a field the original server wrote, and against a dry run or a
//! rollback that changes the wrong bytes.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ts-server-v0");

fn run(dir: &Path, args: &[&str]) -> Output {
    crate::util::run_statewal(dir, args, "", &[])
}

fn check_ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} exited with {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Every file under `root`, relative path and bytes, sorted.
fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn copy_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (rel, bytes) in snapshot(Path::new(FIXTURE)) {
        let to = dir.path().join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, bytes).unwrap();
    }
    dir
}

fn fixture_tasks() -> Vec<Value> {
    let state: Value =
        serde_json::from_slice(&std::fs::read(Path::new(FIXTURE).join("state.json")).unwrap())
            .unwrap();
    state["tasks"].as_array().unwrap().clone()
}

/// Checks that `after` holds every task of the fixture with every field and
/// value (statewal may only add fields).
fn check_tasks_kept(after: &[Value], what: &str) {
    let expected = fixture_tasks();
    assert_eq!(after.len(), expected.len(), "{what}: task count");
    for want in &expected {
        let id = want["id"].as_str().unwrap();
        let got = after
            .iter()
            .find(|t| t["id"] == id)
            .unwrap_or_else(|| panic!("{what}: task {id} is missing"));
        if let Some(path) = statewal::__internal::migrate::first_loss(want, got, "") {
            panic!("{what}: task {id} lost {path}:\nwant {want:#}\ngot  {got:#}");
        }
    }
}

// Guards: a dry run reports the migration and writes nothing at all.
#[test]
fn dry_run_changes_nothing() {
    let dir = copy_fixture();
    let before = snapshot(dir.path());
    let out = run(dir.path(), &["migrate", "--dry-run", "--json"]);
    let report: Value = serde_json::from_str(&check_ok(&out, "migrate --dry-run")).unwrap();
    assert_eq!(report["from"], "0");
    assert_eq!(report["to"], statewal::STATE_VERSION);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["tasks"], 3);
    let human = check_ok(
        &run(dir.path(), &["migrate", "--dry-run"]),
        "migrate --dry-run",
    );
    assert!(human.contains("would migrate"), "{human}");
    // Regression (found by review): the dry run took the directory lock,
    // which created `.statewal.lock` in the original server's directory.
    assert_eq!(snapshot(dir.path()), before, "a dry run wrote something");
}

// Guards: migrate keeps the original and a log, every task keeps every
// field through migrate, checkpoint and list, the original's other files are
// untouched, and rollback brings back state.json's exact bytes.
#[test]
fn migrate_checkpoint_list_rollback() {
    let dir = copy_fixture();
    let original = std::fs::read(dir.path().join("state.json")).unwrap();
    let out = check_ok(&run(dir.path(), &["migrate", "--json"]), "migrate");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["backup"], "state.pre-migration.backup.json");
    let log = format!("state.migration-v0-to-v{}.log", statewal::STATE_VERSION);
    assert_eq!(report["log"], log.as_str());
    assert_eq!(
        std::fs::read(dir.path().join("state.pre-migration.backup.json")).unwrap(),
        original
    );
    let log_text = std::fs::read_to_string(dir.path().join(&log)).unwrap();
    assert!(log_text.contains("ts-server-to-statewal"), "{log_text}");

    let migrated = std::fs::read(dir.path().join("state.json")).unwrap();
    let state =
        statewal::__internal::layout::parse_state(&migrated).expect("migrated state.json loads");
    assert_eq!(state.version, statewal::STATE_VERSION);
    assert_eq!(state.sessions.len(), 2);
    let tasks: Vec<Value> = state
        .tasks
        .iter()
        .map(|t| serde_json::to_value(t).unwrap())
        .collect();
    check_tasks_kept(&tasks, "migrated state.json");

    // Migrating again finds nothing to do.
    let again = check_ok(&run(dir.path(), &["migrate"]), "second migrate");
    assert!(again.contains("nothing to migrate"), "{again}");

    check_ok(&run(dir.path(), &["checkpoint"]), "checkpoint");
    let listed =
        crate::util::json_lines(check_ok(&run(dir.path(), &["list", "--json"]), "list").as_bytes());
    check_tasks_kept(&listed, "list --json");
    let after_ckpt = std::fs::read(dir.path().join("state.json")).unwrap();
    let state = statewal::__internal::layout::parse_state(&after_ckpt)
        .expect("checkpointed state.json loads");
    let tasks: Vec<Value> = state
        .tasks
        .iter()
        .map(|t| serde_json::to_value(t).unwrap())
        .collect();
    check_tasks_kept(&tasks, "state.json after checkpoint");
    assert_eq!(state.sessions.len(), 2);

    // The original server's files are left as they were.
    for rel in [
        "state.backup.1704103200000.json",
        "state.backup.1704186600000.json",
        "logs/session_b61c0a52-1e3d-4f7a-9c88-2a4d5e6f7081_1704103500000.log",
        "reports/report_3f8a2c1e-5b7d-4e9f-a1c2-7d6e5f4a3b21.json",
        "tasks/9c4d7e2b-0a1f-4c3d-8e5b-6f7a8b9c0d12.json",
    ] {
        assert_eq!(
            std::fs::read(dir.path().join(rel)).unwrap(),
            std::fs::read(Path::new(FIXTURE).join(rel)).unwrap(),
            "{rel} changed"
        );
    }

    check_ok(&run(dir.path(), &["migrate", "--rollback"]), "rollback");
    assert_eq!(
        std::fs::read(dir.path().join("state.json")).unwrap(),
        original
    );
}

// Guards: Store::open migrates an unversioned state.json by itself instead of
// taking it for corrupt and falling back to tasks/ (which loses sessions).
#[test]
fn checkpoint_migrates_on_open() {
    let dir = copy_fixture();
    check_ok(&run(dir.path(), &["checkpoint"]), "checkpoint");
    assert!(dir.path().join("state.pre-migration.backup.json").exists());
    let state = statewal::__internal::layout::parse_state(
        &std::fs::read(dir.path().join("state.json")).unwrap(),
    )
    .expect("state.json loads");
    assert_eq!(state.sessions.len(), 2);
    let tasks: Vec<Value> = state
        .tasks
        .iter()
        .map(|t| serde_json::to_value(t).unwrap())
        .collect();
    check_tasks_kept(&tasks, "state.json after an open that migrated");
}
