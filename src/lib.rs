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
//! assert_eq!(store.list_tasks().len(), 1);
//! # drop(store);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod archive;
mod backup;
mod checkpoint;
mod derived;
mod error;
mod events;
pub mod fs;
#[cfg(feature = "sim")]
pub mod fuzzing;
mod health;
mod held;
mod id;
pub mod journal;
pub mod json;
pub mod layout;
mod metrics;
pub mod migrate;
mod model;
mod options;
mod readback;
pub mod reconcile;
mod recovery;
mod session;
pub mod snapshot;
mod state;
mod store;
mod task;
mod task_json;
mod transaction;
pub mod verify;

pub use archive::{CLEAN_STATUSES_DEFAULT, CleanReport, age_in_range, task_age_reference};
pub use backup::{BackupInfo, RestoreReport, backups};
pub use checkpoint::CheckpointStats;
pub use error::{Error, ErrorKind, Result};
pub use events::{Event, Subscriber, Subscription};
pub use health::{HEALTH_FREE_BYTES_MIN, Health, health};
pub use id::{ID_MAX_BYTES, sanitize_id, validate_id};
pub use layout::Skipped;
pub use metrics::StoreMetrics;
pub use migrate::{MigrationReport, RollbackReport};
pub use model::{LogEntry, Metrics, PersistedState, STATE_VERSION, Task, TaskStatus, now_rfc3339};
pub use options::{DEFAULT_DIR, Options, RecoveryMode, SyncPolicy};
pub use readback::{LogInfo, Origin, ReportInfo};
pub use recovery::{Damage, LoadedFrom, RecoveryReport};
pub use session::Session;
pub use snapshot::SnapshotUse;
pub use store::{Mutation, Pending, Store, StoreStats, Tasks};
pub use transaction::Transaction;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
