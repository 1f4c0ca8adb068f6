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

fn help_of(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statewal"))
        .args(args)
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
        let name = cell.split_whitespace().next().unwrap().to_string();
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
    let in_help = commands_in_help(&top);
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
