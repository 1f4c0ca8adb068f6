//! What `--help` adds to clap's definition: examples for every command,
//! what each command does with the global flags for features not built yet
//! (`--replicate`, `--key-file`, `--key-command`), and which commands run
//! on PostgreSQL (`--database`, [`ON_POSTGRES`]).
//!
//! The same [`command`] feeds parsing, `completions` and `man`, so all three
//! show the same text.

use crate::{Cli, Command};
use clap::CommandFactory;
use statewal::{Error, ErrorKind, Result};

/// What a command does with the global flags (`../shared/CONTRACTS.md`
/// section 3). For the flags of features not built yet (`--replicate`,
/// `--key-file`, `--key-command`, `STATEWAL_KEY`), a command refuses one it
/// would use (doing its work without it would be wrong: unencrypted,
/// unreplicated, or on the wrong store) and ignores one it has no use for.
/// `--database` is built (issue 12): the commands in [`ON_POSTGRES`] run on
/// it, the other store commands refuse it. Each command's `--help` names
/// every global flag it ignores.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Uses {
    /// Opens the store and writes it: uses every global flag.
    StoreWrites,
    /// `migrate`: writes the state directory's files without opening a
    /// store through the journal; every file it writes is synced, so it
    /// has no use for `--sync`.
    Migrates,
    /// Only reads the store (always read-only, or without opening it):
    /// uses `--dir`, `--database` and the key.
    StoreReads,
    /// `demo`: its own store in its own directory; takes `--dir` (from the
    /// command line only) and passes `--sync` to the writer it kills.
    Demo,
    /// Never touches a store: ignores every global flag.
    Nothing,
    /// `copy`: reads the store `--from` names and writes the one `--to`
    /// names, so it ignores `--dir` and `--database`; it uses the others
    /// as a command that writes does.
    Copy,
    /// `restore-from`: writes the new directory `--to` names from a
    /// replica, syncing every file, so it ignores `--dir`, `--database`,
    /// `--sync`, `--read-only` and `--replicate`; it would use the key.
    RestoreFrom,
    /// `replica status`: reads a bucket's listing, no store at all.
    Replica,
}

/// The commands that run on PostgreSQL (`--database`, `DATABASE_URL`, or a
/// `postgres://` URL in `--dir`); every other command that opens a store
/// refuses a database with "`<command>` is not available on PostgreSQL".
/// `copy` reaches PostgreSQL through its own `--from` and `--to`.
pub const ON_POSTGRES: &[&str] = &[
    "put-task",
    "get-task",
    "delete-task",
    "list",
    "show",
    "serve",
    "health",
    "metrics",
    "copy",
];

/// Each visible command: its name, the flags it would use, and its
/// examples. The README's CLI reference and its test follow this list.
const COMMANDS: &[(&str, Uses, &str)] = &[
    (
        "demo",
        Uses::Demo,
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
        Uses::Migrates,
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
        "copy",
        Uses::Copy,
        "  statewal copy --from ./state --to postgres://app@db.internal/app
  statewal copy --from postgres://app@db.internal/app --to ./state-copy
  statewal copy --from ./state --to ./state-copy --json | jq .destination.tasks",
    ),
    (
        "restore-from",
        Uses::RestoreFrom,
        "  statewal restore-from s3://backups/app --to ./state-restored
  statewal restore-from s3://backups/app --to ./state-restored --at 1200
  statewal restore-from s3://backups/app --to ./state-restored --at 2026-12-02T10:00:00Z
  statewal restore-from file:///mnt/replica/app --to ./state-restored --json
  AWS_ENDPOINT=http://127.0.0.1:9000 AWS_ALLOW_HTTP=true \\
    statewal restore-from s3://backups/app --to ./state-restored   # an S3-compatible service",
    ),
    (
        "encrypt",
        Uses::StoreWrites,
        "  statewal --key-file ~/.config/statewal/key --dir ./state encrypt
  statewal --key-command 'pass show statewal' --dir ./state encrypt --cipher aes-256-gcm --json",
    ),
    (
        "rekey",
        Uses::StoreWrites,
        "  statewal keygen ~/.config/statewal/key-2027
  statewal --key-file ~/.config/statewal/key --dir ./state rekey --new-key-file ~/.config/statewal/key-2027
  statewal --key-command 'pass show statewal' --dir ./state rekey --new-key-file ./new-key --json",
    ),
    (
        "export",
        Uses::StoreReads,
        "  statewal --key-file ~/.config/statewal/key --dir ./state export --to ./state-plain
  statewal --dir ./state export --to /mnt/usb/state-copy --json | jq .verified",
    ),
    (
        "decrypt",
        Uses::StoreWrites,
        "  statewal --key-file ~/.config/statewal/key --dir ./state decrypt
  STATEWAL_KEY=\"$(cat key)\" statewal --dir ./state decrypt --json",
    ),
    (
        "keygen",
        Uses::Nothing,
        "  statewal keygen ~/.config/statewal/key
  statewal --key-file ~/.config/statewal/key --dir ./state put-task - < task.json
  statewal keygen ./key --json | jq -r .key_id",
    ),
    (
        "replica status",
        Uses::Replica,
        "  statewal replica status s3://backups/app
  statewal replica status file:///mnt/replica/app --json | jq -c 'select(.kind == \"summary\")'",
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
        let notes = match database_note(name, uses) {
            "" => flag_note(uses),
            db => format!("{} {db}", flag_note(uses)),
        };
        let text = format!("Examples:\n{examples}\n\n{notes}");
        cmd = match name.split_once(' ') {
            // A command of a group (`replica status`).
            Some((group, sub)) => {
                cmd.mut_subcommand(group, |g| g.mut_subcommand(sub, |c| c.after_help(text)))
            }
            None => cmd.mut_subcommand(name, |sub| sub.after_help(text)),
        };
    }
    cmd
}

