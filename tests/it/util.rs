//! Small helpers shared by the integration tests, so that a refactor of the
//! public API or the layout touches this file and not every test.

use statewal::__internal::journal::reader::{Piece, scan_segment};
use statewal::__internal::journal::record::{MARKER_FRAME_LEN, RECORD_HEADER_LEN};
use statewal::{ErrorKind, Options, Result, Store, Task};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Options with the timer off, so no checkpoint happens behind a test's back.
pub fn opts(dir: &Path) -> Options {
    Options::new(dir).checkpoint_interval(None)
}

/// Options that simulate a crash on drop: no checkpoint, so the journal is
/// the only copy of everything written since the last explicit checkpoint.
pub fn crash_opts(dir: &Path) -> Options {
    opts(dir).checkpoint_on_drop(false)
}

/// Opens a store that will "crash" when dropped.
pub fn open_crashy(dir: &Path) -> Store {
    Store::open(crash_opts(dir)).expect("open the store")
}

/// A task with an id and a description derived from it, so a test can check
/// that the right version of the task came back.
pub fn task(id: &str) -> Task {
    let mut t = Task::new(id);
    t.set_description(format!("description of {id}"));
    t
}

/// Puts `task(id)` for every id.
pub fn put_all(store: &Store, ids: &[String]) {
    for id in ids {
        store.put_task(task(id)).expect("put_task");
    }
}

/// `prefix0`, `prefix1`, ... `prefix{n-1}`.
pub fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// The ids of the tasks in the store.
pub fn task_ids(store: &Store) -> BTreeSet<String> {
    store
        .list_tasks()
        .unwrap()
        .into_iter()
        .map(|t| t.id().to_string())
        .collect()
}

/// Checks that the store holds exactly `expected` tasks, each with the
/// description `task(id)` gave it.
pub fn check_tasks(store: &Store, expected: &[String]) {
    let want: BTreeSet<String> = expected.iter().cloned().collect();
    assert_eq!(task_ids(store), want, "task ids");
    for id in expected {
        let t = store.get_task(id).expect("get_task").expect("task present");
        assert_eq!(t, task(id), "task {id} came back changed");
    }
}

/// Checks that `result` failed with `kind`, returning the error's message.
#[track_caller]
pub fn check_err<T: std::fmt::Debug>(result: Result<T>, kind: ErrorKind) -> String {
    match result {
        Ok(v) => panic!("expected a {kind:?} error, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "wrong error kind: {e}");
            e.to_string()
        }
    }
}

/// `Store::open` returns a store, which is not `Debug`; this maps it to `()`
/// so [`check_err`] can be used on opens.
pub fn try_open(opts: Options) -> Result<()> {
    Store::open(opts).map(drop)
}

/// Parses a JSON file in the state directory.
pub fn read_json(path: impl AsRef<Path>) -> serde_json::Value {
    let path = path.as_ref();
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// The task ids listed in `state.json`.
pub fn state_file_task_ids(dir: &Path) -> BTreeSet<String> {
    let state = read_json(dir.join("state.json"));
    state["tasks"]
        .as_array()
        .expect("state.json has a tasks array")
        .iter()
        .map(|t| t["id"].as_str().expect("task id is a string").to_string())
        .collect()
}

/// The journal segment files, oldest first.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir.join("journal"))
        .expect("list journal/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    out.sort();
    out
}

/// The only journal segment; fails the test if there is not exactly one.
pub fn only_segment(dir: &Path) -> PathBuf {
    let segs = segments(dir);
    assert_eq!(
        segs.len(),
        1,
        "expected one journal segment, found {segs:?}"
    );
    segs.into_iter().next().expect("one segment")
}

/// The byte ranges `start..end` of every valid record in a segment file,
/// found with the library's own reader. Zeros the journal preallocated after
/// the last record are not part of any record, and sync markers (which hold
/// no record) are left out: records and markers tile the segment together.
pub fn record_spans(segment: &Path) -> Vec<(u64, u64)> {
    frame_spans(segment)
        .into_iter()
        .filter(|f| !f.2)
        .map(|(s, e, _)| (s, e))
        .collect()
}

/// The byte ranges of every record and sync marker in a segment file, in
/// order, each with `true` for a marker. They tile the segment from its
/// header to its last frame.
pub fn frame_spans(segment: &Path) -> Vec<(u64, u64, bool)> {
    let bytes = std::fs::read(segment).expect("read segment");
    let scan = scan_segment(&bytes);
    scan.header.as_ref().expect("valid segment header");
    let mut spans = Vec::new();
    let mut pos = None;
    for p in &scan.pieces {
        let (offset, len, record) = match p {
            Piece::Record { offset, record } => (
                *offset,
                (RECORD_HEADER_LEN + record.payload.len()) as u64,
                true,
            ),
            Piece::Marker { offset, .. } => (*offset, MARKER_FRAME_LEN as u64, false),
            other => panic!("segment is already damaged: {other:?}"),
        };
        assert!(
            pos.is_none_or(|p| p == offset),
            "records and markers are contiguous"
        );
        pos = Some(offset + len);
        spans.push((offset, offset + len, !record));
    }
    spans
}

/// Copies a state directory (files and subdirectories, no symlinks) so one
/// journal can be damaged in many different ways.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("dir entry");
        let ty = entry.file_type().expect("file type");
        let target = to.join(entry.file_name());
        if ty.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if ty.is_file() {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// Flips one bit of a file in place.
pub fn flip_bit(path: &Path, offset: u64, bit: u8) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[offset as usize] ^= 1 << bit;
    std::fs::write(path, bytes).expect("write");
}

/// Every path under `dir`, relative to it, recursively (symlinks listed, not
/// followed).
pub fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("list") {
        let entry = entry.expect("dir entry");
        let path = entry.path();
        out.insert(path.strip_prefix(root).expect("under root").to_path_buf());
        if entry.file_type().expect("file type").is_dir() {
            walk(root, &path, out);
        }
    }
}

