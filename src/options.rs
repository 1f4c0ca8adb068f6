//! How a store is opened: [`Options`], [`SyncPolicy`] and [`RecoveryMode`].

use crate::error::{Error, ErrorKind};
use std::path::PathBuf;
use std::time::Duration;

/// When a write is acknowledged, and so what a crash can take away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// A mutation returns only after its journal record is on stable storage
    /// (`fdatasync`). Survives a process crash and power loss. Concurrent
    /// writers share one sync (group commit).
    #[default]
    SyncBeforeAck,
    /// A mutation returns once its record is written to the operating system;
    /// a background thread syncs the journal every `interval`. Survives a
    /// process crash; power loss can take the writes of the last interval.
    SyncEveryInterval(Duration),
    /// A mutation returns once its record is written to the operating system,
    /// which writes it back when it chooses. Survives a process crash; power
    /// loss can take everything since the last checkpoint.
    OsBuffered,
}

impl std::str::FromStr for SyncPolicy {
    type Err = Error;

    /// Parses `sync_before_ack`, `interval:<ms>` or `os_buffered` (the words
    /// [`SyncPolicy`]'s `Display` writes), or the CLI's spelling of the same
    /// with hyphens (`sync-before-ack`, `os-buffered`). `interval:<ms>` may
    /// end in `ms`.
    ///
    /// ```
    /// use statewal::SyncPolicy;
    /// use std::time::Duration;
    /// assert_eq!("os_buffered".parse::<SyncPolicy>()?, SyncPolicy::OsBuffered);
    /// assert_eq!("sync-before-ack".parse::<SyncPolicy>()?, SyncPolicy::SyncBeforeAck);
    /// let every = SyncPolicy::SyncEveryInterval(Duration::from_millis(100));
    /// assert_eq!("interval:100".parse::<SyncPolicy>()?, every);
    /// assert_eq!(every.to_string(), "interval:100");
    /// assert!("sometimes".parse::<SyncPolicy>().is_err());
    /// # Ok::<(), statewal::Error>(())
    /// ```
    fn from_str(s: &str) -> Result<SyncPolicy, Error> {
        match s {
            "sync_before_ack" | "sync-before-ack" | "always" => Ok(SyncPolicy::SyncBeforeAck),
            "os_buffered" | "os-buffered" | "buffered" => Ok(SyncPolicy::OsBuffered),
            _ => s
                .strip_prefix("interval:")
                .and_then(|ms| ms.trim_end_matches("ms").parse().ok())
                .map(|ms| SyncPolicy::SyncEveryInterval(Duration::from_millis(ms)))
                .ok_or_else(|| {
                    unknown_word(
                        "sync policy",
                        s,
                        "sync_before_ack, interval:<ms> or os_buffered",
                    )
                }),
        }
    }
}

impl std::fmt::Display for SyncPolicy {
    /// `sync_before_ack`, `interval:<ms>` (whole milliseconds) or
    /// `os_buffered`: the words of the JSON output, which `FromStr` reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncPolicy::SyncBeforeAck => f.write_str("sync_before_ack"),
            SyncPolicy::SyncEveryInterval(every) => write!(f, "interval:{}", every.as_millis()),
            SyncPolicy::OsBuffered => f.write_str("os_buffered"),
        }
    }
}

/// The error of a `FromStr` that did not know `word`. `expected` lists the
/// words as `Display` and JSON print them (snake_case); the CLI's `--help`
/// shows them hyphenated, which `FromStr` reads too, so the message says
/// both spellings work and a reader of either finds their word.
pub(crate) fn unknown_word(what: &str, word: &str, expected: &str) -> Error {
    let hyphens = if expected.contains('_') {
        " (or the same words with hyphens)"
    } else {
        ""
    };
    Error::new(
        ErrorKind::InvalidInput,
        format!("unknown {what} {word:?}; expected {expected}{hyphens}"),
    )
}

