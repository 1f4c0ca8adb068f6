//! What `--help` adds to clap's definition: examples for every command, and
//! what each command does with the global flags for features not built yet
//! (`--replicate`, `--database`, `--key-file`, `--key-command`).
//!
//! The same [`command`] feeds parsing, `completions` and `man`, so all three
//! show the same text.

use crate::{Cli, Command};
use clap::CommandFactory;
use statewal::{Error, ErrorKind, Result};

/// Which of the not-yet-built global flags a command would use once they
/// are built. A command refuses a flag it would use (doing its work without
/// it would be wrong: unencrypted, unreplicated, or on the wrong store) and
/// ignores one it has no use for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Uses {
    /// Opens a store and writes it: `--database`, the key and `--replicate`.
    StoreWrites,
    /// Opens or reads a store without writing it: `--database` and the key.
    StoreReads,
    /// Never touches a store: ignores all four.
    Nothing,
}

/// Each visible command: its name, the flags it would use, and its
/// examples. The README's CLI reference and its test follow this list.
const COMMANDS: &[(&str, Uses, &str)] = &[
    (
        "demo",
        Uses::Nothing,
        "  statewal demo                      # in a fresh temporary directory, removed at the end
  statewal demo --acks 1000 --keep   # kill later, keep the directory
  statewal --dir /tmp/d demo --keep  # in /tmp/d (missing, empty or demo-made)",
    ),
    (
        "put-task",
        Uses::StoreWrites,
        "  statewal put-task task.json
  echo '{\"id\":\"a\",\"status\":\"pending\"}' | statewal put-task
  statewal --dir ./state put-task --json task.json   # prints {\"id\":...,\"seq\":...}",
    ),
    (
        "get-task",
        Uses::StoreReads,
        "  statewal get-task a
  statewal --dir ./state get-task a | jq .status",
    ),
    (
        "delete-task",
        Uses::StoreWrites,
        "  statewal delete-task a
  statewal delete-task --json a",
    ),
    (
        "list",
        Uses::StoreReads,
        "  statewal list
  statewal list --status completed,failed --tool claude
  statewal list --updated-after 2026-12-01T00:00:00Z --limit 20             # the first page
  statewal list --updated-after 2026-12-01T00:00:00Z --limit 20 --offset 20 # the next
  statewal list --json | jq -r 'select(.status == \"failed\") | .id'",
    ),
    (
        "health",
        Uses::StoreReads,
        "  statewal health
  statewal --dir ./state health --json | jq .problems",
    ),
    (
        "metrics",
        Uses::StoreReads,
        "  statewal metrics > statewal.prom
  statewal metrics --json | jq .tasks",
    ),
    (
        "dump-journal",
        Uses::StoreReads,
        "  statewal dump-journal | grep DAMAGED
  statewal dump-journal --json | jq -c 'select(.kind == \"put_task\")'",
    ),
    (
        "show",
        Uses::StoreReads,
        "  statewal show a
  statewal show a --json",
    ),
    (
        "get-report",
        Uses::StoreReads,
        "  statewal get-report r1
  statewal get-report r1 --json",
    ),
    (
        "list-reports",
        Uses::StoreReads,
        "  statewal list-reports
  statewal list-reports --json | jq -r .file_name",
    ),
    (
        "list-logs",
        Uses::StoreReads,
        "  statewal list-logs
  statewal list-logs --json | jq -r 'select(.pending) | .file_name'",
    ),
    (
        "read-log",
        Uses::StoreReads,
        "  statewal read-log session_s1.log
  statewal read-log session_s1.log --offset 1024 --length 512
  statewal read-log session_s1.log --json | jq -r .text",
    ),
    (
        "get-session",
        Uses::StoreReads,
        "  statewal get-session s1
  statewal get-session s1 --json",
    ),
    (
        "backups",
        Uses::StoreReads,
        "  statewal backups
  statewal backups --json | jq -r 'select(.valid) | .name'",
    ),
    (
        "restore",
        Uses::StoreWrites,
        "  statewal restore state.backup.1767268800000.json
  statewal restore 1767268800000 --json",
    ),
    (
        "clean",
        Uses::StoreWrites,
        "  statewal clean --older-than 30d --dry-run
  statewal clean --older-than 12h --status failed,cancelled
  statewal clean --older-than '1d 12h' --json",
    ),
    (
        "migrate",
        Uses::StoreWrites,
        "  statewal migrate --dry-run
  statewal migrate
  statewal migrate --rollback",
    ),
    (
        "checkpoint",
        Uses::StoreWrites,
        "  statewal checkpoint
  statewal checkpoint --json | jq .checkpoint",
    ),
    (
        "verify",
        Uses::StoreReads,
        "  statewal verify
  statewal verify --json | jq .findings",
    ),
    (
        "recover",
        Uses::StoreWrites,
        "  statewal recover
  statewal recover --mode salvage --json",
    ),
    (
        "serve",
        Uses::StoreWrites,
        "  statewal serve --stdio
  printf '%s\\n' '{\"req\":1,\"op\":\"list_tasks\"}' | statewal --dir ./state serve --stdio",
    ),
    (
        "bench",
        Uses::Nothing,
        "  statewal bench
  statewal bench --seconds 1 --tasks 10000 --scratch /mnt/disk/tmp --json",
    ),
    (
        "completions",
        Uses::Nothing,
        "  statewal completions bash > ~/.local/share/bash-completion/completions/statewal
  statewal completions zsh > ~/.zfunc/_statewal
  statewal completions fish > ~/.config/fish/completions/statewal.fish",
    ),
    (
        "man",
        Uses::Nothing,
        "  statewal man > statewal.1 && man ./statewal.1
  statewal man list > statewal-list.1
  statewal man | gzip > /usr/local/share/man/man1/statewal.1.gz",
    ),
];

