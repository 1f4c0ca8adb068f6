//! Reading never creates, `--read-only`, and a demo that writes only into a
//! directory it made, through the `statewal` binary.

use crate::read_only::snapshot;
use crate::util::*;
use statewal::Store;
use std::path::Path;
use std::process::Output;

/// The commands that only read, with the arguments they need.
const READS: &[&[&str]] = &[
    &["list"],
    &["list", "--json"],
    &["get-task", "a"],
    &["show", "a"],
    &["metrics"],
    &["verify"],
    &["dump-journal"],
    &["backups"],
    &["clean", "--older-than", "1d", "--dry-run"],
    &["migrate", "--dry-run"],
];

#[track_caller]
fn check_no_store(out: &Output, dir: &Path, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
    assert!(
        stderr.contains(&format!("no statewal store at {}", dir.display())),
        "{what}: {stderr}"
    );
}

// Guards: `statewal --dir /tmp/tpyo list` created a store and printed
// "0 tasks"; `--dir /nonexistent/x/y list` created `/nonexistent`. The same
// for get-task, show and metrics; verify, dump-journal and backups said
// nothing was wrong with an empty directory.
#[test]
fn reads_of_a_missing_or_empty_directory_create_nothing() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("tpyo/x/y");
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for args in READS {
        let what = args.join(" ");
        check_no_store(&run_statewal(&missing, args, "", &[]), &missing, &what);
        assert!(
            !root.path().join("tpyo").exists(),
            "{what} created a directory"
        );
        check_no_store(&run_statewal(&empty, args, "", &[]), &empty, &what);
        assert!(
            tree(&empty).is_empty(),
            "{what} wrote into an empty directory"
        );
    }
    // health reports a missing directory (exit 1) and creates nothing either.
    let out = run_statewal(&missing, &["health"], "", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !root.path().join("tpyo").exists(),
        "health created a directory"
    );
    let out = run_statewal(&empty, &["health"], "", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        tree(&empty).is_empty(),
        "health wrote into an empty directory"
    );
}

// Guards: `list`, `get-task`, `show` and `metrics` took the directory lock,
// so they failed while `serve` (or any writer) had the store open, and they
// could write (cut a torn tail) into a store they only read.
#[test]
fn reads_work_beside_a_writer_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open(opts(dir.path())).unwrap();
    put_all(&writer, &ids("a", 3));
    writer.put_task(task("a")).unwrap(); // For get-task and show.
    let before = snapshot(dir.path());
    // Regression (found by review): `migrate --dry-run` took the lock, and
    // failed beside a writer. Only the migration itself wants the directory
    // closed.
    for args in READS {
        let out = run_statewal(dir.path(), args, "", &[]);
        let what = args.join(" ");
        assert!(
            out.status.success(),
            "{what} beside a writer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run_statewal(dir.path(), &["list", "--json"], "", &[]);
    assert_eq!(json_lines(&out.stdout).len(), 4);
    assert_eq!(snapshot(dir.path()), before, "a read changed the directory");
    drop(writer);
}

// Guards: `--read-only` did not exist; with it, every command that would
// change the store must refuse, before or after the subcommand (a global
// flag), and change nothing.
#[test]
fn read_only_flag_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(opts(dir.path())).unwrap();
    store.put_task(task("a")).unwrap();
    store.checkpoint().unwrap();
    store.put_task(task("c")).unwrap();
    store.shutdown().unwrap(); // The second checkpoint makes a backup.
    let backup = backups(dir.path()).pop().expect("a backup to restore");
    let backup = backup.file_name().unwrap().to_str().unwrap().to_string();
    let before = snapshot(dir.path());
    let task_json = r#"{"id":"b","status":"pending"}"#;
    for args in [
        &["--read-only", "put-task"][..],
        &["put-task", "--read-only"],
        &["delete-task", "a", "--read-only"],
        &["--read-only", "checkpoint"],
        &["recover", "--read-only"],
        &["migrate", "--read-only"],
        &["restore", &backup, "--read-only"],
        &["clean", "--older-than", "1d", "--read-only"],
    ] {
        // Only put-task reads standard input (one that exits first would
        // break the pipe under the helper).
        let stdin = if args.contains(&"put-task") {
            task_json
        } else {
            ""
        };
        let out = run_statewal(dir.path(), args, stdin, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("read-only"), "{args:?}: {stderr}");
    }
    let out = run_statewal(dir.path(), &["list", "--read-only"], "", &[]);
    assert!(out.status.success());
    assert_eq!(snapshot(dir.path()), before, "a --read-only command wrote");
}

