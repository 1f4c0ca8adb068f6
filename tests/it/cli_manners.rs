//! The command line's manners (issue 14), through the binary: colour only
//! on a terminal and never under `NO_COLOR`, `--json` shaped as
//! `../shared/CONTRACTS.md` section 4 says with words instead of Rust
//! `Debug` names, plurals, the global flags of section 3, examples in every
//! `--help`, completions and man pages, the demo's narration and stamps,
//! and `bench` cleaning up after Ctrl-C.

use crate::util::{json_lines, json_object, run_statewal, statewal_command};
use serde_json::Value;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::check_statewal as check;

/// A store with two tasks (one with a log entry and a result), a session,
/// a report, a log, and a backup or two.
pub fn populated() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    check(
        d,
        &["put-task", "-"],
        r#"{"id":"a","status":"completed","description":"first","completed_at":"2020-01-01T00:00:00.000Z"}"#,
        0,
    );
    check(
        d,
        &["put-task", "-"],
        r#"{"id":"b","status":"pending","logs":[{"timestamp":"2024-01-01T00:00:00.000Z","level":"info","type":"x","message":"m"}]}"#,
        0,
    );
    let requests = [
        r#"{"req":1,"op":"put_session","session":{"id":"s1"}}"#,
        r#"{"req":2,"op":"save_report","id":"r1","report":{"ok":true}}"#,
        r#"{"req":3,"op":"append_log","session":"s1","text":"hello\n"}"#,
    ];
    check(d, &["serve", "--stdio"], &(requests.join("\n") + "\n"), 0);
    dir
}

/// Fields whose values are words from a documented set; each must be
/// snake_case, never a Rust `Debug` name such as `StateFile` or
/// `Foreign("state.json")`.
const WORD_FIELDS: [&str; 8] = [
    "loaded_from",
    "mode",
    "snapshot",
    "class",
    "kind",
    "origin",
    "action",
    "status",
];

fn check_words(v: &Value, context: &str) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                if let (true, Value::String(s)) = (WORD_FIELDS.contains(&k.as_str()), x) {
                    assert!(
                        !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                        "{context}: {k} is {s:?}, not a snake_case word"
                    );
                }
                check_words(x, context);
            }
        }
        Value::Array(items) => items.iter().for_each(|x| check_words(x, context)),
        _ => {}
    }
}

