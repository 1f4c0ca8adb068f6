//! statewal keeps an application's tasks, sessions, session logs and reports
//! crash-proof on disk.
//!
//! Every mutation is appended to a checksummed journal and acknowledged only
//! once it is durable; checkpoints compact the journal into a human-readable
//! layout (`state.json`, `tasks/<id>.json`, ...), and opening a store replays
//! the journal past the last checkpoint. See `ARCHITECTURE.md` for the map
//! and `docs/` for the format and the recovery guarantees.
//!
//! ```
//! use statewal::{Options, Store, Task, TaskStatus};
//!
//! # fn main() -> statewal::Result<()> {
//! let dir = std::env::temp_dir().join(format!("statewal-doc-{}", std::process::id()));
//! let store = Store::open(Options::new(&dir))?;
//! let mut task = Task::new("task_1");
//! task.set_description("Implement authentication");
//! task.set_status(TaskStatus::InProgress);
//! store.put_task(task)?; // Durable when this returns.
//! assert_eq!(store.get_task("task_1")?.unwrap().status(), TaskStatus::InProgress);
//! store.shutdown()?; // Checkpoints and releases the directory lock.
//!
//! let store = Store::open(Options::new(&dir))?;
//! assert_eq!(store.list_tasks()?.len(), 1);
//! # drop(store);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```
//!
//! # Where to look
//!
//! - **The store:** [`Store`] (open, write, read back, checkpoint, shut
//!   down), [`Mutation`], [`Pending`] and [`Transaction`] for pipelines and
//!   atomic batches.
//! - **How it is opened:** [`Options`], with the [`SyncPolicy`] that says
//!   what a crash can take away and the [`RecoveryMode`] that says what
//!   opening does with damage.
//! - **The model:** [`Task`] and [`TaskStatus`], [`Session`], [`LogEntry`],
//!   [`PersistedState`]; what reading back returns: [`Tasks`],
//!   [`LogInfo`], [`ReportInfo`].
//! - **Errors:** [`Error`], whose [`ErrorKind`] can be matched.
//! - **Events:** [`Store::subscribe`], [`Event`], [`Subscription`].
//! - **Moving a store between engines:** [`copy`] (verified by a
//!   [`digest`] of both sides), [`report::CopyReport`].
//! - **A directory that is not open:** [`verify`], [`migrate`],
//!   [`rollback`], [`health`] and [`backups`], as the CLI runs them.
//! - **Reports:** the module [`report`]: what the operations return about
//!   what they did, such as [`report::RecoveryReport`],
//!   [`report::CheckpointStats`], [`report::StoreMetrics`],
//!   [`report::Health`] and [`report::VerifyReport`].
//! - **Crash testing:** `sim` (feature `sim`): a simulated filesystem
//!   that loses, keeps or tears unsynced writes, and the bodies of the
//!   crate's fuzz targets.
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]

mod archive;
mod backup;
mod checkpoint;
mod copy;
#[cfg(feature = "encryption")]
pub mod crypto;
mod derived;
mod engine;
mod error;
mod events;
mod fs;
#[cfg(feature = "sim")]
mod fuzzing;
mod health;
mod held;
mod id;
mod journal;
mod json;
mod layout;
mod metrics;
mod migrate;
mod model;
mod options;
mod query;
mod readback;
mod reconcile;
mod recovery;
#[cfg(feature = "replicate")]
pub mod replica;
mod session;
#[cfg(feature = "sim")]
pub mod sim;
mod snapshot;
mod state;
mod store;

mod task;
mod task_json;
mod transaction;
mod verify;

// The store and how it is opened.
pub use engine::journal::Pending;
pub use options::{DEFAULT_DIR, Options, RecoveryMode, SyncPolicy};
pub use query::TaskQuery;
pub use store::{Mutation, Store, Tasks};
pub use transaction::Transaction;

// The model: what the store holds, and what reading it back returns.
pub use id::{ID_MAX_BYTES, sanitize_id, validate_id};
pub use model::{LogEntry, Metrics, PersistedState, STATE_VERSION, Task, TaskStatus, now_rfc3339};
pub use readback::{LogInfo, Origin, ReportInfo};
pub use session::Session;

// Errors.
pub use error::{Error, ErrorKind, Result};