/// What recovery does with damage in the journal. See `docs/recovery.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// A torn tail (a damaged span that no later record proves had been
    /// synced) is truncated away, with any records after it in its segment;
    /// damage to records that had been durable, or a gap, fails the open.
    #[default]
    TolerateTornTail,
    /// Any damage, a torn tail included, fails the open.
    Strict,
    /// Replay stops at the first damaged record; everything after it is
    /// dropped. The store is checkpointed at once so the damage is left behind.
    PointInTime,
    /// Damaged records are skipped and every valid record is replayed. The
    /// store is checkpointed at once so the damage is left behind.
    Salvage,
}

impl RecoveryMode {
    /// Every mode.
    pub const ALL: [RecoveryMode; 4] = [
        RecoveryMode::TolerateTornTail,
        RecoveryMode::Strict,
        RecoveryMode::PointInTime,
        RecoveryMode::Salvage,
    ];

    /// The mode's word in JSON output: `tolerate_torn_tail`, `strict`,
    /// `point_in_time` or `salvage`. `Display` writes the same.
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryMode::TolerateTornTail => "tolerate_torn_tail",
            RecoveryMode::Strict => "strict",
            RecoveryMode::PointInTime => "point_in_time",
            RecoveryMode::Salvage => "salvage",
        }
    }
}

impl std::str::FromStr for RecoveryMode {
    type Err = Error;

    /// Parses a mode's word ([`RecoveryMode::as_str`]), or the CLI's
    /// spelling of it with hyphens (`point-in-time`).
    ///
    /// ```
    /// use statewal::RecoveryMode;
    /// assert_eq!("point_in_time".parse::<RecoveryMode>()?, RecoveryMode::PointInTime);
    /// assert_eq!("point-in-time".parse::<RecoveryMode>()?, RecoveryMode::PointInTime);
    /// assert_eq!(RecoveryMode::PointInTime.to_string(), "point_in_time");
    /// # Ok::<(), statewal::Error>(())
    /// ```
    fn from_str(s: &str) -> Result<RecoveryMode, Error> {
        let snake = s.replace('-', "_");
        RecoveryMode::ALL
            .into_iter()
            .find(|m| m.as_str() == snake)
            .or((s == "default").then_some(RecoveryMode::TolerateTornTail))
            .ok_or_else(|| {
                unknown_word(
                    "recovery mode",
                    s,
                    "tolerate_torn_tail, strict, point_in_time or salvage",
                )
            })
    }
}

impl std::fmt::Display for RecoveryMode {
    /// [`RecoveryMode::as_str`].
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Options for [`crate::Store::open`], built with setters.
///
/// ```
/// use statewal::{Options, SyncPolicy};
/// let opts = Options::new("/tmp/my-state")
///     .sync_policy(SyncPolicy::SyncBeforeAck)
///     .backups_kept(5);
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) dir: PathBuf,
    pub(crate) sync_policy: SyncPolicy,
    pub(crate) recovery_mode: RecoveryMode,
    pub(crate) checkpoint_interval: Option<Duration>,
    pub(crate) checkpoint_journal_bytes: u64,
    pub(crate) backups_kept: usize,
    pub(crate) task_bytes_max: usize,
    pub(crate) checkpoint_on_drop: bool,
    pub(crate) journal_preallocate_bytes: u64,
    pub(crate) read_only: bool,
    pub(crate) stamp_times: bool,
    pub(crate) database: Option<DatabaseUrl>,
    pub(crate) changes_retention: Duration,
    pub(crate) replica: Option<ReplicaTarget>,
    pub(crate) replicate_interval: Duration,
    pub(crate) replica_backlog_bytes_max: u64,
    pub(crate) replica_retention: Option<Duration>,
    /// `Debug` shows the key's id only.
    #[cfg(feature = "encryption")]
    pub(crate) encryption_key: Option<crate::crypto::Key>,
    /// `None`: the store's own (the cipher of its newest sealed file), or
    /// the default for a new one.
    #[cfg(feature = "encryption")]
    pub(crate) cipher: Option<crate::crypto::Algorithm>,
}