// Guards (issue 14, CONTRACTS section 4): pure lists print JSON Lines,
// everything else one compact object on one line, and every enum value is
// a snake_case word. `checkpoint --json` printed `"loaded_from":
// "StateFile"`, a Rust Debug name, and `list --json` one pretty array.
#[test]
fn every_json_output_has_its_contract_shape_and_words() {
    let dir = populated();
    let d = dir.path();
    let lists: &[&[&str]] = &[
        &["list", "--json"],
        &["dump-journal", "--json"],
        &["backups", "--json"],
        &["list-reports", "--json"],
        &["list-logs", "--json"],
    ];
    for args in lists {
        let items = json_lines(check(d, args, "", 0).as_bytes());
        assert!(!items.is_empty(), "{args:?} listed nothing");
        for item in &items {
            check_words(item, &args.join(" "));
        }
    }
    let objects: &[(&[&str], i32)] = &[
        (&["show", "b", "--json"], 0),
        (&["get-report", "r1", "--json"], 0),
        (&["get-session", "s1", "--json"], 0),
        (&["read-log", "session_s1.log", "--json"], 0),
        (&["health", "--json"], 0),
        (&["metrics", "--json"], 0),
        (&["verify", "--json"], 0),
        (&["clean", "--older-than", "1d", "--dry-run", "--json"], 0),
        (&["migrate", "--dry-run", "--json"], 0),
        (&["checkpoint", "--json"], 0),
        (&["recover", "--json"], 0),
        (&["delete-task", "--json", "a"], 0),
    ];
    for (args, code) in objects {
        let v = json_object(check(d, args, "", *code).as_bytes());
        check_words(&v, &args.join(" "));
    }
    let v = json_object(check(d, &["put-task", "--json", "-"], r#"{"id":"c"}"#, 0).as_bytes());
    assert_eq!(v["id"], "c");
    let newest = json_lines(check(d, &["backups", "--json"], "", 0).as_bytes())[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let v = json_object(check(d, &["restore", &newest, "--json"], "", 0).as_bytes());
    assert_eq!(v["backup"], newest.as_str());
}

// Guards: the human output names where recovery started with words, not
// `Debug` names ("recovered from StateFile").
#[test]
fn human_output_says_where_recovery_started_in_words() {
    let dir = populated();
    let out = run_statewal(dir.path(), &["checkpoint"], "", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("recovered from state.json"), "{stderr}");
    for debug_name in ["StateFile", "Empty", "LayoutFiles", "Backup(", "Foreign("] {
        assert!(!stderr.contains(debug_name), "{debug_name} in: {stderr}");
    }
}

// Guards: counts agree with their nouns ("1 task", never "1 tasks").
#[test]
fn counts_agree_with_their_nouns() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    check(d, &["put-task", "-"], r#"{"id":"a"}"#, 0);
    let table = check(d, &["list"], "", 0);
    assert!(table.ends_with("\n1 task\n"), "{table}");
    let checkpoint = check(d, &["checkpoint"], "", 0);
    assert!(checkpoint.contains("1 task in state.json"), "{checkpoint}");
    let dump = check(d, &["dump-journal"], "", 0);
    assert!(!dump.contains("1 segments"), "{dump}");
    check(d, &["put-task", "-"], r#"{"id":"b"}"#, 0);
    let table = check(d, &["list"], "", 0);
    assert!(table.ends_with("\n2 tasks\n"), "{table}");
    for args in [&["backups"][..], &["verify"], &["health"], &["list-logs"]] {
        let text = check(d, args, "", 0);
        for line in text.lines() {
            assert!(
                !line.starts_with("1 ") || !line.split(' ').nth(1).unwrap_or("").ends_with('s'),
                "{args:?}: {line}"
            );
            assert!(
                !line.contains(" 1 segments") && !line.contains(" 1 files"),
                "{args:?}: {line}"
            );
        }
    }
    // serve's refusal of an overlong line once said "the limit of 1 bytes".
    let served = check(d, &["serve", "--stdio", "--max-line-bytes", "1"], "{}\n", 0);
    assert!(served.contains("the limit of 1 byte "), "{served}");
}

// Guards (CONTRACTS section 3): the global flags go before or after the
// command and come from the environment; a flag for a feature not built
// yet is refused by a command that would need it (it must not run without
// it) and ignored by one that has no use for it.
#[test]
fn global_flags_before_or_after_and_unbuilt_ones_refused_or_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    check(d, &["put-task", "-"], r#"{"id":"a"}"#, 0);
    let after = std::process::Command::new(env!("CARGO_BIN_EXE_statewal"))
        .args(["list", "--read-only", "--dir"])
        .arg(d)
        .env_remove("STATE_PATH")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&after.stdout).contains("1 task"));
    let by_env = std::process::Command::new(env!("CARGO_BIN_EXE_statewal"))
        .arg("list")
        .env("STATE_PATH", d)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&by_env.stdout).contains("1 task"));

    // With replication built, a writer ships to --replicate: the bucket
    // gets the claim. Without it, it refuses --replicate like the others.
    #[cfg(feature = "replicate")]
    {
        let bucket = tempfile::tempdir().unwrap();
        let url = format!("file://{}/r", bucket.path().display());
        check(
            d,
            &["put-task", "--replicate", &url, "-"],
            r#"{"id":"r"}"#,
            0,
        );
        assert!(bucket.path().join("r/statewal-replica.json").is_file());
        check(d, &["delete-task", "r"], "", 0);
    }
    // With encryption built (issue 13), a writer takes the key flags: a
    // key file that is not there is an error naming it (exit 2).
    #[cfg(feature = "encryption")]
    {
        let out = run_statewal(
            d,
            &["put-task", "--key-file", "/nonexistent/key", "-"],
            "{}",
            &[],
        );
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("/nonexistent/key"), "{err}");
    }
    let mut refused: Vec<(&str, &str)> = Vec::new();
    if !cfg!(feature = "replicate") {
        refused.push(("--replicate", "file:///tmp/r"));
    }
    if !cfg!(feature = "encryption") {
        refused.push(("--key-file", "/nonexistent/key"));
        refused.push(("--key-command", "cat key"));
    }
    for &(flag, value) in &refused {
        // A writer refuses every one: it would need it.
        let out = run_statewal(d, &["put-task", flag, value, "-"], r#"{"id":"z"}"#, &[]);
        assert_eq!(out.status.code(), Some(2), "put-task {flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not built into this version"), "{err}");
        // Commands that open no store ignore every one.
        check(d, &["completions", "bash", flag, value], "", 0);
        check(d, &[flag, value, "man"], "", 0);
    }
    // A reader has no use for --replicate; it needs a key or a database.
    check(d, &["--replicate", "file:///tmp/r", "list"], "", 0);
    let out = run_statewal(d, &["list"], "", &[("STATEWAL_KEY", "k")]);
    assert_eq!(out.status.code(), Some(2));
    // A database (built, issue 12) that cannot be reached is exit 2, for a
    // reader and a writer; a command not available there refuses it.
    let nowhere = "postgres://127.0.0.1:1/x";
    let out = run_statewal(d, &["list"], "", &[("DATABASE_URL", nowhere)]);
    assert_eq!(out.status.code(), Some(2));
    let out = run_statewal(
        d,
        &["put-task", "--database", nowhere, "-"],
        r#"{"id":"z"}"#,
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let out = run_statewal(d, &["checkpoint", "--database", nowhere], "", &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`checkpoint` is not available on PostgreSQL"),
        "{err}"
    );
    check(d, &["completions", "bash", "--database", nowhere], "", 0);
    let out = run_statewal(d, &["list"], "", &[("STATEWAL_REPLICATE", "file:///tmp/r")]);
    assert!(out.status.success());
    assert_eq!(
        check(d, &["list", "--json"], "", 0).lines().count(),
        1,
        "nothing was written by the refused commands"
    );
}