/// What a command's `--help` says about `--database`: that it runs on
/// PostgreSQL, or refuses a database. Commands that open no store of the
/// user's say it among the flags they ignore.
fn database_note(name: &str, uses: Uses) -> &'static str {
    if matches!(
        uses,
        Uses::Nothing | Uses::Demo | Uses::Copy | Uses::RestoreFrom | Uses::Replica
    ) {
        ""
    } else if ON_POSTGRES.contains(&name) && uses == Uses::StoreWrites {
        "With --database (or DATABASE_URL, or a postgres:// URL as --dir) it runs on \
         PostgreSQL, where --sync does not apply: a write returns once PostgreSQL committed \
         it, as durable as the server's synchronous_commit makes it (docs/postgres.md)."
    } else if ON_POSTGRES.contains(&name) {
        "With --database (or DATABASE_URL, or a postgres:// URL as --dir) it runs on \
         PostgreSQL."
    } else {
        "It is not available on PostgreSQL: given --database (or DATABASE_URL, or a \
         postgres:// URL as --dir), it refuses (exit 2)."
    }
}

/// What a command's `--help` says about the global flags: the ones it
/// ignores (every one, by name, in one sentence that starts "This command
/// ignores"), and the ones for features not built yet that it refuses.
fn flag_note(uses: Uses) -> String {
    // With the `encryption` feature, the commands that open a store take
    // the key; the others still refuse it.
    const KEY_USED: &str = "--key-file, --key-command or STATEWAL_KEY give the key of an \
                            encrypted store (docs/encryption.md).";
    let keys = cfg!(feature = "encryption");
    match uses {
        Uses::StoreWrites if cfg!(feature = "replicate") && keys => format!(
            "This command uses every global option; with --replicate (or STATEWAL_REPLICATE) \
             it ships what it writes to that bucket (docs/replication.md). {KEY_USED}"
        ),
        Uses::StoreWrites if keys => format!(
            "This command uses every global option. {KEY_USED} --replicate is for a feature \
             not built yet: it refuses it (exit 2) rather than write without it."
        ),
        Uses::StoreReads if keys => format!(
            "This command ignores --sync, --read-only and --replicate: it writes nothing (it \
             opens the store read-only, or reads its files without opening it). {KEY_USED}"
        ),
        Uses::RestoreFrom if keys => flag_note_plain(uses).replace(
            "--key-file, --key-command (and STATEWAL_KEY) are for features not built yet: it \
             refuses them (exit 2) rather than write without them.",
            "The replica of an encrypted store needs its key (--key-file, --key-command or \
             STATEWAL_KEY), and the restored store is encrypted under it; without it, or given \
             a key for a plain replica, it refuses (exit 2) before writing anything.",
        ),
        Uses::Migrates if keys => "This command ignores --sync: it syncs everything it writes, \
             as sync-before-ack does, whatever the policy. It refuses --key-file, --key-command \
             (and STATEWAL_KEY): an encrypted store is in the current format already (exit 2). \
             It refuses --replicate too (exit 2): it writes the files directly."
            .to_string(),
        Uses::Copy if keys => flag_note_plain(uses).replace(
            "and refuses \
             --replicate, --key-file, --key-command (and STATEWAL_KEY), which are for \
             features not built yet (exit 2).",
            "and refuses --replicate (exit 2). It refuses --key-file, --key-command (and \
             STATEWAL_KEY) too (exit 2): `statewal export` copies an encrypted store into a \
             plain one.",
        ),
        other => flag_note_plain(other).to_string(),
    }
}