#[cfg(feature = "replicate")]
/// The replica's retention window unless told otherwise: 7 days.
pub(crate) const DEFAULT_REPLICA_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

#[cfg(feature = "replicate")]
/// The environment variable that sets the replica's retention window when
/// [`Options::replica_retention`] does not.
const RETENTION_VAR: &str = "STATEWAL_REPLICA_RETENTION";

#[cfg(feature = "replicate")]
/// A retention window as `STATEWAL_REPLICA_RETENTION` takes it: one or
/// more of a whole number and a unit, `s`, `m`, `h`, `d` or `w` (`7d`,
/// `1d12h`, `90m`), more than zero; or `forever`, which keeps everything
/// (`Duration::MAX`).
pub(crate) fn parse_retention(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "forever" {
        return Ok(Duration::MAX);
    }
    let usage = "write a number and a unit (s, m, h, d or w), such as 7d or 36h, or forever";
    let mut total: u64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return Err(format!("it is empty; {usage}"));
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, after) = rest.split_at(digits);
        let unit = after.chars().next();
        let secs: u64 = match unit {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3600,
            Some('d') => 86_400,
            Some('w') => 7 * 86_400,
            _ => return Err(usage.to_string()),
        };
        let n: u64 = number.parse().map_err(|_| usage.to_string())?;
        total = n
            .checked_mul(secs)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(|| "it is too long; use forever to keep everything".to_string())?;
        rest = &after[1..];
    }
    if total == 0 {
        return Err("it must be more than zero (forever keeps everything)".into());
    }
    Ok(Duration::from_secs(total))
}

/// Where a replica ships, and the settings given for its bucket: `Debug`
/// shows the setting names only, since they may hold keys.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ReplicaTarget {
    pub(crate) url: String,
    pub(crate) settings: Vec<(String, String)>,
}

impl std::fmt::Debug for ReplicaTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.settings.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ReplicaTarget")
            .field("url", &redacted(&self.url))
            .field("settings", &names)
            .finish()
    }
}

/// A database URL, which may hold a password: `Debug` shows it elided, so
/// printing [`Options`] never leaks it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct DatabaseUrl(pub(crate) String);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redacted(&self.0))
    }
}

/// `url` with its password, if any, replaced by `***`, for messages: a
/// `scheme://user:password@host/...` URL (a `?password=` parameter too) or
/// a `key=value` connection string.
pub(crate) fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // A `key=value` string: hide the value of `password`.
        return redacted_key_values(url);
    };
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    // A `password` query parameter (libpq's `?password=`) is hidden too.
    let path = match path.split_once('?') {
        Some((before, query)) => {
            let query: Vec<&str> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some(("password", _)) => "password=***",
                    _ => kv,
                })
                .collect();
            format!("{before}?{}", query.join("&"))
        }
        None => path.to_string(),
    };
    match authority.rsplit_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}{path}")
        }
        _ => format!("{scheme}://{authority}{path}"),
    }
}

/// A `key=value` connection string with the value of `password` replaced
/// by `***`. A value may be quoted (`'a b'`, `\'` inside), as the client
/// reads it, so a password with spaces is hidden whole.
fn redacted_key_values(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    loop {
        let start = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        if rest.is_empty() {
            return out;
        }
        // The key, up to `=` or a space.
        let key_len = rest.find(['=', ' ']).unwrap_or(rest.len());
        let key = &rest[..key_len];
        out.push_str(key);
        rest = &rest[key_len..];
        let spaces = rest.len() - rest.trim_start().len();
        if !rest[spaces..].starts_with('=') {
            continue;
        }
        let eq = spaces + 1;
        let after = rest[eq..].len() - rest[eq..].trim_start().len();
        out.push_str(&rest[..eq + after]);
        rest = &rest[eq + after..];
        // The value: quoted to its closing quote, else to a space.
        let value_len = if rest.starts_with('\'') {
            let mut escaped = false;
            rest.char_indices()
                .skip(1)
                .find(|&(_, c)| {
                    let end = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    end
                })
                .map_or(rest.len(), |(i, _)| i + 1)
        } else {
            rest.find(' ').unwrap_or(rest.len())
        };
        out.push_str(if key == "password" {
            "***"
        } else {
            &rest[..value_len]
        });
        rest = &rest[value_len..];
    }
}