/// The `state.backup.*.json` files in a state directory, sorted by name.
/// The files set aside for task `id`: `tasks/<id>.json.edited-<ms>`,
/// sorted.
pub fn edited_copies(dir: &Path, id: &str) -> Vec<PathBuf> {
    let prefix = format!("{id}.json.edited-");
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir.join("tasks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&prefix)
        })
        .collect();
    out.sort();
    out
}

pub fn backups(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list state dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("state.backup.") && name.ends_with(".json")
        })
        .collect();
    out.sort();
    out
}

/// `statewal --dir DIR`, with the variables that change its behaviour
/// (`STATE_PATH`, `RUST_LOG`, `DEBUG`) removed from its environment.
pub fn statewal_command(dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_statewal"));
    cmd.arg("--dir").arg(dir);
    without_statewal_env(&mut cmd);
    cmd
}

/// Removes the variables that change what statewal does (a developer's
/// `DATABASE_URL` would send every CLI test to their database).
pub fn without_statewal_env(cmd: &mut std::process::Command) {
    for var in [
        "STATE_PATH",
        "DATABASE_URL",
        "STATEWAL_REPLICATE",
        "STATEWAL_REPLICA_RETENTION",
        "STATEWAL_KEY_FILE",
        "STATEWAL_KEY",
        "RUST_LOG",
        "DEBUG",
    ] {
        cmd.env_remove(var);
    }
}

/// `statewal --dir DIR ARGS` with `stdin`, checked for exit code `code`;
/// its stdout.
#[track_caller]
pub fn check_statewal(dir: &Path, args: &[&str], stdin: &str, code: i32) -> String {
    expect_exit(run_statewal(dir, args, stdin, &[]), code, args).0
}

/// Checks that `statewal args...` exited with `code`, showing its output
/// if not; returns its stdout and stderr.
#[track_caller]
pub fn expect_exit(out: std::process::Output, code: i32, args: &[&str]) -> (String, String) {
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "statewal {args:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    (stdout, stderr)
}

/// Runs `statewal --dir DIR args...` with `stdin` and extra environment, and
/// returns its exit status and output.
pub fn run_statewal(
    dir: &Path,
    args: &[&str],
    stdin: &str,
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut cmd = statewal_command(dir);
    cmd.args(args).envs(env.iter().copied());
    run_with_stdin(cmd, stdin)
}

/// Runs `cmd` with `stdin` written to it; its exit status and output.
pub fn run_with_stdin(mut cmd: std::process::Command, stdin: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the statewal binary starts");
    // A command that refuses its arguments may exit before reading stdin:
    // the pipe is then closed, and the refusal is what the caller checks.
    match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.expect("writing the statewal child's stdin"),
    }
    child.wait_with_output().unwrap()
}

/// A temporary directory on a tmpfs (`/dev/shm`) when there is one, so that
/// tests making thousands of opens do not pay for real fsyncs.
pub fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(t) = tempfile::tempdir_in(shm)
    {
        return t;
    }
    tempfile::tempdir().expect("a temp dir")
}

/// The items of a `--json` list: JSON Lines, one compact object per line
/// (`../shared/CONTRACTS.md` section 4). Fails on anything else, a pretty
/// or array-shaped output included.
pub fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    let text = std::str::from_utf8(stdout).expect("--json output is UTF-8");
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\nin {text}"));
            assert!(v.is_object(), "a JSON line is an object: {line}");
            v
        })
        .collect()
}

/// The one compact JSON object of a `--json` command that is not a list.
pub fn json_object(stdout: &[u8]) -> serde_json::Value {
    let text = std::str::from_utf8(stdout).expect("--json output is UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object on one line: {text}");
    let v: serde_json::Value =
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert!(v.is_object(), "an object: {text}");
    v
}

/// Every file under `dir`, at any depth, sorted.
#[cfg(any(feature = "encryption", feature = "replicate"))]
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