/// [`flag_note`] where no key is taken.
fn flag_note_plain(uses: Uses) -> &'static str {
    match uses {
        Uses::StoreWrites if cfg!(feature = "replicate") => {
            "This command uses every global option; with --replicate (or STATEWAL_REPLICATE) \
             it ships what it writes to that bucket (docs/replication.md). --key-file, \
             --key-command (and STATEWAL_KEY) are for features not built yet: it refuses them \
             (exit 2) rather than write without them."
        }
        Uses::StoreWrites => {
            "This command uses every global option. --replicate, --key-file, --key-command \
             (and STATEWAL_KEY) are for features not built yet: it refuses them (exit 2) rather \
             than write without them."
        }
        Uses::Migrates => {
            "This command ignores --sync: it syncs everything it writes, as sync-before-ack \
             does, whatever the policy. \
             --replicate, --key-file, --key-command (and STATEWAL_KEY) are for features not \
             built yet: it refuses them (exit 2) rather than write without them."
        }
        Uses::StoreReads => {
            "This command ignores --sync, --read-only and --replicate: it writes nothing (it \
             opens the store read-only, or reads its files without opening it). --key-file, \
             --key-command (and STATEWAL_KEY) are for features not built yet: it refuses them \
             (exit 2)."
        }
        Uses::Demo => {
            "This command ignores --read-only, --replicate, --database, --key-file, \
             --key-command and STATEWAL_KEY: it writes a store of its own, in a directory of its \
             own. It takes --dir from the command line only (it ignores STATE_PATH), and runs \
             its writer with --sync."
        }
        Uses::Nothing => {
            "This command ignores --dir (and STATE_PATH), --sync, --read-only, --replicate, \
             --database, --key-file, --key-command and STATEWAL_KEY: it opens no store."
        }
        Uses::RestoreFrom => {
            "This command ignores --dir (and STATE_PATH), --sync, --read-only, --replicate and \
             --database (and DATABASE_URL): it writes only the new state directory --to names, \
             from the replica URL names, and syncs every file it writes. Credentials and \
             endpoints come from the environment, as for --replicate (AWS_*, AZURE_*, \
             GOOGLE_*; AWS_ENDPOINT and AWS_ALLOW_HTTP for an S3-compatible service). \
             --key-file, --key-command (and STATEWAL_KEY) are for features not built yet: it \
             refuses them (exit 2) rather than write without them. Exit 1 when a corrupt or \
             missing object stopped it before the target (it names the object; every record \
             before it is restored)."
        }
        Uses::Replica => {
            "This command ignores --dir (and STATE_PATH), --sync, --read-only, --replicate, \
             --database, --key-file, --key-command and STATEWAL_KEY: it opens no store, and \
             reads one listing of the bucket URL names (no object is downloaded). Credentials \
             and endpoints come from the environment, as for --replicate (AWS_*, AZURE_*, \
             GOOGLE_*)."
        }
        Uses::Copy => {
            "This command ignores --dir (and STATE_PATH) and --database (and DATABASE_URL): \
             --from and --to name its two stores, each a state directory or a postgres:// URL, \
             so it runs on PostgreSQL through them. It takes --sync for a destination \
             directory, refuses --read-only (it writes the destination), and refuses \
             --replicate, --key-file, --key-command (and STATEWAL_KEY), which are for \
             features not built yet (exit 2)."
        }
    }
}

/// What the command `cli` runs does with a store.
fn uses_of(cli: &Cli) -> Uses {
    match &cli.command {
        Command::Demo { .. } => Uses::Demo,
        Command::DemoChild { .. }
        | Command::Bench { .. }
        | Command::BenchRss
        | Command::Completions { .. }
        | Command::Keygen { .. }
        | Command::Man { .. } => Uses::Nothing,
        Command::PutTask { .. }
        | Command::DeleteTask { .. }
        | Command::Restore { .. }
        | Command::Clean { .. }
        | Command::Checkpoint { .. }
        | Command::Recover { .. }
        | Command::Encrypt { .. }
        | Command::Decrypt { .. }
        | Command::Rekey { .. }
        | Command::Serve { .. } => Uses::StoreWrites,
        Command::Migrate { .. } => Uses::Migrates,
        Command::Copy { .. } => Uses::Copy,
        Command::RestoreFrom { .. } => Uses::RestoreFrom,
        Command::Replica { .. } => Uses::Replica,
        _ => Uses::StoreReads,
    }
}