// Events.
pub use events::{Change, ChangeKind, Event, Subscriber, Subscription};

pub use archive::{CLEAN_STATUSES_DEFAULT, task_age_reference};
pub use backup::backups;
pub use copy::{COPY_BATCH_ITEMS_DEFAULT, CopyOptions, copy, copy_with, digest};
pub use health::{HEALTH_FREE_BYTES_MIN, health};

/// What the store's operations report: what recovery found and did, what a
/// checkpoint wrote, counters and metrics, health, backups, cleaning,
/// migrations, verification, and the decisions the open makes about files
/// statewal did not write. Values of these types are returned, and read;
/// an application seldom names them.
pub mod report {
    pub use crate::archive::CleanReport;
    pub use crate::backup::{BackupInfo, RestoreReport};
    pub use crate::checkpoint::CheckpointStats;
    pub use crate::copy::{CopyReport, KindDigest, StoreDigest};
    pub use crate::health::Health;
    pub use crate::layout::Skipped;
    pub use crate::metrics::{ReplicaMetrics, StoreMetrics};
    pub use crate::migrate::{MigrationReport, RollbackReport};
    pub use crate::reconcile::{Action, Decision, Merged};
    pub use crate::recovery::{Damage, LoadedFrom, RecoveryReport};
    pub use crate::snapshot::SnapshotUse;
    pub use crate::store::StoreStats;
    pub use crate::verify::{Finding, FindingClass, VerifyReport, Warning};
}
use report::VerifyReport;

// Operations on a state directory that is not open, as the CLI's `verify`,
// `migrate` and `rollback` run them (with `health` and `backups` above).
pub use migrate::{migrate, rollback};

/// Checks every file of the state directory `dir` (journal segments, state
/// files, backups, task files) without changing anything, as `statewal
/// verify` does: it takes no lock, so it may run beside a writer. A store
/// whose report [`VerifyReport::is_clean`] opens without losing anything in
/// the default recovery mode. Fails with [`ErrorKind::NotFound`] if `dir`
/// does not exist.
///
/// ```
/// # fn main() -> statewal::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use statewal::{Options, Store, Task};
/// let store = Store::open(Options::new(dir.path()))?;
/// store.put_task(Task::new("a"))?;
/// store.shutdown()?;
/// let report = statewal::verify(dir.path())?;
/// assert!(report.is_clean(), "{:?}", report.findings);
/// assert!(report.records_checked >= 1);
/// # Ok(())
/// # }
/// ```
pub fn verify(dir: &std::path::Path) -> Result<VerifyReport> {
    verify::verify(&fs::RealFs::existing(dir)?)
}

/// The statewal binary's and this crate's own tests' way into the internal
/// modules. **Not part of the API**: no semver promise, hidden from the
/// docs, and it may change in any release. The command-line tool is a
/// separate crate that needs the journal's reader (`dump-journal`),
/// `verify`, `migrate` and the layout's names; the integration tests need
/// the record format's constants. See `docs/decisions.md`, "issue 14: the
/// public surface".
#[doc(hidden)]
#[allow(missing_debug_implementations)] // Not API; the CLI and tests.
pub mod __internal {
    /// The last position in the store's change order, without the other
    /// counts of `Store::stats`: for `serve --stdio`'s read answers.
    pub fn last_seq(store: &crate::Store) -> crate::Result<u64> {
        store.last_seq()
    }
    /// `statewal clean --older-than`'s check that an age can be subtracted
    /// from now.
    pub use crate::archive::age_in_range;
    /// The filesystem seam (`statewal::sim` has it with the `sim` feature).
    pub mod fs {
        pub use crate::fs::*;
    }
    /// The journal: record codec, segment reader and writer.
    pub mod journal {
        pub use crate::journal::*;
    }
    /// The JSON parser with statewal's limits.
    pub mod json {
        pub use crate::json::*;
    }
    /// The names and parsers of the on-disk layout.
    pub mod layout {
        pub use crate::layout::*;
    }
    /// `statewal migrate` and `rollback`.
    pub mod migrate {
        pub use crate::migrate::*;
    }
    /// What opening does with the original server's files and hand edits.
    pub mod reconcile {
        pub use crate::reconcile::*;
    }
    /// `state.snapshot`.
    pub mod snapshot {
        pub use crate::snapshot::*;
    }
    /// `statewal verify`.
    pub mod verify {
        pub use crate::verify::*;
    }

