//! What every service the tests start shares: PostgreSQL (`pg.rs`) and the
//! object-storage emulators (`emulators.rs`).
//!
//! A service gets a free 127.0.0.1 port and a temporary directory of its
//! own, is polled until it answers, and is stopped when the test process
//! exits: by `atexit` when the process ends normally, and by a watchdog
//! shell when it is killed. A service that cannot be had is a skip with a
//! printed reason, unless the named variable is `1`, which makes it a
//! failure (`.ci/run` sets them, so CI never passes without running these
//! tests).

// Each service uses part of this; with one of their features off, the rest
// is unused there.
#![cfg_attr(
    not(all(feature = "postgres", feature = "replicate")),
    allow(dead_code)
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// `Some(value)`, or `None` after printing why the test is skipped; a
/// panic instead when `require_var` is `1`.
pub fn or_skip<T>(got: &Result<T, String>, require_var: &str) -> Option<T>
where
    T: Clone,
{
    match got {
        Ok(v) => Some(v.clone()),
        Err(why) if std::env::var(require_var).as_deref() == Ok("1") => {
            panic!("required ({require_var}=1): {why}")
        }
        Err(why) => {
            eprintln!("skipped: {why} (set {require_var}=1 to fail instead)");
            None
        }
    }
}

/// A port on 127.0.0.1 that nothing listened on a moment ago.
pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// A new, empty directory under the system's temporary directory.
pub fn temp_root(tag: &str) -> Result<PathBuf, String> {
    let root = std::env::temp_dir().join(format!(
        "statewal-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
    Ok(root)
}

/// Polls `ready` every 50 ms until it says yes. Fails when the child
/// exits first or `timeout` passes, with the log's text in the error.
pub fn wait_ready(
    what: &str,
    child: &mut Child,
    log: &Path,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        if ready() {
            return Ok(());
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let logged = std::fs::read_to_string(log).unwrap_or_default();
            let how = match exited {
                Some(status) => format!("exited ({status})"),
                None => format!("did not answer within {timeout:?}"),
            };
            return Err(format!("{what} {how}: {logged}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The status code of a plain HTTP/1.1 request to 127.0.0.1:`port`, or
/// `None` when nothing answers in HTTP. Enough for readiness and for the
/// setup requests the emulators take unsigned.
pub fn http_status(port: u16, method: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    let line = std::str::from_utf8(&head).ok()?;
    line.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

/// Runs `stop` when the process exits normally. Statics are never dropped,
/// so a service shared through a `OnceLock` is stopped here.
pub fn stop_at_exit(stop: Box<dyn FnOnce() + Send>) {
    static STOPS: Mutex<Vec<Box<dyn FnOnce() + Send>>> = Mutex::new(Vec::new());
    static REGISTER: Once = Once::new();
    extern "C" fn run_stops() {
        let _ = std::panic::catch_unwind(|| {
            let stops = STOPS.lock().map(|mut s| std::mem::take(&mut *s));
            for stop in stops.unwrap_or_default() {
                stop();
            }
        });
    }
    STOPS.lock().unwrap().push(stop);
    // SAFETY: `run_stops` is an `extern "C" fn()` that does not unwind.
    REGISTER.call_once(|| unsafe {
        libc::atexit(run_stops);
    });
}

/// A shell that outlives this process if it is killed (no `atexit` then):
/// once the process is gone it runs `cleanup`.
pub fn watchdog(cleanup: &str) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {cleanup}",
        pid = std::process::id(),
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(std::mem::forget);
}

/// Sends `signal` to `pid` (a process this one did not spawn, so never a
/// zombie of ours), waits up to `grace` for it to go, then SIGKILL.
pub fn terminate(pid: i32, signal: i32, grace: Duration) {
    // SAFETY: kill(2) on a pid this process started; no memory involved.
    unsafe { libc::kill(pid, signal) };
    let until = Instant::now() + grace;
    while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}