/// Whether a command takes the key when encryption is built: the ones
/// that open a store through the library.
fn key_used(uses: Uses) -> bool {
    matches!(
        uses,
        Uses::StoreWrites | Uses::StoreReads | Uses::RestoreFrom
    )
}

/// The key, for a command that uses one (`key_used`), from `--key-file`
/// (or `STATEWAL_KEY_FILE`), else `--key-command`, else `STATEWAL_KEY`;
/// `None` when none is given.
#[cfg(feature = "encryption")]
pub fn load_key(cli: &Cli) -> Result<Option<statewal::crypto::Key>> {
    use statewal::crypto::KeySource;
    if !key_used(uses_of(cli)) {
        return Ok(None);
    }
    let source = match (&cli.key_file, &cli.key_command) {
        (Some(path), _) => KeySource::File(path.clone()),
        (None, Some(cmd)) => KeySource::Command(cmd.clone()),
        (None, None) if std::env::var_os(statewal::crypto::KEY_ENV).is_some() => KeySource::Env,
        (None, None) => return Ok(None),
    };
    source.load().map(Some)
}

/// Fails when a flag for a feature not built yet is given to a command
/// that would use it, or a database to a command not available on
/// PostgreSQL; a command with no use for either goes on.
pub fn refuse_unbuilt(cli: &Cli) -> Result<()> {
    let uses = uses_of(cli);
    let key_env = std::env::var_os("STATEWAL_KEY").is_some();
    let writes = matches!(uses, Uses::StoreWrites | Uses::Migrates | Uses::Copy);
    let opens = writes || uses == Uses::StoreReads;
    // `restore-from` writes a store but opens none: only the key matters.
    let keyed = opens || uses == Uses::RestoreFrom;
    // Built (feature `encryption`) for the commands that open a store.
    let keyed = keyed && !(cfg!(feature = "encryption") && key_used(uses));
    let given = [
        (
            // Built (feature `replicate`) for the commands that write
            // through a store; `migrate` and `copy` write files directly.
            cli.replicate.is_some()
                && writes
                && !(cfg!(feature = "replicate") && uses == Uses::StoreWrites),
            "--replicate (STATEWAL_REPLICATE)",
            "replication (issue 11)",
        ),
        (
            cli.key_file.is_some() && keyed,
            "--key-file (STATEWAL_KEY_FILE)",
            "encryption at rest (issue 13)",
        ),
        (
            cli.key_command.is_some() && keyed,
            "--key-command",
            "encryption at rest (issue 13)",
        ),
        (
            key_env && keyed,
            "STATEWAL_KEY",
            "encryption at rest (issue 13)",
        ),
    ];
    let key_given = cli.key_file.is_some() || cli.key_command.is_some() || key_env;
    if cfg!(feature = "encryption") && key_given && matches!(uses, Uses::Migrates | Uses::Copy) {
        let why = match uses {
            Uses::Migrates => {
                "`migrate` takes no key: an encrypted store is written in the current format \
                 already (migrate a store before `statewal encrypt`)"
            }
            _ => {
                "`copy` takes no key: `statewal export --to DIR` copies an encrypted store into \
                 a plain one, and `statewal encrypt` encrypts a copy"
            }
        };
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{why}; nothing was done"),
        ));
    }
    if opens && uses != Uses::Copy && cli.database_url().is_some() {
        let name = cli.command_name.as_str();
        if !ON_POSTGRES.contains(&name) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "`{name}` is not available on PostgreSQL (a database was given by \
                     --database, DATABASE_URL or a postgres:// URL as --dir); it runs on a \
                     state directory only; nothing was done"
                ),
            ));
        }
    }
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
    render_man(page_of, &mut page).map_err(|e| Error::io("render", "the man page", e))?;
    out!("{}", String::from_utf8_lossy(&page));
    Ok(std::process::ExitCode::SUCCESS)
}

