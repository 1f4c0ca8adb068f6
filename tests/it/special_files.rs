//! Issue 8, part 4: nothing planted in the state directory can hang the
//! store or the CLI, or lead a write outside the directory.
//!
//! Bugs guarded against:
//! - A FIFO at `state.json` hung `list`, `health` and `verify` (open(2) of a
//!   FIFO for reading waits for a writer); a FIFO at a session log or an
//!   archive file hung the checkpoint and shutdown; a FIFO at the lock file
//!   hung `Store::open`. The fs layer now opens with `O_NONBLOCK` and checks
//!   the opened descriptor's type: a special file is a clear error naming it,
//!   or damage where damaged files are already skipped.
//! - A hard link from `.statewal.lock`, a session log or an archive file to a
//!   file outside the directory made the store write that outside file.
//!   Files written in place with more than one link are now refused.
//!
//! Every call that used to hang runs under a timeout, so a regression fails
//! instead of hanging the suite.

use crate::util::{opts, statewal_command, task};
use statewal::{ErrorKind, Store};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(20);

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path for the whole call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
}

/// Runs `f` on its own thread and fails the test if it takes longer than
/// [`TIMEOUT`] (the thread is left blocked; the test binary still exits).
#[track_caller]
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(TIMEOUT)
        .unwrap_or_else(|_| panic!("{what} hung (more than {TIMEOUT:?})"))
}