/// The state directory used when neither an option nor `STATE_PATH` names one.
pub const DEFAULT_DIR: &str = "./coding-agent-state";

impl Options {
    /// Options for the state directory `dir`, every other setting at its default.
    pub fn new(dir: impl Into<PathBuf>) -> Options {
        Options {
            dir: dir.into(),
            sync_policy: SyncPolicy::default(),
            recovery_mode: RecoveryMode::default(),
            checkpoint_interval: Some(Duration::from_secs(30)),
            checkpoint_journal_bytes: 64 * 1024 * 1024,
            backups_kept: 10,
            task_bytes_max: 16 * 1024 * 1024,
            checkpoint_on_drop: true,
            journal_preallocate_bytes: 1024 * 1024,
            read_only: false,
            stamp_times: false,
            database: None,
            changes_retention: Duration::from_secs(24 * 60 * 60),
            replica: None,
            replicate_interval: Duration::from_secs(1),
            replica_backlog_bytes_max: 1024 * 1024 * 1024,
            replica_retention: None,
            #[cfg(feature = "encryption")]
            encryption_key: None,
            #[cfg(feature = "encryption")]
            cipher: None,
        }
    }

    /// Options for the directory named by `STATE_PATH`, else `./coding-agent-state`.
    pub fn from_env() -> Options {
        Options::new(
            std::env::var_os("STATE_PATH")
                .map(PathBuf::from)
                .unwrap_or_else(|| DEFAULT_DIR.into()),
        )
    }

    /// The state directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// When writes are acknowledged. Default: [`SyncPolicy::SyncBeforeAck`].
    pub fn sync_policy(mut self, policy: SyncPolicy) -> Options {
        self.sync_policy = policy;
        self
    }

    /// What recovery does with damage. Default: [`RecoveryMode::TolerateTornTail`].
    pub fn recovery_mode(mut self, mode: RecoveryMode) -> Options {
        self.recovery_mode = mode;
        self
    }

    /// How often the auto-save checkpoints; `None` turns the timer off.
    /// Less than a millisecond is taken as one. Default: every 30 seconds.
    pub fn checkpoint_interval(mut self, every: Option<Duration>) -> Options {
        self.checkpoint_interval = every;
        self
    }

    /// Checkpoint once this many journal bytes were written since the last
    /// one. Default: 64 MiB. Such a checkpoint starts no sooner after the
    /// previous one ended than three times that one's duration, so under a
    /// steady stream of writes checkpoints take at most a quarter of the
    /// time, unless the journal reaches four times this size.
    pub fn checkpoint_journal_bytes(mut self, bytes: u64) -> Options {
        self.checkpoint_journal_bytes = bytes;
        self
    }

    /// How many valid `state.backup.*.json` files to keep. Default: 10.
    pub fn backups_kept(mut self, n: usize) -> Options {
        self.backups_kept = n;
        self
    }

    /// The largest task accepted, in bytes of JSON; larger ones are refused
    /// with [`crate::ErrorKind::TooLarge`]. Default: 16 MiB. Capped at the
    /// journal's record limit (64 MiB).
    pub fn task_bytes_max(mut self, bytes: usize) -> Options {
        self.task_bytes_max = bytes.min(crate::journal::record::RECORD_PAYLOAD_MAX as usize - 1024);
        self
    }