/// clap_mangen's sections in its order, with ENVIRONMENT and EXIT STATUS
/// (which it has no notion of) after the options and commands, where
/// man-pages(7) puts them.
fn render_man(cmd: clap::Command, w: &mut Vec<u8>) -> std::io::Result<()> {
    let has_args = cmd.get_arguments().any(|a| !a.is_hide_set());
    let has_commands = cmd.get_subcommands().any(|s| !s.is_hide_set());
    let has_extra = cmd.get_after_long_help().is_some() || cmd.get_after_help().is_some();
    let has_version = cmd.get_version().is_some() || cmd.get_long_version().is_some();
    let man = clap_mangen::Man::new(cmd);
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    if has_args {
        man.render_options_section(w)?;
    }
    if has_commands {
        man.render_subcommands_section(w)?;
    }
    w.extend_from_slice(environment_and_exit_status().as_bytes());
    if has_extra {
        man.render_extra_section(w)?;
    }
    if has_version {
        man.render_version_section(w)?;
    }
    Ok(())
}

/// The variables statewal reads, and what each stands for.
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "STATE_PATH",
        "The state directory, when --dir is not given.",
    ),
    (
        "STATEWAL_REPLICATE",
        "As --replicate (with the replicate feature; without it, a command that writes the \
         store refuses it).",
    ),
    (
        "AWS_*, AZURE_*, GOOGLE_*",
        "A replica's credentials and endpoint, as each service's tools read them \
         (AWS_ENDPOINT and AWS_ALLOW_HTTP=true for an S3-compatible service).",
    ),
    (
        "STATEWAL_REPLICA_RETENTION",
        "How long the replica keeps what it shipped, such as 7d, 36h or forever (default \
         7d); older objects are pruned from the bucket. A value that does not parse stops \
         the command (exit 2).",
    ),
    (
        "DATABASE_URL",
        "As --database (not built yet: a command that opens a store refuses it).",
    ),
    ("STATEWAL_KEY_FILE", "As --key-file."),
    (
        "STATEWAL_KEY",
        "The encryption key itself, one line of base64 (docs/encryption.md); --key-file and \
         --key-command take precedence. Needs the feature `encryption`.",
    ),
    (
        "RUST_LOG",
        "Which diagnostics go to standard error (default: warnings), e.g. statewal=debug.",
    ),
    (
        "DEBUG",
        "DEBUG=persistence:* (the original server's namespaces) is taken as \
         RUST_LOG=statewal=debug; RUST_LOG wins when both are set.",
    ),
    (
        "NO_COLOR",
        "Set to anything but the empty string: no colour in log lines, help or errors. \
         Without it, colour only when standard error is a terminal.",
    ),
    (
        "TMPDIR",
        "Where demo and bench make their directories when not told where.",
    ),
];

/// The exit codes `main`, `verify`, `health`, `demo`, `serve` and `bench`
/// use.
const EXIT_STATUS: &[(&str, &str)] = &[
    (
        "0",
        "Success; also when the reader of standard output closed it early \
         (statewal list | head -1).",
    ),
    (
        "1",
        "verify found damage, health found the directory unhealthy, or demo lost an \
         acknowledged write; serve got a second SIGINT or SIGTERM during its shutdown; \
         restore-from stopped before its target at a corrupt or missing object.",
    ),
    (
        "2",
        "An error: a bad argument, a refused flag, a missing store, an I/O error, ...; \
         the message on standard error says which.",
    ),
    (
        "130, 143",
        "bench was interrupted by SIGINT or SIGTERM (its scratch directory is removed).",
    ),
];

/// The ENVIRONMENT and EXIT STATUS sections, in roff.
fn environment_and_exit_status() -> String {
    let mut roff = String::new();
    for (heading, items) in [
        ("ENVIRONMENT", ENVIRONMENT),
        ("\"EXIT STATUS\"", EXIT_STATUS),
    ] {
        roff.push_str(&format!(".SH {heading}\n"));
        for (name, text) in items {
            roff.push_str(&format!(
                ".TP\n\\fB{}\\fR\n{}\n",
                roff_escape(name),
                roff_escape(text)
            ));
        }
    }
    roff
}

/// Text as roff shows it literally: backslashes and hyphens escaped, and
/// no line that starts as a request.
fn roff_escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    match escaped.starts_with(['.', '\'']) {
        true => format!("\\&{escaped}"),
        false => escaped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every visible command has examples, and every name in the table is a
    // command (mut_subcommand panics on an unknown name).
    #[test]
    fn every_command_has_examples() {
        let cmd = command();
        // A command group (`replica`) has its examples on its commands.
        let commands = cmd.get_subcommands().flat_map(|s| {
            if s.has_subcommands() {
                s.get_subcommands().collect::<Vec<_>>()
            } else {
                vec![s]
            }
        });
        for sub in commands.filter(|s| !s.is_hide_set()) {
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