/// Runs the binary with stdin closed, killing it and failing the test if it
/// runs longer than [`TIMEOUT`].
fn run_within(dir: &Path, args: &[&str]) -> Output {
    let mut child = statewal_command(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the statewal binary starts");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > TIMEOUT {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "statewal {args:?} hung; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A store with two tasks, checkpointed, plus a third only in the journal.
fn populated(dir: &Path) {
    let store = Store::open(opts(dir)).unwrap();
    store.put_task(task("a")).unwrap();
    store.put_task(task("b")).unwrap();
    store.checkpoint().unwrap();
    store.put_task(task("c")).unwrap();
    drop(store);
}

#[test]
fn fifos_in_the_layout_never_hang_list_health_or_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    populated(&dir);
    // Checkpoint once more so there is a valid backup to fall back to.
    Store::open(opts(&dir)).unwrap().checkpoint().unwrap();
    mkfifo(&dir.join("state.json"));
    mkfifo(&dir.join("state.backup.20200101T000000.000000Z.json"));
    mkfifo(&dir.join("tasks/zz.json"));
    mkfifo(&dir.join("sessions/zz.json"));
    mkfifo(&dir.join("journal/00000000000000009999.wal"));

    let out = run_within(&dir, &["list"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "list: {out:?}");
    assert!(stdout.contains("3 tasks"), "{stdout}");

    mkfifo(&dir.join("state.json"));
    let out = run_within(&dir, &["health"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "health: {out:?}");
    assert!(
        stdout.contains("state.json") && stdout.contains("FIFO"),
        "{stdout}"
    );

    let out = run_within(&dir, &["verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "verify: {out:?}");
    assert!(
        stdout.contains("state.json") && stdout.contains("not a regular file (a FIFO)"),
        "{stdout}"
    );

    // The library: the open falls back past the FIFO and the checkpoint
    // replaces it with a regular state.json.
    let d = dir.clone();
    within("Store::open with a FIFO at state.json", move || {
        let store = Store::open(opts(&d)).unwrap();
        assert_eq!(store.list_tasks().unwrap().len(), 3);
        store.checkpoint().unwrap();
        store.shutdown().unwrap();
    });
    assert!(std::fs::metadata(dir.join("state.json")).unwrap().is_file());
}

#[test]
fn a_fifo_at_a_session_log_or_archive_file_is_a_clear_checkpoint_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = Store::open(opts(&dir).checkpoint_on_drop(false)).unwrap();
    store.append_log("s1", "hello\n").unwrap();
    mkfifo(&dir.join("logs/session_s1.log"));
    let store = within("checkpoint with a FIFO at a session log", move || {
        let e = store.checkpoint().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("session_s1.log"), "{e}");
        assert!(e.to_string().contains("FIFO"), "{e}");
        store
    });
    drop(store);
    // The CLI's checkpoint replays the append and meets the same FIFO.
    let out = run_within(&dir, &["checkpoint"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("session_s1.log") && stderr.contains("FIFO"),
        "{stderr}"
    );
    std::fs::remove_file(dir.join("logs/session_s1.log")).unwrap();
    let out = run_within(&dir, &["checkpoint"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read(dir.join("logs/session_s1.log")).unwrap(),
        b"hello\n"
    );

    let store = Store::open(opts(&dir)).unwrap();
    store.put_task(task("old")).unwrap();
    store.archive_task("old").unwrap();
    let now = time::OffsetDateTime::now_utc();
    let archive = dir
        .join("archive")
        .join(statewal::__internal::layout::archive_file(
            now.year(),
            now.month() as u8,
        ));
    mkfifo(&archive);
    within("shutdown with a FIFO at an archive file", move || {
        let e = store.shutdown().unwrap_err();
        assert!(e.to_string().contains("tasks-"), "{e}");
        assert!(e.to_string().contains("not a regular file"), "{e}");
    });
}

#[test]
fn a_fifo_or_socket_at_the_lock_file_is_a_clear_open_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    populated(&dir);
    mkfifo(&dir.join(".statewal.lock"));
    let d = dir.clone();
    let e = within("Store::open with a FIFO lock file", move || {
        Store::open(opts(&d)).map(drop).unwrap_err()
    });
    assert!(e.to_string().contains(".statewal.lock"), "{e}");
    // A writing command takes the lock and says what is wrong with it; a
    // read-only one (`list`) takes no lock and is not held up at all.
    let out = run_within(&dir, &["checkpoint"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(".statewal.lock"));
    let out = run_within(&dir, &["list"]);
    assert!(out.status.success(), "{out:?}");

    std::fs::remove_file(dir.join(".statewal.lock")).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(dir.join(".statewal.lock")).unwrap();
    let d = dir.clone();
    let e = within("Store::open with a socket lock file", move || {
        Store::open(opts(&d)).map(drop).unwrap_err()
    });
    assert!(e.to_string().contains("not a regular file"), "{e}");
}

/// An outside file, hard-linked into the state directory at `rel`.
fn plant_link(dir: &Path, outside: &Path, rel: &str) {
    std::fs::write(outside, b"outside, must stay as it is\n").unwrap();
    let _ = std::fs::remove_file(dir.join(rel));
    std::fs::hard_link(outside, dir.join(rel)).unwrap();
}

fn check_untouched(outside: &Path) {
    assert_eq!(
        std::fs::read(outside).unwrap(),
        b"outside, must stay as it is\n",
        "{} was written through a hard link",
        outside.display()
    );
}

#[test]
fn hard_links_out_of_the_directory_are_refused_not_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    populated(&dir);
    let outside = tmp.path().join("outside.txt");

    // The lock file: its pid would have overwritten the outside file.
    plant_link(&dir, &outside, ".statewal.lock");
    let e = Store::open(opts(&dir)).map(drop).unwrap_err();
    assert!(
        e.to_string().contains(".statewal.lock") && e.to_string().contains("2 hard links"),
        "{e}"
    );
    check_untouched(&outside);
    std::fs::remove_file(dir.join(".statewal.lock")).unwrap();

    // A session log: the checkpoint writes appends in place.
    let store = Store::open(opts(&dir).checkpoint_on_drop(false)).unwrap();
    plant_link(&dir, &outside, "logs/session_s1.log");
    store.append_log("s1", "appended\n").unwrap();
    let e = store.checkpoint().unwrap_err();
    assert!(
        e.to_string().contains("session_s1.log") && e.to_string().contains("hard links"),
        "{e}"
    );
    check_untouched(&outside);
    std::fs::remove_file(dir.join("logs/session_s1.log")).unwrap();
    store.checkpoint().unwrap();

    // An archive file.
    let now = time::OffsetDateTime::now_utc();
    let archive = format!(
        "archive/{}",
        statewal::__internal::layout::archive_file(now.year(), now.month() as u8)
    );
    plant_link(&dir, &outside, &archive);
    store.archive_task("a").unwrap();
    let e = store.checkpoint().unwrap_err();
    assert!(
        e.to_string().contains("tasks-") && e.to_string().contains("hard links"),
        "{e}"
    );
    check_untouched(&outside);
    drop(store);

    // Files written by temp file and rename replace the link, never write
    // through it: a hard-linked task file leaves the outside file alone.
    std::fs::remove_file(dir.join(&archive)).unwrap();
    let store = Store::open(opts(&dir)).unwrap();
    plant_link(&dir, &outside, "tasks/b.json");
    let mut b = task("b");
    b.set_description("changed");
    store.put_task(b).unwrap();
    store.checkpoint().unwrap();
    check_untouched(&outside);
    store.shutdown().unwrap();
}