    /// The backend seam, for the crate's own tests of each engine until
    /// the facade dispatches to them.
    pub mod engine {
        pub use crate::engine::Engine;
    }

    /// The PostgreSQL engine, opened without the facade.
    #[cfg(feature = "postgres")]
    pub mod postgres {
        use crate::engine::postgres::PgEngine;
        pub use crate::engine::postgres::{Change, ChangeKind, Delivery};

        /// An open PostgreSQL engine with the hooks the tests need.
        pub struct Pg(PgEngine, Vec<crate::engine::postgres::Watch>);

        /// Connects to `url` and migrates its schema; `opts` gives the limits.
        pub fn open(url: &str, opts: &crate::Options) -> crate::Result<Pg> {
            PgEngine::open(url, opts).map(|e| Pg(e, Vec::new()))
        }

        impl Pg {
            /// The engine, for [`super::engine::Engine`]'s methods.
            pub fn engine(&mut self) -> &mut dyn crate::engine::Engine {
                &mut self.0
            }

            /// This instance's id.
            pub fn origin(&self) -> &str {
                self.0.origin()
            }

            /// Calls `f` with each task change committed from now on, for
            /// as long as this handle lives. For tests that never prune:
            /// a [`Delivery::Missed`] is not passed on ([`Pg::watch_all`]
            /// passes it).
            pub fn watch(
                &mut self,
                f: impl Fn(&[Change]) + Send + Sync + 'static,
            ) -> crate::Result<()> {
                self.watch_all(move |d| {
                    if let Delivery::Changes(changes) = d {
                        f(changes)
                    }
                })
            }

            /// Calls `f` with each delivery from now on: changes, and
            /// [`Delivery::Missed`] when some were pruned unread.
            pub fn watch_all(
                &mut self,
                f: impl Fn(Delivery<'_>) + Send + Sync + 'static,
            ) -> crate::Result<()> {
                let w = self.0.watch(f)?;
                self.1.push(w);
                Ok(())
            }

            /// Deletes the outbox rows older than `retention` now; how
            /// many went.
            pub fn prune_changes(&self, retention: std::time::Duration) -> crate::Result<u64> {
                self.0.prune_changes(retention)
            }

            /// A put that runs `before_commit` (given its outbox id) inside
            /// its transaction, for late-commit tests.
            pub fn put_task_before_commit(
                &self,
                task: crate::Task,
                before_commit: &dyn Fn(u64),
            ) -> crate::Result<u64> {
                self.0.put_task_before_commit(task, before_commit)
            }
        }

        impl std::ops::Deref for Pg {
            type Target = dyn crate::engine::Engine;
            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }
    }

    /// [`crate::copy_with`], calling `before_verify` with the destination
    /// after every write and before the digests are read, so a test can
    /// change the destination behind the copy's back.
    pub fn copy_checked(
        from: &crate::Store,
        to: &crate::Store,
        opts: &crate::CopyOptions,
        before_verify: &dyn Fn(&crate::Store) -> crate::Result<()>,
    ) -> crate::Result<crate::report::CopyReport> {
        crate::copy::copy_checked(from, to, opts, before_verify)
    }

    /// The check [`crate::copy`] makes first: [`crate::ErrorKind::InvalidInput`]
    /// naming what `to` holds, unless it holds nothing.
    pub fn refuse_non_empty(to: &crate::Store) -> crate::Result<()> {
        crate::copy::refuse_non_empty(to)
    }

    /// A database URL with its password replaced by `***`, for messages.
    pub fn redacted(url: &str) -> String {
        crate::options::redacted(url)
    }

    /// Whether opening `store` created its engine's storage (statewal's
    /// tables in a database), for the CLI's note on stderr.
    pub fn created_storage(store: &crate::Store) -> bool {
        store.created_storage()
    }

    /// [`crate::Store`] on any filesystem, without the `sim` feature that
    /// makes `Store::open_with_fs` public.
    pub fn open_with_fs(
        opts: crate::Options,
        fs: std::sync::Arc<dyn crate::fs::Fs>,
        subscriber: Option<crate::Subscriber>,
    ) -> crate::Result<crate::Store> {
        crate::Store::open_on(opts, fs, subscriber)
    }
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