// Guards: every visible command's --help has examples and says what it
// does with the flags for features not built yet.
#[test]
fn every_help_has_examples() {
    let dir = tempfile::tempdir().unwrap();
    let top = check(dir.path(), &["--help"], "", 0);
    assert!(top.contains("Examples:"), "{top}");
    for command in crate::cli_reference::leaf_commands(&top) {
        let help = crate::cli_reference::help_of(&[&command, "--help"]);
        assert!(help.contains("Examples:\n  statewal"), "{command}:\n{help}");
        assert!(help.contains("--replicate"), "{command}:\n{help}");
    }
}

// Guards: completions and man pages come from the clap definition and name
// every command.
#[test]
fn completions_and_man_pages_name_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let commands = crate::cli_reference::commands_in_help(&check(d, &["--help"], "", 0));
    assert!(commands.len() > 20, "{commands:?}");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = check(d, &["completions", shell], "", 0);
        for c in &commands {
            assert!(script.contains(c.as_str()), "{shell} completions lack {c}");
        }
        assert!(!script.contains("demo-child"), "{shell}: a hidden command");
    }
    let page = check(d, &["man"], "", 0);
    assert!(
        page.starts_with(".ie") || page.contains(".TH statewal 1"),
        "{page}"
    );
    for c in &commands {
        assert!(page.contains(&c.replace('-', "\\-")), "man page lacks {c}");
    }
    assert!(
        !page.contains("demo\\-child"),
        "a hidden command in the man page"
    );
    let list = check(d, &["man", "list"], "", 0);
    assert!(list.contains(".TH statewal-list 1"), "{list}");
    assert!(list.contains("\\-\\-status"), "{list}");
    let out = run_statewal(d, &["man", "nope"], "", &[]);
    assert_eq!(out.status.code(), Some(2));
}

// Guards (issue 14): the demo says what it will do, prints the
// acknowledgements it says it prints, and stamps its tasks, so `list`'s
// UPDATED column is not "-" for them.
#[test]
fn demo_narrates_prints_acks_and_stamps_its_tasks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let d = dir.to_str().unwrap();
    let out = run_statewal(Path::new(d), &["demo", "--acks", "5", "--keep"], "", &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let kill = text
        .find("killed the child with SIGKILL")
        .expect("the kill");
    assert!(text[..kill].contains("will write tasks"), "{text}");
    let acks = text
        .lines()
        .filter(|l| l.trim_start().starts_with("ack "))
        .count();
    assert!(acks >= 5, "{acks} acknowledgements printed:\n{text}");
    assert!(
        !text.contains("StateFile") && !text.contains("Empty"),
        "{text}"
    );
    let table = check(Path::new(d), &["list"], "", 0);
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("demo-")).collect();
    assert!(rows.len() >= 5, "{table}");
    for row in rows {
        let updated = row.split_whitespace().nth(2).unwrap();
        assert!(updated.ends_with('Z') && updated.len() == 24, "{row}");
    }
}

