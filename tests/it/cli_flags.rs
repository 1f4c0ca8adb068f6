//! The flags' manners, found by an adversarial review of issue 14: the
//! words of `--sync`, `--mode` and `--status` in the completions and
//! `--help`; the man page's ENVIRONMENT and EXIT STATUS; `--json` on every
//! command that prints data; each `--help` naming the global flags the
//! command ignores; the demo's `--acks`; range errors in words.

use crate::cli_manners::populated;
use crate::util::{check_statewal as check, json_object, run_statewal};
use std::collections::BTreeSet;
use std::path::Path;

/// stderr of `statewal ARGS`, which must exit 2.
#[track_caller]
fn refused(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = run_statewal(dir.path(), args, "", &[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    err
}

// Review of issue 14, point 2: the completion scripts offered filenames
// for `--sync`, `recover --mode` and `--status`, and `--help` showed no
// possible values.
#[test]
fn completions_and_help_offer_the_words_of_sync_mode_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bash = check(d, &["completions", "bash"], "", 0);
    for word in [
        "sync-before-ack",
        "os-buffered",
        "interval:<ms>",
        "tolerate-torn-tail",
        "point-in-time",
        "salvage",
        "in_progress",
        "cancelled",
    ] {
        assert!(bash.contains(word), "bash completions lack {word}");
    }
    let fish = check(d, &["completions", "fish"], "", 0);
    assert!(fish.contains("point-in-time"), "{fish}");
    for (args, words) in [
        (
            &["--help"][..],
            "sync-before-ack, os-buffered, interval:<ms>",
        ),
        (
            &["recover", "--help"],
            "tolerate-torn-tail, strict, point-in-time, salvage",
        ),
        (
            &["list", "--help"],
            "pending, in_progress, waiting, completed, failed, cancelled",
        ),
        (&["clean", "--help"], "pending, in_progress, waiting"),
    ] {
        let help = check(d, args, "", 0);
        assert!(
            help.contains(&format!("[possible values: {words}")),
            "{args:?}:\n{help}"
        );
    }
    // Each word still parses, both spellings, and the interval too.
    check(
        d,
        &["put-task", "--sync", "interval:5", "-"],
        r#"{"id":"a"}"#,
        0,
    );
    check(d, &["list", "--status", "in-progress,pending"], "", 0);
    check(d, &["recover", "--mode", "point_in_time"], "", 0);
}

// Review of issue 14, point 3: `statewal man` had no ENVIRONMENT and no
// EXIT STATUS section.
#[test]
fn man_pages_have_environment_and_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["man"][..], &["man", "list"]] {
        let page = check(dir.path(), args, "", 0);
        let env = page
            .find(".SH ENVIRONMENT")
            .unwrap_or_else(|| panic!("{args:?}: no ENVIRONMENT:\n{page}"));
        let exit = page
            .find(".SH \"EXIT STATUS\"")
            .unwrap_or_else(|| panic!("{args:?}: no EXIT STATUS:\n{page}"));
        let environment = &page[env..exit];
        for var in [
            "STATE_PATH",
            "STATEWAL_REPLICATE",
            "DATABASE_URL",
            "STATEWAL_KEY_FILE",
            "STATEWAL_KEY",
            "NO_COLOR",
            "RUST_LOG",
        ] {
            assert!(
                environment.contains(&format!("\\fB{var}\\fR")),
                "{args:?}: ENVIRONMENT lacks {var}:\n{environment}"
            );
        }
        let status = &page[exit..];
        for code in ["0", "1", "2", "130, 143"] {
            assert!(
                status.contains(&format!(".TP\n\\fB{code}\\fR\n")),
                "{args:?}: EXIT STATUS lacks {code}:\n{status}"
            );
        }
    }
}

/// The commands `statewal --help` lists.
fn commands(d: &Path) -> Vec<String> {
    crate::cli_reference::leaf_commands(&check(d, &["--help"], "", 0))
}

/// A command's words (`replica status` is two), then `more`.
fn words<'a>(command: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    command.split(' ').chain(more.iter().copied()).collect()
}