    /// The task size limit in bytes, as set by [`Options::task_bytes_max`].
    pub fn task_limit_bytes(&self) -> usize {
        self.task_bytes_max
    }

    /// Zeros written ahead of the journal's records, so that a sync flushes
    /// only data and not the file's size (on ext4 that makes an `fdatasync`
    /// markedly cheaper). Segments grow in steps of their own size, up to
    /// 16 MiB at a time. 0 turns preallocation off; more than 16 MiB is
    /// taken as 16 MiB. Default: 1 MiB.
    pub fn journal_preallocate_bytes(mut self, bytes: u64) -> Options {
        self.journal_preallocate_bytes = bytes.min(crate::journal::PREALLOCATE_STEP_MAX_BYTES);
        self
    }

    /// Whether [`crate::Store::put_task`] and [`crate::Store::submit`] stamp
    /// each task they store: `updated_at` set to now and `created_at` to now
    /// when the task has none, both RFC 3339 in UTC (an existing key keeps
    /// its place, a new one goes last). Off, the store writes every task
    /// exactly as given. `restore` puts tasks back as the backup holds them
    /// and never stamps. Default: off.
    pub fn stamp_times(mut self, yes: bool) -> Options {
        self.stamp_times = yes;
        self
    }

    /// Whether dropping the store (or [`crate::Store::shutdown`]) checkpoints.
    /// Default: true.
    pub fn checkpoint_on_drop(mut self, yes: bool) -> Options {
        self.checkpoint_on_drop = yes;
        self
    }

    /// Opens the store read-only: it takes no lock, so it works beside a
    /// running writer, and writes nothing at all (no directory, no lock file,
    /// no truncation of a torn tail, no sync, no checkpoint, no background
    /// thread; an older `state.json` is migrated in memory only), so it also
    /// works in a directory this user cannot write. It sees the state as of
    /// the last whole record in the journal, a torn tail being where its
    /// reading ends. Every mutation and checkpoint fails with
    /// [`crate::ErrorKind::ReadOnly`]. A directory that holds no store
    /// fails the open with [`crate::ErrorKind::NotFound`] ("no statewal
    /// store at DIR"). Default: off.
    pub fn read_only(mut self, yes: bool) -> Options {
        self.read_only = yes;
        self
    }

    /// Whether [`Options::read_only`] is on.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Keeps the store in the PostgreSQL database at `url`
    /// (`postgres://user:password@host:port/dbname`, or a `key=value`
    /// connection string) instead of the state directory; needs the cargo
    /// feature `postgres`, without which [`crate::Store::open`] fails with
    /// [`crate::ErrorKind::Unsupported`]. Default: none, the journal engine
    /// in the directory.
    ///
    /// With a database, the directory given to [`Options::new`] is not
    /// used at all: nothing is read, created or locked there. The
    /// journal's settings (sync policy, recovery mode, checkpoints,
    /// backups, preallocation, `checkpoint_on_drop`) do not apply either:
    /// a write returns once its transaction committed (`docs/postgres.md`).
    /// [`Options::task_bytes_max`], [`Options::stamp_times`] and
    /// [`Options::read_only`] apply as on a directory. A writing open
    /// creates statewal's tables when the database has none; a read-only
    /// open never does, and fails with [`crate::ErrorKind::NotFound`] ("no
    /// statewal store in ...") instead. `Debug` of the options never shows
    /// the URL's password.
    ///
    /// ```
    /// use statewal::Options;
    /// let opts = Options::new("unused").database("postgres://app@db.internal/app");
    /// assert_eq!(opts.database_url(), Some("postgres://app@db.internal/app"));
    /// let secret = Options::new("unused").database("postgres://app:hunter2@db/app");
    /// assert!(!format!("{secret:?}").contains("hunter2"));
    /// ```
    pub fn database(mut self, url: impl Into<String>) -> Options {
        self.database = Some(DatabaseUrl(url.into()));
        self
    }

