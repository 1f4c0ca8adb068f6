//! The `statewal` command-line tool.
//!
//! Each subcommand lives in its own module; this file parses arguments,
//! sets up diagnostics and maps errors to exit codes: 0 success, 1 a
//! check that found damage (verify), an unhealthy directory (health) or
//! lost writes (demo), 2 an error. A reader that closes the pipe on our
//! standard output early (`statewal list | head -1`) ends the command
//! quietly with 0, as ripgrep does (see `out.rs`).

/// `println!` that returns early with the error when standard output fails
/// (a closed pipe), instead of panicking; see `out.rs`.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::out::write(format_args!(""), true)?
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*), true)?
    };
}

/// `print!` that returns early with the error when standard output fails.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*), false)?
    };
}

mod backups;
mod bench;
mod clean;
mod commands;
mod copy;
mod demo;
mod health;
mod help;
mod inspect;
mod list;
mod metrics;
mod migrate;
mod out;
mod progress;
mod readback;
mod replica;
mod scratch;
mod serve;
mod serve_events;
mod values;

use clap::{FromArgMatches, Parser, Subcommand};
use statewal::{Options, RecoveryMode, SyncPolicy};
use std::path::PathBuf;
use std::process::ExitCode;

/// A crash-proof, journaled store for an application's tasks, sessions,
/// session logs and reports.
#[derive(Parser, Debug)]
#[command(name = "statewal", version, about, long_about = None)]
pub struct Cli {
    /// The state directory (a postgres:// or postgresql:// URL here means --database).
    #[arg(long, global = true, help_heading = "Global options", env = "STATE_PATH", default_value = statewal::DEFAULT_DIR)]
    pub dir: PathBuf,
    /// When writes are acknowledged (interval:<ms> syncs every <ms> milliseconds).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "POLICY",
        value_parser = values::sync(),
        default_value = "sync-before-ack"
    )]
    pub sync: SyncPolicy,
    /// Open the store read-only: no lock (works beside a running writer), nothing
    /// written, created or migrated on disk; every change is refused (exit 2).
    /// `list`, `get-task`, `show`, `metrics`, `clean --dry-run` and the read-back
    /// commands (`get-report`, `list-reports`, `list-logs`, `read-log`,
    /// `get-session`) always open read-only; `health`, `verify`, `dump-journal`,
    /// `backups` and the commands that open no store (`demo`, `bench`,
    /// `completions`, `man`) never write the store and ignore it.
    #[arg(long, global = true, help_heading = "Global options")]
    pub read_only: bool,
    /// Ship the journal and checkpoints to this replica (s3://, gs://, az:// or file://)
    /// as the store is written; `restore-from` rebuilds a directory from it. Without
    /// the `replicate` feature, a command that writes the store refuses it.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "STATEWAL_REPLICATE",
        value_name = "URL"
    )]
    pub replicate: Option<String>,
    /// Keep the store in the PostgreSQL database at this URL instead of a
    /// directory (a postgres:// or postgresql:// URL given to --dir means the
    /// same). put-task, get-task, delete-task, list, show, serve, health and
    /// metrics run on it; the other store commands refuse it (exit 2). Reads
    /// never create statewal's tables; the first write does, and says where.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "DATABASE_URL",
        value_name = "URL"
    )]
    pub database: Option<String>,
    /// Read the encryption key of an encrypted store from this file, which
    /// only its owner may read (mode 0600); the key may also come from
    /// --key-command or STATEWAL_KEY (docs/encryption.md). Needs statewal
    /// built with the feature `encryption`; without it, a command that
    /// opens a store refuses it.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "STATEWAL_KEY_FILE",
        value_name = "PATH"
    )]
    pub key_file: Option<PathBuf>,
    /// Run this command through `sh -c` for the encryption key: its
    /// standard output is the key (docs/encryption.md). Needs statewal
    /// built with the feature `encryption`; without it, a command that
    /// opens a store refuses it.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "CMD"
    )]
    pub key_command: Option<String>,
    #[command(subcommand)]
    pub command: Command,
    /// The key loaded from --key-file, --key-command or STATEWAL_KEY, for
    /// a command that opens a store.
    #[cfg(feature = "encryption")]
    #[arg(skip)]
    pub key: Option<statewal::crypto::Key>,
    /// Whether `--dir` was given on the command line (not by `STATE_PATH` or
    /// the default), for `demo`.
    #[arg(skip)]
    pub dir_on_command_line: bool,
    /// Whether `--database` was given on the command line (not by
    /// `DATABASE_URL`), which then wins over a URL in `--dir`.
    #[arg(skip)]
    pub database_on_command_line: bool,
    /// The command as typed (`put-task`), for messages.
    #[arg(skip)]
    pub command_name: String,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Kill a writer with SIGKILL mid-stream, reopen, and show that nothing acknowledged was lost.
    /// Runs in a fresh temporary directory, or in the one `--dir` names on the
    /// command line if it is missing, empty or made by an earlier demo (it holds
    /// a `.statewal-demo` file); any other directory is refused, and `STATE_PATH`
    /// is ignored, so the demo never writes into a store it did not create.
    /// The directory is removed at the end unless `--keep` is given.
    Demo {
        /// Acknowledged writes to wait for before the kill (at least 1).
        #[arg(long, value_name = "N", default_value_t = 300, value_parser = values::count("--acks", 1, 1_000_000, "at least 1 (the writer is killed after that many acknowledgements) and at most 1000000"))]
        acks: u64,
        /// Keep the demo's directory (and its store) at the end.
        #[arg(long)]
        keep: bool,
    },
    /// Store a task read as JSON from FILE, or from standard input with `-` or no argument.
    PutTask {
        /// A file holding one task object.
        file: Option<PathBuf>,
        /// Print `{"id", "seq"}` as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print a task as JSON (pretty-printed).
    GetTask {
        /// The task id.
        id: String,
        /// Print it compact, on one line.
        #[arg(long)]
        json: bool,
    },
    /// Delete a task.
    DeleteTask {
        /// The task id.
        id: String,
        /// Print `{"id", "seq"}` as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List tasks by updated_at, oldest first (tasks without one last), then id: a table, or with
    /// --json JSON Lines, one full task object per line. The filters only leave tasks out.
    List {
        /// Print JSON Lines: one full task object per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        filters: list::ListArgs,
    },
    /// Check the state directory without opening it (works while another process has it open).
    /// On a database: whether it can be reached, takes writes and holds statewal's schema.
    /// Exit 0 when healthy, 1 when not, saying why.
    Health {
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print the store's metrics in the Prometheus text format.
    Metrics {
        /// Print them as one JSON object instead.
        #[arg(long)]
        json: bool,
    },
    /// Print one line per journal record (and per damaged span), without opening the store.
    DumpJournal {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show one task for a person: fields, logs and result.
    Show {
        /// The task id.
        id: String,
        /// Print the task as one compact JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print a report as JSON: the one journaled last, else reports/report_<ID>.json,
    /// else the original server's reports/<ID>.json.
    GetReport {
        /// The report id.
        id: String,
        /// Print it compact, on one line.
        #[arg(long)]
        json: bool,
    },
    /// List the reports, statewal's and the original server's: a table, or JSON Lines with --json.
    ListReports {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// List the session logs, statewal's and the original server's: a table, or JSON Lines with --json.
    ListLogs {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Print a session log's bytes as they are, appends not yet checkpointed included.
    ReadLog {
        /// The log's file name inside logs/, as list-logs lists it.
        #[arg(value_name = "FILE")]
        file_name: String,
        /// The first byte to print.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// How many bytes to print at most (default: to the end).
        #[arg(long)]
        length: Option<u64>,
        /// Print one JSON object: the bytes as "text" when UTF-8, else as "base64".
        #[arg(long)]
        json: bool,
    },
    /// Print a session record as JSON.
    GetSession {
        /// The session id.
        id: String,
        /// Print it compact, on one line.
        #[arg(long)]
        json: bool,
    },
    /// List the state.backup.*.json files, newest first, with age, size, validity and task count.
    Backups {
        /// Print JSON Lines: one object per backup.
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup's tasks and sessions through the journal; prints the backup that undoes it.
    Restore {
        /// The backup's file name (or its stamp), as `statewal backups` lists it.
        backup: String,
        /// Print what changed as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Move finished tasks older than AGE to archive/tasks-<YYYY>-<MM>.jsonl (JSON lines) through the journal.
    Clean {
        /// Archive tasks whose completed_at (else updated_at, else created_at) is older than this: 30d, 12h, 90m.
        #[arg(long, value_name = "AGE", value_parser = clean::parse_age)]
        older_than: std::time::Duration,
        /// Only tasks with these statuses, comma-separated.
        #[arg(long, value_name = "S1,S2", value_delimiter = ',', value_parser = values::status(), default_value = "completed,failed,cancelled")]
        status: Vec<statewal::TaskStatus>,
        /// Say what would be archived and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print what was (or would be) archived as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Migrate state.json to this version (the directory must not be open);
    /// the original is kept in state.pre-migration.backup.json.
    Migrate {
        /// Print what would change and write nothing.
        #[arg(long, conflicts_with = "rollback")]
        dry_run: bool,
        /// Restore state.pre-migration.backup.json as state.json.
        #[arg(long)]
        rollback: bool,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Open, recover, checkpoint and exit.
    Checkpoint {
        /// Print the recovery report and the checkpoint's figures as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Check the journal, state.json, backups and tasks/ without changing anything.
    /// Exit 0 when everything checks out, 1 when anything is damaged.
    Verify {
        /// Print the findings as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Open with a recovery mode that accepts damage, checkpoint, and report what was kept.
    Recover {
        /// How to treat damage in the journal (docs/recovery.md).
        #[arg(long, value_parser = values::mode(), default_value = "point-in-time")]
        mode: RecoveryMode,
        /// Print the recovery report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Serve the JSON-lines protocol on standard input and output.
    Serve {
        /// Read requests from stdin and write responses to stdout (the only transport).
        #[arg(long, required = true)]
        stdio: bool,
        /// The longest request line taken, in bytes; a longer one is read
        /// and thrown away as it streams in, and answered with `too_large`.
        /// Default: 4 times the task size limit (64 MiB).
        #[arg(long, value_name = "N", value_parser = values::count("--max-line-bytes", 1, u64::MAX, "at least 1 byte"))]
        max_line_bytes: Option<u64>,
        /// The most bytes of `subscribe`'s event lines the client may
        /// leave unread; past it the subscription ends with a
        /// `subscription_ended` line and the server keeps serving.
        /// Default: 4194304 (4 MiB).
        #[arg(long, value_name = "N", value_parser = values::count("--max-event-bytes", 1, u64::MAX, "at least 1 byte"))]
        max_event_bytes: Option<u64>,
    },
    /// Compare statewal with direct file writes side by side (about a minute).
    Bench {
        /// Print the results as one JSON object.
        #[arg(long)]
        json: bool,
        /// Seconds each throughput row runs.
        #[arg(long, default_value_t = 2.0, value_parser = parse_seconds)]
        seconds: f64,
        /// Where to write (default: a fresh directory under the system temp dir).
        /// Put it on the disk you care about: fsync on tmpfs costs nothing.
        #[arg(long)]
        scratch: Option<PathBuf>,
        /// Tasks in the recovery, checkpoint and memory measurements.
        #[arg(long, default_value_t = 100_000, value_parser = values::count("--tasks", 1, 100_000_000, "at least 1 and at most 100000000"))]
        tasks: u64,
        /// Also write a bar chart of the throughput rows to this SVG file.
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// Copy a whole store into an empty one (directory or PostgreSQL, either way),
    /// then verify a count and a checksum of each kind on both sides.
    Copy {
        /// The store to copy: a state directory, or a postgres:// or postgresql:// URL.
        /// Opened read-only: nothing in it is written.
        #[arg(long, value_name = "SRC")]
        from: String,
        /// Where to copy it: a new or empty state directory, or a postgres:// URL of a
        /// database without statewal data (its tables are created).
        #[arg(long, value_name = "DST")]
        to: String,
        /// Print the counts and checksums of both sides as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Encrypt a plain store in place with the key (--key-file, --key-command
    /// or STATEWAL_KEY): every file sealed, the journal's old segments
    /// removed after a checkpoint. Crash-safe: a store cut halfway opens with
    /// the key, which finishes it (docs/encryption.md).
    Encrypt {
        /// The cipher: xchacha20poly1305 (default) or aes-256-gcm.
        #[arg(long, value_name = "CIPHER", default_value = "xchacha20poly1305")]
        cipher: String,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Change an encrypted store's key: the current key from --key-file,
    /// --key-command or STATEWAL_KEY, the new one from --new-key-file. Every
    /// file is sealed again under the new key; crash-safe: a change cut
    /// halfway opens with the new key, which finishes it.
    Rekey {
        /// The new key's file (mode 0600; statewal keygen makes one).
        #[arg(long, value_name = "PATH")]
        new_key_file: PathBuf,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Copy the store into a new state directory whose every file is plain,
    /// human-readable JSON: an encrypted store (read with its key) exported
    /// in clear, verified as `copy` verifies.
    Export {
        /// The directory to write: missing or empty.
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// Print the counts and checksums of both sides as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Decrypt an encrypted store in place with its key: every file written
    /// plain again. Crash-safe: a store cut halfway opens with the key, which
    /// finishes it.
    Decrypt {
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Write a new random encryption key to a file created with mode 0600
    /// (docs/encryption.md). An existing file is never replaced.
    Keygen {
        /// The key file to create.
        path: PathBuf,
        /// Print the path and the key's id as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild a state directory from a replica in object storage (what
    /// --replicate shipped), to its newest record or to the one --at names.
    RestoreFrom {
        /// The replica: s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or file:///path.
        url: String,
        /// The directory to rebuild: missing or empty; one that holds a store is refused.
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// Stop after this record: a sequence number, or an RFC 3339 time placed by the
        /// record time of the journal's sync markers (default: every record shipped).
        #[arg(long, value_name = "SEQ|RFC3339", value_parser = replica::parse_at)]
        at: Option<replica::At>,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// What a replica in object storage holds.
    #[command(subcommand_required = true, arg_required_else_help = true)]
    Replica {
        #[command(subcommand)]
        command: ReplicaCommand,
    },
    /// Print a shell completion script for statewal, generated from its
    /// argument definitions.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print statewal's man page (roff), or one command's, generated from
    /// its argument definitions.
    Man {
        /// The command whose page to print (statewal-COMMAND(1)); without
        /// it, statewal(1), which lists every command.
        command: Option<String>,
    },
    /// Internal: resident memory of opening a store, for `bench`.
    #[command(hide = true)]
    BenchRss,
    /// Internal: the writer the demo kills.
    #[command(hide = true)]
    DemoChild {
        /// A prefix for the task ids of this run.
        #[arg(long)]
        run: String,
    },
}

/// The `replica` commands.
#[derive(Subcommand, Debug)]
pub enum ReplicaCommand {
    /// List a replica's generations, checkpoints and segments, its newest
    /// position and its lag, from one listing of the bucket.
    Status {
        /// The replica: s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or file:///path.
        url: String,
        /// Print JSON Lines: a line per generation, one per segment, then a summary.
        #[arg(long)]
        json: bool,
    },
}

/// `bench --seconds`: a positive, finite number of seconds, at most a day.
// Regression (review of issue 8): `--seconds nan`, `inf` or `1e300` panicked
// converting to a Duration, and `--tasks 0` divided by zero.
fn parse_seconds(s: &str) -> Result<f64, String> {
    let allowed = "more than 0 and at most 86400 (a day)";
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("--seconds takes a number of seconds, {allowed}, such as 2 or 0.5"))?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(format!("--seconds must be {allowed}"));
    }
    Ok(secs)
}

impl Cli {
    /// Store options for this invocation.
    pub fn options(&self) -> Options {
        let opts = Options::new(&self.dir)
            .sync_policy(self.sync)
            .read_only(self.read_only);
        // A store opened read-only ships nothing, so a reader ignores it.
        #[cfg(feature = "replicate")]
        let opts = match &self.replicate {
            Some(url) => opts.replicate_to(url),
            None => opts,
        };
        #[cfg(feature = "encryption")]
        let opts = match &self.key {
            Some(key) => opts.encryption_key(key.clone()),
            None => opts,
        };
        match self.database_url() {
            Some(url) => opts.database(url),
            None => opts,
        }
    }

    /// The database this invocation names, if any: `--database` on the
    /// command line, else a `postgres://` or `postgresql://` URL given to
    /// `--dir` (or `STATE_PATH`), else `DATABASE_URL`. An empty
    /// `DATABASE_URL` names none.
    pub fn database_url(&self) -> Option<&str> {
        let given = self.database.as_deref().filter(|u| !u.is_empty());
        let in_dir = self.dir.to_str().filter(|d| is_database_url(d));
        match (given, in_dir) {
            (Some(url), _) if self.database_on_command_line => Some(url),
            (_, Some(url)) => Some(url),
            (given, None) => given,
        }
    }
}

/// Whether `s` is a PostgreSQL URL, which `--dir` takes as `--database`.
pub fn is_database_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

fn main() -> ExitCode {
    let matches = help::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cli.dir_on_command_line = on_command_line(&matches, "dir");
    cli.database_on_command_line = on_command_line(&matches, "database");
    cli.command_name = matches.subcommand_name().unwrap_or_default().to_string();
    init_tracing();
    let result = (|| {
        help::refuse_unbuilt(&cli)?;
        #[cfg(feature = "encryption")]
        {
            cli.key = help::load_key(&cli)?;
        }
        dispatch(&cli)
    })();
    match result {
        Ok(code) => code,
        // The reader of our output went away (`statewal list | head -1`):
        // it has what it wanted, so end quietly, as ripgrep does.
        Err(e) if out::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("statewal: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: &Cli) -> statewal::Result<ExitCode> {
    match &cli.command {
        Command::Demo { acks, keep } => demo::run(cli, *acks as usize, *keep),
        Command::DemoChild { run } => demo::child(cli, run),
        Command::Serve {
            max_line_bytes,
            max_event_bytes,
            ..
        } => serve::run(
            cli,
            *max_line_bytes,
            max_event_bytes.map_or(serve_events::EVENT_BYTES_QUEUED, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
        ),
        Command::Bench {
            json,
            seconds,
            scratch,
            tasks,
            svg,
        } => bench::run(
            *seconds,
            *json,
            scratch.clone(),
            *tasks as usize,
            svg.clone(),
        ),
        Command::BenchRss => bench::rss_probe(&cli.dir),
        Command::Health { json } => health::run(cli, *json),
        Command::Metrics { json } => metrics::run(cli, *json),
        Command::DumpJournal { json } => inspect::dump_journal(&cli.dir, *json),
        Command::Show { id, json } => inspect::show(cli, id, *json),
        Command::List { json, filters } => list::run(cli, *json, filters),
        Command::Migrate {
            dry_run,
            rollback,
            json,
        } => commands::refuse_read_only(cli, "migrate", *dry_run)
            .and_then(|()| migrate::run(&cli.dir, *dry_run, *rollback, *json)),
        Command::GetReport { id, json } => readback::get_report(cli, id, *json),
        Command::ListReports { json } => readback::list_reports(cli, *json),
        Command::ListLogs { json } => readback::list_logs(cli, *json),
        Command::ReadLog {
            file_name,
            offset,
            length,
            json,
        } => readback::read_log(cli, file_name, *offset, *length, *json),
        Command::GetSession { id, json } => readback::get_session(cli, id, *json),
        Command::Backups { json } => backups::list(cli, *json),
        Command::Restore { backup, json } => backups::restore(cli, backup, *json),
        Command::Clean {
            older_than,
            status,
            dry_run,
            json,
        } => clean::run(cli, *older_than, status, *dry_run, *json),
        Command::Copy { from, to, json } => copy::run(cli, from, to, *json),
        Command::RestoreFrom { url, to, at, json } => {
            replica::restore_from(cli, url, to, *at, *json)
        }
        Command::Keygen { path, json } => keygen(path, *json),
        Command::Encrypt { cipher, json } => convert(cli, Some(cipher), *json),
        Command::Decrypt { json } => convert(cli, None, *json),
        Command::Export { to, json } => copy::export(cli, to, *json),
        Command::Rekey { new_key_file, json } => rekey(cli, new_key_file, *json),
        Command::Replica {
            command: ReplicaCommand::Status { url, json },
        } => replica::status(url, *json),
        Command::Completions { shell } => help::completions(*shell),
        Command::Man { command } => help::man(command.as_deref()),
        _ => commands::run(cli),
    }
}

/// Whether the global argument `id` came from the command line, before or
/// after the subcommand (a global argument is recorded where it was
/// written).
fn on_command_line(matches: &clap::ArgMatches, id: &str) -> bool {
    let here = matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    here || matches
        .subcommand()
        .is_some_and(|(_, sub)| on_command_line(sub, id))
}

/// Diagnostics go to stderr, filtered by `RUST_LOG` (default: warnings).
/// The original server's `DEBUG=persistence:*` (the `debug` package's
/// namespaces) is taken as `RUST_LOG=statewal=debug`; `RUST_LOG` wins.
fn init_tracing() {
    let debug_alias = std::env::var("DEBUG").is_ok_and(|d| debug_enables_persistence(&d));
    let filter = match std::env::var_os("RUST_LOG") {
        Some(_) => tracing_subscriber::EnvFilter::try_from_default_env().ok(),
        None if debug_alias => Some(tracing_subscriber::EnvFilter::new("statewal=debug")),
        None => None,
    }
    .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr())
        .with_target(false)
        .init();
}

/// Whether log lines on stderr may carry colour: only when stderr is a
/// terminal and `NO_COLOR` is unset or empty (<https://no-color.org>).
/// clap's help and errors follow the same rule by themselves; the progress
/// bars draw no colour at all.
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

/// Whether a `DEBUG` value in the `debug` package's syntax (namespaces
/// separated by commas or spaces, `*` as a wildcard, `-` to exclude) turns on
/// the original server's `persistence:*` namespaces.
fn debug_enables_persistence(value: &str) -> bool {
    // A pattern covers the namespaces if the text before its first `*` is a
    // prefix of "persistence:" (`*`, `persist*`) or names one of them
    // (`persistence:*`, `persistence:save`).
    let covers = |p: &str| match p.split_once('*') {
        Some((head, _)) => "persistence:".starts_with(head) || head.starts_with("persistence:"),
        None => p == "persistence" || p.starts_with("persistence:"),
    };
    let patterns = value.split([',', ' ']).filter(|p| !p.is_empty());
    let (excluded, included): (Vec<&str>, Vec<&str>) = patterns.partition(|p| p.starts_with('-'));
    included.iter().any(|p| covers(p)) && !excluded.iter().any(|p| covers(&p[1..]))
}

/// `statewal keygen PATH`.
fn keygen(path: &std::path::Path, json: bool) -> statewal::Result<ExitCode> {
    #[cfg(feature = "encryption")]
    {
        let key = statewal::crypto::Key::generate_file(path)?;
        if json {
            outln!(
                "{}",
                serde_json::json!({"path": path.display().to_string(), "key_id": key.id().to_string()})
            );
        } else {
            outln!(
                "wrote a new key to {} (key id {}); keep a copy somewhere safe: a store \
                 encrypted with it cannot be read without it",
                path.display(),
                key.id()
            );
        }
        Ok(ExitCode::SUCCESS)
    }
    #[cfg(not(feature = "encryption"))]
    {
        let _ = (path, json);
        Err(statewal::Error::new(
            statewal::ErrorKind::InvalidInput,
            "keygen needs statewal built with the cargo feature `encryption`; nothing was written",
        ))
    }
}

/// `statewal encrypt` (with a cipher) and `statewal decrypt`.
fn convert(cli: &Cli, cipher: Option<&String>, json: bool) -> statewal::Result<ExitCode> {
    #[cfg(feature = "encryption")]
    {
        if cli.key.is_none() {
            return Err(statewal::Error::new(
                statewal::ErrorKind::InvalidInput,
                "a key is needed: --key-file PATH, --key-command CMD or STATEWAL_KEY \
                 (statewal keygen PATH makes one); nothing was done",
            ));
        }
        let mut opts = cli.options();
        let report = match cipher {
            Some(c) => {
                opts = opts.cipher(c.parse()?);
                statewal::crypto::encrypt(opts)?
            }
            None => statewal::crypto::decrypt(opts)?,
        };
        print_converted(cli, &report, json)
    }
    #[cfg(not(feature = "encryption"))]
    {
        let _ = (cli, cipher, json);
        Err(statewal::Error::new(
            statewal::ErrorKind::InvalidInput,
            "encrypt and decrypt need statewal built with the cargo feature `encryption`; \
             nothing was done",
        ))
    }
}

/// What `encrypt` and `decrypt` did, as one JSON object or one line.
#[cfg(feature = "encryption")]
fn print_converted(
    cli: &Cli,
    report: &statewal::crypto::ConvertReport,
    json: bool,
) -> statewal::Result<ExitCode> {
    if json {
        out::json_line(report)?;
    } else {
        outln!(
            "{} is {} now (key id {}): {} files converted, {} journal segments removed{}",
            cli.dir.display(),
            report.to,
            report.key_id,
            report.files,
            report.segments_removed,
            if report.resumed {
                ", finishing an interrupted run"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `statewal rekey --new-key-file PATH`.
fn rekey(cli: &Cli, new_key_file: &std::path::Path, json: bool) -> statewal::Result<ExitCode> {
    #[cfg(feature = "encryption")]
    {
        if cli.key.is_none() {
            return Err(statewal::Error::new(
                statewal::ErrorKind::InvalidInput,
                "the store's current key is needed: --key-file PATH, --key-command CMD or \
                 STATEWAL_KEY; nothing was done",
            ));
        }
        let new_key = statewal::crypto::Key::from_file(new_key_file)?;
        let report = statewal::crypto::rekey(cli.options(), new_key)?;
        if json {
            out::json_line(&report)?;
            return Ok(ExitCode::SUCCESS);
        }
        for f in &report.damaged {
            outln!(
                "warning: {f} was damaged before the change (it does not authenticate under \
                 key id {}); it is left as it is",
                report.old_key_id
            );
        }
        let rest = match report.finished {
            true => "the change is finished".to_string(),
            false => format!(
                "{} journal segments are still sealed under key id {}, which the store keeps \
                 (sealed under the new key) until checkpoints remove them; statewal health \
                 reports the change until then",
                report.segments_left, report.old_key_id
            ),
        };
        outln!(
            "{} is encrypted with key id {} now, and opens only with it: {} files sealed again \
             from key id {}{}; {rest}",
            cli.dir.display(),
            report.key_id,
            report.files,
            report.old_key_id,
            if report.resumed {
                ", going on with a change begun earlier"
            } else {
                ""
            }
        );
        Ok(ExitCode::SUCCESS)
    }
    #[cfg(not(feature = "encryption"))]
    {
        let _ = (cli, new_key_file, json);
        Err(statewal::Error::new(
            statewal::ErrorKind::InvalidInput,
            "rekey needs statewal built with the cargo feature `encryption`; nothing was done",
        ))
    }
}