/// Opens a pseudo-terminal: (master, slave).
fn pty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two new descriptors into the integers given;
    // the name, termios and window size pointers may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned here alone.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// What `statewal ARGS` writes when its stdout and stderr are a terminal.
fn on_a_terminal(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let (master, slave) = pty();
    let mut child = statewal_command(dir)
        .args(args)
        .env("RUST_LOG", "statewal=debug")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .envs(env.iter().copied())
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    // Read while it runs: a full terminal buffer would block it.
    let mut master = std::fs::File::from(master);
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    // The slave's last copy closes with the child: reading then ends (EIO).
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    assert!(child.wait().unwrap().success());
    String::from_utf8_lossy(&bytes).into_owned()
}

// Guards (issue 14): log lines, and clap's help, carry colour only when
// they go to a terminal, and never when NO_COLOR is set.
#[test]
fn colour_only_on_a_terminal_and_never_under_no_color() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    check(d, &["put-task", "-"], r#"{"id":"a"}"#, 0);
    let piped = run_statewal(d, &["list"], "", &[("RUST_LOG", "statewal=debug")]);
    let piped = String::from_utf8_lossy(&piped.stderr);
    assert!(
        piped.contains("recovered"),
        "no log lines to look at: {piped}"
    );
    assert!(!piped.contains('\x1b'), "escape codes on a pipe: {piped:?}");

    for (args, shown) in [(&["list"][..], "recovered"), (&["list", "--help"], "Usage")] {
        let coloured = on_a_terminal(d, args, &[]);
        assert!(coloured.contains(shown), "{args:?}: {coloured:?}");
        assert!(
            coloured.contains("\x1b["),
            "{args:?}: no colour on a terminal: {coloured:?}"
        );
        let plain = on_a_terminal(d, args, &[("NO_COLOR", "1")]);
        assert!(plain.contains(shown), "{args:?}: {plain:?}");
        assert!(
            !plain.contains('\x1b'),
            "{args:?}: colour under NO_COLOR: {plain:?}"
        );
    }
}

// Guards (issue 14): Ctrl-C during `bench` removes its scratch directory;
// SIGINT's default action left gigabytes behind.
#[test]
fn bench_removes_its_scratch_directory_on_sigint() {
    let tmp = tempfile::tempdir().unwrap();
    let scratch = tmp.path().join("scratch");
    let mut child = statewal_command(tmp.path())
        .args(["bench", "--seconds", "30", "--tasks", "1000", "--scratch"])
        .arg(&scratch)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first row is writing into the scratch directory.
    let started = Instant::now();
    while std::fs::read_dir(&scratch).map_or(true, |mut d| d.next().is_none()) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "bench never wrote"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: kill(2) with the pid of our own child and a valid signal.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(!scratch.exists(), "the scratch directory is left: {stderr}");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(stderr.contains("interrupted"), "{stderr}");
}

/// A bad word for `--sync`, `recover --mode` or `--status` once got an
/// error listing only the snake_case words of the JSON output, while
/// `--help` shows them hyphenated: a reader of the help could not find
/// their word in the error. Now the error names the flag, the bad value,
/// the words, and says the hyphenated spelling works too; and each word
/// the help shows is accepted.
#[test]
fn a_bad_word_error_names_the_flag_and_both_spellings() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (args, flag, word) in [
        (
            &["--sync", "bogus", "list"][..],
            "--sync",
            "sync_before_ack",
        ),
        (
            &["recover", "--mode", "bogus"][..],
            "--mode",
            "point_in_time",
        ),
        (&["list", "--status", "bogus"][..], "--status", "pending"),
    ] {
        let out = run_statewal(d, args, "", &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(err.contains("\"bogus\""), "{args:?}: {err}");
        assert!(err.contains(word), "{args:?}: {err}");
        if word.contains('_') {
            assert!(err.contains("with hyphens"), "{args:?}: {err}");
        }
    }
    check(
        d,
        &["--sync", "sync-before-ack", "put-task", "-"],
        r#"{"id":"a"}"#,
        0,
    );
    check(d, &["--sync", "os-buffered", "list"], "", 0);
    check(d, &["recover", "--mode", "tolerate-torn-tail"], "", 0);
    check(d, &["list", "--status", "pending"], "", 0);
}
