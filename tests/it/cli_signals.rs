//! `serve --stdio` shuts down gracefully on SIGINT and SIGTERM, through the
//! real binary.
//!
//! Guards against a server that a signal kills outright (the default action):
//! acknowledged requests would then live only in the journal, state.json
//! would be stale, and a supervisor stopping the service would see it fail.
//! A server that only stops at the end of input would never exit at all,
//! since the client still holds its standard input open.

use serde_json::{Value, json};
use statewal::{Options, Store};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

#[test]
fn serve_sigterm_answers_checkpoints_unlocks_and_exits_0() {
    check_graceful(libc::SIGTERM);
}

#[test]
fn serve_sigint_answers_checkpoints_unlocks_and_exits_0() {
    check_graceful(libc::SIGINT);
}

// Guards: requests still in the pipe when the signal arrives are either
// answered and applied, or neither; the client can tell which from its answers.
#[test]
fn serve_signal_mid_burst_applies_exactly_what_it_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    // One round trip first, so the signal handlers are installed.
    server.send(&put(0));
    assert_eq!(server.answer()["ok"], true);
    for i in 1..200 {
        server.send(&put(i));
    }
    server.signal(libc::SIGTERM);
    let mut answered = BTreeSet::from(["t0".to_string()]);
    let mut rest = String::new();
    server.stdout.read_to_string(&mut rest).unwrap();
    for line in rest.lines() {
        let a: Value = serde_json::from_str(line).unwrap();
        assert_eq!(a["ok"], true, "{a}");
        answered.insert(format!("t{}", a["req"]));
    }
    assert!(server.wait().success());
    assert_eq!(state_task_ids(dir.path()), answered);
}

/// Sends a few puts, reads their answers, signals with stdin still open, and
/// checks exit 0, the checkpoint and the lock.
fn check_graceful(signal: i32) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    for i in 0..3 {
        server.send(&put(i));
        let answer = server.answer();
        assert_eq!(answer["ok"], true, "{answer}");
    }
    server.signal(signal);
    let status = server.wait();
    assert_eq!(status.code(), Some(0), "serve exited with {status:?}");
    // Checkpointed: state.json holds every task, read before anything reopens.
    let want: BTreeSet<String> = (0..3).map(|i| format!("t{i}")).collect();
    assert_eq!(state_task_ids(dir.path()), want);
    // Released the lock: the library opens the directory.
    let store = Store::open(Options::new(dir.path())).expect("the lock is released");
    assert_eq!(store.list_tasks().unwrap().len(), 3);
}

struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_statewal"))
            .arg("--dir")
            .arg(dir)
            .args(["serve", "--stdio"])
            .env_remove("STATE_PATH")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the statewal binary starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Server {
            child,
            stdin,
            stdout,
        }
    }

    fn send(&mut self, request: &str) {
        writeln!(self.stdin, "{request}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn answer(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("answer {line:?}: {e}"))
    }

    fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits for the exit with standard input still open, so only the
    /// signal can have ended the server. Kills it after a minute.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                self.child.kill().ok();
                panic!("serve did not exit within a minute of the signal");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn put(i: usize) -> String {
    json!({"req": i, "op": "put_task", "task": {"id": format!("t{i}"), "status": "pending"}})
        .to_string()
}

fn state_task_ids(dir: &Path) -> BTreeSet<String> {
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).expect("state.json exists"))
            .expect("state.json is JSON");
    state["tasks"]
        .as_array()
        .expect("state.json has a tasks array")
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}