    /// On PostgreSQL, how long the outbox (`statewal_changes`) keeps each
    /// task change before a writer prunes it; writers prune every few
    /// minutes. A subscriber whose delivery is held back longer than this
    /// (a long transaction, a lost connection) gets
    /// [`crate::Event::ChangesMissed`] instead of silently going without
    /// the pruned changes. Not used by the journal engine. Default: 24
    /// hours.
    pub fn changes_retention(mut self, retention: Duration) -> Options {
        self.changes_retention = retention;
        self
    }

    /// Encrypts the store with `key` (feature `encryption`,
    /// `docs/encryption.md`): every journal record and every layout file is
    /// sealed with an authenticated cipher, and can be read only with this
    /// key. A new store is created encrypted; an existing one must have
    /// been encrypted with this key (a plain one is refused: `statewal
    /// encrypt` converts it). Opening an encrypted store without it fails
    /// with [`crate::ErrorKind::Key`], naming the key id needed. Default:
    /// not encrypted.
    #[cfg(feature = "encryption")]
    pub fn encryption_key(mut self, key: crate::crypto::Key) -> Options {
        self.encryption_key = Some(key);
        self
    }

    /// The cipher new files are sealed with, for [`Options::encryption_key`]:
    /// XChaCha20-Poly1305 or AES-256-GCM. Files already sealed are read
    /// whichever sealed them. Default: the cipher the store already uses
    /// (that of its newest sealed file), and XChaCha20-Poly1305 for a new
    /// store.
    #[cfg(feature = "encryption")]
    pub fn cipher(mut self, algorithm: crate::crypto::Algorithm) -> Options {
        self.cipher = Some(algorithm);
        self
    }

    /// Ships the journal's sealed segments, the synced part of the active
    /// one and each checkpoint's `state.json` to object storage at `url`
    /// (`s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`
    /// or `file:///path`), from a thread of the store's own: a slow or
    /// failing bucket never blocks or fails a local write. Credentials and
    /// endpoints come from the usual environment variables (`AWS_*`,
    /// `AZURE_*`, `GOOGLE_*`) and [`Options::replica_setting`]. The layout
    /// in the bucket and what it survives are in `docs/replication.md`;
    /// `statewal::replica::restore` rebuilds a directory from it. Needs the
    /// cargo feature `replicate`: without it, opening the store fails with
    /// [`crate::ErrorKind::Unsupported`]. Not used by the PostgreSQL
    /// engine, which refuses it. Default: no replica.
    pub fn replicate_to(mut self, url: impl Into<String>) -> Options {
        let settings = self.replica.take().map(|r| r.settings).unwrap_or_default();
        self.replica = Some(ReplicaTarget {
            url: url.into(),
            settings,
        });
        self
    }

    /// One setting for the replica's bucket, as `object_store` names it
    /// (`aws_endpoint`, `aws_allow_http`, `azure_storage_account_name`,
    /// ...); it takes precedence over the environment. Has an effect only
    /// with [`Options::replicate_to`]. Default: none.
    pub fn replica_setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Options {
        let replica = self.replica.get_or_insert_with(|| ReplicaTarget {
            url: String::new(),
            settings: Vec::new(),
        });
        replica.settings.push((key.into(), value.into()));
        self
    }

    /// How often the replica ships the synced part of the active segment
    /// (sealed segments and checkpoints are shipped on the same tick).
    /// Default: 1 second.
    pub fn replicate_interval(mut self, every: Duration) -> Options {
        self.replicate_interval = every;
        self
    }

    /// How many bytes of sealed segments the replica has not shipped yet
    /// may keep a checkpoint from removing them. Past it, the checkpoint
    /// removes them all the same (the local disk comes first), the replica
    /// reports the gap loudly and starts a new generation from the next
    /// checkpoint (`docs/replication.md`, "Disk budget"). Default: 1 GiB.
    pub fn replica_backlog_bytes_max(mut self, bytes: u64) -> Options {
        self.replica_backlog_bytes_max = bytes;
        self
    }

