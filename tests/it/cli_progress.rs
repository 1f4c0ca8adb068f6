//! Progress on stderr is drawn only when stderr is a terminal.
//!
//! Guards against spinner frames and carriage returns leaking into a log or a
//! script that captures stderr: piped, the long commands print exactly their
//! findings and reports, and a clean `verify` prints nothing to stderr.

use std::path::Path;
use std::process::Output;

#[test]
fn verify_with_stderr_piped_writes_nothing_to_stderr_on_a_clean_directory() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), &["checkpoint"]);
    let out = run(dir.path(), &["verify"]);
    assert!(
        out.stderr.is_empty(),
        "stderr: {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("everything checks out"));
}

#[test]
fn recover_with_stderr_piped_prints_its_report_without_progress() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), &["checkpoint"]);
    let out = run(dir.path(), &["recover"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("recovered from"), "stderr: {stderr:?}");
    assert!(
        !stderr.contains(['\r', '\x1b']),
        "progress drawn on a pipe: {stderr:?}"
    );
}

/// Runs `statewal --dir DIR args...` with stdout and stderr piped and
/// checks that it succeeds.
fn run(dir: &Path, args: &[&str]) -> Output {
    let out = crate::util::run_statewal(dir, args, "", &[]);
    assert!(out.status.success(), "statewal {args:?}: {out:?}");
    out
}