/// The commands that print no data of their own, so have no `--json`:
/// the demo narrates, `serve` speaks JSON already, `completions` and `man`
/// print a script and a page (docs/decisions.md).
const NO_JSON: [&str; 4] = ["demo", "serve", "completions", "man"];

// Review of issue 14, point 4: `get-task ID --json` was refused while
// every other read command took it.
#[test]
fn every_command_that_prints_data_takes_json() {
    let dir = populated();
    let d = dir.path();
    for command in commands(d) {
        let help = check(d, &words(&command, &["--help"]), "", 0);
        let has = help.contains("\n      --json ");
        assert_eq!(
            has,
            !NO_JSON.contains(&command.as_str()),
            "{command}: --json in its --help: {has}"
        );
    }
    // get-task --json: the task as stored, compact, keys in the writer's
    // order.
    let task = r#"{"id":"z","zeta":1,"status":"pending","alpha":{"b":2,"a":1}}"#;
    check(d, &["put-task", "-"], task, 0);
    let out = check(d, &["get-task", "z", "--json"], "", 0);
    assert_eq!(out, format!("{task}\n"));
    json_object(out.as_bytes());
}

/// The global flags, as `statewal --help` lists them, and `STATE_PATH`
/// and `STATEWAL_KEY`, which a help names beside the flag they stand for.
const GLOBALS: [&str; 7] = [
    "--dir",
    "--sync",
    "--read-only",
    "--replicate",
    "--database",
    "--key-file",
    "--key-command",
];

/// The global flags `command` uses, from what it does: a command that
/// opens no store uses none; one that only reads uses the directory, the
/// database and the key, not `--sync`, `--read-only` (it never writes) or
/// `--replicate`; one that writes uses all of them, except `migrate`'s
/// `--sync` (it syncs everything it writes); the demo writes a store of
/// its own, in `--dir`, with `--sync`.
fn uses(command: &str) -> BTreeSet<&'static str> {
    let all = BTreeSet::from(GLOBALS);
    let reads = BTreeSet::from(["--dir", "--database", "--key-file", "--key-command"]);
    match command {
        "bench" | "completions" | "man" | "keygen" => BTreeSet::new(),
        "demo" => BTreeSet::from(["--dir", "--sync"]),
        "migrate" => all.into_iter().filter(|f| *f != "--sync").collect(),
        // --from and --to name its stores.
        "copy" => all
            .into_iter()
            .filter(|f| *f != "--dir" && *f != "--database")
            .collect(),
        "put-task" | "delete-task" | "restore" | "clean" | "checkpoint" | "recover" | "serve"
        | "encrypt" | "decrypt" | "rekey" => all,
        "list" | "get-task" | "show" | "metrics" | "get-report" | "list-reports" | "list-logs"
        | "read-log" | "get-session" | "health" | "verify" | "dump-journal" | "backups"
        | "export" => reads,
        // It writes the new directory --to names from a bucket, syncing
        // every file, and would need the key; it opens no store.
        "restore-from" => BTreeSet::from(["--key-file", "--key-command"]),
        // One listing of a bucket.
        "replica status" => BTreeSet::new(),
        other => panic!("a new command {other}: say which global flags it uses"),
    }
}

/// The flags named in the sentence of a `--help` that starts "This
/// command ignores", up to its colon.
fn ignored_in_help(help: &str) -> BTreeSet<String> {
    let Some(at) = help.find("This command ignores ") else {
        return BTreeSet::new();
    };
    let sentence = &help[at..];
    let sentence = &sentence[..sentence.find(':').unwrap()];
    sentence
        .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
        .filter(|w| w.starts_with("--"))
        .map(str::to_string)
        .collect()
}