    /// How long the replica keeps what it shipped: a restore to any moment
    /// this far back keeps working; older generations, checkpoints and
    /// segments are deleted from the bucket, once an hour (once per window
    /// if it is shorter), by the store that ships there
    /// (`docs/replication.md`, "Retention in the bucket"). `Duration::MAX`
    /// keeps everything. Set here, it wins over the environment variable
    /// `STATEWAL_REPLICA_RETENTION` (one or more of a whole number and a
    /// unit `s`, `m`, `h`, `d` or `w`, such as `7d` or `1d12h`; or
    /// `forever`), which a store opened with a replica reads, and refuses
    /// at open, naming it, when it does not parse. Default: 7 days.
    pub fn replica_retention(mut self, window: Duration) -> Options {
        self.replica_retention = Some(window);
        self
    }

    #[cfg(feature = "replicate")]
    /// The replica's retention window: [`Options::replica_retention`], else
    /// `STATEWAL_REPLICA_RETENTION`, else 7 days. A variable that does not
    /// parse is an error naming it.
    pub(crate) fn replica_retention_window(&self) -> crate::error::Result<Duration> {
        if let Some(w) = self.replica_retention {
            return Ok(w);
        }
        match std::env::var(RETENTION_VAR) {
            Ok(v) => parse_retention(&v).map_err(|why| {
                crate::error::Error::new(
                    crate::error::ErrorKind::InvalidInput,
                    format!("{RETENTION_VAR}={v:?} is not a retention window: {why}"),
                )
            }),
            Err(_) => Ok(DEFAULT_REPLICA_RETENTION),
        }
    }

    /// The replica URL set by [`Options::replicate_to`], if any.
    pub fn replica_url(&self) -> Option<&str> {
        self.replica
            .as_ref()
            .map(|r| r.url.as_str())
            .filter(|u| !u.is_empty())
    }

    /// The database URL set by [`Options::database`], if any.
    pub fn database_url(&self) -> Option<&str> {
        self.database.as_ref().map(|d| d.0.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, TaskStatus};

    /// Every enumerated value prints as the word JSON output uses and
    /// parses back from it, and from its hyphenated CLI spelling (issue 14).
    #[test]
    fn every_word_round_trips() {
        for s in TaskStatus::ALL {
            let word = s.to_string();
            assert_eq!(serde_json::to_value(s).unwrap(), word.as_str());
            assert_eq!(word.parse::<TaskStatus>().unwrap(), s);
            assert_eq!(word.replace('_', "-").parse::<TaskStatus>().unwrap(), s);
        }
        for m in RecoveryMode::ALL {
            let word = m.to_string();
            assert!(!word.contains('-'), "{word}");
            assert_eq!(word.parse::<RecoveryMode>().unwrap(), m);
            assert_eq!(word.replace('_', "-").parse::<RecoveryMode>().unwrap(), m);
        }
        for k in ErrorKind::ALL {
            assert_eq!(k.to_string().parse::<ErrorKind>().unwrap(), k);
        }
        for p in [
            SyncPolicy::SyncBeforeAck,
            SyncPolicy::SyncEveryInterval(Duration::from_millis(250)),
            SyncPolicy::OsBuffered,
        ] {
            let word = p.to_string();
            assert_eq!(word.parse::<SyncPolicy>().unwrap(), p);
            assert_eq!(word.replace('_', "-").parse::<SyncPolicy>().unwrap(), p);
        }
        for bad in ["", "Pending", "point in time", "interval:", "interval:x"] {
            assert!(bad.parse::<TaskStatus>().is_err());
            assert!(bad.parse::<RecoveryMode>().is_err());
            assert!(bad.parse::<SyncPolicy>().is_err());
            let e = bad.parse::<ErrorKind>().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
        }
    }
}