const TOP_EXAMPLES: &str = "Examples:
  statewal demo                                 # the tour: kill a writer, lose nothing
  statewal --dir ./state list                   # the tasks in ./state
  STATE_PATH=./state statewal list --json       # the same, as JSON Lines
  statewal --dir ./state verify                 # check every file without opening the store
  statewal help clean                           # one command's options and examples";

/// The clap command with every command's examples and flag notes.
pub fn command() -> clap::Command {
    let mut cmd = Cli::command().after_help(TOP_EXAMPLES);
    for &(name, uses, examples) in COMMANDS {
        let text = format!("Examples:\n{examples}\n\n{}", flag_note(uses));
        cmd = cmd.mut_subcommand(name, |sub| sub.after_help(text));
    }
    cmd
}

/// What a command's `--help` says about the flags for features not built yet.
fn flag_note(uses: Uses) -> &'static str {
    match uses {
        Uses::StoreWrites => {
            "--replicate, --database, --key-file, --key-command (and STATEWAL_KEY) are for \
             features not built yet: this command refuses them (exit 2) rather than write \
             without them."
        }
        Uses::StoreReads => {
            "--database, --key-file, --key-command (and STATEWAL_KEY) are for features not built \
             yet: this command refuses them (exit 2). It writes nothing, so it ignores \
             --replicate."
        }
        Uses::Nothing => {
            "This command opens no store, so it ignores --replicate, --database, --key-file, \
             --key-command and STATEWAL_KEY."
        }
    }
}

/// Fails when a flag for a feature not built yet is given to a command
/// that would use it; a command with no use for it goes on.
pub fn refuse_unbuilt(cli: &Cli) -> Result<()> {
    let uses = match &cli.command {
        Command::Demo { .. }
        | Command::DemoChild { .. }
        | Command::Bench { .. }
        | Command::BenchRss
        | Command::Completions { .. }
        | Command::Man { .. } => Uses::Nothing,
        Command::PutTask { .. }
        | Command::DeleteTask { .. }
        | Command::Restore { .. }
        | Command::Clean { .. }
        | Command::Migrate { .. }
        | Command::Checkpoint { .. }
        | Command::Recover { .. }
        | Command::Serve { .. } => Uses::StoreWrites,
        _ => Uses::StoreReads,
    };
    let key_env = std::env::var_os("STATEWAL_KEY").is_some();
    let given = [
        (
            cli.replicate.is_some() && uses == Uses::StoreWrites,
            "--replicate (STATEWAL_REPLICATE)",
            "replication (issue 11)",
        ),
        (
            cli.database.is_some() && uses != Uses::Nothing,
            "--database (DATABASE_URL)",
            "the PostgreSQL backend (issue 12)",
        ),
        (
            cli.key_file.is_some() && uses != Uses::Nothing,
            "--key-file (STATEWAL_KEY_FILE)",
            "encryption at rest (issue 13)",
        ),
        (
            cli.key_command.is_some() && uses != Uses::Nothing,
            "--key-command",
            "encryption at rest (issue 13)",
        ),
        (
            key_env && uses != Uses::Nothing,
            "STATEWAL_KEY",
            "encryption at rest (issue 13)",
        ),
    ];
    match given.iter().find(|(refused, ..)| *refused) {
        Some((_, flag, feature)) => Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{flag} was given, but {feature} is not built into this version of statewal; \
                 nothing was done"
            ),
        )),
        None => Ok(()),
    }
}

/// `statewal completions SHELL`: the completion script on standard output.
pub fn completions(shell: clap_complete::Shell) -> Result<std::process::ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut visible(command()), "statewal", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    Ok(std::process::ExitCode::SUCCESS)
}

/// `cmd` without its hidden commands (the demo's child, bench's probe),
/// which some shells' generators would otherwise offer.
fn visible(cmd: clap::Command) -> clap::Command {
    let commands: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let args: Vec<clap::Arg> = cmd.get_arguments().cloned().collect();
    let mut visible = clap::Command::new("statewal")
        .version(env!("CARGO_PKG_VERSION"))
        .args(args)
        .subcommands(commands);
    if let Some(about) = cmd.get_about() {
        visible = visible.about(about.clone());
    }
    visible
}

/// `statewal man [COMMAND]`: a man page (roff) on standard output:
/// statewal(1), which lists the commands, or statewal-COMMAND(1).
pub fn man(name: Option<&str>) -> Result<std::process::ExitCode> {
    let mut cmd = command();
    cmd.build();
    let page_of = match name {
        None => cmd,
        Some(name) => {
            let sub = cmd
                .get_subcommands()
                .find(|s| s.get_name() == name && !s.is_hide_set())
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidInput,
                        format!("no command {name:?}; `statewal --help` lists them"),
                    )
                })?;
            sub.clone()
                .display_name(format!("statewal-{name}"))
                .version(env!("CARGO_PKG_VERSION"))
        }
    };
    let mut page = Vec::new();
    clap_mangen::Man::new(page_of)
        .render(&mut page)
        .map_err(|e| Error::io("render", "the man page", e))?;
    out!("{}", String::from_utf8_lossy(&page));
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every visible command has examples, and every name in the table is a
    // command (mut_subcommand panics on an unknown name).
    #[test]
    fn every_command_has_examples() {
        let cmd = command();
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            if sub.get_name() == "help" {
                continue;
            }
            let text = sub.get_after_help().map(|h| h.to_string());
            assert!(
                text.is_some_and(|t| t.contains("Examples:")),
                "{} has no examples",
                sub.get_name()
            );
        }
        command().debug_assert();
    }
}
