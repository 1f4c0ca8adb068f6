//! The README's command-line reference and `--help` say the same thing
//! (issue 14): the same commands, each with the same options, the same
//! global options, and a `--json` schema for every command that has
//! `--json`. A command or flag added to one and not the other fails here.

use std::collections::BTreeSet;
use std::path::Path;

/// The visible commands `statewal --help` lists, `help` left out.
pub fn commands_in_help(help: &str) -> Vec<String> {
    section(help, "Commands:")
        .iter()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// The commands `statewal --help` lists, each group (`replica`) replaced
/// by its commands (`replica status`), `help` left out.
pub fn leaf_commands(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    for name in commands_in_help(help) {
        let sub = commands_in_help(&help_of(&[&name, "--help"]));
        match sub.is_empty() {
            true => out.push(name),
            false => out.extend(sub.into_iter().map(|s| format!("{name} {s}"))),
        }
    }
    out
}

/// The name of the command a README usage cell documents: its first words
/// that are lowercase, up to an argument, a flag or a bracket (`replica
/// status URL` is `replica status`).
fn command_name(cell: &str) -> String {
    let words: Vec<&str> = cell
        .split_whitespace()
        .take_while(|w| {
            w.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !w.starts_with('-')
        })
        .collect();
    words.join(" ")
}

/// The lines of a `--help` section, from its heading to the blank line.
fn section<'a>(help: &'a str, heading: &str) -> Vec<&'a str> {
    help.lines()
        .skip_while(|l| *l != heading)
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect()
}

/// The long flags a `--help` section documents, `--help` and `--version`
/// left out: the first `--word` of each option line.
fn flags_in(help: &str, heading: &str) -> BTreeSet<String> {
    section(help, heading)
        .iter()
        .filter(|l| l.trim_start().starts_with('-'))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")))
        .map(|w| w.trim_end_matches(',').to_string())
        .filter(|f| f != "--help" && f != "--version")
        .collect()
}

/// The long flags written in a piece of README text.
fn flags_written(text: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("--") {
        let word: String = rest[at + 2..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '-')
            .collect();
        if !word.is_empty() {
            flags.insert(format!("--{word}"));
        }
        rest = &rest[at + 2 + word.len()..];
    }
    flags
}