// Review of issue 14, point 5 (CONTRACTS section 3: "A command that has no
// use for one says so in its --help"): the helps named only the flags of
// features not built yet; verify ignored --sync without saying so, bench
// --dir.
#[test]
fn every_help_names_each_global_flag_its_command_ignores() {
    let dir = populated();
    let d = dir.path();
    let globals_in_help: BTreeSet<String> = check(d, &["--help"], "", 0)
        .lines()
        .skip_while(|l| *l != "Global options:")
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")))
        .map(str::to_string)
        .collect();
    assert_eq!(
        globals_in_help,
        GLOBALS.iter().map(|f| f.to_string()).collect(),
        "the global flags changed: update GLOBALS and uses()"
    );
    for command in commands(d) {
        let help = check(d, &words(&command, &["--help"]), "", 0);
        let used = uses(&command);
        let ignored: BTreeSet<String> = GLOBALS
            .iter()
            .filter(|f| !used.contains(*f))
            .map(|f| f.to_string())
            .collect();
        assert_eq!(
            ignored_in_help(&help),
            ignored,
            "`statewal {command} --help` names these as ignored:\n{help}"
        );
        if !used.contains("--dir") {
            assert!(help.contains("(and STATE_PATH)"), "{command}:\n{help}");
        }
    }
    // And an ignored flag changes nothing: the cheap commands, given every
    // flag they ignore, do what they do without them.
    let cheap: [&[&str]; 6] = [
        &["verify"],
        &["dump-journal"],
        // Not backups: its ages move with the clock.
        &["list-reports"],
        &["list"],
        &["completions", "bash"],
        &["man"],
    ];
    for args in cheap {
        let plain = check(d, args, "", 0);
        let mut with: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        for flag in ignored_in_help(&check(d, &[args[0], "--help"], "", 0)) {
            let value = match flag.as_str() {
                "--read-only" => None,
                // Given already, before the command, by check().
                "--dir" => continue,
                "--sync" => Some("os-buffered"),
                _ => Some("x"),
            };
            with.push(flag);
            with.extend(value.map(str::to_string));
        }
        let with: Vec<&str> = with.iter().map(String::as_str).collect();
        assert_eq!(check(d, &with, "", 0), plain, "{with:?}");
    }
}

// Review of issue 14, point 6: `demo --acks 0` promised to kill after 0
// acknowledgements and then reported 1; and the demo printed "the
// checkpointed layout is in DIR" right before removing DIR.
#[test]
fn demo_wants_an_acknowledgement_and_does_not_point_at_a_removed_directory() {
    let err = refused(&["demo", "--acks", "0"]);
    assert!(err.contains("--acks must be at least 1"), "{err}");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = run_statewal(&dir, &["demo", "--acks", "2"], "", &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("removed "), "{text}");
    assert!(!dir.exists());
    let shown = dir.display().to_string();
    for line in text.lines().filter(|l| l.contains(&shown)) {
        assert!(
            line.starts_with("removed ") || line.starts_with("statewal demo: state directory"),
            "a line points at the directory that is removed: {line}\n{text}"
        );
    }
}

// Review of issue 14, point 7: range errors said `"0" seconds is out of
// range`, `0 is not in 1..18446744073709551615`, and repeated humantime's
// list of units "(and few variations)". Each now names the flag and says
// what is allowed in words.
#[test]
fn range_errors_name_the_flag_and_say_what_is_allowed() {
    for (args, says) in [
        (
            &["bench", "--seconds", "0"][..],
            "--seconds must be more than 0",
        ),
        (
            &["bench", "--seconds", "x"],
            "--seconds takes a number of seconds",
        ),
        (&["bench", "--tasks", "0"], "--tasks must be at least 1"),
        (
            &["serve", "--stdio", "--max-line-bytes", "0"],
            "--max-line-bytes must be at least 1 byte",
        ),
        (
            &["clean", "--older-than", "3x"],
            "--older-than takes numbers with units",
        ),
        (&["clean", "--older-than", "3"], "has no unit"),
        (&["demo", "--acks", "x"], "--acks takes a whole number"),
    ] {
        let err = refused(args);
        assert!(err.contains(says), "{args:?}: {err}");
        for rough in [
            "few variations",
            "out of range",
            "18446744073709551615",
            "is not in",
        ] {
            assert!(!err.contains(rough), "{args:?}: {err}");
        }
    }
}