/// `statewal demo` with `STATE_PATH` set and no `--dir`.
fn demo_with_state_path(state_path: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_statewal"))
        .arg("demo")
        .args(args)
        .env("STATE_PATH", state_path)
        .env_remove("RUST_LOG")
        .env_remove("DEBUG")
        .output()
        .unwrap()
}

/// The directory the demo says it runs in.
fn demo_dir(out: &Output) -> std::path::PathBuf {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("statewal demo: state directory "))
        .unwrap_or_else(|| panic!("the demo names its directory: {stdout}"));
    line.into()
}

// Guards: `demo` wrote its 300 demo-* tasks into the store that STATE_PATH
// named. It must run in a fresh directory, say which, and remove it.
#[test]
fn demo_never_writes_into_a_store_it_did_not_create() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(opts(dir.path()))
        .unwrap()
        .put_task(task("mine"))
        .unwrap();
    let before = snapshot(dir.path());
    let out = demo_with_state_path(dir.path(), &["--acks", "10"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        snapshot(dir.path()),
        before,
        "the demo wrote into STATE_PATH's store"
    );
    let used = demo_dir(&out);
    assert_ne!(used, dir.path());
    assert!(!used.exists(), "the demo left {} behind", used.display());

    // Named with --dir, a store (or any directory not empty and not the
    // demo's) is refused.
    let out = run_statewal(dir.path(), &["demo", "--acks", "10"], "", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to run the demo"));
    assert_eq!(
        snapshot(dir.path()),
        before,
        "the demo wrote into --dir's store"
    );
}

// Guards: the demo's own directory: a missing --dir counts as empty (as
// `.ci/run` passes it), is marked, and is removed at the end unless --keep;
// a kept one is reused by the next demo.
#[test]
fn demo_uses_a_missing_dir_and_keeps_it_only_when_asked() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("state");
    let out = run_statewal(&dir, &["demo", "--acks", "10"], "", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(demo_dir(&out), dir);
    assert!(!dir.exists(), "the demo's directory was not removed");

    let out = run_statewal(&dir, &["demo", "--acks", "10", "--keep"], "", &[]);
    assert!(out.status.success());
    assert!(dir.join(".statewal-demo").is_file());
    assert!(dir.join("state.json").is_file());
    let out = run_statewal(&dir, &["demo", "--acks", "10"], "", &[]);
    assert!(out.status.success(), "a demo-made directory is reused");
    assert!(!dir.exists());
}

// Guards (found by review): a `--dir` that is a symlink to a directory ran
// the demo in the target and removed only the link, leaving the demo's files
// behind in the target; and a `.statewal-demo` planted as a symlink counted
// as the demo's mark, so the demo wrote into (and then removed) a directory
// it did not make.
#[test]
fn demo_refuses_a_symlinked_dir_and_a_symlinked_mark() {
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("target");
    std::fs::create_dir(&target).unwrap();
    let link = root.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = run_statewal(&link, &["demo", "--acks", "5"], "", &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("symlink"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        0,
        "wrote into the target"
    );

    let other = root.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("precious"), "keep me").unwrap();
    let real_mark = root.path().join("mark");
    std::fs::write(&real_mark, "").unwrap();
    std::os::unix::fs::symlink(&real_mark, other.join(".statewal-demo")).unwrap();
    let out = run_statewal(&other, &["demo", "--acks", "5"], "", &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(other.join("precious")).unwrap(),
        "keep me",
        "the demo removed a directory it did not make"
    );
}