/// `statewal ARGS` (a command of a group written as one argument,
/// `replica status`, split into its words).
pub fn help_of(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statewal"))
        .args(args.iter().flat_map(|a| a.split(' ')))
        .env_remove("STATE_PATH")
        .output()
        .unwrap();
    assert!(out.status.success(), "statewal {args:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The README's "Command-line reference" section.
fn reference() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("## Command-line reference")
        .expect("the README has a command-line reference");
    let end = readme[start + 3..]
        .find("\n## ")
        .map_or(readme.len(), |e| start + 3 + e);
    readme[start..end].to_string()
}

/// The reference's command table: for each command, the flags of every row
/// that documents it (`migrate` has two).
fn table_rows(reference: &str) -> Vec<(String, BTreeSet<String>)> {
    let mut rows: Vec<(String, BTreeSet<String>)> = Vec::new();
    for line in reference.lines().filter(|l| l.starts_with("| `")) {
        let cell = line[3..].split('`').next().unwrap();
        let name = command_name(cell);
        let flags = flags_written(cell);
        match rows.iter_mut().find(|(n, _)| *n == name) {
            Some((_, all)) => all.extend(flags),
            None => rows.push((name, flags)),
        }
    }
    rows
}

/// The commands the reference's "`--json` output" list describes: the
/// names in backquotes before the colon of each `- ` item.
fn json_schemas(reference: &str) -> BTreeSet<&str> {
    let list = &reference[reference
        .find("### `--json` output")
        .expect("the reference has a `--json` output section")..];
    list.lines()
        .filter_map(|l| l.strip_prefix("- "))
        .filter_map(|l| l.split_once(':').map(|(head, _)| head))
        .flat_map(|head| head.split('`').skip(1).step_by(2))
        .collect()
}

#[test]
fn the_readme_reference_matches_help() {
    let reference = reference();
    let top = help_of(&["--help"]);

    // The same global options, in the synopsis line.
    let synopsis = reference
        .lines()
        .find(|l| l.starts_with("statewal [--dir"))
        .expect("the reference opens with the synopsis");
    assert_eq!(
        flags_written(synopsis),
        flags_in(&top, "Global options:"),
        "global options: README synopsis vs --help"
    );

    // The same commands.
    let table = table_rows(&reference);
    let in_table: BTreeSet<&str> = table.iter().map(|(n, _)| n.as_str()).collect();
    let in_help = leaf_commands(&top);
    let in_help: BTreeSet<&str> = in_help.iter().map(String::as_str).collect();
    assert_eq!(in_table, in_help, "commands: README table vs --help");

    // Each with the same options.
    let schemas = json_schemas(&reference);
    for (name, flags) in &table {
        let help = help_of(&[name, "--help"]);
        assert_eq!(
            *flags,
            flags_in(&help, "Options:"),
            "options of `{name}`: README table vs `statewal {name} --help`"
        );
        // Each --json output has its schema in the reference.
        if flags.contains("--json") {
            assert!(
                schemas.contains(name.as_str()),
                "no --json schema for `{name}` in the README's `--json` output list"
            );
        }
    }
}

// The helpers read what they should; a parser that found nothing would
// make the test above pass vacuously.
#[test]
fn the_reference_parsers_find_things() {
    let top = help_of(&["--help"]);
    assert!(commands_in_help(&top).contains(&"list".to_string()));
    assert!(flags_in(&top, "Global options:").contains("--dir"));
    assert!(flags_in(&help_of(&["list", "--help"]), "Options:").contains("--status"));
    assert_eq!(
        flags_written("`clean --older-than AGE [--dry-run]`"),
        BTreeSet::from(["--older-than".to_string(), "--dry-run".to_string()])
    );
    assert!(table_rows(&reference()).len() > 20);
}

/// The reference's command table: for each command, the usage in the
/// first row that documents it, and the text of every such row
/// (`migrate` has two).
fn row_texts(reference: &str) -> Vec<(String, String, String)> {
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for line in reference.lines().filter(|l| l.starts_with("| `")) {
        let cell = line[3..].split('`').next().unwrap();
        let name = command_name(cell);
        match rows.iter_mut().find(|(n, ..)| *n == name) {
            Some((.., all)) => all.push_str(line),
            None => rows.push((name, cell.to_string(), line.to_string())),
        }
    }
    rows
}

/// The positional arguments a usage writes, in order, each with whether
/// it is optional: `<ID>` and `[FILE]` from `--help`'s Usage line, `ID`
/// and `[FILE\|-]` from the README's table; a flag's value (`--older-than
/// AGE`, `<AGE>`) is not one.
fn positionals(usage: &[&str]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut words = usage.iter().peekable();
    while let Some(w) = words.next() {
        if *w == "[OPTIONS]" {
            continue;
        }
        if w.trim_start_matches('[').starts_with("--") {
            // A flag; its value follows unless the bracket closed.
            let closed = w.starts_with('[') && w.ends_with(']');
            if !closed
                && words.peek().is_some_and(|v| {
                    v.starts_with('<') || v.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                })
            {
                words.next();
            }
            continue;
        }
        let optional = w.starts_with('[');
        let name = w.trim_matches(['[', ']', '<', '>']);
        let name = name.split("\\|").next().unwrap().to_string();
        out.push((name, optional));
    }
    out
}

/// `statewal CMD --help`'s Usage line, after the command's name.
fn usage_of(help: &str, name: &str) -> Vec<String> {
    let line = help
        .lines()
        .find(|l| l.starts_with("Usage: "))
        .expect("a Usage line");
    let rest = line
        .strip_prefix(&format!("Usage: statewal {name}"))
        .unwrap_or_else(|| panic!("{line}"));
    rest.split_whitespace().map(str::to_string).collect()
}

/// The `[default: X]` of every option line in a `--help` section.
fn defaults_in(help: &str, heading: &str) -> Vec<(String, String)> {
    section(help, heading)
        .iter()
        .filter_map(|l| {
            let flag = l.split_whitespace().find(|w| w.starts_with("--"))?;
            let at = l.find("[default: ")? + "[default: ".len();
            let value = &l[at..at + l[at..].find(']')?];
            Some((flag.trim_end_matches(',').to_string(), value.to_string()))
        })
        .collect()
}

/// Whether README text states `value` as a default: "(default 300)",
/// "`point-in-time` by default", "`sync-before-ack` (default)".
fn states_default(text: &str, value: &str) -> bool {
    let text = text.replace('`', "");
    [
        format!("default {value}"),
        format!("{value} by default"),
        format!("{value} (default)"),
    ]
    .iter()
    .any(|p| text.contains(p.as_str()))
}

// Review of issue 14, point 1: the comparison with --help only looked at
// command and flag names; README could say `get-task NAME PATTERN`, or
// a wrong default, and the test passed. Now each command's positional
// arguments and each stated default must match its --help.
#[test]
fn the_readme_reference_has_each_commands_arguments_and_defaults() {
    let reference = reference();
    let top = help_of(&["--help"]);
    for (flag, value) in defaults_in(&top, "Global options:") {
        assert!(
            states_default(&reference, &value),
            "the reference does not say {flag} is {value} by default"
        );
    }
    let rows = row_texts(&reference);
    for (name, cell, text) in &rows {
        let help = help_of(&[name, "--help"]);
        let usage = usage_of(&help, name);
        let usage: Vec<&str> = usage.iter().map(String::as_str).collect();
        let cell_words: Vec<&str> = cell
            .split_whitespace()
            .skip(name.split(' ').count())
            .collect();
        assert_eq!(
            positionals(&cell_words),
            positionals(&usage),
            "positional arguments of `{name}`: README `{cell}` vs `{}`",
            usage.join(" ")
        );
        for (flag, value) in defaults_in(&help, "Options:") {
            assert!(
                states_default(text, &value),
                "README's `{name}` row does not say {flag} is {value} by default\n{text}"
            );
        }
    }
}

/// The README's `--json` output list: each item's command names and text.
fn json_items(reference: &str) -> Vec<(Vec<String>, String)> {
    let list = &reference[reference.find("### `--json` output").unwrap()..];
    let mut items: Vec<(Vec<String>, String)> = Vec::new();
    for line in list.lines() {
        if let Some(item) = line.strip_prefix("- ") {
            let (head, _) = item.split_once(':').unwrap_or((item, ""));
            let names = head.split('`').skip(1).step_by(2).map(str::to_string);
            items.push((names.collect(), item.to_string()));
        } else if line.starts_with("  ")
            && let Some((_, text)) = items.last_mut()
        {
            text.push(' ');
            text.push_str(line.trim());
        } else if line.trim().is_empty() && !items.is_empty() {
            break;
        }
    }
    items
}

/// The words in double quotes in a piece of text.
fn quoted(text: &str) -> BTreeSet<String> {
    text.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The keys the README documents for `command`'s `--json` output: every
/// quoted word of its item, and of the items of the commands it refers to
/// in backquotes ("`decisions` are as in `migrate`"); and the keys of its
/// first `{...}`, at its top level, which every output must have.
fn documented_keys(
    items: &[(Vec<String>, String)],
    command: &str,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let text_of = |c: &str| {
        items
            .iter()
            .find(|(names, _)| names.iter().any(|n| n == c))
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("no --json item for {c}"))
    };
    let text = text_of(command);
    let mut all = quoted(&text);
    for referred in text.split('`').skip(1).step_by(2) {
        if referred != command && items.iter().any(|(n, _)| n.iter().any(|n| n == referred)) {
            all.extend(quoted(&text_of(referred)));
        }
    }
    let mut top = BTreeSet::new();
    if let Some(open) = text.find('{') {
        let mut depth = 0;
        let mut word = None::<String>;
        for c in text[open..].chars() {
            match (c, &mut word) {
                ('"', None) => word = Some(String::new()),
                ('"', Some(w)) => {
                    if depth == 1 {
                        top.insert(std::mem::take(w));
                    }
                    word = None;
                }
                (c, Some(w)) => w.push(c),
                ('{' | '[', None) => depth += 1,
                ('}' | ']', None) => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    (all, top)
}

/// Every key of a JSON value, at any depth, but inside the maps whose
/// keys are data (`metrics`' `files`: directory names).
fn keys_of(v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, x) in map {
                out.insert(k.clone());
                if k != "files" {
                    keys_of(x, out);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|x| keys_of(x, out)),
        _ => {}
    }
}

// Review of issue 14, point 1: the README's `--json` schemas were not
// compared with the output (README could say `archive_path` for clean's
// `archive_file`). Now every command's --json output, run on a populated
// store, has only keys its item documents, and every top-level key of the
// item's `{...}`.
#[test]
fn the_readme_json_schemas_match_each_commands_output() {
    use crate::util::check_statewal as check;
    let reference = reference();
    let items = json_items(&reference);
    let dir = crate::cli_manners::populated();
    let d = dir.path();
    let scratch = tempfile::tempdir().unwrap();
    let bench_dir = scratch.path().join("bench");
    #[cfg(feature = "encryption")]
    let key_file = scratch.path().join("key").display().to_string();
    #[cfg(feature = "encryption")]
    let key_file2 = {
        let path = scratch.path().join("key2");
        statewal::crypto::Key::generate_file(&path).unwrap();
        path.display().to_string()
    };
    let copy_dir = scratch.path().join("copy");
    let export_dir = scratch.path().join("export").display().to_string();
    // A replica of the populated store, for `replica status` and
    // `restore-from`.
    let bucket = format!("file://{}/bucket/r", scratch.path().display());
    std::fs::create_dir_all(scratch.path().join("bucket")).unwrap();
    check(d, &["--replicate", &bucket, "checkpoint"], "", 0);
    let restored = scratch.path().join("restored");
    let newest =
        crate::util::json_lines(check(d, &["backups", "--json"], "", 0).as_bytes())[0]["name"]
            .as_str()
            .unwrap()
            .to_string();
    let runs: Vec<(&str, Vec<&str>, &str)> = vec![
        ("dump-journal", vec!["dump-journal"], ""),
        ("backups", vec!["backups"], ""),
        ("list-reports", vec!["list-reports"], ""),
        ("list-logs", vec!["list-logs"], ""),
        ("read-log", vec!["read-log", "session_s1.log"], ""),
        ("health", vec!["health"], ""),
        ("metrics", vec!["metrics"], ""),
        ("verify", vec!["verify"], ""),
        ("recover", vec!["recover"], ""),
        ("checkpoint", vec!["checkpoint"], ""),
        ("migrate", vec!["migrate", "--dry-run"], ""),
        (
            "clean",
            vec!["clean", "--older-than", "1d", "--dry-run"],
            "",
        ),
        ("put-task", vec!["put-task", "-"], r#"{"id":"c"}"#),
        ("restore", vec!["restore", &newest], ""),
        ("clean", vec!["clean", "--older-than", "1d"], ""),
        ("delete-task", vec!["delete-task", "b"], ""),
        (
            "copy",
            vec![
                "copy",
                "--from",
                d.to_str().unwrap(),
                "--to",
                copy_dir.to_str().unwrap(),
            ],
            "",
        ),
        ("replica status", vec!["replica", "status", &bucket], ""),
        ("export", vec!["export", "--to", &export_dir], ""),
        (
            "restore-from",
            vec!["restore-from", &bucket, "--to", restored.to_str().unwrap()],
            "",
        ),
        #[cfg(feature = "encryption")]
        ("keygen", vec!["keygen", &key_file], ""),
        #[cfg(feature = "encryption")]
        ("encrypt", vec!["--key-file", &key_file, "encrypt"], ""),
        #[cfg(feature = "encryption")]
        (
            "rekey",
            vec![
                "--key-file",
                &key_file,
                "rekey",
                "--new-key-file",
                &key_file2,
            ],
            "",
        ),
        #[cfg(feature = "encryption")]
        ("decrypt", vec!["--key-file", &key_file2, "decrypt"], ""),
        (
            "bench",
            vec![
                "bench",
                "--seconds",
                "0.01",
                "--tasks",
                "10",
                "--scratch",
                bench_dir.to_str().unwrap(),
            ],
            "",
        ),
    ];
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    if !cfg!(feature = "encryption") {
        // Not built: they print nothing but their refusal.
        seen.extend(["keygen", "encrypt", "decrypt", "rekey"]);
    }
    for (command, mut args, stdin) in runs {
        args.push("--json");
        let out = check(d, &args, stdin, 0);
        let (documented, top) = documented_keys(&items, command);
        for line in out.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let mut keys = BTreeSet::new();
            keys_of(&v, &mut keys);
            let undocumented: Vec<&String> = keys.difference(&documented).collect();
            assert!(
                undocumented.is_empty(),
                "`{}` prints keys README's `--json` item does not document: {undocumented:?}\n{line}",
                args.join(" ")
            );
            let own: BTreeSet<String> = v.as_object().unwrap().keys().cloned().collect();
            let missing: Vec<&String> = top.difference(&own).collect();
            // dump-journal's sync markers and damaged spans have keys of their own.
            // replica status's generation and summary lines too.
            let own_keys = (command == "dump-journal" && v["kind"] == "sync_marker")
                || (command == "replica status" && v["kind"] != "segment");
            if !own_keys {
                assert!(
                    missing.is_empty(),
                    "`{}` lacks keys README's `--json` item documents: {missing:?}\n{line}",
                    args.join(" ")
                );
            }
        }
        seen.insert(command);
    }
    // Every command whose output has a documented schema was run; the
    // others print a stored object (a task, a report, a session) as it is.
    for (names, text) in &items {
        for name in names {
            assert!(
                seen.contains(name.as_str()) || quoted(text).is_empty(),
                "`{name}` documents keys but this test does not run it"
            );
        }
    }
}
